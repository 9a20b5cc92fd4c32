package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xtrail/xtrail/pkg/collector"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/export"
	"github.com/xtrail/xtrail/pkg/sensor"
	"github.com/xtrail/xtrail/pkg/sink"
)

var quiet = slog.New(slog.DiscardHandler)

// serveOnce starts Serve with the registry of role and cs on a free
// loopback port and returns its URL; the server stops at the end of the
// test and Serve must then return nil.
func serveOnce(t *testing.T, role string, cs ...prometheus.Collector) string {
	t.Helper()
	reg, err := NewRegistry(role, cs...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Handler(reg, quiet), quiet, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return "http://" + ln.Addr().String() + Path
}

// get reads url and parses it with Prometheus's text-format parser.
func get(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value is the value of the series of name whose labels are all of
// labels (k, v, k, v, ...); it fails the test when there is none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		}
		t.Fatalf("%s: type %s", name, f.GetType())
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestServerMetrics(t *testing.T) {
	st := d4server.Stats{ActiveConns: 2, Sessions: 1, Conns: 7, Frames: 30, PayloadBytes: 4096, Lines: 55, Unrouted: 1, UnroutedDropped: 8, Throttled: 9,
		AlreadyStored: 10, ClaimWaits: 11, ClaimsTakenOver: 12,
		ReadErrors: 3, StoreErrors: 4, Panics: 5, Rejected: map[string]uint64{d4server.ReasonHMAC: 6, d4server.ReasonNotV4: 0}}
	rs := d4server.RedisStats{ReplicaWaits: 13, Restores: 14}
	fams := get(t, serveOnce(t, RoleServer, &Server{Stats: func() d4server.Stats { return st }, Redis: func() d4server.RedisStats { return rs }}))
	for name, want := range map[string]float64{
		"xtrail_server_connections":                  2,
		"xtrail_server_sensor_sessions":              1,
		"xtrail_server_already_stored_frames_total":  10,
		"xtrail_server_claim_waits_total":            11,
		"xtrail_server_claims_taken_over_total":      12,
		"xtrail_server_replica_wait_timeouts_total":  13,
		"xtrail_server_redis_restores_total":         14,
		"xtrail_server_connections_total":            7,
		"xtrail_server_frames_total":                 30,
		"xtrail_server_payload_bytes_total":          4096,
		"xtrail_server_lines_total":                  55,
		"xtrail_server_unrouted_lines_total":         1,
		"xtrail_server_unrouted_dropped_lines_total": 8,
		"xtrail_server_throttled_frames_total":       9,
		"xtrail_server_read_errors_total":            3,
		"xtrail_server_store_errors_total":           4,
		"xtrail_server_panics_total":                 5,
	} {
		if got := value(t, fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := value(t, fams, "xtrail_server_rejected_total", "reason", d4server.ReasonHMAC); got != 6 {
		t.Errorf("rejected for hmac: %v", got)
	}
	if got := value(t, fams, "xtrail_server_rejected_total", "reason", d4server.ReasonNotV4); got != 0 {
		t.Errorf("rejected for not v4: %v", got)
	}
	if got := value(t, fams, "xtrail_info", "role", RoleServer); got != 1 {
		t.Errorf("xtrail_info = %v", got)
	}
	// the in-process store has no Redis counters
	mem := get(t, serveOnce(t, RoleServer, &Server{Stats: func() d4server.Stats { return st }}))
	if _, ok := mem["xtrail_server_replica_wait_timeouts_total"]; ok {
		t.Error("a server without Redis exports Redis counters")
	}
	// the process and Go runtime collectors are there too
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
}

func TestCollectorMetrics(t *testing.T) {
	c := &collector.Collector{Dir: t.TempDir(), Loc: time.UTC, Logger: quiet}
	defer c.Close()
	line := `"2023-11-14 22:13:20.000000" cli 10.0.0.1 5000 198.51.100.7 80 TCP IP 198.51.100.7 "malware (test)" (static)`
	now := time.Unix(1700000100, 0)
	for _, d := range []string{"1700000000 " + line, "1700000001 " + line, "x no date", "99x " + line} {
		_ = c.Handle([]byte(d), now)
	}
	fams := get(t, serveOnce(t, RoleCollector, &Collector{Stats: c.Stats}))
	if got := value(t, fams, "xtrail_collector_datagrams_total"); got != 4 {
		t.Errorf("datagrams %v", got)
	}
	if got := value(t, fams, "xtrail_collector_lines_written_total"); got != 2 {
		t.Errorf("written %v", got)
	}
	for reason, want := range map[string]float64{"unparseable date": 1, "bad sec": 1, "missing space": 0, "write error": 0, "time outside the window": 0} {
		if got := value(t, fams, "xtrail_collector_rejected_total", "reason", reason); got != want {
			t.Errorf("rejected for %s: %v", reason, got)
		}
	}
	if got := value(t, fams, "xtrail_collector_last_datagram_timestamp_seconds"); got != 1700000100 {
		t.Errorf("last datagram %v", got)
	}
}

// failing is a sink that refuses every event.
type failing struct{ name string }

func (f failing) Emit(int64, []byte) error { return errors.New("refused") }
func (f failing) Close() error             { return nil }
func (f failing) Name() string             { return f.name }

// TestSensorOutputs: the outputs' tallies, Maltrail's local and remote
// error counts, and the D4 client's state; no sensor runs (the live test
// in cmd/xtrail covers the rest), so no program counters are reported.
func TestSensorOutputs(t *testing.T) {
	var console bytes.Buffer
	m := sink.NewMulti(quiet, failing{"file"}, failing{"udp:127.0.0.1:9"}, failing{"syslog:127.0.0.1:514"}, sink.NewConsole(&console))
	for range 3 {
		_ = m.Emit(1700000000, []byte("line\n"))
	}
	id, err := d4.NewUUIDv4()
	if err != nil {
		t.Fatal(err)
	}
	c, err := d4.NewClient(d4.ClientConfig{Servers: []string{"127.0.0.1:1"}, UUID: id, Key: []byte("k"), TLS: &tls.Config{},
		Spool: d4.SpoolConfig{Dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 2 {
		c.Send(fmt.Appendf(nil, "1700000000 line %d\n", i))
	}
	c.Send(make([]byte, d4.MaxPayload+1)) // longer than a frame: dropped
	fams := get(t, serveOnce(t, RoleSensor, &Sensor{Sinks: m, D4: c}))
	for _, s := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"xtrail_sink_failed_total", []string{"sink", "file"}, 3},
		{"xtrail_sink_failed_total", []string{"sink", "console"}, 0},
		{"xtrail_sink_sent_total", []string{"sink", "console"}, 3},
		{"xtrail_sink_sent_total", []string{"sink", "udp:127.0.0.1:9"}, 0},
		{"maltrail_local_log_errors_total", nil, 3},
		{"maltrail_remote_log_errors_total", nil, 6},
		{"xtrail_d4_connected", nil, 0},
		{"xtrail_d4_pending_lines", nil, 2},
		{"xtrail_d4_spooled_lines_total", nil, 2},
		{"xtrail_d4_acked_lines_total", nil, 0},
		{"xtrail_d4_dropped_lines_total", nil, 1},
		{"xtrail_d4_sent_lines_total", nil, 0},
		{"xtrail_info", []string{"role", RoleSensor}, 1},
	} {
		if got := value(t, fams, s.name, s.labels...); got != s.want {
			t.Errorf("%s%v = %v, want %v", s.name, s.labels, got, s.want)
		}
	}
	if _, ok := fams["xtrail_xdp_counter_total"]; ok {
		t.Error("program counters reported with no sensor running")
	}
}

func TestListenAndServe(t *testing.T) {
	for _, bad := range []string{"9337", "localhost", "127.0.0.1:70000", "127.0.0.1:http", "127.0.0.1:-1", ""} {
		if ln, err := Listen(bad); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) accepted", bad)
		}
	}
	for _, good := range []string{"127.0.0.1:0", "[::1]:0", ":0"} {
		if err := CheckAddr(good); err != nil {
			t.Errorf("CheckAddr(%q): %v", good, err)
		}
	}
	// a busy port is an error at Listen
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln2, err := Listen(ln.Addr().String()); err == nil {
		ln2.Close()
		t.Errorf("Listen on the busy %s accepted", ln.Addr())
	}

	// Serve stops with its context and closes its listeners
	reg, err := NewRegistry(RoleExport)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Handler(reg, quiet), quiet, ln) }()
	url := "http://" + ln.Addr().String()
	if fams := get(t, url+Path); value(t, fams, "xtrail_info", "role", RoleExport) != 1 {
		t.Error("no xtrail_info")
	}
	if resp, err := http.Get(url + "/other"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts after Serve returned")
	}
}

// snapshotOnly collects one fixed sensor snapshot.
type snapshotOnly struct{ s sensor.Snapshot }

func (c snapshotOnly) Describe(ch chan<- *prometheus.Desc) { (&Sensor{}).Describe(ch) }
func (c snapshotOnly) Collect(ch chan<- prometheus.Metric) { collectSnapshot(ch, &c.s) }

// TestSensorSnapshot: a running sensor's counters as exported, and
// Maltrail's names computed from them (the live test in cmd/xtrail reads
// a real sensor).
func TestSensorSnapshot(t *testing.T) {
	s := sensor.Snapshot{
		XDP:         []dataplane.Counter{{Name: "packets", Value: 100}, {Name: "ringbuf_full", Value: 3}, {Name: "scan_key_cap", Value: 2}},
		Agent:       []sensor.NamedCount{{Name: "records", Value: 9}, {Name: "heur_webscan_evicted", Value: 4}, {Name: "heur_nx_names_capped", Value: 1}, {Name: "heur_long_domain", Value: 5}},
		TrailLoads:  2,
		TrailMemory: dataplane.Memory{Live: 1000, Metas: 10},
	}
	s.EventTypes[1] = 6 // IPORT
	fams := get(t, serveOnce(t, RoleSensor, snapshotOnly{s}))
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"xtrail_xdp_counter_total", []string{"counter", "packets"}, 100},
		{"maltrail_capture_dropped_total", nil, 3},
		{"maltrail_state_saturations_total", nil, 2 + 4 + 1},
		{"xtrail_sensor_counter_total", []string{"counter", "heur_long_domain"}, 5},
		{"xtrail_sensor_events_total", []string{"type", "IPORT"}, 6},
		{"xtrail_sensor_events_total", []string{"type", "DNS"}, 0},
		{"maltrail_trail_generation", nil, 2},
		{"xtrail_trail_maps_bytes", []string{"part", "live"}, 1000},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, ok := fams["xtrail_trails_loaded_timestamp_seconds"]; ok {
		t.Error("a load time without a recorded origin")
	}
}

// TestExporterMetrics runs a real exporter of an in-process queue to a
// UDP socket: nothing sent before, then the lines sent, the empty backlog
// and the lag of the last line.
func TestExporterMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := d4server.NewMemStore(0)
	q, err := store.RegisterQueue(ctx, "maltrail", "", "test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	lines := [][]byte{fmt.Appendf(nil, "%d first", now-100), fmt.Appendf(nil, "%d second", now-50), fmt.Appendf(nil, "%d third", now-30)}
	if _, err := store.PushLines(ctx, "maltrail", "sensor", lines); err != nil {
		t.Fatal(err)
	}
	dst, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	target, err := export.DialUDP(ctx, "127.0.0.1", dst.LocalAddr().(*net.UDPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	e := export.New(export.Config{Queue: store.Queue("maltrail", q), Target: target, Logger: quiet})
	x := &Exporters{}
	x.Add(q, e)
	url := serveOnce(t, RoleExport, x)

	// before the exporter runs: no lag, nothing sent
	fams := get(t, url)
	if _, ok := fams["xtrail_export_lag_seconds"]; ok {
		t.Error("a lag before any line was sent")
	}
	if got := value(t, fams, "xtrail_export_sent_lines_total", "queue", q); got != 0 {
		t.Errorf("sent before the exporter runs: %v", got)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	buf := make([]byte, 100)
	for range lines {
		dst.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, _, err := dst.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Stats().Sent < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fams = get(t, url)
	if got := value(t, fams, "xtrail_export_sent_lines_total", "queue", q); got != 3 {
		t.Errorf("sent %v", got)
	}
	if got := value(t, fams, "xtrail_export_backlog_lines", "queue", q); got != 0 {
		t.Errorf("backlog after every line was sent: %v", got)
	}
	// the lag is the last line's age
	if got := value(t, fams, "xtrail_export_lag_seconds", "queue", q); got < 29 || got > 60 {
		t.Errorf("lag %v s, want about 30", got)
	}
	cancel()
	<-done
}
