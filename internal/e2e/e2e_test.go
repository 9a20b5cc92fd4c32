// Package e2e tests the whole chain in one process, with real parts:
// captures replayed through the XDP program -> sensor agent -> D4 frames over
// TLS -> xtrail's D4 server -> a real redis-server -> exporter -> UDP ->
// collector. The collector's daily log must be byte-identical to the
// sensor's own LOG_DIR file.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/collector"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/sensor"
	"github.com/xtrail/xtrail/pkg/sink"
	"github.com/xtrail/xtrail/pkg/throttle"
)

func TestChain(t *testing.T) {
	testenv.RequireRoot(t)
	corpus := filepath.Join(testenv.SharedDir(t), "corpus")
	redisAddr := redistest.Start(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// server side: Redis store, registered sensor, TLS listener
	pki := filepath.Join(tmp, "pki")
	if err := certs.Generate(pki, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	store, err := d4server.NewRedisStore("redis://"+redisAddr+"/0", d4server.DefaultAnalyzerDB)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Init(ctx); err != nil {
		t.Fatal(err)
	}
	queue, err := store.RegisterQueue(ctx, "maltrail", export.QueueUUIDFor("e2e"), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	sensorID, _ := d4.NewUUIDv4()
	key := []byte("e2e sensor key")
	srv, err := d4server.New(d4server.Config{Store: store, Mode: d4server.ModeRegistration,
		Keys: map[string][]byte{sensorID.Hex(): key}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := d4server.ListenTLS("127.0.0.1:0", filepath.Join(pki, certs.CertFile), filepath.Join(pki, certs.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	// collector and exporter
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	col := &collector.Collector{Dir: filepath.Join(tmp, "collector"), Loc: time.UTC}
	defer col.Close()
	collected := make(chan error, 1)
	go func() { collected <- col.Serve(ctx, pc) }()
	conn, err := export.Dial(ctx, pc.LocalAddr().String(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exported := make(chan error, 1)
	go func() { exported <- export.Run(ctx, store.Queue("maltrail", queue), conn, nil) }()

	// sensor: replay, local LOG_DIR file plus D4
	pool, err := certs.LoadPool(filepath.Join(pki, certs.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	client, err := d4.NewClient(d4.ClientConfig{Servers: []string{ln.Addr().String()}, UUID: sensorID, Key: key,
		Spool:    d4.SpoolConfig{Dir: filepath.Join(tmp, "spool")},
		MetaType: "maltrail", TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	file, err := sink.NewFile(filepath.Join(tmp, "sensor"), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	out := sink.NewMulti(nil, file, sink.NewD4(client))
	var pcaps []string
	for _, c := range []string{"ip_trails", "duplicate_syn", "icmp", "ipv6", "dlt_raw", "vlan", "dns_queries", "http_trails"} {
		pcaps = append(pcaps, filepath.Join(corpus, c+".pcap"))
	}
	err = sensor.Run(ctx, sensor.Options{Pcaps: pcaps, TrailsFile: filepath.Join(corpus, "trails.csv"),
		Renderer: maltrail.Renderer{Sensor: "e2e", Loc: time.UTC}, Out: out, D4: client,
		// the captures share timestamps: no throttle, every event crosses the chain
		Throttle: throttle.Off})
	out.Close()
	if err != nil {
		t.Fatal(err)
	}
	const day = "2023-11-14.log"
	want, err := os.ReadFile(filepath.Join(tmp, "sensor", day))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Count(want, []byte("\n"))
	// 3 + 4 + 1 + 3 + 1 + 3 + 5 + 3 events in the eight captures
	if lines != 23 {
		t.Fatalf("sensor wrote %d lines, want 23:\n%s", lines, want)
	}
	// the replay returned once the server had every line (out.Close closed the spool)
	if st := client.Stats(); st.Sent != uint64(lines) || st.Acked != uint64(lines) || st.Pending != 0 || st.Dropped != 0 {
		t.Fatalf("D4 client %+v, want %d lines sent and delivered", st, lines)
	}
	deadline := time.Now().Add(20 * time.Second)
	for col.Stats().Written < uint64(lines) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got, err := os.ReadFile(filepath.Join(tmp, "collector", day))
	if err != nil {
		t.Fatalf("collector log: %v (server %+v)", err, srv.Stats())
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("collector log differs from the sensor's:\n--- collector\n%s--- sensor\n%s", got, want)
	}
	if st := srv.Stats(); st.Lines != uint64(lines) {
		t.Errorf("server stored %d lines, want %d", st.Lines, lines)
	}
	for reason, n := range srv.Stats().Rejected {
		if n != 0 {
			t.Errorf("server rejected %d sessions: %s", n, reason)
		}
	}
	cancel()
	for _, ch := range []chan error{served, collected, exported} {
		select {
		case err := <-ch:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a component did not stop within 10 s")
		}
	}
}
