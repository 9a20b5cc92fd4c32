package d4server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/export"
)

var (
	goodKey  = []byte("private key to change")
	otherKey = []byte("another sensor's key")
)

// selfSigned writes a fresh certificate for 127.0.0.1 (made by pkg/certs)
// and its key into one PEM file, as d4-core's server.pem holds both, and
// returns the file and a pool trusting the certificate's CA.
func selfSigned(t testing.TB) (string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	if err := certs.Generate(dir, []string{"127.0.0.1", "localhost"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	var both []byte
	for _, f := range []string{certs.CertFile, certs.KeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		both = append(both, b...)
	}
	path := filepath.Join(dir, "server.pem")
	if err := os.WriteFile(path, both, 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := certs.LoadPool(filepath.Join(dir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	return path, pool
}

// testServer runs a Server on a real TLS listener until the test ends, and
// checks that Serve returns promptly with every connection closed.
type testServer struct {
	*Server
	addr string
	pool *x509.CertPool
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	pemPath, pool := selfSigned(t)
	ln, err := ListenTLS("127.0.0.1:0", pemPath, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after cancel")
		}
		if n := srv.Stats().ActiveConns; n != 0 {
			t.Errorf("%d connection handlers still running after Serve returned", n)
		}
	})
	return &testServer{Server: srv, addr: ln.Addr().String(), pool: pool}
}

// testWriter sends server logs to the test log (shown on failure or -v).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// sensor is a test client crafting frames with d4.Signer.
type sensor struct {
	t      *testing.T
	conn   *tls.Conn
	uuid   d4.UUID
	signer *d4.Signer
	ts     uint64
}

func dialSensor(t *testing.T, ts *testServer, uuid string, key []byte) *sensor {
	t.Helper()
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: ts.pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	u, err := d4.ParseUUID(uuid)
	if err != nil {
		t.Fatal(err)
	}
	return &sensor{t: t, conn: c, uuid: u, signer: d4.NewSigner(key), ts: uint64(time.Now().Unix())}
}

func (s *sensor) frameBytes(typ uint8, payload string) []byte {
	s.ts++
	return s.signer.AppendFrame(nil, typ, s.uuid, s.ts, []byte(payload))
}

func (s *sensor) send(typ uint8, payload string) {
	s.t.Helper()
	s.write(s.frameBytes(typ, payload))
}

func (s *sensor) write(b []byte) {
	s.t.Helper()
	if _, err := s.conn.Write(b); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// expectClosed waits for the server to close the connection.
func (s *sensor) expectClosed() {
	s.t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := s.conn.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		s.t.Fatalf("connection not closed by the server: n=%d err=%v", n, err)
	}
}

const (
	goodUUID  = "1d940331-9fc9-4381-8fc9-3b624db66025"
	otherUUID = "5b1f3c2a-8d4e-4f60-9a7b-0c1d2e3f4a5b" // registered, key otherKey
	strangerU = "7e57c0de-0000-4000-8000-000000000001" // v4, not registered
	notV4UUID = "7e57c0de-0000-1000-8000-000000000001" // version 1
)

func serverStores(t *testing.T) map[string]func(*testing.T) (Store, func(string, string) export.Queue, func(uuid string) string) {
	return map[string]func(*testing.T) (Store, func(string, string) export.Queue, func(string) string){
		"mem": func(*testing.T) (Store, func(string, string) export.Queue, func(string) string) {
			m := NewMemStore(0)
			errOf := func(u string) string { info, _ := m.Sensor(u); return info.Error }
			return m, func(mt, q string) export.Queue { return m.Queue(mt, q) }, errOf
		},
		"redis": func(t *testing.T) (Store, func(string, string) export.Queue, func(string) string) {
			r, meta, _ := newRedisStore(t)
			errOf := func(u string) string {
				return meta.HGet(context.Background(), "metadata_uuid:"+u, "Error").Val()
			}
			return r, func(mt, q string) export.Queue { return r.Queue(mt, q) }, errOf
		},
	}
}

// queuedStore makes one of serverStores' stores, initialised and with the
// test queue registered.
func queuedStore(t *testing.T, mk func(*testing.T) (Store, func(string, string) export.Queue, func(string) string)) (Store, func(string, string) export.Queue, func(string) string) {
	t.Helper()
	store, queueOf, errOf := mk(t)
	ctx := context.Background()
	noErr(t, store.Init(ctx))
	must(store.RegisterQueue(ctx, "maltrail", testQueue, ""))
	return store, queueOf, errOf
}

func TestServerSessions(t *testing.T) {
	for name, mk := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			store, queueOf, errOf := mk(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := store.Init(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := store.RegisterQueue(ctx, "maltrail", testQueue, ""); err != nil {
				t.Fatal(err)
			}
			srv := startServer(t, Config{
				Store:      store,
				Mode:       ModeRegistration,
				DefaultKey: []byte("default key, unused here"),
				Keys:       map[string][]byte{goodUUID: goodKey, strings.ReplaceAll(otherUUID, "-", ""): otherKey},
			})

			// The good sensor: a meta header in two frames, then lines, one
			// of them split across two frames, an empty line and a CRLF.
			good := dialSensor(t, srv, goodUUID, goodKey)
			good.send(d4.TypeMeta, "{\"type\":\n")
			good.send(d4.TypeMeta, `"maltrail", "tags": ["x"]}`)
			good.send(d4.TypeExtended, "line 0\nline 1\nline ")
			good.send(d4.TypeExtended, "2 (split)\n\nline 3\r\n")
			want := []string{"line 0", "line 1", "line 2 (split)", "line 3\r"}

			type badCase struct {
				name   string
				reason string
				run    func()
				authed string // uuid whose Error must be set; "" when the frame was not authenticated
			}
			cases := []badCase{
				{"bad hmac", ReasonHMAC, func() {
					s := dialSensor(t, srv, goodUUID, []byte("wrong key"))
					s.send(d4.TypeMeta, `{"type":"maltrail"}`)
					s.expectClosed()
				}, ""},
				{"unknown uuid", ReasonUnregistered, func() {
					s := dialSensor(t, srv, strangerU, goodKey)
					s.send(d4.TypeMeta, `{"type":"maltrail"}`)
					s.expectClosed()
				}, ""},
				{"too large", ReasonTooLarge, func() {
					s := dialSensor(t, srv, otherUUID, otherKey)
					f := s.frameBytes(d4.TypeMeta, "")
					binary.LittleEndian.PutUint32(f[58:62], d4.MaxPayload+1) // declared only
					s.write(f)
					s.expectClosed()
				}, ""},
				{"not v4", ReasonNotV4, func() {
					s := dialSensor(t, srv, notV4UUID, goodKey)
					s.send(d4.TypeMeta, `{"type":"maltrail"}`)
					s.expectClosed()
				}, ""},
				{"254 first", ReasonNoMetaHeader, func() {
					s := dialSensor(t, srv, otherUUID, otherKey)
					s.send(d4.TypeExtended, "orphan line\n")
					s.expectClosed()
				}, otherUUID},
				{"254 then 2", ReasonTypeChange, func() {
					s := dialSensor(t, srv, otherUUID, otherKey)
					s.send(d4.TypeMeta, `{"type":"maltrail"}`)
					s.send(d4.TypeExtended, "other line\n")
					s.send(d4.TypeMeta, `{"type":"maltrail"}`)
					s.expectClosed()
				}, otherUUID},
				{"other meta type", ReasonUnsupportedMeta, func() {
					s := dialSensor(t, srv, otherUUID, otherKey)
					s.send(d4.TypeMeta, `{"type":"ja3-jl"}`)
					s.expectClosed()
				}, otherUUID},
				{"pcap type", ReasonUnsupportedType, func() {
					s := dialSensor(t, srv, otherUUID, otherKey)
					s.send(1, "pcap bytes")
					s.expectClosed()
				}, otherUUID},
			}
			for _, c := range cases {
				before := srv.Stats().Rejected[c.reason]
				c.run()
				waitUntil(t, func() bool { return srv.Stats().Rejected[c.reason] == before+1 })
				if c.authed != "" {
					u, _ := d4.ParseUUID(c.authed)
					waitUntil(t, func() bool { return errOf(u.Hex()) == c.reason })
				}
				// The good session is unaffected: it keeps delivering.
				line := fmt.Sprintf("line after %s", c.name)
				good.send(d4.TypeExtended, line+"\n")
				want = append(want, line)
			}
			// Unauthenticated rejections wrote nothing about the uuid.
			gu, _ := d4.ParseUUID(goodUUID)
			if e := errOf(gu.Hex()); e != "" {
				t.Errorf("bad HMAC frame set Error of the good sensor: %q", e)
			}
			su, _ := d4.ParseUUID(strangerU)
			if e := errOf(su.Hex()); e != "" {
				t.Errorf("unregistered uuid got Error %q", e)
			}

			// The only lines queued are the good sensor's and the one
			// authenticated line of the "254 then 2" session, in order.
			q := newPopper(queueOf("maltrail", testQueue))
			var got []string
			for len(got) < len(want)+1 {
				v, err := q.Pop(ctx)
				if err != nil {
					t.Fatalf("after %q: %v", got, err)
				}
				got = append(got, v)
			}
			got = slices.DeleteFunc(got, func(s string) bool { return s == "other line" })
			if !slices.Equal(got, want) {
				t.Fatalf("queue = %q\nwant    %q", got, want)
			}
			st := srv.Stats()
			for _, c := range cases {
				if st.Rejected[c.reason] != 1 {
					t.Errorf("Rejected[%q] = %d, want 1", c.reason, st.Rejected[c.reason])
				}
			}
			// Lines is counted after the store returns, so it may trail the pops.
			waitUntil(t, func() bool { return srv.Stats().Lines == uint64(len(want)+1) })
		})
	}
}

// TestServerConcurrentSensors runs several good sensors at once (for the race
// detector) and checks that every line arrives and per-sensor order holds.
func TestServerConcurrentSensors(t *testing.T) {
	store := NewMemStore(0)
	ctx := context.Background()
	if _, err := store.RegisterQueue(ctx, "maltrail", testQueue, ""); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, Config{Store: store, Mode: ModeSharedSecret, DefaultKey: goodKey})
	const sensors, frames = 4, 50
	errs := make(chan error, sensors)
	for i := range sensors {
		u, _ := d4.NewUUIDv4()
		s := dialSensor(t, srv, u.String(), goodKey)
		go func() {
			var buf []byte
			now := uint64(time.Now().Unix())
			buf = s.signer.AppendFrame(buf, d4.TypeMeta, s.uuid, now, []byte(`{"type":"maltrail"}`))
			for f := range frames {
				buf = s.signer.AppendFrame(buf, d4.TypeExtended, s.uuid, now, fmt.Appendf(nil, "s%d %03d\n", i, f))
			}
			_, err := s.conn.Write(buf)
			errs <- err
		}()
	}
	for range sensors {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	q := newPopper(store.Queue("maltrail", testQueue))
	last := map[string]string{}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range sensors * frames {
		v, err := q.Pop(pctx)
		if err != nil {
			t.Fatal(err)
		}
		id, n, _ := strings.Cut(v, " ")
		if n <= last[id] {
			t.Fatalf("sensor %s: %s after %s", id, n, last[id])
		}
		last[id] = n
	}
}

func TestServerIdleTimeout(t *testing.T) {
	srv := startServer(t, Config{Store: NewMemStore(0), Mode: ModeSharedSecret, DefaultKey: goodKey,
		IdleTimeout: 200 * time.Millisecond})
	u, _ := d4.NewUUIDv4()
	s := dialSensor(t, srv, u.String(), goodKey)
	f := s.frameBytes(d4.TypeMeta, `{"type":"maltrail"}`)
	s.write(f[:30]) // half a header, then silence
	s.expectClosed()
	waitUntil(t, func() bool { return srv.Stats().Rejected[ReasonIdle] == 1 })
}

func TestServerShutdownClosesSessions(t *testing.T) {
	store := NewMemStore(0)
	pemPath, pool := selfSigned(t)
	ln, err := ListenTLS("127.0.0.1:0", pemPath, pemPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: store, Mode: ModeSharedSecret, DefaultKey: goodKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	ts := &testServer{Server: srv, addr: ln.Addr().String(), pool: pool}
	u, _ := d4.NewUUIDv4()
	s := dialSensor(t, ts, u.String(), goodKey)
	s.send(d4.TypeMeta, `{"type":"maltrail"}`)
	waitUntil(t, func() bool { return srv.Stats().Frames == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if n := srv.Stats().ActiveConns; n != 0 {
		t.Fatalf("ActiveConns = %d after Serve returned", n)
	}
	s.expectClosed()
}

func TestNewConfig(t *testing.T) {
	m := NewMemStore(0)
	for _, c := range []Config{
		{},
		{Store: m, Mode: ModeRegistration},
		{Store: m, Mode: ModeSharedSecret},
		{Store: m, Mode: "open"},
		{Store: m, Mode: ModeRegistration, Keys: map[string][]byte{"nope": goodKey}},
		{Store: m, Mode: ModeRegistration, Keys: map[string][]byte{goodUUID: nil}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted a bad config", c)
		}
	}
}

func TestLoadKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	content := "# sensors\n\n" +
		goodUUID + " private key to change\n" +
		"  5B1F3C2A8D4E4F609A7B0C1D2E3F4A5B\tk#1  \r\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"1d9403319fc943818fc93b624db66025": "private key to change",
		"5b1f3c2a8d4e4f609a7b0c1d2e3f4a5b": "k#1",
	}
	if len(keys) != len(want) {
		t.Fatalf("keys = %q", keys)
	}
	for u, k := range want {
		if string(keys[u]) != k {
			t.Errorf("key of %s = %q, want %q", u, keys[u], k)
		}
	}
	for _, bad := range []string{
		goodUUID + "\n",    // no key
		notV4UUID + " k\n", // not v4
		"zz k\n",           // not a uuid
		goodUUID + " a\n" + strings.ToUpper(goodUUID) + " b\n", // duplicate
	} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeys(path); err == nil {
			t.Errorf("LoadKeys accepted %q", bad)
		}
	}
}

func TestLineSplitter(t *testing.T) {
	var sp lineSplitter
	var got []string
	feed := func(p string) {
		for _, l := range sp.feed([]byte(p)) {
			got = append(got, string(l))
		}
	}
	feed("a\nb")
	feed("c\n\n\nd\r\n")
	feed("e")
	feed("")
	feed("f\n")
	long := strings.Repeat("x", maxForcedLine)
	feed(long + "yz") // forced split after maxForcedLine bytes
	feed("\n")
	if want := []string{"a", "bc", "d\r", "ef", long, "yz"}; !slices.Equal(got, want) {
		t.Fatalf("lines = %.20q, want %.20q", got, want)
	}
	if len(sp.buf)-sp.done != 0 {
		t.Fatalf("%d bytes left over", len(sp.buf)-sp.done)
	}
}

func TestParseMetaHeader(t *testing.T) {
	for in, want := range map[string]struct {
		name           string
		complete, fail bool
	}{
		`{"type":`:                {},
		`{"type":"maltrail"}`:     {name: "maltrail", complete: true},
		`{"type":"x","tags":[1]}`: {name: "x", complete: true},
		`{"encoding":"utf-8"}`:    {complete: true, fail: true},
		`{"type":3}`:              {complete: true, fail: true},
		`["type"]`:                {complete: true, fail: true},
		`null`:                    {complete: true, fail: true},
	} {
		name, complete, err := parseMetaHeader([]byte(in))
		if name != want.name || complete != want.complete || (err != nil) != want.fail {
			t.Errorf("parseMetaHeader(%q) = %q, %v, %v", in, name, complete, err)
		}
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSessionsCounted: Stats.Sessions counts the authenticated sessions
// open now (the sensors connected); a connection that proved no key yet is
// only in ActiveConns.
func TestSessionsCounted(t *testing.T) {
	srv := startServer(t, Config{Store: NewMemStore(0), Mode: ModeSharedSecret, DefaultKey: goodKey})
	a := dialSensor(t, srv, goodUUID, goodKey)
	a.send(d4.TypeMeta, `{"type":"maltrail"}`)
	b := dialSensor(t, srv, otherUUID, goodKey)
	b.send(d4.TypeMeta, `{"type":"maltrail"}`)
	if _, err := dialFrom(t, srv, ""); err != nil { // no frame: not authenticated
		t.Fatal(err)
	}
	waitUntil(t, func() bool { st := srv.Stats(); return st.Sessions == 2 && st.ActiveConns == 3 })
	_ = a.conn.Close()
	waitUntil(t, func() bool { st := srv.Stats(); return st.Sessions == 1 && st.ActiveConns == 2 })
}
