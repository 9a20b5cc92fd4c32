package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// File appends event lines to Maltrail's LOG_DIR layout: dir/YYYY-MM-DD.log,
// the date being localtime(sec) in the configured location (spec §2 "Files").
//
// Each line is one write(2) on a descriptor opened with O_APPEND, so several
// writers (two sensors, a sensor and a collector, or two File values) can
// share a day file without ever interleaving inside a line. The descriptor of
// the current day is cached and the previous day's is closed when the day
// changes, as Maltrail's get_event_log_handle does.
type File struct {
	dir string
	loc *time.Location

	mu     sync.Mutex
	f      *os.File
	lo, hi int64 // epoch-second range of the day f belongs to
	closed bool  // Emit after Close fails rather than reopening

	errs atomic.Uint64
}

// NewFile returns a File writing into dir, creating dir (mode 0755) if it
// does not exist. A nil loc means time.Local.
func NewFile(dir string, loc *time.Location) (*File, error) {
	if dir == "" {
		return nil, errors.New("sink: file: empty log directory")
	}
	if loc == nil {
		loc = time.Local
	}
	if err := EnsureDir(dir); err != nil {
		return nil, err
	}
	return &File{dir: dir, loc: loc}, nil
}

// EnsureDir creates dir with mode 0755 when it is absent. The mode is set
// explicitly after creation because MkdirAll's mode is filtered by the
// process umask; an existing directory is left as the operator made it.
func EnsureDir(dir string) error {
	st, err := os.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return fmt.Errorf("sink: log directory %s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sink: log directory: %w", err)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("sink: create log directory: %w", err)
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return fmt.Errorf("sink: chmod log directory: %w", err)
	}
	return nil
}

// Name implements Sink.
func (s *File) Name() string { return "file" }

// Dir returns the log directory.
func (s *File) Dir() string { return s.dir }

// Errors returns how many Emit calls failed.
func (s *File) Errors() uint64 { return s.errs.Load() }

// Emit appends line to the file of sec's day with a single write.
func (s *File) Emit(sec int64, line []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.errs.Add(1)
		return fmt.Errorf("sink: file: %w", fs.ErrClosed)
	}
	if s.f == nil || sec < s.lo || sec >= s.hi {
		if err := s.rotate(sec); err != nil {
			s.errs.Add(1)
			return err
		}
	}
	// os.File.Write issues one write(2); it only loops on a short write,
	// which a regular file returns only when the disk is full.
	if _, err := s.f.Write(line); err != nil {
		s.errs.Add(1)
		// Drop the descriptor so the next event reopens the file: this
		// recovers from a file that was replaced or a filesystem remounted.
		_ = s.f.Close()
		s.f = nil
		return fmt.Errorf("sink: file: %w", err)
	}
	return nil
}

// rotate switches to the file of sec's day. Called with mu held.
func (s *File) rotate(sec int64) error {
	lo, hi, name := dayRange(sec, s.loc)
	if s.f != nil {
		_ = s.f.Close()
		s.f = nil
	}
	f, err := OpenDayFile(filepath.Join(s.dir, name))
	if err != nil {
		return err
	}
	s.f, s.lo, s.hi = f, lo, hi
	return nil
}

// OpenDayFile opens path for appending, creating it with mode 0644. As in
// Maltrail, the mode is forced with chmod only when this call created the
// file (umask would otherwise turn 0644 into e.g. 0600); an existing file
// keeps whatever mode the operator gave it.
func OpenDayFile(path string) (*os.File, error) {
	// O_EXCL tells us whether we created the file. If another writer
	// creates it between our two opens, or removes it, try again.
	for range 4 {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, FileMode)
		if err == nil {
			if err := f.Chmod(FileMode); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("sink: chmod %s: %w", path, err)
			}
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("sink: create %s: %w", path, err)
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sink: open %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("sink: open %s: file keeps appearing and disappearing", path)
}

// Close closes the cached descriptor; later Emit calls fail.
func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("sink: file: close: %w", err)
	}
	return nil
}
