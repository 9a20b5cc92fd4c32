package heuristics

// appendUnquote is Python's urllib.parse.unquote on bytes: "%XX" becomes
// its byte, anything else (a lone '%', '+') is kept. Python decodes the
// result as UTF-8 (invalid sequences become U+FFFD); the bytes are kept
// here, which only differs for text the patterns (ASCII) cannot match.
func appendUnquote(dst, b []byte) []byte {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '%' && i+2 < len(b) && isHexDigit(b[i+1]) && isHexDigit(b[i+2]) {
			c = unhex(b[i+1])<<4 | unhex(b[i+2])
			i += 2
		}
		dst = append(dst, c)
	}
	return dst
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// isPySpace is what Python's str.strip() removes among ASCII bytes.
func isPySpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' || 0x1c <= c && c <= 0x1f }

func trimPySpace(b []byte) []byte {
	for len(b) > 0 && isPySpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isPySpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// labels returns the number of dot-separated labels of a name.
func labels(name []byte) int {
	n := 1
	for _, c := range name {
		if c == '.' {
			n++
		}
	}
	return n
}

// lastLabels returns the suffix of name holding its last k labels (the
// whole name when it has no more).
func lastLabels(name []byte, k int) []byte {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '.' {
			k--
			if k == 0 {
				return name[i+1:]
			}
		}
	}
	return name
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
