//go:build linux

package feeds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive, non-blocking flock on <dir>/.lock so that a
// timer-driven update and a manual one never write the same copies or
// sweep each other's temporary files. The kernel drops the lock if the
// process dies, so a crash never leaves the directory locked. The file
// itself is left in place: removing it would let two runs lock different
// inodes.
func lockDir(dir string) (unlock func(), err error) {
	p := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("feeds: open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("feeds: %s: %w", dir, ErrBusy)
		}
		return nil, fmt.Errorf("feeds: lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}
