package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/collector"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/export"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/sensor"
	"github.com/xtrail/xtrail/pkg/sink"
	"github.com/xtrail/xtrail/pkg/trails"
)

const (
	webAddr    = "203.0.113.80" // a server in the sensor namespace
	nameTrails = "evil-test-domain.com,malware (lab),(custom)\n" +
		"/malicious-login.php,malware (lab),(custom)\n" +
		"tls-evil.example,malware (lab),(custom)\n"
)

// TestLiveNames sends a real DNS query, an HTTP GET and a TLS ClientHello
// from the lab's source namespace to a server in the sensor namespace. The
// sensor's XDP program hands them to the agent, whose events cross the D4
// server and the exporter to the collector's daily log.
func TestLiveNames(t *testing.T) {
	l := lab.New(t)
	if err := l.AddAddress(webAddr); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// servers in the sensor namespace: HTTP on :80, TLS on :443
	pki := filepath.Join(tmp, "pki")
	if err := certs.Generate(pki, []string{"127.0.0.1", "tls-evil.example"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, certs.CertFile), filepath.Join(pki, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	var web, secure net.Listener
	if err := lab.InNetns(l.Sensor, func() (err error) {
		if web, err = net.Listen("tcp", webAddr+":80"); err != nil {
			return err
		}
		secure, err = tls.Listen("tcp", webAddr+":443", &tls.Config{Certificates: []tls.Certificate{cert}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer web.Close()
	defer secure.Close()
	go serve(web, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	go serve(secure, "ok")

	// the central side on loopback: D4 server (in-process store), exporter, collector
	store := d4server.NewMemStore(0)
	queue, err := store.RegisterQueue(ctx, "maltrail", "", "live")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := d4.NewUUIDv4()
	key := []byte("live key")
	srv, err := d4server.New(d4server.Config{Store: store, Mode: d4server.ModeRegistration, Keys: map[string][]byte{id.Hex(): key}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := d4server.ListenTLS("127.0.0.1:0", filepath.Join(pki, certs.CertFile), filepath.Join(pki, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ctx, ln)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	col := &collector.Collector{Dir: filepath.Join(tmp, "collector"), Loc: time.UTC}
	defer col.Close()
	go col.Serve(ctx, pc)
	conn, err := export.Dial(ctx, pc.LocalAddr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go export.Run(ctx, store.Queue("maltrail", queue), conn, nil)

	// the sensor, live on the lab's veth
	pool, err := certs.LoadPool(filepath.Join(pki, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	client, err := d4.NewClient(d4.ClientConfig{Servers: []string{ln.Addr().String()}, UUID: id, Key: key,
		Spool: d4.SpoolConfig{Dir: filepath.Join(tmp, "spool")},
		TLS:   &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, FlushEvery: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close() // after the sensor (deferred below) stopped its Run
	trailsFile := filepath.Join(tmp, "trails.csv")
	if err := os.WriteFile(trailsFile, []byte(nameTrails), 0o644); err != nil {
		t.Fatal(err)
	}
	pinDir := testenv.PinDir(t)
	ready := make(chan struct{})
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sensor.Run(sctx, sensor.Options{
			Interfaces: []string{l.SensorIf}, Netns: lab.NetnsPath(l.Sensor), Action: dataplane.ActionPass,
			PinDir: pinDir, TrailsFile: trailsFile,
			Rules:    sensor.NameRules{Whitelist: trails.DefaultWhitelist(), CheckSNI: true, CheckHostDomains: true},
			Renderer: maltrail.Renderer{Sensor: "lab", Loc: time.UTC},
			Out:      sink.NewD4(client), D4: client, Ready: func() { close(ready) },
		})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("sensor stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("sensor not ready")
	}

	// traffic from the source namespace, with sockets made there
	if err := lab.InNetns(l.Source, func() error { return traffic() }); err != nil {
		t.Fatal(err)
	}

	want := []string{
		" 53 UDP DNS evil-test-domain.com \"malware (lab)\" (custom)\n",
		" 80 TCP URL (victim.example)/malicious-login.php \"malware (lab)\" (custom)\n",
		" 443 TCP DNS tls-evil.example \"malware (lab)\" (custom)\n",
	}
	deadline := time.Now().Add(20 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		got = readLines(filepath.Join(tmp, "collector"))
		if len(got) >= len(want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range want {
		n := 0
		for _, g := range got {
			if strings.HasSuffix(g, w) && strings.Contains(g, " lab "+lab.SourceAddr+" ") && strings.Contains(g, " "+webAddr+" ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d collector lines end in %q, want exactly 1; log:\n%s", n, w, strings.Join(got, ""))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d collector lines, want %d:\n%s", len(got), len(want), strings.Join(got, ""))
	}
}

// traffic runs in the source namespace: one DNS query, one HTTP GET, one
// TLS handshake.
func traffic() error {
	d := net.Dialer{Timeout: 5 * time.Second}
	u, err := d.Dial("udp", webAddr+":53")
	if err != nil {
		return err
	}
	q := []byte("\x7a\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" +
		"\x10evil-test-domain\x03com\x00\x00\x01\x00\x01")
	if _, err := u.Write(q); err != nil {
		return err
	}
	u.Close()
	c, err := d.Dial("tcp", webAddr+":80")
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	fmt.Fprintf(c, "GET /malicious-login.php HTTP/1.1\r\nHost: victim.example\r\nUser-Agent: lab\r\n\r\n")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	bufio.NewReader(c).ReadString('\n')
	c.Close()
	tc, err := tls.DialWithDialer(&d, "tcp", webAddr+":443", &tls.Config{ServerName: "tls-evil.example", InsecureSkipVerify: true})
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	tc.Close()
	return nil
}

func serve(ln net.Listener, reply string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			if _, err := c.Read(buf); err == nil {
				c.Write([]byte(reply))
			}
		}()
	}
}

func readLines(dir string) []string {
	var out []string
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}
