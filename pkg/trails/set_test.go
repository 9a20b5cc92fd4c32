package trails

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/maltrail"
)

func TestParseIPKey(t *testing.T) {
	tests := []struct {
		key  string
		addr string // "" = rejected
		port uint16
		kind keyKind
	}{
		{"1.2.3.4", "1.2.3.4", 0, kindIP},
		{"0.0.0.0", "0.0.0.0", 0, kindIP},
		{"255.255.255.255", "255.255.255.255", 0, kindIP},
		{"6.6.6.6:8443", "6.6.6.6", 8443, kindIP},
		{"1.2.3.4:1", "1.2.3.4", 1, kindIP},
		{"1.2.3.4:65535", "1.2.3.4", 65535, kindIP},
		{"dead::beef", "dead::beef", 0, kindIP},
		{"[dead::beef]:443", "dead::beef", 443, kindIP},
		{"2001:db8::0", "2001:db8::", 0, kindIP},
		{"::0", "::", 0, kindIP},
		{"1::2:0:3:0:4:0", "1:0:2:0:3:0:4:0", 0, kindIP},
		{"2400:6180:0:d0::1008:2001", "2400:6180:0:d0::1008:2001", 0, kindIP},
		{"[2a12:bec4:1460:50::2]:3478", "2a12:bec4:1460:50::2", 3478, kindIP},
		{"::ffff:102:304", "::ffff:1.2.3.4", 0, kindIP}, // IPv4-mapped, in Maltrail's text
		// Non-canonical: looks like an address, never matches.
		{"01.2.3.4", "", 0, kindNonCanonical},
		{"1.2.3.04", "", 0, kindNonCanonical},
		{"256.1.1.1", "", 0, kindNonCanonical},
		{"1.2.3", "", 0, kindNonCanonical},
		{"1.2.3.4.5", "", 0, kindNonCanonical},
		{"1..3.4", "", 0, kindNonCanonical},
		{"1.2.3.4:0", "", 0, kindNonCanonical},
		{"1.2.3.4:080", "", 0, kindNonCanonical},
		{"1.2.3.4:65536", "", 0, kindNonCanonical},
		{"1.2.3.4:", "", 0, kindNonCanonical},
		{"1.2.3.4:80:80", "", 0, kindNonCanonical},
		{"46.8.120.153::8080", "", 0, kindNonCanonical},
		{"182.86.133:8880", "", 0, kindNonCanonical},
		{"2001:db8::", "", 0, kindNonCanonical}, // Maltrail writes 2001:db8::0
		{"::", "", 0, kindNonCanonical},
		{"1:0:0:2:0:0:0:3", "", 0, kindNonCanonical},
		{"DEAD::BEEF", "", 0, kindNonCanonical},
		{"dead:0:0:0:0:0:0:beef", "", 0, kindNonCanonical},
		{"::ffff:1.2.3.4", "", 0, kindNonCanonical},
		{"[2001:41d0:404:200:0:0:0:7f9]:443", "", 0, kindNonCanonical},
		{"[0:0:0:0:0:ffff:2d3e:c649]:53", "", 0, kindNonCanonical},
		{"[dead::beef]:0", "", 0, kindNonCanonical},
		{"[1.2.3.4]:80", "", 0, kindNonCanonical},
		{"[dead::beef]:", "", 0, kindNonCanonical},
		{"cafe:80", "", 0, kindNonCanonical},
		// Not addresses at all.
		{"", "", 0, kindOther},
		{"evil.com", "", 0, kindOther},
		{"cafe.be", "", 0, kindOther},
		{"12345", "", 0, kindOther},
		{"1.2.3.4/path", "", 0, kindOther},
		{"/malicious-login.php", "", 0, kindOther},
		{"[a-z]{1}\\.appjiagu\\.com", "", 0, kindOther},
		{"[dead::beef]", "", 0, kindOther},
		{"[dead::beef]x", "", 0, kindOther},
		{"fe80::1%eth0", "", 0, kindOther},
	}
	for _, tc := range tests {
		addr, port, ok := ParseIPKey(tc.key)
		if ok != (tc.addr != "") {
			t.Errorf("ParseIPKey(%q) ok = %v", tc.key, ok)
			continue
		}
		if ok && (addr != netip.MustParseAddr(tc.addr) || port != tc.port) {
			t.Errorf("ParseIPKey(%q) = %v, %d; want %s, %d", tc.key, addr, port, tc.addr, tc.port)
		}
		if _, _, kind := classifyKey(tc.key); kind != tc.kind {
			t.Errorf("classifyKey(%q) kind = %d, want %d", tc.key, kind, tc.kind)
		}
		if _, _, kind := classifyKey([]byte(tc.key)); kind != tc.kind {
			t.Errorf("classifyKey([]byte %q) kind = %d, want %d", tc.key, kind, tc.kind)
		}
		if ok { // the key is exactly what the renderer writes
			want := maltrail.FormatAddr(addr)
			if port != 0 {
				want = maltrail.FormatAddrPort(addr, port)
			}
			if want != tc.key {
				t.Errorf("ParseIPKey(%q) accepted a key the renderer writes as %q", tc.key, want)
			}
		}
	}
}

func TestMetaFlags(t *testing.T) {
	tests := []struct {
		info string
		want Flags
	}{
		{"known attacker", FlagAttacker},
		{"parking site (suspicious)", FlagParking},
		{"parked site (suspicious)", 0},
		{"asyncrat (malware)", FlagMalware},
		{"potential malware site", FlagMalware},
		{"sinkhole testsink (malware)", FlagMalware},
		{"mass scanner", 0},
		{"malware attacker parking site", FlagAttacker | FlagParking | FlagMalware},
	}
	for _, tc := range tests {
		if got := (Meta{Info: tc.info}).Flags(); got != tc.want {
			t.Errorf("Flags(%q) = %03b, want %03b", tc.info, got, tc.want)
		}
	}
}

func TestLoadSet(t *testing.T) {
	in := "1.2.3.4,first,(static)\r\n" +
		"evil.com,x (malware),(static)\r\n" +
		"1.2.3.4:80,scanner,(static)\r\n" +
		"1.2.3.4,second,(static)\r\n" + // a later duplicate wins
		"01.2.3.4,bad,(static)\r\n" +
		"dead::beef,x (malware),(static)\r\n" +
		"[dead::beef]:443,x (malware),(static)\r\n" +
		"bad,row\r\n"
	s, err := LoadSet(strings.NewReader(in), "t.csv")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.IPs) != 4 || s.Other != 1 || s.NonCanonical != 1 || s.Duplicates != 1 || s.Stats.Rows != 7 || s.Stats.Skipped != 1 {
		t.Fatalf("set: %d IPs, %+v", len(s.IPs), s)
	}
	if len(s.Metas) != 4 {
		t.Errorf("metas %+v, want 4 distinct", s.Metas)
	}
	for _, tc := range []struct {
		addr string
		port uint16
		info string
	}{
		{"1.2.3.4", 0, "second"},
		{"1.2.3.4", 80, "scanner"},
		{"dead::beef", 0, "x (malware)"},
		{"dead::beef", 443, "x (malware)"},
	} {
		m, ok := s.Lookup(netip.MustParseAddr(tc.addr), tc.port)
		if !ok || m.Info != tc.info || m.Reference != "(static)" {
			t.Errorf("Lookup(%s, %d) = %+v, %v; want %q", tc.addr, tc.port, m, ok, tc.info)
		}
	}
	if _, ok := s.Lookup(netip.MustParseAddr("1.2.3.4"), 81); ok {
		t.Error("Lookup of an absent port hit")
	}
	if _, ok := s.Lookup(netip.MustParseAddr("::ffff:1.2.3.4"), 0); ok {
		t.Error("an IPv4-mapped address matched the IPv4 trail; Maltrail's texts differ")
	}
	if !slices.IsSortedFunc(s.IPs, compareTrail) {
		t.Error("IPs not sorted")
	}
}

// TestLoadSetCorpus reads the replay corpus's fixture trails (spec §6).
func TestLoadSetCorpus(t *testing.T) {
	path := filepath.Join(testenv.SharedDir(t), "corpus", "trails.csv")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := LoadSet(f, path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Stats.Rows != 20 || s.Stats.Skipped != 0 || s.NonCanonical != 0 || s.Duplicates != 0 {
		t.Errorf("stats %+v, noncanonical %d, duplicates %d", s.Stats, s.NonCanonical, s.Duplicates)
	}
	want := map[string]string{
		"66.66.66.66":      "malware (test)",
		"6.6.6.6:8443":     "malware (test)",
		"7.7.7.7":          "phishing (test)",
		"198.51.100.53":    "known attacker",
		"203.0.113.44":     "malware (test)",
		"198.51.100.66":    "botnet c2 (test)",
		"dead::beef":       "malware (test)",
		"[dead::beef]:443": "malware (test)",
		"198.51.100.90":    "sinkhole testsink (malware)",
		"198.51.100.91":    "parking site (suspicious)",
	}
	if len(s.IPs) != len(want) || s.Other != 20-len(want) {
		t.Errorf("%d IP trails and %d others, want %d and %d", len(s.IPs), s.Other, len(want), 20-len(want))
	}
	for key, info := range want {
		addr, port, ok := ParseIPKey(key)
		if !ok {
			t.Errorf("ParseIPKey(%q) rejected", key)
			continue
		}
		m, ok := s.Lookup(addr, port)
		if !ok || m.Info != info || m.Reference != "(static)" {
			t.Errorf("Lookup(%s) = %+v, %v; want %q", key, m, ok, info)
		}
	}
	flags := func(key string) Flags {
		a, p, _ := ParseIPKey(key)
		m, _ := s.Lookup(a, p)
		return m.Flags()
	}
	if flags("198.51.100.53") != FlagAttacker || flags("198.51.100.91") != FlagParking || flags("66.66.66.66") != FlagMalware || flags("7.7.7.7") != 0 {
		t.Error("flags of the fixture trails are wrong")
	}
}

// TestStaticTrails checks the real 1.63M-row file (spec §1.1). The figures
// were measured on it (and cross-checked with Python's csv module):
//
//   - 1,630,834 rows, none malformed;
//   - keys shaped like addresses: 22,734 bare IPv4, 279,353 IPv4:port,
//     1,990 other keys with ':' and only hex digits, ':' and '.' (IPv6-ish)
//     and 13 "[…]:port" (not 15: those are all the keys of that shape);
//   - 43 of those are not Maltrail's text of an address and can never
//     match: 30 IPv4:port with port 0, over 65535 or with leading zeros
//     ("123.249.87.1:0", "178.236.246.50:80800", "144.126.149.221:0077"); 9 IPv6-ish that are really broken IPv4 keys
//     ("182.86.133:8880", "161.35.41.9:53:53", "46.8.120.153::8080");
//     4 "[v6]:port" in uncompressed or IPv4-mapped form
//     ("[2001:41d0:404:200:0:0:0:7f9]:443", "[0:0:0:0:0:ffff:2d3e:c649]:53");
//   - 3,096 distinct (info, reference) pairs over all rows, 1,395 over
//     the IP trails;
//   - 304,047 IP trails, no duplicate keys.
func TestStaticTrails(t *testing.T) {
	data := testenv.StaticTrails(t)
	var v4, v4port, v6, v6port, nonCanonical, other int
	var shapeV6, shapeV6Port int
	pairs := make(map[Meta]struct{})
	var bad []string
	st, err := ReadCSV(bytes.NewReader(data), "trails-static.csv", func(r Row) error {
		pairs[Meta{r.Info, r.Reference}] = struct{}{}
		k := r.Trail
		if strings.HasPrefix(k, "[") && strings.Contains(k, "]:") {
			shapeV6Port++
		} else if strings.Contains(k, ":") && strings.Trim(k, "0123456789abcdef:.") == "" && !isDecimalPort(k) {
			shapeV6++
		}
		addr, port, kind := classifyKey(k)
		switch {
		case kind == kindOther:
			other++
		case kind == kindNonCanonical:
			nonCanonical++
			bad = append(bad, k)
		case addr.Is4() && port == 0:
			v4++
		case addr.Is4():
			v4port++
		case port == 0:
			v6++
		default:
			v6port++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %d, want %d", what, got, want)
		}
	}
	check("rows", st.Rows, 1630834)
	check("skipped", st.Skipped, 0)
	check("IPv6-ish keys", shapeV6, 1990)
	check("[…]:port keys", shapeV6Port, 13)
	check("IPv4 trails", v4, 22734)
	check("IPv4:port trails", v4port, 279353-30)
	check("IPv6 trails", v6, 1990-9)
	check("[IPv6]:port trails", v6port, 13-4)
	check("non-canonical", nonCanonical, 43)
	check("other", other, 1630834-22734-279353-1990-13)
	check("distinct (info, reference)", len(pairs), 3096)
	t.Logf("non-canonical keys: %q", bad)

	s, err := LoadSet(bytes.NewReader(data), "trails-static.csv")
	if err != nil {
		t.Fatal(err)
	}
	check("LoadSet IPs+duplicates", len(s.IPs)+s.Duplicates, v4+v4port+v6+v6port)
	check("LoadSet non-canonical", s.NonCanonical, nonCanonical)
	check("LoadSet other", s.Other, other)
	check("LoadSet IPs", len(s.IPs), 304047)
	check("LoadSet metas", len(s.Metas), 1395)
}

// ipv4PortShape is the shape of an IPv4:port key, canonical or not.
var ipv4PortShape = regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+:\d+$`)

// isDecimalPort reports whether k is shaped like an IPv4:port key.
func isDecimalPort(k string) bool { return ipv4PortShape.MatchString(k) }

// BenchmarkLoadSetStatic loads the real trails file from memory (the gzip
// step is left out: it is the same for any loader).
func BenchmarkLoadSetStatic(b *testing.B) {
	data := testenv.StaticTrails(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var rows int
	start := time.Now()
	for b.Loop() {
		s, err := LoadSet(bytes.NewReader(data), "trails-static.csv")
		if err != nil {
			b.Fatal(err)
		}
		rows += s.Stats.Rows
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkReadCSVStatic is ReadCSV alone over the real file, with a Row
// per line.
func BenchmarkReadCSVStatic(b *testing.B) {
	data := testenv.StaticTrails(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var rows int
	start := time.Now()
	for b.Loop() {
		st, err := ReadCSV(bytes.NewReader(data), "trails-static.csv", func(Row) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		rows += st.Rows
	}
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
}

// BenchmarkOpenLoadSetStatic includes gunzip, as `xtrail trails load`
// pays it.
func BenchmarkOpenLoadSetStatic(b *testing.B) {
	testenv.StaticTrails(b)
	path := testenv.StaticTrailsPath(b)
	b.ReportAllocs()
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := LoadSet(f, path); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
