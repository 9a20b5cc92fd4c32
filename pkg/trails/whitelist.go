package trails

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// Whitelist holds the whitelist of spec §1.6: literal entries and masked
// IPv4 CIDRs. Literals match an IP text exactly, or a domain name or any of
// its parents. A nil *Whitelist whitelists nothing.
//
// A Whitelist is filled by Add and Load before use and then only read, so
// one value may be shared by many goroutines once loading is done.
type Whitelist struct {
	literals map[string]struct{}
	ranges   []ipv4Range
	// litShapes has a bit set for the shape (litShape) of every literal:
	// a name suffix whose shape has none is no literal and is not
	// hashed, which spares nearly every map lookup of the domain check.
	litShapes [litShapeBits / 64]uint64
	// tailShapes has a bit for the shape of every literal's tail (see
	// tailShape): a name whose tails' shapes are unset has no suffix
	// that is a literal, which a look at its last two labels tells.
	tailShapes [litShapeBits / 64]uint64
}

// litShapeBits is the size of the literal shape bitset (512 bytes).
const litShapeBits = 1 << 12

// litShape hashes what a literal and a name suffix must share to be
// equal: the length (capped at 255) and the first two bytes. Suffixes of
// one name differ in both, so a short whitelist rejects them all with a
// bit test each.
func litShape(s []byte) uint32 {
	n := min(len(s), 255)
	var b0, b1 byte
	if len(s) > 0 {
		b0 = s[0]
	}
	if len(s) > 1 {
		b1 = s[1]
	}
	h := (uint32(n)<<16 | uint32(b0)<<8 | uint32(b1)) * 0x9E3779B1
	return h >> (32 - 12)
}

func (w *Whitelist) mayBeLiteral(s []byte) bool {
	k := litShape(s)
	return w.litShapes[k/64]&(1<<(k%64)) != 0
}

// A literal that is a suffix of a name (at a label boundary) has the
// name's tail: its last label when the literal has no '.', else its last
// two labels (all of it with one '.'). tailShapes holds the shapes of
// the literals' tails, apart for the two kinds.
func tailShape(tail []byte, dotted bool) uint32 {
	k := litShape(tail)
	if dotted {
		k ^= litShapeBits / 2
	}
	return k
}

func (w *Whitelist) hasTail(tail []byte, dotted bool) bool {
	k := tailShape(tail, dotted)
	return w.tailShapes[k/64]&(1<<(k%64)) != 0
}

// tailOf returns a literal's tail.
func tailOf(lit []byte) (tail []byte, dotted bool) {
	d := bytes.LastIndexByte(lit, '.')
	if d < 0 {
		return lit, false
	}
	return lit[bytes.LastIndexByte(lit[:d], '.')+1:], true
}

// ipv4Range is a CIDR as Maltrail checks it: addr&mask == prefix.
type ipv4Range struct{ prefix, mask uint32 }

// defaultWhitelist is xtrail's own built-in list, deliberately short: only
// names and addresses that are certainly benign infrastructure, where a hit
// would be a false positive from a polluted feed. It is not Maltrail's
// data/whitelist.txt; operators add theirs with USER_WHITELIST (Load).
var defaultWhitelist = [...]string{
	// Loopback: traffic that never leaves the host.
	"localhost",
	"localhost.localdomain",
	"ip6-localhost",
	"ip6-loopback",
	"127.0.0.0/8",
	"::1",
	// Public resolvers: every client talks to them, and some feeds list
	// them after seeing malware resolve through them.
	"1.1.1.1",
	"1.0.0.1",
	"8.8.8.8",
	"8.8.4.4",
	"9.9.9.9",
	"149.112.112.112",
	"208.67.222.222",
	"208.67.220.220",
	"dns.google",
	"cloudflare-dns.com",
	"one.one.one.one",
	"dns.quad9.net",
	// OS connectivity checks, queried by every desktop and phone.
	"connectivitycheck.gstatic.com",
	"captive.apple.com",
	"www.msftconnecttest.com",
}

// NewWhitelist returns an empty whitelist.
func NewWhitelist() *Whitelist {
	return &Whitelist{literals: make(map[string]struct{})}
}

// DefaultWhitelist returns a new whitelist holding xtrail's built-in
// entries (see defaultWhitelist); Load may add more to it.
func DefaultWhitelist() *Whitelist {
	w := NewWhitelist()
	for _, e := range defaultWhitelist {
		w.Add(e)
	}
	return w
}

// Add adds one entry: "a.b.c.d/n" is a masked IPv4 CIDR, anything else a
// literal. Surrounding white space is trimmed; a blank entry or a comment
// ("#...") is ignored. Literals are lowercased because names are compared
// lowercased. An "a.b.c.d/n" with a bad address or n > 32 is kept as a
// literal, which Maltrail's loader would also do after failing to parse it,
// so it matches nothing but does no harm.
func (w *Whitelist) Add(entry string) {
	e := strings.TrimSpace(entry)
	if e == "" || e[0] == '#' {
		return
	}
	if r, ok := parseIPv4CIDR(e); ok {
		w.ranges = append(w.ranges, r)
		return
	}
	lit := strings.ToLower(e)
	w.literals[lit] = struct{}{}
	k := litShape([]byte(lit))
	w.litShapes[k/64] |= 1 << (k % 64)
	k = tailShape(tailOf([]byte(lit)))
	w.tailShapes[k/64] |= 1 << (k % 64)
}

// Load adds the entries of a whitelist file (one per line, '#' and blank
// lines skipped), such as USER_WHITELIST. name is used in errors.
func (w *Whitelist) Load(r io.Reader, name string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		w.Add(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read whitelist %s: %w", name, err)
	}
	return nil
}

// LoadFile is Load on the file at path.
func (w *Whitelist) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open whitelist: %w", err)
	}
	defer f.Close()
	return w.Load(f, path)
}

// Len is the number of literals and CIDRs.
func (w *Whitelist) Len() int {
	if w == nil {
		return 0
	}
	return len(w.literals) + len(w.ranges)
}

// parseIPv4CIDR parses "a.b.c.d/n". The prefix is masked, so "10.1.2.3/8"
// covers 10.0.0.0/8 (the spec calls these masked CIDRs).
func parseIPv4CIDR(s string) (ipv4Range, bool) {
	slash := strings.IndexByte(s, '/')
	if slash < 0 {
		return ipv4Range{}, false
	}
	a, err := netip.ParseAddr(s[:slash])
	if err != nil || !a.Is4() {
		return ipv4Range{}, false
	}
	bits := 0
	digits := s[slash+1:]
	if digits == "" || len(digits) > 2 {
		return ipv4Range{}, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return ipv4Range{}, false
		}
		bits = bits*10 + int(digits[i]-'0')
	}
	if bits > 32 {
		return ipv4Range{}, false
	}
	var mask uint32
	if bits > 0 {
		mask = ^uint32(0) << (32 - bits)
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return ipv4Range{prefix: v & mask, mask: mask}, true
}

// IsWhitelistedKey reports whether a trail key or an IP text is
// whitelisted: it equals a literal, or it is a bare dotted quad inside a
// CIDR. This is the check trails go through at load (spec §1.1, §1.6); it
// does not look at a domain's parents.
func (w *Whitelist) IsWhitelistedKey(key []byte) bool {
	if w == nil {
		return false
	}
	if _, ok := w.literals[string(key)]; ok {
		return true
	}
	if len(w.ranges) == 0 || len(key) == 0 || key[0] < '0' || key[0] > '9' {
		return false
	}
	a, ok := parseIPv4(key)
	if !ok {
		return false
	}
	return w.inRanges(a)
}

func (w *Whitelist) inRanges(a netip.Addr) bool {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	for _, r := range w.ranges {
		if v&r.mask == r.prefix {
			return true
		}
	}
	return false
}

// IsWhitelistedIP reports whether an event address is whitelisted: its
// Maltrail text (spec §1.5) is a literal, or it is IPv4 inside a CIDR.
// It does not allocate.
func (w *Whitelist) IsWhitelistedIP(a netip.Addr) bool {
	if w == nil || !a.IsValid() {
		return false
	}
	a = a.WithZone("")
	var buf [48]byte
	if text := maltrail.AppendAddr(buf[:0], a); w.mayBeLiteral(text) {
		if _, ok := w.literals[string(text)]; ok {
			return true
		}
	}
	return a.Is4() && w.inRanges(a)
}

// IsWhitelistedDomain reports whether a name is whitelisted: after cutting
// it at the first byte outside [A-Za-z0-9._-] and lowercasing it, the name
// or any parent (down to the last label) is a literal. It does not allocate
// for names up to 255 bytes, which covers every DNS name.
func (w *Whitelist) IsWhitelistedDomain(name []byte) bool {
	if w == nil || len(w.literals) == 0 {
		return false
	}
	var s nameScan // one pass finds the cut, any upper case and the dots
	s.scan(name)
	name = name[:s.end]
	if s.cls&clsUpper != 0 {
		var buf [256]byte
		name = AppendLower(buf[:0], name) // on the heap only past 256 bytes
	}
	d1, d2 := s.lastDots()
	return w.suffixIsLiteralAt(name, d1, d2)
}

// IsWhitelistedName is IsWhitelistedDomain for a name already in the
// form it compares: lowercase, and only bytes of [a-z0-9._-] (a name
// that passed the domain check's name test, or a part of one). It skips
// IsWhitelistedDomain's scan for the cut and upper case.
func (w *Whitelist) IsWhitelistedName(name []byte) bool {
	if w == nil || len(w.literals) == 0 {
		return false
	}
	return w.suffixIsLiteral(name)
}

// suffixIsLiteral reports whether name or a suffix of it after a '.' is
// a literal.
func (w *Whitelist) suffixIsLiteral(name []byte) bool {
	d1 := bytes.LastIndexByte(name, '.')
	d2 := -1
	if d1 > 0 {
		d2 = bytes.LastIndexByte(name[:d1], '.')
	}
	return w.suffixIsLiteralAt(name, d1, d2)
}

// suffixIsLiteralAt is suffixIsLiteral given the offsets of name's last
// and second-to-last dots (-1 for none). A name whose tails no literal
// has is ruled out at once; otherwise the shape test spares the map
// nearly always.
func (w *Whitelist) suffixIsLiteralAt(name []byte, d1, d2 int) bool {
	if w == nil || len(w.literals) == 0 ||
		!w.hasTail(name[d1+1:], false) && (d1 < 0 || !w.hasTail(name[d2+1:], true)) {
		return false
	}
	for off := 0; off < len(name); {
		if w.mayBeLiteral(name[off:]) {
			if _, ok := w.literals[string(name[off:])]; ok {
				return true
			}
		}
		for off < len(name) && name[off] != '.' {
			off++
		}
		off++
	}
	return false
}

// AppendLower appends b with ASCII letters lowercased. Other bytes are
// kept: Maltrail lowercases Unicode text, but every rule that follows
// rejects names with non-ASCII bytes, so the difference cannot show.
// Eight bytes at a time (hosts and paths are lowercased per request).
func AppendLower(dst, b []byte) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(b))[:n+len(b)]
	out := dst[n:]
	if m := len(b); m >= 8 && len(out) == m {
		// the last word overlaps the ones before (lowering twice changes
		// nothing) rather than ending byte by byte
		tb, to := b[m-8:], out[m-8:]
		for len(b) > 8 && len(out) > 8 {
			binary.LittleEndian.PutUint64(out, lower8(binary.LittleEndian.Uint64(b)))
			b, out = b[8:], out[8:]
		}
		binary.LittleEndian.PutUint64(to, lower8(binary.LittleEndian.Uint64(tb)))
		return dst
	}
	out = out[:len(b)]
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return dst
}

// lower8 lowercases the ASCII letters among 8 bytes: a byte's high bit
// is set in upper when it is 'A'..'Z' (7-bit sums that carry into bit 7
// for 'A' and above, and not for 'Z' and below, on bytes under 0x80),
// and 0x80>>2 is the 0x20 that lowercases it.
func lower8(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	low := w &^ highs
	upper := (low + (0x80-'A')*ones) &^ (low + (0x80-'Z'-1)*ones) &^ w & highs
	return w | upper>>2
}

// IgnoreRule is one line of an ignore list (spec §1.6):
// src_ip;src_port;dst_ip;dst_port, where "*" matches anything and any
// other value must equal the event's text of that column exactly.
type IgnoreRule struct{ SrcIP, SrcPort, DstIP, DstPort string }

// IgnoreRules is the ignore list (data/ignore_events.txt plus
// USER_IGNORELIST). The zero value ignores nothing; it is only read once
// loaded, so it may be shared between goroutines.
type IgnoreRules struct {
	Rules []IgnoreRule
}

// Load adds the rules of an ignore file. White space anywhere in a line is
// removed (as Maltrail does); blank and '#' lines are skipped. A line that
// does not have exactly four ';'-separated fields is an error naming
// name:line, because Maltrail fails on it too and a silently dropped
// ignore rule would turn into a flood of unwanted events.
func (r *IgnoreRules) Load(rd io.Reader, name string) error {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.Join(strings.Fields(sc.Text()), "")
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Split(s, ";")
		if len(f) != 4 {
			return fmt.Errorf("ignore rules %s:%d: %d fields, want src_ip;src_port;dst_ip;dst_port", name, line, len(f))
		}
		r.Rules = append(r.Rules, IgnoreRule{SrcIP: f[0], SrcPort: f[1], DstIP: f[2], DstPort: f[3]})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read ignore rules %s: %w", name, err)
	}
	return nil
}

// LoadFile is Load on the file at path.
func (r *IgnoreRules) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open ignore rules: %w", err)
	}
	defer f.Close()
	return r.Load(f, path)
}

// Ignored reports whether an event with these column texts matches a
// rule. The texts are what the event tuple holds: a source may be
// "ip,forwarded_ip" and a port "-" (spec §2). Rules are checked before the
// whitelist (spec §2, log_event order).
func (r *IgnoreRules) Ignored(src, sport, dst, dport string) bool {
	if r == nil {
		return false
	}
	for i := range r.Rules {
		ru := &r.Rules[i]
		if field(ru.SrcIP, src) && field(ru.SrcPort, sport) && field(ru.DstIP, dst) && field(ru.DstPort, dport) {
			return true
		}
	}
	return false
}

// IgnoredAddr is Ignored for an event with plain addresses and ports; a
// port of 0 is the "-" of a portless event, as the event renderer writes
// it. It does not allocate.
func (r *IgnoreRules) IgnoredAddr(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) bool {
	if r == nil || len(r.Rules) == 0 {
		return false
	}
	var sb, db [48]byte
	var spb, dpb [8]byte
	st, spt := maltrail.AppendAddr(sb[:0], src), appendPortText(spb[:0], sport)
	dt, dpt := maltrail.AppendAddr(db[:0], dst), appendPortText(dpb[:0], dport)
	for i := range r.Rules {
		ru := &r.Rules[i]
		// rule == string(b) compares without converting.
		if (ru.SrcIP == "*" || ru.SrcIP == string(st)) && (ru.SrcPort == "*" || ru.SrcPort == string(spt)) &&
			(ru.DstIP == "*" || ru.DstIP == string(dt)) && (ru.DstPort == "*" || ru.DstPort == string(dpt)) {
			return true
		}
	}
	return false
}

func appendPortText(dst []byte, p uint16) []byte {
	if p == 0 {
		return append(dst, '-')
	}
	var d [5]byte
	i := len(d)
	for v := p; v > 0; v /= 10 {
		i--
		d[i] = byte('0' + v%10)
	}
	return append(dst, d[i:]...)
}

func field(rule, v string) bool { return rule == "*" || rule == v }

// DropWhitelisted removes the IP and IP:port trails whose key wl
// whitelists (a literal, or a bare IPv4 inside a CIDR), as Maltrail drops
// whitelisted keys at load (spec §1.1), and returns how many it removed.
// LoadSet itself keeps its signature; callers with a whitelist call this
// right after it. Metas is left as it is.
func (s *Set) DropWhitelisted(wl *Whitelist) int {
	if wl.Len() == 0 {
		return 0
	}
	var buf [64]byte
	kept := s.IPs[:0]
	for _, t := range s.IPs {
		k := buf[:0]
		if t.Port == 0 {
			k = maltrail.AppendAddr(k, t.Addr)
		} else {
			if t.Addr.Is6() {
				k = append(k, '[')
			}
			k = maltrail.AppendAddr(k, t.Addr)
			if t.Addr.Is6() {
				k = append(k, ']')
			}
			k = appendPortText(append(k, ':'), t.Port)
		}
		if !wl.IsWhitelistedKey(k) {
			kept = append(kept, t)
		}
	}
	dropped := len(s.IPs) - len(kept)
	s.IPs = kept
	return dropped
}
