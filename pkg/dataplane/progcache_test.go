package dataplane

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/trails"
)

// pinnedPlane loads the program with a pin dir (replay clock, so frames
// can be run through it) and loads testTrails.
func pinnedPlane(t *testing.T, dir string, ring int) *plane {
	t.Helper()
	return openPlane(t, Options{PinDir: dir, Replay: true, RingSize: ring}, testTrails)
}

func progID(t *testing.T, dp *Dataplane) uint32 {
	t.Helper()
	info, err := dp.objs.XtrailXdp.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

// hits runs a SYN to the malware trail and returns its records.
func (p *plane) hits(t *testing.T) int {
	t.Helper()
	_, recs := p.run(t, syn(clean, bad, 5000, 80).Bytes(), t0)
	return len(recs)
}

func TestProgramCache(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)

	first := pinnedPlane(t, dir, 0)
	if first.dp.Cached() {
		t.Fatal("the first load of a fresh pin dir came from a cache")
	}
	id, seed := progID(t, first.dp), first.dp.cfg.Seed
	if n := first.hits(t); n != 1 {
		t.Fatalf("first load: %d records for a trail hit", n)
	}

	// While the first holds the cache, a second load gets a private program
	// on the same trails.
	second := pinnedPlane(t, dir, 0)
	if second.dp.Cached() || progID(t, second.dp) == id {
		t.Fatal("a second concurrent load shared the first's program")
	}
	if n := second.hits(t); n != 1 {
		t.Fatalf("private program: %d records for a trail hit", n)
	}
	second.rd.Close()
	second.dp.Close()
	first.rd.Close()
	first.dp.Close()

	// A restart takes the verified program, with fresh counters and the
	// same ring buffer and trail maps.
	again := pinnedPlane(t, dir, 0)
	if !again.dp.Cached() || progID(t, again.dp) != id {
		t.Fatalf("restart: cached %v, program %d, want the cached %d", again.dp.Cached(), progID(t, again.dp), id)
	}
	if c := again.counters(t); c["packets"] != 0 {
		t.Errorf("restart kept %d packets in the counters", c["packets"])
	}
	// the hash seed stays with the scan maps whose keys it made
	if again.dp.cfg.Seed != seed || seed == 0 || second.dp.cfg.Seed == seed {
		t.Errorf("hash seeds: first %x, private %x, restart %x; want the restart's the first's, the private one its own", seed, second.dp.cfg.Seed, again.dp.cfg.Seed)
	}
	// a new suppression second, so the repeat slot does not hold the hit
	_, recs := again.run(t, syn(clean, bad, 5000, 80).Bytes(), t0.Add(5e9))
	if len(recs) != 1 {
		t.Fatalf("cached program: %d records for a trail hit", len(recs))
	}
	again.rd.Close()
	again.dp.Close()

	// Trail maps removed and made anew: the cached program reads the old
	// ones, so it must not be used.
	for _, name := range append(outerNames[:], "xt_gen", "xt_live", "xt_info") {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	fresh := pinnedPlane(t, dir, 0)
	if fresh.dp.Cached() {
		t.Fatal("a cache bound to removed trail maps was used")
	}
	if n := fresh.hits(t); n != 1 {
		t.Fatalf("after the trail maps were recreated: %d records for a trail hit", n)
	}
	fresh.rd.Close()
	fresh.dp.Close()

	// Another ring size is another program: its cache replaces the old one.
	other := pinnedPlane(t, dir, 1<<16)
	if other.dp.Cached() {
		t.Fatal("a cache of another ring size was used")
	}
	other.rd.Close()
	other.dp.Close()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var caches []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), progCachePrefix) {
			caches = append(caches, e.Name())
		}
	}
	if len(caches) != 1 {
		t.Errorf("program caches after a ring size change: %v, want one", caches)
	}
}

// TestRecordGeneration: every record names the trail generation the
// program matched its packet against, so the agent can match names of
// the same generation.
func TestRecordGeneration(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	maps := p.dp.Trails()
	set, err := trails.LoadSet(strings.NewReader(testTrails), "t.csv")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		g, err := maps.Generation()
		if err != nil {
			t.Fatal(err)
		}
		_, recs := p.run(t, syn(clean, bad, 5000, 80).Bytes(), t0.Add(time.Duration(i)*5*time.Second))
		if len(recs) != 1 || uint32(recs[0].Gen) != g {
			t.Fatalf("reload %d: records %+v, want one of generation %d", i, recs, g)
		}
		if _, err := maps.Replace(set); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentLoaders: two processes' loads (here two handles on the
// pins) into the same trail maps never mix: after each round every kind
// holds the same set.
func TestConcurrentLoaders(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)
	var handles [2]*TrailMaps
	for i := range handles {
		m, err := OpenTrailMaps(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.Grace = time.Millisecond
		handles[i] = m
	}
	sets := [2]string{
		"192.0.2.1,set a (malware),(static)\n192.0.2.1:443,set a (malware),(static)\n[2001:db8::1]:443,set a (malware),(static)\n",
		"192.0.2.2,set b (malware),(static)\n192.0.2.2:443,set b (malware),(static)\n[2001:db8::2]:443,set b (malware),(static)\n",
	}
	for round := range 15 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			set, err := trails.LoadSet(strings.NewReader(sets[i]), "t.csv")
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = handles[i].Replace(set)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		var from []string
		for _, q := range []struct {
			addr string
			port uint16
		}{{"192.0.2.1", 0}, {"192.0.2.1", 443}, {"2001:db8::1", 443}, {"192.0.2.2", 0}, {"192.0.2.2", 443}, {"2001:db8::2", 443}} {
			r, err := handles[0].Lookup(netip.MustParseAddr(q.addr), q.port)
			if err != nil {
				t.Fatal(err)
			}
			if r.Found && r.Info != "" {
				from = append(from, r.Info)
			}
		}
		if len(from) != 3 || from[0] != from[1] || from[1] != from[2] {
			t.Fatalf("round %d: the live generation mixes the sets: %q", round, from)
		}
	}
}

// TestProgramCacheScanSizes: the scan maps are sized by the scans counted,
// so a program cached without scans is not taken by a sensor that counts
// them (its maps would have one entry), nor the other way round.
func TestProgramCacheScanSizes(t *testing.T) {
	testenv.RequireRoot(t)
	dir := testenv.PinDir(t)
	load := func(s Scan) bool {
		t.Helper()
		p := openPlane(t, Options{PinDir: dir, Replay: true, Scan: s}, testTrails)
		cached := p.dp.Cached()
		if n := p.dp.objs.XtScanTcp.MaxEntries(); n != map[bool]uint32{false: 1, true: scanEntries}[s.Port] {
			t.Errorf("scan %+v: TCP scan map of %d entries", s, n)
		}
		p.rd.Close()
		p.dp.Close()
		return cached
	}
	for i, c := range []struct {
		scan   Scan
		cached bool
	}{{Scan{}, false}, {Scan{}, true}, {Scan{Port: true}, false}, {Scan{Port: true}, true}, {Scan{}, false}} {
		if got := load(c.scan); got != c.cached {
			t.Errorf("load %d (%+v): cached %v, want %v", i, c.scan, got, c.cached)
		}
	}
}
