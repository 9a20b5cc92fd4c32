package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
	"github.com/xtrail/xtrail/pkg/metrics"
)

func runServer(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "sensors" {
		return runSensors(ctx, args[1:])
	}
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	listen := fs.String("listen", d4server.DefaultAddr, "TLS listen address")
	listenQUIC := fs.String("listen-quic", "", "QUIC (UDP) listen address, ALPN d4, with acknowledgements (default: the address of -listen, over UDP; off: none)")
	cert := fs.String("cert", "", "server certificate (PEM; `xtrail gencert` makes one)")
	key := fs.String("key", "", "server key (PEM; empty: the -cert file holds both, like d4-core's server.pem)")
	var rf redisFlags
	rf.register(fs)
	mode := fs.String("mode", d4server.ModeRegistration, "registration (only registered sensors) or shared-secret (any v4 UUID with the default key)")
	defKey := fs.String("default-key", "", "HMAC key of sensors without their own key (with -redis: also written to server:hmac_default_key)")
	defKeyFile := fs.String("default-key-file", "", "file holding the default HMAC key")
	keysFile := fs.String("keys", "", "sensor keys file, lines `<uuid> <key>` (with -redis: registered in Redis at start; `xtrail server sensors` manages them there)")
	var exports listFlag
	fs.Var(&exports, "export", "built-in exporter maltrail=HOST:PORT (repeatable)")
	exportRate := fs.Float64("export-rate", 0, "lines per second at most per built-in exporter (0: no limit; a receiver on this host that overflows is detected and paced; 20000 suits Maltrail's Python collector on another host)")
	cfg := d4server.Config{}
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", d4server.DefaultIdleTimeout, "close a connection silent this long before its first frame verified or inside a frame")
	fs.DurationVar(&cfg.FrameTimeout, "frame-timeout", d4server.DefaultFrameTimeout, "deadline of one whole frame (and of a connection's first frame)")
	fs.DurationVar(&cfg.SessionIdleTimeout, "session-idle-timeout", 0, "close an authenticated session silent this long between frames (0: never, as d4-core)")
	fs.DurationVar(&cfg.TimeWindow, "time-window", d4server.DefaultTimeWindow, "accepted distance of a frame's timestamp from the server's clock")
	fs.IntVar(&cfg.MaxConns, "max-conns", d4server.DefaultMaxConns, "open connections, overall")
	fs.IntVar(&cfg.MaxConnsPerSource, "max-conns-per-source", d4server.DefaultMaxConnsPerSource, "open connections per IPv4 address or IPv6 /64")
	fs.IntVar(&cfg.MaxConnsPerSensor, "max-conns-per-sensor", d4server.DefaultMaxConnsPerSensor, "authenticated sessions per sensor (a newer one closes the oldest)")
	fs.Int64Var(&cfg.MaxUnauthBytes, "max-unauth-bytes", d4server.DefaultMaxUnauthBytes, "payload bytes buffered for not yet authenticated peers, all together")
	fs.Int64Var(&cfg.SensorRate, "sensor-rate", d4server.DefaultSensorRate, "payload bytes/s per sensor; beyond it frames wait (-1: unlimited)")
	maxPayload := fs.Uint("max-payload", d4.MaxPayload, "largest frame payload")
	fs.BoolVar(&cfg.DropUnrouted, "drop-unrouted", false, "drop lines no queue receives, as d4-core (default: hold them until a queue is registered)")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	metricsAddr := metricsFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := notNegative(fs, "idle-timeout", "frame-timeout", "session-idle-timeout", "time-window", "max-conns",
		"max-conns-per-source", "max-conns-per-sensor", "max-unauth-bytes", "export-rate", "analyzer-db", "redis-replica-timeout"); err != nil {
		return err
	}
	if cfg.SensorRate < -1 {
		return fmt.Errorf("-sensor-rate %d: want bytes/s, or -1 for no limit", cfg.SensorRate)
	}
	log := newLogger(*quiet)
	if *cert == "" {
		return errors.New("-cert is required (make a pair with `xtrail gencert -dir DIR -hosts NAME,IP`)")
	}
	if *maxPayload == 0 || *maxPayload > d4.MaxPayload {
		return fmt.Errorf("-max-payload %d: want 1..%d", *maxPayload, d4.MaxPayload)
	}
	cfg.MaxPayload = uint32(*maxPayload)
	mln, err := listenMetrics(*metricsAddr, log)
	if err != nil {
		return err
	}
	if mln != nil {
		defer mln.Close()
	}
	dk := []byte(*defKey)
	if *defKeyFile != "" {
		b, err := os.ReadFile(*defKeyFile)
		if err != nil {
			return err
		}
		dk = []byte(strings.TrimRight(string(b), "\r\n"))
	}

	var (
		store   d4server.Store
		queueOf func(metaType, q string) export.Queue
		nKeys   int // sensors of the -keys file
	)
	if rf.metadata == "" {
		log.Warn("NO --redis: events are kept in this process only and are LOST if it stops; use --redis in production")
		var keys map[string][]byte
		if *keysFile != "" {
			var err error
			if keys, err = d4server.LoadKeys(*keysFile); err != nil {
				return err
			}
		}
		nKeys = len(keys)
		reg, err := d4server.NewStaticRegistry(*mode, dk, keys)
		if err != nil {
			return err
		}
		cfg.Registry = reg
		ms := d4server.NewMemStore(0)
		store = ms
		queueOf = func(t, q string) export.Queue { return ms.Queue(t, q, d4server.Consumer(serverConsumer())) }
	} else {
		rs, err := rf.open(log)
		if err != nil {
			return err
		}
		if err := rs.Ping(ctx); err != nil {
			return err
		}
		log.Info("Redis store", "cluster", rs.Cluster(), "replicas_waited_for", rs.Replicas())
		if *keysFile != "" {
			// Sensors live in Redis; a key file registers its sensors there
			// at every start (so a key rotated in Redis is reset by it), and
			// again whenever Redis is found emptied.
			keys, err := d4server.LoadKeys(*keysFile)
			if err != nil {
				return err
			}
			for u, k := range keys {
				if err := rs.KeepSensor(ctx, u, string(k)); err != nil {
					return fmt.Errorf("-keys %s: %w", *keysFile, err)
				}
			}
			nKeys = len(keys)
			log.Info("sensors from the key file registered in Redis", "file", *keysFile, "sensors", len(keys))
		}
		if len(dk) > 0 {
			if err := rs.SetDefaultKey(ctx, string(dk)); err != nil {
				return err
			}
		}
		reg, err := rs.Registry(*mode, dk)
		if err != nil {
			return err
		}
		cfg.Registry = reg
		store = rs
		queueOf = func(t, q string) export.Queue { return rs.Queue(t, q, d4server.Consumer(serverConsumer())) }
	}
	defer store.Close()
	if err := store.Init(ctx); err != nil {
		return err
	}
	cfg.Store, cfg.Logger = store, log
	srv, err := d4server.New(cfg)
	if err != nil {
		return err
	}
	ln, err := d4server.ListenTLS(*listen, *cert, *key)
	if err != nil {
		return err
	}
	log.Info("D4 server listening", "addr", ln.Addr().String(), "mode", *mode, "sensors", nKeys)
	var qln *d4server.QUICListener
	if *listenQUIC != "off" {
		addr := *listenQUIC
		if addr == "" {
			addr = ln.Addr().String() // the same host and port, over UDP
		}
		if qln, err = srv.ListenQUIC(addr, *cert, *key); err != nil {
			ln.Close()
			return err
		}
		defer qln.Close()
		log.Info("D4 server listening on QUIC", "addr", qln.Addr().String())
	}

	g, gctx := errgroup.WithContext(ctx)
	exporters := &metrics.Exporters{}
	for _, spec := range exports {
		metaType, dest, ok := strings.Cut(spec, "=")
		if !ok || metaType != d4server.MetaTypeMaltrail {
			ln.Close()
			return fmt.Errorf("-export %q: want maltrail=HOST:PORT", spec)
		}
		host, port, err := splitHostPort(dest)
		if err != nil {
			ln.Close()
			return fmt.Errorf("-export %q: %w", spec, err)
		}
		q, err := store.RegisterQueue(ctx, metaType, export.QueueUUIDFor(metaType+"="+dest), "xtrail server --export "+spec)
		if err != nil {
			ln.Close()
			return err
		}
		conn, err := export.DialUDP(ctx, host, port)
		if err != nil {
			ln.Close()
			return err
		}
		log.Info("exporting", "queue", q, "to", dest)
		e := export.New(export.Config{Queue: queueOf(metaType, q), Target: conn, Rate: *exportRate, Logger: log})
		exporters.Add(q, e)
		g.Go(func() error {
			defer conn.Close()
			defer logExportStats(log, e.Stats())
			return e.Run(gctx)
		})
	}
	sm := &metrics.Server{Stats: srv.Stats}
	if rs, ok := store.(*d4server.RedisStore); ok {
		sm.Redis = rs.Stats
	}
	if err := serveMetrics(gctx, g, mln, metrics.RoleServer, log, sm, exporters); err != nil {
		ln.Close()
		return err
	}
	g.Go(func() error { return srv.Serve(gctx, ln) })
	if qln != nil {
		g.Go(func() error { return srv.ServeQUIC(gctx, qln) })
	}
	err = g.Wait()
	logServerStats(log, srv.Stats())
	if rs, ok := store.(*d4server.RedisStore); ok {
		st := rs.Stats()
		if st.Restores > 0 {
			log.Warn("Redis was found emptied during the run; registrations were written again", "times", st.Restores)
		}
		log.Info("Redis store counters", "cluster", rs.Cluster(), "replicas_waited_for", rs.Replicas(),
			"replica_wait_timeouts", st.ReplicaWaits, "restores", st.Restores)
	}
	return err
}

// serverConsumer names the built-in exporters among their queue's consumers:
// one per host, the same across restarts.
func serverConsumer() string {
	h, _ := os.Hostname()
	return "server@" + h
}

// redisFlags are the Redis locations of d4-core's layout (one instance by
// default).
type redisFlags struct {
	metadata, analyzer, stream string
	analyzerDB                 int
	replicas                   int
	replicaTimeout             time.Duration
}

func (f *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.metadata, "redis", "", "Redis URL of the metadata db (d4-core's Redis_METADATA), e.g. redis://127.0.0.1:6380/0, or a Redis Cluster as redis://HOST:PORT?addr=HOST:PORT&addr=HOST:PORT (empty: in-process store, NOT durable)")
	fs.IntVar(&f.analyzerDB, "analyzer-db", d4server.DefaultAnalyzerDB, "db of the analyzer queues on the -redis server (d4-core: 2; a cluster has db 0 only)")
	fs.IntVar(&f.replicas, "redis-replicas", -1, "replicas that must hold a frame's lines (WAIT) before it counts as stored and is acknowledged (-1: 1 on a cluster, 0 on a single server)")
	fs.DurationVar(&f.replicaTimeout, "redis-replica-timeout", d4server.DefaultReplicaTimeout, "one WAIT for replicas; a wait that times out is repeated, counted and logged")
	fs.StringVar(&f.analyzer, "redis-analyzer", "", "Redis URL of the analyzer queues, if not on the -redis server (overrides -analyzer-db)")
	fs.StringVar(&f.stream, "redis-stream", "", "Redis URL of session and replay state (d4-core's Redis_STREAM, e.g. redis://127.0.0.1:6379/0); empty: the -redis db")
}

func (f *redisFlags) open(log *slog.Logger) (*d4server.RedisStore, error) {
	if f.replicas < -1 {
		return nil, fmt.Errorf("-redis-replicas %d: want -1 (1 on a cluster, 0 on a single server), 0 or more", f.replicas)
	}
	return d4server.OpenRedis(d4server.RedisConfig{
		Metadata: f.metadata, Analyzer: f.analyzer, AnalyzerDB: f.analyzerDB, Stream: f.stream,
		Replicas: f.replicas, ReplicaTimeout: f.replicaTimeout, Logger: log,
	})
}

func logServerStats(log *slog.Logger, st d4server.Stats) {
	// New counters go last: operators' scripts match the line's start.
	args := []any{"conns", st.Conns, "frames", st.Frames, "lines", st.Lines,
		"unrouted_lines", st.Unrouted, "unrouted_dropped", st.UnroutedDropped, "throttled_frames", st.Throttled,
		"already_stored_frames", st.AlreadyStored, "claim_waits", st.ClaimWaits, "claims_taken_over", st.ClaimsTakenOver,
		"read_errors", st.ReadErrors, "store_errors", st.StoreErrors, "panics", st.Panics, "sessions_open", st.Sessions}
	for reason, n := range st.Rejected {
		if n > 0 {
			args = append(args, "rejected_"+strings.ReplaceAll(reason, " ", "_"), n)
		}
	}
	log.Info("D4 server counters", args...)
}

func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}
