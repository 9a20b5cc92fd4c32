package d4server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"golang.org/x/time/rate"

	"github.com/xtrail/xtrail/internal/ctxtime"
	"github.com/xtrail/xtrail/pkg/d4"
)

// Stream is one sensor connection's byte stream as the session handler sees
// it, whatever carries it: a *tls.Conn, or the bidirectional stream of a QUIC
// connection (quic-go's *quic.Stream has both methods).
type Stream interface {
	io.Reader
	// SetReadDeadline bounds the pending and later reads, as net.Conn's
	// does. The handler uses it for its timeouts and to stop on shutdown.
	SetReadDeadline(t time.Time) error
}

// AckKind says what an acknowledgement reports.
type AckKind uint8

// Acknowledgement kinds (the QUIC ack record's kind byte, see
// docs/architecture.md).
const (
	// AckStored: done frames of the stream are handled; for type-254 frames
	// that means their lines are stored.
	AckStored AckKind = 1
	// AckRejected: the next frame was rejected and the session ends; done
	// counts the frames handled before it.
	AckRejected AckKind = 2
)

// AckFunc receives a stream's progress: done is the cumulative number of
// frames of the stream that are handled (a type-2 frame once parsed, a
// type-254 frame once its lines are stored), reason the rejection reason
// when kind is AckRejected. It is called from the session's goroutine after
// each handled frame and once on a rejection; it may coalesce. An error ends
// the session (the peer is gone).
type AckFunc func(kind AckKind, done uint64, reason string) error

// HandleStream runs one D4 session on st until the peer ends it, a frame is
// rejected, a timeout expires or ctx is done. peer is the remote address (its
// IP is d4-core's <ip>); ack may be nil, as on TLS, where D4 never writes
// back. The caller has taken the connection's slot with Admit and owns the
// transport: it closes it after HandleStream returns. Safe for concurrent
// use on distinct streams.
func (s *Server) HandleStream(ctx context.Context, st Stream, peer net.Addr, ack AckFunc) {
	s.active.Add(1)
	defer s.active.Add(-1)
	sctx, cancel := context.WithCancel(ctx) // cancelled on shutdown or eviction
	defer cancel()
	// Shutdown and eviction interrupt a blocked read through its deadline,
	// which every transport has (closing is the caller's job).
	stop := context.AfterFunc(sctx, func() { _ = st.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	sess := &session{st: st, addr: peer, peer: peerIP(peer), ack: ack, evict: cancel, start: time.Now()}
	log := s.log.With("peer", peer.String())
	defer s.endSession(ctx, sess)
	defer func() {
		// A bug must cost one connection, not the server.
		if r := recover(); r != nil {
			s.panics.Add(1)
			log.Error("d4server: connection handler panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()

	for {
		rej, err := s.nextFrame(sctx, sess)
		switch {
		case err != nil:
			s.readFailed(ctx, sctx, log, sess, err)
			return
		case rej != nil:
			s.reject(ctx, sess, rej)
			return
		}
		if err := sess.acked(AckStored, ""); err != nil {
			log.Debug("d4server: acknowledging failed; ending the session", "uuid", sess.hex, "err", err)
			return
		}
	}
}

// session is the per-connection state.
type session struct {
	st    Stream
	addr  net.Addr
	peer  string  // d4-core's <ip>
	ack   AckFunc // nil on TLS
	evict context.CancelFunc
	start time.Time
	done  uint64 // frames handled, for acks

	hdr [d4.HeaderSize]byte
	buf []byte // header + payload of the current frame, allocated after the header checks

	authed   bool // a frame's HMAC verified: the session counts toward its sensor
	id       string
	limiter  *rate.Limiter
	started  bool // a frame was accepted
	uuid     d4.UUID
	hex      string
	typ      uint8
	signer   *d4.Signer // for uuid, cached once its first frame verified
	meta     []byte     // type-2 payloads without '\n', until valid JSON
	metaType string     // set once the meta header parsed
	lines    lineSplitter
}

// acked counts a handled frame (kind AckStored) or reports a rejection.
func (sess *session) acked(kind AckKind, reason string) error {
	if kind == AckStored {
		sess.done++
	}
	if sess.ack == nil {
		return nil
	}
	return sess.ack(kind, sess.done, reason)
}

// rejection is a frame or session the server refuses: the connection is
// closed.
type rejection struct {
	reason string
	uuid   string // 32 hex as claimed by the frame, "" before a header
	detail string
	// authed is true when the frame's HMAC verified: only then may the
	// rejection be written to the sensor's metadata (spec §8.3, §9).
	authed bool
}

// timeoutError is a read that hit a deadline of the session.
type timeoutError struct{ reason string }

func (e *timeoutError) Error() string { return e.reason }

// readFull fills p from the session's stream. idle (0: none) bounds each
// wait for bytes and *until (zero: none) the whole read. A deadline found
// expired more than pauseSlack late means the server was not running (a
// SIGSTOP, swapping): the peer's bytes may be waiting in the receive buffer,
// so that time is not charged to the peer and *until moves by as much.
func readFull(ctx context.Context, sess *session, p []byte, idle time.Duration, until *time.Time) error {
	for n := 0; n < len(p); {
		var d time.Time
		if idle > 0 {
			d = time.Now().Add(idle)
		}
		if !until.IsZero() && (d.IsZero() || until.Before(d)) {
			d = *until
		}
		if err := sess.st.SetReadDeadline(d); err != nil {
			return err
		}
		// Checked after arming: a shutdown that set its past deadline
		// before ours must still stop the read.
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := sess.st.Read(p[n:])
		n += k
		if err == nil || (k > 0 && n == len(p)) {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			if late := time.Since(d); late > pauseSlack {
				if !until.IsZero() {
					*until = until.Add(late)
				}
				continue
			}
			if d.Equal(*until) {
				return &timeoutError{ReasonFrameTimeout}
			}
			return &timeoutError{ReasonIdle}
		}
		if err == io.EOF && n > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// nextFrame reads, checks and stores one frame. It returns a rejection, or
// an error when the stream ended or failed without one.
func (s *Server) nextFrame(ctx context.Context, sess *session) (*rejection, error) {
	// Wait for the frame's first byte: an authenticated session may be
	// quiet for SessionIdleTimeout; a new one has FrameTimeout from the
	// connection's start for its whole first frame.
	var until time.Time
	wait := s.sessionIdle
	if !sess.authed {
		until, wait = sess.start.Add(s.frameTimeout), s.idle
	}
	if err := readFull(ctx, sess, sess.hdr[:1], wait, &until); err != nil {
		return asRejection(err)
	}
	if sess.authed {
		until = time.Now().Add(s.frameTimeout)
	}
	if err := readFull(ctx, sess, sess.hdr[1:], s.idle, &until); err != nil {
		return asRejection(err)
	}
	var h d4.Header
	_ = h.Unmarshal(sess.hdr[:]) // cannot fail: the header is complete

	// Header checks: nothing of the payload is read or allocated before
	// the uuid is known to be allowed.
	signer, rej := s.checkHeader(ctx, sess, &h)
	if rej != nil {
		return rej, nil
	}
	if !sess.authed {
		if !s.unauth.reserve(int64(h.Size)) {
			return &rejection{reason: ReasonUnauthBudget, uuid: h.UUID.Hex(),
				detail: fmt.Sprintf("size %d", h.Size)}, nil
		}
		defer s.unauth.release(int64(h.Size))
	}
	need := d4.HeaderSize + int(h.Size)
	if cap(sess.buf) < need {
		sess.buf = make([]byte, need, max(need, min(2*cap(sess.buf), d4.HeaderSize+int(s.maxPayload))))
	}
	sess.buf = sess.buf[:need]
	copy(sess.buf, sess.hdr[:])
	if err := readFull(ctx, sess, sess.buf[d4.HeaderSize:], s.idle, &until); err != nil {
		return asRejection(err)
	}
	defer sess.shrink()
	if !signer.Verify(sess.buf) {
		return &rejection{reason: ReasonHMAC, uuid: h.UUID.Hex()}, nil
	}
	if !sess.authed {
		s.authenticated(ctx, sess, &h, signer)
	}
	return s.frame(ctx, sess, &h, signer, sess.buf[d4.HeaderSize:])
}

// asRejection turns a timeout into its rejection; other errors end the
// session as they are.
func asRejection(err error) (*rejection, error) {
	var te *timeoutError
	if errors.As(err, &te) {
		return &rejection{reason: te.reason}, nil
	}
	return nil, err
}

// shrink drops a large frame buffer once the frame is handled.
func (sess *session) shrink() {
	if cap(sess.buf) > keepBuffer {
		sess.buf = nil
	}
	sess.lines.shrink()
}

// checkHeader runs the checks that need only the header: uuid version,
// size, timestamp window, and the registry (key lookup), in that order. It
// returns the signer of the frame's uuid.
func (s *Server) checkHeader(ctx context.Context, sess *session, h *d4.Header) (*d4.Signer, *rejection) {
	hex := h.UUID.Hex()
	switch {
	case !h.UUID.IsV4():
		return nil, &rejection{reason: ReasonNotV4, uuid: hex}
	case h.Size > s.maxPayload:
		return nil, &rejection{reason: ReasonTooLarge, uuid: hex, detail: fmt.Sprintf("size %d > %d", h.Size, s.maxPayload)}
	}
	now := s.now()
	if ts := time.Unix(int64(min(h.Timestamp, 1<<62)), 0); ts.Before(now.Add(-s.window)) || ts.After(now.Add(s.window)) {
		return nil, &rejection{reason: ReasonTimestamp, uuid: hex,
			detail: fmt.Sprintf("timestamp %d, server time %d, window %s", h.Timestamp, now.Unix(), s.window)}
	}
	if sess.signer != nil && h.UUID == sess.uuid {
		return sess.signer, nil
	}
	v, key, err := s.registry.SensorKey(ctx, hex)
	switch {
	case err != nil:
		s.storeErrs.Add(1)
		return nil, &rejection{reason: ReasonUnavailable, uuid: hex, detail: err.Error()}
	case v == Blacklisted:
		return nil, &rejection{reason: ReasonBlacklisted, uuid: hex}
	case v != Allowed:
		return nil, &rejection{reason: ReasonUnregistered, uuid: hex}
	}
	return d4.NewSigner(key), nil
}

// authenticated makes sess count toward its sensor: the first HMAC of the
// session verified. A sensor over its session cap loses its oldest session.
func (s *Server) authenticated(ctx context.Context, sess *session, h *d4.Header, signer *d4.Signer) {
	sess.authed = true
	s.sessions.Add(1)
	sess.uuid, sess.hex, sess.signer = h.UUID, h.UUID.Hex(), signer
	if id, err := d4.NewUUIDv4(); err == nil {
		sess.id = id.String()
	}
	var evicted *session
	sess.limiter, evicted = s.sensors.attach(sess, time.Now())
	if evicted != nil {
		evicted.evict()
	}
	s.sessionState(ctx, sess, SessionOpened, h.Type)
}

// endSession undoes authenticated when the connection ends.
func (s *Server) endSession(ctx context.Context, sess *session) {
	if !sess.authed {
		return
	}
	s.sessions.Add(-1)
	s.sensors.detach(sess, time.Now())
	// The session's state must be cleared even when the server is
	// stopping, or d4-core's UI shows the sensor connected.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.sessionState(cctx, sess, SessionClosed, sess.typ)
}

// sessionState records a session change for d4-core's UI; like statistics,
// a failure is logged, not fatal.
func (s *Server) sessionState(ctx context.Context, sess *session, kind SessionEventKind, typ uint8) {
	ev := SessionEvent{Kind: kind, UUID: sess.hex, Session: sess.id, Type: typ, MetaType: sess.metaType}
	if err := s.store.SessionState(ctx, ev); err != nil && ctx.Err() == nil {
		s.storeErrs.Add(1)
		s.logOnce("session state", slog.LevelWarn, "d4server: storing session state failed", "uuid", sess.hex, "err", err)
	}
}

// readFailed accounts for the end of a connection without a rejection.
func (s *Server) readFailed(ctx, sctx context.Context, log *slog.Logger, sess *session, err error) {
	switch {
	case ctx.Err() != nil:
		// Shutdown.
	case sctx.Err() != nil:
		s.reject(ctx, sess, &rejection{reason: ReasonEvicted, uuid: sess.hex})
	case err == io.EOF:
		log.Debug("d4server: connection closed by the sensor", "uuid", sess.hex)
	default:
		s.readErrs.Add(1)
		log.Info("d4server: connection failed", "uuid", sess.hex, "err", err)
	}
}

// reject counts, logs, acknowledges and records a refused frame.
func (s *Server) reject(ctx context.Context, sess *session, r *rejection) {
	s.count(r.reason, sess.addr, r.uuid, r.detail)
	_ = sess.acked(AckRejected, r.reason) // the session ends either way
	if !r.authed || ctx.Err() != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.store.SetError(sctx, r.uuid, r.reason); err != nil {
		s.storeErrs.Add(1)
		s.logOnce("set error", slog.LevelWarn, "d4server: storing the sensor error failed", "uuid", r.uuid, "err", err)
	}
}

// frame runs the checks of spec §3.2 that need an authentic frame, in order,
// then stores the frame: a data frame through storeData (replay check, the
// sensor's rate, lines stored once across sessions and servers), any other
// after the sensor's rate in process.
func (s *Server) frame(ctx context.Context, sess *session, h *d4.Header, signer *d4.Signer, payload []byte) (*rejection, error) {
	hex := h.UUID.Hex()
	switch {
	case !sess.started && h.Type == d4.TypeExtended:
		return &rejection{reason: ReasonNoMetaHeader, uuid: hex, authed: true}, nil
	case h.UUID != sess.uuid:
		// Recorded on the session's sensor: the sender proved both keys.
		return &rejection{reason: ReasonUUIDChange, uuid: sess.hex, authed: true, detail: "to " + hex}, nil
	case sess.started && h.Type != sess.typ && (sess.typ != d4.TypeMeta || h.Type != d4.TypeExtended):
		return &rejection{reason: ReasonTypeChange, uuid: hex, authed: true,
			detail: fmt.Sprintf("%d to %d", sess.typ, h.Type)}, nil
	case h.Type != d4.TypeMeta && h.Type != d4.TypeExtended:
		return &rejection{reason: ReasonUnsupportedType, uuid: hex, authed: true,
			detail: fmt.Sprintf("type %d", h.Type)}, nil
	case h.Type == d4.TypeExtended && sess.started && sess.metaType == "":
		return &rejection{reason: ReasonIncompleteMeta, uuid: hex, authed: true}, nil
	}
	data := h.Type == d4.TypeExtended && len(payload) > 0
	if !data {
		if err := s.throttle(ctx, sess, Claim{}, len(payload)); err != nil {
			return nil, err
		}
	}

	first := !sess.started
	sess.started = true
	if sess.typ == d4.TypeMeta && h.Type == d4.TypeExtended {
		s.sessionState(ctx, sess, SessionTypeChanged, h.Type)
	}
	sess.typ = h.Type
	if h.Type == d4.TypeMeta {
		if rej := s.addMeta(ctx, sess, payload); rej != nil {
			return rej, nil
		}
	} else if data {
		stored, rej, err := s.storeData(ctx, sess, h, payload)
		if rej != nil || err != nil {
			return rej, err // an error is shutdown; the connection closes
		}
		if !stored {
			return nil, nil // handled (acknowledged), neither stored nor counted again
		}
	}

	s.frames.Add(1)
	s.bytes.Add(uint64(len(payload)))
	seen := Sighting{UUID: hex, IP: sess.peer, Type: h.Type, SessionStart: first, Time: s.now()}
	if h.Type == d4.TypeExtended {
		seen.MetaType = sess.metaType
	}
	// Statistics are not worth stalling the sensor for: log and go on.
	if err := s.store.SensorSeen(ctx, seen); err != nil && ctx.Err() == nil {
		s.storeErrs.Add(1)
		s.logOnce("statistics", slog.LevelWarn, "d4server: storing sensor statistics failed", "uuid", hex, "err", err)
	}
	return nil, nil
}

// Claim polling: how long a session first waits, and at most, before asking
// again about a frame another session is storing.
const (
	claimPollMin = 20 * time.Millisecond
	claimPollMax = 500 * time.Millisecond
)

// errClaimLost: the session's claim lapsed and another session took it over.
var errClaimLost = errors.New("d4server: the frame's claim was taken over")

// storeData stores a data frame's lines once across all sessions and
// servers of the store, and reports whether this session stored them. One
// store call checks two things (ClaimFrame):
//
//   - the replay mark: a frame whose (uuid, timestamp, HMAC) another
//     session sent within the time window is a replay, refused;
//   - the content claim, keyed by (uuid, SHA-256 of the payload): a sensor
//     resends the frames whose acknowledgement it lost with a fresh
//     timestamp and HMAC and the same payload, so a resend of a frame
//     another session stored is handled (acknowledged) without storing it
//     again, and counted; one another session is storing now waits until
//     that session marks it stored, or until its claim's lease lapses (its
//     server died or stopped meanwhile), and then takes it over;
//   - the claim says "stored" only once the lines are stored (and, when the
//     store waits for replicas, on a replica), so a frame is never
//     acknowledged without its lines stored somewhere.
//
// The same frame twice in one session passes both and is stored twice: D4
// has no sequence number, so a sensor may send identical frames in one
// second, and nobody can inject into another's session. The sensor's rate
// is charged once the session owns the claim. An error means ctx ended.
func (s *Server) storeData(ctx context.Context, sess *session, h *d4.Header, payload []byte) (bool, *rejection, error) {
	m := Mark{UUID: sess.hex, Session: sess.id, Timestamp: h.Timestamp, HMAC: h.HMAC,
		Expires: time.Unix(int64(h.Timestamp), 0).Add(s.window + time.Second), Lease: s.claimLease,
		Content: sha256.Sum256(payload), ClaimTTL: s.window + claimMargin,
		Bytes: int64(len(payload)), Rate: s.sensors.bytesPerSecond(), Burst: int64(s.sensors.burst)}
	var lines [][]byte
	fed, waited := false, false
	poll := claimPollMin
	for {
		c, err := s.claim(ctx, m)
		if err != nil {
			return false, nil, err
		}
		switch c.State {
		case ClaimStored:
			s.alreadyStored.Add(1)
			return false, nil, nil
		case ClaimRefused:
			return false, &rejection{reason: ReasonReplay, uuid: sess.hex, detail: fmt.Sprintf("timestamp %d", h.Timestamp)}, nil
		case ClaimBusy:
			if !waited {
				waited = true
				s.claimWaits.Add(1)
			}
			if err := ctxtime.Sleep(ctx, poll); err != nil {
				return false, nil, err
			}
			poll = min(2*poll, claimPollMax)
			continue
		}
		owned := time.Now()
		if c.TakenOver {
			s.takenOver.Add(1)
			s.logOnce("claim taken over", slog.LevelWarn, "d4server: a frame's claim lapsed before its session stored it (its server died or stopped); storing it here, its lines may arrive twice",
				"uuid", sess.hex, "timestamp", h.Timestamp)
		}
		if m.Bytes > 0 {
			if err := s.throttle(ctx, sess, c, len(payload)); err != nil {
				return false, nil, err
			}
			m.Bytes = 0 // charged once; later claims only renew
		}
		if !fed {
			lines, fed = sess.lines.feed(payload), true
		}
		err = s.push(ctx, sess, lines, func() error {
			if time.Since(owned) < s.claimLease/2 {
				return nil
			}
			c, err := s.claim(ctx, m)
			if err != nil {
				return err
			}
			if c.State != ClaimOwned {
				return errClaimLost
			}
			owned = time.Now()
			return nil
		})
		if errors.Is(err, errClaimLost) {
			poll = claimPollMin
			continue // wait for the session that took it over
		}
		if err != nil {
			return false, nil, err
		}
		if err := s.retryStore(ctx, "marking a frame stored", sess.hex, func() error { return s.store.FrameStored(ctx, m) }); err != nil {
			return false, nil, err
		}
		return true, nil, nil
	}
}

// claim runs the store's replay check, retrying while the store fails.
func (s *Server) claim(ctx context.Context, m Mark) (Claim, error) {
	var c Claim
	err := s.retryStore(ctx, "replay check", m.UUID, func() error {
		var err error
		c, err = s.store.ClaimFrame(ctx, m)
		return err
	})
	return c, err
}

// throttle makes a frame of n payload bytes wait for its sensor's rate: the
// wait the store computed for every server (c.Limited), else the session's
// in-process limiter. The wait pushes back on the sensor.
func (s *Server) throttle(ctx context.Context, sess *session, c Claim, n int) error {
	if !c.Limited {
		waited, err := waitTokens(ctx, sess.limiter, n)
		if waited {
			s.throttled.Add(1)
		}
		return err
	}
	if c.Wait <= 0 {
		return nil
	}
	s.throttled.Add(1)
	return ctxtime.Sleep(ctx, c.Wait)
}

// addMeta accumulates the type-2 payload; once it parses, it must be a JSON
// object with a string "type", and that type must be maltrail.
func (s *Server) addMeta(ctx context.Context, sess *session, payload []byte) *rejection {
	if sess.metaType != "" {
		return nil // extra type-2 frames after a complete header change nothing
	}
	for _, b := range payload {
		if b != '\n' { // d4-core deletes every '\n' before parsing
			sess.meta = append(sess.meta, b)
		}
	}
	if len(sess.meta) > maxMetaHeader {
		return &rejection{reason: ReasonMetaHeaderTooLong, uuid: sess.hex, authed: true}
	}
	name, complete, err := parseMetaHeader(sess.meta)
	switch {
	case !complete:
		return nil
	case err != nil:
		return &rejection{reason: ReasonBadMetaHeader, uuid: sess.hex, authed: true, detail: err.Error()}
	case name != MetaTypeMaltrail:
		return &rejection{reason: ReasonUnsupportedMeta, uuid: sess.hex, authed: true, detail: name}
	}
	sess.metaType = name
	sess.meta = nil
	s.sessionState(ctx, sess, SessionMetaType, d4.TypeMeta)
	return nil
}

// retryStore runs f until it succeeds or ctx ends, with backoff: the frame is
// only in memory, and blocking here pushes back on the sensor through its
// transport instead of dropping data.
func (s *Server) retryStore(ctx context.Context, what, uuid string, f func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.storeErrs.Add(1)
		s.logOnce(what, slog.LevelWarn, "d4server: "+what+" failed; retrying", "uuid", uuid, "err", err, "retry_in", wait)
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, storeRetryMax)
	}
}

// push stores lines, retrying while the store fails and, unless
// DropUnrouted, while no queue receives them. before runs ahead of every
// attempt; its error ends push. Otherwise push fails only when ctx ends.
func (s *Server) push(ctx context.Context, sess *session, lines [][]byte, before func() error) error {
	counted := false
	wait := 100 * time.Millisecond
	for len(lines) > 0 {
		if err := before(); err != nil {
			return err
		}
		queues, err := s.store.PushLines(ctx, sess.metaType, sess.hex, lines)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.storeErrs.Add(1)
			s.logOnce("storing lines", slog.LevelWarn, "d4server: storing lines failed; retrying", "uuid", sess.hex, "err", err, "retry_in", wait)
		case queues > 0:
			s.lines.Add(uint64(len(lines)))
			return nil
		default:
			if !counted {
				counted = true
				s.unrouted.Add(uint64(len(lines)))
			}
			if s.dropUnrouted {
				s.unrDrop.Add(uint64(len(lines)))
				s.logOnce("unrouted", slog.LevelWarn, "d4server: no analyzer queue for these lines; dropped (-drop-unrouted)",
					"uuid", sess.hex, "meta_type", sess.metaType, "lines", len(lines))
				return nil
			}
			s.logOnce("unrouted", slog.LevelWarn, "d4server: no analyzer queue for these lines; holding them until one is registered (xtrail export, -export, or d4-core's UI)",
				"uuid", sess.hex, "meta_type", sess.metaType, "lines", len(lines), "retry_in", wait)
		}
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, storeRetryMax)
	}
	return nil
}
