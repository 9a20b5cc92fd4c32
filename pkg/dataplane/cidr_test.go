package dataplane

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xtrail/xtrail/pkg/trails"
)

// TestCIDRTrails: CIDR trails (an xtrail extension) match after the exact
// maps, longest prefix first, and the agent can recover the prefix.
func TestCIDRTrails(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	set, err := trails.LoadSet(strings.NewReader(testTrails+"192.0.2.7,exact (test),(static)\r\n"), "t.csv")
	if err != nil {
		t.Fatal(err)
	}
	meta := uint32(len(set.Metas))
	set.Metas = append(set.Metas, trails.Meta{Info: "cidr (test)", Reference: "(custom)"}, trails.Meta{Info: "narrow attacker", Reference: "(custom)"})
	set.CIDRs = []trails.CIDRTrail{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Meta: meta},
		{Prefix: netip.MustParsePrefix("192.0.2.128/25"), Meta: meta + 1},
		{Prefix: netip.MustParsePrefix("2001:db8:77::/48"), Meta: meta},
	}
	st, err := p.dp.Trails().Replace(set)
	if err != nil {
		t.Fatal(err)
	}
	if st.CIDR4 != 2 || st.CIDR6 != 1 {
		t.Fatalf("stats %+v", st)
	}
	cases := []struct {
		dst    string
		ttype  uint8
		info   string
		prefix string
		recs   int
	}{
		{"192.0.2.9", TrailCIDR, "cidr (test)", "192.0.2.0/24", 1},
		{"192.0.2.7", TrailIP, "exact (test)", "", 1},       // the exact trail wins
		{"192.0.2.200", TrailCIDR, "", "192.0.2.128/25", 0}, // longest prefix: an attacker, silent on dst
		{"192.0.3.1", 0, "", "", 0},
		{"2001:db8:77:1::5", TrailCIDR, "cidr (test)", "2001:db8:77::/48", 1},
	}
	for i, c := range cases {
		dst := netip.MustParseAddr(c.dst)
		src := clean
		if dst.Is6() {
			src = host6
		}
		_, recs := p.run(t, syn(src, dst, uint16(5000+i), 80).Bytes(), t0)
		if len(recs) != c.recs {
			t.Fatalf("%s: %d records, want %d", c.dst, len(recs), c.recs)
		}
		if c.prefix != "" {
			got, err := p.dp.Trails().Prefix(dst)
			if err != nil || got.String() != c.prefix {
				t.Errorf("%s: prefix %v %v, want %s", c.dst, got, err, c.prefix)
			}
		}
		if c.recs == 0 {
			continue
		}
		if recs[0].TrailType != c.ttype {
			t.Errorf("%s: trail type %d, want %d", c.dst, recs[0].TrailType, c.ttype)
		}
		if info, _, _ := p.dp.Trails().Meta(recs[0].Meta); info != c.info {
			t.Errorf("%s: info %q, want %q", c.dst, info, c.info)
		}
	}
	// a new set without CIDRs prunes the tries
	if st, err = p.dp.Trails().Replace(&trails.Set{Metas: set.Metas[:1], IPs: set.IPs[:1]}); err != nil || st.CIDR4 != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	if _, recs := p.run(t, syn(clean, netip.MustParseAddr("192.0.2.9"), 6000, 80).Bytes(), t0); len(recs) != 0 {
		t.Error("a removed CIDR trail still fires")
	}
}

func TestLookupAndCounts(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	maps := p.dp.Trails()
	for q, want := range map[string]LookupResult{
		"66.66.66.66:0":    {Found: true, Type: "IP", Trail: "66.66.66.66", Info: "malware (test)", Reference: "(static)", Rule: "IP trail"},
		"6.6.6.6:8443":     {Found: true, Type: "IPORT", Trail: "6.6.6.6:8443", Info: "malware (test)", Reference: "(static)", Rule: "IP:port trail (TCP SYN, DNS query dst)"},
		"[dead::beef]:443": {Found: true, Type: "IPORT", Trail: "[dead::beef]:443", Info: "malware (test)", Reference: "(static)", Rule: "IP:port trail (TCP SYN, DNS query dst)"},
		"1.2.3.4:80":       {},
	} {
		ap := netip.MustParseAddrPort(q)
		got, err := maps.Lookup(ap.Addr(), ap.Port())
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", q, got, err, want)
		}
	}
	c, err := maps.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if c.IP4 != 5 || c.Port4 != 2 || c.IP6 != 1 || c.Port6 != 1 || c.CIDR4 != 0 {
		t.Errorf("counts %+v", c)
	}
}

func TestDiff(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	next, err := trails.LoadSet(strings.NewReader("66.66.66.66,other info,(custom)\r\n7.7.7.7,phishing (test),(static)\r\n1.2.3.4:99,new (test),(custom)\r\n"), "next.csv")
	if err != nil {
		t.Fatal(err)
	}
	next.Metas = append(next.Metas, trails.Meta{Info: "net", Reference: "(custom)"})
	next.CIDRs = []trails.CIDRTrail{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Meta: uint32(len(next.Metas) - 1)}}
	d, err := p.dp.Trails().Diff(next)
	if err != nil {
		t.Fatal(err)
	}
	// testTrails has 9 IP trails: 7.7.7.7 stays, 66.66.66.66 changes, 7 go
	if d.Added != 2 || d.Changed != 1 || d.Removed != 7 {
		t.Errorf("diff %+v", d)
	}
	// diff changes nothing
	if _, recs := p.run(t, syn(clean, bad, 5000, 80).Bytes(), t0); len(recs) != 1 {
		t.Error("diff changed the live trails")
	}
}

func TestLiveID(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	maps := p.dp.Trails()
	if id, live := maps.LiveID(); id != ([32]byte{}) || !live {
		t.Fatalf("after a plain load: %x %v, want zero and live", id, live)
	}
	set, _ := trails.LoadSet(strings.NewReader(testTrails), "t.csv")
	sum := [32]byte{1, 2, 3}
	if _, err := maps.ReplaceFrom(set, Origin{ID: sum}); err != nil {
		t.Fatal(err)
	}
	if id, live := maps.LiveID(); id != sum || !live {
		t.Fatalf("after ReplaceFrom: %x %v", id, live)
	}
	// a generation an xtrail without address filters loaded is not the
	// store's: loading the store again gives it a filter
	g, err := maps.Generation()
	if err != nil {
		t.Fatal(err)
	}
	var filter *ebpf.Map
	if err := maps.outer[kindFilter].Lookup(g, &filter); err != nil {
		t.Fatal(err)
	}
	if err := maps.outer[kindFilter].Delete(g); err != nil {
		t.Fatal(err)
	}
	if _, live := maps.LiveID(); live {
		t.Error("a generation without a filter counts as the store's")
	}
	if err := maps.outer[kindFilter].Put(g, filter); err != nil {
		t.Fatal(err)
	}
	filter.Close()
	if _, live := maps.LiveID(); !live {
		t.Error("the filter back: not live")
	}
	if _, err := maps.Replace(set); err != nil {
		t.Fatal(err)
	}
	if id, _ := maps.LiveID(); id != ([32]byte{}) {
		t.Fatalf("a plain load kept the previous identity %x", id)
	}
}
