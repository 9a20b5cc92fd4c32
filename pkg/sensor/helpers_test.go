package sensor

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/trails"
)

// liveSensor runs a sensor on the lab's sensor-side veth until stop is
// called (stop returns Run's error). o gives everything else; unset, the
// action is drop, the pin directory a fresh one (testenv.PinDir), the
// renderer "lab" in UTC, and the output a capture it returns.
func liveSensor(t *testing.T, l *lab.Lab, o Options) (c *capture, stop func() error) {
	t.Helper()
	if o.PinDir == "" {
		o.PinDir = testenv.PinDir(t)
	}
	o.Interfaces, o.Netns = []string{l.SensorIf}, lab.NetnsPath(l.Sensor)
	if o.Action == 0 {
		o.Action = dataplane.ActionDrop
	}
	if o.Renderer.Loc == nil {
		o.Renderer = maltrail.Renderer{Sensor: "lab", Loc: time.UTC}
	}
	c = newCapture()
	o.Out = c
	return c, startLive(t, o)
}

// startLive runs a live sensor with o until stop is called (stop returns
// Run's error, and runs at cleanup too); it returns once the sensor is
// ready.
func startLive(t testing.TB, o Options) (stop func() error) {
	t.Helper()
	ready := make(chan struct{})
	o.Ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("sensor stopped before it was ready: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("sensor not ready after 20 s")
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("sensor did not stop within 10 s of cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return stop
}

// prober sends datagrams from the lab's source side and watches a
// sensor's events for them.
type prober struct {
	t    *testing.T
	c    *capture
	conn net.PacketConn
	port int
}

func newProber(t *testing.T, l *lab.Lab, c *capture) *prober {
	t.Helper()
	p := &prober{t: t, c: c, port: 31000}
	if err := lab.InNetns(l.Source, func() (err error) { p.conn, err = net.ListenPacket("udp4", ":0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.conn.Close() })
	return p
}

// ip sends a datagram to dst on a fresh port and says whether an event
// for the IP trail dst follows within a second.
func (p *prober) ip(dst string) bool {
	p.t.Helper()
	p.port++
	return p.send([]byte("x"), dst, p.port, dst)
}

// dns sends a DNS query for name and says whether an event for the
// domain trail name follows within a second. Each query goes to a fresh
// resolver address in 198.51.100.0/24: the kernel drops a UDP datagram
// with the previous one's addresses and ports in the same second, as
// Maltrail does.
func (p *prober) dns(name string) bool {
	p.t.Helper()
	p.port++
	return p.send(dnsQuery(name), net.IPv4(198, 51, 100, byte(1+p.port%250)).String(), 53, name)
}

func (p *prober) send(payload []byte, dst string, dport int, trail string) bool {
	p.t.Helper()
	before := len(p.c.get())
	if _, err := p.conn.WriteTo(payload, &net.UDPAddr{IP: net.ParseIP(dst), Port: dport}); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for _, line := range p.c.get()[before:] {
			if strings.Contains(line, " "+trail+" ") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// compileStore compiles the trails.csv text into a store at path (by
// rename, as trails compile does) and returns the store's checksum.
func compileStore(t *testing.T, path, csv string) [32]byte {
	t.Helper()
	in, err := store.FromCSV(strings.NewReader(csv), "t.csv", trails.DefaultWhitelist())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Compile(path, in); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.Info().SHA256
}

// count is how many captured lines contain sub.
func (c *capture) count(sub string) int {
	n := 0
	for _, line := range c.get() {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
}
