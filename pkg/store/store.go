package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"net/netip"
	"os"
	"runtime/debug"
	"time"

	"github.com/FastFilter/xorfilter"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/pkg/trails"
)

// OpenOptions tune OpenWith.
type OpenOptions struct {
	// Verify checks the SHA-256 of the whole body before the store is
	// used. Open sets it. Without it a damaged body is not detected
	// (lookups may then return wrong metas, but never read out of bounds
	// or panic); the header, its CRC and every section bound are checked
	// either way.
	Verify bool
}

// Info is the header of an open store.
type Info struct {
	Version   uint32
	Flags     uint32
	BuildTime time.Time
	Size      int64    // file size
	SHA256    [32]byte // of the body, as recorded in the header
	Verified  bool     // the body was checked against SHA256 at open
}

// DefaultPath is where `xtrail trails compile` writes the store and where
// a sensor without TRAILS_FILE looks for one.
const DefaultPath = "/var/lib/xtrail/trails.xts"

// Store is an open, memory-mapped trail store. Its methods are safe for
// concurrent use and do not allocate unless they say so; Close must not
// run concurrently with them.
type Store struct {
	data []byte // the whole mapping; nil once closed

	strs, metas, slots, keys, ips, cidrs, regexes, sources []byte

	// filter holds the hash of every name key: a lookup it rules out
	// reads nothing else (see filter.go).
	filter   xorfilter.BinaryFuse[uint16]
	hosts    xorfilter.BinaryFuse[uint8] // of the URL keys' host parts
	heads    xorfilter.BinaryFuse[uint8] // of the heads of the keys starting with '/'
	bases    xorfilter.BinaryFuse[uint8] // of the last two labels of the name keys
	mask     uint64                      // slots-1
	seed     uint64
	maxProbe uint64 // probes beyond the first slot a lookup may need
	nMetas   uint32

	stats Stats
	info  Info
}

// Open maps the store at path read-only and verifies it, checksum
// included. Close it to unmap.
//
// The file must be replaced by rename (as Compile does), never rewritten
// in place: a mapping of a file truncated underneath it faults. Open
// itself turns such a fault into an error.
func Open(path string) (*Store, error) {
	return OpenWith(path, OpenOptions{Verify: true})
}

// OpenWith is Open with options; the zero OpenOptions skips the checksum.
func OpenWith(path string, opt OpenOptions) (*Store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open trail store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open trail store: %w", err)
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open trail store %s: not a regular file", path)
	}
	if size < headerSize {
		// Also keeps an empty file away from mmap, which refuses length 0.
		return nil, fmt.Errorf("open trail store %s: %w: %d bytes, shorter than the %d-byte header", path, ErrCorrupt, size, headerSize)
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("open trail store %s: %d bytes do not fit the address space", path, size)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("open trail store %s: mmap: %w", path, err)
	}
	// The page cache may hold the file in huge (PMD-sized) folios, which
	// a touch of one byte would map whole: 2 MiB of RSS per random
	// lookup until the entire file is resident. Page-sized mappings keep
	// the resident set to what lookups use. Best effort, like MADV_RANDOM.
	_ = unix.Madvise(data, unix.MADV_NOHUGEPAGE)
	// Lookups touch a few random slots and keys each: read-ahead and
	// fault-around would only map pages nobody asked for. Set before
	// parse touches the header: a fault with read-ahead on leaves a
	// read-ahead mark that the checksum pass's reads then continue,
	// FADV_RANDOM or not, in folios growing to 2 MiB over the file,
	// and later lookups map whole folios (1-2 MiB of RSS each).
	_ = unix.Madvise(data, unix.MADV_RANDOM)
	var verify func([32]byte) error
	if opt.Verify {
		verify = func(sum [32]byte) error { return verifyFile(f, size, sum) }
	}
	s, err := parseGuarded(data, verify)
	if err != nil {
		unix.Munmap(data)
		return nil, fmt.Errorf("open trail store %s: %w", path, err)
	}
	return s, nil
}

// ReleasePages drops the mapping's resident pages from this process
// (MADV_DONTNEED; they stay in the page cache, shared and reclaimable).
// A start reads whole tables through the mapping (the IP trails for the
// kernel maps and the answer trails, the metas, the regex rows), which
// lookups never touch again: released, they leave the resident set, and
// lookups fault back only the pages they read (the filters, and the
// table and keys on a filter hit). Best effort; the store stays usable.
func (s *Store) ReleasePages() error {
	if s.data == nil {
		return nil
	}
	if err := unix.Madvise(s.data, unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("release trail store pages: %w", err)
	}
	return nil
}

// Close unmaps the store. Byte slices obtained from it (MetaBytes, Keys)
// must not be used afterwards.
func (s *Store) Close() error {
	if s.data == nil {
		return nil
	}
	data := s.data
	*s = Store{}
	if err := unix.Munmap(data); err != nil {
		return fmt.Errorf("close trail store: %w", err)
	}
	return nil
}

// faultAddr is what a memory fault panics with under
// debug.SetPanicOnFault.
type faultAddr interface{ Addr() uintptr }

// parseGuarded is parse with a fault on the mapping (the file was
// truncated while mapped) turned into an error. Other panics are bugs and
// are not hidden.
func parseGuarded(data []byte, verify func([32]byte) error) (s *Store, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(faultAddr); !ok {
				panic(r)
			}
			s, err = nil, fmt.Errorf("%w: the file changed while it was read (replace it by rename, never rewrite it in place)", ErrCorrupt)
		}
	}()
	return parse(data, verify)
}

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// parse validates the header, the section table and the small tables, and
// has verify check the body's checksum when it is set. data is a
// read-only mapping.
func parse(data []byte, verify func(sum [32]byte) error) (*Store, error) {
	if len(data) < fixedHeader {
		return nil, corrupt("%d bytes, shorter than the header", len(data))
	}
	if string(data[hMagic:hMagic+len(magic)]) != magic {
		return nil, corrupt("bad magic %q: not a trail store", data[hMagic:hMagic+len(magic)])
	}
	if v := binary.LittleEndian.Uint32(data[hVersion:]); v != version {
		return nil, fmt.Errorf("%w: format version %d, this xtrail reads version %d: recompile the store", ErrVersion, v, version)
	}
	if len(data) < headerSize {
		return nil, corrupt("%d bytes, shorter than the %d-byte header", len(data), headerSize)
	}
	if got, want := headerCRC(data), binary.LittleEndian.Uint32(data[hCRC:]); got != want {
		return nil, corrupt("header checksum %08x, want %08x", got, want)
	}
	if fl := binary.LittleEndian.Uint32(data[hFlags:]); fl&^knownFlags != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrVersion, fl)
	}
	if hs, ns := binary.LittleEndian.Uint32(data[hHdrSize:]), binary.LittleEndian.Uint32(data[hSections:]); hs != headerSize || ns != numSections {
		return nil, corrupt("header size %d with %d sections, want %d with %d", hs, ns, headerSize, numSections)
	}
	if binary.LittleEndian.Uint32(data[hReserved:]) != 0 {
		return nil, corrupt("reserved header field is not zero")
	}
	size := uint64(len(data))
	if fs := binary.LittleEndian.Uint64(data[hFileSize:]); fs != size {
		return nil, corrupt("the header says %d bytes, the file has %d (truncated or appended to)", fs, size)
	}
	s := &Store{data: data, seed: binary.LittleEndian.Uint64(data[hSeed:])}
	s.info = Info{
		Version:   version,
		BuildTime: time.Unix(0, int64(binary.LittleEndian.Uint64(data[hBuildTime:]))),
		Size:      int64(size),
	}
	copy(s.info.SHA256[:], data[hSHA:hSHA+32])

	var secs [numSections][]byte
	for i := range numSections {
		e := data[fixedHeader+i*sectionEnt:]
		off, n := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:])
		if off < headerSize || off%align != 0 || off > size || n > size-off {
			return nil, corrupt("section %s at %d+%d lies outside the body (%d bytes)", sectionName(i), off, n, size)
		}
		if n%uint64(entrySize(i)) != 0 {
			return nil, corrupt("section %s has %d bytes, not a multiple of its %d-byte entries", sectionName(i), n, entrySize(i))
		}
		// A full slice expression: appending to a slice of a read-only
		// mapping must copy, never write into the mapping.
		secs[i] = data[off : off+n : off+n]
	}

	if verify != nil {
		if err := verify(s.info.SHA256); err != nil {
			return nil, err
		}
		s.info.Verified = true
	}

	if err := s.readCounts(secs[secCounts]); err != nil {
		return nil, err
	}
	s.strs, s.metas, s.slots, s.keys = secs[secStrings], secs[secMetas], secs[secNames], secs[secKeys]
	s.ips, s.cidrs, s.regexes, s.sources = secs[secIPs], secs[secCIDRs], secs[secRegexes], secs[secSources]
	st := &s.stats
	// The counts must agree with the tables they describe.
	check := func(what string, count, have int) error {
		if count != have {
			return corrupt("counts say %d %s, the table holds %d", count, what, have)
		}
		return nil
	}
	nslots := len(s.slots) / slotSize
	if err := firstErr(
		check("metas", st.Metas, len(s.metas)/metaSize),
		check("IPs", st.IPs, len(s.ips)/ipSize),
		check("CIDRs", st.CIDRs, len(s.cidrs)/cidrSize),
		check("regexes", st.Regexes, len(s.regexes)/regexSize),
		check("sources", st.Sources, len(s.sources)/sourceSize),
	); err != nil {
		return nil, err
	}
	if nslots == 0 || nslots&(nslots-1) != 0 {
		return nil, corrupt("%d name slots, not a power of two", nslots)
	}
	if st.Names > nslots || st.MaxProbe >= nslots || st.URLs > st.Names {
		return nil, corrupt("%d names, %d URLs and a longest probe of %d in %d slots", st.Names, st.URLs, st.MaxProbe, nslots)
	}
	// Sizes are not counts: they are the sections themselves.
	st.Slots, st.KeyBytes, st.StringBytes = nslots, len(s.keys), len(s.strs)
	filter, err := parseFilter[uint16](secs[secFilter])
	if err != nil {
		return nil, err
	}
	hosts, err := parseFilter[uint8](secs[secHosts])
	if err != nil {
		return nil, err
	}
	heads, err := parseFilter[uint8](secs[secHeads])
	if err != nil {
		return nil, err
	}
	bases, err := parseFilter[uint8](secs[secBases])
	if err != nil {
		return nil, err
	}
	s.filter, s.hosts, s.heads, s.bases = filter, hosts, heads, bases
	st.FilterBytes, st.HostFilterBytes, st.HeadFilterBytes, st.BaseFilterBytes =
		len(secs[secFilter]), len(secs[secHosts]), len(secs[secHeads]), len(secs[secBases])
	s.mask = uint64(nslots - 1)
	s.maxProbe = uint64(st.MaxProbe)
	s.nMetas = uint32(st.Metas)
	st.FileSize = int64(size)

	// The small tables are checked whole, so that Meta, Regexes and
	// Sources need not check string bounds; the big ones (slots, IPs)
	// are checked entry by entry as they are read, which keeps open from
	// touching every page.
	for i := range st.Metas {
		m := s.metas[i*metaSize:]
		if !s.strOK(m[0:]) || !s.strOK(m[8:]) {
			return nil, corrupt("meta %d points outside the strings", i)
		}
	}
	for i := range st.Regexes {
		if !s.strOK(s.regexes[i*regexSize:]) {
			return nil, corrupt("regex %d points outside the strings", i)
		}
	}
	for i := range st.Sources {
		if !s.strOK(s.sources[i*sourceSize:]) {
			return nil, corrupt("source %d points outside the strings", i)
		}
	}
	return s, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// strOK reports whether the (offset u32, length u32) at b lies in the
// strings section.
func (s *Store) strOK(b []byte) bool {
	off, n := uint64(binary.LittleEndian.Uint32(b)), uint64(binary.LittleEndian.Uint32(b[4:]))
	return off+n <= uint64(len(s.strs))
}

// str returns the string bytes at the validated (offset, length) at b.
func (s *Store) str(b []byte) []byte {
	off, n := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	return s.strs[off : off+n : off+n]
}

// verifyFile checks the body's SHA-256, reading the file in 1 MiB chunks.
func verifyFile(f *os.File, size int64, want [32]byte) error {
	// Read exactly what is asked, without read-ahead: pages read this
	// way enter the page cache one by one, so the lookups that follow
	// map 4 KiB at a time, not whole huge folios. Reading through the
	// file rather than the mapping also keeps the pass out of the RSS.
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
	buf := make([]byte, 1<<20)
	h := sha256.New()
	for off := int64(headerSize); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		h.Write(buf[:n])
		off += int64(n)
		if err != nil && off < size {
			return fmt.Errorf("%w: reading the body at %d: %v", ErrCorrupt, off, err)
		}
	}
	var got [32]byte
	h.Sum(got[:0])
	if got != want {
		return corrupt("body checksum %x, want %x", got[:8], want[:8])
	}
	return nil
}

func (s *Store) readCounts(b []byte) error {
	if len(b) < 8 {
		return corrupt("counts section has %d bytes", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n < numCounts || n > uint64(len(b)/8-1) {
		return corrupt("counts section holds %d counts in %d bytes, need %d", n, len(b), numCounts)
	}
	c := func(i int) int {
		// No count of a real store comes near 2^31; clamping keeps a
		// damaged one from turning negative as an int.
		return int(min(binary.LittleEndian.Uint64(b[8+8*i:]), math.MaxInt32))
	}
	s.stats = Stats{
		Names:          c(countNames),
		URLs:           c(countURLs),
		MaxNameKey:     c(countMaxNameKey),
		MaxProbe:       c(countMaxProbe),
		IPs:            c(countIPs),
		CIDRs:          c(countCIDRs),
		Regexes:        c(countRegexes),
		Metas:          c(countMetas),
		Sources:        c(countSources),
		Duplicates:     c(countDuplicates),
		IPDuplicates:   c(countIPDuplicates),
		CIDRDuplicates: c(countCIDRDuplicates),
		Load: LoadStats{
			Rows:         c(countRows),
			Skipped:      c(countSkipped),
			Empty:        c(countEmpty),
			Whitelisted:  c(countWhitelisted),
			NonCanonical: c(countNonCanonical),
			IPRows:       c(countIPRows),
		},
	}
	return nil
}

// Stats returns the counts recorded at build time.
func (s *Store) Stats() Stats { return s.stats }

// Info returns the header facts.
func (s *Store) Info() Info { return s.info }

// LookupName returns the meta index of a domain or URL trail key, which
// must be exactly as trails.csv holds it (lowercase). It does not
// allocate.
func (s *Store) LookupName(key []byte) (metaIdx uint32, ok bool) {
	return lookupName(s, key)
}

// LookupNameString is LookupName for a string key.
func (s *Store) LookupNameString(key string) (metaIdx uint32, ok bool) {
	return lookupName(s, key)
}

func lookupName[T ~string | ~[]byte](s *Store, key T) (uint32, bool) {
	if len(key) == 0 || len(s.slots) == 0 {
		return 0, false
	}
	h := hashKey(key, s.seed)
	if !s.filter.Contains(h) {
		return 0, false
	}
	return probeName(s, key, h)
}

// ProbeName is LookupName past the filter: the table probe for a key
// whose hash h (trails.KeyHash(key, HashSeed())) the caller found in
// NameFilter. It does not allocate.
func (s *Store) ProbeName(key []byte, h uint64) (metaIdx uint32, ok bool) {
	if len(key) == 0 || len(s.slots) == 0 {
		return 0, false
	}
	return probeName(s, key, h)
}

// NameFilter is the filter every name lookup asks first (see filter.go);
// it is read in the mapping and valid until Close.
func (s *Store) NameFilter() *xorfilter.BinaryFuse[uint16] { return &s.filter }

// BaseFilter holds the hash of the last two labels of every name key
// holding a '.' (see the format's bases section); valid until Close.
func (s *Store) BaseFilter() *xorfilter.BinaryFuse[uint8] { return &s.bases }

// HashSeed is the seed of the store's key hash.
func (s *Store) HashSeed() uint64 { return s.seed }

func probeName[T ~string | ~[]byte](s *Store, key T, h uint64) (uint32, bool) {
	tag := uint32(h >> 32)
	i := h & s.mask
	for probe := uint64(0); probe <= s.maxProbe; probe++ {
		sl := s.slots[i*slotSize : i*slotSize+slotSize]
		ref := binary.LittleEndian.Uint32(sl[4:])
		if ref == 0 {
			return 0, false
		}
		if binary.LittleEndian.Uint32(sl) == tag {
			// Entries are checked here, not at open: the table is
			// too big to walk at every start.
			if mi, k, ok := s.entry(ref); ok && string(k) == string(key) {
				return mi, mi < s.nMetas
			}
		}
		i = (i + 1) & s.mask
	}
	return 0, false
}

// MayHaveURLHost reports whether some URL key's part before its first
// '/' may be host: false means certainly none is, so that no key starts
// with host+"/". It does not allocate.
func (s *Store) MayHaveURLHost(host []byte) bool {
	if len(s.slots) == 0 {
		return false
	}
	return s.hosts.Contains(hashKey(host, s.seed))
}

// MayHavePathHead reports whether some key starting with '/' may have
// the head (trails.PathHead) head: false means certainly none has. It
// does not allocate.
func (s *Store) MayHavePathHead(head []byte) bool {
	if len(s.slots) == 0 {
		return false
	}
	return s.heads.Contains(hashKey(head, s.seed))
}

// entry decodes the key entry a slot's ref names; ok is false when it
// does not lie within the keys section (a damaged, unverified store).
func (s *Store) entry(ref uint32) (meta uint32, key []byte, ok bool) {
	off := uint64(ref - 1)
	if off >= uint64(len(s.keys)) {
		return 0, nil, false
	}
	e := s.keys[off:]
	m, n := binary.Uvarint(e)
	if n <= 0 || m > math.MaxUint32 {
		return 0, nil, false
	}
	e = e[n:]
	l, n := binary.Uvarint(e)
	if n <= 0 || l == 0 || l > uint64(len(e)-n) {
		return 0, nil, false
	}
	return uint32(m), e[n : n+int(l) : n+int(l)], true
}

// MaxNameKey is the length of the longest name key without '/'. A
// checked name holds no '/', so a longer suffix cannot be a trail and
// need not be hashed.
func (s *Store) MaxNameKey() int { return s.stats.MaxNameKey }

// NumMetas is the number of metas; valid indexes are below it.
func (s *Store) NumMetas() int { return int(s.nMetas) }

// MetaBytes returns the info and reference texts of a meta, pointing into
// the mapping (valid until Close; do not modify). An index out of range
// gives nil, nil.
func (s *Store) MetaBytes(idx uint32) (info, ref []byte) {
	if idx >= s.nMetas {
		return nil, nil
	}
	m := s.metas[int(idx)*metaSize:]
	return s.str(m[0:]), s.str(m[8:])
}

// Meta is MetaBytes as strings; it allocates them.
func (s *Store) Meta(idx uint32) (info, ref string) {
	i, r := s.MetaBytes(idx)
	return string(i), string(r)
}

// Flags returns a meta's rule flags; 0 for an index out of range.
func (s *Store) Flags(idx uint32) Flags {
	if idx >= s.nMetas {
		return 0
	}
	return Flags(binary.LittleEndian.Uint32(s.metas[int(idx)*metaSize+16:]))
}

// Keys yields every name key and its meta index, in table order. The key
// points into the mapping (valid until Close; do not modify).
func (s *Store) Keys() iter.Seq2[[]byte, uint32] {
	return func(yield func([]byte, uint32) bool) {
		for i := 0; i+slotSize <= len(s.slots); i += slotSize {
			ref := binary.LittleEndian.Uint32(s.slots[i+4:])
			if ref == 0 {
				continue
			}
			mi, k, ok := s.entry(ref)
			if !ok {
				continue // damaged; a verified store has none
			}
			if !yield(k, mi) {
				return
			}
		}
	}
}

// decodeAddr reads the family byte and address of an ips/cidrs entry.
func decodeAddr(e []byte) netip.Addr {
	if e[0] == 4 {
		return netip.AddrFrom4([4]byte(e[8:12]))
	}
	return netip.AddrFrom16([16]byte(e[8:24]))
}

// IPs yields the IP and IP:port trails in order: by address (IPv4
// first), then port.
func (s *Store) IPs() iter.Seq[trails.IPTrail] {
	return func(yield func(trails.IPTrail) bool) {
		for i := 0; i+ipSize <= len(s.ips); i += ipSize {
			e := s.ips[i : i+ipSize]
			t := trails.IPTrail{Addr: decodeAddr(e), Port: binary.LittleEndian.Uint16(e[2:]), Meta: binary.LittleEndian.Uint32(e[4:])}
			if !yield(t) {
				return
			}
		}
	}
}

// LookupIP returns the meta index of the trail for addr and port (0 =
// the bare-IP trail), by binary search. A zone on addr is ignored. It
// does not allocate.
func (s *Store) LookupIP(addr netip.Addr, port uint16) (metaIdx uint32, ok bool) {
	if !addr.IsValid() {
		return 0, false
	}
	var want [ipSize]byte
	fam := byte(6)
	if addr.Is4() {
		fam = 4
		a4 := addr.As4()
		copy(want[8:], a4[:])
	} else {
		a16 := addr.As16()
		copy(want[8:], a16[:])
	}
	want[0] = fam
	lo, hi := 0, len(s.ips)/ipSize
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		e := s.ips[m*ipSize : m*ipSize+ipSize]
		c := compareIPEntry(e, want[:], port)
		switch {
		case c == 0:
			mi := binary.LittleEndian.Uint32(e[4:])
			return mi, mi < s.nMetas
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return 0, false
}

// compareIPEntry orders an entry against want (family and address as an
// entry holds them) and port, as the builder sorted them.
func compareIPEntry(e, want []byte, port uint16) int {
	if e[0] != want[0] {
		if e[0] < want[0] {
			return -1
		}
		return 1
	}
	if c := bytes.Compare(e[8:24], want[8:24]); c != 0 {
		return c
	}
	p := binary.LittleEndian.Uint16(e[2:])
	switch {
	case p < port:
		return -1
	case p > port:
		return 1
	}
	return 0
}

// CIDRs yields the CIDR trails, by address then prefix length. A damaged
// entry (without Verify) may yield an invalid prefix.
func (s *Store) CIDRs() iter.Seq[trails.CIDRTrail] {
	return func(yield func(trails.CIDRTrail) bool) {
		for i := 0; i+cidrSize <= len(s.cidrs); i += cidrSize {
			e := s.cidrs[i : i+cidrSize]
			t := trails.CIDRTrail{Prefix: netip.PrefixFrom(decodeAddr(e), int(e[1])), Meta: binary.LittleEndian.Uint32(e[4:])}
			if !yield(t) {
				return
			}
		}
	}
}

// Regexes yields the regex candidate rows in CSV order (see Input); it
// allocates each key.
func (s *Store) Regexes() iter.Seq[Regex] {
	return func(yield func(Regex) bool) {
		for i := 0; i+regexSize <= len(s.regexes); i += regexSize {
			e := s.regexes[i : i+regexSize]
			r := Regex{
				Key:    string(s.str(e)),
				Meta:   binary.LittleEndian.Uint32(e[8:]),
				Line:   int(binary.LittleEndian.Uint32(e[12:])),
				Source: int(binary.LittleEndian.Uint32(e[16:])),
			}
			if !yield(r) {
				return
			}
		}
	}
}

// Sources returns the sources the store was compiled from.
func (s *Store) Sources() []Source {
	out := make([]Source, 0, len(s.sources)/sourceSize)
	for i := 0; i+sourceSize <= len(s.sources); i += sourceSize {
		e := s.sources[i : i+sourceSize]
		rows := binary.LittleEndian.Uint64(e[8:])
		out = append(out, Source{Name: string(s.str(e)), Rows: int(min(rows, math.MaxInt32))})
	}
	return out
}

// IPSet returns the store's IP and CIDR trails as the kernel maps take
// them, with only the metas they use: the store's metas also serve the
// name trails, and every Set meta takes a slot in the kernel's meta map.
// It allocates the Set.
func (s *Store) IPSet() *trails.Set {
	st := s.Stats()
	set := &trails.Set{
		IPs:   make([]trails.IPTrail, 0, st.IPs),
		CIDRs: make([]trails.CIDRTrail, 0, st.CIDRs),
		Stats: trails.Stats{Rows: st.Load.Rows, Skipped: st.Load.Skipped},
	}
	remap := make(map[uint32]uint32)
	meta := func(mi uint32) uint32 {
		if id, ok := remap[mi]; ok {
			return id
		}
		id := uint32(len(set.Metas))
		info, ref := s.Meta(mi)
		set.Metas = append(set.Metas, trails.Meta{Info: info, Reference: ref})
		remap[mi] = id
		return id
	}
	for t := range s.IPs() {
		t.Meta = meta(t.Meta)
		set.IPs = append(set.IPs, t)
	}
	for c := range s.CIDRs() {
		c.Meta = meta(c.Meta)
		set.CIDRs = append(set.CIDRs, c)
	}
	return set
}
