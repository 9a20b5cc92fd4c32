package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/trails"
)

func TestRoundTripSynthetic(t *testing.T) {
	for _, n := range []int{0, 1, 5, 1000, 20000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := synthInput(rand.New(rand.NewPCG(uint64(n), 1)), n)
			s := mustOpen(t, buildBytes(t, in))
			checkStore(t, s, in)
			if got := s.Info(); !got.Verified || got.Version != version || !got.BuildTime.Equal(in.BuildTime) {
				t.Errorf("Info = %+v", got)
			}
		})
	}
}

func TestEmptyInput(t *testing.T) {
	in := &Input{}
	s := mustOpen(t, buildBytes(t, in))
	checkStore(t, s, in)
	if _, ok := s.LookupNameString("evil.com"); ok {
		t.Fatal("an empty store hit")
	}
	if _, ok := s.LookupIP(netip.MustParseAddr("1.2.3.4"), 0); ok {
		t.Fatal("an empty store hit an IP")
	}
}

// The same input builds the same bytes: nothing depends on map order.
func TestBuildDeterministic(t *testing.T) {
	a := buildBytes(t, synthInput(rand.New(rand.NewPCG(7, 7)), 3000))
	b := buildBytes(t, synthInput(rand.New(rand.NewPCG(7, 7)), 3000))
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same input differ")
	}
}

func TestBuildErrors(t *testing.T) {
	metas := []trails.Meta{{Info: "x", Reference: "(static)"}}
	for name, in := range map[string]*Input{
		"empty key":       {Metas: metas, Names: []Name{{Key: "", Meta: 0}}},
		"name meta":       {Metas: metas, Names: []Name{{Key: "a.com", Meta: 1}}},
		"IP meta":         {Metas: metas, IPs: []trails.IPTrail{{Addr: netip.MustParseAddr("1.2.3.4"), Meta: 5}}},
		"invalid IP":      {Metas: metas, IPs: []trails.IPTrail{{}}},
		"invalid CIDR":    {Metas: metas, CIDRs: []trails.CIDRTrail{{}}},
		"CIDR meta":       {Metas: metas, CIDRs: []trails.CIDRTrail{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Meta: 1}}},
		"regex meta":      {Metas: metas, Regexes: []Regex{{Key: `a[0-9]\.com`, Meta: 3}}},
		"negative rows":   {Sources: []Source{{Name: "x", Rows: -1}}},
		"negative line":   {Metas: metas, Regexes: []Regex{{Key: `a[0-9]\.com`, Line: -1}}},
		"no metas at all": {Names: []Name{{Key: "a.com"}}},
	} {
		var buf bytes.Buffer
		if _, err := Build(&buf, in); err == nil {
			t.Errorf("%s: Build succeeded", name)
		} else if buf.Len() != 0 {
			t.Errorf("%s: Build wrote %d bytes before failing", name, buf.Len())
		}
	}
}

// errWriter fails after n bytes.
type errWriter struct{ n int }

func (w *errWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestBuildWriteError(t *testing.T) {
	in := synthInput(rand.New(rand.NewPCG(1, 2)), 100)
	if _, err := Build(&errWriter{n: 1000}, in); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Build to a failing writer: %v", err)
	}
}

func TestCompileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trails.xts")
	in1 := synthInput(rand.New(rand.NewPCG(1, 1)), 50)
	if _, err := Compile(path, in1); err != nil {
		t.Fatal(err)
	}
	old, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	in2 := synthInput(rand.New(rand.NewPCG(2, 2)), 80)
	st, err := Compile(path, in2)
	if err != nil {
		t.Fatal(err)
	}
	// The old mapping still reads the old file.
	checkStore(t, old, in1)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkStore(t, s, in2)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 || fi.Size() != st.FileSize {
		t.Errorf("mode %v size %d, want 0644 and %d", fi.Mode(), fi.Size(), st.FileSize)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the store (temp files left?)", len(ents))
	}
	// A failed compile leaves the old store and no temp file.
	bad := &Input{Names: []Name{{Key: "x.com", Meta: 9}}}
	if _, err := Compile(path, bad); err == nil {
		t.Fatal("Compile of a bad input succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("a failed compile left %d entries", len(ents))
	}
	if _, err := Compile(filepath.Join(dir, "missing", "x.xts"), in1); err == nil {
		t.Error("Compile into a missing directory succeeded")
	}
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	in := synthInput(rand.New(rand.NewPCG(3, 3)), 10)
	s, err := Open(writeTemp(t, buildBytes(t, in)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A closed store finds nothing rather than faulting.
	if _, ok := s.LookupNameString(in.Names[0].Key); ok {
		t.Fatal("a closed store hit")
	}
	exercise(s, [][]byte{[]byte(in.Names[0].Key)})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("a directory opened")
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); !errors.Is(err, ErrCorrupt) {
		t.Errorf("empty file: %v", err)
	}
	csv := filepath.Join(dir, "trails.csv")
	os.WriteFile(csv, bytes.Repeat([]byte("evil.com,x (malware),(static)\r\n"), 20), 0o644)
	if _, err := Open(csv); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "magic") {
		t.Errorf("a CSV file: %v", err)
	}
	for _, v := range []byte{1, 2, 5, version + 1} { // version 1 had 16-byte slots, version 2 no filter, version 5 an 8-bit one
		b := buildBytes(t, &Input{})
		b[hVersion] = v
		if _, err := openBytes(t, b, OpenOptions{}); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "recompile") {
			t.Errorf("version %d: %v", v, err)
		}
	}
	b := buildBytes(t, &Input{})
	b[hFlags] = 1
	reseal(b)
	if _, err := openBytes(t, b, OpenOptions{}); !errors.Is(err, ErrVersion) {
		t.Errorf("unknown flag: %v", err)
	}
}

// collectNames loads csv both ways: trails.LoadNames/LoadSet and FromCSV
// compiled to a store.
func collectNames(t *testing.T, csv []byte, wl *trails.Whitelist) (*trails.Names, *trails.Set, *Input, *Store) {
	t.Helper()
	names, err := trails.LoadNames(bytes.NewReader(csv), "trails.csv", wl)
	if err != nil {
		t.Fatal(err)
	}
	set, err := trails.LoadSet(bytes.NewReader(csv), "trails.csv")
	if err != nil {
		t.Fatal(err)
	}
	set.DropWhitelisted(wl)
	in, s := compileCSV(t, csv, wl)
	return names, set, in, s
}

// sameAsTrails checks that s holds exactly the name keys and IP trails
// trails.LoadNames and trails.LoadSet keep, with the same metas.
func sameAsTrails(t *testing.T, names *trails.Names, set *trails.Set, s *Store) {
	t.Helper()
	st := s.Stats()
	if st.Names != names.Stats.Keys || st.URLs != names.Stats.URLs || st.Duplicates != names.Stats.Duplicates ||
		st.Load.Empty != names.Stats.Empty || st.Load.Rows != names.Stats.CSV.Rows || st.Load.Skipped != names.Stats.CSV.Skipped {
		t.Errorf("store stats %+v\nLoadNames stats %+v", st, names.Stats)
	}
	// Equal counts and every store key found in Names with its meta make
	// the key sets equal.
	for k, mi := range s.Keys() {
		m, ok := names.Lookup(string(k))
		info, ref := s.Meta(mi)
		if !ok || m.Info != info || m.Reference != ref {
			t.Fatalf("key %q: store meta %q %q, LoadNames %+v %v", k, info, ref, m, ok)
		}
	}
	if st.IPs != len(set.IPs) {
		t.Fatalf("store has %d IP trails, LoadSet %d", st.IPs, len(set.IPs))
	}
	i := 0
	for ip := range s.IPs() {
		want := set.IPs[i]
		info, ref := s.Meta(ip.Meta)
		wm := set.Metas[want.Meta]
		if ip.Addr != want.Addr || ip.Port != want.Port || info != wm.Info || ref != wm.Reference {
			t.Fatalf("IP trail %d: store %v:%d %q, LoadSet %v:%d %q", i, ip.Addr, ip.Port, info, want.Addr, want.Port, wm.Info)
		}
		if trails.Flags(s.Flags(ip.Meta)&7) != wm.Flags() {
			t.Fatalf("IP trail %v: flags %b, want %b", ip.Addr, s.Flags(ip.Meta), wm.Flags())
		}
		i++
	}
	if set.NonCanonical != st.Load.NonCanonical {
		t.Errorf("NonCanonical: LoadSet %d, store %d", set.NonCanonical, st.Load.NonCanonical)
	}
}

func TestCorpusMatchesLoadNames(t *testing.T) {
	path := filepath.Join(testenv.SharedDir(t), "corpus", "trails.csv")
	csv, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, wl := range []*trails.Whitelist{nil, trails.DefaultWhitelist()} {
		names, set, in, s := collectNames(t, csv, wl)
		sameAsTrails(t, names, set, s)
		checkStore(t, s, in)
		for _, miss := range []string{"evil-test-domain.co", "sub.evil-parent.com.", "", "66.66.66.6", "www.evil-parent.com"} {
			if _, ok := s.LookupNameString(miss); ok {
				t.Errorf("%q hit", miss)
			}
		}
		if _, ok := s.LookupIP(netip.MustParseAddr("dead::beef"), 443); !ok {
			t.Error("[dead::beef]:443 missing")
		}
	}
}

// TestSpecRowsMatchLoadNames feeds the key shapes the classification
// has to get right, with a whitelist, and compares with pkg/trails.
func TestSpecRowsMatchLoadNames(t *testing.T) {
	csv := []byte("evil.com,x (malware),(static)\r\n" +
		"evil.com,y (malware),(static)\r\n" + // a duplicate: the last row wins
		",empty,(static)\r\n" +
		"66.66.66.66,ip (malware),(static)\r\n" + // both an IP and a name key
		"1.2.3,not an ip,(static)\r\n" + // non-canonical, no ':': a name key
		"01.2.3.4,leading zero,(static)\r\n" +
		"1.2.3.4:0,port 0,(static)\r\n" + // non-canonical with ':': dropped
		"1.2.3.4:8443,ipport (malware),(static)\r\n" +
		"dead::beef,v6,(static)\r\n" +
		"[dead::beef]:443,v6 port,(static)\r\n" +
		"[0:0:0:0:0:ffff:2d3e:c649]:53,v6 uncompressed,(static)\r\n" +
		"evil.com:8080,a name with a port,(static)\r\n" +
		"cafe.be,hex letters,(static)\r\n" +
		"12345,digits only,(static)\r\n" +
		"[a-z]{1}\\.appjiagu\\.com,bracket regex (malware),(static)\r\n" +
		"dga[0-9]+\\.x\\.com,dga (malware),(static)\r\n" +
		"dga[0-9]+\\.x\\.com,dga again (malware),(static)\r\n" +
		"custom[0-9]+\\.com,not static,(custom)\r\n" +
		"good.com,whitelisted,(static)\r\n" +
		"6.6.6.6,whitelisted ip,(static)\r\n" +
		"7.7.7.7:80,whitelisted ipport,(static)\r\n" +
		"10.1.2.3,in a whitelisted cidr,(static)\r\n" +
		"/gate.php?id=,url,(static)\r\n" +
		"host.com/,host url,(static)\r\n" +
		"bad,row\r\n" +
		"\"quoted,key.com\",\"info, with comma\",(static)\r\n")
	wl := trails.NewWhitelist()
	wl.Add("good.com")
	wl.Add("6.6.6.6")
	wl.Add("7.7.7.7:80")
	wl.Add("10.0.0.0/8")
	names, set, in, s := collectNames(t, csv, wl)
	sameAsTrails(t, names, set, s)
	checkStore(t, s, in)
	st := s.Stats()
	if st.Load.Whitelisted != 4 || st.Load.NonCanonical != 4 || st.Load.IPRows != 4 || st.Load.Skipped != 1 {
		t.Errorf("load stats %+v", st.Load)
	}
	var rx []string
	for r := range s.Regexes() {
		info, _ := s.Meta(r.Meta)
		rx = append(rx, fmt.Sprintf("%s %d %s", r.Key, r.Line, info))
	}
	want := []string{`[a-z]{1}\.appjiagu\.com 15 bracket regex (malware)`, `dga[0-9]+\.x\.com 16 dga again (malware)`, `dga[0-9]+\.x\.com 17 dga again (malware)`}
	if fmt.Sprint(rx) != fmt.Sprint(want) {
		t.Errorf("regexes %q\nwant %q", rx, want)
	}
	if src := s.Sources(); len(src) != 1 || src[0].Name != "trails.csv" || src[0].Rows != 25 {
		t.Errorf("sources %+v", src)
	}
}

func TestFlags(t *testing.T) {
	for info, want := range map[string]Flags{
		"known attacker":                FlagAttacker,
		"parking site (suspicious)":     FlagParking | FlagNSSkip,
		"asyncrat (malware)":            FlagMalware,
		"sinkhole nobel (malware)":      FlagMalware | FlagNSSkip,
		"dynamic domain (suspicious)":   FlagDynSkip | FlagNSSkip,
		"free web hosting (suspicious)": FlagDynSkip | FlagNSSkip,
		"mass scanner":                  0,
	} {
		if got := metaFlags(trails.Meta{Info: info}); got != want {
			t.Errorf("%q: flags %b, want %b", info, got, want)
		}
	}
}

// TestStaticMatchesLoadNames compiles the real 1.63M-row file and checks
// it against pkg/trails key for key.
func TestStaticMatchesLoadNames(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("-short or -race: the full trails file takes seconds (~40 s under -race), and this test has no concurrency")
	}
	csv := testenv.StaticTrails(t)
	names, set, _, s := collectNames(t, csv, trails.DefaultWhitelist())
	sameAsTrails(t, names, set, s)
	// The checks match as LoadNames' do: every URL key starting with '/',
	// and a sample of the others, with requests around them.
	got, _, err := s.Names(trails.DefaultWhitelist())
	if err != nil {
		t.Fatal(err)
	}
	var probe []string
	i := 0
	for k := range s.Keys() {
		if k[0] == '/' || i%50 == 0 {
			probe = append(probe, string(k))
		}
		i++
	}
	sameMatches(t, names, got, probe)
	// Store.Names takes the regex trails' metas from the rows: each must
	// be its key's.
	for r := range s.Regexes() {
		if mi, ok := s.LookupNameString(r.Key); !ok || mi != r.Meta {
			t.Errorf("regex row %q: meta %d, its key's %d %v", r.Key, r.Meta, mi, ok)
		}
	}
	st := s.Stats()
	t.Logf("%d names (%d URLs), %d IPs, %d regex rows, %d metas, %d slots, longest probe %d, %d MB",
		st.Names, st.URLs, st.IPs, st.Regexes, st.Metas, st.Slots, st.MaxProbe, st.FileSize>>20)
	// The name filter on random names that are no keys: each false
	// positive costs a probe of the table, which maps a page of it.
	const probes = 1 << 20
	pos := 0
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range probes {
		if s.filter.Contains(hashKey(fmt.Appendf(nil, "n%x-%d.example.org", rng.Uint64(), i), s.seed)) {
			pos++
		}
	}
	t.Logf("name filter: %d bytes, %.2f bits per key, %d false positives in %d names (%.4f%%)",
		st.FilterBytes, float64(st.FilterBytes*8)/float64(st.Names), pos, probes, 100*float64(pos)/probes)
	if pos > 4*probes/65536 {
		t.Errorf("name filter: %d false positives in %d names, want about 1/65536", pos, probes)
	}
	if st.Regexes < 20 || st.Names < 1_000_000 || st.IPs < 300_000 {
		t.Errorf("implausible stats %+v", st)
	}
}

func TestConcurrentReaders(t *testing.T) {
	in := synthInput(rand.New(rand.NewPCG(9, 9)), 5000)
	s := mustOpen(t, buildBytes(t, in))
	e := expect(in)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			deadline := time.Now().Add(200 * time.Millisecond)
			for i := 0; time.Now().Before(deadline) || i < 2000; i++ {
				n := in.Names[rng.IntN(len(in.Names))]
				mi, ok := s.LookupNameString(n.Key)
				if !ok || mi != e.names[n.Key] {
					errs <- fmt.Errorf("goroutine %d: %q = %d %v", g, n.Key, mi, ok)
					return
				}
				info, _ := s.MetaBytes(mi)
				if string(info) != in.Metas[mi].Info {
					errs <- fmt.Errorf("goroutine %d: meta %d info %q", g, mi, info)
					return
				}
				ip := in.IPs[rng.IntN(len(in.IPs))]
				if m, ok := s.LookupIP(ip.Addr, ip.Port); !ok || m != e.ipMeta[ipKey{ip.Addr, ip.Port}]-1 {
					errs <- fmt.Errorf("goroutine %d: IP %v:%d = %d %v", g, ip.Addr, ip.Port, m, ok)
					return
				}
				if _, ok := s.LookupNameString(fmt.Sprintf("miss-%d.com", i)); ok {
					errs <- fmt.Errorf("goroutine %d: a miss hit", g)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	in := synthInput(rand.New(rand.NewPCG(4, 4)), 1000)
	s := mustOpen(t, buildBytes(t, in))
	hit, miss := []byte(in.Names[10].Key), []byte("not-a-trail.example.org")
	a := netip.MustParseAddr("1.2.3.4")
	allocs := testing.AllocsPerRun(1000, func() {
		mi, _ := s.LookupName(hit)
		s.LookupName(miss)
		s.LookupNameString("x.com")
		s.MetaBytes(mi)
		s.Flags(mi)
		s.LookupIP(a, 80)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per lookup, want 0", allocs)
	}
}

// TestHashTails checks that keys differing in one byte at any position of
// any length hash apart (the tail reads overlap).
func TestHashTails(t *testing.T) {
	for n := 1; n <= 40; n++ {
		base := bytes.Repeat([]byte{'a'}, n)
		seen := map[uint64]int{hashKey(base, defaultSeed): -1}
		for i := range n {
			k := bytes.Clone(base)
			k[i] = 'b'
			h := hashKey(k, defaultSeed)
			if j, dup := seen[h]; dup {
				t.Fatalf("length %d: flipping byte %d hashes like %d", n, i, j)
			}
			seen[h] = i
			if hashKey(string(k), defaultSeed) != h {
				t.Fatal("string and []byte hash differently")
			}
		}
	}
}
