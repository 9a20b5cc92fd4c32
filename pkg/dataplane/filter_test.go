package dataplane

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/trails"
)

// randomAddrs returns n distinct random public-looking addresses, a fifth
// of them IPv6.
func randomAddrs(rng *rand.Rand, n int) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for len(out) < n {
		var a netip.Addr
		if len(out)%5 == 4 {
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			b[0] = 0x2a
			a = netip.AddrFrom16(b)
		} else {
			a = netip.AddrFrom4([4]byte{byte(11 + rng.IntN(200)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// TestIPFilterNoMisses: the kernel's address filter never hides a trail:
// every address of 3,000 IP and 3,000 IP:port trails (IPv4 and IPv6) is
// hit by a SYN to it, on the bare address and on the trail's port; and
// addresses without a trail stay silent. A filter whose hash differs from
// the program's (filter.go against bpf/xtrail.c) would lose most hits.
func TestIPFilterNoMisses(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	addrs := randomAddrs(rng, 6000)
	set := &trails.Set{Metas: []trails.Meta{{Info: "filter (test)", Reference: "(custom)"}}}
	for i, a := range addrs {
		port := uint16(0)
		if i%2 == 1 {
			port = uint16(1 + i)
		}
		set.IPs = append(set.IPs, trails.IPTrail{Addr: a, Port: port})
	}
	p := newPlane(t, testTrails, ActionPass)
	if _, err := p.dp.Trails().Replace(set); err != nil {
		t.Fatal(err)
	}
	for i, a := range addrs {
		src := clean
		if a.Is6() {
			src = host6
		}
		dport := uint16(80)
		if i%2 == 1 {
			dport = uint16(1 + i)
		}
		_, recs := p.run(t, syn(src, a, uint16(1000+i%50000), dport).Bytes(), t0)
		if len(recs) != 1 || recs[0].Side != SideDst {
			t.Fatalf("trail %d (%s port %d): %d records %+v, want a hit on the dst side", i, a, dport, len(recs), recs)
		}
	}
	// and the miss side: no record, the hash maps skipped for most
	for i, a := range randomAddrs(rand.New(rand.NewPCG(3, 4)), 500) {
		src := clean
		if a.Is6() {
			src = host6
		}
		if _, recs := p.run(t, syn(src, a, uint16(2000+i), 80).Bytes(), t0); len(recs) != 0 {
			t.Fatalf("%s, no trail: records %+v", a, recs)
		}
	}
}

// TestIPFilterCIDRFlags: a generation with CIDR trails of one family looks
// its tries up for that family, however the exact maps are filtered; and a
// generation without a filter (made by an xtrail without one) looks every
// address up.
func TestIPFilterCIDRFlags(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	set, err := trails.LoadSet(strings.NewReader(testTrails), "t.csv")
	if err != nil {
		t.Fatal(err)
	}
	set.Metas = append(set.Metas, trails.Meta{Info: "cidr (test)", Reference: "(custom)"})
	set.CIDRs = []trails.CIDRTrail{{Prefix: netip.MustParsePrefix("2001:db8:77::/48"), Meta: uint32(len(set.Metas) - 1)}}
	if _, err := p.dp.Trails().Replace(set); err != nil {
		t.Fatal(err)
	}
	hits := func(dst netip.Addr, sport uint16) int {
		src := clean
		if dst.Is6() {
			src = host6
		}
		_, recs := p.run(t, syn(src, dst, sport, 80).Bytes(), t0)
		return len(recs)
	}
	if n := hits(netip.MustParseAddr("2001:db8:77::9"), 1); n != 1 {
		t.Errorf("IPv6 CIDR trail: %d records", n)
	}
	if n := hits(bad, 2); n != 1 {
		t.Errorf("exact IPv4 trail next to IPv6 CIDRs: %d records", n)
	}
	// the same trails without the filter: remove the live generation's
	gen, err := p.dp.Trails().Generation()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.dp.Trails().outer[kindFilter].Delete(gen); err != nil {
		t.Fatal(err)
	}
	if n := hits(netip.MustParseAddr("2001:db8:77::9"), 3); n != 1 {
		t.Errorf("IPv6 CIDR trail, no filter: %d records", n)
	}
	if n := hits(bad, 4); n != 1 {
		t.Errorf("exact IPv4 trail, no filter: %d records", n)
	}
	if n := hits(clean2, 5); n != 0 {
		t.Errorf("no trail, no filter: %d records", n)
	}
}

// TestIPFilterStatic: the filter of the full static trails keeps every
// trail address and lets few others through (the figure is logged).
func TestIPFilterStatic(t *testing.T) {
	path := testenv.StaticTrailsPath(t)
	rc, err := trails.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	set, err := trails.LoadSet(rc, path)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	f := new(ipFilter)
	distinct := map[netip.Addr]bool{}
	for _, tr := range set.IPs {
		f.add(tr.Addr)
		distinct[tr.Addr] = true
	}
	for a := range distinct {
		if !f.has(a) {
			t.Fatalf("%s: a trail address the filter does not hold", a)
		}
	}
	probes := randomAddrs(rand.New(rand.NewPCG(5, 6)), 200000)
	through := 0
	for _, a := range probes {
		if f.has(a) && !distinct[a] {
			through++
		}
	}
	rate := float64(through) / float64(len(probes))
	t.Logf("%d trail addresses; %.2f%% of random addresses pass the filter", len(distinct), 100*rate)
	if rate > 0.03 {
		t.Errorf("%.2f%% of addresses without a trail pass the filter, want under 3%%", 100*rate)
	}
}
