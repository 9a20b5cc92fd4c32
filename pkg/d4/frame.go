// Package d4 implements the D4 protocol as spoken by d4-core's server:
// the frame codec with its HMAC (frame.go), a streaming frame reader for
// servers (reader.go), xtrail's QUIC acknowledgement records (ack.go), and
// the sensor side: an on-disk spool of event lines (spool.go) and the client
// that delivers them over TLS or QUIC (client.go, link.go, pin.go).
//
// The wire format is specified in shared/spec/d4.md §1: a 62-byte header
// (version, type, uuid, timestamp, hmac, size; integers little-endian)
// immediately followed by size payload bytes, with no padding or trailer.
package d4

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// Frame layout constants (spec §1).
const (
	// HeaderSize is the fixed length of a D4 frame header.
	HeaderSize = 62
	// MaxPayload is the largest payload the reference server accepts; a
	// larger size makes it abort the connection.
	MaxPayload = 1_000_000

	// Version is the header version every known client sends. Servers
	// never check it.
	Version = 1

	offVersion   = 0
	offType      = 1
	offUUID      = 2
	offTimestamp = 18
	offHMAC      = 26
	offSize      = 58
	hmacSize     = 32
)

// D4 frame types used by xtrail (spec §2).
const (
	// TypeMeta is the meta header: its payload is a JSON object naming the
	// meta type of the type-254 frames that follow on the same connection.
	TypeMeta = 2
	// TypeExtended carries data whose format the meta header defines.
	TypeExtended = 254
)

// UUID is a sensor UUID in canonical RFC 4122 byte order (the bytes of the
// text form, not the GUID-swapped order), as it travels in the header.
type UUID [16]byte

// errBadUUID is wrapped by ParseUUID so callers can report the input.
var errBadUUID = errors.New("d4: invalid uuid")

// ParseUUID parses the canonical 8-4-4-4-12 form or 32 hex digits without
// dashes (d4-core's storage form). Hex digits may be upper or lower case.
// It does not require version 4: use IsV4 for that, because the caller
// decides whether an old uuid is an error or a warning.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	var digits [32]byte
	switch len(s) {
	case 32:
		copy(digits[:], s)
	case 36:
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return u, fmt.Errorf("%w %q: dashes not at 8-4-4-4-12", errBadUUID, s)
		}
		n := copy(digits[:], s[0:8])
		n += copy(digits[n:], s[9:13])
		n += copy(digits[n:], s[14:18])
		n += copy(digits[n:], s[19:23])
		copy(digits[n:], s[24:36])
	default:
		return u, fmt.Errorf("%w %q: want 32 hex digits or 8-4-4-4-12", errBadUUID, s)
	}
	if _, err := hex.Decode(u[:], digits[:]); err != nil {
		return UUID{}, fmt.Errorf("%w %q: %v", errBadUUID, s, err)
	}
	return u, nil
}

// String returns the canonical lowercase 8-4-4-4-12 form.
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

// Hex returns 32 lowercase hex digits without dashes: the form d4-core
// uses in its Redis keys (the spec's <u>).
func (u UUID) Hex() string { return hex.EncodeToString(u[:]) }

// IsV4 reports whether u is a version-4 (random) RFC 4122 uuid, which the
// reference server requires of every frame.
func (u UUID) IsV4() bool { return u[6]>>4 == 4 && u[8]>>6 == 0b10 }

// NewUUIDv4 returns a random version-4 uuid.
func NewUUIDv4() (UUID, error) {
	var u UUID
	if _, err := rand.Read(u[:]); err != nil {
		return UUID{}, fmt.Errorf("d4: generating uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return u, nil
}

// Header is a decoded D4 frame header.
type Header struct {
	Version   uint8
	Type      uint8
	UUID      UUID
	Timestamp uint64 // Unix seconds at encapsulation; never validated by servers
	HMAC      [32]byte
	Size      uint32 // payload length, header excluded
}

// errShortHeader is returned by Unmarshal for a buffer under HeaderSize.
var errShortHeader = errors.New("d4: header shorter than 62 bytes")

// Unmarshal decodes the first HeaderSize bytes of b. It fails only when b
// is too short: every other field value is representable.
func (h *Header) Unmarshal(b []byte) error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w (got %d)", errShortHeader, len(b))
	}
	h.Version = b[offVersion]
	h.Type = b[offType]
	copy(h.UUID[:], b[offUUID:offTimestamp])
	h.Timestamp = binary.LittleEndian.Uint64(b[offTimestamp:offHMAC])
	copy(h.HMAC[:], b[offHMAC:offSize])
	h.Size = binary.LittleEndian.Uint32(b[offSize:HeaderSize])
	return nil
}

// MarshalTo encodes h into b[:HeaderSize]. Like binary.PutUint32 it panics
// when b is shorter than HeaderSize: that is a programming error, not input.
func (h *Header) MarshalTo(b []byte) {
	_ = b[HeaderSize-1] // one bounds check up front
	b[offVersion] = h.Version
	b[offType] = h.Type
	copy(b[offUUID:offTimestamp], h.UUID[:])
	binary.LittleEndian.PutUint64(b[offTimestamp:offHMAC], h.Timestamp)
	copy(b[offHMAC:offSize], h.HMAC[:])
	binary.LittleEndian.PutUint32(b[offSize:HeaderSize], h.Size)
}

// zeroHMAC stands in for the hmac field while hashing (spec §1).
var zeroHMAC [hmacSize]byte

// Signer computes and checks frame HMACs for one key. It keeps one
// reusable HMAC state so that signing and verifying allocate nothing.
// A Signer is not safe for concurrent use: give each goroutine its own.
type Signer struct {
	mac hash.Hash
	sum []byte // scratch for Verify, cap 32, so Sum does not allocate
}

// NewSigner returns a Signer for key. The key bytes are used verbatim,
// exactly as d4-core stores them (no trimming, no decoding).
func NewSigner(key []byte) *Signer {
	k := append([]byte(nil), key...) // the caller may reuse its slice
	mac := hmac.New(sha256.New, k)
	// The first Reset snapshots the padded key states (a one-time
	// allocation); doing it here keeps every AppendFrame allocation-free.
	mac.Reset()
	return &Signer{mac: mac, sum: make([]byte, 0, sha256.Size)}
}

// AppendFrame appends a version-1 frame (header and payload) to dst and
// returns the extended slice. The HMAC is HMAC-SHA-256 over the whole frame
// with the hmac field zeroed, written as all 32 bytes at offset 26 (spec §1:
// nobody truncates it despite the "-128" in the draft). It allocates only
// when dst lacks capacity. len(payload) must fit the uint32 size field; the
// caller enforces its own limit (normally MaxPayload).
func (s *Signer) AppendFrame(dst []byte, typ uint8, uuid UUID, ts uint64, payload []byte) []byte {
	start := len(dst)
	dst = grow(dst, HeaderSize+len(payload))
	frame := dst[start:]
	h := Header{Version: Version, Type: typ, UUID: uuid, Timestamp: ts, Size: uint32(len(payload))}
	h.MarshalTo(frame) // hmac field is zero here
	copy(frame[HeaderSize:], payload)

	s.mac.Reset()
	s.mac.Write(frame)
	// Sum appends to a zero-length slice whose capacity is exactly the
	// hmac field, so the digest lands in place without allocating.
	s.mac.Sum(frame[offHMAC:offHMAC:offSize])
	return dst
}

// Restamp gives frame (one whole frame, as AppendFrame built it) timestamp
// ts and signs it again, in place and without allocating.
func (s *Signer) Restamp(frame []byte, ts uint64) {
	binary.LittleEndian.PutUint64(frame[offTimestamp:offHMAC], ts)
	clear(frame[offHMAC:offSize])
	s.mac.Reset()
	s.mac.Write(frame)
	s.mac.Sum(frame[offHMAC:offHMAC:offSize])
}

// grow extends b by n bytes, reallocating only when capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// Verify reports whether frame (exactly one header plus its payload, as
// returned by Reader.Frame) carries a correct HMAC for this key. It does not
// modify frame and compares in constant time, unlike the reference server.
// A frame whose size field disagrees with its length is rejected.
func (s *Signer) Verify(frame []byte) bool {
	if len(frame) < HeaderSize ||
		uint64(binary.LittleEndian.Uint32(frame[offSize:HeaderSize])) != uint64(len(frame)-HeaderSize) {
		return false
	}
	s.mac.Reset()
	s.mac.Write(frame[:offHMAC])
	s.mac.Write(zeroHMAC[:])
	s.mac.Write(frame[offSize:])
	s.sum = s.mac.Sum(s.sum[:0])
	return hmac.Equal(s.sum, frame[offHMAC:offSize])
}
