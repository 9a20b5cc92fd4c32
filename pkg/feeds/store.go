package feeds

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// meta is the JSON sidecar beside a copy.
type meta struct {
	// URL is the redacted URL, for people reading the file; URLHash is the
	// full URL's SHA-256, so a changed URL (or API key) is noticed without
	// writing the key to disk.
	URL          string    `json:"url"`
	URLHash      string    `json:"url_sha256"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	CheckedAt    time.Time `json:"checked_at"` // last 200 or 304: the copy was current then
	UpdatedAt    time.Time `json:"updated_at"` // last 200 that replaced the copy
	Bytes        int64     `json:"bytes"`
	Lines        int       `json:"lines"`
}

func urlHash(u string) string {
	h := sha256.Sum256([]byte(u))
	return hex.EncodeToString(h[:])
}

func copyPath(dir, name string) string { return filepath.Join(dir, name) }
func metaPath(dir, name string) string { return filepath.Join(dir, "."+name+".meta.json") }

// readMeta returns nil, nil when there is no sidecar.
func readMeta(dir, name string) (*meta, error) {
	b, err := os.ReadFile(metaPath(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sidecar: %w", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse sidecar %s: %w", metaPath(dir, name), err)
	}
	return &m, nil
}

func writeMeta(dir, name string, m *meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sidecar: %w", err)
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(dir, "."+name+".meta.*.tmp")
	if err != nil {
		return fmt.Errorf("write sidecar: %w", err)
	}
	if err := commit(f, b, metaPath(dir, name)); err != nil {
		return fmt.Errorf("write sidecar: %w", err)
	}
	return nil
}

// commit writes b (if any) to the temporary file f, makes it durable and
// renames it over dst. It always consumes f: on any error f is closed and
// removed and dst is untouched.
func commit(f *os.File, b []byte, dst string) error {
	tmp := f.Name()
	err := func() error {
		if _, err := f.Write(b); err != nil {
			return err
		}
		// The sensor may run as another user than the updater.
		if err := f.Chmod(0o644); err != nil {
			return err
		}
		// Without the fsync a crash after the rename can leave dst
		// empty or partial on disk, which is the failure this package
		// exists to prevent.
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	}()
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	// Make the rename itself durable. Best effort: the new file is
	// already complete and in place, so reporting a failure here would
	// call a good update failed; the journal commits the rename soon.
	_ = syncDir(filepath.Dir(dst))
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// sweepTemps removes temporary files a crashed run left behind. It runs
// under the directory lock, so no live update owns any of them.
func sweepTemps(dir string, l *slog.Logger) {
	names, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	for _, n := range names {
		if err := os.Remove(n); err != nil {
			l.Warn("feeds: cannot remove leftover temporary file", "path", n, "err", err)
			continue
		}
		l.Info("feeds: removed leftover temporary file", "path", n)
	}
}

// lineCounter counts data lines as Maltrail reads a trail file: lines with
// something other than blanks that do not start with '#'. It is an
// io.Writer so it can count a body as it streams to disk.
type lineCounter struct {
	lines   int
	inLine  bool // a non-blank byte was seen on the current line
	comment bool // and it was '#'
}

func (c *lineCounter) Write(p []byte) (int, error) {
	for _, b := range p {
		switch {
		case b == '\n':
			if c.inLine && !c.comment {
				c.lines++
			}
			c.inLine, c.comment = false, false
		case c.inLine:
		case b == ' ' || b == '\t' || b == '\r' || b == '\v' || b == '\f':
		default:
			c.inLine, c.comment = true, b == '#'
		}
	}
	return len(p), nil
}

// total counts an unterminated last line too.
func (c *lineCounter) total() int {
	if c.inLine && !c.comment {
		return c.lines + 1
	}
	return c.lines
}

var gzipMagic = []byte{0x1f, 0x8b}

// countFile counts the data lines of a copy, decompressing it first if it
// is gzip. A gzip stream that does not decode to its end is ErrCorrupt;
// more than limit decompressed bytes is ErrTooLarge (a decompression bomb
// would otherwise pass a size check on the compressed bytes).
func countFile(path string, limit int64) (lines int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	gz := false
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == gzipMagic[0] && head[1] == gzipMagic[1] {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("%w: gzip header: %v", ErrCorrupt, err)
		}
		defer zr.Close()
		r, gz = zr, true
	}
	var c lineCounter
	n, err := io.Copy(&c, io.LimitReader(r, limit+1))
	if err != nil {
		if gz {
			return 0, fmt.Errorf("%w: gzip stream: %v", ErrCorrupt, err)
		}
		return 0, err
	}
	if n > limit {
		return 0, fmt.Errorf("%w: over %d bytes decompressed", ErrTooLarge, limit)
	}
	return c.total(), nil
}

func isGzipFile(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 2)
	if _, err := io.ReadFull(f, head); err != nil {
		return false, nil
	}
	return head[0] == gzipMagic[0] && head[1] == gzipMagic[1], nil
}
