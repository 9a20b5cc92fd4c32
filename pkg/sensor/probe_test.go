package sensor

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/pkg/dataplane"
)

// TestProbe reads a live sensor's counters from another goroutine while
// traffic flows and the sensor stops (the race run checks the sharing):
// they move with the traffic, and nothing is reported once Run returned.
func TestProbe(t *testing.T) {
	l := lab.New(t)
	trailsFile := filepath.Join(t.TempDir(), "trails.csv")
	if err := os.WriteFile(trailsFile, []byte(labTrails), 0o644); err != nil {
		t.Fatal(err)
	}
	var p Probe
	if _, ok := p.Snapshot(); ok {
		t.Fatal("a snapshot before the sensor runs")
	}
	c, stop := liveSensor(t, l, Options{XDPMode: dataplane.ModeGeneric, TrailsFile: trailsFile, Probe: &p})
	first, ok := p.Snapshot()
	if !ok || len(first.Errors) > 0 || first.TrailLoads != 1 || first.TrailMemory.Live == 0 || first.TrailsLoaded.IsZero() {
		t.Fatalf("snapshot of the running sensor: ok %v %+v", ok, first)
	}

	// a reader that keeps reading until after the sensor stopped
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	reads := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			p.Snapshot()
			reads++
		}
	}()
	if err := l.UDP("203.0.113.99", 5353); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for c.count(" 203.0.113.99 ") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no event for the datagram")
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, _ := p.Snapshot()
	counter := func(s Snapshot, name string) uint64 {
		for _, x := range s.XDP {
			if x.Name == name {
				return x.Value
			}
		}
		for _, x := range s.Agent {
			if x.Name == name {
				return x.Value
			}
		}
		t.Fatalf("no counter %s", name)
		return 0
	}
	if counter(got, "packets") <= counter(first, "packets") || counter(got, "hit_dst") != counter(first, "hit_dst")+1 ||
		counter(got, "events") != 1 || got.EventTypes[eventType("IP")] != 1 {
		t.Errorf("after one datagram to a trail: %+v\nbefore: %+v", got, first)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	if _, ok := p.Snapshot(); ok {
		t.Error("a snapshot after the sensor stopped")
	}
	if reads == 0 {
		t.Error("the reader never read")
	}
}
