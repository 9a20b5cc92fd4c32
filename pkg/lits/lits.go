// Package lits finds which of a set of ASCII literals occur in a text,
// ignoring ASCII case, in one pass of a few instructions per byte. It is
// an Aho-Corasick automaton whose failure links are folded into a full
// transition table over byte classes, so each byte costs one table load
// whatever came before it. The agent runs such sets on every candidate:
// the triggers of the request heuristics and the literals the regex
// trails require.
package lits

import (
	"errors"
	"slices"
)

// Lit is a literal and the tag (a bit number) a match of it sets.
type Lit struct {
	Pat string
	Tag int
}

// Set is a built automaton. It is only read once built, so one Set may
// serve many goroutines.
type Set struct {
	class  [256]uint8 // byte -> column; 0 for bytes no literal holds
	stride uint32     // columns per state
	// next holds a state's row: next[s+class[c]] is the state after
	// byte c, as the offset of its row (state number × stride), which
	// spares a multiply per byte.
	next []uint32
	// States whose rows start at outAt or later end a literal; their
	// tags are out[(s-outAt)/stride*words:][:words]. The others come
	// first, so a byte that ends nothing costs one compare.
	outAt uint32
	out   []uint64
	words int // tag words per state
}

// ErrTooLarge is returned by New for a set past its state limit.
var ErrTooLarge = errors.New("literal set: automaton too large")

// Lower folds an ASCII upper-case letter to lower case, as the sets
// compare.
func Lower(c byte) byte { return lowerTab[c] }

var lowerTab = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] = byte(i + 'a' - 'A')
		}
	}
	return t
}()

// New builds the automaton of lits (empty literals are ignored). Its
// table takes states × columns × 4 bytes, states being at most the
// literals' total length plus one; a set needing more than maxStates
// states is refused with ErrTooLarge.
func New(lits []Lit, maxStates int) (*Set, error) {
	d := &Set{words: 1}
	for _, l := range lits {
		if l.Tag < 0 {
			return nil, errors.New("literal set: negative tag")
		}
		d.words = max(d.words, l.Tag/64+1)
	}
	// Columns: one per distinct (lowercased) byte of the literals, the
	// upper case of a letter sharing its column (at most 231 columns);
	// column 0 is every other byte.
	cols := uint32(1)
	for _, l := range lits {
		for i := 0; i < len(l.Pat); i++ {
			if c := lowerTab[l.Pat[i]]; d.class[c] == 0 {
				d.class[c] = uint8(cols)
				cols++
			}
		}
	}
	for c := 'A'; c <= 'Z'; c++ {
		d.class[c] = d.class[c+'a'-'A']
	}
	d.stride = cols
	// The trie, its states in creation order (root 0).
	type node struct {
		child []int32 // by column, -1 for none
		fail  int32
		tags  []uint64
	}
	newNode := func() node {
		n := node{child: make([]int32, cols), tags: make([]uint64, d.words)}
		for i := range n.child {
			n.child[i] = -1
		}
		return n
	}
	nodes := []node{newNode()}
	for _, l := range lits {
		if l.Pat == "" {
			continue
		}
		s := int32(0)
		for i := 0; i < len(l.Pat); i++ {
			k := d.class[lowerTab[l.Pat[i]]]
			if nodes[s].child[k] < 0 {
				if len(nodes) >= maxStates {
					return nil, ErrTooLarge
				}
				nodes[s].child[k] = int32(len(nodes))
				nodes = append(nodes, newNode())
			}
			s = nodes[s].child[k]
		}
		nodes[s].tags[l.Tag/64] |= 1 << (l.Tag % 64)
	}
	// Breadth first: failure links, inherited tags, and every missing
	// transition filled with its failure state's (already complete).
	var queue []int32
	for k, c := range nodes[0].child {
		if c < 0 {
			nodes[0].child[k] = 0
		} else {
			queue = append(queue, c)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := nodes[s].fail
		for w, t := range nodes[f].tags {
			nodes[s].tags[w] |= t
		}
		for k, c := range nodes[s].child {
			if c < 0 {
				nodes[s].child[k] = nodes[f].child[k]
				continue
			}
			nodes[c].fail = nodes[f].child[k]
			queue = append(queue, c)
		}
	}
	// Number the states that end no literal first (root stays 0).
	ends := func(n *node) bool { return slices.ContainsFunc(n.tags, func(t uint64) bool { return t != 0 }) }
	order := make([]int32, len(nodes))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		ea, eb := ends(&nodes[a]), ends(&nodes[b])
		switch {
		case ea == eb:
			return 0
		case eb:
			return -1
		}
		return 1
	})
	pos := make([]uint32, len(nodes))
	for i, s := range order {
		pos[s] = uint32(i)
	}
	d.next = make([]uint32, len(nodes)*int(cols))
	d.outAt = uint32(len(nodes)) * cols
	for i, s := range order {
		row := d.next[i*int(cols) : (i+1)*int(cols)]
		for k, c := range nodes[s].child {
			row[k] = pos[c] * cols
		}
		if ends(&nodes[s]) {
			d.outAt = min(d.outAt, uint32(i)*cols)
			d.out = append(d.out, nodes[s].tags...)
		}
	}
	return d, nil
}

// Words is the number of tag words TagsInto fills: one per 64 tags.
func (d *Set) Words() int { return d.words }

// States is the automaton's number of states.
func (d *Set) States() int { return len(d.next) / int(d.stride) }

// Tags returns the tags below 64 of the literals occurring in t.
func (d *Set) Tags(t []byte) uint64 {
	var m uint64
	next, outAt := d.next, d.outAt
	s := uint32(0)
	for _, c := range t {
		s = next[s+uint32(d.class[c])]
		if s >= outAt {
			m |= d.out[(s-outAt)/d.stride*uint32(d.words)]
		}
	}
	return m
}

// TagsInto ORs the tags of the literals occurring in t into m, which
// holds Words() words.
func (d *Set) TagsInto(t []byte, m []uint64) {
	next, outAt, w := d.next, d.outAt, uint32(d.words)
	m = m[:w]
	s := uint32(0)
	for _, c := range t {
		s = next[s+uint32(d.class[c])]
		if s >= outAt {
			for i, t := range d.out[(s-outAt)/d.stride*w:][:w] {
				m[i] |= t
			}
		}
	}
}
