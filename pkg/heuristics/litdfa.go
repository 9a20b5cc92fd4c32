package heuristics

import (
	"errors"
	"slices"
)

// litDFA finds which of a set of ASCII literals occur in a text, ignoring
// ASCII case, in one pass of a few instructions per byte: an Aho-Corasick
// automaton whose failure links are folded into a full transition table,
// so each byte is one table load whatever it matched before. It serves
// the trigger literals searched in every request path (the request
// families and WHITELIST_HTTP_REQUEST_PATHS together, the suspicious
// files). Built once per Engine and only read, so forks share it.
type litDFA struct {
	class  [256]uint8 // byte -> column; 0 for bytes no literal holds
	stride uint32     // columns per state
	// next holds a state's row: next[s+class[c]] is the state after
	// byte c, as the offset of its row (state number × stride), which
	// spares a multiply per byte.
	next []uint32
	// States whose rows start at outAt or later end a literal; their
	// tags are out[(s-outAt)/stride]. The others come first, so a byte
	// that ends nothing costs one compare.
	outAt uint32
	out   []uint64
}

// maxDFAStates bounds an automaton: its table takes states × columns × 4
// bytes. A set past it (a very long WHITELIST_HTTP_REQUEST_PATHS) is
// refused by newLitDFA, and the caller searches it apart.
var maxDFAStates = 1 << 16

var errDFATooLarge = errors.New("heuristics: literal automaton too large")

// dfaLit is a literal with the tag bits a match sets.
type dfaLit struct {
	pat  string
	tags uint64
}

// newLitDFA builds the automaton of lits; empty literals are ignored.
func newLitDFA(lits []dfaLit) (*litDFA, error) {
	d := &litDFA{}
	// Columns: one per distinct (lowercased) byte of the literals, the
	// upper case of a letter sharing its column; column 0 is every other
	// byte.
	cols := uint32(1)
	for _, l := range lits {
		for i := 0; i < len(l.pat); i++ {
			c := lowerTab[l.pat[i]]
			if d.class[c] == 0 { // at most 230 columns: upper case shares
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
		tags  uint64
	}
	newNode := func() node {
		n := node{child: make([]int32, cols)}
		for i := range n.child {
			n.child[i] = -1
		}
		return n
	}
	nodes := []node{newNode()}
	for _, l := range lits {
		if l.pat == "" {
			continue
		}
		s := int32(0)
		for i := 0; i < len(l.pat); i++ {
			k := d.class[lowerTab[l.pat[i]]]
			if nodes[s].child[k] < 0 {
				if len(nodes) >= maxDFAStates {
					return nil, errDFATooLarge
				}
				nodes[s].child[k] = int32(len(nodes))
				nodes = append(nodes, newNode())
			}
			s = nodes[s].child[k]
		}
		nodes[s].tags |= l.tags
	}
	// Breadth first: failure links, inherited tags, and every missing
	// transition filled with its failure state's (already complete).
	queue := []int32{}
	for k, c := range nodes[0].child {
		if c < 0 {
			nodes[0].child[k] = 0
		} else {
			nodes[c].fail = 0
			queue = append(queue, c)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := nodes[s].fail
		nodes[s].tags |= nodes[f].tags
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
	order := make([]int32, len(nodes))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		ta, tb := nodes[a].tags != 0, nodes[b].tags != 0
		switch {
		case ta == tb:
			return 0
		case tb:
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
		if nodes[s].tags != 0 {
			if d.outAt > uint32(i)*cols {
				d.outAt = uint32(i) * cols
			}
			d.out = append(d.out, nodes[s].tags)
		}
	}
	return d, nil
}

// tagsIn returns the union of the tags of the literals occurring in t.
func (d *litDFA) tagsIn(t []byte) uint64 {
	var m uint64
	next, out, outAt, stride := d.next, d.out, d.outAt, d.stride
	s := uint32(0)
	for _, c := range t {
		s = next[s+uint32(d.class[c])]
		if s >= outAt {
			m |= out[(s-outAt)/stride]
		}
	}
	return m
}
