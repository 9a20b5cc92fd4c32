package d4

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/certs"
)

// testTLS returns a server config with a fresh certificate for 127.0.0.1
// and localhost (made by pkg/certs, as `xtrail gencert` makes it) and a
// client config that trusts exactly its CA.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	if err := certs.Generate(dir, []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.LoadPool(filepath.Join(dir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool}
}

// srvFrame is one frame as the test server received it.
type srvFrame struct {
	conn    int
	h       Header
	payload []byte
	aligned bool // the frame began and ended on a TLS Read boundary
	hmacOK  bool
}

// testServer is a minimal D4 receiver built on Reader: it reports every
// frame, can close a connection after some frames, and can hold a new
// connection's TLS handshake until the test releases it.
type testServer struct {
	addr       string
	ln         net.Listener
	frames     chan srvFrame
	accepted   chan int
	closeAfter func(conn, frames int) bool
	gate       func(conn int) <-chan struct{}
	wg         sync.WaitGroup
}

func startServer(t *testing.T, srvTLS *tls.Config, configure func(*testServer)) *testServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), ln: ln, frames: make(chan srvFrame, 100000), accepted: make(chan int, 100)}
	if configure != nil {
		configure(s)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted <- i
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.handle(i, conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *testServer) handle(idx int, conn net.Conn) {
	defer conn.Close()
	if s.gate != nil {
		if g := s.gate(idx); g != nil {
			<-g
		}
	}
	// The raw reader records where each TLS Read ended, then feeds the
	// bytes to the frame Reader through a pipe.
	pr, pw := io.Pipe()
	var mu sync.Mutex
	bounds := map[int64]bool{0: true}
	rawDone := make(chan struct{})
	go func() {
		defer close(rawDone)
		buf := make([]byte, 64<<10)
		var off int64
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				off += int64(n)
				mu.Lock()
				bounds[off] = true
				mu.Unlock()
				if _, werr := pw.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	defer func() {
		conn.Close()
		pr.CloseWithError(io.ErrClosedPipe)
		<-rawDone
	}()

	r := NewReader(pr, 0)
	signer := NewSigner([]byte(vecKey))
	var pos int64
	for n := 1; ; n++ {
		h, p, err := r.Next()
		if err != nil {
			return
		}
		end := pos + HeaderSize + int64(h.Size)
		mu.Lock()
		aligned := bounds[pos] && bounds[end]
		mu.Unlock()
		s.frames <- srvFrame{conn: idx, h: h, payload: bytes.Clone(p), aligned: aligned, hmacOK: signer.Verify(r.Frame())}
		pos = end
		if s.closeAfter != nil && s.closeAfter(idx, n) {
			return
		}
	}
}

// next returns the next received frame or fails the test after a timeout.
func (s *testServer) next(t *testing.T) srvFrame {
	t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a frame")
		return srvFrame{}
	}
}

func newTestClient(t *testing.T, addr string, clientTLS *tls.Config, configure func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{Addr: addr, UUID: vecUUIDValue(t), Key: []byte(vecKey), MetaType: "maltrail", TLS: clientTLS,
		FlushEvery: 5 * time.Millisecond, Backoff: 20 * time.Millisecond}
	if configure != nil {
		configure(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runClient starts c.Run and returns a stop function that cancels it and
// checks that it returned nil in time.
func runClient(t *testing.T, c *Client) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func checkMeta(t *testing.T, f srvFrame) {
	t.Helper()
	if f.h.Type != TypeMeta || string(f.payload) != `{"type":"maltrail"}` || !f.hmacOK || f.h.Version != 1 || f.h.UUID != vecUUIDValue(t) {
		t.Fatalf("first frame of connection %d: type %d payload %q hmac %v", f.conn, f.h.Type, f.payload, f.hmacOK)
	}
}

// checkData checks the invariants of a 254 frame and returns its lines.
func checkData(t *testing.T, f srvFrame, maxFrame int) []string {
	t.Helper()
	if f.h.Type != TypeExtended || !f.hmacOK || f.h.UUID != vecUUIDValue(t) {
		t.Fatalf("data frame: type %d hmac %v", f.h.Type, f.hmacOK)
	}
	p := string(f.payload)
	if !strings.HasSuffix(p, "\n") {
		t.Fatalf("frame does not end with a newline: %q", p)
	}
	lines := strings.SplitAfter(p, "\n")
	lines = lines[:len(lines)-1]
	if len(p) > maxFrame && len(lines) != 1 {
		t.Fatalf("frame of %d bytes > MaxFrame %d holds %d lines", len(p), maxFrame, len(lines))
	}
	if len(p)+HeaderSize <= 16384 && !f.aligned {
		t.Fatalf("frame of %d bytes did not arrive as one TLS read", len(p))
	}
	return lines
}

func TestClientDelivers(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startServer(t, srvTLS, nil)
	const maxFrame = 300
	c := newTestClient(t, srv.addr, cliTLS, func(cfg *ClientConfig) { cfg.MaxFrame = maxFrame })

	var want []string
	send := func(i int) {
		line := fmt.Sprintf("%d \"sensor\" %s\n", i, strings.Repeat("x", i%150))
		if i == 500 {
			line = fmt.Sprintf("%d long %s\n", i, strings.Repeat("y", 1000)) // alone in its frame
		}
		if !c.Send([]byte(line)) {
			t.Fatalf("Send(%d) dropped", i)
		}
		want = append(want, line)
	}
	// Some lines wait in the queue before the first connection, the rest
	// arrive while connected.
	for i := range 300 {
		send(i)
	}
	stop := runClient(t, c)
	for i := 300; i < 2000; i++ {
		send(i)
	}

	checkMeta(t, srv.next(t))
	var got []string
	frames := 0
	for len(got) < len(want) {
		f := srv.next(t)
		if f.conn != 0 {
			t.Fatalf("unexpected connection %d", f.conn)
		}
		got = append(got, checkData(t, f, maxFrame)...)
		frames++
	}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Fatal("received lines differ from the lines sent")
	}
	stop()
	st := c.Stats()
	if st.Queued != 2000 || st.Sent != 2000 || st.Frames != uint64(frames) || st.Dropped != 0 || st.Pending != 0 ||
		st.Reconnects != 0 || st.WriteErrors != 0 {
		t.Fatalf("stats %+v, frames %d", st, frames)
	}
}

// With the default MaxFrame, full frames must still travel as one TLS
// record each (this fails if dynamic record sizing is left on).
func TestClientFullFramesOneRecord(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startServer(t, srvTLS, nil)
	c := newTestClient(t, srv.addr, cliTLS, nil)
	var want bytes.Buffer
	for i := range 3000 {
		line := fmt.Sprintf("%d %s\n", i, strings.Repeat("z", 190))
		want.WriteString(line)
		c.Send([]byte(line))
	}
	runClient(t, c)
	checkMeta(t, srv.next(t))
	var got bytes.Buffer
	biggest := 0
	for got.Len() < want.Len() {
		f := srv.next(t)
		checkData(t, f, DefaultMaxFrame)
		if int(f.h.Size) > DefaultMaxFrame {
			t.Fatalf("frame of %d bytes", f.h.Size)
		}
		biggest = max(biggest, int(f.h.Size))
		got.Write(f.payload)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("received bytes differ")
	}
	if biggest < DefaultMaxFrame-200 {
		t.Fatalf("largest frame %d bytes: batching did not fill frames", biggest)
	}
}

func TestClientReconnect(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	release := make(chan struct{})
	srv := startServer(t, srvTLS, func(s *testServer) {
		// Drop the first connection after the meta header and two data
		// frames; hold the second one's handshake until released.
		s.closeAfter = func(conn, n int) bool { return conn == 0 && n == 3 }
		s.gate = func(conn int) <-chan struct{} {
			if conn == 1 {
				return release
			}
			return nil
		}
	})
	c := newTestClient(t, srv.addr, cliTLS, nil)
	runClient(t, c)

	checkMeta(t, srv.next(t))
	want := map[string]bool{}
	for i := range 2 {
		line := fmt.Sprintf("before %d\n", i)
		want[line] = true
		c.Send([]byte(line))
		f := srv.next(t)
		if f.conn != 0 || string(f.payload) != line {
			t.Fatalf("frame %+v", f)
		}
	}
	// The server closed connection 0; the client notices and redials.
	select {
	case n := <-srv.accepted:
		if n != 0 {
			t.Fatalf("accepted %d", n)
		}
	default:
	}
	select {
	case n := <-srv.accepted:
		if n != 1 {
			t.Fatalf("accepted %d, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client did not reconnect")
	}
	// Lines sent while the new connection is not usable yet are queued.
	for i := range 500 {
		line := fmt.Sprintf("during %d\n", i)
		want[line] = true
		c.Send([]byte(line))
	}
	close(release)
	first := srv.next(t)
	if first.conn != 1 {
		t.Fatalf("frame from connection %d after the reconnect", first.conn)
	}
	checkMeta(t, first)
	got := map[string]bool{}
	for len(got) < 500 {
		f := srv.next(t)
		if f.conn != 1 {
			t.Fatalf("frame on connection %d", f.conn)
		}
		for _, l := range checkData(t, f, DefaultMaxFrame) {
			got[l] = true
		}
	}
	for i := range 2 {
		got[fmt.Sprintf("before %d\n", i)] = true
	}
	for l := range want {
		if !got[l] {
			t.Errorf("line %q never received", l)
		}
	}
	// The server can see a frame before the client's Write has returned.
	waitFor(t, func() bool { return c.Stats().Sent == 502 })
	if st := c.Stats(); st.Reconnects != 1 || st.Sent != 502 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeConn records writes, fails the failAt-th Write, and blocks reads
// until closed, like a D4 server that never answers.
type fakeConn struct {
	mu     sync.Mutex
	writes [][]byte
	calls  int
	failAt int
	closed chan struct{}
	once   sync.Once
}

func newFakeConn(failAt int) *fakeConn { return &fakeConn{failAt: failAt, closed: make(chan struct{})} }

func (f *fakeConn) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.failAt {
		return 0, errors.New("connection reset by peer")
	}
	f.writes = append(f.writes, bytes.Clone(b))
	return len(b), nil
}

func (f *fakeConn) Read([]byte) (int, error) {
	<-f.closed
	return 0, net.ErrClosed
}

func (f *fakeConn) Close() error                     { f.once.Do(func() { close(f.closed) }); return nil }
func (f *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

func (f *fakeConn) frames(t *testing.T) []srvFrame {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []srvFrame
	s := NewSigner([]byte(vecKey))
	for _, w := range f.writes {
		// One Write must hold exactly one whole frame.
		r := NewReader(bytes.NewReader(w), 0)
		h, p, err := r.Next()
		if err != nil {
			t.Fatalf("write is not a frame: %v", err)
		}
		if _, _, err := r.Next(); err != io.EOF {
			t.Fatalf("write holds more than one frame: %v", err)
		}
		out = append(out, srvFrame{h: h, payload: p, aligned: true, hmacOK: s.Verify(w)})
	}
	return out
}

// A batch whose Write fails is resent, whole, after the meta header on the
// next connection: nothing is lost and nothing duplicated.
func TestClientRetriesFailedBatch(t *testing.T) {
	conns := []*fakeConn{newFakeConn(3), newFakeConn(0)}
	c := newTestClient(t, "d4.invalid:4443", &tls.Config{}, func(cfg *ClientConfig) {
		cfg.MaxFrame = 100
		cfg.Backoff = time.Millisecond
	})
	var mu sync.Mutex
	dials := 0
	c.dialFn = func(ctx context.Context) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if dials < len(conns) {
			dials++
			return conns[dials-1], nil
		}
		return nil, errors.New("no more test connections")
	}
	var want []string
	for i := range 10 {
		l := fmt.Sprintf("line %02d %s\n", i, strings.Repeat("-", 20)) // 30 bytes: 3 per frame
		want = append(want, l)
		c.Send([]byte(l))
	}
	stop := runClient(t, c)
	waitFor(t, func() bool { return c.Stats().Sent == 10 })
	stop()

	f0, f1 := conns[0].frames(t), conns[1].frames(t)
	if len(f0) != 2 {
		t.Fatalf("connection 0 got %d frames, want meta + 1", len(f0))
	}
	checkMeta(t, f0[0])
	checkMeta(t, f1[0])
	var got []string
	for _, f := range append(f0[1:], f1[1:]...) {
		got = append(got, checkData(t, f, 100)...)
	}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Fatalf("got %q", got)
	}
	if string(f1[1].payload) != strings.Join(want[3:6], "") {
		t.Fatalf("first frame after reconnect %q, want the failed batch", f1[1].payload)
	}
	if st := c.Stats(); st.Sent != 10 || st.WriteErrors != 1 || st.Reconnects != 1 || st.Frames != 4 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientQueueFull(t *testing.T) {
	// Nothing listens on a port we just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, cliTLS := testTLS(t)
	c := newTestClient(t, addr, cliTLS, func(cfg *ClientConfig) { cfg.QueueSize = 10 })
	stop := runClient(t, c)
	accepted := 0
	for i := range 25 {
		if c.Send(fmt.Appendf(nil, "line %d\n", i)) {
			accepted++
		}
	}
	st := c.Stats()
	if accepted != 10 || st.Queued != 10 || st.Dropped != 15 || st.Pending != 10 {
		t.Fatalf("accepted %d, stats %+v", accepted, st)
	}
	if c.Send(make([]byte, MaxPayload+1)) {
		t.Fatal("oversized line accepted")
	}
	stop()
	if st := c.Stats(); st.Dropped != 16 || st.Sent != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// On cancel, queued lines are flushed over the live connection even though
// FlushEvery has not elapsed.
func TestClientFlushOnCancel(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startServer(t, srvTLS, nil)
	c := newTestClient(t, srv.addr, cliTLS, func(cfg *ClientConfig) { cfg.FlushEvery = time.Hour })
	stop := runClient(t, c)
	checkMeta(t, srv.next(t))
	var want strings.Builder
	for i := range 50 {
		fmt.Fprintf(&want, "line %d\n", i)
		c.Send(fmt.Appendf(nil, "line %d\n", i))
	}
	c.Send([]byte("no newline"))
	want.WriteString("no newline\n")
	c.Send(nil) // ignored
	stop()
	var got strings.Builder
	for got.Len() < want.Len() {
		got.Write(srv.next(t).payload)
	}
	if got.String() != want.String() {
		t.Fatalf("got %q", got.String())
	}
	if st := c.Stats(); st.Sent != 51 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The server certificate is verified: a client that does not trust it
// never sends a byte of data.
func TestClientVerifiesServer(t *testing.T) {
	srvTLS, _ := testTLS(t)
	srv := startServer(t, srvTLS, nil)
	_, otherTLS := testTLS(t) // trusts a different certificate
	c := newTestClient(t, srv.addr, otherTLS, nil)
	c.Send([]byte("secret\n"))
	stop := runClient(t, c)
	waitFor(t, func() bool { return c.Stats().DialErrors > 0 })
	stop()
	if st := c.Stats(); st.DialErrors == 0 || st.Sent != 0 {
		t.Fatalf("stats %+v", st)
	}
	select {
	case f := <-srv.frames:
		t.Fatalf("server received a frame: %+v", f)
	default:
	}
}

// Cancelling while the TLS handshake hangs returns promptly.
func TestClientCancelDuringHandshake(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	hold := make(chan struct{})
	defer close(hold)
	srv := startServer(t, srvTLS, func(s *testServer) {
		s.gate = func(int) <-chan struct{} { return hold }
	})
	c := newTestClient(t, srv.addr, cliTLS, nil)
	stop := runClient(t, c)
	<-srv.accepted
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Run took %v to return", d)
	}
}

func TestClientRunOnce(t *testing.T) {
	_, cliTLS := testTLS(t)
	c := newTestClient(t, "127.0.0.1:1", cliTLS, func(cfg *ClientConfig) { cfg.Backoff = time.Hour })
	stop := runClient(t, c)
	waitFor(t, c.running.Load)
	if err := c.Run(context.Background()); err == nil {
		t.Fatal("a second concurrent Run was allowed")
	}
	stop()
}

func TestNewClientValidates(t *testing.T) {
	good := ClientConfig{Addr: "127.0.0.1:4443", UUID: vecUUIDValue(t), Key: []byte("k"), TLS: &tls.Config{}}
	if _, err := NewClient(good); err != nil {
		t.Fatal(err)
	}
	v1, _ := ParseUUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	for name, mod := range map[string]func(*ClientConfig){
		"no addr":       func(c *ClientConfig) { c.Addr = "" },
		"not v4":        func(c *ClientConfig) { c.UUID = v1 },
		"no key":        func(c *ClientConfig) { c.Key = nil },
		"no tls":        func(c *ClientConfig) { c.TLS = nil },
		"huge frame":    func(c *ClientConfig) { c.MaxFrame = MaxPayload + 1 },
		"negative size": func(c *ClientConfig) { c.QueueSize = -1 },
	} {
		cfg := good
		mod(&cfg)
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The caller's TLS config is not modified.
	tc := &tls.Config{}
	cfg := good
	cfg.TLS = tc
	if _, err := NewClient(cfg); err != nil || tc.DynamicRecordSizingDisabled {
		t.Fatal("NewClient modified the caller's tls.Config")
	}
}

// BenchmarkClientTLS measures lines per second through Send, batching,
// signing and TLS on loopback to a server that reads and verifies frames.
func BenchmarkClientTLS(b *testing.B) {
	srvTLS, cliTLS := testTLS(b)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	line := []byte(`1700000000 "sensor" 10.0.0.1 53211 192.0.2.1 53 UDP DNS bad.example.com "malware" (static)` + "\n")
	var received sync.WaitGroup
	received.Add(1)
	go func() {
		defer received.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := NewReader(conn, 0)
		s := NewSigner([]byte(vecKey))
		total := 0
		for total < b.N*len(line) {
			h, _, err := r.Next()
			if err != nil || !s.Verify(r.Frame()) {
				return
			}
			if h.Type == TypeExtended {
				total += int(h.Size)
			}
		}
	}()
	c, err := NewClient(ClientConfig{Addr: ln.Addr().String(), UUID: vecUUIDValue(b), Key: []byte(vecKey), TLS: cliTLS,
		QueueSize: 1 << 20, FlushEvery: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	b.ResetTimer()
	for range b.N {
		for !c.Send(line) {
			time.Sleep(10 * time.Microsecond) // queue full: let the client catch up
		}
	}
	received.Wait()
	b.StopTimer()
	cancel()
	<-done
}
