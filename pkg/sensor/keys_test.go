package sensor

// The tests of this file drive each maltrail.conf key and command-line flag
// of docs/configuration.md through the sensor: a real maltrail.conf file,
// Configure, then Run replaying a capture through the XDP program, and
// assertions on what came out (the LOG_DIR file, datagrams, the console,
// the D4 server's store). keys_live_test.go does the same on a veth for the
// keys that need live traffic.

import (
	"context"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
)

// keyTrails has one trail per kind of match the key tests need.
const keyTrails = "66.66.66.66,keyed ip (malware),(custom)\n" +
	"7.7.7.7,keyed ip (reputation),(custom)\n" +
	"evil-test-domain.com,keyed domain (malware),(custom)\n" +
	"hostevil.example,keyed host (malware),(custom)\n" +
	"/malicious-login.php,keyed url (malware),(custom)\n" +
	"tls-evil.example,keyed sni (malware),(custom)\n" +
	"quic-evil.example,keyed quic (malware),(custom)\n"

var (
	keyClient = netip.MustParseAddr("10.0.0.5")
	keyBadIP  = netip.MustParseAddr("66.66.66.66")
	// keyStart is the time of a capture's first packet; the others follow
	// a second apart.
	keyStart = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
)

// Frames of the key tests' captures.
func synTo(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) pktbuild.Frame {
	return pktbuild.Frame{Src: src, Dst: dst, Proto: pktbuild.TCP, Sport: sport, Dport: dport, TCPFlags: pktbuild.SYN}
}

func dnsFrom(src netip.Addr, sport uint16, name string) pktbuild.Frame {
	return pktbuild.Frame{Src: src, Dst: netip.MustParseAddr("10.0.0.53"), Proto: pktbuild.UDP, Sport: sport, Dport: 53, Payload: dnsQuery(name)}
}

func httpGet(sport uint16, host, path string) pktbuild.Frame {
	return pktbuild.Frame{Src: keyClient, Dst: netip.MustParseAddr("203.0.113.10"), Proto: pktbuild.TCP, Sport: sport, Dport: 80,
		TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nAccept: */*\r\n\r\n")}
}

func tlsFrame(sport uint16, sni string) pktbuild.Frame {
	return pktbuild.Frame{Src: keyClient, Dst: netip.MustParseAddr("203.0.113.30"), Proto: pktbuild.TCP, Sport: sport, Dport: 443,
		TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: pktbuild.TLSRecord(tlsHello(sni))}
}

// quicFrame carries a 1200-byte QUIC v1 client Initial.
func quicFrame(sport uint16, sni string) pktbuild.Frame {
	hello := pktbuild.CryptoFrame(0, tlsHello(sni))
	return pktbuild.Frame{Src: keyClient, Dst: netip.MustParseAddr("203.0.113.31"), Proto: pktbuild.UDP, Sport: sport, Dport: 443,
		Payload: pktbuild.QUICInitial{Version: pktbuild.QUICVersion1, DCID: []byte{8, 7, 6, 5, 4, 3, 2, 1}, PNLen: 4, Frames: hello, PadTo: 1162}.Seal()}
}

// keyDir holds the trails file and the captures of one test.
type keyDir struct {
	t   *testing.T
	dir string
}

func newKeyDir(t *testing.T) *keyDir {
	t.Helper()
	testenv.RequireRoot(t)
	d := &keyDir{t: t, dir: t.TempDir()}
	if err := writeFile(d.trails(), keyTrails); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *keyDir) trails() string { return filepath.Join(d.dir, "trails.csv") }

// base is the start of a maltrail.conf: the trails file, and a LOG_DIR in
// the run's own directory ({run}).
func (d *keyDir) base() string { return "TRAILS_FILE " + d.trails() + "\nLOG_DIR {run}/log\n" }

// capture writes frames, one a second from keyStart, to a pcap.
func (d *keyDir) capture(name string, frames ...pktbuild.Frame) string {
	d.t.Helper()
	pkts := make([]pktbuild.Packet, len(frames))
	for i, f := range frames {
		pkts[i] = pktbuild.Packet{Time: keyStart.Add(time.Duration(i) * time.Second), Frame: f.Bytes()}
	}
	path := filepath.Join(d.dir, name+".pcap")
	if err := os.WriteFile(path, pktbuild.Pcap(pkts), 0o644); err != nil {
		d.t.Fatal(err)
	}
	return path
}

// keyRun is what one sensor run produced.
type keyRun struct {
	dir     string   // the run's directory ({run} in the conf)
	lines   []string // the LOG_DIR files' lines, without '\n', day files in order
	console string   // standard output
	log     string   // the sensor's log
}

func (r keyRun) count(sub string) int {
	n := 0
	for _, l := range r.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// run writes conf ({run} replaced by a fresh directory) to a maltrail.conf
// and runs the sensor on it as `xtrail sensor -c maltrail.conf` would, with
// flags f; -r is the captures pcaps.
func (d *keyDir) run(conf string, f Flags, pcaps ...string) keyRun {
	d.t.Helper()
	r := keyRun{dir: d.t.TempDir()}
	f.Pcaps = pcaps
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := testHost(d.t)
	st, err := configure(readConf(d.t, r.dir, strings.ReplaceAll(conf, "{run}", r.dir)), f, log, h)
	if err != nil {
		d.t.Fatal(err)
	}
	err = Run(context.Background(), st.Options)
	if cerr := st.Sinks.Close(); cerr != nil {
		d.t.Error(cerr)
	}
	if err != nil {
		d.t.Fatalf("%v\n%s", err, logs.String())
	}
	r.log, r.console = logs.String(), consoleOut(d.t, h)
	r.lines = logDirLines(d.t, filepath.Join(r.dir, "log"))
	return r
}

// logDirLines reads every day file of dir, in order of the file names.
func logDirLines(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	return lines
}

// localTime is how the sensor writes t in an event line (its zone is
// time.Local, as Maltrail's is the host's).
func localTime(t time.Time) string { return t.In(time.Local).Format("2006-01-02 15:04:05.000000") }

// TestKeyTrailsFileLogDirSensorName: the events come from TRAILS_FILE, go
// to LOG_DIR (created 0755, files 0644), and carry SENSOR_NAME; -r takes
// several captures.
func TestKeyTrailsFileLogDirSensorName(t *testing.T) {
	d := newKeyDir(t)
	first := d.capture("first", synTo(keyClient, 40000, keyBadIP, 443))
	second := d.capture("second", dnsFrom(keyClient, 40001, "evil-test-domain.com"))
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	r := d.run("TRAILS_FILE "+d.trails()+"\nLOG_DIR {run}/nested/logs\nSENSOR_NAME edge-$HOSTNAME\n", Flags{}, first, second)
	got := logDirLines(t, filepath.Join(r.dir, "nested", "logs"))
	want := []string{
		`"` + localTime(keyStart) + `" edge-` + host + ` 10.0.0.5 40000 66.66.66.66 443 TCP IP 66.66.66.66 "keyed ip (malware)" (custom)`,
		`"` + localTime(keyStart) + `" edge-` + host + ` 10.0.0.5 40001 10.0.0.53 53 UDP DNS evil-test-domain.com "keyed domain (malware)" (custom)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("LOG_DIR lines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for path, mode := range map[string]os.FileMode{filepath.Join(r.dir, "nested", "logs"): 0o755,
		filepath.Join(r.dir, "nested", "logs", keyStart.In(time.Local).Format("2006-01-02")+".log"): 0o644} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode want %o", path, err, mode)
		}
	}
	// a digits-only SENSOR_NAME is an int in Maltrail: "007" is written "7"
	r = d.run(d.base()+"SENSOR_NAME 007\n", Flags{}, first)
	if len(r.lines) != 1 || !strings.Contains(r.lines[0], `" 7 10.0.0.5 `) {
		t.Errorf("SENSOR_NAME 007: %q", r.lines)
	}
	// another trails file, other events
	other := filepath.Join(d.dir, "other.csv")
	if err := writeFile(other, "66.66.66.66,other file (malware),(static)\n"); err != nil {
		t.Fatal(err)
	}
	r = d.run("TRAILS_FILE "+other+"\nLOG_DIR {run}/log\n", Flags{}, first, second)
	if len(r.lines) != 1 || !strings.HasSuffix(r.lines[0], ` "other file (malware)" (static)`) {
		t.Errorf("TRAILS_FILE %s: %q", other, r.lines)
	}
}

// TestKeyOutputs: LOG_SERVER datagrams, DISABLE_LOCAL_LOG_STORAGE, the
// console (--console, and the fallback when nothing else is configured).
func TestKeyOutputs(t *testing.T) {
	d := newKeyDir(t)
	pcap := d.capture("ip", synTo(keyClient, 40000, keyBadIP, 443))
	line := `"` + localTime(keyStart) + `" - 10.0.0.5 40000 66.66.66.66 443 TCP IP 66.66.66.66 "keyed ip (malware)" (custom)`
	ln := listenUDP(t)

	r := d.run(d.base()+"LOG_SERVER "+ln.LocalAddr().String()+"\n", Flags{}, pcap)
	if got := readDatagram(t, ln); got != fmt.Sprintf("%d %s\n", keyStart.Unix(), line) {
		t.Errorf("LOG_SERVER datagram %q", got)
	}
	if strings.Join(r.lines, "\n") != line || r.console != "" {
		t.Errorf("LOG_DIR %q, console %q", r.lines, r.console)
	}

	r = d.run(d.base()+"LOG_SERVER "+ln.LocalAddr().String()+"\nDISABLE_LOCAL_LOG_STORAGE true\n", Flags{}, pcap)
	if got := readDatagram(t, ln); got != fmt.Sprintf("%d %s\n", keyStart.Unix(), line) {
		t.Errorf("LOG_SERVER datagram %q", got)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "log")); !os.IsNotExist(err) || r.console != "" {
		t.Errorf("DISABLE_LOCAL_LOG_STORAGE with LOG_SERVER: LOG_DIR %v, console %q", err, r.console)
	}

	r = d.run(d.base()+"DISABLE_LOCAL_LOG_STORAGE true\n", Flags{}, pcap)
	if r.console != line+"\n" || len(logDirLines(t, filepath.Join(r.dir, "log"))) != 0 {
		t.Errorf("DISABLE_LOCAL_LOG_STORAGE alone: console %q", r.console)
	}

	r = d.run(d.base(), Flags{Console: true}, pcap)
	if r.console != line+"\n" || strings.Join(r.lines, "\n") != line {
		t.Errorf("--console: console %q, LOG_DIR %q", r.console, r.lines)
	}
}

func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readDatagram(t *testing.T, c *net.UDPConn) string {
	t.Helper()
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

// TestKeyRemoteOutputs: SYSLOG_SERVER sends Maltrail's CEF to each of its
// endpoints, LOGSTASH_SERVER its JSON, both rated by REMOTE_SEVERITY_REGEX
// (the shipped expression when the key is absent).
func TestKeyRemoteOutputs(t *testing.T) {
	d := newKeyDir(t)
	pcap := d.capture("ip", synTo(keyClient, 40000, keyBadIP, 443), synTo(keyClient, 40001, netip.MustParseAddr("7.7.7.7"), 80))
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := listenUDP(t), listenUDP(t), listenUDP(t)
	conf := d.base() + "DISABLE_LOCAL_LOG_STORAGE true\n" +
		"SYSLOG_SERVER " + a.LocalAddr().String() + ", ;" + b.LocalAddr().String() + "\n" +
		"LOGSTASH_SERVER " + c.LocalAddr().String() + "\n"
	r := d.run(conf, Flags{}, pcap)
	if r.console != "" {
		t.Errorf("console %q: SYSLOG_SERVER is an output", r.console)
	}
	sig := time.Now().In(time.Local).Format("2006-01-02") // the trails file was written just now
	cef := func(at time.Time, sev, info, ext string) string {
		return at.In(time.Local).Format("Jan 02 15:04:05") + " " + host + " CEF:0|Maltrail|sensor|3.1.2|" + sig + "|" + info + "|" + sev + "|" + ext
	}
	wantCEF := []string{
		cef(keyStart, "2", "keyed ip (malware)", "src=10.0.0.5 spt=40000 dst=66.66.66.66 dpt=443 trail=66.66.66.66 ref=(custom)"),
		cef(keyStart.Add(time.Second), "0", "keyed ip (reputation)", "src=10.0.0.5 spt=40001 dst=7.7.7.7 dpt=80 trail=7.7.7.7 ref=(custom)"),
	}
	for _, ln := range []*net.UDPConn{a, b} {
		for _, want := range wantCEF {
			if got := readDatagram(t, ln); got != want {
				t.Errorf("CEF\n got %s\nwant %s", got, want)
			}
		}
	}
	json := func(sec int64, sev, port, dst, info string) string {
		return fmt.Sprintf(`{"timestamp": %d, "sensor": %q, "severity": %q, "src_ip": "10.0.0.5", "src_port": %s, "dst_ip": %q, "dst_port": %s, "proto": "TCP", "type": "IP", "trail": %q, "info": %q, "reference": "(custom)"}`,
			sec, host, sev, port, dst, map[string]string{"66.66.66.66": "443", "7.7.7.7": "80"}[dst], dst, info)
	}
	for _, want := range []string{json(keyStart.Unix(), "high", "40000", "66.66.66.66", "keyed ip (malware)"),
		json(keyStart.Unix()+1, "low", "40001", "7.7.7.7", "keyed ip (reputation)")} {
		if got := readDatagram(t, c); got != want {
			t.Errorf("JSON\n got %s\nwant %s", got, want)
		}
	}

	// an operator's expression; an empty one rates everything medium
	d.run(d.base()+"SYSLOG_SERVER "+a.LocalAddr().String()+"\nREMOTE_SEVERITY_REGEX (?P<low>keyed ip \\(malware)|(?P<high>reputation)\n", Flags{}, pcap)
	for _, sev := range []string{"|0|", "|2|"} {
		if got := readDatagram(t, a); !strings.Contains(got, sev) {
			t.Errorf("with REMOTE_SEVERITY_REGEX: %s, want severity %s", got, sev)
		}
	}
	d.run(d.base()+"SYSLOG_SERVER "+a.LocalAddr().String()+"\nREMOTE_SEVERITY_REGEX ''\n", Flags{}, pcap)
	for range 2 {
		if got := readDatagram(t, a); !strings.Contains(got, "|1|src=") {
			t.Errorf("with an empty REMOTE_SEVERITY_REGEX: %s, want medium", got)
		}
	}
}

// TestKeyNameChecks: CHECK_HOST_DOMAINS sends HTTP Host values through the
// domain check; USE_FAST_PREFILTER with FAST_FLOW_CUTOFF > 0 sends TLS and
// QUIC SNIs through it.
func TestKeyNameChecks(t *testing.T) {
	d := newKeyDir(t)
	pcap := d.capture("names", httpGet(40000, "hostevil.example", "/index.html"), tlsFrame(40001, "tls-evil.example"), quicFrame(40002, "quic-evil.example"))
	const host, sni, quic = "TCP DNS hostevil.example", "TCP DNS tls-evil.example", "UDP DNS quic-evil.example"
	for _, c := range []struct {
		conf            string
		host, sni, quic int
	}{
		{"", 0, 0, 0},
		{"CHECK_HOST_DOMAINS true\n", 1, 0, 0},
		{"CHECK_HOST_DOMAINS false\nUSE_FAST_PREFILTER true\n", 0, 1, 1}, // FAST_FLOW_CUTOFF is 4 by default
		{"USE_FAST_PREFILTER true\nFAST_FLOW_CUTOFF 1\n", 0, 1, 1},
		{"USE_FAST_PREFILTER true\nFAST_FLOW_CUTOFF 0\n", 0, 0, 0},
		{"USE_FAST_PREFILTER false\nFAST_FLOW_CUTOFF 4\n", 0, 0, 0},
	} {
		r := d.run(d.base()+c.conf, Flags{}, pcap)
		if r.count(host) != c.host || r.count(sni) != c.sni || r.count(quic) != c.quic || len(r.lines) != c.host+c.sni+c.quic {
			t.Errorf("%q: events\n%s\nwant %d Host, %d TLS, %d QUIC", c.conf, strings.Join(r.lines, "\n"), c.host, c.sni, c.quic)
		}
	}
}

// TestKeySnaplen: SNAPLEN_<kind> cuts the payload handed to the agent, so a
// match past the cut is missed, for that kind only.
func TestKeySnaplen(t *testing.T) {
	d := newKeyDir(t)
	long := strings.Repeat("a", 60) + ".evil-test-domain.com"
	pcap := d.capture("snap", dnsFrom(keyClient, 40000, long), httpGet(40001, "victim.example", "/malicious-login.php"),
		tlsFrame(40002, "tls-evil.example"), quicFrame(40003, "quic-evil.example"))
	conf := d.base() + "USE_FAST_PREFILTER true\n"
	kinds := map[string]string{"SNAPLEN_DNS": "UDP DNS (" + strings.TrimSuffix(long, ".evil-test-domain.com") + ").evil-test-domain.com", "SNAPLEN_HTTP": "TCP URL (victim.example)/malicious-login.php",
		"SNAPLEN_TLS": "TCP DNS tls-evil.example", "SNAPLEN_QUIC": "UDP DNS quic-evil.example"}
	r := d.run(conf+"SNAPLEN_DNS 0\nSNAPLEN_HTTP 1536\n", Flags{}, pcap)
	for _, ev := range kinds {
		if r.count(ev) != 1 {
			t.Errorf("full snapshots: no %q in\n%s", ev, strings.Join(r.lines, "\n"))
		}
	}
	for key, cut := range map[string]int{"SNAPLEN_DNS": 64, "SNAPLEN_HTTP": 16, "SNAPLEN_TLS": 64, "SNAPLEN_QUIC": 1000} {
		r := d.run(fmt.Sprintf("%s%s %d\n", conf, key, cut), Flags{}, pcap)
		for k, ev := range kinds {
			if want := map[bool]int{true: 0, false: 1}[k == key]; r.count(ev) != want {
				t.Errorf("%s %d: %d events %q, want %d", key, cut, r.count(ev), ev, want)
			}
		}
	}
}

// TestKeyRingSize: a small XDP_RING_SIZE loses records a replay batch
// would otherwise deliver, and says so.
func TestKeyRingSize(t *testing.T) {
	d := newKeyDir(t)
	frames := make([]pktbuild.Frame, 300)
	for i := range frames {
		frames[i] = dnsFrom(keyClient, uint16(40000+i), "evil-test-domain.com")
	}
	pcap := d.capture("many", frames...)
	conf := d.base() + "EVENT_THROTTLE_MODE off\n"
	r := d.run(conf, Flags{}, pcap)
	if len(r.lines) != 300 || strings.Contains(r.log, "xdp_ringbuf_full") {
		t.Errorf("default ring: %d events, want 300; log:\n%s", len(r.lines), r.log)
	}
	r = d.run(conf+"XDP_RING_SIZE 4K\n", Flags{}, pcap)
	if len(r.lines) >= 300 || !strings.Contains(r.log, "xdp_ringbuf_full") {
		t.Errorf("4 KiB ring: %d events, want fewer than 300 and ringbuf_full counted; log:\n%s", len(r.lines), r.log)
	}
}

// TestKeyThrottle: EVENT_THROTTLE_MODE and, for legacy, PROCESS_COUNT, on
// the corpus's 30 repeats of one query a second apart.
func TestKeyThrottle(t *testing.T) {
	d := newKeyDir(t)
	pcap := filepath.Join(testenv.SharedDir(t), "corpus", "repeated_detections.pcap")
	for _, c := range []struct {
		conf   string
		lines  int
		merged bool // the last line lists the ports of the events it stands for
	}{
		{"", 4, true}, // summarize: the first 3, then one line for the other 27
		{"EVENT_THROTTLE_MODE summarize\n", 4, true},
		{"EVENT_THROTTLE_MODE off\n", 30, false},
		{"EVENT_THROTTLE_MODE legacy\nPROCESS_COUNT 1\n", 30, false}, // a bucket a second
		{"EVENT_THROTTLE_MODE legacy\nPROCESS_COUNT 29\n", 4, false}, // two buckets, two lines each
	} {
		r := d.run(d.base()+c.conf, Flags{}, pcap)
		n := r.count("evil-test-domain.com")
		merged := n > 0 && strings.Contains(r.lines[len(r.lines)-1], "50203,50204")
		if n != c.lines || len(r.lines) != n || merged != c.merged {
			t.Errorf("%q: %d lines (merged %v), want %d (merged %v):\n%s", c.conf, len(r.lines), merged, c.lines, c.merged, strings.Join(r.lines, "\n"))
		}
	}
}

// TestWhitelistAndIgnore: USER_WHITELIST drops events on a whitelisted
// address except type DNS, leaves whitelisted names unchecked and drops
// whitelisted trails; USER_IGNORELIST drops events by
// src_ip;src_port;dst_ip;dst_port with '*' wildcards and "-" for no port.
func TestWhitelistAndIgnore(t *testing.T) {
	d := newKeyDir(t)
	wl, ig := filepath.Join(d.dir, "whitelist.txt"), filepath.Join(d.dir, "ignore.txt")
	if err := writeFile(wl, "# user whitelist\n10.0.0.5\n10.0.1.0/24\nsafe.evil-test-domain.com\n7.7.7.7\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(ig, "# user ignore list\n10.0.0.8; *; 66.66.66.66; 443\n*;*;*;8444\n10.0.0.10;50000;*;*\n10.0.0.11;*;*;53\n10.0.0.12;-;66.66.66.66;-\n"); err != nil {
		t.Fatal(err)
	}
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	ping := pktbuild.Frame{Src: ip("10.0.0.12"), Dst: keyBadIP, Proto: pktbuild.ICMP, ICMPType: 8}
	pingPass := pktbuild.Frame{Src: ip("10.0.0.13"), Dst: keyBadIP, Proto: pktbuild.ICMP, ICMPType: 8}
	pcap := d.capture("rules",
		synTo(ip("10.0.0.5"), 40000, keyBadIP, 443),                 // whitelisted source: dropped
		synTo(ip("10.0.0.6"), 40001, keyBadIP, 443),                 // passes
		dnsFrom(ip("10.0.0.5"), 40002, "evil-test-domain.com"),      // type DNS: passes
		synTo(ip("10.0.1.9"), 40003, keyBadIP, 443),                 // whitelisted CIDR: dropped
		dnsFrom(ip("10.0.0.6"), 40004, "safe.evil-test-domain.com"), // whitelisted name: not checked
		dnsFrom(ip("10.0.0.6"), 40005, "x.evil-test-domain.com"),    // passes
		synTo(ip("10.0.0.6"), 40006, ip("7.7.7.7"), 80),             // whitelisted trail: never loaded
		synTo(ip("10.0.0.8"), 40007, keyBadIP, 443),                 // ignored
		synTo(ip("10.0.0.8"), 40008, keyBadIP, 8443),                // another port: passes
		synTo(ip("10.0.0.9"), 40009, keyBadIP, 8444),                // ignored: any to 8444
		synTo(ip("10.0.0.10"), 50000, keyBadIP, 443),                // ignored: that source port
		synTo(ip("10.0.0.10"), 50001, keyBadIP, 443),                // passes
		dnsFrom(ip("10.0.0.11"), 40010, "evil-test-domain.com"),     // ignored, DNS too
		ping,     // ignored: no ports is "-"
		pingPass, // passes
	)
	at := func(i int) string { return `"` + localTime(keyStart.Add(time.Duration(i)*time.Second)) + `" - ` }
	want := []string{
		at(1) + `10.0.0.6 40001 66.66.66.66 443 TCP IP 66.66.66.66 "keyed ip (malware)" (custom)`,
		at(2) + `10.0.0.5 40002 10.0.0.53 53 UDP DNS evil-test-domain.com "keyed domain (malware)" (custom)`,
		at(5) + `10.0.0.6 40005 10.0.0.53 53 UDP DNS (x).evil-test-domain.com "keyed domain (malware)" (custom)`,
		at(8) + `10.0.0.8 40008 66.66.66.66 8443 TCP IP 66.66.66.66 "keyed ip (malware)" (custom)`,
		at(11) + `10.0.0.10 50001 66.66.66.66 443 TCP IP 66.66.66.66 "keyed ip (malware)" (custom)`,
		at(14) + `10.0.0.13 - 66.66.66.66 - ICMP IP 66.66.66.66 "keyed ip (malware)" (custom)`,
	}
	r := d.run(d.base()+"EVENT_THROTTLE_MODE off\nUSER_WHITELIST "+wl+"\nUSER_IGNORELIST "+ig+"\n", Flags{}, pcap)
	if strings.Join(r.lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("LOG_DIR lines\n%s\nwant\n%s", strings.Join(r.lines, "\n"), strings.Join(want, "\n"))
	}
	// without the two files every event of the capture is reported
	r = d.run(d.base()+"EVENT_THROTTLE_MODE off\n", Flags{}, pcap)
	if len(r.lines) != 15 {
		t.Errorf("without USER_WHITELIST and USER_IGNORELIST: %d events, want 15:\n%s", len(r.lines), strings.Join(r.lines, "\n"))
	}
}

// TestKeyD4: the D4_* keys, against xtrail's D4 server on loopback TLS. The
// server's certificate names d4.xtrail.test only, so with D4_SERVER at
// 127.0.0.1 the connection verifies only with D4_SERVER_NAME (and D4_CA),
// or without verification (DISABLE_D4_TLS_VERIFY).
func TestKeyD4(t *testing.T) {
	d := newKeyDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pki := filepath.Join(d.dir, "pki")
	if err := certs.Generate(pki, []string{"d4.xtrail.test"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	id, err := d4.NewUUIDv4()
	if err != nil {
		t.Fatal(err)
	}
	other, err := d4.NewUUIDv4()
	if err != nil {
		t.Fatal(err)
	}
	const key = "keys test hmac key"
	keyFile := filepath.Join(d.dir, "sensor.key")
	if err := writeFile(keyFile, key+"\n"); err != nil {
		t.Fatal(err)
	}
	store := d4server.NewMemStore(0)
	queue, err := store.RegisterQueue(ctx, "maltrail", "", "keys test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := d4server.New(d4server.Config{Store: store, Mode: d4server.ModeRegistration,
		Keys: map[string][]byte{id.Hex(): []byte(key), other.Hex(): []byte("another key")}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := d4server.ListenTLS("127.0.0.1:0", filepath.Join(pki, certs.CertFile), filepath.Join(pki, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()

	lineFrom := func(sport int) string {
		return fmt.Sprintf(`%d "%s" - 10.0.0.5 %d 66.66.66.66 443 TCP IP 66.66.66.66 "keyed ip (malware)" (custom)`, keyStart.Unix(), localTime(keyStart), sport)
	}
	server := "DISABLE_LOCAL_LOG_STORAGE true\nD4_SERVER " + ln.Addr().String() + "\n"
	ca := "D4_CA " + filepath.Join(pki, certs.CAFile) + "\n"
	good := "D4_UUID " + id.String() + "\nD4_KEY " + key + "\n"
	certPEM, err := os.ReadFile(filepath.Join(pki, certs.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatal("no PEM block in the server certificate")
	}
	pin := d4.CertFingerprint(blk.Bytes)
	for i, c := range []struct {
		name, conf string
		stored     bool
	}{
		{"key, CA and server name", good + ca + "D4_SERVER_NAME d4.xtrail.test\n", true},
		{"key file", "D4_UUID " + id.String() + "\nD4_KEY_FILE " + keyFile + "\n" + ca + "D4_SERVER_NAME d4.xtrail.test\n", true},
		{"no verification", good + "DISABLE_D4_TLS_VERIFY true\n", true},
		{"name not in the certificate", good + ca, false},
		{"no CA", good + "D4_SERVER_NAME d4.xtrail.test\n", false},
		{"verification not disabled", good + "DISABLE_D4_TLS_VERIFY false\n", false},
		{"pinned certificate", good + "D4_SERVER_SHA256 " + hex.EncodeToString(pin[:]) + "\n", true},
		{"another certificate pinned", good + "D4_SERVER_SHA256 " + strings.Repeat("ab", 32) + "\n", false},
		{"another sensor's uuid", "D4_UUID " + other.String() + "\nD4_KEY " + key + "\nDISABLE_D4_TLS_VERIFY true\n", false},
		{"wrong key", "D4_UUID " + id.String() + "\nD4_KEY not the key\nDISABLE_D4_TLS_VERIFY true\n", false},
	} {
		before := srv.Stats().Lines
		// Each run sends a line of its own (its source port): the server
		// stores a payload another session of the sensor stored only once
		// (it takes it for a resend).
		sport := 40000 + i
		pcap := d.capture(fmt.Sprintf("ip%d", i), synTo(keyClient, uint16(sport), keyBadIP, 443))
		line := lineFrom(sport)
		// a spool per case: a refused case's line must not reach the next
		spool := fmt.Sprintf("D4_SPOOL_DIR %s/spool%d\n", d.dir, i)
		r := d.run(d.base()+server+spool+c.conf, Flags{}, pcap)
		if r.console != "" {
			t.Errorf("%s: console %q: D4_SERVER is an output", c.name, r.console)
		}
		// the server stores what the client flushed as Run returned a
		// moment later: wait for the line, or long enough for one to show
		wait := time.Now().Add(500 * time.Millisecond)
		if c.stored {
			wait = time.Now().Add(10 * time.Second)
		}
		for srv.Stats().Lines == before && time.Now().Before(wait) {
			time.Sleep(10 * time.Millisecond)
		}
		stored := srv.Stats().Lines - before
		if !c.stored {
			if stored != 0 {
				t.Errorf("%s: the server stored %d lines", c.name, stored)
			}
			continue
		}
		if stored != 1 {
			t.Errorf("%s: the server stored %d lines, want 1\n%s", c.name, stored, r.log)
			continue
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := store.Queue("maltrail", queue).Next(pctx, 0, nil, 1)
		pcancel()
		got := ""
		if len(b.Lines) > 0 {
			got = b.Lines[0]
		}
		if err != nil || strings.TrimSuffix(got, "\n") != line {
			t.Errorf("%s: stored %q (%v)\nwant %q", c.name, got, err, line)
		}
	}
}

// httpUA is a GET of path from keyClient with a User-Agent header.
func httpUA(sport uint16, path, ua string) pktbuild.Frame {
	return pktbuild.Frame{Src: keyClient, Dst: netip.MustParseAddr("203.0.113.10"), Proto: pktbuild.TCP, Sport: sport, Dport: 80,
		TCPFlags: pktbuild.ACK | pktbuild.PSH,
		Payload:  []byte("GET " + path + " HTTP/1.1\r\nHost: victim.example\r\nUser-Agent: " + ua + "\r\nAccept: */*\r\n\r\n")}
}

// TestKeyHeuristicLists: USER_AGENTS_FILE replaces the built-in suspicious
// user agents, WHITELIST_UA_REGEX exempts the user agents it matches, and
// WHITELIST_HTTP_REQUEST_PATHS replaces the path snippets exempt from the
// request checks, through the sensor.
func TestKeyHeuristicLists(t *testing.T) {
	d := newKeyDir(t)
	ua := filepath.Join(d.dir, "ua.txt")
	if err := writeFile(ua, "# our own list\nevilbot\n"); err != nil {
		t.Fatal(err)
	}
	pcap := d.capture("lists", httpUA(40000, "/index.html", "evilbot/1.0"), httpUA(40001, "/index.html", "sqlmap/1.7"),
		httpUA(40002, "/a/../../etc/passwd", "Mozilla/5.0"))
	const evil, sqlmap, traversal = "UA evilbot(/1.0)", "UA sqlmap(/1.7)", "potential directory traversal"
	base := d.base() + "USE_HEURISTICS true\n"
	for _, c := range []struct {
		conf                    string
		evil, sqlmap, traversal int
	}{
		{"", 0, 1, 1}, // the built-in list knows sqlmap, not evilbot
		{"USER_AGENTS_FILE " + ua + "\n", 1, 0, 1},           // the file replaces the list
		{"WHITELIST_UA_REGEX (?i)^SQLMAP/\n", 0, 0, 1},       // exempt
		{"WHITELIST_HTTP_REQUEST_PATHS /a/, /b/\n", 0, 1, 0}, // the request under /a/ is exempt
	} {
		r := d.run(base+c.conf, Flags{}, pcap)
		if r.count(evil) != c.evil || r.count(sqlmap) != c.sqlmap || r.count(traversal) != c.traversal ||
			len(r.lines) != c.evil+c.sqlmap+c.traversal {
			t.Errorf("%q: events\n%s\nwant %d evilbot, %d sqlmap, %d traversal", c.conf, strings.Join(r.lines, "\n"), c.evil, c.sqlmap, c.traversal)
		}
	}
}
