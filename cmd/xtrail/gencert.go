package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/xtrail/xtrail/pkg/certs"
)

func runGencert(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("gencert", flag.ContinueOnError)
	dir := fs.String("dir", ".", "where to write ca.crt, server.crt and server.key")
	hosts := fs.String("hosts", "localhost,127.0.0.1", "names and IP addresses sensors use to reach the server, comma-separated")
	days := fs.Int("days", 825, "validity in days")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *days <= 0 {
		return fmt.Errorf("-days %d: want a positive number of days", *days)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var hs []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	if err := certs.Generate(*dir, hs, time.Duration(*days)*24*time.Hour); err != nil {
		return err
	}
	fmt.Printf("server: xtrail server -cert %s -key %s\nsensors: D4_CA %s\n",
		filepath.Join(*dir, certs.CertFile), filepath.Join(*dir, certs.KeyFile), filepath.Join(*dir, certs.CAFile))
	return nil
}
