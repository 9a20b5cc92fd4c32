package store

import (
	"fmt"

	"github.com/FastFilter/xorfilter"

	"github.com/xtrail/xtrail/pkg/trails"
)

// nameIndex is trails.KeyIndex over an open store: key lookups probe the
// mapped name table in place. The metas are copied to the Go heap once
// (a few thousand (info, reference) pairs, against 1.3M keys) so that a
// hit does not allocate strings either.
type nameIndex struct {
	s     *Store
	metas []trails.Meta
}

func (x *nameIndex) LookupKey(key []byte) (uint32, bool) { return x.s.LookupName(key) }

func (x *nameIndex) KeyFilter() *xorfilter.BinaryFuse[uint16] { return x.s.NameFilter() }

func (x *nameIndex) BaseFilter() *xorfilter.BinaryFuse[uint8] { return x.s.BaseFilter() }

func (x *nameIndex) HashSeed() uint64 { return x.s.HashSeed() }

func (x *nameIndex) ProbeKey(key []byte, h uint64) (uint32, bool) { return x.s.ProbeName(key, h) }

func (x *nameIndex) KeyMeta(idx uint32) trails.Meta {
	if int(idx) >= len(x.metas) {
		return trails.Meta{}
	}
	return x.metas[idx]
}

func (x *nameIndex) KeySkips(idx uint32) (nsSkip, dynSkip bool) {
	f := x.s.Flags(idx)
	return f&FlagNSSkip != 0, f&FlagDynSkip != 0
}

func (x *nameIndex) MaxNameKey() int { return x.s.MaxNameKey() }

func (x *nameIndex) HostFilter() *xorfilter.BinaryFuse[uint8] { return &x.s.hosts }

func (x *nameIndex) HeadFilter() *xorfilter.BinaryFuse[uint8] { return &x.s.heads }

// Metas returns every meta of the store, indexed as the name, IP and
// CIDR tables refer to them. It allocates the strings.
func (s *Store) Metas() []trails.Meta {
	out := make([]trails.Meta, s.NumMetas())
	for i := range out {
		info, ref := s.Meta(uint32(i))
		out[i] = trails.Meta{Info: info, Reference: ref}
	}
	return out
}

// Names returns the store's domain, URL and regex trails as a
// trails.Names that looks its keys up in the mapped file, matching as
// trails.LoadNames of the source trails.csv would (wl as LoadNames takes
// it; the store's whitelisted keys were already dropped at compile
// time). The regex trails are translated and compiled here, and the ones
// that cannot be are returned as problems. The Names reads the mapping:
// the store must stay open while it is in use.
func (s *Store) Names(wl *trails.Whitelist) (*trails.Names, []trails.LoadProblem, error) {
	if s.data == nil {
		return nil, nil, fmt.Errorf("trail store names: store is closed")
	}
	srcs := s.Sources()
	var rows []trails.RegexRow
	for r := range s.Regexes() {
		file := ""
		if r.Source >= 0 && r.Source < len(srcs) {
			file = srcs[r.Source].Name
		}
		rows = append(rows, trails.RegexRow{Key: r.Key, Meta: r.Meta, File: file, Line: r.Line})
	}
	n, probs, err := trails.NamesFromIndex(&nameIndex{s: s, metas: s.Metas()}, rows, wl)
	if err != nil {
		return nil, nil, fmt.Errorf("trail store names: %w", err)
	}
	st := s.Stats()
	n.Stats.Keys = st.Names
	n.Stats.URLs = st.URLs
	n.Stats.Duplicates = st.Duplicates
	n.Stats.Whitelisted = st.Load.Whitelisted
	n.Stats.Empty = st.Load.Empty
	n.Stats.CSV = trails.Stats{Rows: st.Load.Rows, Skipped: st.Load.Skipped}
	return n, probs, nil
}
