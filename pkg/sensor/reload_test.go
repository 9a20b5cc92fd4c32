package sensor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestReloadUnderTraffic: datagrams to a trail present in both generations
// flow while 20 reloads switch between two trail sets. Every datagram is
// detected exactly once; a trail the last generation removed stops firing
// and one it added starts; the replaced generations' maps are freed.
func TestReloadUnderTraffic(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	const (
		both    = "203.0.113.50"
		onlyA   = "203.0.113.51"
		onlyB   = "203.0.113.52"
		packets = 3000
	)
	genA := both + ",lab both (malware),(custom)\n" + onlyA + ",lab a (malware),(custom)\n"
	genB := both + ",lab both (malware),(custom)\n" + onlyB + ",lab b (malware),(custom)\n"
	setOf := func(text string) *trails.Set {
		s, err := trails.LoadSet(strings.NewReader(text), "gen.csv")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	fileB := filepath.Join(dir, "b.csv")
	if err := os.WriteFile(fileB, []byte(genB), 0o644); err != nil {
		t.Fatal(err)
	}
	pinDir := testenv.PinDir(t)
	c, stop := liveSensor(t, l, Options{PinDir: pinDir, TrailsFile: fileB, Throttle: throttle.Off})

	// the trail loader, as `xtrail trails load` runs it: its own handles on the pins
	maps, err := dataplane.OpenTrailMaps(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()
	var seen []ebpf.MapID
	record := func() {
		ids, _, err := maps.LiveMapIDs()
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, ids...)
	}
	record()
	mem0, err := maps.Memory()
	if err != nil {
		t.Fatal(err)
	}

	// traffic: one datagram per destination port, so no two share a tuple
	var conn net.PacketConn
	if err := lab.InNetns(l.Source, func() (err error) { conn, err = net.ListenPacket("udp4", ":0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var wg sync.WaitGroup
	var sendErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < packets; i++ {
			if _, err := conn.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP(both), Port: 20000 + i}); err != nil {
				sendErr = err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for i := 1; i <= 20; i++ {
		next := genA
		if i%2 == 0 {
			next = genB
		}
		if _, err := maps.Replace(setOf(next)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		record()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}

	count := func(trail string) int {
		n := 0
		for _, line := range c.get() {
			if strings.Contains(line, " UDP IP "+trail+" ") {
				n++
			}
		}
		return n
	}
	waitFor := func(trail string, want int) int {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && count(trail) < want {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // and nothing more arrives
		return count(trail)
	}
	if n := waitFor(both, packets); n != packets {
		t.Errorf("%d events for the trail in both generations, want exactly %d (one per datagram)", n, packets)
	}
	// the live generation is B: A's trail is gone, B's is there
	for _, d := range []string{onlyA, onlyB} {
		if _, err := conn.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP(d), Port: 9}); err != nil {
			t.Fatal(err)
		}
	}
	if n := waitFor(onlyB, 1); n != 1 {
		t.Errorf("%d events for the trail the last generation added, want 1", n)
	}
	if n := count(onlyA); n != 0 {
		t.Errorf("%d events for the trail the last generation removed", n)
	}
	for _, line := range c.get() {
		if strings.Contains(line, both) && !strings.HasSuffix(line, " \"lab both (malware)\" (custom)\n") {
			t.Fatalf("event with the wrong trail text: %q", line)
		}
	}

	// nothing leaks: the old generation slots are empty and every map of a
	// replaced generation is gone from the kernel
	ids, otherFree, err := maps.LiveMapIDs()
	if err != nil {
		t.Fatal(err)
	}
	if !otherFree || len(ids) != 7 { // six trail maps and the address filter
		t.Fatalf("live maps %v, other generation freed %v", ids, otherFree)
	}
	// and the kernel memory of the trail maps is one generation's, as
	// before the reloads (A and B are the same size)
	mem, err := maps.Memory()
	if err != nil {
		t.Fatal(err)
	}
	if mem0.Live == 0 || mem.Idle != 0 || mem.Total() != mem0.Total() {
		t.Errorf("trail map memory %+v after 20 reloads, %+v before", mem, mem0)
	}
	live := map[ebpf.MapID]bool{}
	for _, id := range ids {
		live[id] = true
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var alive []ebpf.MapID
		for _, id := range seen {
			if live[id] {
				continue
			}
			if m, err := ebpf.NewMapFromID(id); err == nil {
				m.Close()
				alive = append(alive, id)
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
		}
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d maps of replaced generations still exist: %v", len(alive), alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestReloadTriggers: the sensor reloads its trails file when it is
// replaced and when asked (SIGHUP); an empty file is refused and the
// current trails stay.
func TestReloadTriggers(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "trails.csv")
	write := func(text string) {
		tmp := file + ".new"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	var conn net.PacketConn
	if err := lab.InNetns(l.Source, func() (err error) { conn, err = net.ListenPacket("udp4", ":0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// start runs a sensor until the returned stop is called.
	start := func(watch time.Duration, reload chan struct{}) (*capture, func()) {
		c, stop := liveSensor(t, l, Options{TrailsFile: file, Throttle: throttle.Off, Reload: reload, WatchEvery: watch})
		return c, func() {
			if err := stop(); err != nil {
				t.Error(err)
			}
		}
	}
	port := 30000
	fires := func(c *capture, dst string) bool {
		port++
		before := len(c.get())
		if _, err := conn.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP(dst), Port: port}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			for _, line := range c.get()[before:] {
				if strings.Contains(line, " UDP IP "+dst+" ") {
					return true
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	eventually := func(c *capture, dst string, want bool) {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if fires(c, dst) == want {
				return
			}
		}
		t.Fatalf("%s fires: %v, want %v", dst, !want, want)
	}

	// the watch: a replaced file is picked up, an empty one refused
	write("203.0.113.61,lab one (malware),(custom)\nevil-one.com,lab one (malware),(custom)\n")
	c, stop := start(100*time.Millisecond, nil)
	if !fires(c, "203.0.113.61") {
		t.Fatal("the first trail does not fire")
	}
	write("203.0.113.62,lab two (malware),(custom)\n")
	eventually(c, "203.0.113.62", true)
	eventually(c, "203.0.113.61", false)
	write("")
	time.Sleep(500 * time.Millisecond)
	if !fires(c, "203.0.113.62") {
		t.Fatal("an empty trails file replaced the loaded trails")
	}
	stop()

	// on request only (no watch): a changed file waits for the signal
	write("203.0.113.64,lab four (malware),(custom)\n")
	reload := make(chan struct{})
	c, stop = start(-1, reload)
	defer stop()
	write("203.0.113.65,lab five (malware),(custom)\n")
	if fires(c, "203.0.113.65") {
		t.Fatal("reloaded without being asked")
	}
	reload <- struct{}{}
	eventually(c, "203.0.113.65", true)
}

// TestNameReloadUnderTraffic is TestReloadUnderTraffic for name trails and
// the sensor's own reloads: DNS queries for a domain both stores hold go on
// while the sensor switches stores back and forth; every query is
// detected exactly once, and a domain only the old store held stops
// firing.
func TestNameReloadUnderTraffic(t *testing.T) {
	l := lab.New(t)
	dir := t.TempDir()
	xts := filepath.Join(dir, "trails"+storeExt)
	const (
		queries = 800
		reloads = 6
	)
	stores := [2]string{
		"both-test.com,lab both (malware),(custom)\nonly-a-test.com,lab a (malware),(custom)\n",
		"both-test.com,lab both (malware),(custom)\nonly-b-test.com,lab b (malware),(custom)\n",
	}
	compile := func(csv string) [32]byte { return compileStore(t, xts, csv) }
	compile(stores[0])
	pinDir := testenv.PinDir(t)
	reload := make(chan struct{}, 1)
	c, stop := liveSensor(t, l, Options{PinDir: pinDir, TrailsFile: xts, Throttle: throttle.Off, Reload: reload, WatchEvery: -1})
	maps, err := dataplane.OpenTrailMaps(pinDir)
	if err != nil {
		t.Fatal(err)
	}
	defer maps.Close()

	// The kernel drops a UDP datagram with the previous one's addresses
	// and ports in the same second, as Maltrail does: the queries go to a
	// different resolver address each, and the two probes at the end from
	// two sockets.
	var conns [2]net.PacketConn
	for i := range conns {
		if err := lab.InNetns(l.Source, func() (err error) { conns[i], err = net.ListenPacket("udp4", ":0"); return err }); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	resolver := &net.UDPAddr{IP: net.ParseIP("198.51.100.53"), Port: 53}
	resolverN := func(i int) *net.UDPAddr {
		return &net.UDPAddr{IP: net.IPv4(198, 51, 100, byte(1+i%250)), Port: 53}
	}
	var wg sync.WaitGroup
	var sendErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		// a distinct subdomain per query, so no two events are alike
		for i := range queries {
			if _, err := conns[0].WriteTo(dnsQuery(fmt.Sprintf("q%d.both-test.com", i)), resolverN(i)); err != nil {
				sendErr = err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	for i := 1; i <= reloads; i++ {
		sum := compile(stores[i%2])
		reload <- struct{}{}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if id, live := maps.LiveID(); live && id == sum {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reload %d: the sensor did not switch within 10 s", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	count := c.count
	deadline := time.Now().Add(10 * time.Second)
	for count(".both-test.com ") < queries && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // and nothing more arrives
	if n := count(".both-test.com "); n != queries {
		t.Errorf("%d events for the domain in both stores, want exactly %d (one per query)", n, queries)
	}
	// reload i loaded stores[i%2]: the live store's own domain fires,
	// the other's does not
	live, gone := " only-a-test.com ", " only-b-test.com "
	if reloads%2 == 1 {
		live, gone = gone, live
	}
	for i, name := range []string{live, gone} {
		if _, err := conns[i].WriteTo(dnsQuery(strings.TrimSpace(name)), resolver); err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for count(live) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if count(live) != 1 || count(gone) != 0 {
		t.Errorf("after the last reload: %d events for the live store's own domain (want 1), %d for the replaced store's (want 0)",
			count(live), count(gone))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
