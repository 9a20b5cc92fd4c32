// Package faults runs the store-and-export half of the chain with real parts
// and injects faults: a D4 sensor (TLS, HMAC frames) -> the D4 server ->
// redis-server with the append-only file -> `xtrail export` (the built
// binary, so it can be killed) -> the collector writing LOG_DIR. Every line
// carries a sequence number, and each test ends by counting the lines in the
// collector's files: none may be missing, and duplicates only where the
// fault allows them (counted).
package faults

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/internal/xproc"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/collector"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

const (
	sensorUUID = "1d940331-9fc9-4381-8fc9-3b624db66025"
	sensorKey  = "fault test key"
	queueUUID  = "0f4a1c2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
)

var xtrailBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xtrail-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if xtrailBin, err = xproc.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// chain is one running chain under test.
type chain struct {
	t      *testing.T
	redis  *redistest.Server
	store  *d4server.RedisStore
	server *d4server.Server
	srvAdr string
	pool   *tlsPool

	colDir  string
	colPort int
	colStop func()

	exp *xproc.Proc // `xtrail export`
}

type tlsPool struct{ cfg *tls.Config }

func newChain(t *testing.T) *chain {
	testenv.RequireRoot(t) // the collector's forced socket buffer
	c := &chain{t: t, redis: redistest.StartServer(t, redistest.Options{AppendOnly: true}), colDir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := d4server.NewRedisStore("redis://"+c.redis.Addr()+"/0", d4server.DefaultAnalyzerDB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c.store = st
	if err := st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.AddSensor(ctx, sensorUUID, sensorKey, "fault test"); err != nil {
		t.Fatal(err)
	}
	reg, err := st.Registry(d4server.ModeRegistration, nil)
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	if err := certs.Generate(certDir, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	ln, err := d4server.ListenTLS("127.0.0.1:0", filepath.Join(certDir, certs.CertFile), filepath.Join(certDir, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	c.server, err = d4server.New(d4server.Config{Store: st, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = c.server.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	c.srvAdr = ln.Addr().String()
	pool, err := certs.LoadPool(filepath.Join(certDir, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	c.pool = &tlsPool{&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}

	c.openCollector()
	return c
}

// openCollector starts the collector on a free UDP port, kept across its
// restarts.
func (c *chain) openCollector() {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	c.colPort = pc.LocalAddr().(*net.UDPAddr).Port
	c.startCollectorOn(pc)
	c.t.Cleanup(c.stopCollector)
}

// startCollector (re)opens the collector on its port.
func (c *chain) startCollector() {
	c.t.Helper()
	var pc net.PacketConn
	var err error
	for range 50 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(c.colPort)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.startCollectorOn(pc)
}

func (c *chain) startCollectorOn(pc net.PacketConn) {
	col := &collector.Collector{Dir: c.colDir, Loc: time.UTC}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = col.Serve(ctx, pc) }()
	c.colStop = func() { cancel(); <-done; _ = pc.Close(); _ = col.Close() }
}

func (c *chain) stopCollector() {
	if c.colStop != nil {
		c.colStop()
		c.colStop = nil
	}
}

func (c *chain) startExporter() {
	c.t.Helper()
	c.exp = xproc.Start(c.t, "exporter", xtrailBin, "export", "-t", "maltrail", "-u", queueUUID,
		"-target", "udp://127.0.0.1:"+strconv.Itoa(c.colPort), "-redis", "redis://"+c.redis.Addr()+"/0",
		"-consumer", "fault", "-claim-timeout", "3s", "-rate", "0")
}

// stopExporter stops it cleanly and returns its exit counters.
func (c *chain) stopExporter() map[string]int {
	c.t.Helper()
	return stopCounters(c.exp, "export counters")
}

func (c *chain) killExporter() { c.exp.Kill() }

// sensor sends numbered lines over one TLS session.
type sensor struct {
	t    *testing.T
	conn *tls.Conn
	sg   *d4.Signer
	u    d4.UUID
	next int
}

func (c *chain) dialSensor() *sensor {
	c.t.Helper()
	conn, err := tls.Dial("tcp", c.srvAdr, c.pool.cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = conn.Close() })
	u, _ := d4.ParseUUID(sensorUUID)
	s := &sensor{t: c.t, conn: conn, sg: d4.NewSigner([]byte(sensorKey)), u: u}
	s.frame(d4.TypeMeta, []byte(`{"type":"maltrail"}`))
	return s
}

func (s *sensor) frame(typ uint8, payload []byte) {
	if _, err := s.conn.Write(s.sg.AppendFrame(nil, typ, s.u, uint64(time.Now().Unix()), payload)); err != nil {
		s.t.Errorf("sensor write: %v", err)
	}
}

// send sends n lines, 10 per frame, at about perSec lines a second.
func (s *sensor) send(n, perSec int) {
	tick := time.NewTicker(time.Second * 10 / time.Duration(perSec))
	defer tick.Stop()
	for sent := 0; sent < n; sent += 10 {
		var p []byte
		for i := 0; i < 10 && sent+i < n; i++ {
			p = fmt.Appendf(p, "%d fault seq %06d\n", time.Now().Unix(), s.next)
			s.next++
		}
		s.frame(d4.TypeExtended, p)
		<-tick.C
	}
}

// sendAsync sends in the background and returns the function that waits
// for the end.
func (s *sensor) sendAsync(n, perSec int) (wait func()) {
	done := make(chan struct{})
	go func() { defer close(done); s.send(n, perSec) }()
	return func() { <-done }
}

// tally counts each sequence number in the collector's files.
func (c *chain) tally() map[int]int {
	seen := map[int]int{}
	c.eachLine(func(line string) {
		if _, num, ok := strings.Cut(line, "fault seq "); ok {
			n, _ := strconv.Atoi(num)
			seen[n]++
		}
	})
	return seen
}

// count counts the collector's lines that contain s.
func (c *chain) count(s string) int {
	n := 0
	c.eachLine(func(line string) {
		if strings.Contains(line, s) {
			n++
		}
	})
	return n
}

// eachLine calls f with each line of the collector's files.
func (c *chain) eachLine(f func(string)) {
	ents, _ := os.ReadDir(c.colDir)
	for _, e := range ents {
		fl, err := os.Open(filepath.Join(c.colDir, e.Name()))
		if err != nil {
			c.t.Fatal(err)
		}
		sc := bufio.NewScanner(fl)
		for sc.Scan() {
			f(sc.Text())
		}
		fl.Close()
	}
}

// waitDelivered waits until every sequence number in [from, to) reached the
// collector, and returns the tally.
func (c *chain) waitDelivered(from, to int, within time.Duration) map[int]int {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		seen := c.tally()
		missing := 0
		for i := from; i < to; i++ {
			if seen[i] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return seen
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of lines %d..%d never reached the collector", missing, from, to-1)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func duplicates(seen map[int]int) int {
	d := 0
	for _, n := range seen {
		d += n - 1
	}
	return d
}

// TestRedisRestart: Redis stops cleanly and comes back with its
// append-only file while lines flow; the server and the exporter retry,
// and every line arrives.
func TestRedisRestart(t *testing.T) {
	c := newChain(t)
	c.startExporter()
	wait := c.dialSensor().sendAsync(3000, 500)
	time.Sleep(2 * time.Second)
	c.redis.Stop()
	time.Sleep(5 * time.Second) // longer than go-redis's own retries
	c.redis.Restart()
	wait()
	seen := c.waitDelivered(0, 3000, 60*time.Second)
	st := c.stopExporter()
	dups := duplicates(seen)
	t.Logf("duplicates %d; exporter %v; server %+v", dups, st, c.server.Stats())
	if c.server.Stats().StoreErrors == 0 || st["queue_errors"] == 0 {
		t.Error("the server or the exporter never saw Redis down: the fault was not injected")
	}
	// Not zero by design: a command Redis ran just before it stopped may
	// lose its reply, and the caller runs it again. That is the server's
	// push of the one frame (10 lines) it was storing, and the exporter's
	// batch it was moving (at most DefaultBatch, plus what it resent to
	// the collector). The frame's claim and mark are idempotent.
	if bound := 10 + export.DefaultBatch + st["resent"]; dups > bound {
		t.Fatalf("%d duplicates, more than the %d lines in flight at the stop", dups, bound)
	}
}

// TestRedisRestartedEmpty: lines wait in the queue (the collector is down),
// then Redis comes back without its data. The lines sent after that are
// all delivered; the lost backlog is counted and reported by the exporter,
// exactly here since no line was moving when it read the backlog.
func TestRedisRestartedEmpty(t *testing.T) {
	c := newChain(t)
	c.stopCollector()
	c.startExporter()
	s := c.dialSensor()
	s.send(1000, 1000)
	// The exporter fails against the closed port and reads the backlog
	// while it backs off (at most every 5 s).
	deadline := time.Now().Add(10 * time.Second)
	for c.server.Stats().Lines < 1000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(6 * time.Second)
	c.redis.Stop()
	c.redis.Wipe()
	c.redis.Restart()
	s.send(1000, 500)
	c.startCollector()
	c.waitDelivered(1000, 2000, 60*time.Second)
	time.Sleep(time.Second)
	seen := c.tally()
	st := c.stopExporter()
	lost := 0
	for i := range 1000 {
		if seen[i] == 0 {
			lost++
		}
	}
	t.Logf("lost %d of the first 1000; exporter %v; store restores %d", lost, st, c.store.Stats().Restores)
	if lost == 0 {
		t.Fatal("nothing was lost: the backlog was not in Redis when it was wiped")
	}
	if st["lost_backlog"] != lost || st["store_losses"] != 1 {
		t.Fatalf("the exporter reported lost_backlog=%d store_losses=%d; %d lines are missing",
			st["lost_backlog"], st["store_losses"], lost)
	}
	if d := duplicates(seen); d != 0 {
		t.Fatalf("%d duplicates", d)
	}
}

// TestExporterKill9: the exporter is killed mid-stream, with a batch in
// flight (the collector refuses it at that moment), and started again; its
// next run resends that batch first, every line arrives, and the
// duplicates are at most the lines it had in flight, which the new run
// counts as recovered.
func TestExporterKill9(t *testing.T) {
	c := newChain(t)
	c.startExporter()
	wait := c.dialSensor().sendAsync(3000, 500)
	time.Sleep(time.Second)
	c.stopCollector()
	time.Sleep(time.Second)
	c.killExporter()
	c.startCollector()
	c.startExporter() // waits out the dead run's claim (3 s)
	wait()
	c.waitDelivered(0, 3000, 60*time.Second)
	time.Sleep(500 * time.Millisecond)
	seen := c.tally()
	st := c.stopExporter()
	dups := duplicates(seen)
	t.Logf("duplicates %d, recovered %d", dups, st["recovered_possible_duplicates"])
	if st["recovered_possible_duplicates"] == 0 {
		t.Fatal("the restarted exporter found nothing in flight: the kill did not hit a batch")
	}
	if dups > st["recovered_possible_duplicates"] {
		t.Fatalf("%d duplicates, more than the %d lines in flight at the kill", dups, st["recovered_possible_duplicates"])
	}
}

// TestCollectorDown: the collector is down for 10 s under steady traffic;
// no line is lost, and on loopback none is duplicated either (each refusal
// is pinned on its datagram).
func TestCollectorDown(t *testing.T) {
	c := newChain(t)
	c.startExporter()
	wait := c.dialSensor().sendAsync(8000, 500)
	time.Sleep(3 * time.Second)
	c.stopCollector()
	time.Sleep(10 * time.Second)
	c.startCollector()
	wait()
	c.waitDelivered(0, 8000, 60*time.Second)
	time.Sleep(500 * time.Millisecond)
	seen := c.tally()
	st := c.stopExporter()
	t.Logf("exporter %v", st)
	if st["refusals"] == 0 {
		t.Fatal("the exporter never saw the collector down")
	}
	if d := duplicates(seen); d != 0 {
		t.Fatalf("%d duplicates", d)
	}
}
