package throttle

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

type rec struct{ lines []string }

var r = maltrail.Renderer{Sensor: "t", Loc: time.UTC}

func (o *rec) Event(ev *maltrail.Event) { o.lines = append(o.lines, string(r.AppendLine(nil, ev))) }
func (o *rec) Merged(ev *maltrail.TextEvent) {
	o.lines = append(o.lines, string(r.AppendTextLine(nil, ev)))
}

var (
	src = netip.MustParseAddr("10.0.0.5")
	dst = netip.MustParseAddr("66.66.66.66")
)

func ev(at time.Time, sport, dport uint16, info string) *maltrail.Event {
	return &maltrail.Event{Time: at, SrcIP: src, SrcPort: sport, DstIP: dst, DstPort: dport, Proto: "TCP",
		Type: "IP", Trail: "66.66.66.66", Info: info, Reference: "(static)"}
}

func TestLegacyTwoLinesPerBucket(t *testing.T) {
	for _, c := range []struct {
		processes int
		t0        int64
		want      int
	}{
		{1, 1700000000, 10}, // 5 one-second buckets, 2 lines each
		{16, 1700000000, 2}, // 1700000000 is a multiple of 16: one bucket
		{16, 1700000013, 4}, // the 5 s span crosses a bucket boundary
	} {
		o := &rec{}
		s := New(Legacy, c.processes, o)
		for i := 0; i < 100; i++ {
			s.Add(ev(time.Unix(c.t0, 0).Add(time.Duration(i)*50*time.Millisecond), 5000, 80, "malware"))
		}
		s.Flush()
		if len(o.lines) != c.want {
			t.Errorf("PROCESS_COUNT %d from %d: %d lines, want %d", c.processes, c.t0, len(o.lines), c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	o := &rec{}
	s := New(Summarize, 1, o)
	t0 := time.Unix(1700000000, 0).UTC()
	for i := 0; i < 30; i++ {
		s.Add(ev(t0.Add(time.Duration(i)*time.Second), uint16(50000+i), 80, "malware"))
	}
	if len(o.lines) != 3 {
		t.Fatalf("%d lines before the window closed, want the first 3", len(o.lines))
	}
	// an event 60 s after the window opened closes it: the 27 held become one line
	s.Add(ev(t0.Add(61*time.Second), 60000, 80, "malware"))
	if len(o.lines) != 5 {
		t.Fatalf("%d lines, want 3 + merged + the first of the next window:\n%s", len(o.lines), strings.Join(o.lines, ""))
	}
	merged := o.lines[3]
	if !strings.HasPrefix(merged, `"2023-11-14 22:13:23.000000" t 10.0.0.5 50003,50004,`) ||
		!strings.Contains(merged, ",50029 66.66.66.66 80 TCP IP 66.66.66.66 malware (static)") {
		t.Errorf("merged line %q", merged)
	}
	s.Flush()
	if len(o.lines) != 5 {
		t.Errorf("flush emitted %d more lines", len(o.lines)-5)
	}
}

func TestSummarizeIdenticalHeldEventsGiveOneLine(t *testing.T) {
	o := &rec{}
	s := New(Summarize, 1, o)
	t0 := time.Unix(1700000000, 0)
	for i := 0; i < 10; i++ {
		s.Add(ev(t0, 5000, 80, "malware"))
	}
	s.Flush()
	if len(o.lines) != 4 {
		t.Errorf("%d lines, want 3 + 1", len(o.lines))
	}
}

func TestCondensing(t *testing.T) {
	o := &rec{}
	s := New(Off, 1, o)
	t0 := time.Unix(1700000000, 0).UTC()
	for i, port := range []uint16{443, 22, 8080, 22} {
		s.Add(ev(t0.Add(time.Duration(i)*time.Second), 40000, port, "known attacker"))
	}
	s.Add(ev(t0, 1, 2, "malware")) // not condensable: passes at once
	if len(o.lines) != 1 {
		t.Fatalf("%d lines before the flush", len(o.lines))
	}
	s.Tick(t0.Add(11 * time.Second))
	if len(o.lines) != 2 {
		t.Fatalf("%d lines after 10 s", len(o.lines))
	}
	want := `"2023-11-14 22:13:20.000000" t 10.0.0.5 40000 66.66.66.66 22,443,8080 TCP IP 66.66.66.66 "known attacker" (static)` + "\n"
	if o.lines[1] != want {
		t.Errorf("condensed\n%q\nwant\n%q", o.lines[1], want)
	}
}

func TestOff(t *testing.T) {
	o := &rec{}
	s := New(Off, 1, o)
	for i := 0; i < 50; i++ {
		s.Add(ev(time.Unix(1700000000, 0), 5000, 80, "malware"))
	}
	if len(o.lines) != 50 {
		t.Errorf("%d lines", len(o.lines))
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Summarize, "summarize": Summarize, "LEGACY": Legacy, "off": Off} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("%q: %v %v", in, m, err)
		}
	}
	if _, err := ParseMode("sometimes"); err == nil {
		t.Error("bad mode accepted")
	}
}
