package feeds

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is one feed directory with an injected clock and captured logs.
// Update runs on the test goroutine, so neither needs locking.
type fixture struct {
	t    *testing.T
	dir  string
	now  time.Time
	logs bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	return &fixture{t: t, dir: t.TempDir(), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (fx *fixture) opts() Options {
	return Options{
		Dir:    fx.dir,
		Now:    func() time.Time { return fx.now },
		Logger: slog.New(slog.NewTextHandler(&fx.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// update runs Update with fx.opts() adjusted by mod and expects no run error.
func (fx *fixture) update(feeds []Feed, mod func(*Options)) []Result {
	fx.t.Helper()
	o := fx.opts()
	if mod != nil {
		mod(&o)
	}
	res, err := Update(context.Background(), feeds, o)
	if err != nil {
		fx.t.Fatalf("Update: %v", err)
	}
	if len(res) != len(feeds) {
		fx.t.Fatalf("got %d results for %d feeds", len(res), len(feeds))
	}
	return res
}

func (fx *fixture) read(name string) string {
	fx.t.Helper()
	b, err := os.ReadFile(filepath.Join(fx.dir, name))
	if err != nil {
		fx.t.Fatal(err)
	}
	return string(b)
}

func (fx *fixture) meta(name string) *meta {
	fx.t.Helper()
	m, err := readMeta(fx.dir, name)
	if err != nil || m == nil {
		fx.t.Fatalf("sidecar for %s: %v, %v", name, m, err)
	}
	return m
}

// noTemps checks that no temporary file survived the run.
func (fx *fixture) noTemps() {
	fx.t.Helper()
	left, _ := filepath.Glob(filepath.Join(fx.dir, "*.tmp"))
	hidden, _ := filepath.Glob(filepath.Join(fx.dir, ".*.tmp"))
	if left = append(left, hidden...); len(left) > 0 {
		fx.t.Fatalf("temporary files left behind: %v", left)
	}
}

func expect(t *testing.T, r Result, st Status, reason error) {
	t.Helper()
	if r.Status != st {
		t.Fatalf("%s: status %q (err %v), want %q", r.Name, r.Status, r.Err, st)
	}
	if reason != nil && !errors.Is(r.Err, reason) {
		t.Fatalf("%s: err %v, want %v", r.Name, r.Err, reason)
	}
	if reason == nil && st != StatusFailed && r.Err != nil {
		t.Fatalf("%s: unexpected err %v", r.Name, r.Err)
	}
}

// lines makes n data lines with a comment header.
func lines(n int) string {
	var b strings.Builder
	b.WriteString("# test feed\n\n")
	for i := range n {
		fmt.Fprintf(&b, "bad%d.example\n", i)
	}
	return b.String()
}

// server serves whatever body is set, recording the conditional headers
// of each request; handler state is shared with the server goroutines.
type server struct {
	mu      sync.Mutex
	body    string
	etag    string
	lastMod string
	reqs    []http.Header
	*httptest.Server
}

func newServer(t *testing.T, body string) *server {
	s := &server{body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.reqs = append(s.reqs, r.Header.Clone())
		if s.etag != "" {
			w.Header().Set("ETag", s.etag)
			if r.Header.Get("If-None-Match") == s.etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		if s.lastMod != "" {
			w.Header().Set("Last-Modified", s.lastMod)
			if r.Header.Get("If-Modified-Since") == s.lastMod {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(s.body)))
		fmt.Fprint(w, s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) set(body string) {
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func (s *server) lastReq() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs[len(s.reqs)-1]
}

func TestETagThen304(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, lines(10))
	srv.etag = `"v1"`
	feeds := []Feed{{Name: "a.txt", URL: srv.URL + "/a.txt"}}

	r := fx.update(feeds, nil)[0]
	expect(t, r, StatusUpdated, nil)
	if r.Lines != 10 || r.Bytes != int64(len(lines(10))) {
		t.Fatalf("updated: %d lines, %d bytes", r.Lines, r.Bytes)
	}
	if got := fx.read("a.txt"); got != lines(10) {
		t.Fatalf("copy = %q", got)
	}
	if m := fx.meta("a.txt"); m.ETag != `"v1"` || !m.CheckedAt.Equal(fx.now) {
		t.Fatalf("sidecar %+v", m)
	}

	fx.now = fx.now.Add(time.Hour)
	r = fx.update(feeds, nil)[0]
	expect(t, r, StatusNotModified, nil)
	if h := srv.lastReq(); h.Get("If-None-Match") != `"v1"` {
		t.Fatalf("If-None-Match = %q", h.Get("If-None-Match"))
	}
	if r.Lines != 10 || r.Age != 0 {
		t.Fatalf("not-modified: %+v", r)
	}
	if m := fx.meta("a.txt"); !m.CheckedAt.Equal(fx.now) || !m.UpdatedAt.Equal(fx.now.Add(-time.Hour)) {
		t.Fatalf("304 must refresh checked_at only: %+v", m)
	}
	if got := fx.read("a.txt"); got != lines(10) {
		t.Fatalf("copy changed on 304")
	}
	fx.noTemps()
}

func TestLastModifiedThen304(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, lines(10))
	srv.lastMod = "Sun, 01 Mar 2026 10:00:00 GMT"
	feeds := []Feed{{Name: "b", URL: srv.URL + "/b"}}

	expect(t, fx.update(feeds, nil)[0], StatusUpdated, nil)
	if h := srv.lastReq(); h.Get("If-Modified-Since") != "" || h.Get("If-None-Match") != "" {
		t.Fatalf("first request was conditional: %v", h)
	}
	fx.now = fx.now.Add(time.Hour)
	expect(t, fx.update(feeds, nil)[0], StatusNotModified, nil)
	h := srv.lastReq()
	if h.Get("If-Modified-Since") != srv.lastMod || h.Get("If-None-Match") != "" {
		t.Fatalf("second request headers: %v", h)
	}
	if m := fx.meta("b"); !m.CheckedAt.Equal(fx.now) {
		t.Fatalf("checked_at not refreshed: %+v", m)
	}
}

// A changed URL, or a copy changed behind the sidecar's back, must be
// fetched unconditionally: a 304 must not vouch for it.
func TestValidatorsOnlyForTheCopyTheyDescribe(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, lines(10))
	srv.etag = `"v1"`
	expect(t, fx.update([]Feed{{Name: "a", URL: srv.URL + "/one"}}, nil)[0], StatusUpdated, nil)

	expect(t, fx.update([]Feed{{Name: "a", URL: srv.URL + "/two"}}, nil)[0], StatusUpdated, nil)
	if h := srv.lastReq(); h.Get("If-None-Match") != "" {
		t.Fatalf("validators sent for a new URL")
	}

	if err := os.WriteFile(filepath.Join(fx.dir, "a"), []byte("edited.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := fx.update([]Feed{{Name: "a", URL: srv.URL + "/two"}}, func(o *Options) { o.Force = true })[0]
	expect(t, r, StatusUpdated, nil)
	if h := srv.lastReq(); h.Get("If-None-Match") != "" {
		t.Fatalf("validators sent for a copy edited by hand")
	}
}

// truncating serves good until cut is set, then a response that declares
// more than it sends and closes the connection (or breaks a chunked body).
func truncating(t *testing.T, good string, chunked bool) (*httptest.Server, func()) {
	var mu sync.Mutex
	cut := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		c := cut
		mu.Unlock()
		if !c {
			fmt.Fprint(w, good)
			return
		}
		conn, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		part := lines(500)[:2000]
		if chunked {
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(part), part)
		} else {
			fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(lines(500)), part)
		}
		bw.Flush()
	}))
	t.Cleanup(srv.Close)
	return srv, func() { mu.Lock(); cut = true; mu.Unlock() }
}

func TestTruncatedDownloadRefused(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			fx := newFixture(t)
			good := lines(20)
			srv, cut := truncating(t, good, chunked)
			feeds := []Feed{{Name: "t", URL: srv.URL}}
			expect(t, fx.update(feeds, nil)[0], StatusUpdated, nil)
			before, _ := os.ReadFile(filepath.Join(fx.dir, ".t.meta.json"))

			cut()
			fx.now = fx.now.Add(time.Hour)
			// Force too: it must never accept a truncated body.
			r := fx.update(feeds, func(o *Options) { o.Force = true })[0]
			expect(t, r, StatusRefused, ErrTruncated)
			if got := fx.read("t"); got != good {
				t.Fatalf("last good copy changed: %q", got)
			}
			after, _ := os.ReadFile(filepath.Join(fx.dir, ".t.meta.json"))
			if !bytes.Equal(before, after) {
				t.Fatalf("sidecar changed on a refusal")
			}
			if r.Lines != 20 || r.Age != time.Hour {
				t.Fatalf("refusal should describe the kept copy: %+v", r)
			}
			if !strings.Contains(fx.logs.String(), "level=WARN msg=\"feed REFUSED") {
				t.Fatalf("no WARN for the refusal:\n%s", fx.logs.String())
			}
			fx.noTemps()
		})
	}
}

func TestShrinkRefusedUnlessForced(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, lines(100))
	feeds := []Feed{{Name: "s", URL: srv.URL}}
	expect(t, fx.update(feeds, nil)[0], StatusUpdated, nil)

	// Comment lines do not count: 200 comments and 49 data lines is a
	// collapse from 100.
	srv.set(strings.Repeat("# padding\n", 200) + lines(49))
	expect(t, fx.update(feeds, nil)[0], StatusRefused, ErrShrank)
	if fx.read("s") != lines(100) {
		t.Fatal("copy replaced by a refused body")
	}

	// Exactly half passes the default fraction.
	srv.set(lines(50))
	r := fx.update(feeds, nil)[0]
	expect(t, r, StatusUpdated, nil)
	if r.Lines != 50 {
		t.Fatalf("lines = %d", r.Lines)
	}

	srv.set(lines(10))
	expect(t, fx.update(feeds, func(o *Options) { o.MinFraction = 0.1 })[0], StatusUpdated, nil)
	srv.set(lines(1))
	expect(t, fx.update(feeds, nil)[0], StatusRefused, ErrShrank)
	r = fx.update(feeds, func(o *Options) { o.Force = true })[0]
	expect(t, r, StatusUpdated, nil)
	if fx.read("s") != lines(1) || r.Lines != 1 {
		t.Fatal("forced update not applied")
	}
}

func TestEmptyRefused(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, "")
	feeds := []Feed{{Name: "e", URL: srv.URL}}

	// No copy yet: nothing is created from an empty body.
	expect(t, fx.update(feeds, nil)[0], StatusRefused, ErrEmpty)
	if _, err := os.Stat(filepath.Join(fx.dir, "e")); !os.IsNotExist(err) {
		t.Fatalf("copy created from an empty body: %v", err)
	}

	srv.set(lines(5))
	expect(t, fx.update(feeds, nil)[0], StatusUpdated, nil)
	for _, body := range []string{"", "# only\n#comments\n  \n"} {
		srv.set(body)
		expect(t, fx.update(feeds, func(o *Options) { o.Force = true })[0], StatusRefused, ErrEmpty)
		if fx.read("e") != lines(5) {
			t.Fatal("copy replaced by an empty body")
		}
	}
	fx.noTemps()
}

func TestMaxBytes(t *testing.T) {
	fx := newFixture(t)
	big := lines(1000)
	declared := newServer(t, big)
	// No Content-Length: the limit must hold while streaming.
	streamed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 100; i++ {
			fmt.Fprint(w, lines(100))
			http.NewResponseController(w).Flush()
		}
	}))
	t.Cleanup(streamed.Close)
	// A small .gz that decompresses past the limit.
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(strings.Repeat("bomb.example\n", 100000)))
	zw.Close()
	bomb := newServer(t, zb.String())

	feeds := []Feed{
		{Name: "declared", URL: declared.URL},
		{Name: "streamed", URL: streamed.URL},
		{Name: "bomb.gz", URL: bomb.URL + "/bomb.txt.gz"},
	}
	res := fx.update(feeds, func(o *Options) { o.MaxBytes = int64(len(big)) - 1 })
	for _, r := range res {
		expect(t, r, StatusRefused, ErrTooLarge)
	}
	if zb.Len() >= len(big) {
		t.Fatalf("bomb is %d bytes, not under the limit", zb.Len())
	}
	fx.noTemps()

	// At the limit exactly it is accepted.
	expect(t, fx.update(feeds[:1], func(o *Options) { o.MaxBytes = int64(len(big)) })[0], StatusUpdated, nil)
}

func TestStale(t *testing.T) {
	fx := newFixture(t)
	t0 := fx.now
	srv := newServer(t, lines(10))
	srv.etag = `"x"`
	feeds := []Feed{{Name: "f", URL: srv.URL}, {Name: "never", URL: srv.URL + "/404"}}
	expect(t, fx.update(feeds[:1], nil)[0], StatusUpdated, nil)

	period := 24 * time.Hour
	if s := Stale(fx.dir, feeds[:1], period, t0.Add(47*time.Hour)); len(s) != 0 {
		t.Fatalf("stale too early: %+v", s)
	}
	s := Stale(fx.dir, feeds, period, t0.Add(49*time.Hour))
	if len(s) != 2 || s[0].Name != "f" || s[0].Age != 49*time.Hour || !s[0].CheckedAt.Equal(t0) || s[0].Missing || !s[1].Missing {
		t.Fatalf("Stale = %+v", s)
	}

	// Three days on, the server fails: Update keeps the copy and warns
	// that it is stale.
	srv.Close()
	fx.now = t0.Add(72 * time.Hour)
	r := fx.update(feeds[:1], nil)[0]
	expect(t, r, StatusFailed, nil)
	if r.Age != 72*time.Hour {
		t.Fatalf("age %v", r.Age)
	}
	if !strings.Contains(fx.logs.String(), `level=WARN msg="feed STALE`) || !strings.Contains(fx.logs.String(), "age=72h0m0s") {
		t.Fatalf("no stale warning:\n%s", fx.logs.String())
	}
}

// A 304 confirms the copy, so an unchanged feed never goes stale.
func TestNotModifiedKeepsFresh(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, lines(10))
	srv.etag = `"x"`
	feeds := []Feed{{Name: "f", URL: srv.URL}}
	fx.update(feeds, nil)
	fx.now = fx.now.Add(30 * 24 * time.Hour)
	expect(t, fx.update(feeds, nil)[0], StatusNotModified, nil)
	if s := Stale(fx.dir, feeds, 0, fx.now.Add(time.Hour)); len(s) != 0 {
		t.Fatalf("stale after a 304: %+v", s)
	}
}

func TestCancelStopsDownloads(t *testing.T) {
	fx := newFixture(t)
	release := make(chan struct{})
	var mu sync.Mutex
	phase := "good"
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		p := phase
		mu.Unlock()
		if p == "good" {
			fmt.Fprint(w, lines(10))
			return
		}
		w.Header().Set("Content-Length", "1000000")
		fmt.Fprint(w, lines(100))
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) }) // runs before slow.Close
	other := newServer(t, lines(10))

	feeds := []Feed{{Name: "slow", URL: slow.URL}, {Name: "other", URL: other.URL}}
	expect(t, fx.update(feeds[:1], nil)[0], StatusUpdated, nil)
	mu.Lock()
	phase = "hang"
	mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := fx.opts()
	o.Progress = func(name string, done, total int64) {
		if name == "slow" && done > 0 {
			cancel()
		}
	}
	start := time.Now()
	res, err := Update(ctx, feeds, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Update err = %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	expect(t, res[0], StatusFailed, context.Canceled)
	expect(t, res[1], StatusFailed, context.Canceled)
	other.mu.Lock()
	n := len(other.reqs)
	other.mu.Unlock()
	if n != 0 {
		t.Fatalf("a feed after the cancel was fetched")
	}
	if fx.read("slow") != lines(10) {
		t.Fatal("copy changed by a cancelled download")
	}
	fx.noTemps()
}

func TestOneFailsOtherUpdates(t *testing.T) {
	fx := newFixture(t)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	good := newServer(t, lines(3))
	res := fx.update([]Feed{{Name: "broken", URL: broken.URL + "/x?key=s3cret"}, {Name: "good", URL: good.URL}}, nil)
	expect(t, res[0], StatusFailed, nil)
	expect(t, res[1], StatusUpdated, nil)
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "500") {
		t.Fatalf("err = %v", res[0].Err)
	}
	if strings.Contains(res[0].Err.Error(), "s3cret") || strings.Contains(fx.logs.String(), "s3cret") {
		t.Fatalf("API key leaked: %v", res[0].Err)
	}
	if !strings.Contains(fx.logs.String(), `level=WARN msg="feed update FAILED`) {
		t.Fatalf("no WARN for the failure:\n%s", fx.logs.String())
	}
	if fx.read("good") != lines(3) {
		t.Fatal("good feed not stored")
	}
}

func TestNetworkErrorRedacted(t *testing.T) {
	fx := newFixture(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close() // nothing listens there now
	r := fx.update([]Feed{{Name: "n", URL: u + "/x?token=s3cret"}}, nil)[0]
	expect(t, r, StatusFailed, nil)
	if strings.Contains(r.Err.Error(), "s3cret") {
		t.Fatalf("API key leaked: %v", r.Err)
	}
}

func TestGzip(t *testing.T) {
	fx := newFixture(t)
	text := lines(30)
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(text))
	zw.Close()
	gz := zb.String()

	var mu sync.Mutex
	var acceptEnc []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		acceptEnc = append(acceptEnc, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		switch r.URL.Path {
		case "/encoded.txt": // transfer compression
			w.Header().Set("Content-Encoding", "gzip")
			fmt.Fprint(w, gz)
		case "/file.txt.gz": // a published .gz, misdeclared as encoded
			w.Header().Set("Content-Encoding", "gzip")
			fmt.Fprint(w, gz)
		case "/cut.txt.gz":
			fmt.Fprint(w, gz[:len(gz)-10])
		case "/plain.gz":
			fmt.Fprint(w, text)
		}
	}))
	t.Cleanup(srv.Close)
	res := fx.update([]Feed{
		{Name: "encoded", URL: srv.URL + "/encoded.txt"},
		{Name: "file.gz", URL: srv.URL + "/file.txt.gz"},
		{Name: "cut.gz", URL: srv.URL + "/cut.txt.gz"},
		{Name: "plain.gz", URL: srv.URL + "/plain.gz"},
	}, nil)
	expect(t, res[0], StatusUpdated, nil)
	if fx.read("encoded") != text || res[0].Lines != 30 {
		t.Fatalf("Content-Encoding gzip not decoded: %d lines", res[0].Lines)
	}
	expect(t, res[1], StatusUpdated, nil)
	if fx.read("file.gz") != gz || res[1].Lines != 30 {
		t.Fatalf(".gz not kept as published: %d lines", res[1].Lines)
	}
	expect(t, res[2], StatusRefused, ErrCorrupt)
	expect(t, res[3], StatusRefused, ErrCorrupt)
	mu.Lock()
	defer mu.Unlock()
	if acceptEnc[0] != "gzip" || acceptEnc[1] != "identity" {
		t.Fatalf("Accept-Encoding sent: %q", acceptEnc)
	}
	fx.noTemps()
}

// The shrink check reads a current .gz copy decompressed, also when no
// sidecar vouches for its line count.
func TestShrinkCheckReadsGzipCopy(t *testing.T) {
	fx := newFixture(t)
	gzipped := func(s string) string {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.String()
	}
	if err := os.WriteFile(filepath.Join(fx.dir, "z.gz"), []byte(gzipped(lines(100))), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, gzipped(lines(10)))
	r := fx.update([]Feed{{Name: "z.gz", URL: srv.URL + "/z.gz"}}, nil)[0]
	expect(t, r, StatusRefused, ErrShrank)
	if !strings.Contains(r.Err.Error(), "10 data lines against 100") {
		t.Fatalf("err = %v", r.Err)
	}
}

func TestHTMLRefused(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, "\n  <!DOCTYPE html>\n<html><body>Please log in to the Wi-Fi</body></html>\n")
	expect(t, fx.update([]Feed{{Name: "h", URL: srv.URL}}, func(o *Options) { o.Force = true })[0], StatusRefused, ErrCorrupt)
	srv.set("<script>.example\nhtml.example\n")
	expect(t, fx.update([]Feed{{Name: "h", URL: srv.URL}}, nil)[0], StatusUpdated, nil)
}

func TestDefaultClientRefusesTLSDowngrade(t *testing.T) {
	c := defaultClient()
	defer c.CloseIdleConnections()
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	via := []*http.Request{req("https://feeds.example/a")}
	if err := c.CheckRedirect(req("http://feeds.example/a"), via); err == nil {
		t.Fatal("https to http redirect allowed")
	}
	if err := c.CheckRedirect(req("https://mirror.example/a"), via); err != nil {
		t.Fatalf("https to https redirect refused: %v", err)
	}
	if err := c.CheckRedirect(req("http://b.example/"), []*http.Request{req("http://a.example/")}); err != nil {
		t.Fatalf("http to http redirect refused: %v", err)
	}
}

func TestTLS(t *testing.T) {
	fx := newFixture(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, lines(4))
	}))
	t.Cleanup(srv.Close)
	r := fx.update([]Feed{{Name: "tls", URL: srv.URL}}, func(o *Options) { o.Client = srv.Client() })[0]
	expect(t, r, StatusUpdated, nil)
}

func TestBadFeedsDoNotStopTheOthers(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, lines(2))
	res := fx.update([]Feed{
		{Name: "../escape", URL: srv.URL},
		{Name: ".hidden", URL: srv.URL},
		{Name: "a/b", URL: srv.URL},
		{Name: "", URL: srv.URL},
		{Name: "file", URL: "file:///etc/passwd"},
		{Name: "nohost", URL: "http:///x"},
		{Name: "ok", URL: srv.URL},
		{Name: "ok", URL: srv.URL + "/dup"},
	}, nil)
	for i, r := range res {
		want := StatusFailed
		if i == 6 {
			want = StatusUpdated
		}
		expect(t, r, want, nil)
	}
	entries, _ := os.ReadDir(fx.dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != ".lock .ok.meta.json ok" {
		t.Fatalf("directory holds %v", names)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(fx.dir), "escape")); !os.IsNotExist(err) {
		t.Fatal("a feed name escaped Dir")
	}
}

func TestOptionsValidated(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{},
		{Dir: dir, MinFraction: 1.5},
		{Dir: dir, MinFraction: -0.1},
		{Dir: dir, MaxBytes: -1},
		{Dir: dir, Period: -time.Hour},
	} {
		if _, err := Update(context.Background(), nil, o); err == nil {
			t.Errorf("Options %+v accepted", o)
		}
	}
}

func TestBusyAndLeftoverTemps(t *testing.T) {
	fx := newFixture(t)
	srv := newServer(t, lines(2))
	leftover := filepath.Join(fx.dir, ".x.123.tmp")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockDir(fx.dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Update(context.Background(), []Feed{{Name: "x", URL: srv.URL}}, fx.opts())
	unlock()
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("Update with the lock held: %v", err)
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Fatal("a locked-out run touched the directory")
	}
	expect(t, fx.update([]Feed{{Name: "x", URL: srv.URL}}, nil)[0], StatusUpdated, nil)
	fx.noTemps()
}

func TestLineCounter(t *testing.T) {
	for in, want := range map[string]int{
		"":                      0,
		"a":                     1,
		"a\nb\n":                2,
		"# c\n  # c2\n\t\n\r\n": 0,
		"a # trailing\n \tb":    2,
		"\r\nx\r\n":             1,
	} {
		// Byte by byte too: lines cross Write calls.
		var whole, split lineCounter
		whole.Write([]byte(in))
		for i := range len(in) {
			split.Write([]byte{in[i]})
		}
		if whole.total() != want || split.total() != want {
			t.Errorf("%q: %d / %d, want %d", in, whole.total(), split.total(), want)
		}
	}
}
