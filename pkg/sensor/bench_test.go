package sensor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/sink"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

var (
	staticOnce  sync.Once
	staticNames *trails.Names
	staticErr   error
)

// benchStoreEnv names a store already compiled from the static trails
// (xtrail trails compile), for runs that cannot afford the compile, such
// as a benchmark under callgrind (scripts/agentcost.sh).
const benchStoreEnv = "XTRAIL_BENCH_STORE"

// loadStatic returns the name trails of the real 1.63M-row trails file
// as a sensor runs them: compiled into a .xts store (xtrail trails
// compile) and read from its mapping. The file is removed once mapped;
// the mapping lives on until the process ends.
func loadStatic(b *testing.B) *trails.Names {
	b.Helper()
	path := os.Getenv(benchStoreEnv)
	var csv []byte
	if path == "" {
		csv = testenv.StaticTrails(b)
	}
	staticOnce.Do(func() {
		if path == "" {
			dir, err := os.MkdirTemp("", "xtrail-sensor-bench-")
			if err != nil {
				staticErr = err
				return
			}
			defer os.RemoveAll(dir)
			path = filepath.Join(dir, "trails"+storeExt)
			in, err := store.FromCSV(bytes.NewReader(csv), "trails-static.csv", trails.DefaultWhitelist())
			if err == nil {
				_, err = store.Compile(path, in)
			}
			if err != nil {
				staticErr = err
				return
			}
		}
		var ts *trailSet
		if ts, staticErr = readTrails(path, trails.DefaultWhitelist(), slog.New(slog.DiscardHandler)); staticErr == nil {
			staticNames = ts.names
		}
	})
	if staticErr != nil {
		b.Fatal(staticErr)
	}
	return staticNames
}

type discard struct{}

func (discard) Emit(int64, []byte) error { return nil }

// benchAgent runs the agent over prebuilt raw records, cycling through them.
func benchAgent(b *testing.B, recs [][]byte) {
	benchAgentWith(b, loadStatic(b), recs, heuristics.Config{}, false)
}

// benchAgentNames is benchAgent with the given name trails (nil: none).
func benchAgentNames(b *testing.B, names *trails.Names, recs [][]byte) {
	benchAgentWith(b, names, recs, heuristics.Config{}, false)
}

// allHeuristics is the configuration of the heuristics benchmarks: every
// heuristic on, as the corpus harness runs them.
var allHeuristics = heuristics.Config{Use: true, CheckMissingHost: true}

// benchAgentWith runs the agent with names and heuristics hc; events says
// whether the records may make events.
func benchAgentWith(b *testing.B, names *trails.Names, recs [][]byte, hc heuristics.Config, events bool) {
	wl := trails.DefaultWhitelist()
	if names != nil {
		wl = names.Whitelist() // a sensor's names take its whitelist
	}
	a := NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Names: names, Whitelist: wl, CheckHostDomains: true, CheckSNI: true},
		Render: &maltrail.Renderer{Sensor: "bench", Loc: time.UTC}, Out: discard{}, Throttle: throttle.Off, Heuristics: hc,
		Logger: slog.New(slog.DiscardHandler)})
	for _, r := range recs { // grow the scratch buffers first
		a.Handle(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Handle(recs[i%len(recs)])
	}
	b.StopTimer()
	if !events && a.Stats().Events.Load() != 0 {
		b.Fatalf("%d events from clean traffic", a.Stats().Events.Load())
	}
}

var (
	benchSrc = netip.MustParseAddr("10.1.2.3")
	benchDst = netip.MustParseAddr("93.184.216.34")
	words    = []string{"alpha", "bravo", "cloud", "delta", "metro", "ocean", "pixel", "river", "solar", "terra"}
)

func dnsQuery(name string) []byte {
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range splitDots(name) {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// BenchmarkAgentDNS: one DNS query candidate, from ring record to verdict,
// with every name trail of the real file loaded (names miss, as in the
// reference traffic mix).
func BenchmarkAgentDNS(b *testing.B) {
	var recs [][]byte
	for i := 0; i < 1024; i++ {
		name := fmt.Sprintf("www.%s-%s%d.%s%s.com", words[i%10], words[(i/10)%10], i, words[(i/7)%10], words[(i/3)%10])
		recs = append(recs, rec(dataplane.KindDNS, 0, 0, 17, benchSrc, benchDst, uint16(40000+i), 53, 0, time.Unix(1700000000, 0), dnsQuery(name)))
	}
	benchAgent(b, recs)
}

// BenchmarkAgentHTTP: one HTTP request candidate (Host domain check and
// URL trail candidates) with every trail loaded.
func BenchmarkAgentHTTP(b *testing.B) {
	var recs [][]byte
	for i := 0; i < 1024; i++ {
		req := fmt.Sprintf("GET /%s/%s%d.js?v=%d HTTP/1.1\r\nHost: cdn.%s%s.net\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\nAccept: */*\r\n\r\n",
			words[i%10], words[(i/10)%10], i, i, words[(i/7)%10], words[(i/3)%10])
		recs = append(recs, rec(dataplane.KindHTTP, 0, 0, 6, benchSrc, benchDst, uint16(40000+i), 80, 0, time.Unix(1700000000, 0), []byte(req)))
	}
	benchAgent(b, recs)
}

// BenchmarkAgentOverhead: the fixed cost of Handle, on a record that asks
// for nothing (an IP hit on a protocol Maltrail has no name for): decode,
// counters and the last-resort guard.
func BenchmarkAgentOverhead(b *testing.B) {
	recs := [][]byte{rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 200, benchSrc, benchDst, 0, 0, 1, time.Unix(1700000000, 0), nil)}
	benchAgentNames(b, nil, recs)
}

// BenchmarkAgentMalformed: candidates that do not parse (DNS, HTTP, TLS,
// QUIC), the path hostile traffic drives: each is counted, only the first
// of each kind of failure is logged, and nothing allocates.
func BenchmarkAgentMalformed(b *testing.B) {
	at := time.Unix(1700000000, 0)
	recs := [][]byte{
		rec(dataplane.KindDNS, 0, 0, 17, benchSrc, benchDst, 40000, 53, 0, at, []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c}),
		rec(dataplane.KindHTTP, 0, 0, 6, benchSrc, benchDst, 40000, 80, 0, at, []byte("GET /cut-before-the-end-of-the-request-line")),
		rec(dataplane.KindTLS, 0, 0, 6, benchSrc, benchDst, 40000, 443, 0, at, []byte{0x16, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3}),
		rec(dataplane.KindQUIC, 0, 0, 17, benchSrc, benchDst, 40000, 443, 0, at, append([]byte{0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x44, 0xd0}, make([]byte, 1200)...)),
	}
	benchAgentNames(b, nil, recs)
}

// BenchmarkAgentHTTPHeuristics: BenchmarkAgentHTTP's requests with every
// heuristic on (web scan, user agent, request families, downloads).
func BenchmarkAgentHTTPHeuristics(b *testing.B) {
	var recs [][]byte
	for i := 0; i < 1024; i++ {
		req := fmt.Sprintf("GET /%s/%s%d.js?v=%d HTTP/1.1\r\nHost: cdn.%s%s.net\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\nAccept: */*\r\n\r\n",
			words[i%10], words[(i/10)%10], i, i, words[(i/7)%10], words[(i/3)%10])
		recs = append(recs, rec(dataplane.KindHTTP, 0, 0, 6, benchSrc, benchDst, uint16(40000+i), 80, 0, time.Unix(1700000000, 0), []byte(req)))
	}
	benchAgentWith(b, loadStatic(b), recs, allHeuristics, false)
}

// BenchmarkAgentDNSHeuristics: BenchmarkAgentDNS's queries with every
// heuristic on (DNS exhaustion counting, long domain).
func BenchmarkAgentDNSHeuristics(b *testing.B) {
	var recs [][]byte
	for i := 0; i < 1024; i++ {
		name := fmt.Sprintf("www.%s-%s%d.%s%s.com", words[i%10], words[(i/10)%10], i, words[(i/7)%10], words[(i/3)%10])
		recs = append(recs, rec(dataplane.KindDNS, 0, 0, 17, benchSrc, benchDst, uint16(40000+i), 53, 0, time.Unix(1700000000, 0), dnsQuery(name)))
	}
	benchAgentWith(b, loadStatic(b), recs, allHeuristics, false)
}

// dnsAnswer is a response to dnsQuery(name) with flags byte 3 rcode and,
// for NOERROR, one A record (compressed owner name).
func dnsAnswer(name string, rcode byte, a netip.Addr) []byte {
	m := dnsQuery(name)
	m[2], m[3] = 0x81, rcode
	if rcode != 0x80 {
		return m
	}
	m[7] = 1 // ANCOUNT
	ip := a.As4()
	return append(m, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ip[0], ip[1], ip[2], ip[3])
}

// BenchmarkAgentDNSResponse: NOERROR responses with an A record (the
// sinkhole and parked rules look the answer up) to a public client, every
// heuristic on.
func BenchmarkAgentDNSResponse(b *testing.B) {
	var recs [][]byte
	for i := 0; i < 1024; i++ {
		name := fmt.Sprintf("www.%s-%s%d.%s%s.com", words[i%10], words[(i/10)%10], i, words[(i/7)%10], words[(i/3)%10])
		recs = append(recs, rec(dataplane.KindDNS, 0, 0, 17, benchDst, netip.MustParseAddr("198.51.100.20"), 53, uint16(40000+i), 0,
			time.Unix(1700000000, 0), dnsAnswer(name, 0x80, netip.AddrFrom4([4]byte{93, 184, byte(i), 34}))))
	}
	benchAgentWith(b, loadStatic(b), recs, allHeuristics, false)
}

// BenchmarkAgentDNSNXDomain: NXDOMAIN responses to a public client (the
// flood counters and the DGA rules); names repeat, so some counters pass
// their threshold and make events, as they would in a real flood.
func BenchmarkAgentDNSNXDomain(b *testing.B) {
	var recs [][]byte
	for i := 0; i < 1024; i++ {
		name := fmt.Sprintf("%s%d.%s%s.com", words[i%10], i, words[(i/7)%10], words[(i/3)%10])
		if i%4 == 0 {
			name = fmt.Sprintf("%s%s%d.com", words[i%10], words[(i/10)%10], i)
		}
		recs = append(recs, rec(dataplane.KindDNS, 0, 0, 17, benchDst, netip.MustParseAddr("198.51.100.20"), 53, uint16(40000+i), 0,
			time.Unix(1700000000, 0), dnsAnswer(name, 0x83, netip.Addr{})))
	}
	benchAgentWith(b, loadStatic(b), recs, allHeuristics, true)
}

// BenchmarkKernelToEvent: HTTP candidates made by the XDP program (test-run
// with a repeat count, as fast as the kernel goes) and consumed from the
// real ring buffer by the agent. Reports candidates per second consumed and
// the share the ring had to drop.
func BenchmarkKernelToEvent(b *testing.B) {
	testenv.RequireRoot(b)
	dp, err := dataplane.Load(dataplane.Options{Replay: true})
	if err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	rd, err := dp.NewRingReader()
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	a := NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Names: loadStatic(b), Whitelist: trails.DefaultWhitelist(), CheckHostDomains: true},
		Render: &maltrail.Renderer{Loc: time.UTC}, Out: discard{}, Throttle: throttle.Off})
	frame := pktbuild.Frame{Src: benchSrc, Dst: benchDst, Proto: pktbuild.TCP, Sport: 40000, Dport: 80,
		TCPFlags: pktbuild.ACK | pktbuild.PSH,
		Payload:  []byte("GET /alpha/bravo1.js?v=1 HTTP/1.1\r\nHost: cdn.deltametro.net\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n")}.Bytes()
	var consumed atomic.Uint64
	var produced atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rec ringbuf.Record
		for {
			// short deadlines: a deadline set while a read waits does not wake it
			rd.SetDeadline(time.Now().Add(20 * time.Millisecond))
			err := rd.ReadInto(&rec)
			switch {
			case err == nil:
				a.Handle(rec.RawSample)
				consumed.Add(1)
			case errors.Is(err, os.ErrDeadlineExceeded):
				if produced.Load() {
					return // the producer is done and the ring is empty
				}
			default:
				return
			}
		}
	}()
	before, _ := dp.CounterMap()
	b.ResetTimer()
	start := time.Now()
	if _, err := dp.Benchmark(frame, b.N); err != nil {
		b.Fatal(err)
	}
	produced.Store(true)
	<-done
	elapsed := time.Since(start)
	b.StopTimer()
	after, _ := dp.CounterMap()
	lost := after["ringbuf_full"] - before["ringbuf_full"]
	b.ReportMetric(float64(consumed.Load())/elapsed.Seconds(), "candidates/s")
	b.ReportMetric(100*float64(lost)/float64(b.N), "%lost")
}

// BenchmarkAgentsDrain: candidates per second that the live loop's ring
// reader and 1 or 2 agents (one per CPU on the 2-core lab machine) take
// out of the real ring buffer. The XDP program (test runs, outside the
// timing) first fills the ring with HTTP request candidates from 1024
// sources, with every static trail loaded and every heuristic on; the
// timed part is the drain alone, so the kernel side takes no CPU from the
// agents. Figures belong to a quiet machine.
func BenchmarkAgentsDrain(b *testing.B) {
	testenv.RequireRoot(b)
	names := loadStatic(b)
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			dp, err := dataplane.Load(dataplane.Options{Replay: true, RingSize: 32 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer dp.Close()
			rd, err := dp.NewRingReader()
			if err != nil {
				b.Fatal(err)
			}
			defer rd.Close()
			var frames [][]byte
			for i := range 1024 {
				src := netip.AddrFrom4([4]byte{10, 20, byte(i >> 8), byte(i)})
				req := fmt.Sprintf("GET /%s/%s%d.js?v=%d HTTP/1.1\r\nHost: cdn.%s%s.net\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\nAccept: */*\r\n\r\n",
					words[i%10], words[(i/10)%10], i, i, words[(i/7)%10], words[(i/3)%10])
				frames = append(frames, pktbuild.Frame{Src: src, Dst: benchDst, Proto: pktbuild.TCP, Sport: uint16(40000 + i), Dport: 80,
					TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: []byte(req)}.Bytes())
			}
			agents := agentSet(newAgents(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Names: names, Whitelist: trails.DefaultWhitelist(), CheckHostDomains: true},
				Render: &maltrail.Renderer{Loc: time.UTC}, Out: discard{}, Throttle: throttle.Off, Heuristics: allHeuristics,
				Logger: slog.New(slog.DiscardHandler)}, n))
			const fill = 60000 // about 17 MiB of records: well inside the ring
			var rec ringbuf.Record
			var elapsed time.Duration
			consumed := 0
			b.ResetTimer()
			for done := 0; done < b.N; done += fill {
				b.StopTimer()
				for i := range fill {
					if _, err := dp.Run(frames[i%len(frames)]); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				start := time.Now()
				handle := agents[0].Handle
				var f *fanout
				if n > 1 {
					f = newFanout(agents)
					handle = f.Handle
				}
				rd.SetDeadline(time.Now())
				for {
					if err := rd.ReadInto(&rec); err != nil {
						if !errors.Is(err, os.ErrDeadlineExceeded) {
							b.Fatal(err)
						}
						break
					}
					handle(rec.RawSample)
					consumed++
				}
				if f != nil {
					f.Close()
				}
				elapsed += time.Since(start)
			}
			b.StopTimer()
			if lost, _ := dp.CounterMap(); lost["ringbuf_full"] != 0 {
				b.Fatalf("%d records lost while filling", lost["ringbuf_full"])
			}
			if got := agents.stats().Kinds[dataplane.KindHTTP].Load(); got < uint64(consumed) {
				b.Fatalf("agents handled %d of %d candidates", got, consumed)
			}
			b.ReportMetric(float64(consumed)/elapsed.Seconds(), "candidates/s")
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(consumed), "ns/candidate")
		})
	}
}

// BenchmarkAgentEvent: an IP trail hit that becomes an event, rendered and
// handed to the outputs (a Multi over a console on io.Discard): what an
// event costs, with its per-type and per-output counts. No suppression,
// so every record is an event. Its one allocation is the trail column's
// text (maltrail.FormatAddrPort); the counts add none.
func BenchmarkAgentEvent(b *testing.B) {
	out := sink.NewMulti(slog.New(slog.DiscardHandler), sink.NewConsole(io.Discard))
	a := NewAgent(AgentConfig{Meta: fakeMeta{1: {"malware (test)", "(static)"}}, Render: &maltrail.Renderer{Sensor: "bench", Loc: time.UTC},
		Out: out, Throttle: throttle.Off, Logger: slog.New(slog.DiscardHandler)})
	r := rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIPort, 6, benchSrc, benchDst, 40000, 8443, 1, time.Unix(1700000000, 0), nil)
	a.Handle(r) // grow the scratch buffers first
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Handle(r)
	}
	b.StopTimer()
	if n := a.Stats().EventTypes[eventType("IPORT")].Load(); n != uint64(b.N)+1 {
		b.Fatalf("%d IPORT events, want %d", n, b.N+1)
	}
}
