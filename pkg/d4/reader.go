package d4

import (
	"errors"
	"fmt"
	"io"
)

// ErrTooLarge is the FrameError reason for a size field above the reader's
// limit. The reference server aborts the connection in that case.
var ErrTooLarge = errors.New("d4: frame payload too large")

// FrameError reports a frame the Reader refuses to read. Header is the
// decoded header of that frame, so a server can log who sent it.
type FrameError struct {
	Header Header
	Max    uint32 // the reader's payload limit
	Err    error  // the reason, e.g. ErrTooLarge
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("%v: type %d uuid %s size %d > max %d",
		e.Err, e.Header.Type, e.Header.UUID, e.Header.Size, e.Max)
}

// Unwrap lets errors.Is(err, ErrTooLarge) work.
func (e *FrameError) Unwrap() error { return e.Err }

// Reader reads D4 frames from a byte stream: exactly HeaderSize bytes, then
// exactly Size payload bytes, with no resynchronisation (D4 has no magic, so
// after any error the stream position is unknown and the connection must be
// closed). It is not safe for concurrent use.
type Reader struct {
	r   io.Reader
	max uint32
	buf []byte // header + payload of the last frame; reused
	n   int    // length of the last frame in buf, 0 if none
	err error  // sticky: once the stream failed, every later Next fails too
}

// NewReader returns a Reader on r that refuses payloads above maxPayload
// (0 means MaxPayload, the reference server's limit). The reader's buffer
// never grows beyond HeaderSize+maxPayload, whatever the peer claims.
func NewReader(r io.Reader, maxPayload uint32) *Reader {
	if maxPayload == 0 {
		maxPayload = MaxPayload
	}
	// Start small: most D4 frames are a few KiB, and a flood of idle
	// connections should not pin large buffers.
	return &Reader{r: r, max: maxPayload, buf: make([]byte, HeaderSize, HeaderSize+4096)}
}

// Next reads the next frame and returns its header and payload. The payload
// aliases the Reader's buffer and is valid only until the next call.
//
// Errors: io.EOF when the stream ends cleanly between frames;
// io.ErrUnexpectedEOF when it ends inside a frame; a *FrameError wrapping
// ErrTooLarge when Size exceeds the limit (the payload is neither read nor
// allocated); other read errors are wrapped with context. Errors are sticky.
func (r *Reader) Next() (Header, []byte, error) {
	if r.err != nil {
		return Header{}, nil, r.err
	}
	r.n = 0
	var h Header
	hdr := r.buf[:HeaderSize]
	if n, err := io.ReadFull(r.r, hdr); err != nil {
		if n == 0 && err != io.EOF {
			// Nothing was consumed (e.g. a read deadline expired on an
			// idle connection), so the stream is still in sync and the
			// caller may call Next again.
			return Header{}, nil, fmt.Errorf("d4: reading frame header: %w", err)
		}
		return Header{}, nil, r.fail(err, "header")
	}
	_ = h.Unmarshal(hdr) // cannot fail: hdr is HeaderSize long
	if h.Size > r.max {
		r.err = &FrameError{Header: h, Max: r.max, Err: ErrTooLarge}
		return h, nil, r.err
	}
	need := HeaderSize + int(h.Size)
	if cap(r.buf) < need {
		// Grow geometrically to limit reallocations on a stream of growing
		// frames, but never past the limit the caller set.
		c := max(need, 2*cap(r.buf))
		c = min(c, HeaderSize+int(r.max))
		nb := make([]byte, HeaderSize, c)
		copy(nb, hdr)
		r.buf = nb
	}
	r.buf = r.buf[:need]
	if _, err := io.ReadFull(r.r, r.buf[HeaderSize:need]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the header was already read
		}
		return h, nil, r.fail(err, "payload")
	}
	r.n = need
	return h, r.buf[HeaderSize:need], nil
}

// fail records a sticky error. EOF conditions stay unwrapped so callers can
// compare with ==, as they do for io.Reader.
func (r *Reader) fail(err error, part string) error {
	if err != io.EOF && err != io.ErrUnexpectedEOF {
		err = fmt.Errorf("d4: reading frame %s: %w", part, err)
	}
	r.err = err
	return err
}

// Frame returns the raw bytes (header and payload) of the frame last
// returned by Next, for Signer.Verify without copying. It is nil after an
// error and valid only until the next call to Next.
func (r *Reader) Frame() []byte {
	if r.n == 0 {
		return nil
	}
	return r.buf[:r.n]
}
