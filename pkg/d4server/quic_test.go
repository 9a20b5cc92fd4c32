package d4server

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

// gateStore holds PushLines until the test opens the gate, to show that no
// acknowledgement leaves before the store has the lines.
type gateStore struct {
	Store
	open chan struct{}
}

func (g gateStore) PushLines(ctx context.Context, metaType, uuid string, lines [][]byte) (int, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return g.Store.PushLines(ctx, metaType, uuid, lines)
}

// startQUIC runs a Server with a QUIC listener on loopback until the test
// ends; Serve must return promptly with every session ended.
func startQUIC(t *testing.T, store Store, log *slog.Logger) (*Server, string, *tls.Config) {
	t.Helper()
	pemPath, pool := selfSigned(t)
	reg, err := NewStaticRegistry(ModeRegistration, nil, map[string][]byte{goodUUID: goodKey})
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := New(Config{Store: store, Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.ListenQUIC("127.0.0.1:0", pemPath, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeQUIC(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeQUIC = %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ServeQUIC did not return after cancel")
		}
		if n := srv.Stats().ActiveConns; n != 0 {
			t.Errorf("%d sessions still running after ServeQUIC returned", n)
		}
	})
	return srv, ln.Addr().String(), &tls.Config{RootCAs: pool}
}

func quicSensor(t *testing.T, addr, uuid string, key []byte, cliTLS *tls.Config, log *slog.Logger) *d4.Client {
	t.Helper()
	id, err := d4.ParseUUID(uuid)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d4.NewClient(d4.ClientConfig{Servers: []string{addr}, Transport: d4.TransportQUIC, UUID: id, Key: key,
		TLS: cliTLS, Spool: d4.SpoolConfig{Dir: t.TempDir()}, Backoff: 50 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		c.Close()
	})
	return c
}

// The real client and server over QUIC: every line stored, in order, and
// acknowledged; none acknowledged before the store has it.
func TestQUICStoredThenAcked(t *testing.T) {
	mem := NewMemStore(0)
	ctx := context.Background()
	q, err := mem.RegisterQueue(ctx, MetaTypeMaltrail, "", "quic test")
	if err != nil {
		t.Fatal(err)
	}
	gate := gateStore{Store: mem, open: make(chan struct{})}
	srv, addr, cliTLS := startQUIC(t, gate, nil)
	c := quicSensor(t, addr, goodUUID, goodKey, cliTLS, nil)

	c.Send([]byte("first line\n"))
	time.Sleep(500 * time.Millisecond) // the frame reaches the server, whose store waits
	if st := c.Stats(); st.Sent != 1 || st.Acked != 0 || st.Pending != 1 {
		t.Fatalf("before the store stored it: %+v", st)
	}
	close(gate.open)
	waitUntil(t, func() bool { return c.Stats().Acked == 1 })

	const n = 5000
	for i := range n {
		c.Send(fmt.Appendf(nil, "line %05d %s\n", i, strings.Repeat("x", i%80)))
	}
	waitUntil(t, func() bool { return c.Stats().Pending == 0 })
	// the queue holds the lines in order
	queue := mem.Queue(MetaTypeMaltrail, q)
	b, err := queue.Next(ctx, 0, nil, n+1)
	if err != nil || len(b.Lines) != n+1 || b.Lines[0] != "first line" {
		t.Fatalf("queue: %d lines, first %q, %v", len(b.Lines), b.Lines, err)
	}
	for i, v := range b.Lines[1:] {
		if want := fmt.Sprintf("line %05d %s", i, strings.Repeat("x", i%80)); v != want {
			t.Fatalf("element %d = %q, want %q", i, v, want)
		}
	}
	if st := c.Stats(); st.Acked != n+1 || st.Reconnects != 0 {
		t.Fatalf("client %+v", st)
	}
	if st := srv.Stats(); st.Lines != n+1 || st.Conns != 1 {
		t.Fatalf("server %+v", st)
	}
}

// A rejected sensor learns why, and keeps its lines.
func TestQUICRejection(t *testing.T) {
	srv, addr, cliTLS := startQUIC(t, NewMemStore(0), nil)
	var mu sync.Mutex
	var logs bytes.Buffer
	c := quicSensor(t, addr, strangerU, goodKey, cliTLS, slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)))
	c.Send([]byte("from a stranger\n"))
	waitUntil(t, func() bool { return c.Stats().Rejected > 0 })
	if st := c.Stats(); st.Pending != 1 || st.Acked != 0 {
		t.Fatalf("client %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), ReasonUnregistered) {
		t.Fatalf("the client's log does not give the reason %q:\n%s", ReasonUnregistered, logs.String())
	}
	if srv.Stats().Rejected[ReasonUnregistered] == 0 {
		t.Fatal("the server did not count the rejection")
	}
}
