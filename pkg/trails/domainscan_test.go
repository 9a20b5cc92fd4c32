package trails

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// The domain check as it was before it read each name in one scan
// (nameScan): the reference the scan's answers are checked against.

// isDigitsAndDots is Python's name.replace('.', ”).isdigit(): true when
// at least one digit and nothing but digits and dots.
func isDigitsAndDots(q []byte) bool {
	digit := false
	for _, c := range q {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c != '.':
			return false
		}
	}
	return digit
}

// validName is the name regex \A[a-zA-Z0-9._-]*\.[a-zA-Z0-9-]+\Z: name
// bytes only, and a last label after a '.' that is non-empty and has no
// '_' (q is already lowercased).
func validName(q []byte) bool {
	dot := bytes.LastIndexByte(q, '.')
	if dot < 0 || dot == len(q)-1 {
		return false
	}
	for i, c := range q {
		if !isNameByte(c) || (i > dot && c == '_') {
			return false
		}
	}
	return true
}

// isNameByte reports whether c may appear in a name: [A-Za-z0-9._-].
func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// refWhitelisted walks every suffix of q through the literals' map.
func refWhitelisted(w *Whitelist, q []byte) bool {
	if w == nil {
		return false
	}
	for off := 0; off < len(q); {
		if _, ok := w.literals[string(q[off:])]; ok {
			return true
		}
		for off < len(q) && q[off] != '.' {
			off++
		}
		off++
	}
	return false
}

// refCheckDomain is CheckDomain as it was.
func (n *Names) refCheckDomain(name []byte, res *DomainHit) bool {
	res.Rule = RuleNone
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	q := AppendLower(nil, name)
	if isDigitsAndDots(q) || !validName(q) || refWhitelisted(n.wl, q) {
		return false
	}
	const ipAdress = ".ip-adress.com"
	if len(q) > len(ipAdress) && string(q[len(q)-len(ipAdress):]) == ipAdress {
		base := q[:len(q)-len(ipAdress)]
		if mi, ok := n.lookup(base); ok {
			res.Trail = append(append(append(res.Trail[:0], base...), '('), ipAdress...)
			res.Trail = append(res.Trail, ')')
			return n.hit(res, mi, RuleIPAdress)
		}
	}
	nsLike := -1
	for off := 0; ; {
		if len(q)-off <= n.maxNameKey {
			if mi, ok := n.lookup(q[off:]); ok && !n.skipParentHit(q, off, mi, &nsLike) {
				if off == 0 {
					res.Trail = append(res.Trail[:0], q...)
					return n.hit(res, mi, RuleExact)
				}
				res.Trail = append(append(res.Trail[:0], '('), q[:off-1]...)
				res.Trail = append(append(res.Trail, ')'), q[off-1:]...)
				return n.hit(res, mi, RuleParent)
			}
		}
		dot := bytes.IndexByte(q[off:], '.')
		if dot < 0 {
			break
		}
		off += dot + 1
	}
	if n.LongDomain != nil && n.LongDomain(q, res) {
		res.Rule = RuleHeuristic
		return true
	}
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
	if i := bytes.Index(q, []byte(".onion.")); i >= 0 {
		key := q[:i+len(".onion")]
		if mi, ok := n.lookup(key); ok {
			t := append(append(res.Trail[:0], key...), '(')
			res.Trail = append(append(t, q[len(key):]...), ')')
			return n.hit(res, mi, RuleOnion)
		}
	}
	return false
}

// joinLabels joins n labels drawn from pieces with dots.
func joinLabels(rng *rand.Rand, pieces []string, n int) []byte {
	var b []byte
	for i := range n {
		if i > 0 {
			b = append(b, '.')
		}
		b = append(b, pieces[rng.IntN(len(pieces))]...)
	}
	return b
}

// sameCheck fails when CheckDomain and the reference disagree on name.
func sameCheck(t *testing.T, n *Names, name []byte) bool {
	t.Helper()
	var got, want DomainHit
	g, w := n.CheckDomain(name, &got), n.refCheckDomain(name, &want)
	if g != w || g && (string(got.Trail) != string(want.Trail) || got.Meta != want.Meta || got.Rule != want.Rule) {
		t.Fatalf("CheckDomain(%q) = %v %q %+v %d, reference %v %q %+v %d", name, g, got.Trail, got.Meta, got.Rule, w, want.Trail, want.Meta, want.Rule)
	}
	return g
}

// refNames is the spec's trails with a whitelist, the long-domain hook
// and trails that need many labels.
func refNames(t testing.TB) *Names {
	wl := DefaultWhitelist()
	wl.Add("good.com")
	wl.Add("Deep.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h.example")
	csv := specTrails + "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h.i.j.evil.com,deep (malware),(static)\r\n" +
		"x.y_z.com,underscore (malware),(static)\r\n12.34.com,digits (malware),(static)\r\n"
	n := mustLoadNames(t, csv, wl)
	n.LongDomain = func(name []byte, res *DomainHit) bool {
		if len(name) < 40 || bytes.IndexByte(name, '-') >= 0 {
			return false
		}
		res.Trail = append(append(res.Trail[:0], "long:"...), name...)
		res.Meta = Meta{Info: "long", Reference: "(heuristic)"}
		return true
	}
	return n
}

// TestCheckDomainScan: the one-scan domain check answers as the
// reference does on names built from the pieces its rules turn on: case,
// ':', '_', digits, empty labels, trails and their parents, ".onion.",
// ".ip-adress.com", whitelisted names, bytes outside names, and more
// labels than a scan records.
func TestCheckDomainScan(t *testing.T) {
	n := refNames(t)
	rng := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"a", "B", "www", "ns1", "evil", "com", "evil.com", "kozow.com", "nobel.su", "evil2.com", "sub",
		"badsite.onion", "onion", "evilname", "ip-adress.com", "good.com", "dga7", "x.com", "66", "1", "_", "-", "",
		"y_z", "b1", "a1", "tail1", "Deep", "localhost", "\xff", " ", "/", "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z"}
	hits := 0
	for range 300000 {
		b := joinLabels(rng, pieces, 1+rng.IntN(8))
		switch rng.IntN(8) {
		case 0:
			b = append(b, ":53"...)
		case 1:
			b = append(b, ":x_y.Z"...)
		}
		if sameCheck(t, n, b) {
			hits++
		}
	}
	if hits < 10000 {
		t.Errorf("only %d hits", hits)
	}
	for _, s := range []string{"evil.com:53", ".onion.", "x.onion.onion.y", strings.Repeat("a.", 40) + "evil.com",
		strings.Repeat("z.", 40) + "badsite.onion.to", "deep.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h.example",
		"x.deep.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g.h.example"} {
		sameCheck(t, n, []byte(s))
	}
}

// FuzzCheckDomainScan: on any name the one-scan domain check answers as
// the reference does.
func FuzzCheckDomainScan(f *testing.F) {
	for _, s := range []string{"www.evil.com", "badsite.onion.to", "EvilName.ip-adress.com", "1.2.3.4", "x.y_z.com", "a._b", "evil.com:x\xff",
		strings.Repeat("a.", 40) + "evil.com", "sub.Good.com"} {
		f.Add([]byte(s))
	}
	n := refNames(f)
	f.Fuzz(func(t *testing.T, name []byte) { sameCheck(t, n, name) })
}

// TestName: what a Name tells of a name matches searching its text, for
// names of few and of more than maxDots labels, with upper case and
// bytes outside names; its whitelist verdict is IsWhitelistedDomain's.
func TestName(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	labels := []string{"", "a", "Www", "intranet", "good", "com", "x_y", "1", "xn--z"}
	wl := NewWhitelist()
	wl.Add("good.com")
	wl.Add("a.intranet.a")
	var m Name
	for range 30000 {
		b := joinLabels(rng, labels, 1+rng.IntN(50))
		if rng.IntN(4) == 0 {
			b = append(b, ":8\x00."...)
		}
		m.Set(b)
		run := b
		for i, c := range b {
			if !isNameByte(c) {
				run = b[:i]
				break
			}
		}
		text := AppendLower(nil, run)
		if string(m.Text()) != string(text) || m.Whole() != (len(run) == len(b)) || m.Valid() != validName(text) {
			t.Fatalf("%q: text %q whole %v valid %v", b, m.Text(), m.Whole(), m.Valid())
		}
		if m.Labels() != bytes.Count(text, []byte{'.'})+1 {
			t.Fatalf("%q: %d labels", b, m.Labels())
		}
		for k := 1; k <= m.Labels()+1; k++ {
			want := text[lastLabelsOff(text, k):]
			if k >= m.Labels() {
				want = text
			}
			if got := m.LastLabels(k); string(got) != string(want) {
				t.Fatalf("%q: last %d labels %q, want %q", b, k, got, want)
			}
		}
		first, _, _ := bytes.Cut(text, []byte{'.'})
		if string(m.FirstLabel()) != string(first) {
			t.Fatalf("%q: first label %q", b, m.FirstLabel())
		}
		if got, want := m.HasInnerLabel("intranet"), bytes.Contains(text, []byte(".intranet.")); got != want {
			t.Fatalf("%q: inner intranet %v", b, got)
		}
		if got, want := wl.NameWhitelisted(&m), wl.IsWhitelistedDomain(b); got != want || wl.NameWhitelisted(&m) != want {
			t.Fatalf("%q: whitelisted %v, IsWhitelistedDomain %v", b, got, want)
		}
	}
}
