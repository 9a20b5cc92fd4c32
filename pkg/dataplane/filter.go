package dataplane

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// The address filter of a trail generation (struct xt_ip_filter in
// bpf/xtrail.h): two bits per address that has an IP or IP:port trail, so
// the program skips the hash maps for nearly every address that has none.

const filterWords = 65536 // XT_FILTER_WORDS

// xt_ip_filter.flags
const (
	filterCIDR4 = 1 << 0
	filterCIDR6 = 1 << 1
)

// ipFilter is struct xt_ip_filter.
type ipFilter struct {
	Flags uint32
	Pad   uint32
	Bits  [filterWords]uint64
}

// The keyed rounds of bpf/xtrail.c (hround, hfinal), with key 0 here.
const (
	hK1 = 0x9E3779B185EBCA87
	hK2 = 0xC2B2AE3D27D4EB4F
	hK3 = 0x165667B19E3779F9
)

func hround(acc, w uint64) uint64 {
	acc += w * hK2
	return bits.RotateLeft64(acc, 31) * hK1
}

func hfinal(h uint64) uint64 {
	h ^= h >> 33
	h *= hK2
	h ^= h >> 29
	h *= hK3
	h ^= h >> 32
	return h
}

// filterHash is the program's hash of an address (see xt_ip_filter).
func filterHash(a netip.Addr) uint64 {
	if a.Is4() {
		return hfinal(uint64(addr4Key(a)))
	}
	b := a.As16()
	return hfinal(hround(hround(0, binary.LittleEndian.Uint64(b[:8])), binary.LittleEndian.Uint64(b[8:])))
}

// add sets an address's bits.
func (f *ipFilter) add(a netip.Addr) {
	h := filterHash(a)
	f.Bits[h%filterWords] |= 1<<(h>>16&63) | 1<<(h>>22&63)
}

// has says whether an address's bits are set, as the program asks.
func (f *ipFilter) has(a netip.Addr) bool {
	h := filterHash(a)
	m := uint64(1)<<(h>>16&63) | uint64(1)<<(h>>22&63)
	return f.Bits[h%filterWords]&m == m
}
