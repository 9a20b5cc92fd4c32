package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/trails"
)

// buildBytes compiles in into memory.
func buildBytes(t testing.TB, in *Input) []byte {
	t.Helper()
	var buf bytes.Buffer
	st, err := Build(&buf, in)
	if err != nil {
		t.Fatal(err)
	}
	if st.FileSize != int64(buf.Len()) {
		t.Fatalf("Stats.FileSize %d, wrote %d bytes", st.FileSize, buf.Len())
	}
	return buf.Bytes()
}

// writeTemp writes b to a new file and returns its path.
func writeTemp(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "trails.xts")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// openBytes writes b to a file and opens it.
func openBytes(t testing.TB, b []byte, opt OpenOptions) (*Store, error) {
	t.Helper()
	s, err := OpenWith(writeTemp(t, b), opt)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func mustOpen(t testing.TB, b []byte) *Store {
	t.Helper()
	s, err := openBytes(t, b, OpenOptions{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// reseal rewrites the file size, body checksum and header CRC of b in
// place, so that a damaged body or section table passes both checksums
// and the structural checks behind them are what is tested.
func reseal(b []byte) {
	if len(b) < headerSize {
		return
	}
	binary.LittleEndian.PutUint64(b[hFileSize:], uint64(len(b)))
	sum := sha256.Sum256(b[headerSize:])
	copy(b[hSHA:], sum[:])
	binary.LittleEndian.PutUint32(b[hCRC:], headerCRC(b))
}

// synthInput makes an Input with every kind of trail: n random keys
// (some long, some URLs, some repeated with another meta), IPv4 and IPv6
// trails with and without ports (some repeated), CIDRs, regexes, sources.
func synthInput(rng *rand.Rand, n int) *Input {
	c := NewCollector(nil)
	infos := []string{"asyncrat (malware)", "known attacker", "parking site (suspicious)", "dynamic domain (suspicious)",
		"free web hosting (suspicious)", "sinkhole nobel (malware)", "mass scanner", "", "q,\"uoted\"\ntext"}
	refs := []string{"(static)", "(custom)", "abuse.ch", "(static) (+abuse.ch,alienvault.com)", ""}
	meta := func() uint32 { return c.Meta(infos[rng.IntN(len(infos))], refs[rng.IntN(len(refs))]) }
	in := &c.in
	in.Sources = []Source{{Name: "synthetic.csv", Rows: n}, {Name: "other", Rows: 3}}
	for i := range n {
		var k string
		switch rng.IntN(10) {
		case 0:
			k = fmt.Sprintf("/path%d/gate.php?id=", i)
		case 1:
			k = fmt.Sprintf("host%d.example.net/p/%x", i, rng.Uint64())
		case 2:
			k = strings.Repeat("a", 1+rng.IntN(40)) + fmt.Sprintf(".%d.long", i)
		default:
			k = fmt.Sprintf("d%x-%d.com", rng.Uint32(), i)
		}
		in.Names = append(in.Names, Name{Key: k, Meta: meta()})
		if rng.IntN(20) == 0 { // a repeat: the last row wins
			in.Names = append(in.Names, Name{Key: k, Meta: meta()})
		}
	}
	// Keys past 16-bit lengths, and 1..17-byte keys that exercise every
	// tail length of the hash.
	in.Names = append(in.Names, Name{Key: strings.Repeat("x", 70000) + ".com", Meta: meta()})
	for l := 1; l <= 17; l++ {
		in.Names = append(in.Names, Name{Key: strings.Repeat("k", l), Meta: meta()})
	}
	for i := range n / 4 {
		var a netip.Addr
		if i%5 == 0 {
			var b [16]byte
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			a = netip.AddrFrom16(b)
		} else {
			a = netip.AddrFrom4([4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(i)})
		}
		port := uint16(0)
		if i%3 == 0 {
			port = uint16(1 + rng.IntN(65535))
		}
		in.IPs = append(in.IPs, trails.IPTrail{Addr: a, Port: port, Meta: meta()})
		if i%17 == 0 {
			in.IPs = append(in.IPs, trails.IPTrail{Addr: a, Port: port, Meta: meta()})
		}
	}
	for i := range 20 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 3, 4}), 8+i)
		if i%4 == 0 {
			p = netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::1/%d", i, 32+i))
		}
		in.CIDRs = append(in.CIDRs, trails.CIDRTrail{Prefix: p, Meta: meta()})
	}
	in.Regexes = []Regex{
		{Key: `dga[0-9]+\.x\.com`, Meta: meta(), Line: 7},
		{Key: `dga[0-9]+\.x\.com`, Meta: meta(), Line: 9},
		{Key: `b[0-9]\.com`, Meta: meta(), Line: 11, Source: 1},
	}
	in.Names = append(in.Names, Name{Key: `b[0-9]\.com`, Meta: meta()})
	in.BuildTime = time.Unix(1786094062, 123)
	return c.Input()
}

// expected is what a store built from an Input must hold: the last meta
// of every key, the last of every IP and CIDR.
type expected struct {
	names  map[string]uint32
	ips    map[trails.IPTrail]bool // with the meta
	ipMeta map[ipKey]uint32        // meta+1, 0 = no trail
	cidrs  map[trails.CIDRTrail]bool
}

type ipKey struct {
	a netip.Addr
	p uint16
}

func expect(in *Input) expected {
	e := expected{names: map[string]uint32{}, ips: map[trails.IPTrail]bool{}, ipMeta: map[ipKey]uint32{}, cidrs: map[trails.CIDRTrail]bool{}}
	for _, n := range in.Names {
		e.names[n.Key] = n.Meta
	}
	for _, t := range in.IPs {
		e.ipMeta[ipKey{t.Addr, t.Port}] = t.Meta + 1
	}
	for k, m := range e.ipMeta {
		e.ips[trails.IPTrail{Addr: k.a, Port: k.p, Meta: m - 1}] = true
	}
	lastC := map[netip.Prefix]uint32{}
	for _, t := range in.CIDRs {
		lastC[t.Prefix.Masked()] = t.Meta
	}
	for p, m := range lastC {
		e.cidrs[trails.CIDRTrail{Prefix: p, Meta: m}] = true
	}
	return e
}

// checkStore checks s against in completely.
func checkStore(t *testing.T, s *Store, in *Input) {
	t.Helper()
	e := expect(in)
	st := s.Stats()
	if st.Names != len(e.names) || st.IPs != len(e.ips) || st.CIDRs != len(e.cidrs) || st.Metas != len(in.Metas) ||
		st.Regexes != len(in.Regexes) || st.Sources != len(in.Sources) {
		t.Fatalf("stats %+v; want %d names, %d IPs, %d CIDRs, %d metas", st, len(e.names), len(e.ips), len(e.cidrs), len(in.Metas))
	}
	if st.Duplicates != len(in.Names)-len(e.names) || st.IPDuplicates != len(in.IPs)-len(e.ips) {
		t.Errorf("duplicates %d/%d, want %d/%d", st.Duplicates, st.IPDuplicates, len(in.Names)-len(e.names), len(in.IPs)-len(e.ips))
	}
	for i, m := range in.Metas {
		info, ref := s.Meta(uint32(i))
		if info != m.Info || ref != m.Reference {
			t.Fatalf("meta %d = %q %q, want %q %q", i, info, ref, m.Info, m.Reference)
		}
		if s.Flags(uint32(i)) != metaFlags(m) {
			t.Fatalf("meta %d flags %b, want %b", i, s.Flags(uint32(i)), metaFlags(m))
		}
	}
	urls, maxKey := 0, 0
	for k, want := range e.names {
		got, ok := s.LookupName([]byte(k))
		if !ok || got != want {
			t.Fatalf("LookupName(%.40q) = %d %v, want %d", k, got, ok, want)
		}
		if got, ok := s.LookupNameString(k); !ok || got != want {
			t.Fatalf("LookupNameString(%.40q) = %d %v, want %d", k, got, ok, want)
		}
		if strings.Contains(k, "/") {
			urls++
		} else {
			maxKey = max(maxKey, len(k))
		}
		// Near misses: a byte more, a byte less, another last byte.
		for _, miss := range []string{k + "x", k[:len(k)-1], k[:len(k)-1] + "\x00"} {
			if _, in := e.names[miss]; in {
				continue
			}
			if _, ok := s.LookupNameString(miss); ok {
				t.Fatalf("LookupName(%.40q) hit a key that is not in the store", miss)
			}
		}
	}
	if st.URLs != urls || s.MaxNameKey() != maxKey {
		t.Errorf("URLs %d, MaxNameKey %d; want %d, %d", st.URLs, s.MaxNameKey(), urls, maxKey)
	}
	n := 0
	for k, m := range s.Keys() {
		n++
		if want, ok := e.names[string(k)]; !ok || want != m {
			t.Fatalf("Keys yields %.40q %d, want %d %v", k, m, want, ok)
		}
	}
	if n != len(e.names) {
		t.Fatalf("Keys yields %d keys, want %d", n, len(e.names))
	}
	var prev trails.IPTrail
	n = 0
	for ip := range s.IPs() {
		if !e.ips[ip] {
			t.Fatalf("IPs yields %v:%d meta %d, which is not the last row of that key", ip.Addr, ip.Port, ip.Meta)
		}
		if n > 0 && compareIP(prev, ip) >= 0 {
			t.Fatalf("IPs out of order: %v:%d then %v:%d", prev.Addr, prev.Port, ip.Addr, ip.Port)
		}
		if m, ok := s.LookupIP(ip.Addr, ip.Port); !ok || m != ip.Meta {
			t.Fatalf("LookupIP(%v, %d) = %d %v, want %d", ip.Addr, ip.Port, m, ok, ip.Meta)
		}
		// A neighbouring key hits only if it is a trail itself.
		next := ipKey{ip.Addr, ip.Port + 1}
		if m, ok := s.LookupIP(next.a, next.p); ok != (e.ipMeta[next] == m+1) {
			t.Fatalf("LookupIP(%v, %d) = %d %v, want %d", next.a, next.p, m, ok, int(e.ipMeta[next])-1)
		}
		prev = ip
		n++
	}
	if n != len(e.ips) {
		t.Fatalf("IPs yields %d trails, want %d", n, len(e.ips))
	}
	n = 0
	for c := range s.CIDRs() {
		if !e.cidrs[c] {
			t.Fatalf("CIDRs yields %v meta %d, not expected", c.Prefix, c.Meta)
		}
		n++
	}
	if n != len(e.cidrs) {
		t.Fatalf("CIDRs yields %d, want %d", n, len(e.cidrs))
	}
	i := 0
	for r := range s.Regexes() {
		want := in.Regexes[i]
		if m, ok := e.names[want.Key]; ok {
			want.Meta = m
		}
		if r != want {
			t.Fatalf("regex %d = %+v, want %+v", i, r, want)
		}
		i++
	}
	if got := s.Sources(); fmt.Sprint(got) != fmt.Sprint(in.Sources) && !(len(got) == 0 && len(in.Sources) == 0) {
		t.Fatalf("Sources = %v, want %v", got, in.Sources)
	}
	if _, ok := s.LookupName(nil); ok {
		t.Fatal("the empty key hit")
	}
	if i, r := s.MetaBytes(math.MaxUint32); i != nil || r != nil || s.Flags(math.MaxUint32) != 0 {
		t.Fatal("a meta index out of range gave something")
	}
}

// exercise calls every reader method on s, to show that nothing panics
// or faults on a damaged store; results are not checked.
func exercise(s *Store, probes [][]byte) {
	for _, k := range probes {
		if mi, ok := s.LookupName(k); ok {
			s.MetaBytes(mi)
			s.Flags(mi)
		}
	}
	n := 0
	for k, mi := range s.Keys() {
		s.LookupName(k)
		s.Meta(mi)
		if n++; n > 1000 {
			break
		}
	}
	n = 0
	for ip := range s.IPs() {
		s.LookupIP(ip.Addr, ip.Port)
		s.Meta(ip.Meta)
		if n++; n > 1000 {
			break
		}
	}
	s.LookupIP(netip.MustParseAddr("1.2.3.4"), 0)
	s.LookupIP(netip.MustParseAddr("dead::beef"), 443)
	for c := range s.CIDRs() {
		s.Flags(c.Meta)
	}
	for r := range s.Regexes() {
		s.Meta(r.Meta)
	}
	s.Sources()
	for i := range min(s.NumMetas()+2, 5000) {
		s.MetaBytes(uint32(i))
		s.Flags(uint32(i))
	}
	s.Stats()
	s.Info()
}

// compileCSV compiles a trails.csv into a store file in a temp dir and
// opens it (closed at cleanup).
func compileCSV(t testing.TB, csv []byte, wl *trails.Whitelist) (*Input, *Store) {
	t.Helper()
	in, err := FromCSV(bytes.NewReader(csv), "trails.csv", wl)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trails.xts")
	if _, err := Compile(path, in); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return in, s
}
