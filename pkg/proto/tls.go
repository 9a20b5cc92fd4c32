package proto

const (
	tlsRecordHandshake  = 0x16
	tlsClientHello      = 1
	tlsExtServerName    = 0
	tlsSNIHostName      = 0
	tlsRecordHeaderLen  = 5
	tlsHandshakeHdrLen  = 4
	tlsRandomLen        = 32
	tlsMaxSessionIDLen  = 32
	tlsMinLegacyVersion = 3 // major byte of every SSLv3/TLS version
)

var (
	errTLSRecord      = newErr("tls record header", ErrTruncated)
	errTLSNotHS       = newErr("tls record: not a handshake record", ErrUnsupported)
	errTLSVersion     = newErr("tls record: major version is not 3", ErrUnsupported)
	errTLSHandshake   = newErr("tls handshake header", ErrTruncated)
	errTLSNotCH       = newErr("tls handshake: not a ClientHello", ErrUnsupported)
	errTLSCHCut       = newErr("tls ClientHello", ErrTruncated)
	errTLSCHBad       = newErr("tls ClientHello: inner length exceeds its container", ErrMalformed)
	errTLSSessionID   = newErr("tls ClientHello: session id longer than 32", ErrMalformed)
	errTLSCipherOdd   = newErr("tls ClientHello: odd cipher suites length", ErrMalformed)
	errTLSNoExt       = newErr("tls ClientHello: no extensions", ErrNoSNI)
	errTLSNoSNI       = newErr("tls ClientHello: no server_name host name", ErrNoSNI)
	errTLSEmptySNI    = newErr("tls server_name: empty host name", ErrMalformed)
	errTLSTrailingExt = newErr("tls ClientHello: bytes after the extensions", ErrMalformed)
)

// ClientHelloSNI returns the first host_name of the server_name extension
// (RFC 6066 §3) of the ClientHello that starts the TLS record b.
//
// b is a TCP payload snapshot, so the record may be cut: the walk reads
// what is there and returns the name if it lies within the snapshot,
// ErrTruncated if the snapshot ends first. A ClientHello fragmented over
// several records is read from the first only (as Maltrail does). The name
// aliases b and is returned as sent; the caller lowercases and validates it.
func ClientHelloSNI(b []byte) ([]byte, error) {
	if len(b) < tlsRecordHeaderLen {
		return nil, errTLSRecord
	}
	if b[0] != tlsRecordHandshake {
		return nil, errTLSNotHS
	}
	if b[1] != tlsMinLegacyVersion {
		return nil, errTLSVersion
	}
	n := int(b[3])<<8 | int(b[4])
	body := b[tlsRecordHeaderLen:]
	if n < len(body) {
		body = body[:n]
	}
	return ClientHelloSNIFromHandshake(body)
}

// ClientHelloSNIFromHandshake is ClientHelloSNI for a bare handshake
// message (type, 3-byte length, body), as the QUIC CRYPTO stream carries it.
func ClientHelloSNIFromHandshake(b []byte) ([]byte, error) {
	if len(b) < tlsHandshakeHdrLen {
		return nil, errTLSHandshake
	}
	if b[0] != tlsClientHello {
		return nil, errTLSNotCH
	}
	n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	ch := sub(b[tlsHandshakeHdrLen:], n)

	// legacy_version, random
	if !ch.skip(2 + tlsRandomLen) {
		return nil, ch.err()
	}
	sid, ok := ch.u8()
	if !ok {
		return nil, ch.err()
	}
	if sid > tlsMaxSessionIDLen {
		return nil, errTLSSessionID
	}
	if !ch.skip(int(sid)) {
		return nil, ch.err()
	}
	cs, ok := ch.u16()
	if !ok {
		return nil, ch.err()
	}
	if cs%2 != 0 {
		return nil, errTLSCipherOdd
	}
	if !ch.skip(cs) {
		return nil, ch.err()
	}
	cm, ok := ch.u8()
	if !ok || !ch.skip(int(cm)) {
		return nil, ch.err()
	}
	if len(ch.b) == 0 && !ch.cut {
		// A ClientHello may end after compression_methods (RFC 5246
		// §7.4.1.2): then it has no extensions, hence no SNI.
		return nil, errTLSNoExt
	}
	el, ok := ch.u16()
	if !ok {
		return nil, ch.err()
	}
	exts, ok := ch.sub(el)
	if !ok {
		return nil, ch.err()
	}
	if !exts.cut && len(ch.b) != 0 {
		return nil, errTLSTrailingExt
	}
	for len(exts.b) > 0 {
		typ, ok1 := exts.u16()
		l, ok2 := exts.u16()
		if !ok1 || !ok2 {
			return nil, exts.err()
		}
		ext, ok := exts.sub(l)
		if !ok {
			return nil, exts.err()
		}
		if typ != tlsExtServerName {
			if ext.cut {
				return nil, ext.err()
			}
			continue
		}
		// ServerNameList: 2-byte length, then (type, 2-byte length, name).
		ll, ok := ext.u16()
		if !ok {
			return nil, ext.err()
		}
		list, ok := ext.sub(ll)
		if !ok {
			return nil, ext.err()
		}
		for len(list.b) > 0 {
			nt, ok1 := list.u8()
			nl, ok2 := list.u16()
			if !ok1 || !ok2 {
				return nil, list.err()
			}
			name, ok := list.bytes(nl)
			if !ok {
				return nil, list.err()
			}
			if nt == tlsSNIHostName {
				if len(name) == 0 {
					return nil, errTLSEmptySNI
				}
				return name, nil
			}
		}
		if list.cut {
			return nil, list.err()
		}
		return nil, errTLSNoSNI
	}
	if exts.cut {
		return nil, exts.err()
	}
	return nil, errTLSNoSNI
}

// cursor reads big-endian fields from a length-delimited container. cut
// records that the container's declared length ran past the input, so that
// running out of bytes is reported as truncation (the snapshot ended)
// rather than as a malformed message (an inner length overran a complete
// container).
type cursor struct {
	b   []byte
	cut bool
}

// sub returns a cursor over the first n bytes of the input b, or over all
// of b marked cut if the input is shorter.
func sub(b []byte, n int) cursor {
	if n > len(b) {
		return cursor{b: b, cut: true}
	}
	return cursor{b: b[:n:n]}
}

func (c *cursor) err() error {
	if c.cut {
		return errTLSCHCut
	}
	return errTLSCHBad
}

// sub consumes a container of declared length n. It fails only when n
// overruns a complete c; when c is itself cut, the inner container is
// simply cut too.
func (c *cursor) sub(n int) (cursor, bool) {
	if n <= len(c.b) {
		s := cursor{b: c.b[:n:n]}
		c.b = c.b[n:]
		return s, true
	}
	if !c.cut {
		return cursor{}, false
	}
	s := cursor{b: c.b, cut: true}
	c.b = c.b[len(c.b):]
	return s, true
}

func (c *cursor) skip(n int) bool {
	if n > len(c.b) {
		return false
	}
	c.b = c.b[n:]
	return true
}

func (c *cursor) bytes(n int) ([]byte, bool) {
	if n > len(c.b) {
		return nil, false
	}
	v := c.b[:n:n]
	c.b = c.b[n:]
	return v, true
}

func (c *cursor) u8() (int, bool) {
	if len(c.b) < 1 {
		return 0, false
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v, true
}

func (c *cursor) u16() (int, bool) {
	if len(c.b) < 2 {
		return 0, false
	}
	v := int(c.b[0])<<8 | int(c.b[1])
	c.b = c.b[2:]
	return v, true
}
