package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/collector"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
	"github.com/xtrail/xtrail/pkg/sink"
)

// BenchmarkLatency measures the time from the sensor's hand-off (the D4
// sink's Emit) to the line's arrival in the collector's daily file, at
// 10,000 lines/s, through the whole chain on loopback: spool, D4 client,
// xtrail's server, a real redis-server, the exporter, UDP, the collector.
// b.N lines are sent; p50 and p99 are reported. (Take the figures on a
// quiet machine.)
func BenchmarkLatency(b *testing.B) {
	for _, transport := range []string{d4.TransportTLS, d4.TransportQUIC} {
		b.Run(transport, func(b *testing.B) { benchLatency(b, transport, 10000) })
	}
}

func benchLatency(b *testing.B, transport string, rate int) {
	tmp := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	discard := slog.New(slog.DiscardHandler)

	if err := certs.Generate(tmp, []string{"127.0.0.1"}, time.Hour); err != nil {
		b.Fatal(err)
	}
	store, err := d4server.OpenRedis(d4server.RedisConfig{Metadata: "redis://" + redistest.Start(b) + "/0", AnalyzerDB: d4server.DefaultAnalyzerDB})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if err := store.Init(ctx); err != nil {
		b.Fatal(err)
	}
	queue, err := store.RegisterQueue(ctx, "maltrail", export.QueueUUIDFor("latency"), "latency bench")
	if err != nil {
		b.Fatal(err)
	}
	id, _ := d4.NewUUIDv4()
	key := []byte("latency key")
	reg, err := d4server.NewStaticRegistry(d4server.ModeRegistration, nil, map[string][]byte{id.Hex(): key})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := d4server.New(d4server.Config{Store: store, Registry: reg, SensorRate: -1, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	cert, keyFile := filepath.Join(tmp, certs.CertFile), filepath.Join(tmp, certs.KeyFile)
	var addr string
	wg.Add(1)
	if transport == d4.TransportQUIC {
		ln, err := srv.ListenQUIC("127.0.0.1:0", cert, keyFile)
		if err != nil {
			b.Fatal(err)
		}
		addr = ln.Addr().String()
		go func() { defer wg.Done(); srv.ServeQUIC(ctx, ln) }()
	} else {
		ln, err := d4server.ListenTLS("127.0.0.1:0", cert, keyFile)
		if err != nil {
			b.Fatal(err)
		}
		addr = ln.Addr().String()
		go func() { defer wg.Done(); srv.Serve(ctx, ln) }()
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	colDir := filepath.Join(tmp, "collector")
	col := &collector.Collector{Dir: colDir, Loc: time.UTC, Logger: discard}
	defer col.Close()
	conn, err := export.Dial(ctx, pc.LocalAddr().String(), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	wg.Add(2)
	go func() { defer wg.Done(); col.Serve(ctx, pc) }()
	go func() { defer wg.Done(); export.Run(ctx, store.Queue("maltrail", queue), conn, discard) }()

	pool, err := certs.LoadPool(filepath.Join(tmp, certs.CAFile))
	if err != nil {
		b.Fatal(err)
	}
	client, err := d4.NewClient(d4.ClientConfig{Servers: []string{addr}, Transport: transport, UUID: id, Key: key,
		TLS: &tls.Config{RootCAs: pool}, Spool: d4.SpoolConfig{Dir: filepath.Join(tmp, "spool")}, Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	wg.Add(1)
	go func() { defer wg.Done(); client.Run(ctx) }()
	out := sink.NewD4(client)

	// warm up: the connection is made and one line crossed
	if err := out.Emit(time.Now().Unix(), []byte("warm up\n")); err != nil {
		b.Fatal(err)
	}
	for col.Stats().Written == 0 {
		time.Sleep(time.Millisecond)
	}

	lat := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	go func() { defer close(done); lat = tailLatencies(b, colDir, b.N) }()
	b.ResetTimer()
	every := time.Second / time.Duration(rate)
	next := time.Now()
	line := make([]byte, 0, 256)
	for i := range b.N {
		now := time.Now()
		line = fmt.Appendf(line[:0], `"%s" latency 10.0.0.1 53211 192.0.2.1 53 UDP DNS seq%d.bad.example t=%d "malware" (static)`+"\n",
			now.UTC().Format("2006-01-02 15:04:05.000000"), i, now.UnixNano())
		if err := out.Emit(now.Unix(), line); err != nil {
			b.Fatal(err)
		}
		next = next.Add(every)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("only part of %d lines reached the collector in 2 minutes", b.N)
	}
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// tailLatencies follows the collector's files and, for each line carrying
// t=<unix nanos>, records how long ago it was emitted, until n lines came.
func tailLatencies(b *testing.B, dir string, n int) []time.Duration {
	out := make([]time.Duration, 0, n)
	offsets := map[string]int64{}
	var partial []byte
	deadline := time.Now().Add(3 * time.Minute)
	for len(out) < n && time.Now().Before(deadline) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			fh.Seek(offsets[f], io.SeekStart)
			data, _ := io.ReadAll(fh)
			fh.Close()
			offsets[f] += int64(len(data))
			now := time.Now()
			data = append(partial, data...)
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				if j := bytes.Index(data[:i], []byte(" t=")); j >= 0 {
					rest := data[j+3 : i]
					if k := bytes.IndexByte(rest, ' '); k >= 0 {
						rest = rest[:k]
					}
					if ns, err := strconv.ParseInt(string(rest), 10, 64); err == nil {
						out = append(out, now.Sub(time.Unix(0, ns)))
					}
				}
				data = data[i+1:]
			}
			partial = append(partial[:0], data...)
		}
		time.Sleep(500 * time.Microsecond)
	}
	return out
}
