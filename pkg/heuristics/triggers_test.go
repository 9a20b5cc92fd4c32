package heuristics

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/pkg/lits"
)

// tagsIn is the reference search litDFA replaced: bit n set when a
// pattern added with tag n occurs in t, found by trying the patterns at
// every position its bitmaps let through.
func (s *litSet) tagsIn(t []byte) uint64 {
	var m uint64
	for i := range t {
		if !s.maybeAt(t, i) {
			continue
		}
		for _, p := range s.byte1[lits.Lower(t[i])] {
			if s.at(t, i, s.pats[p]) {
				m |= s.tags[p]
			}
		}
	}
	return m
}

// refOf returns the reference search over ls: a litSet of the same
// literals and tags.
func refOf(ls []lits.Lit) *litSet {
	var s litSet
	for _, l := range ls {
		s.add(l.Pat, l.Tag)
	}
	return &s
}

// engineSets are the literal sets an Engine searches: the request
// automaton (families and the default whitelisted path snippets) and the
// suspicious files'.
func engineSets(t testing.TB) map[string][]lits.Lit {
	var fs familySet
	if err := fs.build(); err != nil {
		t.Fatal(err)
	}
	req := fs.lits
	for _, p := range defaultWhitelistPaths {
		req = append(req, lits.Lit{Pat: p, Tag: wlTag})
	}
	var path []lits.Lit
	for i, p := range suspiciousPaths {
		for _, tr := range p.triggers {
			path = append(path, lits.Lit{Pat: tr, Tag: i})
		}
	}
	return map[string][]lits.Lit{"request": req, "path": path}
}

// randomText mixes pieces of the literals (whole, cut, in upper case)
// with random bytes, so that matches, near misses and overlaps are all
// common.
func randomText(rng *rand.Rand, ls []lits.Lit) []byte {
	var b []byte
	for range rng.IntN(8) {
		switch rng.IntN(4) {
		case 0:
			b = append(b, ls[rng.IntN(len(ls))].Pat...)
		case 1:
			p := ls[rng.IntN(len(ls))].Pat
			b = append(b, p[:rng.IntN(len(p)+1)]...)
		case 2:
			b = append(b, strings.ToUpper(ls[rng.IntN(len(ls))].Pat)...)
		default:
			for range rng.IntN(6) {
				b = append(b, byte(rng.IntN(256)))
			}
		}
	}
	return b
}

// TestTriggersAgree: the automata find exactly the tags the former
// per-pattern search finds, on the Engine's own sets and on random texts
// built from them.
func TestTriggersAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, ls := range engineSets(t) {
		d, err := lits.New(ls, maxLitStates)
		if err != nil {
			t.Fatal(err)
		}
		ref := refOf(ls)
		hits := 0
		for range 20000 {
			text := randomText(rng, ls)
			got, want := d.Tags(text), ref.tagsIn(text)
			if got != want {
				t.Fatalf("%s: tagsIn(%q) = %#x, reference %#x", name, text, got, want)
			}
			if got != 0 {
				hits++
			}
		}
		if hits < 1000 {
			t.Errorf("%s: only %d texts held a literal", name, hits)
		}
		t.Logf("%s: %d states, %d texts with a literal", name, d.States(), hits)
	}
}

// TestWhitelistPathsApart: a WHITELIST_HTTP_REQUEST_PATHS too long to
// join the families' automaton is searched by one of its own, with the
// same verdicts.
func TestWhitelistPathsApart(t *testing.T) {
	paths := []string{"/Static/", "../vendor/"}
	joined := newEngine(t, Config{WhitelistPaths: paths})
	defer func(n int) { maxLitStates = n }(maxLitStates)
	maxLitStates = joined.reqLits.States() - 1
	apart := newEngine(t, Config{WhitelistPaths: paths})
	if joined.wlLits != nil || apart.wlLits == nil {
		t.Fatalf("snippets apart: joined %v, apart %v", joined.wlLits != nil, apart.wlLits != nil)
	}
	var r rec
	for _, p := range []string{"/static/x?id=1'%20or%20'1'='1", "/a/../vendor/x?id=1'%20or%20'1'='1", "/x?id=1'%20or%20'1'='1"} {
		a, b := joined.Request(httpReq("GET", "h", p), &r), apart.Request(httpReq("GET", "h", p), &r)
		if a != b || a != strings.HasPrefix(p, "/x") {
			t.Errorf("%s: finding %v joined, %v apart", p, a, b)
		}
	}
}

// FuzzTriggers: on any text, the Engine's automata agree with the
// former per-pattern search.
func FuzzTriggers(f *testing.F) {
	f.Add("/A/../Images/x?id=1'union select")
	f.Add("<SCRIPT>alert(1)</script>/etc/passwd{{7*7}}")
	type pair struct {
		d   *lits.Set
		ref *litSet
	}
	var sets []pair
	for _, ls := range engineSets(f) {
		d, err := lits.New(ls, maxLitStates)
		if err != nil {
			f.Fatal(err)
		}
		sets = append(sets, pair{d, refOf(ls)})
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, p := range sets {
			if got, want := p.d.Tags([]byte(text)), p.ref.tagsIn([]byte(text)); got != want {
				t.Fatalf("Tags(%q) = %#x, reference %#x", text, got, want)
			}
		}
	})
}

// TestFirstSegment: the segment a web scan counts, after the scheme and
// host of an absolute path, cut at '/', '?' or '#'.
func TestFirstSegment(t *testing.T) {
	for p, want := range map[string]string{
		"/a/b": "a", "/a?x=1": "a", "/a#f": "a", "a": "a", "/": "", "": "",
		"http://h.example/seg/x": "seg", "http://h.example": "", "/x?u=http://h/seg2/z": "seg2", "/p:8080/q": "p:8080",
	} {
		got := firstSegment([]byte(p))
		if string(got) != want || (want == "" && p == "http://h.example" && got != nil) {
			t.Errorf("firstSegment(%q) = %q, want %q", p, got, want)
		}
	}
}

// TestHashPair: pairs differing in any byte of either address, or
// swapped, hash apart.
func TestHashPair(t *testing.T) {
	base := [2]netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::1")}
	seen := map[uint64][2]netip.Addr{}
	add := func(s, d netip.Addr) {
		h := hashPair(s, d)
		if o, dup := seen[h]; dup && o != [2]netip.Addr{s, d} {
			t.Fatalf("%v→%v hashes like %v→%v", s, d, o[0], o[1])
		}
		seen[h] = [2]netip.Addr{s, d}
	}
	for _, a := range base {
		for _, b := range base {
			add(a, b)
			for i := range 16 {
				for _, bit := range []byte{1, 0x80} {
					x := a.As16()
					x[i] ^= bit
					add(netip.AddrFrom16(x), b)
					add(b, netip.AddrFrom16(x))
				}
			}
		}
	}
}

// TestDownloadExtensions: the download extensions are found by their
// byte after the '.' as a map of them would find them.
func TestDownloadExtensions(t *testing.T) {
	e := newEngine(t, Config{})
	for _, x := range append(slices.Clone(downloadExtensions), ".ex", ".exee", ".", "", ".EXE", ".js") {
		info, ok := e.download([]byte(x))
		if want := slices.Contains(downloadExtensions, x); ok != want || ok && info != "direct "+x+" download (suspicious)" {
			t.Errorf("download(%q) = %q %v", x, info, ok)
		}
	}
}

// TestHashBytes: keys differing in one byte, or in length by a trailing
// zero byte, hash apart.
func TestHashBytes(t *testing.T) {
	for n := 0; n <= 24; n++ {
		base := []byte(strings.Repeat("a", n))
		seen := map[uint64]string{hashNew(base): string(base), hashNew(append(base, 0)): string(append(base, 0))}
		if len(seen) != 2 {
			t.Fatalf("length %d: a trailing zero byte changes nothing", n)
		}
		for i := range n {
			for _, c := range []byte{'b', 0, 0xff} {
				k := []byte(string(base))
				k[i] = c
				h := hashNew(k)
				if o, dup := seen[h]; dup && o != string(k) {
					t.Fatalf("%q and %q hash alike", k, o)
				}
				seen[h] = string(k)
			}
		}
	}
}
