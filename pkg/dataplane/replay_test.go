package dataplane

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xtrail/xtrail/internal/pktbuild"
)

// replayTraffic is a capture of many kinds of packets, more than two
// batches' worth: trail hits on both sides, SYNs repeated within their
// second (the repeat slot), candidates of every kind, scans crossing their
// thresholds, a frame longer than a replay runs, and a clock that moves.
func replayTraffic() (frames [][]byte, times []time.Time) {
	add := func(f pktbuild.Frame, at time.Time) {
		frames = append(frames, f.Bytes())
		times = append(times, at)
	}
	at := t0
	dnsQ := []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03org\x00\x00\x01\x00\x01")
	http := []byte("GET /x HTTP/1.1\r\nHost: example.org\r\n\r\n")
	long := append([]byte("POST /upload HTTP/1.1\r\nHost: example.org\r\n\r\n"), bytes.Repeat([]byte{'x'}, 3400)...)
	for i := range 300 {
		if i%7 == 0 {
			at = at.Add(400 * time.Millisecond)
		}
		sport := uint16(40000 + i%50)
		add(syn(clean, bad, sport, 80), at)
		add(syn(clean, bad, sport, 80), at) // a repeat within its second
		add(syn(bad, clean2, sport, 443), at)
		add(syn(clean, clean2, sport, uint16(1000+i%40)), at) // port scan
		add(pktbuild.Frame{Src: clean, Dst: netip.MustParseAddr("8.8.4.4"), Proto: pktbuild.UDP, Sport: sport, Dport: 53, Payload: dnsQ}, at)
		add(pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.UDP, Sport: sport, Dport: uint16(2000 + i%30), Payload: []byte{1, 2, 3, 4, 5, 6, byte(i)}}, at)
		add(pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.TCP, Sport: sport, Dport: 80, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: http}, at)
		add(pktbuild.Frame{Src: host6, Dst: badIP6, Proto: pktbuild.TCP, Sport: sport, Dport: 443, TCPFlags: pktbuild.SYN}, at)
		add(pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.ICMP, ICMPType: 8}, at)
		if i%50 == 0 {
			add(pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.TCP, Sport: sport, Dport: 80, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: long}, at)
		}
	}
	return frames, times
}

// readRecords reads every record in the ring.
func readRecords(t *testing.T, rd *ringbuf.Reader) []Record {
	t.Helper()
	var out []Record
	rd.SetDeadline(time.Now())
	for {
		var rec ringbuf.Record
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return out
			}
			t.Fatal(err)
		}
		var r Record
		if err := r.Decode(rec.RawSample); err != nil {
			t.Fatal(err)
		}
		r.Payload = bytes.Clone(r.Payload)
		out = append(out, r)
	}
}

// pinThread keeps the test's goroutine on one thread and CPU, as a
// Replayer does, so the per-CPU repeat slots of a frame-by-frame run are
// those of one CPU too.
func pinThread(t *testing.T) {
	runtime.LockOSThread()
	unpin, err := PinThread()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unpin()
		runtime.UnlockOSThread()
	})
}

// TestReplayerMatchesRun: a capture replayed in batches (Replayer) makes
// the same records, with the same capture times, and the same counters as
// the capture run frame by frame, each with its clock set (Run, SetClock).
func TestReplayerMatchesRun(t *testing.T) {
	frames, times := replayTraffic()
	if len(frames) <= 2*ReplayBatch {
		t.Fatalf("%d frames: want more than two batches", len(frames))
	}
	opts := Options{Replay: true, Scan: allScans}
	one := openPlane(t, opts, testTrails)
	batched := openPlane(t, opts, testTrails)
	pinThread(t)

	var want []Record
	for i, f := range frames {
		_, recs := one.run(t, f[:min(len(f), ReplayFrameMax)], times[i])
		want = append(want, recs...)
	}

	rp, err := batched.dp.NewReplayer()
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	var got []Record
	for i, f := range frames {
		if err := rp.Queue(times[i].UnixNano(), f); err != nil {
			t.Fatal(err)
		}
		if rp.Full() {
			if err := rp.Flush(); err != nil {
				t.Fatal(err)
			}
			got = append(got, readRecords(t, batched.rd)...)
		}
	}
	if err := rp.Flush(); err != nil {
		t.Fatal(err)
	}
	got = append(got, readRecords(t, batched.rd)...)
	if err := rp.Close(); err != nil {
		t.Fatal(err)
	}

	if len(want) == 0 {
		t.Fatal("no records from the frame-by-frame run")
	}
	kinds := map[uint8]int{}
	for _, r := range want {
		kinds[r.Kind]++
	}
	for _, k := range []uint8{KindIP, KindDNS, KindHTTP, KindScan} {
		if kinds[k] == 0 {
			t.Errorf("the traffic makes no record of kind %d: the comparison would not cover it", k)
		}
	}
	if len(got) != len(want) {
		t.Errorf("batched replay: %d records, frame by frame: %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if g, w := got[i], want[i]; !reflect.DeepEqual(g, w) {
			t.Fatalf("record %d: batched %+v, frame by frame %+v", i, g, w)
		}
	}
	wc, gc := one.counters(t), batched.counters(t)
	if wc["syn_dup"] == 0 || wc["cand_cut"] == 0 || wc["packets"] != uint64(len(frames)) {
		t.Errorf("frame by frame: counters %v: want repeats, a cut candidate and %d packets", wc, len(frames))
	}
	for name, w := range wc {
		if gc[name] != w {
			t.Errorf("counter %s: batched %d, frame by frame %d", name, gc[name], w)
		}
	}
}

// TestReplayerRefuses: a frame too short for Ethernet, a queue past its
// batch and a program not loaded for replay are errors, not runs.
func TestReplayerRefuses(t *testing.T) {
	live := openPlane(t, Options{}, testTrails)
	if _, err := live.dp.NewReplayer(); err == nil {
		t.Error("a live program gave a replay queue")
	}
	p := openPlane(t, Options{Replay: true}, testTrails)
	rp, err := p.dp.NewReplayer()
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	if err := rp.Queue(t0.UnixNano(), make([]byte, 13)); err == nil {
		t.Error("a 13-byte frame was queued")
	}
	f := syn(clean, bad, 1, 2).Bytes()
	for range ReplayBatch {
		if err := rp.Queue(t0.UnixNano(), f); err != nil {
			t.Fatal(err)
		}
	}
	if !rp.Full() || rp.Queue(t0.UnixNano(), f) == nil {
		t.Error("the queue took more than a batch")
	}
	if err := rp.Flush(); err != nil {
		t.Fatal(err)
	}
	c := p.counters(t)
	if c["packets"] != ReplayBatch || c["tcp_syn"] != ReplayBatch || c["syn_dup"] != ReplayBatch-1 {
		t.Errorf("counters after one batch of one SYN repeated: %v", c)
	}
	// a flush of an empty queue runs nothing
	if err := rp.Flush(); err != nil {
		t.Fatal(err)
	}
	if c := p.counters(t); c["packets"] != ReplayBatch {
		t.Errorf("an empty flush ran %d packets", c["packets"]-ReplayBatch)
	}
	if rp.Calls != 1 {
		t.Errorf("%d system calls for one batch", rp.Calls)
	}
}

// TestReplayRingHoldsABatch: a replay's ring (ReplayRingSize) takes a whole
// batch of the largest records, a full-size candidate snapshot per frame,
// without a loss.
func TestReplayRingHoldsABatch(t *testing.T) {
	p := openPlane(t, Options{Replay: true, RingSize: ReplayRingSize}, testTrails)
	rp, err := p.dp.NewReplayer()
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	req := append([]byte("GET /"), bytes.Repeat([]byte{'a'}, 2000)...)
	for i := range ReplayBatch {
		f := pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.TCP, Sport: uint16(1000 + i), Dport: 80,
			TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: req}
		if err := rp.Queue(t0.UnixNano(), f.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if err := rp.Flush(); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, p.rd)
	c := p.counters(t)
	if len(recs) != ReplayBatch || c["ringbuf_full"] != 0 || c["cand_cut"] != ReplayBatch {
		t.Fatalf("%d records, counters %v: want %d full-size candidates, none lost", len(recs), c, ReplayBatch)
	}
	if n := len(recs[0].Payload); n != SnapMax {
		t.Errorf("snapshot of %d bytes, want %d", n, SnapMax)
	}
}
