package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

// figures are the xtrail_* and maltrail_* series of one reading, keyed by
// name{label="value",...} with the labels in key order.
type figures map[string]float64

func seriesKey(name string, labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, labels[k])
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// scrape reads a /metrics URL as Prometheus does and parses it with the
// Prometheus text-format parser; it also returns every family name.
func scrape(t *testing.T, url string) (figures, []string) {
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
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	fig := figures{}
	for name, mf := range fams {
		if !strings.HasPrefix(name, "xtrail_") && !strings.HasPrefix(name, "maltrail_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := m.GetUntyped().GetValue()
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			}
			fig[seriesKey(name, labels)] = v
		}
	}
	return fig, slices.Collect(maps.Keys(fams))
}

// statusFigures runs `xtrail status ARGS -json` and returns its series.
func statusFigures(t *testing.T, args ...string) (string, figures) {
	t.Helper()
	r := mustXtrail(t, append([]string{"status", "-json"}, args...)...)
	var rep struct {
		Role    string
		Metrics map[string]struct {
			Series []struct {
				Labels map[string]string
				Value  float64
			}
		}
	}
	decodeJSON(t, r, &rep)
	fig := figures{}
	for name, f := range rep.Metrics {
		for _, s := range f.Series {
			fig[seriesKey(name, s.Labels)] = s.Value
		}
	}
	return rep.Role, fig
}

// sameFigures checks that `xtrail status -json` read between two scrapes
// reports the same series, each value between the two scrapes' (the same
// as both when they agree).
func sameFigures(t *testing.T, url, role string, args ...string) {
	t.Helper()
	before, _ := scrape(t, url)
	gotRole, st := statusFigures(t, args...)
	after, _ := scrape(t, url)
	if gotRole != role {
		t.Errorf("status %v: role %q, want %q", args, gotRole, role)
	}
	if !slices.Equal(slices.Sorted(maps.Keys(st)), slices.Sorted(maps.Keys(after))) {
		t.Errorf("status %v: series differ from /metrics:\nstatus:  %v\nmetrics: %v", args, slices.Sorted(maps.Keys(st)), slices.Sorted(maps.Keys(after)))
	}
	for k, v := range st {
		lo, hi := min(before[k], after[k]), max(before[k], after[k])
		if v < lo || v > hi {
			t.Errorf("status %v: %s = %v, /metrics %v then %v", args, k, v, before[k], after[k])
		}
	}
}

// waitFigure scrapes url until the series key has the value want (10 s).
func waitFigure(t *testing.T, url, key string, want float64) figures {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fig, _ := scrape(t, url)
		if fig[key] == want {
			return fig
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %v after 10 s, want %v", url, key, fig[key], want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dnsQuery is a DNS query for name (type A), as a resolver sends it.
func dnsQuery(name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, 0x4d54) // id
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, label := range strings.Split(name, ".") {
		b = append(append(b, byte(len(label))), label...)
	}
	return append(b, 0, 0, 1, 0, 1)
}

// checkDashboard checks docs/grafana-dashboard.json: valid JSON whose
// panels all have queries, each naming only metrics in the scrapes.
func checkDashboard(t *testing.T, families map[string]bool) {
	t.Helper()
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Type    string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	metric := regexp.MustCompile(`\b(?:xtrail|maltrail)_[a-zA-Z0-9_]+`)
	queried := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := metric.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("dashboard panel %q: query %q names no xtrail metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				queried++
				if !families[n] {
					t.Errorf("dashboard panel %q queries %s, which no role exports", p.Title, n)
				}
			}
		}
	}
	if queried < 10 {
		t.Errorf("the dashboard queries %d metrics", queried)
	}
}

// TestCLIMetrics runs every role as a process, with metrics on, on real
// traffic: a live sensor on the lab's veth (D4 over TLS) -> xtrail server
// (built-in exporter) -> xtrail collector. Each /metrics is parsed with
// Prometheus's text-format parser and its counters must move with the
// traffic; `xtrail status -json` must report the same figures; the
// dashboard must query only metrics the roles export.
func TestCLIMetrics(t *testing.T) {
	testenv.RequireRoot(t)
	l := lab.New(t)
	pkiDir, pool := pki(t)
	id, _ := d4.NewUUIDv4()
	tmp := t.TempDir()
	keys := writeFile(t, filepath.Join(tmp, "keys"), id.String()+" metrics key\n")
	keyFile := writeFile(t, filepath.Join(tmp, "sensor.key"), "metrics key\n")

	col := startXtrail(t, "collector", "-listen", "127.0.0.1:0", "-log-dir", filepath.Join(tmp, "collector"), "-metrics", "127.0.0.1:0")
	colURL := "http://" + col.waitLog(`metrics listening" addr=(\S+)`)[1] + "/metrics"
	colAddr := col.waitLog(`collector listening" addr=(\S+)`)[1]
	srv := startXtrail(t, "server", "-listen", "127.0.0.1:0", "-cert", filepath.Join(pkiDir, certs.CertFile),
		"-key", filepath.Join(pkiDir, certs.KeyFile), "-keys", keys, "-export", "maltrail="+colAddr, "-metrics", "127.0.0.1:0")
	srvMetrics := srv.waitLog(`metrics listening" addr=(\S+)`)[1]
	srvURL := "http://" + srvMetrics + "/metrics"
	srvAddr := srv.waitLog(`D4 server listening" addr=(\S+)`)[1]

	trails := writeFile(t, filepath.Join(tmp, "trails.csv"), "198.51.100.7,malware (test),(static)\nxtrail-metrics-evil.net,malware (test),(static)\n")
	conf := writeFile(t, filepath.Join(tmp, "maltrail.conf"), strings.Join([]string{"TRAILS_FILE " + trails,
		"LOG_DIR " + filepath.Join(tmp, "log"), "SENSOR_NAME cli", "METRICS_ADDRESS 127.0.0.1:0", "USE_HEURISTICS true",
		"D4_SERVER " + srvAddr, "D4_SPOOL_DIR " + filepath.Join(tmp, "spool"), "D4_UUID " + id.String(), "D4_KEY_FILE " + keyFile, "D4_CA " + filepath.Join(pkiDir, certs.CAFile)}, "\n")+"\n")
	pinDir := testenv.PinDir(t)
	sen := startXtrail(t, "sensor", "-c", conf, "-i", l.SensorIf, "-netns", l.Sensor, "-xdp-mode", "generic", "-pin-dir", pinDir)
	senURL := "http://" + sen.waitLog(`metrics listening" addr=(\S+)`)[1] + "/metrics"
	sock := sen.waitLog(`status socket" path=(\S+)`)[1]
	sen.waitLog(`msg="sensor ready"`)

	// the status socket is root's only
	if st, err := os.Stat(sock); err != nil || st.Mode() != os.ModeSocket|0o600 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("status socket %s: %v %v", sock, st.Mode(), err)
	}

	before := waitFigure(t, senURL, `xtrail_d4_connected{}`, 1)
	for _, k := range []string{`xtrail_sensor_events_total{type="IP"}`, `xtrail_sensor_events_total{type="DNS"}`,
		`xtrail_sink_sent_total{sink="file"}`, `xtrail_sink_sent_total{sink="d4"}`, `xtrail_d4_sent_lines_total{}`} {
		if v, ok := before[k]; !ok || v != 0 {
			t.Errorf("before any traffic: %s = %v (present %v)", k, v, ok)
		}
	}

	// traffic from the source namespace: a datagram to the IP trail, a
	// DNS query for the domain trail
	if err := l.UDP("198.51.100.7", 5353); err != nil {
		t.Fatal(err)
	}
	if err := lab.InNetns(l.Source, func() error {
		c, err := net.Dial("udp", "203.0.113.53:53")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(dnsQuery("xtrail-metrics-evil.net"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// both events went the whole way: sensor, D4, server, exporter, collector
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(tmp, "collector", time.Now().UTC().Format("2006-01-02")+".log"))
		if strings.Contains(string(b), " UDP IP 198.51.100.7 ") && strings.Contains(string(b), " DNS xtrail-metrics-evil.net ") {
			break
		}
		if time.Now().After(deadline) {
			fig, _ := scrape(t, senURL)
			t.Fatalf("collector log after 20 s: %q\n%v\n%s\n%s", b, fig, sen, srv)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// the sensor's counters moved with the traffic
	after := waitFigure(t, senURL, `xtrail_d4_pending_lines{}`, 0)
	for k, want := range map[string]float64{
		`xtrail_sensor_events_total{type="IP"}`:            1,
		`xtrail_sensor_events_total{type="DNS"}`:           1,
		`xtrail_sensor_events_total{type="URL"}`:           0,
		`xtrail_sensor_counter_total{counter="events"}`:    2,
		`xtrail_sink_sent_total{sink="file"}`:              2,
		`xtrail_sink_sent_total{sink="d4"}`:                2,
		`xtrail_sink_failed_total{sink="d4"}`:              0,
		`xtrail_d4_sent_lines_total{}`:                     2,
		`xtrail_d4_acked_lines_total{}`:                    2,
		`xtrail_d4_dropped_oldest_lines_total{}`:           0,
		`xtrail_d4_connected{}`:                            1,
		`maltrail_trail_generation{}`:                      1,
		`maltrail_capture_dropped_total{}`:                 0,
		`maltrail_local_log_errors_total{}`:                0,
		`maltrail_remote_log_errors_total{}`:               0,
		`maltrail_state_saturations_total{}`:               0,
		`xtrail_xdp_counter_total{counter="ringbuf_full"}`: 0,
		// the heuristics' counters are there, and found nothing in this traffic
		`xtrail_sensor_counter_total{counter="heur_long_domain"}`:     0,
		`xtrail_sensor_counter_total{counter="heur_webscan_evicted"}`: 0,
	} {
		if got, ok := after[k]; !ok || got != want {
			t.Errorf("sensor after traffic: %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	for _, k := range []string{`xtrail_xdp_counter_total{counter="packets"}`, `xtrail_xdp_counter_total{counter="udp"}`,
		`xtrail_xdp_counter_total{counter="hit_dst"}`, `xtrail_xdp_counter_total{counter="cand_dns"}`,
		`xtrail_sensor_counter_total{counter="records_ip"}`, `xtrail_sensor_counter_total{counter="records_dns"}`,
		`xtrail_sensor_counter_total{counter="records"}`} {
		if after[k] <= before[k] {
			t.Errorf("sensor: %s did not move with the traffic: %v then %v", k, before[k], after[k])
		}
	}
	if after[`xtrail_trail_maps_bytes{part="live"}`] <= 0 || after[`xtrail_trails_loaded_timestamp_seconds{}`] <= 0 {
		t.Errorf("trail memory %v, loaded at %v", after[`xtrail_trail_maps_bytes{part="live"}`], after[`xtrail_trails_loaded_timestamp_seconds{}`])
	}

	// the server's: a real TLS session on loopback, then a forged one
	queue := export.QueueUUIDFor("maltrail=" + colAddr)
	srvFig := waitFigure(t, srvURL, `xtrail_export_sent_lines_total{queue="`+queue+`"}`, 2)
	for k, want := range map[string]float64{
		`xtrail_server_connections{}`:                          1, // the sensor
		`xtrail_server_sensor_sessions{}`:                      1,
		`xtrail_server_connections_total{}`:                    1,
		`xtrail_server_lines_total{}`:                          2,
		`xtrail_server_frames_total{}`:                         2, // the meta header and one data frame, or more
		`xtrail_server_rejected_total{reason="hmac mismatch"}`: 0,
		`xtrail_export_backlog_lines{queue="` + queue + `"}`:   0,
	} {
		if got, ok := srvFig[k]; !ok || got != want && !(k == `xtrail_server_frames_total{}` && got > want) {
			t.Errorf("server: %s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if lag, ok := srvFig[`xtrail_export_lag_seconds{queue="`+queue+`"}`]; !ok || lag < 0 || lag > 60 {
		t.Errorf("export lag %v (present %v)", lag, ok)
	}
	sendD4(t, srvAddr, pool, id.String(), []byte("wrong key"), "1700000000 forged")
	srvFig = waitFigure(t, srvURL, `xtrail_server_rejected_total{reason="hmac mismatch"}`, 1)
	if srvFig[`xtrail_server_lines_total{}`] != 2 {
		t.Errorf("a forged line was stored: %v", srvFig[`xtrail_server_lines_total{}`])
	}
	if n := srvFig[`xtrail_server_sensor_sessions{}`]; n != 1 { // the forger never authenticated
		t.Errorf("sensor sessions after a forged frame: %v, want 1", n)
	}

	// the collector's, and a datagram it refuses
	c, err := net.Dial("udp", colAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("not an event"))
	c.Close()
	colFig := waitFigure(t, colURL, `xtrail_collector_rejected_total{reason="unparseable date"}`, 1)
	if colFig[`xtrail_collector_datagrams_total{}`] != 3 || colFig[`xtrail_collector_lines_written_total{}`] != 2 {
		t.Errorf("collector: %v", colFig)
	}
	_, colFams := scrape(t, colURL)

	// xtrail status reports the same figures as /metrics: the sensor
	// through its socket (found from its pin dir), the others by address
	sameFigures(t, senURL, "sensor", "-pin-dir", pinDir)
	sameFigures(t, senURL, "sensor", "-socket", sock)
	sameFigures(t, srvURL, "server", "-addr", srvMetrics)
	sameFigures(t, colURL, "collector", "-addr", strings.TrimSuffix(colURL, "/metrics"))
	table := mustXtrail(t, "status", "-pin-dir", pinDir).stdout
	for _, want := range []string{"xtrail sensor  unix:" + sock, `xtrail_sensor_events_total`, "type=DNS", "counter=packets"} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}

	// the dashboard queries only metrics these roles export
	families := map[string]bool{}
	for _, url := range []string{senURL, srvURL} {
		_, names := scrape(t, url)
		for _, n := range names {
			families[n] = true
		}
	}
	for _, n := range colFams {
		families[n] = true
	}
	checkDashboard(t, families)
	// and every metric of xtrail's own is on the reference page
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for n := range families {
		if (strings.HasPrefix(n, "xtrail_") || strings.HasPrefix(n, "maltrail_")) && !strings.Contains(string(doc), "`"+n+"`") {
			t.Errorf("metric %s is not in docs/configuration.md", n)
		}
	}

	// a stopped sensor takes its socket along
	if code := sen.stop(); code != 0 {
		t.Errorf("sensor exit %d: %s", code, sen)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("status socket %s left behind", sock)
	}
	wantFail(t, xtrail(t, "status", "-pin-dir", pinDir), 1, "is the sensor running with this pin dir?")
	for _, p := range []*proc{srv, col} {
		if code := p.stop(); code != 0 {
			t.Errorf("exit %d: %s", code, p)
		}
	}
}

// TestCLIMetricsRefusals: a bad or busy metrics address stops every role
// at start, naming the setting, the value and what is allowed.
func TestCLIMetricsRefusals(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	for _, bad := range []struct{ value, says string }{
		{"9337", `-metrics "9337": address 9337: missing port in address (want host:port`},
		{"127.0.0.1:99999", `-metrics "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{busy.Addr().String(), "address already in use"},
	} {
		wantFail(t, xtrail(t, "collector", "-listen", "127.0.0.1:0", "-log-dir", dir, "-metrics", bad.value), 1, bad.says)
		wantFail(t, xtrail(t, "server", "-cert", "x.crt", "-metrics", bad.value), 1, bad.says)
		wantFail(t, xtrail(t, "export", "-t", "maltrail", "-u", "q", "-p", "8337", "-metrics", bad.value), 1, bad.says)
	}
	// the sensor's key, with where it was set
	conf, _ := sensorSetup(t, "METRICS_ADDRESS localhost")
	wantFail(t, xtrail(t, "sensor", "-c", conf, "-r", "x.pcap"), 1,
		`maltrail.conf:4: METRICS_ADDRESS "localhost": want host:port, [v6]:port or :port`)
	conf, _ = sensorSetup(t, "METRICS_ADRESS 127.0.0.1:9337")
	wantFail(t, xtrail(t, "sensor", "-c", conf, "-r", "x.pcap"), 1, "unknown key METRICS_ADRESS")
	// a busy METRICS_ADDRESS stops a live sensor before it attaches
	conf, _ = sensorSetup(t, "METRICS_ADDRESS "+busy.Addr().String())
	wantFail(t, xtrail(t, "sensor", "-c", conf, "-i", "xtnoiface0", "-pin-dir", filepath.Join(dir, "pins")), 1,
		"METRICS_ADDRESS "+busy.Addr().String(), "address already in use")

	// stray arguments and bad status flags
	wantFail(t, xtrail(t, "collector", "-listen", "127.0.0.1:0", "-log-dir", dir, "stray"), 1, `unexpected arguments ["stray"]`)
	wantFail(t, xtrail(t, "server", "-cert", "x.crt", "stray"), 1, `unexpected arguments ["stray"]`)
	wantFail(t, xtrail(t, "export", "-t", "maltrail", "-u", "q", "-p", "8337", "stray"), 1, `unexpected arguments ["stray"]`)
	wantFail(t, xtrail(t, "status", "stray"), 1, `unexpected arguments ["stray"]`)
	wantFail(t, xtrail(t, "status", "-addr", "127.0.0.1:1", "-socket", "/x.sock"), 1, "give one of -addr, -socket")
	wantFail(t, xtrail(t, "status", "-addr", "host"), 1, `address "host"`)
	wantFail(t, xtrail(t, "status", "-interval", "1ms"), 1, "-interval 1ms: want at least 100ms")
	wantFail(t, xtrail(t, "status", "-addr", busy.Addr().String()), 1, "xtrail status: ")

	// a collector whose log directory cannot be made stops at start
	file := writeFile(t, filepath.Join(dir, "file"), "x")
	wantFail(t, xtrail(t, "collector", "-listen", "127.0.0.1:0", "-log-dir", filepath.Join(file, "logs")), 1, "-log-dir (or LOG_DIR of -c)")
}

// TestCLIExportMetrics: `xtrail export -metrics` on a real Redis queue:
// lines sent, the queue's backlog and the lag move with the lines, and
// `xtrail status -addr` reports the same figures.
func TestCLIExportMetrics(t *testing.T) {
	addr := redistest.Start(t)
	ctx := context.Background()
	const queue = "6a1e7c2a-6b3d-4c5e-9f80-1a2b3c4d5e6f"
	st, err := d4server.NewRedisStore("redis://"+addr+"/0", d4server.DefaultAnalyzerDB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.RegisterQueue(ctx, "maltrail", queue, "test"); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	lines := [][]byte{fmt.Appendf(nil, "%d first", now-30), fmt.Appendf(nil, "%d second", now-20)}
	if _, err := st.PushLines(ctx, "maltrail", "any", lines); err != nil {
		t.Fatal(err)
	}
	dst := newUDPSink(t)
	_, dport, _ := net.SplitHostPort(dst.addr)
	p := startXtrail(t, "export", "-t", "maltrail", "-u", queue, "-p", dport, "-redis", "redis://"+addr+"/0", "-metrics", "127.0.0.1:0")
	maddr := p.waitLog(`metrics listening" addr=(\S+)`)[1]
	url := "http://" + maddr + "/metrics"
	dst.want(2)
	fig := waitFigure(t, url, `xtrail_export_sent_lines_total{queue="`+queue+`"}`, 2)
	if v, ok := fig[`xtrail_export_backlog_lines{queue="`+queue+`"}`]; !ok || v != 0 {
		t.Errorf("backlog %v (present %v)", v, ok)
	}
	if v := fig[`xtrail_export_lag_seconds{queue="`+queue+`"}`]; v < 19 || v > 60 {
		t.Errorf("lag %v s, want about 20 (the second line's age)", v)
	}
	sameFigures(t, url, "export", "-addr", maddr)
	if code := p.stop(); code != 0 {
		t.Errorf("exit %d: %s", code, p)
	}
}
