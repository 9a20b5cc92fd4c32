package store

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// smallStore builds a store with every section non-empty, and the keys
// to probe it with. The 70 kB key of synthInput is left out, so that a
// test may afford one Open per byte.
func smallStore(t testing.TB) ([]byte, [][]byte) {
	t.Helper()
	in := synthInput(rand.New(rand.NewPCG(42, 42)), 120)
	in.Names = slices.DeleteFunc(in.Names, func(n Name) bool { return len(n.Key) > 1000 })
	b := buildBytes(t, in)
	var probes [][]byte
	for _, n := range in.Names {
		probes = append(probes, []byte(n.Key))
	}
	probes = append(probes, []byte("miss.example.org"), []byte("k"), nil)
	return b, probes
}

// sectionBounds returns every section's start and end offsets in b.
func sectionBounds(b []byte) []int {
	var cuts []int
	for i := range numSections {
		e := b[fixedHeader+i*sectionEnt:]
		off := int(binary.LittleEndian.Uint64(e))
		cuts = append(cuts, off, off+int(binary.LittleEndian.Uint64(e[8:])))
	}
	return cuts
}

// opener writes candidate files to one path and opens them.
type opener struct {
	t    *testing.T
	path string
}

func newOpener(t *testing.T) *opener {
	return &opener{t: t, path: filepath.Join(t.TempDir(), "trails.xts")}
}

func (o *opener) open(b []byte, verify bool) (*Store, error) {
	o.t.Helper()
	// A new file each time: on ext4, rewriting a truncated file makes
	// its close wait for the data to reach the disk (auto_da_alloc).
	if err := os.Remove(o.path); err != nil && !os.IsNotExist(err) {
		o.t.Fatal(err)
	}
	if err := os.WriteFile(o.path, b, 0o644); err != nil {
		o.t.Fatal(err)
	}
	return OpenWith(o.path, OpenOptions{Verify: verify})
}

// mustFail opens b with and without Verify and wants both to fail with
// ErrCorrupt or ErrVersion.
func (o *opener) mustFail(what string, b []byte) {
	o.t.Helper()
	for _, verify := range []bool{true, false} {
		s, err := o.open(b, verify)
		if err == nil {
			s.Close()
			o.t.Fatalf("%s (verify %v): Open succeeded", what, verify)
		}
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
			o.t.Fatalf("%s (verify %v): error %v wraps neither ErrCorrupt nor ErrVersion", what, verify, err)
		}
	}
}

// TestTruncated cuts the file at and around every section boundary and
// inside the header: each cut fails, with or without Verify, also when
// the header is resealed to the new size (so that only the section
// bounds can catch it).
func TestTruncated(t *testing.T) {
	b, _ := smallStore(t)
	o := newOpener(t)
	cuts := []int{0, 1, len(magic), fixedHeader - 1, fixedHeader, headerSize - 1, headerSize, len(b) - 1}
	for _, c := range sectionBounds(b) {
		cuts = append(cuts, c-1, c, c+1)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	for _, c := range cuts {
		if c < 0 || c >= len(b) {
			continue
		}
		cut := slices.Clone(b[:c])
		o.mustFail("truncated", cut)
		reseal(cut)
		o.mustFail("truncated and resealed", cut)
	}
}

// TestHeaderFlips flips every header and section-table byte: the header
// CRC (or the magic and version checks before it) fails every one, with
// or without Verify.
func TestHeaderFlips(t *testing.T) {
	b, _ := smallStore(t)
	o := newOpener(t)
	for i := range headerSize {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			c := slices.Clone(b)
			c[i] ^= mask
			o.mustFail("header byte flipped", c)
		}
	}
}

// TestBodyFlips flips every body byte. Verify fails every one; without
// Verify, Open may succeed, and then every reader method runs on the
// damaged store without a panic or a fault.
func TestBodyFlips(t *testing.T) {
	b, probes := smallStore(t)
	o := newOpener(t)
	step := 1
	if testing.Short() {
		step = 7
	}
	for i := headerSize; i < len(b); i += step {
		c := slices.Clone(b)
		c[i] ^= 0xff
		if s, err := o.open(c, true); err == nil {
			s.Close()
			t.Fatalf("byte %d flipped: Open with Verify succeeded", i)
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
		if s, err := o.open(c, false); err == nil {
			exercise(s, probes)
			s.Close()
		}
	}
}

// TestResealedDamage damages the body and the section table and then
// reseals the header, so that both checksums pass and only the
// structural checks stand between the damage and the lookups: Open must
// fail cleanly or give a store whose readers stay in bounds.
func TestResealedDamage(t *testing.T) {
	b, probes := smallStore(t)
	o := newOpener(t)
	try := func(c []byte) {
		t.Helper()
		reseal(c)
		s, err := o.open(c, true)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrVersion", err)
			}
			return
		}
		exercise(s, probes)
		s.Close()
	}
	// Extreme section offsets and lengths.
	vals := []uint64{0, 1, 7, 8, headerSize, uint64(len(b)) - 8, uint64(len(b)), uint64(len(b)) + 8, math.MaxUint32, math.MaxUint64 - 7, math.MaxUint64}
	for i := range numSections {
		for field := range 2 {
			for _, v := range vals {
				c := slices.Clone(b)
				binary.LittleEndian.PutUint64(c[fixedHeader+i*sectionEnt+field*8:], v)
				try(c)
			}
		}
	}
	// Every count set to extreme values.
	counts := int(binary.LittleEndian.Uint64(b[fixedHeader+secCounts*sectionEnt:]))
	for i := range numCounts + 1 {
		for _, v := range []uint64{0, 1, math.MaxUint32, math.MaxUint64} {
			c := slices.Clone(b)
			binary.LittleEndian.PutUint64(c[counts+8*i:], v)
			try(c)
		}
	}
	// Random damage to the tables: slots pointing anywhere, metas
	// pointing anywhere, garbage addresses.
	rng := rand.New(rand.NewPCG(5, 5))
	for range 3000 {
		c := slices.Clone(b)
		for range 1 + rng.IntN(8) {
			p := headerSize + rng.IntN(len(c)-headerSize)
			switch rng.IntN(3) {
			case 0:
				c[p] = byte(rng.Uint32())
			case 1:
				if p+4 <= len(c) {
					binary.LittleEndian.PutUint32(c[p:], rng.Uint32())
				}
			case 2:
				if p+4 <= len(c) {
					binary.LittleEndian.PutUint32(c[p:], math.MaxUint32-uint32(rng.IntN(3)))
				}
			}
		}
		try(c)
	}
	// A table whose every slot is taken: lookups must still end (at the
	// recorded longest probe).
	c := slices.Clone(b)
	e := c[fixedHeader+secNames*sectionEnt:]
	off, n := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:])
	for p := off; p < off+n; p += slotSize {
		binary.LittleEndian.PutUint32(c[p+4:], 1) // the first key entry
	}
	try(c)
}
