package dataplane

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/trails"
)

const testTrails = "66.66.66.66,malware (test),(static)\r\n" +
	"6.6.6.6:8443,malware (test),(static)\r\n" +
	"198.51.100.53,known attacker,(static)\r\n" +
	"198.51.100.91,parking site (suspicious),(static)\r\n" +
	"198.51.100.66,botnet c2 (test),(static)\r\n" +
	"7.7.7.7,phishing (test),(static)\r\n" +
	"dead::beef,malware (test),(static)\r\n" +
	"[dead::beef]:443,malware (test),(static)\r\n" +
	"8.8.4.4:53,dns c2 (test),(static)\r\n" +
	"evil-test-domain.com,malware (test),(static)\r\n"

type plane struct {
	dp *Dataplane
	rd *ringbuf.Reader
}

func newPlane(t *testing.T, csv string, action Action) *plane {
	t.Helper()
	return openPlane(t, Options{Replay: true, Action: action}, csv)
}

// openPlane loads the program with o and the trails of csv.
func openPlane(t *testing.T, o Options, csv string) *plane {
	t.Helper()
	testenv.RequireRoot(t)
	dp, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	set, err := trails.LoadSet(strings.NewReader(csv), "test.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.Trails().Replace(set); err != nil {
		t.Fatal(err)
	}
	rd, err := dp.NewRingReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return &plane{dp: dp, rd: rd}
}

// run passes one frame through the program at time at and returns the
// verdict and the records it produced.
func (p *plane) run(t *testing.T, frame []byte, at time.Time) (uint32, []Record) {
	t.Helper()
	if err := p.dp.SetClock(at); err != nil {
		t.Fatal(err)
	}
	verdict, err := p.dp.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	if p.rd.AvailableBytes() == 0 {
		return verdict, nil
	}
	return verdict, readRecords(t, p.rd)
}

func (p *plane) counters(t *testing.T) map[string]uint64 {
	t.Helper()
	m, err := p.dp.CounterMap()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	clean  = netip.MustParseAddr("10.0.0.5")
	clean2 = netip.MustParseAddr("93.184.216.34")
	bad    = netip.MustParseAddr("66.66.66.66")
	badIP6 = netip.MustParseAddr("dead::beef")
	host6  = netip.MustParseAddr("2001:db8::5")
	t0     = time.Unix(1786094062, 117034000)
)

func syn(src, dst netip.Addr, sport, dport uint16) pktbuild.Frame {
	return pktbuild.Frame{Src: src, Dst: dst, Proto: pktbuild.TCP, Sport: sport, Dport: dport, TCPFlags: pktbuild.SYN}
}

type want struct {
	kind, side, ttype uint8
	meta              bool // record names a trail
}

func TestProgramBranches(t *testing.T) {
	clientHello := append([]byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03}, make([]byte, 60)...)
	dnsQuery := []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01")
	quicInit := append([]byte{0xc3, 0x00, 0x00, 0x00, 0x01, 0x08}, make([]byte, 100)...)
	cases := []struct {
		name    string
		frame   pktbuild.Frame
		want    []want
		counter string // must have counted once
	}{
		{"tcp data packet", pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.TCP, Sport: 5000, Dport: 443, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: []byte("\x17\x03\x03 encrypted bytes")}, nil, "tcp"},
		{"syn miss", syn(clean, clean2, 5000, 80), nil, "tcp_syn"},
		{"syn dst ip", syn(clean, bad, 5000, 80), []want{{KindIP, SideDst, TrailIP, true}}, "hit_dst"},
		{"syn dst ip:port", syn(clean, netip.MustParseAddr("6.6.6.6"), 5000, 8443), []want{{KindIP, SideDst, TrailIPort, true}}, "hit_dst"},
		{"syn dst ip, other port of an ip:port trail", syn(clean, netip.MustParseAddr("6.6.6.6"), 5000, 80), nil, "tcp_syn"},
		{"syn src ip", syn(netip.MustParseAddr("198.51.100.66"), clean, 5000, 80), []want{{KindIP, SideSrc, TrailIP, true}}, "hit_src"},
		{"syn dst attacker is silent", syn(clean, netip.MustParseAddr("198.51.100.53"), 5000, 80), nil, "hit_suppressed"},
		{"syn src attacker speaks", syn(netip.MustParseAddr("198.51.100.53"), clean, 5000, 80), []want{{KindIP, SideSrc, TrailIP, true}}, "hit_src"},
		{"syn dst parking off 80/443 is silent", syn(clean, netip.MustParseAddr("198.51.100.91"), 5000, 22), nil, "hit_suppressed"},
		{"syn dst parking on 443", syn(clean, netip.MustParseAddr("198.51.100.91"), 5000, 443), []want{{KindIP, SideDst, TrailIP, true}}, "hit_dst"},
		{"syn src malware is silent", syn(bad, clean, 80, 5000), nil, "hit_suppressed"},
		{"syn src trail to localhost is ignored", syn(netip.MustParseAddr("198.51.100.66"), netip.MustParseAddr("127.0.0.1"), 5000, 80), nil, "tcp_syn"},
		{"ecn syn is not a syn", pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.TCP, Sport: 5000, Dport: 80, TCPFlags: 0xC2}, nil, "tcp"},
		{"syn-ack is not a syn", pktbuild.Frame{Src: bad, Dst: clean, Proto: pktbuild.TCP, Sport: 80, Dport: 5000, TCPFlags: pktbuild.SYN | pktbuild.ACK}, nil, "tcp"},
		{"udp dst", pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.UDP, Sport: 5000, Dport: 9999, Payload: []byte("x")}, []want{{KindIP, SideDst, TrailIP, true}}, "hit_dst"},
		{"udp dst attacker is silent", pktbuild.Frame{Src: clean, Dst: netip.MustParseAddr("198.51.100.53"), Proto: pktbuild.UDP, Sport: 5000, Dport: 9999}, nil, "hit_suppressed"},
		{"udp src malware is silent", pktbuild.Frame{Src: bad, Dst: clean, Proto: pktbuild.UDP, Sport: 9999, Dport: 5000}, nil, "hit_suppressed"},
		{"udp has no ip:port matching", pktbuild.Frame{Src: clean, Dst: netip.MustParseAddr("6.6.6.6"), Proto: pktbuild.UDP, Sport: 5000, Dport: 8443}, nil, "udp"},
		{"dns query is a candidate", pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.UDP, Sport: 5000, Dport: 53, Payload: dnsQuery}, []want{{KindDNS, 0, 0, false}}, "cand_dns"},
		{"dns query to a trail ip names it", pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.UDP, Sport: 5000, Dport: 53, Payload: dnsQuery}, []want{{KindDNS, SideDst, TrailIP, true}}, "cand_dns"},
		{"dns query to a trail ip:port names it", pktbuild.Frame{Src: clean, Dst: netip.MustParseAddr("8.8.4.4"), Proto: pktbuild.UDP, Sport: 5000, Dport: 53, Payload: dnsQuery}, []want{{KindDNS, SideDst, TrailIPort, true}}, "cand_dns"},
		{"dns query from a trail ip names it", pktbuild.Frame{Src: netip.MustParseAddr("198.51.100.66"), Dst: clean2, Proto: pktbuild.UDP, Sport: 5000, Dport: 53, Payload: dnsQuery}, []want{{KindDNS, SideSrc, TrailIP, true}}, "cand_dns"},
		{"dns over tcp is a candidate", pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.TCP, Sport: 5000, Dport: 53, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: append([]byte{0, byte(len(dnsQuery))}, dnsQuery...)}, []want{{KindDNS, 0, 0, false}}, "cand_dns"},
		{"http request to a trail ip names it", pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.TCP, Sport: 5000, Dport: 80, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: []byte("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")}, []want{{KindHTTP, SideDst, TrailIP, true}}, "cand_http"},
		{"icmp echo dst", pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.ICMP, ICMPType: 8}, []want{{KindIP, SideDst, TrailIP, true}}, "icmp_echo"},
		{"icmp echo reply is ignored", pktbuild.Frame{Src: bad, Dst: clean, Proto: pktbuild.ICMP, ICMPType: 0}, nil, "icmp_other"},
		{"icmp echo src malware speaks", pktbuild.Frame{Src: bad, Dst: clean, Proto: pktbuild.ICMP, ICMPType: 8}, []want{{KindIP, SideSrc, TrailIP, true}}, "hit_src"},
		{"gre dst", pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.GRE}, []want{{KindIP, SideDst, TrailIP, true}}, "other_proto"},
		{"ipv6 syn dst", syn(host6, badIP6, 5000, 80), []want{{KindIP, SideDst, TrailIP, true}}, "ipv6"},
		{"ipv6 syn dst ip:port", syn(host6, badIP6, 5000, 443), []want{{KindIP, SideDst, TrailIPort, true}}, "hit_dst"},
		{"ipv6 syn miss", syn(host6, netip.MustParseAddr("2001:db8::9"), 5000, 443), nil, "ipv6"},
		{"icmpv6 echo dst", pktbuild.Frame{Src: host6, Dst: badIP6, Proto: pktbuild.ICMPv6, ICMPType: 128}, []want{{KindIP, SideDst, TrailIP, true}}, "icmp_echo"},
		{"vlan syn", func() pktbuild.Frame { f := syn(clean, bad, 5001, 80); f.VLANs = []uint16{7}; return f }(), []want{{KindIP, SideDst, TrailIP, true}}, "vlan"},
		{"qinq syn", func() pktbuild.Frame { f := syn(clean, bad, 5002, 80); f.VLANs = []uint16{7, 8}; return f }(), []want{{KindIP, SideDst, TrailIP, true}}, "qinq"},
		{"pppoe syn", func() pktbuild.Frame { f := syn(clean, bad, 5003, 80); f.PPPoE = true; return f }(), []want{{KindIP, SideDst, TrailIP, true}}, "pppoe"},
		{"pppoe ipv6 syn", func() pktbuild.Frame { f := syn(host6, badIP6, 5003, 80); f.PPPoE = true; return f }(), []want{{KindIP, SideDst, TrailIP, true}}, "pppoe"},
		{"ipv4 options", func() pktbuild.Frame { f := syn(clean, bad, 5004, 80); f.IPOpts = 8; return f }(), []want{{KindIP, SideDst, TrailIP, true}}, "hit_dst"},
		{"non-first fragment skipped", func() pktbuild.Frame { f := syn(clean, bad, 5005, 80); f.FragOff = 10; return f }(), nil, "fragment"},
		{"arp is not ip", pktbuild.Frame{EthType: 0x0806, Payload: make([]byte, 28)}, nil, "non_ip"},
		{"http request candidate", pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.TCP, Sport: 5000, Dport: 8080, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: []byte("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")}, []want{{KindHTTP, 0, 0, false}}, "cand_http"},
		{"http response candidate", pktbuild.Frame{Src: clean2, Dst: clean, Proto: pktbuild.TCP, Sport: 80, Dport: 5000, TCPFlags: pktbuild.ACK, Payload: []byte("HTTP/1.1 200 OK\r\n\r\n")}, []want{{KindHTTP, 0, 0, false}}, "cand_http"},
		{"tls client hello candidate", pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.TCP, Sport: 5000, Dport: 443, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: clientHello}, []want{{KindTLS, 0, 0, false}}, "cand_tls"},
		{"quic initial candidate", pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.UDP, Sport: 5000, Dport: 443, Payload: quicInit}, []want{{KindQUIC, 0, 0, false}}, "cand_quic"},
	}
	p := newPlane(t, testTrails, ActionPass)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := p.counters(t)
			// a new second per case keeps the repeat slots out of the way
			verdict, recs := p.run(t, c.frame.Bytes(), t0.Add(time.Duration(i)*time.Second))
			if verdict != uint32(ActionPass) {
				t.Errorf("verdict %d, want XDP_PASS", verdict)
			}
			after := p.counters(t)
			if after["packets"] != before["packets"]+1 {
				t.Errorf("packets counter %d -> %d", before["packets"], after["packets"])
			}
			if after[c.counter] <= before[c.counter] {
				t.Errorf("counter %s did not move (%d)", c.counter, after[c.counter])
			}
			if len(recs) != len(c.want) {
				t.Fatalf("%d records, want %d: %+v", len(recs), len(c.want), recs)
			}
			for i, w := range c.want {
				r := recs[i]
				if r.Kind != w.kind || r.Side != w.side || r.TrailType != w.ttype {
					t.Errorf("record %d: kind %d side %d type %d, want %+v", i, r.Kind, r.Side, r.TrailType, w)
				}
				if w.meta && r.Meta == 0 {
					t.Errorf("record %d names no trail meta", i)
				}
				if r.SrcAddr() != c.frame.Src || r.DstAddr() != c.frame.Dst {
					t.Errorf("record %d addresses %s -> %s", i, r.SrcAddr(), r.DstAddr())
				}
				if r.Sport != c.frame.Sport || r.Dport != c.frame.Dport {
					t.Errorf("record %d ports %d -> %d", i, r.Sport, r.Dport)
				}
				if w.kind != KindIP {
					if !bytes.Equal(r.Payload, c.frame.Payload) || int(r.OrigLen) != len(c.frame.Payload) {
						t.Errorf("candidate payload %q (orig %d), want %q", r.Payload, r.OrigLen, c.frame.Payload)
					}
				}
			}
		})
	}
}

func TestRecordMetaText(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	_, recs := p.run(t, syn(clean, netip.MustParseAddr("7.7.7.7"), 5000, 80).Bytes(), t0)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	info, ref, err := p.dp.Trails().Meta(recs[0].Meta)
	if err != nil || info != "phishing (test)" || ref != "(static)" {
		t.Fatalf("meta %q %q %v", info, ref, err)
	}
	if recs[0].TsNs != uint64(t0.UnixNano()) {
		t.Errorf("record clock %d, want the replay clock %d", recs[0].TsNs, t0.UnixNano())
	}
	if p.dp.cfgMem == nil {
		t.Error("the replay clock is not mapped: every packet costs a map update")
	}
	// the clock is exact per packet, also within one second
	at := t0.Add(1500 * time.Microsecond)
	_, recs = p.run(t, syn(clean, netip.MustParseAddr("7.7.7.7"), 5001, 80).Bytes(), at)
	if len(recs) != 1 || recs[0].TsNs != uint64(at.UnixNano()) {
		t.Errorf("second record %+v, want clock %d", recs, at.UnixNano())
	}
}

func TestRepeatSuppression(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	s := syn(clean, bad, 5000, 80).Bytes()
	other := syn(clean, clean2, 5001, 80).Bytes()
	n := func(frame []byte, at time.Time) int { _, r := p.run(t, frame, at); return len(r) }
	if got := n(s, t0); got != 1 {
		t.Fatalf("first SYN: %d records", got)
	}
	if got := n(s, t0.Add(100*time.Millisecond)); got != 0 {
		t.Errorf("repeated SYN in the same second: %d records", got)
	}
	// Another SYN in between: the burst slot moved on, but the same tuple
	// was the last one logged in this second, so Maltrail stays quiet.
	n(other, t0.Add(200*time.Millisecond))
	if got := n(s, t0.Add(300*time.Millisecond)); got != 0 {
		t.Errorf("SYN logged just before in the same second: %d records", got)
	}
	if got := n(s, t0.Add(time.Second)); got != 1 {
		t.Errorf("same SYN in the next second: %d records", got)
	}
	c := p.counters(t)
	if c["syn_dup"] != 1 || c["hit_repeat"] != 1 {
		t.Errorf("syn_dup %d hit_repeat %d, want 1 and 1", c["syn_dup"], c["hit_repeat"])
	}
	u := pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.UDP, Sport: 5000, Dport: 9999}.Bytes()
	if got := n(u, t0.Add(5*time.Second)); got != 1 {
		t.Fatalf("first datagram: %d", got)
	}
	if got := n(u, t0.Add(5*time.Second+time.Millisecond)); got != 0 {
		t.Errorf("repeated datagram: %d", got)
	}
	if p.counters(t)["udp_dup"] != 1 {
		t.Errorf("udp_dup not counted")
	}
}

func TestTruncatedAndMalformed(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	frames := [][]byte{
		syn(clean, bad, 5000, 80).Bytes(),
		syn(host6, badIP6, 5000, 80).Bytes(),
		pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.UDP, Sport: 1, Dport: 2}.Bytes(),
		func() []byte {
			f := syn(clean, bad, 5000, 80)
			f.VLANs = []uint16{1, 2}
			f.PPPoE = true
			return f.Bytes()
		}(),
	}
	at := t0
	for _, full := range frames {
		// every cut that ends inside a header the program needs
		for cut := 14; cut < len(full); cut++ {
			at = at.Add(time.Second)
			before := p.counters(t)["truncated"]
			_, recs := p.run(t, full[:cut], at)
			if len(recs) != 0 {
				t.Fatalf("frame cut at %d/%d produced %d records", cut, len(full), len(recs))
			}
			if p.counters(t)["truncated"] != before+1 {
				t.Fatalf("frame cut at %d/%d: truncated not counted", cut, len(full))
			}
		}
	}
	// bad IHL and version
	b := syn(clean, bad, 5000, 80).Bytes()
	b[14] = 0x43
	if _, recs := p.run(t, b, at.Add(time.Second)); len(recs) != 0 {
		t.Error("IHL 3 produced a record")
	}
	b[14] = 0x55
	if _, recs := p.run(t, b, at.Add(2*time.Second)); len(recs) != 0 {
		t.Error("IP version 5 produced a record")
	}
	if p.counters(t)["ip_bad"] != 2 {
		t.Errorf("ip_bad %d, want 2", p.counters(t)["ip_bad"])
	}
}

func TestDropAction(t *testing.T) {
	p := newPlane(t, testTrails, ActionDrop)
	v, recs := p.run(t, syn(clean, bad, 5000, 80).Bytes(), t0)
	if v != uint32(ActionDrop) || len(recs) != 1 {
		t.Fatalf("verdict %d records %d: want XDP_DROP and the hit still recorded", v, len(recs))
	}
	v, _ = p.run(t, pktbuild.Frame{EthType: 0x0806, Payload: make([]byte, 28)}.Bytes(), t0)
	if v != uint32(ActionDrop) {
		t.Fatalf("non-IP verdict %d", v)
	}
	if p.counters(t)["action_drop"] != 2 {
		t.Errorf("action_drop %d", p.counters(t)["action_drop"])
	}
}

func TestReplaceRemovesStaleTrails(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	set, err := trails.LoadSet(strings.NewReader("7.7.7.7,phishing (test),(static)\r\n1.2.3.4:99,new (test),(custom)\r\n"), "next.csv")
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.dp.Trails().Replace(set)
	if err != nil {
		t.Fatal(err)
	}
	if st.IP4 != 1 || st.Port4 != 1 || st.Metas != 2 {
		t.Errorf("stats %+v", st)
	}
	if _, recs := p.run(t, syn(clean, bad, 5000, 80).Bytes(), t0); len(recs) != 0 {
		t.Error("removed trail still fires")
	}
	_, recs := p.run(t, syn(clean, netip.MustParseAddr("1.2.3.4"), 5000, 99).Bytes(), t0)
	if len(recs) != 1 {
		t.Fatal("new trail does not fire")
	}
	info, _, _ := p.dp.Trails().Meta(recs[0].Meta)
	if info != "new (test)" {
		t.Errorf("info %q", info)
	}
	var n int
	var id uint32
	var m xtrailXtMeta
	it := p.dp.objs.XtInfo.Iterate()
	for it.Next(&id, &m) {
		n++
	}
	if n != 2 {
		t.Errorf("%d meta entries left, want 2", n)
	}
}

// TestUDPRepeatDigest: a datagram repeating the previous one's (second,
// 5-tuple) is dropped only when its payload digest is the same too (the
// Rust sensor's rule), so a second, different DNS query on one socket in
// one second is a candidate, and a retransmitted one is not.
func TestUDPRepeatDigest(t *testing.T) {
	p := newPlane(t, testTrails, ActionPass)
	query := func(id uint16, name string) []byte {
		q := []byte{byte(id >> 8), byte(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
		for _, l := range strings.Split(name, ".") {
			q = append(append(q, byte(len(l))), l...)
		}
		return append(q, 0, 0, 1, 0, 1)
	}
	dns := func(payload []byte) []byte {
		return pktbuild.Frame{Src: clean, Dst: clean2, Proto: pktbuild.UDP, Sport: 40000, Dport: 53, Payload: payload}.Bytes()
	}
	other := func(payload []byte) []byte {
		return pktbuild.Frame{Src: clean, Dst: bad, Proto: pktbuild.UDP, Sport: 40000, Dport: 9999, Payload: payload}.Bytes()
	}
	long := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + 3)
		}
		return b
	}
	flip := func(b []byte, at int) []byte {
		c := bytes.Clone(b)
		c[at] ^= 0x20
		return c
	}
	q1 := query(0x1234, "www.evil-test-domain.com")
	q2 := query(0x5678, "mail.evil-test-domain.com")
	cases := []struct {
		name        string
		first, next []byte
		dropped     bool
	}{
		{"the same query again", dns(q1), dns(q1), true},
		{"another query on the socket", dns(q1), dns(q2), false},
		{"same name, another ID", dns(q1), dns(query(0x1235, "www.evil-test-domain.com")), false},
		{"same ID, another qtype", dns(q1), dns(flip(q1, len(q1)-3)), false},
		{"empty payloads", dns(nil), dns(nil), true},
		{"3 bytes, the last differs", dns([]byte("abc")), dns([]byte("abd")), false},
		{"13 bytes, the last differs", dns(long(13)), dns(flip(long(13), 12)), false},
		{"64 bytes, the last differs", other(long(64)), other(flip(long(64), 63)), false},
		{"128 bytes, the middle differs", other(long(128)), other(flip(long(128), 64)), false},
		{"1400 bytes, the first differs", other(long(1400)), other(flip(long(1400), 0)), false},
		{"1400 bytes, the last differs", other(long(1400)), other(flip(long(1400), 1399)), false},
		{"one byte longer", other(long(200)), other(long(201)), false},
		// the digest's limit: between its head and tail windows
		{"1400 bytes, the middle differs", other(long(1400)), other(flip(long(1400), 700)), true},
		// Ethernet padding after the IP length is not payload
		{"other padding", dns([]byte("abc")), append(dns([]byte("abc")), 1, 2, 3, 4), true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at := t0.Add(time.Duration(i) * time.Second)
			before := p.counters(t)
			_, first := p.run(t, c.first, at)
			_, next := p.run(t, c.next, at.Add(200*time.Millisecond))
			after := p.counters(t)
			if len(first) != 1 {
				t.Fatalf("first datagram: %d records", len(first))
			}
			dup, kept := after["udp_dup"]-before["udp_dup"], after["udp_new_payload"]-before["udp_new_payload"]
			if c.dropped {
				if len(next) != 0 || dup != 1 || kept != 0 {
					t.Errorf("repeat: %d records, udp_dup +%d, udp_new_payload +%d; want it dropped", len(next), dup, kept)
				}
				return
			}
			if dup != 0 || kept != 1 {
				t.Errorf("udp_dup +%d, udp_new_payload +%d; want the datagram kept", dup, kept)
			}
			// a DNS datagram is a candidate; another one to the trail is
			// looked up, and the logged slot (tuple only) keeps it quiet
			if first[0].Kind == KindDNS {
				if len(next) != 1 || next[0].Kind != KindDNS || !bytes.Equal(next[0].Payload, payloadOf(c.next, len(next[0].Payload))) {
					t.Errorf("second datagram: %+v, want its DNS candidate", next)
				}
			} else if len(next) != 0 || after["hit_repeat"] != before["hit_repeat"]+1 {
				t.Errorf("second datagram: %d records, hit_repeat +%d; want the hit silenced by the logged slot", len(next), after["hit_repeat"]-before["hit_repeat"])
			}
		})
	}
}

// payloadOf is the UDP payload of an untagged IPv4 frame, n bytes of it.
func payloadOf(frame []byte, n int) []byte {
	return frame[14+20+8 : 14+20+8+n]
}
