package trails

import (
	"bytes"
	"fmt"
	"math/bits"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/xtrail/xtrail/pkg/lits"
)

// maxRegexTrails is how many regex trails Maltrail joins into its one
// alternation (spec §1.2): the first 100 in CSV order, because Python's re
// once refused more than 100 named groups.
const maxRegexTrails = 100

// looksLikeRegex reports whether a key matches, case-insensitively,
// Maltrail's test for a regex trail: [\].][*+]|\[[a-z0-9_.\-]+\]
// (spec §1.2). Written out because it runs on every one of 1.6M keys.
func looksLikeRegex(k []byte) bool {
	for i := 0; i+1 < len(k); i++ {
		switch k[i] {
		case ']', '.':
			if k[i+1] == '*' || k[i+1] == '+' {
				return true
			}
		case '[':
			j := i + 1
			for j < len(k) && isRegexClassByte(k[j]) {
				j++
			}
			if j > i+1 && j < len(k) && k[j] == ']' {
				return true
			}
		}
	}
	return false
}

func isRegexClassByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// pyEscapeChanges reports whether Python's re.escape(k) != k: since Python
// 3.7 re.escape escapes exactly these characters.
func pyEscapeChanges(k []byte) bool {
	return bytes.ContainsAny(k, "()[]{}?*+-|^$\\.&~# \t\n\r\v\f")
}

// IsRegexCandidate is spec §1.2's test for a regex trail, less "compiles
// in Python" (which the translator decides): the reference holds
// "static", the key looks like a regex, and re.escape would change it.
func IsRegexCandidate(key, ref []byte) bool {
	return isRegexCandidate(key, ref)
}

func isRegexCandidate(key, ref []byte) bool {
	return bytes.Contains(ref, []byte("static")) && looksLikeRegex(key) && pyEscapeChanges(key)
}

// translateError says why a Python pattern has no Go translation.
type translateError struct {
	// python is set when Python's re would reject the pattern too. Such a
	// key is no regex trail in Maltrail, only an ordinary (unmatchable)
	// key; other errors are regex trails xtrail cannot run.
	python bool
	msg    string
}

func (e *translateError) Error() string { return e.msg }

func pyReject(format string, a ...any) *translateError {
	return &translateError{python: true, msg: "Python's re rejects it: " + fmt.Sprintf(format, a...)}
}

func unsupported(format string, a ...any) *translateError {
	return &translateError{msg: "no RE2 equivalent: " + fmt.Sprintf(format, a...)}
}

// translatePython rewrites a Python re pattern (str, no flags) into Go
// RE2 syntax with the same matches on the names it is searched in: lower
// case ASCII that passed the name regex, so Python's Unicode \d \w \s \b
// and its '$' (which also matches before a final '\n') behave as RE2's.
//
// Rewritten: \Z -> \z; {,n} -> {0,n}; {,} -> {0,}; a '{' that is not a
// quantifier -> \{; '[' inside a class -> \[ (RE2 would read "[:" as a
// POSIX class); \b inside a class (backspace) -> \x08; \uXXXX,
// \UXXXXXXXX and octal escapes -> \x{...}; (?P<name>...) -> (...) (names
// are not used, and a key's own name could clash); (?#...) removed;
// (?a) and (?u) dropped.
//
// No equivalent (errors): backreferences, look-around, atomic groups,
// possessive quantifiers, conditionals, \N{...}, verbose mode, and inline
// global flags not at the start (Python applies them to the whole
// pattern). Patterns Python itself rejects (unknown escapes such as \p,
// (?<name>...)) are reported as such.
func translatePython(p string) (string, error) {
	var b strings.Builder
	b.Grow(len(p) + 8)
	inClass := false
	classFirst := -1 // index in p of the first item of the current class
	for i := 0; i < len(p); {
		c := p[i]
		if inClass {
			switch {
			case c == '\\':
				n, err := translateEscape(&b, p, i, true)
				if err != nil {
					return "", err
				}
				i = n
			case c == ']' && i == classFirst:
				b.WriteString(`\]`) // "[]a]": a leading ']' is a literal
				i++
			case c == ']':
				b.WriteByte(']')
				inClass = false
				i++
			case c == '[':
				b.WriteString(`\[`)
				i++
			default:
				b.WriteByte(c)
				i++
			}
			continue
		}
		switch c {
		case '\\':
			n, err := translateEscape(&b, p, i, false)
			if err != nil {
				return "", err
			}
			i = n
		case '[':
			b.WriteByte('[')
			i++
			if i < len(p) && p[i] == '^' {
				b.WriteByte('^')
				i++
			}
			inClass, classFirst = true, i
		case '(':
			n, err := translateGroup(&b, p, i)
			if err != nil {
				return "", err
			}
			i = n
		case '*', '+', '?':
			b.WriteByte(c)
			n, err := quantifierSuffix(&b, p, i+1)
			if err != nil {
				return "", err
			}
			i = n
		case '{':
			lo, hi, comma, end, ok := parsePyRepeat(p, i)
			if !ok {
				b.WriteString(`\{`) // Python reads it as a literal
				i++
				continue
			}
			if lo == "" {
				lo = "0"
			}
			b.WriteByte('{')
			b.WriteString(lo)
			if comma {
				b.WriteByte(',')
				b.WriteString(hi)
			}
			b.WriteByte('}')
			n, err := quantifierSuffix(&b, p, end)
			if err != nil {
				return "", err
			}
			i = n
		default:
			b.WriteByte(c)
			i++
		}
	}
	if inClass {
		return "", pyReject("unterminated character set")
	}
	return b.String(), nil
}

// quantifierSuffix copies a lazy '?' after a quantifier and refuses a
// possessive '+' (Python 3.11), which RE2 lacks.
func quantifierSuffix(b *strings.Builder, p string, i int) (int, error) {
	if i < len(p) && p[i] == '?' {
		b.WriteByte('?')
		i++
	}
	if i < len(p) && p[i] == '+' {
		return 0, unsupported("possessive quantifier at offset %d", i)
	}
	return i, nil
}

// parsePyRepeat parses a Python {m}, {m,}, {,n}, {m,n} or {,} at p[i];
// ok is false when the brace is a literal to Python.
func parsePyRepeat(p string, i int) (lo, hi string, comma bool, end int, ok bool) {
	j := i + 1
	for j < len(p) && p[j] >= '0' && p[j] <= '9' {
		j++
	}
	lo = p[i+1 : j]
	if j < len(p) && p[j] == ',' {
		comma = true
		j++
		k := j
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			j++
		}
		hi = p[k:j]
	}
	if j >= len(p) || p[j] != '}' || (lo == "" && !comma) {
		return "", "", false, 0, false
	}
	return lo, hi, comma, j + 1, true
}

// translateGroup handles '(' at p[i] and returns the offset after what it
// consumed.
func translateGroup(b *strings.Builder, p string, i int) (int, error) {
	if i+1 >= len(p) || p[i+1] != '?' {
		b.WriteByte('(')
		return i + 1, nil
	}
	rest := p[i+2:]
	switch {
	case strings.HasPrefix(rest, ":"):
		b.WriteString("(?:")
		return i + 3, nil
	case strings.HasPrefix(rest, "P<"):
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			return 0, pyReject("unterminated group name")
		}
		b.WriteByte('(')
		return i + 2 + end + 1, nil
	case strings.HasPrefix(rest, "P="):
		return 0, unsupported("backreference (?P=...)")
	case strings.HasPrefix(rest, "="), strings.HasPrefix(rest, "!"),
		strings.HasPrefix(rest, "<="), strings.HasPrefix(rest, "<!"):
		return 0, unsupported("look-around at offset %d", i)
	case strings.HasPrefix(rest, "#"):
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return 0, pyReject("missing ) in comment")
		}
		return i + 2 + end + 1, nil
	case strings.HasPrefix(rest, ">"):
		return 0, unsupported("atomic group at offset %d", i)
	case strings.HasPrefix(rest, "("):
		return 0, unsupported("conditional group at offset %d", i)
	}
	// Inline flags: (?flags) or (?flags-flags:...).
	j := 0
	var on, off strings.Builder
	cur := &on
	for j < len(rest) && rest[j] != ')' && rest[j] != ':' {
		switch f := rest[j]; f {
		case 'i', 'm', 's':
			cur.WriteByte(f)
		case 'a', 'u': // ASCII / Unicode classes: equal on ASCII names
		case 'x':
			return 0, unsupported("verbose flag (?x)")
		case 'L':
			return 0, pyReject("(?L) is for bytes patterns")
		case '-':
			if cur == &off {
				return 0, pyReject("bad inline flags")
			}
			cur = &off
		default:
			return 0, pyReject("unknown extension (?%c", f)
		}
		j++
	}
	if j >= len(rest) || j == 0 {
		return 0, pyReject("bad inline flags")
	}
	flags := on.String()
	if off.Len() > 0 {
		flags += "-" + off.String()
	}
	if rest[j] == ')' {
		if off.Len() > 0 {
			return 0, pyReject("global flags cannot be turned off")
		}
		if i != 0 {
			return 0, unsupported("global flags not at the start apply to the whole pattern in Python")
		}
		if flags != "" {
			b.WriteString("(?" + flags + ")")
		}
		return i + 2 + j + 1, nil
	}
	if flags == "" {
		b.WriteString("(?:")
	} else {
		b.WriteString("(?" + flags + ":")
	}
	return i + 2 + j + 1, nil
}

// translateEscape handles the '\' at p[i] and returns the offset after the
// escape.
func translateEscape(b *strings.Builder, p string, i int, inClass bool) (int, error) {
	if i+1 >= len(p) {
		return 0, pyReject("bad escape (end of pattern)")
	}
	c := p[i+1]
	switch {
	case c >= 0x80:
		r, size := utf8.DecodeRuneInString(p[i+1:])
		b.WriteString(regexp.QuoteMeta(string(r)))
		return i + 1 + size, nil
	case strings.IndexByte("dDwWsS", c) >= 0:
		b.WriteByte('\\')
		b.WriteByte(c)
	case strings.IndexByte("aftnrv", c) >= 0:
		b.WriteByte('\\')
		b.WriteByte(c)
	case c == 'b' && inClass:
		b.WriteString(`\x08`)
	case strings.IndexByte("bBA", c) >= 0:
		if inClass {
			return 0, pyReject(`bad escape \%c in a class`, c)
		}
		b.WriteByte('\\')
		b.WriteByte(c)
	case c == 'Z':
		if inClass {
			return 0, pyReject(`bad escape \Z in a class`)
		}
		b.WriteString(`\z`)
	case c == 'x':
		if i+4 > len(p) || !isHex(p[i+2:i+4]) {
			return 0, pyReject(`incomplete escape \x`)
		}
		b.WriteString(`\x` + p[i+2:i+4])
		return i + 4, nil
	case c == 'u' || c == 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if i+2+n > len(p) || !isHex(p[i+2:i+2+n]) {
			return 0, pyReject(`incomplete escape \%c`, c)
		}
		v, _ := strconv.ParseUint(p[i+2:i+2+n], 16, 32)
		if v > utf8.MaxRune {
			return 0, pyReject(`bad escape \U`)
		}
		fmt.Fprintf(b, `\x{%x}`, v)
		return i + 2 + n, nil
	case c == 'N':
		return 0, unsupported(`named character escape \N{...}`)
	case c == '0':
		j := i + 2
		for j < len(p) && j < i+4 && p[j] >= '0' && p[j] <= '7' {
			j++
		}
		v, _ := strconv.ParseUint(p[i+1:j], 8, 32)
		fmt.Fprintf(b, `\x{%x}`, v)
		return j, nil
	case c >= '1' && c <= '9':
		// Three octal digits are an octal escape; anything else is a
		// backreference (or, in a class, an error).
		if i+4 <= len(p) && isOctal(p[i+1:i+4]) {
			v, _ := strconv.ParseUint(p[i+1:i+4], 8, 32)
			if v > 0o377 {
				return 0, pyReject("octal escape out of range")
			}
			fmt.Fprintf(b, `\x{%x}`, v)
			return i + 4, nil
		}
		if inClass {
			return 0, pyReject(`bad escape \%c in a class`, c)
		}
		return 0, unsupported(`backreference \%c`, c)
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return 0, pyReject(`bad escape \%c`, c)
	default:
		// Escaped punctuation, digits excluded above: a literal in both.
		b.WriteByte('\\')
		b.WriteByte(c)
	}
	return i + 2, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func isOctal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// regexTrail is one compiled regex trail.
type regexTrail struct {
	key  string // the trail as written in trails.csv
	re   *regexp.Regexp
	meta uint32
	// lits is a prefilter: every match contains at least one of them, so
	// a name holding none cannot match and the regex need not run. Empty
	// means no such set is known and the regex always runs.
	lits [][]byte
}

// compileRegexTrail translates and compiles a regex trail key.
func compileRegexTrail(key string) (regexTrail, error) {
	goPat, err := translatePython(key)
	if err != nil {
		return regexTrail{}, err
	}
	re, err := regexp.Compile(goPat)
	if err != nil {
		return regexTrail{}, unsupported("RE2 rejects %q: %v", goPat, err)
	}
	t := regexTrail{key: key, re: re}
	if tree, err := syntax.Parse(goPat, syntax.Perl); err == nil {
		for _, l := range requiredLiterals(tree.Simplify()) {
			t.lits = append(t.lits, []byte(l))
		}
	}
	return t, nil
}

// maxLits bounds a prefilter set: past it, checking the set costs about
// as much as running the regex.
const maxLits = 64

// requiredLiterals returns strings of which every match of re contains
// at least one, or nil when it knows none. It is conservative: an empty
// result only costs speed. Parts that match only a few fixed strings
// ("(com|net)", "v[iy]plata") are expanded, because Go's parser factors
// alternations ("mail(?:serv|stat)"), which would otherwise leave only a
// short common prefix.
func requiredLiterals(re *syntax.Regexp) []string {
	if set, ok := exactSet(re); ok {
		if slices.Contains(set, "") {
			return nil
		}
		return set
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpConcat:
		// Runs of exact parts join into longer literals.
		var best, run []string
		flush := func() {
			if len(run) > 0 && !slices.Contains(run, "") {
				best = betterLits(best, run)
			}
			run = nil
		}
		for _, sub := range re.Sub {
			set, ok := exactSet(sub)
			if ok && run != nil {
				if joined, ok := crossProduct(run, set); ok {
					run = joined
					continue
				}
			}
			flush()
			if ok {
				run = set
				continue
			}
			best = betterLits(best, requiredLiterals(sub))
		}
		flush()
		return best
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			l := requiredLiterals(sub)
			if l == nil {
				return nil
			}
			all = append(all, l...)
		}
		if len(all) > maxLits {
			return nil
		}
		return all
	}
	return nil
}

// exactSet returns every string re can match when that is a small finite
// set (at most maxLits).
func exactSet(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpCharClass:
		var set []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(set) == 8 {
					return nil, false // a wide class: not worth expanding
				}
				set = append(set, string(r))
			}
		}
		return set, true
	case syntax.OpCapture:
		return exactSet(re.Sub[0])
	case syntax.OpQuest:
		set, ok := exactSet(re.Sub[0])
		if !ok || len(set) >= maxLits {
			return nil, false
		}
		return append(set, ""), true
	case syntax.OpConcat:
		set := []string{""}
		for _, sub := range re.Sub {
			s, ok := exactSet(sub)
			if !ok {
				return nil, false
			}
			if set, ok = crossProduct(set, s); !ok {
				return nil, false
			}
		}
		return set, true
	case syntax.OpAlternate:
		var set []string
		for _, sub := range re.Sub {
			s, ok := exactSet(sub)
			if !ok || len(set)+len(s) > maxLits {
				return nil, false
			}
			set = append(set, s...)
		}
		return set, true
	}
	return nil, false
}

// crossProduct returns every a+b, or false past maxLits strings.
func crossProduct(as, bs []string) ([]string, bool) {
	if len(as)*len(bs) > maxLits {
		return nil, false
	}
	out := make([]string, 0, len(as)*len(bs))
	for _, a := range as {
		for _, b := range bs {
			out = append(out, a+b)
		}
	}
	return out, true
}

// betterLits picks the more selective set: one without a literal that
// most names contain, then the longer shortest literal, then the smaller
// set.
func betterLits(a, b []string) []string {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	if ca, cb := anyCommon(a), anyCommon(b); ca != cb {
		if cb {
			return a
		}
		return b
	}
	ma, mb := minLen(a), minLen(b)
	if ma != mb {
		if ma > mb {
			return a
		}
		return b
	}
	if len(b) < len(a) {
		return b
	}
	return a
}

// anyCommon reports whether a set holds a literal found in a large share
// of all names, such as "www." or ".com", which would make a poor filter.
func anyCommon(s []string) bool {
	for _, l := range s {
		if strings.Contains(l, "www") || strings.Contains(".com.net.org.", l) {
			return true
		}
	}
	return false
}

func minLen(s []string) int {
	m := len(s[0])
	for _, x := range s[1:] {
		m = min(m, len(x))
	}
	return m
}

// regexIndex runs the regex trails with their prefilters: one pass of a
// literal automaton (pkg/lits) over the name finds every trail one of
// whose required literals it holds, and only those trails' regexes (and
// those of trails without a prefilter) run.
type regexIndex struct {
	trails []regexTrail
	always regexMask // trails without a usable prefilter: always run
	lits   *lits.Set // the trails' literals, tagged with the trail's index
}

// maxRegexLitStates bounds the prefilter's automaton (its table takes
// states × columns × 4 bytes); past it every trail runs on every name.
const maxRegexLitStates = 1 << 17

// regexMask has one bit per regex trail (at most maxRegexTrails).
type regexMask [(maxRegexTrails + 63) / 64]uint64

func (m *regexMask) set(i int) { m[i/64] |= 1 << (i % 64) }

func newRegexIndex(trails []regexTrail) *regexIndex {
	x := &regexIndex{trails: trails}
	var ls []lits.Lit
	for i := range trails {
		if len(trails[i].lits) == 0 {
			x.always.set(i)
			continue
		}
		for _, l := range trails[i].lits {
			ls = append(ls, lits.Lit{Pat: string(l), Tag: i})
		}
	}
	if len(ls) > 0 {
		var err error
		if x.lits, err = lits.New(ls, maxRegexLitStates); err != nil {
			for i := range trails {
				x.always.set(i) // too many literals: no prefilter
			}
		}
	}
	return x
}

// find searches name with the regex trails as Maltrail's joined
// alternation (?P<g0>..)|(?P<g1>..)... does: the leftmost match wins, and
// of alternatives matching at the same offset the earliest trail. Go's
// leftmost-first semantics within each regex equal Python's backtracking
// for these patterns, so the extent matches too. Each regex is compiled
// on its own, which gives the same answer and lets one bad key fail
// alone. No allocation unless a regex matches.
func (x *regexIndex) find(name []byte) (idx, start, end int) {
	cand := x.always
	if x.lits != nil {
		x.lits.TagsInto(name, cand[:])
	}
	return x.run(cand, name)
}

// run runs the regexes of the candidate trails on name; see find.
func (x *regexIndex) run(cand regexMask, name []byte) (idx, start, end int) {
	idx = -1
	for w, m := range cand {
		for m != 0 {
			i := w*64 + bits.TrailingZeros64(m)
			m &= m - 1
			t := &x.trails[i]
			if !t.re.Match(name) {
				continue
			}
			loc := t.re.FindIndex(name)
			if loc == nil {
				continue
			}
			if idx < 0 || loc[0] < start {
				idx, start, end = i, loc[0], loc[1]
				if start == 0 {
					return idx, start, end // no later trail can start further left
				}
			}
		}
	}
	return idx, start, end
}
