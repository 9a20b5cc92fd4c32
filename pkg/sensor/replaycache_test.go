package sensor

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
)

// TestReplayCache: a replay of a compiled store leaves the store's trail
// maps and the verified program in a replay cache under the pin dir (in
// place of one another version left there); the
// next replay takes them from there, with a clean state (scan counts,
// repeat slots) and the same events; the cached trail maps are read-only;
// a replay while another holds the cache runs beside it; a replay of
// another store replaces the cache.
func TestReplayCache(t *testing.T) {
	corpus := filepath.Join(testenv.SharedDir(t), "corpus")
	csv, err := os.ReadFile(filepath.Join(corpus, "trails.csv"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	xts := filepath.Join(dir, "trails"+storeExt)
	sum := compileStore(t, xts, string(csv))
	pinDir := testenv.PinDir(t)
	cache := dataplane.ReplayCacheDir(pinDir, sum)
	// a scan alerts once per key and window: state left from the run
	// before would silence it
	names := []string{"port_scan", "udp_scan", "infection_scan", "duplicate_syn", "ip_trails", "dns_queries"}
	var pcaps []string
	for _, n := range names {
		pcaps = append(pcaps, filepath.Join(corpus, n+".pcap"))
	}
	want := replay(t, xts, false, pcaps...)
	for _, ev := range []string{"potential port scanning", "potential udp scanning", "potential infection"} {
		if !strings.Contains(strings.Join(want, ""), ev) {
			t.Fatalf("the captures make no %q event: the cache's scan state would go unchecked", ev)
		}
	}
	run := func(what string, o Options) string {
		t.Helper()
		var logs testenv.SyncBuffer
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.TrailsFile = xts
		got := replayWith(t, o, false, pcaps...)
		if strings.Join(got, "") != strings.Join(want, "") {
			t.Errorf("%s: events\n%swant (private maps)\n%s", what, strings.Join(got, ""), strings.Join(want, ""))
		}
		return logs.String()
	}

	// a cache left by another version: its xt_gen is not this one's
	if err := dataplane.EnsurePinDir(cache); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(filepath.Join(cache, "xt_gen")); err != nil {
		t.Fatal(err)
	}
	old.Close()

	logs := run("first replay", Options{PinDir: pinDir})
	if strings.Contains(logs, "already in the replay cache") || strings.Contains(logs, "not usable") {
		t.Errorf("first replay found a cache, or could not make one:\n%s", logs)
	}
	if _, err := os.Stat(cache); err != nil {
		t.Fatalf("no replay cache: %v", err)
	}
	for i := range 2 {
		logs = run("replay from the cache", Options{PinDir: pinDir})
		if !strings.Contains(logs, "already in the replay cache") || strings.Contains(logs, "IP trails loaded") {
			t.Errorf("replay %d did not take the trails from the cache:\n%s", i+2, logs)
		}
	}

	// read-only: the cache's maps refuse a write
	for _, name := range []string{"xt_ip4", "xt_gen"} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(cache, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Update(uint32(0), uint32(1), ebpf.UpdateAny)
		m.Close()
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("write to the cached %s: %v, want EPERM (frozen)", name, err)
		}
	}

	// another replay holds the cache: this one loads a program of its own
	// beside the shared trail maps
	f, err := os.Open(cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	logs = run("replay beside a held cache", Options{PinDir: pinDir})
	f.Close()
	if !strings.Contains(logs, "already in the replay cache") || !strings.Contains(logs, "loading a private one") {
		t.Errorf("replay beside a held cache:\n%s", logs)
	}

	// another store: its cache replaces this one
	xts2 := filepath.Join(dir, "other"+storeExt)
	sum2 := compileStore(t, xts2, "203.0.113.250,other (malware),(custom)\n")
	replayWith(t, Options{TrailsFile: xts2, PinDir: pinDir}, false, pcaps[0])
	if _, err := os.Stat(dataplane.ReplayCacheDir(pinDir, sum2)); err != nil {
		t.Errorf("no cache for the second store: %v", err)
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the first store's cache stays: %v", err)
	}
}
