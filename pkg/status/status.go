// Package status is `xtrail status`: it reads a running role's metrics (a
// sensor's through its local status socket, a server's, exporter's or
// collector's through its metrics address), keeps xtrail's own families,
// and shows them as a table or JSON. It reads the same /metrics that
// Prometheus scrapes, so both report the same figures.
package status

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xtrail/xtrail/pkg/metrics"
)

// RuntimeDir holds the sensors' status sockets (systemd's
// RuntimeDirectory=xtrail), root's only.
const RuntimeDir = "/run/xtrail"

// bpffs is where pin directories normally live.
const bpffs = "/sys/fs/bpf/"

// SensorSocket is the status socket of the sensor whose trail maps are
// pinned in pinDir: RuntimeDir/sensor@NAME.sock, NAME being pinDir below
// /sys/fs/bpf with '/' as '-' (/sys/fs/bpf/xtrail: sensor@xtrail.sock).
// A pin dir elsewhere, or one whose name would make the path longer than a
// socket address allows, is named by a hash of its path instead.
func SensorSocket(pinDir string) string {
	clean := filepath.Clean(pinDir)
	name, ok := strings.CutPrefix(clean, bpffs)
	if ok && name != "" && !strings.ContainsAny(name, "-@") {
		name = strings.ReplaceAll(name, "/", "-")
	} else {
		ok = false
	}
	const maxPath = 107 // sun_path less its terminating NUL
	if p := filepath.Join(RuntimeDir, "sensor@"+name+".sock"); ok && len(p) <= maxPath {
		return p
	}
	sum := sha256.Sum256([]byte(clean))
	return filepath.Join(RuntimeDir, "sensor@"+hex.EncodeToString(sum[:8])+".sock")
}

// Series is one time series of a family: its labels and value.
type Series struct {
	Labels map[string]string `json:"labels,omitempty"`
	Value  float64           `json:"value"`
}

// Family is one metric family.
type Family struct {
	Type   string   `json:"type"` // counter, gauge, ...
	Help   string   `json:"help"`
	Series []Series `json:"series"`
}

// Report is one reading of a role's metrics: what --json prints.
type Report struct {
	Role    string             `json:"role"`   // xtrail_info's role label
	Source  string             `json:"source"` // the socket or URL read
	Time    time.Time          `json:"time"`
	Metrics map[string]*Family `json:"metrics"` // xtrail_* and maltrail_* families, by name
}

// Target is where a role's metrics are read.
type Target struct {
	Socket string // a unix socket (a sensor's status socket)
	URL    string // or an http URL of /metrics
}

// AddrTarget is the target of a metrics listen address (host:port) or URL.
func AddrTarget(addr string) (Target, error) {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" {
			return Target{}, fmt.Errorf("status: URL %q: want http://HOST:PORT[/PATH]", addr)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = metrics.Path
		}
		return Target{URL: u.String()}, nil
	}
	if err := metrics.CheckAddr(addr); err != nil {
		return Target{}, fmt.Errorf("status: address %q: %w (want %s, or a URL)", addr, err, metrics.AddrAllowed)
	}
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost" // a server listening on every address answers here
	}
	return Target{URL: "http://" + net.JoinHostPort(host, port) + metrics.Path}, nil
}

func (t Target) String() string {
	if t.Socket != "" {
		return "unix:" + t.Socket
	}
	return t.URL
}

// fetchTimeout bounds one reading.
const fetchTimeout = 10 * time.Second

// Fetch reads the target's metrics once.
func Fetch(ctx context.Context, t Target) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	client, target := http.DefaultClient, t.URL
	if t.Socket != "" {
		if _, err := os.Stat(t.Socket); err != nil {
			switch {
			case errors.Is(err, os.ErrNotExist):
				return nil, fmt.Errorf("status: no sensor status socket %s (is the sensor running with this pin dir?)", t.Socket)
			case errors.Is(err, os.ErrPermission):
				return nil, fmt.Errorf("status: %s is root's only: run as root (%w)", t.Socket, err)
			}
			return nil, fmt.Errorf("status: %w", err)
		}
		client = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", t.Socket)
			},
		}}
		defer client.CloseIdleConnections()
		target = "http://sensor" + metrics.Path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		if t.Socket != "" && errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("status: %s is root's only: run as root (%w)", t.Socket, err)
		}
		return nil, fmt.Errorf("status: read %s: %w", t, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("status: read %s: %s: %s", t, resp.Status, strings.TrimSpace(string(b)))
	}
	r, err := Parse(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("status: read %s: %w", t, err)
	}
	r.Source, r.Time = t.String(), time.Now().UTC()
	return r, nil
}

// maxBody bounds what Fetch reads: a role's metrics are a few tens of KB.
const maxBody = 16 << 20

// Own reports whether a family is xtrail's own (what status shows).
func Own(name string) bool {
	return strings.HasPrefix(name, "xtrail_") || strings.HasPrefix(name, "maltrail_")
}

// Parse reads the Prometheus text format and keeps xtrail's own families.
func Parse(in io.Reader) (*Report, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(in)
	if err != nil {
		return nil, err
	}
	r := &Report{Metrics: map[string]*Family{}}
	for name, mf := range fams {
		if !Own(name) {
			continue
		}
		f := &Family{Type: strings.ToLower(mf.GetType().String()), Help: mf.GetHelp()}
		for _, m := range mf.GetMetric() {
			s := Series{Value: value(mf.GetType(), m)}
			for _, l := range m.GetLabel() {
				if s.Labels == nil {
					s.Labels = map[string]string{}
				}
				s.Labels[l.GetName()] = l.GetValue()
			}
			f.Series = append(f.Series, s)
		}
		sort.Slice(f.Series, func(i, j int) bool { return labelText(f.Series[i].Labels) < labelText(f.Series[j].Labels) })
		r.Metrics[name] = f
		if name == "xtrail_info" && len(f.Series) > 0 {
			r.Role = f.Series[0].Labels["role"]
		}
	}
	if r.Role == "" {
		return nil, errors.New("no xtrail_info: not an xtrail role's metrics")
	}
	return r, nil
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}

// labelText is a series' labels as k=v,k=v in key order.
func labelText(ls map[string]string) string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + ls[k])
	}
	return b.String()
}

// ListenSocket listens on a sensor's status socket at path, root's only:
// its directory is made 0700 if missing and the socket is 0600. A socket
// left by a sensor that died is replaced; one that answers belongs to a
// running sensor and is an error.
func ListenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("status socket %s: another sensor answers there (same pin dir?)", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("status socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket: %w", err)
	}
	return ln, nil
}
