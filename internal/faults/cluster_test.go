package faults

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

// proc is an xtrail process of a cluster test.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	mu     *sync.Mutex
	done   chan struct{}
}

func startProc(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, stderr: new(bytes.Buffer), done: make(chan struct{})}
	w := &syncWriter{b: p.stderr}
	p.mu = &w.mu
	p.cmd = exec.Command(xtrailBin, args...)
	p.cmd.Stderr = w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", p.name, tail(p.log(), 3000))
		}
	})
	return p
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitLog waits for a log line matching re and returns its first group.
func (p *proc) waitLog(re *regexp.Regexp, within time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.log()); m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited: %s", p.name, p.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.t.Fatalf("%s: no %q in its log within %s: %s", p.name, re, within, p.log())
	return ""
}

func (p *proc) kill9() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop ends the process with SIGTERM and returns the counters of its exit
// summary line (marker: the line's message).
func (p *proc) stop(marker string) map[string]int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
	return countersAfter(p.log(), marker)
}

// failoverSensor sends numbered lines over TLS to the first of its servers
// that answers, and moves to the next when its connection fails. TLS has no
// acknowledgement, so frames a dying server had not stored yet are lost
// with it: after each reconnection the sensor sends again the lines it
// wrote in the last resendWindow, as a sensor's spool without
// acknowledgements must, and counts them (the duplicates this causes).
type failoverSensor struct {
	t     *testing.T
	id    int
	u     d4.UUID
	sg    *d4.Signer
	addrs []string
	tls   *tls.Config

	mu       sync.Mutex
	next     int        // next sequence number
	resent   int        // lines sent again after a reconnection
	reconns  int        // connections after the first
	captured [][]byte   // the meta frame and the first data frame, as sent
	recent   []sentLine // lines written in the last resendWindow
}

type sentLine struct {
	at   time.Time
	line string
}

const resendWindow = 3 * time.Second

// seqBase spaces the sensors' sequence numbers apart in the collector's tally.
const seqBase = 1_000_000

// run sends 10 lines every 100 ms until ctx ends, then closes its
// connection after a last write.
func (s *failoverSensor) run(ctx context.Context) {
	var conn *tls.Conn
	cur := 0
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var pending []string // lines to write on the next connection
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		s.mu.Lock()
		for range 10 {
			pending = append(pending, fmt.Sprintf("%d fault seq %d", now.Unix(), s.id*seqBase+s.next))
			s.next++
		}
		s.mu.Unlock()
		for conn == nil {
			var err error
			conn, err = s.dial(s.addrs[cur])
			if err != nil {
				cur = (cur + 1) % len(s.addrs)
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			s.mu.Lock()
			if !first {
				s.reconns++
				// Lines the dead server may have dropped go first.
				var again []string
				for _, r := range s.recent {
					if now.Sub(r.at) <= resendWindow {
						again = append(again, r.line)
					}
				}
				s.resent += len(again)
				pending = append(again, pending...)
			}
			first = false
			s.mu.Unlock()
		}
		n, err := s.write(conn, pending)
		s.mu.Lock()
		for _, l := range pending[:n] {
			s.recent = append(s.recent, sentLine{now, l})
		}
		for len(s.recent) > 0 && now.Sub(s.recent[0].at) > resendWindow {
			s.recent = s.recent[1:]
		}
		s.mu.Unlock()
		pending = append(pending[:0], pending[n:]...) // the rest waits for the next connection
		if err != nil {
			_ = conn.Close()
			conn = nil
			cur = (cur + 1) % len(s.addrs)
		}
	}
}

func (s *failoverSensor) dial(addr string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, s.tls)
	if err != nil {
		return nil, err
	}
	meta := s.sg.AppendFrame(nil, d4.TypeMeta, s.u, uint64(time.Now().Unix()), []byte(`{"type":"maltrail"}`))
	if _, err := conn.Write(meta); err != nil {
		conn.Close()
		return nil, err
	}
	s.mu.Lock()
	if s.captured == nil {
		s.captured = [][]byte{meta}
	}
	s.mu.Unlock()
	return conn, nil
}

// write sends lines in frames of at most 50 lines and returns how many
// went out in frames that were written whole.
func (s *failoverSensor) write(conn *tls.Conn, lines []string) (int, error) {
	done := 0
	for done < len(lines) {
		n := min(len(lines)-done, 50)
		var p []byte
		for _, l := range lines[done : done+n] {
			p = append(append(p, l...), '\n')
		}
		f := s.sg.AppendFrame(nil, d4.TypeExtended, s.u, uint64(time.Now().Unix()), p)
		_ = conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		if _, err := conn.Write(f); err != nil {
			return done, err
		}
		s.mu.Lock()
		if len(s.captured) == 1 {
			s.captured = append(s.captured, f)
		}
		s.mu.Unlock()
		done += n
	}
	return done, nil
}

var (
	listening  = regexp.MustCompile(`msg="D4 server listening" addr=(\S+)`)
	exportedTo = regexp.MustCompile(`msg=exporting .*consumer=(\S+)`)
)

// TestClusterChain: a real 3-primary, 3-replica Redis Cluster, two `xtrail
// server` and two `xtrail export` processes, four TLS sensors spread over
// both servers with steady traffic. During the traffic one server and one
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
	server := func(name string) (*proc, string) {
		p := startProc(t, name, "server", "-listen", "127.0.0.1:0", "-redis", url,
			"-cert", filepath.Join(certDir, certs.CertFile), "-key", filepath.Join(certDir, certs.KeyFile))
		return p, p.waitLog(listening, 20*time.Second)
	}
	srvA, addrA := server("server A")
	srvB, addrB := server("server B")
	exporter := func(name string) *proc {
		p := startProc(t, name, "export", "-t", "maltrail", "-u", queueUUID, "-redis", url,
			"-target", "udp://127.0.0.1:"+strconv.Itoa(c.colPort), "-consumer", name, "-claim-timeout", "3s")
		p.waitLog(exportedTo, 20*time.Second)
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

	sensors := make([]*failoverSensor, nSensors)
	var wg sync.WaitGroup
	sctx, stopSensors := context.WithCancel(ctx)
	defer stopSensors()
	for i := range sensors {
		addrs := []string{addrA, addrB} // sensors 0 and 1 start on A
		if i >= nSensors/2 {
			addrs = []string{addrB, addrA}
		}
		sensors[i] = &failoverSensor{t: t, id: i, u: sensorIDs[i], addrs: addrs,
			sg:  d4.NewSigner([]byte(fmt.Sprintf("cluster key %d", i))),
			tls: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
		wg.Add(1)
		go func() { defer wg.Done(); sensors[i].run(sctx) }()
	}

	time.Sleep(4 * time.Second)
	t.Log("kill -9 server A")
	srvA.kill9()
	time.Sleep(3 * time.Second)
	// The collector refuses for a second, so both exporters hold a batch
	// in flight, and e1 dies with its own: e2 must take it over.
	c.stopCollector()
	time.Sleep(time.Second)
	t.Log("kill -9 exporter e1, with lines in flight")
	exp1.kill9()
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
	stopSensors()
	wg.Wait()

	var total, resent, reconns int
	for _, s := range sensors {
		total += s.next
		resent += s.resent
		reconns += s.reconns
	}
	seen := c.waitAll(sensors, 120*time.Second)

	// A data frame sensor 0 sent to server A, replayed to server B.
	cap0 := sensors[0].captured
	if len(cap0) != 2 {
		t.Fatal("sensor 0 captured no data frame")
	}
	rc, err := tls.Dial("tcp", addrB, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Write(append(append([]byte(nil), cap0[0]...), cap0[1]...)); err != nil {
		t.Fatal(err)
	}
	_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.Read(make([]byte, 1)); err == nil {
		t.Fatal("server B wrote something back to a replay")
	}
	rc.Close()
	time.Sleep(300 * time.Millisecond) // let B count it
	sb := srvB.stop("D4 server counters")
	se := exp2.stop("export counters")

	dups := duplicates(seen)
	const batch = export.DefaultBatch
	// In flight at the kills: what the sensors sent again, what the live
	// exporter took over from the dead one, and at the failover at most one
	// exporter batch moved and one acknowledged without reaching the
	// replica, plus the frames being stored (50 lines each) per sensor.
	bound := resent + se["taken_over"] + 2*batch + nSensors*50
	t.Logf("lines %d, delivered distinct %d, duplicates %d (bound %d: sensors resent %d over %d reconnections, taken over %d); server B %v; exporter e2 %v",
		total, len(seen), dups, bound, resent, reconns, se["taken_over"], sb, se)
	if sb["rejected_replayed_frame"] == 0 {
		t.Fatalf("server B did not refuse the frame replayed from server A: %v", sb)
	}
	if reconns == 0 || se["taken_over"] == 0 {
		t.Fatalf("the kills did not bite: %d sensor reconnections, %d lines taken over", reconns, se["taken_over"])
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
func (c *chain) waitAll(sensors []*failoverSensor, within time.Duration) map[int]int {
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

// countersAfter parses the key=number pairs of the last log line holding
// marker.
func countersAfter(log, marker string) map[string]int {
	out := map[string]int{}
	i := strings.LastIndex(log, marker)
	if i < 0 {
		return out
	}
	line, _, _ := strings.Cut(log[i:], "\n")
	for _, m := range regexp.MustCompile(`(\w+)=(\d+)(?:\s|$)`).FindAllStringSubmatch(line, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}
