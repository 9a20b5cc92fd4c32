package store

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/internal/testenv"
)

// TestOpenBringsPagesInSmall: a store that is not in the page cache
// enters it page by page at Open (the checksum pass), so that a lookup
// later maps a page (and the fault-around window), never a large folio.
// A read through the mapping with read-ahead on before the checksum pass
// made the kernel read the rest of the file in folios growing to 2 MiB
// (Linux 6.18, ext4), which the lookups of a replay then mapped whole.
// Root: page flags come from /proc/kpageflags.
func TestOpenBringsPagesInSmall(t *testing.T) {
	testenv.RequireRoot(t)
	// 20 MB: read-ahead reaches large folios after the first 8 MB
	path := filepath.Join(t.TempDir(), "trails.xts")
	if _, err := Compile(path, filterInput(500000)); err != nil {
		t.Fatal(err)
	}
	if cached := cachedPages(t, path); cached != 0 {
		// Compile drops the pages it wrote; a file system that cannot
		// (tmpfs) keeps every file in memory, and this test is moot.
		t.Skipf("%s: %d pages stay in the page cache after Compile dropped them (tmpfs?)", path, cached)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// fault every page in, as lookups over time would
	var sum byte
	for i := 0; i < len(s.data); i += os.Getpagesize() {
		sum += s.data[i]
	}
	pages, large := mappedFolios(t, s.data)
	t.Logf("%d pages of %d MB mapped, %d of them in large folios (byte sum %d)", pages, len(s.data)>>20, large, sum)
	if pages < len(s.data)/os.Getpagesize() {
		t.Fatalf("only %d pages mapped after touching all", pages)
	}
	if large > 0 {
		t.Errorf("%d of %d pages are in large folios: a lookup would map more than its page", large, pages)
	}
}

// cachedPages counts the pages of the file in the page cache (mincore).
func cachedPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// mappedFolios counts the pages of m present in this process and, of
// those, the ones that belong to a large (compound) folio, from
// /proc/self/pagemap and /proc/kpageflags.
func mappedFolios(t *testing.T, m []byte) (present, large int) {
	t.Helper()
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	kf, err := os.Open("/proc/kpageflags")
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	ps := uintptr(os.Getpagesize())
	n := len(m) / int(ps)
	ents := make([]byte, 8*n)
	if _, err := pm.ReadAt(ents, int64(uintptr(unsafe.Pointer(&m[0]))/ps*8)); err != nil {
		t.Fatal(err)
	}
	const (
		pagePresent = 1 << 63
		pfnMask     = 1<<55 - 1
		kpfCompHead = 1 << 15
		kpfCompTail = 1 << 16
	)
	var fl [8]byte
	for i := range n {
		e := binary.LittleEndian.Uint64(ents[8*i:])
		if e&pagePresent == 0 {
			continue
		}
		present++
		if _, err := kf.ReadAt(fl[:], int64(e&pfnMask)*8); err != nil {
			t.Fatal(err)
		}
		if binary.LittleEndian.Uint64(fl[:])&(kpfCompHead|kpfCompTail) != 0 {
			large++
		}
	}
	return present, large
}
