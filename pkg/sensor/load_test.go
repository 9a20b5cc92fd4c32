package sensor

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/trails"
)

func TestWarnIfStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trails.csv")
	if err := os.WriteFile(path, []byte("x,y,z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	now := time.Now()
	if warnIfStale(path, time.Hour, now, log) || buf.Len() != 0 {
		t.Fatalf("a fresh file was reported stale: %s", buf.String())
	}
	old := now.Add(-3 * time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if !warnIfStale(path, time.Hour, now, log) || !strings.Contains(buf.String(), "STALE TRAILS") || !strings.Contains(buf.String(), "age=3h0m0s") {
		t.Fatalf("a 3 h old file with a 1 h period: %q", buf.String())
	}
	buf.Reset()
	if warnIfStale(path, 2*time.Hour, now, log) {
		t.Fatalf("3 h old with a 2 h period (limit 4 h) reported stale: %s", buf.String())
	}
	if warnIfStale(path+".missing", time.Hour, now, log) {
		t.Fatal("a missing file reported stale")
	}
}

// TestReadTrailsWhitelist: a trails.csv read for the kernel drops the
// whitelisted addresses, as a compiled store does at compile time, and
// both paths agree on what reaches the kernel.
func TestReadTrailsWhitelist(t *testing.T) {
	dir := t.TempDir()
	csv := "192.0.2.10,lab (malware),(custom)\n192.0.2.11,lab (malware),(custom)\n192.0.2.11:443,lab (malware),(custom)\n"
	path := filepath.Join(dir, "trails.csv")
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	wl := trails.NewWhitelist()
	wl.Add("192.0.2.11")
	log := slog.New(slog.DiscardHandler)
	ts, err := readTrails(path, wl, log)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range ts.ips.IPs {
		got = append(got, netip.AddrPortFrom(ip.Addr, ip.Port).String())
	}
	// the whitelist holds keys: the bare address goes, its IP:port trail stays
	if strings.Join(got, " ") != "192.0.2.10:0 192.0.2.11:443" {
		t.Fatalf("IP trails for the kernel from the CSV: %v, want 192.0.2.10 and 192.0.2.11:443", got)
	}
	in, err := store.FromCSV(strings.NewReader(csv), path, wl)
	if err != nil {
		t.Fatal(err)
	}
	xts := filepath.Join(dir, "trails.xts")
	if _, err := store.Compile(xts, in); err != nil {
		t.Fatal(err)
	}
	st, err := readTrails(xts, wl, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close(log)
	var fromStore []string
	for _, ip := range st.store.IPSet().IPs {
		fromStore = append(fromStore, netip.AddrPortFrom(ip.Addr, ip.Port).String())
	}
	if strings.Join(fromStore, " ") != strings.Join(got, " ") {
		t.Fatalf("IP trails for the kernel from the store %v, from the CSV %v", fromStore, got)
	}
}
