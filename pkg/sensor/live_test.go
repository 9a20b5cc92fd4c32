package sensor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/pkg/dataplane"
)

const labTrails = "136.161.101.53,sinkhole conficker (malware),(static)\r\n" +
	"198.51.100.77:8443,xtrail lab c2 (malware),(custom)\r\n" +
	"203.0.113.99,xtrail lab (suspicious),(custom)\r\n"

// TestLive attaches the program to a veth in a lab namespace, sends real
// traffic (ping, a TCP SYN, a UDP datagram) from the other namespace, and
// checks the three events and that stopping the sensor detaches it.
func TestLive(t *testing.T) {
	for _, mode := range []dataplane.Mode{dataplane.ModeNative, dataplane.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) { testLive(t, mode) })
	}
}

func testLive(t *testing.T, mode dataplane.Mode) {
	l := lab.New(t)
	dir := t.TempDir()
	trailsFile := filepath.Join(dir, "trails.csv")
	if err := os.WriteFile(trailsFile, []byte(labTrails), 0o644); err != nil {
		t.Fatal(err)
	}
	c, stop := liveSensor(t, l, Options{XDPMode: mode, TrailsFile: trailsFile})
	if on, err := l.XDPAttached(); err != nil || !on {
		t.Fatalf("no XDP program on %s after Ready (%v)", l.SensorIf, err)
	}
	if err := l.Ping("136.161.101.53"); err != nil {
		t.Fatal(err)
	}
	if err := l.SYN("198.51.100.77", 8443); err != nil {
		t.Fatal(err)
	}
	if err := l.UDP("203.0.113.99", 5353); err != nil {
		t.Fatal(err)
	}
	want := []string{
		" lab " + lab.SourceAddr + " - 136.161.101.53 - ICMP IP 136.161.101.53 \"sinkhole conficker (malware)\" (static)\n",
		" 198.51.100.77 8443 TCP IPORT 198.51.100.77:8443 \"xtrail lab c2 (malware)\" (custom)\n",
		" 203.0.113.99 5353 UDP IP 203.0.113.99 \"xtrail lab (suspicious)\" (custom)\n",
	}
	deadline := time.After(15 * time.Second)
	for {
		got := c.get()
		if matchAll(got, want) {
			if len(got) != 3 {
				t.Errorf("%d events, want exactly 3:\n%s", len(got), strings.Join(got, ""))
			}
			break
		}
		select {
		case <-c.note:
		case <-deadline:
			t.Fatalf("events after 15 s:\n%swant lines ending in:\n%s", strings.Join(got, ""), strings.Join(want, ""))
		}
	}
	for _, line := range c.get() {
		if !strings.Contains(line, " lab "+lab.SourceAddr+" ") {
			t.Errorf("event not from the lab source: %s", line)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if on, err := l.XDPAttached(); err != nil || on {
		t.Fatalf("XDP program still attached after the sensor stopped (%v)", err)
	}
}

func matchAll(got, want []string) bool {
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.HasSuffix(g, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
