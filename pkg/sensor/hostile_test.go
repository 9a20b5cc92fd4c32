package sensor

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/pkg/dataplane"
)

// hostile is a candidate payload written to break the agent, and the
// transport that makes the XDP program hand it over as its kind.
type hostile struct {
	l4      uint8
	dport   uint16
	payload []byte
}

// hostilePayloads returns the hostile seeds of a record kind (for IP
// records, one per protocol: the payload is empty). They serve as fuzz
// seeds and as the capture of TestReplayHostile.
func hostilePayloads(kind uint8) []hostile {
	var out []hostile
	add := func(l4 uint8, dport uint16, ps ...[]byte) {
		for _, p := range ps {
			out = append(out, hostile{l4, dport, p})
		}
	}
	switch kind {
	case dataplane.KindIP:
		for _, p := range []uint8{6, 17, 1, 58, 47, 0, 200, 255} {
			add(p, 443, nil)
		}
	case dataplane.KindDNS:
		for _, p := range hostileDNS() {
			add(17, 53, p)
		}
		// DNS over TCP: the 2-byte length prefix lies, or is all there is
		add(6, 53, append([]byte{0xff, 0xff}, dnsQuery(hitName)...), []byte{0, 0, 0, 0, 0, 0},
			append([]byte{0, 5}, dnsQuery(hitName)...), append([]byte{0, byte(len(dnsQuery(hitName)))}, dnsQuery("EVIL-TEST-DOMAIN.com")...))
	case dataplane.KindHTTP:
		add(6, 80, hostileHTTP()...)
	case dataplane.KindTLS:
		add(6, 443, hostileTLS()...)
	case dataplane.KindQUIC:
		add(17, 443, hostileQUIC()...)
	}
	return out
}

// cuts returns b cut after every step bytes: what a snapshot length or a
// segment boundary leaves of it.
func cuts(b []byte, step int) [][]byte {
	var out [][]byte
	for n := 6; n < len(b); n += step {
		out = append(out, b[:n:n])
	}
	return out
}

func hostileHTTP() [][]byte {
	var out [][]byte
	s := func(ss ...string) {
		for _, x := range ss {
			out = append(out, []byte(x))
		}
	}
	// Hosts that are empty, or become empty once trimmed and stripped of
	// ":80", and IPv6 literals with and without port, brackets unbalanced.
	for _, h := range []string{":80", " :80 ", "", "   \t ", ":", ":8080", ":80:80", "[::1]", "[::1]:80", "[::1]:8080",
		"[2001:db8::1", "2001:db8::1]:80", "2001:db8::1", "[", "]:80", "[]", "[]:80", "\xc2\xa0:80", "\xc2\x85",
		"\x00", "a:80", "A:", "EVIL-TEST-DOMAIN.COM:80", `quoted"host.example`, "evil-test-domain.com:80:80",
		"sub.evil-parent.com.", ".", "..", "-", "1.2.3.4", "1.2.3.4:80", "999.999.999.999"} {
		s("GET / HTTP/1.1\r\nHost: "+h+"\r\n\r\n", "GET /malicious-login.php HTTP/1.1\r\nHost: "+h+"\r\nUser-Agent: x\r\n\r\n")
	}
	s(
		// truncated requests and header lines without CRLF
		"GET / HTTP/1.1\r\nHost: evil-test-domain.com",
		"GET / HTTP/1.1\r\nHost: :80",
		"GET / HTTP/1.1",
		"GET /",
		"GET / HTTP/1.1\nHost: evil-test-domain.com\n\n",
		"GET / HTTP/1.1\rHost: evil-test-domain.com\r\r",
		"GET / HTTP/1.1\r\nHost",
		"GET / HTTP/1.1\r\n\r",
		"GET / HTTP/1.1\r\n\r\n\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:\r\nHost: evil-test-domain.com\r\n\r\n",
		// request lines Maltrail refuses or barely accepts
		"GET  HTTP/1.1\r\n\r\n",
		"GET   HTTP/1.1\r\n\r\n",
		" / HTTP/1.1\r\n\r\n",
		"GET / HTTP/\r\n\r\n",
		"GET HTTP/1.1 /\r\n\r\n",
		"GET / HTTP/1.1 extra\r\n\r\n",
		// proxy and CONNECT targets that are empty or only a port
		"GET http:// HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://:80/ HTTP/1.1\r\n\r\n",
		"GET http://evil-test-domain.com HTTP/1.1\r\n\r\n",
		"GET http://[::1]:80/malicious-login.php HTTP/1.1\r\nHost: :80\r\n\r\n",
		"CONNECT :443 HTTP/1.1\r\nHost: :443\r\n\r\n",
		"CONNECT  HTTP/1.1\r\n\r\n",
		"CONNECT evil-test-domain.com:443 HTTP/1.1\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
		// bodies and queries for the URL candidates
		"POST /post.php HTTP/1.1\r\nHost: :80\r\nContent-Type: x\r\n\r\ncmd=%00%zz%",
		"POST /post.php HTTP/1.1\r\nHost: \r\n\r\n",
		"POST / HTTP/1.1\r\nHost: :80\r\n\r\n/a/b/c?%2F%2f",
		"GET //////?=&=&&== HTTP/1.1\r\nHost: evil-url.example\r\n\r\n",
		"GET /?& HTTP/1.1\r\nHost: :80\r\n\r\n",
		"GET /gate.php?id=1 HTTP/1.1\r\nHost: EVIL-URL.EXAMPLE:80\r\n\r\n",
		"GET /bad/path?x=1&y=2 HTTP/1.1\r\nHost: evil-url.example\r\n\r\n",
		"GET /a?b=c\r\n HTTP/1.1\r\n\r\n",
		// forwarded-for headers and the header search
		"GET / HTTP/1.1\r\nX-Forwarded-For: \r\nCF-Connecting-IP:...\r\nTrue-Client-IP:1\r\nHost: :80\r\n\r\n",
		"GET / HTTP/1.1\r\nx-forwarded-for:",
		// a response: no request, and no failure
		"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<title>",
		"HTTP/",
	)
	long := strings.Repeat("a.", 700) + "evil-test-domain.com"
	s("GET / HTTP/1.1\r\nHost: "+long+"\r\n\r\n",
		"GET /"+strings.Repeat("/", 1500)+" HTTP/1.1\r\nHost: :80\r\n\r\n",
		"GET /"+strings.Repeat("?a=b&", 300)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	full := []byte("GET /malicious-login.php?user=a&pass=b HTTP/1.1\r\nHost: evil-test-domain.com:80\r\nUser-Agent: Mozilla/5.0\r\n\r\n")
	return append(out, cuts(full, 5)...)
}

// dnsHeader is a DNS header with the given flag byte and counts.
func dnsHeader(flags byte, qd, an, ns, ar uint16) []byte {
	b := []byte{0xbe, 0xef, flags, 0}
	for _, n := range []uint16{qd, an, ns, ar} {
		b = binary.BigEndian.AppendUint16(b, n)
	}
	return b
}

// dnsName is name in wire labels, with the root label.
func dnsName(name string) []byte {
	var b []byte
	for _, l := range strings.Split(name, ".") {
		b = append(append(b, byte(len(l))), l...)
	}
	return append(b, 0)
}

func hostileDNS() [][]byte {
	q := func(name []byte, qtype uint16) []byte {
		b := append(dnsHeader(1, 1, 0, 0, 0), name...)
		return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, qtype), 1)
	}
	typeClass := []byte{0, 1, 0, 1}
	label63 := strings.Repeat("a", 63)
	out := [][]byte{
		{},
		dnsHeader(1, 1, 0, 0, 0),
		dnsHeader(1, 0xffff, 0xffff, 0xffff, 0xffff),
		// compressed question names: Maltrail does not follow them
		append(dnsHeader(1, 1, 0, 0, 0), 0xc0, 0x0c, 0, 1, 0, 1),
		append(append(dnsHeader(1, 1, 0, 0, 0), 4, 'e', 'v', 'i', 'l', 0xc0, 0x0c), typeClass...),
		// a response whose answer name is a pointer to itself, and
		// pointers that go forwards or past the end
		append(append(append(dnsHeader(0x81, 1, 1, 0, 0), dnsName(hitName)...), typeClass...),
			0xc0, 0x26, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4),
		append(append(append(dnsHeader(0x81, 1, 2, 0, 0), dnsName(hitName)...), typeClass...),
			0xc0, 0x3f, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4),
		append(append(append(dnsHeader(0x81, 1, 1, 0, 0), dnsName(hitName)...), typeClass...), 0xff, 0xff),
		// counts that lie: more questions and answers than the message has
		append(q(dnsName(hitName), 1), 0xc0),
		append(append(dnsHeader(1, 0, 0, 0, 0), dnsName(hitName)...), typeClass...),
		append(append(dnsHeader(0x81, 9, 9, 9, 9), dnsName(hitName)...), typeClass...),
		// a response for a trail name: responses are not checked
		append(append(dnsHeader(0x81, 1, 0, 0, 0), dnsName(hitName)...), typeClass...),
		// labels: overrun, reserved types, too long, at the limit
		append(dnsHeader(1, 1, 0, 0, 0), 0x3f, 'a', 'b', 'c'),
		append(dnsHeader(1, 1, 0, 0, 0), 0x40, 'a', 0, 0, 1, 0, 1),
		append(dnsHeader(1, 1, 0, 0, 0), 0x80, 'a', 0, 0, 1, 0, 1),
		q(dnsName(strings.Repeat(label63+".", 3)+strings.Repeat("b", 61)), 1), // 253 characters
		q(dnsName(strings.Repeat(label63+".", 3)+strings.Repeat("b", 62)), 1), // 254: one too many
		q(dnsName(strings.Repeat("a.", 126)+"com"), 1),
		q(dnsName(strings.Repeat(label63+".", 5)+"com"), 1),
		// names the name filter must refuse or fold
		q([]byte{9, 'e', 'v', 'i', 'l', '.', 't', 'e', 's', 't', 3, 'c', 'o', 'm', 0}, 1),
		q(dnsName("EVIL-TEST-DOMAIN.COM"), 1),
		q(dnsName("a b\"c.evil-test-domain.com"), 1),
		q(dnsName("a\x00b.evil-test-domain.com"), 1),
		q(dnsName("evil-test-domain.com:80"), 1),
		q([]byte{0}, 1),
		q(dnsName(".."), 1),
		q(dnsName(hitName+"."), 1),
		q(dnsName(hitName), 28),
		q(dnsName(hitName), 12),
		q(dnsName("ns1.sinkhole-test.com"), 1),
		q(dnsName("kozow.com"), 1),
		q(dnsName("www.kozow.com"), 1),
		q(dnsName("dga123.wildcard-test.com"), 1),
		q(dnsName("x.dga1.wildcard-test.com.evil"), 1),
		q(dnsName("badsite.onion.to"), 1),
		q(dnsName("badsite.onion."), 1),
		q(dnsName("evilname.ip-adress.com"), 1),
		q(dnsName(".ip-adress.com"), 1),
		q(dnsName("x.intranet.evil-test-domain.com"), 1),
		q(dnsName("scanner-host.example"), 1),
	}
	return append(out, cuts(q(dnsName("www.sub.evil-parent.com"), 1), 3)...)
}

// tlsHello is a browser-like ClientHello handshake message naming sni, the
// valid start of the TLS and QUIC seeds.
func tlsHello(sni ...string) []byte { return pktbuild.ClientHello(pktbuild.BrowserExts(sni...)...) }

// Offsets in a pktbuild.ClientHello handshake message (type, 3-byte
// length, version, random, 32-byte session id, 8 bytes of suites, one
// compression method).
const (
	chSessionIDLen = 4 + 2 + 32
	chSuitesLen    = chSessionIDLen + 1 + 32
	chCompLen      = chSuitesLen + 2 + 8
	chExtsLen      = chCompLen + 2
)

// lie returns a copy of b with the big-endian length of n bytes at off
// replaced by v.
func lie(b []byte, off, n int, v uint32) []byte {
	c := bytes.Clone(b)
	for i := n - 1; i >= 0; i-- {
		c[off+i] = byte(v)
		v >>= 8
	}
	return c
}

// lyingHellos returns hs (a ClientHello handshake message) with each of
// its lengths lying: zero, one short, one over, and the largest value.
func lyingHellos(hs []byte) [][]byte {
	var out [][]byte
	fields := []struct{ off, n int }{{1, 3}, {chSessionIDLen, 1}, {chSuitesLen, 2}, {chCompLen, 1}, {chExtsLen, 2}}
	// each extension's length, and the server_name list and name lengths
	for off := chExtsLen + 2; off+4 <= len(hs); {
		typ, l := binary.BigEndian.Uint16(hs[off:]), int(binary.BigEndian.Uint16(hs[off+2:]))
		fields = append(fields, struct{ off, n int }{off + 2, 2})
		if typ == 0 {
			fields = append(fields, struct{ off, n int }{off + 4, 2}, struct{ off, n int }{off + 7, 2})
		}
		off += 4 + l
	}
	for _, f := range fields {
		real := uint32(0)
		for i := range f.n {
			real = real<<8 | uint32(hs[f.off+i])
		}
		for _, v := range []uint32{0, real - 1, real + 1, 1<<(8*f.n) - 1} {
			out = append(out, lie(hs, f.off, f.n, v))
		}
	}
	return out
}

func hostileTLS() [][]byte {
	hs := tlsHello("tls-evil.example")
	rec := pktbuild.TLSRecord(hs)
	out := [][]byte{
		rec,
		{0x16, 3, 1, 0, 0, 1},
		{0x16, 3, 1, 0xff, 0xff, 1, 0xff, 0xff, 0xff},
		lie(rec, 3, 2, 0xffff),
		lie(rec, 3, 2, 0),
		lie(rec, 3, 2, 4),
		pktbuild.TLSRecord(pktbuild.ClientHello()),
		pktbuild.TLSRecord(pktbuild.ClientHello(pktbuild.TLSExt{Type: 0, Data: []byte{0, 3, 0, 0, 0}})),
		pktbuild.TLSRecord(pktbuild.ClientHello(pktbuild.TLSExt{Type: 0, Data: []byte{0, 4, 1, 0, 1, 'x'}})),
		pktbuild.TLSRecord(pktbuild.ClientHello(pktbuild.TLSExt{Type: 0x15, Data: make([]byte, 1600)}, pktbuild.SNIExt("late.tls-evil.example"))),
	}
	for _, name := range []string{"TLS-EVIL.EXAMPLE", "tls-evil.example:443", "tls-evil.example.", `a b"c.tls-evil.example`,
		"\x00", ":443", "[::1]:443", "1.2.3.4", strings.Repeat("a.", 600) + "tls-evil.example", "www.kozow.com"} {
		out = append(out, pktbuild.TLSRecord(tlsHello(name)))
	}
	for _, h := range lyingHellos(hs) {
		out = append(out, pktbuild.TLSRecord(h))
	}
	return append(out, cuts(rec, 11)...)
}

func hostileQUIC() [][]byte {
	dcid := []byte{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08}
	hello := tlsHello("quic-evil.example")
	seal := func(v uint32, frames []byte) []byte {
		return pktbuild.QUICInitial{Version: v, DCID: dcid, SCID: []byte{1, 2}, PNLen: 2, Frames: frames, PadTo: 1162}.Seal()
	}
	good := seal(pktbuild.QUICVersion1, pktbuild.CryptoFrame(0, hello))
	// the Length field follows flags, version, the CIDs and an empty token
	lenOff := 1 + 4 + 1 + len(dcid) + 1 + 2 + 1
	out := [][]byte{
		good,
		seal(pktbuild.QUICVersion2, pktbuild.CryptoFrame(0, hello)),
		// Initial lengths that lie: past the datagram, too short for a
		// sample, larger than the agent decrypts, a token length past it
		lie(good, lenOff, 2, 0x7fff),
		lie(good, lenOff, 2, 0x4000),
		lie(good, lenOff, 2, 0x4013),
		append(lie(good, lenOff, 2, 0x4000|2100), make([]byte, 1000)...),
		lie(good, lenOff-1, 1, 0x3f),
		append(append([]byte{0xc3, 0, 0, 0, 1, 8}, dcid...), 0, 0xc0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		// connection id lengths that lie
		lie(good, 5, 1, 21),
		lie(good, 5, 1, 255),
		lie(good, 6+len(dcid), 1, 200),
		good[:7],
		good[:lenOff+5],
		// a header that parses, a payload that does not decrypt
		lie(good, len(good)-1, 1, uint32(good[len(good)-1]^1)),
		// CRYPTO frames that lie, inside a packet that decrypts
		seal(pktbuild.QUICVersion1, []byte{0x06, 0x00, 0x4f, 0xff}),
		seal(pktbuild.QUICVersion1, pktbuild.CryptoFrame(1<<40, hello)),
		seal(pktbuild.QUICVersion1, pktbuild.CryptoFrame(4090, hello)),
		seal(pktbuild.QUICVersion1, append([]byte{0x02, 0, 0, 0x80, 0xff, 0xff, 0xff}, pktbuild.CryptoFrame(0, hello)...)),
		seal(pktbuild.QUICVersion1, append([]byte{0x08, 0, 'x'}, pktbuild.CryptoFrame(0, hello)...)),
		seal(pktbuild.QUICVersion1, pktbuild.CryptoFrame(0, pktbuild.ClientHello())),
		// coalesced: a second Initial whose length lies
		append(bytes.Clone(good), lie(good, lenOff, 2, 0x7fff)...),
	}
	for _, h := range lyingHellos(hello) {
		out = append(out, seal(pktbuild.QUICVersion1, pktbuild.CryptoFrame(0, h)))
	}
	return append(out, cuts(good, 97)...)
}
