package deploytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/testenv"
)

// TestSensorUnitCapabilities starts xtrail-sensor.service's command with
// exactly the capabilities the unit grants (setpriv: bounding set, no
// inheritable, no new privileges), on a veth in a lab namespace: it must
// attach, report a ping to a trail, stay inside the unit's system call and
// socket family lists, restart on its pinned trails and reload new trails
// on SIGHUP (ExecReload). Without any one of
// the granted capabilities it must fail: the unit grants none too many.
func TestSensorUnitCapabilities(t *testing.T) {
	requireDeployTools(t)
	l := lab.New(t)
	root := install(t, t.TempDir())
	u := root.Unit(t, "xtrail-sensor.service", "")
	caps, set := u.Capabilities()
	if !set || len(caps) == 0 {
		t.Fatalf("xtrail-sensor.service: no CapabilityBoundingSet=")
	}
	var want uint64
	for _, c := range caps {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("xtrail-sensor.service grants %s, unknown to this test", c)
		}
		want |= 1 << bit
	}

	logDir := filepath.Join(root.LocalStateDir, "log", strings.Fields(u.Value("Service.LogsDirectory"))[0])
	trailsFile := filepath.Join(t.TempDir(), "trails.csv")
	if err := os.WriteFile(trailsFile, []byte("136.161.101.53,sinkhole conficker (malware),(static)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// configure writes the sensor's maltrail.conf for a pin dir
	configure := func(pinDir string) {
		conf := fmt.Sprintf("MONITOR_INTERFACE %s\nTRAILS_FILE %s\nLOG_DIR %s\nSENSOR_NAME captest\nXDP_ACTION drop\nXDP_PIN_DIR %s\n",
			l.SensorIf, trailsFile, logDir, pinDir)
		if err := os.WriteFile(root.Etc("maltrail.conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	configure(testenv.PinDir(t))
	run := root.Run()
	run.Netns = lab.NetnsPath(l.Sensor)

	// first start: a fresh program and trail maps, traced
	trace := filepath.Join(t.TempDir(), "sensor.strace")
	r := run
	r.Trace = trace
	p := start(t, u, r)
	p.waitLog("XDP program attached", 30*time.Second)
	if got := capEff(t, p.pid()); got != want {
		t.Fatalf("the sensor runs with capabilities %#x, want exactly %#x (%v)", got, want, caps)
	}
	pingAndWait(t, l, logDir, 1)
	// its status socket answers `xtrail status`, found from the same config
	out, err := exec.Command(xtrailBinary(t), "status", "-c", root.Etc("maltrail.conf"), "-json").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"role": "sensor"`) || !strings.Contains(string(out), `"type": "IP"`) {
		t.Errorf("xtrail status of the unit's sensor: %v\n%s", err, out)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("sensor exit: %v\n%s", err, p.log.String())
	}
	if attached, err := l.XDPAttached(); err != nil || attached {
		t.Fatalf("after SIGTERM the program is still attached (%v): the sensor could not detach with its capabilities", err)
	}
	checkSandbox(t, u, trace)

	// a restart takes the verified program and the trails from the pins
	p = start(t, u, run)
	p.waitLog("XDP program attached", 30*time.Second)
	if !strings.Contains(p.log.String(), "verified_before=true") {
		t.Errorf("the restart did not reuse the pinned program:\n%s", p.log.String())
	}
	pingAndWait(t, l, logDir, 2)

	// ExecReload (SIGHUP) with new trails: the reload fills and switches a
	// kernel generation with the same capabilities
	if err := os.WriteFile(trailsFile, []byte("136.161.101.53,sinkhole conficker (malware),(static)\n203.0.113.99,xtrail test (suspicious),(custom)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for countLines(logDir, " UDP IP 203.0.113.99 ") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP with a new trail, no UDP event for it:\n%s", p.log.String())
		}
		if err := l.UDP("203.0.113.99", 5353); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("sensor exit after restart: %v\n%s", err, p.log.String())
	}

	// each granted capability is needed by a first start (a restart that
	// finds the verified program pinned runs no verifier, so it does
	// without CAP_PERFMON; a first start, or one after an upgrade, needs it)
	for _, c := range caps {
		configure(testenv.PinDir(t))
		r := run
		r.Drop = []string{c}
		p := start(t, u, r)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("without %s the sensor still runs:\n%s", c, p.log.String())
		}
		out := p.log.String()
		if p.err == nil || strings.Contains(out, "XDP program attached") {
			t.Errorf("without %s the sensor attached or exited 0 (%v): the unit grants a capability it does not need\n%s", c, p.err, out)
		} else {
			t.Logf("without %s: %s", c, firstLine(out, "xtrail sensor:"))
		}
	}
}

// pingAndWait pings the trail from the lab's source namespace until the
// sensor's LOG_DIR holds n events for it.
func pingAndWait(t *testing.T, l *lab.Lab, logDir string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := l.Ping("136.161.101.53"); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if countLines(logDir, " ICMP IP 136.161.101.53 ") >= n {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Fatalf("the sensor's LOG_DIR %s has %d ICMP events for the trail, want %d", logDir, countLines(logDir, " ICMP IP 136.161.101.53 "), n)
}

// countLines counts the lines containing text in dir's daily logs.
func countLines(dir, text string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n += strings.Count(string(b), text)
	}
	return n
}

func firstLine(s, prefix string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			if len(line) > 200 {
				line = line[:200] + "..."
			}
			return line
		}
	}
	return "(no line starting " + prefix + ")"
}
