package maltrail

import (
	"net/netip"
	"testing"
	"time"
)

// specTime is the time of the spec §2/§3.1 examples: 1786094062.117034.
var specTime = time.Unix(1786094062, 117034000)

func TestAppendLineSpecExamples(t *testing.T) {
	gw := &Renderer{Sensor: "gw", Loc: time.UTC}
	tests := []struct {
		name string
		r    *Renderer
		ev   Event
		want string
	}{
		{
			name: "dns",
			r:    gw,
			ev: Event{Time: specTime, SrcIP: netip.MustParseAddr("10.13.13.2"), SrcPort: 57809,
				DstIP: netip.MustParseAddr("1.1.1.1"), DstPort: 53, Proto: "UDP", Type: "DNS",
				Trail: "malware.bakewithdavid.com", Info: "asyncrat (malware)", Reference: "(static)"},
			want: `"2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS malware.bakewithdavid.com "asyncrat (malware)" (static)` + "\n",
		},
		{
			name: "dns parent",
			r:    gw,
			ev: Event{Time: specTime, SrcIP: netip.MustParseAddr("10.13.13.2"), SrcPort: 57809,
				DstIP: netip.MustParseAddr("1.1.1.1"), DstPort: 53, Proto: "UDP", Type: "DNS",
				Trail: "(511mon).kozow.com", Info: "dynamic domain (suspicious)", Reference: "(static)"},
			want: `"2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS (511mon).kozow.com "dynamic domain (suspicious)" (static)` + "\n",
		},
		{
			name: "icmp no ports",
			r:    gw,
			ev: Event{Time: time.Unix(1786094062, 0), SrcIP: netip.MustParseAddr("10.0.0.5"),
				DstIP: netip.MustParseAddr("66.66.66.66"), Proto: "ICMP", Type: "IP",
				Trail: "66.66.66.66", Info: "malware (test)", Reference: "(static)"},
			want: `"2026-08-07 09:14:22.000000" gw 10.0.0.5 - 66.66.66.66 - ICMP IP 66.66.66.66 "malware (test)" (static)` + "\n",
		},
		{
			name: "ipv6 and unset sensor",
			r:    &Renderer{Loc: time.UTC},
			ev: Event{Time: time.Unix(1786094062, 999), SrcIP: netip.MustParseAddr("2001:db8::"), SrcPort: 1,
				DstIP: netip.MustParseAddr("dead::beef"), DstPort: 443, Proto: "TCP", Type: "IPORT",
				Trail: "[dead::beef]:443", Info: "malware (test)", Reference: "(static)"},
			want: `"2026-08-07 09:14:22.000000" - 2001:db8::0 1 dead::beef 443 TCP IPORT [dead::beef]:443 "malware (test)" (static)` + "\n",
		},
		{
			name: "sensor time zone and empty columns",
			r:    &Renderer{Sensor: "my sensor", Loc: time.FixedZone("CEST", 2*3600)},
			ev:   Event{Time: time.Unix(1786094062, 117034999)},
			want: `"2026-08-07 11:14:22.117034" "my sensor" - - - - - - - - -` + "\n",
		},
		{
			name: "line breaks in values",
			r:    gw,
			ev: Event{Time: specTime, SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"),
				Proto: "TCP", Type: "UA", Trail: "curl\r\nX", Info: `say "hi"`, Reference: "(heuristic)"},
			want: `"2026-08-07 09:14:22.117034" gw 10.0.0.1 - 10.0.0.2 - TCP UA "curl  X" "say ""hi""" (heuristic)` + "\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(tc.r.AppendLine(nil, &tc.ev)); got != tc.want {
				t.Errorf("AppendLine:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestAppendDatagramSpecExample(t *testing.T) {
	r := &Renderer{Sensor: "gw", Loc: time.UTC}
	ev := Event{Time: specTime, SrcIP: netip.MustParseAddr("10.13.13.2"), SrcPort: 57809,
		DstIP: netip.MustParseAddr("1.1.1.1"), DstPort: 53, Proto: "UDP", Type: "DNS",
		Trail: "malware.bakewithdavid.com", Info: "asyncrat (malware)", Reference: "(static)"}
	want := `1786094062 "2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS malware.bakewithdavid.com "asyncrat (malware)" (static)` + "\n"
	prefix := []byte("keep:")
	got := r.AppendDatagram(prefix, &ev)
	if string(got) != "keep:"+want {
		t.Errorf("AppendDatagram:\n got %q\nwant %q", got, "keep:"+want)
	}
	// The epoch is the event's, whatever the sensor's zone.
	r.Loc = time.FixedZone("X", -5*3600)
	if got := string(r.AppendDatagram(nil, &ev)); got[:11] != "1786094062 " {
		t.Errorf("datagram epoch depends on zone: %q", got)
	}
}

func TestAppendTextLineSpecExample(t *testing.T) {
	r := &Renderer{Sensor: "s", Loc: time.UTC}
	ev := TextEvent{Time: time.Unix(1786094062, 1000), SrcIP: "10.0.0.5,203.0.113.9", SrcPort: "50000",
		DstIP: "1.2.3.4", DstPort: "80", Proto: "TCP", Type: "URL",
		Trail: `host.example(/a?b=c "quoted")`, Info: "potential sql injection (suspicious)", Reference: "(heuristic)"}
	want := `"2026-08-07 09:14:22.000001" s 10.0.0.5,203.0.113.9 50000 1.2.3.4 80 TCP URL "host.example(/a?b=c ""quoted"")" "potential sql injection (suspicious)" (heuristic)` + "\n"
	if got := string(r.AppendTextLine(nil, &ev)); got != want {
		t.Errorf("AppendTextLine:\n got %q\nwant %q", got, want)
	}
	if got := string(r.AppendTextDatagram(nil, &ev)); got != "1786094062 "+want {
		t.Errorf("AppendTextDatagram:\n got %q\nwant %q", got, "1786094062 "+want)
	}
	// Condensed columns and empty columns.
	ev = TextEvent{Time: time.Unix(1786094062, 0), SrcIP: "10.0.0.5", SrcPort: "50000,50001", DstIP: "1.2.3.4,1.2.3.5"}
	want = `"2026-08-07 09:14:22.000000" s 10.0.0.5 50000,50001 1.2.3.4,1.2.3.5 - - - - - -` + "\n"
	if got := string(r.AppendTextLine(nil, &ev)); got != want {
		t.Errorf("AppendTextLine condensed:\n got %q\nwant %q", got, want)
	}
}

func TestRendererNilLocIsLocal(t *testing.T) {
	ev := Event{Time: specTime}
	got := string((&Renderer{}).AppendLine(nil, &ev))
	want := string((&Renderer{Loc: time.Local}).AppendLine(nil, &ev))
	if got != want {
		t.Errorf("nil Loc: got %q, want %q", got, want)
	}
}

func TestAppendSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "-"},
		{"-", "-"},
		{"(static)", "(static)"},
		{"asyncrat (malware)", `"asyncrat (malware)"`},
		{`a"b`, `"a""b"`},
		{`""`, `""""""`},
		{"a\rb", `"a b"`},
		{"a\nb", `"a b"`},
		{"\r\n", `"  "`},
		{"tab\there", "tab\there"},
		{"comma,list", "comma,list"},
		{"ünïcode", "ünïcode"},
		{"'single'", "'single'"},
	}
	for _, tc := range tests {
		if got := string(AppendSafe(nil, tc.in)); got != tc.want {
			t.Errorf("AppendSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppendPadded(t *testing.T) {
	tests := []struct {
		v, w int
		want string
	}{{0, 6, "000000"}, {7, 2, "07"}, {117034, 6, "117034"}, {2026, 4, "2026"}, {12345, 4, "12345"}, {1, 4, "0001"}}
	for _, tc := range tests {
		if got := string(appendPadded(nil, tc.v, tc.w)); got != tc.want {
			t.Errorf("appendPadded(%d, %d) = %q, want %q", tc.v, tc.w, got, tc.want)
		}
	}
}

func TestAppendLineZeroAllocs(t *testing.T) {
	r := &Renderer{Sensor: "gw sensor", Loc: time.FixedZone("X", 3600)}
	ev := benchEvent()
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendLine(buf[:0], &ev) }); n != 0 {
		t.Errorf("AppendLine allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendDatagram(buf[:0], &ev) }); n != 0 {
		t.Errorf("AppendDatagram allocates %v times per call", n)
	}
	tev := TextEvent{Time: specTime, SrcIP: "10.0.0.5,203.0.113.9", SrcPort: "1,2", Trail: `a "b"`}
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendTextDatagram(buf[:0], &tev) }); n != 0 {
		t.Errorf("AppendTextDatagram allocates %v times per call", n)
	}
	r.Loc = nil // time.Local
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendLine(buf[:0], &ev) }); n != 0 {
		t.Errorf("AppendLine with the local zone allocates %v times per call", n)
	}
}

func benchEvent() Event {
	return Event{Time: specTime, SrcIP: netip.MustParseAddr("2001:db8::1"), SrcPort: 57809,
		DstIP: netip.MustParseAddr("1.1.1.1"), DstPort: 53, Proto: "UDP", Type: "DNS",
		Trail: "(511mon).kozow.com", Info: `dynamic "domain" (suspicious)`, Reference: "(static)"}
}

func BenchmarkAppendLine(b *testing.B) {
	r := &Renderer{Sensor: "gw", Loc: time.UTC}
	ev := benchEvent()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendLine(buf[:0], &ev)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendDatagram(b *testing.B) {
	r := &Renderer{Sensor: "gw", Loc: time.UTC}
	ev := benchEvent()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendDatagram(buf[:0], &ev)
	}
	b.SetBytes(int64(len(buf)))
}
