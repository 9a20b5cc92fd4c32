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

	"golang.org/x/sync/errgroup"

	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

func runServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	listen := fs.String("listen", d4server.DefaultAddr, "TLS listen address")
	cert := fs.String("cert", "", "server certificate (PEM; `xtrail gencert` makes one)")
	key := fs.String("key", "", "server key (PEM; empty: the -cert file holds both, like d4-core's server.pem)")
	redisURL := fs.String("redis", "", "Redis URL of the metadata db, e.g. redis://127.0.0.1:6380/0 (empty: in-process store, NOT durable)")
	analyzerDB := fs.Int("analyzer-db", d4server.DefaultAnalyzerDB, "Redis db of the analyzer queues (d4-core: 2)")
	mode := fs.String("mode", d4server.ModeRegistration, "registration (only sensors in -keys) or shared-secret (any v4 UUID with the default key)")
	defKey := fs.String("default-key", "", "HMAC key of sensors without their own key")
	defKeyFile := fs.String("default-key-file", "", "file holding the default HMAC key")
	keysFile := fs.String("keys", "", "sensor keys file: lines `<uuid> <key>`")
	var exports listFlag
	fs.Var(&exports, "export", "built-in exporter maltrail=HOST:PORT (repeatable)")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(*quiet)
	if *cert == "" {
		return errors.New("-cert is required (make a pair with `xtrail gencert -dir DIR -hosts NAME,IP`)")
	}
	dk := []byte(*defKey)
	if *defKeyFile != "" {
		b, err := os.ReadFile(*defKeyFile)
		if err != nil {
			return err
		}
		dk = []byte(strings.TrimRight(string(b), "\r\n"))
	}
	var keys map[string][]byte
	if *keysFile != "" {
		var err error
		if keys, err = d4server.LoadKeys(*keysFile); err != nil {
			return err
		}
	}

	var (
		store   d4server.Store
		queueOf func(metaType, q string) export.Queue
	)
	if *redisURL == "" {
		log.Warn("NO --redis: events are kept in this process only and are LOST if it stops; use --redis in production")
		ms := d4server.NewMemStore(0)
		store = ms
		queueOf = func(t, q string) export.Queue { return ms.Queue(t, q) }
	} else {
		rs, err := d4server.NewRedisStore(*redisURL, *analyzerDB)
		if err != nil {
			return err
		}
		if err := rs.Ping(ctx); err != nil {
			return err
		}
		store = rs
		queueOf = func(t, q string) export.Queue { return rs.Queue(t, q) }
	}
	defer store.Close()
	if err := store.Init(ctx); err != nil {
		return err
	}
	srv, err := d4server.New(d4server.Config{Store: store, Mode: *mode, DefaultKey: dk, Keys: keys, Logger: log})
	if err != nil {
		return err
	}
	ln, err := d4server.ListenTLS(*listen, *cert, *key)
	if err != nil {
		return err
	}
	log.Info("D4 server listening", "addr", ln.Addr().String(), "mode", *mode, "sensors", len(keys))

	g, gctx := errgroup.WithContext(ctx)
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
		g.Go(func() error {
			defer conn.Close()
			return export.Run(gctx, queueOf(metaType, q), conn, log)
		})
	}
	g.Go(func() error { return srv.Serve(gctx, ln) })
	err = g.Wait()
	logServerStats(log, srv.Stats())
	return err
}

func logServerStats(log *slog.Logger, st d4server.Stats) {
	args := []any{"conns", st.Conns, "frames", st.Frames, "lines", st.Lines}
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
