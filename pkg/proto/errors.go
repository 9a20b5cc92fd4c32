// Package proto parses the payload snapshots the XDP program hands the
// sensor agent: DNS messages, HTTP request and response starts, TLS
// ClientHellos and QUIC v1/v2 Initial packets.
//
// Every parser reads untrusted, possibly truncated bytes (a snapshot is cut
// at the snapshot length, and there is no TCP reassembly). None of them
// panics, every length read from the input is checked against the bytes
// present before it is used, and none allocates on the per-packet path
// except QUIC, whose AES and GCM constructors allocate (see QUICInitialSNI).
// Results are sub-slices of the input or of caller-owned buffers, so they
// are valid only as long as those are left unchanged.
//
// The DNS and HTTP parsers read their input the way Maltrail's sensor does
// (see shared/spec/maltrail.md §1.3, §1.4 and §4), including its quirks,
// because detections must match Maltrail's byte for byte; where they go
// beyond it (the DNS answer walk, TLS, QUIC) they follow the RFCs.
package proto

import "errors"

// Error kinds. Every error a parser returns is an *Error that wraps one of
// these, so callers branch with errors.Is and log the *Error for context.
var (
	// ErrTruncated: the input ends before the structure it starts does.
	// For a snapshot this is usually the snapshot length, not an attack.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: the bytes present violate the format.
	ErrMalformed = errors.New("malformed")
	// ErrUnsupported: well-formed input of a kind the parser does not
	// handle (a TLS record that is not a handshake, a QUIC packet that is
	// not a v1/v2 Initial, a payload larger than the scratch space).
	ErrUnsupported = errors.New("unsupported")
	// ErrNoSNI: a complete ClientHello without a server_name host name.
	ErrNoSNI = errors.New("no server name")
	// ErrDecrypt: kept for callers that test for it; no parser returns it
	// now that QUIC Initials are read without enforcing their AEAD tag,
	// as Maltrail reads them (QUICScratch.BadTag reports a bad tag).
	ErrDecrypt = errors.New("decryption failed")
)

// Error reports where a parse failed and why.
//
// Parsers return pointers to package-level *Error values rather than
// building errors with fmt.Errorf: an error per malformed packet must not
// cost an allocation on the path that handles hostile traffic. These values
// are never modified after initialisation.
type Error struct {
	Where string // the protocol element being read, e.g. "dns question name"
	Kind  error  // one of the Err* kinds above
}

func (e *Error) Error() string { return "proto: " + e.Where + ": " + e.Kind.Error() }

// Unwrap lets errors.Is match the kind.
func (e *Error) Unwrap() error { return e.Kind }

func newErr(where string, kind error) *Error { return &Error{Where: where, Kind: kind} }
