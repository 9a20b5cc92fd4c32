// Package export consumes D4 analyzer queues and forwards their lines, as
// d4-core's analyzer-d4-export scripts do (spec d4.md §5), but at least
// once: lines move in batches into the exporter's own in-flight list and
// leave it only once delivered, and a failed or refused send is retried with
// backoff instead of dropping the line.
//
// UDP to a Maltrail collector: each line (the server removed its '\n') is
// sent back with '\n' as exactly one datagram, which is what Maltrail's
// server reads (maltrail.md §3.2). TCP and syslog targets exist too.
package export

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/xtrail/xtrail/internal/ctxtime"
)

// Retry pacing for a failing target or store.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	ackTimeout = 5 * time.Second
)

// DefaultBatch is the most lines moved and sent per round trip.
const DefaultBatch = 1000

// MaltrailRate is a pace for a UDP target that is Maltrail's own Python
// collector, which keeps up with about 20,000 datagrams a second (xtrail's
// collector takes several times that). The exporter does not pace by
// default: see Config.Rate.
const MaltrailRate = 20000

// minAdaptiveRate is the floor of the pace an overflow sets.
const minAdaptiveRate = 1000

// registerEvery is how often Run checks that its queue is still registered.
const registerEvery = 5 * time.Second

// Stats are an Exporter's counters since it was created.
type Stats struct {
	Sent      uint64 // lines delivered (and so acknowledged)
	Recovered uint64 // of Sent, lines a previous run left in flight: each may have reached the target twice
	Resent    uint64 // lines written again after a refusal or failure
	Refusals  uint64 // failed or refused sends (each backed off and retried)
	Buried    uint64 // lines that can never be sent, moved to the dead-letter list
	Reclaimed uint64 // times this exporter found its in-flight lines taken over by others (it stalled)
	TakenOver uint64 // lines this exporter took over from consumers whose claim expired (each may arrive twice)
	// LostBacklog counts the lines the store lost while they waited in the
	// queue (Redis restarted empty), as far as the last backlog reading
	// before the loss tells: a lower bound.
	LostBacklog  uint64
	StoreLosses  uint64 // times the store was found emptied
	Reregistered uint64 // times the queue's registration was found missing and written again
	QueueErrors  uint64 // failed store calls (each retried)
	// Overflows counts sends during which a receiver on this host dropped
	// datagrams for lack of buffer space (its kernel drop counter rose):
	// each was sent again and the pace lowered.
	Overflows uint64
	// Rate is the current pace in lines/s: the configured one, or the one
	// overflows set; 0 is unpaced.
	Rate    float64
	Backlog int64 // lines waiting in the queue at the last reading
	// Lag is the age of the last line sent, from its leading epoch second
	// (Maltrail's "<sec> <line>" datagram form); zero when unknown.
	Lag time.Duration
}

// Config configures an Exporter.
type Config struct {
	Queue  Queue  // required
	Target Sender // required
	// Batch is the most lines per round trip; 0 means DefaultBatch.
	Batch int
	// Rate caps the lines sent per second, sent in slices of 10 ms worth;
	// 0 means none. UDP drops what overflows a receiver's socket buffer
	// without telling the sender. Bursts are not what overflows a
	// collector's 8 MB buffer (a batch of 1,000 lines is about 300 KB):
	// a sustained rate above what it writes is. That rate differs per
	// collector, so there is no default: a receiver on this host shows its
	// overflows in the kernel's drop counter, and the exporter then sends
	// the lines again and paces itself (half the rate that overflowed,
	// then 5% more each second without an overflow); a remote one cannot
	// be watched, so a slow one (MaltrailRate) needs Rate.
	Rate float64
	// Register, if set, writes the queue's registration when it is found
	// missing (checked at start and every few seconds); it reports whether
	// it had to.
	Register func(ctx context.Context) (bool, error)
	Logger   *slog.Logger // nil discards logs
}

// Exporter sends the lines of one Queue to one target.
type Exporter struct {
	cfg     Config
	log     *slog.Logger
	limiter *rate.Limiter
	pace    int // lines per Send under a rate limit

	sent, recovered, resent, refusals, buried, reclaimed, lost, losses, rereg, qerrs atomic.Uint64
	overflows, takenOver                                                             atomic.Uint64
	backlog, lag                                                                     atomic.Int64
	rate                                                                             atomic.Uint64 // math.Float64bits of the pace
	nextRegister                                                                     time.Time
	adapted                                                                          time.Time // last pace change by an overflow; zero: none
	overflowLog                                                                      time.Time
}

// New returns an Exporter.
func New(cfg Config) *Exporter {
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{cfg: cfg, log: log.With("queue", cfg.Queue.Name(), "target", cfg.Target.Target())}
	if cfg.Rate > 0 {
		e.setRate(cfg.Rate)
	}
	return e
}

// setRate paces the sends at r lines/s, in slices of 10 ms worth.
func (e *Exporter) setRate(r float64) {
	e.pace = max(1, int(r/100))
	if e.limiter == nil {
		e.limiter = rate.NewLimiter(rate.Limit(r), e.pace)
	} else {
		e.limiter.SetLimit(rate.Limit(r))
		e.limiter.SetBurst(e.pace)
	}
	e.rate.Store(math.Float64bits(r))
}

// slowDown halves the pace after an overflow, from the rate the send that
// overflowed went at.
func (e *Exporter) slowDown(measured float64) {
	if e.limiter != nil {
		measured = min(measured, float64(e.limiter.Limit()))
	}
	e.setRate(max(minAdaptiveRate, measured/2))
	e.adapted = time.Now()
}

// speedUp raises a pace an overflow set by 5% once a second, up to the
// configured rate.
func (e *Exporter) speedUp() {
	if e.adapted.IsZero() || time.Since(e.adapted) < time.Second {
		return
	}
	r := float64(e.limiter.Limit()) * 1.05
	if e.cfg.Rate > 0 && r >= e.cfg.Rate {
		r = e.cfg.Rate
		e.adapted = time.Time{}
	} else {
		e.adapted = time.Now()
	}
	e.setRate(r)
}

// Run is New(Config{Queue: q, Target: t, Logger: log}).Run(ctx).
func Run(ctx context.Context, q Queue, t Sender, log *slog.Logger) error {
	return New(Config{Queue: q, Target: t, Logger: log}).Run(ctx)
}

// Stats returns a snapshot of the counters; safe while Run is going.
func (e *Exporter) Stats() Stats {
	return Stats{
		Sent: e.sent.Load(), Recovered: e.recovered.Load(), Resent: e.resent.Load(),
		Refusals: e.refusals.Load(), Buried: e.buried.Load(), Reclaimed: e.reclaimed.Load(),
		LostBacklog: e.lost.Load(), StoreLosses: e.losses.Load(), Reregistered: e.rereg.Load(),
		QueueErrors: e.qerrs.Load(), Backlog: e.backlog.Load(), Lag: time.Duration(e.lag.Load()),
		Overflows: e.overflows.Load(), Rate: math.Float64frombits(e.rate.Load()), TakenOver: e.takenOver.Load(),
	}
}

// Run claims the queue's in-flight list, sends what a previous run left
// there, then moves and sends batches, oldest first, until ctx is done; it
// then returns nil, leaving undelivered lines in flight for the next run.
// Run must not be called concurrently on one Exporter.
func (e *Exporter) Run(ctx context.Context) error {
	q := e.cfg.Queue
	var batch []string
	if err := e.retry(ctx, "claim the in-flight list", func() error {
		var err error
		batch, err = q.Open(ctx)
		return err
	}); err != nil {
		return nil // ctx done
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		defer cancel()
		if err := q.Close(cctx); err != nil {
			e.log.Warn("export: releasing the queue failed; other exporters take over after the claim timeout", "err", err)
		}
	}()
	if len(batch) > 0 {
		e.log.Info("export: resending lines left in flight by a previous run", "lines", len(batch))
		e.recovered.Add(uint64(len(batch)))
	}
	e.checkRegistration(ctx)
	for {
		done, dead, err := e.deliver(ctx, batch)
		if err != nil {
			// Shutdown: acknowledge what was delivered, keep the rest.
			e.ack(ctx, done, dead)
			return nil
		}
		var next Batch
		if err := e.retry(ctx, "move the next batch", func() error {
			var err error
			next, err = q.Next(ctx, done, dead, e.cfg.Batch)
			return err
		}); err != nil || ctx.Err() != nil {
			if err != nil {
				e.ack(ctx, done, dead)
			}
			return nil
		}
		e.observe(next)
		batch = next.Lines
		e.checkRegistration(ctx)
	}
}

// ack reports done lines on shutdown, past ctx's end.
func (e *Exporter) ack(ctx context.Context, done int, dead []string) {
	if done == 0 {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if _, err := e.cfg.Queue.Next(actx, done, dead, 0); err != nil {
		e.log.Warn("export: acknowledging delivered lines failed; they will be sent again", "lines", done, "err", err)
	}
}

// observe records what a batch says about the queue.
func (e *Exporter) observe(b Batch) {
	if b.Lost {
		// The backlog read before the loss is what the store lost.
		n := max(e.backlog.Load(), 0)
		e.losses.Add(1)
		e.lost.Add(uint64(n))
		e.log.Error("export: the store lost its data (Redis restarted empty?): queued lines are gone",
			"lost_lines_at_least", n)
		e.nextRegister = time.Time{} // re-register at once
	}
	e.takenOver.Add(uint64(max(b.TakenOver, 0)))
	if b.Reclaimed {
		e.reclaimed.Add(1)
		e.log.Warn("export: other exporters took over this exporter's in-flight lines while it stalled; they may be delivered twice")
	}
	e.backlog.Store(b.Backlog)
}

// checkRegistration writes the queue's registration when it is missing,
// at most every registerEvery.
func (e *Exporter) checkRegistration(ctx context.Context) {
	if e.cfg.Register == nil || time.Now().Before(e.nextRegister) {
		return
	}
	e.nextRegister = time.Now().Add(registerEvery)
	restored, err := e.cfg.Register(ctx)
	switch {
	case err != nil:
		e.qerrs.Add(1)
		e.log.Warn("export: checking the queue's registration failed", "err", err)
	case restored:
		e.rereg.Add(1)
		e.log.Warn("export: the queue's registration was missing; written again so the server fills it")
	}
}

// deliver sends batch until every line is delivered or buried. It returns
// the number of lines done (all of them, unless ctx ended first) and the
// buried ones.
func (e *Exporter) deliver(ctx context.Context, batch []string) (int, []string, error) {
	var dead []string
	wait := backoffMin
	failures := 0
	for done := 0; done < len(batch); {
		chunk := batch[done:]
		if e.limiter != nil {
			chunk = chunk[:min(len(chunk), e.pace)]
			if err := e.limiter.WaitN(ctx, len(chunk)); err != nil {
				return done, dead, err
			}
		}
		start := time.Now()
		n, written, err := e.cfg.Target.Send(chunk)
		e.sent.Add(uint64(n))
		done += n
		if n > 0 {
			e.noteLag(batch[done-1])
		}
		if err == nil {
			e.speedUp()
			continue
		}
		if errors.Is(err, ErrOverflow) {
			e.overflows.Add(1)
			e.resent.Add(uint64(max(written-n, 0)))
			e.slowDown(float64(written) / max(time.Since(start).Seconds(), 1e-6))
			if time.Since(e.overflowLog) >= 10*time.Second {
				e.overflowLog = time.Now()
				e.log.Warn("export: the receiver dropped datagrams (its socket buffer overflowed); sending them again, slower",
					"lines", written-n, "rate", int(float64(e.limiter.Limit())), "overflows", e.overflows.Load())
			}
			continue
		}
		var tl *TooLargeError
		if errors.As(err, &tl) {
			e.log.Error("export: line too large for the target; moved to the dead-letter list", "bytes", tl.Bytes, "err", err)
			dead = append(dead, batch[done])
			e.buried.Add(1)
			done++
			continue
		}
		e.refusals.Add(1)
		e.resent.Add(uint64(max(written-n, 0)))
		if failures == 0 {
			// One line per outage, not one per attempt.
			e.log.Warn("export: target refused or failed; retrying with backoff from the first undelivered line",
				"err", err, "delivered", n, "written", written)
		}
		failures++
		if err := e.pause(ctx, wait); err != nil {
			return done, dead, err
		}
		wait = min(2*wait, backoffMax)
	}
	if failures > 0 {
		e.log.Info("export: target accepts lines again", "failed_attempts", failures)
	}
	return len(batch), dead, nil
}

// pause waits d while the target refuses, reading the backlog meanwhile so
// lag stays visible and a store that lost its data is noticed.
func (e *Exporter) pause(ctx context.Context, d time.Duration) error {
	if err := ctxtime.Sleep(ctx, d); err != nil {
		return err
	}
	b, err := e.cfg.Queue.Backlog(ctx)
	if err != nil {
		e.qerrs.Add(1)
		return nil
	}
	e.observe(b)
	e.checkRegistration(ctx)
	return nil
}

// noteLag reads the leading epoch second of a Maltrail datagram line.
func (e *Exporter) noteLag(line string) {
	var sec int64
	i := 0
	for ; i < len(line) && i < 19 && line[i] >= '0' && line[i] <= '9'; i++ {
		sec = sec*10 + int64(line[i]-'0')
	}
	if i == 0 || i >= len(line) || line[i] != ' ' {
		return
	}
	e.lag.Store(int64(time.Since(time.Unix(sec, 0))))
}

// retry runs f until it succeeds or ctx is done, with backoff.
func (e *Exporter) retry(ctx context.Context, what string, f func() error) error {
	wait := backoffMin
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.qerrs.Add(1)
		e.log.Warn("export: "+what+" failed; retrying", "err", err, "retry_in", wait)
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, backoffMax)
	}
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
