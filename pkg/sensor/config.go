package sensor

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/sink"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// Flags are the sensor's command-line switches (Maltrail's, plus xtrail's).
// A flag wins over the configuration key it shadows.
type Flags struct {
	Interfaces string   // -i IFACE[,IFACE]; MONITOR_INTERFACE otherwise
	Pcaps      []string // -r FILE (repeatable)
	Console    bool     // --console
	XDPMode    string   // --xdp-mode; XDP_MODE otherwise
	XDPAction  string   // --xdp-action; XDP_ACTION otherwise
	PinDir     string   // --pin-dir; XDP_PIN_DIR otherwise
	Netns      string   // --netns: the interfaces live in this named network namespace
}

// Setup is a configured sensor: options for Run and the sinks to close
// after it.
type Setup struct {
	Options Options
	Sinks   *sink.Multi
}

// Configuration keys of xtrail's own, in maltrail.conf's format.
const (
	KeyD4Server       = "D4_SERVER"      // host:port of the xtrail/D4 server
	KeyD4UUID         = "D4_UUID"        // this sensor's v4 UUID
	KeyD4Key          = "D4_KEY"         // HMAC key (or D4_KEY_FILE)
	KeyD4KeyFile      = "D4_KEY_FILE"    // file holding the HMAC key
	KeyD4CA           = "D4_CA"          // CA certificate that signed the server's
	KeyD4ServerName   = "D4_SERVER_NAME" // name to verify (default: the host of D4_SERVER)
	KeyD4NoVerify     = "DISABLE_D4_TLS_VERIFY"
	KeyXDPMode        = "XDP_MODE"   // auto, native, generic
	KeyXDPAction      = "XDP_ACTION" // pass, drop
	KeyXDPPinDir      = "XDP_PIN_DIR"
	defaultTrailsFile = "~/.maltrail/trails.csv"
)

// Configure builds a sensor from maltrail.conf and the command line. Like
// Maltrail's sensor it writes LOG_DIR files unless DISABLE_LOCAL_LOG_STORAGE,
// sends to LOG_SERVER when set, and prints to stdout with --console or when
// no other output is configured; D4_SERVER adds the D4 output.
func Configure(cfg *maltrail.Config, f Flags, log *slog.Logger) (*Setup, error) {
	if log == nil {
		log = slog.Default()
	}
	o := Options{Pcaps: f.Pcaps, Logger: log}
	if f.Netns != "" {
		o.Netns = f.Netns
		if !strings.Contains(f.Netns, "/") {
			o.Netns = "/var/run/netns/" + f.Netns
		}
	}
	var err error
	if o.XDPMode, err = dataplane.ParseMode(pick(f.XDPMode, cfg.String(KeyXDPMode, ""))); err != nil {
		return nil, err
	}
	if o.Action, err = dataplane.ParseAction(pick(f.XDPAction, cfg.String(KeyXDPAction, ""))); err != nil {
		return nil, err
	}
	o.PinDir = pick(f.PinDir, cfg.String(KeyXDPPinDir, dataplane.DefaultPinDir))
	if len(o.Pcaps) == 0 {
		ifs := pick(f.Interfaces, cfg.String("MONITOR_INTERFACE", ""))
		if ifs == "" {
			return nil, errors.New("sensor: no interface: set MONITOR_INTERFACE or -i, or replay with -r")
		}
		if o.Interfaces, err = interfaces(ifs); err != nil {
			return nil, err
		}
	}
	def := defaultTrailsFile
	if _, err := os.Stat(store.DefaultPath); err == nil {
		def = store.DefaultPath // a compiled store, where trails compile puts it
	}
	o.TrailsFile = expandHome(cfg.String("TRAILS_FILE", def))
	if _, err := os.Stat(o.TrailsFile); err != nil {
		if _, set := cfg.Get("TRAILS_FILE"); set {
			return nil, fmt.Errorf("sensor: TRAILS_FILE: %w", err)
		}
		log.Warn("no trails file: the sensor keeps the trails already loaded in its pinned maps", "default", o.TrailsFile)
		o.TrailsFile = ""
	}
	period, err := cfg.Int("UPDATE_PERIOD", int(defaultUpdatePeriod/time.Second))
	if err != nil || period <= 0 {
		return nil, errors.New("sensor: UPDATE_PERIOD: want a positive number of seconds")
	}
	o.UpdatePeriod = time.Duration(period) * time.Second
	if o.Throttle, err = throttle.ParseMode(cfg.String("EVENT_THROTTLE_MODE", "")); err != nil {
		return nil, err
	}
	if o.Processes, err = cfg.Int("PROCESS_COUNT", runtime.NumCPU()); err != nil {
		return nil, fmt.Errorf("sensor: PROCESS_COUNT: %w", err)
	}
	for key, kind := range map[string]int{"SNAPLEN_DNS": dataplane.KindDNS, "SNAPLEN_HTTP": dataplane.KindHTTP,
		"SNAPLEN_TLS": dataplane.KindTLS, "SNAPLEN_QUIC": dataplane.KindQUIC} {
		n, err := cfg.Int(key, 0)
		if err != nil || n < 0 || n > dataplane.SnapMax {
			return nil, fmt.Errorf("sensor: %s: want 0..%d bytes (0 = %d)", key, dataplane.SnapMax, dataplane.SnapMax)
		}
		o.Snap[kind] = uint16(n)
	}
	// Maltrail's CAPTURE_BUFFER sizes its capture ring; the XDP ring buffer
	// is XDP_RING_SIZE.
	if o.RingSize, err = cfg.Int("XDP_RING_SIZE", 0); err != nil || (o.RingSize != 0 && (o.RingSize < 4096 || o.RingSize&(o.RingSize-1) != 0)) {
		return nil, errors.New("sensor: XDP_RING_SIZE: want a power of two of at least 4096 bytes")
	}
	if o.Scan, err = ScanOptions(cfg); err != nil { // scan.go
		return nil, err
	}
	o.Rules = NameRules{
		Whitelist:        trails.DefaultWhitelist(),
		Ignore:           &trails.IgnoreRules{},
		CheckHostDomains: cfg.Bool("CHECK_HOST_DOMAINS"),
	}
	if cutoff, err := cfg.Int("FAST_FLOW_CUTOFF", 4); err == nil {
		o.Rules.CheckSNI = cfg.Bool("USE_FAST_PREFILTER") && cutoff > 0
	}
	if f, ok := cfg.Get("USER_WHITELIST"); ok && f != "" {
		if err := o.Rules.Whitelist.LoadFile(expandHome(f)); err != nil {
			return nil, fmt.Errorf("sensor: USER_WHITELIST: %w", err)
		}
	}
	if f, ok := cfg.Get("USER_IGNORELIST"); ok && f != "" {
		if err := o.Rules.Ignore.LoadFile(expandHome(f)); err != nil {
			return nil, fmt.Errorf("sensor: USER_IGNORELIST: %w", err)
		}
	}
	name, _ := cfg.Get("SENSOR_NAME")
	o.Renderer = maltrail.Renderer{Sensor: name, Loc: time.Local}

	var sinks []sink.Sink
	closeAll := func() {
		for _, s := range sinks {
			s.Close()
		}
	}
	local := !cfg.Bool("DISABLE_LOCAL_LOG_STORAGE")
	if local {
		dir := expandHome(cfg.String("LOG_DIR", "/var/log/maltrail"))
		fs, err := sink.NewFile(dir, time.Local)
		if err != nil {
			return nil, fmt.Errorf("sensor: LOG_DIR: %w", err)
		}
		sinks = append(sinks, fs)
	}
	server, hasServer := cfg.Get("LOG_SERVER")
	if hasServer && server != "" {
		us, err := sink.NewUDP(server)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("sensor: LOG_SERVER: %w", err)
		}
		sinks = append(sinks, us)
	}
	if addr, ok := cfg.Get(KeyD4Server); ok && addr != "" {
		c, err := d4Client(cfg, addr, log)
		if err != nil {
			closeAll()
			return nil, err
		}
		o.D4 = c
		sinks = append(sinks, sink.NewD4(c))
	}
	_, syslog := cfg.Get("SYSLOG_SERVER")
	if f.Console || (!local && !hasServer && !syslog && o.D4 == nil) {
		sinks = append(sinks, sink.NewConsole(os.Stdout))
	}
	multi := sink.NewMulti(log, sinks...)
	o.Out = multi
	return &Setup{Options: o, Sinks: multi}, nil
}

func d4Client(cfg *maltrail.Config, addr string, log *slog.Logger) (*d4.Client, error) {
	id, err := d4.ParseUUID(cfg.String(KeyD4UUID, ""))
	if err != nil {
		return nil, fmt.Errorf("sensor: %s: %w", KeyD4UUID, err)
	}
	key := []byte(cfg.String(KeyD4Key, ""))
	if kf, ok := cfg.Get(KeyD4KeyFile); ok && kf != "" {
		b, err := os.ReadFile(expandHome(kf))
		if err != nil {
			return nil, fmt.Errorf("sensor: %s: %w", KeyD4KeyFile, err)
		}
		key = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("sensor: %s needs %s or %s", KeyD4Server, KeyD4Key, KeyD4KeyFile)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sensor: %s %q: %w", KeyD4Server, addr, err)
	}
	tc := &tls.Config{ServerName: cfg.String(KeyD4ServerName, host), MinVersion: tls.VersionTLS12}
	if ca, ok := cfg.Get(KeyD4CA); ok && ca != "" {
		if tc.RootCAs, err = certs.LoadPool(expandHome(ca)); err != nil {
			return nil, fmt.Errorf("sensor: %s: %w", KeyD4CA, err)
		}
	} else if cfg.Bool(KeyD4NoVerify) {
		log.Warn("D4 server certificate is NOT verified (DISABLE_D4_TLS_VERIFY): anyone on the path can read and replay events")
		tc.InsecureSkipVerify = true
	}
	c, err := d4.NewClient(d4.ClientConfig{Addr: addr, UUID: id, Key: key, MetaType: "maltrail", TLS: tc, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("sensor: D4 client: %w", err)
	}
	return c, nil
}

func pick(flag, conf string) string {
	if flag != "" {
		return flag
	}
	return conf
}

// interfaces splits IFACE[,IFACE]; "any" (Maltrail's capture-everything
// value) means every interface that is up, except loopback.
func interfaces(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if name != "any" {
			out = append(out, name)
			continue
		}
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("sensor: list interfaces for MONITOR_INTERFACE any: %w", err)
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagUp != 0 && a.Flags&net.FlagLoopback == 0 {
				out = append(out, a.Name)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sensor: no interface to attach to in %q", s)
	}
	return out, nil
}

func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, p[2:])
		}
	}
	return p
}
