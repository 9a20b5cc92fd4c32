package faults

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/internal/xproc"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
)

// BenchmarkChain runs the whole store-and-export chain as processes:
// TLS sensors (in the benchmark) -> `xtrail server` -> Redis (one
// redis-server, or a 3-primary, 3-replica Redis Cluster with WAIT) ->
// `xtrail export` -> `xtrail collector` writing its day file, for 1 and 2
// servers and 1, 2 and 4 exporters sharing one queue. Each shape runs
// twice: "max" sends 300,000 lines as fast as the chain takes them and
// reports lines/s from the first hand-off to the last line in the file;
// "10k" sends 10,000 lines/s for 5 s and reports the latency from a line's
// hand-off (the moment it is due at the sensor's D4 output; frames leave
// every 10 ms) to its appearance in the collector's file, p50 and p99.
// Run with -benchtime 1x; figures need a quiet machine.
func BenchmarkChain(b *testing.B) {
	shapes := []struct{ servers, exporters int }{{1, 1}, {2, 1}, {1, 2}, {2, 2}, {2, 4}}
	for _, store := range []string{"redis", "cluster"} {
		b.Run(store, func(b *testing.B) {
			var url string
			var nodes []*redistest.Server
			if store == "redis" {
				n := redistest.StartServer(b, redistest.Options{AppendOnly: true})
				url, nodes = "redis://"+n.Addr()+"/0", []*redistest.Server{n}
			} else {
				cl := redistest.StartCluster(b, 3, 1, redistest.Options{AppendOnly: true})
				url, nodes = cl.URL(), cl.Nodes
			}
			for i, sh := range shapes {
				name := fmt.Sprintf("servers=%d/exporters=%d", sh.servers, sh.exporters)
				for j, mode := range []string{"max", "10k"} {
					b.Run(name+"/"+mode, func(b *testing.B) {
						for range b.N {
							runChain(b, url, nodes, fmt.Sprintf("%08d-0000-4000-8000-%012d", i, j), sh.servers, sh.exporters, mode)
						}
					})
				}
			}
		})
	}
}

const benchSensors = 8

func runChain(b *testing.B, url string, nodes []*redistest.Server, queue string, servers, exporters int, mode string) {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := d4server.NewRedisStore(url, d4server.DefaultAnalyzerDB)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ids := make([]d4.UUID, benchSensors)
	for i := range ids {
		ids[i], _ = d4.NewUUIDv4()
		if err := st.AddSensor(ctx, ids[i].String(), "bench key", ""); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	certDir := filepath.Join(dir, "certs")
	if err := certs.Generate(certDir, []string{"127.0.0.1"}, time.Hour); err != nil {
		b.Fatal(err)
	}
	pool, err := certs.LoadPool(filepath.Join(certDir, certs.CAFile))
	if err != nil {
		b.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	colAddr := pc.LocalAddr().String()
	pc.Close()
	logDir := filepath.Join(dir, "log")
	col := startProc(b, "collector", "collector", "-listen", colAddr, "-log-dir", logDir)
	col.WaitMatch(regexpCollector, 20*time.Second)
	var addrs []string
	var srvs, exps []*xproc.Proc
	for i := range servers {
		p := startProc(b, fmt.Sprintf("server %d", i), "server", "-listen", "127.0.0.1:0", "-redis", url,
			"-cert", filepath.Join(certDir, certs.CertFile), "-key", filepath.Join(certDir, certs.KeyFile))
		addrs = append(addrs, p.WaitMatch(listening, 20*time.Second))
		srvs = append(srvs, p)
	}
	for i := range exporters {
		exps = append(exps, startProc(b, fmt.Sprintf("e%d", i), "export", "-t", "maltrail", "-u", queue, "-redis", url,
			"-target", "udp://"+colAddr, "-consumer", fmt.Sprintf("e%d", i), "-q"))
	}
	for ok := false; !ok; time.Sleep(20 * time.Millisecond) {
		if ok, err = st.QueueRegistered(ctx, d4server.MetaTypeMaltrail, queue); err != nil {
			b.Fatal(err)
		}
	}
	// The next shape's servers must not fill this queue too.
	defer unregister(b, url, queue)

	total, perSec := 300_000, 0
	if mode == "10k" {
		total, perSec = 50_000, 10_000
	}
	tl := &tailer{dir: logDir, want: total}
	tctx, stopTail := context.WithCancel(ctx)
	defer stopTail()
	tailed := make(chan struct{})
	go func() { defer close(tailed); tl.run(tctx) }()

	conns := make([]*tls.Conn, benchSensors)
	for i := range conns {
		c, err := tls.Dial("tcp", addrs[i%len(addrs)], &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	b.StartTimer()
	cpu0, srv0, exp0 := cpuTicks(nodes), procTicks(srvs), procTicks(exps)
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sendLines(b, c, ids[i], i, total/benchSensors, float64(perSec)/benchSensors, start)
		}()
	}
	wg.Wait()
	select {
	case <-tailed:
	case <-ctx.Done():
		b.Fatalf("the collector's file holds %d of %d lines", tl.count(), total)
	}
	el := tl.last.Sub(start)
	b.StopTimer()
	per100k := func(ticks int64) float64 { return float64(ticks) * 10 / float64(total) * 100_000 } // ms per 100k lines
	redisCPU, srvCPU, expCPU := per100k(cpuTicks(nodes)-cpu0), per100k(procTicks(srvs)-srv0), per100k(procTicks(exps)-exp0)
	lat := tl.latencies()
	b.ReportMetric(float64(total)/el.Seconds(), "lines/s")
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
	b.ReportMetric(float64(tl.dups), "dup-lines")
	b.ReportMetric(peakRSS(srvs), "server-peak-rss-MB")
	b.ReportMetric(peakRSS(exps), "export-peak-rss-MB")
	b.ReportMetric(redisCPU, "redis-cpu-ms/100k-lines")
	b.ReportMetric(srvCPU, "server-cpu-ms/100k-lines")
	b.ReportMetric(expCPU, "export-cpu-ms/100k-lines")
}

func procTicks(ps []*xproc.Proc) int64 {
	var t int64
	for _, p := range ps {
		t += pidTicks(p.Pid())
	}
	return t
}

// cpuTicks sums the user and system CPU time of the running nodes, in
// clock ticks (1/100 s).
func cpuTicks(nodes []*redistest.Server) int64 {
	var t int64
	for _, n := range nodes {
		if n.Pid() != 0 {
			t += pidTicks(n.Pid())
		}
	}
	return t
}

// pidTicks is a process's user+system CPU time in clock ticks.
func pidTicks(pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// peakRSS is the largest peak resident set (VmHWM) of the processes, in MB.
func peakRSS(ps []*xproc.Proc) float64 {
	var kb int64
	for _, p := range ps {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				kb = max(kb, n)
			}
		}
	}
	return float64(kb) / 1024
}

// unregister removes a queue and its lines.
func unregister(b *testing.B, url, queue string) {
	var meta, an redis.UniversalClient
	if d4server.IsClusterURL(url) {
		o, err := redis.ParseClusterURL(url)
		if err != nil {
			b.Fatal(err)
		}
		meta = redis.NewClusterClient(o)
		an = meta
	} else {
		o, err := redis.ParseURL(url)
		if err != nil {
			b.Fatal(err)
		}
		meta = redis.NewClient(o)
		o2 := *o
		o2.DB = d4server.DefaultAnalyzerDB
		an = redis.NewClient(&o2)
		defer an.Close()
	}
	defer meta.Close()
	ctx := context.Background()
	if err := meta.SRem(ctx, "analyzer:254:maltrail", queue).Err(); err != nil {
		b.Error(err)
	}
	if err := an.Del(ctx, "analyzer:maltrail:"+queue).Err(); err != nil {
		b.Error(err)
	}
}

var regexpCollector = regexp.MustCompile(`msg="collector listening" addr=(\S+)`)

// sendLines sends n lines on one sensor connection, 100 per frame: as fast
// as the server reads them (perSec 0), or each line at its due time, in
// frames every 10 ms. A line carries its hand-off time (its due time, or
// when its frame was built).
func sendLines(b *testing.B, c *tls.Conn, u d4.UUID, id, n int, perSec float64, start time.Time) {
	sg := d4.NewSigner([]byte("bench key"))
	if _, err := c.Write(sg.AppendFrame(nil, d4.TypeMeta, u, uint64(time.Now().Unix()), []byte(`{"type":"maltrail"}`))); err != nil {
		b.Error(err)
		return
	}
	var p, f []byte
	for sent := 0; sent < n; {
		k := min(100, n-sent)
		now := time.Now()
		if perSec > 0 {
			// Lines due by now, at most 100 in a frame.
			due := int(now.Sub(start).Seconds()*perSec) - sent
			if due <= 0 {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			k = min(k, due)
		}
		p = p[:0]
		for j := range k {
			at := now
			if perSec > 0 {
				at = start.Add(time.Duration(float64(sent+j) / perSec * float64(time.Second)))
			}
			p = fmt.Appendf(p, "%d \"2026-08-07 09:14:22.117034\" bench 10.13.13.2 57809 1.1.1.1 53 UDP DNS malware.example \"asyncrat (malware)\" (static) seq=%d at=%d\n",
				now.Unix(), id*seqBase+sent+j, at.UnixNano())
		}
		f = sg.AppendFrame(f[:0], d4.TypeExtended, u, uint64(now.Unix()), p)
		if _, err := c.Write(f); err != nil {
			b.Error(err)
			return
		}
		sent += k
	}
}

// tailer follows the collector's day files and records when each line
// appears.
type tailer struct {
	dir  string
	want int

	mu   sync.Mutex
	seen map[int]bool
	lat  []time.Duration
	dups int
	last time.Time
}

func (t *tailer) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}

func (t *tailer) latencies() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := slices.Clone(t.lat)
	slices.Sort(l)
	if len(l) == 0 {
		l = []time.Duration{0}
	}
	return l
}

func (t *tailer) run(ctx context.Context) {
	t.seen = map[int]bool{}
	offsets := map[string]int64{}
	partial := map[string]string{}
	for ctx.Err() == nil {
		ents, _ := os.ReadDir(t.dir)
		for _, e := range ents {
			name := filepath.Join(t.dir, e.Name())
			f, err := os.Open(name)
			if err != nil {
				continue
			}
			_, _ = f.Seek(offsets[name], 0)
			r := bufio.NewReaderSize(f, 1<<20)
			for {
				l, err := r.ReadString('\n')
				offsets[name] += int64(len(l))
				if err != nil {
					partial[name] += l
					break
				}
				l, partial[name] = partial[name]+l, ""
				t.line(l, time.Now())
			}
			f.Close()
		}
		if t.count() >= t.want {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (t *tailer) line(l string, now time.Time) {
	_, rest, ok := strings.Cut(l, " seq=")
	if !ok {
		return
	}
	seqS, atS, _ := strings.Cut(strings.TrimSpace(rest), " at=")
	seq, err1 := strconv.Atoi(seqS)
	at, err2 := strconv.ParseInt(atS, 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen[seq] {
		t.dups++
		return
	}
	t.seen[seq] = true
	t.lat = append(t.lat, now.Sub(time.Unix(0, at)))
	t.last = now
}
