package heuristics

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync/atomic"
)

// probeLen is how many slots a key may live in, from its home slot on. A
// lookup reads them all (deletions leave holes), so it is kept short: a
// few cache lines.
const probeLen = 8

// slot is one entry of a table: a 64-bit key hash (0 = never used), the
// table epoch and second it was made in (for expiry), a weight that
// decides which entry a full neighbourhood gives up, and the value.
type slot[V any] struct {
	key    uint64
	epoch  uint32
	stamp  uint32 // seconds, low 32 bits
	weight uint32
	val    V
}

// table is a fixed-capacity open-addressing hash table. Every slot is
// allocated up front, so its memory never grows: when all probeLen slots
// of a new key's neighbourhood hold live entries, the lightest (ties: the
// oldest) is evicted and counted. Entries expire in bulk when the table's
// epoch changes (a new window or hour), and one by one after ttl seconds
// when ttl is set; an expired slot is free. Keys are hashes: two keys with
// the same 64-bit hash are one entry, a chance too small to matter for
// counters.
type table[V any] struct {
	slots   []slot[V] // allocated at the first put
	size    int
	mask    uint64
	epoch   uint32
	ttl     uint32 // 0: entries live until the epoch changes
	evicted *atomic.Uint64
}

// newTable returns a table of at least n slots (a power of two, at least
// probeLen); evictions are counted in evicted.
func newTable[V any](n int, ttl uint32, evicted *atomic.Uint64) *table[V] {
	n = max(n, probeLen)
	size := 1 << bits.Len(uint(n-1))
	return &table[V]{size: size, mask: uint64(size - 1), ttl: ttl, evicted: evicted}
}

func (t *table[V]) live(s *slot[V], now uint32) bool {
	return s.key != 0 && s.epoch == t.epoch && (t.ttl == 0 || now-s.stamp < t.ttl)
}

// home is the first slot of key's neighbourhood. The key is already a
// hash; the multiply spreads hashes whose low bits agree.
func (t *table[V]) home(key uint64) uint64 {
	return (key * 0x9E3779B97F4A7C15) >> 20 & t.mask
}

// get returns key's live entry, or nil.
func (t *table[V]) get(key uint64, now uint32) *slot[V] {
	if t.slots == nil {
		return nil
	}
	key = nonzero(key)
	h := t.home(key)
	for i := range uint64(probeLen) {
		s := &t.slots[(h+i)&t.mask]
		if s.key == key && t.live(s, now) {
			return s
		}
	}
	return nil
}

// put returns key's live entry, making a zeroed one stamped now if there
// is none (isNew). It never fails: a full neighbourhood gives up its
// lightest entry.
func (t *table[V]) put(key uint64, now uint32) (s *slot[V], isNew bool) {
	if t.slots == nil {
		// once, at its full size: a heuristic that never runs costs no memory
		t.slots = make([]slot[V], t.size)
	}
	key = nonzero(key)
	h := t.home(key)
	var free, light *slot[V]
	for i := range uint64(probeLen) {
		c := &t.slots[(h+i)&t.mask]
		if !t.live(c, now) {
			if free == nil {
				free = c
			}
			continue
		}
		if c.key == key {
			return c, false
		}
		if light == nil || c.weight < light.weight || (c.weight == light.weight && int32(c.stamp-light.stamp) < 0) {
			light = c
		}
	}
	if free == nil {
		free = light
		t.evicted.Add(1)
	}
	*free = slot[V]{key: key, epoch: t.epoch, stamp: now}
	return free, true
}

// del frees key's entry, if live.
func (t *table[V]) del(key uint64, now uint32) {
	if s := t.get(key, now); s != nil {
		s.key = 0
	}
}

// reset expires every entry at once.
func (t *table[V]) reset() { t.epoch++ }

// count is the number of live entries (tests and diagnostics; it reads
// every slot).
func (t *table[V]) count(now uint32) int {
	n := 0
	for i := range t.slots {
		if t.live(&t.slots[i], now) {
			n++
		}
	}
	return n
}

func nonzero(k uint64) uint64 {
	if k == 0 {
		return 1
	}
	return k
}

// hashBytes folds b into h, 8 bytes at a time with a 64×64→128-bit
// multiply (keys are short names and paths, hashed once or twice per
// candidate, and a byte-wise hash cost a multiply per byte). No seed is
// needed: a collision only merges two counters.
func hashBytes(h uint64, b []byte) uint64 {
	for ; len(b) >= 8; b = b[8:] {
		h = mix64(h^binary.LittleEndian.Uint64(b), 0x9E3779B97F4A7C15)
	}
	w := uint64(len(b)) << 56 // the tail's length, then its bytes
	for i, c := range b {
		w |= uint64(c) << (8 * i)
	}
	return mix64(h^w, 0xC2B2AE3D27D4EB4F)
}

const hashSeed = 0x165667B19E3779F9

func hashNew(b []byte) uint64 { return hashBytes(hashSeed, b) }

// hashPair hashes a (source, destination) pair of addresses: their 16-byte
// forms as four words, mixed by multiplication (a pair is hashed per
// request; a byte-wise hash of 32 bytes cost more than the table).
func hashPair(src, dst netip.Addr) uint64 {
	s, d := src.As16(), dst.As16()
	h := mix64(binary.LittleEndian.Uint64(s[:8])^0x9E3779B97F4A7C15, binary.LittleEndian.Uint64(s[8:])^0xC2B2AE3D27D4EB4F)
	return mix64(h^binary.LittleEndian.Uint64(d[:8]), binary.LittleEndian.Uint64(d[8:])^0x165667B19E3779F9)
}

// mix64 is the 64×64→128-bit multiply folded to 64 bits.
func mix64(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hashMix folds a number into a hash (a separator between fields).
func hashMix(h, v uint64) uint64 { return mix64(h^v, 0x94D049BB133111EB) }
