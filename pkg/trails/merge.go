package trails

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// Merge keywords and references of Maltrail's updater (spec §8;
// core/settings.py LOW_PRIORITY_INFO_KEYWORDS, HIGH_PRIORITY_INFO_KEYWORDS,
// HIGH_PRIORITY_REFERENCES). "bad history" is one keyword.
var (
	lowPriorityInfo  = [...]string{"reputation", "attacker", "spammer", "abuser", "malicious", "dnspod", "nicru", "crawler", "compromised", "bad history"}
	highPriorityInfo = [...]string{"mass scanner", "ipinfo"}
)

// ErrNoTrails is returned (wrapped) by Merge when nothing is left to load.
var ErrNoTrails = errors.New("no trails")

// Trail is one merged trails.csv row.
type Trail struct {
	Key  string
	Meta uint32 // index into Merged.Metas
}

// CIDRTrail is one merged CIDR trail (KindCIDRList, an xtrail extension).
type CIDRTrail struct {
	Prefix netip.Prefix // masked
	Meta   uint32       // index into Merged.Metas
}

// SourceStats is what reading one source saw.
type SourceStats struct {
	Source Source
	Stats  Stats
}

// MergeStats counts what Merge did with the rows it read.
type MergeStats struct {
	Rows        int // rows read from all sources
	SameSource  int // rows whose key an earlier row of the same source had: the later row replaced it
	Overwritten int // keys an earlier source had, taken over by a later one
	Kept        int // keys an earlier source had, kept against a later one
	Whitelisted int // keys (and CIDRs) dropped by the whitelist
}

// Merged is the result of Merge: the trails.csv rows in Maltrail's order
// and the CIDR trails, with their (info, reference) pairs.
type Merged struct {
	// Trails are the rows of trails.csv in the order a key was first seen
	// (the insertion order of the dict Maltrail writes out), which is the
	// order that decides the first 100 regex trails (spec §1.2).
	Trails []Trail
	// CIDRs are sorted by address (IPv4 first), then prefix length.
	CIDRs []CIDRTrail
	// Metas holds each distinct (info, reference) pair once; Trail.Meta
	// and CIDRTrail.Meta index it.
	Metas []Meta
	// Sources has what reading each source saw (malformed lines with
	// file:line samples), in the order Merge read them.
	Sources []SourceStats
	Stats   MergeStats
}

// Merge reads srcs in ascending Priority (equal priorities in slice order)
// and merges them as Maltrail's updater merges its feeds, custom and
// static trails (spec §8), each source standing for one of its feeds:
//
//   - within one source the last row of a key wins, as in a feed's dict;
//   - a later source takes over a key unless the entry it has is static
//     or custom (reference "(static)" or "(custom)") or the new info holds
//     a low-priority word (lowPriorityInfo);
//   - a static or custom row takes over anyway unless its info contains
//     "history";
//   - info containing "mass scanner" or "ipinfo" always takes over;
//   - the references of the other sources that listed a key are appended
//     to the winner's, sorted: "(static) (+abuse.ch,alienvault.com)". A
//     reference read back with such a suffix counts its sources again, so
//     merging a merged file changes nothing.
//
// CIDR trails merge among themselves by prefix under the same rules.
// Keys wl whitelists are dropped (IsWhitelistedKey; a CIDR when it equals
// a literal or lies inside a whitelisted IPv4 range). Maltrail's other
// post-processing (www. stripping, IP_MINIMUM_FEEDS, bogon and CDN
// filters) is not done here.
//
// A source that cannot be read fails the merge; malformed lines only show
// in Sources. A merge that leaves no trail at all fails with ErrNoTrails,
// since an empty trail set would make a sensor that silently detects
// nothing.
func Merge(srcs []Source, wl *Whitelist) (*Merged, error) {
	return MergeWith(srcs, MergeOptions{Whitelist: wl})
}

// MergeOptions are the options of MergeWith.
type MergeOptions struct {
	Whitelist *Whitelist
	// Progress, when set, is called as the sources' files are read with
	// the bytes read from them so far (compressed bytes for ".gz").
	Progress func(read int64)
}

// MergeWith is Merge with progress reports.
func MergeWith(srcs []Source, o MergeOptions) (*Merged, error) {
	wl := o.Whitelist
	c := &byteCounter{report: o.Progress}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("merge trails: %w: no sources given", ErrNoTrails)
	}
	order := slices.Clone(srcs)
	slices.SortStableFunc(order, func(a, b Source) int { return cmp.Compare(a.Priority, b.Priority) })

	m := &Merged{}
	names := newMerger[string]()
	cidrs := newMerger[netip.Prefix]()
	for _, src := range order {
		var err error
		var st Stats
		if src.Kind == KindCIDRList {
			st, err = stageSource(src, c, cidrs, &m.Stats, func(_ Row, p netip.Prefix) netip.Prefix { return p })
		} else {
			st, err = stageSource(src, c, names, &m.Stats, func(r Row, _ netip.Prefix) string { return r.Trail })
		}
		m.Sources = append(m.Sources, SourceStats{Source: src, Stats: st})
		if err != nil {
			return nil, fmt.Errorf("merge trails: %w", err)
		}
	}
	m.Stats.Overwritten = names.overwritten + cidrs.overwritten
	m.Stats.Kept = names.kept + cidrs.kept

	metaIdx := make(map[Meta]uint32)
	meta := func(e *mergeEntry) uint32 {
		mt := Meta{Info: e.info, Reference: e.reference()}
		i, ok := metaIdx[mt]
		if !ok {
			i = uint32(len(m.Metas))
			m.Metas = append(m.Metas, mt)
			metaIdx[mt] = i
		}
		return i
	}
	m.Trails = make([]Trail, 0, len(names.keys))
	useWL := wl.Len() > 0 // skips a []byte copy of every key when there is nothing to check
	for i, k := range names.keys {
		if useWL && wl.IsWhitelistedKey([]byte(k)) {
			m.Stats.Whitelisted++
			continue
		}
		m.Trails = append(m.Trails, Trail{Key: k, Meta: meta(&names.entries[i])})
	}
	for i, p := range cidrs.keys {
		if wl.coversPrefix(p) {
			m.Stats.Whitelisted++
			continue
		}
		m.CIDRs = append(m.CIDRs, CIDRTrail{Prefix: p, Meta: meta(&cidrs.entries[i])})
	}
	slices.SortFunc(m.CIDRs, func(a, b CIDRTrail) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
	if len(m.Trails) == 0 && len(m.CIDRs) == 0 {
		malformed := 0
		for _, s := range m.Sources {
			malformed += s.Stats.Skipped
		}
		return nil, fmt.Errorf("merge trails: %w left from %d sources (%d rows read, %d malformed lines, %d whitelisted)",
			ErrNoTrails, len(srcs), m.Stats.Rows, malformed, m.Stats.Whitelisted)
	}
	return m, nil
}

// stageSource reads one source into its own ordered map first, so that
// repeats inside the source replace each other silently (a feed's dict)
// and only the source's final row of a key meets the merge rules, once.
func stageSource[K comparable](src Source, c *byteCounter, mg *merger[K], ms *MergeStats, key func(Row, netip.Prefix) K) (Stats, error) {
	idx := make(map[K]int)
	var keys []K
	var metas []Meta
	st, err := readSource(src, c, func(r Row, p netip.Prefix) error {
		ms.Rows++
		k := key(r, p)
		if i, ok := idx[k]; ok {
			ms.SameSource++
			metas[i] = Meta{Info: r.Info, Reference: r.Reference}
			return nil
		}
		idx[k] = len(keys)
		keys = append(keys, k)
		metas = append(metas, Meta{Info: r.Info, Reference: r.Reference})
		return nil
	})
	if err != nil {
		return st, err
	}
	for i, k := range keys {
		mg.add(k, metas[i].Info, metas[i].Reference)
	}
	return st, nil
}

// merger is the updater's trails dict plus its duplicates dict, keyed by
// trail text or by prefix.
type merger[K comparable] struct {
	idx               map[K]int
	keys              []K
	entries           []mergeEntry
	overwritten, kept int
}

type mergeEntry struct {
	info, ref string
	// others holds the references of every source that listed the key
	// once it has been listed twice (with repeats), plus any " (+...)"
	// names a read-back reference carried; the winner's own reference is
	// left out when the final reference is built.
	others []string
}

func newMerger[K comparable]() *merger[K] {
	return &merger[K]{idx: make(map[K]int)}
}

func (m *merger[K]) add(key K, info, ref string) {
	base, extra := splitReference(ref)
	i, ok := m.idx[key]
	if !ok {
		m.idx[key] = len(m.keys)
		m.keys = append(m.keys, key)
		m.entries = append(m.entries, mergeEntry{info: info, ref: base, others: extra})
		return
	}
	e := &m.entries[i]
	e.others = append(e.others, e.ref, base)
	e.others = append(e.others, extra...)
	if takesOver(e.ref, info, base) {
		e.info, e.ref = info, base
		m.overwritten++
	} else {
		m.kept++
	}
}

// takesOver is the updater's test (spec §8) for a new row (info, ref)
// meeting an entry whose reference is oldRef.
func takesOver(oldRef, info, ref string) bool {
	if containsAny(info, highPriorityInfo[:]) {
		return true
	}
	if isHighPriorityRef(ref) && !strings.Contains(info, "history") {
		return true
	}
	return !isHighPriorityRef(oldRef) && !containsAny(info, lowPriorityInfo[:])
}

func isHighPriorityRef(ref string) bool { return ref == staticReference || ref == customReference }

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// splitReference splits "(static) (+abuse.ch,alienvault.com)" into
// "(static)" and its other sources. A reference without the suffix is
// returned as it is.
func splitReference(ref string) (base string, others []string) {
	i := strings.LastIndex(ref, " (+")
	if i < 0 || !strings.HasSuffix(ref, ")") {
		return ref, nil
	}
	for o := range strings.SplitSeq(ref[i+3:len(ref)-1], ",") {
		if o != "" {
			others = append(others, o)
		}
	}
	return ref[:i], others
}

// reference is the final reference: the winner's, with the other sources
// sorted and deduplicated in " (+...)". Unlike Maltrail, which would
// write "x (+)" when every listing came from sources with the same
// reference, no empty suffix is written.
func (e *mergeEntry) reference() string {
	if len(e.others) == 0 {
		return e.ref
	}
	o := slices.Clone(e.others)
	slices.Sort(o)
	o = slices.Compact(o)
	o = slices.DeleteFunc(o, func(s string) bool { return s == e.ref })
	if len(o) == 0 {
		return e.ref
	}
	return e.ref + " (+" + strings.Join(o, ",") + ")"
}

// coversPrefix reports whether the whitelist drops the CIDR trail p: its
// text (or, for a host prefix, the address text) is a literal, or it lies
// wholly inside a whitelisted IPv4 range. A CIDR that only overlaps a
// whitelisted range is kept; the events of its whitelisted addresses are
// dropped at match time anyway (spec §1.6).
func (w *Whitelist) coversPrefix(p netip.Prefix) bool {
	if w == nil {
		return false
	}
	if _, ok := w.literals[CIDRText(p)]; ok {
		return true
	}
	if p.IsSingleIP() {
		if _, ok := w.literals[maltrail.FormatAddr(p.Addr())]; ok {
			return true
		}
	}
	if !p.Addr().Is4() {
		return false
	}
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	for _, r := range w.ranges {
		if bits.OnesCount32(r.mask) <= p.Bits() && v&r.mask == r.prefix {
			return true
		}
	}
	return false
}

// WriteCSV writes the trails as Maltrail's updater writes trails.csv
// (spec §1.1): Python's csv.writer with QUOTE_MINIMAL, so a field is
// quoted only when it holds ',', '"', CR or LF, with '"' doubled, and
// every row ends in CRLF. CIDR trails are not part of it: Maltrail has
// none (spec §1.2).
func (m *Merged) WriteCSV(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, t := range m.Trails {
		if int(t.Meta) >= len(m.Metas) {
			return fmt.Errorf("write trails.csv: trail %q has meta %d of %d", t.Key, t.Meta, len(m.Metas))
		}
		mt := m.Metas[t.Meta]
		writeCSVField(bw, t.Key)
		bw.WriteByte(',')
		writeCSVField(bw, mt.Info)
		bw.WriteByte(',')
		writeCSVField(bw, mt.Reference)
		bw.WriteString("\r\n")
	}
	// bufio.Writer keeps its first error, so checking once at the end
	// catches a failure in any of the writes above.
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write trails.csv: %w", err)
	}
	return nil
}

func writeCSVField(w *bufio.Writer, s string) {
	if !strings.ContainsAny(s, ",\"\r\n") {
		w.WriteString(s)
		return
	}
	w.WriteByte('"')
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			break
		}
		w.WriteString(s[:i+1])
		w.WriteByte('"')
		s = s[i+1:]
	}
	w.WriteString(s)
	w.WriteByte('"')
}

// WriteFile writes WriteCSV's output to path+".new" and renames it over
// path, as the updater does (spec §8), so a sensor reloading the file
// never sees half of it.
func (m *Merged) WriteFile(path string) (err error) {
	tmp := path + ".new"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write trails: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := m.WriteCSV(f); err != nil {
		return fmt.Errorf("write trails %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write trails %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write trails %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write trails: %w", err)
	}
	return nil
}
