package export

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Sender delivers lines to one target, in order.
type Sender interface {
	// Send delivers lines and returns how many of them, from the first,
	// are delivered as far as the target or the network tells, and how
	// many it wrote: a refusal may be learnt only after later lines went
	// out, and those are sent again. An error means lines[delivered:] are
	// not delivered; a *TooLargeError names a line that can never be sent.
	Send(lines []string) (delivered, written int, err error)
	// Target names the destination in logs.
	Target() string
	Close() error
}

// TooLargeError is a line the target can never take (a datagram over the
// UDP limit). Run moves it to the dead-letter list instead of blocking the
// queue behind it.
type TooLargeError struct {
	Bytes int
	Err   error
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("export: a line of %d bytes cannot be sent: %v", e.Bytes, e.Err)
}

func (e *TooLargeError) Unwrap() error { return e.Err }

// ErrRefused is a send the target refused: on UDP, an ICMP port (or host)
// unreachable for one of the datagrams.
var ErrRefused = errors.New("export: target refused")

// DefaultConfirmDelay is how long UDP waits after a batch for an ICMP error
// before taking the batch as delivered; on loopback the error comes before
// the next send returns, on a LAN within a millisecond.
const DefaultConfirmDelay = 2 * time.Millisecond

// UDPSender sends one datagram per line (line + "\n"), as d4_export_udp.py
// does for Maltrail's collector. UDP has no acknowledgement, but a closed
// port answers with ICMP: the socket asks for those errors with their
// quoted datagram (IP_RECVERR), so a refusal is pinned on the line that
// caused it, not on whichever send happens next, and that line and the ones
// sent after it are sent again. A datagram is taken as delivered when no
// error came within the confirm delay; loss without an ICMP answer (a full
// receive buffer, a filtered network) is invisible to UDP: use TCP then.
//
// The datagrams of a Send go out in sendmmsg calls of up to 1,024. When the
// receiver is on this host, its socket's drop counter (the kernel's, in
// /proc/net/udp) is read around each Send: a rise means the receive buffer
// overflowed and some of these datagrams were lost, and Send reports
// ErrOverflow so they are sent again, slower.
type UDPSender struct {
	c     *net.UDPConn
	batch interface {
		WriteBatch([]ipv4.Message, int) (int, error)
	}
	confirm time.Duration
	v6      bool
	drops   *dropWatch // nil: the receiver is not on this host
	buf     []byte
	msgs    []ipv4.Message
	quote   []byte
	oob     []byte
	quotes  [][]byte
}

// ErrOverflow is a send during which the receiver's socket dropped
// datagrams for lack of buffer space: which ones is unknown, so the whole
// send counts as undelivered.
var ErrOverflow = errors.New("export: the receiver's socket buffer overflowed")

// maxBatch is the most datagrams one sendmmsg takes (the kernel's
// UIO_MAXIOV).
const maxBatch = 1024

// DialUDP opens a UDP socket to host:port with ICMP error reporting and the
// default confirm delay.
func DialUDP(ctx context.Context, host string, port int) (*UDPSender, error) {
	return DialUDPConfirm(ctx, net.JoinHostPort(host, fmt.Sprint(port)), DefaultConfirmDelay)
}

// DialUDPConfirm is DialUDP with an address and a confirm delay (0: check
// only what has arrived when the batch is out, which is all there is on
// loopback, where the delay is always 0).
func DialUDPConfirm(ctx context.Context, addr string, confirm time.Duration) (*UDPSender, error) {
	d := net.Dialer{Control: func(network, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if network == "udp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_RECVERR, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVERR, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("export: dial udp %s: %w", addr, err)
	}
	uc := c.(*net.UDPConn)
	if uc.RemoteAddr().(*net.UDPAddr).IP.IsLoopback() {
		// On loopback the ICMP error is queued before the send that caused
		// it returns: nothing more can come later.
		confirm = 0
	}
	ra := uc.RemoteAddr().(*net.UDPAddr)
	u := &UDPSender{c: uc, confirm: confirm, v6: ra.IP.To4() == nil,
		quote: make([]byte, 2048), oob: make([]byte, 512)}
	if u.v6 {
		u.batch = ipv6.NewPacketConn(uc)
	} else {
		u.batch = ipv4.NewPacketConn(uc)
	}
	if localAddr(ra.IP) {
		u.drops = &dropWatch{port: ra.Port, ip: ra.IP}
	}
	return u, nil
}

// localAddr reports whether ip is this host's (in this network namespace).
func localAddr(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// Target implements Sender.
func (u *UDPSender) Target() string { return "udp://" + u.c.RemoteAddr().String() }

// Close implements Sender.
func (u *UDPSender) Close() error { return u.c.Close() }

// Send implements Sender.
func (u *UDPSender) Send(lines []string) (int, int, error) {
	var dropped uint64
	if u.drops != nil {
		dropped = u.drops.read()
	}
	u.buf = u.buf[:0]
	for _, l := range lines {
		u.buf = append(append(u.buf, l...), '\n')
	}
	if cap(u.msgs) < len(lines) {
		u.msgs = make([]ipv4.Message, len(lines))
		for i := range u.msgs {
			u.msgs[i].Buffers = make([][]byte, 1)
		}
	}
	u.msgs = u.msgs[:len(lines)]
	off := 0
	for i, l := range lines {
		u.msgs[i].Buffers[0] = u.buf[off : off+len(l)+1]
		off += len(l) + 1
	}
	for i := 0; i < len(lines); {
		// A short count without an error means datagram i was not sent
		// (sendmmsg reports an error only for its first datagram): the
		// next call sends it again or returns its error.
		n, err := u.batch.WriteBatch(u.msgs[i:min(len(lines), i+maxBatch)], 0)
		i += max(n, 0) // -1 with an error
		switch {
		case err == nil:
			continue
		case errors.Is(err, syscall.EMSGSIZE):
			// Earlier lines of the batch may have been refused too.
			if j := u.refused(lines[:i]); j >= 0 {
				return j, i, ErrRefused
			}
			return i, i, &TooLargeError{Bytes: len(lines[i]) + 1, Err: err}
		case isRefusal(err):
			// Datagram i was not sent; the refusal belongs to one before.
			j := u.refused(lines[:i])
			if j < 0 {
				j = i // none of this batch: an earlier, confirmed one
			}
			return j, i, fmt.Errorf("%w: %v", ErrRefused, err)
		default:
			return i, i, fmt.Errorf("export: udp send to %s: %w", u.c.RemoteAddr(), err)
		}
	}
	if u.confirm > 0 {
		time.Sleep(u.confirm)
	}
	if j := u.refused(lines); j >= 0 {
		return j, len(lines), ErrRefused
	}
	if u.drops != nil && u.drops.read() > dropped {
		return 0, len(lines), ErrOverflow
	}
	return len(lines), len(lines), nil
}

func isRefusal(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTDOWN)
}

// refused drains the socket's error queue and returns the index of the
// first of sent whose datagram an ICMP error quotes, or -1. A quote is the
// start of the datagram (IPv4 routers and hosts quote at least 520 bytes
// of it on Linux), so it is matched as a prefix; identical lines match
// their first copy, which sends more again rather than less.
func (u *UDPSender) refused(sent []string) int {
	u.quotes = u.quotes[:0]
	rc, err := u.c.SyscallConn()
	if err != nil {
		return -1
	}
	pending := 0
	_ = rc.Control(func(fd uintptr) {
		for {
			n, oobn, _, _, err := unix.Recvmsg(int(fd), u.quote, u.oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				break
			}
			if icmpError(u.oob[:oobn]) {
				u.quotes = append(u.quotes, bytes.Clone(u.quote[:n]))
			}
		}
		// A refusal without a queued quote (none should happen with
		// IP_RECVERR) still leaves the socket's pending error.
		pending, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	})
	first := -1
	for _, q := range u.quotes {
		for i, l := range sent {
			if first >= 0 && i >= first {
				break
			}
			if matchesDatagram(q, l) {
				first = i
				break
			}
		}
	}
	if first < 0 && (len(u.quotes) > 0 || pending != 0) && len(sent) > 0 {
		// Refused, but the quote matches nothing we know: play safe and
		// send the whole batch again.
		first = 0
	}
	return first
}

// matchesDatagram reports whether quote is a prefix of line + "\n".
func matchesDatagram(quote []byte, line string) bool {
	if len(quote) == 0 || len(quote) > len(line)+1 {
		return false
	}
	if len(quote) == len(line)+1 {
		return quote[len(line)] == '\n' && string(quote[:len(line)]) == line
	}
	return string(quote) == line[:len(quote)]
}

// icmpError reports whether a control message carries an ICMP or ICMPv6
// destination-unreachable error (struct sock_extended_err, linux/errqueue.h).
func icmpError(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if !(m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR) &&
			!(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR) {
			continue
		}
		if len(m.Data) < 8 {
			continue
		}
		errno := binary.NativeEndian.Uint32(m.Data[0:4])
		origin := m.Data[4]
		if (origin == unix.SO_EE_ORIGIN_ICMP || origin == unix.SO_EE_ORIGIN_ICMP6) && errno != 0 {
			return true
		}
	}
	return false
}
