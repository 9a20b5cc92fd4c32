package heuristics

import (
	"math/rand/v2"
	"strings"
	"testing"
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
		for _, p := range s.byte1[lowerTab[t[i]]] {
			if s.at(t, i, s.pats[p]) {
				m |= s.tags[p]
			}
		}
	}
	return m
}

// refOf returns the reference search over lits: a litSet with one
// pattern per tag bit a literal sets.
func refOf(lits []dfaLit) *litSet {
	var s litSet
	for _, l := range lits {
		for b := range 64 {
			if l.tags&(1<<b) != 0 {
				s.add(l.pat, b)
			}
		}
	}
	return &s
}

// engineSets are the literal sets an Engine searches: the request
// automaton (families and the default whitelisted path snippets) and the
// suspicious files'.
func engineSets(t testing.TB) map[string][]dfaLit {
	var fs familySet
	if err := fs.build(); err != nil {
		t.Fatal(err)
	}
	req := fs.lits
	for _, p := range defaultWhitelistPaths {
		req = append(req, dfaLit{pat: p, tags: 1 << wlTag})
	}
	var path []dfaLit
	for i, p := range suspiciousPaths {
		for _, tr := range p.triggers {
			path = append(path, dfaLit{pat: tr, tags: 1 << i})
		}
	}
	return map[string][]dfaLit{"request": req, "path": path}
}

// randomText mixes pieces of the literals (whole, cut, in upper case)
// with random bytes, so that matches, near misses and overlaps are all
// common.
func randomText(rng *rand.Rand, lits []dfaLit) []byte {
	var b []byte
	for range rng.IntN(8) {
		switch rng.IntN(4) {
		case 0:
			b = append(b, lits[rng.IntN(len(lits))].pat...)
		case 1:
			p := lits[rng.IntN(len(lits))].pat
			b = append(b, p[:rng.IntN(len(p)+1)]...)
		case 2:
			b = append(b, strings.ToUpper(lits[rng.IntN(len(lits))].pat)...)
		default:
			for range rng.IntN(6) {
				b = append(b, byte(rng.IntN(256)))
			}
		}
	}
	return b
}

// TestLitDFAAgrees: the automaton finds exactly the tags the reference
// search finds, on the Engine's own sets and on random texts built from
// them.
func TestLitDFAAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, lits := range engineSets(t) {
		d, err := newLitDFA(lits)
		if err != nil {
			t.Fatal(err)
		}
		ref := refOf(lits)
		hits := 0
		for range 20000 {
			text := randomText(rng, lits)
			got, want := d.tagsIn(text), ref.tagsIn(text)
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
		t.Logf("%s: %d states × %d columns, %d texts with a literal", name, len(d.next)/int(d.stride), d.stride, hits)
	}
}

// TestLitDFAOverlaps: literals inside literals, shared prefixes and
// suffixes, and case.
func TestLitDFAOverlaps(t *testing.T) {
	lits := []dfaLit{{"he", 1}, {"she", 2}, {"his", 4}, {"hers", 8}, {"..", 16}, {"../img/", 32}, {"", 64}, {"E", 128}}
	d, err := newLitDFA(lits)
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]uint64{
		"ushers": 1 | 2 | 8 | 128, "USHERS": 1 | 2 | 8 | 128, "hi": 0, "his": 4, "...": 16, "/../img/x": 16 | 32,
		"../im": 16, "": 0, "xyz": 0, "eee": 128,
	} {
		if got := d.tagsIn([]byte(text)); got != want {
			t.Errorf("tagsIn(%q) = %#x, want %#x", text, got, want)
		}
	}
}

// TestWhitelistPathsApart: a WHITELIST_HTTP_REQUEST_PATHS too long to
// join the families' automaton is searched by one of its own, with the
// same verdicts.
func TestWhitelistPathsApart(t *testing.T) {
	paths := []string{"/Static/", "../vendor/"}
	joined := newEngine(t, Config{WhitelistPaths: paths})
	defer func(n int) { maxDFAStates = n }(maxDFAStates)
	maxDFAStates = len(joined.reqLits.next)/int(joined.reqLits.stride) - 1
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

// FuzzLitDFA: on any literals and text, the automaton agrees with the
// reference search; and the Engine's own automata agree with theirs on
// the text.
func FuzzLitDFA(f *testing.F) {
	f.Add("he|she|his|hers", "ushers")
	f.Add("union|select|'|..|../images/", "/A/../Images/x?id=1'union select")
	f.Add("a|aa|aaa|\x00|\xff", "aaaa\x00\xffA")
	sets := engineSets(f)
	var engine []struct {
		d   *litDFA
		ref *litSet
	}
	for _, lits := range sets {
		d, err := newLitDFA(lits)
		if err != nil {
			f.Fatal(err)
		}
		engine = append(engine, struct {
			d   *litDFA
			ref *litSet
		}{d, refOf(lits)})
	}
	f.Fuzz(func(t *testing.T, pats, text string) {
		var lits []dfaLit
		for i, p := range strings.Split(pats, "|") {
			if i == 64 {
				break
			}
			lits = append(lits, dfaLit{pat: p, tags: 1 << i})
		}
		d, err := newLitDFA(lits)
		if err != nil {
			return // past maxDFAStates
		}
		if got, want := d.tagsIn([]byte(text)), refOf(lits).tagsIn([]byte(text)); got != want {
			t.Fatalf("tagsIn(%q) over %q = %#x, reference %#x", text, pats, got, want)
		}
		for _, e := range engine {
			if got, want := e.d.tagsIn([]byte(text)), e.ref.tagsIn([]byte(text)); got != want {
				t.Fatalf("engine set: tagsIn(%q) = %#x, reference %#x", text, got, want)
			}
		}
	})
}
