package sensor

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

type fakeMeta map[uint32][2]string

func (f fakeMeta) Prefix(a netip.Addr) (netip.Prefix, error) { return a.Prefix(24) }

func (f fakeMeta) Meta(id uint32) (string, string, error) {
	m, ok := f[id]
	if !ok {
		return "", "", errors.New("no such meta")
	}
	return m[0], m[1], nil
}

// rec builds a raw struct xt_rec as the program writes it.
func rec(kind, side, ttype, proto uint8, src, dst netip.Addr, sport, dport uint16, meta uint32, ts time.Time, payload []byte) []byte {
	b := make([]byte, dataplane.RecordHeaderSize+len(payload))
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(ts.UnixNano()))
	b[8], b[10], b[11], b[12] = kind, proto, side, ttype
	b[9] = 4
	if dst.Is6() {
		b[9] = 6
	}
	le.PutUint16(b[14:], sport)
	le.PutUint16(b[16:], dport)
	le.PutUint16(b[18:], uint16(len(payload)))
	le.PutUint16(b[20:], uint16(len(payload)))
	le.PutUint32(b[24:], meta)
	if src.Is4() {
		a, d := src.As4(), dst.As4()
		copy(b[32:], a[:])
		copy(b[48:], d[:])
	} else {
		a, d := src.As16(), dst.As16()
		copy(b[32:], a[:])
		copy(b[48:], d[:])
	}
	copy(b[64:], payload)
	return b
}

func TestAgentRendersIPRecords(t *testing.T) {
	at := time.Date(2026, 8, 7, 9, 14, 22, 117034000, time.UTC)
	meta := fakeMeta{1: {"malware (test)", "(static)"}, 2: {"known attacker", "(static)"}}
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("66.66.66.66")
	v6src, v6dst := netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("dead::beef")
	cases := []struct {
		name string
		raw  []byte
		want string
	}{
		{"tcp dst ip", rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 6, src, dst, 50000, 443, 1, at, nil),
			`"2026-08-07 09:14:22.117034" gw 10.0.0.5 50000 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)`},
		{"tcp dst ip:port", rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIPort, 6, src, dst, 50000, 8443, 1, at, nil),
			`"2026-08-07 09:14:22.117034" gw 10.0.0.5 50000 66.66.66.66 8443 TCP IPORT 66.66.66.66:8443 "malware (test)" (static)`},
		{"tcp src ip:port", rec(dataplane.KindIP, dataplane.SideSrc, dataplane.TrailIPort, 6, dst, src, 8443, 50000, 2, at, nil),
			`"2026-08-07 09:14:22.117034" gw 66.66.66.66 8443 10.0.0.5 50000 TCP IPORT 66.66.66.66:8443 "known attacker" (static)`},
		{"udp", rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 17, src, dst, 5000, 9999, 1, at, nil),
			`"2026-08-07 09:14:22.117034" gw 10.0.0.5 5000 66.66.66.66 9999 UDP IP 66.66.66.66 "malware (test)" (static)`},
		{"icmp has no ports", rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 1, src, dst, 0, 0, 1, at, nil),
			`"2026-08-07 09:14:22.117034" gw 10.0.0.5 - 66.66.66.66 - ICMP IP 66.66.66.66 "malware (test)" (static)`},
		{"gre", rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 47, src, dst, 0, 0, 1, at, nil),
			`"2026-08-07 09:14:22.117034" gw 10.0.0.5 - 66.66.66.66 - GRE IP 66.66.66.66 "malware (test)" (static)`},
		{"cidr", rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailCIDR, 6, src, dst, 50000, 443, 1, at, nil),
			`"2026-08-07 09:14:22.117034" gw 10.0.0.5 50000 66.66.66.66 443 TCP IP 66.66.66.0/24 "malware (test)" (static)`},
		{"ipv6 ip:port", rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIPort, 6, v6src, v6dst, 50000, 443, 1, at, nil),
			`"2026-08-07 09:14:22.117034" gw 2001:db8::5 50000 dead::beef 443 TCP IPORT [dead::beef]:443 "malware (test)" (static)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := newCapture()
			a := NewAgent(AgentConfig{Meta: meta, Render: &maltrail.Renderer{Sensor: "gw", Loc: time.UTC}, Out: out, Throttle: throttle.Off})
			a.Handle(c.raw)
			a.Flush() // "known attacker" is condensed until a flush
			got := out.get()
			if len(got) != 1 || got[0] != c.want+"\n" {
				t.Fatalf("got %q\nwant %q", got, c.want+"\n")
			}
			if out.secs[0] != at.Unix() {
				t.Errorf("sec %d, want %d", out.secs[0], at.Unix())
			}
			// the event counts under its type (column 9 of the line)
			typ := strings.Fields(c.want)[8]
			for i, name := range EventTypeNames {
				want := uint64(0)
				if name == typ {
					want = 1
				}
				if got := a.Stats().EventTypes[i].Load(); got != want {
					t.Errorf("events of type %s: %d, want %d", name, got, want)
				}
			}
		})
	}
}

func TestAgentCountsWhatItCannotRender(t *testing.T) {
	at := time.Unix(1700000000, 0)
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("66.66.66.66")
	out := newCapture()
	a := NewAgent(AgentConfig{Meta: fakeMeta{1: {"x", "y"}}, Render: &maltrail.Renderer{Loc: time.UTC}, Out: out,
		Logger: slog.New(slog.DiscardHandler)})
	a.Handle([]byte{1, 2, 3})                                                                              // short
	a.Handle(rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 6, src, dst, 1, 2, 99, at, nil))  // meta gone
	a.Handle(rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 200, src, dst, 0, 0, 1, at, nil)) // no protocol name
	a.Handle(rec(dataplane.KindDNS, 0, 0, 17, src, dst, 5000, 53, 0, at, []byte("dns payload")))
	bad := rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 6, src, dst, 1, 2, 1, at, nil)
	binary.LittleEndian.PutUint16(bad[18:], 500) // claims a payload it does not have
	a.Handle(bad)
	s := a.Stats()
	if len(out.get()) != 0 {
		t.Fatalf("events written: %q", out.get())
	}
	if s.Records.Load() != 5 || s.Bad.Load() != 2 || s.NoMeta.Load() != 1 || s.UnknownLUT.Load() != 1 ||
		s.Kinds[dataplane.KindIP].Load() != 2 || s.Kinds[dataplane.KindDNS].Load() != 1 || s.Malformed[dataplane.KindDNS].Load() != 1 {
		t.Errorf("records %d bad %d nometa %d unknown %d ip %d dns %d malformed dns %d", s.Records.Load(), s.Bad.Load(),
			s.NoMeta.Load(), s.UnknownLUT.Load(), s.Kinds[dataplane.KindIP].Load(), s.Kinds[dataplane.KindDNS].Load(),
			s.Malformed[dataplane.KindDNS].Load())
	}
}

// TestAgentNamesPerGeneration: a record is matched against the name
// trails of the kernel generation it names, so names staged for the
// generation the kernel switches to never meet packets of the old one.
func TestAgentNamesPerGeneration(t *testing.T) {
	load := func(csv string) *trails.Names {
		n, err := trails.LoadNames(strings.NewReader(csv), "t.csv", trails.DefaultWhitelist())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	oldNames := load("evil-old-test.com,old (malware),(static)\n")
	newNames := load("evil-new-test.com,new (malware),(static)\n")
	out := newCapture()
	a := NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Names: oldNames, Whitelist: trails.DefaultWhitelist()},
		Render: &maltrail.Renderer{Loc: time.UTC}, Out: out, Throttle: throttle.Off})
	if !a.StageNames(context.Background(), 1, newNames) {
		t.Fatal("StageNames on an idle agent did not return at once")
	}
	at := time.Unix(1700000000, 0)
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.53")
	query := func(gen uint8, name string) {
		r := rec(dataplane.KindDNS, 0, 0, 17, src, dst, 5000, 53, 0, at, dnsQuery(name))
		r[22] = gen
		a.Handle(r)
		at = at.Add(time.Second)
	}
	query(0, "evil-old-test.com") // generation 0 holds the old names
	query(0, "evil-new-test.com")
	query(1, "evil-new-test.com") // generation 1 the staged ones
	query(1, "evil-old-test.com")
	a.Flush()
	got := strings.Join(out.get(), "")
	if strings.Count(got, "\n") != 2 || !strings.Contains(got, "evil-old-test.com \"old (malware)\"") ||
		!strings.Contains(got, "evil-new-test.com \"new (malware)\"") {
		t.Fatalf("events:\n%s", got)
	}
}
