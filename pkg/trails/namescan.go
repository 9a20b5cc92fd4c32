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

// scan reads name up to its first byte outside the name bytes.
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
				s.dots[nd%maxDots] = int32(i)
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
func (s *nameScan) dot(k int) int { return int(s.dots[k%maxDots]) }

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
