package sink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// udpWriteTimeout bounds one datagram send. A UDP send only waits when the
// socket's send buffer is full, which on a healthy host clears in
// microseconds; the bound keeps a wedged stack from stalling the sensor.
const udpWriteTimeout = 200 * time.Millisecond

// UDP sends each event to a Maltrail LOG_SERVER as one datagram,
// "<sec> " + line (spec §3.1). There is no acknowledgement and no retry,
// exactly like Maltrail: the one socket is reused, and recreated once when a
// send fails.
type UDP struct {
	addr    string
	network string // "udp4" or "udp6"

	mu   sync.Mutex
	dst  netip.AddrPort
	conn *net.UDPConn
	buf  []byte
	// closed makes Emit fail after Close instead of quietly reopening.
	closed bool

	sent atomic.Uint64
	errs atomic.Uint64
}

// NewUDP validates addr (Maltrail's LOG_SERVER: "host:port", "[v6]:port" or
// "[fe80::1%eno1]:8337"), resolves it and opens the sending socket. A host
// name is resolved here and again only when the socket is recreated after an
// error; Maltrail's sendto resolves it per event, which costs a lookup per
// detection for no benefit.
func NewUDP(addr string) (*UDP, error) {
	if !strings.Contains(addr, ":") {
		return nil, fmt.Errorf("sink: LOG_SERVER %q must be host:port (IPv6 as [addr]:port)", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sink: LOG_SERVER %q: %w", addr, err)
	}
	if host == "" || port == "" {
		return nil, fmt.Errorf("sink: LOG_SERVER %q: host and port are both required", addr)
	}
	u := &UDP{addr: addr, buf: make([]byte, 0, 512)}
	if err := u.resolve(); err != nil {
		return nil, err
	}
	if err := u.open(); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *UDP) resolve() error {
	ua, err := net.ResolveUDPAddr("udp", u.addr)
	if err != nil {
		return fmt.Errorf("sink: LOG_SERVER %q: %w", u.addr, err)
	}
	ap := ua.AddrPort()
	if !ap.IsValid() || ap.Port() == 0 {
		return fmt.Errorf("sink: LOG_SERVER %q: no usable address and port", u.addr)
	}
	// An IPv4-mapped address is sent over an IPv4 socket, like Maltrail's
	// AF_INET path for anything that is not an IPv6 literal.
	if ap.Addr().Is4In6() {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	u.dst = ap
	u.network = "udp6"
	if ap.Addr().Is4() {
		u.network = "udp4"
	}
	return nil
}

func (u *UDP) open() error {
	c, err := net.ListenUDP(u.network, nil)
	if err != nil {
		return fmt.Errorf("sink: LOG_SERVER %q: socket: %w", u.addr, err)
	}
	u.conn = c
	return nil
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

	err := u.send(b)
	if err == nil {
		u.sent.Add(1)
		return nil
	}
	// Recreate the socket once and resend, as Maltrail's _send_datagram
	// does; a second failure loses the event.
	if u.conn != nil {
		_ = u.conn.Close()
		u.conn = nil
	}
	if rerr := u.resolve(); rerr != nil {
		u.errs.Add(1)
		return fmt.Errorf("sink: udp: send failed (%w), then %w", err, rerr)
	}
	if oerr := u.open(); oerr != nil {
		u.errs.Add(1)
		return fmt.Errorf("sink: udp: send failed (%w), then %w", err, oerr)
	}
	if err2 := u.send(b); err2 != nil {
		u.errs.Add(1)
		return fmt.Errorf("sink: udp: send to %s: %w", u.addr, err2)
	}
	u.sent.Add(1)
	return nil
}

func (u *UDP) send(b []byte) error {
	if u.conn == nil {
		return errors.New("no socket")
	}
	if err := u.conn.SetWriteDeadline(time.Now().Add(udpWriteTimeout)); err != nil {
		return err
	}
	_, err := u.conn.WriteToUDPAddrPort(b, u.dst)
	return err
}

// Close closes the socket.
func (u *UDP) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	if u.conn == nil {
		return nil
	}
	err := u.conn.Close()
	u.conn = nil
	if err != nil {
		return fmt.Errorf("sink: udp: close: %w", err)
	}
	return nil
}
