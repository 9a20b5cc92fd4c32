package sensor

import (
	"context"
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
