package sensor

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/internal/trafficgen"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/pcap"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// BenchmarkLiveLineRate: the packets per second a live sensor absorbs on
// one core with every trail of trails-static.csv.gz loaded (a compiled
// store), without losing a ring record or a frame, for the gen_mix traffic
// (a pool of 16,384 frames, seed 1) and for a SYN flood (distinct source
// ports, no trail). The frames come from the kernel (internal/trafficgen:
// BPF_PROG_TEST_RUN in live-frame mode, redirected out of the lab's source
// veth) on a thread pinned to one CPU; the sensor's XDP program runs in
// the softirq of that CPU, so the generator's own cost shares it: the
// floor/ cases send the same frames to an XDP program that only drops
// them, and xdp-ns/pkt = 1e9/pps - 1e9/floor-pps is the sensor's program
// alone. The sensor runs one agent (Options.Agents), on the other CPUs.
//   - max-pps: frames as fast as the generator goes, lost: the share the
//     sensor did not absorb then (ring records lost, or frames its veth
//     refused);
//   - pps: the highest paced rate (a binary search, 0.5 s a step) at which
//     nothing was lost; equal to max-pps when nothing was lost flat out.
//
// Figures belong to a quiet machine with at least two CPUs.
func BenchmarkLiveLineRate(b *testing.B) {
	testenv.RequireRoot(b)
	l := lab.New(b)
	xts := staticStore(b)
	mix := mixPool(b, 16384)
	syn := pktbuild.Frame{Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("93.184.216.34"), Proto: pktbuild.TCP,
		Sport: 1024, Dport: 443, TCPFlags: pktbuild.SYN}.Bytes()
	kinds := []struct {
		name   string
		frames [][]byte
		vary   int // the source port moves on per pool round
	}{
		{"mix", mix, 0},
		{"syn-flood", [][]byte{syn}, 14 + 20},
	}
	var counts func() (packets, lost uint64)
	measure := func(b *testing.B, frames [][]byte, vary int) (flat, best rate) {
		err := lab.InNetns(l.Source, func() error {
			unpin, err := dataplane.PinThread()
			if err != nil {
				return err
			}
			defer unpin()
			ifc, err := net.InterfaceByName(l.SourceIf)
			if err != nil {
				return err
			}
			g, err := trafficgen.New(frames, ifc.Index, vary)
			if err != nil {
				return err
			}
			defer g.Close()
			if _, err := g.Send(100000); err != nil { // warm up
				return err
			}
			time.Sleep(200 * time.Millisecond)
			if flat, err = offer(g, counts, 0, time.Second); err != nil {
				return err
			}
			best, err = searchRate(g, counts, flat)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(flat.pps, "max-pps")
		b.ReportMetric(flat.lostShare()*100, "%lost-at-max")
		b.ReportMetric(best.pps, "pps")
		return flat, best
	}
	floor := map[string]float64{}
	b.Run("floor", func(b *testing.B) {
		drop, err := dropProgram(l)
		if err != nil {
			b.Fatal(err)
		}
		defer drop.close()
		counts = drop.counts
		for _, k := range kinds {
			b.Run(k.name, func(b *testing.B) {
				flat, _ := measure(b, k.frames, k.vary)
				floor[k.name] = flat.pps
			})
		}
	})

	probe := &Probe{}
	startLive(b, Options{
		Interfaces: []string{l.SensorIf}, Netns: lab.NetnsPath(l.Sensor), PinDir: testenv.PinDir(b), TrailsFile: xts,
		Action: dataplane.ActionDrop, Agents: 1, Probe: probe, WatchEvery: -1,
		Rules:    NameRules{Whitelist: trails.DefaultWhitelist(), CheckHostDomains: true},
		Renderer: maltrail.Renderer{Sensor: "bench", Loc: time.UTC}, Out: discard{}, Throttle: throttle.Summarize,
		Logger: slog.New(slog.DiscardHandler),
	})
	counts = func() (uint64, uint64) {
		s, ok := probe.Snapshot()
		if !ok {
			return 0, 0
		}
		var packets, lost uint64
		for _, c := range s.XDP {
			switch c.Name {
			case "packets":
				packets = c.Value
			case "ringbuf_full":
				lost = c.Value
			}
		}
		return packets, lost
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			flat, _ := measure(b, k.frames, k.vary)
			if f := floor[k.name]; f > 0 && flat.pps > 0 {
				b.ReportMetric(1e9/flat.pps-1e9/f, "xdp-ns/pkt")
			}
		})
	}
}

// rate is what one offered load gave.
type rate struct {
	offered, seen, lost uint64 // frames sent, counted by the program, ring records lost
	pps                 float64
}

// lostShare is the share of frames not absorbed: refused by the veth
// (sent, not seen) or whose record was lost.
func (r rate) lostShare() float64 {
	if r.offered == 0 {
		return 0
	}
	gone := r.lost
	if r.seen < r.offered {
		gone += r.offered - r.seen
	}
	return float64(gone) / float64(r.offered)
}

// offer sends frames at pps (0: as fast as the generator goes) for d and
// returns the rate the program counted and what was lost.
func offer(g *trafficgen.Generator, counts func() (uint64, uint64), pps float64, d time.Duration) (rate, error) {
	const tick = 10 * time.Millisecond
	chunk := 65536
	if pps > 0 {
		chunk = max(1, int(pps*tick.Seconds()))
	}
	p0, l0 := counts()
	start := time.Now()
	var r rate
	for next := start; time.Since(start) < d; {
		n, err := g.Send(chunk)
		r.offered += uint64(n)
		if err != nil {
			return r, err
		}
		if pps > 0 {
			next = next.Add(tick)
			time.Sleep(time.Until(next))
		}
	}
	elapsed := time.Since(start)
	time.Sleep(50 * time.Millisecond) // the last frames through the veth and the ring
	p1, l1 := counts()
	r.seen, r.lost = p1-p0, l1-l0
	r.pps = float64(r.seen) / elapsed.Seconds()
	return r, nil
}

// searchRate finds the highest paced rate, up to the flat-out one, at
// which nothing is lost.
func searchRate(g *trafficgen.Generator, counts func() (uint64, uint64), flat rate) (rate, error) {
	if flat.lostShare() == 0 {
		return flat, nil
	}
	var best rate
	lo, hi := 0.0, flat.pps
	for range 7 {
		mid := (lo + hi) / 2
		r, err := offer(g, counts, mid, 500*time.Millisecond)
		if err != nil {
			return best, err
		}
		if r.lostShare() == 0 {
			lo, best = mid, r
		} else {
			hi = mid
		}
	}
	return best, nil
}

// dropper is an XDP program on the lab's sensor veth that counts and drops
// every frame: the floor of BenchmarkLiveLineRate.
type dropper struct {
	prog  *ebpf.Program
	count *ebpf.Map
	link  link.Link
}

func dropProgram(l *lab.Lab) (*dropper, error) {
	d := &dropper{}
	var err error
	if d.count, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1}); err != nil {
		return nil, err
	}
	d.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, d.count.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 1).WithSymbol("out"), // XDP_DROP
			asm.Return(),
		},
	})
	if err != nil {
		d.close()
		return nil, err
	}
	err = lab.InNetns(l.Sensor, func() error {
		ifc, err := net.InterfaceByName(l.SensorIf)
		if err != nil {
			return err
		}
		d.link, err = link.AttachXDP(link.XDPOptions{Program: d.prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// counts is the frames the dropper saw; it loses no record.
func (d *dropper) counts() (uint64, uint64) {
	var per []uint64
	if err := d.count.Lookup(uint32(0), &per); err != nil {
		return 0, 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, 0
}

func (d *dropper) close() {
	if d.link != nil {
		d.link.Close()
	}
	if d.prog != nil {
		d.prog.Close()
	}
	d.count.Close()
}

// staticStore compiles trails-static.csv.gz into a store for the
// benchmark (or takes XTRAIL_BENCH_STORE's).
func staticStore(b *testing.B) string {
	if p := os.Getenv(benchStoreEnv); p != "" {
		return p
	}
	path := filepath.Join(b.TempDir(), "trails"+storeExt)
	in, err := store.FromCSV(bytes.NewReader(testenv.StaticTrails(b)), "trails-static.csv", trails.DefaultWhitelist())
	if err == nil {
		_, err = store.Compile(path, in)
	}
	if err != nil {
		b.Fatal(err)
	}
	return path
}

// mixPool generates n packets of the gen_mix traffic (seed 1, the hits
// excluded) and returns their Ethernet frames.
func mixPool(b *testing.B, n int) [][]byte {
	r, err := pcap.OpenFile(testenv.MixCapture(b, n))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var frames [][]byte
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			b.Fatal(err)
		}
		if f, err := pcap.ToEthernet(nil, p.LinkType, p.Data); err == nil {
			frames = append(frames, bytes.Clone(f[:min(len(f), trafficgen.FrameMax)]))
		}
	}
}
