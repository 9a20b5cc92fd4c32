package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"unsafe"

	"github.com/FastFilter/xorfilter"
)

// The name filter (section 9) is a binary fuse filter with 16-bit
// fingerprints over the 64-bit hashKey of every name key. A key the
// filter does not hold is certainly not in the table, so a miss costs
// three reads of a table of about 18 bits per key (3 MB for the 1.35M
// keys of the static trails, small enough to stay in the CPU's cache
// under steady lookups) instead of a probe of the 16 MiB slot table and
// its keys, which are cache misses. A key it holds is looked up in the
// table as before; a key it wrongly holds (about 1 in 65,536) costs only
// that. 8-bit fingerprints (version 5) halved the filter but let 1 miss
// in 256 through: each such probe maps a page, or a whole large page
// cache folio, of the slot table, and over a million random candidates
// the table became resident (18 MB of a replay's peak RSS).
//
// The host, head and bases filters (sections 10-12) keep 8-bit
// fingerprints: what they wrongly hold only costs more asks of the name
// filter, never a table probe.
//
// It is built with github.com/FastFilter/xorfilter and read through the
// same type: its fields are exported, so the fingerprints are the mapped
// section itself, never copied to the heap (16-bit ones are read in place
// on a little-endian host; the section keeps them 2-byte aligned).
const (
	filterHeader = 24 // {seed u64, segment length u32, segment count u32, fingerprints u32, zero u32}
	// maxSegmentLength is the library's cap on a segment's length.
	maxSegmentLength = 1 << 18
)

// fingerprint is a filter's fingerprint type: uint16 for the name
// filter, uint8 for the others.
type fingerprint interface{ uint8 | uint16 }

// buildFilter returns the filter section for the key hashes (duplicates
// allowed; it sorts them in place), fingerprints little-endian. The
// library seeds its construction deterministically, so the same keys give
// the same bytes.
func buildFilter[T fingerprint](hashes []uint64) ([]byte, error) {
	// The library wants few duplicates (many make its construction give
	// up): the host, head and bases filters repeat theirs.
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	f, err := xorfilter.NewBinaryFuse[T](hashes)
	if err != nil {
		return nil, fmt.Errorf("name filter: %w", err)
	}
	size := int(unsafe.Sizeof(T(0)))
	b := make([]byte, filterHeader, filterHeader+size*len(f.Fingerprints))
	binary.LittleEndian.PutUint64(b[0:], f.Seed)
	binary.LittleEndian.PutUint32(b[8:], f.SegmentLength)
	binary.LittleEndian.PutUint32(b[12:], f.SegmentCount)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(f.Fingerprints)))
	for _, fp := range f.Fingerprints {
		if size == 1 {
			b = append(b, byte(fp))
		} else {
			b = binary.LittleEndian.AppendUint16(b, uint16(fp))
		}
	}
	return b, nil
}

// parseFilter checks a filter section and returns the filter over it:
// its fingerprints point into sec (see fingerprints). The checks bound
// every index a lookup computes (below (segment count + 2) × segment
// length), so a damaged section cannot make a lookup read out of bounds.
func parseFilter[T fingerprint](sec []byte) (xorfilter.BinaryFuse[T], error) {
	var f xorfilter.BinaryFuse[T]
	if len(sec) < filterHeader {
		return f, corrupt("name filter of %d bytes, shorter than its %d-byte header", len(sec), filterHeader)
	}
	segLen := binary.LittleEndian.Uint32(sec[8:])
	segCount := binary.LittleEndian.Uint32(sec[12:])
	n := binary.LittleEndian.Uint32(sec[16:])
	if segLen == 0 || segLen&(segLen-1) != 0 || segLen > maxSegmentLength || segCount == 0 ||
		binary.LittleEndian.Uint32(sec[20:]) != 0 {
		return f, corrupt("name filter with segment length %d and %d segments", segLen, segCount)
	}
	size := uint64(unsafe.Sizeof(T(0)))
	if want := (uint64(segCount) + 2) * uint64(segLen); want != uint64(n) || want*size != uint64(len(sec)-filterHeader) {
		return f, corrupt("name filter of %d segments of %d holds %d %d-byte fingerprints in %d bytes", segCount, segLen, n, size, len(sec)-filterHeader)
	}
	f.Seed = binary.LittleEndian.Uint64(sec[0:])
	f.SegmentLength = segLen
	f.SegmentLengthMask = segLen - 1
	f.SegmentCount = segCount
	f.SegmentCountLength = segCount * segLen
	f.Fingerprints = fingerprints[T](sec[filterHeader:len(sec):len(sec)], hostLittleEndian())
	return f, nil
}

// fingerprints returns the little-endian fingerprints in b as a []T. In
// place (pointing into b, which may be the read-only mapping) when inPlace
// says the host is little-endian and b is aligned for T; else a copy.
func fingerprints[T fingerprint](b []byte, inPlace bool) []T {
	size := int(unsafe.Sizeof(T(0)))
	n := len(b) / size
	if n == 0 {
		return nil
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if size == 1 || inPlace && uintptr(p)%unsafe.Alignof(T(0)) == 0 {
		return unsafe.Slice((*T)(p), n)
	}
	out := make([]T, n)
	for i := range out {
		out[i] = T(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return out
}

// hostLittleEndian reports whether the host stores integers
// little-endian, as the file does.
func hostLittleEndian() bool {
	return binary.NativeEndian.Uint16([]byte{1, 0}) == 1
}
