package collector

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/sink"
)

const line = `"2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS malware.bakewithdavid.com "asyncrat (malware)" (static)`

func newCollector(t testing.TB, loc *time.Location) (*Collector, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	c := &Collector{
		Dir:    filepath.Join(t.TempDir(), "log"),
		Loc:    loc,
		MaxAge: -1, MaxAhead: -1, // TestWindow tests the bounds
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	t.Cleanup(func() { c.Close() })
	return c, &logs
}

func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestRegularDatagram(t *testing.T) {
	c, _ := newCollector(t, time.UTC)
	if err := c.Handle([]byte("1786094062 "+line+"\n"), time.Now()); err != nil {
		t.Fatal(err)
	}
	got := readDir(t, c.Dir)
	if got["2026-08-07.log"] != line+"\n" || len(got) != 1 {
		t.Errorf("files = %q", got)
	}
}

func TestNaiveDatagram(t *testing.T) {
	// The naive form carries no sec: the date is read from the line in the
	// server's zone, here UTC-3, where 2026-08-07 23:30 is still the 7th
	// (in UTC it would be the 8th, but that is irrelevant: the sec is
	// derived from the text in Loc, and the file day from that sec in Loc).
	loc := time.FixedZone("BRT", -3*3600)
	c, _ := newCollector(t, loc)
	naive := `"2026-08-07 23:30:00.000001" gw 10.0.0.5 - 66.66.66.66 - ICMP IP 66.66.66.66 "malware (test)" (static)`
	if err := c.Handle([]byte(naive), time.Now()); err != nil {
		t.Fatal(err)
	}
	got := readDir(t, c.Dir)
	if got["2026-08-07.log"] != naive+"\n" || len(got) != 1 {
		t.Errorf("files = %q", got)
	}
}

func TestNaiveWithoutDotDropsLastByte(t *testing.T) {
	// Maltrail slices data[1:find('.')]; with no '.', that is data[1:-1],
	// so a datagram framed by any two bytes around the date is accepted.
	c, _ := newCollector(t, time.UTC)
	if err := c.Handle([]byte("<2026-08-07 09:14:22>"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := readDir(t, c.Dir); got["2026-08-07.log"] != "<2026-08-07 09:14:22>\n" {
		t.Errorf("files = %q", got)
	}
}

func TestCRLFNormalisation(t *testing.T) {
	c, _ := newCollector(t, time.UTC)
	for _, d := range []string{
		"1786094062 a\r\n",
		"1786094062 b\n\r\n\r",
		"1786094062 c\r\nforged line\nx\ry",
		"1786094062 ",
		"1786094062 \r\n",
		"1786094062  leading space kept",
	} {
		if err := c.Handle([]byte(d), time.Now()); err != nil {
			t.Fatalf("%q: %v", d, err)
		}
	}
	want := "a\nb\nc  forged line x y\n\n\n leading space kept\n"
	if got := readDir(t, c.Dir)["2026-08-07.log"]; got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
}

func TestDayFromSecInServerZone(t *testing.T) {
	// 1786094062 is 2026-08-07 09:14:22 UTC, i.e. 2026-08-06 in UTC-10.
	// The line text says the 7th; the file must follow sec in Loc.
	c, _ := newCollector(t, time.FixedZone("HST", -10*3600))
	if err := c.Handle([]byte("1786094062 "+line), time.Now()); err != nil {
		t.Fatal(err)
	}
	got := readDir(t, c.Dir)
	if _, ok := got["2026-08-06.log"]; !ok || len(got) != 1 {
		t.Errorf("files = %v, want only 2026-08-06.log", got)
	}
}

func TestTwoDaysTwoFiles(t *testing.T) {
	c, _ := newCollector(t, time.UTC)
	for _, d := range []string{"1786094062 one", "1786180462 two", "1786094063 three"} {
		if err := c.Handle([]byte(d), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	got := readDir(t, c.Dir)
	if got["2026-08-07.log"] != "one\nthree\n" || got["2026-08-08.log"] != "two\n" || len(got) != 2 {
		t.Errorf("files = %q", got)
	}
}

func TestModesUnderUmask077(t *testing.T) {
	c, _ := newCollector(t, time.UTC)
	old := syscall.Umask(0o077)
	err := c.Handle([]byte("1786094062 x"), time.Now())
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(c.Dir, "2026-08-07.log"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("file mode %o, want 644", st.Mode().Perm())
	}
	st, err = os.Stat(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %o, want 755", st.Mode().Perm())
	}
}

func TestGarbageIsCountedNotWritten(t *testing.T) {
	c, logs := newCollector(t, time.UTC)
	cases := []struct {
		d      string
		reason DropReason
		err    error
	}{
		{"1786094062", DropNoSpace, ErrNoSpace},
		{"1786094062\n", DropNoSpace, ErrNoSpace},
		{"17x 1", DropBadSec, ErrBadSec},
		{"1_ x", DropBadSec, ErrBadSec},
		{"1__2 x", DropBadSec, ErrBadSec},
		{"1.5 x", DropBadSec, ErrBadSec},
		{"99999999999999999999 x", DropBadSec, ErrBadSec},
		{"999999999999 x", DropBadSec, ErrBadSec}, // year 33658
		{"", DropBadDate, ErrBadDate},
		{"x", DropBadDate, ErrBadDate},
		{"hello world", DropBadDate, ErrBadDate},
		{`"2026-02-30 00:00:00.0" x`, DropBadDate, ErrBadDate},
		{`"2026-08-07 09:14:60.0" x`, DropBadDate, ErrBadDate},
		{`"2026-08-07T09:14:22.0" x`, DropBadDate, ErrBadDate},
		{`"0000-01-01 00:00:00.0" x`, DropBadDate, ErrBadDate},
		{`.2026-08-07 09:14:22`, DropBadDate, ErrBadDate},
	}
	for _, tc := range cases {
		err := c.Handle([]byte(tc.d), time.Now())
		if !errors.Is(err, tc.err) {
			t.Errorf("Handle(%q) = %v, want %v", tc.d, err, tc.err)
		}
	}
	if got := readDir(t, c.Dir); len(got) != 0 {
		t.Errorf("garbage was written: %q", got)
	}
	st := c.Stats()
	if st.Datagrams != uint64(len(cases)) || st.Written != 0 {
		t.Errorf("stats = %+v", st)
	}
	want := map[DropReason]uint64{DropNoSpace: 2, DropBadSec: 6, DropBadDate: 8}
	for r, n := range want {
		if st.Dropped[r] != n {
			t.Errorf("dropped[%v] = %d, want %d", r, st.Dropped[r], n)
		}
	}
	// Logged once per reason, not per datagram.
	if n := strings.Count(logs.String(), "\n"); n != 3 {
		t.Errorf("%d log lines, want 3:\n%s", n, logs)
	}
}

// TestWindow: an event time outside the window around now is counted and
// not written, whatever its form; Maltrail would create 1970-01-01.log for
// sec 0 and 9999-12-31.log for the last second of year 9999.
func TestWindow(t *testing.T) {
	c, _ := newCollector(t, time.UTC)
	c.MaxAge, c.MaxAhead = 0, 0 // the defaults: ten years back, a day ahead
	now := time.Unix(1786094062, 0)
	for _, d := range []string{
		"0 " + line,
		"253402300799 " + line, // 9999-12-31
		"1786094062 " + line,   // now
		"1786180462 " + line,   // a day ahead: the edge, kept
		"1786180463 " + line,   // past the edge
		"1700000000 " + line,   // an old capture replayed: kept
		`"2012-01-01 00:00:00.0" naive and too old`,
		`"2026-08-07 12:00:00.0" naive`,
	} {
		_ = c.Handle([]byte(d), now)
	}
	st := c.Stats()
	if st.Written != 4 || st.Dropped[DropOutOfWindow] != 4 {
		t.Fatalf("stats %+v: want 4 written, 4 outside the window", st)
	}
	if _, ok := readDir(t, c.Dir)["1970-01-01.log"]; ok {
		t.Fatal("sec 0 made a 1970 file")
	}
	c.MaxAge = time.Hour
	if err := c.Handle([]byte("1786087000 "+line), now); !errors.Is(err, ErrWindow) {
		t.Fatalf("2 h old with a 1 h window: %v", err)
	}
}

func TestWriteErrorCounted(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Collector{Dir: blocker, Loc: time.UTC, MaxAge: -1, MaxAhead: -1, Logger: slog.New(slog.DiscardHandler)}
	if err := c.Handle([]byte("1 x"), time.Now()); err == nil {
		t.Fatal("writing under a regular file succeeded")
	}
	if c.Stats().Dropped[DropWrite] != 1 {
		t.Errorf("stats = %+v", c.Stats())
	}
}

func TestParsePyInt(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1786094062", 1786094062, true}, {"1_786_094_062", 1786094062, true},
		{"12\t", 12, true}, {"12\r\n", 12, true}, {"1_", 0, false}, {"1__2", 0, false},
		{"12a", 0, false}, {"9223372036854775807", 9223372036854775807, true},
		{"9223372036854775808", 0, false}, {"\t", 0, false}, {"1\x1c", 0, false},
	} {
		got, ok := parsePyInt([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("parsePyInt(%q) = %d,%v want %d,%v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestParseNaiveTime(t *testing.T) {
	at := func(y, mo, d, h, mi, s int) int64 {
		return time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC).Unix()
	}
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2026-08-07 09:14:22", at(2026, 8, 7, 9, 14, 22), true},
		{"2026-8-7 9:4:2", at(2026, 8, 7, 9, 4, 2), true},
		{"2026-08- 7 09:14:22", at(2026, 8, 7, 9, 14, 22), true},
		{"2026-08-07 \t\n 09:14:22", at(2026, 8, 7, 9, 14, 22), true},
		{"2026-08-07\x1c09:14:22", at(2026, 8, 7, 9, 14, 22), true},
		{"2026-08-07\u300009:14:22", at(2026, 8, 7, 9, 14, 22), true},
		{"2024-02-29 00:00:00", at(2024, 2, 29, 0, 0, 0), true},
		{"2026-02-29 00:00:00", 0, false},
		{"2026-04-31 00:00:00", 0, false},
		{"2026-08- 17 09:14:22", 0, false},
		{"2026-08-07 24:00:00", 0, false},
		{"2026-08-07 09:60:00", 0, false},
		{"2026-08-07 09:14:61", 0, false},
		{"2026-13-07 09:14:22", 0, false},
		{"2026-00-07 09:14:22", 0, false},
		{"2026-08-00 09:14:22", 0, false},
		{"2026-08-07 009:14:22", 0, false},
		{"20260-08-07 09:14:22", 0, false},
		{"226-08-07 09:14:22", 0, false},
		{"2026-08-0709:14:22", 0, false},
		{"2026-08-07 09:14:22 ", 0, false},
		{" 2026-08-07 09:14:22", 0, false},
		{"2026-08-07 09:14", 0, false},
		{"2026-08-07 09:14:", 0, false},
		{"", 0, false},
		{"2026-08-07\xff09:14:22", 0, false},
	} {
		got, ok := parseNaiveTime([]byte(c.in), time.UTC)
		if got != c.want || ok != c.ok {
			t.Errorf("parseNaiveTime(%q) = %d,%v want %d,%v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestServeUDPRoundTrip(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, _ := newCollector(t, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, pc) }()

	// The sensor side of the wire: our own LOG_SERVER sink.
	u, err := sink.NewUDP(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	const n = 50
	long := strings.Repeat("x", 20000) // longer than Maltrail's 8192-byte read
	for i := range n {
		l := line
		if i == n-1 {
			l = long
		}
		if err := u.Emit(1786094062, []byte(l+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Written < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	st := c.Stats()
	if st.Written != n || st.Datagrams != n {
		t.Fatalf("stats = %+v (loopback loss?)", st)
	}
	want := strings.Repeat(line+"\n", n-1) + long + "\n"
	if got := readDir(t, c.Dir)["2026-08-07.log"]; got != want {
		t.Errorf("log has %d bytes, want %d", len(got), len(want))
	}
}

func TestServeReturnsNilWhenAlreadyCancelled(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := &Collector{Dir: t.TempDir()}
	if err := c.Serve(ctx, pc); err != nil {
		t.Fatal(err)
	}
}

func TestServeReportsReadError(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	c := &Collector{Dir: t.TempDir()}
	if err := c.Serve(context.Background(), pc); err == nil {
		t.Fatal("Serve on a closed socket returned nil")
	}
}

func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		"1786094062 " + line + "\n",
		line,
		"<2026-08-07 09:14:22>",
		"1_786_094_062 a\r\nb",
		"1786094062",
		"",
		`"2026-08- 7 09:14:22.1"`,
		"9999999999999999999999 x",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	c := &Collector{Dir: dir, Loc: time.FixedZone("X", 5*3600+1800), Logger: slog.New(slog.DiscardHandler)}
	f.Cleanup(func() { c.Close() })
	f.Fuzz(func(t *testing.T, b []byte) {
		before := c.Stats().Written
		err := c.Handle(b, time.Now())
		if (err == nil) != (c.Stats().Written == before+1) {
			t.Fatalf("Handle(%q) = %v but written moved from %d to %d", b, err, before, c.Stats().Written)
		}
	})
}

func BenchmarkHandle(b *testing.B) {
	c := &Collector{Dir: b.TempDir(), Loc: time.UTC, MaxAge: -1, MaxAhead: -1, Logger: slog.New(slog.DiscardHandler)}
	defer c.Close()
	d := []byte("1786094062 " + line + "\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if err := c.Handle(d, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
}
