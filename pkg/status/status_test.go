package status

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/metrics"
)

func TestSensorSocket(t *testing.T) {
	for pin, want := range map[string]string{
		"/sys/fs/bpf/xtrail":                     "/run/xtrail/sensor@xtrail.sock",
		"/sys/fs/bpf/xtrail/":                    "/run/xtrail/sensor@xtrail.sock",
		"/sys/fs/bpf/site/tap0":                  "/run/xtrail/sensor@site-tap0.sock",
		"/sys/fs/bpf/xtrail-test-1":              "", // '-' would be ambiguous: hashed
		"/mnt/bpf/xtrail":                        "", // not under /sys/fs/bpf: hashed
		"/sys/fs/bpf/" + strings.Repeat("n", 90): "", // too long for a socket address: hashed
	} {
		got := SensorSocket(pin)
		if want != "" && got != want {
			t.Errorf("SensorSocket(%q) = %q, want %q", pin, got, want)
		}
		if want == "" && (!strings.HasPrefix(got, RuntimeDir+"/sensor@") || len(got) != len(RuntimeDir+"/sensor@0123456789abcdef.sock")) {
			t.Errorf("SensorSocket(%q) = %q, want a hashed name", pin, got)
		}
	}
	if SensorSocket("/sys/fs/bpf/a-b") == SensorSocket("/sys/fs/bpf/a/b") {
		t.Error("two pin dirs share a socket")
	}
}

func TestListenSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "sensor@x.sock")
	ln, err := ListenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: os.ModeDir | 0o700, path: os.ModeSocket | 0o600} {
		if st, err := os.Stat(p); err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, st.Mode(), err, want)
		}
	}
	// a socket that answers is a running sensor's
	if ln2, err := ListenSocket(path); err == nil || !strings.Contains(err.Error(), "another sensor answers") {
		t.Errorf("second listener: %v", err)
		if ln2 != nil {
			ln2.Close()
		}
	}
	// a dead sensor's socket is replaced
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the dead socket is gone already: %v", err)
	}
	ln, err = ListenSocket(path)
	if err != nil {
		t.Fatalf("over a dead socket: %v", err)
	}
	ln.Close()
}

const text = `# HELP xtrail_info Always 1.
# TYPE xtrail_info gauge
xtrail_info{role="sensor"} 1
# HELP xtrail_xdp_counter_total XDP counters.
# TYPE xtrail_xdp_counter_total counter
xtrail_xdp_counter_total{counter="packets"} 120
xtrail_xdp_counter_total{counter="ringbuf_full"} 0
# HELP maltrail_trail_generation Trail sets.
# TYPE maltrail_trail_generation gauge
maltrail_trail_generation 2
# HELP xtrail_trails_loaded_timestamp_seconds Loaded.
# TYPE xtrail_trails_loaded_timestamp_seconds gauge
xtrail_trails_loaded_timestamp_seconds 1.7e+09
# HELP go_goroutines Goroutines.
# TYPE go_goroutines gauge
go_goroutines 12
`

func TestParseAndTable(t *testing.T) {
	r, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if r.Role != "sensor" {
		t.Errorf("role %q", r.Role)
	}
	if _, ok := r.Metrics["go_goroutines"]; ok {
		t.Error("a Go runtime family kept")
	}
	f := r.Metrics["xtrail_xdp_counter_total"]
	if f == nil || f.Type != "counter" || len(f.Series) != 2 || f.Series[0].Labels["counter"] != "packets" || f.Series[0].Value != 120 {
		t.Fatalf("xtrail_xdp_counter_total: %+v", f)
	}
	if _, err := Parse(strings.NewReader("# TYPE go_goroutines gauge\ngo_goroutines 1\n")); err == nil {
		t.Error("metrics without xtrail_info accepted")
	}
	if _, err := Parse(strings.NewReader("xtrail_info{role=\"sensor\" 1\n")); err == nil {
		t.Error("malformed text accepted")
	}

	r.Time = time.Unix(1700000010, 0)
	var b bytes.Buffer
	if err := WriteTable(&b, r, nil, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"xtrail sensor", "counter=packets", "120", "maltrail_trail_generation", "2023-11-14 22:13:20 UTC (10s ago)",
		"(1 labelled counters at zero not shown"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ringbuf_full") || strings.Contains(out, "PER SECOND") {
		t.Errorf("table without --all or an earlier reading:\n%s", out)
	}
	// --all, and rates against an earlier reading
	prev, _ := Parse(strings.NewReader(strings.Replace(text, "} 120", "} 100", 1)))
	prev.Time = r.Time.Add(-4 * time.Second)
	b.Reset()
	if err := WriteTable(&b, r, prev, true); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	for _, want := range []string{"PER SECOND", "ringbuf_full", "5.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("table with --all and a rate lacks %q:\n%s", want, out)
		}
	}
}

// TestShow reads a live registry over HTTP, as `xtrail status -addr`
// does: the JSON has the registry's figures, and --watch reads again.
func TestShow(t *testing.T) {
	frames := prometheus.NewCounter(prometheus.CounterOpts{Name: "xtrail_server_frames_total", Help: "Frames."})
	reg, err := metrics.NewRegistry(metrics.RoleServer, frames)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := metrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- metrics.Serve(ctx, metrics.Handler(reg, slog.New(slog.DiscardHandler)), slog.New(slog.DiscardHandler), ln)
	}()
	defer func() { cancel(); <-done }()
	frames.Add(41)
	target, err := AddrTarget(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	var out, errs bytes.Buffer
	if err := Show(context.Background(), target, Options{JSON: true}, &out, &errs); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Role != metrics.RoleServer || r.Source != target.URL || r.Metrics["xtrail_server_frames_total"].Series[0].Value != 41 {
		t.Errorf("report %+v", r)
	}

	// --watch: one JSON object per line per reading, until ctx ends
	out.Reset()
	wctx, stop := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer stop()
	go func() {
		time.Sleep(150 * time.Millisecond)
		frames.Inc()
	}()
	if err := Show(wctx, target, Options{JSON: true, Watch: 100 * time.Millisecond}, &out, &errs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("%d readings in 350ms at 100ms: %s", len(lines), out.String())
	}
	var last Report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Metrics["xtrail_server_frames_total"].Series[0].Value != 42 {
		t.Errorf("last reading %v: %s", err, lines[len(lines)-1])
	}

	for _, bad := range []string{"4443", "host", "127.0.0.1:99999"} {
		if _, err := AddrTarget(bad); err == nil {
			t.Errorf("AddrTarget(%q) accepted", bad)
		}
	}
	for addr, want := range map[string]string{":9338": "http://localhost:9338/metrics", "[::1]:9338": "http://[::1]:9338/metrics",
		"http://h:1": "http://h:1/metrics", "http://h:1/": "http://h:1/metrics", "https://h/x/metrics": "https://h/x/metrics"} {
		if tg, err := AddrTarget(addr); err != nil || tg.URL != want {
			t.Errorf("AddrTarget(%s) = %s, %v; want %s", addr, tg, err, want)
		}
	}
	// no socket: a clear error
	err = Show(context.Background(), Target{Socket: filepath.Join(t.TempDir(), "none.sock")}, Options{}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), "is the sensor running with this pin dir?") {
		t.Errorf("missing socket: %v", err)
	}
}

// TestSocketRootOnly: another user cannot read a sensor's status, and is
// told why.
func TestSocketRootOnly(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "setpriv")
	// a directory anyone may enter: only the modes ListenSocket sets protect the socket
	tmp, err := os.MkdirTemp("", "xtrail-status-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(tmp, "run", "sensor@x.sock")
	ln, err := ListenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// this test binary, run again as nobody, reads the socket
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", self, "-test.v", "-test.run=TestReadAsOther$")
	cmd.Env = append(os.Environ(), "XTRAIL_STATUS_SOCKET="+path)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is root's only: run as root") {
		t.Errorf("as nobody: %v\n%s", err, out)
	}
}

// TestReadAsOther is TestSocketRootOnly's other user; it does nothing on
// its own.
func TestReadAsOther(t *testing.T) {
	path := os.Getenv("XTRAIL_STATUS_SOCKET")
	if path == "" {
		t.Skip("run by TestSocketRootOnly")
	}
	_, err := Fetch(context.Background(), Target{Socket: path})
	if err == nil {
		t.Fatal("another user read the sensor's status")
	}
	t.Log(err)
}
