// Package export consumes D4 analyzer queues and forwards their elements,
// as d4-core's analyzer-d4-export scripts do (spec d4.md §5), but without
// losing an element when the destination or the process fails.
//
// UDP to a Maltrail collector: each queue element is one line (the server
// removed its '\n'), sent back with '\n' as exactly one datagram, which is
// what Maltrail's server reads (maltrail.md §3.2).
package export

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xtrail/xtrail/internal/ctxtime"
)

// Retry pacing for a failing destination or store.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	ackTimeout = 5 * time.Second
)

// Stats are an Exporter's counters since it was created.
type Stats struct {
	Sent       uint64 // elements delivered and acknowledged
	Recovered  uint64 // of Sent, elements found in flight at start
	SendErrors uint64 // failed send attempts (each retried)
	Buried     uint64 // elements that could never be sent, moved to the dead-letter list
	AckErrors  uint64 // delivered elements whose Ack failed: sent again after a restart
	PopErrors  uint64 // store errors while waiting for elements
}

// Exporter sends the elements of one Queue over one connected socket.
type Exporter struct {
	q    Queue
	conn net.Conn
	log  *slog.Logger
	buf  []byte

	sent, recovered, sendErrs, buried, ackErrs, popErrs atomic.Uint64
}

// New returns an Exporter of q to conn (normally a connected UDP socket, so
// each Write is one datagram). A nil logger discards logs.
func New(q Queue, conn net.Conn, logger *slog.Logger) *Exporter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Exporter{q: q, conn: conn, log: logger.With("queue", q.Name(), "dest", conn.RemoteAddr().String())}
}

// Run is New(q, conn, logger).Run(ctx), for callers that need no counters.
func Run(ctx context.Context, q Queue, conn net.Conn, logger *slog.Logger) error {
	return New(q, conn, logger).Run(ctx)
}

// Stats returns a snapshot of the counters; safe while Run is going.
func (e *Exporter) Stats() Stats {
	return Stats{
		Sent:       e.sent.Load(),
		Recovered:  e.recovered.Load(),
		SendErrors: e.sendErrs.Load(),
		Buried:     e.buried.Load(),
		AckErrors:  e.ackErrs.Load(),
		PopErrors:  e.popErrs.Load(),
	}
}

// Run first delivers the elements a previous run left in flight, then pops
// and delivers elements, oldest first, until ctx is done; it then returns
// nil. An element is acknowledged only after it was sent, and a failing send
// is retried with backoff, so an element in hand when ctx ends stays in the
// in-flight list for the next run. Run must not be called concurrently on
// one Exporter.
func (e *Exporter) Run(ctx context.Context) error {
	var pending []string
	err := retry(ctx, e.log, "read in-flight list", func() error {
		var err error
		pending, err = e.q.InFlight(ctx)
		return err
	})
	if err != nil {
		return nil // ctx done
	}
	if len(pending) > 0 {
		e.log.Info("export: resending elements left in flight by a previous run", "count", len(pending))
	}
	for _, elem := range pending {
		if e.deliver(ctx, elem) != nil {
			return nil
		}
		e.recovered.Add(1)
	}

	wait := backoffMin
	for {
		elem, err := e.q.Pop(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.popErrs.Add(1)
			e.log.Warn("export: waiting for queue elements failed; retrying", "err", err, "retry_in", wait)
			if ctxtime.Sleep(ctx, wait) != nil {
				return nil
			}
			wait = min(2*wait, backoffMax)
			continue
		}
		wait = backoffMin
		if e.deliver(ctx, elem) != nil {
			return nil
		}
	}
}

// deliver sends elem until it succeeds, then acknowledges it. It returns an
// error only when ctx ended first; elem then stays in flight.
func (e *Exporter) deliver(ctx context.Context, elem string) error {
	e.buf = append(append(e.buf[:0], elem...), '\n')
	wait := backoffMin
	for failures := 0; ; failures++ {
		_, err := e.conn.Write(e.buf)
		if err == nil {
			if failures > 0 {
				e.log.Info("export: destination accepts data again", "failed_attempts", failures)
			}
			break
		}
		if errors.Is(err, syscall.EMSGSIZE) {
			// Retrying cannot help and would block the queue forever;
			// dropping would lose it. Park it for an operator instead.
			e.log.Error("export: element too large for one datagram; moved to the dead-letter list",
				"bytes", len(e.buf), "err", err)
			if err := retry(ctx, e.log, "bury element", func() error { return e.q.Bury(ctx, elem) }); err != nil {
				return err
			}
			e.buried.Add(1)
			return nil
		}
		e.sendErrs.Add(1)
		if failures == 0 {
			// One line per outage, not one per attempt.
			e.log.Warn("export: send failed; retrying with backoff until it succeeds", "err", err)
		}
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, backoffMax)
	}

	// The element is out: acknowledge it even if ctx was cancelled just now,
	// otherwise the next run would send it a second time.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err := e.q.Ack(actx, elem); err != nil {
		e.ackErrs.Add(1)
		e.log.Warn("export: acknowledging a sent element failed; it will be sent again after a restart", "err", err)
	}
	e.sent.Add(1)
	return nil
}

// retry runs f until it succeeds or ctx is done, with backoff.
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	wait := backoffMin
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("export: "+what+" failed; retrying", "err", err, "retry_in", wait)
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, backoffMax)
	}
}

// DialUDP connects a UDP socket to host:port for Run.
func DialUDP(ctx context.Context, host string, port int) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		return nil, fmt.Errorf("export: dial udp %s:%d: %w", host, port, err)
	}
	return c, nil
}

// QueueUUIDFor derives a stable queue UUID (v4 layout) from a name such as
// an export destination, so a server restarted with the same --export flag
// keeps consuming the same queue instead of orphaning a full one.
func QueueUUIDFor(name string) string {
	h := sha256.Sum256([]byte("xtrail export queue\x00" + name))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
