package sink

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	_ "time/tzdata" // zone data in the test binary: TestDayRangeDST never lacks it

	"github.com/xtrail/xtrail/internal/testenv"
)

var (
	_ Sink = (*File)(nil)
	_ Sink = (*UDP)(nil)
	_ Sink = (*Console)(nil)
	_ Sink = (*Multi)(nil)
)

const sampleLine = `"2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS malware.bakewithdavid.com "asyncrat (malware)" (static)` + "\n"

// withUmask runs fn with the process umask set to mask. The umask is
// process-wide, so tests using it do not run in parallel.
func withUmask(t *testing.T, mask int, fn func()) {
	t.Helper()
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	fn()
}

func TestFileModeAndDirModeUnderUmask(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "maltrail")
	withUmask(t, 0o077, func() {
		f, err := NewFile(dir, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Emit(1786094062, []byte(sampleLine)); err != nil {
			t.Fatal(err)
		}
	})
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o755 {
		t.Errorf("dir mode = %o, want 755", got)
	}
	st, err = os.Stat(filepath.Join(dir, "2026-08-07.log"))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o644 {
		t.Errorf("file mode = %o, want 644", got)
	}
}

func TestFileKeepsExistingMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "2026-08-07.log")
	if err := os.WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := NewFile(dir, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Emit(1786094062, []byte(sampleLine)); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("existing file mode changed to %o", got)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "old\n"+sampleLine {
		t.Errorf("content = %q, want appended", b)
	}
}

func TestFileDaySplitInLocation(t *testing.T) {
	dir := t.TempDir()
	// 2026-08-07 23:30 UTC is already 2026-08-08 in UTC+10.
	loc := time.FixedZone("AEST", 10*3600)
	f, err := NewFile(dir, loc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sec1 := time.Date(2026, 8, 7, 12, 0, 0, 0, time.UTC).Unix()  // 22:00 local, day 07
	sec2 := time.Date(2026, 8, 7, 23, 30, 0, 0, time.UTC).Unix() // 09:30 local, day 08
	for _, ev := range []struct {
		sec  int64
		line string
	}{{sec1, "a\n"}, {sec2, "b\n"}, {sec1, "c\n"}, {sec2, "d\n"}} {
		if err := f.Emit(ev.sec, []byte(ev.line)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"2026-08-07.log": "a\nc\n", "2026-08-08.log": "b\nd\n"}
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(want) {
		t.Fatalf("files = %v, want %v", ents, want)
	}
	for name, content := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != content {
			t.Errorf("%s = %q, want %q", name, b, content)
		}
	}
}

func TestDayRangeDST(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Zagreb")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-03-29 is 23 hours long in Zagreb.
	sec := time.Date(2026, 3, 29, 12, 0, 0, 0, loc).Unix()
	lo, hi, name := dayRange(sec, loc)
	if name != "2026-03-29.log" || hi-lo != 23*3600 {
		t.Errorf("dayRange = %d..%d (%ds) %s", lo, hi, hi-lo, name)
	}
}

func TestDayFileName(t *testing.T) {
	for _, c := range []struct {
		y    int
		m    time.Month
		d    int
		want string
	}{{2026, 8, 7, "2026-08-07.log"}, {999, 12, 31, "999-12-31.log"}, {10000, 1, 10, "10000-01-10.log"}} {
		if got := DayFileName(c.y, c.m, c.d); got != c.want {
			t.Errorf("DayFileName(%d,%d,%d) = %q, want %q", c.y, c.m, c.d, got, c.want)
		}
	}
}

// Two File values on one directory stand for two processes appending to
// the same day file: O_APPEND plus one write per line must keep every line
// whole.
func TestFileConcurrentWritersNeverInterleave(t *testing.T) {
	dir := t.TempDir()
	const perWriter = 500
	var wg sync.WaitGroup
	for w := range 2 {
		f, err := NewFile(dir, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					// Lines from 40 bytes to ~6 KB, so some cross page boundaries.
					pad := strings.Repeat(string(rune('a'+w*2+g)), (i*37)%6000)
					line := fmt.Sprintf("w%d g%d i%d %s end\n", w, g, i, pad)
					if err := f.Emit(1786094062, []byte(line)); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	b, err := os.ReadFile(filepath.Join(dir, "2026-08-07.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 4*perWriter {
		t.Fatalf("got %d lines, want %d", len(lines), 4*perWriter)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var w, g, i int
		var pad string
		if _, err := fmt.Sscanf(l, "w%d g%d i%d", &w, &g, &i); err != nil {
			t.Fatalf("mangled line %.80q: %v", l, err)
		}
		fields := strings.Fields(l)
		if len(fields) == 5 {
			pad = fields[3]
		}
		want := strings.Repeat(string(rune('a'+w*2+g)), (i*37)%6000)
		if pad != want || !strings.HasSuffix(l, " end") {
			t.Fatalf("interleaved line %.80q", l)
		}
		key := fmt.Sprint(w, g, i)
		if seen[key] {
			t.Fatalf("duplicate line %s", key)
		}
		seen[key] = true
	}
}

func TestFileEmitAfterClose(t *testing.T) {
	f, err := NewFile(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	emitAfterClose(t, f)
}

// emitAfterClose closes s and requires an Emit after it to fail and be
// counted.
func emitAfterClose(t *testing.T, s interface {
	Emit(int64, []byte) error
	Close() error
	Errors() uint64
}) {
	t.Helper()
	before := s.Errors()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Emit(8, []byte("y\n")); err == nil {
		t.Error("Emit after Close succeeded")
	}
	if n := s.Errors(); n != before+1 {
		t.Errorf("Errors = %d, want %d", n, before+1)
	}
}

func TestNewFileErrors(t *testing.T) {
	if _, err := NewFile("", nil); err == nil {
		t.Error("empty dir accepted")
	}
	p := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFile(p, nil); err == nil {
		t.Error("a regular file accepted as LOG_DIR")
	}
}

func TestFileEmitAllocs(t *testing.T) {
	f, err := NewFile(t.TempDir(), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := []byte(sampleLine)
	if err := f.Emit(1786094062, line); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _ = f.Emit(1786094062, line) }); n != 0 {
		t.Errorf("File.Emit allocates %.1f times per event", n)
	}
}

func listenUDP(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		testenv.SkipOrFail(t, fmt.Sprintf("no %s loopback: %v", network, err))
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

func readDatagram(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestUDPRoundTrip(t *testing.T) {
	for _, c := range []struct{ network, listen string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(c.network, func(t *testing.T) {
			ln := listenUDP(t, c.network, c.listen)
			u, err := NewUDP(ln.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if err := u.Emit(1786094062, []byte(sampleLine)); err != nil {
				t.Fatal(err)
			}
			got := readDatagram(t, ln)
			want := "1786094062 " + sampleLine
			if string(got) != want {
				t.Errorf("datagram = %q, want %q", got, want)
			}
			if u.Sent() != 1 || u.Errors() != 0 {
				t.Errorf("sent=%d errors=%d", u.Sent(), u.Errors())
			}
		})
	}
}

func TestUDPRecreatesSocketOnce(t *testing.T) {
	ln := listenUDP(t, "udp4", "127.0.0.1:0")
	u, err := NewUDP(ln.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	// Break the cached socket behind the sink's back.
	_ = u.ep.conn.Close()
	if err := u.Emit(7, []byte("x\n")); err != nil {
		t.Fatalf("Emit did not recover with a fresh socket: %v", err)
	}
	if got := readDatagram(t, ln); string(got) != "7 x\n" {
		t.Errorf("datagram = %q", got)
	}
	if u.Errors() != 0 {
		t.Errorf("Errors = %d after a recovered send", u.Errors())
	}
	emitAfterClose(t, u)
}

func TestNewUDPAddressRules(t *testing.T) {
	for _, bad := range []string{"", "localhost", "192.168.2.107", "dead::beef:8337", "1.2.3.4:", ":8337"} {
		if u, err := NewUDP(bad); err == nil {
			u.Close()
			t.Errorf("NewUDP(%q) accepted", bad)
		}
	}
	_, err := NewUDP("192.168.2.107")
	if err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("error for a missing port should say host:port, got %v", err)
	}
	for _, good := range []string{"127.0.0.1:8337", "[::1]:8337"} {
		u, err := NewUDP(good)
		if err != nil {
			if strings.Contains(good, "::") {
				t.Logf("IPv6 unavailable: %v", err)
				continue
			}
			t.Errorf("NewUDP(%q): %v", good, err)
			continue
		}
		if u.Name() != "udp:"+good {
			t.Errorf("Name = %q", u.Name())
		}
		u.Close()
	}
}

func TestUDPEmitAllocs(t *testing.T) {
	ln := listenUDP(t, "udp4", "127.0.0.1:0")
	u, err := NewUDP(ln.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	line := []byte(sampleLine)
	_ = u.Emit(1786094062, line)
	if n := testing.AllocsPerRun(200, func() { _ = u.Emit(1786094062, line) }); n != 0 {
		t.Errorf("UDP.Emit allocates %.1f times per event", n)
	}
}

func TestConsole(t *testing.T) {
	var buf bytes.Buffer
	c := NewConsole(&buf)
	_ = c.Emit(1, []byte("one\n"))
	_ = c.Emit(2, []byte("two\n"))
	if buf.String() != "one\ntwo\n" {
		t.Errorf("console = %q", buf.String())
	}

	// A buffering writer is flushed per line, so a pipe reader sees each
	// event immediately.
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 4096)
	c = NewConsole(bw)
	_ = c.Emit(1, []byte(sampleLine))
	if out.String() != sampleLine {
		t.Errorf("buffered console did not flush: %q", out.String())
	}
	if c.Name() != "console" {
		t.Error(c.Name())
	}
}

type countWriter struct{ writes int }

func (w *countWriter) Write(b []byte) (int, error) { w.writes++; return len(b), nil }

func TestConsoleOneWritePerLine(t *testing.T) {
	w := &countWriter{}
	c := NewConsole(w)
	for range 5 {
		_ = c.Emit(0, []byte(sampleLine))
	}
	if w.writes != 5 {
		t.Errorf("%d writes for 5 lines", w.writes)
	}
}

type failSink struct {
	err   error
	calls int
}

func (f *failSink) Emit(int64, []byte) error { f.calls++; return f.err }
func (f *failSink) Close() error             { return nil }
func (f *failSink) Name() string             { return "fail" }

func TestMultiKeepsGoingAndLogsOnce(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	bad := &failSink{err: fmt.Errorf("send: %w", syscall.ECONNREFUSED)}
	var out bytes.Buffer
	m := NewMulti(logger, bad, NewConsole(&out))
	for range 10 {
		if err := m.Emit(1, []byte("l\n")); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Emit error = %v", err)
		}
	}
	bad.err = fmt.Errorf("send: %w", syscall.EHOSTUNREACH) // a new kind logs again
	_ = m.Emit(1, []byte("l\n"))
	if out.String() != strings.Repeat("l\n", 11) {
		t.Errorf("healthy sink got %q", out.String())
	}
	if got := strings.Count(logs.String(), "\n"); got != 2 {
		t.Errorf("%d log lines, want 2 (one per error kind):\n%s", got, logs.String())
	}
	errs := m.Errors()
	if errs["fail"] != 11 || errs["console"] != 0 {
		t.Errorf("Errors = %v", errs)
	}
	if got, want := m.Counts(), []Count{{"fail", 0, 11}, {"console", 11, 0}}; !slices.Equal(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
	if m.Name() != "multi(fail,console)" {
		t.Errorf("Name = %q", m.Name())
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
	// the exit summary: failures per sink, a warning when any failed
	if !strings.Contains(logs.String(), `level=WARN msg="output counters" fail.failed=11 console.failed=0`) {
		t.Errorf("no output counters at Close:\n%s", logs.String())
	}
	u, err := NewUDP("127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	_ = NewMulti(logger, u).Close()
	if !strings.Contains(logs.String(), `level=INFO msg="output counters" udp:127.0.0.1:9.failed=0 udp:127.0.0.1:9.sent=0`) {
		t.Errorf("no datagram count at Close:\n%s", logs.String())
	}
}

func BenchmarkFileEmit(b *testing.B) {
	f, err := NewFile(b.TempDir(), time.UTC)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line := []byte(sampleLine)
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if err := f.Emit(1786094062, line); err != nil {
			b.Fatal(err)
		}
	}
}

// benchEmit measures s's Emit of line, sending to a drained loopback
// listener: the benchmark measures the sender, not a full receive queue
// (loopback drops silently when it is full anyway). The AddrPort read does
// not allocate, so ReportAllocs shows the sender alone.
func benchEmit(b *testing.B, newSink func(addr string) (Sink, error), line string) {
	ln := listenUDP(b, "udp4", "127.0.0.1:0")
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := ln.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	s, err := newSink(ln.LocalAddr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	lb := []byte(line)
	b.ReportAllocs()
	b.SetBytes(int64(len(lb)))
	for b.Loop() {
		if err := s.Emit(1786094062, lb); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUDPEmit(b *testing.B) {
	benchEmit(b, func(addr string) (Sink, error) { return NewUDP(addr) }, sampleLine)
}
