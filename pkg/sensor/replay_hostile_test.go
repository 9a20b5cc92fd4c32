package sensor

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
)

// TestReplayHostile: a capture of a few hundred hostile candidate payloads
// (DNS, HTTP, TLS, QUIC; IPv4 and IPv6) replayed through the XDP program,
// then one trail hit: the replay ends without error, every candidate the
// program handed over was handled (none bad, no panic), and the hit is
// reported.
func TestReplayHostile(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	trailsFile := filepath.Join(dir, "trails.csv")
	csv := fuzzTrailsCSV + "203.0.113.44,malware (test),(static)\ndead::beef,malware (test),(static)\n"
	if err := os.WriteFile(trailsFile, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	var pkts []pktbuild.Packet
	var want [8]int // candidates per kind the program should hand over
	port := uint16(20000)
	for _, kind := range []uint8{dataplane.KindDNS, dataplane.KindHTTP, dataplane.KindTLS, dataplane.KindQUIC} {
		for _, h := range hostilePayloads(kind) {
			for _, addr := range [][2]string{{"10.0.0.66", "203.0.113.44"}, {"2001:db8::66", "dead::beef"}} {
				port++ // a fresh 5-tuple: the program drops a UDP datagram repeating the previous one
				f := pktbuild.Frame{Src: netip.MustParseAddr(addr[0]), Dst: netip.MustParseAddr(addr[1]), Proto: h.l4,
					Sport: port, Dport: h.dport, TCPFlags: pktbuild.ACK | pktbuild.PSH, Payload: h.payload}
				pkts = append(pkts, pktbuild.Packet{Time: start.Add(time.Duration(len(pkts)) * time.Millisecond), Frame: f.Bytes()})
				if k := candidateKind(h.l4, port, h.dport, h.payload); k != 0 {
					want[k]++
				}
			}
		}
	}
	hitAt := start.Add(10 * time.Minute)
	hit := pktbuild.Frame{Src: netip.MustParseAddr("192.0.2.77"), Dst: netip.MustParseAddr("192.0.2.53"), Proto: pktbuild.UDP,
		Sport: 41414, Dport: 53, Payload: dnsQuery(hitName)}
	pkts = append(pkts, pktbuild.Packet{Time: hitAt, Frame: hit.Bytes()})
	want[dataplane.KindDNS]++
	if len(pkts) < 300 {
		t.Fatalf("only %d packets: the capture should hold a few hundred", len(pkts))
	}
	capture := filepath.Join(dir, "hostile.pcap")
	if err := os.WriteFile(capture, pktbuild.Pcap(pkts), 0o644); err != nil {
		t.Fatal(err)
	}

	c := newCapture()
	logs := &lockedBuffer{}
	rules := fuzzRules(t)
	rules.Names = nil // Run loads the name trails from the trails file
	err := Run(context.Background(), Options{Pcaps: []string{capture}, TrailsFile: trailsFile, Rules: rules,
		Renderer: maltrail.Renderer{Sensor: fuzzSensorName, Loc: time.UTC}, Out: c,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, logs)
	}
	lines := c.get()
	wantHit := `"2023-11-14 22:23:20.000000" "fuzz ""sensor""" 192.0.2.77 41414 192.0.2.53 53 UDP DNS evil-test-domain.com "malware (test)" (static)` + "\n"
	found := 0
	for _, l := range lines {
		checkLine(t, l)
		if l == wantHit {
			found++
		}
	}
	if found != 1 {
		t.Fatalf("the trail hit after the hostile capture was reported %d times, want once; %d lines:\n%s", found, len(lines), strings.Join(lines, ""))
	}
	summary := logs.String()
	for k, name := range kindNames {
		if name != "" && k != dataplane.KindIP && !strings.Contains(summary, fmt.Sprintf(" records_%s=%d ", name, want[k])) {
			t.Errorf("the exit summary does not say records_%s=%d:\n%s", name, want[k], summary)
		}
	}
	for _, zero := range []string{" bad_records=0 ", " panics=0 "} {
		if !strings.Contains(summary, zero) {
			t.Errorf("the exit summary does not say%s:\n%s", zero, summary)
		}
	}
	for _, name := range []string{"dns", "http", "tls", "quic"} {
		if strings.Contains(summary, " malformed_"+name+"=0 ") {
			t.Errorf("no malformed %s candidate counted:\n%s", name, summary)
		}
	}
}
