package export_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

const (
	sensor = "1d9403319fc943818fc93b624db66025"
	queue  = "6b3c5a0e-7d1f-4b8e-9a2c-1f0e3d4c5b6a"
)

type fixture struct {
	store d4server.Store
	queue func(opts ...d4server.QueueOption) export.Queue
	raw   *redis.Client // analyzer db, nil for the MemStore
}

func redisFixture(t *testing.T) fixture { return redisFixtureB(t) }

func redisFixtureB(t testing.TB) fixture {
	addr := redistest.Start(t)
	s, err := d4server.NewRedisStore("redis://"+addr+"/0", d4server.DefaultAnalyzerDB)
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: addr, DB: d4server.DefaultAnalyzerDB})
	t.Cleanup(func() { _ = s.Close(); _ = raw.Close() })
	f := fixture{store: s, raw: raw,
		queue: func(o ...d4server.QueueOption) export.Queue { return s.Queue("maltrail", queue, o...) }}
	f.register(t)
	return f
}

// register registers the exporter's queue, as the server does for a
// `-export` destination.
func (f fixture) register(t testing.TB) {
	t.Helper()
	if _, err := f.store.RegisterQueue(context.Background(), "maltrail", queue, ""); err != nil {
		t.Fatal(err)
	}
}

func memFixture(t *testing.T) fixture {
	s := d4server.NewMemStore(0)
	f := fixture{store: s, queue: func(o ...d4server.QueueOption) export.Queue { return s.Queue("maltrail", queue, o...) }}
	f.register(t)
	return f
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
	bigBuffer(t, pc)
	return pc
}

// bigBuffer gives a receiver a 32 MiB buffer (SO_RCVBUFFORCE, as root), so a
// burst of datagrams is not dropped before the test reads it: UDP loses
// such overflows without any error to the sender.
func bigBuffer(t *testing.T, pc *net.UDPConn) {
	rc, err := pc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	_ = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	})
	if serr != nil {
		testenv.RequireRoot(t)
		t.Fatal(serr)
	}
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
			t.Fatalf("after %d datagrams %.200q: %v", len(got), got, err)
		}
		got = append(got, string(buf[:k]))
	}
	return got
}

// quiet checks that nothing more arrives for d.
func quiet(t *testing.T, pc *net.UDPConn, d time.Duration) {
	t.Helper()
	_ = pc.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 70000)
	if k, _, err := pc.ReadFromUDP(buf); err == nil {
		t.Fatalf("unexpected datagram %q", buf[:k])
	}
}

func dial(t *testing.T, pc *net.UDPConn) *export.UDPSender {
	t.Helper()
	c, err := export.DialUDP(context.Background(), "127.0.0.1", pc.LocalAddr().(*net.UDPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// start runs the exporter until the test ends and checks it returns nil.
func start(t *testing.T, e *export.Exporter) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v on cancel", err)
		}
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return func() { once.Do(stop) }
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

func numbered(prefix string, n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = fmt.Sprintf("%s %05d", prefix, i)
	}
	return l
}

func withNL(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l + "\n"
	}
	return out
}

func TestRunDeliversOldestFirst(t *testing.T) {
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			first := `1786094062 "2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS x.com "a (malware)" (static)`
			push(t, f.store, first, "two\r")
			more := numbered(fmt.Sprint(time.Now().Unix()-5, " line"), 2500) // several batches
			pc := listen(t)
			e := export.New(export.Config{Queue: f.queue(), Target: dial(t, pc)})
			start(t, e)
			push(t, f.store, more...) // arrives while Run waits
			want := withNL(append([]string{first, "two\r"}, more...))
			if got := recv(t, pc, len(want)); !slices.Equal(got, want) {
				t.Fatalf("datagrams differ: first %.80q, want %.80q", got[:3], want[:3])
			}
			waitFor(t, func() bool { return e.Stats().Sent == uint64(len(want)) })
			if st := e.Stats(); st.Lag < 5*time.Second || st.Backlog != 0 {
				t.Fatalf("stats %+v: want a lag from the first line's epoch and no backlog", st)
			}
		})
	}
}

// TestRunResendsInFlight: lines a killed run left in its in-flight list go
// out first on the next run, before the queue's.
func TestRunResendsInFlight(t *testing.T) {
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			ctx := context.Background()
			push(t, f.store, "lost-1", "lost-2", "new")
			q := f.queue()
			if _, err := q.Open(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := q.Next(ctx, 0, nil, 2); err != nil { // moved, never sent: a crash
				t.Fatal(err)
			}
			_ = q.Close(ctx)
			pc := listen(t)
			e := export.New(export.Config{Queue: f.queue(), Target: dial(t, pc)})
			start(t, e)
			if got := recv(t, pc, 3); !slices.Equal(got, []string{"lost-1\n", "lost-2\n", "new\n"}) {
				t.Fatalf("datagrams = %q", got)
			}
			waitFor(t, func() bool { return e.Stats().Sent == 3 })
			if st := e.Stats(); st.Recovered != 2 {
				t.Fatalf("Recovered = %d, want 2", st.Recovered)
			}
		})
	}
}

// flaky fails the first n sends, then passes through.
type flaky struct {
	export.Sender
	fail atomic.Int64
}

func (c *flaky) Send(l []string) (int, int, error) {
	if c.fail.Add(-1) >= 0 {
		return 0, 0, errors.New("simulated send failure")
	}
	return c.Sender.Send(l)
}

func TestRunRetriesFailedSend(t *testing.T) {
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			push(t, f.store, "precious", "next")
			pc := listen(t)
			c := &flaky{Sender: dial(t, pc)}
			c.fail.Store(3)
			e := export.New(export.Config{Queue: f.queue(), Target: c})
			start(t, e)
			if got := recv(t, pc, 2); !slices.Equal(got, []string{"precious\n", "next\n"}) {
				t.Fatalf("datagrams = %q", got)
			}
			if st := e.Stats(); st.Refusals != 3 {
				t.Fatalf("Refusals = %d, want 3", st.Refusals)
			}
		})
	}
}

// A target that fails until shutdown: the lines stay in flight for the
// next run.
func TestRunKeepsLinesOnShutdown(t *testing.T) {
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			push(t, f.store, "precious")
			pc := listen(t)
			c := &flaky{Sender: dial(t, pc)}
			c.fail.Store(1 << 40)
			e := export.New(export.Config{Queue: f.queue(), Target: c})
			stop := start(t, e)
			waitFor(t, func() bool { return e.Stats().Refusals > 0 })
			stop()
			// The next run (healthy target) delivers it.
			start(t, export.New(export.Config{Queue: f.queue(), Target: dial(t, pc)}))
			if got := recv(t, pc, 1); got[0] != "precious\n" {
				t.Fatalf("datagram = %q", got)
			}
		})
	}
}

func TestRunBuriesOversizedLine(t *testing.T) {
	f := redisFixture(t)
	ctx := context.Background()
	huge := strings.Repeat("x", 70000)
	push(t, f.store, "before", huge, "after")
	pc := listen(t)
	e := export.New(export.Config{Queue: f.queue(), Target: dial(t, pc)})
	start(t, e)
	if got := recv(t, pc, 2); !slices.Equal(got, []string{"before\n", "after\n"}) {
		t.Fatalf("datagrams = %.40q", got)
	}
	waitFor(t, func() bool { return e.Stats().Buried == 1 })
	waitFor(t, func() bool {
		got := f.raw.LRange(ctx, "{analyzer:maltrail:"+queue+"}:dead", 0, -1).Val()
		return slices.Equal(got, []string{huge})
	})
}

// TestUDPCollectorDown: the collector's port closes for a while under a
// steady stream of lines. Every refused datagram is pinned on its own line
// through the ICMP error it caused, the exporter backs off, and when the
// port opens again every line arrives exactly once, in order.
func TestUDPCollectorDown(t *testing.T) {
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			pc := listen(t)
			port := pc.LocalAddr().(*net.UDPAddr).Port
			e := export.New(export.Config{Queue: f.queue(), Target: dial(t, pc), Batch: 50})
			start(t, e)
			lines := numbered("event", 3000)
			got := make([]string, 0, len(lines))
			var feed sync.WaitGroup
			feed.Add(1)
			paused := make(chan struct{})
			resume := make(chan struct{})
			go func() {
				defer feed.Done()
				for i := 0; i < len(lines); i += 30 {
					if i == 600 {
						close(paused)
						<-resume
					}
					push(t, f.store, lines[i:min(i+30, len(lines))]...)
					time.Sleep(time.Millisecond)
				}
			}()
			<-paused
			got = append(got, recv(t, pc, 600)...)
			// The collector goes down with nothing unread in its buffer
			// (what a receiver loses from its own buffer, UDP cannot tell),
			// while lines keep coming.
			_ = pc.Close()
			close(resume)
			time.Sleep(1500 * time.Millisecond)
			pc2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pc2.Close() })
			bigBuffer(t, pc2)
			feed.Wait()
			got = append(got, recv(t, pc2, len(lines)-600)...)
			quiet(t, pc2, 300*time.Millisecond)
			if !slices.Equal(got, withNL(lines)) {
				for i := range got {
					if got[i] != lines[i]+"\n" {
						t.Fatalf("datagram %d = %q, want %q", i, got[i], lines[i])
					}
				}
			}
			if st := e.Stats(); st.Refusals == 0 || st.Sent != uint64(len(lines)) {
				t.Fatalf("stats %+v: want refusals and every line sent once", st)
			}
		})
	}
}

// TestTCPTarget: lines go out newline-terminated; when the receiver closes
// the connection, the batch that meets the reset is sent again on a new
// connection, and nothing is lost.
func TestTCPTarget(t *testing.T) {
	f := memFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	received := make(chan string, 10000)
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					received <- sc.Text()
				}
			}()
		}
	}()
	tgt, err := export.Dial(context.Background(), "tcp://"+ln.Addr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tgt.Close() })
	e := export.New(export.Config{Queue: f.queue(), Target: tgt, Batch: 10})
	start(t, e)
	lines := numbered("line", 300)
	seen := map[string]int{}
	collect := func(n int) {
		deadline := time.After(15 * time.Second)
		for len(seen) < n {
			select {
			case l := <-received:
				seen[l]++
			case <-deadline:
				t.Fatalf("got %d distinct lines of %d", len(seen), n)
			}
		}
	}
	push(t, f.store, lines[:100]...)
	collect(100)
	(<-conns).Close() // the receiver drops the connection
	for i := 100; i < len(lines); i += 10 {
		push(t, f.store, lines[i:i+10]...)
		time.Sleep(2 * time.Millisecond)
	}
	collect(len(lines))
	if st := e.Stats(); st.Refusals == 0 {
		t.Fatalf("stats %+v: the reset went unnoticed", st)
	}
}

func TestSyslogTarget(t *testing.T) {
	f := memFixture(t)
	pc := listen(t)
	tgt, err := export.Dial(context.Background(), "syslog://"+pc.LocalAddr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tgt.Close() })
	push(t, f.store, "1786094062 an event")
	start(t, export.New(export.Config{Queue: f.queue(), Target: tgt}))
	got := recv(t, pc, 1)[0]
	if !strings.HasPrefix(got, "<14>") || !strings.HasSuffix(got, " xtrail: 1786094062 an event\n") {
		t.Fatalf("syslog datagram %q", got)
	}
}

// TestSeveralExporters: three exporters share one queue; every line reaches
// the receiver exactly once.
func TestSeveralExporters(t *testing.T) {
	f := redisFixture(t)
	pc := listen(t)
	for i := range 3 {
		e := export.New(export.Config{Queue: f.queue(d4server.Consumer(fmt.Sprint("e", i))), Target: dial(t, pc), Batch: 20})
		start(t, e)
	}
	lines := numbered("shared", 3000)
	for i := 0; i < len(lines); i += 100 {
		push(t, f.store, lines[i:i+100]...)
	}
	got := recv(t, pc, len(lines))
	quiet(t, pc, 300*time.Millisecond)
	slices.Sort(got)
	if !slices.Equal(got, withNL(lines)) {
		t.Fatal("lines lost or duplicated across exporters")
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

// TestOverflowResentAndPaced: the receiver, on this host, has a small
// socket buffer and reads slowly, so unpaced batches overflow it. The
// kernel's drop counter shows it: every line still arrives (at least
// once), the overflows are counted and the exporter paces itself.
func TestOverflowResentAndPaced(t *testing.T) {
	f := memFixture(t)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if err := pc.SetReadBuffer(8 << 10); err != nil { // the kernel's floor is about 2 KiB
		t.Fatal(err)
	}
	const n = 3000
	lines := numbered("overflow", n)
	push(t, f.store, lines...)
	seen := map[string]int{}
	got := make(chan struct{})
	go func() {
		defer close(got)
		buf := make([]byte, 2048)
		for len(seen) < n {
			_ = pc.SetReadDeadline(time.Now().Add(20 * time.Second))
			k, _, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			seen[string(buf[:k])]++
			time.Sleep(20 * time.Microsecond) // a slow collector
		}
	}()
	e := export.New(export.Config{Queue: f.queue(), Target: dial(t, pc)})
	stop := start(t, e)
	select {
	case <-got:
	case <-time.After(60 * time.Second):
	}
	stop()
	<-got
	st := e.Stats()
	missing, dups := 0, 0
	for _, l := range lines {
		switch c := seen[l+"\n"]; {
		case c == 0:
			missing++
		default:
			dups += c - 1
		}
	}
	t.Logf("overflows %d, resent %d, pace %.0f lines/s, duplicates %d", st.Overflows, st.Resent, st.Rate, dups)
	if missing > 0 {
		t.Fatalf("%d of %d lines never arrived", missing, n)
	}
	if st.Overflows == 0 || st.Rate == 0 {
		t.Fatalf("no overflow seen (overflows %d, pace %.0f): the receiver was not overrun, the test proves nothing", st.Overflows, st.Rate)
	}
	if uint64(dups) > st.Resent {
		t.Fatalf("%d duplicates, more than the %d lines sent again", dups, st.Resent)
	}
}
