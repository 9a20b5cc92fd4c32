package export

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Target kinds of ParseTarget.
const (
	TargetUDP       = "udp"        // one datagram per line: Maltrail's collector, d4_export_udp.py
	TargetTCP       = "tcp"        // newline-terminated lines on one connection (d4_export_tcp.py)
	TargetSyslog    = "syslog"     // RFC 3164 messages, one datagram each
	TargetSyslogTCP = "syslog+tcp" // RFC 3164 messages, newline-framed (RFC 6587)
)

// Dial connects to a target given as KIND://HOST:PORT (KIND one of udp, tcp,
// syslog, syslog+tcp) or plain HOST:PORT (udp).
func Dial(ctx context.Context, target string, confirm time.Duration) (Sender, error) {
	kind, addr, ok := strings.Cut(target, "://")
	if !ok {
		kind, addr = TargetUDP, target
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("export: target %q: %w", target, err)
	}
	switch kind {
	case TargetUDP:
		return DialUDPConfirm(ctx, addr, confirm)
	case TargetSyslog:
		u, err := DialUDPConfirm(ctx, addr, confirm)
		if err != nil {
			return nil, err
		}
		return &syslogSender{Sender: u, kind: kind}, nil
	case TargetTCP, TargetSyslogTCP:
		t := &TCPSender{addr: addr, kind: kind}
		if err := t.dial(ctx); err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, fmt.Errorf("export: target %q: unknown kind %q (want udp, tcp, syslog or syslog+tcp)", target, kind)
}

// syslogSender wraps each line as an RFC 3164 message: <14> (user.info, the
// priority d4_export_syslog.py's default logger uses), the time, this host,
// a tag, then the line.
type syslogSender struct {
	Sender
	kind  string
	lines []string
}

func (s *syslogSender) Target() string {
	return s.kind + "://" + strings.TrimPrefix(s.Sender.Target(), "udp://")
}

func (s *syslogSender) Send(lines []string) (int, int, error) {
	s.lines = syslogLines(s.lines[:0], lines)
	return s.Sender.Send(s.lines)
}

func syslogLines(dst, lines []string) []string {
	host, _ := os.Hostname()
	if host == "" {
		host = "-"
	}
	prefix := "<14>" + time.Now().Format(time.Stamp) + " " + host + " xtrail: "
	for _, l := range lines {
		dst = append(dst, prefix+l)
	}
	return dst
}

// TCPSender writes newline-terminated lines on one connection and takes
// them as delivered only once the peer's TCP acknowledged every byte (the
// socket's send queue is empty), so a target that dies with data in flight
// gets it again after the reconnect.
type TCPSender struct {
	addr, kind string
	c          *net.TCPConn
	buf        []byte
	lines      []string
	ackWait    time.Duration // how long Send waits for the peer's acks
}

// tcpAckWait bounds the wait for the peer's acknowledgements of a batch.
const tcpAckWait = 10 * time.Second

func (t *TCPSender) dial(ctx context.Context) error {
	var d net.Dialer
	d.Timeout = 10 * time.Second
	c, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return fmt.Errorf("export: dial tcp %s: %w", t.addr, err)
	}
	t.c = c.(*net.TCPConn)
	return nil
}

// Target implements Sender.
func (t *TCPSender) Target() string { return t.kind + "://" + t.addr }

// Close implements Sender.
func (t *TCPSender) Close() error {
	if t.c == nil {
		return nil
	}
	return t.c.Close()
}

// Send implements Sender: one write per batch, then a wait for the peer's
// acknowledgements. On any failure the connection is dropped and the next
// Send dials again; the whole batch counts as undelivered.
func (t *TCPSender) Send(lines []string) (int, int, error) {
	if t.c == nil {
		if err := t.dial(context.Background()); err != nil {
			return 0, 0, fmt.Errorf("%w: %v", ErrRefused, err)
		}
	}
	if t.kind == TargetSyslogTCP {
		t.lines = syslogLines(t.lines[:0], lines)
		lines = t.lines
	}
	t.buf = t.buf[:0]
	for _, l := range lines {
		t.buf = append(append(t.buf, l...), '\n')
	}
	_ = t.c.SetWriteDeadline(time.Now().Add(tcpAckWait))
	if _, err := t.c.Write(t.buf); err != nil {
		t.drop()
		return 0, len(lines), fmt.Errorf("export: tcp send to %s: %w", t.addr, err)
	}
	if err := t.waitAcked(); err != nil {
		t.drop()
		return 0, len(lines), err
	}
	return len(lines), len(lines), nil
}

func (t *TCPSender) drop() {
	_ = t.c.Close()
	t.c = nil
}

// waitAcked polls the socket's unacknowledged byte count (SIOCOUTQ) until
// it is zero; on loopback and a LAN that is a few polls.
func (t *TCPSender) waitAcked() error {
	rc, err := t.c.SyscallConn()
	if err != nil {
		return err
	}
	wait := t.ackWait
	if wait == 0 {
		wait = tcpAckWait
	}
	deadline := time.Now().Add(wait)
	pause := 20 * time.Microsecond
	for {
		var n int
		var ierr error
		if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
			return err
		}
		if ierr != nil {
			return fmt.Errorf("export: tcp %s: SIOCOUTQ: %w", t.addr, ierr)
		}
		if n == 0 {
			// An empty queue also follows a reset (the kernel drops what
			// was unsent): only a connection still up got the bytes.
			var info *unix.TCPInfo
			_ = rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
			if ierr != nil {
				return fmt.Errorf("export: tcp %s: TCP_INFO: %w", t.addr, ierr)
			}
			if info.State != unix.BPF_TCP_ESTABLISHED && info.State != unix.BPF_TCP_CLOSE_WAIT {
				return fmt.Errorf("%w: tcp %s: connection closed (state %d) before the batch was acknowledged", ErrRefused, t.addr, info.State)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: tcp %s: %s bytes unacknowledged after %s", ErrRefused, t.addr, strconv.Itoa(n), wait)
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}
