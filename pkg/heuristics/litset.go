package heuristics

import (
	"github.com/xtrail/xtrail/pkg/lits"
	"github.com/xtrail/xtrail/pkg/trails"
)

// litSet finds the leftmost of a list of ASCII literals in a text,
// ignoring ASCII case: the user agents (pkg/lits finds which of a set
// occur). Bitmaps of the patterns' first one, two or three bytes reject
// almost every position with one or two loads, so a search costs about a
// nanosecond per text byte and never allocates.
type litSet struct {
	pats  [][]byte // lowercased
	tags  []uint64
	byte1 [256][]int32 // patterns by first byte, in list order
	// one bit per first byte of a 1-byte pattern, per first two bytes of
	// a 2-byte pattern, per hash of the first three bytes of a longer one
	single [4]uint64
	pair   [1 << 16 / 64]uint64
	tri    [1 << 16 / 64]uint64
}

func triHash(a, b, c byte) uint32 { return (uint32(a)<<10 ^ uint32(b)<<5 ^ uint32(c)*0x9d) & 0xffff }

// add appends a pattern with a tag (0..63: the bit tagsIn sets in
// tests). An empty pattern is ignored.
func (s *litSet) add(p string, tag int) {
	if p == "" {
		return
	}
	b := lowerASCII(nil, []byte(p))
	s.pats = append(s.pats, b)
	s.tags = append(s.tags, uint64(1)<<tag)
	s.byte1[b[0]] = append(s.byte1[b[0]], int32(len(s.pats)-1))
	switch len(b) {
	case 1:
		s.single[b[0]/64] |= 1 << (b[0] % 64)
	case 2:
		k := uint32(b[0])<<8 | uint32(b[1])
		s.pair[k/64] |= 1 << (k % 64)
	default:
		k := triHash(b[0], b[1], b[2])
		s.tri[k/64] |= 1 << (k % 64)
	}
}

// maybeAt reports whether a pattern may start at t[i].
func (s *litSet) maybeAt(t []byte, i int) bool {
	a := lits.Lower(t[i])
	if s.single[a/64]&(1<<(a%64)) != 0 {
		return true
	}
	if i+1 >= len(t) {
		return false
	}
	b := lits.Lower(t[i+1])
	if k := uint32(a)<<8 | uint32(b); s.pair[k/64]&(1<<(k%64)) != 0 {
		return true
	}
	if i+2 >= len(t) {
		return false
	}
	k := triHash(a, b, lits.Lower(t[i+2]))
	return s.tri[k/64]&(1<<(k%64)) != 0
}

// at reports whether pattern p occurs at t[i:], ignoring ASCII case.
func (s *litSet) at(t []byte, i int, p []byte) bool {
	if len(t)-i < len(p) {
		return false
	}
	for j, c := range p {
		if lits.Lower(t[i+j]) != c {
			return false
		}
	}
	return true
}

// first returns the leftmost match, the earliest listed pattern winning at
// one position (the alternation rule of Python's re): the pattern index,
// start and end, or -1.
func (s *litSet) first(t []byte) (idx, start, end int) {
	for i := range t {
		if !s.maybeAt(t, i) {
			continue
		}
		for _, p := range s.byte1[lits.Lower(t[i])] {
			if s.at(t, i, s.pats[p]) {
				return int(p), i, i + len(s.pats[p])
			}
		}
	}
	return -1, 0, 0
}

// lowerASCII appends b with ASCII letters lowercased.
func lowerASCII(dst, b []byte) []byte { return trails.AppendLower(dst, b) }
