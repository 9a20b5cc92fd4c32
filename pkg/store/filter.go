package store

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/FastFilter/xorfilter"
)

// The name filter (section 9) is a binary fuse filter with 8-bit
// fingerprints over the 64-bit hashKey of every name key. A key the
// filter does not hold is certainly not in the table, so a miss costs
// three reads of a table of about 9 bits per key (1.5 MB for the
// 1.35M keys of the static trails, small enough to stay in the CPU's
// cache under steady lookups) instead of a probe of the 16 MiB slot
// table and its keys, which are cache misses. A key it holds is looked
// up in the table as before; a key it wrongly holds (about 1 in 256)
// costs only that.
//
// It is built with github.com/FastFilter/xorfilter and read through the
// same type: its fields are exported, so the fingerprints are the mapped
// section itself, never copied to the heap.
const (
	filterHeader = 24 // {seed u64, segment length u32, segment count u32, fingerprints u32, zero u32}
	// maxSegmentLength is the library's cap on a segment's length.
	maxSegmentLength = 1 << 18
)

// buildFilter returns the filter section for the key hashes (duplicates
// allowed; it sorts them in place). The library seeds its construction
// deterministically, so the same keys give the same bytes.
func buildFilter(hashes []uint64) ([]byte, error) {
	// The library wants few duplicates (many make its construction give
	// up): the host, head and base filters repeat theirs.
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	f, err := xorfilter.NewBinaryFuse[uint8](hashes)
	if err != nil {
		return nil, fmt.Errorf("name filter: %w", err)
	}
	b := make([]byte, filterHeader, filterHeader+len(f.Fingerprints))
	binary.LittleEndian.PutUint64(b[0:], f.Seed)
	binary.LittleEndian.PutUint32(b[8:], f.SegmentLength)
	binary.LittleEndian.PutUint32(b[12:], f.SegmentCount)
	binary.LittleEndian.PutUint32(b[16:], uint32(len(f.Fingerprints)))
	return append(b, f.Fingerprints...), nil
}

// parseFilter checks a filter section and returns the filter over it:
// its fingerprints point into sec. The checks bound every index a lookup
// computes (below (segment count + 2) × segment length), so a damaged
// section cannot make a lookup read out of bounds.
func parseFilter(sec []byte) (xorfilter.BinaryFuse[uint8], error) {
	var f xorfilter.BinaryFuse[uint8]
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
	if want := (uint64(segCount) + 2) * uint64(segLen); want != uint64(n) || want != uint64(len(sec)-filterHeader) {
		return f, corrupt("name filter of %d segments of %d holds %d fingerprints in %d bytes", segCount, segLen, n, len(sec)-filterHeader)
	}
	f.Seed = binary.LittleEndian.Uint64(sec[0:])
	f.SegmentLength = segLen
	f.SegmentLengthMask = segLen - 1
	f.SegmentCount = segCount
	f.SegmentCountLength = segCount * segLen
	f.Fingerprints = sec[filterHeader:len(sec):len(sec)]
	return f, nil
}
