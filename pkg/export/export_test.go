package export_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

const (
	sensor = "1d9403319fc943818fc93b624db66025"
	queue  = "6b3c5a0e-7d1f-4b8e-9a2c-1f0e3d4c5b6a"
)

type fixture struct {
	store d4server.Store
	queue export.Queue
	raw   *redis.Client // analyzer db, nil for the MemStore
}

func redisFixture(t *testing.T) fixture {
	addr := redistest.Start(t)
	s, err := d4server.NewRedisStore("redis://"+addr+"/0", d4server.DefaultAnalyzerDB)
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: addr, DB: d4server.DefaultAnalyzerDB})
	t.Cleanup(func() { _ = s.Close(); _ = raw.Close() })
	return fixture{store: s, queue: s.Queue("maltrail", queue), raw: raw}
}

// register registers the exporter's queue, as the server does for a
// `-export` destination.
func (f fixture) register(t *testing.T) {
	t.Helper()
	if _, err := f.store.RegisterQueue(context.Background(), "maltrail", queue, ""); err != nil {
		t.Fatal(err)
	}
}

func memFixture(*testing.T) fixture {
	s := d4server.NewMemStore(0)
	return fixture{store: s, queue: s.Queue("maltrail", queue)}
}

func stores() map[string]func(*testing.T) fixture {
	return map[string]func(*testing.T) fixture{"mem": memFixture, "redis": redisFixture}
}

// listen opens the receiving end: a UDP socket on 127.0.0.1.
func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// recv reads n datagrams.
func recv(t *testing.T, pc *net.UDPConn, n int) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 70000)
	for len(got) < n {
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, _, err := pc.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("after %d datagrams %q: %v", len(got), got, err)
		}
		got = append(got, string(buf[:k]))
	}
	return got
}

func dial(t *testing.T, pc *net.UDPConn) net.Conn {
	t.Helper()
	c, err := export.DialUDP(context.Background(), "127.0.0.1", pc.LocalAddr().(*net.UDPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// start runs the exporter until the test ends and checks it returns nil.
func start(t *testing.T, e *export.Exporter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v on cancel", err)
		}
	})
}

func push(t *testing.T, s d4server.Store, lines ...string) {
	t.Helper()
	b := make([][]byte, len(lines))
	for i, l := range lines {
		b[i] = []byte(l)
	}
	if _, err := s.PushLines(context.Background(), "maltrail", sensor, b); err != nil {
		t.Fatal(err)
	}
}

func TestRunDeliversOldestFirst(t *testing.T) {
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			if _, err := f.store.RegisterQueue(context.Background(), "maltrail", queue, ""); err != nil {
				t.Fatal(err)
			}
			push(t, f.store, `1786094062 "2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS x.com "a (malware)" (static)`, "two\r")
			pc := listen(t)
			e := export.New(f.queue, dial(t, pc), nil)
			start(t, e)
			push(t, f.store, "three") // arrives while Run is blocked in Pop
			got := recv(t, pc, 3)
			want := []string{
				`1786094062 "2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS x.com "a (malware)" (static)` + "\n",
				"two\r\n", "three\n",
			}
			if !slices.Equal(got, want) {
				t.Fatalf("datagrams = %q, want %q", got, want)
			}
			waitFor(t, func() bool { return e.Stats().Sent == 3 })
			if fl, _ := f.queue.InFlight(context.Background()); len(fl) != 0 {
				t.Fatalf("acknowledged elements still in flight: %q", fl)
			}
		})
	}
}

// TestRunResendsInFlight simulates a crash between pop and send: the element
// sits in the in-flight list, and a new Run must send it before anything else.
func TestRunResendsInFlight(t *testing.T) {
	f := redisFixture(t)
	ctx := context.Background()
	f.register(t)
	inflight := "analyzer:maltrail:" + queue + ":inflight"
	// The older crash victim is at the right, as BLMOVE ... LEFT leaves it.
	if err := f.raw.LPush(ctx, inflight, "lost-1", "lost-2").Err(); err != nil {
		t.Fatal(err)
	}
	push(t, f.store, "new")
	pc := listen(t)
	e := export.New(f.queue, dial(t, pc), nil)
	start(t, e)
	if got := recv(t, pc, 3); !slices.Equal(got, []string{"lost-1\n", "lost-2\n", "new\n"}) {
		t.Fatalf("datagrams = %q", got)
	}
	waitFor(t, func() bool { return e.Stats().Sent == 3 })
	if st := e.Stats(); st.Recovered != 2 {
		t.Fatalf("Recovered = %d, want 2", st.Recovered)
	}
	if n := f.raw.LLen(ctx, inflight).Val(); n != 0 {
		t.Fatalf("%s has %d elements after delivery", inflight, n)
	}
}

// flaky fails the first n writes, then passes through.
type flaky struct {
	net.Conn
	fail atomic.Int64
}

func (c *flaky) Write(b []byte) (int, error) {
	if c.fail.Add(-1) >= 0 {
		return 0, errors.New("simulated send failure")
	}
	return c.Conn.Write(b)
}

func TestRunRetriesFailedSend(t *testing.T) {
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			f.register(t)
			push(t, f.store, "precious", "next")
			pc := listen(t)
			c := &flaky{Conn: dial(t, pc)}
			c.fail.Store(3)
			e := export.New(f.queue, c, nil)
			start(t, e)
			if got := recv(t, pc, 2); !slices.Equal(got, []string{"precious\n", "next\n"}) {
				t.Fatalf("datagrams = %q", got)
			}
			if st := e.Stats(); st.SendErrors != 3 {
				t.Fatalf("SendErrors = %d, want 3", st.SendErrors)
			}
		})
	}
}

// A destination that fails until shutdown: the element must stay in flight.
func TestRunKeepsElementOnShutdown(t *testing.T) {
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			ctx := context.Background()
			f.register(t)
			push(t, f.store, "precious")
			pc := listen(t)
			c := &flaky{Conn: dial(t, pc)}
			c.fail.Store(1 << 40)
			e := export.New(f.queue, c, nil)
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- e.Run(rctx) }()
			waitFor(t, func() bool { return e.Stats().SendErrors > 0 })
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run = %v", err)
			}
			if fl, _ := f.queue.InFlight(ctx); !slices.Equal(fl, []string{"precious"}) {
				t.Fatalf("in flight after shutdown = %q, want the unsent element", fl)
			}
			// The next run (healthy destination) delivers it.
			start(t, export.New(f.queue, dial(t, pc), nil))
			if got := recv(t, pc, 1); got[0] != "precious\n" {
				t.Fatalf("datagram = %q", got)
			}
		})
	}
}

func TestRunBuriesOversizedElement(t *testing.T) {
	f := redisFixture(t)
	ctx := context.Background()
	f.register(t)
	huge := strings.Repeat("x", 70000)
	push(t, f.store, huge, "after")
	pc := listen(t)
	e := export.New(f.queue, dial(t, pc), nil)
	start(t, e)
	if got := recv(t, pc, 1); got[0] != "after\n" {
		t.Fatalf("datagram = %.40q", got[0])
	}
	waitFor(t, func() bool { return e.Stats().Buried == 1 })
	if got := f.raw.LRange(ctx, "analyzer:maltrail:"+queue+":dead", 0, -1).Val(); !slices.Equal(got, []string{huge}) {
		t.Fatalf("dead-letter list holds %d elements", len(got))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
