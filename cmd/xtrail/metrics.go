package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/xtrail/xtrail/pkg/metrics"
)

// metricsFlag adds -metrics, the /metrics listen address, to fs.
func metricsFlag(fs *flag.FlagSet) *string {
	return fs.String("metrics", "", "Prometheus /metrics listen address: host:port, [v6]:port or :port (empty: off)")
}

// listenMetrics opens the -metrics address; "" gives a nil listener.
// Opening it at start makes a bad or busy address stop the command there.
func listenMetrics(addr string, log *slog.Logger) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := metrics.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics %q: %w (want %s)", addr, err, metrics.AddrAllowed)
	}
	log.Info("metrics listening", "addr", ln.Addr().String(), "path", metrics.Path)
	return ln, nil
}

// serveMetrics serves role's collectors on ln in g until ctx is done;
// with a nil ln it does nothing.
func serveMetrics(ctx context.Context, g *errgroup.Group, ln net.Listener, role string, log *slog.Logger, cs ...prometheus.Collector) error {
	if ln == nil {
		return nil
	}
	reg, err := metrics.NewRegistry(role, cs...)
	if err != nil {
		ln.Close()
		return err
	}
	g.Go(func() error { return metrics.Serve(ctx, metrics.Handler(reg, log), log, ln) })
	return nil
}
