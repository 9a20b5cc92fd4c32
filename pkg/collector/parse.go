package collector

import (
	"math"
	"time"
	"unicode"
	"unicode/utf8"
)

// parsePyInt accepts what Python's int(bytes) accepts for the sec field of
// a datagram whose first byte is a digit: ASCII digits, single underscores
// between digits (PEP 515), and trailing ASCII whitespace other than the
// space that ended the field. It reports false on anything else or on int64
// overflow.
func parsePyInt(b []byte) (int64, bool) {
	end := len(b)
	for end > 0 && isPyByteSpace(b[end-1]) {
		end--
	}
	b = b[:end]
	if len(b) == 0 {
		return 0, false
	}
	var v int64
	prevDigit := false
	for _, ch := range b {
		switch {
		case ch >= '0' && ch <= '9':
			d := int64(ch - '0')
			if v > (math.MaxInt64-d)/10 {
				return 0, false
			}
			v = v*10 + d
			prevDigit = true
		case ch == '_' && prevDigit:
			prevDigit = false
		default:
			return 0, false
		}
	}
	if !prevDigit { // a trailing '_' is invalid
		return 0, false
	}
	return v, true
}

// isPyByteSpace is Python's bytes whitespace (Py_ISSPACE).
func isPyByteSpace(ch byte) bool {
	switch ch {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// isPyStrSpace is Python's str.isspace, which the \s of a str regex uses:
// Unicode White_Space plus the ASCII separators 0x1c-0x1f.
func isPyStrSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// parseNaiveTime mirrors Maltrail's
// datetime.strptime(field.decode(), "%Y-%m-%d %H:%M:%S") followed by
// time.mktime in the server's zone. _strptime turns the format into the
// regex
//
//	(\d\d\d\d)-(1[0-2]|0[1-9]|[1-9])-(3[01]|[12]\d|0[1-9]|[1-9]| [1-9])\s+
//	(2[0-3]|[0-1]\d|\d):([0-5]\d|\d):(6[0-1]|[0-5]\d|\d)
//
// that must match the whole string; datetime then rejects day 31 of a short
// month, Feb 29 of a common year, year 0 and seconds 60/61. Because every
// field is followed by a non-digit literal or the end, each field is exactly
// its run of digits, so the regex reduces to the checks below. Only ASCII
// digits are accepted (Python's \d would also take other scripts' digits; no
// sensor writes those).
func parseNaiveTime(s []byte, loc *time.Location) (int64, bool) {
	p := 0
	num := func(minLen, maxLen int) (int, bool) {
		start := p
		v := 0
		for p < len(s) && s[p] >= '0' && s[p] <= '9' {
			v = v*10 + int(s[p]-'0')
			p++
			if p-start > maxLen {
				return 0, false
			}
		}
		n := p - start
		return v, n >= minLen && n <= maxLen
	}
	lit := func(ch byte) bool {
		if p < len(s) && s[p] == ch {
			p++
			return true
		}
		return false
	}

	year, ok := num(4, 4)
	if !ok || !lit('-') {
		return 0, false
	}
	month, ok := num(1, 2)
	if !ok || month < 1 || month > 12 || !lit('-') {
		return 0, false
	}
	// %d also matches " [1-9]": a space-padded day of exactly one digit.
	dayMax := 2
	if p < len(s) && s[p] == ' ' {
		p++
		dayMax = 1
	}
	day, ok := num(1, dayMax)
	if !ok || day < 1 || day > 31 {
		return 0, false
	}
	// \s+
	spaces := 0
	for p < len(s) {
		r, size := utf8.DecodeRune(s[p:])
		if r == utf8.RuneError && size <= 1 || !isPyStrSpace(r) {
			break
		}
		p += size
		spaces++
	}
	if spaces == 0 {
		return 0, false
	}
	hour, ok := num(1, 2)
	if !ok || hour > 23 || !lit(':') {
		return 0, false
	}
	minute, ok := num(1, 2)
	if !ok || minute > 59 || !lit(':') {
		return 0, false
	}
	second, ok := num(1, 2)
	if !ok || second > 59 || p != len(s) {
		return 0, false
	}
	if year < 1 || day > daysIn(time.Month(month), year) {
		return 0, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, second, 0, loc).Unix(), true
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
