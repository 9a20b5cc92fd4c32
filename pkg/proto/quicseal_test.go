package proto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// ---- QUIC: a test-only Initial encryptor ----

// testInitialKeys derives client Initial keys with crypto/hkdf, an
// implementation independent of the package's own fixed-array HKDF.
func testInitialKeys(tb testing.TB, version uint32, dcid []byte) (key, iv, hp []byte) {
	tb.Helper()
	salt, pfx := quicSaltV1[:], "quic "
	if version == QUICVersion2 {
		salt, pfx = quicSaltV2[:], "quicv2 "
	}
	prk, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		tb.Fatal(err)
	}
	expand := func(secret []byte, label string, n int) []byte {
		full := "tls13 " + label
		info := []byte{byte(n >> 8), byte(n), byte(len(full))}
		info = append(info, full...)
		info = append(info, 0)
		out, err := hkdf.Expand(sha256.New, secret, string(info), n)
		if err != nil {
			tb.Fatal(err)
		}
		return out
	}
	client := expand(prk, "client in", 32)
	return expand(client, pfx+"key", 16), expand(client, pfx+"iv", 12), expand(client, pfx+"hp", 16)
}

type initialSpec struct {
	version    uint32
	dcid, scid []byte
	token      []byte
	pn         uint64
	pnLen      int // 1..4
	frames     []byte
	padTo      int // pad the plaintext with PADDING up to this many bytes
}

// sealInitial builds a protected client Initial packet (RFC 9001 §5.3,
// §5.4): AES-128-GCM over the frames with the header as AAD, then header
// protection from an AES-ECB mask of the ciphertext sample.
func sealInitial(tb testing.TB, s initialSpec) []byte {
	tb.Helper()
	key, iv, hp := testInitialKeys(tb, s.version, s.dcid)
	plain := append([]byte(nil), s.frames...)
	for len(plain) < s.padTo {
		plain = append(plain, 0)
	}
	typ := byte(0x00)
	if s.version == QUICVersion2 {
		typ = 0x10
	}
	hdr := []byte{0xC0 | typ | byte(s.pnLen-1)}
	hdr = binary.BigEndian.AppendUint32(hdr, s.version)
	hdr = append(hdr, byte(len(s.dcid)))
	hdr = append(hdr, s.dcid...)
	hdr = append(hdr, byte(len(s.scid)))
	hdr = append(hdr, s.scid...)
	hdr = appendVarint(hdr, uint64(len(s.token)))
	hdr = append(hdr, s.token...)
	length := s.pnLen + len(plain) + 16
	hdr = binary.BigEndian.AppendUint16(hdr, 0x4000|uint16(length)) // 2-byte varint, as RFC 9001 A.2
	pnOff := len(hdr)
	for i := s.pnLen - 1; i >= 0; i-- {
		hdr = append(hdr, byte(s.pn>>(8*i)))
	}
	nonce := append([]byte(nil), iv...)
	for i := range 8 {
		nonce[11-i] ^= byte(s.pn >> (8 * i))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		tb.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		tb.Fatal(err)
	}
	pkt := aead.Seal(append([]byte(nil), hdr...), nonce, plain, hdr)
	hpb, err := aes.NewCipher(hp)
	if err != nil {
		tb.Fatal(err)
	}
	var mask [16]byte
	hpb.Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
	pkt[0] ^= mask[0] & 0x0f
	for i := range s.pnLen {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt
}

func appendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return binary.BigEndian.AppendUint16(b, 0x4000|uint16(v))
	case v < 1<<30:
		return binary.BigEndian.AppendUint32(b, 0x80000000|uint32(v))
	}
	return binary.BigEndian.AppendUint64(b, 0xC000000000000000|v)
}

func cryptoFrame(off uint64, data []byte) []byte {
	f := appendVarint([]byte{0x06}, off)
	f = appendVarint(f, uint64(len(data)))
	return append(f, data...)
}
