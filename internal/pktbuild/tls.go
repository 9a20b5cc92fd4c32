package pktbuild

import "encoding/binary"

// TLSExt is one ClientHello extension.
type TLSExt struct {
	Type uint16
	Data []byte
}

// u16Len is the 2-byte big-endian length of b.
func u16Len(b []byte) []byte { return binary.BigEndian.AppendUint16(nil, uint16(len(b))) }

// SNIExt is a server_name extension (RFC 6066 §3) listing names as
// host_name entries.
func SNIExt(names ...string) TLSExt {
	var list []byte
	for _, n := range names {
		list = append(list, 0)
		list = append(list, u16Len([]byte(n))...)
		list = append(list, n...)
	}
	return TLSExt{0, append(u16Len(list), list...)}
}

// ClientHello builds a ClientHello handshake message (type, 3-byte length,
// body) shaped like a browser's: a session id, a few suites, then exts.
func ClientHello(exts ...TLSExt) []byte {
	body := []byte{0x03, 0x03}
	for i := range 32 {
		body = append(body, byte(i))
	}
	body = append(body, 32)
	for i := range 32 {
		body = append(body, byte(0xA0+i))
	}
	suites := []byte{0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b}
	body = append(body, u16Len(suites)...)
	body = append(body, suites...)
	body = append(body, 1, 0)
	var e []byte
	for _, x := range exts {
		e = binary.BigEndian.AppendUint16(e, x.Type)
		e = append(e, u16Len(x.Data)...)
		e = append(e, x.Data...)
	}
	body = append(body, u16Len(e)...)
	body = append(body, e...)
	return append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// BrowserExts surrounds a server_name extension with typical ones.
func BrowserExts(sni ...string) []TLSExt {
	keyShare := append([]byte{0, 36, 0, 0x1d, 0, 32}, make([]byte, 32)...)
	return []TLSExt{
		{0x000a, []byte{0, 4, 0, 0x1d, 0, 0x17}},             // supported_groups
		{0x0010, []byte{0, 3, 2, 'h', '2'}},                  // ALPN
		SNIExt(sni...),                                       // server_name
		{0x002b, []byte{2, 3, 4}},                            // supported_versions
		{0x0033, keyShare},                                   // key_share
		{0x000d, []byte{0, 4, 4, 3, 8, 4}},                   // signature_algorithms
		{0x0039, []byte{0x04, 0x04, 0x80, 0x00, 0xff, 0xff}}, // quic_transport_parameters
	}
}

// TLSRecord wraps a handshake message in a TLS 1.0-versioned handshake
// record, as browsers send the first flight.
func TLSRecord(hs []byte) []byte {
	return append([]byte{0x16, 0x03, 0x01, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}
