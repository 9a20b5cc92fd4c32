package trails

import "math/bits"

const (
	hashP0 = 0xa0761d6478bd642f
	hashP1 = 0xe7037ed1a0b428db
	hashP2 = 0x8ebc6af09c88c6e3
	hashP3 = 0x589965cc75374cc3
)

// mum is the 64×64→128-bit multiply folded to 64 bits, wyhash's mixer.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// KeyHash is the hash a KeyIndex (a compiled trail store, pkg/store)
// files a domain or URL key under, with the index's seed: a
// wyhash-style hash, 8-byte words folded in with a 64×64→128 bit
// multiply, the 1..8 tail bytes read as at most two overlapping words,
// the length mixed in last. It is not cryptographic; a lookup's cost is
// bounded by the table's longest probe sequence whatever the keys. It is
// generic so that string and []byte keys hash alike without a
// conversion.
func KeyHash[T ~string | ~[]byte](k T, seed uint64) uint64 {
	n := len(k)
	h := seed ^ hashP0
	i := 0
	// Leave 1..8 bytes for the tail so that it is never empty for a
	// non-empty key.
	for ; n-i > 8; i += 8 {
		h = mum(le64(k, i)^hashP1, h^hashP2)
	}
	var w uint64
	switch rem := n - i; {
	case rem >= 4:
		// Two 4-byte words that together cover all rem bytes; they
		// overlap for rem < 8, which is fine since n is mixed in.
		w = uint64(le32(k, i))<<32 | uint64(le32(k, n-4))
	case rem > 0:
		w = uint64(k[i])<<16 | uint64(k[i+rem>>1])<<8 | uint64(k[n-1])
	}
	return mum(w^hashP1^uint64(n), h^hashP3)
}

// le64 and le32 read a little-endian word at k[i:]. The sub-slice of a
// known length lets the compiler check its bounds once, not per byte.
func le64[T ~string | ~[]byte](k T, i int) uint64 {
	b := k[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func le32[T ~string | ~[]byte](k T, i int) uint32 {
	b := k[i : i+4]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
