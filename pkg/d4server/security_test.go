package d4server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

// dialFrom opens a TLS connection to the test server from a chosen loopback
// address (every 127.0.0.0/8 address is local on Linux), so per-source caps
// can be tested without other hosts.
func dialFrom(t *testing.T, ts *testServer, local string) (*tls.Conn, error) {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := tls.DialWithDialer(d, "tcp", ts.addr, &tls.Config{RootCAs: ts.pool, ServerName: "127.0.0.1"})
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

func sensorOn(t *testing.T, c *tls.Conn, uuid string, key []byte) *sensor {
	u, err := d4.ParseUUID(uuid)
	if err != nil {
		t.Fatal(err)
	}
	return &sensor{t: t, conn: c, uuid: u, signer: d4.NewSigner(key), ts: uint64(time.Now().Unix())}
}

// frameAt builds a frame with an explicit timestamp.
func (s *sensor) frameAt(typ uint8, ts uint64, payload string) []byte {
	return s.signer.AppendFrame(nil, typ, s.uuid, ts, []byte(payload))
}

// header is a frame header claiming size bytes, signed over nothing.
func (s *sensor) header(typ uint8, size uint32) []byte {
	f := s.frameBytes(typ, "")
	binary.LittleEndian.PutUint32(f[58:62], size)
	return f
}

// drip writes one byte every interval, n times or until a write fails.
func (s *sensor) drip(n int, every time.Duration) {
	for range n {
		time.Sleep(every)
		if _, err := s.conn.Write([]byte{'x'}); err != nil {
			return
		}
	}
}

// isOpen reports whether the server keeps the connection open for wait.
func (s *sensor) isOpen(wait time.Duration) bool {
	_ = s.conn.SetReadDeadline(time.Now().Add(wait))
	_, err := s.conn.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errRegistry fails every lookup, as a Redis outage would.
type errRegistry struct{}

func (errRegistry) SensorKey(context.Context, string) (Verdict, []byte, error) {
	return 0, nil, errors.New("registry down")
}
func (errRegistry) PeerAllowed(context.Context, netip.Addr) (bool, error) { return true, nil }

// TestRejections exercises each rejection of the security checks on a real
// TLS server, one server per case so every limit can be set low: the reason
// is counted exactly once, and the connection is closed.
func TestRejections(t *testing.T) {
	keys := map[string][]byte{goodUUID: goodKey, otherUUID: otherKey}
	meta := `{"type":"maltrail"}`
	cases := []struct {
		name   string
		reason string
		cfg    func(*Config)
		run    func(t *testing.T, ts *testServer)
	}{
		{"timestamp too old", ReasonTimestamp, nil, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.write(s.frameAt(d4.TypeMeta, uint64(time.Now().Add(-10*time.Minute).Unix()), meta))
			s.expectClosed()
		}},
		{"timestamp in the future", ReasonTimestamp, nil, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.write(s.frameAt(d4.TypeMeta, uint64(time.Now().Add(10*time.Minute).Unix()), meta))
			s.expectClosed()
		}},
		{"timestamp overflow", ReasonTimestamp, nil, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.write(s.frameAt(d4.TypeMeta, 1<<63+5, meta))
			s.expectClosed()
		}},
		{"1 GB size field", ReasonTooLarge, nil, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.write(s.header(d4.TypeMeta, 1<<30))
			s.expectClosed()
		}},
		{"unauthenticated budget", ReasonUnauthBudget, func(c *Config) { c.MaxUnauthBytes = 1000 }, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.write(s.header(d4.TypeMeta, 1001))
			s.expectClosed()
			// A small first frame still fits.
			ok := dialSensor(t, ts, goodUUID, goodKey)
			ok.send(d4.TypeMeta, meta)
			if !ok.isOpen(200 * time.Millisecond) {
				t.Error("a first frame within the budget was refused")
			}
		}},
		// the drips come 20 times as often as the idle timeout, so a loaded
		// machine's late wakeups do not turn the case into an idle timeout
		{"frame deadline", ReasonFrameTimeout, func(c *Config) { c.IdleTimeout, c.FrameTimeout = 2*time.Second, 3*time.Second }, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.write(s.header(d4.TypeMeta, 100))
			s.drip(50, 100*time.Millisecond) // beats the idle timeout, not the deadline
			s.expectClosed()
		}},
		{"frame deadline of an authenticated session", ReasonFrameTimeout, func(c *Config) { c.IdleTimeout, c.FrameTimeout = 2*time.Second, 3*time.Second }, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.send(d4.TypeMeta, meta)
			time.Sleep(2500 * time.Millisecond) // silent between frames, past the idle timeout: allowed
			s.write(s.header(d4.TypeExtended, 100))
			s.drip(50, 100*time.Millisecond)
			s.expectClosed()
		}},
		{"idle before the first frame", ReasonIdle, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond }, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.write(s.frameBytes(d4.TypeMeta, meta)[:10])
			s.expectClosed()
		}},
		{"connection limit", ReasonConnLimit, func(c *Config) { c.MaxConns = 2 }, func(t *testing.T, ts *testServer) {
			for range 2 {
				c, err := dialFrom(t, ts, "")
				if err != nil {
					t.Fatal(err)
				}
				sensorOn(t, c, goodUUID, goodKey).send(d4.TypeMeta, meta)
			}
			if c, err := dialFrom(t, ts, ""); err == nil {
				sensorOn(t, c, goodUUID, goodKey).expectClosed()
			}
		}},
		{"per-source limit", ReasonSourceLimit, func(c *Config) { c.MaxConnsPerSource = 1 }, func(t *testing.T, ts *testServer) {
			c, err := dialFrom(t, ts, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			first := sensorOn(t, c, goodUUID, goodKey)
			first.send(d4.TypeMeta, meta)
			if c, err := dialFrom(t, ts, "127.0.0.1"); err == nil {
				sensorOn(t, c, goodUUID, goodKey).expectClosed()
			}
			// Another source is still welcome.
			c2, err := dialFrom(t, ts, "127.0.0.2")
			if err != nil {
				t.Fatal(err)
			}
			other := sensorOn(t, c2, otherUUID, otherKey)
			other.send(d4.TypeMeta, meta)
			if !other.isOpen(200*time.Millisecond) || !first.isOpen(10*time.Millisecond) {
				t.Error("a connection within the limits was closed")
			}
		}},
		{"oldest session of a sensor evicted", ReasonEvicted, func(c *Config) { c.MaxConnsPerSensor = 1 }, func(t *testing.T, ts *testServer) {
			old := dialSensor(t, ts, goodUUID, goodKey)
			old.send(d4.TypeMeta, meta)
			waitUntil(t, func() bool { return ts.Stats().Frames == 1 })
			newer := dialSensor(t, ts, goodUUID, goodKey)
			newer.send(d4.TypeMeta, meta)
			old.expectClosed()
			if !newer.isOpen(200 * time.Millisecond) {
				t.Error("the newer session was closed")
			}
		}},
		{"registry unavailable", ReasonUnavailable, func(c *Config) { c.Registry = errRegistry{} }, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.send(d4.TypeMeta, meta)
			s.expectClosed()
		}},
		{"uuid change", ReasonUUIDChange, nil, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.send(d4.TypeMeta, meta)
			other := sensorOn(t, s.conn, otherUUID, otherKey)
			other.send(d4.TypeMeta, meta)
			s.expectClosed()
		}},
		{"254 before the meta header is complete", ReasonIncompleteMeta, nil, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.send(d4.TypeMeta, `{"type":`)
			s.send(d4.TypeExtended, "line\n")
			s.expectClosed()
		}},
		{"meta header not an object", ReasonBadMetaHeader, nil, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.send(d4.TypeMeta, `["maltrail"]`)
			s.expectClosed()
		}},
		{"meta header too long", ReasonMetaHeaderTooLong, nil, func(t *testing.T, ts *testServer) {
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.send(d4.TypeMeta, `{"type":"`+strings.Repeat("x", maxMetaHeader))
			s.expectClosed()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Store: NewMemStore(0), Mode: ModeRegistration, Keys: keys}
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			ts := startServer(t, cfg)
			c.run(t, ts)
			waitUntil(t, func() bool { return ts.Stats().Rejected[c.reason] >= 1 })
			for r, n := range ts.Stats().Rejected {
				if want := uint64(0); r == c.reason {
					if n != 1 {
						t.Errorf("Rejected[%q] = %d, want 1", r, n)
					}
				} else if n != want {
					t.Errorf("Rejected[%q] = %d, want 0", r, n)
				}
			}
		})
	}
}

// TestBlacklists: d4-core's blacklist_uuid, blacklist_ip_by_uuid and
// blacklist_ip (set in its web UI) refuse a sensor and an address.
func TestBlacklists(t *testing.T) {
	r, meta, _ := newRedisStore(t)
	ctx := context.Background()
	noErr(t, r.AddSensor(ctx, goodUUID, string(goodKey), ""))
	noErr(t, r.AddSensor(ctx, otherUUID, string(otherKey), ""))
	gu, _ := sensorUUID(goodUUID)
	noErr(t, meta.SAdd(ctx, "blacklist_uuid", gu).Err())
	noErr(t, meta.SAdd(ctx, "blacklist_ip", "127.0.0.9").Err())
	reg := must(r.Registry(ModeRegistration, nil))
	ts := startServer(t, Config{Store: r, Registry: reg})

	s := dialSensor(t, ts, goodUUID, goodKey)
	s.send(d4.TypeMeta, `{"type":"maltrail"}`)
	s.expectClosed()
	if c, err := dialFrom(t, ts, "127.0.0.9"); err == nil {
		sensorOn(t, c, otherUUID, otherKey).expectClosed()
	}
	waitUntil(t, func() bool { return ts.Stats().Rejected[ReasonBlacklisted] == 2 })
	ok := dialSensor(t, ts, otherUUID, otherKey)
	ok.send(d4.TypeMeta, `{"type":"maltrail"}`)
	if !ok.isOpen(200 * time.Millisecond) {
		t.Fatal("a sensor neither blacklisted nor from a blacklisted address was refused")
	}
}

// TestSensorRateLimit: frames beyond a sensor's rate wait, and all their
// lines arrive.
func TestSensorRateLimit(t *testing.T) {
	store := NewMemStore(0)
	ctx := context.Background()
	must(store.RegisterQueue(ctx, "maltrail", testQueue, ""))
	ts := startServer(t, Config{Store: store, Mode: ModeSharedSecret, DefaultKey: goodKey,
		MaxPayload: 1000, SensorRate: 2000})
	s := dialSensor(t, ts, goodUUID, goodKey)
	s.send(d4.TypeMeta, `{"type":"maltrail"}`)
	line := strings.Repeat("x", 899) + "\n"
	start := time.Now()
	for range 5 {
		s.send(d4.TypeExtended, line)
	}
	q := newPopper(store.Queue("maltrail", testQueue))
	for range 5 {
		if _, err := q.Pop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// 4500 bytes at 2000 B/s after a 2000-byte burst: at least a second.
	if el := time.Since(start); el < time.Second {
		t.Fatalf("5 frames of 900 B took %s at 2000 B/s", el)
	}
	if n := ts.Stats().Throttled; n == 0 {
		t.Fatal("Throttled = 0")
	}
}

// TestSensorRateAcrossServers: on a shared Redis the sensor's rate holds
// for all servers together: a sensor with a session on each of two servers
// sends at -sensor-rate in total, not twice it.
func TestSensorRateAcrossServers(t *testing.T) {
	store, queueOf, _ := queuedStore(t, serverStores(t)["redis"])
	cfg := Config{Store: store, Mode: ModeSharedSecret, DefaultKey: goodKey, MaxPayload: 1000, SensorRate: 2000}
	servers := []*testServer{startServer(t, cfg), startServer(t, cfg)}
	start := time.Now()
	var wg sync.WaitGroup
	for i, srv := range servers {
		s := dialSensor(t, srv, goodUUID, goodKey)
		// each session its own lines: an identical frame would be
		// stored once
		line := strings.Repeat(strconv.Itoa(i), 899) + "\n"
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.send(d4.TypeMeta, `{"type":"maltrail"}`)
			for range 5 {
				s.send(d4.TypeExtended, line)
			}
		}()
	}
	wg.Wait()
	q := newPopper(queueOf("maltrail", testQueue))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 10 {
		if _, err := q.Pop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// 9000 bytes at 2000 B/s after a 2000-byte burst: 3.5 s; each server
	// on its own would let its 4500 bytes through in 1.25 s.
	if el := time.Since(start); el < 3*time.Second {
		t.Fatalf("10 frames of 900 B over two servers took %s at 2000 B/s", el)
	}
	for i, srv := range servers {
		if srv.Stats().Throttled == 0 {
			t.Errorf("server %d throttled nothing", i)
		}
	}
}

// TestRejectionLogsRateLimited: a flood of the same rejection logs one line
// per interval, not one per connection.
func TestRejectionLogsRateLimited(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	ts := startServer(t, Config{Store: NewMemStore(0), Mode: ModeSharedSecret, DefaultKey: goodKey, Logger: logger})
	for range 5 {
		s := dialSensor(t, ts, goodUUID, []byte("wrong"))
		s.send(d4.TypeMeta, `{"type":"maltrail"}`)
		s.expectClosed()
	}
	waitUntil(t, func() bool { return ts.Stats().Rejected[ReasonHMAC] == 5 })
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "reason=\"hmac mismatch\""); n != 1 {
		t.Fatalf("%d log lines for 5 rejections, want 1:\n%s", n, logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestSlotStealing: a peer that knows a sensor's uuid but not its key
// neither disturbs the sensor's connection nor counts toward it, even with
// the sensor limited to one session: its forged frame is refused, its
// never-finished frames are cut by the deadline, and the sensor keeps
// delivering on its connection throughout.
func TestSlotStealing(t *testing.T) {
	for name, mk := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			store, queueOf, errOf := queuedStore(t, mk)
			ctx := context.Background()
			cfg := Config{Store: store, Mode: ModeRegistration, Keys: map[string][]byte{goodUUID: goodKey},
				MaxConnsPerSensor: 1, IdleTimeout: 300 * time.Millisecond, FrameTimeout: 600 * time.Millisecond}
			if rs, ok := store.(*RedisStore); ok {
				noErr(t, rs.AddSensor(ctx, goodUUID, string(goodKey), ""))
				cfg.Registry = must(rs.Registry(ModeRegistration, nil))
			}
			ts := startServer(t, cfg)
			real := dialSensor(t, ts, goodUUID, goodKey)
			real.send(d4.TypeMeta, `{"type":"maltrail"}`)
			real.send(d4.TypeExtended, "before\n")
			want := []string{"before"}

			var thieves sync.WaitGroup
			for i := range 8 {
				thieves.Add(1)
				go func() {
					defer thieves.Done()
					c, err := dialFrom(t, ts, "")
					if err != nil {
						return
					}
					thief := sensorOn(t, c, goodUUID, []byte("guessed key"))
					if i%2 == 0 {
						// A whole forged frame: refused at the HMAC.
						_, _ = c.Write(thief.frameBytes(d4.TypeMeta, `{"type":"maltrail"}`))
					} else {
						// A header that holds the slot open, then silence.
						_, _ = c.Write(thief.header(d4.TypeMeta, 500_000))
					}
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, _ = c.Read(make([]byte, 1))
				}()
			}
			for i := range 10 {
				time.Sleep(100 * time.Millisecond)
				l := fmt.Sprintf("during %d", i)
				real.send(d4.TypeExtended, l+"\n")
				want = append(want, l)
			}
			thieves.Wait()
			if !real.isOpen(50 * time.Millisecond) {
				t.Fatal("the real sensor's connection was closed")
			}
			real.send(d4.TypeExtended, "after\n")
			want = append(want, "after")
			q := newPopper(queueOf("maltrail", testQueue))
			for _, w := range want {
				if v := must(q.Pop(ctx)); v != w {
					t.Fatalf("queue gave %q, want %q", v, w)
				}
			}
			st := ts.Stats()
			if st.Rejected[ReasonHMAC] != 4 || st.Rejected[ReasonEvicted] != 0 {
				t.Fatalf("rejections %v: want 4 HMAC mismatches and no eviction", st.Rejected)
			}
			if st.Rejected[ReasonFrameTimeout]+st.Rejected[ReasonIdle] != 4 {
				t.Fatalf("rejections %v: want the 4 stalled frames cut by a timeout", st.Rejected)
			}
			gu, _ := sensorUUID(goodUUID)
			if e := errOf(gu); e != "" {
				t.Fatalf("the thieves wrote the sensor's Error: %q", e)
			}
			if m, ok := store.(*MemStore); ok && m.Active(gu) != 1 {
				t.Fatalf("sensor has %d active sessions, want 1", m.Active(gu))
			}
		})
	}
}

// TestReplayRefused: a capture of a valid session's bytes, sent again on a
// new connection, is refused as a replay (the connection closed, the
// rejection counted) and stores nothing; sent to another server on the same
// Redis (its own connection to it), the same. The same data frame twice
// within one session is stored twice. The sensor's own resend of the frame
// (restamped: a fresh timestamp and HMAC, the same payload) is handled as
// already stored on either server, its session goes on, and nothing is
// stored twice.
func TestReplayRefused(t *testing.T) {
	for name, mk := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			store, queueOf, _ := queuedStore(t, mk)
			storeB := store
			if _, ok := store.(*RedisStore); ok {
				// The other server has its own connection to the same Redis.
				addr := store.(*RedisStore).meta.single.Options().Addr
				rb, err := NewRedisStore("redis://"+addr+"/0", DefaultAnalyzerDB)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = rb.Close() })
				storeB = rb
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			a := startServer(t, Config{Store: store, Mode: ModeSharedSecret, DefaultKey: goodKey})
			b := startServer(t, Config{Store: storeB, Mode: ModeSharedSecret, DefaultKey: goodKey})

			s := dialSensor(t, a, goodUUID, goodKey)
			data := s.frameBytes(d4.TypeExtended, "captured line\n")
			capture := append(s.frameBytes(d4.TypeMeta, `{"type":"maltrail"}`), data...)
			s.write(capture)
			s.write(data) // the same frame again in its own session: stored again
			q := newPopper(queueOf("maltrail", testQueue))
			for range 2 {
				if v := must(q.Pop(ctx)); v != "captured line" {
					t.Fatalf("queue gave %q", v)
				}
			}
			for i, srv := range []*testServer{a, b} {
				c, err := dialFrom(t, srv, "")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Write(capture); err != nil {
					t.Fatal(err)
				}
				sensorOn(t, c, goodUUID, goodKey).expectClosed()
				waitUntil(t, func() bool { return srv.Stats().Rejected[ReasonReplay] == 1 })
				if st := srv.Stats(); st.AlreadyStored != 0 {
					t.Fatalf("server %d took the replay for a resend: %+v", i, st)
				}

				// The sensor's restamped resend of the stored frame.
				r := dialSensor(t, srv, goodUUID, goodKey)
				r.send(d4.TypeMeta, `{"type":"maltrail"}`)
				r.write(r.frameAt(d4.TypeExtended, uint64(time.Now().Unix())+uint64(10+i), "captured line\n"))
				waitUntil(t, func() bool { return srv.Stats().AlreadyStored == 1 })
				r.send(d4.TypeExtended, fmt.Sprintf("fresh %d\n", i)) // the session still stores
				if v := must(q.Pop(ctx)); v != fmt.Sprintf("fresh %d", i) {
					t.Fatalf("after the replay and the resend to server %d the queue gave %q, want only the fresh line", i, v)
				}
			}
			waitUntil(t, func() bool { return a.Stats().Lines == 3 && b.Stats().Lines == 1 })
		})
	}
}

// TestUnroutedLines: lines no queue receives are never counted as stored.
// By default the frame is held until a queue is registered, then stored;
// with DropUnrouted they are dropped and counted.
func TestUnroutedLines(t *testing.T) {
	ctx := context.Background()
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprint("drop=", drop), func(t *testing.T) {
			store := NewMemStore(0)
			ts := startServer(t, Config{Store: store, Mode: ModeSharedSecret, DefaultKey: goodKey, DropUnrouted: drop})
			s := dialSensor(t, ts, goodUUID, goodKey)
			s.send(d4.TypeMeta, `{"type":"maltrail"}`)
			s.send(d4.TypeExtended, "nobody listens\n")
			waitUntil(t, func() bool { return ts.Stats().Unrouted == 1 })
			if st := ts.Stats(); st.Lines != 0 {
				t.Fatalf("unrouted lines counted as stored: %+v", st)
			}
			must(store.RegisterQueue(ctx, "maltrail", testQueue, ""))
			s.send(d4.TypeExtended, "now routed\n")
			want := []string{"nobody listens", "now routed"}
			if drop {
				want = want[1:]
				if n := ts.Stats().UnroutedDropped; n != 1 {
					t.Fatalf("UnroutedDropped = %d", n)
				}
			}
			q := newPopper(store.Queue("maltrail", testQueue))
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for _, w := range want {
				if v := must(q.Pop(pctx)); v != w {
					t.Fatalf("queue gave %q, want %q", v, w)
				}
			}
			waitUntil(t, func() bool { return ts.Stats().Lines == uint64(len(want)) })
		})
	}
}
