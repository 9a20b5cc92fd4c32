package pcap

import (
	"encoding/binary"
)

// Builders for synthetic capture files. They write what the formats'
// specifications describe, independently of the reader's code paths.

// byteOrder is what the builders need: reading and appending.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

type synthPkt struct {
	sec, frac uint32 // classic: seconds and µs/ns
	ts        uint64 // pcapng: raw timestamp in interface units
	iface     uint32
	data      []byte
	orig      uint32 // 0 means len(data)
}

func buildClassic(order byteOrder, nano bool, network uint32, pkts []synthPkt) []byte {
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	b := order.AppendUint32(nil, magic)
	b = order.AppendUint16(b, 2)
	b = order.AppendUint16(b, 4)
	b = order.AppendUint32(b, 0)
	b = order.AppendUint32(b, 0)
	b = order.AppendUint32(b, 65535)
	b = order.AppendUint32(b, network)
	for _, p := range pkts {
		orig := p.orig
		if orig == 0 {
			orig = uint32(len(p.data))
		}
		b = order.AppendUint32(b, p.sec)
		b = order.AppendUint32(b, p.frac)
		b = order.AppendUint32(b, uint32(len(p.data)))
		b = order.AppendUint32(b, orig)
		b = append(b, p.data...)
	}
	return b
}

type ngWriter struct {
	order byteOrder
	b     []byte
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (w *ngWriter) block(typ uint32, body []byte) {
	body = pad4(append([]byte(nil), body...))
	total := uint32(12 + len(body))
	w.b = w.order.AppendUint32(w.b, typ)
	w.b = w.order.AppendUint32(w.b, total)
	w.b = append(w.b, body...)
	w.b = w.order.AppendUint32(w.b, total)
}

func (w *ngWriter) option(b []byte, code uint16, v []byte) []byte {
	b = w.order.AppendUint16(b, code)
	b = w.order.AppendUint16(b, uint16(len(v)))
	return pad4(append(b, v...))
}

func (w *ngWriter) shb() {
	body := w.order.AppendUint32(nil, 0x1a2b3c4d)
	body = w.order.AppendUint16(body, 1)
	body = w.order.AppendUint16(body, 0)
	body = w.order.AppendUint64(body, ^uint64(0))
	body = w.option(body, 4, []byte("xtrail test")) // shb_userappl
	body = w.option(body, 0, nil)
	w.block(0x0a0d0d0a, body)
}

// idb adds an interface; tsresol < 0 omits the option.
func (w *ngWriter) idb(linkType uint16, snaplen uint32, tsresol int, tsoffset int64) {
	body := w.order.AppendUint16(nil, linkType)
	body = w.order.AppendUint16(body, 0)
	body = w.order.AppendUint32(body, snaplen)
	body = w.option(body, 2, []byte("eth0")) // if_name
	if tsresol >= 0 {
		body = w.option(body, 9, []byte{byte(tsresol)})
	}
	if tsoffset != 0 {
		body = w.option(body, 14, w.order.AppendUint64(nil, uint64(tsoffset)))
	}
	body = w.option(body, 0, nil)
	w.block(1, body)
}

func (w *ngWriter) epb(p synthPkt) {
	orig := p.orig
	if orig == 0 {
		orig = uint32(len(p.data))
	}
	body := w.order.AppendUint32(nil, p.iface)
	body = w.order.AppendUint32(body, uint32(p.ts>>32))
	body = w.order.AppendUint32(body, uint32(p.ts))
	body = w.order.AppendUint32(body, uint32(len(p.data)))
	body = w.order.AppendUint32(body, orig)
	body = pad4(append(body, p.data...))
	body = w.option(body, 1, []byte("comment")) // opt_comment
	body = w.option(body, 0, nil)
	w.block(6, body)
}

func (w *ngWriter) opb(p synthPkt) {
	body := w.order.AppendUint16(nil, uint16(p.iface))
	body = w.order.AppendUint16(body, 0)
	body = w.order.AppendUint32(body, uint32(p.ts>>32))
	body = w.order.AppendUint32(body, uint32(p.ts))
	body = w.order.AppendUint32(body, uint32(len(p.data)))
	body = w.order.AppendUint32(body, uint32(len(p.data)))
	body = append(body, p.data...)
	w.block(2, body)
}

func (w *ngWriter) spb(orig uint32, data []byte) {
	body := w.order.AppendUint32(nil, orig)
	w.block(3, append(body, data...))
}

// ipv4Packet is a minimal IPv4/UDP packet; tag makes packets distinct.
func ipv4Packet(tag byte) []byte {
	return []byte{0x45, 0, 0, 29, 0, tag, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 66, 66, 66, 66,
		0x30, 0x39, 0, 53, 0, 9, 0, 0, tag}
}

func ipv6Packet(tag byte) []byte {
	p := []byte{0x60, 0, 0, 0, 0, 1, 59, 64}
	p = append(p, make([]byte, 32)...)
	return append(p, tag)
}

func etherFrame(etype uint16, payload []byte) []byte {
	f := []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, byte(etype >> 8), byte(etype)}
	return append(f, payload...)
}
