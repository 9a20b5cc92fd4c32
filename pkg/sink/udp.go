package sink

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// UDP sends each event to a Maltrail LOG_SERVER as one datagram,
// "<sec> " + line (spec §3.1). There is no acknowledgement and no retry,
// exactly like Maltrail: the one socket is reused, and recreated once when a
// send fails.
type UDP struct {
	addr string

	mu  sync.Mutex
	ep  *endpoint
	buf []byte
	// closed makes Emit fail after Close instead of quietly reopening.
	closed bool

	sent atomic.Uint64
	errs atomic.Uint64
}

// NewUDP validates addr (Maltrail's LOG_SERVER: "host:port", "[v6]:port" or
// "[fe80::1%eno1]:8337"), resolves it and opens the sending socket.
func NewUDP(addr string) (*UDP, error) {
	ep, err := newEndpoint("LOG_SERVER", addr)
	if err != nil {
		return nil, err
	}
	return &UDP{addr: addr, ep: ep, buf: make([]byte, 0, 512)}, nil
}

// Name implements Sink.
func (u *UDP) Name() string { return "udp:" + u.addr }

// Sent returns how many datagrams were handed to the kernel.
func (u *UDP) Sent() uint64 { return u.sent.Load() }

// Errors returns how many events could not be sent.
func (u *UDP) Errors() uint64 { return u.errs.Load() }

// Emit sends "<sec> " + line as one datagram.
func (u *UDP) Emit(sec int64, line []byte) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		u.errs.Add(1)
		return fmt.Errorf("sink: udp %s: %w", u.addr, net.ErrClosed)
	}
	b := strconv.AppendInt(u.buf[:0], sec, 10)
	b = append(b, ' ')
	b = append(b, line...)
	u.buf = b[:0] // keep the grown buffer for the next event
	if err := u.ep.send(b); err != nil {
		u.errs.Add(1)
		return err
	}
	u.sent.Add(1)
	return nil
}

// Close closes the socket.
func (u *UDP) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	return u.ep.close()
}
