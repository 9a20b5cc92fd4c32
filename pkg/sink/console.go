package sink

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Console writes each event line to w in a single Write, so that
// `xtrail sensor --console | d4-goclient …` sees whole lines as they happen.
// If w buffers (it has a Flush() error method, like *bufio.Writer), it is
// flushed after every line: a line held in a buffer is an event the next
// stage never sees.
type Console struct {
	mu    sync.Mutex
	w     io.Writer
	flush func() error
	errs  atomic.Uint64
}

// NewConsole returns a Console writing to w (typically os.Stdout).
func NewConsole(w io.Writer) *Console {
	c := &Console{w: w}
	if f, ok := w.(interface{ Flush() error }); ok {
		c.flush = f.Flush
	}
	return c
}

// Name implements Sink.
func (c *Console) Name() string { return "console" }

// Errors returns how many Emit calls failed.
func (c *Console) Errors() uint64 { return c.errs.Load() }

// Emit writes line; sec is not part of the console form.
func (c *Console) Emit(_ int64, line []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.w.Write(line); err != nil {
		c.errs.Add(1)
		return fmt.Errorf("sink: console: %w", err)
	}
	if c.flush != nil {
		if err := c.flush(); err != nil {
			c.errs.Add(1)
			return fmt.Errorf("sink: console: flush: %w", err)
		}
	}
	return nil
}

// Close flushes a buffering writer. It does not close w: the console
// belongs to the process.
func (c *Console) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flush != nil {
		if err := c.flush(); err != nil {
			return fmt.Errorf("sink: console: flush: %w", err)
		}
	}
	return nil
}
