package dataplane

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
)

// TestRingPressure fills a small ring faster than anyone reads it: every
// record that does not fit is counted in ringbuf_full, every record that
// did fit decodes whole, and the program keeps producing once there is room.
func TestRingPressure(t *testing.T) {
	testenv.RequireRoot(t)
	dp, err := Load(Options{Replay: true, RingSize: 16384})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	rd, err := dp.NewRingReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	frame := pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.UDP, Sport: 5000, Dport: 53, Payload: make([]byte, 1000)}
	const sent = 200
	for i := 0; i < sent; i++ {
		f := frame
		f.Sport = uint16(5000 + i) // distinct tuples: no repeat suppression
		if _, err := dp.Run(f.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	c, err := dp.CounterMap()
	if err != nil {
		t.Fatal(err)
	}
	full := c["ringbuf_full"]
	if full == 0 || full >= sent {
		t.Fatalf("ringbuf_full %d of %d candidates: the ring should hold some and refuse the rest", full, sent)
	}
	read := drainAll(t, rd)
	if uint64(read)+full != sent {
		t.Errorf("read %d + lost %d != sent %d", read, full, sent)
	}
	// room again: the next candidate arrives
	f := frame
	f.Sport = 9999
	if _, err := dp.Run(f.Bytes()); err != nil {
		t.Fatal(err)
	}
	if n := drainAll(t, rd); n != 1 {
		t.Errorf("%d records after the ring drained, want 1", n)
	}
}

// drainAll reads and decodes every record in the ring.
func drainAll(t *testing.T, rd *ringbuf.Reader) int {
	t.Helper()
	rd.SetDeadline(time.Now())
	n := 0
	for {
		var rec ringbuf.Record
		err := rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		var r Record
		if err := r.Decode(rec.RawSample); err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		if r.Kind != KindDNS || len(r.Payload) != 1000 || r.Dport != 53 {
			t.Fatalf("record %d half-written: kind %d payload %d dport %d", n, r.Kind, len(r.Payload), r.Dport)
		}
		n++
	}
}
