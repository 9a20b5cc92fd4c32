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
	"slices"
	"strconv"
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
	// MetricsAddr is METRICS_ADDRESS, where the command serves /metrics
	// ("" = off).
	MetricsAddr string
}

// Configuration keys of xtrail's own, in maltrail.conf's format.
const (
	KeyD4Server       = "D4_SERVER"        // host:port of the xtrail/D4 server; several, space-separated, for failover
	KeyD4UUID         = "D4_UUID"          // this sensor's v4 UUID
	KeyD4Key          = "D4_KEY"           // HMAC key (or D4_KEY_FILE)
	KeyD4KeyFile      = "D4_KEY_FILE"      // file holding the HMAC key
	KeyD4CA           = "D4_CA"            // CA certificate that signed the server's
	KeyD4ServerSHA256 = "D4_SERVER_SHA256" // pinned SHA-256 fingerprint(s) of the server certificate
	KeyD4ServerName   = "D4_SERVER_NAME"   // name to verify (default: the host of each D4_SERVER entry)
	KeyD4NoVerify     = "DISABLE_D4_TLS_VERIFY"
	KeyD4Transport    = "D4_TRANSPORT"      // tls (default) or quic
	KeyD4SpoolDir     = "D4_SPOOL_DIR"      // on-disk spool of undelivered events
	KeyD4SpoolMax     = "D4_SPOOL_MAX"      // bytes; the oldest events are dropped beyond
	KeyD4KeepAlive    = "D4_KEEPALIVE"      // seconds an idle connection stays silent
	KeyD4ReplayWait   = "D4_REPLAY_TIMEOUT" // seconds a replay waits for its events to be delivered
	DefaultD4SpoolDir = "/var/lib/xtrail/spool"
	KeyXDPMode        = "XDP_MODE"   // auto, native, generic
	KeyXDPAction      = "XDP_ACTION" // pass, drop
	KeyXDPPinDir      = "XDP_PIN_DIR"
	KeyXDPRingSize    = "XDP_RING_SIZE"   // ring buffer bytes
	KeyMetricsAddress = "METRICS_ADDRESS" // Prometheus /metrics listen address; unset = off
	defaultTrailsFile = "~/.maltrail/trails.csv"
)

// ownKeys are the keys of xtrail's own name spaces (ownPrefixes). A key
// with one of those prefixes that is not listed here is a typo, and an
// error at start: silently ignoring "XDP_ACTON drop" would pass mirrored
// traffic to the host. A new key of those prefixes must be listed here.
var ownKeys = []string{
	KeyD4Server, KeyD4UUID, KeyD4Key, KeyD4KeyFile, KeyD4CA, KeyD4ServerName,
	KeyD4ServerSHA256, KeyD4Transport, KeyD4SpoolDir, KeyD4SpoolMax, KeyD4KeepAlive, KeyD4ReplayWait,
	KeyXDPMode, KeyXDPAction, KeyXDPPinDir, KeyXDPRingSize, KeyMetricsAddress,
	"SNAPLEN_DNS", "SNAPLEN_HTTP", "SNAPLEN_TLS", "SNAPLEN_QUIC",
	"TRAILS_FEEDS", "TRAILS_FEED_DIR", // read by `xtrail trails update -c`
}

var ownPrefixes = []string{"D4_", "XDP_", "SNAPLEN_", "TRAILS_FEED", "METRICS_"}

// maxRingSize bounds XDP_RING_SIZE: a larger ring is kernel memory no
// agent needs (the default 8 MiB holds thousands of full snapshots).
const maxRingSize = 1 << 30

// process is what Configure takes from the process: tests replace it.
type process struct {
	stdout   *os.File // the console output
	hostname func() (string, error)
}

// Configure builds a sensor from maltrail.conf and the command line, with
// the checks and defaults of docs/configuration.md: a value a key does not
// allow stops the sensor here, with the key, where it was set, the value
// and what is allowed. Like Maltrail's sensor it writes LOG_DIR files
// unless DISABLE_LOCAL_LOG_STORAGE, sends to LOG_SERVER, SYSLOG_SERVER and
// LOGSTASH_SERVER when set, and D4_SERVER adds the D4 output. Events go to
// standard output with --console, or when no other output is configured.
func Configure(cfg *maltrail.Config, f Flags, log *slog.Logger) (*Setup, error) {
	return configure(cfg, f, log, process{stdout: os.Stdout, hostname: os.Hostname})
}

func configure(cfg *maltrail.Config, f Flags, log *slog.Logger, h process) (*Setup, error) {
	if log == nil {
		log = slog.Default()
	}
	k := keys{cfg}
	if err := k.checkOwnKeys(); err != nil {
		return nil, err
	}
	o := Options{Pcaps: f.Pcaps, Logger: log}
	steps := []func() error{
		func() error { return k.dataplane(f, &o) },
		func() error { return k.trails(&o, log) },
		func() error { return k.suppression(&o) },
		func() error { return k.rules(&o) },
		func() (err error) {
			if _, err = k.boolean(KeyUseHeuristics); err == nil { // ScanOptions reads it as Maltrail does
				o.Scan, err = ScanOptions(k.cfg) // scan.go
			}
			return err
		},
		func() (err error) { o.Heuristics, err = k.heuristics(o.Scan); return err }, // heurconfig.go
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	metricsAddr, err := k.listenAddr(KeyMetricsAddress)
	if err != nil {
		return nil, err
	}
	o.Renderer = maltrail.Renderer{Sensor: sensorName(cfg), Loc: time.Local}
	sinks, err := k.outputs(f, &o, log, h)
	if err != nil {
		return nil, err
	}
	multi := sink.NewMulti(log, sinks...)
	o.Out = multi
	return &Setup{Options: o, Sinks: multi, MetricsAddr: metricsAddr}, nil
}

// listenAddr reads a TCP listen address: host:port, [v6]:port or :port,
// port 0 to 65535; absent or empty is "".
func (k keys) listenAddr(key string) (string, error) {
	v := k.cfg.String(key, "")
	if v == "" {
		return "", nil
	}
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return "", k.bad(key, v, "host:port, [v6]:port or :port (every address), port 0 to 65535, empty for none")
	}
	return v, nil
}

// keys reads maltrail.conf values with their checks.
type keys struct{ cfg *maltrail.Config }

// bad is the error for a value key does not allow.
func (k keys) bad(key, value, allowed string) error {
	where := ""
	if w := k.cfg.Where(key); w != "" {
		where = w + ": "
	}
	return fmt.Errorf("sensor: %s%s %q: want %s", where, key, value, allowed)
}

// wrap names key, where it was set and its value in err.
func (k keys) wrap(key string, err error) error {
	v, _ := k.cfg.Get(key)
	return k.at(key, fmt.Errorf("%s %q: %w", key, v, err))
}

// at says where key was set in err, which names the key and value already.
func (k keys) at(key string, err error) error {
	if w := k.cfg.Where(key); w != "" {
		return fmt.Errorf("sensor: %s: %w", w, err)
	}
	return fmt.Errorf("sensor: %w", err)
}

// boolean reads a switch as Maltrail does ("1" and "true", in any case,
// are true; absent or empty is false), except that a value which is
// neither true nor false is an error: Maltrail reads "yes" as false.
func (k keys) boolean(key string) (bool, error) {
	v, _ := k.cfg.Get(key)
	switch strings.ToLower(v) {
	case "1", "true":
		return true, nil
	case "", "0", "false":
		return false, nil
	}
	return false, k.bad(key, v, "true or false (1 or 0)")
}

// integer reads a decimal integer in [lo, hi]; absent or empty is def.
func (k keys) integer(key string, def, lo, hi int, allowed string) (int, error) {
	v, _ := k.cfg.Get(key)
	n, err := k.cfg.Int(key, def)
	if err != nil || (v != "" && (n < lo || n > hi)) {
		return 0, k.bad(key, v, allowed)
	}
	return n, nil
}

// choice reads one of a few words, in any case; absent or empty is "".
func (k keys) choice(key string, parse func(string) error, allowed string) error {
	v, _ := k.cfg.Get(key)
	if parse(strings.ToLower(v)) != nil {
		return k.bad(key, v, allowed)
	}
	return nil
}

// shadowed is choice for a key a command-line flag shadows: a flag value
// given wins.
func (k keys) shadowed(flag, flagValue, key string, parse func(string) error, allowed string) error {
	if flagValue == "" {
		return k.choice(key, parse, allowed)
	}
	if err := parse(strings.ToLower(flagValue)); err != nil {
		return fmt.Errorf("sensor: %s: %w", flag, err)
	}
	return nil
}

// checkOwnKeys refuses a key of xtrail's name spaces that xtrail does not
// know.
func (k keys) checkOwnKeys() error {
	for _, key := range k.cfg.Keys() {
		for _, p := range ownPrefixes {
			if strings.HasPrefix(key, p) && !slices.Contains(ownKeys, key) {
				where := ""
				if w := k.cfg.Where(key); w != "" {
					where = w + ": "
				}
				return fmt.Errorf("sensor: %sunknown key %s: xtrail's keys are %s", where, key, strings.Join(ownKeys, ", "))
			}
		}
	}
	return nil
}

// dataplane reads XDP_MODE, XDP_ACTION, XDP_PIN_DIR, MONITOR_INTERFACE,
// XDP_RING_SIZE and SNAPLEN_*, and the flags that shadow them.
func (k keys) dataplane(f Flags, o *Options) error {
	if f.Netns != "" {
		o.Netns = f.Netns
		if !strings.Contains(f.Netns, "/") {
			o.Netns = "/var/run/netns/" + f.Netns
		}
	}
	if err := k.shadowed("--xdp-mode", f.XDPMode, KeyXDPMode, func(v string) (err error) { o.XDPMode, err = dataplane.ParseMode(v); return err },
		"auto, native or generic"); err != nil {
		return err
	}
	if err := k.shadowed("--xdp-action", f.XDPAction, KeyXDPAction, func(v string) (err error) { o.Action, err = dataplane.ParseAction(v); return err },
		"pass or drop"); err != nil {
		return err
	}
	o.PinDir = f.PinDir
	if o.PinDir == "" {
		o.PinDir = dataplane.DefaultPinDir
		if v, ok := k.cfg.Get(KeyXDPPinDir); ok {
			if !filepath.IsAbs(v) {
				return k.bad(KeyXDPPinDir, v, "an absolute path in a bpf file system (default "+dataplane.DefaultPinDir+")")
			}
			o.PinDir = filepath.Clean(v)
		}
	}
	if len(o.Pcaps) == 0 {
		ifs := f.Interfaces
		if ifs == "" {
			ifs = k.cfg.String("MONITOR_INTERFACE", "")
		}
		if ifs == "" {
			return errors.New("sensor: no interface: set MONITOR_INTERFACE or -i, or replay with -r")
		}
		var err error
		if o.Interfaces, err = interfaces(ifs); err != nil {
			return err
		}
	}
	// Maltrail's CAPTURE_BUFFER sizes its capture ring; the XDP ring buffer
	// is XDP_RING_SIZE.
	if v, ok := k.cfg.Get(KeyXDPRingSize); ok && v != "" {
		n, err := parseSize(v)
		if err != nil || n < 4096 || n > maxRingSize || n&(n-1) != 0 {
			return k.bad(KeyXDPRingSize, v, "a power of two from 4096 to 1G bytes (K, M, G: 1024-based), default 8M")
		}
		o.RingSize = n
	}
	for _, s := range [...]struct {
		key  string
		kind int
	}{{"SNAPLEN_DNS", dataplane.KindDNS}, {"SNAPLEN_HTTP", dataplane.KindHTTP}, {"SNAPLEN_TLS", dataplane.KindTLS}, {"SNAPLEN_QUIC", dataplane.KindQUIC}} {
		n, err := k.integer(s.key, 0, 0, dataplane.SnapMax, fmt.Sprintf("0 to %d bytes (0 = %d)", dataplane.SnapMax, dataplane.SnapMax))
		if err != nil {
			return err
		}
		o.Snap[s.kind] = uint16(n)
	}
	return nil
}

// parseSize reads a byte count: digits, optionally followed by K, M or G
// (also KB/KiB, MB/MiB, GB/GiB, any case), each 1024 times the one before.
func parseSize(v string) (int, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	mult := 1
	for _, u := range [...]struct {
		suffix string
		mult   int
	}{{"KIB", 1 << 10}, {"KB", 1 << 10}, {"K", 1 << 10}, {"MIB", 1 << 20}, {"MB", 1 << 20}, {"M", 1 << 20},
		{"GIB", 1 << 30}, {"GB", 1 << 30}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 31) // at most 2^31 * 2^30: no overflow
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", v, err)
	}
	return int(n) * mult, nil
}

// trails reads TRAILS_FILE and UPDATE_PERIOD.
func (k keys) trails(o *Options, log *slog.Logger) error {
	def := defaultTrailsFile
	if _, err := os.Stat(store.DefaultPath); err == nil {
		def = store.DefaultPath // a compiled store, where trails compile puts it
	}
	v, set := k.cfg.Get("TRAILS_FILE")
	if set && v == "" {
		return k.bad("TRAILS_FILE", v, "a trails.csv (.gz too) or a compiled store (.xts)")
	}
	o.TrailsFile = expandHome(k.cfg.String("TRAILS_FILE", def))
	st, err := os.Stat(o.TrailsFile)
	switch {
	case err != nil && set:
		return k.wrap("TRAILS_FILE", err)
	case err != nil:
		log.Warn("no trails file: the sensor keeps the trails already loaded in its pinned maps", "default", o.TrailsFile)
		o.TrailsFile = ""
	case !st.Mode().IsRegular():
		return k.bad("TRAILS_FILE", o.TrailsFile, "a trails.csv (.gz too) or a compiled store (.xts), not a directory or device")
	}
	period, err := k.integer("UPDATE_PERIOD", int(defaultUpdatePeriod/time.Second), 1, 1<<31-1, "a positive number of seconds (default 86400)")
	if err != nil {
		return err
	}
	o.UpdatePeriod = time.Duration(period) * time.Second
	return nil
}

// suppression reads EVENT_THROTTLE_MODE and PROCESS_COUNT.
func (k keys) suppression(o *Options) error {
	if err := k.choice("EVENT_THROTTLE_MODE", func(v string) (err error) { o.Throttle, err = throttle.ParseMode(v); return err },
		"summarize, legacy or off"); err != nil {
		return err
	}
	// 0 or empty is the CPU count, as Maltrail's int(PROCESS_COUNT or CPU_CORES).
	n, err := k.integer("PROCESS_COUNT", 0, 0, 1<<31-1, "a number of processes, 0 for the CPU count")
	if err != nil {
		return err
	}
	if n == 0 {
		n = runtime.NumCPU()
	}
	o.Processes = n
	return nil
}

// rules reads CHECK_HOST_DOMAINS, USE_FAST_PREFILTER, FAST_FLOW_CUTOFF,
// USER_WHITELIST and USER_IGNORELIST.
func (k keys) rules(o *Options) error {
	o.Rules = NameRules{Whitelist: trails.DefaultWhitelist(), Ignore: &trails.IgnoreRules{}}
	var err error
	if o.Rules.CheckHostDomains, err = k.boolean("CHECK_HOST_DOMAINS"); err != nil {
		return err
	}
	prefilter, err := k.boolean("USE_FAST_PREFILTER")
	if err != nil {
		return err
	}
	cutoff, err := k.integer("FAST_FLOW_CUTOFF", 4, 0, 1<<31-1, "a number of packets, 0 to turn the SNI check off (default 4)")
	if err != nil {
		return err
	}
	o.Rules.CheckSNI = prefilter && cutoff > 0
	for _, f := range fileList(k.cfg, "USER_WHITELIST") { // filelist.go
		if err := o.Rules.Whitelist.LoadFile(expandHome(f)); err != nil {
			return k.wrap("USER_WHITELIST", err)
		}
	}
	if f, ok := k.cfg.Get("USER_IGNORELIST"); ok && f != "" {
		if err := o.Rules.Ignore.LoadFile(expandHome(f)); err != nil {
			return k.wrap("USER_IGNORELIST", err)
		}
	}
	return nil
}

// sensorName is SENSOR_NAME as Maltrail writes it: a value of digits
// only is an int there, so "007" is written "7" and "0" as "-".
func sensorName(cfg *maltrail.Config) string {
	name, _ := cfg.Get("SENSOR_NAME")
	if name != "" && strings.Trim(name, "0123456789") == "" {
		return strings.TrimLeft(name, "0")
	}
	return name
}

// outputs builds the sinks: LOG_DIR, LOG_SERVER, D4_SERVER, SYSLOG_SERVER,
// LOGSTASH_SERVER, and the console with --console or when there is no
// other output. With D4 it sets o.D4.
func (k keys) outputs(f Flags, o *Options, log *slog.Logger, h process) (_ []sink.Sink, err error) {
	var sinks []sink.Sink
	defer func() {
		if err != nil {
			for _, s := range sinks {
				s.Close()
			}
		}
	}()
	noLocal, err := k.boolean("DISABLE_LOCAL_LOG_STORAGE")
	if err != nil {
		return nil, err
	}
	if !noLocal {
		v, set := k.cfg.Get("LOG_DIR")
		if set && v == "" {
			return nil, k.bad("LOG_DIR", v, "a directory (default /var/log/maltrail)")
		}
		fs, err := sink.NewFile(expandHome(k.cfg.String("LOG_DIR", "/var/log/maltrail")), time.Local)
		if err != nil {
			return nil, k.wrap("LOG_DIR", err)
		}
		sinks = append(sinks, fs)
	}
	if v := k.cfg.String("LOG_SERVER", ""); v != "" {
		us, err := sink.NewUDP(v)
		if err != nil {
			return nil, k.at("LOG_SERVER", err)
		}
		sinks = append(sinks, us)
	}
	if addr := k.cfg.String(KeyD4Server, ""); addr != "" {
		wait, err := k.integer(KeyD4ReplayWait, int(defaultReplayWait/time.Second), 1, 1<<31-1, "a positive number of seconds (default 60)")
		if err != nil {
			return nil, err
		}
		o.D4ReplayWait = time.Duration(wait) * time.Second
		c, err := d4Client(k.cfg, addr, log)
		if err != nil {
			return nil, err
		}
		o.D4 = c
		sinks = append(sinks, sink.NewD4(c))
	} else if set := k.setOf(KeyD4UUID, KeyD4Key, KeyD4KeyFile, KeyD4CA, KeyD4ServerName, KeyD4ServerSHA256,
		KeyD4Transport, KeyD4SpoolDir, KeyD4SpoolMax, KeyD4KeepAlive, KeyD4ReplayWait); len(set) > 0 {
		log.Warn("D4 keys are set but D4_SERVER is not: no D4 output", "keys", set)
	}
	remote, err := k.remoteOutputs(o, h)
	sinks = append(sinks, remote...)
	if err != nil {
		return nil, err
	}
	// Maltrail's console fallback is "local storage off and neither
	// LOG_SERVER nor SYSLOG_SERVER"; here any output counts (see
	// docs/configuration.md), so no configuration is left without one.
	if f.Console || len(sinks) == 0 {
		if len(sinks) == 0 {
			log.Info("no other output is configured: events go to standard output")
		}
		if vanish(h.stdout) && len(sinks) == 0 {
			return nil, errors.New("sensor: no output: DISABLE_LOCAL_LOG_STORAGE is set, none of LOG_SERVER, SYSLOG_SERVER, " +
				"LOGSTASH_SERVER and D4_SERVER is, and standard output (the console fallback) is /dev/null or closed: every event would be lost")
		}
		sinks = append(sinks, sink.NewConsole(h.stdout))
	}
	return sinks, nil
}

// remoteOutputs builds the SYSLOG_SERVER and LOGSTASH_SERVER sinks, rated by
// REMOTE_SEVERITY_REGEX.
func (k keys) remoteOutputs(o *Options, h process) (_ []sink.Sink, err error) {
	expr, set := k.cfg.Get("REMOTE_SEVERITY_REGEX")
	if !set {
		expr = sink.DefaultSeverityRegex
	}
	sev, err := sink.NewSeverity(expr)
	if err != nil {
		return nil, k.wrap("REMOTE_SEVERITY_REGEX", err)
	}
	syslogTo, logstashTo := k.cfg.String("SYSLOG_SERVER", ""), k.cfg.String("LOGSTASH_SERVER", "")
	if syslogTo == "" && logstashTo == "" {
		return nil, nil
	}
	hostname, err := h.hostname()
	if err != nil {
		return nil, fmt.Errorf("sensor: host name for SYSLOG_SERVER and LOGSTASH_SERVER: %w", err)
	}
	var out []sink.Sink
	if syslogTo != "" {
		s, err := sink.NewSyslog(syslogTo, &sink.CEF{Host: hostname, Version: maltrail.Version, TrailsFile: o.TrailsFile, Loc: time.Local, Severity: sev})
		if err != nil {
			return nil, k.at("SYSLOG_SERVER", err)
		}
		out = append(out, s)
	}
	if logstashTo != "" {
		s, err := sink.NewLogstash(logstashTo, &sink.JSON{Host: hostname, Severity: sev})
		if err != nil {
			return out, k.at("LOGSTASH_SERVER", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// setOf returns which of keys the file sets to a non-empty value.
func (k keys) setOf(keys ...string) []string {
	var set []string
	for _, key := range keys {
		if k.cfg.String(key, "") != "" {
			set = append(set, key)
		}
	}
	return set
}

// vanish reports whether what is written to f is lost: f is /dev/null or
// not open.
func vanish(f *os.File) bool {
	st, err := f.Stat()
	if err != nil {
		return true
	}
	null, err := os.Stat(os.DevNull)
	return err == nil && os.SameFile(st, null)
}

// defaultReplayWait is D4_REPLAY_TIMEOUT's default.
const defaultReplayWait = time.Minute

// d4Client builds the D4 client of D4_SERVER (one or more host:port
// entries, space- or comma-separated) and opens its spool.
func d4Client(cfg *maltrail.Config, servers string, log *slog.Logger) (*d4.Client, error) {
	k := keys{cfg}
	id, err := d4.ParseUUID(cfg.String(KeyD4UUID, ""))
	if err != nil {
		return nil, k.at(KeyD4UUID, fmt.Errorf("%s: %w", KeyD4UUID, err))
	}
	key := []byte(cfg.String(KeyD4Key, ""))
	if kf, ok := cfg.Get(KeyD4KeyFile); ok && kf != "" {
		b, err := os.ReadFile(expandHome(kf))
		if err != nil {
			return nil, k.wrap(KeyD4KeyFile, err)
		}
		key = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("sensor: %s needs %s or %s (a non-empty HMAC key)", KeyD4Server, KeyD4Key, KeyD4KeyFile)
	}
	addrs := strings.FieldsFunc(servers, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, k.bad(KeyD4Server, servers, "host:port entries separated by spaces")
		}
	}
	transport := strings.ToLower(cfg.String(KeyD4Transport, d4.TransportTLS))
	if err := k.choice(KeyD4Transport, func(v string) error {
		if v != "" && v != d4.TransportTLS && v != d4.TransportQUIC {
			return errors.New("unknown transport")
		}
		return nil
	}, "tls or quic"); err != nil {
		return nil, err
	}
	tc, err := d4TLS(cfg, log)
	if err != nil {
		return nil, err
	}
	spoolMax, err := k.integer(KeyD4SpoolMax, d4.DefaultSpoolMax, 64<<10, 1<<62, "a number of bytes, at least 65536")
	if err != nil {
		return nil, err
	}
	keepAlive, err := k.integer(KeyD4KeepAlive, int(d4.DefaultKeepAlive/time.Second), 1, 3600, "1 to 3600 seconds")
	if err != nil {
		return nil, err
	}
	spoolDir := cfg.String(KeyD4SpoolDir, DefaultD4SpoolDir)
	if spoolDir == "" {
		spoolDir = DefaultD4SpoolDir
	}
	c, err := d4.NewClient(d4.ClientConfig{Servers: addrs, Transport: transport,
		UUID: id, Key: key, MetaType: "maltrail", TLS: tc, KeepAlive: time.Duration(keepAlive) * time.Second, Logger: log,
		Spool: d4.SpoolConfig{Dir: expandHome(spoolDir), Max: int64(spoolMax)}})
	if err != nil {
		return nil, k.at(KeyD4SpoolDir, fmt.Errorf("D4 client: %w", err))
	}
	return c, nil
}

// d4TLS is how the sensor authenticates the server: by default against the
// system's CAs; D4_CA names the CA instead; D4_SERVER_SHA256 pins the
// certificate (alone, or on top of D4_CA); DISABLE_D4_TLS_VERIFY turns
// verification off, explicitly.
func d4TLS(cfg *maltrail.Config, log *slog.Logger) (*tls.Config, error) {
	k := keys{cfg}
	noVerify, err := k.boolean(KeyD4NoVerify)
	if err != nil {
		return nil, err
	}
	// An empty ServerName makes the client verify each D4_SERVER entry's host.
	tc := &tls.Config{ServerName: cfg.String(KeyD4ServerName, ""), MinVersion: tls.VersionTLS12}
	ca := cfg.String(KeyD4CA, "")
	pins := cfg.String(KeyD4ServerSHA256, "")
	if ca != "" {
		if tc.RootCAs, err = certs.LoadPool(expandHome(ca)); err != nil {
			return nil, k.wrap(KeyD4CA, err)
		}
	}
	if pins != "" {
		fps, err := d4.ParseFingerprints(pins)
		if err != nil {
			return nil, k.wrap(KeyD4ServerSHA256, err)
		}
		d4.PinServer(tc, fps, ca != "")
	}
	if noVerify {
		if ca != "" || pins != "" {
			log.Warn("DISABLE_D4_TLS_VERIFY ignored: D4_CA or D4_SERVER_SHA256 is set")
		} else {
			log.Warn("D4 server certificate is NOT verified (DISABLE_D4_TLS_VERIFY): anyone on the path can read and replay events")
			tc.InsecureSkipVerify = true
		}
	}
	return tc, nil
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
