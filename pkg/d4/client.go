package d4

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/xtrail/xtrail/internal/ctxtime"
)

// Client defaults and fixed timeouts.
const (
	DefaultFlushEvery = 10 * time.Millisecond
	DefaultBackoff    = 250 * time.Millisecond
	DefaultKeepAlive  = 10 * time.Second
	// DefaultMaxFrame keeps header+payload within one TLS record (16384
	// plaintext bytes), so every frame reaches the server in one piece: the
	// reference server stalls on a trailing fragment shorter than a header
	// (spec §3.1).
	DefaultMaxFrame = 16384 - HeaderSize

	// A sensor retries at least this often, so it finds a restarted
	// server again within 30 s.
	maxBackoff    = 10 * time.Second
	dialTimeout   = 10 * time.Second // TCP connect + TLS handshake, or the QUIC handshake
	shutdownGrace = 2 * time.Second  // on shutdown, how long frames in flight may wait for their ack
	// A connection that lived this long, or delivered lines, was healthy:
	// the next failure starts again from the initial backoff.
	healthyAfter = 30 * time.Second
	// maxInflight bounds the bytes of frames written but not yet
	// delivered: what a lost connection makes the client send again.
	maxInflight = 8 << 20
	// DefaultResendWithin is how long the servers recognise a resent
	// frame's content by default: their content claims live the time
	// window (300 s) plus 5 min.
	DefaultResendWithin = 10 * time.Minute
)

// ClientConfig configures a Client. Zero values take the defaults above.
type ClientConfig struct {
	// Servers are host:port entries: the client uses the first, and
	// fails over to the next when a connection cannot be made.
	Servers    []string
	Transport  string        // TransportTLS (default) or TransportQUIC
	UUID       UUID          // sensor uuid; must be version 4 (the server drops others)
	Key        []byte        // HMAC key, verbatim
	MetaType   string        // meta type sent as {"type":MetaType} on every (re)connect; default "maltrail"
	TLS        *tls.Config   // required; an empty ServerName means the host of each server entry
	Spool      SpoolConfig   // required: Spool.Dir
	MaxFrame   int           // max payload of a 254 frame, whole lines only (≤ MaxPayload)
	FlushEvery time.Duration // max time a line waits for a partly filled frame
	Backoff    time.Duration // initial reconnect delay; doubles up to 10 s, with jitter
	// KeepAlive is the longest a connection stays silent: an idle client
	// sends an empty type-254 frame (no line; d4-core ignores it), and
	// QUIC keep-alives run at this period. A server silent for three
	// periods is given up.
	KeepAlive time.Duration
	// ResendWithin is how long after a frame's first send the servers
	// still recognise its content when it is resent (their content claim
	// lives the time window, -time-window, plus 5 min). A frame resent
	// later may be stored twice: its lines are counted (ResentLate).
	ResendWithin time.Duration
	Logger       *slog.Logger
	Now          func() time.Time // frame timestamps; time.Now by default (tests override)
}

// ClientStats is a snapshot of a Client's counters, cumulative since
// NewClient except Pending.
type ClientStats struct {
	Spooled       uint64 // lines Send handed to the spool
	Sent          uint64 // lines in 254 frames written; a line sent again after a lost connection counts again
	Resent        uint64 // of Sent, lines sent again after a lost connection
	Restamped     uint64 // of Resent, lines whose frame got a fresh timestamp and HMAC: every resend
	ResentLate    uint64 // of Resent, lines resent more than ResendWithin after their frame's first send: they may be stored twice
	Frames        uint64 // 254 frames with lines written (heartbeats and meta frames excluded)
	Acked         uint64 // lines delivered and removed from the spool: acknowledged (QUIC) or received by the server's TCP (TLS)
	Dropped       uint64 // lines Send refused: longer than MaxPayload or the spool, or the disk failed
	DroppedOldest uint64 // lines deleted unacknowledged from a full spool, the oldest first
	Pending       uint64 // lines in the spool not yet acknowledged (including those of earlier runs)
	Recovered     uint64 // lines found in the spool at start, left by an earlier run
	Reconnects    uint64 // connections established after the first one
	Failovers     uint64 // moves to the next server entry after a failure
	DialErrors    uint64 // failed connection attempts
	WriteErrors   uint64 // failed frame writes; each one ends a connection
	Rejected      uint64 // connections the server ended by rejecting a frame (QUIC)
}

// Client ships newline-terminated lines (Maltrail datagrams) to a D4
// server as one type-2 meta header followed by type-254 frames, over TLS or
// QUIC. Send hands each line to an on-disk spool; Run reads the spool, oldest
// first, and removes lines only once they are delivered:
//
//   - over QUIC, once the server acknowledged the frame that carried them,
//     which it does after storing its lines;
//   - over TLS, which has no acknowledgement, once the server's TCP
//     acknowledged the frame's last byte. A server that crashes loses
//     what its kernel received but the process had not stored yet: at most
//     its socket receive buffer and the frame it was storing.
//
// Frames written on a connection that dies before delivery are sent again on
// the next one (after the meta header) with the same payload and a fresh
// timestamp and HMAC: servers refuse a byte-identical copy of a frame
// another session sent (a replay), and recognise the payload: a server that
// stored the frame before it died, paused or lost the connection
// acknowledges the resend (or, over TLS, skips it) without storing it
// again. A line comes twice only when its frame was stored by a server that
// died between storing and marking it stored, was resent later than
// ResendWithin (counted), or the sensor itself restarted (kept frames live
// in memory, the spool holds lines).
type Client struct {
	cfg         ClientConfig
	meta        []byte // type-2 payload
	spool       *Spool
	log         *slog.Logger
	now         func() time.Time
	dial        func(ctx context.Context, addr string) (link, error) // tests replace it
	warnBuffers func(error)

	running  atomic.Bool
	dropping atomic.Bool // true while Send refuses lines, to log only the first
	// connected: a session is up now (Connected, Drain); roundFailed:
	// every server failed since the last connection (Drain)
	connected, roundFailed atomic.Bool

	sent, frames, acked, tooLong                atomic.Uint64
	reconnects, failovers, writeErrors, dialErr atomic.Uint64
	rejected, resent, restamped, late           atomic.Uint64

	// State below is touched only by the goroutine inside Run.
	signer *Signer
	buf    []byte // meta header or heartbeat being written
	batch  []byte // payload read from the spool
	// kept are the data frames written and not yet delivered, oldest
	// first, across connections; arena holds their bytes.
	kept  []*keptFrame
	arena frameArena
}

// NewClient validates cfg and opens the spool; nothing happens on the
// network until Run. Close releases the spool.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case len(cfg.Servers) == 0:
		return nil, errors.New("d4 client: no server address")
	case !cfg.UUID.IsV4():
		return nil, fmt.Errorf("d4 client: uuid %s is not version 4; the server would drop every frame", cfg.UUID)
	case len(cfg.Key) == 0:
		return nil, errors.New("d4 client: empty HMAC key")
	case cfg.TLS == nil:
		return nil, errors.New("d4 client: no TLS config (refusing to send in clear text)")
	case cfg.MaxFrame < 0, cfg.FlushEvery < 0, cfg.Backoff < 0, cfg.KeepAlive < 0, cfg.ResendWithin < 0:
		return nil, errors.New("d4 client: negative size or duration in config")
	case cfg.MaxFrame > MaxPayload:
		return nil, fmt.Errorf("d4 client: MaxFrame %d above the server limit %d", cfg.MaxFrame, MaxPayload)
	case cfg.KeepAlive > 0 && cfg.KeepAlive < time.Second:
		return nil, errors.New("d4 client: keep-alive period under a second")
	}
	for _, a := range cfg.Servers {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("d4 client: server %q: %w", a, err)
		}
	}
	switch cfg.Transport {
	case "":
		cfg.Transport = TransportTLS
	case TransportTLS, TransportQUIC:
	default:
		return nil, fmt.Errorf("d4 client: transport %q: want %s or %s", cfg.Transport, TransportTLS, TransportQUIC)
	}
	if cfg.MetaType == "" {
		cfg.MetaType = "maltrail"
	}
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.FlushEvery == 0 {
		cfg.FlushEvery = DefaultFlushEvery
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ResendWithin == 0 {
		cfg.ResendWithin = DefaultResendWithin
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Key = append([]byte(nil), cfg.Key...)
	meta, err := json.Marshal(struct {
		Type string `json:"type"`
	}{cfg.MetaType})
	if err != nil {
		return nil, fmt.Errorf("d4 client: encoding meta header: %w", err)
	}
	if cfg.Spool.Logger == nil {
		cfg.Spool.Logger = cfg.Logger
	}
	spool, err := OpenSpool(cfg.Spool)
	if err != nil {
		return nil, err
	}

	// Go's crypto/tls starts connections with small records (dynamic record
	// sizing); disabling it keeps a frame of up to 16 KiB in one record.
	// Clone so the caller's config is never modified.
	tc := cfg.TLS.Clone()
	tc.DynamicRecordSizingDisabled = true
	if cfg.Transport == TransportQUIC {
		tc.NextProtos = []string{ALPN}
	}
	log := cfg.Logger.With("uuid", cfg.UUID.String(), "transport", cfg.Transport)
	c := &Client{
		cfg:         cfg,
		meta:        meta,
		spool:       spool,
		log:         log,
		now:         cfg.Now,
		warnBuffers: BufferWarner(log),
		signer:      NewSigner(cfg.Key),
		buf:         make([]byte, 0, HeaderSize+cfg.MaxFrame),
		batch:       make([]byte, 0, cfg.MaxFrame),
	}
	c.dial = func(ctx context.Context, addr string) (link, error) {
		conf := tc
		if conf.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			conf = tc.Clone()
			conf.ServerName = host
		}
		if cfg.Transport == TransportQUIC {
			return dialQUIC(ctx, addr, conf, cfg.KeepAlive, c.warnBuffers)
		}
		return dialTLS(ctx, addr, conf, cfg.KeepAlive)
	}
	return c, nil
}

// Send hands a copy of line to the spool without waiting for the network.
// line should be one whole Maltrail datagram ending in '\n'; a missing final
// '\n' is added so lines can never run together on the server. It returns
// false, and counts the line as dropped, when the line exceeds MaxPayload or
// the spool refuses it (disk error). An empty line is ignored and returns
// true. Send is safe for concurrent use.
func (c *Client) Send(line []byte) bool {
	n := len(line)
	if n == 0 {
		return true
	}
	if line[n-1] != '\n' {
		n++
	}
	if n > MaxPayload {
		c.tooLong.Add(1)
		c.log.Warn("d4: line longer than the server's frame limit dropped", "bytes", n, "max", MaxPayload)
		return false
	}
	if err := c.spool.Append(line); err != nil {
		if c.dropping.CompareAndSwap(false, true) {
			c.log.Warn("d4: the spool refuses lines; dropping them", "spool", c.spool.Dir(), "err", err)
		}
		return false
	}
	if c.dropping.Load() && c.dropping.CompareAndSwap(true, false) {
		c.log.Info("d4: the spool accepts lines again", "refused_total", c.spool.Stats().Refused)
	}
	return true
}

// Stats returns a snapshot of the counters; safe for concurrent use.
func (c *Client) Stats() ClientStats {
	ss := c.spool.Stats()
	return ClientStats{
		Spooled:       ss.Spooled,
		Sent:          c.sent.Load(),
		Resent:        c.resent.Load(),
		Restamped:     c.restamped.Load(),
		ResentLate:    c.late.Load(),
		Frames:        c.frames.Load(),
		Acked:         c.acked.Load(),
		Dropped:       c.tooLong.Load() + ss.Refused,
		DroppedOldest: ss.Dropped,
		Pending:       ss.Pending,
		Recovered:     ss.Recovered,
		Reconnects:    c.reconnects.Load(),
		Failovers:     c.failovers.Load(),
		DialErrors:    c.dialErr.Load(),
		WriteErrors:   c.writeErrors.Load(),
		Rejected:      c.rejected.Load(),
	}
}

// Connected reports whether a session with a server is up now; safe for
// concurrent use.
func (c *Client) Connected() bool { return c.connected.Load() }

// SpoolDir is the directory of the client's spool.
func (c *Client) SpoolDir() string { return c.spool.Dir() }

// Close syncs and releases the spool. Call it after Run has returned; lines
// not yet delivered stay in the spool for the next run.
func (c *Client) Close() error { return c.spool.Close() }

// Run connects, sends the meta header, then streams spooled lines, and
// reconnects after any failure (next server entry on a failed connection
// attempt, with backoff once all failed), until ctx is done. On
// cancellation it waits briefly for the acknowledgement of frames in flight,
// then closes the connection and returns nil; undelivered lines stay in the
// spool. Only one Run may be active at a time.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("d4 client: Run is already active")
	}
	defer c.running.Store(false)

	servers := c.cfg.Servers
	backoff := c.cfg.Backoff
	idx, failed := 0, 0
	connected := false
	for ctx.Err() == nil {
		addr := servers[idx]
		l, err := c.dial(ctx, addr)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.dialErr.Add(1)
			c.log.Warn("d4: connect failed", "server", addr, "err", err)
			if failed++; failed < len(servers) {
				idx = (idx + 1) % len(servers)
				c.failovers.Add(1)
				c.log.Warn("d4: failing over to the next server", "server", servers[idx])
				continue
			}
			// Every entry failed: wait, then start again from the first.
			c.roundFailed.Store(true)
			idx, failed = 0, 0
			c.log.Warn("d4: no server reachable; lines wait in the spool", "pending", c.spool.Stats().Pending, "retry_in", backoff)
			if ctxtime.Sleep(ctx, jitter(backoff)) != nil {
				break
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		failed = 0
		if connected {
			c.reconnects.Add(1)
		}
		connected = true
		c.connected.Store(true)
		c.roundFailed.Store(false)
		c.log.Info("d4: connected", "server", addr, "remote", l.remote())
		start := time.Now()
		delivered, err := c.session(ctx, l)
		l.close()
		c.connected.Store(false)
		if ctx.Err() != nil {
			if err != nil {
				c.log.Debug("d4: connection ended on shutdown", "err", err)
			}
			break
		}
		if delivered || time.Since(start) >= healthyAfter {
			backoff = c.cfg.Backoff
		}
		var rej *RejectedError
		if errors.As(err, &rej) {
			c.rejected.Add(1)
			c.log.Error("d4: the server rejected the sensor's frames; they stay in the spool", "server", addr, "reason", rej.Reason, "retry_in", backoff)
			if len(servers) > 1 { // another server may take them
				idx = (idx + 1) % len(servers)
				c.failovers.Add(1)
			}
		} else {
			c.log.Warn("d4: connection lost", "server", addr, "err", err, "pending", c.spool.Stats().Pending, "retry_in", backoff)
		}
		if ctxtime.Sleep(ctx, jitter(backoff)) != nil {
			break
		}
		backoff = min(2*backoff, maxBackoff)
	}
	if p := c.spool.Stats().Pending; p > 0 {
		c.log.Warn("d4: stopped; lines wait in the spool for the next run", "lines", p, "spool", c.spool.Dir())
	} else {
		c.log.Info("d4: stopped")
	}
	return nil
}

// Drain waits until every spooled line is delivered, ctx is done, or no
// server could be reached since the last connection, and returns the number
// of lines still waiting in the spool. A replay calls it before it stops Run.
func (c *Client) Drain(ctx context.Context) uint64 {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		p := c.spool.Stats().Pending
		if p == 0 || (!c.connected.Load() && c.roundFailed.Load()) {
			return p
		}
		select {
		case <-ctx.Done():
			return p
		case <-t.C:
		}
	}
}

// jitter returns a delay in [d/2, d], so that sensors cut off together do
// not all reconnect in the same instant.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// flight is a frame written on the link and not yet delivered.
type flight struct {
	frame uint64     // its number on the link, from 1
	data  *keptFrame // nil for the meta header and heartbeats
	bytes int
}

// session runs one connection until it fails or ctx is done. It reports
// whether any line was delivered on it. After the meta header it sends the
// frames earlier connections left undelivered, then new lines from the
// spool; frames not delivered stay kept for the next session.
func (c *Client) session(ctx context.Context, l link) (delivered bool, err error) {
	stop := context.AfterFunc(ctx, l.abort)
	defer stop()
	if len(c.kept) == 0 {
		c.spool.Rewind() // nothing in flight: read from the oldest unacknowledged line
	}
	var (
		inflight      []flight
		inflightBytes int
		frames        uint64
		lastWrite     time.Time
		flushAt       time.Time
	)
	send := func(frame []byte, data *keptFrame) error {
		if err := l.write(frame); err != nil {
			c.writeErrors.Add(1)
			if _, ferr := l.done(); ferr != nil {
				return ferr // why the link failed says more than the write
			}
			return fmt.Errorf("d4: writing a frame of %d bytes: %w", len(frame), err)
		}
		frames++
		lastWrite = time.Now()
		inflight = append(inflight, flight{frame: frames, data: data, bytes: len(frame)})
		inflightBytes += len(frame)
		if data != nil {
			c.frames.Add(1)
			c.sent.Add(uint64(data.lines))
		}
		return nil
	}
	// control sends a meta header or a heartbeat: never kept, rebuilt on
	// each connection.
	control := func(typ uint8, payload []byte) error {
		c.buf = c.signer.AppendFrame(c.buf[:0], typ, c.cfg.UUID, uint64(c.now().Unix()), payload)
		return send(c.buf, nil)
	}
	collect := func() error {
		n, ferr := l.done()
		for len(inflight) > 0 && inflight[0].frame <= n {
			f := inflight[0]
			inflight = inflight[1:]
			inflightBytes -= f.bytes
			if f.data != nil {
				c.delivered(f.data)
				delivered = true
			}
		}
		return ferr
	}

	if err := control(TypeMeta, c.meta); err != nil {
		return false, err
	}
	late := 0
	for _, k := range c.kept {
		// Always restamped: the frame as it was may have reached a server,
		// which would refuse the same bytes from this new session as a
		// replay. The timestamp moves forward even within one second, so
		// the bytes differ; servers know the payload (their content claim).
		now := uint64(c.now().Unix())
		c.signer.Restamp(k.buf, max(now, k.ts+1))
		k.ts = max(now, k.ts+1)
		c.resent.Add(uint64(k.lines))
		c.restamped.Add(uint64(k.lines))
		if now > k.first+uint64(c.cfg.ResendWithin/time.Second) {
			late += k.lines
			c.late.Add(uint64(k.lines))
		}
		if err := send(k.buf, k); err != nil {
			return delivered, err
		}
	}
	if late > 0 {
		c.log.Warn("d4: resent lines later than ResendWithin after their first send: a server may store them twice",
			"lines", late, "resend_within", c.cfg.ResendWithin)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if err := collect(); err != nil {
			return delivered, err
		}
		if ctx.Err() != nil {
			c.finish(l, &inflight, collect)
			return delivered, nil
		}
		now := time.Now()
		if inflightBytes < maxInflight {
			if unread := c.spool.Unread(); unread == 0 {
				flushAt = time.Time{}
			} else {
				if flushAt.IsZero() {
					flushAt = now.Add(c.cfg.FlushEvery)
				}
				if unread >= int64(c.cfg.MaxFrame) || !now.Before(flushAt) {
					b, err := c.spool.Next(c.batch, c.cfg.MaxFrame)
					if err != nil {
						return delivered, err
					}
					c.batch = b.Payload[:0]
					if b.Lines > 0 {
						k := c.keep(b)
						if err := send(k.buf, k); err != nil {
							return delivered, err
						}
					}
					continue
				}
			}
		}
		if now.Sub(lastWrite) >= c.cfg.KeepAlive {
			// An empty 254 frame: the server resets its idle timer and
			// stores nothing, and a dead server shows up as a failed
			// delivery rather than as silence.
			if err := control(TypeExtended, nil); err != nil {
				return delivered, err
			}
			continue
		}
		wait := lastWrite.Add(c.cfg.KeepAlive).Sub(now)
		if !flushAt.IsZero() && inflightBytes < maxInflight {
			wait = min(wait, flushAt.Sub(now))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-l.wake():
		case <-c.spool.Notify():
		case <-timer.C:
		}
		timer.Stop()
	}
}

// keep builds the data frame of a batch read from the spool and keeps it
// until it is delivered. A frame whose write fails stays kept too: it is
// sent, as it was, on the next connection.
func (c *Client) keep(b Batch) *keptFrame {
	buf, ch := c.arena.alloc(HeaderSize + len(b.Payload))
	ts := uint64(c.now().Unix())
	k := &keptFrame{buf: c.signer.AppendFrame(buf, TypeExtended, c.cfg.UUID, ts, b.Payload), ts: ts, first: ts, end: b.End, lines: b.Lines, chunk: ch}
	c.kept = append(c.kept, k)
	return k
}

// delivered removes the oldest kept frame, which the server now has, and
// its lines from the spool.
func (c *Client) delivered(k *keptFrame) {
	if len(c.kept) > 0 && c.kept[0] == k {
		c.kept[0] = nil
		c.kept = c.kept[1:]
	} else if i := slices.Index(c.kept, k); i >= 0 { // links deliver in order: not reached
		c.kept = slices.Delete(c.kept, i, i+1)
	}
	c.spool.Ack(k.end, k.lines)
	c.acked.Add(uint64(k.lines))
	c.arena.release(k.chunk)
}

// finish waits up to shutdownGrace for the delivery of lines in flight, so
// a clean stop leaves fewer lines to send twice.
func (c *Client) finish(l link, inflight *[]flight, collect func() error) {
	waiting := func() bool {
		for _, f := range *inflight {
			if f.data != nil {
				return true
			}
		}
		return false
	}
	deadline := time.NewTimer(shutdownGrace)
	defer deadline.Stop()
	for waiting() {
		select {
		case <-deadline.C:
			return
		case <-l.wake():
		}
		if collect() != nil {
			return
		}
	}
}
