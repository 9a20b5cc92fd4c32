package trails

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWhitelist(t *testing.T) {
	w := NewWhitelist()
	err := w.Load(strings.NewReader("# comment\n\n  Good.COM  \n10.1.2.3/8\n192.0.2.0/24\ndead::beef\n1.2.3.4\n300.1.1.1/8\n10.0.0.0/33\n"), "wl.txt")
	if err != nil {
		t.Fatal(err)
	}
	if w.Len() != 7 { // 5 literals (two of them bad CIDRs) and 2 ranges
		t.Errorf("len %d, want 7", w.Len())
	}
	keys := map[string]bool{
		"good.com":     true,
		"GOOD.COM":     false, // keys are compared as written; trails are lowercase
		"sub.good.com": false, // the load-time check has no parent walk
		"10.200.3.4":   true,  // the CIDR prefix is masked
		"11.0.0.1":     false,
		"192.0.2.255":  true,
		"192.0.3.0":    false,
		"1.2.3.4":      true,
		"1.2.3.4:80":   false,
		"dead::beef":   true,
		"10.0.0.1:80":  false,
		"010.0.0.1":    false, // not Maltrail's text of an address
		"300.1.1.1/8":  true,  // an unparsable CIDR stays a literal
	}
	for k, want := range keys {
		if got := w.IsWhitelistedKey([]byte(k)); got != want {
			t.Errorf("IsWhitelistedKey(%q) = %v", k, got)
		}
	}
	ips := map[string]bool{"10.9.9.9": true, "1.2.3.4": true, "dead::beef": true, "::ffff:10.0.0.1": false, "8.8.8.8": false}
	for ip, want := range ips {
		if got := w.IsWhitelistedIP(netip.MustParseAddr(ip)); got != want {
			t.Errorf("IsWhitelistedIP(%s) = %v", ip, got)
		}
	}
	domains := map[string]bool{
		"good.com":          true,
		"WWW.Good.Com":      true,
		"a.b.good.com":      true,
		"good.com:443":      true, // cut at the first byte outside the name set
		"good.com/x":        true,
		"good.com.evil.org": false,
		"notgood.com":       false,
		"com":               false,
		"":                  false,
		"x.good.com\x00":    true,
	}
	for d, want := range domains {
		if got := w.IsWhitelistedDomain([]byte(d)); got != want {
			t.Errorf("IsWhitelistedDomain(%q) = %v", d, got)
		}
	}
	var nilW *Whitelist
	if nilW.IsWhitelistedDomain([]byte("good.com")) || nilW.IsWhitelistedKey([]byte("1.2.3.4")) || nilW.IsWhitelistedIP(netip.MustParseAddr("1.2.3.4")) {
		t.Error("a nil whitelist whitelisted something")
	}
	if a := testing.AllocsPerRun(100, func() {
		w.IsWhitelistedDomain([]byte("WWW.Some.Other.Name.example.org"))
		w.IsWhitelistedIP(netip.MustParseAddr("2001:db8::1"))
	}); a != 0 {
		t.Errorf("%.1f allocs", a)
	}
}

func TestDefaultWhitelist(t *testing.T) {
	w := DefaultWhitelist()
	for _, d := range []string{"localhost", "dns.google", "x.cloudflare-dns.com"} {
		if !w.IsWhitelistedDomain([]byte(d)) {
			t.Errorf("%s not whitelisted", d)
		}
	}
	for _, ip := range []string{"127.0.0.53", "8.8.8.8", "1.1.1.1", "::1"} {
		if !w.IsWhitelistedIP(netip.MustParseAddr(ip)) {
			t.Errorf("%s not whitelisted", ip)
		}
	}
	// Nothing the replay corpus expects to see is whitelisted.
	for _, d := range []string{"evil-test-domain.com", "google.com", "example.com"} {
		if w.IsWhitelistedDomain([]byte(d)) {
			t.Errorf("%s whitelisted", d)
		}
	}
	if w.IsWhitelistedIP(netip.MustParseAddr("66.66.66.66")) {
		t.Error("66.66.66.66 whitelisted")
	}
}

func TestWhitelistLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wl.txt")
	if err := os.WriteFile(path, []byte("a.example\r\nb.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := NewWhitelist()
	if err := w.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if !w.IsWhitelistedDomain([]byte("x.a.example")) || !w.IsWhitelistedDomain([]byte("b.example")) {
		t.Error("entries missing (CRLF?)")
	}
	if err := w.LoadFile(path + ".missing"); err == nil || !strings.Contains(err.Error(), "open whitelist") {
		t.Errorf("missing file: %v", err)
	}
}

func TestIgnoreRules(t *testing.T) {
	var r IgnoreRules
	in := "# src_ip;src_port;dst_ip;dst_port\n\n" +
		"10.0.0.5; * ;66.66.66.66;443\n" +
		"*;*;*;53\n" +
		"1.2.3.4,5.6.7.8;*;*;*\n" +
		"dead::beef;-;*;-\n"
	if err := r.Load(strings.NewReader(in), "ign.txt"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src, sport, dst, dport string
		want                   bool
	}{
		{"10.0.0.5", "50000", "66.66.66.66", "443", true},
		{"10.0.0.5", "50000", "66.66.66.66", "80", false},
		{"10.0.0.6", "50000", "66.66.66.66", "443", false},
		{"9.9.9.9", "1", "1.1.1.1", "53", true},
		{"1.2.3.4,5.6.7.8", "1", "2.2.2.2", "80", true},
		{"1.2.3.4", "1", "2.2.2.2", "80", false},
		{"dead::beef", "-", "1.1.1.1", "-", true},
	}
	for _, tc := range tests {
		if got := r.Ignored(tc.src, tc.sport, tc.dst, tc.dport); got != tc.want {
			t.Errorf("Ignored(%s %s %s %s) = %v", tc.src, tc.sport, tc.dst, tc.dport, got)
		}
	}
	if !r.IgnoredAddr(netip.MustParseAddr("10.0.0.5"), 1, netip.MustParseAddr("66.66.66.66"), 443) ||
		!r.IgnoredAddr(netip.MustParseAddr("dead::beef"), 0, netip.MustParseAddr("1.1.1.1"), 0) ||
		r.IgnoredAddr(netip.MustParseAddr("10.0.0.5"), 1, netip.MustParseAddr("66.66.66.66"), 80) {
		t.Error("IgnoredAddr")
	}
	a, b := netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1234:5678"), netip.MustParseAddr("10.0.0.1")
	if n := testing.AllocsPerRun(100, func() { r.IgnoredAddr(a, 65535, b, 1) }); n != 0 {
		t.Errorf("IgnoredAddr: %.1f allocs", n)
	}
	var bad IgnoreRules
	if err := bad.Load(strings.NewReader("*;*;*;*\n1.2.3.4;*;*\n"), "ign.txt"); err == nil || !strings.Contains(err.Error(), "ign.txt:2:") {
		t.Errorf("bad line: %v", err)
	}
	var nilR *IgnoreRules
	if nilR.Ignored("a", "b", "c", "d") {
		t.Error("nil rules ignored an event")
	}
}

// TestLoadNamesWhitelisted: whitelisted keys are dropped at load with the
// literal/CIDR check, and whitelisted names and hosts are not checked.
func TestLoadNamesWhitelisted(t *testing.T) {
	wl := NewWhitelist()
	wl.Add("white.com")
	n := mustLoadNames(t, "white.com,x,(static)\nsub.white.com,x,(static)\nwhite.com/bad,x,(static)\n", wl)
	if _, ok := n.Lookup("white.com"); ok {
		t.Error("white.com kept")
	}
	if _, ok := n.Lookup("sub.white.com"); !ok {
		t.Error("sub.white.com dropped: the load check is literal, as Maltrail's")
	}
	var res DomainHit
	if n.CheckDomain([]byte("sub.white.com"), &res) {
		t.Error("a whitelisted name was checked")
	}
	var s URLScratch
	if _, ok := n.CheckURL(&s, &HTTPRequest{Host: []byte("white.com"), Path: []byte("/bad")}); ok {
		t.Error("a whitelisted host was checked")
	}
}

func TestSetDropWhitelisted(t *testing.T) {
	s, err := LoadSet(strings.NewReader("8.8.8.8,resolver,(static)\n127.0.0.2,loop,(static)\n66.66.66.66,malware (test),(static)\n8.8.8.8:53,port,(static)\n::1,v6,(static)\n[dead::beef]:443,v6 port,(static)\n"), "t.csv")
	if err != nil {
		t.Fatal(err)
	}
	wl := DefaultWhitelist()
	wl.Add("[dead::beef]:443")
	if n := s.DropWhitelisted(wl); n != 4 {
		t.Errorf("dropped %d, want 4 (8.8.8.8, 127.0.0.2, ::1, [dead::beef]:443)", n)
	}
	if len(s.IPs) != 2 {
		t.Fatalf("kept %v", s.IPs)
	}
	if _, ok := s.Lookup(netip.MustParseAddr("8.8.8.8"), 53); !ok {
		t.Error("8.8.8.8:53 dropped: only the literal key 8.8.8.8 is whitelisted")
	}
	if s.DropWhitelisted(nil) != 0 {
		t.Error("nil whitelist dropped trails")
	}
}

// TestWhitelistTailGate: the tail gate never rules out a whitelisted
// name. Literals and names are built from few labels (empty ones, dots at
// either end included) so that suffixes, near misses and shape
// collisions are all common; each verdict is checked against a plain
// walk of the name's suffixes.
func TestWhitelistTailGate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	labels := []string{"", "a", "b", "com", "net", "x1", "ab", "ba", "good", "localhost", "1", "0"}
	name := func() string {
		var b strings.Builder
		for i := range 1 + rng.IntN(4) {
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(labels[rng.IntN(len(labels))])
		}
		return b.String()
	}
	hits := 0
	for range 200 {
		w := NewWhitelist()
		lits := map[string]bool{}
		for range 1 + rng.IntN(6) {
			l := name()
			w.Add(l)
			lits[strings.ToLower(strings.TrimSpace(l))] = true
		}
		for range 200 {
			n := name()
			want := false
			for off := 0; off < len(n); off++ {
				if (off == 0 || n[off-1] == '.') && lits[n[off:]] {
					want = true
				}
			}
			if got := w.IsWhitelistedName([]byte(n)); got != want {
				t.Fatalf("IsWhitelistedName(%q) = %v with literals %v", n, got, lits)
			}
			// IsWhitelistedDomain cuts at the first byte outside names
			// and lowercases
			d := []byte(n)
			if rng.IntN(2) == 0 {
				d = bytes.ToUpper(d)
			}
			if rng.IntN(3) == 0 {
				d = append(d, []string{":443", "/x.y", "\x00.good", " a.b"}[rng.IntN(4)]...)
			}
			if got := w.IsWhitelistedDomain(d); got != want {
				t.Fatalf("IsWhitelistedDomain(%q) = %v with literals %v", d, got, lits)
			}
			if want {
				hits++
			}
		}
	}
	if hits < 1000 {
		t.Errorf("only %d whitelisted names", hits)
	}
}

// TestAppendLower: every byte value, at every offset of the 8-byte
// steps and the tail, lowercases as one byte at a time does.
func TestAppendLower(t *testing.T) {
	for n := range 20 {
		for c := range 256 {
			for at := range n {
				b := bytes.Repeat([]byte{'Q'}, n)
				b[at] = byte(c)
				got := AppendLower([]byte("x"), b)
				want := []byte("x")
				for _, c := range b {
					if c >= 'A' && c <= 'Z' {
						c += 'a' - 'A'
					}
					want = append(want, c)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("AppendLower(%q) = %q, want %q", b, got, want)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 100000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		for i, c := range AppendLower(nil, b) {
			w := b[i]
			if w >= 'A' && w <= 'Z' {
				w += 'a' - 'A'
			}
			if c != w {
				t.Fatalf("AppendLower(%q)[%d] = %q", b, i, c)
			}
		}
	}
}
