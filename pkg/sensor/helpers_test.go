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
	return c, stop
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

// fires sends one datagram to dst (a DNS query for name to port 53, else
// a plain one to a fresh port) and says whether an event naming trail
// follows within a second.
func (p *prober) fires(dst, name, trail string) bool {
	p.t.Helper()
	p.port++
	payload, dport := []byte("x"), p.port
	if name != "" {
		payload, dport = dnsQuery(name), 53
	}
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
