// Package pcap reads capture files for `xtrail sensor -r`: classic pcap
// (microsecond and nanosecond, either byte order) and pcapng, and turns
// their link-layer frames into the Ethernet frames the XDP program parses.
//
// The input is untrusted. No length read from the file is used to allocate
// or to read before it has been checked against MaxRecordSize, a corrupt file
// yields a descriptive error instead of a panic, and a block or record larger
// than the limit is an error rather than a reason to allocate.
package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// MaxRecordSize bounds a packet record or a pcapng block that the reader
// loads into memory. It is libpcap's largest snaplen (256 KiB); unknown
// pcapng blocks of any size are skipped without being loaded.
const MaxRecordSize = 256 << 10

// Packet is one captured frame.
type Packet struct {
	Time     time.Time // capture time; zero for a pcapng Simple Packet Block, which has none
	LinkType uint32    // LINKTYPE_* of the frame's interface
	Data     []byte    // captured bytes; valid until the next call to Next
	OrigLen  int       // length on the wire (≥ len(Data) unless the file lies)
}

// ErrFormat is wrapped by every error that reports a malformed file, so a
// caller can tell corruption (errors.Is(err, ErrFormat)) from I/O failure.
var ErrFormat = errors.New("malformed capture")

const (
	magicMicro = 0xa1b2c3d4
	magicNano  = 0xa1b23c4d

	blockSHB = 0x0a0d0d0a
	blockIDB = 0x00000001
	blockOPB = 0x00000002 // obsolete Packet Block, still written by old tools
	blockSPB = 0x00000003
	blockEPB = 0x00000006
	bomNG    = 0x1a2b3c4d

	optEndOfOpt = 0
	optTSResol  = 9
	optTSOffset = 14

	// linkTypeMask keeps the link type of a classic header's network field;
	// the high bits carry FCS information (as libpcap's LT_LINKTYPE).
	linkTypeMask = 0x03ffffff
)

type iface struct {
	linkType    uint32
	snaplen     uint32
	unitsPerSec uint64 // timestamp ticks per second; 0 if if_tsresol was unusable
	offset      int64  // if_tsoffset, seconds
}

// source is what a Reader reads: a bufio.Reader over a stream, or a
// capture file mapped into memory (OpenFile).
type source interface {
	io.Reader
	// Peek returns the next n bytes without consuming them, valid until
	// the next read; an error when they are not all there (or, for a
	// buffered stream, more than its buffer holds).
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
}

// Reader reads packets from a pcap or pcapng stream.
type Reader struct {
	br    source
	close func() error // OpenFile's: unmap and close the file
	order binary.ByteOrder
	ng    bool
	off   int64 // bytes consumed, for error messages
	err   error // sticky: the stream cannot be resynchronised

	// classic pcap
	linkType uint32
	nano     bool

	// pcapng: interfaces of the current section
	ifaces []iface

	hdr [24]byte
	buf []byte
}

// NewReader reads the file header (pcap) or first Section Header Block
// (pcapng) from r.
func NewReader(r io.Reader) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return newReader(br)
}

func newReader(br source) (*Reader, error) {
	rd := &Reader{br: br}
	if err := rd.readFull(rd.hdr[:4]); err != nil {
		return nil, rd.formatErr("reading magic number: %w", err)
	}
	switch m := binary.BigEndian.Uint32(rd.hdr[:4]); {
	case m == magicMicro || m == magicNano:
		rd.order = binary.BigEndian
	case binary.LittleEndian.Uint32(rd.hdr[:4]) == magicMicro || binary.LittleEndian.Uint32(rd.hdr[:4]) == magicNano:
		rd.order = binary.LittleEndian
	case m == blockSHB:
		rd.ng = true
		if err := rd.readSHB(); err != nil {
			return nil, err
		}
		return rd, nil
	default:
		return nil, rd.formatErr("unknown magic number %#08x: not a pcap or pcapng file", m)
	}
	rd.nano = rd.order.Uint32(rd.hdr[:4]) == magicNano
	if err := rd.readFull(rd.hdr[4:24]); err != nil {
		return nil, rd.formatErr("reading pcap file header: %w", err)
	}
	if major := rd.order.Uint16(rd.hdr[4:6]); major != 2 {
		return nil, rd.formatErr("unsupported pcap version %d.%d", major, rd.order.Uint16(rd.hdr[6:8]))
	}
	rd.linkType = rd.order.Uint32(rd.hdr[20:24]) & linkTypeMask
	return rd, nil
}

// IsNG reports whether the input is pcapng.
func (r *Reader) IsNG() bool { return r.ng }

// Next returns the next packet, or io.EOF after the last one. A malformed
// record returns an error wrapping ErrFormat. If the reader can continue
// past it (a pcapng block whose framing is intact but whose content is
// not), the next call does; otherwise every later call returns the same
// error.
func (r *Reader) Next() (Packet, error) {
	if r.err != nil {
		return Packet{}, r.err
	}
	if r.ng {
		return r.nextNG()
	}
	return r.nextClassic()
}

func (r *Reader) nextClassic() (Packet, error) {
	start := r.off
	h := r.hdr[:16]
	if n, err := io.ReadFull(r.br, h); err != nil {
		r.off += int64(n)
		if err == io.EOF {
			return Packet{}, io.EOF
		}
		return Packet{}, r.fail(r.formatErr("record at offset %d: truncated record header: %w", start, err))
	}
	r.off += 16
	sec := r.order.Uint32(h[0:4])
	frac := r.order.Uint32(h[4:8])
	incl := r.order.Uint32(h[8:12])
	orig := r.order.Uint32(h[12:16])
	if incl > MaxRecordSize {
		return Packet{}, r.fail(r.formatErr("record at offset %d: captured length %d exceeds %d", start, incl, MaxRecordSize))
	}
	data, err := r.take(int(incl))
	if err != nil {
		return Packet{}, r.fail(r.formatErr("record at offset %d: truncated packet data (%d bytes announced): %w", start, incl, err))
	}
	ns := int64(frac)
	if !r.nano {
		ns *= 1000
	}
	// time.Unix normalises a fraction ≥ 1 s, which a sloppy writer can
	// produce, instead of rejecting the packet.
	return Packet{Time: time.Unix(int64(sec), ns), LinkType: r.linkType, Data: data, OrigLen: int(orig)}, nil
}

func (r *Reader) nextNG() (Packet, error) {
	for {
		start := r.off
		h := r.hdr[:8]
		if n, err := io.ReadFull(r.br, h); err != nil {
			r.off += int64(n)
			if err == io.EOF {
				return Packet{}, io.EOF
			}
			return Packet{}, r.fail(r.formatErr("block at offset %d: truncated block header: %w", start, err))
		}
		r.off += 8
		typ := r.order.Uint32(h[0:4])
		if typ == blockSHB {
			// A new section, possibly in the other byte order: the length
			// can only be read after its byte-order magic.
			if err := r.readSHBAfterLength(start, h[4:8]); err != nil {
				return Packet{}, err
			}
			continue
		}
		total := r.order.Uint32(h[4:8])
		if total < 12 || total%4 != 0 {
			return Packet{}, r.fail(r.formatErr("block at offset %d (type %#x): invalid block length %d", start, typ, total))
		}
		switch typ {
		case blockIDB, blockEPB, blockSPB, blockOPB:
		default:
			// Unknown or uninteresting (name resolution, statistics,
			// decryption secrets, custom…): skip without loading it.
			if err := r.discard(int64(total) - 12); err != nil {
				return Packet{}, r.fail(r.formatErr("block at offset %d (type %#x): truncated block body: %w", start, typ, err))
			}
			if err := r.checkTrailer(start, typ, total); err != nil {
				return Packet{}, err
			}
			continue
		}
		if total > MaxRecordSize {
			return Packet{}, r.fail(r.formatErr("block at offset %d (type %#x): length %d exceeds %d", start, typ, total, MaxRecordSize))
		}
		body := r.grow(int(total) - 12)
		if err := r.readFull(body); err != nil {
			return Packet{}, r.fail(r.formatErr("block at offset %d (type %#x): truncated block body: %w", start, typ, err))
		}
		if err := r.checkTrailer(start, typ, total); err != nil {
			return Packet{}, err
		}
		switch typ {
		case blockIDB:
			if err := r.parseIDB(body); err != nil {
				return Packet{}, r.formatErr("interface description block at offset %d: %w", start, err)
			}
		case blockEPB:
			return r.parseEPB(start, body)
		case blockOPB:
			return r.parseOPB(start, body)
		case blockSPB:
			return r.parseSPB(start, body)
		}
	}
}

// checkTrailer reads a block's trailing length, which must repeat the
// leading one: a mismatch means we lost the block boundaries.
func (r *Reader) checkTrailer(start int64, typ, total uint32) error {
	t := r.hdr[:4]
	if err := r.readFull(t); err != nil {
		return r.fail(r.formatErr("block at offset %d (type %#x): truncated block trailer: %w", start, typ, err))
	}
	if got := r.order.Uint32(t); got != total {
		return r.fail(r.formatErr("block at offset %d (type %#x): trailing length %d does not match leading length %d", start, typ, got, total))
	}
	return nil
}

// readSHB reads the Section Header Block that starts the file, whose type
// has just been read.
func (r *Reader) readSHB() error {
	if err := r.readFull(r.hdr[4:8]); err != nil {
		return r.fail(r.formatErr("section header block: truncated: %w", err))
	}
	return r.readSHBAfterLength(0, r.hdr[4:8])
}

// readSHBAfterLength reads the rest of a Section Header Block that started
// at offset start, given the raw bytes of its length field (already
// consumed). It sets the section's byte order and forgets the previous
// section's interfaces.
func (r *Reader) readSHBAfterLength(start int64, rawLen []byte) error {
	var raw [4]byte
	copy(raw[:], rawLen) // rawLen may alias r.hdr, which is reused below
	b := r.hdr[:16]      // BOM, major, minor, section length
	if err := r.readFull(b); err != nil {
		return r.fail(r.formatErr("section header block at offset %d: truncated: %w", start, err))
	}
	switch {
	case binary.LittleEndian.Uint32(b[0:4]) == bomNG:
		r.order = binary.LittleEndian
	case binary.BigEndian.Uint32(b[0:4]) == bomNG:
		r.order = binary.BigEndian
	default:
		return r.fail(r.formatErr("section header block at offset %d: bad byte-order magic %#x", start, b[0:4]))
	}
	total := r.order.Uint32(raw[:])
	if total < 28 || total%4 != 0 {
		return r.fail(r.formatErr("section header block at offset %d: invalid block length %d", start, total))
	}
	if major := r.order.Uint16(b[4:6]); major != 1 {
		return r.fail(r.formatErr("section header block at offset %d: unsupported pcapng version %d.%d", start, major, r.order.Uint16(b[6:8])))
	}
	// Options (hardware, OS, application) are of no use to the sensor.
	if err := r.discard(int64(total) - 28); err != nil {
		return r.fail(r.formatErr("section header block at offset %d: truncated options: %w", start, err))
	}
	if err := r.checkTrailer(start, blockSHB, total); err != nil {
		return err
	}
	r.ifaces = r.ifaces[:0]
	return nil
}

// parseIDB adds an interface. It is added even when its options are
// malformed, so that interface numbering of later packets stays right; its
// packets then fail individually if the timestamp resolution is unusable.
func (r *Reader) parseIDB(body []byte) error {
	if len(body) < 8 {
		return fmt.Errorf("%w: body of %d bytes is shorter than 8", ErrFormat, len(body))
	}
	ifc := iface{
		linkType:    uint32(r.order.Uint16(body[0:2])),
		snaplen:     r.order.Uint32(body[4:8]),
		unitsPerSec: 1_000_000,
	}
	err := r.parseIDBOptions(body[8:], &ifc)
	r.ifaces = append(r.ifaces, ifc)
	return err
}

func (r *Reader) parseIDBOptions(opts []byte, ifc *iface) error {
	for len(opts) >= 4 {
		code := r.order.Uint16(opts[0:2])
		n := int(r.order.Uint16(opts[2:4]))
		if code == optEndOfOpt {
			return nil
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(opts) {
			return fmt.Errorf("%w: option %d of %d bytes overruns the block", ErrFormat, code, n)
		}
		v := opts[4 : 4+n]
		switch code {
		case optTSResol:
			if n < 1 {
				return fmt.Errorf("%w: empty if_tsresol", ErrFormat)
			}
			u, ok := tsUnits(v[0])
			ifc.unitsPerSec = u
			if !ok {
				return fmt.Errorf("%w: unsupported if_tsresol %#x", ErrFormat, v[0])
			}
		case optTSOffset:
			if n != 8 {
				return fmt.Errorf("%w: if_tsoffset of %d bytes", ErrFormat, n)
			}
			ifc.offset = int64(r.order.Uint64(v))
		}
		opts = opts[4+padded:]
	}
	return nil
}

// tsUnits decodes if_tsresol: 10^-v seconds, or 2^-(v&0x7f) when the high
// bit is set. Resolutions finer than a uint64 can count are refused.
func tsUnits(v byte) (uint64, bool) {
	if v&0x80 != 0 {
		e := v & 0x7f
		if e > 63 {
			return 0, false
		}
		return 1 << e, true
	}
	if v > 19 {
		return 0, false
	}
	u := uint64(1)
	for range v {
		u *= 10
	}
	return u, true
}

func (r *Reader) iface(id uint32) (*iface, error) {
	if id >= uint32(len(r.ifaces)) {
		return nil, fmt.Errorf("%w: packet on interface %d, but the section defines %d", ErrFormat, id, len(r.ifaces))
	}
	return &r.ifaces[id], nil
}

func (r *Reader) parseEPB(start int64, body []byte) (Packet, error) {
	if len(body) < 20 {
		return Packet{}, r.formatErr("enhanced packet block at offset %d: body of %d bytes is shorter than 20", start, len(body))
	}
	return r.packet(start, "enhanced packet block", r.order.Uint32(body[0:4]),
		r.order.Uint32(body[4:8]), r.order.Uint32(body[8:12]),
		r.order.Uint32(body[12:16]), r.order.Uint32(body[16:20]), body[20:])
}

func (r *Reader) parseOPB(start int64, body []byte) (Packet, error) {
	if len(body) < 20 {
		return Packet{}, r.formatErr("packet block at offset %d: body of %d bytes is shorter than 20", start, len(body))
	}
	return r.packet(start, "packet block", uint32(r.order.Uint16(body[0:2])),
		r.order.Uint32(body[4:8]), r.order.Uint32(body[8:12]),
		r.order.Uint32(body[12:16]), r.order.Uint32(body[16:20]), body[20:])
}

func (r *Reader) packet(start int64, what string, id, tsHi, tsLo, capLen, origLen uint32, rest []byte) (Packet, error) {
	ifc, err := r.iface(id)
	if err != nil {
		return Packet{}, fmt.Errorf("pcap: %s at offset %d: %w", what, start, err)
	}
	if uint64(capLen) > uint64(len(rest)) {
		return Packet{}, r.formatErr("%s at offset %d: captured length %d exceeds the block's %d data bytes", what, start, capLen, len(rest))
	}
	if ifc.unitsPerSec == 0 {
		return Packet{}, r.formatErr("%s at offset %d: interface %d has an unusable timestamp resolution", what, start, id)
	}
	ts := uint64(tsHi)<<32 | uint64(tsLo)
	sec := ts / ifc.unitsPerSec
	// rem*1e9 can overflow 64 bits for resolutions finer than 1 ns; the
	// 128-bit product's high word is below unitsPerSec, so Div64 is safe.
	hi, lo := bits.Mul64(ts%ifc.unitsPerSec, 1_000_000_000)
	ns, _ := bits.Div64(hi, lo, ifc.unitsPerSec)
	return Packet{
		Time:     time.Unix(int64(sec)+ifc.offset, int64(ns)),
		LinkType: ifc.linkType,
		Data:     rest[:capLen],
		OrigLen:  int(origLen),
	}, nil
}

func (r *Reader) parseSPB(start int64, body []byte) (Packet, error) {
	if len(body) < 4 {
		return Packet{}, r.formatErr("simple packet block at offset %d: body of %d bytes is shorter than 4", start, len(body))
	}
	ifc, err := r.iface(0)
	if err != nil {
		return Packet{}, fmt.Errorf("pcap: simple packet block at offset %d: %w", start, err)
	}
	orig := r.order.Uint32(body[0:4])
	data := body[4:]
	// The captured length is implicit: the original length, cut to the
	// interface's snaplen and to what the block holds (padding included).
	n := uint64(orig)
	if ifc.snaplen != 0 && uint64(ifc.snaplen) < n {
		n = uint64(ifc.snaplen)
	}
	if n > uint64(len(data)) {
		n = uint64(len(data))
	}
	return Packet{LinkType: ifc.linkType, Data: data[:n], OrigLen: int(orig)}, nil
}

// grow returns r.buf resized to n bytes; n is always ≤ MaxRecordSize.
func (r *Reader) grow(n int) []byte {
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	return r.buf
}

// take consumes the next n bytes and returns them: a view into the
// source when it gives one (a mapped file; a stream whose buffer holds
// them), valid until the next read, else a copy in r.buf.
func (r *Reader) take(n int) ([]byte, error) {
	if b, err := r.br.Peek(n); err == nil {
		d, err := r.br.Discard(n)
		r.off += int64(d)
		return b, err
	}
	data := r.grow(n)
	return data, r.readFull(data)
}

func (r *Reader) readFull(b []byte) error {
	n, err := io.ReadFull(r.br, b)
	r.off += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (r *Reader) discard(n int64) error {
	for n > 0 {
		step := n
		if step > 1<<30 {
			step = 1 << 30
		}
		d, err := r.br.Discard(int(step))
		r.off += int64(d)
		n -= int64(d)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

// formatErr builds a "pcap: …" error. When its cause (the last argument)
// is a short read or already a format error, or when there is no cause, the
// file is malformed and the error wraps ErrFormat; any other cause is an
// I/O failure of the underlying reader and is only wrapped.
func (r *Reader) formatErr(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if n := len(args); n > 0 {
		if cause, ok := args[n-1].(error); ok && !errors.Is(cause, io.ErrUnexpectedEOF) && !errors.Is(cause, ErrFormat) {
			return fmt.Errorf("pcap: %w", err)
		}
	}
	return &formatError{msg: err}
}

type formatError struct{ msg error }

func (e *formatError) Error() string { return "pcap: " + e.msg.Error() }

func (e *formatError) Unwrap() []error { return []error{ErrFormat, e.msg} }
