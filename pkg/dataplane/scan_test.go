package dataplane

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xtrail/xtrail/internal/pktbuild"
)

var allScans = Scan{Port: true, UDP: true, Infection: true}

func scanPlane(t *testing.T, s Scan) *plane {
	t.Helper()
	return openPlane(t, Options{Replay: true, Scan: s}, testTrails)
}

var (
	scanner = netip.MustParseAddr("203.0.113.9")
	target  = netip.MustParseAddr("198.51.100.7")
)

func probe(src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
	return pktbuild.Frame{Src: src, Dst: dst, Proto: pktbuild.TCP, Sport: sport, Dport: dport, TCPFlags: flags}.Bytes()
}

func udpProbe(src, dst netip.Addr, sport, dport uint16) []byte {
	return pktbuild.Frame{Src: src, Dst: dst, Proto: pktbuild.UDP, Sport: sport, Dport: dport, Payload: []byte("probe")}.Bytes()
}

// scans returns the scan records among recs.
func scans(recs []Record) []Record {
	var out []Record
	for _, r := range recs {
		if r.Kind == KindScan {
			out = append(out, r)
		}
	}
	return out
}

// sweep sends n probes made by frame(i), one per second from at, and
// returns the scan records they produced.
func (p *plane) sweep(t *testing.T, n int, at time.Time, frame func(i int) []byte) []Record {
	t.Helper()
	var out []Record
	for i := range n {
		_, recs := p.run(t, frame(i), at.Add(time.Duration(i)*time.Second))
		out = append(out, scans(recs)...)
	}
	return out
}

// burst sends n probes made by frame(i), all at time at, and returns the
// scan records they produced.
func (p *plane) burst(t *testing.T, n int, at time.Time, frame func(i int) []byte) []Record {
	t.Helper()
	var out []Record
	for i := range n {
		_, recs := p.run(t, frame(i), at)
		out = append(out, scans(recs)...)
	}
	return out
}

// TestScanPortThreshold: 10 distinct ports from one source to one host are
// no scan, the 11th is, and it is reported once, with the first probe's
// ports and the 11th probe's time.
func TestScanPortThreshold(t *testing.T) {
	for _, c := range []struct {
		name  string
		flags uint8
	}{{"syn", pktbuild.SYN}, {"null", 0x00}, {"fin", pktbuild.FIN}, {"xmas", 0x29}} {
		t.Run(c.name, func(t *testing.T) {
			p := scanPlane(t, allScans)
			port := func(i int) []byte { return probe(scanner, target, uint16(40000+i), uint16(1000+i), c.flags) }
			// ten ports, each probed twice: repeats are not distinct ports
			if got := p.sweep(t, 10, t0, port); len(got) != 0 {
				t.Fatalf("10 ports: %d alerts, want none", len(got))
			}
			if got := p.sweep(t, 10, t0.Add(10*time.Second), port); len(got) != 0 {
				t.Fatalf("the same 10 ports again: %d alerts, want none", len(got))
			}
			at := t0.Add(20 * time.Second)
			_, recs := p.run(t, port(10), at)
			got := scans(recs)
			if len(got) != 1 {
				t.Fatalf("11th port: %d alerts, want 1", len(got))
			}
			r := got[0]
			if r.Scan != ScanPort || r.L4Proto != pktbuild.TCP || r.SrcAddr() != scanner || r.DstAddr() != target ||
				r.Sport != 40000 || r.Dport != 1000 || r.Meta != 11 || r.TsNs != uint64(at.UnixNano()) || r.TCPFlags != c.flags {
				t.Errorf("alert %+v", r)
			}
			if more := p.burst(t, 20, at, func(i int) []byte { return port(11 + i) }); len(more) != 0 {
				t.Errorf("%d more alerts in the same window, want none", len(more))
			}
			cs := p.counters(t)
			if cs["scan_port"] != 1 || cs["scan_key"] != 1 || cs["scan_key_full"] != 20 {
				t.Errorf("counters %v", cs)
			}
			if c.flags != pktbuild.SYN && cs["scan_stealth"] != 41 {
				t.Errorf("scan_stealth %d, want 41", cs["scan_stealth"])
			}
		})
	}
}

// TestScanNearMisses: traffic that looks like a scan but is not.
func TestScanNearMisses(t *testing.T) {
	p := scanPlane(t, allScans)
	other := netip.MustParseAddr("198.51.100.8")
	cases := []struct {
		name  string
		n     int
		frame func(i int) []byte
	}{
		// bare ACKs are ordinary traffic (ack_sweep_no_fp)
		{"ack sweep", 30, func(i int) []byte { return probe(scanner, target, uint16(40000+i), uint16(3000+i), pktbuild.ACK) }},
		// an ECN SYN is not a SYN (flags exactly 0x02), nor a stealth probe
		{"ecn syn", 30, func(i int) []byte { return probe(scanner, target, uint16(40000+i), uint16(4000+i), 0xc2) }},
		// ten ports on each of two hosts: ten per pair
		{"two hosts", 20, func(i int) []byte {
			return probe(scanner, []netip.Addr{target, other}[i%2], uint16(40000+i), uint16(5000+i/2), pktbuild.SYN)
		}},
		// localhost is never a scan target
		{"localhost", 30, func(i int) []byte {
			return probe(scanner, netip.MustParseAddr("127.0.0.1"), uint16(40000+i), uint16(6000+i), pktbuild.SYN)
		}},
		// ten UDP ports plus DNS: DNS is not counted
		{"udp with dns", 11, func(i int) []byte {
			if i == 10 {
				return udpProbe(scanner, target, 40000, 53)
			}
			return udpProbe(scanner, target, uint16(40000+i), uint16(7000+i))
		}},
		// 40 hosts on a port that is not an infection port
		{"infection port 80", 40, func(i int) []byte {
			return probe(netip.MustParseAddr("10.0.0.5"), netip.AddrFrom4([4]byte{10, 9, 9, byte(i)}), uint16(53000+i), 80, pktbuild.SYN)
		}},
		// 32 hosts on 445
		{"32 hosts on 445", 32, func(i int) []byte {
			return probe(netip.MustParseAddr("10.0.0.6"), netip.AddrFrom4([4]byte{10, 9, 8, byte(i)}), uint16(53000+i), 445, pktbuild.SYN)
		}},
	}
	for _, c := range cases {
		if got := p.burst(t, c.n, t0, c.frame); len(got) != 0 {
			t.Errorf("%s: %d alerts, want none: %+v", c.name, len(got), got)
		}
	}
	if n := p.counters(t)["scan_local_dst"]; n != 30 {
		t.Errorf("scan_local_dst %d, want 30", n)
	}
}

func TestScanUDP(t *testing.T) {
	p := scanPlane(t, allScans)
	got := p.sweep(t, 20, t0, func(i int) []byte { return udpProbe(scanner, target, uint16(40000+i), uint16(1000+i)) })
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	r := got[0]
	if r.Scan != ScanUDP || r.L4Proto != pktbuild.UDP || r.SrcAddr() != scanner || r.DstAddr() != target ||
		r.Sport != 40000 || r.Dport != 1000 || r.TsNs != uint64(t0.Add(10*time.Second).UnixNano()) {
		t.Errorf("alert %+v", r)
	}
	if n := p.counters(t)["scan_udp"]; n != 1 {
		t.Errorf("scan_udp %d", n)
	}
}

// TestScanIPv6: keys take IPv6 addresses, and an IPv6 pair whose bytes
// equal an IPv4 pair's (2001:db8:: and 32.1.13.184) is another key.
func TestScanIPv6(t *testing.T) {
	p := scanPlane(t, allScans)
	a6 := netip.MustParseAddr("2001:db8::")
	a4 := netip.MustParseAddr("32.1.13.184")
	got := p.burst(t, 6, t0, func(i int) []byte { return probe(a6, a6, 40000, uint16(1000+i), pktbuild.SYN) })
	got = append(got, p.burst(t, 6, t0, func(i int) []byte { return probe(a4, a4, 40000, uint16(1006+i), pktbuild.SYN) })...)
	if len(got) != 0 {
		t.Fatalf("6+6 ports on two keys: %d alerts", len(got))
	}
	got = p.burst(t, 6, t0, func(i int) []byte { return probe(a6, a6, 40000, uint16(2000+i), pktbuild.SYN) })
	if len(got) != 1 || got[0].SrcAddr() != a6 || got[0].DstAddr() != a6 || got[0].Family != 6 {
		t.Fatalf("IPv6 port scan: %+v", got)
	}
	// infection over IPv6: 33 hosts of one /64 (an IPv6 source is its own
	// prefix: here tied with 32.1. for the most sources)
	got = p.burst(t, 33, t0, func(i int) []byte {
		d := a6.As16()
		d[15] = byte(i + 1)
		return probe(a6, netip.AddrFrom16(d), uint16(50000+i), 3389, pktbuild.SYN)
	})
	if len(got) != 1 || got[0].Scan != ScanInfection || got[0].Dport != 3389 || got[0].DstAddr() != netip.MustParseAddr("2001:db8::1") {
		t.Fatalf("IPv6 infection: %+v", got)
	}
}

// TestScanInfection: 33 hosts on an infection port from a local source.
func TestScanInfection(t *testing.T) {
	p := scanPlane(t, allScans)
	src := netip.MustParseAddr("10.0.0.5")
	host := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 9, 9, byte(i)}) }
	var got []Record
	for i := range 40 {
		_, recs := p.run(t, probe(src, host(i), uint16(53000+i), 445, pktbuild.SYN), t0)
		got = append(got, scans(recs)...)
		if i == 31 && len(got) != 0 {
			t.Fatalf("32 hosts: %d alerts", len(got))
		}
		if i == 32 && len(got) != 1 {
			t.Fatalf("33 hosts: %d alerts, want 1", len(got))
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	r := got[0]
	if r.Scan != ScanInfection || r.L4Proto != pktbuild.TCP || r.SrcAddr() != src || r.DstAddr() != host(0) ||
		r.Sport != 53000 || r.Dport != 445 || r.Meta != 33 {
		t.Errorf("alert %+v", r)
	}
	cs := p.counters(t)
	if cs["scan_infection"] != 1 || cs["scan_source"] != 1 || cs["scan_key_full"] != 7 {
		t.Errorf("counters %v", cs)
	}
}

// TestScanLocalPrefix: an infection scan alerts only for a source under
// the window's most common a.b. prefix, and once the prefix becomes its
// own, the scanner's next probe alerts.
func TestScanLocalPrefix(t *testing.T) {
	p := scanPlane(t, allScans)
	prefix := func(p *plane, want string) {
		t.Helper()
		if got, err := p.dp.LocalPrefix(); err != nil || got != want {
			t.Errorf("LocalPrefix %q, %v; want %q", got, err, want)
		}
	}
	prefix(p, "")
	// three sources of 192.168. connect somewhere: the local prefix
	for i := range 3 {
		p.run(t, probe(netip.AddrFrom4([4]byte{192, 168, 1, byte(i + 1)}), target, 50000, 443, pktbuild.SYN), t0)
	}
	prefix(p, "192.168.")
	src := netip.MustParseAddr("10.0.0.5")
	hostProbe := func(i int) []byte {
		return probe(src, netip.AddrFrom4([4]byte{10, 9, 9, byte(i)}), uint16(53000+i), 445, pktbuild.SYN)
	}
	if got := p.burst(t, 40, t0, hostProbe); len(got) != 0 {
		t.Fatalf("scanner outside the local prefix: %d alerts", len(got))
	}
	if n := p.counters(t)["scan_nonlocal"]; n != 8 {
		t.Errorf("scan_nonlocal %d, want 8 (the 33rd host and the 7 after it)", n)
	}
	// 10.0. gains three more sources: four against three
	for i := range 3 {
		p.run(t, probe(netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}), target, 50000, 443, pktbuild.SYN), t0)
	}
	prefix(p, "10.0.")
	_, recs := p.run(t, hostProbe(3), t0.Add(5*time.Second))
	if got := scans(recs); len(got) != 1 || got[0].Scan != ScanInfection || got[0].DstAddr() != netip.MustParseAddr("10.9.9.0") {
		t.Fatalf("scanner now local: %+v", got)
	}
	// a tie counts as local: 172.16. with one source each
	q := scanPlane(t, allScans)
	q.run(t, probe(netip.MustParseAddr("172.17.0.1"), target, 50000, 443, pktbuild.SYN), t0)
	got := q.burst(t, 33, t0, func(i int) []byte {
		return probe(netip.MustParseAddr("172.16.0.5"), netip.AddrFrom4([4]byte{10, 9, 9, byte(i)}), 53000, 139, pktbuild.SYN)
	})
	if len(got) != 1 {
		t.Fatalf("tied prefix: %d alerts, want 1", len(got))
	}
	prefix(q, "172.17.") // Maltrail's tie: the textually largest
	// the next window forgets the last one's sources ("1.2." sorts below
	// them); an IPv6 source is its own prefix
	q.run(t, probe(netip.MustParseAddr("1.2.3.4"), target, 50000, 443, pktbuild.SYN), t0.Add(time.Minute))
	prefix(q, "1.2.")
	q.run(t, probe(netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("2001:db8::7"), 50000, 443, pktbuild.SYN), t0.Add(2*time.Minute))
	prefix(q, "2001:db8::5")
}

// TestScanWindow: state lives SCAN_WINDOW seconds from the window's first
// probe; a new window counts afresh and alerts again.
func TestScanWindow(t *testing.T) {
	p := scanPlane(t, Scan{Port: true, Window: 10 * time.Second})
	port := func(i int) []byte { return probe(scanner, target, 40000, uint16(1000+i), pktbuild.SYN) }
	run := func(at time.Time, from, n int) int {
		got := 0
		for i := range n {
			_, recs := p.run(t, port(from+i), at)
			got += len(scans(recs))
		}
		return got
	}
	// window [t0, t0+10s): 6 ports, then 5 more at t0+10s are a new window
	if n := run(t0, 0, 6); n != 0 {
		t.Fatal(n)
	}
	if n := run(t0.Add(10*time.Second), 6, 5); n != 0 {
		t.Fatalf("5 ports in a new window after 6 in the last: %d alerts", n)
	}
	// the new window began at t0+10s: 6 more ports at t0+19s make 11
	if n := run(t0.Add(19*time.Second), 11, 6); n != 1 {
		t.Fatalf("11 ports within one window: %d alerts, want 1", n)
	}
	// one alert per window; the next window alerts again
	if n := run(t0.Add(19*time.Second), 17, 11); n != 0 {
		t.Fatalf("second alert in one window: %d", n)
	}
	if n := run(t0.Add(20*time.Second), 0, 11); n != 1 {
		t.Fatalf("next window: %d alerts, want 1", n)
	}
	// a clock going back (replay of an older capture) stays in the window
	other := netip.MustParseAddr("198.51.100.8")
	if got := p.burst(t, 11, t0, func(i int) []byte { return probe(scanner, other, 40000, uint16(1000+i), pktbuild.SYN) }); len(got) != 1 {
		t.Fatalf("earlier time: %d alerts, want 1", len(got))
	}
	if w := p.counters(t)["scan_window"]; w != 3 {
		t.Errorf("scan_window %d, want 3", w)
	}
}

// TestScanConfig: only what is enabled is counted and reported.
func TestScanConfig(t *testing.T) {
	p := scanPlane(t, allScans)
	if err := p.dp.SetScan(Scan{}); err != nil {
		t.Fatal(err)
	}
	port := func(i int) []byte { return probe(scanner, target, 40000, uint16(1000+i), pktbuild.SYN) }
	if got := p.sweep(t, 20, t0, port); len(got) != 0 {
		t.Fatalf("scans off: %d alerts", len(got))
	}
	if n := p.counters(t)["scan_key"]; n != 0 {
		t.Fatalf("scans off: %d keys", n)
	}
	// infection only: the port scan is counted (its keys feed the local
	// prefix) but not reported
	if err := p.dp.SetScan(Scan{Infection: true}); err != nil {
		t.Fatal(err)
	}
	if got := p.sweep(t, 20, t0.Add(time.Hour), port); len(got) != 0 {
		t.Fatalf("port scans off: %d alerts", len(got))
	}
	if got := p.sweep(t, 20, t0.Add(time.Hour), func(i int) []byte { return udpProbe(scanner, target, 40000, uint16(1000+i)) }); len(got) != 0 {
		t.Fatalf("UDP scans off: %d alerts", len(got))
	}
	got := p.burst(t, 33, t0.Add(time.Hour), func(i int) []byte {
		return probe(scanner, netip.AddrFrom4([4]byte{10, 9, 9, byte(i)}), 40000, 1433, pktbuild.SYN)
	})
	if len(got) != 1 || got[0].Scan != ScanInfection {
		t.Fatalf("infection on: %+v", got)
	}
	for _, bad := range []time.Duration{-time.Second, 500 * time.Millisecond, 1500 * time.Millisecond, MaxScanWindow + time.Second} {
		if err := p.dp.SetScan(Scan{Port: true, Window: bad}); err == nil {
			t.Errorf("window %v accepted", bad)
		}
	}
}

// TestScanCaps: a flood of random sources stays within the caps, which the
// counters show; one pair keeps only threshold + 1 ports.
func TestScanCaps(t *testing.T) {
	p := scanPlane(t, allScans)
	const flood = ScanMaxKeys + 10000
	for i := range uint32(flood) {
		// distinct sources in a scrambled order (an odd multiplier is a
		// bijection of uint32)
		src := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, (i+1)*2654435761)))
		if _, recs := p.run(t, probe(src, target, 40000, 445, pktbuild.SYN), t0); len(scans(recs)) != 0 {
			t.Fatal("a flood of one probe per source alerted")
		}
		if _, recs := p.run(t, udpProbe(src, target, 40000, 1000), t0); len(scans(recs)) != 0 {
			t.Fatal("a flood of one datagram per source alerted")
		}
	}
	// each SYN takes a port key and an infection key of the window's
	// ScanMaxKeys TCP keys; each datagram a UDP key
	cs := p.counters(t)
	tcpSources := ScanMaxKeys / 2
	if cs["scan_key"] != 2*ScanMaxKeys || cs["scan_key_cap"] != uint64(2*(flood-tcpSources)+(flood-ScanMaxKeys)) ||
		cs["scan_source"] != uint64(tcpSources) {
		t.Errorf("scan_key %d, scan_key_cap %d, scan_source %d after %d sources", cs["scan_key"], cs["scan_key_cap"], cs["scan_source"], flood)
	}
	// the TCP map holds the port pairs and the infection keys
	for name, c := range map[string]struct {
		m    *ebpf.Map
		want int
	}{"tcp": {p.dp.objs.XtScanTcp, 2 * tcpSources}, "udp": {p.dp.objs.XtScanUdp, ScanMaxKeys}, "srcs": {p.dp.objs.XtScanSrcs, tcpSources}} {
		if n := entries(t, c.m); n > c.want {
			t.Errorf("%s: %d entries, want at most %d", name, n, c.want)
		}
	}
	var idx uint32
	var pfx uint64
	sources := 0
	for it := p.dp.objs.XtScanPfx.Iterate(); it.Next(&idx, &pfx); {
		sources += int(uint32(pfx))
	}
	if sources != tcpSources {
		t.Errorf("prefix counts sum to %d sources, want %d", sources, tcpSources)
	}
	// a new pair is refused until the window ends (Maltrail's cap)
	if got := p.sweep(t, 11, t0, func(i int) []byte { return probe(scanner, target, 40000, uint16(1000+i), pktbuild.SYN) }); len(got) != 0 {
		t.Fatalf("alert past the key cap: %+v", got)
	}
	if got := p.sweep(t, 11, t0.Add(time.Minute), func(i int) []byte {
		return probe(scanner, target, 40000, uint16(1000+i), pktbuild.SYN)
	}); len(got) != 1 {
		t.Fatalf("next window: %d alerts, want 1", len(got))
	}
	// one pair, a thousand ports: threshold + 1 slots
	q := scanPlane(t, allScans)
	q.burst(t, 1000, t0, func(i int) []byte { return probe(scanner, target, 40000, uint16(1000+i), 0) })
	var k xtrailXtScanKey
	var v xtrailXtScanPorts
	it := q.dp.objs.XtScanTcp.Iterate()
	for it.Next(&k, &v) {
		if v.N&0xff != ScanPortThreshold+1 {
			t.Errorf("pair keeps %d ports", v.N&0xff)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if n := q.counters(t)["scan_key_full"]; n != 1000-ScanPortThreshold-1 {
		t.Errorf("scan_key_full %d", n)
	}
}

func entries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	n := 0
	k, next := make([]byte, m.KeySize()), make([]byte, m.KeySize())
	var prev any // nil: the first key
	for {
		if err := m.NextKey(prev, next); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return n
			}
			t.Fatal(err)
		}
		n++
		copy(k, next)
		prev = k
	}
}

// TestScanConcurrent: CPUs counting the same pairs at once count every
// port once and alert exactly once per pair.
func TestScanConcurrent(t *testing.T) {
	p := scanPlane(t, Scan{Port: true})
	if err := p.dp.SetClock(t0); err != nil {
		t.Fatal(err)
	}
	const pairs, workers, rounds = 50, 4, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			// every worker sends every pair the same ports in the same
			// order, so workers on two CPUs meet on the same slots
			for r := range rounds {
				for j := range pairs * (ScanPortThreshold + 1) {
					src := netip.AddrFrom4([4]byte{10, 1, byte(r), byte(j % pairs)})
					frame := probe(src, target, uint16(40000+w), uint16(1000+j/pairs), pktbuild.SYN)
					if _, err := p.dp.Run(frame); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	var got []Record
	_, recs := p.run(t, probe(scanner, scanner, 1, 1, pktbuild.ACK), t0)
	got = append(got, scans(recs)...)
	if len(got) != pairs*rounds {
		t.Fatalf("%d alerts for %d pairs", len(got), pairs*rounds)
	}
	seen := map[netip.Addr]bool{}
	for _, r := range got {
		if seen[r.SrcAddr()] || r.Meta != ScanPortThreshold+1 {
			t.Fatalf("alert %+v (seen %v)", r, seen[r.SrcAddr()])
		}
		seen[r.SrcAddr()] = true
	}
}

// TestScanMemory: the scan maps take kernel memory only for the scans the
// program was loaded to count, and no more than the compact layouts need;
// a program loaded without a scan refuses to count it later.
func TestScanMemory(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name     string
		scan     Scan
		tcp, udp uint32 // entries
		max      uint64 // scan map bytes
	}{
		// 50.5 MiB before the compact layouts, whatever was counted
		{"off", Scan{}, 1, 1, 64 << 10},
		{"udp only", Scan{UDP: true}, 1, scanEntries, 7.5 * mib},
		{"infection only", Scan{Infection: true}, scanEntries, 1, 13.5 * mib},
		{"all", allScans, scanEntries, scanEntries, 20.5 * mib},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := scanPlane(t, c.scan)
			for m, want := range map[*ebpf.Map]uint32{p.dp.objs.XtScanTcp: c.tcp, p.dp.objs.XtScanSrcs: c.tcp, p.dp.objs.XtScanPfx: c.tcp, p.dp.objs.XtScanUdp: c.udp} {
				if m.MaxEntries() != want {
					t.Errorf("%v: %d entries, want %d", m, m.MaxEntries(), want)
				}
			}
			mem, err := p.dp.ProgramMemory()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("kernel memory: scan maps %d bytes (%.2f MiB), ring %.2f MiB, other %d bytes", mem.Scan, float64(mem.Scan)/mib, float64(mem.Ring)/mib, mem.Other)
			if mem.Scan > c.max || mem.Ring == 0 || mem.Other == 0 {
				t.Errorf("scan maps take %d bytes, want at most %d (%+v)", mem.Scan, c.max, mem)
			}
			if c.scan != allScans {
				if err := p.dp.SetScan(allScans); err == nil {
					t.Error("a program loaded without every scan took them all")
				}
			}
		})
	}
}

// TestScanPortSlots: ports are kept two to a slot and port 0 as a flag;
// the edges of the port range count once each, like any other port.
func TestScanPortSlots(t *testing.T) {
	p := scanPlane(t, allScans)
	ports := []uint16{0, 65535, 1, 2, 3, 4, 5, 6, 7, 8}
	for round := range 3 { // each port three times: repeats are not distinct
		if got := p.burst(t, len(ports), t0.Add(time.Duration(round)*time.Second), func(i int) []byte {
			return probe(scanner, target, 40000, ports[i], pktbuild.SYN)
		}); len(got) != 0 {
			t.Fatalf("round %d of 10 ports: %d alerts", round, len(got))
		}
	}
	_, recs := p.run(t, probe(scanner, target, 40000, 9, pktbuild.SYN), t0.Add(5*time.Second))
	if got := scans(recs); len(got) != 1 || got[0].Dport != 0 {
		t.Fatalf("11th port: %+v, want one alert with the first port, 0", got)
	}
}

// TestScanInfectionThroughPairs: an infection scan's destinations are
// counted through their (src, dst) pairs, so hosts first port-scanned past
// the pair's threshold still count once each for the infection port.
func TestScanInfectionThroughPairs(t *testing.T) {
	p := scanPlane(t, allScans)
	src := netip.MustParseAddr("10.0.0.5")
	var got []Record
	for h := range 33 {
		dst := netip.AddrFrom4([4]byte{10, 9, 9, byte(h)})
		for port := range 12 {
			_, recs := p.run(t, probe(src, dst, 53000, uint16(2000+port), pktbuild.SYN), t0)
			got = append(got, scans(recs)...)
		}
		for range 2 { // twice: one destination
			_, recs := p.run(t, probe(src, dst, uint16(53000+h), 445, pktbuild.SYN), t0)
			got = append(got, scans(recs)...)
		}
		if h == 31 && len(got) != 32 {
			t.Fatalf("32 hosts: %d alerts, want only their 32 port scans", len(got))
		}
	}
	var inf []Record
	for _, r := range got {
		if r.Scan == ScanInfection {
			inf = append(inf, r)
		}
	}
	if len(inf) != 1 || inf[0].Dport != 445 || inf[0].DstAddr() != netip.MustParseAddr("10.9.9.0") || inf[0].Sport != 53000 {
		t.Fatalf("infection alerts %+v, want one for 445 with the first host", inf)
	}
}
