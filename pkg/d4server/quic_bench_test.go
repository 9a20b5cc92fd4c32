package d4server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
)

// BenchmarkIngest measures frames/s and lines/s into the server, stored in
// a real redis-server, for 1, 8 and 64 concurrent sensors over TLS and QUIC.
// Each sensor's spool is filled with its share of b.N lines first; the clock
// runs from the sensors' start until the server has stored every line. (On
// a shared machine the figures vary; take them on a quiet one.)
func BenchmarkIngest(b *testing.B) {
	for _, transport := range []string{d4.TransportTLS, d4.TransportQUIC} {
		for _, sensors := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/sensors=%d", transport, sensors), func(b *testing.B) {
				benchIngest(b, transport, sensors)
			})
		}
	}
}

const benchLine = `1700000000 "2023-11-14 22:13:20.000000" sensor 10.0.0.1 53211 192.0.2.1 53 UDP DNS bad.example.com "malware" (static)` + "\n"

func benchIngest(b *testing.B, transport string, sensors int) {
	dir := b.TempDir()
	if err := certs.Generate(dir, []string{"127.0.0.1"}, time.Hour); err != nil {
		b.Fatal(err)
	}
	pool, err := certs.LoadPool(filepath.Join(dir, certs.CAFile))
	if err != nil {
		b.Fatal(err)
	}
	store, err := OpenRedis(RedisConfig{Metadata: "redis://" + redistest.Start(b) + "/0", AnalyzerDB: DefaultAnalyzerDB})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := store.Init(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := store.RegisterQueue(ctx, MetaTypeMaltrail, "", "bench"); err != nil {
		b.Fatal(err)
	}
	keys := map[string][]byte{}
	ids := make([]d4.UUID, sensors)
	for i := range ids {
		ids[i], _ = d4.NewUUIDv4()
		keys[ids[i].Hex()] = []byte(fmt.Sprintf("bench key %d", i))
	}
	reg, err := NewStaticRegistry(ModeRegistration, nil, keys)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{Store: store, Registry: reg, SensorRate: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	cert, key := filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var addr string
	if transport == d4.TransportQUIC {
		ln, err := srv.ListenQUIC("127.0.0.1:0", cert, key)
		if err != nil {
			b.Fatal(err)
		}
		addr = ln.Addr().String()
		wg.Add(1)
		go func() { defer wg.Done(); srv.ServeQUIC(ctx, ln) }()
	} else {
		ln, err := ListenTLS("127.0.0.1:0", cert, key)
		if err != nil {
			b.Fatal(err)
		}
		addr = ln.Addr().String()
		wg.Add(1)
		go func() { defer wg.Done(); srv.Serve(ctx, ln) }()
	}

	per := max(b.N/sensors, 1)
	total := per * sensors
	clients := make([]*d4.Client, sensors)
	for i := range clients {
		c, err := d4.NewClient(d4.ClientConfig{Servers: []string{addr}, Transport: transport, UUID: ids[i], Key: keys[ids[i].Hex()],
			TLS: &tls.Config{RootCAs: pool}, Spool: d4.SpoolConfig{Dir: b.TempDir(), Max: 1 << 30}, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for range per {
			c.Send([]byte(benchLine))
		}
		clients[i] = c
	}
	before := srv.Stats()
	b.ResetTimer()
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx) }()
	}
	for srv.Stats().Lines-before.Lines < uint64(total) {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("stored %d of %d lines in 5 minutes", srv.Stats().Lines-before.Lines, total)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	st := srv.Stats()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "lines/s")
	b.ReportMetric(float64(st.Frames-before.Frames)/elapsed.Seconds(), "frames/s")
}
