package heuristics

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
)

// TestBoundedState floods every table with unique keys (random sources,
// destinations and names) and checks that each stays within its
// capacity, that evictions are counted, and that the heap reaches a
// plateau: a second flood as large as the first leaves it where it was.
func TestBoundedState(t *testing.T) {
	lim := Limits{WebScanPairs: 256, DNSBases: 256, DNSSubdomains: 1024, NXNames: 256, NXGroups: 64}
	e := newEngine(t, Config{Limits: lim})
	var r rec
	rng := rand.New(rand.NewPCG(1, 2))
	flood := func(n int) {
		var a [4]byte
		h := httpReq("GET", "x.example", "")
		for i := range n {
			binary.BigEndian.PutUint32(a[:], rng.Uint32()|1)
			h.Src = netip.AddrFrom4(a)
			binary.BigEndian.PutUint32(a[:], rng.Uint32()|1)
			h.Dst = netip.AddrFrom4(a)
			h.Path = fmt.Appendf(h.Path[:0], "/p%d", rng.Uint32())
			e.WebScan(h, &r)
			name := fmt.Sprintf("s%x.b%x.com", rng.Uint64(), rng.Uint32()%4096)
			e.Exhaustion(dnsQ(1000+int64(i/100000), name), &r)
			e.NXDomain(dnsQ(1000+int64(i/100000), fmt.Sprintf("n%x.g%x.com", rng.Uint64(), rng.Uint32())), &r)
			r.got = r.got[:0]
		}
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	flood(20000)
	first := heap()
	flood(20000)
	second := heap()
	now := uint32(1000)
	for _, c := range []struct {
		name      string
		live, cap int
	}{
		{"web scan pairs", e.web.pairs.count(now), len(e.web.pairs.slots)},
		{"dns bases", e.dns.bases.count(now), len(e.dns.bases.slots)},
		{"dns subdomains", e.dns.subs.count(now), len(e.dns.subs.slots)},
		{"nx names", e.dns.nxNames.count(now), len(e.dns.nxNames.slots)},
		{"nx groups", e.dns.nxGroups.count(now), len(e.dns.nxGroups.slots)},
	} {
		if c.live > c.cap || c.cap > 4*1024 {
			t.Errorf("%s: %d live entries in %d slots", c.name, c.live, c.cap)
		}
	}
	st := e.Stats()
	for name, v := range map[string]uint64{"web scan": st.WebScanEvicted.Load(), "dns bases": st.DNSBasesEvicted.Load(),
		"dns subdomains": st.DNSSubdomainsEvicted.Load(), "nx names": st.NXNamesEvicted.Load(), "nx groups": st.NXGroupsEvicted.Load()} {
		if v == 0 {
			t.Errorf("%s: a flood past the capacity evicted nothing", name)
		}
	}
	// the flood's own garbage (names formatted per step) is collected; the
	// state must not have grown by more than noise
	if second > first+256<<10 {
		t.Errorf("heap grew from %d to %d bytes over the second flood", first, second)
	}
}

// TestNoAllocs: the per-candidate paths allocate nothing, hit or miss
// (findings reuse the engine's buffers; the caller's event may allocate).
func TestNoAllocs(t *testing.T) {
	e := newEngine(t, Config{CheckMissingHost: true})
	var r rec
	r.got = make([]string, 0, 1)
	sink := discard{}
	h := httpReq("GET", "h.example", "/items.php?id=1%20union%20all%20select%20a%20from%20users")
	h.Body = []byte("x=1")
	ua := []byte("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
	q := dnsQ(1000, "www.some-site.example.com")
	nx := dnsQ(1000, "x7k2q9vz3mwp1hb.com")
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		h.Path = h.Path[:len(h.Path)]
		e.Request(h, sink)
		e.UserAgent(ua, sink)
		e.WebScan(h, sink)
		e.IoTDownload(h, sink)
		e.Exhaustion(q, sink)
		e.NXDomain(nx, sink)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per candidate", allocs)
	}
}

type discard struct{}

func (discard) Report(*Finding) {}
