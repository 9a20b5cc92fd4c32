package faults

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/internal/xproc"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

// startProc starts `xtrail args...`.
func startProc(t testing.TB, name string, args ...string) *xproc.Proc {
	t.Helper()
	return xproc.Start(t, name, xtrailBin, args...)
}

// stopCounters stops p with SIGTERM and returns the counters of its exit
// summary line (marker: the line's message).
func stopCounters(p *xproc.Proc, marker string) map[string]int {
	p.Stop(20 * time.Second)
	return p.Counters(marker)
}

// quicSensor is a D4 client of pkg/d4 over QUIC, with both servers in its
// D4_SERVER list and a spool: lines leave the spool only once a server
// acknowledged them (stored, on a replica), and the client fails over to
// the next server when its connection dies. A feeder hands it numbered
// lines at a steady rate.
type quicSensor struct {
	id     int
	client *d4.Client
	next   int // lines handed over (fed by run only)
}

// seqBase spaces the sensors' sequence numbers apart in the collector's tally.
const seqBase = 1_000_000

// feed hands 10 lines to the client every 100 ms until ctx ends.
func (s *quicSensor) feed(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range 10 {
			if !s.client.Send(fmt.Appendf(nil, "%d fault seq %d\n", time.Now().Unix(), s.id*seqBase+s.next)) {
				return // the test fails on the missing line
			}
			s.next++
		}
	}
}

// captureFrames sends one signed data frame (after the meta header) to a
// server over TLS, as a sensor would, and returns the bytes as sent: the
// capture a replay test sends again.
func captureFrames(t *testing.T, addr string, cfg *tls.Config, u d4.UUID, key string) []byte {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sg := d4.NewSigner([]byte(key))
	now := uint64(time.Now().Unix())
	b := sg.AppendFrame(nil, d4.TypeMeta, u, now, []byte(`{"type":"maltrail"}`))
	b = sg.AppendFrame(b, d4.TypeExtended, u, now, fmt.Appendf(nil, "%d captured frame\n", now))
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // stored before the connection ends
	return b
}

var (
	listening  = regexp.MustCompile(`msg="D4 server listening" addr=(\S+)`)
	exportedTo = regexp.MustCompile(`msg=exporting .*consumer=(\S+)`)
)

// TestClusterChain: a real 3-primary, 3-replica Redis Cluster, two `xtrail
// server` and two `xtrail export` processes, four sensors (pkg/d4 clients
// over QUIC, both servers in their list) spread over both servers with
// steady traffic. During the traffic one server and one
// exporter (with lines in flight: the collector refuses for a second) are
// killed with SIGKILL, and the primary holding the queue is killed: its
// replica takes over, and the killed node comes back as a replica. The
// collector then holds every line, duplicates bounded by the lines in
// flight at the kills, and a frame captured on the killed server is refused
// as a replay by the other.
func TestClusterChain(t *testing.T) {
	testenv.RequireRoot(t) // the collector's forced socket buffer
	cl := redistest.StartCluster(t, 3, 1, redistest.Options{NodeTimeout: time.Second})
	url := cl.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	st, err := d4server.NewRedisStore(url, d4server.DefaultAnalyzerDB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	const nSensors = 4
	sensorIDs := make([]d4.UUID, nSensors)
	for i := range sensorIDs {
		u, err := d4.NewUUIDv4()
		if err != nil {
			t.Fatal(err)
		}
		sensorIDs[i] = u
		if err := st.AddSensor(ctx, u.String(), fmt.Sprintf("cluster key %d", i), ""); err != nil {
			t.Fatal(err)
		}
	}

	c := &chain{t: t, colDir: t.TempDir()}
	c.openCollector()
	certDir := t.TempDir()
	if err := certs.Generate(certDir, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	pool, err := certs.LoadPool(filepath.Join(certDir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	server := func(name string) (*xproc.Proc, string) {
		p := startProc(t, name, "server", "-listen", "127.0.0.1:0", "-redis", url,
			"-cert", filepath.Join(certDir, certs.CertFile), "-key", filepath.Join(certDir, certs.KeyFile))
		return p, p.WaitMatch(listening, 20*time.Second)
	}
	srvA, addrA := server("server A")
	srvB, addrB := server("server B")
	exporter := func(name string) *xproc.Proc {
		p := startProc(t, name, "export", "-t", "maltrail", "-u", queueUUID, "-redis", url,
			"-target", "udp://127.0.0.1:"+strconv.Itoa(c.colPort), "-consumer", name, "-claim-timeout", "3s")
		p.WaitMatch(exportedTo, 20*time.Second)
		return p
	}
	exp1, exp2 := exporter("e1"), exporter("e2")
	// The exporters register the queue; lines sent before that are held
	// by the servers (unrouted), unacknowledged for longer than a TLS
	// sensor's resend window.
	for registered := false; !registered; time.Sleep(50 * time.Millisecond) {
		if registered, err = st.QueueRegistered(ctx, d4server.MetaTypeMaltrail, queueUUID); err != nil {
			t.Fatal(err)
		}
	}

	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	captured := captureFrames(t, addrA, tlsCfg, sensorIDs[0], "cluster key 0")

	sensors := make([]*quicSensor, nSensors)
	var feeders, clients sync.WaitGroup
	fctx, stopFeeding := context.WithCancel(ctx)
	defer stopFeeding()
	cctx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	for i := range sensors {
		servers := []string{addrA, addrB} // sensors 0 and 1 start on A
		if i >= nSensors/2 {
			servers = []string{addrB, addrA}
		}
		cl, err := d4.NewClient(d4.ClientConfig{Servers: servers, Transport: d4.TransportQUIC, UUID: sensorIDs[i],
			Key: []byte(fmt.Sprintf("cluster key %d", i)), TLS: tlsCfg, FlushEvery: 20 * time.Millisecond,
			Spool: d4.SpoolConfig{Dir: t.TempDir()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		sensors[i] = &quicSensor{id: i, client: cl}
		clients.Add(1)
		go func() { defer clients.Done(); _ = cl.Run(cctx) }()
		feeders.Add(1)
		go func() { defer feeders.Done(); sensors[i].feed(fctx) }()
	}

	time.Sleep(4 * time.Second)
	t.Log("kill -9 server A")
	srvA.Kill()
	time.Sleep(3 * time.Second)
	// The collector refuses for a second, so both exporters hold a batch
	// in flight, and e1 dies with its own: e2 must take it over.
	c.stopCollector()
	time.Sleep(time.Second)
	t.Log("kill -9 exporter e1, with lines in flight")
	exp1.Kill()
	c.startCollector()
	time.Sleep(4 * time.Second)
	queueKey := "analyzer:maltrail:" + queueUUID
	primary := cl.PrimaryFor(queueKey)
	t.Logf("kill -9 the queue's primary %s", primary.Addr())
	killed := time.Now()
	primary.Kill()
	cl.WaitHealthy(60 * time.Second)
	promoted := cl.PrimaryFor(queueKey)
	if promoted == primary {
		t.Fatal("no failover")
	}
	t.Logf("replica %s took over after %s; the killed node comes back as its replica", promoted.Addr(), time.Since(killed).Round(time.Millisecond))
	primary.Restart()
	deadline := time.Now().Add(60 * time.Second)
	for cl.Replicas(promoted) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the restarted node never became a replica in sync")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(4 * time.Second)
	stopFeeding()
	feeders.Wait()
	// Every line acknowledged (its spool empty) before the clients stop.
	for _, s := range sensors {
		deadline := time.Now().Add(90 * time.Second)
		for s.client.Stats().Pending > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("sensor %d: %d lines never acknowledged: %+v", s.id, s.client.Stats().Pending, s.client.Stats())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	stopClients()
	clients.Wait()

	var total, resent, restamped, late, failovers int
	for _, s := range sensors {
		st := s.client.Stats()
		total += s.next
		resent += int(st.Resent) // lines sent again after a lost connection
		restamped += int(st.Restamped)
		late += int(st.ResentLate)
		failovers += int(st.Failovers + st.Reconnects)
	}
	seen := c.waitAll(sensors, 120*time.Second)

	// The frames captured on server A, replayed to server B.
	rc, err := tls.Dial("tcp", addrB, tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Write(captured); err != nil {
		t.Fatal(err)
	}
	_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.Read(make([]byte, 1)); err == nil {
		t.Fatal("server B wrote something back to a replay")
	}
	rc.Close()
	time.Sleep(300 * time.Millisecond) // let B count it
	sb := stopCounters(srvB, "D4 server counters")
	se := stopCounters(exp2, "export counters")

	dups := duplicates(seen)
	const batch = export.DefaultBatch
	// In flight at the kills. The sensors resend the frames A stored
	// without acknowledging, restamped, and B knows their content and
	// acknowledges them without storing them again; only the frames A was
	// storing when it died (their claims taken over by B) or resent later
	// than ResendWithin can come twice, so the resent lines count only when
	// B took a claim over. Then what the live exporter took over from the
	// dead one, and at the failover at most one exporter batch moved and one
	// acknowledged without reaching the replica, plus the lines being stored
	// per sensor (a retried push).
	sensorBound := late
	if sb["claims_taken_over"] > 0 {
		sensorBound = resent
	}
	bound := sensorBound + se["taken_over"] + 2*batch + nSensors*100
	t.Logf("lines %d, delivered distinct %d, duplicates %d (bound %d: sensors resent %d, restamped %d, late %d after %d failovers and reconnections, B took over %d claims and acknowledged %d stored frames, exporter took over %d); server B %v; exporter e2 %v",
		total, len(seen), dups, bound, resent, restamped, late, failovers, sb["claims_taken_over"], sb["already_stored_frames"], se["taken_over"], sb, se)
	// The capture is byte for byte what A received: B refuses it as a
	// replay (A's session holds its mark in Redis) and stores nothing. The
	// capture's line was stored once, on A; the 10 s read above gave the
	// exporter time to deliver a second copy.
	if sb["rejected_replayed_frame"] == 0 {
		t.Fatalf("server B did not refuse the frame replayed from server A: %v", sb)
	}
	if n := c.count("captured frame"); n != 1 {
		t.Fatalf("the captured frame's line reached the collector %d times, want 1", n)
	}
	if restamped != resent {
		t.Fatalf("the sensors resent %d lines and restamped %d: every resend is restamped", resent, restamped)
	}
	if failovers == 0 || se["taken_over"] == 0 {
		t.Fatalf("the kills did not bite: %d sensor failovers, %d lines taken over", failovers, se["taken_over"])
	}
	if dups > bound {
		t.Fatalf("%d duplicates, more than the %d lines in flight at the kills", dups, bound)
	}
	for i, s := range sensors {
		if seen[i*seqBase] == 0 || seen[i*seqBase+s.next-1] == 0 {
			t.Fatalf("sensor %d: first or last line missing", i)
		}
	}
}

// waitAll waits until every line of every sensor reached the collector and
// returns the tally.
func (c *chain) waitAll(sensors []*quicSensor, within time.Duration) map[int]int {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		seen := c.tally()
		var missing []int
		for _, s := range sensors {
			for n := range s.next {
				if seen[s.id*seqBase+n] == 0 {
					missing = append(missing, s.id*seqBase+n)
				}
			}
		}
		if len(missing) == 0 {
			return seen
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d lines never reached the collector, e.g. %v", len(missing), missing[:min(10, len(missing))])
		}
		time.Sleep(500 * time.Millisecond)
	}
}
