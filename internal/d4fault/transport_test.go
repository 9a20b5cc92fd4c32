package d4fault

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/xproc"
)

// faultFor is a fault's duration: the figure unless the variable
// env (seconds) shortens or lengthens it.
func faultFor(t *testing.T, env string, def time.Duration) time.Duration {
	if v := os.Getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want seconds", env, v)
		}
		return time.Duration(n) * time.Second
	}
	return def
}

// kill -9 of the server mid-stream, then a restart on the same address:
// nothing is lost, and the sensor delivers again within 30 s.
func TestServerKilledQUIC(t *testing.T) {
	t.Parallel()
	c := newChain(t, "quic")
	c.startServer()
	s := c.startSensor(c.sensorConf())
	const n, every = 600, 20 * time.Millisecond
	done := c.sendAsync(0, n, every)
	time.Sleep(3 * time.Second)
	c.server.Kill()
	time.Sleep(2 * time.Second)
	c.startServer()
	restarted := time.Now()
	// the events sent from now on prove the sensor delivers again
	sentBefore := int(time.Since(restarted.Add(-5*time.Second)) / every)
	for {
		got := c.received()
		fresh := false
		for i := sentBefore + 10; i < n; i++ {
			if got[i] > 0 {
				fresh = true
				break
			}
		}
		if fresh {
			t.Logf("delivering again %v after the restart", time.Since(restarted).Round(time.Millisecond))
			break
		}
		if time.Since(restarted) > 30*time.Second {
			t.Fatal("the sensor was not delivering again 30 s after the server restarted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	done()
	dups := c.waitAll(0, n, 60*time.Second)
	s.Stop(stopWithin)
	st := d4Counters(s)
	if st["pending"] != 0 || st["reconnects"] == 0 || st["acked"] < n {
		t.Fatalf("sensor D4 counters %v", st)
	}
	c.server.Stop(stopWithin)
	srv := c.server.Counters(`msg="D4 server counters"`)
	t.Logf("duplicates %d; sensor resent %d, restamped %d, late %d; restarted server: already stored %d, claims taken over %d",
		dups, st["resent"], st["restamped"], st["resent_late"], srv["already_stored_frames"], srv["claims_taken_over"])
	// The frames the killed server had stored without acknowledging come
	// again byte for byte and are acknowledged, not stored. Only a frame the
	// killed server was storing at the kill (its claim taken over after the
	// lease) or one resent later than ResendWithin can arrive twice, and
	// only from the resent.
	if srv["claims_taken_over"] == 0 && st["resent_late"] == 0 && dups != 0 {
		t.Fatalf("%d duplicates though no claim was taken over and no frame resent late", dups)
	}
	if dups > st["resent"] {
		t.Fatalf("%d duplicates, more than the %d lines resent", dups, st["resent"])
	}
}

// The uplink silently drops everything for 30 s.
func TestLinkDownQUIC(t *testing.T) {
	t.Parallel()
	down := faultFor(t, "XTRAIL_FAULT_LINK_DOWN", 30*time.Second)
	c := newChain(t, "quic")
	c.steadyThrough(down, func() {
		c.cut(true)
		time.Sleep(2 * time.Second) // what was in flight lands
		during := len(c.received())
		time.Sleep(down - 2*time.Second)
		if after := len(c.received()); after != during {
			t.Errorf("%d events crossed the cut link", after-during)
		}
		c.cut(false)
	})
}

// The server's acknowledgements are lost: for 10 s the uplink drops what
// goes to the sensor, not what comes from it. The server stores the frames
// it receives, the sensor's connection times out without their acks, and
// the sensor resends them on its next connection, restamped (a fresh
// timestamp and HMAC: the same bytes would be refused as a replay); the
// server knows their content, acknowledges them as already stored and
// stores nothing twice.
func TestAcksLostQUIC(t *testing.T) {
	t.Parallel()
	c := newChain(t, "quic")
	c.startServer()
	s := c.startSensor(c.sensorConf("D4_KEEPALIVE 2")) // the connection dies 6 s into the fault
	const every = 25 * time.Millisecond
	n := int(16 * time.Second / every)
	done := c.sendAsync(0, n, every)
	time.Sleep(3 * time.Second)
	c.drop(false, true)
	time.Sleep(10 * time.Second)
	c.drop(false, false)
	done()
	dups := c.waitAll(0, n, 60*time.Second)
	s.Stop(stopWithin)
	st := d4Counters(s)
	c.server.Stop(stopWithin)
	srv := c.server.Counters(`msg="D4 server counters"`)
	t.Logf("duplicates %d; sensor resent %d, restamped %d, late %d, reconnects %d; server: already stored %d, claims taken over %d, replays refused %d",
		dups, st["resent"], st["restamped"], st["resent_late"], st["reconnects"], srv["already_stored_frames"], srv["claims_taken_over"], srv["rejected_replayed_frame"])
	if st["pending"] != 0 || st["reconnects"] == 0 || srv["already_stored_frames"] == 0 {
		t.Fatalf("the fault did not bite: no stored frame came again (sensor %v, server %v)", st, srv)
	}
	if st["resent"] == 0 || st["restamped"] != st["resent"] {
		t.Fatalf("the sensor resent %d lines and restamped %d: every resend must be restamped", st["resent"], st["restamped"])
	}
	if dups != 0 || st["resent_late"] != 0 || srv["claims_taken_over"] != 0 || srv["rejected_replayed_frame"] != 0 {
		t.Fatalf("%d duplicates (sensor %v, server %v)", dups, st, srv)
	}
}

// The server is paused (SIGSTOP) for 40 s, then continues.
func TestServerPausedQUIC(t *testing.T) {
	t.Parallel()
	pause := faultFor(t, "XTRAIL_FAULT_PAUSE", 40*time.Second)
	c := newChain(t, "quic")
	c.steadyThrough(pause, func() {
		c.server.Signal(syscall.SIGSTOP)
		time.Sleep(pause)
		c.server.Signal(syscall.SIGCONT)
	})
}

// steadyThrough runs the server and a sensor with 40 events a second,
// applies fault (which lasts d) 3 s in, and checks that every event
// arrives and the sensor's spool ends empty, nothing dropped.
func (c *chain) steadyThrough(d time.Duration, fault func()) {
	c.t.Helper()
	c.startServer()
	s := c.startSensor(c.sensorConf())
	every := 25 * time.Millisecond
	n := int((d + 6*time.Second) / every)
	done := c.sendAsync(0, n, every)
	time.Sleep(3 * time.Second)
	fault()
	done()
	dups := c.waitAll(0, n, 60*time.Second)
	s.Stop(stopWithin)
	st := d4Counters(s)
	if st["pending"] != 0 || st["dropped_oldest"] != 0 {
		c.t.Fatalf("sensor D4 counters %v", st)
	}
	// Nothing died while storing and the fault is shorter than the
	// sensor's ResendWithin: every resent frame's content is known.
	if dups != 0 || st["resent_late"] != 0 {
		c.t.Fatalf("%d duplicates (sensor D4 counters %v)", dups, st)
	}
}

// A sensor stopped with events in its spool (no server yet) sends them
// after its restart, once the server is up.
func TestSensorRestartWithSpoolQUIC(t *testing.T) {
	t.Parallel()
	c := newChain(t, "quic")
	conf := c.sensorConf()
	s := c.startSensor(conf)
	const n = 300
	c.send(0, n, 5*time.Millisecond)
	time.Sleep(time.Second) // the last events reach the spool
	s.Stop(stopWithin)
	if st := d4Counters(s); st["pending"] != n || st["spooled"] != n || st["acked"] != 0 {
		t.Fatalf("first run's D4 counters %v, want %d pending", st, n)
	}
	c.startServer()
	s = c.startSensor(conf)
	if dups := c.waitAll(0, n, 60*time.Second); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	s.Stop(stopWithin)
	if st := d4Counters(s); st["recovered"] != n || st["pending"] != 0 || st["acked"] != n {
		t.Fatalf("second run's D4 counters %v, want %d recovered and acked", st, n)
	}
}

// A full spool drops the oldest events, counts them, and the newest ones
// are delivered once the server is there.
func TestSpoolFullQUIC(t *testing.T) {
	t.Parallel()
	c := newChain(t, "quic")
	conf := c.sensorConf("D4_SPOOL_MAX 65536")
	s := c.startSensor(conf)
	const n = 3000 // about 450 KB of event lines into 64 KiB
	c.send(0, n, 2*time.Millisecond)
	time.Sleep(time.Second)
	s.Stop(stopWithin)
	st := d4Counters(s)
	dropped, pending := int(st["dropped_oldest"]), int(st["pending"])
	if dropped == 0 || dropped+pending != n {
		t.Fatalf("D4 counters %v: want dropped_oldest + pending = %d", st, n)
	}
	if !strings.Contains(s.Output(), "dropped the oldest events") {
		t.Fatal("the drops were not logged")
	}
	c.startServer()
	s = c.startSensor(conf)
	// exactly the newest events arrive, once each
	c.waitAll(n-pending, n, 60*time.Second)
	s.Stop(stopWithin)
	got := c.received()
	for i := range n - pending {
		if got[i] > 0 {
			t.Fatalf("event %d arrived though the %d oldest were dropped", i, dropped)
		}
	}
	for i := n - pending; i < n; i++ {
		if got[i] != 1 {
			t.Fatalf("event %d arrived %d times", i, got[i])
		}
	}
}

// A quiet sensor, one event per two server idle timeouts, stays connected
// and loses nothing, next to the server and 150 ms away from it (each way,
// through a proxy that delays every TCP chunk and UDP datagram: this kernel
// has no netem). Time is compressed: the server closes sessions silent for
// 3 s (instead of d4-core's 30 s) and the sensor's keep-alive is 1 s, so an
// event every 6 s stands for one a minute.
func TestQuietSensor(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"quic", "tls"} {
		for _, delay := range []time.Duration{0, 150 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/%v", transport, delay), func(t *testing.T) {
				t.Parallel()
				c := newChain(t, transport)
				c.startServer("-session-idle-timeout", "3s")
				if delay > 0 {
					host, _, _ := net.SplitHostPort(c.serverAddr)
					_, c.sensorTo = startDelayProxy(t, host, c.serverAddr, delay)
				}
				s := c.startSensor(c.sensorConf("D4_KEEPALIVE 1"))
				const n = 4
				c.send(0, n, 6*time.Second)
				if dups := c.waitAll(0, n, 30*time.Second); dups != 0 {
					t.Fatalf("%d duplicates", dups)
				}
				s.Stop(stopWithin)
				if st := d4Counters(s); st["reconnects"] != 0 || st["pending"] != 0 || st["acked"] != n || st["resent"] != 0 {
					t.Fatalf("sensor D4 counters %v: the quiet sensor lost its connection or events", st)
				}
			})
		}
	}
}

// A replay with the server down spools its events, says how many wait and
// exits; the next replay, with the server up, sends them and its own, and
// exits once all are delivered.
func TestReplaySpools(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"quic", "tls"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			c := newChain(t, transport)
			// D4_REPLAY_TIMEOUT bounds the wait; the log names it
			conf := c.sensorConf("D4_REPLAY_TIMEOUT 7")
			first, second := c.pcap(0, 200), c.pcap(200, 300)
			start := time.Now()
			out := c.replay(conf, first)
			if !strings.Contains(out, "events wait in the spool") || !strings.Contains(out, "lines=200") || !strings.Contains(out, "timeout=7s") {
				t.Fatalf("the first replay did not say that 200 events wait:\n%s", xproc.Tail(out, 20))
			}
			t.Logf("the first replay exited %v after it started", time.Since(start).Round(time.Millisecond))
			c.startServer()
			out = c.replay(conf, second)
			if !strings.Contains(out, "every event delivered") {
				t.Fatalf("the second replay did not deliver everything:\n%s", xproc.Tail(out, 20))
			}
			// exited only once delivered: the lines are stored already
			if dups := c.waitAll(0, 300, 30*time.Second); dups != 0 {
				t.Fatalf("%d duplicates", dups)
			}
			if st := d4Counters(c.lastReplay); st["recovered"] != 200 || st["acked"] != 300 || st["pending"] != 0 {
				t.Fatalf("second replay's D4 counters %v", st)
			}
		})
	}
}
