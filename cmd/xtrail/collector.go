package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/pkg/collector"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/metrics"
	"github.com/xtrail/xtrail/pkg/sink"
)

func runCollector(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	listen := fs.String("listen", "", "UDP address to receive events on (default UDP_ADDRESS:UDP_PORT of -c)")
	logDir := fs.String("log-dir", "", "directory of the daily logs (default LOG_DIR of -c, else /var/log/maltrail)")
	conf := fs.String("c", "", "Maltrail server's maltrail.conf (UDP_ADDRESS, UDP_PORT, LOG_DIR)")
	maxAge := fs.Duration("max-event-age", collector.DefaultMaxAge, "drop (and count) events older than this (negative: any age, as Maltrail)")
	maxAhead := fs.Duration("max-event-ahead", collector.DefaultMaxAhead, "drop (and count) events this far in the future (negative: any, as Maltrail)")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	metricsAddr := metricsFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log := newLogger(*quiet)
	addr, dir := *listen, *logDir
	if *conf != "" {
		fh, err := os.Open(*conf)
		if err != nil {
			return err
		}
		cfg, err := maltrail.ParseConfig(fh, *conf, os.LookupEnv)
		fh.Close()
		if err != nil {
			return err
		}
		if addr == "" {
			a, okA := cfg.Get("UDP_ADDRESS")
			p, okP := cfg.Get("UDP_PORT")
			if okA != okP {
				return errUDPPair
			}
			if okA {
				addr = net.JoinHostPort(a, p)
			}
		}
		if dir == "" {
			dir = cfg.String("LOG_DIR", "")
		}
	}
	if addr == "" {
		addr = "127.0.0.1:8337"
	}
	if dir == "" {
		dir = "/var/log/maltrail"
	}
	// checked now, not at the first event, which would only be counted
	if err := os.MkdirAll(dir, sink.DirMode); err != nil {
		return fmt.Errorf("-log-dir (or LOG_DIR of -c): %w", err)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("-log-dir (or LOG_DIR of -c) %s: not writable: %w", dir, err)
	}
	mln, err := listenMetrics(*metricsAddr, log)
	if err != nil {
		return err
	}
	if mln != nil {
		defer mln.Close()
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	defer pc.Close()
	c := &collector.Collector{Dir: dir, Loc: time.Local, MaxAge: *maxAge, MaxAhead: *maxAhead, Logger: log}
	defer c.Close()
	log.Info("collector listening", "addr", pc.LocalAddr().String(), "log_dir", dir)
	g, gctx := errgroup.WithContext(ctx)
	if err := serveMetrics(gctx, g, mln, metrics.RoleCollector, log, &metrics.Collector{Stats: c.Stats}); err != nil {
		return err
	}
	g.Go(func() error { return c.Serve(gctx, pc) })
	err = g.Wait()
	st := c.Stats()
	counters := []any{"datagrams", st.Datagrams, "written", st.Written}
	for r, n := range st.Dropped {
		counters = append(counters, "dropped_"+strings.ReplaceAll(r.String(), " ", "_"), n)
	}
	log.Info("collector counters", counters...)
	return err
}

type constError string

func (e constError) Error() string { return string(e) }

// Maltrail's server refuses a configuration with only one of the two.
const errUDPPair = constError("UDP_ADDRESS and UDP_PORT must be set together")
