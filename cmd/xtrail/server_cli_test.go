package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

// readCert parses one PEM certificate file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCLIGencert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki") // made by gencert
	r := mustXtrail(t, "gencert", "-dir", dir, "-hosts", "d4.example.org, 192.0.2.10", "-days", "3")
	crt, key, ca := filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile), filepath.Join(dir, certs.CAFile)
	if !strings.Contains(r.stdout, "xtrail server -cert "+crt+" -key "+key) || !strings.Contains(r.stdout, "D4_CA "+ca) {
		t.Errorf("gencert does not say how to use the files: %s", r)
	}
	c := readCert(t, crt)
	if pin := d4.CertFingerprint(c.Raw).String(); !strings.Contains(r.stdout, "D4_SERVER_SHA256 "+pin) {
		t.Errorf("gencert does not print the certificate's fingerprint %s: %s", pin, r)
	}
	if !slices.Equal(c.DNSNames, []string{"d4.example.org"}) || len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != "192.0.2.10" {
		t.Errorf("-hosts: names %q, addresses %v", c.DNSNames, c.IPAddresses)
	}
	if d := time.Until(c.NotAfter); d < 71*time.Hour || d > 73*time.Hour {
		t.Errorf("-days 3: valid for another %v", d)
	}
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, ca))
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "d4.example.org"}); err != nil {
		t.Errorf("ca.crt does not verify server.crt: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err == nil {
		t.Error("the certificate is valid for a name not in -hosts")
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("server.key readable by others: %v %v", st.Mode(), err)
	}
	if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
		t.Errorf("server.crt and server.key are not a pair: %v", err)
	}

	// defaults: -hosts localhost,127.0.0.1, 825 days, the current directory
	def := t.TempDir()
	cmd := xtrailCmd(context.Background(), "gencert")
	cmd.Dir = def
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gencert without flags: %v\n%s", err, out)
	}
	c = readCert(t, filepath.Join(def, certs.CertFile))
	if !slices.Equal(c.DNSNames, []string{"localhost"}) || len(c.IPAddresses) != 1 || !c.IPAddresses[0].IsLoopback() {
		t.Errorf("default hosts: %q %v", c.DNSNames, c.IPAddresses)
	}
	if d := time.Until(c.NotAfter); d < 824*24*time.Hour || d > 826*24*time.Hour {
		t.Errorf("default validity: %v", d)
	}

	wantFail(t, xtrail(t, "gencert", "-dir", dir), 1, "already exists")
	wantFail(t, xtrail(t, "gencert", "-dir", t.TempDir(), "-hosts", " , "), 1, "at least one host")
	wantFail(t, xtrail(t, "gencert", "-dir", t.TempDir(), "-days", "0"), 1, "-days 0: want a positive number of days")
	wantFail(t, xtrail(t, "gencert", "-dir", t.TempDir(), "stray"), 1, "unexpected arguments")
}

// udpSink collects the datagrams sent to a loopback port.
type udpSink struct {
	t    *testing.T
	pc   net.PacketConn
	got  chan string
	addr string
}

func newUDPSink(t *testing.T) *udpSink {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &udpSink{t: t, pc: pc, got: make(chan string, 1024), addr: pc.LocalAddr().String()}
	t.Cleanup(func() { pc.Close() })
	go func() {
		defer close(s.got)
		buf := make([]byte, 65535)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.got <- string(buf[:n])
		}
	}()
	return s
}

// want reads n datagrams (20 s at most). The exporter ends each with
// '\n', as d4_export_udp.py -n does.
func (s *udpSink) want(n int) []string {
	s.t.Helper()
	var out []string
	deadline := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case d := <-s.got:
			out = append(out, d)
		case <-deadline:
			s.t.Fatalf("%d datagrams after 20 s, want %d: %q", len(out), n, out)
		}
	}
	return out
}

// none checks that no datagram arrives for a moment.
func (s *udpSink) none() {
	s.t.Helper()
	select {
	case d := <-s.got:
		s.t.Errorf("unexpected datagram %q", d)
	case <-time.After(300 * time.Millisecond):
	}
}

// sendD4 opens a D4 session to addr as sensor uuid and sends the meta
// header and the lines in one type-254 frame, then closes it.
func sendD4(t *testing.T, addr string, pool *x509.CertPool, uuid string, key []byte, lines ...string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := d4.ParseUUID(uuid)
	if err != nil {
		t.Fatal(err)
	}
	s := d4.NewSigner(key)
	ts := uint64(time.Now().Unix())
	b := s.AppendFrame(nil, d4.TypeMeta, u, ts, []byte(`{"type":"maltrail"}`))
	b = s.AppendFrame(b, d4.TypeExtended, u, ts, []byte(strings.Join(lines, "\n")+"\n"))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	// the server closes a rejected session; a good one is ours to close
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	c.Read(make([]byte, 1))
}

// pki makes a certificate pair for 127.0.0.1 with the binary and returns
// its directory and a pool trusting its CA.
func pki(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	mustXtrail(t, "gencert", "-dir", dir, "-hosts", "127.0.0.1")
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(dir, certs.CAFile)))
	return dir, pool
}

func TestCLICollector(t *testing.T) {
	dir := t.TempDir()
	line := `"2023-11-14 22:13:20.000000" cli 10.0.0.1 5000 198.51.100.7 80 TCP IP 198.51.100.7 "malware (test)" (static)`
	send := func(addr, msg string) {
		t.Helper()
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	waitFile := func(path, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			if string(b) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %q, want %q", path, b, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// -listen and -log-dir
	logDir := filepath.Join(dir, "flags")
	p := startXtrail(t, "collector", "-listen", "127.0.0.1:0", "-log-dir", logDir)
	addr := p.waitLog(`collector listening" addr=(\S+) log_dir=` + logDir)[1]
	// the bad datagram first: one reader takes them in order, so once the
	// good line is in the file both were counted before SIGTERM
	send(addr, "not a datagram")
	send(addr, "1700000000 "+line)
	waitFile(filepath.Join(logDir, "2023-11-14.log"), line+"\n")
	if code := p.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d: %s", code, p)
	}
	p.waitLog(`collector counters" datagrams=2 written=1`)

	// -c: UDP_ADDRESS, UDP_PORT and LOG_DIR; -q logs warnings only
	confDir := filepath.Join(dir, "conf")
	free := freeUDPAddr(t)
	host, port, _ := net.SplitHostPort(free)
	conf := writeFile(t, filepath.Join(dir, "server.conf"), fmt.Sprintf("UDP_ADDRESS %s\nUDP_PORT %s\nLOG_DIR %s\n", host, port, confDir))
	p = startXtrail(t, "collector", "-q", "-c", conf)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// the collector's socket is up when a datagram lands in the file
		send(free, "1700000000 "+line)
		if b, _ := os.ReadFile(filepath.Join(confDir, "2023-11-14.log")); len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing written to LOG_DIR of -c: %s", p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code := p.stop(); code != 0 || strings.Contains(p.stderr.String(), "level=INFO") {
		t.Errorf("-q: exit %d: %s", code, p)
	}
	// -listen and -log-dir win over -c
	p = startXtrail(t, "collector", "-c", conf, "-listen", "127.0.0.1:0", "-log-dir", logDir)
	p.waitLog(`collector listening" addr=127\.0\.0\.1:\d+ log_dir=` + logDir)
	p.stop()

	only := writeFile(t, filepath.Join(dir, "half.conf"), "UDP_ADDRESS 127.0.0.1\n")
	wantFail(t, xtrail(t, "collector", "-c", only), 1, "UDP_ADDRESS and UDP_PORT must be set together")
	wantFail(t, xtrail(t, "collector", "-c", filepath.Join(dir, "missing.conf")), 1, "missing.conf")
	wantFail(t, xtrail(t, "collector", "-listen", "256.0.0.1:1", "-log-dir", logDir), 1, "xtrail collector: ")
}

// redisAt is a client on one database of a test Redis server.
func redisAt(t *testing.T, addr string, db int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCLIExport(t *testing.T) {
	addr := redistest.Start(t)
	host, port, _ := net.SplitHostPort(addr)
	ctx := context.Background()
	const queue = "4f1e7c2a-6b3d-4c5e-9f80-1a2b3c4d5e6f"
	fill := func(db int, lines ...string) {
		t.Helper()
		st, err := d4server.NewRedisStore("redis://"+addr+"/0", db)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.RegisterQueue(ctx, "maltrail", queue, "test"); err != nil {
			t.Fatal(err)
		}
		var b [][]byte
		for _, l := range lines {
			b = append(b, []byte(l))
		}
		if _, err := st.PushLines(ctx, "maltrail", "any", b); err != nil {
			t.Fatal(err)
		}
	}

	// d4_export_udp.py's flags: -t -u -i -p -ri -rp (and -n, ignored)
	dst := newUDPSink(t)
	_, dport, _ := net.SplitHostPort(dst.addr)
	fill(d4server.DefaultAnalyzerDB, "1700000000 first", "1700000001 second")
	p := startXtrail(t, "export", "-t", "maltrail", "-u", queue, "-i", "127.0.0.1", "-p", dport, "-ri", host, "-rp", port, "-n")
	if got := dst.want(2); !slices.Equal(got, []string{"1700000000 first\n", "1700000001 second\n"}) {
		t.Errorf("datagrams %q", got)
	}
	fill(d4server.DefaultAnalyzerDB, "1700000002 third")
	if got := dst.want(1); got[0] != "1700000002 third\n" {
		t.Errorf("datagram %q", got)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d: %s", code, p)
	}
	p.waitLog(`export counters" sent=3 `)

	// -redis and -analyzer-db; -register=false leaves the queue list alone
	an := redisAt(t, addr, 5)
	fill(5, "1700000003 from db 5")
	meta := redisAt(t, addr, 0)
	meta.SRem(ctx, "analyzer:254:maltrail", queue)
	p = startXtrail(t, "export", "-t", "maltrail", "-u", queue, "-p", dport, "-redis", "redis://"+addr+"/0", "-analyzer-db", "5", "-register=false", "-q")
	if got := dst.want(1); got[0] != "1700000003 from db 5\n" {
		t.Errorf("datagram %q", got)
	}
	if n := an.LLen(ctx, "analyzer:maltrail:"+queue).Val(); n != 0 {
		t.Errorf("%d lines left in db 5", n)
	}
	if code := p.stop(); code != 0 || strings.Contains(p.stderr.String(), "level=INFO") {
		t.Errorf("-q: exit %d: %s", code, p)
	}
	if meta.SIsMember(ctx, "analyzer:254:maltrail", queue).Val() {
		t.Error("-register=false registered the queue")
	}
	// registering (the default) puts the queue where the server fills it
	p = startXtrail(t, "export", "-t", "maltrail", "-u", queue, "-p", dport, "-redis", "redis://"+addr+"/0", "-analyzer-db", "5")
	p.waitLog("exporting")
	if !meta.SIsMember(ctx, "analyzer:254:maltrail", queue).Val() {
		t.Error("the queue was not registered")
	}
	p.stop()
	dst.none()

	wantFail(t, xtrail(t, "export", "-t", "maltrail", "-p", dport), 1, "-t, -u and -p are required")
	wantFail(t, xtrail(t, "export", "-t", "maltrail", "-u", queue, "-p", "70000"), 1, "-p 70000: not a port")
	closed := freeUDPAddr(t) // no Redis there
	_, cport, _ := net.SplitHostPort(closed)
	wantFail(t, xtrail(t, "export", "-t", "maltrail", "-u", queue, "-p", dport, "-rp", cport), 1, "redis ping")
}

// TestCLIServer runs `xtrail server` with its flags against a real
// redis-server and a test D4 sensor, and the built-in exporter to a UDP
// listener.
func TestCLIServer(t *testing.T) {
	redisAddr := redistest.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	pkiDir, pool := pki(t)
	crt, key := filepath.Join(pkiDir, certs.CertFile), filepath.Join(pkiDir, certs.KeyFile)
	good, _ := d4.NewUUIDv4()
	stranger, _ := d4.NewUUIDv4()
	keys := writeFile(t, filepath.Join(dir, "sensors.keys"), "# test sensors\n"+good.String()+" good sensor key\n")

	// registration mode (the default), -keys, -cert and -key, -redis,
	// -analyzer-db, -export
	dst := newUDPSink(t)
	p := startXtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", crt, "-key", key, "-keys", keys,
		"-redis", "redis://"+redisAddr+"/0", "-analyzer-db", "3", "-export", "maltrail="+dst.addr)
	addr := p.waitLog(`D4 server listening" addr=(\S+) mode=registration sensors=1`)[1]
	// a second queue nobody consumes shows where the lines go
	meta, an := redisAt(t, redisAddr, 0), redisAt(t, redisAddr, 3)
	const idle = "0c7d2b1e-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
	meta.SAdd(ctx, "analyzer:254:maltrail", idle)

	sendD4(t, addr, pool, good.String(), []byte("good sensor key"), "1700000000 one", "1700000001 two")
	if got := dst.want(2); !slices.Equal(got, []string{"1700000000 one\n", "1700000001 two\n"}) {
		t.Errorf("exported %q", got)
	}
	sendD4(t, addr, pool, good.String(), []byte("wrong key"), "1700000002 forged")
	sendD4(t, addr, pool, stranger.String(), []byte("good sensor key"), "1700000003 stranger")
	dst.none()
	if got := an.LRange(ctx, "analyzer:maltrail:"+idle, 0, -1).Val(); !slices.Equal(got, []string{"1700000001 two", "1700000000 one"}) {
		t.Errorf("-analyzer-db 3: queue %q", got)
	}
	if n := redisAt(t, redisAddr, d4server.DefaultAnalyzerDB).DBSize(ctx).Val(); n != 0 {
		t.Errorf("%d keys in the default analyzer db", n)
	}
	if meta.HGet(ctx, "metadata_uuid:"+good.Hex(), "first_seen").Val() == "" {
		t.Error("no metadata for the good sensor")
	}
	if meta.Exists(ctx, "metadata_uuid:"+stranger.Hex()).Val() != 0 {
		t.Error("metadata for an unregistered sensor")
	}
	exportQ := export.QueueUUIDFor("maltrail=" + dst.addr)
	if !meta.SIsMember(ctx, "analyzer:254:maltrail", exportQ).Val() {
		t.Errorf("the -export queue %s is not registered", exportQ)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d: %s", code, p)
	}
	p.waitLog(`D4 server counters" conns=3 frames=2 lines=2 `)
	for _, want := range []string{"rejected_hmac_mismatch=1", "rejected_unregistered_uuid=1"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("exit summary lacks %s: %s", want, p)
		}
	}

	// shared-secret mode, one PEM file holding both (as d4-core's
	// server.pem), -default-key-file, the in-process store
	both := filepath.Join(dir, "server.pem")
	pem := append(mustRead(t, crt), mustRead(t, key)...)
	if err := os.WriteFile(both, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, filepath.Join(dir, "default.key"), "shared secret\n")
	p = startXtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", both, "-mode", "shared-secret",
		"-default-key-file", keyFile, "-keys", keys, "-export", "maltrail="+dst.addr)
	addr = p.waitLog(`D4 server listening" addr=(\S+) mode=shared-secret`)[1]
	p.waitLog("NO --redis: events are kept in this process only")
	sendD4(t, addr, pool, stranger.String(), []byte("shared secret"), "1700000004 any v4 sensor")
	sendD4(t, addr, pool, good.String(), []byte("good sensor key"), "1700000005 its own key")
	sendD4(t, addr, pool, good.String(), []byte("shared secret"), "1700000006 not its key")
	if got := dst.want(2); !slices.Equal(got, []string{"1700000004 any v4 sensor\n", "1700000005 its own key\n"}) {
		t.Errorf("exported %q", got)
	}
	dst.none()
	p.stop()
	// -default-key, and -q
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fixed := tcp.Addr().String()
	tcp.Close()
	p = startXtrail(t, "server", "-q", "-listen", fixed, "-cert", both, "-mode", "shared-secret", "-default-key", "inline secret",
		"-export", "maltrail="+dst.addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", fixed); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("-listen %s: nothing listens: %s", fixed, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sendD4(t, fixed, pool, stranger.String(), []byte("inline secret"), "1700000007 inline")
	if got := dst.want(1); got[0] != "1700000007 inline\n" {
		t.Errorf("exported %q", got)
	}
	if code := p.stop(); code != 0 || strings.Contains(p.stderr.String(), "level=INFO") {
		t.Errorf("-q: exit %d: %s", code, p)
	}

	// refusals, each with what is wrong
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0"), 1, "-cert is required")
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", both), 1, "registration mode needs at least one sensor key")
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", both, "-mode", "open", "-keys", keys), 1, `unknown mode "open"`)
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", both, "-keys", filepath.Join(dir, "none")), 1, "key list")
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", filepath.Join(dir, "none.pem"), "-keys", keys), 1, "load TLS certificate")
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", both, "-keys", keys, "-export", "syslog=127.0.0.1:514"), 1, "want maltrail=HOST:PORT")
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", both, "-keys", keys, "-export", "maltrail=127.0.0.1:0"), 1, "bad port")
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", both, "-keys", keys, "-redis", "redis://"+fixed+"/0"), 1, "redis ping")
	wantFail(t, xtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", both, "-mode", "shared-secret", "-default-key-file", filepath.Join(dir, "none")), 1, "none")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
