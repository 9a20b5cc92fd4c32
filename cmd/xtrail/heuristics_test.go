package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/maltrail"
)

// heurCapture builds a capture holding one instance of every agent-side
// heuristic (spec §4; the scans are the kernel's) and the event lines
// each must give, rendered for sensor "heur" in UTC.
type heurCapture struct {
	pcap []byte
	n    int
	t    time.Time
	r    maltrail.Renderer
	want []string
	// gates, per want: "none" (runs without USE_HEURISTICS),
	// "use", or the name DISABLED_HEURISTICS turns it off with
	gates []string
}

func newHeurCapture() *heurCapture {
	c := &heurCapture{t: time.Unix(1700000000, 0).UTC(), r: maltrail.Renderer{Sensor: "heur", Loc: time.UTC}}
	// classic pcap, microseconds, Ethernet
	c.pcap = binary.LittleEndian.AppendUint32(c.pcap, 0xa1b2c3d4)
	c.pcap = binary.LittleEndian.AppendUint16(c.pcap, 2)
	c.pcap = binary.LittleEndian.AppendUint16(c.pcap, 4)
	c.pcap = append(c.pcap, make([]byte, 8)...)
	c.pcap = binary.LittleEndian.AppendUint32(c.pcap, 65535)
	c.pcap = binary.LittleEndian.AppendUint32(c.pcap, 1)
	return c
}

// add appends a frame 10 ms after the previous one and returns its time.
func (c *heurCapture) add(f pktbuild.Frame) time.Time {
	c.t = c.t.Add(10 * time.Millisecond)
	b := f.Bytes()
	c.pcap = binary.LittleEndian.AppendUint32(c.pcap, uint32(c.t.Unix()))
	c.pcap = binary.LittleEndian.AppendUint32(c.pcap, uint32(c.t.Nanosecond()/1000))
	c.pcap = binary.LittleEndian.AppendUint32(c.pcap, uint32(len(b)))
	c.pcap = binary.LittleEndian.AppendUint32(c.pcap, uint32(len(b)))
	c.pcap = append(c.pcap, b...)
	c.n++
	return c.t
}

// expect adds a line the capture must give, gated by USE_HEURISTICS.
func (c *heurCapture) expect(at time.Time, src string, sport uint16, dst netip.Addr, dport uint16, proto, typ, trail, info string) {
	c.expectGated("use", at, src, sport, dst, dport, proto, typ, trail, info)
}

func (c *heurCapture) expectGated(gate string, at time.Time, src string, sport uint16, dst netip.Addr, dport uint16, proto, typ, trail, info string) {
	ev := maltrail.TextEvent{Time: at, SrcIP: src, SrcPort: fmt.Sprint(sport), DstIP: dst.String(), DstPort: fmt.Sprint(dport),
		Proto: proto, Type: typ, Trail: trail, Info: info, Reference: "(heuristic)"}
	c.want = append(c.want, string(c.r.AppendTextLine(nil, &ev)))
	c.gates = append(c.gates, gate)
}

var (
	hClient   = netip.MustParseAddr("10.0.0.66")
	hResolver = netip.MustParseAddr("192.0.2.53")
	hPublic   = netip.MustParseAddr("203.0.113.5") // a public DNS client
)

// http sends a request from the client to dst:80 and returns its time.
func (c *heurCapture) http(sport uint16, dst netip.Addr, payload string) time.Time {
	return c.add(pktbuild.Frame{Src: hClient, Dst: dst, Proto: pktbuild.TCP, Sport: sport, Dport: 80,
		TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: []byte(payload)})
}

func req(method, path, host, extra string) string {
	h := method + " " + path + " HTTP/1.1\r\n"
	if host != "" {
		h += "Host: " + host + "\r\n"
	}
	return h + "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\n" + extra + "\r\n"
}

func dnsMsg(id uint16, flags2, flags3 byte, name string, answer netip.Addr) []byte {
	m := []byte{byte(id >> 8), byte(id), flags2, flags3, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		m = append(append(m, byte(len(l))), l...)
	}
	m = append(m, 0, 0, 1, 0, 1)
	if answer.IsValid() {
		m[7] = 1
		a := answer.As4()
		m = append(m, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, a[0], a[1], a[2], a[3])
	}
	return m
}

func (c *heurCapture) dnsQuery(sport uint16, name string) time.Time {
	return c.add(pktbuild.Frame{Src: hClient, Dst: hResolver, Proto: pktbuild.UDP, Sport: sport, Dport: 53,
		Payload: dnsMsg(sport, 0x01, 0x00, name, netip.Addr{})})
}

func (c *heurCapture) dnsAnswer(client netip.Addr, dport uint16, flags3 byte, name string, a netip.Addr) time.Time {
	return c.add(pktbuild.Frame{Src: hResolver, Dst: client, Proto: pktbuild.UDP, Sport: 53, Dport: dport,
		Payload: dnsMsg(dport, 0x81, flags3, name, a)})
}

func buildHeurCapture() *heurCapture {
	c := newHeurCapture()
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}) }

	// DNS exhaustion: 1000 subdomains of one base, then one more query
	for i := range 1000 {
		c.dnsQuery(uint16(20000+i), fmt.Sprintf("q%d.exhaustbase.net", i))
	}
	at := c.dnsQuery(21000, "q1000.exhaustbase.net")
	c.expectGated("dns_exhaustion", at, "10.0.0.66", 21000, hResolver, 53, "UDP", "DNS", "(q1000).exhaustbase.net", "potential dns exhaustion (suspicious)")
	// long domain
	long := strings.Repeat("k", 30)
	at = c.dnsQuery(21001, long+".longbase.com")
	c.expectGated("long_domain", at, "10.0.0.66", 21001, hResolver, 53, "UDP", "DNS", "("+long+").longbase.com", "long domain (suspicious)")
	// sinkholed and parked answers
	at = c.dnsAnswer(hClient, 21002, 0x80, "sinkholed.com", netip.MustParseAddr("198.51.100.90"))
	c.expect(at, "192.0.2.53", 53, hClient, 21002, "UDP", "DNS", "(sinkholed).com", "sinkholed by testsink (malware)")
	at = c.dnsAnswer(hClient, 21003, 0x80, "www.parked.com", netip.MustParseAddr("198.51.100.91"))
	c.expect(at, "192.0.2.53", 53, hClient, 21003, "UDP", "DNS", "(www.parked).com", "parked site (suspicious)")
	// NXDOMAIN flood of a group, and a DGA name
	var names []string
	for i := range 21 {
		at = c.dnsAnswer(hPublic, uint16(22000+i), 0x83, fmt.Sprintf("f%02d.floodbase.com", i), netip.Addr{})
		if i > 0 {
			names = append(names, fmt.Sprintf("f%02d", i))
		}
	}
	sort.Strings(names)
	c.expect(at, "192.0.2.53", 53, hPublic, 22020, "UDP", "DNS", "("+strings.Join(names, ",")+").floodbase.com", "excessive no such domain (suspicious)")
	at = c.dnsAnswer(hClient, 22100, 0x83, "x7k2q9vz3mwp1hb.com", netip.Addr{})
	c.expect(at, "192.0.2.53", 53, hClient, 22100, "UDP", "DNS", "(x7k2q9vz3mwp1hb).com", "entropy threshold no such domain (suspicious)")

	// web scan: 11 first path segments from one client to one server
	for i := range 11 {
		at = c.http(uint16(30000+i), ip(50), req("GET", fmt.Sprintf("/dir%d/", i), "scanned.example", ""))
	}
	c.expectGated("web_scanning", at, "10.0.0.66", 30000, ip(50), 80, "TCP", "PATH", "*", "potential web scanning")

	// one request per family, each to its own server
	fams := []struct{ path, info string }{
		{"/i.php?id=1%20union%20select%20a,b%20from%20users", "potential sql injection"},
		{"/p?q=<![CDATA[x]]>", "potential xml injection"},
		{"/index.php?page=php://input", "potential php injection"},
		{"/ldap?u=*)(uid=*))(|(uid=*", "potential ldap injection"},
		{"/s?q=<script>alert(1)</script>", "potential xss injection"},
		{"/x?d=<!DOCTYPE%20r%20[<!ENTITY%20x%20SYSTEM%20\"file:///etc/hosts\">]>", "potential xxe injection"},
		{"/g?name={{7*7}}", "potential ssti injection"},
		{"/t?imei=356938035643809", "potential data leakage"},
		{"/.htpasswd?x", "config file access"},
		{"/c?cmd=|id", "potential remote code execution"},
		{"/f?file=../../../../etc/shadow", "potential directory traversal"},
		{"/scan?nikto=1", "potential web scan"},
		{"/dnscfg.cgi?dns1=6.6.6.6", "potential dns changer"},
	}
	for i, f := range fams {
		dst := ip(60 + i)
		at = c.http(uint16(31000+i), dst, req("GET", f.path, fmt.Sprintf("fam%d.example", i), ""))
		p := strings.ToLower(strings.ReplaceAll(f.path, "//", "/"))
		p = strings.NewReplacer("(", "%28", ")", "%29").Replace(p)
		c.expect(at, "10.0.0.66", uint16(31000+i), dst, 80, "TCP", "URL", fmt.Sprintf("fam%d.example(%s)", i, p), f.info+" (suspicious)")
	}
	// forwarded-for: the source column carries the forwarded address
	at = c.http(31100, ip(80), req("GET", "/q?id=1'%20or%20'1'='1", "fwd.example", "X-Forwarded-For: 198.51.100.200\r\n"))
	c.expect(at, "10.0.0.66,198.51.100.200", 31100, ip(80), 80, "TCP", "URL", "fwd.example(/q?id=1'%20or%20'1'='1)", "potential sql injection (suspicious)")
	// POST body
	at = c.http(31101, ip(81), "POST /login HTTP/1.1\r\nHost: post.example\r\nContent-Length: 30\r\n\r\nuser=admin' OR '1'='1&pass=x")
	c.expect(at, "10.0.0.66", 31101, ip(81), 80, "TCP", "HTTP", `post.example(/login \(POST user=admin' OR '1'='1&pass=x\))`, "potential sql injection (suspicious)")
	// direct download, probe file
	at = c.http(31102, ip(82), req("GET", "/update.scr", "dl.example", ""))
	c.expect(at, "10.0.0.66", 31102, ip(82), 80, "TCP", "URL", "dl.example(/update.scr)", "direct .scr download (suspicious)")
	at = c.http(31103, ip(83), req("GET", "/defaultwebpage.cgi", "probe.example", ""))
	c.expect(at, "10.0.0.66", 31103, ip(83), 80, "TCP", "URL", "probe.example(/defaultwebpage.cgi)", "non-existent page (suspicious)")
	// IoT download by direct IP, proxy probe, missing Host, user agent
	at = c.http(31104, ip(84), req("GET", "/bins/x.mpsl", "203.0.113.84", ""))
	c.expectGated("none", at, "10.0.0.66", 31104, ip(84), 80, "TCP", "HTTP", "(203.0.113.84)/bins/x.mpsl", "potential iot-malware download (suspicious)")
	at = c.http(31105, ip(85), req("GET", "http://judge.example:8080/azenv.php?proxy=1", "judge.example", ""))
	c.expect(at, "10.0.0.66", 31105, ip(85), 80, "TCP", "HTTP", "http://judge.example/(azenv.php?proxy=1)", "potential proxy probe (suspicious)")
	at = c.http(31106, ip(86), req("GET", "/nohost", "", ""))
	c.expect(at, "10.0.0.66", 31106, ip(86), 80, "TCP", "HTTP", "203.0.113.86/nohost", "missing host header (suspicious)")
	at = c.http(31107, ip(87), "GET / HTTP/1.1\r\nHost: ua.example\r\nUser-Agent: Mozilla/5.0 zgrab/0.x\r\n\r\n")
	c.expect(at, "10.0.0.66", 31107, ip(87), 80, "TCP", "UA", "zgrab (Mozilla/5.0 zgrab/0.x)", "user agent (suspicious)")
	// responses: sinkhole header, seized domain, suspicious content type
	resp := func(sport uint16, src netip.Addr, payload string) time.Time {
		return c.add(pktbuild.Frame{Src: src, Dst: hClient, Proto: pktbuild.TCP, Sport: 80, Dport: sport,
			TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: []byte(payload)})
	}
	at = resp(31108, ip(88), "HTTP/1.1 200 OK\r\nX-Sinkhole: abuse\r\nContent-Length: 0\r\n\r\n")
	c.expectGated("none", at, ip(88).String(), 80, hClient, 31108, "TCP", "HTTP", "X-Sinkhole: abuse", "sinkhole response (malware)")
	at = resp(31109, ip(89), "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html><title>This domain has been seized</title>")
	c.expectGated("none", at, ip(89).String(), 80, hClient, 31109, "TCP", "HTTP", "This domain has been seized", "seized domain (suspicious)")
	at = resp(31110, ip(90), "HTTP/1.1 200 OK\r\nContent-Type: application/hta\r\n\r\n<script>")
	c.expectGated("none", at, ip(90).String(), 80, hClient, 31110, "TCP", "HTTP", "application/hta", "content type (suspicious)")
	return c
}

// TestSensorHeuristicsBinary runs the built xtrail exactly as Maltrail's
// tooling runs a sensor binary (`<sensor> -r PCAP -c CONF`, then reads
// LOG_DIR) on a capture with one instance of every agent heuristic, and
// compares the day's log with the lines each must give: with every
// heuristic on; with USE_HEURISTICS off (only DNS exhaustion, IoT
// downloads and the response rules run, as in Maltrail); and with
// DISABLED_HEURISTICS naming the three the agent runs.
func TestSensorHeuristicsBinary(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	bin := xtrailBin // built by TestMain
	c := buildHeurCapture()
	pcap := filepath.Join(dir, "heuristics.pcap")
	trailsFile := filepath.Join(dir, "trails.csv")
	for path, data := range map[string]string{
		pcap:       string(c.pcap),
		trailsFile: "198.51.100.90,sinkhole testsink (malware),(static)\n198.51.100.91,parking site (suspicious),(static)\n",
	} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	disabled := "dns_exhaustion,long_domain,web_scanning"
	for _, run := range []struct {
		name, conf string
		keep       func(gate string) bool
	}{
		{"all", "USE_HEURISTICS true\nCHECK_MISSING_HOST true\n", func(string) bool { return true }},
		{"off", "", func(g string) bool { return g == "none" || g == "dns_exhaustion" }},
		{"disabled", "USE_HEURISTICS true\nCHECK_MISSING_HOST true\nDISABLED_HEURISTICS " + disabled + "\n",
			func(g string) bool { return !strings.Contains(disabled, g) }},
	} {
		t.Run(run.name, func(t *testing.T) {
			logDir := filepath.Join(dir, run.name)
			conf := filepath.Join(dir, run.name+".conf")
			text := "MONITOR_INTERFACE any\nCAPTURE_BUFFER 10%\nPROCESS_COUNT 1\nCHECK_HOST_DOMAINS true\nSENSOR_NAME heur\n" +
				"SCAN_WINDOW 30\nTRAILS_FILE " + trailsFile + "\nLOG_DIR " + logDir + "\n" + run.conf
			if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "sensor", "-r", pcap, "-c", conf)
			cmd.Env = append(os.Environ(), "TZ=UTC")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("xtrail sensor: %v\n%s", err, out)
			}
			logged, err := os.ReadFile(filepath.Join(logDir, "2023-11-14.log"))
			if err != nil {
				t.Fatalf("%v\nsensor output:\n%s", err, out)
			}
			got := strings.Split(strings.TrimSuffix(string(logged), "\n"), "\n")
			have := map[string]bool{}
			for _, l := range got {
				have[l+"\n"] = true
			}
			n := 0
			for i, w := range c.want {
				if !run.keep(c.gates[i]) {
					if have[w] {
						t.Errorf("event of a heuristic that is off:\n%s", w)
					}
					continue
				}
				n++
				if !have[w] {
					t.Errorf("missing event:\n%s", w)
				}
			}
			if len(got) != n {
				t.Errorf("%d events, want %d:\n%s", len(got), n, logged)
			}
			if !strings.Contains(string(out), fmt.Sprintf("frames=%d", c.n)) {
				t.Errorf("the sensor did not replay %d frames:\n%s", c.n, out)
			}
		})
	}
}
