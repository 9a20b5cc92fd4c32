package d4

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ALPN is the application protocol a D4 session negotiates over QUIC.
const ALPN = "d4"

// Acknowledgement records, sent by the server back on the QUIC stream that
// carries a sensor's frames (xtrail's extension; D4 over TLS has none):
//
//	off 0..3   ASCII "D4AK"
//	off 4      kind: AckStored or AckRejected
//	off 5..7   zero
//	off 8..15  uint64 little-endian: how many frames of this stream are done
//
// The count is cumulative and never decreases. A type-2 frame is done once it
// is parsed, a type-254 frame once the store holds its lines. The server may
// coalesce acks. After an AckRejected record it closes the connection with a
// QUIC application error whose reason is the rejection reason; the record's
// count is the number of frames done before the rejected one.
const (
	AckSize     = 16
	AckStored   = 1
	AckRejected = 2
)

// CloseRejected is the QUIC application error code of a connection the
// server closes after an AckRejected record; the reason string says why.
// A client that sees it without the record (the close overtook it) treats
// it the same way.
const CloseRejected = 0x2

var ackMagic = [4]byte{'D', '4', 'A', 'K'}

// Ack is a decoded acknowledgement record.
type Ack struct {
	Kind  uint8
	Count uint64
}

// errBadAck is wrapped by ParseAck.
var errBadAck = errors.New("d4: malformed ack record")

// AppendAck appends the 16-byte record for a to dst.
func AppendAck(dst []byte, a Ack) []byte {
	var b [AckSize]byte
	copy(b[:4], ackMagic[:])
	b[4] = a.Kind
	binary.LittleEndian.PutUint64(b[8:], a.Count)
	return append(dst, b[:]...)
}

// ParseAck decodes one record from the first AckSize bytes of b. It refuses a
// short buffer, a wrong magic, an unknown kind and non-zero reserved bytes, so
// a server speaking something else is noticed at once.
func ParseAck(b []byte) (Ack, error) {
	if len(b) < AckSize {
		return Ack{}, fmt.Errorf("%w: %d bytes, want %d", errBadAck, len(b), AckSize)
	}
	if [4]byte(b[:4]) != ackMagic {
		return Ack{}, fmt.Errorf("%w: magic %q", errBadAck, b[:4])
	}
	if b[5]|b[6]|b[7] != 0 {
		return Ack{}, fmt.Errorf("%w: reserved bytes % x", errBadAck, b[5:8])
	}
	a := Ack{Kind: b[4], Count: binary.LittleEndian.Uint64(b[8:AckSize])}
	if a.Kind != AckStored && a.Kind != AckRejected {
		return Ack{}, fmt.Errorf("%w: kind %d", errBadAck, a.Kind)
	}
	return a, nil
}
