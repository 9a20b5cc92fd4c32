package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/trails"
)

// storeNames compiles csv and returns the Names of LoadNames and of the
// store, both with wl.
func storeNames(t testing.TB, csv []byte, wl *trails.Whitelist) (want, got *trails.Names) {
	t.Helper()
	want, err := trails.LoadNames(bytes.NewReader(csv), "trails.csv", wl)
	if err != nil {
		t.Fatal(err)
	}
	_, s := compileCSV(t, csv, wl)
	got, probs, err := s.Names(wl)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(probs) != fmt.Sprint(want.Problems) {
		t.Errorf("problems %v\nLoadNames %v", probs, want.Problems)
	}
	ws, gs := want.Stats, got.Stats
	if ws.Keys != gs.Keys || ws.URLs != gs.URLs || ws.Regexes != gs.Regexes || ws.RegexSlots != gs.RegexSlots ||
		ws.Whitelisted != gs.Whitelisted || ws.Duplicates != gs.Duplicates {
		t.Errorf("stats %+v\nLoadNames %+v", gs, ws)
	}
	return want, got
}

// domainProbes are names around a key that exercise every step of the
// domain check: the key, its parents and children, the skip rules, the
// ip-adress.com and .onion forms, ports and case.
func domainProbes(k string) []string {
	p := []string{k, "www." + k, "sub." + k, "ns1." + k, "mx." + k, "a.b." + k, k + ".ip-adress.com",
		k + ".to", strings.ToUpper(k) + ":53", "x" + k}
	if i := strings.IndexByte(k, '.'); i >= 0 {
		p = append(p, k[i+1:])
	}
	return p
}

// pathProbes are request paths around a key's path that a URL check may
// reach it from, or narrowly miss it: values and parameters added to its
// query, segments before and after it, "//", its half.
func pathProbes(p string) []string {
	out := []string{p, p + "?a=1&b=2", p + "1", p + "&z=9", "/pre" + p, "//" + strings.TrimPrefix(p, "/"), p + "/", p + "/x.php?q=1",
		strings.Replace(p, "=", "=val", 1), p[:len(p)/2]}
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		out = append(out, p[:i]+"/"+p[i:])
	}
	return out
}

// sameMatches runs CheckDomain and CheckURL over every key of want (and
// names derived from them) on both Names and requires identical results.
func sameMatches(t *testing.T, want, got *trails.Names, keys []string) {
	t.Helper()
	var wh, gh trails.DomainHit
	var ws, gs trails.URLScratch
	checks, hits := 0, 0
	domain := func(name string) {
		wok := want.CheckDomain([]byte(name), &wh)
		gok := got.CheckDomain([]byte(name), &gh)
		checks++
		if wok {
			hits++
		}
		if wok != gok || wok && (string(wh.Trail) != string(gh.Trail) || wh.Meta != gh.Meta || wh.Rule != gh.Rule) {
			t.Fatalf("CheckDomain(%q): store %v %q %+v %v, LoadNames %v %q %+v %v",
				name, gok, gh.Trail, gh.Meta, gh.Rule, wok, wh.Trail, wh.Meta, wh.Rule)
		}
	}
	url := func(req trails.HTTPRequest) {
		wu, wok := want.CheckURL(&ws, &req)
		wt := string(wu.Trail)
		gu, gok := got.CheckURL(&gs, &req)
		checks++
		if wok {
			hits++
		}
		if wok != gok || wu.Type != gu.Type || wt != string(gu.Trail) || wu.Meta != gu.Meta {
			t.Fatalf("CheckURL(%q %q %q): store %v %+v, LoadNames %v %+v", req.Host, req.Path, req.Body, gok, gu, wok, wu)
		}
	}
	for _, k := range keys {
		for _, name := range domainProbes(k) {
			domain(name)
		}
		host, path := "miss.example", "/"+k
		if i := strings.IndexByte(k, '/'); i >= 0 {
			host, path = k[:i], k[i:]
		}
		for _, h := range []string{host, "other.example"} {
			for _, p := range pathProbes(path) {
				url(trails.HTTPRequest{Host: []byte(h), Path: []byte(p), Method: []byte("GET")})
			}
			url(trails.HTTPRequest{Host: []byte(h), Path: []byte(path), Method: []byte("POST"), Body: []byte("id=1&x=%41")})
		}
	}
	for _, miss := range []string{"no-such-name.example", "a.b.c.d.e.f.example.org", "1.2.3.4", "bad_name", ""} {
		domain(miss)
	}
	t.Logf("%d checks, %d hits", checks, hits)
}

func namesKeys(csv []byte) []string {
	var keys []string
	_, _ = trails.ReadCSV(bytes.NewReader(csv), "trails.csv", func(r trails.Row) error {
		keys = append(keys, r.Trail)
		return nil
	})
	return keys
}

func TestNamesCorpus(t *testing.T) {
	csv, err := os.ReadFile(filepath.Join(testenv.SharedDir(t), "corpus", "trails.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, wl := range []*trails.Whitelist{nil, trails.DefaultWhitelist()} {
		want, got := storeNames(t, csv, wl)
		sameMatches(t, want, got, namesKeys(csv))
	}
}

// synthCSV is a trails.csv with every kind of key and the infos the skip
// rules look at, duplicates, regex trails (more than Maltrail's 100
// slots, some untranslatable) and IP rows.
func synthCSV(rng *rand.Rand, n int) []byte {
	infos := []string{"asyncrat (malware)", "known attacker", "parking site (suspicious)", "dynamic domain (suspicious)",
		"free web hosting (suspicious)", "sinkhole nobel (malware)", "mass scanner", "q,\"uoted\""}
	refs := []string{"(static)", "(custom)", "abuse.ch"}
	var b bytes.Buffer
	for i := range n {
		var k string
		switch rng.IntN(12) {
		case 0:
			k = fmt.Sprintf("/path%d/gate.php?id=", i)
		case 1:
			k = fmt.Sprintf("host%d.example.net/p/%x", i, rng.Uint32())
		case 2:
			k = fmt.Sprintf("dga%d[0-9]+\\.x%d\\.com", i%150, i%7)
		case 3:
			k = fmt.Sprintf("(?<=x)bad[0-9]+%d\\.com", i) // look-behind: no RE2 equivalent
		case 4:
			k = fmt.Sprintf("%d.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256))
		case 5:
			k = fmt.Sprintf("evil%d.onion", i%50)
		case 6:
			k = fmt.Sprintf("dup%d.com", i%20)
		case 7:
			k = fmt.Sprintf("host%d.example.net/", i)
		default:
			k = fmt.Sprintf("d%x-%d.com", rng.Uint32(), i)
		}
		fmt.Fprintf(&b, "%s,\"%s\",%s\n", k, strings.ReplaceAll(infos[rng.IntN(len(infos))], `"`, `""`), refs[rng.IntN(len(refs))])
	}
	return b.Bytes()
}

func TestNamesSynthetic(t *testing.T) {
	csv := synthCSV(rand.New(rand.NewPCG(7, 8)), 3000)
	wl := trails.NewWhitelist()
	wl.Add("dup3.com")
	wl.Add("10.0.0.0/8")
	want, got := storeNames(t, csv, wl)
	if got.Stats.Regexes == 0 || len(got.Problems) == 0 {
		t.Fatalf("synthetic set has no regexes or problems: %+v", got.Stats)
	}
	keys := namesKeys(csv)
	// Names the regex trails match, which no key is.
	for i := range 150 {
		for j := range 7 {
			keys = append(keys, fmt.Sprintf("dga%d42.x%d.com", i, j))
		}
		keys = append(keys, fmt.Sprintf("dga%d42.x%d.com.evil%d.onion", i, i%7, i%50))
	}
	sameMatches(t, want, got, keys)
	var res trails.DomainHit
	regexHits := 0
	for i := range 150 {
		for j := range 7 {
			if got.CheckDomain(fmt.Appendf(nil, "dga%d42.x%d.com", i, j), &res) && res.Rule == trails.RuleRegex {
				regexHits++
			}
		}
	}
	if regexHits == 0 {
		t.Error("no regex trail hit")
	}
	t.Logf("%d regex hits", regexHits)
}

func TestNamesMissDoesNotAllocate(t *testing.T) {
	csv := synthCSV(rand.New(rand.NewPCG(1, 2)), 500)
	_, got := storeNames(t, csv, nil)
	var res trails.DomainHit
	var s trails.URLScratch
	name := []byte("www.not-a-trail.example.org")
	req := trails.HTTPRequest{Host: []byte("not-a-trail.example.org"), Path: []byte("/x/y.php?a=1"), Method: []byte("GET")}
	got.CheckDomain(name, &res)
	got.CheckURL(&s, &req)
	if n := testing.AllocsPerRun(100, func() {
		if got.CheckDomain(name, &res) {
			t.Fatal("hit")
		}
		if _, ok := got.CheckURL(&s, &req); ok {
			t.Fatal("URL hit")
		}
	}); n != 0 {
		t.Errorf("a miss allocates %v times", n)
	}
}

// BenchmarkNamesStatic checks domains against the store-backed Names of
// trails-static.csv.gz.
func BenchmarkNamesStatic(b *testing.B) {
	path, _ := staticStore(b)
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	names, _, err := s.Names(trails.DefaultWhitelist())
	if err != nil {
		b.Fatal(err)
	}
	hits, misses := lookupKeys(b, s, 1<<16)
	var hitNames [][]byte
	var res trails.DomainHit
	for _, k := range hits {
		if names.CheckDomain(k, &res) {
			hitNames = append(hitNames, k)
		}
	}
	// the same names against the Go-map Names of the same file, for
	// comparison
	gomap, err := trails.LoadNames(bytes.NewReader(testenv.StaticTrails(b)), "trails-static.csv", trails.DefaultWhitelist())
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		n     *trails.Names
		names [][]byte
		want  bool
	}{{"domain_hit", names, hitNames, true}, {"domain_miss", names, misses, false},
		{"gomap_domain_hit", gomap, hitNames, true}, {"gomap_domain_miss", gomap, misses, false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := c.names[i%len(c.names)]
				if c.n.CheckDomain(k, &res) != c.want {
					b.Fatalf("%q: not %v", k, c.want)
				}
				i++
			}
		})
	}
	// URL trails: requests for URL keys of the store (hits) and for
	// ordinary pages of clean hosts (misses).
	var urlHits, urlMisses []*trails.HTTPRequest
	var scratch trails.URLScratch
	for k := range s.Keys() {
		host, path, ok := bytes.Cut(k, []byte("/"))
		if !ok || len(urlHits) == 4096 {
			continue
		}
		r := &trails.HTTPRequest{Host: host, Path: append([]byte("/"), path...), Method: []byte("GET")}
		if _, hit := names.CheckURL(&scratch, r); hit {
			urlHits = append(urlHits, r)
		}
	}
	for i := range 4096 {
		r := &trails.HTTPRequest{Host: fmt.Appendf(nil, "www.clean-%d.example.org", i), Path: fmt.Appendf(nil, "/a/b/c.php?id=%d&x=2", i), Method: []byte("GET")}
		if _, hit := names.CheckURL(&scratch, r); !hit {
			urlMisses = append(urlMisses, r)
		}
	}
	for _, c := range []struct {
		name string
		reqs []*trails.HTTPRequest
		want bool
	}{{"url_hit", urlHits, true}, {"url_miss", urlMisses, false}} {
		b.Run(c.name, func(b *testing.B) {
			if len(c.reqs) == 0 {
				b.Fatal("no requests")
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := c.reqs[i%len(c.reqs)]
				if _, hit := names.CheckURL(&scratch, r); hit != c.want {
					b.Fatalf("%s%s: not %v", r.Host, r.Path, c.want)
				}
				i++
			}
		})
	}
}

// TestNamesLongNames: names of more labels than the domain check's scan
// keeps the dots of (their first parents are hashed apart) match as
// LoadNames' do, hits on every label included.
func TestNamesLongNames(t *testing.T) {
	var b strings.Builder
	var keys []string
	for n := 1; n <= 70; n += 3 {
		k := strings.Repeat("l.", n) + fmt.Sprintf("deep%d.example", n)
		keys = append(keys, k, "x."+k, strings.Repeat("q.", 40)+k)
		fmt.Fprintf(&b, "%s,deep %d (malware),(static)\n", k, n)
	}
	want, got := storeNames(t, []byte(b.String()), nil)
	sameMatches(t, want, got, keys)
}

// TestNamesBases: with the bases filter ruling out a name's last two
// labels, only its last label is looked up: keys of one label ("pw")
// still match under it, as keys of more labels do where the filter
// holds theirs, as with LoadNames.
func TestNamesBases(t *testing.T) {
	csv := "pw,tld (malware),(static)\nonion,tor (suspicious),(static)\nevil.pw,x (malware),(static)\n" +
		"a.b.evil.top,deep (malware),(static)\nkozow.com,dynamic domain (suspicious),(static)\n.dot.net,lead dot (malware),(static)\n" +
		"trail.,trail dot (malware),(static)\nevil.com:8080,port (malware),(static)\n"
	want, got := storeNames(t, []byte(csv), nil)
	var keys []string
	for _, k := range []string{"pw", "onion", "evil.pw", "a.b.evil.top", "b.evil.top", "evil.top", "kozow.com", "x.kozow.com",
		".dot.net", "x.dot.net", "trail.", "evil.com", "q.w.e.r.t.y.pw", "z.onion"} {
		keys = append(keys, k, "www."+k, "a.b.c."+k)
	}
	sameMatches(t, want, got, keys)
	_, s := compileCSV(t, []byte(csv), nil)
	for k := range s.Keys() {
		if bytes.IndexByte(k, '/') < 0 && bytes.IndexByte(k, '.') >= 0 && !s.BaseFilter().Contains(hashKey(trails.LastTwoLabels(k), s.seed)) {
			t.Errorf("key %q: its last two labels are not in the bases filter", k)
		}
	}
}

// TestNamesRegexMetas: a regex trail's meta is its key's final one, the
// last row's even when that row is no regex candidate, as LoadNames
// keeps it. Store.Names takes it from the regex rows without looking the
// keys up, so every row must carry what a lookup of its key gives.
func TestNamesRegexMetas(t *testing.T) {
	csv := []byte(`dga1[0-9]+\.x1\.com,"first (malware)",(static)
other.example,"other (malware)",(static)
dga1[0-9]+\.x1\.com,"second (malware)",(static)
dga2[0-9]+\.x2\.com,"only (malware)",(static)
dga1[0-9]+\.x1\.com,"last (malware)",(custom)
`)
	want, got := storeNames(t, csv, nil)
	_, s := compileCSV(t, csv, nil)
	rows := 0
	for r := range s.Regexes() {
		rows++
		mi, ok := s.LookupNameString(r.Key)
		if !ok || mi != r.Meta {
			t.Errorf("regex row %q line %d: meta %d, a lookup of its key gives %d %v", r.Key, r.Line, r.Meta, mi, ok)
		}
	}
	if rows != 3 {
		t.Fatalf("%d regex rows, want 3", rows)
	}
	for name, info := range map[string]string{"dga142.x1.com": "last (malware)", "dga277.x2.com": "only (malware)"} {
		var wh, gh trails.DomainHit
		if !want.CheckDomain([]byte(name), &wh) || wh.Rule != trails.RuleRegex || wh.Meta.Info != info {
			t.Fatalf("LoadNames: %s: %+v", name, wh)
		}
		if !got.CheckDomain([]byte(name), &gh) || gh.Rule != wh.Rule || gh.Meta != wh.Meta {
			t.Errorf("store: %s: %v %+v, LoadNames %v %+v", name, gh.Rule, gh.Meta, wh.Rule, wh.Meta)
		}
	}
}
