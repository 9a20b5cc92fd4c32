package heuristics

import (
	"bufio"
	"bytes"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
	"strings"

	"github.com/xtrail/xtrail/pkg/trails"
)

// UserAgents is a list of suspicious user agents, searched
// case-insensitively in a request's User-Agent: the leftmost match wins,
// and at one position the earliest entry. When every entry is a plain
// string (the built-in list, most of a ua.txt) the search is a literal
// scan; otherwise the entries are one Python-style alternation compiled
// to a Go regular expression, which is exact but slower.
type UserAgents struct {
	lits litSet
	re   *regexp.Regexp // set when some entry is not a literal
	n    int
}

// Len is the number of entries.
func (u *UserAgents) Len() int { return u.n }

// uaCacheSize is the number of clean user agents remembered (a direct
// mapped cache of hashes: 32 KiB).
const uaCacheSize = 4096

func builtinUserAgents() *UserAgents {
	u := &UserAgents{n: len(defaultUserAgents)}
	for i, s := range defaultUserAgents {
		u.lits.add(s, i%64)
	}
	return u
}

// LoadUserAgentsFile reads a user-agent list (USER_AGENTS_FILE, or
// Maltrail's data/ua.txt): one entry per line, a Python regular
// expression fragment (a plain string is one); blank lines and '#'
// comments are skipped. An entry with no Go equivalent is an error
// naming its line.
func LoadUserAgentsFile(path string) (*UserAgents, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("user agents: %w", err)
	}
	defer f.Close()
	return LoadUserAgents(f, path)
}

// LoadUserAgents is LoadUserAgentsFile on a reader; name is used in
// errors.
func LoadUserAgents(r io.Reader, name string) (*UserAgents, error) {
	u := &UserAgents{}
	var alts []string
	literal := true
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		g, err := trails.TranslatePythonRegex(s)
		if err != nil {
			return nil, fmt.Errorf("user agents %s:%d: %q: %w", name, line, s, err)
		}
		tree, err := syntax.Parse(g, syntax.Perl)
		if err != nil {
			return nil, fmt.Errorf("user agents %s:%d: %q: %w", name, line, s, err)
		}
		if lit, ok := asciiLiteral(tree); ok && lit != "" {
			u.lits.add(lit, u.n%64)
		} else {
			literal = false
		}
		alts = append(alts, "(?:"+g+")")
		u.n++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("user agents %s: %w", name, err)
	}
	if u.n == 0 {
		return nil, fmt.Errorf("user agents %s: no entries", name)
	}
	if !literal {
		re, err := regexp.Compile("(?i)" + strings.Join(alts, "|"))
		if err != nil {
			return nil, fmt.Errorf("user agents %s: %w", name, err)
		}
		u.re = re
	}
	return u, nil
}

// asciiLiteral returns the string a parsed expression matches when it is
// a plain ASCII literal.
func asciiLiteral(re *syntax.Regexp) (string, bool) {
	if re.Op != syntax.OpLiteral {
		return "", false
	}
	var b strings.Builder
	for _, r := range re.Rune {
		if r >= 0x80 {
			return "", false
		}
		b.WriteRune(r)
	}
	return b.String(), true
}

// find returns the match of the list in ua, or ok false.
func (u *UserAgents) find(ua []byte) (start, end int, ok bool) {
	if u.re != nil {
		loc := u.re.FindIndex(ua)
		if loc == nil {
			return 0, 0, false
		}
		return loc[0], loc[1], true
	}
	i, s, e := u.lits.first(ua)
	return s, e, i >= 0
}

// UserAgent runs the suspicious user-agent heuristic (spec §4) on the raw
// User-Agent value (trimmed, still percent-encoded): unquoted and
// stripped, unless WhitelistUA matches it, a match of the list gives the
// trail "match (full UA)" when text surrounds the match, else the match
// with the text on its one side in parentheses, every parenthesis
// escaped: "masscan(/1.0 \(https://...\))". The caller checks Use.
func (e *Engine) UserAgent(raw []byte, r Reporter) bool {
	if len(raw) == 0 {
		return false
	}
	ua := raw
	if bytes.IndexByte(raw, '%') >= 0 {
		e.uaBuf = appendUnquote(e.uaBuf[:0], raw)
		ua = e.uaBuf
	}
	ua = trimPySpace(ua)
	if len(ua) == 0 {
		return false
	}
	// Clients send the same few user agents over and over: a verdict
	// cache (as Maltrail keeps) spares the scan of one seen before.
	h := maphash.Bytes(e.uaSeed, ua)
	slot := &e.uaClean[h&(uaCacheSize-1)]
	if *slot == h|1 {
		return false
	}
	if e.cfg.WhitelistUA != nil && e.cfg.WhitelistUA.Match(ua) {
		*slot = h | 1
		return false
	}
	s, end, ok := e.ua.find(ua)
	if !ok {
		*slot = h | 1
		return false
	}
	m, pre, post := ua[s:end], ua[:s], ua[end:]
	t := e.trail[:0]
	if len(pre) > 0 && len(post) > 0 {
		t = appendUAEscaped(t, m)
		t = append(t, " ("...)
		t = appendUAEscaped(t, ua)
		t = append(t, ')')
	} else {
		if len(pre) > 0 {
			t = append(appendUAEscaped(append(t, '('), pre), ')')
		}
		t = appendUAEscaped(t, m)
		if len(post) > 0 {
			t = append(appendUAEscaped(append(t, '('), post), ')')
		}
	}
	e.trail = t
	e.report(r, KindUserAgent, "UA", "user agent (suspicious)")
	return true
}

// appendUAEscaped is Maltrail's value.rstrip('\\') with '(' and ')'
// escaped by a backslash.
func appendUAEscaped(dst, v []byte) []byte {
	for len(v) > 0 && v[len(v)-1] == '\\' {
		v = v[:len(v)-1]
	}
	for _, c := range v {
		if c == '(' || c == ')' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return dst
}
