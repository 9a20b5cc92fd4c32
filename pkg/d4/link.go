package d4

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// Transports a Client speaks.
const (
	TransportTLS  = "tls"
	TransportQUIC = "quic"
)

// link is one connection to a server, carrying one frame stream. Frames are
// numbered from 1 in the order write sent them; done says how many of them
// are delivered: acknowledged by the server (QUIC), or received by the
// server's TCP (TLS, which has no acknowledgement).
type link interface {
	write(frame []byte) error
	// done returns the number of delivered frames and, once the link has
	// failed, why.
	done() (uint64, error)
	// wake receives when done may have changed.
	wake() <-chan struct{}
	remote() string
	// abort makes a blocked write return (on shutdown).
	abort()
	close()
}

// RejectedError is a server's refusal of a frame (an AckRejected record).
type RejectedError struct {
	Reason string // the QUIC application error reason, if it came
	Count  uint64 // frames done before the rejected one
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("d4: the server rejected frame %d: %s", e.Count+1, e.Reason)
}

// notifier is a wake channel that never blocks its sender.
type notifier chan struct{}

func (n notifier) signal() {
	select {
	case n <- struct{}{}:
	default:
	}
}

// failure holds a link's first error.
type failure struct {
	mu  sync.Mutex
	err error
}

func (f *failure) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *failure) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// ---- TLS over TCP

// tcpDeliveryPoll is how often a TLS link asks the kernel how far the
// server's TCP has acknowledged, while frames wait for it.
const tcpDeliveryPoll = 10 * time.Millisecond

// countConn counts the bytes written to the TCP connection, so that each
// frame's last byte has a position in the TCP stream.
type countConn struct {
	*net.TCPConn
	n atomic.Uint64
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

type tlsLink struct {
	tc        *tls.Conn
	raw       *countConn
	ackedBase uint64 // tcpi_bytes_acked before any data (it counts the SYN)
	timeout   time.Duration
	fail      failure
	notify    notifier
	stop      chan struct{}
	wg        sync.WaitGroup

	mu      sync.Mutex
	ends    []uint64 // TCP stream end of each written frame not yet delivered
	written uint64
}

// dialTLS connects over TCP and TLS. Frames count as delivered once the
// server's TCP acknowledged their last byte (tcpi_bytes_acked): a write that
// returned is not enough, since the bytes may still sit in our socket.
func dialTLS(ctx context.Context, addr string, tc *tls.Config, keepAlive time.Duration) (link, error) {
	userTimeout := 3 * keepAlive
	d := &net.Dialer{
		Timeout: dialTimeout,
		// The server never writes over TLS, so keep-alive probes and the
		// user timeout are how a dead peer or a cut link is noticed.
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepAlive, Interval: keepAlive / 3, Count: 3},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
			})
			return errors.Join(err, serr)
		},
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	raw := &countConn{TCPConn: nc.(*net.TCPConn)}
	base, err := bytesAcked(raw.TCPConn)
	if err != nil {
		nc.Close()
		return nil, err
	}
	conn := tls.Client(raw, tc)
	hctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, err
	}
	l := &tlsLink{tc: conn, raw: raw, ackedBase: base, timeout: userTimeout, notify: make(notifier, 1), stop: make(chan struct{})}
	l.wg.Add(2)
	go l.watchPeer()
	go l.poll()
	return l, nil
}

func bytesAcked(c *net.TCPConn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return 0, err
	}
	if gerr != nil {
		return 0, fmt.Errorf("d4: TCP_INFO: %w", gerr)
	}
	return ti.Bytes_acked, nil
}

// watchPeer reads until the connection ends: the server never sends
// application data, so a finished Read means the peer closed or reset it.
func (l *tlsLink) watchPeer() {
	defer l.wg.Done()
	var b [256]byte
	for {
		if _, err := l.tc.Read(b[:]); err != nil {
			l.fail.set(fmt.Errorf("d4: server closed the connection: %w", err))
			l.notify.signal()
			return
		}
	}
}

// poll wakes the session while frames wait for the server's TCP.
func (l *tlsLink) poll() {
	defer l.wg.Done()
	t := time.NewTicker(tcpDeliveryPoll)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			waiting := len(l.ends) > 0
			l.mu.Unlock()
			if waiting {
				l.notify.signal()
			}
		}
	}
}

func (l *tlsLink) write(frame []byte) error {
	_ = l.tc.SetWriteDeadline(time.Now().Add(l.timeout))
	if _, err := l.tc.Write(frame); err != nil {
		return err
	}
	l.mu.Lock()
	l.ends = append(l.ends, l.raw.n.Load())
	l.written++
	l.mu.Unlock()
	return nil
}

func (l *tlsLink) done() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ends) > 0 {
		// tcpi_bytes_acked only grows, even after a reset purged the
		// send queue, so a dying connection never looks delivered.
		if acked, err := bytesAcked(l.raw.TCPConn); err == nil {
			acked -= min(acked, l.ackedBase)
			i := 0
			for i < len(l.ends) && l.ends[i] <= acked {
				i++
			}
			l.ends = l.ends[i:]
		}
	}
	return l.written - uint64(len(l.ends)), l.fail.get()
}

func (l *tlsLink) wake() <-chan struct{} { return l.notify }
func (l *tlsLink) remote() string        { return l.raw.RemoteAddr().String() }

func (l *tlsLink) abort() { _ = l.tc.SetWriteDeadline(time.Now()) }

func (l *tlsLink) close() {
	close(l.stop)
	// No close_notify: it could block on a full socket, and the server
	// learns nothing from it that the FIN does not say.
	l.raw.Close()
	l.wg.Wait()
}

// ---- QUIC

// quicConfig is the QUIC configuration of a sensor: keep-alives at the
// given period keep an idle sensor connected, and a server silent for
// three periods is given up.
func quicConfig(keepAlive time.Duration) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout: dialTimeout / 2,
		MaxIdleTimeout:       3 * keepAlive,
		KeepAlivePeriod:      keepAlive,
		// One stream each way is all a D4 session uses.
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	}
}

type quicLink struct {
	conn    *quic.Conn
	str     *quic.Stream
	tr      *quic.Transport
	pc      net.PacketConn
	written atomic.Uint64
	acked   atomic.Uint64
	fail    failure
	notify  notifier
	read    sync.WaitGroup
}

// udpBuffers is the socket buffer size asked for a QUIC socket: what
// quic-go wants (7 MiB) rounded up.
const udpBuffers = 8 << 20

// dialQUIC connects to addr over QUIC with ALPN d4 and opens the session's
// stream. warnBuffers is called when the UDP buffers stay below what QUIC
// needs at high rates.
func dialQUIC(ctx context.Context, addr string, tc *tls.Config, keepAlive time.Duration, warnBuffers func(error)) (link, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, err
	}
	if err := SetUDPBuffers(pc, udpBuffers); err != nil {
		warnBuffers(err)
	}
	tr := &quic.Transport{Conn: pc}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := tr.Dial(dctx, ua, tc, quicConfig(keepAlive))
	if err == nil {
		var str *quic.Stream
		if str, err = conn.OpenStreamSync(dctx); err == nil {
			l := &quicLink{conn: conn, str: str, tr: tr, pc: pc, notify: make(notifier, 1)}
			l.read.Add(1)
			go l.readAcks()
			return l, nil
		}
		conn.CloseWithError(0, "")
	}
	tr.Close()
	pc.Close()
	return nil, err
}

// readAcks reads acknowledgement records until the stream ends.
func (l *quicLink) readAcks() {
	defer l.read.Done()
	defer l.notify.signal()
	var rec [AckSize]byte
	for {
		if _, err := io.ReadFull(l.str, rec[:]); err != nil {
			err = l.cause(err)
			var ae *quic.ApplicationError
			if errors.As(err, &ae) && ae.Remote && ae.ErrorCode == CloseRejected {
				l.fail.set(&RejectedError{Reason: ae.ErrorMessage, Count: l.acked.Load()})
				return
			}
			l.fail.set(fmt.Errorf("d4: connection lost: %w", err))
			return
		}
		a, err := ParseAck(rec[:])
		if err == nil && (a.Count < l.acked.Load() || a.Count > l.written.Load()) {
			err = fmt.Errorf("d4: ack count %d outside [%d, %d]", a.Count, l.acked.Load(), l.written.Load())
		}
		if err != nil {
			l.fail.set(fmt.Errorf("d4: server protocol error: %w", err))
			l.conn.CloseWithError(1, "bad ack record")
			return
		}
		l.acked.Store(a.Count)
		if a.Kind == AckRejected {
			// The reason comes with the close that follows the record.
			rej := &RejectedError{Count: a.Count}
			select {
			case <-l.conn.Context().Done():
			case <-time.After(2 * time.Second):
			}
			var ae *quic.ApplicationError
			if errors.As(context.Cause(l.conn.Context()), &ae) {
				rej.Reason = ae.ErrorMessage
			}
			l.fail.set(rej)
			return
		}
		l.notify.signal()
	}
}

// cause prefers the connection's close reason to the stream's error.
func (l *quicLink) cause(err error) error {
	if c := context.Cause(l.conn.Context()); c != nil {
		return c
	}
	return err
}

func (l *quicLink) write(frame []byte) error {
	// Counted first: the server may acknowledge the frame before Write
	// returns. A failed write ends the link anyway.
	l.written.Add(1)
	if _, err := l.str.Write(frame); err != nil {
		return l.cause(err)
	}
	return nil
}

func (l *quicLink) done() (uint64, error) { return l.acked.Load(), l.fail.get() }
func (l *quicLink) wake() <-chan struct{} { return l.notify }
func (l *quicLink) remote() string        { return l.conn.RemoteAddr().String() }
func (l *quicLink) abort()                { _ = l.str.SetWriteDeadline(time.Now()) }

func (l *quicLink) close() {
	l.conn.CloseWithError(0, "")
	l.read.Wait()
	l.tr.Close()
	l.pc.Close()
}

// SetUDPBuffers asks for size-byte receive and send buffers on c, beyond
// net.core.rmem_max/wmem_max when the process may (CAP_NET_ADMIN), and
// returns an error saying what it got when either is smaller. QUIC moves
// bursts through these buffers: small ones drop packets at high rates.
func SetUDPBuffers(c *net.UDPConn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var rcv, snd int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUF, unix.SO_RCVBUFFORCE}, {unix.SO_SNDBUF, unix.SO_SNDBUFFORCE}} {
			if cur, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, o[0]); cur >= size {
				continue
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], size)
			}
		}
		// The kernel reports twice what it grants (bookkeeping overhead).
		rcv, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		if gerr == nil {
			snd, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		}
	}); err != nil {
		return err
	}
	if gerr != nil {
		return gerr
	}
	if rcv < size || snd < size {
		return fmt.Errorf("UDP buffers are %d KiB (receive) and %d KiB (send), below the %d KiB QUIC wants: raise net.core.rmem_max and net.core.wmem_max", rcv>>10, snd>>10, size>>10)
	}
	return nil
}

// quietQUICBufferWarning stops quic-go from printing the shortfall
// SetUDPBuffers already reported, in its own format, on the standard logger.
var quietQUICBufferWarning = sync.OnceFunc(func() {
	_ = os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
})

// BufferWarner returns the warnBuffers callback for a logger: the first
// shortfall is logged, later ones are not.
func BufferWarner(log *slog.Logger) func(error) {
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			log.Warn("d4: QUIC socket buffers too small; packets may drop at high rates", "err", err)
		})
		quietQUICBufferWarning()
	}
}
