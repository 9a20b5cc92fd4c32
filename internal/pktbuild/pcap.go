package pktbuild

import (
	"encoding/binary"
	"time"
)

// Packet is one frame of a capture and its time.
type Packet struct {
	Time  time.Time
	Frame []byte
}

// Pcap renders a classic little-endian pcap file with nanosecond
// timestamps and link type Ethernet, for replay tests that build their
// captures instead of committing them.
func Pcap(pkts []Packet) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, 0xa1b23c4d) // nanosecond magic
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, 0)     // thiszone
	b = le.AppendUint32(b, 0)     // sigfigs
	b = le.AppendUint32(b, 65535) // snaplen
	b = le.AppendUint32(b, 1)     // LINKTYPE_ETHERNET
	for _, p := range pkts {
		b = le.AppendUint32(b, uint32(p.Time.Unix()))
		b = le.AppendUint32(b, uint32(p.Time.Nanosecond()))
		b = le.AppendUint32(b, uint32(len(p.Frame)))
		b = le.AppendUint32(b, uint32(len(p.Frame)))
		b = append(b, p.Frame...)
	}
	return b
}
