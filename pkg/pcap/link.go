package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Link types (LINKTYPE_* values as stored in capture files) that
// ToEthernet understands.
const (
	LinkTypeNull      uint32 = 0   // BSD loopback, host-order address family
	LinkTypeEthernet  uint32 = 1   // EN10MB
	LinkTypePPP       uint32 = 9   // PPP in HDLC-like framing
	LinkTypeRaw       uint32 = 12  // DLT_RAW as most libpcaps write it (Maltrail's RAW)
	LinkTypeRawIP     uint32 = 101 // LINKTYPE_RAW
	LinkTypeLoop      uint32 = 108 // OpenBSD loopback, network-order address family
	LinkTypeLinuxSLL  uint32 = 113 // Linux cooked capture v1
	LinkTypeIPv4      uint32 = 228
	LinkTypeIPv6      uint32 = 229
	LinkTypeLinuxSLL2 uint32 = 276 // Linux cooked capture v2
)

// EtherTypes of synthetic and accepted frames.
const (
	etherTypeIPv4     = 0x0800
	etherTypeIPv6     = 0x86dd
	etherTypeVLAN     = 0x8100
	etherTypeQinQ     = 0x88a8
	etherTypePPPoESes = 0x8864
)

// EthernetHeaderLen is the size of the header ToEthernet prepends.
const EthernetHeaderLen = 14

// Sentinel kinds of *LinkError, for errors.Is.
var (
	ErrUnsupportedLinkType = errors.New("unsupported link type")
	ErrNotIP               = errors.New("not an IP packet")
	ErrShortFrame          = errors.New("frame shorter than its link header")
)

// LinkError says why ToEthernet could not produce a frame.
type LinkError struct {
	LinkType uint32
	Kind     error  // ErrUnsupportedLinkType, ErrNotIP or ErrShortFrame
	Proto    uint32 // for ErrNotIP: the protocol, family or IP version found
}

func (e *LinkError) Error() string {
	switch e.Kind {
	case ErrNotIP:
		return fmt.Sprintf("pcap: link type %d: %v (protocol %#x)", e.LinkType, e.Kind, e.Proto)
	default:
		return fmt.Sprintf("pcap: link type %d: %v", e.LinkType, e.Kind)
	}
}

func (e *LinkError) Unwrap() error { return e.Kind }

// ToEthernet returns data as an Ethernet frame the XDP program can parse.
//
// An Ethernet frame is returned as is (the result aliases data). Any other
// link header is replaced by a 14-byte Ethernet header with zero MAC
// addresses (nothing downstream looks at them) and the EtherType the link
// header names, built in dst[:0]; it does not allocate when dst has room for
// len(data)+14 bytes; dst must not overlap data. The payload must be IP: IPv4, IPv6, or, from the
// cooked-capture headers, a VLAN tag or PPPoE session, which the data plane
// follows. Anything else is a *LinkError.
func ToEthernet(dst []byte, linkType uint32, data []byte) ([]byte, error) {
	var (
		hdrLen int
		etype  uint16
	)
	switch linkType {
	case LinkTypeEthernet:
		if len(data) < EthernetHeaderLen {
			return nil, &LinkError{LinkType: linkType, Kind: ErrShortFrame}
		}
		return data, nil

	case LinkTypeRaw, LinkTypeRawIP, LinkTypeIPv4, LinkTypeIPv6:
		if len(data) < 1 {
			return nil, &LinkError{LinkType: linkType, Kind: ErrShortFrame}
		}
		v := data[0] >> 4
		switch {
		case v == 4 && linkType != LinkTypeIPv6:
			etype = etherTypeIPv4
		case v == 6 && linkType != LinkTypeIPv4:
			etype = etherTypeIPv6
		default:
			return nil, &LinkError{LinkType: linkType, Kind: ErrNotIP, Proto: uint32(v)}
		}

	case LinkTypeLinuxSLL:
		hdrLen = 16
		if len(data) < hdrLen {
			return nil, &LinkError{LinkType: linkType, Kind: ErrShortFrame}
		}
		etype = binary.BigEndian.Uint16(data[14:16])
		if !followedEtherType(etype) {
			return nil, &LinkError{LinkType: linkType, Kind: ErrNotIP, Proto: uint32(etype)}
		}

	case LinkTypeLinuxSLL2:
		hdrLen = 20
		if len(data) < hdrLen {
			return nil, &LinkError{LinkType: linkType, Kind: ErrShortFrame}
		}
		etype = binary.BigEndian.Uint16(data[0:2])
		if !followedEtherType(etype) {
			return nil, &LinkError{LinkType: linkType, Kind: ErrNotIP, Proto: uint32(etype)}
		}

	case LinkTypeNull, LinkTypeLoop:
		hdrLen = 4
		if len(data) < hdrLen {
			return nil, &LinkError{LinkType: linkType, Kind: ErrShortFrame}
		}
		fam := binary.BigEndian.Uint32(data[0:4])
		if linkType == LinkTypeNull {
			// NULL holds the family in the byte order of the host that
			// captured, which the file does not record. Families are
			// small, so a value with high bits set was written by a host
			// of the other byte order (the same test libpcap and
			// Wireshark make).
			if fam&0xffff0000 != 0 {
				fam = binary.LittleEndian.Uint32(data[0:4])
			}
		}
		switch fam {
		case 2:
			etype = etherTypeIPv4
		case 24, 28, 30: // AF_INET6 on NetBSD/OpenBSD, FreeBSD, Darwin
			etype = etherTypeIPv6
		default:
			return nil, &LinkError{LinkType: linkType, Kind: ErrNotIP, Proto: fam}
		}

	case LinkTypePPP:
		hdrLen = 4
		if len(data) < hdrLen {
			return nil, &LinkError{LinkType: linkType, Kind: ErrShortFrame}
		}
		switch p := binary.BigEndian.Uint16(data[2:4]); p {
		case 0x0021:
			etype = etherTypeIPv4
		case 0x0057:
			etype = etherTypeIPv6
		default:
			return nil, &LinkError{LinkType: linkType, Kind: ErrNotIP, Proto: uint32(p)}
		}

	default:
		return nil, &LinkError{LinkType: linkType, Kind: ErrUnsupportedLinkType}
	}

	out := dst[:0]
	out = append(out, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(etype>>8), byte(etype))
	return append(out, data[hdrLen:]...), nil
}

// followedEtherType reports whether the data plane parses a frame with
// this EtherType down to IP.
func followedEtherType(t uint16) bool {
	switch t {
	case etherTypeIPv4, etherTypeIPv6, etherTypeVLAN, etherTypeQinQ, etherTypePPPoESes:
		return true
	}
	return false
}
