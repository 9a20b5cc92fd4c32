package sink

import (
	"errors"
	"strconv"

	"github.com/xtrail/xtrail/pkg/d4"
)

// ErrDropped reports a line the D4 client refused: longer than a frame may
// carry, or its spool could not write it.
var ErrDropped = errors.New("d4: line dropped")

// D4 ships each event as the datagram a Maltrail sensor sends to LOG_SERVER
// ("<sec> <line>", spec §3.1) through a D4 client. Emit hands the line to the
// client's on-disk spool and returns: it never waits for the network. The
// client batches whole lines into type-254 frames; its owner runs
// Client.Run.
type D4 struct {
	c   *d4.Client
	buf []byte
}

// NewD4 wraps a D4 client.
func NewD4(c *d4.Client) *D4 { return &D4{c: c, buf: make([]byte, 0, 512)} }

// Name implements Sink.
func (s *D4) Name() string { return "d4" }

// Emit writes the datagram line to the client's spool.
func (s *D4) Emit(sec int64, line []byte) error {
	s.buf = strconv.AppendInt(s.buf[:0], sec, 10)
	s.buf = append(s.buf, ' ')
	s.buf = append(s.buf, line...)
	if !s.c.Send(s.buf) {
		return ErrDropped
	}
	return nil
}

// Close closes the client's spool; call it once the client's Run has
// returned. Lines not delivered stay in the spool for the next run.
func (s *D4) Close() error { return s.c.Close() }
