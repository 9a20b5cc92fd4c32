// Package sink holds the destinations of the sensor's Maltrail event lines:
// the daily LOG_DIR file, the Maltrail LOG_SERVER UDP datagram, the
// SYSLOG_SERVER (CEF) and LOGSTASH_SERVER (JSON) datagrams, the console, D4,
// and a fan-out over several of them.
//
// Every sink is bounded: Emit does one write (or one datagram per endpoint,
// plus at most one retry on a fresh socket, each with a write deadline) and
// returns, so a slow or broken destination costs the caller one failed call,
// never an unbounded wait. Emit reuses its buffers and does not allocate in
// the steady state.
package sink

import (
	"os"
	"strconv"
	"time"
)

// Sink receives rendered Maltrail event lines.
type Sink interface {
	// Emit delivers one line: a complete Maltrail log line including its
	// trailing '\n'. sec is the event's epoch second; it picks the daily
	// file and prefixes the UDP datagram (spec §2, §3.1). The sink does not
	// keep line after Emit returns.
	Emit(sec int64, line []byte) error
	// Close releases the sink's file descriptors and sockets.
	Close() error
	// Name identifies the sink in logs and counters.
	Name() string
}

const (
	// FileMode is the mode of a daily log file (Maltrail's
	// DEFAULT_EVENT_LOG_PERMISSIONS).
	FileMode os.FileMode = 0o644
	// DirMode is the mode of a LOG_DIR that the sink creates.
	DirMode os.FileMode = 0o755
)

// dayRange returns the half-open range of epoch seconds [lo, hi) of the
// calendar day that contains sec in loc, and that day's file name. The range
// is computed with time.Date rather than by adding 86400, so days of 23 or 25
// hours around DST changes are right.
func dayRange(sec int64, loc *time.Location) (lo, hi int64, name string) {
	y, m, d := time.Unix(sec, 0).In(loc).Date()
	lo = time.Date(y, m, d, 0, 0, 0, 0, loc).Unix()
	hi = time.Date(y, m, d+1, 0, 0, 0, 0, loc).Unix()
	return lo, hi, DayFileName(y, m, d)
}

// DayFileName is Maltrail's "%d-%02d-%02d.log". The year is not padded,
// exactly like Python's %d.
func DayFileName(y int, m time.Month, d int) string {
	b := make([]byte, 0, 16)
	b = strconv.AppendInt(b, int64(y), 10)
	b = append(b, '-')
	b = append2(b, int(m))
	b = append(b, '-')
	b = append2(b, d)
	b = append(b, ".log"...)
	return string(b)
}

func append2(b []byte, v int) []byte {
	if v < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(v), 10)
}
