package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Record kinds (enum xt_kind).
const (
	KindIP   = 1
	KindDNS  = 2
	KindHTTP = 3
	KindTLS  = 4
	KindQUIC = 5
	KindScan = 6 // a scan crossed its threshold; Record.Scan says which (Scan*)
)

// Sides (enum xt_side) and trail types (enum xt_trail_type).
const (
	SideDst = 1
	SideSrc = 2

	TrailIP    = 1
	TrailIPort = 2
	TrailCIDR  = 3 // an address inside a CIDR trail (an xtrail extension)
)

// RecordHeaderSize is sizeof(struct xt_rec).
const RecordHeaderSize = 64

// SnapMax is XT_SNAP_MAX: the longest payload snapshot a record carries.
const SnapMax = len(xtrailXtScratch{}.Payload)

// Record is a decoded struct xt_rec. Payload aliases the ring-buffer sample
// it was decoded from.
//
// A KindScan record reports a scan the moment it crossed its threshold:
// TsNs and TCPFlags are the crossing packet's, Src the scanning source, Dst
// the scanned host (infection: the first destination of the window), Sport
// and Dport the key's first packet's (infection: Dport is the infection
// port), Meta the distinct ports or hosts counted.
type Record struct {
	TsNs      uint64
	Kind      uint8
	Family    uint8
	L4Proto   uint8
	Side      uint8
	TrailType uint8
	TCPFlags  uint8
	Sport     uint16
	Dport     uint16
	CapLen    uint16
	OrigLen   uint32
	Gen       uint8  // the trail generation (0 or 1) the kernel matched the packet against
	Scan      uint8  // KindScan: ScanPort, ScanUDP or ScanInfection
	Meta      uint32 // IP records: the trail's meta id; KindScan: the distinct items counted
	Ifindex   uint32
	Src, Dst  [16]byte
	Payload   []byte
}

// SrcAddr and DstAddr return the record's addresses.
func (r *Record) SrcAddr() netip.Addr { return r.addr(&r.Src) }
func (r *Record) DstAddr() netip.Addr { return r.addr(&r.Dst) }

func (r *Record) addr(b *[16]byte) netip.Addr {
	if r.Family == 4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(*b)
}

// Decode fills r from one ring-buffer sample without allocating. The layout
// is struct xt_rec in bpf/xtrail.h, in host (little-endian) byte order.
func (r *Record) Decode(b []byte) error {
	if len(b) < RecordHeaderSize {
		return fmt.Errorf("ring record of %d bytes, want at least %d", len(b), RecordHeaderSize)
	}
	le := binary.LittleEndian
	r.TsNs = le.Uint64(b[0:])
	r.Kind, r.Family, r.L4Proto, r.Side, r.TrailType, r.TCPFlags = b[8], b[9], b[10], b[11], b[12], b[13]
	r.Sport = le.Uint16(b[14:])
	r.Dport = le.Uint16(b[16:])
	r.CapLen = le.Uint16(b[18:])
	r.OrigLen = uint32(le.Uint16(b[20:]))
	r.Gen = b[22] & 1
	r.Scan = b[23]
	r.Meta = le.Uint32(b[24:])
	r.Ifindex = le.Uint32(b[28:])
	copy(r.Src[:], b[32:48])
	copy(r.Dst[:], b[48:64])
	if r.Family != 4 && r.Family != 6 {
		return fmt.Errorf("ring record with address family %d", r.Family)
	}
	if int(r.CapLen) > len(b)-RecordHeaderSize {
		return fmt.Errorf("ring record claims %d payload bytes, has %d", r.CapLen, len(b)-RecordHeaderSize)
	}
	r.Payload = b[RecordHeaderSize : RecordHeaderSize+int(r.CapLen)]
	return nil
}
