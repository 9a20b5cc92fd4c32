package heuristics

import (
	"net/netip"
	"testing"

	"github.com/xtrail/xtrail/pkg/proto"
	"github.com/xtrail/xtrail/pkg/trails"
)

// checked fails on a finding with no trail or info: every event must
// have both.
type checked struct{ t *testing.T }

func (c checked) Report(f *Finding) {
	if len(f.Trail) == 0 || f.Info == "" || f.Type == "" {
		c.t.Fatalf("empty finding %+v", f)
	}
}

// FuzzHTTP runs every HTTP heuristic on hostile request parts and
// response payloads: none may panic or report an empty finding.
func FuzzHTTP(f *testing.F) {
	f.Add("GET", "sqli.example", "/items.php?id=1%20union%20all%20select%20a%20from%20b", "masscan/1.0", "q=1", "HTTP/1.1 200 OK\r\nX-Sinkhole: x\r\n\r\n")
	f.Add("POST", "198.51.100.99", "/mirai.x86", "%", "%%zz", "HTTP/1.1 200 OK\r\nContent-Type: application/hta;\r\n\r\n<title>domain seized")
	f.Add("GET", "", "http://a:8080./(echo)", "()\\\\", "", "HTTP/")
	f.Add("CONNECT", "x", "..\\..\\", "\x00\xff", "<!entity % x system", "HTTP/1.0 999\r\n\r\n<title>")
	e, err := New(Config{Use: true, CheckMissingHost: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, host, path, ua, body, resp string) {
		r := checked{t}
		h := &HTTP{Sec: 1700000000, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("203.0.113.1"),
			SrcPort: 1, DstPort: 80, Method: []byte(method), Host: []byte(host), Path: []byte(path), Body: []byte(body),
			Forwarded: []byte("1.2.3.4"), Whitelist: trails.DefaultWhitelist()}
		e.WebScan(h, r)
		e.IoTDownload(h, r)
		e.MissingHost(h, r)
		e.ProxyProbe(h, r)
		e.IsRCE(h.Path)
		e.UserAgent([]byte(ua), r)
		e.Request(h, r)
		var p proto.HTTPResponse
		_ = proto.ParseHTTPResponse([]byte(resp), &p)
		e.Response([]byte(resp), &p, r)
	})
}

// FuzzDNS runs the DNS heuristics on hostile names.
func FuzzDNS(f *testing.F) {
	for _, s := range []string{"a.b.c.example.com", "x7k2q9vz3mwp1hb.com", "1.2.3.4.5.zen.x.org", "1-2-3-4.x.com", ".", "..", "a..b", "com"} {
		f.Add(s, int64(1700000000), false)
	}
	e, err := New(Config{Use: true})
	if err != nil {
		f.Fatal(err)
	}
	var a AnswerTrails
	a.Add(netip.MustParseAddr("198.51.100.90"), "sinkhole x (malware)")
	f.Fuzz(func(t *testing.T, name string, sec int64, private bool) {
		r := checked{t}
		q := &DNS{Sec: sec, Name: []byte(name), ClientPrivate: private, Whitelist: trails.DefaultWhitelist()}
		e.Exhaustion(q, r)
		e.NXDomain(q, r)
		e.Sinkhole(q, netip.MustParseAddr("198.51.100.90"), &a, r)
		var hit trails.DomainHit
		e.LongDomain([]byte(name), &hit)
	})
}
