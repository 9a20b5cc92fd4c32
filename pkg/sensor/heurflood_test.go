package sensor

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestHeuristicsFloodPlateau floods the agent with records from random
// sources for random names (DNS queries of random bases, NXDOMAIN
// answers, HTTP requests to random servers): the heuristics' tables
// evict (and count it) instead of growing, and the heap after a second
// flood as large as the first is where it was after the first.
func TestHeuristicsFloodPlateau(t *testing.T) {
	hc := heuristics.Config{Use: true, CheckMissingHost: true,
		Limits: heuristics.Limits{WebScanPairs: 512, DNSBases: 512, DNSSubdomains: 2048, NXNames: 512, NXGroups: 128}}
	a := NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Whitelist: trails.DefaultWhitelist()},
		Render: &maltrail.Renderer{Loc: time.UTC}, Out: discard{}, Throttle: throttle.Off, Heuristics: hc})
	rng := rand.New(rand.NewPCG(7, 9))
	addr := func() netip.Addr {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], rng.Uint32()|0x01000001)
		return netip.AddrFrom4(b)
	}
	ts := time.Unix(1700000000, 0)
	flood := func(n int) {
		for i := range n {
			ts = ts.Add(time.Millisecond)
			name := fmt.Sprintf("s%x.b%x.com", rng.Uint64(), rng.Uint32()%8192)
			q := dnsQuery(name)
			a.Handle(rec(dataplane.KindDNS, 0, 0, 17, addr(), addr(), uint16(i), 53, 0, ts, q))
			nx := dnsQuery(fmt.Sprintf("n%x.g%x.net", rng.Uint64(), rng.Uint32()))
			nx[2], nx[3] = 0x81, 0x83
			a.Handle(rec(dataplane.KindDNS, 0, 0, 17, addr(), addr(), 53, uint16(i), 0, ts, nx))
			req := fmt.Sprintf("GET /p%x/x HTTP/1.1\r\nHost: h%x.example\r\nUser-Agent: ua-%x\r\n\r\n", rng.Uint32(), rng.Uint32(), rng.Uint64())
			a.Handle(rec(dataplane.KindHTTP, 0, 0, 6, addr(), addr(), uint16(i), 80, 0, ts, []byte(req)))
		}
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	flood(30000)
	first := heap()
	flood(30000)
	second := heap()
	st := a.Heuristics().Stats()
	if st.WebScanEvicted.Load() == 0 || st.DNSBasesEvicted.Load() == 0 || st.NXNamesEvicted.Load() == 0 || st.NXGroupsEvicted.Load() == 0 {
		t.Errorf("a flood past the caps evicted nothing: %v", st.Summary())
	}
	if second > first+512<<10 {
		t.Errorf("heap grew from %d to %d bytes over the second flood", first, second)
	}
	if a.Stats().Records.Load() != 180000 {
		t.Errorf("%d records handled", a.Stats().Records.Load())
	}
}
