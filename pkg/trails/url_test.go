package trails

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func candidates(path, body string) []string {
	var s URLScratch
	var out []string
	for _, c := range URLCandidates(&s, []byte(path), []byte(body)) {
		out = append(out, string(c))
	}
	return out
}

func TestURLCandidates(t *testing.T) {
	tests := []struct {
		path, body string
		want       []string
	}{
		// The spec §1.4 example.
		{"/a/b/c.php?id=1&x=2", "", []string{"/a/b/c.php?id=1&x=2", "/a/b/c.php", "/a/b/c.php?id=", "/a/b/c.php?id=&x=", "/c.php?id=&x="}},
		{"/malicious-login.php", "", []string{"/malicious-login.php"}},
		// Step 4: the last candidate cut at its last '/', and the first's
		// last segment.
		{"/bad/path", "", []string{"/bad/path", "/bad", "/path"}},
		{"/bad/path/", "", []string{"/bad/path", "/bad", "/path"}},
		{"/", "", nil},
		{"", "", nil},
		// '//' becomes '/' first, left to right.
		{"//a//b", "", []string{"/a/b", "/a", "/b"}},
		{"///x", "", []string{"//x", "/", "/x"}},
		// One '/': no step 4; the k= form equal to an earlier candidate is
		// not added again.
		{"/gate.php?id=1", "", []string{"/gate.php?id=1", "/gate.php", "/gate.php?id="}},
		{"/p?a", "", []string{"/p?a", "/p"}}, // no '=': the "k=" form equals the path, so it is not new
		// A POST body without '?' in the path.
		{"/login.php", "User=Admin%40x&pw=1", []string{"/login.php", "/login.php?user=admin@x&pw=1"}},
		{"/a/login.php", "x=%2fy%2fz", []string{"/a/login.php", "/a/login.php?x=/y/z", "/a/login.php?x=/y", "/login.php"}},
		// A body is ignored when the path has a query.
		{"/q?x=1", "y=2", []string{"/q?x=1", "/q", "/q?x="}},
		// "=" before "?" and values running into the path.
		{"/a=b/c?x=1", "", []string{"/a=b/c?x=1", "/a=b/c", "/a=", "/a==1"}},
	}
	for _, tc := range tests {
		got := candidates(tc.path, tc.body)
		if !slices.Equal(got, tc.want) {
			t.Errorf("URLCandidates(%q, %q)\n got %q\nwant %q", tc.path, tc.body, got, tc.want)
		}
	}
}

func TestAppendKeysOnly(t *testing.T) {
	// re.sub(r"(\w+=)[^&=]+", r"\g<1>", s), checked with Python.
	tests := map[string]string{
		"/a/b/c.php?id=1&x=2": "/a/b/c.php?id=&x=",
		"/p?a=&b=2":           "/p?a=&b=",
		"/p?a==1":             "/p?a==1",
		"a=b=c":               "a==c",
		"/p?=1&k=v":           "/p?=1&k=",
		"/p?x-y=1":            "/p?x-y=",
		"/p?k=v%26w&z=":       "/p?k=&z=",
	}
	for in, want := range tests {
		if got := string(appendKeysOnly(nil, []byte(in))); got != want {
			t.Errorf("appendKeysOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

const urlTrails = "/malicious-login.php,malware (test),(static)\r\n" +
	"evil-url.example/bad/path,malware (test),(static)\r\n" +
	"evil.com/gate.php,gate (malware),(static)\r\n" +
	"/gate2.php?cmd=ping,post gate (malware),(static)\r\n" +
	"badhost.com/,bad host (malware),(static)\r\n" +
	"/x,x (malware),(static)\r\n" +
	"evil.com,domain (malware),(static)\r\n"

func TestCheckURL(t *testing.T) {
	wl := NewWhitelist()
	wl.Add("good.com")
	n := mustLoadNames(t, urlTrails, wl)
	tests := []struct {
		host, path, method, body, url string
		typ, trail, info              string
	}{
		{"host.com", "/malicious-login.php", "GET", "", "", "URL", "(host.com)/malicious-login.php", "malware (test)"},
		{"host.com", "/malicious-login.php?u=1", "GET", "", "", "URL", "(host.com)/malicious-login.php(?u=1)", "malware (test)"},
		{"evil-url.example", "/bad/path", "GET", "", "", "URL", "evil-url.example/bad/path", "malware (test)"},
		{"evil-url.example", "/bad/path/more?x=1", "GET", "", "", "URL", "evil-url.example/bad/path(/more?x=1)", "malware (test)"},
		{"evil.com", "/gate.php?id=1", "GET", "", "", "URL", "evil.com/gate.php(?id=1)", "gate (malware)"},
		// A '?' hit on a path without one, with a body: the HTTP form.
		{"host.com", "/gate2.php", "POST", "CMD=ping", "", "HTTP", `host.com(/gate2.php \(POST CMD=ping\))`, "post gate (malware)"},
		// The host/ fallback.
		{"badhost.com", "/index.html", "GET", "", "", "URL", "badhost.com/", "bad host (malware)"},
		{"badhost.com", "/", "GET", "", "", "URL", "badhost.com/", "bad host (malware)"},
		// The url is split on every occurrence of the hit.
		{"a.com", "/x/x", "GET", "", "", "URL", "(a.com)/x/x", "x (malware)"},
		// A proxy request: the url column is the target.
		{"proxy.local", "/malicious-login.php", "GET", "", "t.com/malicious-login.php", "URL", "(t.com)/malicious-login.php", "malware (test)"},
		// One dict: a path naming a domain trail hits it.
		{"h.net", "evil.com", "GET", "", "", "URL", "(h.net)evil.com", "domain (malware)"},
		// Misses.
		{"host.com", "/index.html", "GET", "", "", "", "", ""},
		{"good.com", "/malicious-login.php", "GET", "", "", "", "", ""},        // whitelisted host
		{"a.good.com:8080", "/malicious-login.php", "GET", "", "", "", "", ""}, // a parent, past the port
	}
	var s URLScratch
	for _, tc := range tests {
		req := &HTTPRequest{Host: []byte(tc.host), Path: []byte(tc.path), Method: []byte(tc.method)}
		if tc.body != "" {
			req.Body = []byte(tc.body)
		}
		if tc.url != "" {
			req.URL = []byte(tc.url)
		}
		hit, ok := n.CheckURL(&s, req)
		if ok != (tc.trail != "") || ok && (hit.Type != tc.typ || string(hit.Trail) != tc.trail || hit.Meta.Info != tc.info) {
			t.Errorf("CheckURL(%s %s%s) = %v %s %q %q; want %s %q %q", tc.method, tc.host, tc.path, ok, hit.Type, hit.Trail, hit.Meta.Info, tc.typ, tc.trail, tc.info)
		}
	}
}

// TestCheckURLCorpus is the http_trails case of the replay corpus on its
// fixture trails (spec §6).
func TestCheckURLCorpus(t *testing.T) {
	n := corpusNames(t)
	var s URLScratch
	for _, tc := range []struct{ host, path, trail string }{
		{"hostcheck.example", "/malicious-login.php", "(hostcheck.example)/malicious-login.php"},
		{"evil-url.example", "/bad/path", "evil-url.example/bad/path"},
		{"evil-url.example", "/bad/path?q=1", "evil-url.example/bad/path(?q=1)"},
		{"evil-url.example", "/good/path", ""},
	} {
		hit, ok := n.CheckURL(&s, &HTTPRequest{Host: []byte(tc.host), Path: []byte(tc.path), Method: []byte("GET")})
		if ok != (tc.trail != "") || ok && (string(hit.Trail) != tc.trail || hit.Type != "URL") {
			t.Errorf("CheckURL(%s%s) = %v %s %q, want %q", tc.host, tc.path, ok, hit.Type, hit.Trail, tc.trail)
		}
	}
}

func TestCheckURLNoAllocs(t *testing.T) {
	n := mustLoadNames(t, urlTrails, DefaultWhitelist())
	var s URLScratch
	for _, req := range []*HTTPRequest{
		{Host: []byte("www.example.org"), Path: []byte("/a/b/c.php?id=1&x=2"), Method: []byte("GET")},
		{Host: []byte("host.com"), Path: []byte("/malicious-login.php?u=1"), Method: []byte("GET")},
		{Host: []byte("host.com"), Path: []byte("/gate2.php"), Method: []byte("POST"), Body: []byte("cmd=ping")},
	} {
		n.CheckURL(&s, req)
		if a := testing.AllocsPerRun(100, func() { n.CheckURL(&s, req) }); a != 0 {
			t.Errorf("CheckURL(%s%s): %.1f allocs", req.Host, req.Path, a)
		}
	}
}

// pathHeads are the heads (PathHead) that follow the slashes of a path:
// every bare candidate of a path starting with '/' has one of them
// (Names.noBareKeys).
func pathHeads(path []byte) map[string]bool {
	heads := map[string]bool{}
	for i, c := range path {
		if c == '/' {
			heads[string(PathHead(path[i:]))] = true
		}
	}
	return heads
}

// checkCandidateHeads fails when a candidate of a path starting with '/'
// does not start with '/' or has a head that follows none of the path's
// slashes.
func checkCandidateHeads(t *testing.T, path, body []byte) {
	t.Helper()
	if len(path) == 0 || path[0] != '/' {
		return
	}
	heads := pathHeads(path)
	var s URLScratch
	for _, c := range URLCandidates(&s, path, body) {
		if c[0] != '/' || !heads[string(PathHead(c))] {
			t.Fatalf("URLCandidates(%q, %q): %q has head %q, not one of %v", path, body, c, PathHead(c), heads)
		}
	}
}

// TestCandidateHeads: on paths made of the bytes the candidates' rules
// turn on ('/', '?', '=', '&', '.', word bytes, "//"), every candidate's
// head follows one of the path's slashes.
func TestCandidateHeads(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"/", "//", "?", "=", "&", ".", "a", "bc", "x_1", "%2f", "-", "php"}
	bodies := []string{"", "a=1&b=%2f%2fc/d", "x=/y/z", "=/", "q"}
	for range 200000 {
		b := []byte{'/'}
		for range rng.IntN(10) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		checkCandidateHeads(t, b, []byte(bodies[rng.IntN(len(bodies))]))
	}
}

// FuzzURLCandidates: never panics, at most 8 candidates, none empty, and
// CheckURL on the same input does not panic either. Every candidate of a
// path starting with '/' has a head that follows one of its slashes.
func FuzzURLCandidates(f *testing.F) {
	for _, s := range [][2]string{{"/a/b/c.php?id=1&x=2", ""}, {"//", "a/b/c"}, {"x", "%2f%2f"}, {"/?=&=", ""}, {"/a=b/c?x=1", "%"}, {"", ""}} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	n := mustLoadNames(f, urlTrails, DefaultWhitelist())
	f.Fuzz(func(t *testing.T, path, body []byte) {
		checkCandidateHeads(t, path, body)
		var s URLScratch
		cands := URLCandidates(&s, path, body)
		if len(cands) > maxURLCandidates {
			t.Fatalf("%d candidates", len(cands))
		}
		for _, c := range cands {
			if len(c) == 0 {
				t.Fatal("empty candidate")
			}
		}
		if norm := bytes.TrimRight(replaceDoubleSlash(nil, path), "/"); len(norm) > 0 && (len(cands) == 0 || !bytes.Equal(cands[0], norm)) {
			t.Fatalf("first candidate %q, want %q", cands, norm)
		}
		hit, ok := n.CheckURL(&s, &HTTPRequest{Host: []byte("host.com"), Path: path, Method: []byte("POST"), Body: body})
		if ok && (len(hit.Trail) == 0 || !strings.Contains(string(hit.Trail), "host.com") && hit.Type == "HTTP") {
			t.Fatalf("hit %+v", hit)
		}
	})
}

func BenchmarkCheckURLMiss(b *testing.B) {
	n := loadStaticNames(b)
	var s URLScratch
	reqs := []*HTTPRequest{
		{Host: []byte("www.example.org"), Path: []byte("/a/b/c.php?id=1&x=2"), Method: []byte("GET")},
		{Host: []byte("api.github.com"), Path: []byte("/repos/golang/go/issues"), Method: []byte("GET")},
		{Host: []byte("cdn.jsdelivr.net"), Path: []byte("/npm/jquery@3.7.1/dist/jquery.min.js"), Method: []byte("GET")},
	}
	for _, r := range reqs {
		if hit, ok := n.CheckURL(&s, r); ok {
			b.Fatalf("%s%s hit %q", r.Host, r.Path, hit.Trail)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		n.CheckURL(&s, reqs[i%len(reqs)])
		i++
	}
}

// replaceDoubleSlashRef is the former replaceDoubleSlash, byte at a time.
func replaceDoubleSlashRef(dst, p []byte) []byte {
	for i := 0; i < len(p); i++ {
		dst = append(dst, p[i])
		if p[i] == '/' && i+1 < len(p) && p[i+1] == '/' {
			i++
		}
	}
	return dst
}

// appendKeysOnlyRef is the former appendKeysOnly, scanning from the
// start.
func appendKeysOnlyRef(dst, p []byte) []byte {
	i := 0
	for i < len(p) {
		if !isWordByte(p[i]) {
			dst = append(dst, p[i])
			i++
			continue
		}
		s := i
		for i < len(p) && isWordByte(p[i]) {
			i++
		}
		if i+1 < len(p) && p[i] == '=' && p[i+1] != '&' && p[i+1] != '=' {
			dst = append(dst, p[s:i+1]...)
			i++
			for i < len(p) && p[i] != '&' && p[i] != '=' {
				i++
			}
			continue
		}
		dst = append(dst, p[s:i]...)
	}
	return dst
}

// checkURLRewrites fails when replaceDoubleSlash or appendKeysOnly differs
// from its reference on p, appending to a non-empty dst as the candidates
// do.
func checkURLRewrites(t *testing.T, p []byte) {
	t.Helper()
	pre := []byte("pre")
	if got, want := replaceDoubleSlash(bytes.Clone(pre), p), replaceDoubleSlashRef(bytes.Clone(pre), p); !bytes.Equal(got, want) {
		t.Fatalf("replaceDoubleSlash(%q) = %q, want %q", p, got, want)
	}
	if got, want := appendKeysOnly(bytes.Clone(pre), p), appendKeysOnlyRef(bytes.Clone(pre), p); !bytes.Equal(got, want) {
		t.Fatalf("appendKeysOnly(%q) = %q, want %q", p, got, want)
	}
}

// TestURLRewrites: replaceDoubleSlash and appendKeysOnly agree with their
// byte-at-a-time references on paths of the bytes they turn on.
func TestURLRewrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"/", "//", "///", "?", "=", "==", "&", "&=", ".", "a", "bc", "x_1", "%2f", "-", "Z9", "\xff"}
	for range 200000 {
		var b []byte
		for range rng.IntN(12) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		checkURLRewrites(t, b)
	}
}

// FuzzURLRewrites: replaceDoubleSlash and appendKeysOnly agree with their
// references on any bytes.
func FuzzURLRewrites(f *testing.F) {
	for _, s := range []string{"/a/b/c.php?id=1&x=2", "///a//b", "a=b=c", "=x", "/p?k=&=v&w=1", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) { checkURLRewrites(t, p) })
}
