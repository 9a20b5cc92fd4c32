package sink

import (
	"errors"
	"fmt"
	"regexp"
	"sync"
)

// Level is an event's severity in the remote outputs (spec §3.3).
type Level uint8

// The levels, numbered as CEF's severity field numbers them.
const (
	Low Level = iota
	Medium
	High
)

func (l Level) String() string {
	switch l {
	case Low:
		return "low"
	case High:
		return "high"
	}
	return "medium"
}

// DefaultSeverityRegex is the REMOTE_SEVERITY_REGEX Maltrail ships, written
// for Go's regexp. Maltrail's own text says `malware(?! (distribution|site))`;
// Go's RE2 has no look-ahead, so here "malware" must be followed by the end
// of the info or by text that is not " distribution" or " site", spelled
// out one byte at a time. The match then ends a few bytes later, which
// changes nothing: only which group matched counts.
// TestDefaultSeverityMatchesPython checks both against Python's re.
const DefaultSeverityRegex = `(?P<high>(remote )?custom\)|iot-malware|malware` + notDistributionOrSite +
	`|adversary|ransomware)|(?P<medium>potential malware site|malware distribution|c2 cert)` +
	`|(?P<low>mass scanner|reputation|attacker|spammer|compromised|crawler|scanning)`

// notDistributionOrSite matches where `(?! (distribution|site))` holds.
const notDistributionOrSite = `(?:$|[^ ]| (?:$|[^ds]` +
	`|d(?:$|[^i]|i(?:$|[^s]|s(?:$|[^t]|t(?:$|[^r]|r(?:$|[^i]|i(?:$|[^b]|b(?:$|[^u]|u(?:$|[^t]|t(?:$|[^i]|i(?:$|[^o]|o(?:$|[^n])))))))))))` +
	`|s(?:$|[^i]|i(?:$|[^t]|t(?:$|[^e])))))`

// severityCacheMax bounds the per-info cache. Infos come from the trails
// and the heuristics, a few thousand distinct texts at most; the bound only
// matters if something feeds arbitrary infos, and then the cache restarts.
const severityCacheMax = 8192

// Severity rates events with REMOTE_SEVERITY_REGEX (spec §3.3): the
// expression is searched in the event's info, and the first of its named
// groups low, medium and high that matched a non-empty text gives the
// level; no match, or no such group matching, means medium. Results are
// cached per info, so the steady state neither runs the expression nor
// allocates. Safe for concurrent use.
type Severity struct {
	re     *regexp.Regexp // nil: every event is medium
	groups [3]int         // subexpression of low, medium, high; 0 when the expression has none

	mu    sync.Mutex
	cache map[string]Level
}

// NewSeverity compiles expr. An empty expr rates every event medium, as
// Maltrail does with an empty REMOTE_SEVERITY_REGEX. An expression that
// Go's regexp cannot compile (Python's look-around and back-references) or
// that names none of the groups low, medium and high is an error: it
// would rate every event medium without a word.
func NewSeverity(expr string) (*Severity, error) {
	s := &Severity{cache: make(map[string]Level)}
	if expr == "" {
		return s, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%w (Go's regexp syntax: no look-around or back-references)", err)
	}
	found := false
	for i, name := range [...]string{"low", "medium", "high"} {
		if j := re.SubexpIndex(name); j > 0 {
			s.groups[i], found = j, true
		}
	}
	if !found {
		return nil, errors.New("the expression has none of the named groups (?P<high>…), (?P<medium>…), (?P<low>…)")
	}
	s.re = re
	return s, nil
}

// Of rates an event by its info.
func (s *Severity) Of(info []byte) Level {
	if s.re == nil {
		return Medium
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.cache[string(info)]; ok {
		return l
	}
	l := Medium
	if m := s.re.FindSubmatchIndex(info); m != nil {
		for i, g := range s.groups {
			if g > 0 && m[2*g] >= 0 && m[2*g+1] > m[2*g] {
				l = Level(i)
				break
			}
		}
	}
	if len(s.cache) >= severityCacheMax {
		clear(s.cache)
	}
	s.cache[string(info)] = l
	return l
}
