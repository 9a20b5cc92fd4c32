package sink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// udpWriteTimeout bounds one datagram send. A UDP send only waits when the
// socket's send buffer is full, which on a healthy host clears in
// microseconds; the bound keeps a wedged stack from stalling the sensor.
const udpWriteTimeout = 200 * time.Millisecond

// endpoint is one UDP destination of a remote output and its socket. It is
// not safe for concurrent use: its sink holds a lock around it.
type endpoint struct {
	key     string // the configuration key, for messages
	addr    string
	network string // "udp4" or "udp6"
	dst     netip.AddrPort
	conn    *net.UDPConn
}

// newEndpoint validates addr ("host:port", "[v6]:port" or
// "[fe80::1%eno1]:8337"), resolves it and opens the sending socket. A host
// name is resolved here and again only when the socket is recreated after an
// error; Maltrail's sendto resolves it per event, which costs a lookup per
// detection for no benefit.
func newEndpoint(key, addr string) (*endpoint, error) {
	if !strings.Contains(addr, ":") {
		return nil, fmt.Errorf("sink: %s %q must be host:port (IPv6 as [addr]:port)", key, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sink: %s %q: %w", key, addr, err)
	}
	if host == "" || port == "" {
		return nil, fmt.Errorf("sink: %s %q: host and port are both required", key, addr)
	}
	e := &endpoint{key: key, addr: addr}
	if err := e.resolve(); err != nil {
		return nil, err
	}
	if err := e.open(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *endpoint) resolve() error {
	ua, err := net.ResolveUDPAddr("udp", e.addr)
	if err != nil {
		return fmt.Errorf("sink: %s %q: %w", e.key, e.addr, err)
	}
	ap := ua.AddrPort()
	if !ap.IsValid() || ap.Port() == 0 {
		return fmt.Errorf("sink: %s %q: no usable address and port", e.key, e.addr)
	}
	// An IPv4-mapped address is sent over an IPv4 socket, like Maltrail's
	// AF_INET path for anything that is not an IPv6 literal.
	if ap.Addr().Is4In6() {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	e.dst = ap
	e.network = "udp6"
	if ap.Addr().Is4() {
		e.network = "udp4"
	}
	return nil
}

func (e *endpoint) open() error {
	c, err := net.ListenUDP(e.network, nil)
	if err != nil {
		return fmt.Errorf("sink: %s %q: socket: %w", e.key, e.addr, err)
	}
	e.conn = c
	return nil
}

// send sends b as one datagram. When the send fails the socket is
// recreated once and the datagram resent, as Maltrail's _send_datagram
// does; a second failure loses it.
func (e *endpoint) send(b []byte) error {
	err := e.write(b)
	if err == nil {
		return nil
	}
	if e.conn != nil {
		_ = e.conn.Close()
		e.conn = nil
	}
	if rerr := e.resolve(); rerr != nil {
		return fmt.Errorf("sink: %s: send failed (%w), then %w", e.key, err, rerr)
	}
	if oerr := e.open(); oerr != nil {
		return fmt.Errorf("sink: %s: send failed (%w), then %w", e.key, err, oerr)
	}
	if err2 := e.write(b); err2 != nil {
		return fmt.Errorf("sink: %s: send to %s: %w", e.key, e.addr, err2)
	}
	return nil
}

func (e *endpoint) write(b []byte) error {
	if e.conn == nil {
		return errors.New("no socket")
	}
	if err := e.conn.SetWriteDeadline(time.Now().Add(udpWriteTimeout)); err != nil {
		return err
	}
	_, err := e.conn.WriteToUDPAddrPort(b, e.dst)
	return err
}

func (e *endpoint) close() error {
	if e.conn == nil {
		return nil
	}
	err := e.conn.Close()
	e.conn = nil
	if err != nil {
		return fmt.Errorf("sink: %s: close: %w", e.key, err)
	}
	return nil
}

var endpointSep = regexp.MustCompile(`[,;\s]+`)

// SplitEndpoints splits a SYSLOG_SERVER or LOGSTASH_SERVER value into its
// endpoints: they are separated by runs of ',', ';' and white space, as in
// Maltrail ("1.2.3.4:514, 5.6.7.8:514"). Empty pieces are dropped.
func SplitEndpoints(v string) []string {
	var out []string
	for _, p := range endpointSep.Split(v, -1) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
