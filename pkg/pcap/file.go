package pcap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// OpenFile opens a capture file for reading. A regular file is mapped into
// memory: packets are read from the mapping without a copy, where a read(2)
// would copy every byte from the page cache first. Anything else (a pipe,
// a device) is read through a buffer. Close the Reader when done.
//
// The mapped file must not shrink while it is read: reading a page past
// its new end faults (SIGBUS). The caller turns such a fault into an error
// with debug.SetPanicOnFault, as `xtrail sensor -r` does.
func OpenFile(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var src source
	closeFile := f.Close
	if size := fi.Size(); fi.Mode().IsRegular() && size > 0 && size <= maxMapped {
		b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("map %s: %w", path, err)
		}
		_ = unix.Madvise(b, unix.MADV_SEQUENTIAL) // read ahead, drop behind
		m := &mapped{b: b}
		src = m
		closeFile = func() error { return errors.Join(unix.Munmap(b), f.Close()) }
	} else {
		src = bufio.NewReaderSize(f, 1<<20)
	}
	r, err := newReader(src)
	if err != nil {
		closeFile()
		return nil, err
	}
	r.close = closeFile
	return r, nil
}

// Close releases the file of a Reader from OpenFile; Packet data it
// returned must not be used afterwards. A Reader from NewReader has nothing
// to release.
func (r *Reader) Close() error {
	if r.close == nil {
		return nil
	}
	err := r.close()
	r.close = nil
	return err
}

// maxMapped keeps a mapping's length an int on every platform.
const maxMapped = 1<<31 - 1

// releaseStep is how far a mapped file is read between releases of the
// pages behind: they leave the resident set (they stay in the page
// cache), so a long capture does not make the replay's RSS grow with it.
const releaseStep = 1 << 20

// mapped is a capture file mapped into memory, read in order.
type mapped struct {
	b        []byte
	off      int
	released int // pages before this offset were released
}

func (m *mapped) Read(p []byte) (int, error) {
	if m.off >= len(m.b) {
		return 0, io.EOF
	}
	n := copy(p, m.b[m.off:])
	m.advance(n)
	return n, nil
}

// Peek returns a view of the mapping (capacity cut at its end, so an
// append copies rather than writes to the mapping).
func (m *mapped) Peek(n int) ([]byte, error) {
	if n < 0 || len(m.b)-m.off < n {
		return nil, io.ErrUnexpectedEOF
	}
	return m.b[m.off : m.off+n : m.off+n], nil
}

func (m *mapped) Discard(n int) (int, error) {
	k := min(n, len(m.b)-m.off)
	m.advance(k)
	if k < n {
		return k, io.EOF
	}
	return k, nil
}

// advance consumes n bytes and releases the pages that lie wholly before
// the last MaxRecordSize bytes read (the packet being returned may start
// that far back; a released page would fault back in, but needlessly).
func (m *mapped) advance(n int) {
	m.off += n
	if m.off-m.released < releaseStep+MaxRecordSize {
		return
	}
	page := unix.Getpagesize()
	end := (m.off - MaxRecordSize) / page * page
	_ = unix.Madvise(m.b[m.released:end], unix.MADV_DONTNEED) // best effort
	m.released = end
}
