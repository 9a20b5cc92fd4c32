// Package progress draws a one-line progress bar for long loads and
// downloads, on an interactive terminal only: piped or logged output stays
// free of carriage returns and escape codes.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Bar is a progress line on a terminal. A nil *Bar (what New returns for
// anything that is not a terminal) does nothing, so callers need no checks.
// Its methods are for one goroutine at a time.
type Bar struct {
	w     *os.File
	last  time.Time
	shown bool
}

// redrawEvery bounds the redraw rate: a fast load does not spend its time
// writing to the terminal.
const redrawEvery = 100 * time.Millisecond

// New returns a bar drawing on w, or nil when w is not an interactive
// terminal (or TERM is "dumb").
func New(w *os.File) *Bar {
	if w == nil || os.Getenv("TERM") == "dumb" {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(w.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &Bar{w: w}
}

// Update shows label with done of total bytes (total < 0: unknown), at
// most every redrawEvery.
func (b *Bar) Update(label string, done, total int64) {
	if b == nil {
		return
	}
	now := time.Now()
	if b.shown && now.Sub(b.last) < redrawEvery {
		return
	}
	b.last, b.shown = now, true
	fmt.Fprint(b.w, "\r"+Render(label, done, total, 30)+"\x1b[K")
}

// Done clears the line, so log lines and results that follow start clean.
func (b *Bar) Done() {
	if b == nil || !b.shown {
		return
	}
	fmt.Fprint(b.w, "\r\x1b[K")
	b.shown = false
}

// Clearing returns a writer to w that clears the bar before each write,
// so log lines do not run into it; for a nil bar it is w itself.
func (b *Bar) Clearing(w io.Writer) io.Writer {
	if b == nil {
		return w
	}
	return clearing{b: b, w: w}
}

type clearing struct {
	b *Bar
	w io.Writer
}

func (c clearing) Write(p []byte) (int, error) {
	c.b.Done()
	return c.w.Write(p)
}

// Render is the bar's text: "label [#####.....]  50%  1.0/2.0 MiB", or
// "label 1.0 MiB" when the total is unknown.
func Render(label string, done, total int64, width int) string {
	if total <= 0 {
		return fmt.Sprintf("%s %s", label, mib(done))
	}
	done = min(max(done, 0), total)
	fill := int(int64(width) * done / total)
	return fmt.Sprintf("%s [%s%s] %3d%%  %s/%s", label, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		100*done/total, strings.TrimSuffix(mib(done), " MiB"), mib(total))
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
