package d4

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openTestSpool(t testing.TB, dir string, maxBytes int64) *Spool {
	t.Helper()
	s, err := OpenSpool(SpoolConfig{Dir: dir, Max: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func seqLine(i int) []byte { return fmt.Appendf(nil, "line %06d\n", i) }

// drainSpool reads every waiting line, acknowledging each batch when ack is set.
func drainSpool(t testing.TB, s *Spool, maxBytes int, ack bool) []string {
	t.Helper()
	var out []string
	var buf []byte
	for {
		b, err := s.Next(buf, maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		if b.Lines == 0 {
			return out
		}
		if len(b.Payload) > maxBytes && b.Lines > 1 {
			t.Fatalf("batch of %d bytes and %d lines exceeds %d", len(b.Payload), b.Lines, maxBytes)
		}
		if b.Payload[len(b.Payload)-1] != '\n' {
			t.Fatalf("batch does not end a line: %q", b.Payload)
		}
		out = append(out, strings.SplitAfter(strings.TrimSuffix(string(b.Payload), "\n"), "\n")...)
		if ack {
			s.Ack(b.End, b.Lines)
		}
		buf = b.Payload
	}
}

func wantSeq(t *testing.T, got []string, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("got %d lines, want %d (%d..%d)", len(got), to-from, from, to-1)
	}
	for i, l := range got {
		if w := strings.TrimSuffix(string(seqLine(from+i)), "\n"); strings.TrimSuffix(l, "\n") != w {
			t.Fatalf("line %d = %q, want %q", i, l, w)
		}
	}
}

func segFiles(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func TestSpoolOrderAndAck(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, 64<<10) // 4 KiB segments
	for i := range 2000 {
		if err := s.Append(seqLine(i)); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Spooled != 2000 || st.Pending != 2000 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := segFiles(t, dir); n < 4 {
		t.Fatalf("%d segment files for 22 KB in 4 KiB segments", n)
	}
	// read without acks, then again after a rewind: the same lines
	wantSeq(t, drainSpool(t, s, 1000, false), 0, 2000)
	s.Rewind()
	wantSeq(t, drainSpool(t, s, 1000, true), 0, 2000)
	if st := s.Stats(); st.Pending != 0 {
		t.Fatalf("pending %d after acking everything", st.Pending)
	}
	// acknowledged segments are deleted; only the write segment is left
	if n := segFiles(t, dir); n != 1 {
		t.Fatalf("%d segment files after acking everything, want 1", n)
	}
	s.Rewind()
	if got := drainSpool(t, s, 1000, false); len(got) != 0 {
		t.Fatalf("rewind after full ack read %d lines", len(got))
	}
}

func TestSpoolSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(SpoolConfig{Dir: dir, Max: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		s.Append(seqLine(i))
	}
	// deliver the first 300 lines exactly
	var buf []byte
	for acked := 0; acked < 300; {
		b, _ := s.Next(buf, 12*(300-acked))
		s.Ack(b.End, b.Lines)
		acked += b.Lines
		buf = b.Payload
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestSpool(t, dir, 64<<10)
	if st := s.Stats(); st.Recovered != 700 || st.Pending != 700 {
		t.Fatalf("after restart %+v, want 700 recovered and pending", st)
	}
	s.Append(bytes.TrimSuffix(seqLine(1000), []byte("\n"))) // the '\n' is added
	wantSeq(t, drainSpool(t, s, 4096, true), 300, 1001)
}

// crash stops a spool as a killed process would: no final sync, no cursor.
func crash(s *Spool) {
	close(s.stop)
	s.synced.Wait()
	s.closeFiles()
	s.lock.Close()
}

func TestSpoolCrashLosesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(SpoolConfig{Dir: dir, Max: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		s.Append(seqLine(i))
	}
	if err := s.sync(); err != nil { // a periodic sync: cursor at 0
		t.Fatal(err)
	}
	drainSpool(t, s, 2000, true) // acknowledged, but the cursor is not saved
	for i := 500; i < 600; i++ {
		s.Append(seqLine(i))
	}
	crash(s)
	s = openTestSpool(t, dir, 64<<10)
	// Acknowledged segments were deleted; the rest of the acknowledged
	// lines come again (duplicates), and none of the others is lost.
	got := drainSpool(t, s, 2000, true)
	if len(got) < 100 || len(got) == 600 {
		t.Fatalf("%d lines after the crash, want the 100 unacknowledged and some acknowledged ones", len(got))
	}
	wantSeq(t, got, 600-len(got), 600)
}

func TestSpoolCutsTornLine(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(SpoolConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s.Append(seqLine(i))
	}
	last := s.segPath(s.segs[len(s.segs)-1].id)
	crash(s)
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("line 0000") // a write cut by a power loss
	f.Close()
	s = openTestSpool(t, dir, 0)
	if st := s.Stats(); st.Torn != 9 || st.Pending != 10 {
		t.Fatalf("stats %+v, want 9 torn bytes and 10 lines", st)
	}
	s.Append(seqLine(10))
	wantSeq(t, drainSpool(t, s, 4096, true), 0, 11)
}

func TestSpoolFullDropsOldest(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 64 << 10
	s := openTestSpool(t, dir, maxBytes)
	const n = 20000 // 240 KB of lines into 64 KiB
	for i := range n {
		if err := s.Append(seqLine(i)); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Bytes > maxBytes {
			t.Fatalf("spool holds %d bytes, max %d", st.Bytes, maxBytes)
		}
	}
	st := s.Stats()
	if st.Dropped == 0 || st.Dropped+st.Pending != n {
		t.Fatalf("stats %+v: dropped + pending != %d", st, n)
	}
	if st.Bytes < maxBytes*3/4 {
		t.Fatalf("only %d of %d bytes used", st.Bytes, maxBytes)
	}
	// what is left is exactly the newest lines
	wantSeq(t, drainSpool(t, s, 4096, true), int(st.Dropped), n)
}

func TestSpoolDropWhileReading(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir, 16<<10) // 4 KiB segments
	for i := range 1000 {              // 12 KB: fits
		s.Append(seqLine(i))
	}
	b, err := s.Next(nil, 120) // in flight from the oldest segment
	if err != nil || b.Lines != 10 {
		t.Fatalf("Next: %d lines, %v", b.Lines, err)
	}
	for i := 1000; i < 2000; i++ { // pushes the oldest segments out
		s.Append(seqLine(i))
	}
	st := s.Stats()
	if st.Dropped == 0 {
		t.Fatal("nothing dropped")
	}
	s.Ack(b.End, b.Lines) // its segment is gone: ignored
	if got := s.Stats(); got.Pending != st.Pending {
		t.Fatalf("stale ack changed pending from %d to %d", st.Pending, got.Pending)
	}
	wantSeq(t, drainSpool(t, s, 4096, true), int(st.Dropped), 2000)
}

func TestSpoolLongLineAlone(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), 0)
	long := append(bytes.Repeat([]byte("x"), 5000), '\n')
	s.Append(seqLine(0))
	s.Append(long)
	s.Append(seqLine(1))
	var sizes []int
	var buf []byte
	for {
		b, err := s.Next(buf, 100)
		if err != nil {
			t.Fatal(err)
		}
		if b.Lines == 0 {
			break
		}
		sizes = append(sizes, len(b.Payload))
		buf = b.Payload
	}
	if fmt.Sprint(sizes) != "[12 5001 12]" {
		t.Fatalf("batch sizes %v, want [12 5001 12]", sizes)
	}
}

func TestSpoolRefuses(t *testing.T) {
	s := openTestSpool(t, t.TempDir(), 8<<10)
	if err := s.Append(append(bytes.Repeat([]byte("x"), 9000), '\n')); err == nil {
		t.Fatal("a line larger than the spool was accepted")
	}
	if st := s.Stats(); st.Refused != 1 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSpoolLocked(t *testing.T) {
	dir := t.TempDir()
	openTestSpool(t, dir, 0)
	if s, err := OpenSpool(SpoolConfig{Dir: dir}); err == nil {
		s.Close()
		t.Fatal("a second spool on the same directory opened")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("error %q does not say the spool is in use", err)
	}
}

func TestSpoolCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	openTestSpool(t, dir, 0)
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("spool dir: %v %v", st, err)
	}
}

func BenchmarkSpoolAppend(b *testing.B) {
	s := openTestSpool(b, b.TempDir(), 1<<30)
	line := []byte(`1700000000 "2023-11-14 22:13:20.000000" sensor 10.0.0.1 12345 203.0.113.9 53 UDP DNS evil.example "malware" (static)` + "\n")
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Append(line); err != nil {
			b.Fatal(err)
		}
	}
}
