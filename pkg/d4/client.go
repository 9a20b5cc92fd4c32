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
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtrail/xtrail/internal/ctxtime"
)

// Client defaults and fixed timeouts.
const (
	DefaultQueueSize  = 65536
	DefaultFlushEvery = 100 * time.Millisecond
	DefaultBackoff    = 250 * time.Millisecond
	// DefaultMaxFrame keeps header+payload within one TLS record (16384
	// plaintext bytes), so every frame reaches the server in one piece: the
	// reference server stalls on a trailing fragment shorter than a header
	// (spec §3.1).
	DefaultMaxFrame = 16384 - HeaderSize

	maxBackoff    = 30 * time.Second
	dialTimeout   = 10 * time.Second // TCP connect + TLS handshake
	writeTimeout  = 30 * time.Second // a server that stops reading is a lost connection
	shutdownGrace = 5 * time.Second  // best-effort flush budget once ctx is done
	// A connection that lived this long was healthy: the next failure
	// starts again from the initial backoff instead of the last one.
	healthyAfter = maxBackoff
)

// ClientConfig configures a Client. Zero values take the defaults above.
type ClientConfig struct {
	Addr       string        // host:port of the D4 server
	UUID       UUID          // sensor uuid; must be version 4 (the server drops others)
	Key        []byte        // HMAC key, verbatim
	MetaType   string        // meta type sent as {"type":MetaType} on every (re)connect; default "maltrail"
	TLS        *tls.Config   // required; the server is verified unless the caller opts out in it
	QueueSize  int           // bounded queue of lines; when full, new lines are dropped and counted
	MaxFrame   int           // max payload of a 254 frame, whole lines only (≤ MaxPayload)
	FlushEvery time.Duration // max time a line waits in a partly filled frame
	Backoff    time.Duration // initial reconnect delay; doubles up to 30 s, with jitter
	Logger     *slog.Logger
	Now        func() time.Time // frame timestamps; time.Now by default (tests override)
}

// ClientStats is a snapshot of a Client's counters. All but Pending are
// cumulative since NewClient.
type ClientStats struct {
	Queued      uint64 // lines accepted by Send
	Sent        uint64 // lines in 254 frames whose Write returned success
	Frames      uint64 // 254 frames written successfully (meta frames excluded)
	Dropped     uint64 // lines refused by Send: queue full or longer than MaxPayload
	Reconnects  uint64 // connections established after the first one
	WriteErrors uint64 // failed writes; each one ends a connection
	DialErrors  uint64 // failed connection attempts (TCP or TLS)
	Pending     uint64 // lines accepted but not yet written (queue + current batch)
}

// Client ships newline-terminated lines (Maltrail datagrams) to a D4
// server as one type-2 meta header followed by type-254 frames, over TLS.
//
// Delivery is at-least-once only up to the socket: a batch whose Write
// fails is kept and resent after reconnecting, but TLS over TCP gives no
// application acknowledgement and the D4 server never replies, so a batch
// whose Write succeeded can still be lost if the server or the connection
// dies before the server stored it. Acknowledged delivery needs the QUIC
// transport, where the server returns acks.
type Client struct {
	cfg    ClientConfig
	meta   []byte // type-2 payload
	queue  chan []byte
	log    *slog.Logger
	now    func() time.Time
	dialFn func(ctx context.Context) (net.Conn, error) // tests replace it

	running  atomic.Bool
	dropping atomic.Bool // true while Send is dropping, to log only the first drop

	queued, sent, frames, dropped    atomic.Uint64
	reconnects, writeErrors, dialErr atomic.Uint64
	held                             atomic.Int64 // lines in batch + carry, owned by Run

	// State below is touched only by the goroutine inside Run.
	signer     *Signer
	buf        []byte // frame being written
	batch      []byte // payload of whole lines taken from the queue, not yet written
	batchLines int
	carry      []byte    // a line taken from the queue that did not fit in batch
	flushAt    time.Time // when the oldest line in batch must leave
}

// NewClient validates cfg and returns a Client; nothing happens on the
// network until Run.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case cfg.Addr == "":
		return nil, errors.New("d4 client: empty server address")
	case !cfg.UUID.IsV4():
		return nil, fmt.Errorf("d4 client: uuid %s is not version 4; the server would drop every frame", cfg.UUID)
	case len(cfg.Key) == 0:
		return nil, errors.New("d4 client: empty HMAC key")
	case cfg.TLS == nil:
		return nil, errors.New("d4 client: no TLS config (refusing to send in clear text)")
	case cfg.QueueSize < 0, cfg.MaxFrame < 0, cfg.FlushEvery < 0, cfg.Backoff < 0:
		return nil, errors.New("d4 client: negative size or duration in config")
	case cfg.MaxFrame > MaxPayload:
		return nil, fmt.Errorf("d4 client: MaxFrame %d above the server limit %d", cfg.MaxFrame, MaxPayload)
	}
	if cfg.MetaType == "" {
		cfg.MetaType = "maltrail"
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
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

	// Go's crypto/tls starts connections with small records (dynamic record
	// sizing); disabling it keeps a frame of up to 16 KiB in one record.
	// Clone so the caller's config is never modified.
	tc := cfg.TLS.Clone()
	tc.DynamicRecordSizingDisabled = true

	c := &Client{
		cfg:    cfg,
		meta:   meta,
		queue:  make(chan []byte, cfg.QueueSize),
		log:    cfg.Logger.With("d4_server", cfg.Addr, "uuid", cfg.UUID.String()),
		now:    cfg.Now,
		signer: NewSigner(cfg.Key),
		buf:    make([]byte, 0, HeaderSize+cfg.MaxFrame),
		batch:  make([]byte, 0, cfg.MaxFrame),
	}
	d := &tls.Dialer{
		NetDialer: &net.Dialer{
			Timeout: dialTimeout,
			// The server never writes, so keepalive is how a dead peer on an
			// idle connection is noticed at all.
			KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3},
		},
		Config: tc,
	}
	c.dialFn = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", cfg.Addr) }
	return c, nil
}

// Send queues a copy of line without blocking. line should be one whole
// Maltrail datagram ending in '\n'; a missing final '\n' is added so lines
// can never run together on the server. It returns false, and counts the
// line as dropped, when the queue is full or the line exceeds MaxPayload.
// An empty line is ignored (the server would drop it) and returns true.
// Send is safe for concurrent use.
func (c *Client) Send(line []byte) bool {
	n := len(line)
	if n == 0 {
		return true
	}
	size := n
	if line[n-1] != '\n' {
		size++
	}
	if size > MaxPayload {
		c.dropped.Add(1)
		c.log.Warn("d4: line longer than the server's frame limit dropped", "bytes", size, "max", MaxPayload)
		return false
	}
	l := make([]byte, size)
	copy(l, line)
	l[size-1] = '\n'
	select {
	case c.queue <- l:
		c.queued.Add(1)
		if c.dropping.Load() && c.dropping.CompareAndSwap(true, false) {
			c.log.Info("d4: queue accepts lines again", "dropped_total", c.dropped.Load())
		}
		return true
	default:
		c.dropped.Add(1)
		if c.dropping.CompareAndSwap(false, true) {
			c.log.Warn("d4: queue full, dropping lines", "queue_size", c.cfg.QueueSize)
		}
		return false
	}
}

// Stats returns a snapshot of the counters; safe for concurrent use.
func (c *Client) Stats() ClientStats {
	return ClientStats{
		Queued:      c.queued.Load(),
		Sent:        c.sent.Load(),
		Frames:      c.frames.Load(),
		Dropped:     c.dropped.Load(),
		Reconnects:  c.reconnects.Load(),
		WriteErrors: c.writeErrors.Load(),
		DialErrors:  c.dialErr.Load(),
		Pending:     uint64(len(c.queue)) + uint64(max(c.held.Load(), 0)),
	}
}

// Run connects, sends the meta header, then streams queued lines, and
// reconnects with backoff after any failure, until ctx is done. On
// cancellation it flushes what it can within a few seconds over the
// current connection (if any), closes it and returns nil. Every goroutine it
// starts has ended when it returns. Only one Run may be active at a time.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("d4 client: Run is already active")
	}
	defer c.running.Store(false)

	backoff := c.cfg.Backoff
	connected := false
	for ctx.Err() == nil {
		conn, err := c.dialFn(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.dialErr.Add(1)
			c.log.Warn("d4: connect failed", "err", err, "retry_in", backoff)
		} else {
			if connected {
				c.reconnects.Add(1)
			}
			connected = true
			c.log.Info("d4: connected", "remote", conn.RemoteAddr().String())
			start := time.Now()
			err = c.session(ctx, conn)
			if ctx.Err() != nil {
				if err != nil {
					c.log.Warn("d4: flush on shutdown failed", "err", err)
				}
				break
			}
			if time.Since(start) >= healthyAfter {
				backoff = c.cfg.Backoff
			}
			c.log.Warn("d4: connection lost", "err", err, "unsent_lines", c.Stats().Pending, "retry_in", backoff)
		}
		if ctxtime.Sleep(ctx, jitter(backoff)) != nil {
			break
		}
		backoff = min(2*backoff, maxBackoff)
	}
	if p := c.Stats().Pending; p > 0 {
		c.log.Warn("d4: stopped with unsent lines", "lines", p)
	} else {
		c.log.Info("d4: stopped")
	}
	return nil
}

// jitter returns a delay in [d/2, d], so that sensors cut off together do
// not all reconnect in the same instant.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// connWriter serialises write deadlines between the session loop and the
// cancellation callback, so that a cancel can shorten a write in progress
// and no later deadline overrides it.
type connWriter struct {
	conn       net.Conn
	mu         sync.Mutex
	shutdownAt time.Time // zero until ctx is done
}

func (w *connWriter) setDeadline() {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := time.Now().Add(writeTimeout)
	if !w.shutdownAt.IsZero() && w.shutdownAt.Before(d) {
		d = w.shutdownAt
	}
	_ = w.conn.SetWriteDeadline(d) // an error here resurfaces on Write
}

func (w *connWriter) shutdown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.shutdownAt = time.Now().Add(shutdownGrace)
	_ = w.conn.SetWriteDeadline(w.shutdownAt)
}

// session runs one connection until a write fails, the peer closes it, or
// ctx is done (then it flushes). It always closes conn and waits for the
// goroutines it started. Lines not confirmed written stay in c.batch and
// c.carry for the next session.
func (c *Client) session(ctx context.Context, conn net.Conn) error {
	w := &connWriter{conn: conn}

	// The server never sends application data, so a finished Read means
	// the peer closed or reset the connection. Watching for it lets us stop
	// writing into a dead socket sooner than the next failing Write would.
	peerGone := make(chan error, 1)
	go func() {
		var b [256]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				peerGone <- err
				return
			}
		}
	}()
	cbDone := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(cbDone)
		w.shutdown()
	})
	defer func() {
		if !stop() {
			<-cbDone
		}
		conn.Close() // unblocks the reader
		if peerGone != nil {
			<-peerGone
		}
	}()

	// Check the peer before each write; consuming peerGone marks it so the
	// deferred cleanup does not wait for a second value.
	lost := func() error {
		select {
		case err := <-peerGone:
			peerGone = nil
			return fmt.Errorf("d4: server closed the connection: %w", err)
		default:
			return nil
		}
	}

	if err := c.writeFrame(w, TypeMeta, c.meta); err != nil {
		return err
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return c.drain(w)
		}
		full := c.fill()
		if len(c.batch) > 0 && (full || !time.Now().Before(c.flushAt)) {
			if err := lost(); err != nil {
				return err
			}
			if err := c.writeBatch(w); err != nil {
				return err
			}
			continue
		}
		var tc <-chan time.Time
		if len(c.batch) > 0 {
			timer.Reset(time.Until(c.flushAt))
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return c.drain(w)
		case err := <-peerGone:
			peerGone = nil
			return fmt.Errorf("d4: server closed the connection: %w", err)
		case l := <-c.queue:
			c.held.Add(1)
			c.carry = l // fill puts it in the batch (or starts a new one)
		case <-tc:
		}
		timer.Stop()
	}
}

// drain writes everything queued right now, best effort, after ctx is done.
func (c *Client) drain(w *connWriter) error {
	for {
		c.fill()
		if len(c.batch) == 0 {
			return nil
		}
		if err := c.writeBatch(w); err != nil {
			return err
		}
	}
}

// fill moves lines from the carry slot and the queue into the batch
// without blocking. It reports true when the batch must be written now:
// it reached MaxFrame, or the next line does not fit and waits in carry.
func (c *Client) fill() bool {
	if c.carry != nil {
		if len(c.batch) > 0 && len(c.batch)+len(c.carry) > c.cfg.MaxFrame {
			return true
		}
		l := c.carry
		c.carry = nil
		if c.add(l) {
			return true
		}
	}
	for {
		select {
		case l := <-c.queue:
			c.held.Add(1)
			if c.add(l) {
				return true
			}
		default:
			return false
		}
	}
}

// add appends one line (already counted in held) to the batch, or parks it
// in carry when it would push a non-empty batch past MaxFrame: frames carry
// whole lines only, and a line longer than MaxFrame travels alone.
func (c *Client) add(l []byte) (full bool) {
	if len(c.batch) > 0 && len(c.batch)+len(l) > c.cfg.MaxFrame {
		c.carry = l
		return true
	}
	if len(c.batch) == 0 {
		c.flushAt = time.Now().Add(c.cfg.FlushEvery)
	}
	c.batch = append(c.batch, l...)
	c.batchLines++
	return len(c.batch) >= c.cfg.MaxFrame
}

// writeBatch sends the batch as one 254 frame and forgets it on success.
func (c *Client) writeBatch(w *connWriter) error {
	if err := c.writeFrame(w, TypeExtended, c.batch); err != nil {
		return err // the batch stays for the next connection
	}
	c.frames.Add(1)
	c.sent.Add(uint64(c.batchLines))
	c.held.Add(-int64(c.batchLines))
	c.batchLines = 0
	if cap(c.batch) > 4*c.cfg.MaxFrame {
		// A huge single line grew the buffer; do not keep it forever.
		c.batch = make([]byte, 0, c.cfg.MaxFrame)
	} else {
		c.batch = c.batch[:0]
	}
	return nil
}

// writeFrame signs payload as one frame and writes it in a single Write
// call, so the server never sees a frame interleaved or split by us.
func (c *Client) writeFrame(w *connWriter, typ uint8, payload []byte) error {
	c.buf = c.signer.AppendFrame(c.buf[:0], typ, c.cfg.UUID, uint64(c.now().Unix()), payload)
	w.setDeadline()
	if _, err := w.conn.Write(c.buf); err != nil {
		c.writeErrors.Add(1)
		return fmt.Errorf("d4: writing type %d frame of %d bytes: %w", typ, len(c.buf), err)
	}
	if cap(c.buf) > 4*(HeaderSize+c.cfg.MaxFrame) {
		c.buf = make([]byte, 0, HeaderSize+c.cfg.MaxFrame)
	}
	return nil
}
