package dataplane

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

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
	cases := []struct {
		name  string
		frame pktbuild.Frame
	}{
		{"tcp-data", pktbuild.Frame{Src: client, Dst: public, Proto: pktbuild.TCP, Sport: 50000, Dport: 443, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: payload}},
		{"tcp-data-small", pktbuild.Frame{Src: client, Dst: public, Proto: pktbuild.TCP, Sport: 50000, Dport: 443, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: payload[:64]}},
		{"syn-miss", syn(client, public, 50000, 443)},
		{"syn-hit", syn(client, hit, 50000, 443)},
		{"ipv6-syn-miss", syn(netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("2a00:1450:4001::1"), 50000, 443)},
	}
	b.Run("empty-program", func(b *testing.B) {
		testenv.RequireRoot(b)
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:         ebpf.XDP,
			License:      "MIT",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // return XDP_PASS
		})
		if err != nil {
			b.Fatal(err)
		}
		defer prog.Close()
		benchFrame(b, prog, cases[0].frame.Bytes())
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			benchFrame(b, dp.objs.XtrailXdp, c.frame.Bytes())
		})
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
	benchFrame(b, dp.objs.XtrailXdp, syn(netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("93.184.216.34"), 50000, 443).Bytes())
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
// ns/pkt is the mean of the kernel's own timings of those runs.
//   - known-pairs: 1024 clients x 16 servers, already counted (the common
//     case: a (src, dst) pair seen before, its port already there);
//   - new-pairs: every SYN a pair new in the window (a key made, its
//     source noted); the window moves every 20,000 packets so the key cap
//     is never what is measured;
//   - infection-port: known pairs on port 445 (a second key per SYN).
func BenchmarkXDPScan(b *testing.B) {
	dp := loadFull(b)
	b.Cleanup(func() { dp.SetScan(Scan{}) })
	const pool = 1 << 14
	framesOf := func(dport uint16, fresh bool) [][]byte {
		out := make([][]byte, pool)
		for i := range out {
			src := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8 & 3), byte(i)})
			dst := netip.AddrFrom4([4]byte{93, 184, 216, byte(i & 15)})
			if fresh {
				src = netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
			}
			out[i] = syn(src, dst, uint16(40000+i%20000), dport).Bytes()
		}
		return out
	}
	cases := []struct {
		name   string
		scan   Scan
		frames [][]byte
		fresh  bool
	}{
		{"known-pairs-off", Scan{}, framesOf(443, false), false},
		{"known-pairs-on", allScans, framesOf(443, false), false},
		{"new-pairs-off", Scan{}, framesOf(443, true), true},
		{"new-pairs-on", allScans, framesOf(443, true), true},
		{"infection-port-off", Scan{}, framesOf(445, false), false},
		{"infection-port-on", allScans, framesOf(445, false), false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if err := dp.SetScan(c.scan); err != nil {
				b.Fatal(err)
			}
			clock := time.Unix(1786094062, 0)
			if err := dp.SetClock(clock); err != nil {
				b.Fatal(err)
			}
			if !c.fresh { // count every pair once before timing
				for _, f := range c.frames {
					if _, err := dp.Run(f); err != nil {
						b.Fatal(err)
					}
				}
			}
			var total time.Duration
			b.ResetTimer()
			for i := range b.N {
				if c.fresh && i%20000 == 0 {
					clock = clock.Add(time.Minute)
					if err := dp.SetClock(clock); err != nil {
						b.Fatal(err)
					}
				}
				_, per, err := dp.objs.XtrailXdp.Benchmark(c.frames[i%pool], 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += per
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}
