package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/trails"
)

// The kernel times BPF_PROG_TEST_RUN itself: each benchmark makes one
// test-run call with repeat = b.N and reports the kernel's ns per packet.
// Run with -benchtime=1000000x (make bench does).

var (
	fullOnce  sync.Once
	fullPlane *Dataplane
	fullErr   error
)

// loadFull loads the program with every IP and IP:port trail of the real
// 1.63M-row trails file.
func loadFull(b *testing.B) *Dataplane {
	b.Helper()
	testenv.RequireRoot(b)
	path := testenv.StaticTrailsPath(b)
	fullOnce.Do(func() {
		var dp *Dataplane
		// sized for every scan (BenchmarkXDPScan turns them on), counting none
		if dp, fullErr = Load(Options{Replay: true, Snap: [8]uint16{7: uint16(benchSnap7)}, Scan: allScans}); fullErr != nil {
			return
		}
		if fullErr = dp.SetScan(Scan{}); fullErr != nil {
			dp.Close()
			return
		}
		start := time.Now()
		set, st, err := dp.Trails().LoadFile(path, "bench")
		if err != nil {
			dp.Close()
			fullErr = err
			return
		}
		b.Logf("loaded %d rows: %d IPv4, %d IPv4:port, %d IPv6, %d IPv6:port trails in %v",
			set.Stats.Rows, st.IP4, st.Port4, st.IP6, st.Port6, time.Since(start).Round(time.Millisecond))
		fullPlane = dp
	})
	if fullErr != nil {
		b.Fatal(fullErr)
	}
	return fullPlane
}

func benchFrame(b *testing.B, prog *ebpf.Program, frame []byte) {
	b.Helper()
	b.ResetTimer()
	_, per, err := prog.Benchmark(frame, b.N, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
}

// distinctFrames are the frames of a benchmark whose packets must each
// differ from the one before: a SYN repeating the previous one's (second,
// 5-tuple) is dropped by the repeat slot before any lookup, so one frame
// repeated by the kernel would time the drop, not the packet.
type distinctFrames struct {
	frames [][]byte
	next   int // the next frame: the runs of one benchmark go on in turn
}

// bench runs b.N frames in turn, each once (repeat 1), and reports the mean
// of the kernel's own timings of those runs as ns/pkt. Each such timing
// holds one clock read and follows a system call, so compare it with the
// floor timed the same way (BenchmarkXDPScan/empty-program-1x). step runs
// every 4096 packets, outside the timings (to move the clock).
func (d *distinctFrames) bench(b *testing.B, prog *ebpf.Program, step func(i int)) {
	b.Helper()
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		if step != nil && i%4096 == 0 {
			b.StopTimer()
			step(i)
			b.StartTimer()
		}
		_, per, err := prog.Benchmark(d.frames[d.next], 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += per
		d.next = (d.next + 1) % len(d.frames)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
}

// bumped runs a frame under a bumper: an XDP program that adds one to the
// 16-bit word at off of the frame (a source port or address), then tail-calls
// the program timed. BPF_PROG_TEST_RUN repeats a program on one copy of the
// frame and keeps what it writes, so each run of the timed program sees a
// packet whose 5-tuple differs from the one before: the repeat slot passes
// it on to the trail lookups, and the kernel still times a warm loop of
// runs in one call. The bumper and its tail call cost a few ns, which
// empty-program-bumped measures.
type bumped struct {
	prog  *ebpf.Program
	frame []byte // the next call's first frame: one call goes on from the last
	off   int
	// calls a signal interrupted, run again whole from their first frame
	// (which repeats the interrupted call's first, if it ran only that)
	retries int
}

func newBumped(b *testing.B, off int, target *ebpf.Program, frame []byte) *bumped {
	b.Helper()
	progs, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { progs.Close() })
	if err := progs.Put(uint32(0), target); err != nil {
		b.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:       ebpf.XDP,
		AttachType: ebpf.AttachXDP, // a program array holds programs alike in this too
		License:    "MIT",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // xdp_md.data
			asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // xdp_md.data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, int32(off)+2),
			asm.JGT.Reg(asm.R4, asm.R3, "call"),
			asm.LoadMem(asm.R5, asm.R2, int16(off), asm.Half),
			asm.Add.Imm(asm.R5, 1),
			asm.StoreMem(asm.R2, int16(off), asm.R5, asm.Half),
			asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("call"),
			asm.LoadMapPtr(asm.R2, progs.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnTailCall.Call(),
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS: the tail call failed
			asm.Return(),
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return &bumped{prog: prog, frame: bytes.Clone(frame), off: off}
}

// emptyProgram is an XDP program that only returns XDP_PASS: the floor of
// a measurement.
func emptyProgram(b *testing.B) *ebpf.Program {
	b.Helper()
	testenv.RequireRoot(b)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		AttachType:   ebpf.AttachXDP, // as the real one, for a bumper
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// Offsets in an untagged frame: the TCP or UDP source port, the low half
// of the IPv4 source address.
const (
	sportOff4  = 14 + 20
	sportOff6  = 14 + 40
	srcLowOff4 = 14 + 12 + 2
)

// bench times b.N runs in calls of 16,384: between them the ring is drained
// outside the timings, so a case that writes a record per packet times the
// ring's write, not a full ring's refusal.
func (p *bumped) bench(b *testing.B, rd *ringbuf.Reader) {
	b.Helper()
	const batch = 16384
	var total time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		_, per, err := p.prog.Benchmark(p.frame, n, func() { p.retries++ })
		if err != nil {
			b.Fatal(err)
		}
		total += per * time.Duration(n)
		b.StopTimer()
		// the next call starts where this one ended (the bumper adds to
		// the word as the CPU reads it)
		word := binary.NativeEndian.Uint16(p.frame[p.off:])
		binary.NativeEndian.PutUint16(p.frame[p.off:], word+uint16(n))
		drainRing(b, rd)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
}

// drainRing reads every record out of rd.
func drainRing(b *testing.B, rd *ringbuf.Reader) {
	rd.SetDeadline(time.Now())
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			b.Fatal(err)
		}
	}
}

// BenchmarkXDP: ns per packet with the full static trails loaded, timed by
// the kernel over warm loops of runs.
//   - tcp-data, tcp-data-small: an ordinary TCP data packet (no lookup, no
//     record), one frame repeated; its floor is empty-program.
//   - syn-miss, syn-hit, ipv6-syn-miss: a SYN whose trail lookups miss or
//     hit (a hit writes an IP record to the ring); udp-data, udp-dns-query:
//     a 1200-byte datagram (payload digest, lookups) and a DNS query (a
//     candidate record). Each packet has another source port than the one
//     before (see bumped), so none is dropped as a repeat, as the counters
//     are checked to show; their floor is empty-program-bumped.
//
// Each case runs under replay/ (the program as a replay loads it) and
// live/ (as a live sensor runs it).
func BenchmarkXDP(b *testing.B) {
	dp := loadFull(b)
	if err := dp.SetClock(time.Unix(1786094062, 0)); err != nil {
		b.Fatal(err)
	}
	client := netip.MustParseAddr("10.1.2.3")
	public := netip.MustParseAddr("93.184.216.34") // not a trail
	hit := netip.MustParseAddr("136.161.101.53")   // a static trail
	payload := make([]byte, 1400)
	payload[0] = 0x17 // TLS application data
	repeated := []struct {
		name  string
		frame pktbuild.Frame
	}{
		{"tcp-data", pktbuild.Frame{Src: client, Dst: public, Proto: pktbuild.TCP, Sport: 50000, Dport: 443, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: payload}},
		{"tcp-data-small", pktbuild.Frame{Src: client, Dst: public, Proto: pktbuild.TCP, Sport: 50000, Dport: 443, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: payload[:64]}},
	}
	quic := make([]byte, 1200)
	quic[0] = 0x40 // QUIC short header: no candidate
	dnsQuery := []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x03www\x07example\x03org\x00\x00\x01\x00\x01" +
		"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00") // with an EDNS OPT record
	udp := func(dport uint16, payload []byte) pktbuild.Frame {
		return pktbuild.Frame{Src: client, Dst: public, Proto: pktbuild.UDP, Sport: 50000, Dport: dport, Payload: payload}
	}
	syns := []struct {
		name  string
		frame pktbuild.Frame
		off   int
		want  map[string]bool // counters every packet must move (the others stay)
	}{
		{"syn-miss", syn(client, public, 50000, 443), sportOff4, map[string]bool{"tcp_syn": true}},
		{"syn-hit", syn(client, hit, 50000, 443), sportOff4, map[string]bool{"tcp_syn": true, "hit_dst": true}},
		{"ipv6-syn-miss", syn(netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("2a00:1450:4001::1"), 50000, 443), sportOff6, map[string]bool{"tcp_syn": true}},
		// the UDP repeat slot's payload digest, then the lookups; the
		// source address varies, as a source port would meet 53
		{"udp-data", udp(443, quic), srcLowOff4, map[string]bool{"udp": true}},
		// the digest, then a DNS candidate to the ring
		{"udp-dns-query", udp(53, dnsQuery), sportOff4, map[string]bool{"udp": true, "cand_dns": true}},
	}
	empty := emptyProgram(b)
	rd, err := dp.NewRingReader()
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	b.Run("empty-program", func(b *testing.B) {
		benchFrame(b, empty, repeated[0].frame.Bytes())
	})
	emptyBumped := newBumped(b, sportOff4, empty, syns[0].frame.Bytes())
	b.Run("empty-program-bumped", func(b *testing.B) {
		emptyBumped.bench(b, rd)
	})
	// each case as a replay runs it (the clock read from the config, the
	// replay queue checked) and as a live sensor does (the clock read from
	// the kernel, which costs ~35 ns in this VM, for SYNs and datagrams)
	for _, mode := range []string{"replay", "live"} {
		dp.cfg.Flags |= cfgReplay
		if mode == "live" {
			dp.cfg.Flags &^= cfgReplay
		}
		if err := dp.writeConfig(); err != nil {
			b.Fatal(err)
		}
		b.Run(mode, func(b *testing.B) {
			for _, c := range repeated {
				b.Run(c.name, func(b *testing.B) {
					benchFrame(b, dp.objs.XtrailXdp, c.frame.Bytes())
				})
			}
			for _, c := range syns {
				p := newBumped(b, c.off, dp.objs.XtrailXdp, c.frame.Bytes())
				b.Run(c.name, func(b *testing.B) {
					before, err := dp.CounterMap()
					if err != nil {
						b.Fatal(err)
					}
					retries := p.retries
					p.bench(b, rd)
					after, err := dp.CounterMap()
					if err != nil {
						b.Fatal(err)
					}
					// the figure is honest only if no packet was dropped as a
					// repeat and each went the way its name says, its record (if
					// any) into the ring. An interrupted call is run again (see
					// bumped.retries): a counter may move by more than b.N, and a
					// repeat may be its doing.
					retried := uint64(p.retries - retries)
					for _, name := range []string{"tcp_syn", "syn_dup", "udp", "udp_dup", "hit_dst", "cand_dns", "ringbuf_full"} {
						got, bad := after[name]-before[name], false
						switch {
						case c.want[name]:
							bad = got < uint64(b.N)
						case name == "syn_dup" || name == "udp_dup":
							bad = got > retried
						default:
							bad = got != 0
						}
						if bad {
							b.Fatalf("%d runs (%d calls run again): counter %s moved %d", b.N, retried, name, got)
						}
					}
				})
			}
		})
	}
	dp.cfg.Flags |= cfgReplay
	if err := dp.writeConfig(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkLoadStaticTrails(b *testing.B) {
	testenv.RequireRoot(b)
	set, err := loadStaticSet(b)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		dp, err := Load(Options{Replay: true})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := dp.Trails().Replace(set); err != nil {
			b.Fatal(err)
		}
		dp.Close()
	}
	b.ReportMetric(float64(len(set.IPs)), "trails")
}

var benchSnap7 = 0

// BenchmarkXDPCIDR: a SYN miss with the full exact maps and 100,000 IPv4
// CIDR trails (random /16 to /28 prefixes) in the LPM trie, looked up for
// both addresses after the exact maps miss.
func BenchmarkXDPCIDR(b *testing.B) {
	dp := loadFull(b)
	cidrOnce.Do(func() {
		set := &trails.Set{Metas: []trails.Meta{{Info: "bench cidr", Reference: "(custom)"}}}
		rng := uint32(2463534242)
		for len(set.CIDRs) < 100000 {
			rng ^= rng << 13
			rng ^= rng >> 17
			rng ^= rng << 5
			a := netip.AddrFrom4([4]byte{byte(rng >> 24), byte(rng >> 16), byte(rng >> 8), byte(rng)})
			if a.IsPrivate() || a.IsLoopback() || a.IsMulticast() || byte(rng>>24) == 93 {
				continue
			}
			p, _ := a.Prefix(16 + int(rng%13))
			set.CIDRs = append(set.CIDRs, trails.CIDRTrail{Prefix: p})
		}
		// keep the exact trails: merge them into this set
		full, err := loadStaticSet(b)
		if err != nil {
			cidrErr = err
			return
		}
		set.IPs = full.IPs
		for i := range set.CIDRs {
			set.CIDRs[i].Meta = uint32(len(full.Metas))
		}
		set.Metas = append(append([]trails.Meta{}, full.Metas...), set.Metas[0])
		_, cidrErr = dp.Trails().Replace(set)
	})
	if cidrErr != nil {
		b.Fatal(cidrErr)
	}
	rd, err := dp.NewRingReader()
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	// another source port each run, so the repeat slot lets every SYN on
	// to the lookups (see bumper)
	frame := syn(netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("93.184.216.34"), 50000, 443).Bytes()
	newBumped(b, sportOff4, dp.objs.XtrailXdp, frame).bench(b, rd)
}

var (
	cidrOnce sync.Once
	cidrErr  error
)

func loadStaticSet(b *testing.B) (*trails.Set, error) {
	path := testenv.StaticTrailsPath(b)
	rc, err := trails.Open(path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return trails.LoadSet(rc, path)
}

// BenchmarkReplaceStatic: one reload of every IP and IP:port trail of
// trails-static.csv.gz into a loaded program: fill the idle generation,
// switch, free the old one.
func BenchmarkReplaceStatic(b *testing.B) {
	testenv.RequireRoot(b)
	set, err := loadStaticSet(b)
	if err != nil {
		b.Fatal(err)
	}
	dp, err := Load(Options{Replay: true})
	if err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	var sw time.Duration
	for b.Loop() {
		st, err := dp.Trails().Replace(set)
		if err != nil {
			b.Fatal(err)
		}
		sw += st.Switch
	}
	b.ReportMetric(float64(sw.Milliseconds())/float64(b.N), "ms-to-switch/op")
}

// BenchmarkXDPScan: a SYN with scan counting off and on, with the full
// static trails loaded. A SYN repeating the previous one in the same second
// is dropped by the repeat slot before any lookup, so the kernel cannot
// repeat one frame here: each packet is a distinct SYN, run once, and
// ns/pkt is the mean of the kernel's own timings of those runs
// (distinctFrames).
//   - known-pairs: 1024 clients x 16 servers, already counted (the common
//     case: a (src, dst) pair seen before, its port already there);
//   - new-pairs: every SYN a pair new in the window (a key made, its
//     source noted); the window moves every 16,384 packets, the pool's
//     size, so the key cap is never what is measured and no pair repeats;
//   - infection-port: known pairs on port 445 (a second key per SYN).
func BenchmarkXDPScan(b *testing.B) {
	dp := loadFull(b)
	b.Cleanup(func() { dp.SetScan(Scan{}) })
	const pool = 1 << 14
	framesOf := func(dport uint16, fresh bool) *distinctFrames {
		out := make([][]byte, pool)
		for i := range out {
			src := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8 & 3), byte(i)})
			dst := netip.AddrFrom4([4]byte{93, 184, 216, byte(i & 15)})
			if fresh {
				src = netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
			}
			out[i] = syn(src, dst, uint16(40000+i%20000), dport).Bytes()
		}
		return &distinctFrames{frames: out}
	}
	cases := []struct {
		name   string
		scan   Scan
		frames *distinctFrames
		fresh  bool
	}{
		{"known-pairs-off", Scan{}, framesOf(443, false), false},
		{"known-pairs-on", allScans, framesOf(443, false), false},
		{"new-pairs-off", Scan{}, framesOf(443, true), true},
		{"new-pairs-on", allScans, framesOf(443, true), true},
		{"infection-port-off", Scan{}, framesOf(445, false), false},
		{"infection-port-on", allScans, framesOf(445, false), false},
	}
	// the floor of this way of timing: an empty program, run once a call
	b.Run("empty-program-1x", func(b *testing.B) {
		framesOf(443, false).bench(b, emptyProgram(b), nil)
	})
	for _, c := range cases {
		clock := time.Unix(1786094062, 0) // moved on by new-pairs, over its runs
		b.Run(c.name, func(b *testing.B) {
			if err := dp.SetScan(c.scan); err != nil {
				b.Fatal(err)
			}
			if err := dp.SetClock(clock); err != nil {
				b.Fatal(err)
			}
			if !c.fresh { // count every pair once before timing
				for _, f := range c.frames.frames {
					if _, err := dp.Run(f); err != nil {
						b.Fatal(err)
					}
				}
			}
			var step func(int)
			if c.fresh {
				step = func(i int) {
					if i%16384 == 0 {
						clock = clock.Add(time.Minute)
						if err := dp.SetClock(clock); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			c.frames.bench(b, dp.objs.XtrailXdp, step)
		})
	}
}
