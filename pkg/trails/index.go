package trails

import (
	"errors"
	"fmt"

	"github.com/FastFilter/xorfilter"
)

// KeyIndex is where an index-backed Names (NamesFromIndex) looks its
// domain and URL keys up instead of the Go map LoadNames builds: a
// compiled, memory-mapped trail store (pkg/store) implements it, which
// keeps the 1.3M keys off the Go heap. It is an interface, not a
// pkg/store type, because pkg/store imports this package.
//
// The index must hold exactly the keys LoadNames would keep for the same
// rows (regex trail keys included, whitelisted ones dropped), each with
// its last row's meta. Its methods must be safe for concurrent use, and
// LookupKey, KeySkips and MaxNameKey must not allocate: CheckDomain and
// CheckURL promise allocation-free misses.
type KeyIndex interface {
	// LookupKey returns the meta index of an exact key.
	LookupKey(key []byte) (idx uint32, ok bool)
	// KeyMeta returns the meta of an index LookupKey returned. It may
	// allocate; it runs only on a hit.
	KeyMeta(idx uint32) Meta
	// KeySkips returns the facts of spec §1.3.1's skip rules for a meta:
	// its info holds "suspicious" or "sinkhole" (nsSkip), "dynamic" or
	// "free web" (dynSkip). It runs on hits that may still be skipped,
	// so it must not allocate.
	KeySkips(idx uint32) (nsSkip, dynSkip bool)
	// MaxNameKey is the length of the longest key without '/'.
	MaxNameKey() int
}

// FilteredIndex is what a KeyIndex may also offer: the filter its
// lookups ask before its table, and the table probe past it. Names then
// hashes a key (KeyHash with HashSeed) and asks the filter itself, so a
// key the filter rules out, as nearly every name and URL candidate is,
// costs no call into the index. ProbeKey must not allocate.
type FilteredIndex interface {
	KeyFilter() *xorfilter.BinaryFuse[uint16]
	// BaseFilter holds KeyHash(LastTwoLabels(k)) of every key k without
	// '/' that holds a '.': a name whose last two labels it rules out has
	// no such key among its parents.
	BaseFilter() *xorfilter.BinaryFuse[uint8]
	// HostFilter holds KeyHash of every URL key's host part (before its
	// first '/'): a host it rules out begins no key with host+"/", so a
	// request has no host+candidate key (spec §1.4).
	HostFilter() *xorfilter.BinaryFuse[uint8]
	// HeadFilter holds KeyHash(PathHead(k)) of every key k starting with
	// '/'.
	HeadFilter() *xorfilter.BinaryFuse[uint8]
	HashSeed() uint64
	// ProbeKey is LookupKey for a key whose hash h the filter holds.
	ProbeKey(key []byte, h uint64) (idx uint32, ok bool)
}

// PathHead is the head of a text starting with '/': the bytes after it
// up to the next '/', '?' or '=' (or the end). A bare URL candidate of a
// path starting with '/' is a key only if some key starting with '/' has
// its head, which is the head that follows one of the path's own
// slashes (see Names.noBareKeys). PathHead of a text not starting with
// '/' is nil.
func PathHead[T ~string | ~[]byte](t T) T {
	if len(t) == 0 || t[0] != '/' {
		return t[:0]
	}
	i := 1
	for i < len(t) && !isHeadEnd(t[i]) {
		i++
	}
	return t[1:i]
}

// LastTwoLabels is a text's last two labels: what follows its
// second-to-last '.' (all of it with fewer dots). A key holding a '.'
// that is a name or one of its parents has the name's last two labels.
func LastTwoLabels[T ~string | ~[]byte](t T) T {
	dots := 0
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '.' {
			if dots++; dots == 2 {
				return t[i+1:]
			}
		}
	}
	return t
}

func isHeadEnd(c byte) bool { return c == '/' || c == '?' || c == '=' }

// RegexRow is a row that passed spec §1.2's textual regex test
// (IsRegexCandidate) and was not whitelisted, for NamesFromIndex.
type RegexRow struct {
	Key string
	// Meta is the key's final meta index in the KeyIndex: the one the
	// index gives the key, which is its last row's (a regex candidate or
	// not), as LoadNames keeps it. A compiled store records it in every
	// regex row, so NamesFromIndex need not look the keys up.
	Meta uint32
	File string // source, for problem reports
	Line int
}

// NamesFromIndex returns a Names whose domain and URL keys live in idx.
// regexes are the regex candidate rows in CSV order, repeats included:
// they take Maltrail's first 100 slots and are translated exactly as
// LoadNames does, and the ones that cannot be are returned as problems
// (and kept in Problems). wl is kept to skip whitelisted names and hosts
// at check time, as LoadNames keeps it.
//
// Only the CSV-derived Stats (Keys, URLs, Duplicates and the like) are
// left for the caller to fill, since idx does not know them.
func NamesFromIndex(idx KeyIndex, regexes []RegexRow, wl *Whitelist) (*Names, []LoadProblem, error) {
	if idx == nil {
		return nil, nil, errors.New("names from index: nil index")
	}
	n := &Names{idx: idx, wl: wl, maxNameKey: idx.MaxNameKey()}
	if f, ok := idx.(FilteredIndex); ok {
		n.probe, n.filter, n.bases, n.seed = f, f.KeyFilter(), f.BaseFilter(), f.HashSeed()
		n.hosts, n.heads = f.HostFilter(), f.HeadFilter()
	}
	seen := make(map[string]bool)
	for _, r := range regexes {
		if n.Stats.RegexSlots >= maxRegexTrails {
			break
		}
		if r.Key == "" {
			return nil, nil, fmt.Errorf("names from index: %s:%d: empty regex trail key", r.File, r.Line)
		}
		n.addRegex(r.Key, r.File, r.Line, seen)
	}
	// addRegex keeps the first row of a repeated key; its meta is the
	// key's final one, which the rows carry. A lookup of each key would
	// give the same, but it would fault in pages (whole large folios) of
	// a mapped index that the resident set then holds until released.
	for i := range n.regex {
		n.regex[i].meta = regexRowMeta(regexes, n.regex[i].key)
	}
	n.Stats.Regexes = len(n.regex)
	if len(n.regex) > 0 {
		n.rx = newRegexIndex(n.regex)
	}
	return n, n.Problems, nil
}

// regexRowMeta is the meta of the last row with key.
func regexRowMeta(rows []RegexRow, key string) uint32 {
	var mi uint32
	for _, r := range rows {
		if r.Key == key {
			mi = r.Meta
		}
	}
	return mi
}
