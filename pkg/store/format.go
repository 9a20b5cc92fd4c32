// Package store is xtrail's compiled trail store: the trails of a
// trails.csv (and xtrail's CIDR lists) compiled once into a file that a
// sensor maps read-only and looks keys up in place. It exists for start-up
// cost: parsing the 1.6M-row trails.csv into Go maps takes seconds and
// ~80 MiB of heap, while opening a compiled store costs a checksum pass and
// a few validated headers, and its pages stay in the page cache, shared
// and reclaimable, instead of on the Go heap. Maltrail's Python sensor
// does the same with its trails.csv.bin (spec §7).
//
// # File format, version 6
//
// All integers are little-endian. The file is a fixed header followed by
// sections, each starting at an offset that is a multiple of 8 (the gaps
// are zero bytes):
//
//	off  size  field
//	  0     8  magic "XTRAILS\x00"
//	  8     4  format version (6)
//	 12     4  flags (none are defined; a reader refuses bits it does not know)
//	 16     8  build time, Unix nanoseconds
//	 24     8  file size in bytes
//	 32     4  header size (88 + 16 × section count)
//	 36     4  section count (13)
//	 40     8  hash seed of the name table
//	 48    32  SHA-256 of bytes [header size, file size): every section and gap
//	 80     4  CRC-32C (Castagnoli) of the header with this field zeroed
//	 84     4  reserved, zero
//	 88  16×n  section table: per section {offset u64, length u64}, in the
//	           order below
//
// The header has its own CRC so that a damaged header (a flipped build
// time, a section offset that still lands in bounds) is caught on every
// open, even one that skips the SHA-256 pass over the body.
//
// Sections, in section-table order:
//
//  0. strings: interned bytes. Every distinct info and reference text,
//     regex trail key and source name is stored once; the tables below
//     refer to it by (offset u32, length u32).
//  1. metas: 20 bytes each, {info off u32, info len u32, ref off u32,
//     ref len u32, flags u32}. The flags are Flags, precomputed from the
//     info text so that the domain check and the IP suppression rules
//     (spec §1.3, §1.3.1) need not search strings per hit.
//  2. names: the open-addressing hash table of domain and URL keys, exactly
//     the keys trails.LoadNames keeps (regex trail keys included, as
//     Maltrail's one dict holds them). A power-of-two count of 8-byte
//     slots {tag u32, ref u32}; ref is 1 + the offset of the key's entry
//     in section 3, 0 for an empty slot. The slot of a key is
//     hash & (slots-1), then linear probing; the tag is the hash's high
//     32 bits, compared before the entry is read, so a miss reads only
//     slots. (Version 1 had 16-byte slots holding the length and meta; 8
//     bytes halve the table that random lookups keep resident.)
//  3. keys: one entry per distinct key, {meta uvarint, key length uvarint,
//     key bytes}. The length is unbounded by the format because a
//     trails.csv key may be up to the reader's 1 MiB record limit and
//     LoadNames keeps such keys.
//  4. ips: IP and IP:port trails, 24 bytes each, {family u8 (4 or 6),
//     zero u8, port u16 (0 = bare IP), meta u32, addr [16]byte (IPv4 in
//     the first 4 bytes, the rest zero)}, sorted by address (IPv4 first)
//     then port, one per (address, port), as trails.Set holds them.
//  5. cidrs: CIDR trails (xtrail's CIDR lists), 24 bytes each,
//     {family u8, prefix bits u8, zero u16, meta u32, addr [16]byte},
//     masked, sorted by address then prefix length, one per prefix.
//  6. regexes: 24 bytes each, {key off u32, key len u32 (into strings),
//     meta u32, CSV line u32, source index u32, zero u32}: every row that
//     passes spec §1.2's textual regex test, in CSV order, repeats
//     included, since which of them take Maltrail's 100 regex slots
//     depends on whether Python compiles them, which the loader decides.
//  7. sources: 16 bytes each, {name off u32, name len u32, rows u64}.
//  8. counts: u64 values; the first is how many follow. See the count*
//     constants: a later version may append counts, and a reader requires
//     only those it knows.
//  9. filter: a binary fuse filter of every name key's hash (see
//     filter.go): {seed u64, segment length u32, segment count u32,
//     fingerprint count u32, zero u32}, then a u16 per fingerprint,
//     (segment count + 2) × segment length of them (2-byte aligned, as
//     the section is 8-byte aligned). Every name lookup asks it first and
//     reads the table only when it holds the key's hash. (Version 2 had
//     no filter, version 5 one byte per fingerprint; a reader refuses
//     them: recompile.)
//  10. hosts: a filter of the same header over the hash of every URL key's
//     host part (the bytes before its first '/'), then one byte per
//     fingerprint (what it wrongly holds costs only asks of the name
//     filter). A request whose host it rules out has no host+candidate
//     key (spec §1.4), so none is looked up, nor hashed.
//  11. heads: a filter of the hosts' layout over the hash of the head of
//     every key that starts with '/' (trails.PathHead: the bytes after
//     the '/' up to the next '/', '?' or '='). Every bare URL candidate
//     of a path starting with '/' has the head that follows one of the
//     path's slashes, so a path none of whose heads it holds has no bare
//     candidate that is a key; with the hosts filter ruling the host out
//     too, no candidate is made at all. (Version 3 had no heads filter; a
//     reader refuses it: recompile.)
//  12. bases: a filter of the hosts' layout over the hash of the last two
//     labels (trails.LastTwoLabels) of every key without '/' that holds
//     a '.'. Such a key that is a parent of a name (or the name) has the
//     name's last two labels, so a name whose last two labels it rules
//     out can only be matched by a key of one label: the domain check
//     then looks up only the name's last label. (Version 4 had no bases
//     filter; a reader refuses it: recompile.)
//
// # Hash
//
// trails.KeyHash (which the domain check computes itself, to ask the
// filter below before the table) is a wyhash-style hash: 8-byte words
// folded in with a 64×64→128 bit multiply, the 1..8 tail bytes read as at
// most two overlapping words, the length mixed in last. It is not cryptographic; a lookup's cost is
// bounded anyway by the longest probe sequence, recorded in the counts.
package store

import (
	"errors"

	"github.com/xtrail/xtrail/pkg/trails"
)

const (
	magic   = "XTRAILS\x00"
	version = 6

	fixedHeader = 88 // bytes before the section table
	sectionEnt  = 16 // one section table entry
	align       = 8  // section alignment

	// Header field offsets.
	hMagic     = 0
	hVersion   = 8
	hFlags     = 12
	hBuildTime = 16
	hFileSize  = 24
	hHdrSize   = 32
	hSections  = 36
	hSeed      = 40
	hSHA       = 48
	hCRC       = 80
	hReserved  = 84

	knownFlags = 0 // no flag bits are defined in version 6
)

// Section indexes, in section-table order.
const (
	secStrings = iota
	secMetas
	secNames
	secKeys
	secIPs
	secCIDRs
	secRegexes
	secSources
	secCounts
	secFilter
	secHosts
	secHeads
	secBases
	numSections
)

// sectionName names a section in error messages.
func sectionName(i int) string {
	switch i {
	case secStrings:
		return "strings"
	case secMetas:
		return "metas"
	case secNames:
		return "names"
	case secKeys:
		return "keys"
	case secIPs:
		return "ips"
	case secCIDRs:
		return "cidrs"
	case secRegexes:
		return "regexes"
	case secSources:
		return "sources"
	case secCounts:
		return "counts"
	case secFilter:
		return "filter"
	case secHosts:
		return "hosts"
	case secHeads:
		return "heads"
	case secBases:
		return "bases"
	}
	return "unknown"
}

// entrySize is the entry size of a fixed-size table, 1 for a byte section.
func entrySize(i int) int {
	switch i {
	case secMetas:
		return metaSize
	case secNames:
		return slotSize
	case secIPs:
		return ipSize
	case secCIDRs:
		return cidrSize
	case secRegexes:
		return regexSize
	case secSources:
		return sourceSize
	case secCounts:
		return 8
	}
	return 1
}

const (
	headerSize = fixedHeader + sectionEnt*numSections

	metaSize      = 20
	slotSize      = 8
	buildSlotSize = 16 // the builder's slots (see nameTable)
	ipSize        = 24
	cidrSize      = 24
	regexSize     = 24
	sourceSize    = 16

	minSlots = 8
)

// Counts, by index in the counts section (after its leading length).
const (
	countNames = iota
	countURLs
	countMaxNameKey
	countMaxProbe
	countIPs
	countCIDRs
	countRegexes
	countMetas
	countSources
	countDuplicates
	countIPDuplicates
	countCIDRDuplicates
	countRows
	countSkipped
	countEmpty
	countWhitelisted
	countNonCanonical
	countIPRows
	numCounts
)

// defaultSeed is the name table's hash seed. It is fixed so that the same
// input compiles to the same bytes (build time aside); the reader takes the
// seed from the header.
const defaultSeed = 0x2d358dccaa6c78a5

// Flags are the facts about a trail's info text that decide whether a hit
// is reported. The low three bits equal trails.Flags.
type Flags uint32

const (
	// FlagAttacker: info contains "attacker" (trails.FlagAttacker).
	FlagAttacker Flags = 1 << 0
	// FlagParking: info contains "parking site" (trails.FlagParking).
	FlagParking Flags = 1 << 1
	// FlagMalware: info contains "malware" (trails.FlagMalware).
	FlagMalware Flags = 1 << 2
	// FlagNSSkip: info contains "suspicious" or "sinkhole"; a hit on a
	// name-server-like name is skipped (spec §1.3.1 step 3).
	FlagNSSkip Flags = 1 << 8
	// FlagDynSkip: info contains "dynamic" or "free web"; a full or www.
	// hit is skipped (spec §1.3.1 step 3).
	FlagDynSkip Flags = 1 << 9
)

// ErrCorrupt is wrapped by every error about a file that is not a valid
// store: bad magic, truncation, a bad checksum, out-of-bounds sections.
var ErrCorrupt = errors.New("corrupt trail store")

// ErrVersion is wrapped when the file is a store of a format version or
// with flags this reader does not know: rebuild it with this xtrail.
var ErrVersion = errors.New("unsupported trail store version")

// hashKey is the key hash of the format (see Hash above): trails.KeyHash.
func hashKey[T ~string | ~[]byte](k T, seed uint64) uint64 { return trails.KeyHash(k, seed) }
