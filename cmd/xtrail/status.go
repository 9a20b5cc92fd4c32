package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/sensor"
	"github.com/xtrail/xtrail/pkg/status"
)

func runStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	pinDir := fs.String("pin-dir", "", "the sensor's pin dir, which names its status socket (default XDP_PIN_DIR of -c, else "+dataplane.DefaultPinDir+")")
	conf := fs.String("c", "", "the sensor's maltrail.conf, for XDP_PIN_DIR")
	socket := fs.String("socket", "", "the sensor's status socket (default: the one of the pin dir, under "+status.RuntimeDir+")")
	addr := fs.String("addr", "", "metrics address (host:port or URL) of a server, exporter, collector or sensor, instead of a sensor's socket")
	asJSON := fs.Bool("json", false, "JSON instead of a table (with --watch: one object per line)")
	watch := fs.Bool("watch", false, "read again every -interval until interrupted; the table adds rates per second")
	interval := fs.Duration("interval", 2*time.Second, "--watch interval, at least 100ms")
	all := fs.Bool("all", false, "the table also shows labelled counters that are zero")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *interval < 100*time.Millisecond {
		return fmt.Errorf("-interval %s: want at least 100ms", *interval)
	}
	t, err := statusTarget(*addr, *socket, *pinDir, *conf)
	if err != nil {
		return err
	}
	o := status.Options{JSON: *asJSON, All: *all, Clear: !*asJSON && *watch && isTerminal(os.Stdout)}
	if *watch {
		o.Watch = *interval
	}
	return status.Show(ctx, t, o, os.Stdout, os.Stderr)
}

// statusTarget is -addr, else -socket, else the socket of the pin dir
// (-pin-dir, XDP_PIN_DIR of -c, the default).
func statusTarget(addr, socket, pinDir, conf string) (status.Target, error) {
	set := 0
	for _, v := range []string{addr, socket, pinDir + conf} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return status.Target{}, errors.New("give one of -addr, -socket, and -pin-dir or -c")
	}
	switch {
	case addr != "":
		return status.AddrTarget(addr)
	case socket != "":
		return status.Target{Socket: socket}, nil
	}
	if pinDir == "" {
		pinDir = dataplane.DefaultPinDir
		if conf != "" {
			cfg, err := readConfig(conf)
			if err != nil {
				return status.Target{}, err
			}
			pinDir = cfg.String(sensor.KeyXDPPinDir, pinDir)
		}
	}
	return status.Target{Socket: status.SensorSocket(pinDir)}, nil
}

// isTerminal reports whether f is a character device (a terminal, where
// --watch redraws the table in place).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
