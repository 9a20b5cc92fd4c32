package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/metrics"
	"github.com/xtrail/xtrail/pkg/sensor"
	"github.com/xtrail/xtrail/pkg/status"
)

// readConfig reads a maltrail.conf; an empty path is an empty config.
func readConfig(path string) (*maltrail.Config, error) {
	if path == "" {
		return &maltrail.Config{}, nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return maltrail.ParseConfig(fh, path, os.LookupEnv)
}

func runSensor(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sensor", flag.ContinueOnError)
	conf := fs.String("c", "", "maltrail.conf (Maltrail's keys plus xtrail's D4_*/XDP_* keys)")
	var f sensor.Flags
	fs.StringVar(&f.Interfaces, "i", "", "interfaces to monitor, IFACE[,IFACE] (default MONITOR_INTERFACE)")
	pcaps := listFlag{}
	fs.Var(&pcaps, "r", "replay a pcap/pcapng file through the XDP program (repeatable; - = stdin)")
	fs.BoolVar(&f.Console, "console", false, "also print each event line to stdout")
	quiet := fs.Bool("q", false, "quiet: log warnings and errors only")
	fs.StringVar(&f.XDPMode, "xdp-mode", "", "auto, native or generic (default XDP_MODE, else auto)")
	fs.StringVar(&f.XDPAction, "xdp-action", "", "pass or drop every packet after inspection (default XDP_ACTION, else pass)")
	fs.StringVar(&f.PinDir, "pin-dir", "", "bpffs directory of the trail maps (default XDP_PIN_DIR, else /sys/fs/bpf/xtrail)")
	fs.StringVar(&f.Netns, "netns", "", "attach to interfaces of this network namespace (name or path)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	f.Pcaps = pcaps
	log := newLogger(*quiet)
	cfg, err := readConfig(*conf)
	if err != nil {
		return err
	}
	st, err := sensor.Configure(cfg, f, log)
	if err != nil {
		return err
	}
	defer st.Sinks.Close()
	// SIGHUP reloads the trails, as operators expect of a daemon.
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	st.Options.Reload = sensor.ReloadOnHangup(hctx)
	if len(st.Options.Pcaps) > 0 {
		// a replay is not a service: a config shared with the live sensor
		// must not make it fight over the metrics port or status socket
		return sensor.Run(ctx, st.Options)
	}
	probe := &sensor.Probe{}
	st.Options.Probe = probe
	lns, err := sensorListeners(st, log)
	if err != nil {
		return err
	}
	reg, err := metrics.NewRegistry(metrics.RoleSensor, &metrics.Sensor{Probe: probe, Sinks: st.Sinks, D4: st.Options.D4})
	if err != nil {
		closeAll(lns)
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	serveCtx, stopServing := context.WithCancel(gctx)
	g.Go(func() error { return metrics.Serve(serveCtx, metrics.Handler(reg, log), log, lns...) })
	g.Go(func() error {
		defer stopServing()
		return sensor.Run(gctx, st.Options)
	})
	return g.Wait()
}

// sensorListeners opens METRICS_ADDRESS, if set, and the status socket
// of the sensor's pin dir. The socket is a convenience: without it the
// sensor still runs, and says why `xtrail status` cannot reach it.
func sensorListeners(st *sensor.Setup, log *slog.Logger) ([]net.Listener, error) {
	var lns []net.Listener
	if st.MetricsAddr != "" {
		ln, err := metrics.Listen(st.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("sensor: %s %s: %w", sensor.KeyMetricsAddress, st.MetricsAddr, err)
		}
		log.Info("metrics listening", "addr", ln.Addr().String(), "path", metrics.Path)
		lns = append(lns, ln)
	}
	path := status.SensorSocket(st.Options.PinDir)
	ln, err := status.ListenSocket(path)
	if err != nil {
		log.Warn("no status socket: `xtrail status` cannot reach this sensor", "err", err)
		return lns, nil
	}
	log.Info("status socket", "path", path)
	return append(lns, ln), nil
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}
