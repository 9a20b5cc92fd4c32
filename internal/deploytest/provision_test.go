package deploytest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
)

// The lab's addresses here: link-local, so nothing is ever routed off the
// namespaces (the VMs use 192.168.56.0/24, see vagrant/Vagrantfile).
const (
	labServerIP = "169.254.56.10"
	labSensorIP = "169.254.56.11"
	labClientIP = "169.254.56.12"
)

// netLab is the Vagrant lab's network in namespaces: server, sensor and
// client on one bridge (the lab network, the bridge in the server's
// namespace), and a wire from the client's span port to the sensor's
// monitor port.
type netLab struct {
	server, sensor, client string // namespace names
	sensorMonitor          string // the sensor's monitor port
	clientLab, clientSpan  string // the client's lab NIC and its mirror
}

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	n := &netLab{server: "xpv-" + id, sensor: "xpn-" + id, client: "xpc-" + id,
		sensorMonitor: "xpm" + id, clientLab: "xpl" + id, clientSpan: "xps" + id}
	t.Cleanup(func() {
		for _, ns := range []string{n.server, n.sensor, n.client} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	sensorLab, srvS, srvC := "xpa"+id, "xpb"+id, "xpd"+id
	steps := [][]string{
		{"netns", "add", n.server}, {"netns", "add", n.sensor}, {"netns", "add", n.client},
		{"-n", n.server, "link", "add", "br0", "type", "bridge"},
		{"-n", n.server, "addr", "add", labServerIP + "/24", "dev", "br0"},
		{"-n", n.server, "link", "set", "br0", "up"},
		{"link", "add", sensorLab, "netns", n.sensor, "type", "veth", "peer", "name", srvS, "netns", n.server},
		{"link", "add", n.clientLab, "netns", n.client, "type", "veth", "peer", "name", srvC, "netns", n.server},
		{"link", "add", n.clientSpan, "netns", n.client, "type", "veth", "peer", "name", n.sensorMonitor, "netns", n.sensor},
		{"-n", n.server, "link", "set", srvS, "master", "br0", "up"},
		{"-n", n.server, "link", "set", srvC, "master", "br0", "up"},
		{"-n", n.sensor, "addr", "add", labSensorIP + "/24", "dev", sensorLab},
		{"-n", n.sensor, "link", "set", sensorLab, "up"},
		{"-n", n.client, "addr", "add", labClientIP + "/24", "dev", n.clientLab},
		{"-n", n.client, "link", "set", n.clientLab, "up"},
	}
	for _, ns := range []string{n.server, n.sensor, n.client} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"})
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return n
}

func netnsPath(ns string) string { return "/var/run/netns/" + ns }

// script runs a provisioning script in a namespace with the layout's
// paths and the given settings, as the Vagrantfile runs it in a VM.
func script(t *testing.T, ns string, l layout, name string, env []string, args ...string) string {
	t.Helper()
	argv := append([]string{"--net=" + netnsPath(ns), "--", filepath.Join(repoRoot(t), "scripts", "provision", name)}, args...)
	cmd := exec.Command("nsenter", argv...)
	cmd.Env = append(append(os.Environ(), l.Env()...), "XTRAIL_START=no", "XTRAIL_BIN="+xtrailBinary(t))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), ns, err, out)
	}
	return string(out)
}

// TestProvisionLab runs the lab's provisioning scripts for real, as in the
// Vagrant VMs, with network namespaces in place of the VMs: server.sh
// (certificates, registration, configs, then Redis, the collector, the D4
// server and one exporter started from their installed units), sensor.sh
// (credentials, monitor port, trails, then the sensor from its unit, with
// its capabilities) and client.sh (the SPAN mirror, then the demo's
// traffic). The demo's three events must reach the collector's log, and
// every unit must stay within its system call and socket family lists.
func TestProvisionLab(t *testing.T) {
	requireDeployTools(t)
	redis := testenv.RequireBinary(t, "redis-server")
	n := newNetLab(t)
	base := t.TempDir()
	// the dynamic users' credentials and log directories lie below it: as
	// /run and /var, it must be traversable (t.TempDir makes 0700 dirs)
	for _, d := range []string{base, filepath.Dir(base)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shared := filepath.Join(base, "lab") // what vagrant/.lab carries between the VMs
	srv, sen, cli := newLayout(filepath.Join(base, "server")), newLayout(filepath.Join(base, "sensor")), newLayout(filepath.Join(base, "client"))
	traces := t.TempDir()

	// server: provision, then what systemd would start
	script(t, n.server, srv, "server.sh", []string{"XTRAIL_SERVER_IP=" + labServerIP, "XTRAIL_LAB=" + shared})
	startRedis(t, redis, n.server, base)
	queue := strings.TrimSpace(readFile(t, srv.Etc("lab.queue")))
	units := map[string]*Unit{
		"collector": srv.Unit(t, "xtrail-collector.service", ""),
		"server":    srv.Unit(t, "xtrail-server.service", ""),
		"export":    srv.Unit(t, "xtrail-export@.service", queue),
	}
	procs := map[string]*proc{}
	for _, name := range []string{"collector", "server", "export"} {
		r := srv.Run()
		r.Netns, r.Trace = netnsPath(n.server), filepath.Join(traces, name)
		procs[name] = start(t, units[name], r)
	}
	procs["collector"].waitLog("collector listening", 20*time.Second)
	procs["server"].waitLog("D4 server listening", 20*time.Second)
	procs["export"].waitLog("exporting", 20*time.Second)

	// sensor: provision (reads the server's CA and credentials), start
	pin := testenv.PinDir(t)
	script(t, n.sensor, sen, "sensor.sh", []string{"XTRAIL_SERVER_IP=" + labServerIP, "XTRAIL_LAB=" + shared,
		"XTRAIL_MONITOR_IFACE=" + n.sensorMonitor, "XTRAIL_PIN_DIR=" + pin})
	sensorUnit := sen.Unit(t, "xtrail-sensor.service", "")
	r := sen.Run()
	r.Netns, r.Trace = netnsPath(n.sensor), filepath.Join(traces, "sensor")
	procs["sensor"] = start(t, sensorUnit, r)
	procs["sensor"].waitLog("XDP program attached", 30*time.Second)

	// client: the mirror, then the demo's traffic; the server's events
	// command waits for the three events in the collector's log
	script(t, n.client, cli, "client.sh", []string{"XTRAIL_LAB_IFACE=" + n.clientLab, "XTRAIL_SPAN_IFACE=" + n.clientSpan})
	script(t, n.client, cli, "client.sh", nil, "traffic")
	events := script(t, n.server, srv, "server.sh", nil, "events", "3", "20")
	t.Logf("server.sh events:\n%s", events)
	for _, want := range []string{" ICMP IP 136.161.101.53 ", " TCP IPORT 198.51.100.77:8443 ", " UDP IP 203.0.113.99 "} {
		if !strings.Contains(events, want) {
			t.Errorf("the collector's log lacks %q:\n%s", want, events)
		}
	}
	if !strings.Contains(events, " lab-sensor ") && !strings.Contains(events, `" lab-sensor `) {
		t.Errorf("the events do not name the provisioned sensor (SENSOR_NAME lab-sensor):\n%s", events)
	}

	// a second provisioning changes nothing that works: same CA, one
	// registration, trails reloaded into the running sensor
	caBefore := readFile(t, filepath.Join(shared, "ca.crt"))
	script(t, n.server, srv, "server.sh", nil)
	script(t, n.sensor, sen, "sensor.sh", nil)
	if readFile(t, filepath.Join(shared, "ca.crt")) != caBefore {
		t.Error("provisioning the server again made a new CA")
	}
	if got := strings.Count(readFile(t, srv.Etc("sensors.keys")), "\n"); got != 1 {
		t.Errorf("sensors.keys has %d lines after two provisionings, want 1", got)
	}

	for name, p := range procs {
		if err := p.stop(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, p.log.String())
		}
	}
	for name, u := range units {
		checkSandbox(t, u, filepath.Join(traces, name))
	}
	checkSandbox(t, sensorUnit, filepath.Join(traces, "sensor"))
}

// startRedis runs a redis-server on 127.0.0.1:6379 of the namespace, as
// Debian's redis-server package does in the VM.
func startRedis(t *testing.T, bin, ns, dir string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+netnsPath(ns), "--", bin, "--port", "6379", "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	for i := 0; i < 100; i++ {
		if strings.Contains(log.String(), "Ready to accept connections") {
			return
		}
		select {
		case <-done:
			t.Fatalf("redis-server exited:\n%s", log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("redis-server not ready:\n%s", log.String())
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
