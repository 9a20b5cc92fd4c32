// Package metrics exports the counters of every xtrail role to Prometheus
// through its Go client. The collectors here read each role's own counter
// snapshots (sensor.Probe, d4server.Server.Stats, ...) when Prometheus
// scrapes, so the roles' hot paths do not know Prometheus and nothing is
// counted twice; Serve runs the HTTP endpoint. docs/configuration.md lists
// every metric.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// Path is where the metrics are served.
const Path = "/metrics"

// Roles, as xtrail_info's role label says them.
const (
	RoleSensor    = "sensor"
	RoleServer    = "server"
	RoleExport    = "export"
	RoleCollector = "collector"
)

// NewRegistry returns a registry holding cs, xtrail_info{role} and the Go
// runtime and process collectors (memory, CPU, file descriptors).
func NewRegistry(role string, cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "xtrail_info",
		Help:        "Always 1; the role label names the xtrail command that serves these metrics.",
		ConstLabels: prometheus.Labels{"role": role},
	})
	info.Set(1)
	all := append([]prometheus.Collector{info, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}, cs...)
	for _, c := range all {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}

// Handler serves the metrics of g at Path. A collector that fails is
// logged and the others are still served.
func Handler(g prometheus.Gatherer, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	return mux
}

// CheckAddr checks a metrics listen address: host:port, [v6]:port or
// :port (every address), port 0 to 65535 (0: any free port).
func CheckAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// AddrAllowed says what CheckAddr allows, for error messages.
const AddrAllowed = "host:port, [v6]:port or :port (every address); port 0 picks a free one"

// Listen checks addr and listens on it (TCP).
func Listen(addr string) (net.Listener, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	return net.Listen("tcp", addr)
}

// shutdownGrace bounds how long Serve waits for scrapes in progress once
// ctx is done.
const shutdownGrace = 2 * time.Second

// Serve serves h on every listener until ctx is done, then shuts the
// server down and returns nil; it closes the listeners. A listener that
// fails stops the others and its error is returned.
func Serve(ctx context.Context, h http.Handler, log *slog.Logger, lns ...net.Listener) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, ln := range lns {
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics: serve on %s: %w", ln.Addr(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close() // scrapes still running after the grace
		}
		return nil
	})
	return g.Wait()
}
