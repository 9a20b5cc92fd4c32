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
		if dp, fullErr = Load(Options{Replay: true, Snap: [8]uint16{7: uint16(benchSnap7)}}); fullErr != nil {
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
