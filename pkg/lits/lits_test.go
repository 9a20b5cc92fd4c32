package lits

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// reference finds the tags by searching every literal on its own.
func reference(lits []Lit, t []byte, words int) []uint64 {
	m := make([]uint64, words)
	for _, l := range lits {
		p := []byte(l.Pat)
		for i, c := range p {
			if 'A' <= c && c <= 'Z' {
				p[i] = c + 'a' - 'A'
			}
		}
		if len(p) > 0 && asciiContains(t, p) {
			m[l.Tag/64] |= 1 << (l.Tag % 64)
		}
	}
	return m
}

// asciiContains reports whether lower occurs in t, t's ASCII letters
// folded.
func asciiContains(t, lower []byte) bool {
	for i := 0; i+len(lower) <= len(t); i++ {
		ok := true
		for j, c := range lower {
			d := t[i+j]
			if 'A' <= d && d <= 'Z' {
				d += 'a' - 'A'
			}
			if d != c {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func check(t *testing.T, s *Set, lits []Lit, text []byte) bool {
	t.Helper()
	want := reference(lits, text, s.Words())
	got := make([]uint64, s.Words())
	s.TagsInto(text, got)
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("TagsInto(%q) over %v: word %d %#x, reference %#x", text, lits, i, got[i], want[i])
		}
	}
	if tg := s.Tags(text); tg != want[0] {
		t.Fatalf("Tags(%q) over %v = %#x, reference %#x", text, lits, tg, want[0])
	}
	return want[0] != 0
}

// TestAgrees: on random sets (overlapping literals, shared prefixes and
// suffixes, tags past 64, bytes of both cases and outside ASCII) and
// texts built from their pieces, the automaton finds what searching each
// literal finds.
func TestAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alpha := []byte("abAB.-_/x\x00\xff")
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.IntN(len(alpha))]
		}
		return string(b)
	}
	hits := 0
	for range 2000 {
		var lits []Lit
		for range 1 + rng.IntN(20) {
			lits = append(lits, Lit{Pat: word(rng.IntN(5)), Tag: rng.IntN(130)})
		}
		s, err := New(lits, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			var text []byte
			for range rng.IntN(6) {
				if rng.IntN(2) == 0 {
					text = append(text, lits[rng.IntN(len(lits))].Pat...)
				} else {
					text = append(text, word(rng.IntN(4))...)
				}
			}
			if check(t, s, lits, text) {
				hits++
			}
		}
	}
	if hits < 10000 {
		t.Errorf("only %d texts with a literal", hits)
	}
}

func TestOverlaps(t *testing.T) {
	lits := []Lit{{"he", 0}, {"she", 1}, {"his", 2}, {"hers", 3}, {"..", 4}, {"../img/", 5}, {"", 6}, {"E", 7}, {"x", 70}}
	s, err := New(lits, 100)
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]uint64{
		"ushers": 1 | 2 | 8 | 128, "USHERS": 1 | 2 | 8 | 128, "hi": 0, "his": 4, "...": 16, "/../img/x": 16 | 32,
		"../im": 16, "": 0, "xyz": 0, "eee": 128,
	} {
		if got := s.Tags([]byte(text)); got != want {
			t.Errorf("Tags(%q) = %#x, want %#x", text, got, want)
		}
	}
	m := make([]uint64, s.Words())
	s.TagsInto([]byte("aXa"), m)
	if s.Words() != 2 || m[1] != 1<<6 || m[0] != 0 {
		t.Errorf("tag 70: words %d, %#x", s.Words(), m)
	}
	if _, err := New(lits, 5); err != ErrTooLarge {
		t.Errorf("5 states: %v", err)
	}
	if _, err := New([]Lit{{"a", -1}}, 5); err == nil {
		t.Error("negative tag accepted")
	}
}

// FuzzAgrees: on any literals ('|'-separated, tags by position) and
// text, the automaton finds what searching each literal finds.
func FuzzAgrees(f *testing.F) {
	f.Add("he|she|his|hers", "ushers")
	f.Add("union|select|'|..|../images/", "/A/../Images/x?id=1'union select")
	f.Add("a|aa|aaa|\x00|\xff", "aaaa\x00\xffA")
	f.Fuzz(func(t *testing.T, pats, text string) {
		var lits []Lit
		for i, p := range strings.Split(pats, "|") {
			lits = append(lits, Lit{Pat: p, Tag: i % 200})
		}
		s, err := New(lits, 1<<12)
		if err != nil {
			return
		}
		check(t, s, lits, []byte(text))
	})
}
