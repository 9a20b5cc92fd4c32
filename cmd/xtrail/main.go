// Command xtrail is one binary for every role of the sensor network: the
// XDP sensor, the D4 server, the UDP exporter, the Maltrail-compatible
// collector, and the trail loader. This file only dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"sensor", "watch interfaces (XDP) or replay captures, and report trail hits", runSensor},
		{"server", "D4 server: authenticate sensors, store events (Redis or in-process), export them", runServer},
		{"export", "send one analyzer queue to a Maltrail collector over UDP (d4_export_udp.py drop-in)", runExport},
		{"collector", "Maltrail server's UDP intake: write LOG_DIR/YYYY-MM-DD.log", runCollector},
		{"trails", "load trails into the kernel maps of running and future sensors", runTrails},
		{"gencert", "make a private CA and a server certificate for `xtrail server`", runGencert},
		{"status", "counters of a running sensor (its status socket) or server, exporter, collector (-addr)", runStatus},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: xtrail COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(os.Stderr, "\n`xtrail COMMAND -h` lists a command's flags.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	for _, c := range commands() {
		if c.name != os.Args[1] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := c.run(ctx, os.Args[2:])
		stop()
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "xtrail %s: %v\n", c.name, err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintf(os.Stderr, "xtrail: unknown command %q\n\n", os.Args[1])
	usage()
	os.Exit(2)
}

// newLogger logs text to stderr (stdout may carry event lines).
func newLogger(quiet bool) *slog.Logger {
	return newLoggerTo(os.Stderr, quiet)
}

func newLoggerTo(w io.Writer, quiet bool) *slog.Logger {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// notNegative refuses a negative value of the named numeric or duration
// flags: a limit or timeout below zero would refuse everything, silently.
func notNegative(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		f := fs.Lookup(n)
		neg := false
		switch v := f.Value.(flag.Getter).Get().(type) {
		case int:
			neg = v < 0
		case int64:
			neg = v < 0
		case float64:
			neg = v < 0
		case time.Duration:
			neg = v < 0
		}
		if neg {
			return fmt.Errorf("-%s %s: want 0 or more", n, f.Value)
		}
	}
	return nil
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }
