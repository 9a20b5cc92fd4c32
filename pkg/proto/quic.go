package proto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
)

// QUIC versions whose Initial packets the sensor decrypts.
const (
	QUICVersion1 = 0x00000001 // RFC 9000
	QUICVersion2 = 0x6b3343cf // RFC 9369
)

// Scratch capacities. A client Initial travels in a datagram of at least
// 1200 bytes and, in practice, at most a path MTU; snapshots are at most
// 1536 bytes (XT_SNAP_MAX in bpf/xtrail.h).
const (
	// QUICMaxPacket is the largest Initial packet (header and protected
	// payload) QUICInitialSNI decrypts.
	QUICMaxPacket = 2048
	// QUICMaxCrypto is how much of the Initial CRYPTO stream, from offset
	// 0, is reassembled. Data beyond it is dropped, which only matters if
	// the server_name extension lies beyond it.
	QUICMaxCrypto = 4096

	quicMaxCIDLen = 20 // RFC 9000 §17.2, for v1 and v2
	quicTagLen    = 16 // AES-128-GCM
	quicSampleLen = 16
	quicKeyLen    = 16
	quicIVLen     = 12
)

// Initial salts: RFC 9001 §5.2 and RFC 9369 §3.3.1.
var (
	quicSaltV1 = [20]byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	quicSaltV2 = [20]byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

var (
	errQUICHeader    = newErr("quic long header", ErrTruncated)
	errQUICShort     = newErr("quic: short header packet", ErrUnsupported)
	errQUICVersion   = newErr("quic: version is neither 1 nor 2", ErrUnsupported)
	errQUICNotInit   = newErr("quic: not an Initial packet", ErrUnsupported)
	errQUICCIDLen    = newErr("quic long header: connection id longer than 20", ErrMalformed)
	errQUICPacket    = newErr("quic Initial: packet", ErrTruncated)
	errQUICTooShort  = newErr("quic Initial: length too short for a sample and a tag", ErrMalformed)
	errQUICTooLarge  = newErr("quic Initial: larger than QUICMaxPacket", ErrUnsupported)
	errQUICFrame     = newErr("quic Initial frames", ErrTruncated)
	errQUICFrameType = newErr("quic Initial frames: frame type not allowed in an Initial", ErrMalformed)
	errQUICNoCrypto  = newErr("quic Initial: no CRYPTO data at offset 0", ErrTruncated)
	errQUICCipher    = newErr("quic Initial: cipher setup", ErrMalformed)
)

// QUICScratch is the caller-owned working memory of QUICInitialSNI: the
// packet copy it unprotects and decrypts in place, the reassembled CRYPTO
// stream and the key material. Reuse one per goroutine; it is about 7 KiB.
type QUICScratch struct {
	// BadTag reports that the last QUICInitialSNI read a packet whose
	// AEAD tag did not verify (it reads it all the same, as Maltrail).
	BadTag bool

	pkt    [QUICMaxPacket]byte
	ct     [QUICMaxPacket]byte // the ciphertext, kept for a packet whose tag fails
	crypto [QUICMaxCrypto]byte
	have   [QUICMaxCrypto / 64]uint64 // which crypto bytes arrived

	// Key material and per-packet values live here rather than on the
	// stack: slices of them are passed through the cipher.Block and
	// cipher.AEAD interfaces, which makes stack arrays escape.
	key, hp [quicKeyLen]byte
	iv      [quicIVLen]byte
	nonce   [quicIVLen]byte
	mask    [aes.BlockSize]byte
}

// quicVersion holds what differs between QUIC v1 and v2 Initials.
type quicVersion struct {
	salt                       *[20]byte
	initialType                byte // long header type bits (0x30) of an Initial
	keyLabel, ivLabel, hpLabel string
}

func lookupQUICVersion(v uint32) (quicVersion, bool) {
	switch v {
	case QUICVersion1:
		return quicVersion{&quicSaltV1, 0x00, "quic key", "quic iv", "quic hp"}, true
	case QUICVersion2:
		return quicVersion{&quicSaltV2, 0x10, "quicv2 key", "quicv2 iv", "quicv2 hp"}, true
	}
	return quicVersion{}, false
}

// quicHeader is the parsed, still protected, long header of an Initial.
type quicHeader struct {
	version uint32
	dcid    []byte
	pnOff   int // offset of the packet number
	end     int // offset just past this packet (coalesced packets may follow)
}

// parseQUICInitialHeader reads the long header of the packet at the start
// of b (RFC 9000 §17.2.2, RFC 9369 §3.2).
func parseQUICInitialHeader(b []byte) (quicHeader, quicVersion, error) {
	var h quicHeader
	if len(b) < 7 {
		return h, quicVersion{}, errQUICHeader
	}
	if b[0]&0x80 == 0 {
		return h, quicVersion{}, errQUICShort
	}
	h.version = binary.BigEndian.Uint32(b[1:])
	ver, ok := lookupQUICVersion(h.version)
	if !ok {
		return h, ver, errQUICVersion
	}
	// The type bits are not header-protected in a long header. The fixed
	// bit (0x40) is not checked: RFC 9287 lets endpoints grease it.
	if b[0]&0x30 != ver.initialType {
		return h, ver, errQUICNotInit
	}
	off := 5
	dl := int(b[off])
	if dl > quicMaxCIDLen {
		return h, ver, errQUICCIDLen
	}
	off++
	if len(b)-off < dl+1 {
		return h, ver, errQUICHeader
	}
	h.dcid = b[off : off+dl : off+dl]
	off += dl
	sl := int(b[off])
	if sl > quicMaxCIDLen {
		return h, ver, errQUICCIDLen
	}
	off++
	if len(b)-off < sl {
		return h, ver, errQUICHeader
	}
	off += sl
	tokLen, n := quicVarint(b[off:])
	if n == 0 {
		return h, ver, errQUICHeader
	}
	off += n
	if uint64(len(b)-off) < tokLen {
		return h, ver, errQUICHeader
	}
	off += int(tokLen)
	length, n := quicVarint(b[off:])
	if n == 0 {
		return h, ver, errQUICHeader
	}
	off += n
	h.pnOff = off
	// The sample starts 4 bytes after the packet number field begins
	// (RFC 9001 §5.4.2) and the smallest packet number is 1 byte, so a
	// valid packet has room for 4 bytes, a sample, and a tag after it.
	if length < 4+quicSampleLen {
		return h, ver, errQUICTooShort
	}
	if uint64(len(b)-off) < length {
		return h, ver, errQUICPacket
	}
	h.end = off + int(length)
	return h, ver, nil
}

// QUICInitialSNI decrypts the QUIC v1 or v2 client Initial packet at the
// start of the UDP payload b and returns the SNI of the ClientHello its
// CRYPTO frames carry.
//
// It derives the Initial keys from the destination connection ID (RFC 9001
// §5.2), removes header protection (§5.4), decodes the packet number,
// opens the AES-128-GCM payload (reading it even when the tag does not
// verify, as Maltrail does: see QUICScratch.BadTag), and reassembles CRYPTO frames, in any
// order, from offset 0 up to QUICMaxCrypto bytes. Initial packets
// coalesced after the first one in the datagram, with the same version and
// destination connection ID, add their CRYPTO frames too. b is not
// modified. The name aliases scratch and is valid until its next use.
//
// Allocation: the key schedule (HKDF-SHA256 over fixed arrays) allocates
// nothing, but aes.NewCipher (twice: packet key and header-protection key)
// and cipher.NewGCM allocate on every call, since the keys depend on the
// connection ID. BenchmarkQUICInitialSNI reports the count.
func QUICInitialSNI(b []byte, scratch *QUICScratch) ([]byte, error) {
	scratch.BadTag = false
	h, ver, err := parseQUICInitialHeader(b)
	if err != nil {
		return nil, err
	}
	if h.end > QUICMaxPacket {
		return nil, errQUICTooLarge
	}
	s := scratch
	deriveInitialKeys(ver, h.dcid, s)
	hpBlock, err := aes.NewCipher(s.hp[:])
	if err != nil {
		return nil, errQUICCipher
	}
	block, err := aes.NewCipher(s.key[:])
	if err != nil {
		return nil, errQUICCipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, errQUICCipher
	}
	clear(s.have[:])

	var walkErr error
	dcid := h.dcid
	for first := true; ; first = false {
		plain, err := openInitial(b[:h.end], h.pnOff, hpBlock, block, aead, s)
		if err != nil {
			if first {
				return nil, err
			}
			break // a coalesced packet that does not open adds nothing
		}
		if err := walkInitialFrames(plain, s); err != nil {
			walkErr = err
			break
		}
		// Coalesced packets (RFC 9000 §12.2): keep going while the next
		// one is another Initial for the same connection.
		b = b[h.end:]
		next, nver, err := parseQUICInitialHeader(b)
		if err != nil || next.version != h.version || nver.initialType != ver.initialType ||
			string(next.dcid) != string(dcid) || next.end > QUICMaxPacket {
			break
		}
		h = next
	}

	n := s.cryptoPrefix()
	if n == 0 {
		if walkErr != nil {
			return nil, walkErr
		}
		return nil, errQUICNoCrypto
	}
	sni, err := ClientHelloSNIFromHandshake(s.crypto[:n])
	if err != nil && walkErr != nil {
		return nil, walkErr
	}
	return sni, err
}

// openInitial copies the packet p into s.pkt, removes header protection,
// and decrypts the payload in place, returning the plaintext frames.
func openInitial(p []byte, pnOff int, hpBlock, block cipher.Block, aead cipher.AEAD, s *QUICScratch) ([]byte, error) {
	pkt := s.pkt[:copy(s.pkt[:], p)]
	sample := pkt[pnOff+4 : pnOff+4+quicSampleLen]
	hpBlock.Encrypt(s.mask[:], sample)
	pkt[0] ^= s.mask[0] & 0x0f // long header: the low 4 bits are protected
	pnLen := int(pkt[0]&0x03) + 1
	var truncated uint64
	for i := range pnLen {
		pkt[pnOff+i] ^= s.mask[1+i]
		truncated = truncated<<8 | uint64(pkt[pnOff+i])
	}
	// Without connection state the largest acknowledged packet number is
	// unknown; as for the first packet of a space, decode against none.
	pn := decodePacketNumber(-1, truncated, pnLen*8)

	// Nonce: the IV XORed with the packet number, left-padded to 12 bytes
	// (RFC 9001 §5.3).
	s.nonce = s.iv
	for i := range 8 {
		s.nonce[quicIVLen-1-i] ^= byte(pn >> (8 * i))
	}
	hdr := pkt[: pnOff+pnLen : pnOff+pnLen]
	ct := pkt[pnOff+pnLen:]
	if len(ct) < quicTagLen {
		return nil, errQUICTooShort
	}
	// Maltrail reads the CRYPTO frames whether or not the tag verifies
	// (middleboxes and its own test captures rewrite Initials), so a bad
	// tag is noted, not fatal: the payload is then decrypted as GCM
	// encrypts it, AES-CTR from counter 2, and the tag ignored.
	saved := s.ct[:copy(s.ct[:], ct)]
	plain, err := aead.Open(ct[:0], s.nonce[:], ct, hdr)
	if err == nil {
		return plain, nil
	}
	s.BadTag = true
	body := saved[:len(saved)-quicTagLen]
	var iv [aes.BlockSize]byte
	copy(iv[:], s.nonce[:])
	iv[aes.BlockSize-1] = 2
	cipher.NewCTR(block, iv[:]).XORKeyStream(ct[:len(body)], body)
	return ct[:len(body)], nil
}

// decodePacketNumber recovers a full packet number from its truncated
// encoding (RFC 9000 Appendix A.3). largest is the largest packet number
// seen in the space, -1 for none.
func decodePacketNumber(largest int64, truncated uint64, nbits int) uint64 {
	expected := uint64(largest + 1)
	win := uint64(1) << nbits
	hwin := win / 2
	mask := win - 1
	candidate := (expected &^ mask) | truncated
	switch {
	case candidate+hwin <= expected && candidate < (1<<62)-win:
		return candidate + win
	case candidate > expected+hwin && candidate >= win:
		return candidate - win
	}
	return candidate
}

// walkInitialFrames reads the frames of a decrypted Initial, copying
// CRYPTO data into s.crypto at its offset. Only the frames RFC 9000 §12.4
// allows in an Initial are understood; anything else ends the walk with
// an error (the CRYPTO data already copied is kept).
func walkInitialFrames(p []byte, s *QUICScratch) error {
	for len(p) > 0 {
		typ := p[0]
		p = p[1:]
		switch typ {
		case 0x00, 0x01: // PADDING, PING
		case 0x02, 0x03: // ACK, ACK with ECN counts
			var f [4]uint64
			if !quicVarints(&p, f[:]) {
				return errQUICFrame
			}
			// f: largest acknowledged, delay, range count, first range
			for r := f[2]; r > 0; r-- {
				if !quicVarints(&p, f[:2]) { // gap, range length
					return errQUICFrame
				}
			}
			if typ == 0x03 && !quicVarints(&p, f[:3]) { // ECT0, ECT1, CE
				return errQUICFrame
			}
		case 0x06: // CRYPTO
			var f [2]uint64
			if !quicVarints(&p, f[:]) {
				return errQUICFrame
			}
			off, n := f[0], f[1]
			if uint64(len(p)) < n {
				return errQUICFrame
			}
			s.addCrypto(off, p[:n])
			p = p[n:]
		case 0x1c: // CONNECTION_CLOSE (transport): nothing follows it
			return nil
		default:
			return errQUICFrameType
		}
	}
	return nil
}

// addCrypto stores CRYPTO data at its stream offset, dropping what lies
// beyond QUICMaxCrypto, and marks the bytes present.
func (s *QUICScratch) addCrypto(off uint64, data []byte) {
	if off >= QUICMaxCrypto {
		return
	}
	lo := int(off)
	hi := lo + copy(s.crypto[lo:], data)
	for i := lo; i < hi; {
		w, bit := i/64, i%64
		if bit == 0 && hi-i >= 64 {
			s.have[w] = ^uint64(0)
			i += 64
			continue
		}
		s.have[w] |= 1 << bit
		i++
	}
}

// cryptoPrefix returns how many bytes of the CRYPTO stream are contiguous
// from offset 0.
func (s *QUICScratch) cryptoPrefix() int {
	for w, v := range s.have {
		if v != ^uint64(0) {
			return w*64 + bits.TrailingZeros64(^v)
		}
	}
	return QUICMaxCrypto
}

// quicVarint decodes a variable-length integer (RFC 9000 §16), returning
// it and its length, or 0 bytes if b is too short.
func quicVarint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 0
	}
	n := 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v := uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n
}

// quicVarints decodes len(dst) varints from *p, advancing it.
func quicVarints(p *[]byte, dst []uint64) bool {
	for i := range dst {
		v, n := quicVarint(*p)
		if n == 0 {
			return false
		}
		dst[i] = v
		*p = (*p)[n:]
	}
	return true
}

// deriveInitialKeys computes the client Initial packet key, IV and
// header-protection key for a destination connection ID (RFC 9001 §5.2,
// RFC 9369 §3.3) into s.
func deriveInitialKeys(ver quicVersion, dcid []byte, s *QUICScratch) {
	initial := hmacSHA256(ver.salt[:], dcid) // HKDF-Extract(salt, DCID)
	client := hkdfExpandLabel(&initial, "client in", sha256.Size)
	k := hkdfExpandLabel(&client, ver.keyLabel, quicKeyLen)
	copy(s.key[:], k[:quicKeyLen])
	iv := hkdfExpandLabel(&client, ver.ivLabel, quicIVLen)
	copy(s.iv[:], iv[:quicIVLen])
	hp := hkdfExpandLabel(&client, ver.hpLabel, quicKeyLen)
	copy(s.hp[:], hp[:quicKeyLen])
}

// The HKDF here is written out over fixed-size arrays, with sha256.Sum256
// rather than crypto/hkdf and crypto/hmac, whose hash states are heap
// allocated: this runs once per Initial packet. Every output QUIC needs is
// at most one SHA-256 block (32 bytes), so HKDF-Expand is a single HMAC.

const (
	sha256BlockLen = 64
	hmacMaxMsg     = 64 // longest HMAC message: an HKDF label info plus counter
)

// hmacSHA256 computes HMAC-SHA256 (RFC 2104) for a key of at most 64 bytes
// and a message of at most hmacMaxMsg bytes, which is all QUIC's key
// schedule uses.
func hmacSHA256(key, msg []byte) [sha256.Size]byte {
	var in [sha256BlockLen + hmacMaxMsg]byte
	var out [sha256BlockLen + sha256.Size]byte
	for i := range sha256BlockLen {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		in[i] = k ^ 0x36
		out[i] = k ^ 0x5c
	}
	n := copy(in[sha256BlockLen:], msg)
	inner := sha256.Sum256(in[:sha256BlockLen+n])
	copy(out[sha256BlockLen:], inner[:])
	return sha256.Sum256(out[:])
}

// hkdfExpandLabel is TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1) with an
// empty context, for an output of length ≤ 32 bytes, which it returns in
// the first length bytes of the array. The length is part of the info, so
// a shorter key is not a prefix of a longer one.
func hkdfExpandLabel(secret *[sha256.Size]byte, label string, length int) [sha256.Size]byte {
	// info = uint16 length, uint8 len("tls13 "+label), "tls13 "+label,
	// uint8 len(context) = 0; then HKDF's block counter 0x01.
	var info [hmacMaxMsg]byte
	info[0] = byte(length >> 8)
	info[1] = byte(length)
	info[2] = byte(len("tls13 ") + len(label))
	n := 3 + copy(info[3:], "tls13 ")
	n += copy(info[n:], label)
	info[n] = 0
	info[n+1] = 1
	return hmacSHA256(secret[:], info[:n+2])
}
