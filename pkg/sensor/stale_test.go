package sensor

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
