package sink

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/maltrail"
)

var _ Sink = (*Remote)(nil)

// The event of the spec §3.3 CEF example: spec §2's first line with the
// trail of its second.
const (
	specSec  = 1786094062
	specLine = `"2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS (511mon).kozow.com "asyncrat (malware)" (static)` + "\n"
)

func defaultSeverity(t testing.TB) *Severity {
	t.Helper()
	s, err := NewSeverity(DefaultSeverityRegex)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// specCEF is the CEF of the spec's example: host gw, trails file changed on
// 2026-08-22, UTC.
func specCEF(t testing.TB) *CEF {
	return &CEF{Host: "gw", Version: maltrail.Version, TrailsFile: "/trails.csv", Loc: time.UTC, Severity: defaultSeverity(t),
		ctime: func(string) (time.Time, error) { return time.Date(2026, 8, 22, 3, 0, 0, 0, time.UTC), nil }}
}

func format(t *testing.T, fn func([]byte, int64, *maltrail.LineFields) []byte, sec int64, line string) string {
	t.Helper()
	var f maltrail.LineFields
	if err := f.Split([]byte(line)); err != nil {
		t.Fatal(err)
	}
	return string(fn(nil, sec, &f))
}

func TestCEFSpecExample(t *testing.T) {
	got := format(t, specCEF(t).Append, specSec, specLine)
	want := `Aug 07 09:14:22 gw CEF:0|Maltrail|sensor|3.1.2|2026-08-22|asyncrat (malware)|2|src=10.13.13.2 spt=57809 dst=1.1.1.1 dpt=53 trail=(511mon).kozow.com ref=(static)`
	if got != want {
		t.Errorf("CEF\n got %s\nwant %s", got, want)
	}
}

func TestCEFEscapingAndPortless(t *testing.T) {
	c := specCEF(t)
	c.Loc = time.FixedZone("X", -5*3600) // the time and the signature date are local
	line := `"t x" s 10.0.0.5 - 66.66.66.66 - ICMP URL "a=b\c|d" "bad|info\ (reputation)" "ref=x"` + "\n"
	got := format(t, c.Append, specSec, line)
	want := `Aug 07 04:14:22 gw CEF:0|Maltrail|sensor|3.1.2|2026-08-21|bad\|info\\ (reputation)|0|src=10.0.0.5 spt=- dst=66.66.66.66 dpt=- trail=a\=b\\c|d ref=ref\=x`
	if got != want {
		t.Errorf("CEF\n got %s\nwant %s", got, want)
	}
}

// The signature id is the trails file's date, looked at again only every
// five minutes; a file that cannot be read gives today's date.
func TestCEFSignatureRefresh(t *testing.T) {
	now := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	ctime := time.Date(2026, 8, 22, 3, 0, 0, 0, time.UTC)
	var ctimeErr error
	stats := 0
	c := &CEF{Host: "h", Version: "v", TrailsFile: "/t", Loc: time.UTC, Severity: defaultSeverity(t),
		now:   func() time.Time { return now },
		ctime: func(string) (time.Time, error) { stats++; return ctime, ctimeErr }}
	sig := func() string { return string(c.signature()) }
	if s := sig(); s != "2026-08-22" || stats != 1 {
		t.Fatalf("signature %s after %d stats", s, stats)
	}
	ctime = ctime.AddDate(0, 0, 1)
	now = now.Add(4 * time.Minute)
	if s := sig(); s != "2026-08-22" || stats != 1 {
		t.Fatalf("signature %s after %d stats within five minutes", s, stats)
	}
	now = now.Add(time.Minute)
	if s := sig(); s != "2026-08-23" || stats != 2 {
		t.Fatalf("signature %s after %d stats, five minutes on", s, stats)
	}
	ctimeErr = errors.New("gone")
	now = now.Add(5 * time.Minute)
	if s := sig(); s != "2026-09-01" {
		t.Fatalf("signature %s for an unreadable file, want today", s)
	}
	// the real stat: a file changed just now has today's date
	p := t.TempDir() + "/trails.csv"
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	real := &CEF{TrailsFile: p, Loc: time.Local}
	if s, want := string(real.signature()), time.Now().Format("2006-01-02"); s != want {
		t.Errorf("signature of a fresh file %s, want %s", s, want)
	}
}

func TestJSONSpecLayout(t *testing.T) {
	j := &JSON{Host: "gw", Severity: defaultSeverity(t)}
	got := format(t, j.Append, specSec, specLine)
	want := `{"timestamp": 1786094062, "sensor": "gw", "severity": "high", "src_ip": "10.13.13.2", "src_port": 57809, "dst_ip": "1.1.1.1", "dst_port": 53, "proto": "UDP", "type": "DNS", "trail": "(511mon).kozow.com", "info": "asyncrat (malware)", "reference": "(static)"}`
	if got != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
	// condensed ports and portless events give strings
	line := `"t x" s 10.0.0.5,203.0.113.9 50001,50002 66.66.66.66 - ICMP IP 66.66.66.66 "mass scanner" (static)` + "\n"
	got = format(t, j.Append, 7, line)
	want = `{"timestamp": 7, "sensor": "gw", "severity": "low", "src_ip": "10.0.0.5,203.0.113.9", "src_port": "50001,50002", "dst_ip": "66.66.66.66", "dst_port": "-", "proto": "ICMP", "type": "IP", "trail": "66.66.66.66", "info": "mass scanner", "reference": "(static)"}`
	if got != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
}

// TestJSONMatchesPython renders events with awkward values through the
// JSON format and through Python's json.dumps, which Maltrail uses.
func TestJSONMatchesPython(t *testing.T) {
	python := testenv.RequireBinary(t, "python3")
	type ev struct {
		Sensor, SrcIP string
		SrcPort       any
		DstIP         string
		DstPort       any
		Proto, Type   string
		Trail, Info   string
		Ref           string
	}
	events := []ev{
		{"gw", "10.13.13.2", 57809, "1.1.1.1", 53, "UDP", "DNS", "(511mon).kozow.com", "asyncrat (malware)", "(static)"},
		{"h ö", "dead::1", 1, "dead::beef", 65535, "TCP", "URL", `x.example/a?b="c"&d=\e`, "potential sql injection (suspicious)", "(heuristic)"},
		{"s", "10.0.0.5", "50000,50001", "1.2.3.4", "-", "TCP", "UA", "Mozilla\t\x01\x1f\x7f é€😀", "user agent (suspicious)", "(heuristic)"},
		{"s", "10.0.0.5", "0", "1.2.3.4", "080", "TCP", "IP", "\x08\x0c/", "x", "y"},
	}
	// The Python side gets the tuple; its ports are ints where Maltrail's are.
	var script bytes.Buffer
	script.WriteString("import json,sys\nfrom collections import OrderedDict\n")
	script.WriteString("for e in json.load(sys.stdin):\n")
	script.WriteString("    print(json.dumps(OrderedDict((('timestamp', 1786094062), ('sensor', e[0]), ('severity', 'medium'), ('src_ip', e[1]), ('src_port', e[2]), ('dst_ip', e[3]), ('dst_port', e[4]), ('proto', e[5]), ('type', e[6]), ('trail', e[7]), ('info', e[8]), ('reference', e[9])))))\n")
	var in [][]any
	for _, e := range events {
		in = append(in, []any{e.Sensor, e.SrcIP, e.SrcPort, e.DstIP, e.DstPort, e.Proto, e.Type, e.Trail, e.Info, e.Ref})
	}
	input, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", script.String())
	cmd.Stdin = bytes.NewReader(input)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	want := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(want) != len(events) {
		t.Fatalf("python printed %d lines for %d events", len(want), len(events))
	}
	sev, err := NewSeverity("") // every event medium
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		r := maltrail.Renderer{Sensor: e.Sensor, Loc: time.UTC}
		line := r.AppendTextLine(nil, &maltrail.TextEvent{Time: time.Unix(specSec, 0), SrcIP: e.SrcIP, SrcPort: fmt.Sprint(e.SrcPort),
			DstIP: e.DstIP, DstPort: fmt.Sprint(e.DstPort), Proto: e.Proto, Type: e.Type, Trail: e.Trail, Info: e.Info, Reference: e.Ref})
		j := &JSON{Host: e.Sensor, Severity: sev}
		if got := format(t, j.Append, specSec, string(line)); got != want[i] {
			t.Errorf("event %d\n   go %s\npython %s", i, got, want[i])
		}
	}
}

func TestJSONInvalidUTF8(t *testing.T) {
	got := string(appendJSONString(nil, []byte("a\xffb\xe2\x82")))
	if got != `"a\ufffdb\ufffd\ufffd"` {
		t.Errorf("got %s", got)
	}
	if !json.Valid([]byte(got)) {
		t.Error("not valid JSON")
	}
}

func TestSeverity(t *testing.T) {
	def := defaultSeverity(t)
	for info, want := range map[string]Level{
		"asyncrat (malware)":           High,
		"ransomware (malware)":         High,
		"sinkhole conficker (malware)": High,
		"apt darkhotel (adversary)":    High,
		"custom trail (custom)":        High,
		"malware distribution":         Medium,
		"potential malware site":       Medium,
		"known malware site":           Medium, // "malware site" is not high, and nothing else matches
		"malware sites and reputation": Low,    // ... so the search goes on to "reputation"
		"malware":                      High,
		"malware distributions":        Medium,
		"malware  site":                High,
		"c2 cert":                      Medium,
		"dynamic domain (suspicious)":  Medium,
		"mass scanner":                 Low,
		"known attacker":               Low,
		"bad reputation":               Low,
		"":                             Medium,
	} {
		if got := def.Of([]byte(info)); got != want {
			t.Errorf("%q: %s, want %s", info, got, want)
		}
	}
	// the first of low, medium and high that matched wins; an empty match
	// does not count
	s, err := NewSeverity(`(?P<high>evil)?(?P<low>x*)(?P<medium>evil)?`)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Of([]byte("evil")); got != High {
		t.Errorf("empty low group won: %s", got)
	}
	none, err := NewSeverity("")
	if err != nil || none.Of([]byte("asyncrat (malware)")) != Medium {
		t.Errorf("empty expression: %v", err)
	}
	for _, bad := range []string{`malware(?! site)`, `(?P<high>(a)\1)`, `(unclosed`, `malware|scanner`} {
		if _, err := NewSeverity(bad); err == nil {
			t.Errorf("NewSeverity(%q) accepted", bad)
		}
	}
}

func TestSeverityCacheBound(t *testing.T) {
	s := defaultSeverity(t)
	for i := range severityCacheMax + 10 {
		s.Of(fmt.Appendf(nil, "info %d malware", i))
	}
	if n := len(s.cache); n > severityCacheMax {
		t.Errorf("cache holds %d infos, bound %d", n, severityCacheMax)
	}
	if s.Of([]byte("info 1 malware")) != High {
		t.Error("a rating after the cache restarted is wrong")
	}
}

// maltrailSeverityRegex is the REMOTE_SEVERITY_REGEX of Maltrail's
// maltrail.conf, in Python's syntax (spec §3.3).
const maltrailSeverityRegex = `(?P<high>(remote )?custom\)|iot-malware|malware(?! (distribution|site))|adversary|ransomware)|(?P<medium>potential malware site|malware distribution|c2 cert)|(?P<low>mass scanner|reputation|attacker|spammer|compromised|crawler|scanning)`

// TestDefaultSeverityMatchesPython rates every info of the real trails
// file, and infos made to probe the look-ahead, with DefaultSeverityRegex
// and with Maltrail's expression in Python's re.
func TestDefaultSeverityMatchesPython(t *testing.T) {
	python := testenv.RequireBinary(t, "python3")
	infos := map[string]bool{}
	for _, s := range []string{"malware", "malware ", "malware d", "malware dis", "malware distribution", "malware distributio",
		"malware distributionx", "xmalware distribution", "malware site", "malware sit", "malware sitex", "malware  site",
		"a malware site scanning", "malware sitescanning", "potential malware site", "malware\tsite", "malware-site",
		"remote custom)", "custom)", "iot-malware", "c2 cert", "mass scanner", "reputation", "attacker", "é malware site"} {
		infos[s] = true
	}
	f, err := os.Open(testenv.StaticTrailsPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		first, last := strings.IndexByte(line, ','), strings.LastIndexByte(line, ',')
		if first >= 0 && last > first {
			infos[line[first+1:last]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var list []string
	for s := range infos {
		list = append(list, s)
	}
	script := "import re,sys\nrx=re.compile(sys.argv[1])\n" +
		"for info in sys.stdin.read().split('\\n'):\n" +
		"    m=rx.search(info); g=m.groupdict() if m else {}\n" +
		"    print(next((k for k in ('low','medium','high') if g.get(k)), 'medium'))\n"
	cmd := exec.Command(python, "-c", script, maltrailSeverityRegex)
	cmd.Stdin = strings.NewReader(strings.Join(list, "\n"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	want := strings.Fields(string(out))
	if len(want) != len(list) {
		t.Fatalf("python rated %d infos of %d", len(want), len(list))
	}
	def := defaultSeverity(t)
	bad := 0
	for i, info := range list {
		if got := def.Of([]byte(info)).String(); got != want[i] {
			bad++
			if bad <= 10 {
				t.Errorf("%q: %s, Python %s", info, got, want[i])
			}
		}
	}
	t.Logf("%d infos rated, %d differ", len(list), bad)
}

func TestSplitEndpoints(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.3.4:514":                     "1.2.3.4:514",
		"1.2.3.4:514, 5.6.7.8:514":        "1.2.3.4:514|5.6.7.8:514",
		" [::1]:514;1.2.3.4:514\t a:1 ,;": "[::1]:514|1.2.3.4:514|a:1",
		"":                                "",
		",; ":                             "",
	} {
		if got := strings.Join(SplitEndpoints(in), "|"); got != want {
			t.Errorf("SplitEndpoints(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRemoteSendsToEveryEndpoint(t *testing.T) {
	a, b := listenUDP(t, "udp4", "127.0.0.1:0"), listenUDP(t, "udp4", "127.0.0.1:0")
	eps := a.LocalAddr().String() + " ,; " + b.LocalAddr().String()
	syslog, err := NewSyslog(eps, specCEF(t))
	if err != nil {
		t.Fatal(err)
	}
	defer syslog.Close()
	if want := "syslog:" + a.LocalAddr().String() + "," + b.LocalAddr().String(); syslog.Name() != want {
		t.Errorf("Name = %s, want %s", syslog.Name(), want)
	}
	if err := syslog.Emit(specSec, []byte(specLine)); err != nil {
		t.Fatal(err)
	}
	want := `Aug 07 09:14:22 gw CEF:0|Maltrail|sensor|3.1.2|2026-08-22|asyncrat (malware)|2|src=10.13.13.2 spt=57809 dst=1.1.1.1 dpt=53 trail=(511mon).kozow.com ref=(static)`
	for _, ln := range []*net.UDPConn{a, b} {
		if got := readDatagram(t, ln); string(got) != want {
			t.Errorf("datagram %q, want %q", got, want)
		}
	}
	if syslog.Sent() != 2 || syslog.Errors() != 0 {
		t.Errorf("sent %d errors %d", syslog.Sent(), syslog.Errors())
	}

	logstash, err := NewLogstash(a.LocalAddr().String(), &JSON{Host: "gw", Severity: defaultSeverity(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := logstash.Emit(specSec, []byte(specLine)); err != nil {
		t.Fatal(err)
	}
	if got := readDatagram(t, a); !bytes.HasPrefix(got, []byte(`{"timestamp": 1786094062, "sensor": "gw", "severity": "high", `)) || !json.Valid(got) {
		t.Errorf("logstash datagram %s", got)
	}
	// a line that is not a log line is refused and counted
	if err := logstash.Emit(1, []byte("garbage\n")); !errors.Is(err, maltrail.ErrLine) || logstash.Errors() != 1 {
		t.Errorf("garbage: %v, errors %d", err, logstash.Errors())
	}
	emitAfterClose(t, logstash)
}

// A send that fails twice is counted, and the other endpoints still get
// the event.
func TestRemoteFailingEndpoint(t *testing.T) {
	good := listenUDP(t, "udp4", "127.0.0.1:0")
	r, err := NewLogstash("127.0.0.1:9 "+good.LocalAddr().String(), &JSON{Host: "h", Severity: defaultSeverity(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.eps[0].dst = netip.AddrPortFrom(r.eps[0].dst.Addr(), 0) // port 0: every send fails
	r.eps[0].addr = "127.0.0.1:0"                             // and so does the resolve before the retry
	if err := r.Emit(specSec, []byte(specLine)); err == nil {
		t.Error("a failing endpoint reported no error")
	}
	if got := readDatagram(t, good); !json.Valid(got) {
		t.Errorf("the good endpoint got %q", got)
	}
	if r.Sent() != 1 || r.Errors() != 1 {
		t.Errorf("sent %d errors %d, want 1 and 1", r.Sent(), r.Errors())
	}
}

func TestNewRemoteErrors(t *testing.T) {
	for _, c := range []struct{ value, says string }{
		{"", "no endpoint"},
		{",; ", "no endpoint"},
		{"192.168.2.107", "host:port"},
		{"127.0.0.1:514, 192.168.2.107", `"192.168.2.107" must be host:port`},
		{"127.0.0.1:", "host and port"},
	} {
		r, err := NewSyslog(c.value, specCEF(t))
		if err == nil {
			r.Close()
			t.Errorf("NewSyslog(%q) accepted", c.value)
			continue
		}
		if !strings.Contains(err.Error(), "SYSLOG_SERVER") || !strings.Contains(err.Error(), c.says) {
			t.Errorf("NewSyslog(%q): %v; want SYSLOG_SERVER and %q", c.value, err, c.says)
		}
	}
}

func TestRemoteEmitAllocs(t *testing.T) {
	ln := listenUDP(t, "udp4", "127.0.0.1:0")
	syslog, err := NewSyslog(ln.LocalAddr().String(), &CEF{Host: "gw", Version: maltrail.Version, Severity: defaultSeverity(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer syslog.Close()
	logstash, err := NewLogstash(ln.LocalAddr().String(), &JSON{Host: "gw", Severity: defaultSeverity(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer logstash.Close()
	line := []byte(specLine)
	for _, r := range []*Remote{syslog, logstash} {
		_ = r.Emit(specSec, line)
		if n := testing.AllocsPerRun(200, func() { _ = r.Emit(specSec, line) }); n != 0 {
			t.Errorf("%s: Emit allocates %.1f times per event", r.Name(), n)
		}
	}
}

func BenchmarkSyslogEmit(b *testing.B) {
	benchEmit(b, func(addr string) (Sink, error) { return NewSyslog(addr, specCEF(b)) }, specLine)
}

func BenchmarkLogstashEmit(b *testing.B) {
	benchEmit(b, func(addr string) (Sink, error) {
		return NewLogstash(addr, &JSON{Host: "gw", Severity: defaultSeverity(b)})
	}, specLine)
}
