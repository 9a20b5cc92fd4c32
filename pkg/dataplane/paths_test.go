package dataplane_test

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/pcap"
)

// BenchmarkReplayPaths: the ways a replay can get captured frames through
// the XDP program, each on the frames of the gen_mix traffic (200,000
// packets, seed 1) with every IP trail of trails-static.csv.gz loaded, and
// the records read from the ring (and dropped: the agent is not timed).
// cpu-ns/pkt is the process's user+system CPU time (getrusage) per frame;
// the machine is shared, so take the minimum of several runs.
//   - run-cilium: one BPF_PROG_TEST_RUN per frame through cilium/ebpf's
//     Program.Run, the clock set before each (the replay before batches);
//   - run-direct: the same with a test-run system call of its own (no
//     signal masking around it);
//   - replayer-1: a Replayer flushed after every frame: one system call
//     per frame, each copying in a 3 KiB buffer the driver resizes;
//   - replayer-256: the Replayer's batches (what a replay does);
//   - veth-sendmmsg: frames sent from a private namespace with sendmmsg on an
//     AF_PACKET socket (PACKET_QDISC_BYPASS), 64 a call, into a veth whose
//     peer has the program attached natively (live mode, no replay clock);
//     the receive side's softirq runs in the sender's context and counts
//     in its system time, what ksoftirqd takes does not.
func BenchmarkReplayPaths(b *testing.B) {
	testenv.RequireRoot(b)
	frames, times := mixFrames(b, 200000)
	path := testenv.StaticTrailsPath(b)
	load := func(b *testing.B, o dataplane.Options) (*dataplane.Dataplane, *ringbuf.Reader) {
		dp, err := dataplane.Load(o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { dp.Close() })
		if _, _, err := dp.Trails().LoadFile(path, "bench"); err != nil {
			b.Fatal(err)
		}
		rd, err := dp.NewRingReader()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { rd.Close() })
		return dp, rd
	}
	report := func(b *testing.B, dp *dataplane.Dataplane, n int, cpu, wall time.Duration) {
		c, err := dp.CounterMap()
		if err != nil {
			b.Fatal(err)
		}
		if c["packets"] < uint64(n) || c["ringbuf_full"] != 0 {
			b.Fatalf("%d frames sent, the program saw %d (ring losses %d)", n, c["packets"], c["ringbuf_full"])
		}
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/pkt")
		b.ReportMetric(float64(wall.Nanoseconds())/float64(n), "wall-ns/pkt")
	}
	replay := dataplane.Options{Replay: true, RingSize: dataplane.ReplayRingSize}

	perFrame := []struct {
		name string
		run  func(dp *dataplane.Dataplane, frame []byte) error
	}{
		{"run-cilium", func(dp *dataplane.Dataplane, f []byte) error { _, err := dp.Run(f); return err }},
		{"run-direct", (*dataplane.Dataplane).RunDirect},
	}
	for _, c := range perFrame {
		b.Run(c.name, func(b *testing.B) {
			dp, rd := load(b, replay)
			var rec ringbuf.Record
			n, cpu, wall := timed(b, func(i int) {
				f := frames[i%len(frames)]
				if err := dp.SetClock(times[i%len(frames)]); err != nil {
					b.Fatal(err)
				}
				if err := c.run(dp, f[:min(len(f), dataplane.ReplayFrameMax)]); err != nil {
					b.Fatal(err)
				}
				if i%256 == 255 {
					drainAll(b, rd, &rec)
				}
			}, len(frames))
			drainAll(b, rd, &rec)
			report(b, dp, n, cpu, wall)
		})
	}
	for _, batch := range []int{1, dataplane.ReplayBatch} {
		b.Run("replayer-"+strconv.Itoa(batch), func(b *testing.B) {
			dp, rd := load(b, replay)
			var rec ringbuf.Record
			var rp *dataplane.Replayer
			n, cpu, wall := timed(b, func(i int) {
				if rp == nil {
					var err error
					if rp, err = dp.NewReplayer(); err != nil {
						b.Fatal(err)
					}
				}
				if err := rp.Queue(times[i%len(frames)].UnixNano(), frames[i%len(frames)]); err != nil {
					b.Fatal(err)
				}
				if i%batch == batch-1 {
					if err := rp.Flush(); err != nil {
						b.Fatal(err)
					}
					drainAll(b, rd, &rec)
				}
			}, len(frames))
			if err := rp.Flush(); err != nil {
				b.Fatal(err)
			}
			drainAll(b, rd, &rec)
			rp.Close()
			report(b, dp, n, cpu, wall)
		})
	}
	b.Run("veth-sendmmsg", func(b *testing.B) {
		l := lab.New(b)
		dp, rd := load(b, dataplane.Options{Action: dataplane.ActionDrop, Netns: lab.NetnsPath(l.Sensor), RingSize: dataplane.ReplayRingSize})
		if _, err := dp.Attach(l.SensorIf, dataplane.ModeNative); err != nil {
			b.Fatal(err)
		}
		tx := newPacketSender(b, l)
		var rec ringbuf.Record
		const burst = 64
		n, cpu, wall := timed(b, func(i int) {
			if i%burst == burst-1 {
				tx.send(b, frames, i-burst+1, burst)
			}
			if i%256 == 255 {
				drainAll(b, rd, &rec)
			}
		}, len(frames))
		// the last frames may still be in the peer's queue
		for range 100 {
			if c, _ := dp.CounterMap(); c["packets"] >= uint64(n/burst*burst) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		drainAll(b, rd, &rec)
		report(b, dp, n/burst*burst, cpu, wall)
	})
}

// timed runs step for frame indexes 0..b.N-1 (at least min frames, so
// the traffic's mix is what is timed) and returns the count and the
// process CPU and wall time they took.
func timed(b *testing.B, step func(i int), atLeast int) (int, time.Duration, time.Duration) {
	n := max(b.N, atLeast)
	runtime.GC()
	b.ResetTimer()
	c0, w0 := processCPU(), time.Now()
	for i := range n {
		step(i)
	}
	cpu, wall := processCPU()-c0, time.Since(w0)
	b.StopTimer()
	return n, cpu, wall
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func drainAll(b *testing.B, rd *ringbuf.Reader, rec *ringbuf.Record) {
	if rd.AvailableBytes() == 0 {
		return
	}
	rd.SetDeadline(time.Now())
	for {
		if err := rd.ReadInto(rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			b.Fatal(err)
		}
	}
}

var (
	mixOnce   sync.Once
	mixData   [][]byte
	mixTimes  []time.Time
	mixErr    error
	mixFrames = func(b *testing.B, n int) ([][]byte, []time.Time) {
		b.Helper()
		mixOnce.Do(func() { mixData, mixTimes, mixErr = readMix(b, n) })
		if mixErr != nil {
			b.Fatal(mixErr)
		}
		return mixData, mixTimes
	}
)

// readMix generates n packets of the gen_mix traffic (seed 1, the hits
// excluded) and reads their frames.
func readMix(b *testing.B, n int) ([][]byte, []time.Time, error) {
	pr, err := pcap.OpenFile(testenv.MixCapture(b, n))
	if err != nil {
		return nil, nil, err
	}
	defer pr.Close()
	var frames [][]byte
	var times []time.Time
	for {
		p, err := pr.Next()
		if err == io.EOF {
			return frames, times, nil
		}
		if err != nil {
			return nil, nil, err
		}
		fr, err := pcap.ToEthernet(nil, p.LinkType, p.Data)
		if err != nil {
			continue
		}
		frames = append(frames, append([]byte(nil), fr...))
		times = append(times, p.Time)
	}
}

// packetSender sends frames out of the lab's source veth with sendmmsg on
// an AF_PACKET socket that bypasses the qdisc.
type packetSender struct {
	fd   int
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
}

func newPacketSender(b *testing.B, l *lab.Lab) *packetSender {
	s := &packetSender{fd: -1}
	err := lab.InNetns(l.Source, func() error {
		ifc, err := net.InterfaceByName(l.SourceIf)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0) // send only
		if err != nil {
			return err
		}
		s.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index})
	})
	if s.fd >= 0 {
		b.Cleanup(func() { unix.Close(s.fd) })
	}
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// send sends n frames from index first (wrapping), in one sendmmsg.
func (s *packetSender) send(b *testing.B, frames [][]byte, first, n int) {
	if len(s.msgs) < n {
		s.msgs, s.iovs = make([]unix.Mmsghdr, n), make([]unix.Iovec, n)
	}
	for i := range n {
		f := frames[(first+i)%len(frames)]
		s.iovs[i] = unix.Iovec{Base: &f[0], Len: uint64(len(f))}
		s.msgs[i].Hdr = unix.Msghdr{Iov: &s.iovs[i], Iovlen: 1}
	}
	for sent := 0; sent < n; {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[sent])), uintptr(n-sent), 0, 0, 0)
		if e != 0 && e != unix.EINTR {
			b.Fatalf("sendmmsg: %v", e)
		}
		sent += int(r)
	}
	runtime.KeepAlive(frames)
}
