// Package collector is a drop-in for the UDP intake of Maltrail's server
// (server.py -> core/log.py:start_logd, spec §3.2): it receives the
// datagrams sensors send to LOG_SERVER and appends them, one line each, to
// LOG_DIR/YYYY-MM-DD.log exactly as Maltrail's server does, so Maltrail's web
// UI, /events and any tooling reading LOG_DIR keep working.
package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/pkg/sink"
)

const (
	// readBufferSize is the largest datagram we accept whole.
	//
	// Divergence from Maltrail: its socketserver reads 8192 bytes and
	// silently truncates longer datagrams, which cuts an event line (and its
	// newline) in the middle. Event lines are far below 8 KiB in practice,
	// but a long URL trail can exceed it, and writing a truncated line helps
	// nobody, so we read the whole datagram.
	readBufferSize = 65535
	// socketReceiveBuffer is Maltrail's SO_RCVBUF request. The kernel clamps
	// it to net.core.rmem_max without an error, so it is best effort there
	// and here.
	socketReceiveBuffer = 8 << 20
	// maxYear bounds an accepted epoch second. Maltrail passes any int to
	// time.localtime and would name a file "2147485547-01-01.log"; a sec
	// beyond year 9999 is garbage, not an event, so we drop it as a bad sec.
	maxYear = 9999
)

// Defaults of the window around now in which an event's time must fall.
// Maltrail's server takes any time and creates a day file for it (sec 0
// makes 1970-01-01.log, a sec in year 9000 9000-01-01.log). Replays of old
// captures legitimately carry old times, so the past reaches back ten
// years; a sensor's clock is not a day ahead.
const (
	DefaultMaxAge   = 10 * 365 * 24 * time.Hour
	DefaultMaxAhead = 24 * time.Hour
)

// DropReason says why a datagram was not written.
type DropReason int

// The reasons a datagram is dropped. The first three are the parse failures
// Maltrail's handler swallows; DropWrite is a failed append; DropOutOfWindow
// an event time too far from now (Maltrail writes those).
const (
	DropBadSec DropReason = iota
	DropNoSpace
	DropBadDate
	DropWrite
	DropOutOfWindow
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropBadSec:      "bad sec",
	DropNoSpace:     "missing space",
	DropBadDate:     "unparseable date",
	DropWrite:       "write error",
	DropOutOfWindow: "time outside the window",
}

func (r DropReason) String() string {
	if r >= 0 && r < numDropReasons {
		return dropReasonNames[r]
	}
	return fmt.Sprintf("DropReason(%d)", int(r))
}

// Sentinel errors, one per parse failure, for errors.Is on Handle's result.
var (
	ErrBadSec  = errors.New("leading epoch second is not an integer")
	ErrNoSpace = errors.New("no space after the leading epoch second")
	ErrBadDate = errors.New("naive datagram has no parseable %Y-%m-%d %H:%M:%S date")
	ErrWindow  = errors.New("event time outside the collector's window around now")
)

// Stats are the collector's counters.
type Stats struct {
	Datagrams uint64                // received (handled) datagrams
	Written   uint64                // lines appended
	Dropped   map[DropReason]uint64 // not written, by reason
	Last      time.Time             // when the last datagram was handled
}

// Collector appends Maltrail event datagrams to daily log files.
//
// The zero value plus Dir is ready to use. Dir is created (0755) on the
// first datagram if absent; Loc is the server's local time zone, which
// chooses the day file (nil means time.Local); MaxAge and MaxAhead bound an
// event's time before and after now (0 means DefaultMaxAge and
// DefaultMaxAhead, negative means no bound); Logger nil means
// slog.Default().
type Collector struct {
	Dir      string
	Loc      *time.Location
	MaxAge   time.Duration
	MaxAhead time.Duration
	Logger   *slog.Logger

	mu        sync.Mutex
	file      *sink.File
	line      []byte // reused normalisation buffer
	datagrams uint64
	written   uint64
	dropped   [numDropReasons]uint64
	logged    [numDropReasons]bool
	last      time.Time
}

func (c *Collector) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// bound returns v, or def when v is 0.
func bound(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func (c *Collector) loc() *time.Location {
	if c.Loc != nil {
		return c.Loc
	}
	return time.Local
}

// Serve reads datagrams from conn and handles each until ctx is done, then
// returns nil. It returns an error only when reading fails for another
// reason. Serve does not close conn; on cancellation it sets conn's read
// deadline to unblock the pending read, so the caller should close conn
// rather than reuse it.
func (c *Collector) Serve(ctx context.Context, conn net.PacketConn) error {
	raiseReadBuffer(conn, c.logger())
	stop := context.AfterFunc(ctx, func() {
		_ = conn.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()

	udp, _ := conn.(*net.UDPConn)
	buf := make([]byte, readBufferSize)
	for {
		var (
			n   int
			err error
		)
		if udp != nil {
			// The AddrPort form does not allocate a net.Addr per datagram.
			n, _, err = udp.ReadFromUDPAddrPort(buf)
		} else {
			n, _, err = conn.ReadFrom(buf)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("collector: read: %w", err)
		}
		// Drops and write failures are counted and logged by Handle; one
		// bad datagram must not stop the intake.
		_ = c.Handle(buf[:n], time.Now())
	}
}

// Handle processes one datagram as Maltrail's UDPHandler does, and reports
// why it was dropped, if it was. Counting and logging are done here.
func (c *Collector) Handle(b []byte, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.datagrams++
	c.last = now

	loc := c.loc()
	var (
		sec   int64
		event []byte
	)
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		// Regular format: "<sec> <line>".
		i := bytes.IndexByte(b, ' ')
		if i < 0 {
			return c.drop(DropNoSpace, ErrNoSpace, b)
		}
		s, ok := parsePyInt(b[:i])
		if !ok || !yearOK(s, loc) {
			return c.drop(DropBadSec, ErrBadSec, b)
		}
		sec, event = s, b[i+1:]
	} else {
		// Naive format: the line itself, whose first field is the quoted
		// local time. Maltrail parses data[1:data.find(b'.')]; when there
		// is no '.', find returns -1 and the slice drops the last byte.
		var field []byte
		switch j := bytes.IndexByte(b, '.'); {
		case j >= 1:
			field = b[1:j]
		case j < 0 && len(b) > 2:
			field = b[1 : len(b)-1]
		}
		s, ok := parseNaiveTime(field, loc)
		if !ok {
			return c.drop(DropBadDate, ErrBadDate, b)
		}
		sec, event = s, b
	}

	if age := bound(c.MaxAge, DefaultMaxAge); age > 0 && sec < now.Add(-age).Unix() {
		return c.drop(DropOutOfWindow, ErrWindow, b)
	}
	if ahead := bound(c.MaxAhead, DefaultMaxAhead); ahead > 0 && sec > now.Add(ahead).Unix() {
		return c.drop(DropOutOfWindow, ErrWindow, b)
	}
	c.line = normalise(c.line[:0], event)
	if c.file == nil {
		f, err := sink.NewFile(c.Dir, loc)
		if err != nil {
			return c.drop(DropWrite, err, b)
		}
		c.file = f
	}
	if err := c.file.Emit(sec, c.line); err != nil {
		return c.drop(DropWrite, err, b)
	}
	c.written++
	return nil
}

// normalise is Maltrail's event.rstrip(b'\r\n').replace(b'\r', b' ')
// .replace(b'\n', b' ') + b'\n': one datagram is one line, whatever a
// (possibly forged) sender put in it.
func normalise(dst, event []byte) []byte {
	end := len(event)
	for end > 0 && (event[end-1] == '\r' || event[end-1] == '\n') {
		end--
	}
	start := len(dst)
	dst = append(dst, event[:end]...)
	for i := start; i < len(dst); i++ {
		if dst[i] == '\r' || dst[i] == '\n' {
			dst[i] = ' '
		}
	}
	return append(dst, '\n')
}

// drop counts a dropped datagram and logs the first drop of each reason:
// the sender is unauthenticated and may be hostile or merely misconfigured,
// so a flood of bad datagrams must not become a flood of log lines.
func (c *Collector) drop(r DropReason, err error, b []byte) error {
	c.dropped[r]++
	if !c.logged[r] {
		c.logged[r] = true
		sample := b
		if len(sample) > 96 {
			sample = sample[:96]
		}
		c.logger().Warn("collector: dropping datagram; later drops for this reason are only counted",
			"reason", r.String(), "err", err, "datagram", fmt.Sprintf("%q", sample))
	}
	return fmt.Errorf("collector: %s: %w", r, err)
}

// Stats returns a snapshot of the counters.
func (c *Collector) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		Datagrams: c.datagrams,
		Written:   c.written,
		Dropped:   make(map[DropReason]uint64, numDropReasons),
		Last:      c.last,
	}
	for r, n := range c.dropped {
		if n > 0 {
			s.Dropped[DropReason(r)] = n
		}
	}
	return s
}

// Close closes the cached day file. A later Handle opens it again.
func (c *Collector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file == nil {
		return nil
	}
	err := c.file.Close()
	c.file = nil
	return err
}

// raiseReadBuffer asks for Maltrail's 8 MB receive buffer. The kernel clamps
// SO_RCVBUF to net.core.rmem_max (about 208 KiB by default, some 280
// datagrams) without an error, so as root SO_RCVBUFFORCE is tried first: a
// burst beyond the buffer is lost without any sign to the sender.
func raiseReadBuffer(conn net.PacketConn, log *slog.Logger) {
	sc, ok := conn.(syscall.Conn)
	if ok {
		if rc, err := sc.SyscallConn(); err == nil {
			var serr error
			_ = rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketReceiveBuffer)
			})
			if serr == nil {
				return
			}
		}
	}
	if rb, ok := conn.(interface{ SetReadBuffer(int) error }); ok {
		if err := rb.SetReadBuffer(socketReceiveBuffer); err != nil {
			log.Debug("collector: SO_RCVBUF not raised", "err", err)
		}
	}
}

func yearOK(sec int64, loc *time.Location) bool {
	return time.Unix(sec, 0).In(loc).Year() <= maxYear
}
