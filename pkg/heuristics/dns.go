package heuristics

import (
	"bytes"
	"math"
	"net/netip"
	"strings"
	"sync"

	"github.com/xtrail/xtrail/pkg/trails"
)

// Maltrail's DNS thresholds (spec §4).
const (
	exhaustionThreshold = 1000 // distinct subdomains of a base in its window
	exhaustionWindow    = 60   // seconds, per base
	hour                = 3600
	nxThreshold         = 20  // NXDOMAIN answers per name or group per hour
	entropyThreshold    = 3.5 // bits per character of a DGA label
	consonantThreshold  = 9
	longDomainThreshold = 24          // characters of a first label
	nxGroupNames        = nxThreshold // names a group keeps for its trail
	nxGroupBytes        = 1024        // bytes of those names
)

// localLookups are subdomains that local resolvers ask for in bulk: a base
// holding one is no exhaustion.
var localLookups = [...]string{"wpad", "autodiscover", "_ldap._tcp"}

const consonants = "bcdfghjklmnpqrstvwxyz"

type dnsState struct {
	// DNS exhaustion: bases per hour, their subdomains per 60 s window.
	bases     *table[baseRec]
	subs      *table[struct{}]
	hourStart int64
	started   bool
	// NXDOMAIN counters: exact names and "*.<last2>" groups per hour.
	nxNames  *table[struct{}]
	nxGroups *table[nxGroup]
	nxHour   int64
}

// dnsShared is the DNS state of an Engine and its forks, under one lock.
type dnsShared struct {
	mu sync.Mutex
	dnsState
}

type baseRec struct {
	winStart  uint32 // this base's 60 s window
	n         uint32 // distinct subdomains held in it
	fired     bool   // reported in this window
	local     bool   // a local lookup (wpad...) is among them
	exhausted bool   // reported this hour: NXDOMAIN answers of it are not counted
}

// nxGroup holds the names of a "*.<last2>" group's NXDOMAIN answers (the
// part before ".<last2>"), which its event lists.
type nxGroup struct {
	n    uint8
	ends [nxGroupNames]uint16
	buf  [nxGroupBytes]byte
}

func (s *dnsState) init(l Limits, st *Stats) {
	s.bases = newTable[baseRec](l.DNSBases, 0, &st.DNSBasesEvicted)
	s.subs = newTable[struct{}](l.DNSSubdomains, exhaustionWindow, &st.DNSSubdomainsEvicted)
	s.nxNames = newTable[struct{}](l.NXNames, 0, &st.NXNamesEvicted)
	s.nxGroups = newTable[nxGroup](l.NXGroups, 0, &st.NXGroupsEvicted)
}

// DNS is what the DNS heuristics read of one message.
type DNS struct {
	Sec int64 // packet time, seconds
	// Name is the question name: lowercased, passed Maltrail's name
	// filter (a name that did not is read up to its first byte outside
	// names, lowercased).
	Name []byte
	// Prepared is Name read once (trails.Name, set to Name) when the
	// caller has it, which spares reading it again here; nil: read here.
	Prepared *trails.Name
	// ClientPrivate: the response goes to a private address (its dst);
	// only NXDomain reads it.
	ClientPrivate bool
	Whitelist     *trails.Whitelist
	Names         *trails.Names // the domain trails (nil: none)
}

// exhaustionBase returns the base of a name with more than two labels:
// its last two labels, or three when the second-to-last is at most three
// characters ("co.uk").
func exhaustionBase(m *trails.Name) []byte {
	last2 := m.LastLabels(2)
	if dot := bytes.IndexByte(last2, '.'); dot >= 0 && dot <= 3 {
		return m.LastLabels(3)
	}
	return last2
}

// nameOf returns q's name read once: q.Prepared, or the Engine's scratch
// set to q.Name.
func (e *Engine) nameOf(q *DNS) *trails.Name {
	if q.Prepared != nil {
		return q.Prepared
	}
	e.name.Set(q.Name)
	return &e.name
}

// Exhaustion runs the DNS-exhaustion heuristic on a standard query (spec
// §4; no USE_HEURISTICS gate): once a base holds 1000 distinct
// subdomains in its 60 s window, the next query is reported (at most once
// per base and window) and, while the base stays there, skip reports that
// the query must not be matched against trails. The caller checks
// DISABLED_HEURISTICS' dns_exhaustion with Enabled.
func (e *Engine) Exhaustion(q *DNS, r Reporter) (skip bool) {
	m := e.nameOf(q)
	if m.Labels() <= 2 {
		return false
	}
	name := m.Text()
	base := exhaustionBase(m)
	last2 := m.LastLabels(2)
	sub := name[:len(name)-len(last2)-1]
	// The base is a suffix of the name at a label boundary: it is
	// whitelisted only if the name is, which the domain check asks too.
	skipped := q.Whitelist.NameWhitelisted(m) && q.Whitelist.IsWhitelistedName(base) || isDashedQuad(m.FirstLabel())
	bh := hashNew(base)
	e.dns.mu.Lock()
	defer e.dns.mu.Unlock()
	s := &e.dns.dnsState
	now := uint32(q.Sec)
	if !s.started || q.Sec-s.hourStart > hour {
		s.started, s.hourStart = true, q.Sec
		s.bases.reset()
		s.subs.reset()
	}
	if skipped {
		return false
	}
	b, isNew := s.bases.put(bh, now)
	rec := &b.val
	if isNew || q.Sec-int64(rec.winStart) >= exhaustionWindow {
		exhausted := rec.exhausted && !isNew
		*rec = baseRec{winStart: now, exhausted: exhausted}
	}
	if rec.n < exhaustionThreshold {
		k := hashBytes(hashMix(bh, uint64(rec.winStart)), sub)
		if _, added := s.subs.put(k, now); added {
			rec.n++
			b.weight = rec.n
			if !rec.local {
				for _, l := range localLookups {
					if string(sub) == l {
						rec.local = true
					}
				}
			}
		}
		return false
	}
	if !rec.fired {
		rec.fired = true
		t := append(append(append(e.trail[:0], '('), sub...), ')')
		t = append(append(t, '.'), last2...)
		e.trail = t
		if !hasBLWord(t) && !rec.local {
			rec.exhausted = true
			e.report(r, KindDNSExhaustion, "DNS", "potential dns exhaustion (suspicious)")
		}
	}
	return true
}

// isDashedQuad matches \A\d+-\d+-\d+-\d+\Z (a reverse-lookup style label).
func isDashedQuad(b []byte) bool {
	parts := 0
	digits := 0
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			digits++
		case c == '-' && digits > 0:
			parts++
			digits = 0
		default:
			return false
		}
	}
	return parts == 3 && digits > 0
}

// hasBLWord is re.search(r"bl\b", t): "bl" then a non-word byte or the
// end (a DNSBL zone such as "dnsbl.example.net").
func hasBLWord(t []byte) bool {
	for i := 0; i+1 < len(t); i++ {
		if t[i] == 'b' && t[i+1] == 'l' && (i+2 == len(t) || !isWordByte(t[i+2])) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'z'
}

// NXDomain runs the NXDOMAIN-flood and DGA heuristics on a response whose
// flags byte 3 is exactly 0x83 (spec §4). The caller checks Use.
//
// Both skip names whose base was exhausted this hour, whitelisted names,
// names that are a trail or have a parent that is, and names under a
// numeric TLD. The flood counts, per hour, the name itself and its
// "*.<last2>" group (names of three labels or more), and reports a
// counter passing 20, then forgets it: a group's event lists its names,
// sorted. DNSBL-style lookups (four numeric labels first) and responses to
// a private client are not counted. A DGA name has exactly two labels, no
// '-', and a first label of entropy over 3.5 bits, or else more than 9
// consonants.
func (e *Engine) NXDomain(q *DNS, r Reporter) bool {
	m := e.nameOf(q)
	name := m.Text()
	if len(name) == 0 {
		return false // (a checked name is never empty)
	}
	e.dns.mu.Lock()
	defer e.dns.mu.Unlock()
	s := &e.dns.dnsState
	last2 := m.LastLabels(2)
	if s.started && q.Sec-s.hourStart <= hour {
		if b := s.bases.get(hashNew(last2), uint32(q.Sec)); b != nil && b.val.exhausted {
			return false
		}
	}
	if q.Whitelist.NameWhitelisted(m) || (q.Names != nil && q.Names.HasDomainOrParent(name)) {
		return false
	}
	tld := m.LastLabels(1)
	if isDigits(tld) {
		return false
	}
	found := false
	if !isDNSBLLookup(name) && !q.ClientPrivate {
		found = e.nxFlood(q, name, last2, r)
	}
	if m.Labels() == 2 {
		found = e.dga(name, r) || found
	}
	return found
}

// isDNSBLLookup: more than four labels, the first four numbers below 256.
func isDNSBLLookup(name []byte) bool {
	if labels(name) <= 4 {
		return false
	}
	rest := name
	for range 4 {
		dot := bytes.IndexByte(rest, '.')
		l := rest[:dot]
		if !isDigits(l) || len(l) > 3 || (len(l) == 3 && string(l) > "255") {
			return false
		}
		rest = rest[dot+1:]
	}
	return true
}

func (e *Engine) nxFlood(q *DNS, name, last2 []byte, r Reporter) bool {
	s := &e.dns.dnsState // NXDomain holds the lock
	now := uint32(q.Sec)
	if h := q.Sec / hour; h != s.nxHour {
		s.nxHour = h
		s.nxNames.reset()
		s.nxGroups.reset()
	}
	nh := hashNew(name)
	c, _ := s.nxNames.put(nh, now)
	c.weight++
	if c.weight > nxThreshold {
		c.key = 0
		e.trail = append(e.trail[:0], name...)
		e.report(r, KindNXDomain, "DNS", "excessive no such domain (suspicious)")
		return true
	}
	if bytes.Count(name, []byte{'.'}) <= 1 {
		return false
	}
	gh := hashMix(hashNew(last2), '*')
	g, isNew := s.nxGroups.put(gh, now)
	g.weight++
	if !isNew {
		e.addGroupName(&g.val, name[:len(name)-len(last2)-1])
	}
	if g.weight <= nxThreshold {
		return false
	}
	grp := &g.val
	e.trail = appendGroupTrail(e.trail[:0], grp, last2)
	// the group's names start afresh, as counters of their own too
	var full [256]byte
	for i := range int(grp.n) {
		n := append(append(append(full[:0], grp.name(i)...), '.'), last2...)
		s.nxNames.del(hashNew(n), now)
	}
	g.key = 0
	e.report(r, KindNXDomain, "DNS", "excessive no such domain (suspicious)")
	return true
}

func (g *nxGroup) name(i int) []byte {
	start := 0
	if i > 0 {
		start = int(g.ends[i-1])
	}
	return g.buf[start:g.ends[i]]
}

// addGroupName keeps a name of the group once (a set, as Maltrail's), up
// to nxGroupNames names and nxGroupBytes bytes; a name that does not fit
// is counted.
func (e *Engine) addGroupName(g *nxGroup, p []byte) {
	for i := range int(g.n) {
		if bytes.Equal(g.name(i), p) {
			return
		}
	}
	used := 0
	if g.n > 0 {
		used = int(g.ends[g.n-1])
	}
	if int(g.n) == nxGroupNames || used+len(p) > nxGroupBytes {
		e.stats.NXNamesCapped.Add(1)
		return
	}
	copy(g.buf[used:], p)
	g.ends[g.n] = uint16(used + len(p))
	g.n++
}

// appendGroupTrail renders "(a,b,c).<last2>" with the names sorted (the
// Rust sensor's order; Python's is its set's).
func appendGroupTrail(dst []byte, g *nxGroup, last2 []byte) []byte {
	var order [nxGroupNames]uint8
	n := int(g.n)
	for i := range n {
		order[i] = uint8(i)
	}
	for i := 1; i < n; i++ { // insertion sort: at most 20 names
		for j := i; j > 0 && bytes.Compare(g.name(int(order[j])), g.name(int(order[j-1]))) < 0; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	dst = append(dst, '(')
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, g.name(int(order[i]))...)
	}
	return append(append(append(dst, ')'), '.'), last2...)
}

// dga runs the DGA rules on a two-label name.
func (e *Engine) dga(name []byte, r Reporter) bool {
	dot := bytes.IndexByte(name, '.')
	label := name[:dot]
	if len(label) == 0 || bytes.IndexByte(label, '-') >= 0 {
		return false
	}
	info := ""
	switch {
	case entropy(label) > entropyThreshold:
		info = "entropy threshold no such domain (suspicious)"
	case consonantCount(label) > consonantThreshold:
		info = "consonant threshold no such domain (suspicious)"
	default:
		return false
	}
	e.trail = append(append(append(append(e.trail[:0], '('), label...), ')'), name[dot:]...)
	e.report(r, KindDGA, "DNS", info)
	return true
}

// entropy is the Shannon entropy of b in bits per byte, computed as
// Maltrail does: -sum(p*log(p)/log(2)) over the distinct bytes in order of
// first appearance.
func entropy(b []byte) float64 {
	var counts [256]uint16
	for _, c := range b {
		counts[c]++
	}
	n := float64(len(b))
	sum := 0.0
	for i, c := range b {
		if bytes.IndexByte(b[:i], c) >= 0 {
			continue
		}
		p := float64(counts[c]) / n
		sum += p * math.Log(p) / math.Log(2.0)
	}
	return -sum
}

func consonantCount(b []byte) int {
	n := 0
	for _, c := range b {
		if strings.IndexByte(consonants, c) >= 0 {
			n++
		}
	}
	return n
}

// AnswerTrails are the IP trails a DNS answer is looked up in by the
// sinkhole heuristic: only those whose info names a sinkhole or a parking
// site can make an event, so only they are kept.
type AnswerTrails struct {
	info map[netip.Addr]string
}

// AddAnswerTrail keeps addr if its trail's info makes a sinkhole or
// parked answer; it reports whether it did. (*AnswerTrails)(nil) is an
// empty set.
func (a *AnswerTrails) Add(addr netip.Addr, info string) bool {
	if !strings.Contains(info, "sinkhole") && !strings.Contains(info, "parking") {
		return false
	}
	if a.info == nil {
		a.info = make(map[netip.Addr]string)
	}
	a.info[addr.Unmap()] = info
	return true
}

// Len is the number of trails kept.
func (a *AnswerTrails) Len() int {
	if a == nil {
		return 0
	}
	return len(a.info)
}

func (a *AnswerTrails) lookup(addr netip.Addr) (string, bool) {
	if a == nil || a.info == nil {
		return "", false
	}
	info, ok := a.info[addr]
	return info, ok
}

// Sinkhole runs the sinkholed and parked answer heuristics on a response
// whose flags byte 3 is exactly 0x80, given its first A record (spec §4).
// The caller checks Use. A name that is not whitelisted and resolves to a
// sinkhole trail gives "sinkholed by <who> (malware)", <who> being the
// second word of the trail's info; to a parking trail "parked site
// (suspicious)". The trail is "(<all but the last label>).<tld>".
func (e *Engine) Sinkhole(q *DNS, firstA netip.Addr, answers *AnswerTrails, r Reporter) bool {
	if !firstA.IsValid() {
		return false
	}
	info, ok := answers.lookup(firstA)
	if !ok {
		return false
	}
	m := e.nameOf(q)
	name := m.Text()
	dot := bytes.LastIndexByte(name, '.')
	if dot < 0 || q.Whitelist.NameWhitelisted(m) {
		return false // (a checked name always has a dot)
	}
	var kind Kind
	var out string
	switch {
	case strings.Contains(info, "sinkhole"):
		// Maltrail: info.split(" ")[1]; without a second word it reports nothing
		f := strings.Split(info, " ")
		if len(f) < 2 {
			return false
		}
		kind, out = KindSinkholed, "sinkholed by "+f[1]+" (malware)"
	case strings.Contains(info, "parking"):
		kind, out = KindParked, "parked site (suspicious)"
	default:
		return false
	}
	e.trail = append(append(append(append(e.trail[:0], '('), name[:dot]...), ')'), name[dot:]...)
	e.report(r, kind, "DNS", out)
	return true
}

// LongDomain is the long-domain heuristic (spec §4), step 4 of the domain
// check (trails.Names.LongDomain): a first label over 24 characters
// without '-' gives "(<all but the last 2 labels>).<last 2>" unless the
// trail holds "blogspot". It runs with Use unless long_domain is
// disabled.
func (e *Engine) LongDomain(name []byte, res *trails.DomainHit) bool {
	if !e.cfg.Use || e.cfg.Disabled.Has(LongDomain) {
		return false
	}
	first := name
	if dot := bytes.IndexByte(name, '.'); dot >= 0 {
		first = name[:dot]
	}
	if len(first) <= longDomainThreshold || bytes.IndexByte(first, '-') >= 0 {
		return false
	}
	t := res.Trail[:0]
	switch n := labels(name); {
	case n > 2:
		last2 := lastLabels(name, 2)
		t = append(append(append(t, '('), name[:len(name)-len(last2)-1]...), ')')
		t = append(append(t, '.'), last2...)
	case n == 2:
		dot := bytes.IndexByte(name, '.')
		t = append(append(append(append(t, '('), name[:dot]...), ')'), name[dot:]...)
	default:
		t = append(t, name...)
	}
	if bytes.Contains(t, []byte("blogspot")) {
		return false
	}
	res.Trail = t
	res.Meta = trails.Meta{Info: "long domain (suspicious)", Reference: Reference}
	e.stats.Found[KindLongDomain].Add(1)
	return true
}
