package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/deploy"
)

// liveRows is the live trail set of the trails tests: 20 IP trails and a
// name.
func liveRows() string {
	var b strings.Builder
	for i := 1; i <= 19; i++ {
		fmt.Fprintf(&b, "198.51.100.%d,malware (test),(static)\n", i)
	}
	b.WriteString("evil.example,malware (test),(static)\n")
	return b.String()
}

// trailsStatus runs `trails stats -json` on a pin dir.
func trailsStatus(t *testing.T, pinDir string) deploy.Status {
	t.Helper()
	var st deploy.Status
	decodeJSON(t, mustXtrail(t, "trails", "stats", "-json", "-pin-dir", pinDir), &st)
	return st
}

// TestCLITrails drives trails load, stats, lookup and diff through the
// binary on a test pin dir, then loads 100 KB of random bytes named .csv
// over the live set: refused (exit 1, the malformed count and lines said),
// the live set kept; -force loads it.
func TestCLITrails(t *testing.T) {
	testenv.RequireRoot(t)
	pinDir := testenv.PinDir(t)
	dir := t.TempDir()
	storePath := filepath.Join(dir, "trails.xts")
	good := writeFile(t, filepath.Join(dir, "good.csv"), liveRows()+"203.0.113.5:8443,c2 (test),(static)\nbroken row\n")

	// load -json: what was compiled and how it went live
	var loaded struct {
		PinDir     string `json:"pin_dir"`
		StoreStats struct {
			IPs  int
			Load struct{ Rows, Skipped int }
		} `json:"store_stats"`
		Deploy deploy.Result
	}
	decodeJSON(t, mustXtrail(t, "trails", "load", "-json", "-pin-dir", pinDir, "-store", storePath, good), &loaded)
	if loaded.PinDir != pinDir || loaded.StoreStats.IPs != 20 || loaded.StoreStats.Load.Rows != 21 || loaded.StoreStats.Load.Skipped != 1 ||
		loaded.Deploy.Kernel == nil || loaded.Deploy.Kernel.IP4 != 19 || loaded.Deploy.Kernel.Port4 != 1 {
		t.Fatalf("load -json: %+v", loaded)
	}
	// the malformed row is named on stderr; -q keeps it (a warning)
	r := mustXtrail(t, "trails", "load", "-q", "-pin-dir", pinDir, "-store", storePath, good)
	if !strings.Contains(r.stderr, "good.csv:22: 1 fields, want 3") || strings.Contains(r.stderr, "level=INFO") {
		t.Errorf("load -q: the malformed row's warning, no info: %s", r)
	}
	if !strings.Contains(r.stdout, "rows 21 (malformed 1") || !strings.Contains(r.stdout, "no sensor running: kernel maps loaded") {
		t.Errorf("load output: %s", r)
	}

	st := trailsStatus(t, pinDir)
	if st.Kernel.IP4 != 19 || st.Kernel.Port4 != 1 || st.Origin == nil || st.Origin.By != "trails load" ||
		st.Store == nil || st.Store.Path != storePath || st.Generation == loaded.Deploy.Generation {
		t.Fatalf("stats -json after a second load (the first went to generation %d): %+v", loaded.Deploy.Generation, st)
	}
	r = mustXtrail(t, "trails", "stats", "-pin-dir", pinDir)
	for _, want := range []string{fmt.Sprintf("generation %d, loaded", st.Generation), "by trails load", "ipv4 19  ipv4:port 1", storePath, good} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stats lacks %q: %s", want, r)
		}
	}
	// -period: the sources are fresh for a day, stale for a nanosecond
	if r := mustXtrail(t, "trails", "stats", "-period", "1ns", "-pin-dir", pinDir); !strings.Contains(r.stdout, "STALE") {
		t.Errorf("stats -period 1ns: %s", r)
	}
	if strings.Contains(r.stdout, "STALE") {
		t.Errorf("fresh trails reported stale: %s", r)
	}
	wantFail(t, xtrail(t, "trails", "stats", "-pin-dir", filepath.Join(dir, "nothing")), 1, "xtrail trails: ")

	// lookup: addresses from the kernel, names from the store
	var hit dataplane.LookupResult
	decodeJSON(t, mustXtrail(t, "trails", "lookup", "-json", "-pin-dir", pinDir, "198.51.100.7"), &hit)
	if !hit.Found || hit.Trail != "198.51.100.7" || hit.Info != "malware (test)" {
		t.Errorf("lookup 198.51.100.7: %+v", hit)
	}
	for q, want := range map[string]string{
		"203.0.113.5:8443":     "203.0.113.5:8443: IPORT 203.0.113.5:8443  info \"c2 (test)\"",
		"203.0.113.5":          "203.0.113.5: no trail",
		"www.evil.example":     "www.evil.example: DNS (www).evil.example  info \"malware (test)\"",
		"clean.example":        "clean.example: no trail",
		"198.51.100.200:53000": "no trail",
	} {
		if r := mustXtrail(t, "trails", "lookup", "-pin-dir", pinDir, q); !strings.Contains(r.stdout, want) {
			t.Errorf("lookup %s: want %q: %s", q, want, r)
		}
	}
	other := writeFile(t, filepath.Join(dir, "other.csv"), "other.example,phishing (test),(custom)\n")
	if r := mustXtrail(t, "trails", "lookup", "-pin-dir", pinDir, "-trails", other, "a.other.example"); !strings.Contains(r.stdout, "phishing (test)") {
		t.Errorf("lookup -trails: %s", r)
	}
	wantFail(t, xtrail(t, "trails", "lookup", "-pin-dir", pinDir), 1, "bad arguments")

	// compile: a store for TRAILS_FILE, which lookup -trails reads
	xts := filepath.Join(dir, "compiled.xts")
	var compiled struct {
		File  string
		Stats struct{ IPs, Names int }
	}
	decodeJSON(t, mustXtrail(t, "trails", "compile", "-json", "-o", xts, good), &compiled)
	if compiled.File != xts || compiled.Stats.IPs != 20 {
		t.Errorf("compile -json: %+v", compiled)
	}
	if r := mustXtrail(t, "trails", "lookup", "-trails", xts, "x.evil.example"); !strings.Contains(r.stdout, "parent domain") {
		t.Errorf("lookup in the compiled store: %s", r)
	}
	wantFail(t, xtrail(t, "trails", "compile", "-o", good, good), 1, "would overwrite its source")

	// diff: one removed, one changed, two added; nothing changes
	next := strings.Replace(liveRows(), "198.51.100.19,malware (test)", "198.51.100.19,adware (test)", 1)
	next = strings.Replace(next, "198.51.100.18,malware (test),(static)\n", "", 1)
	nextCSV := writeFile(t, filepath.Join(dir, "next.csv"), next+"203.0.113.5:8443,c2 (test),(static)\n203.0.113.6,x (test),(static)\n2001:db8::6,x (test),(static)\n")
	r = mustXtrail(t, "trails", "diff", "-pin-dir", pinDir, nextCSV)
	if !strings.Contains(r.stdout, "added 2  removed 1  changed 1") || !strings.Contains(r.stdout, "-198.51.100.18") {
		t.Errorf("diff: %s", r)
	}
	var d dataplane.Diff
	decodeJSON(t, mustXtrail(t, "trails", "diff", "-json", "-pin-dir", pinDir, nextCSV), &d)
	if d.Added != 2 || d.Removed != 1 || d.Changed != 1 {
		t.Errorf("diff -json: %+v", d)
	}
	if g := trailsStatus(t, pinDir).Generation; g != st.Generation {
		t.Errorf("diff switched the generation %d -> %d", st.Generation, g)
	}

	// 100 KB of random bytes named .csv: refused, the live set stays
	junk := filepath.Join(dir, "junk.csv")
	b := make([]byte, 100<<10)
	rng := rand.New(rand.NewPCG(8, 6))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(junk, b, 0o644); err != nil {
		t.Fatal(err)
	}
	storeBefore, err := os.Stat(storePath)
	if err != nil {
		t.Fatal(err)
	}
	r = xtrail(t, "trails", "load", "-q", "-pin-dir", pinDir, "-store", storePath, junk)
	wantFail(t, r, 1, "more malformed rows than good ones", "-force loads it anyway")
	m := regexp.MustCompile(`(\d+) malformed against (\d+) good \(first: \S*/junk\.csv:\d+: [^;]+; \S*/junk\.csv:\d+: `).FindStringSubmatch(r.stderr)
	if m == nil || m[2] == "0" {
		t.Errorf("the refusal says how many rows are malformed and where: %s", r)
	}
	after := trailsStatus(t, pinDir)
	if after.Generation != st.Generation || after.Kernel.IP4 != 19 || after.Origin.Sources[1].Path != good {
		t.Fatalf("the refused load changed the live set: %+v", after)
	}
	if s, err := os.Stat(storePath); err != nil || !s.ModTime().Equal(storeBefore.ModTime()) || s.Size() != storeBefore.Size() {
		t.Errorf("the refused load rewrote the store %s: %v", storePath, err)
	}
	r = mustXtrail(t, "trails", "load", "-q", "-force", "-pin-dir", pinDir, "-store", storePath, junk)
	if after = trailsStatus(t, pinDir); after.Generation == st.Generation || after.Origin.Sources[1].Path != junk {
		t.Fatalf("-force did not load the junk: %+v\n%s", after, r)
	}
}

// TestCLITrailsUpdate serves feeds from a local HTTP server: trails update
// writes the copies where -dir (or TRAILS_FEED_DIR of -c) says, refuses a
// collapsed feed unless -force, and exits 1 when a feed failed.
func TestCLITrailsUpdate(t *testing.T) {
	var body atomic.Value
	body.Store(strings.Repeat("198.51.100.1,malware (test),(static)\n", 10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/feed.csv", "/trails":
			w.Write([]byte(body.Load().(string)))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	feedDir := filepath.Join(dir, "feeds")

	r := mustXtrail(t, "trails", "update", "-dir", feedDir, "one="+srv.URL+"/feed.csv")
	if got, err := os.ReadFile(filepath.Join(feedDir, "one")); err != nil || string(got) != body.Load().(string) {
		t.Fatalf("copy of feed one: %q, %v\n%s", got, err, r)
	}
	if !strings.Contains(r.stdout, "updated") {
		t.Errorf("update output: %s", r)
	}

	// -c: the feeds, the directory and the period come from maltrail.conf
	confDir := filepath.Join(dir, "conf-feeds")
	conf := writeFile(t, filepath.Join(dir, "maltrail.conf"), fmt.Sprintf(
		"UPDATE_SERVER %s\nTRAILS_FEEDS two=%s/feed.csv\nTRAILS_FEED_DIR %s\nUPDATE_PERIOD 3600\n", srv.Listener.Addr(), srv.URL, confDir))
	var rows []struct{ Name, Status, Error string }
	decodeJSON(t, mustXtrail(t, "trails", "update", "-json", "-c", conf), &rows)
	if len(rows) != 2 || rows[0].Name != "trails.csv" || rows[0].Status != "updated" || rows[1].Name != "two" || rows[1].Status != "updated" {
		t.Fatalf("update -c -json: %+v", rows)
	}
	for _, f := range []string{"trails.csv", "two"} {
		if _, err := os.Stat(filepath.Join(confDir, f)); err != nil {
			t.Errorf("TRAILS_FEED_DIR: %v", err)
		}
	}

	// a feed that collapsed to one row is refused and the copy kept, exit 1
	body.Store("198.51.100.1,malware (test),(static)\n")
	r = xtrail(t, "trails", "update", "-dir", feedDir, "one="+srv.URL+"/feed.csv")
	wantFail(t, r, 1, "1 of 1 feeds failed or were refused", "REFUSED")
	if got, _ := os.ReadFile(filepath.Join(feedDir, "one")); strings.Count(string(got), "\n") != 10 {
		t.Errorf("the refused feed replaced the copy: %q", got)
	}
	mustXtrail(t, "trails", "update", "-force", "-dir", feedDir, "one="+srv.URL+"/feed.csv")
	if got, _ := os.ReadFile(filepath.Join(feedDir, "one")); string(got) != body.Load().(string) {
		t.Errorf("-force: copy %q", got)
	}

	// a missing feed fails (exit 1), the others still update; -q keeps
	// only warnings
	r = xtrail(t, "trails", "update", "-q", "-dir", feedDir, "one="+srv.URL+"/feed.csv", "gone="+srv.URL+"/gone")
	wantFail(t, r, 1, "1 of 2 feeds failed or were refused", "404")
	if strings.Contains(r.stderr, "level=INFO") || !strings.Contains(r.stdout, "one ") {
		t.Errorf("-q: %s", r)
	}
	// -period: a copy confirmed a moment ago is stale for a 1 ns period
	r = xtrail(t, "trails", "update", "-period", "1ns", "-dir", feedDir, "one="+srv.URL+"/feed.csv", "gone="+srv.URL+"/gone")
	if !strings.Contains(r.stderr, "feed STALE") || !strings.Contains(r.stderr, "update_period=1ns") {
		t.Errorf("-period 1ns: %s", r)
	}
	wantFail(t, xtrail(t, "trails", "update", "-dir", feedDir, "no-equals-sign"), 1, `feed "no-equals-sign": want NAME=URL`)
	wantFail(t, xtrail(t, "trails", "update", "-dir", feedDir), 1, "no feeds")
	wantFail(t, xtrail(t, "trails", "update", "-c", filepath.Join(dir, "missing.conf")), 1, "missing.conf")
}
