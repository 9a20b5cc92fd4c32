package store

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/pkg/trails"
)

// Stats describes a compiled store. Build returns it; Store.Stats reads
// it back from the counts section.
type Stats struct {
	Names      int // distinct name keys (domains, URLs, regex keys)
	URLs       int // of those, keys holding '/'
	MaxNameKey int // longest name key without '/' (a checked name has none)
	IPs        int
	CIDRs      int
	Regexes    int // regex candidate rows
	Metas      int
	Sources    int
	Slots      int // name table slots
	MaxProbe   int // longest probe sequence in the name table, in slots beyond the first
	// FilterBytes is the name filter's size (header and fingerprints):
	// about 18 bits per name key.
	FilterBytes int
	// HostFilterBytes is the URL host filter's size: about 9 bits per
	// distinct host part of the URL keys.
	HostFilterBytes int
	// HeadFilterBytes is the path head filter's size: about 9 bits per
	// distinct head of the keys starting with '/'.
	HeadFilterBytes int
	// BaseFilterBytes is the bases filter's size: about 9 bits per
	// distinct pair of last labels of the name keys.
	BaseFilterBytes int

	Duplicates     int // name rows whose key an earlier row had (the last row won)
	IPDuplicates   int // IP rows whose (address, port) an earlier row had
	CIDRDuplicates int // CIDR rows whose prefix an earlier row had

	Load LoadStats

	StringBytes int   // interned string section
	KeyBytes    int   // key section
	FileSize    int64 // bytes in the file
}

// maxLoadNum/maxLoadDen is the name table's highest load factor. Linear
// probing stays short below 3/4 (about 2.5 slots per hit and 8.5 per miss
// on average at the top of that range), and the slots cost 16 bytes each.
const (
	maxLoadNum = 3
	maxLoadDen = 4
)

// Build compiles in and writes the store to w. It fails, writing nothing,
// on an input it cannot represent: an empty key, a Meta index out of
// range, an invalid address, or a table past the format's 32-bit offsets.
func Build(w io.Writer, in *Input) (Stats, error) {
	l, err := lay(in)
	if err != nil {
		return Stats{}, fmt.Errorf("build trail store: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.Write(l.header); err != nil {
		return Stats{}, fmt.Errorf("write trail store: %w", err)
	}
	pos := int64(headerSize)
	var zero [align]byte
	for i, sec := range l.sections {
		if _, err := bw.Write(zero[:l.offsets[i]-pos]); err != nil {
			return Stats{}, fmt.Errorf("write trail store: %w", err)
		}
		if _, err := bw.Write(sec); err != nil {
			return Stats{}, fmt.Errorf("write trail store section %s: %w", sectionName(i), err)
		}
		pos = l.offsets[i] + int64(len(sec))
	}
	if err := bw.Flush(); err != nil {
		return Stats{}, fmt.Errorf("write trail store: %w", err)
	}
	return l.stats, nil
}

// Compile builds the store into path atomically: it writes a temporary
// file in the same directory, syncs it, renames it over path and syncs
// the directory, so a reader (or a crash) sees the old store or the new
// one, never a partial file. A running sensor may keep the old file
// mapped; replacing it by rename leaves that mapping intact, which an
// in-place rewrite would not (a truncated mapping faults).
func Compile(path string, in *Input) (st Stats, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return Stats{}, fmt.Errorf("compile trail store: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if st, err = Build(f, in); err != nil {
		return Stats{}, fmt.Errorf("compile %s: %w", path, err)
	}
	// CreateTemp makes the file 0600; a store holds nothing secret and
	// the sensor may run as another user than the updater.
	if err = f.Chmod(0o644); err != nil {
		return Stats{}, fmt.Errorf("compile %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return Stats{}, fmt.Errorf("compile %s: sync: %w", path, err)
	}
	// Drop the written pages from the page cache. Written in big chunks,
	// they sit there in huge folios, and a sensor's lookup would map a
	// whole 2 MiB folio for every byte it touches; read back by the
	// sensor (see Open), they come in page by page. Best effort.
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	if err = f.Close(); err != nil {
		return Stats{}, fmt.Errorf("compile %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return Stats{}, fmt.Errorf("compile %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced.
	d, err := os.Open(dir)
	if err != nil {
		return st, fmt.Errorf("compile %s: sync directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return st, fmt.Errorf("compile %s: sync directory: %w", path, err)
	}
	return st, nil
}

// layout is a compiled store in memory, ready to write.
type layout struct {
	header   []byte
	sections [numSections][]byte
	offsets  [numSections]int64
	stats    Stats
}

// lay compiles in into sections and the header.
func lay(in *Input) (*layout, error) {
	l := &layout{}
	st := &l.stats
	st.Load = in.Load
	nMetas := len(in.Metas)
	if nMetas > math.MaxUint32 {
		return nil, fmt.Errorf("%d metas: more than the format's 32-bit indexes", nMetas)
	}
	checkMeta := func(what string, mi uint32) error {
		if int(mi) >= nMetas {
			return fmt.Errorf("%s: meta %d out of range (%d metas)", what, mi, nMetas)
		}
		return nil
	}

	strs := newStringTable()
	// Metas.
	metas := make([]byte, 0, nMetas*metaSize)
	for _, m := range in.Metas {
		infoOff, infoLen, err := strs.add(m.Info)
		if err != nil {
			return nil, err
		}
		ro, rl, err := strs.add(m.Reference)
		if err != nil {
			return nil, err
		}
		metas = binary.LittleEndian.AppendUint32(metas, infoOff)
		metas = binary.LittleEndian.AppendUint32(metas, infoLen)
		metas = binary.LittleEndian.AppendUint32(metas, ro)
		metas = binary.LittleEndian.AppendUint32(metas, rl)
		metas = binary.LittleEndian.AppendUint32(metas, uint32(metaFlags(m)))
	}
	st.Metas = nMetas

	// Names.
	nt, err := buildNames(in.Names, nMetas, defaultSeed)
	if err != nil {
		return nil, err
	}
	st.Names, st.URLs, st.MaxNameKey = nt.names, nt.urls, nt.maxNameKey
	st.Duplicates, st.MaxProbe = nt.dups, nt.maxProbe
	st.Slots = len(nt.slots) / buildSlotSize

	// IPs and CIDRs: sorted by key, the last row of each key kept.
	ips := make([]trails.IPTrail, len(in.IPs))
	for i, t := range in.IPs {
		if !t.Addr.IsValid() {
			return nil, fmt.Errorf("IP trail %d: invalid address", i)
		}
		if err := checkMeta("IP trail "+t.Addr.String(), t.Meta); err != nil {
			return nil, err
		}
		t.Addr = t.Addr.WithZone("")
		ips[i] = t
	}
	ips, st.IPDuplicates = lastOfEach(ips, compareIP)
	ipSec := make([]byte, 0, len(ips)*ipSize)
	for _, t := range ips {
		ipSec = appendAddrEntry(ipSec, t.Addr, 0, t.Port, t.Meta)
	}
	st.IPs = len(ips)

	cidrs := make([]trails.CIDRTrail, len(in.CIDRs))
	for i, t := range in.CIDRs {
		if !t.Prefix.IsValid() {
			return nil, fmt.Errorf("CIDR trail %d: invalid prefix", i)
		}
		if err := checkMeta("CIDR trail "+t.Prefix.String(), t.Meta); err != nil {
			return nil, err
		}
		t.Prefix = netip.PrefixFrom(t.Prefix.Addr().WithZone(""), t.Prefix.Bits()).Masked()
		cidrs[i] = t
	}
	cidrs, st.CIDRDuplicates = lastOfEach(cidrs, compareCIDR)
	cidrSec := make([]byte, 0, len(cidrs)*cidrSize)
	for _, t := range cidrs {
		cidrSec = appendAddrEntry(cidrSec, t.Prefix.Addr(), uint8(t.Prefix.Bits()), 0, t.Meta)
	}
	st.CIDRs = len(cidrs)

	// Regexes.
	rxSec := make([]byte, 0, len(in.Regexes)*regexSize)
	for _, r := range in.Regexes {
		mi := r.Meta
		if m, ok := nt.lookup(r.Key); ok {
			mi = m // the key's last row, as Maltrail's dict holds it
		}
		if err := checkMeta(fmt.Sprintf("regex trail %q", r.Key), mi); err != nil {
			return nil, err
		}
		if r.Line < 0 || r.Line > math.MaxUint32 || r.Source < 0 || r.Source > math.MaxUint32 {
			return nil, fmt.Errorf("regex trail %q: line %d or source %d out of range", r.Key, r.Line, r.Source)
		}
		ko, kl, err := strs.add(r.Key)
		if err != nil {
			return nil, err
		}
		rxSec = binary.LittleEndian.AppendUint32(rxSec, ko)
		rxSec = binary.LittleEndian.AppendUint32(rxSec, kl)
		rxSec = binary.LittleEndian.AppendUint32(rxSec, mi)
		rxSec = binary.LittleEndian.AppendUint32(rxSec, uint32(r.Line))
		rxSec = binary.LittleEndian.AppendUint32(rxSec, uint32(r.Source))
		rxSec = binary.LittleEndian.AppendUint32(rxSec, 0)
	}
	st.Regexes = len(in.Regexes)

	// Sources.
	srcSec := make([]byte, 0, len(in.Sources)*sourceSize)
	for _, s := range in.Sources {
		no, nl, err := strs.add(s.Name)
		if err != nil {
			return nil, err
		}
		if s.Rows < 0 {
			return nil, fmt.Errorf("source %q: negative row count", s.Name)
		}
		srcSec = binary.LittleEndian.AppendUint32(srcSec, no)
		srcSec = binary.LittleEndian.AppendUint32(srcSec, nl)
		srcSec = binary.LittleEndian.AppendUint64(srcSec, uint64(s.Rows))
	}
	st.Sources = len(in.Sources)
	st.StringBytes = len(strs.buf)

	slots, keys, err := nt.pack() // after the regexes' lookups
	if err != nil {
		return nil, err
	}
	st.KeyBytes = len(keys)
	filter, err := buildFilter[uint16](nt.hashes)
	if err != nil {
		return nil, err
	}
	hosts, err := buildFilter[uint8](nt.hostHashes)
	if err != nil {
		return nil, err
	}
	heads, err := buildFilter[uint8](nt.headHashes)
	if err != nil {
		return nil, err
	}
	bases, err := buildFilter[uint8](nt.baseHashes)
	if err != nil {
		return nil, err
	}
	nt.hashes, nt.hostHashes, nt.headHashes, nt.baseHashes = nil, nil, nil, nil
	st.FilterBytes, st.HostFilterBytes, st.HeadFilterBytes, st.BaseFilterBytes = len(filter), len(hosts), len(heads), len(bases)
	l.sections = [numSections][]byte{
		secStrings: strs.buf,
		secMetas:   metas,
		secNames:   slots,
		secKeys:    keys,
		secIPs:     ipSec,
		secCIDRs:   cidrSec,
		secRegexes: rxSec,
		secSources: srcSec,
		secCounts:  encodeCounts(st),
		secFilter:  filter,
		secHosts:   hosts,
		secHeads:   heads,
		secBases:   bases,
	}
	pos := int64(headerSize)
	for i, sec := range l.sections {
		pos = alignUp(pos)
		l.offsets[i] = pos
		pos += int64(len(sec))
	}
	st.FileSize = pos
	// The counts hold no file size, so the section encoded above is
	// final; the header carries the size.

	sum := sha256.New()
	var zero [align]byte
	p := int64(headerSize)
	for i, sec := range l.sections {
		sum.Write(zero[:l.offsets[i]-p])
		sum.Write(sec)
		p = l.offsets[i] + int64(len(sec))
	}
	bt := in.BuildTime
	if bt.IsZero() {
		bt = time.Now()
	}
	h := make([]byte, headerSize)
	copy(h[hMagic:], magic)
	binary.LittleEndian.PutUint32(h[hVersion:], version)
	binary.LittleEndian.PutUint32(h[hFlags:], 0)
	binary.LittleEndian.PutUint64(h[hBuildTime:], uint64(bt.UnixNano()))
	binary.LittleEndian.PutUint64(h[hFileSize:], uint64(st.FileSize))
	binary.LittleEndian.PutUint32(h[hHdrSize:], headerSize)
	binary.LittleEndian.PutUint32(h[hSections:], numSections)
	binary.LittleEndian.PutUint64(h[hSeed:], nt.seed)
	sum.Sum(h[hSHA:hSHA])
	for i, sec := range l.sections {
		e := h[fixedHeader+i*sectionEnt:]
		binary.LittleEndian.PutUint64(e, uint64(l.offsets[i]))
		binary.LittleEndian.PutUint64(e[8:], uint64(len(sec)))
	}
	binary.LittleEndian.PutUint32(h[hCRC:], headerCRC(h))
	l.header = h
	return l, nil
}

func alignUp(n int64) int64 { return (n + align - 1) &^ (align - 1) }

// headerCRC is the CRC-32C of the header with its CRC field taken as zero.
func headerCRC(h []byte) uint32 {
	tab := crc32.MakeTable(crc32.Castagnoli)
	c := crc32.Update(0, tab, h[:hCRC])
	c = crc32.Update(c, tab, []byte{0, 0, 0, 0})
	return crc32.Update(c, tab, h[hCRC+4:headerSize])
}

func encodeCounts(st *Stats) []byte {
	var c [numCounts]uint64
	c[countNames] = uint64(st.Names)
	c[countURLs] = uint64(st.URLs)
	c[countMaxNameKey] = uint64(st.MaxNameKey)
	c[countMaxProbe] = uint64(st.MaxProbe)
	c[countIPs] = uint64(st.IPs)
	c[countCIDRs] = uint64(st.CIDRs)
	c[countRegexes] = uint64(st.Regexes)
	c[countMetas] = uint64(st.Metas)
	c[countSources] = uint64(st.Sources)
	c[countDuplicates] = uint64(st.Duplicates)
	c[countIPDuplicates] = uint64(st.IPDuplicates)
	c[countCIDRDuplicates] = uint64(st.CIDRDuplicates)
	c[countRows] = uint64(st.Load.Rows)
	c[countSkipped] = uint64(st.Load.Skipped)
	c[countEmpty] = uint64(st.Load.Empty)
	c[countWhitelisted] = uint64(st.Load.Whitelisted)
	c[countNonCanonical] = uint64(st.Load.NonCanonical)
	c[countIPRows] = uint64(st.Load.IPRows)
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 8*(numCounts+1)), numCounts)
	for _, v := range c {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// metaFlags precomputes the rule flags of a meta from its info text.
func metaFlags(m trails.Meta) Flags {
	f := Flags(m.Flags()) // attacker, parking site, malware: the same bits
	if strings.Contains(m.Info, "suspicious") || strings.Contains(m.Info, "sinkhole") {
		f |= FlagNSSkip
	}
	if strings.Contains(m.Info, "dynamic") || strings.Contains(m.Info, "free web") {
		f |= FlagDynSkip
	}
	return f
}

func compareIP(a, b trails.IPTrail) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

func compareCIDR(a, b trails.CIDRTrail) int {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

// appendAddrEntry appends an ips or cidrs entry.
func appendAddrEntry(b []byte, a netip.Addr, bits uint8, port uint16, meta uint32) []byte {
	fam := byte(6)
	var addr [16]byte
	if a.Is4() {
		fam = 4
		a4 := a.As4()
		copy(addr[:], a4[:])
	} else {
		addr = a.As16()
	}
	b = append(b, fam, bits)
	b = binary.LittleEndian.AppendUint16(b, port)
	b = binary.LittleEndian.AppendUint32(b, meta)
	return append(b, addr[:]...)
}

// stringTable interns the strings section.
type stringTable struct {
	buf []byte
	off map[string]uint32
}

func newStringTable() *stringTable { return &stringTable{off: make(map[string]uint32)} }

func (t *stringTable) add(s string) (off, n uint32, err error) {
	if s == "" {
		return 0, 0, nil
	}
	if o, ok := t.off[s]; ok {
		return o, uint32(len(s)), nil
	}
	if uint64(len(t.buf))+uint64(len(s)) > math.MaxUint32 {
		return 0, 0, fmt.Errorf("strings past the format's 4 GiB")
	}
	o := uint32(len(t.buf))
	t.buf = append(t.buf, s...)
	t.off[s] = o
	return o, uint32(len(s)), nil
}

// nameTable is the names and keys sections under construction, with
// 16-byte slots {tag u32, key off u32, key len u32, meta u32} over the raw
// key bytes, so that a repeated key can take its new meta in place; pack
// writes the file's layout.
type nameTable struct {
	slots      []byte
	keys       []byte
	hashes     []uint64 // hashKey of every distinct key, for the filter
	hostHashes []uint64 // hashKey of every URL key's host part (repeats included)
	headHashes []uint64 // hashKey of the head of every key starting with '/' (repeats included)
	baseHashes []uint64 // hashKey of the last two labels of every key without '/' holding a '.' (repeats included)
	mask       uint64
	seed       uint64
	names      int
	urls       int
	maxNameKey int
	dups       int
	maxProbe   int
}

// buildNames inserts the rows into an open-addressing table sized for
// len(rows) keys; a repeated key overwrites the meta, so the table itself
// dedups, without a Go map of a million strings.
func buildNames(rows []Name, nMetas int, seed uint64) (*nameTable, error) {
	n := uint64(minSlots)
	for n*maxLoadNum < uint64(len(rows))*maxLoadDen {
		n <<= 1
	}
	if n > math.MaxUint32 {
		return nil, fmt.Errorf("%d name rows: more than the format's 32-bit slots", len(rows))
	}
	t := &nameTable{slots: make([]byte, n*buildSlotSize), mask: n - 1, seed: seed}
	for _, r := range rows {
		if r.Key == "" {
			return nil, fmt.Errorf("name trail with an empty key")
		}
		if int(r.Meta) >= nMetas {
			return nil, fmt.Errorf("name trail %q: meta %d out of range (%d metas)", r.Key, r.Meta, nMetas)
		}
		if err := t.insert(r.Key, r.Meta); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// pack turns the build-time table (16-byte slots over raw key bytes) into
// the file's layout: 8-byte slots {tag, entry ref} over key entries
// {meta uvarint, length uvarint, bytes}, written in table order. The
// slots are rewritten in place (slot i's new bytes lie at or below its
// old ones, already read).
func (t *nameTable) pack() ([]byte, []byte, error) {
	n := len(t.slots) / buildSlotSize
	keys := make([]byte, 0, len(t.keys)+t.names*4)
	for i := range n {
		old := t.slots[i*buildSlotSize : i*buildSlotSize+buildSlotSize]
		tag := binary.LittleEndian.Uint32(old[0:])
		off := binary.LittleEndian.Uint32(old[4:])
		klen := binary.LittleEndian.Uint32(old[8:])
		meta := binary.LittleEndian.Uint32(old[12:])
		var ref uint32
		if klen != 0 {
			if uint64(len(keys))+1 > math.MaxUint32 {
				return nil, nil, fmt.Errorf("name keys past the format's 4 GiB")
			}
			ref = uint32(len(keys)) + 1
			keys = binary.AppendUvarint(keys, uint64(meta))
			keys = binary.AppendUvarint(keys, uint64(klen))
			keys = append(keys, t.keys[off:off+klen]...)
		}
		sl := t.slots[i*slotSize : i*slotSize+slotSize]
		binary.LittleEndian.PutUint32(sl[0:], tag)
		binary.LittleEndian.PutUint32(sl[4:], ref)
	}
	if uint64(len(keys)) > math.MaxUint32 {
		return nil, nil, fmt.Errorf("name keys past the format's 4 GiB")
	}
	return t.slots[:n*slotSize], keys, nil
}

func (t *nameTable) insert(key string, meta uint32) error {
	h := hashKey(key, t.seed)
	tag := uint32(h >> 32)
	i := h & t.mask
	for probe := 0; ; probe++ {
		s := t.slots[i*buildSlotSize : i*buildSlotSize+buildSlotSize]
		klen := binary.LittleEndian.Uint32(s[8:])
		if klen == 0 {
			if uint64(len(t.keys))+uint64(len(key)) > math.MaxUint32 {
				return fmt.Errorf("name keys past the format's 4 GiB")
			}
			binary.LittleEndian.PutUint32(s[0:], tag)
			binary.LittleEndian.PutUint32(s[4:], uint32(len(t.keys)))
			binary.LittleEndian.PutUint32(s[8:], uint32(len(key)))
			binary.LittleEndian.PutUint32(s[12:], meta)
			t.keys = append(t.keys, key...)
			t.hashes = append(t.hashes, h)
			t.names++
			if slash := strings.IndexByte(key, '/'); slash >= 0 {
				t.hostHashes = append(t.hostHashes, hashKey(key[:slash], t.seed))
				if slash == 0 {
					t.headHashes = append(t.headHashes, hashKey(trails.PathHead(key), t.seed))
				}
				t.urls++
			} else {
				if strings.IndexByte(key, '.') >= 0 {
					t.baseHashes = append(t.baseHashes, hashKey(trails.LastTwoLabels(key), t.seed))
				}
				t.maxNameKey = max(t.maxNameKey, len(key))
			}
			t.maxProbe = max(t.maxProbe, probe)
			return nil
		}
		if binary.LittleEndian.Uint32(s[0:]) == tag && int(klen) == len(key) {
			off := binary.LittleEndian.Uint32(s[4:])
			if string(t.keys[off:off+klen]) == key {
				binary.LittleEndian.PutUint32(s[12:], meta) // the last row wins
				t.dups++
				return nil
			}
		}
		i = (i + 1) & t.mask
	}
}

// lookup finds a key during the build (for the regexes' metas).
func (t *nameTable) lookup(key string) (uint32, bool) {
	if key == "" {
		return 0, false
	}
	h := hashKey(key, t.seed)
	tag := uint32(h >> 32)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i*buildSlotSize : i*buildSlotSize+buildSlotSize]
		klen := binary.LittleEndian.Uint32(s[8:])
		if klen == 0 {
			return 0, false
		}
		if binary.LittleEndian.Uint32(s[0:]) == tag && int(klen) == len(key) {
			off := binary.LittleEndian.Uint32(s[4:])
			if string(t.keys[off:off+klen]) == key {
				return binary.LittleEndian.Uint32(s[12:]), true
			}
		}
	}
}

// lastOfEach sorts items by cmp, keeping the input order among equal ones
// (stable), and keeps only the last item of each run of equal keys: a later
// row of the same key wins, as in Maltrail's dict. It returns the kept
// items and how many it dropped.
func lastOfEach[T any](items []T, cmp func(a, b T) int) ([]T, int) {
	slices.SortStableFunc(items, cmp)
	kept := items[:0]
	for i, t := range items {
		if i+1 < len(items) && cmp(t, items[i+1]) == 0 {
			continue
		}
		kept = append(kept, t)
	}
	return kept, len(items) - len(kept)
}
