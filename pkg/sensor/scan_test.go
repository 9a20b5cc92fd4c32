package sensor

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

func parseConf(t *testing.T, text string) *maltrail.Config {
	t.Helper()
	cfg, err := maltrail.ParseConfig(strings.NewReader(text), "test.conf", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestScanOptions(t *testing.T) {
	all := dataplane.Scan{Port: true, UDP: true, Infection: true, Window: 30 * time.Second}
	cases := []struct {
		conf string
		want dataplane.Scan
		err  string // a substring of the error; "" = accepted
	}{
		{"", dataplane.Scan{Window: 30 * time.Second}, ""},
		{"USE_HEURISTICS false", dataplane.Scan{Window: 30 * time.Second}, ""},
		{"USE_HEURISTICS true", all, ""},
		{"USE_HEURISTICS true\nSCAN_WINDOW 1", dataplane.Scan{Port: true, UDP: true, Infection: true, Window: time.Second}, ""},
		{"USE_HEURISTICS true\nSCAN_WINDOW 3600", dataplane.Scan{Port: true, UDP: true, Infection: true, Window: time.Hour}, ""},
		{"USE_HEURISTICS true\nSCAN_WINDOW", dataplane.Scan{}, "SCAN_WINDOW is an array, not an integer: want 1..3600 seconds"},
		{"USE_HEURISTICS true\nDISABLED_HEURISTICS port_scanning, Infection", dataplane.Scan{UDP: true, Window: 30 * time.Second}, ""},
		{"USE_HEURISTICS true\nDISABLED_HEURISTICS udp_scanning web_scanning\tdns_exhaustion,long_domain", dataplane.Scan{Port: true, Infection: true, Window: 30 * time.Second}, ""},
		{"USE_HEURISTICS true\nDISABLED_HEURISTICS\n  infection\n  udp_scanning", dataplane.Scan{Port: true, Window: 30 * time.Second}, ""},
		{"USE_HEURISTICS true\nDISABLED_HEURISTICS", all, ""},
		{"USE_HEURISTICS true\nDISABLED_HEURISTICS port_scaning", dataplane.Scan{}, `DISABLED_HEURISTICS: unknown heuristic "port_scaning": want some of port_scanning udp_scanning infection`},
		{"SCAN_WINDOW 0", dataplane.Scan{}, "SCAN_WINDOW 0: want 1..3600 seconds"},
		{"SCAN_WINDOW 3601", dataplane.Scan{}, "SCAN_WINDOW 3601: want 1..3600 seconds"},
		{"SCAN_WINDOW 30s", dataplane.Scan{}, `SCAN_WINDOW: "30s" is not a decimal integer: want 1..3600 seconds`},
		{"SCAN_WINDOW -5", dataplane.Scan{}, `SCAN_WINDOW: "-5" is not a decimal integer: want 1..3600 seconds`},
	}
	for _, c := range cases {
		got, err := ScanOptions(parseConf(t, c.conf))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one with %q", c.conf, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %+v, %v; want %+v", c.conf, got, err, c.want)
		}
	}
	// Configure stops at a bad value and passes a good one on
	dir := t.TempDir()
	base := "LOG_DIR " + dir + "\nUSE_HEURISTICS true\n"
	if st, err := Configure(parseConf(t, base+"SCAN_WINDOW 0"), Flags{Pcaps: []string{"x.pcap"}}, nil); err == nil {
		st.Sinks.Close()
		t.Error("Configure accepted SCAN_WINDOW 0")
	}
	st, err := Configure(parseConf(t, base+"SCAN_WINDOW 60\nDISABLED_HEURISTICS infection"), Flags{Pcaps: []string{"x.pcap"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.Sinks.Close()
	if want := (dataplane.Scan{Port: true, UDP: true, Window: time.Minute}); st.Options.Scan != want {
		t.Errorf("Configure: scan %+v, want %+v", st.Options.Scan, want)
	}
}

// scanRec is a raw KindScan record as the program writes it.
func scanRec(kind uint8, proto uint8, src, dst netip.Addr, sport, dport uint16, at time.Time) []byte {
	b := rec(dataplane.KindScan, 0, 0, proto, src, dst, sport, dport, 11, at, nil)
	b[23] = kind
	return b
}

func TestAgentScanEvents(t *testing.T) {
	at := time.Date(2026, 8, 7, 9, 14, 22, 117034000, time.UTC)
	src, dst := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("198.51.100.7")
	src6, dst6 := netip.MustParseAddr("2001:db8::9"), netip.MustParseAddr("2001:db8:0:0:1::7")
	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"port", scanRec(dataplane.ScanPort, 6, src, dst, 40000, 1000, at),
			`"2026-08-07 09:14:22.117034" gw 203.0.113.9 40000 198.51.100.7 1000 TCP IP 203.0.113.9 "potential port scanning" (heuristic)`},
		{"udp", scanRec(dataplane.ScanUDP, 17, src, dst, 40000, 1000, at),
			`"2026-08-07 09:14:22.117034" gw 203.0.113.9 40000 198.51.100.7 1000 UDP IP 203.0.113.9 "potential udp scanning" (heuristic)`},
		{"infection", scanRec(dataplane.ScanInfection, 6, src, dst, 53000, 445, at),
			`"2026-08-07 09:14:22.117034" gw 203.0.113.9 53000 198.51.100.7 445 TCP PORT 445 "potential infection" (heuristic)`},
		{"ipv6 port", scanRec(dataplane.ScanPort, 6, src6, dst6, 40000, 22, at),
			`"2026-08-07 09:14:22.117034" gw 2001:db8::9 40000 2001:db8::1:0:0:7 22 TCP IP 2001:db8::9 "potential port scanning" (heuristic)`},
	}
	for _, c := range cases {
		out := newCapture()
		a := NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Whitelist: trails.DefaultWhitelist()},
			Render: &maltrail.Renderer{Sensor: "gw", Loc: time.UTC}, Out: out})
		a.Handle(c.raw)
		a.Flush() // port scans and infections are condensed until a flush
		if got := out.get(); len(got) != 1 || got[0] != c.want+"\n" {
			t.Errorf("%s: got %q\nwant %q", c.name, got, c.want+"\n")
		}
	}

	// one source scanning three hosts within condensing's 10 s: Maltrail
	// condenses port scans (and infections) per (src, trail) into one line
	out := newCapture()
	a := NewAgent(AgentConfig{Meta: fakeMeta{}, Render: &maltrail.Renderer{Sensor: "gw", Loc: time.UTC}, Out: out})
	for i, d := range []string{"198.51.100.3", "198.51.100.1", "198.51.100.2"} {
		a.Handle(scanRec(dataplane.ScanPort, 6, src, netip.MustParseAddr(d), uint16(40000+i%2), uint16(1000+1000*(i%2)), at.Add(time.Duration(i)*time.Second)))
	}
	a.Handle(scanRec(dataplane.ScanUDP, 17, src, dst, 40000, 1000, at.Add(20*time.Second))) // 20 s later: the held lines go
	a.Flush()
	want := []string{
		`"2026-08-07 09:14:22.117034" gw 203.0.113.9 40000,40001 198.51.100.1,198.51.100.2,198.51.100.3 1000,2000 TCP IP 203.0.113.9 "potential port scanning" (heuristic)` + "\n",
		`"2026-08-07 09:14:42.117034" gw 203.0.113.9 40000 198.51.100.7 1000 UDP IP 203.0.113.9 "potential udp scanning" (heuristic)` + "\n",
	}
	if got := out.get(); !slices.Equal(got, want) {
		t.Errorf("condensed: got %q\nwant %q", got, want)
	}

	// Maltrail skips whitelisted scan sources; an event on a whitelisted
	// destination is dropped like any other
	wl := trails.NewWhitelist()
	wl.Add("203.0.113.0/24")
	out = newCapture()
	a = NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Whitelist: wl}, Render: &maltrail.Renderer{Loc: time.UTC}, Out: out})
	a.Handle(scanRec(dataplane.ScanPort, 6, src, dst, 40000, 1000, at))
	a.Handle(scanRec(dataplane.ScanUDP, 17, dst, src, 40000, 1000, at))
	a.Handle(scanRec(7, 6, dst, dst, 40000, 1000, at)) // no such scan
	a.Flush()
	if got := out.get(); len(got) != 0 {
		t.Errorf("whitelisted: %q", got)
	}
	if s := a.Stats(); s.Whitelisted.Load() != 2 || s.Malformed[dataplane.KindScan].Load() != 1 || s.Records.Load() != 3 {
		t.Errorf("whitelisted %d, malformed %d, records %d", s.Whitelisted.Load(), s.Malformed[dataplane.KindScan].Load(), s.Records.Load())
	}
}

type pcapPkt struct {
	at    time.Time
	frame []byte
}

// writePcap writes pkts, in time order, as a classic Ethernet pcap.
func writePcap(t *testing.T, pkts []pcapPkt) string {
	t.Helper()
	sort.SliceStable(pkts, func(i, j int) bool { return pkts[i].at.Before(pkts[j].at) })
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0xa1b2c3d4)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint32(b, 65535)
	b = le.AppendUint32(b, 1)
	for _, p := range pkts {
		b = le.AppendUint32(b, uint32(p.at.Unix()))
		b = le.AppendUint32(b, uint32(p.at.Nanosecond()/1000))
		b = le.AppendUint32(b, uint32(len(p.frame)))
		b = le.AppendUint32(b, uint32(len(p.frame)))
		b = append(b, p.frame...)
	}
	path := filepath.Join(t.TempDir(), "scans.pcap")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// scanCapture holds a positive case and near misses of each scan, built
// here, with the lines a replay must give.
func scanCapture(t0 time.Time) (pkts []pcapPkt, want []string) {
	add := func(at time.Time, f pktbuild.Frame) { pkts = append(pkts, pcapPkt{at, f.Bytes()}) }
	tcp := func(src, dst string, sport, dport uint16, flags uint8) pktbuild.Frame {
		return pktbuild.Frame{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: pktbuild.TCP, Sport: sport, Dport: dport, TCPFlags: flags}
	}
	udp := func(src, dst string, sport, dport uint16) pktbuild.Frame {
		return pktbuild.Frame{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: pktbuild.UDP, Sport: sport, Dport: dport, Payload: []byte("x")}
	}
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	host := func(c, d int) string { return netip.AddrFrom4([4]byte{10, 9, byte(c), byte(d)}).String() }
	// clients of 10.0.: the local prefix (7 sources against 203.0.'s 6)
	for i := range 4 {
		add(t0, tcp(netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}).String(), "93.184.216.34", 50000, 443, pktbuild.SYN))
	}
	for i := range 11 {
		// port scan: 11 ports
		add(sec(i), tcp("203.0.113.1", "198.51.100.1", uint16(40000+i), uint16(1000+i), pktbuild.SYN))
		// a whitelisted scanner
		add(sec(i), tcp("203.0.113.6", "198.51.100.1", uint16(40000+i), uint16(1000+i), pktbuild.SYN))
		// UDP scan: 11 ports
		add(sec(i), udp("203.0.113.4", "198.51.100.1", uint16(40000+i), uint16(1000+i)))
	}
	for i := range 10 {
		// near misses: 10 ports twice; 20 bare ACKs; 10 UDP ports and DNS
		add(sec(i), tcp("203.0.113.2", "198.51.100.1", uint16(40000+i), uint16(2000+i), pktbuild.SYN))
		add(sec(20+i), tcp("203.0.113.2", "198.51.100.1", uint16(40100+i), uint16(2000+i), pktbuild.SYN))
		add(sec(i), tcp("203.0.113.3", "198.51.100.1", uint16(40000+i), uint16(3000+i), pktbuild.ACK))
		add(sec(10+i), tcp("203.0.113.3", "198.51.100.1", uint16(40000+i), uint16(3010+i), pktbuild.ACK))
		add(sec(i), udp("203.0.113.5", "198.51.100.1", uint16(40000+i), uint16(4000+i)))
	}
	add(sec(10), udp("203.0.113.5", "198.51.100.1", 40010, 53))
	// a window too far: 6 ports, then 5 more once the window has moved on
	for i := range 6 {
		add(sec(1), tcp("203.0.113.7", "198.51.100.1", uint16(40000+i), uint16(5000+i), pktbuild.SYN))
	}
	for i := range 5 {
		add(sec(31), tcp("203.0.113.7", "198.51.100.1", uint16(40010+i), uint16(5010+i), pktbuild.SYN))
	}
	for i := range 40 {
		// infection: 33 hosts on 445 from a local source (alerts at the 33rd)
		if i < 33 {
			add(sec(5), tcp("10.0.0.5", host(1, i), uint16(53000+i), 445, pktbuild.SYN))
		}
		// near misses: 32 hosts on 3389; 40 hosts on 80; 40 on 445 from
		// outside the local prefix
		if i < 32 {
			add(sec(5), tcp("10.0.0.6", host(2, i), uint16(53000+i), 3389, pktbuild.SYN))
		}
		add(sec(5), tcp("10.0.0.7", host(3, i), uint16(53000+i), 80, pktbuild.SYN))
		add(sec(6), tcp("203.0.113.8", host(4, i), uint16(53000+i), 445, pktbuild.SYN))
	}
	stamp := func(n int) string { return `"` + sec(n).Format("2006-01-02 15:04:05.000000") + `" scan ` }
	want = []string{
		stamp(10) + `203.0.113.1 40000 198.51.100.1 1000 TCP IP 203.0.113.1 "potential port scanning" (heuristic)`,
		stamp(10) + `203.0.113.4 40000 198.51.100.1 1000 UDP IP 203.0.113.4 "potential udp scanning" (heuristic)`,
		stamp(5) + `10.0.0.5 53000 10.9.1.0 445 TCP PORT 445 "potential infection" (heuristic)`,
	}
	return pkts, want
}

// TestReplayScans replays a capture with a positive case and near misses
// of each scan, built here, through the kernel and the agent.
func TestReplayScans(t *testing.T) {
	testenv.RequireRoot(t)
	t0 := time.Date(2026, 8, 7, 9, 14, 22, 0, time.UTC)
	pkts, want := scanCapture(t0)
	path := writePcap(t, pkts)
	wl := trails.DefaultWhitelist()
	wl.Add("203.0.113.6")
	all := dataplane.Scan{Port: true, UDP: true, Infection: true, Window: 30 * time.Second}
	replayScans := func(s dataplane.Scan) []string {
		c := newCapture()
		err := Run(context.Background(), Options{Pcaps: []string{path}, Scan: s, Rules: NameRules{Whitelist: wl},
			Renderer: maltrail.Renderer{Sensor: "scan", Loc: time.UTC}, Out: c, Throttle: throttle.Summarize})
		if err != nil {
			t.Fatal(err)
		}
		got := c.get()
		for i := range got {
			got[i] = strings.TrimSuffix(got[i], "\n")
		}
		slices.Sort(got)
		return got
	}
	slices.Sort(want)
	if got := replayScans(all); !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := replayScans(dataplane.Scan{}); len(got) != 0 {
		t.Errorf("heuristics off: %q", got)
	}
	// DISABLED_HEURISTICS port_scanning udp_scanning: the infection alone
	infection := slices.DeleteFunc(want, func(l string) bool { return !strings.Contains(l, "potential infection") })
	if got := replayScans(dataplane.Scan{Infection: true, Window: 30 * time.Second}); !slices.Equal(got, infection) {
		t.Errorf("infection only:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(infection, "\n"))
	}
}

// TestLiveScans: a real port scan and UDP scan (11 ports each) from the
// lab's source namespace reach the sensor's attached program and become
// events; 10 ports to another host do not.
func TestLiveScans(t *testing.T) {
	l := lab.New(t)
	c, _ := liveSensor(t, l, Options{Scan: dataplane.Scan{Port: true, UDP: true, Infection: true, Window: 30 * time.Second}})
	// connection attempts in parallel: one SYN each before the timeout
	script := func(proto, dst string, from, to int) string {
		return "for p in $(seq " + strconv.Itoa(from) + " " + strconv.Itoa(to) + "); do (exec 3<>/dev/" + proto + "/" + dst + "/$p) & done; wait"
	}
	l.Run(l.Source, "timeout", "1", "bash", "-c", script("tcp", "198.51.100.50", 2000, 2010))
	l.Run(l.Source, "timeout", "1", "bash", "-c", script("tcp", "198.51.100.51", 2000, 2009))
	for p := 3000; p <= 3010; p++ {
		if err := l.UDP("198.51.100.52", p); err != nil {
			t.Fatal(err)
		}
	}
	// a port scan is condensed for up to 10 s before it is written
	want := [][]string{
		{" 198.51.100.50 ", " TCP IP " + lab.SourceAddr + ` "potential port scanning" (heuristic)`},
		{" 198.51.100.52 ", " UDP IP " + lab.SourceAddr + ` "potential udp scanning" (heuristic)`},
	}
	deadline := time.After(20 * time.Second)
	for !matchEach(c.get(), want) {
		select {
		case <-c.note:
		case <-deadline:
			t.Fatalf("events after 20 s:\n%s", strings.Join(c.get(), ""))
		}
	}
	if n := c.count("198.51.100.51"); n != 0 {
		t.Errorf("10 ports made %d events", n)
	}
}

// matchEach reports whether, for each want, some line of got holds all its
// parts.
func matchEach(got []string, want [][]string) bool {
	for _, parts := range want {
		if !slices.ContainsFunc(got, func(g string) bool {
			return !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(g, p) })
		}) {
			return false
		}
	}
	return true
}
