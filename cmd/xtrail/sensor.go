package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/sensor"
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
	return sensor.Run(ctx, st.Options)
}
