package trails

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/FastFilter/xorfilter"
)

// Names holds the trails matched by name: domains, URLs and regexes
// (spec §1.2), and runs the domain check (spec §1.3.1) and the URL check
// (spec §1.4). Once loaded it is only read, so one value may serve many
// goroutines; per-call scratch lives in the caller's DomainHit and
// URLScratch.
type Names struct {
	// keys maps every trail key a name or URL lookup can reach to its
	// meta. Maltrail keeps one dict of all keys and looks domains and URLs
	// up in it alike, so domain and URL keys share one map here too (a
	// request path "evil.com" does hit the domain trail, as in Maltrail).
	// Keys holding ':' that are IP:port or IPv6 trails are left to Set: a
	// checked name is cut at ':' and cannot reach them.
	keys  map[string]uint32
	metas []nameMeta
	// idx, when set, replaces keys and metas (NamesFromIndex): the keys
	// then live in an index such as a mapped trail store instead of on
	// the Go heap. Every lookup goes through lookup, meta and skips, so
	// both forms share all matching code.
	idx KeyIndex
	// probe, the filters and seed are idx's when it is a FilteredIndex:
	// lookups then ask the filters themselves; nil filters rule out
	// nothing.
	probe               FilteredIndex
	filter              *xorfilter.BinaryFuse[uint16]
	bases, hosts, heads *xorfilter.BinaryFuse[uint8]
	seed                uint64
	regex               []regexTrail
	rx                  *regexIndex // nil when there are no regex trails
	wl                  *Whitelist
	// maxNameKey is the longest key without '/'. A checked name has no
	// '/', so a longer suffix cannot be a trail and is not hashed: this
	// keeps a long name with many labels (an HTTP Host, an SNI) linear
	// instead of quadratic.
	maxNameKey int

	// LongDomain is the slot of spec §1.3.1 step 4, the long-domain
	// heuristic (§4): called when no trail matched the name or its
	// parents and before the regex trails, with the lowercased name. It
	// fills res and returns true on a hit, which ends the check. Nil runs
	// no heuristic. Set it before the Names is shared.
	LongDomain func(name []byte, res *DomainHit) bool

	Stats NamesStats
	// Problems lists the regex trails that could not be translated to Go
	// (and keys that look like regex trails but which Python's re would
	// reject), with file:line. They are reported, never silently dropped.
	Problems []LoadProblem
}

// nameMeta is a Meta with the facts the domain check's skip rules need.
type nameMeta struct {
	Meta
	nsSkip  bool // info contains "suspicious" or "sinkhole"
	dynSkip bool // info contains "dynamic" or "free web"
}

// NamesStats counts what LoadNames kept.
type NamesStats struct {
	CSV         Stats // the reader's counts and samples of malformed rows
	Keys        int   // distinct keys in the name map
	URLs        int   // of those, keys holding '/'
	Regexes     int   // regex trails compiled and searched
	RegexSlots  int   // regex trails Maltrail would join (first 100); Regexes plus the untranslatable ones
	Whitelisted int   // rows dropped because the key is whitelisted
	Duplicates  int   // rows whose key an earlier row had (the last row wins)
	IPRows      int   // IP:port and IPv6 rows, left to Set
	Empty       int   // rows with an empty key
}

// LoadProblem is a trail LoadNames could not take as Maltrail would.
type LoadProblem struct {
	File   string
	Line   int
	Key    string
	Reason string
}

func (p LoadProblem) String() string {
	return fmt.Sprintf("%s:%d: %q: %s", p.File, p.Line, p.Key, p.Reason)
}

// LoadNames reads a trails.csv (the format ReadCSV reads) and keeps its
// domain, URL and regex trails; name is used in messages. Keys that wl
// whitelists (literal or CIDR, as Maltrail's loader checks them) are
// dropped; a nil wl drops none. wl is kept to skip whitelisted names and
// hosts at check time, so it must not change afterwards.
//
// Malformed rows are counted in Stats.CSV; only a read error fails.
func LoadNames(r io.Reader, name string, wl *Whitelist) (*Names, error) {
	cr := newCSVReader(r, name)
	n := &Names{keys: make(map[string]uint32), wl: wl}
	metaIdx := make(map[string]uint32)
	var mkey []byte
	seenRegex := make(map[string]bool)
	for {
		fields, line, err := cr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("load name trails: %w", err)
		}
		key, info, ref := fields[0], fields[1], fields[2]
		if len(key) == 0 {
			n.Stats.Empty++
			continue
		}
		if bytes.IndexByte(key, ':') >= 0 {
			if _, _, kind := classifyKey(key); kind != kindOther {
				n.Stats.IPRows++
				continue
			}
		}
		if wl.IsWhitelistedKey(key) {
			n.Stats.Whitelisted++
			continue
		}
		// Share (info, reference) between rows, as LoadSet does.
		mkey = binary.AppendUvarint(mkey[:0], uint64(len(info)))
		mkey = append(mkey, info...)
		mkey = append(mkey, ref...)
		mi, ok := metaIdx[string(mkey)]
		if !ok {
			mi = uint32(len(n.metas))
			n.metas = append(n.metas, newNameMeta(string(info), string(ref)))
			metaIdx[string(mkey)] = mi
		}
		if len(key) > n.maxNameKey && bytes.IndexByte(key, '/') < 0 {
			n.maxNameKey = len(key)
		}
		// One hash per row: a duplicate is an assignment that does not
		// grow the map.
		before := len(n.keys)
		n.keys[string(key)] = mi
		if len(n.keys) == before {
			n.Stats.Duplicates++
		}
		if n.Stats.RegexSlots < maxRegexTrails && isRegexCandidate(key, ref) {
			n.addRegex(string(key), name, line, seenRegex)
		}
	}
	n.Stats.CSV = cr.stats
	for i := range n.regex {
		// The last row's meta, as Maltrail's dict holds it.
		n.regex[i].meta = n.keys[n.regex[i].key]
	}
	n.Stats.Regexes = len(n.regex)
	if len(n.regex) > 0 {
		n.rx = newRegexIndex(n.regex)
	}
	n.Stats.Keys = len(n.keys)
	for k := range n.keys {
		if strings.IndexByte(k, '/') >= 0 {
			n.Stats.URLs++
		}
	}
	return n, nil
}

// addRegex takes a row that passed spec §1.2's regex test. A key Python
// itself would not compile is no regex trail in Maltrail (it stays an
// ordinary key and takes no group slot); any other key takes one of the
// 100 slots, in CSV order and repeats included, as Maltrail counts them,
// even when it cannot be translated to Go and is only reported.
func (n *Names) addRegex(key, file string, line int, seen map[string]bool) {
	t, err := compileRegexTrail(key)
	if err != nil {
		reason := err.Error()
		if te, ok := err.(*translateError); ok && te.python {
			reason += "; kept as a literal key, as Maltrail does"
		} else {
			n.Stats.RegexSlots++
		}
		n.Problems = append(n.Problems, LoadProblem{File: file, Line: line, Key: key, Reason: reason})
		return
	}
	n.Stats.RegexSlots++
	if seen[key] {
		return // the same alternative again: the first one always wins
	}
	seen[key] = true
	n.regex = append(n.regex, t)
}

func newNameMeta(info, ref string) nameMeta {
	return nameMeta{
		Meta:    Meta{Info: info, Reference: ref},
		nsSkip:  strings.Contains(info, "suspicious") || strings.Contains(info, "sinkhole"),
		dynSkip: strings.Contains(info, "dynamic") || strings.Contains(info, "free web"),
	}
}

// Lookup returns the meta of an exact key, for tools and tests.
func (n *Names) Lookup(key string) (Meta, bool) {
	var mi uint32
	var ok bool
	if n.idx != nil {
		mi, ok = n.idx.LookupKey([]byte(key))
	} else {
		mi, ok = n.keys[key]
	}
	if !ok {
		return Meta{}, false
	}
	return n.meta(mi), true
}

// lookup returns the meta index of an exact key. It does not allocate:
// the map form's string(key) conversion is elided by the compiler, and
// an index's LookupKey must not allocate either.
func (n *Names) lookup(key []byte) (uint32, bool) {
	if n.filter != nil {
		return n.lookupHashed(key, KeyHash(key, n.seed))
	}
	if n.idx != nil {
		return n.idx.LookupKey(key)
	}
	mi, ok := n.keys[string(key)]
	return mi, ok
}

// lookupHashed is lookup in a filtered index of a key whose KeyHash the
// caller has.
func (n *Names) lookupHashed(key []byte, h uint64) (uint32, bool) {
	if len(key) == 0 || !n.filter.Contains(h) {
		return 0, false
	}
	return n.probe.ProbeKey(key, h)
}

// parentsFrom returns the label from which on the parent walk of a
// scanned name q needs lookups, and KeyHash of q's last two labels
// (which the walk's lookup of them reuses): 0 when every suffix may be a
// key; the last label when the bases filter rules out the last two
// labels, since a key of more than one label that is q or a parent of it
// has them.
func (n *Names) parentsFrom(q []byte, s *nameScan) (from int, h2 uint64) {
	if n.bases == nil || s.ndots == 0 {
		return 0, 0
	}
	_, d2 := s.lastDots()
	h2 = KeyHash(q[d2+1:], n.seed)
	if n.bases.Contains(h2) {
		return 0, h2
	}
	return s.ndots, h2
}

// Whitelist returns the whitelist the Names was loaded with, which its
// checks skip names and hosts by.
func (n *Names) Whitelist() *Whitelist { return n.wl }

// meta returns the meta of an index lookup returned.
func (n *Names) meta(mi uint32) Meta {
	if n.idx != nil {
		return n.idx.KeyMeta(mi)
	}
	return n.metas[mi].Meta
}

// skips returns the skip-rule facts of an index lookup returned.
func (n *Names) skips(mi uint32) (nsSkip, dynSkip bool) {
	if n.idx != nil {
		return n.idx.KeySkips(mi)
	}
	m := &n.metas[mi]
	return m.nsSkip, m.dynSkip
}

// DomainRule says which step of the domain check hit.
type DomainRule uint8

const (
	RuleNone      DomainRule = iota
	RuleExact                // the name itself is a trail
	RuleParent               // a parent is a trail: "(www).evil.com"
	RuleIPAdress             // "<base>(.ip-adress.com)"
	RuleHeuristic            // the LongDomain hook
	RuleRegex                // a regex trail
	RuleOnion                // "badsite.onion(.to)"
)

// DomainHit is the result of CheckDomain. Reuse one per goroutine: its
// buffers are kept between calls, which makes checks allocation-free once
// they have grown.
type DomainHit struct {
	// Trail is the trail column text, as Maltrail renders it. It is valid
	// until the next CheckDomain with this DomainHit.
	Trail []byte
	Meta  Meta
	Rule  DomainRule

	name Name
	last labelCache
}

// labelCache keeps the lookup of the last label a DomainHit's parent
// walk made: a name's last label is one of a few (com, net, org...),
// whose lookup otherwise costs a hash and a filter probe every time. The
// result depends on the Names only, which do not change once loaded, and
// holding the pointer keeps another Names from taking its address.
type labelCache struct {
	names *Names
	n     int
	label [16]byte
	mi    uint32
	ok    bool
}

// lookup is n.lookup(label), answered from the cache when it holds label.
func (c *labelCache) lookup(n *Names, label []byte) (uint32, bool) {
	if c.names == n && c.n == len(label) && string(c.label[:c.n]) == string(label) {
		return c.mi, c.ok
	}
	mi, ok := n.lookup(label)
	if len(label) <= len(c.label) {
		c.names, c.n, c.mi, c.ok = n, copy(c.label[:], label), mi, ok
	}
	return mi, ok
}

// CheckDomain runs the domain check of spec §1.3.1 on a DNS query name,
// an SNI, or an HTTP host; the first hit wins. On a hit it fills res and
// returns true. A miss does not allocate.
//
// The event type of a hit is DNS.
func (n *Names) CheckDomain(name []byte, res *DomainHit) bool {
	res.name.Set(name)
	return n.CheckName(&res.name, res)
}

// CheckName is CheckDomain of the text m was set to, read once for it and
// the caller's other checks.
func (n *Names) CheckName(m *Name, res *DomainHit) bool {
	res.Rule = RuleNone
	// 1. Lowercase, cut at ':'. The name test below needs name bytes up
	// to the ':', so a run that ends at any other byte fails it.
	s := &m.scan
	if !m.Whole() && m.raw[s.end] != ':' {
		return false
	}
	q := m.text
	if s.digitsAndDots() || !s.valid() || n.wl.NameWhitelisted(m) {
		return false
	}
	// 2. "<base>.ip-adress.com" where base is a trail.
	const ipAdress = ".ip-adress.com"
	if len(q) > len(ipAdress) && string(q[len(q)-len(ipAdress):]) == ipAdress {
		base := q[:len(q)-len(ipAdress)]
		if mi, ok := n.lookup(base); ok {
			res.Trail = append(append(append(res.Trail[:0], base...), '('), ipAdress...)
			res.Trail = append(res.Trail, ')')
			return n.hit(res, mi, RuleIPAdress)
		}
	}
	// 3. Parent walk: the name, then each parent down to the last label
	// (after dot k; dots before the scan's last maxDots are searched).
	nsLike := -1 // computed on the first hit that needs it
	from, h2 := n.parentsFrom(q, s)
	for k, off := 0, 0; ; k++ {
		if k >= from && len(q)-off <= n.maxNameKey {
			var mi uint32
			var ok bool
			switch {
			case k == s.ndots-1 && n.filter != nil:
				mi, ok = n.lookupHashed(q[off:], h2) // the last two labels
			case k == s.ndots:
				mi, ok = res.last.lookup(n, q[off:]) // the last label
			default:
				mi, ok = n.lookup(q[off:])
			}
			if ok && !n.skipParentHit(q, off, mi, &nsLike) {
				if off == 0 {
					res.Trail = append(res.Trail[:0], q...)
					return n.hit(res, mi, RuleExact)
				}
				res.Trail = append(append(res.Trail[:0], '('), q[:off-1]...)
				res.Trail = append(append(res.Trail, ')'), q[off-1:]...)
				return n.hit(res, mi, RuleParent)
			}
		}
		if k >= s.ndots {
			break
		}
		if k < s.ndots-maxDots {
			off += bytes.IndexByte(q[off:], '.') + 1
		} else {
			off = s.dot(k) + 1
		}
	}
	// 4. The long-domain heuristic of spec §4 belongs here, between the
	// parent walk and the regex trails; the sensor plugs it in.
	if n.LongDomain != nil && n.LongDomain(q, res) {
		res.Rule = RuleHeuristic
		return true
	}
	// 5. Regex trails, searched unanchored.
	if n.rx != nil {
		if i, start, end := n.rx.find(q); i >= 0 {
			t := res.Trail[:0]
			if start > 0 {
				t = append(append(append(t, '('), q[:start]...), ')')
			}
			t = append(t, q[start:end]...)
			if end < len(q) {
				t = append(append(append(t, '('), q[end:]...), ')')
			}
			res.Trail = replaceDotParen(t)
			return n.hit(res, n.regex[i].meta, RuleRegex)
		}
	}
	// 6. ".onion.": "x.onion.to" is looked up as "x.onion".
	if i := s.hasOnion(q); i >= 0 {
		key := q[:i+len(".onion")]
		if mi, ok := n.lookup(key); ok {
			t := append(append(res.Trail[:0], key...), '(')
			res.Trail = append(append(t, q[len(key):]...), ')')
			return n.hit(res, mi, RuleOnion)
		}
	}
	return false
}

// skipParentHit applies the two skip rules of spec §1.3.1 step 3 to a hit
// on q[off:]: a name or mail server name with a suspicious or sinkhole
// trail, and a dynamic-DNS or free-web trail hit by its own name or a www
// name. nsLike caches whether q looks like a server name (-1 = unknown).
func (n *Names) skipParentHit(q []byte, off int, mi uint32, nsLike *int) bool {
	nsSkip, dynSkip := n.skips(mi)
	if nsSkip {
		if *nsLike < 0 {
			*nsLike = b2i(isNSLike(q))
		}
		if *nsLike == 1 {
			return true
		}
	}
	return dynSkip && (off == 0 || firstLabelIsWWW(q))
}

func (n *Names) hit(res *DomainHit, mi uint32, rule DomainRule) bool {
	res.Meta = n.meta(mi)
	res.Rule = rule
	return true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// replaceDotParen rewrites every ".)" as ")." in place, as Maltrail's
// trail.replace(".)", ").") does (the pieces never overlap: ".)" cannot
// follow a rewritten ")." without a '.' in between).
func replaceDotParen(t []byte) []byte {
	for i := 0; i+1 < len(t); i++ {
		if t[i] == '.' && t[i+1] == ')' {
			t[i], t[i+1] = ')', '.'
			i++
		}
	}
	return t
}

// isNSLike reports whether q matches (?i)\A([rd]?ns|nf|mx|nic)\d*\. , the
// names of name and mail servers (spec §1.3.1 skip rule 1).
func isNSLike(q []byte) bool {
	var p int
	switch {
	case bytes.HasPrefix(q, []byte("ns")), bytes.HasPrefix(q, []byte("nf")), bytes.HasPrefix(q, []byte("mx")):
		p = 2
	case bytes.HasPrefix(q, []byte("rns")), bytes.HasPrefix(q, []byte("dns")), bytes.HasPrefix(q, []byte("nic")):
		p = 3
	default:
		return false
	}
	for p < len(q) && q[p] >= '0' && q[p] <= '9' {
		p++
	}
	return p < len(q) && q[p] == '.'
}

func firstLabelIsWWW(q []byte) bool {
	return bytes.HasPrefix(q, []byte("www.")) || string(q) == "www"
}
