package sensor

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestCorpusStore replays corpus cases with the corpus trails.csv
// compiled to a trail store (as xtrail trails compile does) and requires
// the same lines as with the CSV.
func TestCorpusStore(t *testing.T) {
	dir := filepath.Join(testenv.SharedDir(t), "corpus")
	csvPath := filepath.Join(dir, "trails.csv")
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	in, err := store.FromCSV(f, csvPath, trails.DefaultWhitelist())
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	xts := filepath.Join(t.TempDir(), "trails"+storeExt)
	if _, err := store.Compile(xts, in); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dns_queries", "http_trails", "ip_trails", "ipv6"} {
		t.Run(name, func(t *testing.T) {
			pcap := filepath.Join(dir, name+".pcap")
			want := replay(t, csvPath, false, pcap)
			got := replay(t, xts, false, pcap)
			if strings.Join(got, "") != strings.Join(want, "") {
				t.Errorf("store events:\n%sCSV events:\n%s", strings.Join(got, ""), strings.Join(want, ""))
			}
			if len(got) != len(corpusWant[name]) {
				t.Errorf("%d events, want %d", len(got), len(corpusWant[name]))
			}
		})
	}
}

// TestRestartKeepsStoreGeneration: a sensor restarting on the same compiled
// store keeps the pinned generation (no rebuild), and its trails still fire.
func TestRestartKeepsStoreGeneration(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	in, err := store.FromCSV(strings.NewReader("203.0.113.71,lab (malware),(custom)\nevil-seven.com,lab (malware),(custom)\n"), "t.csv", trails.DefaultWhitelist())
	if err != nil {
		t.Fatal(err)
	}
	xts := filepath.Join(dir, "trails"+storeExt)
	if _, err := store.Compile(xts, in); err != nil {
		t.Fatal(err)
	}
	pinDir := testenv.PinDir(t)
	var conn net.PacketConn
	if err := lab.InNetns(l.Source, func() (err error) { conn, err = net.ListenPacket("udp4", ":0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gens := make([]uint32, 0, 2)
	for run := 0; run < 2; run++ {
		c, stop := liveSensor(t, l, Options{PinDir: pinDir, TrailsFile: xts, Throttle: throttle.Off, WatchEvery: -1})
		maps, err := dataplane.OpenTrailMaps(pinDir)
		if err != nil {
			t.Fatal(err)
		}
		g, err := maps.Generation()
		maps.Close()
		if err != nil {
			t.Fatal(err)
		}
		gens = append(gens, g)
		if _, err := conn.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("203.0.113.71"), Port: 7000 + run}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(c.get()) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := c.get(); len(got) != 1 || !strings.Contains(got[0], " UDP IP 203.0.113.71 ") {
			t.Fatalf("run %d: events %q", run, got)
		}
	}
	if gens[0] != gens[1] {
		t.Errorf("the restart rebuilt the trails: generation %d then %d", gens[0], gens[1])
	}
}

// TestStoreReload: a sensor on a compiled store picks up a replaced store
// file: the new store's IP and name trails fire, the old store's stop, and
// the old mapping is released.
func TestStoreReload(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	xts := filepath.Join(dir, "trails"+storeExt)
	compile := func(csv string) {
		in, err := store.FromCSV(strings.NewReader(csv), "t.csv", trails.DefaultWhitelist())
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "next"+storeExt)
		if _, err := store.Compile(tmp, in); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, xts); err != nil {
			t.Fatal(err)
		}
	}
	compile("203.0.113.81,lab eight (malware),(custom)\nevil-eight.com,lab eight (malware),(custom)\n")
	c, stop := liveSensor(t, l, Options{TrailsFile: xts, Throttle: throttle.Off, WatchEvery: 100 * time.Millisecond})
	defer stop()
	p := newProber(t, l, c)
	if !p.ip("203.0.113.81") || !p.dns("evil-eight.com") {
		t.Fatal("the first store's trails do not fire")
	}
	compile("203.0.113.82,lab nine (malware),(custom)\nevil-nine.com,lab nine (malware),(custom)\n")
	deadline := time.Now().Add(10 * time.Second)
	for !p.ip("203.0.113.82") {
		if time.Now().After(deadline) {
			t.Fatal("the replaced store's IP trail never fired")
		}
	}
	if !p.dns("evil-nine.com") {
		t.Error("the replaced store's name trail does not fire")
	}
	if p.ip("203.0.113.81") || p.dns("evil-eight.com") {
		t.Error("the old store's trails still fire")
	}
	// the old store's mapping is released once records of its
	// generation are handled
	deadline = time.Now().Add(5 * time.Second)
	for {
		maps, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		n := strings.Count(string(maps), xts)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mappings of %s after the reload, want 1 (the new store)", n, xts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
