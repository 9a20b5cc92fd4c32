package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/xtrail/xtrail/pkg/trails"
)

// filterInput is an Input of n distinct domain and URL keys.
func filterInput(n int) *Input {
	c := NewCollector(nil)
	for i := range n {
		key := fmt.Sprintf("k%d-%x.example.net", i, i*7919)
		if i%5 == 0 {
			key += fmt.Sprintf("/p%d.php", i)
		}
		c.Add(trails.Row{Trail: key, Info: "filter test (malware)", Reference: "(static)", Line: i + 1})
	}
	return c.Input()
}

// TestFilterHoldsEveryKey: the filter holds every key of the table (no
// false negatives, or a trail would go unseen), its false-positive rate
// on names that are no keys is near the 1/65536 of 16-bit fingerprints
// (the 1/256 of 8-bit ones let a million random misses map most of the
// slot table in), and it costs about 18 bits per key.
func TestFilterHoldsEveryKey(t *testing.T) {
	const n = 50000
	s := mustOpen(t, buildBytes(t, filterInput(n)))
	defer s.Close()
	keys := 0
	for k := range s.Keys() {
		keys++
		if !s.filter.Contains(hashKey(k, s.seed)) {
			t.Fatalf("key %q is not in the filter", k)
		}
		if _, ok := s.LookupName(k); !ok {
			t.Fatalf("key %q not found", k)
		}
	}
	if keys != n {
		t.Fatalf("%d keys, want %d", keys, n)
	}
	const probes = 1 << 20
	pos := 0
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range probes {
		k := fmt.Appendf(nil, "miss-%d-%x.example.org", i, rng.Uint64())
		if s.filter.Contains(hashKey(k, s.seed)) {
			pos++
		}
		if _, ok := s.LookupName(k); ok {
			t.Fatalf("%q found", k)
		}
	}
	fpr := float64(pos) / probes
	bits := float64(s.Stats().FilterBytes*8) / n
	t.Logf("false positives %d of %d (%.3f%%), %.2f bits per key", pos, probes, 100*fpr, bits)
	// 16 expected; an 8-bit filter gives about 4096
	if fpr > 4.0/65536 {
		t.Errorf("false-positive rate %.5f%%, want about 1/65536 (%.5f%%)", 100*fpr, 100.0/65536)
	}
	if bits > 20 { // 19.7 for these keys, 18.1 for the static trails'
		t.Errorf("%.2f bits per key, want about 18-20", bits)
	}
}

// TestFilterGatesLookups: every name lookup asks the filter first. With
// its fingerprints zeroed (and the checksum not verified), a key is found
// only when its own fingerprint happens to be zero: about 1 in 65536.
func TestFilterGatesLookups(t *testing.T) {
	in := filterInput(4000)
	b := buildBytes(t, in)
	e := b[fixedHeader+secFilter*sectionEnt:]
	off, n := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:])
	clear(b[off+filterHeader : off+n])
	s, err := openBytes(t, b, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	found := 0
	for _, k := range in.Names {
		if _, ok := s.LookupNameString(k.Key); ok {
			found++
		}
	}
	if found > len(in.Names)/50 {
		t.Errorf("%d of %d keys found past a zeroed filter: lookups do not ask it", found, len(in.Names))
	}
}

// TestFilterDamage: a filter header whose geometry does not match its
// fingerprints is refused as corrupt, checksums resealed.
func TestFilterDamage(t *testing.T) {
	b := buildBytes(t, filterInput(300))
	e := b[fixedHeader+secFilter*sectionEnt:]
	off := binary.LittleEndian.Uint64(e)
	for _, c := range []struct {
		field int
		v     uint32
	}{{8, 0}, {8, 3}, {8, 1 << 20}, {12, 0}, {12, 1 << 30}, {16, 7}, {20, 1}} {
		d := slices.Clone(b)
		binary.LittleEndian.PutUint32(d[off+uint64(c.field):], c.v)
		reseal(d)
		if s, err := openBytes(t, d, OpenOptions{Verify: true}); err == nil {
			s.Close()
			t.Errorf("filter field %d = %d: opened", c.field, c.v)
		} else if !errors.Is(err, ErrCorrupt) {
			t.Errorf("filter field %d = %d: %v", c.field, c.v, err)
		}
	}
}

// TestFilterEmpty: a store without name keys still has a filter, and
// lookups in it find nothing.
func TestFilterEmpty(t *testing.T) {
	c := NewCollector(nil)
	c.Add(trails.Row{Trail: "192.0.2.1:80", Info: "ip:port only (malware)", Reference: "(static)", Line: 1})
	s := mustOpen(t, buildBytes(t, c.Input()))
	defer s.Close()
	if s.Stats().Names != 0 || s.Stats().FilterBytes == 0 {
		t.Fatalf("stats %+v", s.Stats())
	}
	for _, k := range []string{"a.example", "192.0.2.1:80", "x"} {
		if _, ok := s.LookupNameString(k); ok {
			t.Errorf("%q found", k)
		}
	}
}

// TestHeadFilter: the heads filter holds the head of every key starting
// with '/', and the hosts filter every URL key's host part (a false
// negative would hide a URL trail); both rule out most of what is no
// key's.
func TestHeadFilter(t *testing.T) {
	c := NewCollector(nil)
	for i := range 20000 {
		key := fmt.Sprintf("/seg%d/x%d.php?id=", i, i%97)
		switch i % 4 {
		case 1:
			key = fmt.Sprintf("/a%d=b/c", i)
		case 2:
			key = fmt.Sprintf("host%d.example/p%d", i, i)
		case 3:
			key = fmt.Sprintf("/h%d", i)
		}
		c.Add(trails.Row{Trail: key, Info: "head test (malware)", Reference: "(static)", Line: i + 1})
	}
	s := mustOpen(t, buildBytes(t, c.Input()))
	defer s.Close()
	heads := 0
	for k := range s.Keys() {
		if k[0] == '/' {
			heads++
			if !s.MayHavePathHead(trails.PathHead(k)) {
				t.Fatalf("key %q: head %q not in the heads filter", k, trails.PathHead(k))
			}
		} else if i := bytes.IndexByte(k, '/'); i > 0 && !s.MayHaveURLHost(k[:i]) {
			t.Fatalf("key %q: host not in the hosts filter", k)
		}
	}
	if heads != 15000 || s.Stats().HeadFilterBytes == 0 {
		t.Fatalf("%d heads, stats %+v", heads, s.Stats())
	}
	pos := 0
	for i := range 100000 {
		if s.MayHavePathHead(fmt.Appendf(nil, "miss%d", i)) {
			pos++
		}
	}
	if pos > 1000 {
		t.Errorf("%d of 100000 heads that are no key's pass the filter", pos)
	}
}

// TestFilterFingerprints: the 16-bit fingerprints read in place (a
// little-endian host, an aligned section) and the copy a big-endian host
// or a misaligned section gets are the same values, and a filter over
// either holds the same hashes.
func TestFilterFingerprints(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	hashes := make([]uint64, 5000)
	for i := range hashes {
		hashes[i] = rng.Uint64()
	}
	sec, err := buildFilter[uint16](slices.Clone(hashes))
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseFilter[uint16](sec)
	if err != nil {
		t.Fatal(err)
	}
	fps := sec[filterHeader:]
	copied := fingerprints[uint16](fps, false)
	if !hostLittleEndian() {
		t.Skip("big-endian host: only the copy is read")
	}
	inPlace := fingerprints[uint16](fps, true)
	if &inPlace[0] != (*uint16)(unsafe.Pointer(&fps[0])) {
		t.Error("the fingerprints of an aligned section were copied")
	}
	if &copied[0] == (*uint16)(unsafe.Pointer(&fps[0])) {
		t.Error("the copy points into the section")
	}
	if !slices.Equal(inPlace, copied) || !slices.Equal(f.Fingerprints, copied) || len(copied) != (len(sec)-filterHeader)/2 {
		t.Fatalf("%d fingerprints in place, %d copied: they differ", len(inPlace), len(copied))
	}
	for i, fp := range copied[:100] {
		if want := binary.LittleEndian.Uint16(fps[2*i:]); fp != want {
			t.Fatalf("fingerprint %d: %#x, the section holds %#x", i, fp, want)
		}
	}
	// a misaligned copy of the section is read through a copy
	odd := make([]byte, len(fps)+1)[1:]
	copy(odd, fps)
	if got := fingerprints[uint16](odd, true); !slices.Equal(got, copied) {
		t.Error("misaligned fingerprints read wrong")
	}
	g := f
	g.Fingerprints = copied
	for _, h := range hashes {
		if !f.Contains(h) || !g.Contains(h) {
			t.Fatalf("hash %#x not held", h)
		}
	}
}
