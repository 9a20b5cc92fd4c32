package main

import (
	"context"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/d4"
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
	crt := filepath.Join(*dir, certs.CertFile)
	pin, err := certFingerprint(crt)
	if err != nil {
		return err
	}
	fmt.Printf("server: xtrail server -cert %s -key %s\nsensors: D4_CA %s\n  or pin the certificate: D4_SERVER_SHA256 %s\n",
		crt, filepath.Join(*dir, certs.KeyFile), filepath.Join(*dir, certs.CAFile), pin)
	return nil
}

// certFingerprint is the SHA-256 fingerprint of the first certificate of a
// PEM file, as D4_SERVER_SHA256 takes it.
func certFingerprint(path string) (d4.Fingerprint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return d4.Fingerprint{}, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return d4.Fingerprint{}, fmt.Errorf("%s: no PEM certificate", path)
	}
	return d4.CertFingerprint(blk.Bytes), nil
}
