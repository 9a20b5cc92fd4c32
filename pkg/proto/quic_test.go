package proto

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

// rfc9001ClientCrypto is the CRYPTO frame of the client Initial of RFC 9001
// Appendix A.2 (also used by RFC 9369 A.2): a ClientHello for example.com.
const rfc9001ClientCrypto = `
060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
616d706c652e636f6dff01000100000a00080006001d00170018001000070005
04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
0d0010000e0403050306030203080408050806002d00020101001c0002400100
3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
75300901100f088394c8f03e51570806048000ffff`

var rfcDCID = []byte{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08}

func TestQUICInitialKeys(t *testing.T) {
	tests := []struct {
		version     uint32
		key, iv, hp string
	}{
		// RFC 9001 A.1 and RFC 9369 A.1.
		{QUICVersion1, "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2"},
		{QUICVersion2, "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9"},
	}
	for _, tc := range tests {
		ver, _ := lookupQUICVersion(tc.version)
		var s QUICScratch
		deriveInitialKeys(ver, rfcDCID, &s)
		if got := hex.EncodeToString(s.key[:]); got != tc.key {
			t.Errorf("v%#x key = %s, want %s", tc.version, got, tc.key)
		}
		if got := hex.EncodeToString(s.iv[:]); got != tc.iv {
			t.Errorf("v%#x iv = %s, want %s", tc.version, got, tc.iv)
		}
		if got := hex.EncodeToString(s.hp[:]); got != tc.hp {
			t.Errorf("v%#x hp = %s, want %s", tc.version, got, tc.hp)
		}
		// The test encryptor's crypto/hkdf derivation agrees.
		k, iv, hp := testInitialKeys(t, tc.version, rfcDCID)
		if hex.EncodeToString(k) != tc.key || hex.EncodeToString(iv) != tc.iv || hex.EncodeToString(hp) != tc.hp {
			t.Errorf("v%#x: crypto/hkdf keys %x %x %x", tc.version, k, iv, hp)
		}
	}
}

// TestHMACMatchesCryptoHKDF checks the fixed-array HMAC/HKDF against the
// standard library over connection ID lengths 0..20.
func TestHMACMatchesCryptoHKDF(t *testing.T) {
	for n := 0; n <= quicMaxCIDLen; n++ {
		dcid := bytes.Repeat([]byte{byte(n*7 + 1)}, n)
		want, err := hkdf.Extract(sha256.New, dcid, quicSaltV1[:])
		if err != nil {
			t.Fatal(err)
		}
		got := hmacSHA256(quicSaltV1[:], dcid)
		if !bytes.Equal(got[:], want) {
			t.Fatalf("extract, dcid len %d: %x, want %x", n, got, want)
		}
		info := string([]byte{0, 32, byte(len("tls13 client in"))}) + "tls13 client in" + "\x00"
		wantExp, err := hkdf.Expand(sha256.New, want, info, 32)
		if err != nil {
			t.Fatal(err)
		}
		gotExp := hkdfExpandLabel(&got, "client in", 32)
		if !bytes.Equal(gotExp[:], wantExp) {
			t.Fatalf("expand, dcid len %d: %x, want %x", n, gotExp, wantExp)
		}
	}
}

// TestQUICRFCSamplePacket rebuilds the client Initial of RFC 9001 A.2 and
// RFC 9369 A.2 with the test encryptor, checks the published protected
// header and sample, and decrypts it.
func TestQUICRFCSamplePacket(t *testing.T) {
	tests := []struct {
		version      uint32
		unprotected  string
		protected    string
		sample, mask string
	}{
		{QUICVersion1, "c300000001088394c8f03e5157080000449e00000002",
			"c000000001088394c8f03e5157080000449e7b9aec34", "d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"},
		{QUICVersion2, "d36b3343cf088394c8f03e5157080000449e00000002",
			"d76b3343cf088394c8f03e5157080000449ea0c95e82", "ffe67b6abcdb4298b485dd04de806071", "94a0c95e80"},
	}
	crypto := mustHex(t, rfc9001ClientCrypto)
	for _, tc := range tests {
		pkt := sealInitial(t, initialSpec{version: tc.version, dcid: rfcDCID, pn: 2, pnLen: 4, frames: crypto, padTo: 1162})
		if len(pkt) != 1200 {
			t.Fatalf("v%#x: packet is %d bytes, want 1200", tc.version, len(pkt))
		}
		hdrLen := len(tc.protected) / 2
		if got := hex.EncodeToString(pkt[:hdrLen]); got != tc.protected {
			t.Errorf("v%#x protected header = %s, want %s", tc.version, got, tc.protected)
		}
		if got := hex.EncodeToString(pkt[hdrLen : hdrLen+16]); got != tc.sample {
			t.Errorf("v%#x sample = %s, want %s", tc.version, got, tc.sample)
		}

		// The package's own header protection on the published sample.
		ver, _ := lookupQUICVersion(tc.version)
		var s QUICScratch
		deriveInitialKeys(ver, rfcDCID, &s)
		h, _, err := parseQUICInitialHeader(pkt)
		if err != nil {
			t.Fatal(err)
		}
		if h.pnOff != 18 || h.end != 1200 || !bytes.Equal(h.dcid, rfcDCID) {
			t.Errorf("header: pnOff %d end %d dcid %x", h.pnOff, h.end, h.dcid)
		}

		sni, err := QUICInitialSNI(pkt, &s)
		if err != nil || string(sni) != "example.com" {
			t.Fatalf("v%#x: SNI %q, %v", tc.version, sni, err)
		}
		// The unprotected header is what AEAD authenticated.
		if got := hex.EncodeToString(s.pkt[:hdrLen]); got != tc.unprotected {
			t.Errorf("v%#x unprotected header = %s, want %s", tc.version, got, tc.unprotected)
		}
		if got := hex.EncodeToString(s.mask[:5]); got != tc.mask {
			t.Errorf("v%#x mask = %s, want %s", tc.version, got, tc.mask)
		}
	}
}

func evilHello() []byte { return clientHello(browserExts("quic-evil.example")...) }

func TestQUICInitialSNI(t *testing.T) {
	hello := evilHello()
	third := len(hello) / 3
	outOfOrder := append(cryptoFrame(uint64(2*third), hello[2*third:]), 0x01) // then PING
	outOfOrder = append(outOfOrder, cryptoFrame(0, hello[:third])...)
	outOfOrder = append(outOfOrder, 0, 0, 0) // PADDING between frames
	outOfOrder = append(outOfOrder, cryptoFrame(uint64(third), hello[third:2*third])...)
	ack := []byte{0x02, 0x05, 0x00, 0x01, 0x01, 0x00, 0x00}                // ACK: largest 5, delay 0, 1 range: first 1, gap 0, len 0
	ackECN := []byte{0x03, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x40, 0x03} // ACK_ECN with ECN counts
	dcid := []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}
	scid := []byte{0xc1, 0xd2}

	for _, version := range []uint32{QUICVersion1, QUICVersion2} {
		base := initialSpec{version: version, dcid: dcid, scid: scid, pnLen: 1, padTo: 1162}
		with := func(f func(*initialSpec)) initialSpec { s := base; f(&s); return s }
		// A second Initial coalesced after the first, carrying the rest
		// of the CRYPTO stream, then a 0-RTT-like long header and junk.
		half := len(hello) / 2
		first := sealInitial(t, with(func(s *initialSpec) { s.frames = cryptoFrame(0, hello[:half]); s.padTo = 0 }))
		second := sealInitial(t, with(func(s *initialSpec) { s.pn = 1; s.frames = cryptoFrame(uint64(half), hello[half:]); s.padTo = 600 }))
		coalesced := append(append(bytes.Clone(first), second...), 0xd0, 0, 0, 0, 1, 0)
		onlyFirst := append(bytes.Clone(first), make([]byte, 700)...) // datagram padding after it

		tests := []struct {
			name    string
			pkt     []byte
			want    string
			wantErr error
		}{
			{"in-order CRYPTO, 1-byte PN", sealInitial(t, with(func(s *initialSpec) { s.frames = cryptoFrame(0, hello) })), "quic-evil.example", nil},
			{"out-of-order CRYPTO, PING, PADDING, 4-byte PN", sealInitial(t, with(func(s *initialSpec) { s.frames = outOfOrder; s.pn = 0x01020304; s.pnLen = 4 })), "quic-evil.example", nil},
			{"ACK frames and a token, 2-byte PN", sealInitial(t, with(func(s *initialSpec) {
				s.frames = append(append(bytes.Clone(ack), ackECN...), cryptoFrame(0, hello)...)
				s.token = bytes.Repeat([]byte{0x7a}, 70)
				s.pn, s.pnLen = 300, 2
			})), "quic-evil.example", nil},
			{"empty connection ids", sealInitial(t, with(func(s *initialSpec) { s.dcid, s.scid = nil, nil; s.frames = cryptoFrame(0, hello) })), "quic-evil.example", nil},
			{"20-byte dcid", sealInitial(t, with(func(s *initialSpec) { s.dcid = bytes.Repeat([]byte{9}, 20); s.frames = cryptoFrame(0, hello) })), "quic-evil.example", nil},
			{"coalesced Initials", coalesced, "quic-evil.example", nil},
			{"first of two Initials only", onlyFirst, "", ErrTruncated},
			{"CRYPTO gap at offset 0", sealInitial(t, with(func(s *initialSpec) { s.frames = cryptoFrame(10, hello[10:]) })), "", ErrTruncated},
			{"no CRYPTO", sealInitial(t, with(func(s *initialSpec) { s.frames = []byte{0x01} })), "", ErrTruncated},
			{"STREAM frame not allowed", sealInitial(t, with(func(s *initialSpec) { s.frames = append([]byte{0x08, 0x00, 'x'}, cryptoFrame(0, hello)...) })), "", ErrMalformed},
			{"CRYPTO then an unknown frame keeps the SNI", sealInitial(t, with(func(s *initialSpec) { s.frames = append(cryptoFrame(0, hello), 0x1f) })), "quic-evil.example", nil},
			{"CRYPTO length past the payload", sealInitial(t, with(func(s *initialSpec) { s.frames = []byte{0x06, 0x00, 0x4f, 0xff} })), "", ErrTruncated},
			{"CRYPTO offset beyond the reassembly buffer", sealInitial(t, with(func(s *initialSpec) { s.frames = cryptoFrame(1<<40, hello) })), "", ErrTruncated},
			{"CONNECTION_CLOSE ends the walk", sealInitial(t, with(func(s *initialSpec) { s.frames = append(cryptoFrame(0, hello), 0x1c, 0, 0, 0, 0xff) })), "quic-evil.example", nil},
			{"ClientHello without SNI", sealInitial(t, with(func(s *initialSpec) { s.frames = cryptoFrame(0, clientHello()) })), "", ErrNoSNI},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var s QUICScratch
				got, err := QUICInitialSNI(tc.pkt, &s)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("v%#x: err = %v, want %v", version, err, tc.wantErr)
					}
					return
				}
				if err != nil || string(got) != tc.want {
					t.Fatalf("v%#x: got %q, %v; want %q", version, got, err, tc.want)
				}
			})
		}
	}
}

func TestQUICInitialSNIRejects(t *testing.T) {
	hello := evilHello()
	good := sealInitial(t, initialSpec{version: QUICVersion1, dcid: rfcDCID, pnLen: 2, frames: cryptoFrame(0, hello), padTo: 1162})
	goodV2 := sealInitial(t, initialSpec{version: QUICVersion2, dcid: rfcDCID, pnLen: 2, frames: cryptoFrame(0, hello), padTo: 1162})
	flip := func(p []byte, i int) []byte { p = bytes.Clone(p); p[i] ^= 0x01; return p }
	withVersion := func(p []byte, v uint32) []byte {
		p = bytes.Clone(p)
		p[1], p[2], p[3], p[4] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		return p
	}
	big := sealInitial(t, initialSpec{version: QUICVersion1, dcid: rfcDCID, pnLen: 2, frames: cryptoFrame(0, hello), padTo: QUICMaxPacket})

	tests := []struct {
		name    string
		pkt     []byte
		wantErr error
	}{
		{"short header", append([]byte{0x40}, good[1:]...), ErrUnsupported},
		{"version negotiation", withVersion(good, 0), ErrUnsupported},
		{"draft-29", withVersion(good, 0xff00001d), ErrUnsupported},
		{"v1 Handshake type", append([]byte{good[0] | 0x20}, good[1:]...), ErrUnsupported},
		{"v2 packet with v1 Initial type bits", append([]byte{goodV2[0] &^ 0x30}, goodV2[1:]...), ErrUnsupported},
		{"v1 packet labelled v2", withVersion(good, QUICVersion2), ErrUnsupported}, // type bits 00 are Retry in v2
		// other keys: garbage frames (the tag is not checked, see TestQUICBadTag)
		{"dcid changed", flip(good, 6), ErrMalformed},
		{"cut by the snapshot", good[:1000], ErrTruncated},
		{"cut in the header", good[:12], ErrTruncated},
		{"dcid length 21", append(append([]byte(nil), good[:5]...), 21, 0, 0), ErrMalformed},
		{"length field too small for a sample", append(bytes.Clone(good[:16]), 0x40, 0x10, 0, 0), ErrMalformed},
		{"larger than QUICMaxPacket", big, ErrUnsupported},
		{"empty", nil, ErrTruncated},
	}
	var s QUICScratch
	for _, tc := range tests {
		if _, err := QUICInitialSNI(tc.pkt, &s); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	// The input is never modified.
	in := bytes.Clone(good)
	if _, err := QUICInitialSNI(in, &s); err != nil || !bytes.Equal(in, good) {
		t.Errorf("input modified or err %v", err)
	}
}

// TestQUICBadTag: an Initial whose tag does not verify is read all the
// same, as Maltrail reads it, and BadTag says so.
func TestQUICBadTag(t *testing.T) {
	hello := evilHello()
	good := sealInitial(t, initialSpec{version: QUICVersion1, dcid: rfcDCID, pnLen: 2, frames: cryptoFrame(0, hello), padTo: 1162})
	var s QUICScratch
	for _, c := range []struct {
		name string
		at   int // byte flipped; -1 none
		bad  bool
	}{{"good", -1, false}, {"tag bit flipped", len(good) - 1, true}, {"padding bit flipped", len(good) - 40, true}, {"good again", -1, false}} {
		if c.name == "good again" {
			s.BadTag = true // a packet that fails before decryption must not keep the last verdict
			_, _ = QUICInitialSNI([]byte{0xc0}, &s)
			if s.BadTag {
				t.Error("BadTag kept over a packet that never reached decryption")
			}
		}
		p := bytes.Clone(good)
		if c.at >= 0 {
			p[c.at] ^= 0x01
		}
		sni, err := QUICInitialSNI(p, &s)
		if err != nil || string(sni) != "quic-evil.example" || s.BadTag != c.bad {
			t.Errorf("%s: sni %q err %v BadTag %v", c.name, sni, err, s.BadTag)
		}
	}
}

func TestDecodePacketNumber(t *testing.T) {
	// RFC 9000 A.3 example, and the first packets of a space.
	tests := []struct {
		largest   int64
		truncated uint64
		nbits     int
		want      uint64
	}{
		{0xa82f30ea, 0x9b32, 16, 0xa82f9b32},
		{-1, 0, 8, 0},
		{-1, 2, 32, 2},
		{-1, 0xff, 8, 0xff},
		{0xff, 0x01, 8, 0x101},
		{0x100, 0xff, 8, 0xff},
	}
	for _, tc := range tests {
		if got := decodePacketNumber(tc.largest, tc.truncated, tc.nbits); got != tc.want {
			t.Errorf("decode(%#x, %#x, %d) = %#x, want %#x", tc.largest, tc.truncated, tc.nbits, got, tc.want)
		}
	}
}

func TestCryptoReassembly(t *testing.T) {
	var s QUICScratch
	s.addCrypto(70, make([]byte, 100))
	if got := s.cryptoPrefix(); got != 0 {
		t.Errorf("prefix with a hole at 0 = %d", got)
	}
	s.addCrypto(0, make([]byte, 70))
	if got := s.cryptoPrefix(); got != 170 {
		t.Errorf("prefix = %d, want 170", got)
	}
	s.addCrypto(QUICMaxCrypto-10, make([]byte, 100)) // clipped
	s.addCrypto(170, make([]byte, QUICMaxCrypto))
	if got := s.cryptoPrefix(); got != QUICMaxCrypto {
		t.Errorf("full prefix = %d", got)
	}
}

func BenchmarkQUICInitialSNI(b *testing.B) {
	for _, version := range []uint32{QUICVersion1, QUICVersion2} {
		pkt := sealInitial(b, initialSpec{version: version, dcid: rfcDCID, scid: []byte{1, 2, 3, 4}, pnLen: 1,
			frames: cryptoFrame(0, evilHello()), padTo: 1162})
		name := "v1"
		if version == QUICVersion2 {
			name = "v2"
		}
		b.Run(name, func(b *testing.B) {
			var s QUICScratch
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				if _, err := QUICInitialSNI(pkt, &s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("key-derivation-only", func(b *testing.B) {
		ver, _ := lookupQUICVersion(QUICVersion1)
		var s QUICScratch
		b.ReportAllocs()
		for b.Loop() {
			deriveInitialKeys(ver, rfcDCID, &s)
		}
	})
}

func quicSeeds(f *testing.F) {
	hello := evilHello()
	for _, v := range []uint32{QUICVersion1, QUICVersion2} {
		f.Add(sealInitial(f, initialSpec{version: v, dcid: rfcDCID, pnLen: 4, pn: 2, frames: cryptoFrame(0, hello), padTo: 1162}))
		f.Add(sealInitial(f, initialSpec{version: v, dcid: []byte{1}, scid: []byte{2, 3}, token: []byte("tok"), pnLen: 1,
			frames: append(append(cryptoFrame(50, hello[50:]), 0x01, 0x00), cryptoFrame(0, hello[:50])...)}))
	}
	f.Add(sealInitial(f, initialSpec{version: QUICVersion1, dcid: rfcDCID, pnLen: 4, pn: 2, frames: mustHex(f, rfc9001ClientCrypto), padTo: 1162}))
}

func FuzzQUICInitialSNI(f *testing.F) {
	quicSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s QUICScratch
		in := bytes.Clone(b)
		sni, err := QUICInitialSNI(b, &s)
		if !bytes.Equal(in, b) {
			t.Fatal("input modified")
		}
		if err != nil {
			for _, k := range []error{ErrTruncated, ErrMalformed, ErrUnsupported, ErrNoSNI, ErrDecrypt} {
				if errors.Is(err, k) {
					return
				}
			}
			t.Fatalf("untyped error %v", err)
		}
		if len(sni) == 0 {
			t.Fatal("empty SNI without an error")
		}
	})
}

// FuzzQUICFrames fuzzes what follows decryption, which random packets
// never reach (the AEAD tag fails first): the frame walk, CRYPTO
// reassembly and the ClientHello parse.
func FuzzQUICFrames(f *testing.F) {
	hello := evilHello()
	f.Add(cryptoFrame(0, hello))
	f.Add(append(append(cryptoFrame(50, hello[50:]), 0x01, 0x00, 0x02, 0x05, 0x00, 0x01, 0x01, 0x00, 0x00), cryptoFrame(0, hello[:50])...))
	f.Add(append([]byte{0x03, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x40, 0x03}, cryptoFrame(0, hello)...))
	f.Add(mustHex(f, rfc9001ClientCrypto))
	f.Fuzz(func(t *testing.T, p []byte) {
		var s QUICScratch
		err := walkInitialFrames(p, &s)
		if err != nil && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("untyped error %v", err)
		}
		n := s.cryptoPrefix()
		if n < 0 || n > QUICMaxCrypto {
			t.Fatalf("prefix %d", n)
		}
		_, _ = ClientHelloSNIFromHandshake(s.crypto[:n])
	})
}

// TestQUICInitialSNIAllocs pins what allocates: only the two
// aes.NewCipher and the cipher.NewGCM of a packet that gets as far as
// decryption; packets rejected from their header allocate nothing.
func TestQUICInitialSNIAllocs(t *testing.T) {
	pkt := sealInitial(t, initialSpec{version: QUICVersion1, dcid: rfcDCID, pnLen: 1, frames: cryptoFrame(0, evilHello()), padTo: 1162})
	var s QUICScratch
	n := testing.AllocsPerRun(50, func() {
		if _, err := QUICInitialSNI(pkt, &s); err != nil {
			t.Fatal(err)
		}
	})
	if n > 3 {
		t.Errorf("QUICInitialSNI: %v allocs, want at most 3 (2x aes.NewCipher, cipher.NewGCM)", n)
	}
	short := append([]byte{0x40}, pkt[1:]...)
	cut := pkt[:600]
	n = testing.AllocsPerRun(50, func() {
		_, _ = QUICInitialSNI(short, &s)
		_, _ = QUICInitialSNI(cut, &s)
	})
	if n != 0 {
		t.Errorf("rejected headers: %v allocs, want 0", n)
	}
}
