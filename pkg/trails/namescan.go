package trails

import "bytes"

// Byte classes of a name scan.
const (
	clsAlpha = 1 << iota // a-z and '-'
	clsDigit             // 0-9
	clsDot               // '.'
	clsUnder             // '_'
	clsUpper             // A-Z
	clsStop              // any other byte: not in a name

	clsNote = clsDot | clsUnder | clsStop // a byte the scan records
)

var nameCls = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z' || c == '-':
			t[c] = clsAlpha
		case c >= '0' && c <= '9':
			t[c] = clsDigit
		case c == '.':
			t[c] = clsDot
		case c == '_':
			t[c] = clsUnder
		case c >= 'A' && c <= 'Z':
			t[c] = clsUpper
		default:
			t[c] = clsStop
		}
	}
	return t
}()

// maxDots is how many of a name's last dots a scan records. Names have
// far fewer; a longer one is walked past them by searching.
const maxDots = 32

// nameScan is what one pass over a name finds, so that the domain check
// reads each byte once: where its run of name bytes ([A-Za-z0-9._-])
// ends, the classes of those bytes, the last '_' and the offsets of the
// dots, from which the whitelist's tails, the parent walk's suffixes and
// ".onion." follow without reading the name again.
type nameScan struct {
	end   int   // name[:end] is the run of name bytes
	cls   uint8 // the classes of name[:end], ORed
	under int   // offset of the last '_' in name[:end], -1 if none
	ndots int   // dots in name[:end]
	dots  [maxDots]int32
}

// scan reads name up to its first byte outside the name bytes. (A
// version classifying 8 bytes at a time with SWAR arithmetic cost more:
// Go spills its masks, and names are short.)
func (s *nameScan) scan(name []byte) {
	var cls uint8
	nd, under, i := 0, -1, 0
	for ; i < len(name); i++ {
		k := nameCls[name[i]]
		if k&clsNote != 0 {
			if k == clsStop {
				break
			}
			if k == clsDot {
				s.dots[uint(nd)%maxDots] = int32(i)
				nd++
			} else {
				under = i
			}
		}
		cls |= k
	}
	s.end, s.cls, s.under, s.ndots = i, cls, under, nd
}

// dot returns the offset of dot k (0 = the first), which must be one of
// the last maxDots.
func (s *nameScan) dot(k int) int { return int(s.dots[uint(k)%maxDots]) }

// lastDots returns the offsets of the last and the second-to-last dot,
// -1 for none.
func (s *nameScan) lastDots() (d1, d2 int) {
	d1, d2 = -1, -1
	if s.ndots > 0 {
		d1 = s.dot(s.ndots - 1)
	}
	if s.ndots > 1 {
		d2 = s.dot(s.ndots - 2)
	}
	return d1, d2
}

// digitsAndDots is isDigitsAndDots of the scanned name.
func (s *nameScan) digitsAndDots() bool {
	return s.cls&clsDigit != 0 && s.cls&^(clsDigit|clsDot) == 0
}

// valid is validName of the scanned name, lowercased, when it is all of
// the text (end == len): \A[a-zA-Z0-9._-]*\.[a-zA-Z0-9-]+\Z, that is a
// last label after a '.' that is not empty and holds no '_'.
func (s *nameScan) valid() bool {
	d1, _ := s.lastDots()
	return d1 >= 0 && d1 < s.end-1 && s.under < d1
}

// hasOnion reports whether the scanned name q holds ".onion." and
// returns the offset of its first occurrence.
func (s *nameScan) hasOnion(q []byte) int {
	if s.ndots > maxDots {
		return bytes.Index(q, []byte(".onion."))
	}
	for k := 0; k+1 < s.ndots; k++ {
		if d := s.dot(k); s.dot(k+1)-d == 6 && string(q[d+1:d+6]) == "onion" {
			return d
		}
	}
	return -1
}

// Name is a name read once for every check that takes it: the run of
// name bytes it starts with, lowercased, and what the scan found in it
// (see nameScan). The DNS path reads a query name once for the query
// filter, DNS exhaustion and the domain check, the HTTP path a Host once
// for the domain check and the whitelist. Set fills it; reuse one per
// goroutine, which allocates nothing once its buffer has grown. What its
// methods return points into it or into the text it was set to, which
// must not change while it is in use.
type Name struct {
	raw  []byte
	text []byte // raw's run of name bytes, lowercased
	buf  []byte
	scan nameScan
	// the verdict of whitelist wl on text, once asked (whitelisted)
	wl          *Whitelist
	whitelisted bool
}

// Set reads raw.
func (m *Name) Set(raw []byte) {
	m.raw = raw
	m.scan.scan(raw)
	m.text = raw[:m.scan.end]
	if m.scan.cls&clsUpper != 0 {
		m.buf = AppendLower(m.buf[:0], m.text)
		m.text = m.buf
	}
	m.wl = nil
}

// Text is the run of name bytes ([A-Za-z0-9._-]) raw starts with,
// lowercased.
func (m *Name) Text() []byte { return m.text }

// Whole reports whether Text is all of raw.
func (m *Name) Whole() bool { return m.scan.end == len(m.raw) }

// Valid reports whether Text passes Maltrail's name test
// \A[a-zA-Z0-9._-]*\.[a-zA-Z0-9-]+\Z: a last label after a '.' that is
// not empty and holds no '_'.
func (m *Name) Valid() bool { return m.scan.valid() }

// Labels is the number of dot-separated labels of Text.
func (m *Name) Labels() int { return m.scan.ndots + 1 }

// LastLabels returns the suffix of Text holding its last k labels (all of
// it when it has no more).
func (m *Name) LastLabels(k int) []byte {
	s := &m.scan
	if k > s.ndots {
		return m.text
	}
	if k > maxDots {
		return m.text[lastLabelsOff(m.text, k):]
	}
	return m.text[s.dot(s.ndots-k)+1:]
}

// lastLabelsOff is where the last k labels of t start, by searching.
func lastLabelsOff(t []byte, k int) int {
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '.' {
			if k--; k == 0 {
				return i + 1
			}
		}
	}
	return 0
}

// FirstLabel returns Text up to its first dot.
func (m *Name) FirstLabel() []byte {
	if m.scan.ndots == 0 {
		return m.text
	}
	return m.text[:bytes.IndexByte(m.text, '.')]
}

// HasInnerLabel reports whether Text holds "."+l+".": a label l that is
// neither its first nor its last.
func (m *Name) HasInnerLabel(l string) bool {
	s := &m.scan
	if s.ndots > maxDots {
		return bytes.Contains(m.text, []byte("."+l+"."))
	}
	for k := 0; k+1 < s.ndots; k++ {
		if d := s.dot(k); s.dot(k+1)-d == len(l)+1 && string(m.text[d+1:d+1+len(l)]) == l {
			return true
		}
	}
	return false
}

// NameWhitelisted is IsWhitelistedDomain of the text m was set to: Text
// or a parent of it is a literal. The verdict is kept, so that every check
// on m asks the whitelist once.
func (w *Whitelist) NameWhitelisted(m *Name) bool {
	if m.wl != w || w == nil {
		d1, d2 := m.scan.lastDots()
		m.wl, m.whitelisted = w, w.suffixIsLiteralAt(m.text, d1, d2)
	}
	return m.whitelisted
}
