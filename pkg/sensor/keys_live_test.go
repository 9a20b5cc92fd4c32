package sensor

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/maltrail"
)

// TestKeyLive drives the keys that need live traffic from a maltrail.conf,
// on the lab's veth: MONITOR_INTERFACE and -i, XDP_MODE, XDP_ACTION,
// XDP_PIN_DIR, and UPDATE_PERIOD (a live sensor warns when its trails are
// older than twice the period).
func TestKeyLive(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	trailsFile := filepath.Join(dir, "trails.csv")
	if err := writeFile(trailsFile, "136.161.101.53,keyed live (malware),(custom)\n"); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(trailsFile, old, old); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		conf  string
		flags Flags
		mode  string // what `ip -d link` says: xdpgeneric or xdp
		drop  bool   // the sensor's host stack never sees the lab's packets
		stale bool   // 3-day-old trails are older than twice UPDATE_PERIOD
	}{
		{"generic drop", "MONITOR_INTERFACE " + l.SensorIf + "\nXDP_MODE generic\nXDP_ACTION drop\nUPDATE_PERIOD 86400\n", Flags{}, "xdpgeneric", true, true},
		{"-i native pass", "MONITOR_INTERFACE xtnone0\nXDP_MODE native\nXDP_ACTION pass\nUPDATE_PERIOD 864000\n", Flags{Interfaces: l.SensorIf}, "xdp", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pin := testenv.PinDir(t)
			runDir := t.TempDir()
			conf := "TRAILS_FILE " + trailsFile + "\nLOG_DIR " + runDir + "/log\nXDP_PIN_DIR " + pin + "\n" + c.conf
			c.flags.Netns = l.Sensor
			logs, stop := liveConf(t, readConf(t, runDir, conf), c.flags)

			out, err := exec.Command("ip", "-n", l.Sensor, "-d", "link", "show", l.SensorIf).CombinedOutput()
			if first, _, _ := strings.Cut(string(out), "\n"); err != nil || !strings.Contains(first, " "+c.mode+" ") {
				t.Errorf("XDP mode: want %s in %q (%v)", c.mode, first, err)
			}
			if _, err := os.Stat(filepath.Join(pin, "xt_gen")); err != nil {
				t.Errorf("nothing pinned in XDP_PIN_DIR: %v", err)
			}
			_, err = l.Run(l.Source, "ping", "-c", "1", "-W", "1", lab.SensorAddr)
			if replied := err == nil; replied == c.drop {
				t.Errorf("ping %s: replied %v with XDP_ACTION drop %v", lab.SensorAddr, replied, c.drop)
			}
			if err := l.Ping("136.161.101.53"); err != nil {
				t.Fatal(err)
			}
			want := " " + lab.SourceAddr + " - 136.161.101.53 - ICMP IP 136.161.101.53 \"keyed live (malware)\" (custom)"
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(strings.Join(logDirLines(t, filepath.Join(runDir, "log")), "\n"), want) {
				if time.Now().After(deadline) {
					t.Fatalf("no event %q in LOG_DIR", want)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			// the first staleness check runs before the sensor can stop
			if stale := strings.Contains(logs.String(), "STALE TRAILS"); stale != c.stale {
				t.Errorf("STALE TRAILS warned %v, want %v:\n%s", stale, c.stale, logs.String())
			}
		})
	}
}

// liveConf configures a sensor from cfg and runs it live until stop is
// called (stop returns Run's error); the sinks are closed at cleanup.
func liveConf(t *testing.T, cfg *maltrail.Config, f Flags) (*testenv.SyncBuffer, func() error) {
	t.Helper()
	var logs testenv.SyncBuffer
	st, err := configure(cfg, f, slog.New(slog.NewTextHandler(&logs, nil)), testHost(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Sinks.Close() }) // after the sensor stopped: cleanups run last-in first-out
	return &logs, startLive(t, st.Options)
}
