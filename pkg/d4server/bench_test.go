package d4server

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/pkg/d4"
)

// cpuTicks reads a process's user+system CPU time in clock ticks (1/100 s).
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start past ")".
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// BenchmarkServerIngest: one sensor sends 100,000 Maltrail lines per
// iteration over TLS, 100 per frame, to a server process (the test binary
// as helper) storing them in a real redis-server; reported are the
// server's CPU per 100k lines (the sensor's TLS and HMAC work is in another
// process) and lines/s. Figures need a quiet machine.
func BenchmarkServerIngest(b *testing.B) {
	addr := redistest.Start(b)
	ts, cmd, stdin, _ := startHelper(b, addr)
	defer stdin.Close()
	an := redis.NewClient(&redis.Options{Addr: addr, DB: DefaultAnalyzerDB})
	defer an.Close()
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.pool, ServerName: "127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	u, _ := d4.ParseUUID(goodUUID)
	sg := d4.NewSigner(goodKey)
	if _, err := c.Write(sg.AppendFrame(nil, d4.TypeMeta, u, uint64(time.Now().Unix()), []byte(`{"type":"maltrail"}`))); err != nil {
		b.Fatal(err)
	}
	const perIter, perFrame = 100_000, 100
	var payload []byte
	for i := range perFrame {
		payload = fmt.Appendf(payload, `%d "2026-08-07 09:14:22.%06d" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS malware.bakewithdavid.com "asyncrat (malware)" (static)`+"\n", time.Now().Unix(), i)
	}
	key := keyAnalyzerList("maltrail", testQueue)
	ctx := context.Background()
	b.ResetTimer()
	cpu0, start := cpuTicks(b, cmd.Process.Pid), time.Now()
	var frame []byte
	for i := 0; i < b.N; i++ {
		for range perIter / perFrame {
			// Distinct frames (a changed byte) so none is a replay.
			payload[0]++
			frame = sg.AppendFrame(frame[:0], d4.TypeExtended, u, uint64(time.Now().Unix()), payload)
			if _, err := c.Write(frame); err != nil {
				b.Fatal(err)
			}
		}
		want := int64((i + 1) * perIter)
		for an.LLen(ctx, key).Val() < want {
			time.Sleep(time.Millisecond)
		}
	}
	el := time.Since(start)
	cpu := cpuTicks(b, cmd.Process.Pid) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu)*10/float64(b.N), "server-cpu-ms/100k-lines")
	b.ReportMetric(float64(b.N*perIter)/el.Seconds(), "lines/s")
}
