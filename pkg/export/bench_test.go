package export_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/pkg/export"
)

// BenchmarkExportDrain drains a 1M-line queue on a real redis-server into a
// UDP sink on loopback, unpaced, and reports lines/s (d4_export_udp.py does
// about 13,400 here) and what the sink read (UDP may drop at a slow
// reader). Run with -benchtime 1x; figures need a quiet machine.
func BenchmarkExportDrain(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := redisFixtureB(b)
		mem0 := usedMemory(b, f.raw)
		line := fmt.Sprintf(`%d "2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS malware.bakewithdavid.com "asyncrat (malware)" (static)`, time.Now().Unix())
		chunk := make([][]byte, 10_000)
		for j := range chunk {
			chunk[j] = []byte(line)
		}
		for j := 0; j < n; j += len(chunk) {
			if _, err := f.store.PushLines(context.Background(), "maltrail", sensor, chunk); err != nil {
				b.Fatal(err)
			}
		}
		perLine := float64(usedMemory(b, f.raw)-mem0) / n
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		_ = pc.SetReadBuffer(64 << 20)
		var got atomic.Int64
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := pc.ReadFromUDP(buf); err != nil {
					return
				}
				got.Add(1)
			}
		}()
		tgt, err := export.DialUDPConfirm(context.Background(), pc.LocalAddr().String(), export.DefaultConfirmDelay)
		if err != nil {
			b.Fatal(err)
		}
		e := export.New(export.Config{Queue: f.queue(), Target: tgt})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- e.Run(ctx) }()
		for e.Stats().Sent < n {
			time.Sleep(time.Millisecond)
		}
		el := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		_ = tgt.Close()
		time.Sleep(100 * time.Millisecond)
		_ = pc.Close()
		b.ReportMetric(float64(n)/el.Seconds(), "lines/s")
		b.ReportMetric(float64(got.Load())/n*100, "%received")
		b.ReportMetric(perLine, "redis-bytes/queued-line")
	}
}

// usedMemory is Redis's used_memory (INFO memory).
func usedMemory(b *testing.B, c *redis.Client) int64 {
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}
