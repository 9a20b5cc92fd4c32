// Package d4fault injects transport faults into a live chain and counts, by
// sequence number, what reaches the collector: a sensor (the built xtrail
// binary, live on the lab's veth, in its own network namespace) sends over an
// uplink veth to `xtrail server` (a subprocess, so it can be killed with
// SIGKILL or paused with SIGSTOP), which stores into a real redis-server with
// append-only persistence; an exporter moves the lines to a collector.
package d4fault

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/internal/xproc"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/collector"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

// xtrailBin is the binary under test, built once by TestMain.
var xtrailBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() == 0 && !raceEnabled {
			dir, err := os.MkdirTemp("", "d4fault-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			if xtrailBin, err = xproc.Build(dir); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

const trailDomain = "evil-test-domain.com"

// chain is one sensor-to-collector setup.
type chain struct {
	t          *testing.T
	dir        string
	lab        *lab.Lab
	transport  string
	hostIf     string // uplink, host side
	sensorIf   string // uplink, sensor side
	serverAddr string // host side of the uplink, one port for TCP and UDP
	sensorTo   string // the sensor's D4_SERVER when not serverAddr (a proxy)
	redisURL   string
	pki        string
	uuid, key  string
	pinDir     string
	colDir     string
	server     *xproc.Proc
	dropProg   *ebpf.Program // for cut
	lastReplay *xproc.Proc   // the last replay, exited
}

// newChain builds the lab, the uplink, Redis, the sensor's registration,
// the exporter and the collector. The server and the sensor are started by
// the test.
func newChain(t *testing.T, transport string) *chain {
	t.Helper()
	if raceEnabled {
		t.Skip("runs the built binaries through minutes of faults; the run without -race covers it")
	}
	testenv.RequireRoot(t)
	if xtrailBin == "" {
		t.Fatal("the xtrail binary was not built")
	}
	c := &chain{t: t, dir: t.TempDir(), lab: lab.New(t), transport: transport, pinDir: testenv.PinDir(t)}
	c.uplink()
	redisAddr := redistest.StartServer(t, redistest.Options{AppendOnly: true}).Addr()
	c.redisURL = "redis://" + redisAddr + "/0"
	host, _, _ := net.SplitHostPort(c.serverAddr)
	c.pki = filepath.Join(c.dir, "pki")
	if err := certs.Generate(c.pki, []string{host}, time.Hour); err != nil {
		t.Fatal(err)
	}
	id, _ := d4.NewUUIDv4()
	c.uuid, c.key = id.String(), randHex(16)
	if out, err := exec.Command(xtrailBin, "server", "sensors", "add", "-redis", c.redisURL, "-key", c.key, c.uuid).CombinedOutput(); err != nil {
		t.Fatalf("sensors add: %v: %s", err, out)
	}
	c.exportToCollector(redisAddr)
	return c
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *chain) ip(args ...string) {
	c.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		c.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// uplink joins the sensor's namespace to ours with a veth pair on a random
// /30 of 198.18.0.0/15 (the benchmarking range), so tests running at the
// same time never share addresses.
func (c *chain) uplink() {
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	c.hostIf, c.sensorIf = "xtu"+id+"h", "xtu"+id+"n"
	base := fmt.Sprintf("198.%d.%d.%d", 18+int(b[0]&1), b[1], int(b[2]&0x3f)*4)
	pre := base[:strings.LastIndexByte(base, '.')+1]
	last, _ := strconv.Atoi(base[len(pre):])
	hostIP, sensorIP := pre+strconv.Itoa(last+1), pre+strconv.Itoa(last+2)
	c.t.Cleanup(func() { exec.Command("ip", "link", "del", c.hostIf).Run() })
	c.ip("link", "add", c.hostIf, "type", "veth", "peer", "name", c.sensorIf, "netns", c.lab.Sensor)
	c.ip("addr", "add", hostIP+"/30", "dev", c.hostIf)
	c.ip("link", "set", c.hostIf, "up")
	c.ip("-n", c.lab.Sensor, "addr", "add", sensorIP+"/30", "dev", c.sensorIf)
	c.ip("-n", c.lab.Sensor, "link", "set", c.sensorIf, "up")
	c.serverAddr = net.JoinHostPort(hostIP, strconv.Itoa(freePort(c.t, hostIP)))
}

// freePort finds a port free for both TCP and UDP on ip.
func freePort(t *testing.T, ip string) int {
	for range 50 {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for TCP and UDP")
	return 0
}

// exportToCollector runs the exporter of a queue registered now (before
// any line arrives) and a collector, until the test ends.
func (c *chain) exportToCollector(redisAddr string) {
	t := c.t
	ctx, cancel := context.WithCancel(context.Background())
	rs, err := d4server.OpenRedis(d4server.RedisConfig{Metadata: c.redisURL, AnalyzerDB: d4server.DefaultAnalyzerDB})
	if err != nil {
		t.Fatal(err)
	}
	q, err := rs.RegisterQueue(ctx, d4server.MetaTypeMaltrail, export.QueueUUIDFor("d4fault"), "transport fault test")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.colDir = filepath.Join(c.dir, "collector")
	col := &collector.Collector{Dir: c.colDir, Loc: time.UTC}
	conn, err := export.Dial(ctx, pc.LocalAddr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); col.Serve(ctx, pc) }()
	go func() { defer wg.Done(); export.Run(ctx, rs.Queue(d4server.MetaTypeMaltrail, q), conn, nil) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("collector %+v", col.Stats())
		}
		cancel()
		wg.Wait()
		conn.Close()
		pc.Close()
		col.Close()
		rs.Close()
	})
}

// startServer starts `xtrail server` on the uplink address (TLS and QUIC on
// the same port) and waits until it listens.
func (c *chain) startServer(extra ...string) {
	c.t.Helper()
	args := append([]string{"server", "-listen", c.serverAddr,
		"-cert", filepath.Join(c.pki, certs.CertFile), "-key", filepath.Join(c.pki, certs.KeyFile),
		"-redis", c.redisURL}, extra...)
	c.server = xproc.Start(c.t, "server", xtrailBin, args...)
	c.server.WaitFor("D4 server listening on QUIC", 20*time.Second)
}

// sensorConf writes a maltrail.conf for the live sensor; extra lines are
// appended.
func (c *chain) sensorConf(extra ...string) string {
	c.t.Helper()
	trails := filepath.Join(c.dir, "trails.csv")
	if err := os.WriteFile(trails, []byte(trailDomain+",malware (d4fault),(custom)\n"), 0o644); err != nil {
		c.t.Fatal(err)
	}
	lines := append([]string{
		"MONITOR_INTERFACE " + c.lab.SensorIf,
		"TRAILS_FILE " + trails,
		"LOG_DIR " + filepath.Join(c.dir, "sensor-log"),
		"SENSOR_NAME d4fault",
		"EVENT_THROTTLE_MODE off",
		// thousands of subdomains of one domain a minute are what
		// Maltrail's DNS exhaustion heuristic stops matching
		"DISABLED_HEURISTICS dns_exhaustion",
		"XDP_ACTION pass",
		"XDP_PIN_DIR " + c.pinDir,
		"D4_SERVER " + cmp.Or(c.sensorTo, c.serverAddr),
		"D4_TRANSPORT " + c.transport,
		"D4_UUID " + c.uuid,
		"D4_KEY " + c.key,
		"D4_CA " + filepath.Join(c.pki, certs.CAFile),
		"D4_SPOOL_DIR " + filepath.Join(c.dir, "spool"),
	}, extra...)
	path := filepath.Join(c.dir, "maltrail.conf")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// startSensor runs `xtrail sensor` inside the sensor's namespace and waits
// until its program is attached.
func (c *chain) startSensor(conf string) *xproc.Proc {
	c.t.Helper()
	p := xproc.Start(c.t, "sensor", "ip", "netns", "exec", c.lab.Sensor, xtrailBin, "sensor", "-c", conf)
	p.WaitFor("sensor ready", 30*time.Second)
	return p
}

// send makes the source namespace send DNS queries for
// seq<i>.evil-test-domain.com, i in [from, to), one every `every`, each from
// a fresh socket (the kernel's repeat slot drops a repeated 5-tuple within a
// second). It returns when all are sent.
func (c *chain) send(from, to int, every time.Duration) {
	c.t.Helper()
	err := lab.InNetns(c.lab.Source, func() error {
		next := time.Now()
		for i := from; i < to; i++ {
			u, err := net.Dial("udp", "203.0.113.53:53")
			if err != nil {
				return err
			}
			_, err = u.Write(dnsQuery(uint16(i), fmt.Sprintf("seq%06d.%s", i, trailDomain)))
			u.Close()
			if err != nil {
				return err
			}
			next = next.Add(every)
			time.Sleep(time.Until(next))
		}
		return nil
	})
	if err != nil {
		c.t.Errorf("traffic: %v", err)
	}
}

// sendAsync is send in the background; wait for it with the returned func.
func (c *chain) sendAsync(from, to int, every time.Duration) (wait func()) {
	done := make(chan struct{})
	go func() { defer close(done); c.send(from, to, every) }()
	return func() { <-done }
}

// pcap writes a capture of the queries for seq<i>, i in [from, to), time
// stamped now (the collector refuses event times far from its clock).
func (c *chain) pcap(from, to int) string {
	c.t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 1) // Ethernet
	now := time.Now()
	for i := from; i < to; i++ {
		f := pktbuild.Frame{Src: netip.MustParseAddr(lab.SourceAddr), Dst: netip.MustParseAddr("203.0.113.53"),
			Proto: pktbuild.UDP, Sport: uint16(20000 + i), Dport: 53,
			Payload: dnsQuery(uint16(i), fmt.Sprintf("seq%06d.%s", i, trailDomain))}.Bytes()
		ts := now.Add(time.Duration(i-from) * time.Millisecond)
		b = binary.LittleEndian.AppendUint32(b, uint32(ts.Unix()))
		b = binary.LittleEndian.AppendUint32(b, uint32(ts.Nanosecond()/1000))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	path := filepath.Join(c.dir, fmt.Sprintf("seq-%d-%d.pcap", from, to))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// replay runs `xtrail sensor -r pcap` to its end (at most 2 minutes) and
// returns its output.
func (c *chain) replay(conf, pcap string) string {
	c.t.Helper()
	p := xproc.Start(c.t, "replay", xtrailBin, "sensor", "-c", conf, "-r", pcap)
	if err := p.Wait(2 * time.Minute); err != nil {
		c.t.Fatalf("replay: %v\n%s", err, xproc.Tail(p.Output(), 30))
	}
	c.lastReplay = p
	return p.Output()
}

// dnsQuery is a standard query for name, type A, class IN.
func dnsQuery(id uint16, name string) []byte {
	q := []byte{byte(id >> 8), byte(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

// Maltrail writes a parent-domain hit as "(seq000123).evil-test-domain.com".
var seqRE = regexp.MustCompile(`seq(\d{6})\)?\.` + regexp.QuoteMeta(trailDomain))

// received counts the collector's lines by sequence number.
func (c *chain) received() map[int]int {
	got := map[int]int{}
	files, _ := filepath.Glob(filepath.Join(c.colDir, "*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if m := seqRE.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.Atoi(m[1])
				got[n]++
			}
		}
		fh.Close()
	}
	return got
}

// waitAll waits until every sequence number in [from, to) reached the
// collector and fails the test with the missing ones if not; it logs and
// returns the duplicates. The sensor resends the frames in flight at a lost
// connection restamped, and the server acknowledges a frame whose content it
// (or another session) stored without storing it again, so a duplicate needs
// a frame resent later than the sensor's ResendWithin or a claim taken over
// from a server that died while storing it.
func (c *chain) waitAll(from, to int, timeout time.Duration) (dups int) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := c.received()
		var missing []int
		dups = 0
		for i := from; i < to; i++ {
			if got[i] == 0 {
				missing = append(missing, i)
			} else {
				dups += got[i] - 1
			}
		}
		if len(missing) == 0 {
			c.t.Logf("all %d events at the collector, %d duplicates", to-from, dups)
			return dups
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of %d events never reached the collector (first: %v)", len(missing), to-from, missing[:min(len(missing), 20)])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cut makes the uplink drop every packet both ways, silently (no link
// down, no ICMP): an XDP program returning XDP_DROP on each end's ingress.
// This kernel has no netem. cut(false) restores the link.
func (c *chain) cut(on bool) { c.t.Helper(); c.drop(on, on) }

// drop makes the uplink drop, silently, what reaches the server's side
// (toServer) and what reaches the sensor's (toSensor).
func (c *chain) drop(toServer, toSensor bool) {
	c.t.Helper()
	if (toServer || toSensor) && c.dropProg == nil {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.XDP, License: "MIT",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1 /* XDP_DROP */), asm.Return()},
		})
		if err != nil {
			c.t.Fatalf("XDP drop program: %v", err)
		}
		c.dropProg = prog
		c.t.Cleanup(func() { prog.Close() })
	}
	set := func(name string, on bool) error {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		fd := -1
		if on {
			fd = c.dropProg.FD()
		}
		return netlink.LinkSetXdpFdWithFlags(link, fd, unix.XDP_FLAGS_SKB_MODE)
	}
	if err := set(c.hostIf, toServer); err != nil {
		c.t.Fatalf("uplink %s: %v", c.hostIf, err)
	}
	if err := lab.InNetns(c.lab.Sensor, func() error { return set(c.sensorIf, toSensor) }); err != nil {
		c.t.Fatalf("uplink %s: %v", c.sensorIf, err)
	}
}

// stopWithin is how long a process may take to stop on SIGTERM: a sensor
// waits for its acknowledgements first.
const stopWithin = 90 * time.Second

// d4Counters parses the exit summary of a sensor's D4 client.
func d4Counters(p *xproc.Proc) map[string]int { return p.Counters(`msg="D4 client counters"`) }
