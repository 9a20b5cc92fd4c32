package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/deploy"
)

// TestTrailsLoadStats loads two sources with the CLI and reads back what
// `trails stats` reports: counts, kernel memory, origin, age.
func TestTrailsLoadStats(t *testing.T) {
	testenv.RequireRoot(t)
	pinDir := testenv.PinDir(t)
	dir := t.TempDir()
	csv := filepath.Join(dir, "trails.csv")
	cidr := filepath.Join(dir, "nets.txt")
	if err := os.WriteFile(csv, []byte("198.51.100.7,malware (test),(static)\n203.0.113.9:443,c2 (test),(static)\nbad-row\nevil.example,malware (test),(static)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cidr, []byte("192.0.2.0/24,scanner net (test),(custom)\n2001:db8:77::/48\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(csv, old, old); err != nil {
		t.Fatal(err)
	}
	storePath := filepath.Join(dir, "trails.xts")
	load := []string{"load", "-q", "-pin-dir", pinDir, "-store", storePath, csv, "cidr:" + cidr}
	if err := runTrails(context.Background(), load); err != nil {
		t.Fatal(err)
	}
	maps, err := dataplane.OpenTrailMaps(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()

	r, err := deploy.ReadStatus(maps, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k := r.Kernel
	if k.IP4 != 1 || k.Port4 != 1 || k.CIDR4 != 1 || k.CIDR6 != 1 {
		t.Errorf("kernel counts %+v", k)
	}
	if r.Memory.Live == 0 || r.Memory.Metas == 0 {
		t.Errorf("kernel memory not reported: %+v", r.Memory)
	}
	o := r.Origin
	if o == nil {
		t.Fatal("no origin recorded by trails load")
	}
	if o.By != "trails load" || o.Generation != r.Generation || time.Since(o.LoadedAt) > time.Minute {
		t.Errorf("origin %+v (live generation %d)", o, r.Generation)
	}
	// the store, then the files it was compiled from
	if len(o.Sources) != 3 || o.Sources[0].Path != storePath || o.Sources[0].Kind != "store" ||
		o.Sources[1].Path != csv || o.Sources[1].Kind != "compiled into the store (trails.csv)" ||
		o.Sources[2].Path != cidr || o.Sources[2].Kind != "compiled into the store (cidr)" || o.Sources[2].Bytes == 0 {
		t.Fatalf("sources %+v", o.Sources)
	}
	if o.Sources[1].Modified.Sub(old).Abs() > time.Second {
		t.Errorf("source modified %v, want %v", o.Sources[1].Modified, old)
	}
	if r.Store == nil || r.Store.Err != "" || r.Store.Stats.Names != 2 || r.Store.Stats.CIDRs != 2 || r.Store.Stats.IPs != 2 {
		t.Errorf("store stats %+v", r.Store)
	}
	// the CIDR list is new, so the newest source is fresh
	if r.Stale {
		t.Errorf("fresh sources reported stale (age %v)", r.Age)
	}
	var out strings.Builder
	printStats(&out, r, 24*time.Hour)
	for _, want := range []string{"by trails load", "cidr4 1", "kernel memory", cidr} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stats output lacks %q:\n%s", want, out.String())
		}
	}

	// A name looked up without -trails comes from the loaded store; the
	// CSV and a store compiled from it alone answer the same.
	f, err := loadedNamesFile(pinDir)
	if err != nil || f != storePath {
		t.Fatalf("names file of the live trails: %q, %v; want %q", f, err, storePath)
	}
	xts := filepath.Join(dir, "trails.xts")
	if err := runTrails(context.Background(), []string{"compile", "-o", xts, csv}); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{csv, xts, storePath} {
		res, err := lookupName(file, "www.evil.example")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Found || res.Trail != "(www).evil.example" || res.Rule != "parent domain" || res.Info != "malware (test)" {
			t.Errorf("%s: lookup www.evil.example: %+v", file, res)
		}
		if res, _ := lookupName(file, "www.example.org"); res.Found {
			t.Errorf("%s: a clean name found: %+v", file, res)
		}
	}

	// A set under half the live one is refused, and the live trails stay;
	// -force loads it.
	tiny := filepath.Join(dir, "tiny.csv")
	if err := os.WriteFile(tiny, []byte("203.0.113.200,tiny (malware),(static)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gen := r.Generation
	err = runTrails(context.Background(), []string{"load", "-q", "-pin-dir", pinDir, "-store", storePath, tiny})
	if !errors.Is(err, deploy.ErrShrunk) {
		t.Fatalf("a 1-row set against 5 live rows: %v", err)
	}
	if g, _ := maps.Generation(); g != gen {
		t.Fatal("a refused load switched the generation")
	}
	if err := runTrails(context.Background(), []string{"load", "-q", "-force", "-pin-dir", pinDir, "-store", storePath, tiny}); err != nil {
		t.Fatalf("-force: %v", err)
	}
	if c, _ := maps.Counts(); c.IP4 != 1 || c.CIDR4 != 0 {
		t.Fatalf("after the forced load: %+v", c)
	}

	// Both sources old: stale, and said loudly.
	if err := os.Chtimes(cidr, old, old); err != nil {
		t.Fatal(err)
	}
	if err := runTrails(context.Background(), load); err != nil {
		t.Fatal(err)
	}
	if r, err = deploy.ReadStatus(maps, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if !r.Stale || r.Age < 71*time.Hour {
		t.Errorf("3-day-old sources with a 1-day period: stale %v, age %v", r.Stale, r.Age)
	}
	out.Reset()
	printStats(&out, r, 24*time.Hour)
	if !strings.Contains(out.String(), "STALE") {
		t.Errorf("stale trails not reported:\n%s", out.String())
	}
}
