package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/xtrail/xtrail/pkg/dataplane"
)

func runTrails(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "load" {
		return errors.New("usage: xtrail trails load [-pin-dir DIR] FILE")
	}
	fs := flag.NewFlagSet("trails load", flag.ContinueOnError)
	pinDir := fs.String("pin-dir", dataplane.DefaultPinDir, "bpffs directory of the sensor's trail maps")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: xtrail trails load [-pin-dir DIR] FILE")
	}
	log := newLogger(*quiet)
	maps, err := dataplane.OpenTrailMaps(*pinDir)
	if err != nil {
		return err
	}
	defer maps.Close()
	set, st, err := maps.LoadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	for _, s := range set.Stats.Samples {
		log.Warn("skipped trail row", "where", s)
	}
	log.Info("trails loaded", "file", fs.Arg(0), "pin_dir", *pinDir, "rows", set.Stats.Rows,
		"skipped_rows", set.Stats.Skipped, "non_canonical", set.NonCanonical, "other_kinds", set.Other)
	fmt.Printf("ipv4 %d  ipv4:port %d  ipv6 %d  ipv6:port %d  removed %d  info/reference pairs %d\n",
		st.IP4, st.Port4, st.IP6, st.Port6, st.Removed, st.Metas)
	if st.Skipped > 0 {
		log.Warn("trails with info or reference too long for the kernel record were not loaded", "count", st.Skipped)
	}
	return nil
}
