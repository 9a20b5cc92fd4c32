package d4

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

func startServer(t testing.TB, srvTLS *tls.Config, configure func(*testServer)) *testServer {
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
func (s *testServer) next(t testing.TB) srvFrame {
	t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a frame")
		return srvFrame{}
	}
}

func newTestClient(t testing.TB, addr string, clientTLS *tls.Config, configure func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{Servers: []string{addr}, UUID: vecUUIDValue(t), Key: []byte(vecKey), MetaType: "maltrail", TLS: clientTLS,
		FlushEvery: 5 * time.Millisecond, Backoff: 20 * time.Millisecond, Spool: SpoolConfig{Dir: t.TempDir()}}
	if configure != nil {
		configure(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runClient starts c.Run and returns a stop function that cancels it and
// checks that it returned nil in time.
func runClient(t testing.TB, c *Client) (stop func()) {
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

func checkMeta(t testing.TB, f srvFrame) {
	t.Helper()
	if f.h.Type != TypeMeta || string(f.payload) != `{"type":"maltrail"}` || !f.hmacOK || f.h.Version != 1 || f.h.UUID != vecUUIDValue(t) {
		t.Fatalf("first frame of connection %d: type %d payload %q hmac %v", f.conn, f.h.Type, f.payload, f.hmacOK)
	}
}

// checkData checks the invariants of a 254 frame and returns its lines.
func checkData(t testing.TB, f srvFrame, maxFrame int) []string {
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
	// Some lines wait in the spool before the first connection, the rest
	// arrive while connected.
	for i := range 300 {
		send(i)
	}
	stop := runClient(t, c)
	for i := 300; i < 2000; i++ {
		send(i)
	}

	checkMeta(t, srv.next(t))
	if !c.Connected() {
		t.Error("Connected() false while the server reads the session")
	}
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
	// delivered = acknowledged by the server's TCP
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	stop()
	if c.Connected() {
		t.Error("Connected() true after Run returned")
	}
	st := c.Stats()
	if st.Spooled != 2000 || st.Sent != 2000 || st.Acked != 2000 || st.Frames != uint64(frames) || st.Dropped != 0 ||
		st.Pending != 0 || st.Reconnects != 0 || st.WriteErrors != 0 || st.Failovers != 0 {
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
	select {
	case n := <-srv.accepted:
		if n != 0 {
			t.Fatalf("accepted %d", n)
		}
	default:
	}
	// The server closed connection 0; the client notices and redials.
	select {
	case n := <-srv.accepted:
		if n != 1 {
			t.Fatalf("accepted %d, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client did not reconnect")
	}
	// Lines sent while the new connection is not usable yet wait.
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
	got := map[string]bool{"before 0\n": true, "before 1\n": true} // delivered on connection 0
	for len(got) < len(want) {
		f := srv.next(t)
		if f.conn != 1 {
			t.Fatalf("frame on connection %d", f.conn)
		}
		for _, l := range checkData(t, f, DefaultMaxFrame) {
			got[l] = true
		}
	}
	for l := range want {
		if !got[l] {
			t.Errorf("line %q never received", l)
		}
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	if st := c.Stats(); st.Reconnects != 1 || st.Acked != 502 {
		t.Fatalf("stats %+v", st)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeLink records frames, fails the failAt-th write, and delivers every
// frame it accepted at once.
type fakeLink struct {
	mu     sync.Mutex
	writes [][]byte
	calls  int
	failAt int
	notify notifier
}

func newFakeLink(failAt int) *fakeLink { return &fakeLink{failAt: failAt, notify: make(notifier, 1)} }

func (f *fakeLink) write(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.failAt {
		return errors.New("connection reset by peer")
	}
	f.writes = append(f.writes, bytes.Clone(b))
	f.notify.signal()
	return nil
}

func (f *fakeLink) done() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return uint64(len(f.writes)), nil
}

func (f *fakeLink) wake() <-chan struct{} { return f.notify }
func (f *fakeLink) remote() string        { return "fake" }
func (f *fakeLink) abort()                {}
func (f *fakeLink) close()                {}

func (f *fakeLink) frames(t *testing.T) []srvFrame {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []srvFrame
	s := NewSigner([]byte(vecKey))
	for _, w := range f.writes {
		// One write must hold exactly one whole frame.
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

// linksInTurn is a dial function that returns the links in turn, then fails.
func linksInTurn[L link](links []L) func(context.Context, string) (link, error) {
	var mu sync.Mutex
	dials := 0
	return func(context.Context, string) (link, error) {
		mu.Lock()
		defer mu.Unlock()
		if dials < len(links) {
			dials++
			return links[dials-1], nil
		}
		return nil, errors.New("no more test connections")
	}
}

// A batch whose write fails is sent again, whole, after the meta header on
// the next connection: nothing is lost and nothing duplicated.
func TestClientRetriesFailedBatch(t *testing.T) {
	links := []*fakeLink{newFakeLink(3), newFakeLink(0)}
	c := newTestClient(t, "d4.invalid:4443", &tls.Config{}, func(cfg *ClientConfig) {
		cfg.MaxFrame = 100
		cfg.Backoff = time.Millisecond
	})
	c.dial = linksInTurn(links)
	var want []string
	for i := range 10 {
		l := fmt.Sprintf("line %02d %s\n", i, strings.Repeat("-", 20)) // 30 bytes: 3 per frame
		want = append(want, l)
		c.Send([]byte(l))
	}
	stop := runClient(t, c)
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	stop()

	f0, f1 := links[0].frames(t), links[1].frames(t)
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
	if st := c.Stats(); st.Sent != 10 || st.Acked != 10 || st.WriteErrors != 1 || st.Reconnects != 1 || st.Frames != 4 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// closedAddr returns a loopback TCP and UDP address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// With no server, a full spool drops the oldest lines and counts them;
// Send never blocks and never refuses a line that fits.
func TestClientSpoolFull(t *testing.T) {
	_, cliTLS := testTLS(t)
	c := newTestClient(t, closedAddr(t), cliTLS, func(cfg *ClientConfig) { cfg.Spool.Max = 16 << 10 })
	stop := runClient(t, c)
	for i := range 5000 {
		if !c.Send(fmt.Appendf(nil, "line %05d\n", i)) {
			t.Fatalf("Send(%d) refused", i)
		}
	}
	if c.Send(make([]byte, MaxPayload+1)) {
		t.Fatal("oversized line accepted")
	}
	stop()
	st := c.Stats()
	if st.DroppedOldest == 0 || st.DroppedOldest+st.Pending != 5000 || st.Spooled != 5000 || st.Dropped != 1 || st.Sent != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Lines spooled while no server was reachable are sent, oldest first, by
// the next client on the same spool (a sensor restart).
func TestClientRestartSendsSpool(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	dir := t.TempDir()
	c, err := NewClient(ClientConfig{Servers: []string{closedAddr(t)}, UUID: vecUUIDValue(t), Key: []byte(vecKey),
		TLS: cliTLS, Spool: SpoolConfig{Dir: dir}})
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := range 100 {
		line := fmt.Sprintf("spooled %d\n", i)
		want.WriteString(line)
		c.Send([]byte(line))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if p := c.Drain(ctx); p != 100 {
		t.Fatalf("Drain with no server: %d pending, want 100", p)
	}
	cancel()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	srv := startServer(t, srvTLS, nil)
	c = newTestClient(t, srv.addr, cliTLS, func(cfg *ClientConfig) { cfg.Spool.Dir = dir })
	if st := c.Stats(); st.Recovered != 100 || st.Pending != 100 {
		t.Fatalf("restarted client stats %+v", st)
	}
	runClient(t, c)
	checkMeta(t, srv.next(t))
	var got strings.Builder
	for got.Len() < want.Len() {
		got.Write(srv.next(t).payload)
	}
	if got.String() != want.String() {
		t.Fatalf("got %q", got.String())
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p := c.Drain(ctx); p != 0 {
		t.Fatalf("Drain with a server: %d pending", p)
	}
}

// The first server entry is down: the client fails over to the next.
func TestClientFailover(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startServer(t, srvTLS, nil)
	c := newTestClient(t, closedAddr(t), cliTLS, func(cfg *ClientConfig) {
		cfg.Servers = append(cfg.Servers, srv.addr)
	})
	c.Send([]byte("failed over\n"))
	runClient(t, c)
	checkMeta(t, srv.next(t))
	if f := srv.next(t); string(f.payload) != "failed over\n" {
		t.Fatalf("frame %q", f.payload)
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	if st := c.Stats(); st.Failovers != 1 || st.DialErrors != 1 {
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
	if st := c.Stats(); st.DialErrors == 0 || st.Sent != 0 || st.Pending != 1 {
		t.Fatalf("stats %+v", st)
	}
	select {
	case f := <-srv.frames:
		t.Fatalf("server received a frame: %+v", f)
	default:
	}
}

// A pinned fingerprint authenticates a server whose CA the client does
// not know; a wrong pin refuses it.
func TestClientPinnedServer(t *testing.T) {
	srvTLS, _ := testTLS(t)
	srv := startServer(t, srvTLS, nil)
	right := CertFingerprint(srvTLS.Certificates[0].Certificate[0])
	for _, tc := range []struct {
		name string
		pin  Fingerprint
		ok   bool
	}{{"right pin", right, true}, {"wrong pin", Fingerprint{1}, false}} {
		t.Run(tc.name, func(t *testing.T) {
			cli := &tls.Config{}
			pins, err := ParseFingerprints("sha256:" + tc.pin.String() + ", " + strings.Repeat("ab", 32))
			if err != nil {
				t.Fatal(err)
			}
			PinServer(cli, pins, false)
			c := newTestClient(t, srv.addr, cli, nil)
			c.Send([]byte("pinned\n"))
			stop := runClient(t, c)
			if tc.ok {
				waitFor(t, func() bool { return c.Stats().Pending == 0 })
			} else {
				waitFor(t, func() bool { return c.Stats().DialErrors > 0 })
			}
			stop()
			if st := c.Stats(); (st.Acked == 1) != tc.ok {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestParseFingerprints(t *testing.T) {
	const hx = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	f, err := ParseFingerprints("SHA256 Fingerprint=" + strings.ToUpper(hx))
	if err != nil || len(f) != 1 || hex.EncodeToString(f[0][:]) != hx {
		t.Fatalf("openssl form: %x %v", f, err)
	}
	if s := f[0].String(); !strings.HasPrefix(s, "01:23:45") || len(s) != 95 {
		t.Fatalf("String %q", s)
	}
	if back, err := ParseFingerprints(f[0].String()); err != nil || back[0] != f[0] {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "abcd", hx + "00", strings.Replace(hx, "0", "g", 1)} {
		if _, err := ParseFingerprints(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
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
	good := ClientConfig{Servers: []string{"127.0.0.1:4443"}, UUID: vecUUIDValue(t), Key: []byte("k"), TLS: &tls.Config{}}
	v1, _ := ParseUUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	for name, mod := range map[string]func(*ClientConfig){
		"no addr":        func(c *ClientConfig) { c.Servers = nil },
		"bad addr":       func(c *ClientConfig) { c.Servers = []string{"127.0.0.1:4443", "noport"} },
		"not v4":         func(c *ClientConfig) { c.UUID = v1 },
		"no key":         func(c *ClientConfig) { c.Key = nil },
		"no tls":         func(c *ClientConfig) { c.TLS = nil },
		"huge frame":     func(c *ClientConfig) { c.MaxFrame = MaxPayload + 1 },
		"negative":       func(c *ClientConfig) { c.FlushEvery = -1 },
		"transport":      func(c *ClientConfig) { c.Transport = "udp" },
		"keepalive":      func(c *ClientConfig) { c.KeepAlive = time.Millisecond },
		"no spool":       func(c *ClientConfig) { c.Spool.Dir = "" },
		"negative spool": func(c *ClientConfig) { c.Spool.Max = -1 },
	} {
		cfg := good
		cfg.Spool.Dir = t.TempDir()
		mod(&cfg)
		if c, err := NewClient(cfg); err == nil {
			c.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	// The caller's TLS config is not modified.
	tc := &tls.Config{}
	cfg := good
	cfg.TLS = tc
	cfg.Transport = TransportQUIC
	cfg.Spool.Dir = t.TempDir()
	c, err := NewClient(cfg)
	if err != nil || tc.DynamicRecordSizingDisabled || tc.NextProtos != nil {
		t.Fatal("NewClient modified the caller's tls.Config")
	}
	c.Close()
}

// An idle client keeps its connection: it sends an empty 254 frame every
// keep-alive period, which resets a server's idle timer.
func TestClientHeartbeat(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startServer(t, srvTLS, nil)
	c := newTestClient(t, srv.addr, cliTLS, func(cfg *ClientConfig) { cfg.KeepAlive = time.Second })
	runClient(t, c)
	checkMeta(t, srv.next(t))
	for range 2 {
		f := srv.next(t)
		if f.conn != 0 || f.h.Type != TypeExtended || f.h.Size != 0 || !f.hmacOK {
			t.Fatalf("heartbeat %+v", f)
		}
	}
	if st := c.Stats(); st.Frames != 0 || st.Sent != 0 {
		t.Fatalf("heartbeats counted as data: %+v", st)
	}
}

// BenchmarkClientTLS measures lines per second through Send (the spool),
// batching, signing and TLS on loopback to a server that reads and
// verifies frames.
func BenchmarkClientTLS(b *testing.B) {
	srvTLS, cliTLS := testTLS(b)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	benchClient(b, ln.Addr().String(), cliTLS, TransportTLS, func(total int) {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		readVerified(conn, total)
	})
}

var benchLine = []byte(`1700000000 "sensor" 10.0.0.1 53211 192.0.2.1 53 UDP DNS bad.example.com "malware" (static)` + "\n")

// readVerified reads and verifies frames until total payload bytes came.
func readVerified(r io.Reader, total int) {
	fr := NewReader(r, 0)
	s := NewSigner([]byte(vecKey))
	for got := 0; got < total; {
		h, _, err := fr.Next()
		if err != nil || !s.Verify(fr.Frame()) {
			return
		}
		if h.Type == TypeExtended {
			got += int(h.Size)
		}
	}
}

func benchClient(b *testing.B, addr string, cliTLS *tls.Config, transport string, serve func(total int)) {
	var received sync.WaitGroup
	received.Add(1)
	go func() {
		defer received.Done()
		serve(b.N * len(benchLine))
	}()
	c := newTestClient(b, addr, cliTLS, func(cfg *ClientConfig) {
		cfg.Transport = transport
		cfg.FlushEvery = time.Millisecond
	})
	stop := runClient(b, c)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchLine)))
	b.ResetTimer()
	for range b.N {
		c.Send(benchLine)
	}
	received.Wait()
	b.StopTimer()
	stop()
}

// TLS has no acknowledgement: a line counts as delivered once the server's
// TCP acknowledged it. A server that crashes therefore loses at most what
// its kernel held unread (its socket receive buffer) plus what its process
// had read and not stored; everything the client had written beyond that is
// sent again. The first connection here stops reading, lets its receive
// buffer fill, and crashes (RST); the lines lost must fit in what it held.
func TestClientTLSServerCrashBound(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10) })
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	got := map[string]bool{}
	held := make(chan int, 1) // bytes unread in the kernel at the crash
	go func() {
		for i := 0; ; i++ {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				r := NewReader(tls.Server(raw, srvTLS), 0)
				for n := 0; ; n++ {
					_, p, err := r.Next()
					if err != nil {
						return
					}
					mu.Lock()
					for _, l := range strings.SplitAfter(string(p), "\n") {
						if l != "" {
							got[l] = true
						}
					}
					mu.Unlock()
					if i == 0 && n == 20 {
						time.Sleep(500 * time.Millisecond) // the client fills our buffer
						tc := raw.(*net.TCPConn)
						rc, _ := tc.SyscallConn()
						var inq int
						rc.Control(func(fd uintptr) { inq, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
						held <- inq
						tc.SetLinger(0) // crash: the kernel drops what it holds and resets
						return
					}
				}
			}()
		}
	}()
	c := newTestClient(t, ln.Addr().String(), cliTLS, nil)
	const n = 50000
	want := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("%06d %s\n", i, strings.Repeat("c", 90))
		c.Send([]byte(want[i]))
	}
	runClient(t, c)
	var inq int
	select {
	case inq = <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the first connection never crashed")
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	mu.Lock()
	defer mu.Unlock()
	lost := 0
	for _, l := range want {
		if !got[l] {
			lost += len(l)
		}
	}
	st := c.Stats()
	t.Logf("server held %d bytes unread at the crash; %d bytes of lines lost; %d lines sent, %d again", inq, lost, st.Sent, st.Sent-n)
	// what the TLS library had read ahead is at most a few records
	if lost > inq+64<<10 {
		t.Fatalf("lost %d bytes of lines, more than the %d the crashed server held", lost, inq)
	}
	if st.Sent <= n || st.Reconnects != 1 {
		t.Fatalf("nothing was sent again after the crash: %+v", st)
	}
}
