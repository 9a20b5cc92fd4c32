package d4fault

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// delayProxy forwards TCP and UDP from one address to another, holding
// every chunk and datagram for a fixed delay each way: the latency of a
// distant sensor, which this kernel cannot add with netem.
type delayProxy struct {
	t     *testing.T
	delay time.Duration
	to    string
	tcp   net.Listener
	udp   net.PacketConn
	wg    sync.WaitGroup
	stop  chan struct{}
	mu    sync.Mutex
	conns []net.Conn // TCP both sides, closed at the end
}

// startDelayProxy listens on host (a free port for both TCP and UDP) and
// forwards to `to`; it stops at the test's cleanup.
func startDelayProxy(t *testing.T, host, to string, delay time.Duration) (*delayProxy, string) {
	t.Helper()
	addr := net.JoinHostPort(host, strconv.Itoa(freePort(t, host)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	p := &delayProxy{t: t, delay: delay, to: to, tcp: ln, udp: pc, stop: make(chan struct{})}
	p.wg.Add(2)
	go p.acceptTCP()
	go p.serveUDP()
	t.Cleanup(func() {
		close(p.stop)
		ln.Close()
		pc.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p, addr
}

func (p *delayProxy) acceptTCP() {
	defer p.wg.Done()
	for {
		c, err := p.tcp.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		select {
		case <-p.stop: // the cleanup closed the others already
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		default:
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// stamped is a chunk read at a time, to be written delay later.
type stamped struct {
	at time.Time
	b  []byte
}

// pipe copies src to dst, each chunk delay after it was read, in order;
// the end of src closes dst.
func (p *delayProxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	q := make(chan stamped, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- stamped{time.Now(), b[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	defer dst.Close()
	defer src.Close()
	for c := range q {
		select {
		case <-time.After(time.Until(c.at.Add(p.delay))):
		case <-p.stop:
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}

// serveUDP relays datagrams: one upstream socket per client address, each
// datagram sent delay after it arrived, both ways.
func (p *delayProxy) serveUDP() {
	defer p.wg.Done()
	var mu sync.Mutex
	ups := map[string]net.Conn{}
	defer func() {
		mu.Lock()
		for _, u := range ups {
			u.Close()
		}
		mu.Unlock()
	}()
	b := make([]byte, 64<<10)
	for {
		n, from, err := p.udp.ReadFrom(b)
		if err != nil {
			return
		}
		mu.Lock()
		up, ok := ups[from.String()]
		if !ok {
			if up, err = net.Dial("udp", p.to); err != nil {
				mu.Unlock()
				continue
			}
			ups[from.String()] = up
			p.wg.Add(1)
			go p.backUDP(up, from)
		}
		mu.Unlock()
		d := append([]byte(nil), b[:n]...)
		time.AfterFunc(p.delay, func() { _, _ = up.Write(d) })
	}
}

// backUDP relays the server's datagrams to the client at from.
func (p *delayProxy) backUDP(up net.Conn, from net.Addr) {
	defer p.wg.Done()
	b := make([]byte, 64<<10)
	for {
		n, err := up.Read(b)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				// an ICMP refusal while the server restarts: keep going
				select {
				case <-p.stop:
					return
				default:
					continue
				}
			}
			return
		}
		d := append([]byte(nil), b[:n]...)
		time.AfterFunc(p.delay, func() { _, _ = p.udp.WriteTo(d, from) })
	}
}

// TestDelayProxy: a round trip through the proxy takes at least twice its
// delay, over TCP and UDP, and the bytes come back intact.
func TestDelayProxy(t *testing.T) {
	const delay = 150 * time.Millisecond
	echo := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t, "127.0.0.1")))
	ln, err := net.Listen("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", echo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	go func() {
		b := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(b[:n], from)
		}
	}()
	_, via := startDelayProxy(t, "127.0.0.1", echo, delay)
	for _, network := range []string{"tcp", "udp"} {
		c, err := net.Dial(network, via)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := c.Write([]byte("ping " + network)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 64)
		n, err := c.Read(b)
		rtt := time.Since(start)
		c.Close()
		if err != nil || string(b[:n]) != "ping "+network {
			t.Fatalf("%s: read %q, %v", network, b[:n], err)
		}
		if rtt < 2*delay {
			t.Fatalf("%s: round trip %v through a %v proxy", network, rtt, delay)
		}
		t.Logf("%s round trip %v", network, rtt)
	}
}
