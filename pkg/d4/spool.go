package d4

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Spool defaults.
const (
	DefaultSpoolMax  = 256 << 20 // bytes on disk
	DefaultSyncEvery = time.Second
	// segments per spool: the oldest events are dropped a segment at a
	// time, so this is also the granularity of a drop (1/16 of the spool)
	spoolSegments = 16
	minSegment    = 4 << 10
)

// Files in a spool directory.
const (
	spoolLock   = "lock"
	spoolCursor = "cursor"
	segSuffix   = ".seg"
)

// ErrSpoolLineTooLarge is returned by Append for a line larger than the
// whole spool.
var ErrSpoolLineTooLarge = errors.New("d4 spool: line larger than the spool")

// SpoolConfig configures OpenSpool.
type SpoolConfig struct {
	Dir string // created if missing (mode 0700)
	// Max bounds the bytes of the segment files; 0 means DefaultSpoolMax.
	// When a line does not fit, the oldest segments are deleted.
	Max int64
	// SyncEvery is how often written segments and the cursor are
	// fsynced; 0 means DefaultSyncEvery.
	SyncEvery time.Duration
	Logger    *slog.Logger
}

// SpoolStats are a spool's counters. Lines are counted by their '\n'.
type SpoolStats struct {
	Spooled   uint64 // lines appended since OpenSpool
	Dropped   uint64 // lines deleted unacknowledged because the spool was full (the oldest)
	Refused   uint64 // lines Append refused: larger than the spool, or the disk failed
	Pending   uint64 // lines in the spool not yet acknowledged
	Recovered uint64 // lines found unacknowledged by OpenSpool (left by an earlier run)
	Torn      uint64 // bytes of incomplete lines cut from segment ends by OpenSpool
	Bytes     int64  // bytes in segment files now
}

// Pos is a position in a spool: a segment and a byte offset in it.
type Pos struct {
	Seg uint64
	Off int64
}

// Batch is whole lines read from a spool by Next.
type Batch struct {
	Payload []byte // whole lines, each ending in '\n'
	Lines   int
	End     Pos // where the batch ends; pass it to Ack once the lines are delivered
}

type segment struct {
	id       uint64
	size     int64 // bytes of complete lines in the file
	lines    int64
	ackOff   int64 // acknowledged prefix (only the oldest segment has one)
	ackLines int64
}

// Spool is a bounded, on-disk queue of event lines between the sensor and
// the D4 connection. Append (the sink's hand-off) writes each line to the
// newest segment file with one write(2), so a line survives a crash of the
// process as soon as Append returns, and a power loss once the next fsync
// (every SyncEvery) is done. A sender reads lines with Next, oldest first, and
// calls Ack once the server has them; the acknowledged position (the cursor
// file) is saved at the same fsync, so after a crash the lines acknowledged
// during the last SyncEvery are sent again (at least once, never lost).
//
// When a line does not fit in Max bytes, the oldest segment is deleted, and
// its unacknowledged lines are counted as Dropped and logged.
//
// Append, Stats and Notify are safe for concurrent use; Next, Rewind and
// Ack belong to one sender goroutine.
type Spool struct {
	dir       string
	max       int64
	segMax    int64
	syncEvery time.Duration
	log       *slog.Logger
	lock      *os.File
	notify    chan struct{}
	stop      chan struct{}
	synced    sync.WaitGroup

	mu        sync.Mutex
	segs      []*segment // oldest first; the last one is written to
	w         *os.File   // the last segment, open for append
	total     int64
	dirty     bool       // w has unsynced writes
	dirDirty  bool       // a segment file was created
	cursorPos Pos        // last saved cursor
	toSync    []*os.File // rotated segments, fsynced and closed by the syncer
	st        SpoolStats
	lastDrop  time.Time // for rate-limiting the drop log
	unlogged  uint64    // lines dropped since the last drop log
	closed    bool
	scratch   []byte // a line plus its missing '\n'

	// reader state, used by the sender goroutine only
	rd   Pos
	rf   *os.File
	rfID uint64
}

// OpenSpool opens (or creates) the spool in cfg.Dir. It takes an exclusive
// lock on the directory, so two sensors never share one spool, removes the
// acknowledged segments, cuts a line left incomplete by a crash, and starts a
// goroutine that syncs until Close.
func OpenSpool(cfg SpoolConfig) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("d4 spool: no directory")
	}
	if cfg.Max == 0 {
		cfg.Max = DefaultSpoolMax
	}
	if cfg.Max < 0 || cfg.SyncEvery < 0 {
		return nil, errors.New("d4 spool: negative size or interval")
	}
	if cfg.SyncEvery == 0 {
		cfg.SyncEvery = DefaultSyncEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("d4 spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, spoolLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("d4 spool: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("d4 spool: %s is in use by another process (one spool per sensor: set D4_SPOOL_DIR)", cfg.Dir)
		}
		return nil, fmt.Errorf("d4 spool: lock %s: %w", cfg.Dir, err)
	}
	s := &Spool{
		dir:       cfg.Dir,
		max:       cfg.Max,
		segMax:    max(cfg.Max/spoolSegments, minSegment),
		syncEvery: cfg.SyncEvery,
		log:       cfg.Logger.With("spool", cfg.Dir),
		lock:      lock,
		notify:    make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
	if err := s.recover(); err != nil {
		s.closeFiles()
		lock.Close()
		return nil, err
	}
	s.synced.Add(1)
	go s.syncLoop()
	return s, nil
}

// recover rebuilds the segment list from the directory and opens a fresh
// segment for writing.
func (s *Spool) recover() error {
	cur, hasCursor := s.readCursor()
	names, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("d4 spool: %w", err)
	}
	var ids []uint64
	for _, e := range names {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 16, 64)
		if err != nil || id == 0 {
			s.log.Warn("d4 spool: ignoring a file that is not a segment", "file", name)
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var last uint64
	for _, id := range ids {
		last = id
		path := s.segPath(id)
		if hasCursor && id < cur.Seg {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("d4 spool: removing acknowledged segment: %w", err)
			}
			continue
		}
		seg, err := s.scanSegment(id)
		if err != nil {
			return err
		}
		if seg.size == 0 {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("d4 spool: %w", err)
			}
			continue
		}
		if hasCursor && id == cur.Seg && cur.Off > 0 {
			if err := s.countAcked(seg, cur.Off); err != nil {
				return err
			}
		}
		s.segs = append(s.segs, seg)
		s.total += seg.size
		s.st.Pending += uint64(seg.lines - seg.ackLines)
	}
	s.st.Recovered = s.st.Pending
	// Above the cursor's segment too: a segment below it would be taken
	// for an acknowledged one at the next start.
	if err := s.newSegment(max(last, cur.Seg) + 1); err != nil {
		return err
	}
	for s.total > s.max && len(s.segs) > 1 { // Max was lowered since the last run
		s.dropOldest()
	}
	if s.st.Recovered > 0 {
		s.log.Info("d4 spool: events from an earlier run wait to be sent", "lines", s.st.Recovered, "bytes", s.total)
	}
	return nil
}

// scanSegment counts the lines of a segment file and cuts an incomplete
// last line (a write torn by a power loss).
func (s *Spool) scanSegment(id uint64) (*segment, error) {
	f, err := os.OpenFile(s.segPath(id), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("d4 spool: %w", err)
	}
	defer f.Close()
	seg := &segment{id: id}
	buf := make([]byte, 1<<20)
	var off, complete int64
	for {
		n, err := f.Read(buf)
		if n > 0 {
			b := buf[:n]
			seg.lines += int64(bytes.Count(b, []byte{'\n'}))
			if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
				complete = off + int64(i) + 1
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("d4 spool: reading %s: %w", f.Name(), err)
		}
	}
	if off > complete {
		s.log.Warn("d4 spool: cutting an incomplete line from a segment (torn write)", "file", f.Name(), "bytes", off-complete)
		if err := f.Truncate(complete); err != nil {
			return nil, fmt.Errorf("d4 spool: %w", err)
		}
		s.st.Torn += uint64(off - complete)
	}
	seg.size = complete
	return seg, nil
}

// countAcked sets the acknowledged prefix of the oldest segment from the
// cursor, clamped to the data that survived.
func (s *Spool) countAcked(seg *segment, off int64) error {
	off = min(off, seg.size)
	f, err := os.Open(s.segPath(seg.id))
	if err != nil {
		return fmt.Errorf("d4 spool: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for done := int64(0); done < off; {
		m, err := f.ReadAt(buf[:min(int64(len(buf)), off-done)], done)
		n += int64(bytes.Count(buf[:m], []byte{'\n'}))
		done += int64(m)
		if err != nil && done < off {
			return fmt.Errorf("d4 spool: reading %s: %w", f.Name(), err)
		}
	}
	seg.ackOff, seg.ackLines = off, n
	return nil
}

// readCursor returns the saved cursor; a missing or unreadable one means
// nothing is acknowledged (everything is sent again, nothing is lost).
func (s *Spool) readCursor() (Pos, bool) {
	b, err := os.ReadFile(filepath.Join(s.dir, spoolCursor))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("d4 spool: cursor unreadable; sending every spooled line again", "err", err)
		}
		return Pos{}, false
	}
	var p Pos
	if _, err := fmt.Sscanf(string(b), "%x %d\n", &p.Seg, &p.Off); err != nil || p.Off < 0 {
		s.log.Warn("d4 spool: cursor malformed; sending every spooled line again", "content", string(b))
		return Pos{}, false
	}
	s.cursorPos = p
	return p, true
}

func (s *Spool) segPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x%s", id, segSuffix))
}

// newSegment creates the segment id and makes it the write segment.
func (s *Spool) newSegment(id uint64) error {
	f, err := os.OpenFile(s.segPath(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("d4 spool: new segment: %w", err)
	}
	if s.w != nil {
		s.toSync = append(s.toSync, s.w)
	}
	s.w = f
	s.segs = append(s.segs, &segment{id: id})
	s.dirDirty = true
	return nil
}

// Append writes a line to the spool, adding the final '\n' when it is
// missing, with one write(2). It never waits for the network; it fails only
// when the line is larger than the spool or the disk refuses it, and then
// counts it as Refused. An empty line is ignored.
func (s *Spool) Append(line []byte) error {
	if len(line) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if line[len(line)-1] != '\n' {
		s.scratch = append(append(s.scratch[:0], line...), '\n')
		line = s.scratch
	}
	if err := s.append(line, int64(len(line))); err != nil {
		s.st.Refused += uint64(max(bytes.Count(line, []byte{'\n'}), 1))
		return err
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (s *Spool) append(line []byte, n int64) error {
	switch {
	case s.closed:
		return errors.New("d4 spool: closed")
	case n > s.max:
		return fmt.Errorf("%w (%d > %d bytes)", ErrSpoolLineTooLarge, n, s.max)
	}
	ws := s.segs[len(s.segs)-1]
	if s.total+n > s.max {
		if ws.size > 0 {
			if err := s.newSegment(ws.id + 1); err != nil {
				return err
			}
			ws = s.segs[len(s.segs)-1]
		}
		for s.total+n > s.max && len(s.segs) > 1 {
			s.dropOldest()
		}
	} else if ws.size > 0 && ws.size+n > s.segMax {
		if err := s.newSegment(ws.id + 1); err != nil {
			return err
		}
		ws = s.segs[len(s.segs)-1]
	}
	if _, err := s.w.Write(line); err != nil {
		// Cut a partial write so the file keeps whole lines only.
		_ = s.w.Truncate(ws.size)
		return fmt.Errorf("d4 spool: write: %w", err)
	}
	lines := int64(bytes.Count(line, []byte{'\n'}))
	ws.size += n
	ws.lines += lines
	s.total += n
	s.st.Spooled += uint64(lines)
	s.st.Pending += uint64(lines)
	s.dirty = true
	return nil
}

// dropOldest deletes the oldest segment, which is not the write segment.
func (s *Spool) dropOldest() {
	seg := s.segs[0]
	lost := uint64(seg.lines - seg.ackLines)
	s.segs = s.segs[1:]
	s.total -= seg.size
	s.st.Dropped += lost
	s.st.Pending -= min(lost, s.st.Pending)
	s.unlogged += lost
	if err := os.Remove(s.segPath(seg.id)); err != nil {
		s.log.Error("d4 spool: removing a dropped segment", "err", err)
	}
	if now := time.Now(); now.Sub(s.lastDrop) >= time.Second {
		s.log.Warn("d4 spool: full, dropped the oldest events", "lines", s.unlogged,
			"dropped_total", s.st.Dropped, "max_bytes", s.max)
		s.lastDrop, s.unlogged = now, 0
	}
}

// Notify returns a channel that receives after Append adds lines.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Rewind moves the reader back to the oldest unacknowledged line: what
// was read but not acknowledged on a lost connection is read again.
func (s *Spool) Rewind() {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.segs[0]
	s.rd = Pos{h.id, h.ackOff}
}

// readable puts the reader on the segment it must read next and reports
// it, the read offset and how many bytes are there to read (0 = none yet).
// Caller holds mu.
func (s *Spool) readable() (id uint64, off, n int64) {
	h := s.segs[0]
	if s.rd.Seg < h.id { // dropped while it was being read
		s.rd = Pos{h.id, h.ackOff}
	}
	for i, seg := range s.segs {
		if seg.id < s.rd.Seg {
			continue
		}
		if seg.id > s.rd.Seg {
			s.rd = Pos{seg.id, 0}
		}
		if s.rd.Off < seg.size || i == len(s.segs)-1 {
			return seg.id, s.rd.Off, seg.size - s.rd.Off
		}
		// fully read: the next segment follows
	}
	return 0, 0, 0
}

// Unread is how many bytes wait after the reader.
func (s *Spool) Unread() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, _, n := s.readable()
	for _, seg := range s.segs {
		if seg.id > id {
			n += seg.size
		}
	}
	return max(n, 0)
}

// Next appends to dst[:0] the next whole lines after the reader, at most
// maxBytes of them unless a single line is longer (it then comes alone),
// and moves the reader past them. A Batch with no lines means nothing is
// waiting. Lines of one batch come from one segment.
func (s *Spool) Next(dst []byte, maxBytes int) (Batch, error) {
	for {
		s.mu.Lock()
		id, off, avail := s.readable()
		s.mu.Unlock()
		if avail <= 0 {
			return Batch{Payload: dst[:0]}, nil
		}
		if s.rf == nil || s.rfID != id {
			if s.rf != nil {
				s.rf.Close()
				s.rf = nil
			}
			f, err := os.Open(s.segPath(id))
			if errors.Is(err, os.ErrNotExist) {
				continue // dropped meanwhile
			}
			if err != nil {
				return Batch{Payload: dst[:0]}, fmt.Errorf("d4 spool: %w", err)
			}
			s.rf, s.rfID = f, id
		}
		payload, err := readLines(s.rf, dst[:0], off, avail, int64(maxBytes))
		if err != nil {
			return Batch{Payload: dst[:0]}, err
		}
		s.mu.Lock()
		if id < s.segs[0].id || s.rd != (Pos{id, off}) {
			s.mu.Unlock()
			dst = payload
			continue // dropped while we read
		}
		end := Pos{id, off + int64(len(payload))}
		s.rd = end
		s.mu.Unlock()
		return Batch{Payload: payload, Lines: bytes.Count(payload, []byte{'\n'}), End: end}, nil
	}
}

// readLines reads whole lines from f at off: up to maxBytes, or one longer
// line, within the avail complete bytes there.
func readLines(f *os.File, dst []byte, off, avail, maxBytes int64) ([]byte, error) {
	n := min(avail, maxBytes)
	for first := true; ; first = false {
		dst = grow(dst[:0], int(n))
		if _, err := f.ReadAt(dst, off); err != nil {
			return dst[:0], fmt.Errorf("d4 spool: reading %s: %w", f.Name(), err)
		}
		if first {
			if i := bytes.LastIndexByte(dst, '\n'); i >= 0 {
				return dst[:i+1], nil
			}
		} else if i := bytes.IndexByte(dst, '\n'); i >= 0 {
			return dst[:i+1], nil // the long line alone
		}
		if n == avail {
			// Cannot happen: Append writes whole lines only. Send what
			// is there rather than stall on it.
			return dst, nil
		}
		n = min(avail, 2*n+MaxPayload/16)
	}
}

// Ack records that the lines of a batch up to end, lines of them, are
// delivered. Batches must be acknowledged in the order Next returned them;
// an ack for lines already dropped is ignored.
func (s *Spool) Ack(end Pos, lines int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.segs) > 1 && s.segs[0].id < end.Seg {
		s.removeOldest() // fully acknowledged by earlier batches
	}
	h := s.segs[0]
	if end.Seg != h.id || end.Off <= h.ackOff {
		return // its segment was dropped, or a stale ack
	}
	h.ackOff = min(end.Off, h.size)
	h.ackLines = min(h.ackLines+int64(lines), h.lines)
	s.st.Pending -= min(uint64(lines), s.st.Pending)
	if h.ackOff == h.size && len(s.segs) > 1 {
		s.removeOldest()
	}
}

// removeOldest deletes the oldest segment once all of it is acknowledged.
func (s *Spool) removeOldest() {
	seg := s.segs[0]
	s.segs = s.segs[1:]
	s.total -= seg.size
	if left := uint64(seg.lines - seg.ackLines); left > 0 {
		s.st.Pending -= min(left, s.st.Pending)
	}
	if err := os.Remove(s.segPath(seg.id)); err != nil {
		s.log.Error("d4 spool: removing an acknowledged segment", "err", err)
	}
}

// Stats returns a snapshot of the counters.
func (s *Spool) Stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Bytes = s.total
	return st
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

func (s *Spool) syncLoop() {
	defer s.synced.Done()
	t := time.NewTicker(s.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.sync(); err != nil {
				s.log.Error("d4 spool: sync", "err", err)
			}
		}
	}
}

// sync fsyncs what was written since the last call and saves the cursor.
// The file work runs outside mu so Append never waits for the disk.
func (s *Spool) sync() error {
	s.mu.Lock()
	files := s.toSync
	s.toSync = nil
	var w *os.File
	if s.dirty {
		w, s.dirty = s.w, false
	}
	dir := s.dirDirty
	s.dirDirty = false
	cur := Pos{s.segs[0].id, s.segs[0].ackOff}
	saveCursor := cur != s.cursorPos
	s.mu.Unlock()

	var errs []error
	for _, f := range files {
		errs = append(errs, f.Sync(), f.Close())
	}
	if w != nil {
		errs = append(errs, w.Sync())
	}
	if saveCursor {
		errs = append(errs, s.writeCursor(cur))
		dir = true
	}
	if dir {
		errs = append(errs, syncDir(s.dir))
	}
	if saveCursor {
		s.mu.Lock()
		s.cursorPos = cur
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (s *Spool) writeCursor(p Pos) error {
	tmp := filepath.Join(s.dir, spoolCursor+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%x %d\n", p.Seg, p.Off)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, spoolCursor))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// Close stops the syncer, syncs everything, saves the cursor, deletes an
// empty write segment and releases the directory lock. Append fails after
// Close.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.synced.Wait()
	err := s.sync()
	s.mu.Lock()
	if ws := s.segs[len(s.segs)-1]; ws.size == 0 {
		s.w.Close()
		s.w = nil
		if rerr := os.Remove(s.segPath(ws.id)); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	s.mu.Unlock()
	s.closeFiles()
	return errors.Join(err, s.lock.Close())
}

func (s *Spool) closeFiles() {
	if s.w != nil {
		s.w.Close()
	}
	for _, f := range s.toSync {
		f.Close()
	}
	if s.rf != nil {
		s.rf.Close()
	}
}
