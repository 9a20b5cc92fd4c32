// Package pktbuild crafts Ethernet frames for tests and benchmarks of the
// XDP program: VLAN tags, PPPoE, IPv4 (options, fragments), IPv6, TCP, UDP
// and ICMP. Checksums are left zero: the program never reads them.
package pktbuild

import (
	"encoding/binary"
	"net/netip"
)

// Protocol numbers.
const (
	ICMP   = 1
	TCP    = 6
	UDP    = 17
	GRE    = 47
	ICMPv6 = 58
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// Frame describes one packet.
type Frame struct {
	VLANs    []uint16 // 802.1Q tags, outermost first (two = QinQ)
	PPPoE    bool     // wrap IP in a PPPoE session header
	EthType  uint16   // overrides the EtherType (e.g. ARP)
	Src, Dst netip.Addr
	Proto    uint8
	Sport    uint16
	Dport    uint16
	TCPFlags uint8
	ICMPType uint8
	IPOpts   int    // bytes of IPv4 options (multiple of 4)
	FragOff  uint16 // IPv4 fragment offset in 8-byte units
	Payload  []byte
}

// Bytes renders the frame.
func (f Frame) Bytes() []byte {
	b := make([]byte, 0, 128+len(f.Payload))
	b = append(b, 0x02, 0, 0, 0, 0, 2) // dst MAC
	b = append(b, 0x02, 0, 0, 0, 0, 1) // src MAC
	inner := uint16(0x0800)
	if f.Dst.Is6() && !f.Dst.Is4In6() {
		inner = 0x86DD
	}
	if f.EthType != 0 {
		inner = f.EthType
	}
	for _, v := range f.VLANs {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	l4 := f.l4()
	if f.PPPoE {
		b = binary.BigEndian.AppendUint16(b, 0x8864)
		ppp := uint16(0x0021)
		if inner == 0x86DD {
			ppp = 0x0057
		}
		ipLen := 20 + f.IPOpts + len(l4)
		if inner == 0x86DD {
			ipLen = 40 + len(l4)
		}
		b = append(b, 0x11, 0x00)
		b = binary.BigEndian.AppendUint16(b, 0x1234)
		b = binary.BigEndian.AppendUint16(b, uint16(ipLen+2))
		b = binary.BigEndian.AppendUint16(b, ppp)
	} else {
		b = binary.BigEndian.AppendUint16(b, inner)
	}
	switch inner {
	case 0x0800:
		ihl := 20 + f.IPOpts
		b = append(b, byte(0x40|ihl/4), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(ihl+len(l4)))
		b = append(b, 0, 1)
		b = binary.BigEndian.AppendUint16(b, f.FragOff&0x1fff)
		b = append(b, 64, f.Proto, 0, 0)
		s, d := f.Src.As4(), f.Dst.As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		for i := 0; i < f.IPOpts; i++ {
			b = append(b, 1) // NOP options
		}
	case 0x86DD:
		b = append(b, 0x60, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(l4)))
		b = append(b, f.Proto, 64)
		s, d := f.Src.As16(), f.Dst.As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	default:
		return append(b, f.Payload...)
	}
	return append(b, l4...)
}

func (f Frame) l4() []byte {
	var h []byte
	switch f.Proto {
	case TCP:
		h = make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], f.Sport)
		binary.BigEndian.PutUint16(h[2:], f.Dport)
		binary.BigEndian.PutUint32(h[4:], 1000)
		h[12] = 5 << 4
		h[13] = f.TCPFlags
		binary.BigEndian.PutUint16(h[14:], 65535)
	case UDP:
		h = make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], f.Sport)
		binary.BigEndian.PutUint16(h[2:], f.Dport)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(f.Payload)))
	case ICMP, ICMPv6:
		h = []byte{f.ICMPType, 0, 0, 0, 0, 1, 0, 1}
	}
	return append(h, f.Payload...)
}
