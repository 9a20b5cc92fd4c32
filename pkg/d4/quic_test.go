package d4

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/xtrail/xtrail/internal/testenv"
)

// quicServer is a small D4-over-QUIC receiver for the client's tests: it
// reads frames from the session's stream and acknowledges them as the
// acknowledgement format says, with hooks to withhold acks, close a
// connection, reject a frame or send a malformed record.
type quicServer struct {
	addr     string
	frames   chan srvFrame
	accepted chan int
	// ack reports whether to acknowledge frame n of connection conn
	// (default: every frame).
	ack        func(conn, n int) bool
	closeAfter func(conn, n int) bool
	// reject returns a reason to reject frame n, or "".
	reject func(conn, n int) string
	// garbage, if it returns true, makes the server answer frame n with
	// a malformed record.
	garbage func(conn, n int) bool
}

func startQUICServer(t testing.TB, srvTLS *tls.Config, configure func(*quicServer)) *quicServer {
	t.Helper()
	tc := srvTLS.Clone()
	tc.NextProtos = []string{ALPN}
	ln, err := quic.ListenAddr("127.0.0.1:0", tc, &quic.Config{MaxIdleTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := &quicServer{addr: ln.Addr().String(), frames: make(chan srvFrame, 100000), accepted: make(chan int, 100)}
	if configure != nil {
		configure(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			s.accepted <- i
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.CloseWithError(0, "")
				s.handle(ctx, i, conn)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return s
}

func (s *quicServer) handle(ctx context.Context, idx int, conn *quic.Conn) {
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { conn.CloseWithError(0, "") })
	defer stop()
	r := NewReader(str, 0)
	signer := NewSigner([]byte(vecKey))
	for n := 1; ; n++ {
		h, p, err := r.Next()
		if err != nil {
			return
		}
		if s.reject != nil {
			if reason := s.reject(idx, n); reason != "" {
				str.Write(AppendAck(nil, Ack{Kind: AckRejected, Count: uint64(n - 1)}))
				time.Sleep(50 * time.Millisecond) // let the record leave before the close
				conn.CloseWithError(CloseRejected, reason)
				return
			}
		}
		s.frames <- srvFrame{conn: idx, h: h, payload: bytes.Clone(p), aligned: true, hmacOK: signer.Verify(r.Frame())}
		if s.garbage != nil && s.garbage(idx, n) {
			str.Write([]byte("HTTP/1.1 400 Bad"))
			continue
		}
		if s.ack == nil || s.ack(idx, n) {
			if _, err := str.Write(AppendAck(nil, Ack{Kind: AckStored, Count: uint64(n)})); err != nil {
				return
			}
		}
		if s.closeAfter != nil && s.closeAfter(idx, n) {
			time.Sleep(50 * time.Millisecond) // a close discards acks not yet sent
			conn.CloseWithError(0, "test close")
			return
		}
	}
}

func (s *quicServer) next(t testing.TB) srvFrame {
	t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-time.After(20 * time.Second):
		t.Fatal("timed out waiting for a frame")
		return srvFrame{}
	}
}

func newQUICClient(t testing.TB, addr string, cliTLS *tls.Config, configure func(*ClientConfig)) *Client {
	return newTestClient(t, addr, cliTLS, func(cfg *ClientConfig) {
		cfg.Transport = TransportQUIC
		if configure != nil {
			configure(cfg)
		}
	})
}

func TestQUICClientDelivers(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startQUICServer(t, srvTLS, nil)
	c := newQUICClient(t, srv.addr, cliTLS, func(cfg *ClientConfig) { cfg.MaxFrame = 500 })
	var want strings.Builder
	for i := range 3000 {
		line := fmt.Sprintf("quic line %d %s\n", i, strings.Repeat("q", i%100))
		want.WriteString(line)
		c.Send([]byte(line))
	}
	runClient(t, c)
	checkMeta(t, srv.next(t))
	var got strings.Builder
	for got.Len() < want.Len() {
		f := srv.next(t)
		checkData(t, f, 500)
		got.Write(f.payload)
	}
	if got.String() != want.String() {
		t.Fatal("received lines differ from the lines sent")
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	if st := c.Stats(); st.Acked != 3000 || st.Sent != 3000 || st.Reconnects != 0 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Lines leave the spool only when acknowledged: frames the server read but
// never acknowledged are sent again on the next connection, acknowledged
// ones are not.
func TestQUICClientResendsUnacked(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startQUICServer(t, srvTLS, func(s *quicServer) {
		// connection 0 acks the meta header and 2 data frames, reads 2
		// more without acking, then goes away
		s.ack = func(conn, n int) bool { return conn != 0 || n <= 3 }
		s.closeAfter = func(conn, n int) bool { return conn == 0 && n == 5 }
	})
	c := newQUICClient(t, srv.addr, cliTLS, func(cfg *ClientConfig) { cfg.MaxFrame = 11 }) // one line per frame
	for i := range 6 {
		c.Send(fmt.Appendf(nil, "line %04d\n", i))
	}
	runClient(t, c)
	var conn0, conn1 []string
	for len(conn1) < 4 {
		f := srv.next(t)
		if f.h.Type != TypeExtended {
			continue
		}
		if f.conn == 0 {
			conn0 = append(conn0, string(f.payload))
		} else {
			conn1 = append(conn1, string(f.payload))
		}
	}
	if fmt.Sprint(conn0) != fmt.Sprint([]string{"line 0000\n", "line 0001\n", "line 0002\n", "line 0003\n"}) {
		t.Fatalf("connection 0 got %q", conn0)
	}
	// the unacknowledged lines 2 and 3 come again, then the rest
	if fmt.Sprint(conn1) != fmt.Sprint([]string{"line 0002\n", "line 0003\n", "line 0004\n", "line 0005\n"}) {
		t.Fatalf("connection 1 got %q", conn1)
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	if st := c.Stats(); st.Acked != 6 || st.Sent < 8 || st.Reconnects != 1 { // lines 4 and 5 may have gone twice
		t.Fatalf("stats %+v", st)
	}
}

// A rejection keeps the lines in the spool and names the reason.
func TestQUICClientRejected(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startQUICServer(t, srvTLS, func(s *quicServer) {
		s.reject = func(conn, n int) string {
			if n == 2 {
				return "hmac mismatch"
			}
			return ""
		}
	})
	var logs testenv.SyncBuffer
	c := newQUICClient(t, srv.addr, cliTLS, func(cfg *ClientConfig) {
		cfg.Logger = testLogger(&logs)
		cfg.Backoff = time.Hour // one attempt is enough
	})
	c.Send([]byte("refused\n"))
	stop := runClient(t, c)
	waitFor(t, func() bool { return c.Stats().Rejected == 1 })
	stop()
	if st := c.Stats(); st.Pending != 1 || st.Acked != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(logs.String(), "hmac mismatch") {
		t.Fatalf("log does not give the reason:\n%s", logs.String())
	}
}

// A malformed acknowledgement ends the connection; the line is sent again.
func TestQUICClientBadAck(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startQUICServer(t, srvTLS, func(s *quicServer) {
		s.garbage = func(conn, n int) bool { return conn == 0 && n == 2 }
	})
	c := newQUICClient(t, srv.addr, cliTLS, nil)
	c.Send([]byte("again\n"))
	runClient(t, c)
	var conns []int
	for len(conns) < 2 {
		if f := srv.next(t); f.h.Type == TypeExtended && string(f.payload) == "again\n" {
			conns = append(conns, f.conn)
		}
	}
	if conns[0] != 0 || conns[1] != 1 {
		t.Fatalf("line received on connections %v", conns)
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
}

// An idle QUIC client stays connected through keep-alives and heartbeats
// for several times the server's idle timeout.
func TestQUICClientStaysConnected(t *testing.T) {
	srvTLS, cliTLS := testTLS(t)
	srv := startQUICServer(t, srvTLS, nil)
	c := newQUICClient(t, srv.addr, cliTLS, func(cfg *ClientConfig) { cfg.KeepAlive = time.Second })
	runClient(t, c)
	checkMeta(t, srv.next(t))
	time.Sleep(3500 * time.Millisecond) // three keep-alive periods, idle
	c.Send([]byte("after a quiet while\n"))
	for {
		f := srv.next(t)
		if f.conn != 0 {
			t.Fatalf("a new connection (%d): the idle one was lost", f.conn)
		}
		if f.h.Size > 0 {
			break
		}
	}
	waitFor(t, func() bool { return c.Stats().Pending == 0 })
	if st := c.Stats(); st.Reconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkClientQUIC is BenchmarkClientTLS over QUIC, with acks.
func BenchmarkClientQUIC(b *testing.B) {
	srvTLS, cliTLS := testTLS(b)
	srv := startQUICServer(b, srvTLS, nil)
	benchClient(b, srv.addr, cliTLS, TransportQUIC, func(total int) {
		for got := 0; got < total; {
			f := <-srv.frames
			if f.h.Type == TypeExtended {
				got += len(f.payload)
			}
		}
	})
}

func testLogger(w *testenv.SyncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func TestSetUDPBuffers(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	err = SetUDPBuffers(pc, 8<<20)
	if os.Geteuid() == 0 && err != nil { // root may go past rmem_max/wmem_max
		t.Fatalf("as root: %v", err)
	}
	// an impossible size is reported, with what was obtained
	if err := SetUDPBuffers(pc, 1<<40); err == nil || !strings.Contains(err.Error(), "KiB") {
		t.Fatalf("1 TiB buffers: %v", err)
	}
	var logs testenv.SyncBuffer
	warn := BufferWarner(testLogger(&logs))
	warn(errors.New("short"))
	warn(errors.New("short again"))
	if n := strings.Count(logs.String(), "buffers too small"); n != 1 {
		t.Fatalf("the shortfall was logged %d times, want once:\n%s", n, logs.String())
	}
}
