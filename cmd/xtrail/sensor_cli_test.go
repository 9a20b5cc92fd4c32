package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
)

const sensorTrails = "198.51.100.7,malware (test),(static)\n198.51.100.8:8443,c2 (test),(static)\n"

// frame is one packet of a test capture.
type frame struct {
	sec  uint32
	data []byte
}

// pcapFile renders a classic little-endian Ethernet pcap.
func pcapFile(frames ...frame) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...) // thiszone, sigfigs
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 1) // EN10MB
	for _, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, f.sec)
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f.data)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f.data)))
		b = append(b, f.data...)
	}
	return b
}

func syn(sec uint32, src, dst string, sport, dport uint16) frame {
	return frame{sec, pktbuild.Frame{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: pktbuild.TCP,
		Sport: sport, Dport: dport, TCPFlags: pktbuild.SYN}.Bytes()}
}

// The two captures of the replay tests (2023-11-14 22:13:20 UTC on): two
// trail hits and a clean SYN, then one more hit.
var (
	capA = pcapFile(syn(1700000000, "10.0.0.1", "198.51.100.7", 40000, 80),
		syn(1700000001, "10.0.0.1", "198.51.100.8", 40001, 8443),
		syn(1700000002, "10.0.0.1", "192.0.2.1", 40002, 80))
	capB = pcapFile(syn(1700000003, "10.0.0.2", "198.51.100.7", 40003, 443))
)

var (
	hitA1 = ` cli 10.0.0.1 40000 198.51.100.7 80 TCP IP 198.51.100.7 "malware (test)" (static)` + "\n"
	hitA2 = ` cli 10.0.0.1 40001 198.51.100.8 8443 TCP IPORT 198.51.100.8:8443 "c2 (test)" (static)` + "\n"
	hitB  = ` cli 10.0.0.2 40003 198.51.100.7 443 TCP IP 198.51.100.7 "malware (test)" (static)` + "\n"
)

const day = "2023-11-14.log"

// wantEvents checks that text holds exactly the events ending in want, in
// order.
func wantEvents(t *testing.T, what, text string, want ...string) {
	t.Helper()
	lines := strings.SplitAfter(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	ok := len(lines) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(lines[i], `"2023-11-14 22:13:2`) && strings.HasSuffix(lines[i], want[i])
	}
	if !ok {
		t.Errorf("%s:\n%swant lines ending in:\n%s", what, text, strings.Join(want, ""))
	}
}

// sensorSetup writes the trails, the captures and a maltrail.conf with the
// given extra lines, and returns the conf and the directory.
func sensorSetup(t *testing.T, extra ...string) (conf, dir string) {
	t.Helper()
	dir = t.TempDir()
	trails := writeFile(t, filepath.Join(dir, "trails.csv"), sensorTrails)
	writeFile(t, filepath.Join(dir, "a.pcap"), string(capA))
	writeFile(t, filepath.Join(dir, "b.pcap"), string(capB))
	lines := append([]string{"TRAILS_FILE " + trails, "LOG_DIR " + filepath.Join(dir, "log"), "SENSOR_NAME cli"}, extra...)
	return writeFile(t, filepath.Join(dir, "maltrail.conf"), strings.Join(lines, "\n")+"\n"), dir
}

// TestCLISensorReplay replays captures through the built binary: -c,
// -r (repeatable, - for stdin), --console and -q, and the refusals.
func TestCLISensorReplay(t *testing.T) {
	testenv.RequireRoot(t)
	conf, dir := sensorSetup(t)
	a, b := filepath.Join(dir, "a.pcap"), filepath.Join(dir, "b.pcap")

	// LOG_DIR is an output: nothing on stdout without --console
	r := mustXtrail(t, "sensor", "-c", conf, "-r", a, "-r", b)
	wantEvents(t, "LOG_DIR file", string(mustRead(t, filepath.Join(dir, "log", day))), hitA1, hitA2, hitB)
	if r.stdout != "" || !strings.Contains(r.stderr, "level=INFO msg=\"replay done\" frames=4") {
		t.Errorf("replay without --console: %s", r)
	}

	// --console and -q
	conf2, dir2 := sensorSetup(t)
	r = mustXtrail(t, "sensor", "-q", "--console", "-c", conf2, "-r", filepath.Join(dir2, "a.pcap"))
	wantEvents(t, "--console", r.stdout, hitA1, hitA2)
	wantEvents(t, "LOG_DIR with --console", string(mustRead(t, filepath.Join(dir2, "log", day))), hitA1, hitA2)
	if strings.Contains(r.stderr, "level=INFO") {
		t.Errorf("-q logged info: %s", r)
	}

	// -r - reads stdin; with no other output the events go to stdout
	conf3, dir3 := sensorSetup(t, "DISABLE_LOCAL_LOG_STORAGE true")
	r = xtrailIn(t, bytes.NewReader(capB), "sensor", "-c", conf3, "-r", "-")
	if r.code != 0 {
		t.Fatal(r)
	}
	wantEvents(t, "stdin replay, console fallback", r.stdout, hitB)
	if _, err := os.Stat(filepath.Join(dir3, "log")); err == nil {
		t.Error("DISABLE_LOCAL_LOG_STORAGE: LOG_DIR written")
	}

	// refusals
	wantFail(t, xtrail(t, "sensor", "-c", conf), 1, "no interface: set MONITOR_INTERFACE or -i, or replay with -r")
	wantFail(t, xtrail(t, "sensor", "-c", conf, "-r", filepath.Join(dir, "missing.pcap")), 1, "missing.pcap")
	wantFail(t, xtrail(t, "sensor", "-c", filepath.Join(dir, "missing.conf"), "-r", a), 1, "missing.conf")
	wantFail(t, xtrail(t, "sensor", "-c", conf, "-r", a, "stray"), 1, `unexpected arguments ["stray"]`)
	wantFail(t, xtrail(t, "sensor", "-c", conf, "-r", a, "-xdp-mode", "fast"), 1, `XDP mode "fast": want auto, native or generic`)
	wantFail(t, xtrail(t, "sensor", "-c", conf, "-r", a, "-xdp-action", "reject"), 1, `XDP action "reject": want pass or drop`)
	bad, _ := sensorSetup(t, "D4_SERVER 127.0.0.1:1", "D4_UUID not-a-uuid", "D4_KEY k")
	wantFail(t, xtrail(t, "sensor", "-c", bad, "-r", a), 1, "D4_UUID")
}

// TestCLIChain runs the whole chain as separate processes on loopback:
// xtrail sensor (replay, D4 over TLS) -> xtrail server (built-in exporter)
// -> xtrail collector. The collector's daily log must equal the sensor's.
func TestCLIChain(t *testing.T) {
	testenv.RequireRoot(t)
	pkiDir, _ := pki(t)
	id, _ := d4.NewUUIDv4()
	tmp := t.TempDir()
	keys := writeFile(t, filepath.Join(tmp, "keys"), id.String()+" chain key\n")
	keyFile := writeFile(t, filepath.Join(tmp, "sensor.key"), "chain key\n")

	colDir := filepath.Join(tmp, "collector")
	col := startXtrail(t, "collector", "-listen", "127.0.0.1:0", "-log-dir", colDir)
	colAddr := col.waitLog(`collector listening" addr=(\S+)`)[1]
	srv := startXtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", filepath.Join(pkiDir, certs.CertFile),
		"-key", filepath.Join(pkiDir, certs.KeyFile), "-keys", keys, "-export", "maltrail="+colAddr)
	srvAddr := srv.waitLog(`D4 server listening" addr=(\S+)`)[1]

	conf, dir := sensorSetup(t, "D4_SERVER "+srvAddr, "D4_UUID "+id.String(), "D4_KEY_FILE "+keyFile,
		"D4_CA "+filepath.Join(pkiDir, certs.CAFile), "D4_SPOOL_DIR "+filepath.Join(tmp, "spool"))
	r := mustXtrail(t, "sensor", "-c", conf, "-r", filepath.Join(dir, "a.pcap"), "-r", filepath.Join(dir, "b.pcap"))
	if !strings.Contains(r.stderr, `msg="D4 client counters" sent=3`) {
		t.Errorf("sensor: %s", r)
	}
	want := mustRead(t, filepath.Join(dir, "log", day))
	wantEvents(t, "sensor LOG_DIR", string(want), hitA1, hitA2, hitB)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, _ := os.ReadFile(filepath.Join(colDir, day))
		if bytes.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector log:\n%s\nwant the sensor's:\n%s\n%s\n%s", got, want, srv, col)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range []*proc{srv, col} {
		if code := p.stop(); code != 0 {
			t.Errorf("exit %d: %s", code, p)
		}
	}
	srv.waitLog(`D4 server counters" conns=1 frames=\d+ lines=3`)
}

// TestCLISensorLive runs the binary on the lab's veth: -i, -netns,
// -xdp-mode, -xdp-action and -pin-dir, in both modes and with both
// actions; SIGTERM detaches the program.
func TestCLISensorLive(t *testing.T) {
	for _, c := range []struct{ mode, action, shown string }{
		{"generic", "pass", "xdpgeneric"},
		{"native", "drop", "xdp "},
	} {
		t.Run(c.mode+"-"+c.action, func(t *testing.T) {
			l := lab.New(t)
			conf, dir := sensorSetup(t)
			pinDir := testenv.PinDir(t)
			p := startXtrail(t, "sensor", "-c", conf, "-i", l.SensorIf, "-netns", l.Sensor,
				"-xdp-mode", c.mode, "-xdp-action", c.action, "-pin-dir", pinDir)
			p.waitLog(`msg="sensor ready"`)
			if out, _ := exec.Command("ip", "-n", l.Sensor, "link", "show", l.SensorIf).CombinedOutput(); !strings.Contains(string(out), c.shown) {
				t.Errorf("-xdp-mode %s: ip link shows\n%s", c.mode, out)
			}
			if ents, err := os.ReadDir(pinDir); err != nil || len(ents) == 0 {
				t.Errorf("-pin-dir %s: %v, %d entries", pinDir, err, len(ents))
			}

			// a host in the sensor namespace sees the traffic with pass,
			// not with drop
			var pc net.PacketConn
			if err := lab.InNetns(l.Sensor, func() (err error) {
				pc, err = net.ListenPacket("udp", lab.SensorAddr+":0")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			port := pc.LocalAddr().(*net.UDPAddr).Port
			if err := l.UDP("198.51.100.7", 5353); err != nil {
				t.Fatal(err)
			}
			if err := l.UDP(lab.SensorAddr, port); err != nil {
				t.Fatal(err)
			}
			pc.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := pc.ReadFrom(make([]byte, 64))
			if got := err == nil && n > 0; got != (c.action == "pass") {
				t.Errorf("-xdp-action %s: datagram delivered %v (%v)", c.action, got, err)
			}
			logFile := filepath.Join(dir, "log", time.Now().UTC().Format("2006-01-02")+".log")
			want := fmt.Sprintf(" cli %s ", lab.SourceAddr)
			deadline := time.Now().Add(15 * time.Second)
			for {
				b, _ := os.ReadFile(logFile)
				if strings.Contains(string(b), want) && strings.Contains(string(b), ` 198.51.100.7 5353 UDP IP 198.51.100.7 "malware (test)" (static)`) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no event in %s: %q\n%s", logFile, b, p)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if code := p.stop(); code != 0 {
				t.Fatalf("SIGTERM: exit %d: %s", code, p)
			}
			if on, err := l.XDPAttached(); err != nil || on {
				t.Errorf("program still attached after SIGTERM (%v)", err)
			}
		})
	}
}
