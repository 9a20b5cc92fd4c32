package sensor

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// hotAgent is an agent with every heuristic on, the default whitelist and
// names (nil: none), writing to a capture.
func hotAgent(t *testing.T, names *trails.Names) (*Agent, *capture) {
	t.Helper()
	out := newCapture()
	a := NewAgent(AgentConfig{Meta: fakeMeta{7: {"malware (test)", "(static)"}},
		Rules:  NameRules{Names: names, Whitelist: trails.DefaultWhitelist(), CheckHostDomains: true},
		Render: &maltrail.Renderer{Sensor: "t", Loc: time.UTC}, Out: out, Throttle: throttle.Off,
		Heuristics: heuristics.Config{Use: true, CheckMissingHost: true}})
	return a, out
}

// TestAgentForwardedFor: a request heuristic's event carries the
// forwarded-for address of the request's headers in its source column
// (the first of X-Forwarded-For, CF-Connecting-IP and True-Client-IP in
// the payload), read only when the finding is made.
func TestAgentForwardedFor(t *testing.T) {
	at := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	src, dst := netip.MustParseAddr("10.0.0.66"), netip.MustParseAddr("203.0.113.44")
	cases := []struct{ headers, src string }{
		{"X-Forwarded-For: 198.51.100.7\r\n", "10.0.0.66,198.51.100.7"},
		{"True-Client-IP: 198.51.100.8\r\nCF-Connecting-IP:198.51.100.9\r\n", "10.0.0.66,198.51.100.8"},
		{"X-Forwarded-For: unknown\r\n", "10.0.0.66"},
		{"", "10.0.0.66"},
	}
	for _, c := range cases {
		a, out := hotAgent(t, nil)
		req := "GET /items.php?id=1%20union%20all%20select%20a%20from%20b HTTP/1.1\r\nHost: sqli.example\r\n" + c.headers + "\r\n"
		a.Handle(rec(dataplane.KindHTTP, 0, 0, 6, src, dst, 50000, 80, 0, at, []byte(req)))
		got := strings.Join(out.get(), "")
		want := `"2023-11-14 22:13:20.000000" t ` + c.src + ` 50000 203.0.113.44 80 TCP URL sqli.example(/items.php?id=1%20union%20all%20select%20a%20from%20b) "potential sql injection (suspicious)" (heuristic)` + "\n"
		if got != want {
			t.Errorf("%q:\n got %s want %s", c.headers, got, want)
		}
	}
}

// TestAgentURLWhitelistOnce: the agent checks a request's host against
// its whitelist once, and CheckURL skips its own check only when the
// names were loaded with that same whitelist; names loaded with another
// still have theirs applied.
func TestAgentURLWhitelistOnce(t *testing.T) {
	own := trails.DefaultWhitelist()
	own.Add("good.example")
	names, err := trails.LoadNames(strings.NewReader("/malicious-login.php,malware (test),(static)\n"), "t.csv", own)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	src, dst := netip.MustParseAddr("10.0.0.66"), netip.MustParseAddr("203.0.113.44")
	for _, c := range []struct {
		wl     *trails.Whitelist
		host   string
		events int
	}{
		{own, "good.example", 0},                       // the agent's own check
		{trails.DefaultWhitelist(), "good.example", 0}, // the names' whitelist, applied by CheckURL
		{trails.DefaultWhitelist(), "other.example", 1},
		{own, "www.Good.Example:8080", 0},
	} {
		out := newCapture()
		a := NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Names: names, Whitelist: c.wl},
			Render: &maltrail.Renderer{Sensor: "t", Loc: time.UTC}, Out: out, Throttle: throttle.Off})
		req := "GET /malicious-login.php HTTP/1.1\r\nHost: " + c.host + "\r\n\r\n"
		a.Handle(rec(dataplane.KindHTTP, 0, 0, 6, src, dst, 50000, 80, 0, at, []byte(req)))
		if got := out.get(); len(got) != c.events {
			t.Errorf("host %s (own whitelist %v): events %q, want %d", c.host, c.wl == own, got, c.events)
		}
	}
}

// refQueryName is the DNS query filter as it was before it read a name
// once (trails.Name): the reference of TestQueryName.
func refQueryName(q []byte) bool {
	dot := bytes.LastIndexByte(q, '.')
	if dot < 0 || dot == len(q)-1 {
		return false
	}
	for _, c := range q[:dot] {
		if !(isAlnum(c) || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	for _, c := range q[dot+1:] {
		if !(isAlnum(c) || c == '-') {
			return false
		}
	}
	if bytes.Contains(q, []byte(".intranet.")) {
		return false
	}
	return !ignoredTLD(q[dot+1:])
}

// TestQueryName: the query filter on a name read once answers as the
// reference on names as the DNS parser gives them (lowercase), built from
// the pieces its rules turn on.
func TestQueryName(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	pieces := []string{"", "a", "www", "intranet", "local", "example", "arpa", "in-addr", "com", "x_y", "_", "-", "1", "a:b", "\x00", "é", "test"}
	var m trails.Name
	pass := 0
	for range 200000 {
		var b []byte
		for i := range 1 + rng.IntN(45) {
			if i > 0 {
				b = append(b, '.')
			}
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		m.Set(b)
		if got, want := queryName(&m), refQueryName(b); got != want {
			t.Fatalf("queryName(%q) = %v, reference %v", b, got, want)
		}
		if refQueryName(b) {
			pass++
		}
	}
	if pass < 3000 {
		t.Errorf("only %d names passed", pass)
	}
}
