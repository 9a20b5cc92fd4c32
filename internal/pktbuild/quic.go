package pktbuild

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
)

// QUIC versions whose client Initials Initial.Seal protects.
const (
	QUICVersion1 = 0x00000001 // RFC 9000
	QUICVersion2 = 0x6b3343cf // RFC 9369
)

// Initial salts: RFC 9001 §5.2 and RFC 9369 §3.3.1.
var (
	quicSaltV1 = [20]byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	quicSaltV2 = [20]byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

// QUICInitialKeys derives the client Initial packet key, IV and
// header-protection key for a destination connection ID (RFC 9001 §5.2,
// RFC 9369 §3.3) with crypto/hkdf, so tests check the sensor's own key
// schedule against an independent one.
func QUICInitialKeys(version uint32, dcid []byte) (key, iv, hp []byte) {
	salt, pfx := quicSaltV1[:], "quic "
	if version == QUICVersion2 {
		salt, pfx = quicSaltV2[:], "quicv2 "
	}
	prk, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		panic(err) // only for hash functions HKDF refuses
	}
	expand := func(secret []byte, label string, n int) []byte {
		full := "tls13 " + label
		info := []byte{byte(n >> 8), byte(n), byte(len(full))}
		info = append(info, full...)
		info = append(info, 0)
		out, err := hkdf.Expand(sha256.New, secret, string(info), n)
		if err != nil {
			panic(err) // only for lengths over 255 hash blocks
		}
		return out
	}
	client := expand(prk, "client in", 32)
	return expand(client, pfx+"key", 16), expand(client, pfx+"iv", 12), expand(client, pfx+"hp", 16)
}

// QUICInitial describes a client Initial packet.
type QUICInitial struct {
	Version    uint32 // QUICVersion1 or QUICVersion2
	DCID, SCID []byte
	Token      []byte
	PN         uint64
	PNLen      int // 1..4
	Frames     []byte
	PadTo      int // pad the plaintext with PADDING up to this many bytes
}

// Seal builds the protected packet (RFC 9001 §5.3, §5.4): AES-128-GCM
// over the frames with the header as AAD, then header protection from an
// AES-ECB mask of the ciphertext sample.
func (s QUICInitial) Seal() []byte {
	key, iv, hp := QUICInitialKeys(s.Version, s.DCID)
	plain := append([]byte(nil), s.Frames...)
	for len(plain) < s.PadTo {
		plain = append(plain, 0)
	}
	typ := byte(0x00)
	if s.Version == QUICVersion2 {
		typ = 0x10
	}
	hdr := []byte{0xC0 | typ | byte(s.PNLen-1)}
	hdr = binary.BigEndian.AppendUint32(hdr, s.Version)
	hdr = append(hdr, byte(len(s.DCID)))
	hdr = append(hdr, s.DCID...)
	hdr = append(hdr, byte(len(s.SCID)))
	hdr = append(hdr, s.SCID...)
	hdr = AppendVarint(hdr, uint64(len(s.Token)))
	hdr = append(hdr, s.Token...)
	length := s.PNLen + len(plain) + 16
	hdr = binary.BigEndian.AppendUint16(hdr, 0x4000|uint16(length)) // 2-byte varint, as RFC 9001 A.2
	pnOff := len(hdr)
	for i := s.PNLen - 1; i >= 0; i-- {
		hdr = append(hdr, byte(s.PN>>(8*i)))
	}
	nonce := append([]byte(nil), iv...)
	for i := range 8 {
		nonce[11-i] ^= byte(s.PN >> (8 * i))
	}
	aead, err := cipher.NewGCM(mustAES(key))
	if err != nil {
		panic(err) // AES has GCM's block size
	}
	pkt := aead.Seal(append([]byte(nil), hdr...), nonce, plain, hdr)
	var mask [16]byte
	mustAES(hp).Encrypt(mask[:], pkt[pnOff+4:pnOff+20])
	pkt[0] ^= mask[0] & 0x0f
	for i := range s.PNLen {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt
}

func mustAES(key []byte) cipher.Block {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // keys here are always 16 bytes
	}
	return b
}

// AppendVarint appends v as a QUIC variable-length integer (RFC 9000 §16).
func AppendVarint(b []byte, v uint64) []byte {
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

// CryptoFrame is a QUIC CRYPTO frame carrying data at stream offset off.
func CryptoFrame(off uint64, data []byte) []byte {
	f := AppendVarint([]byte{0x06}, off)
	f = AppendVarint(f, uint64(len(data)))
	return append(f, data...)
}
