package d4server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

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
// back. The caller owns the transport: it closes it after HandleStream
// returns. Safe for concurrent use on distinct streams.
func (s *Server) HandleStream(ctx context.Context, st Stream, peer net.Addr, ack AckFunc) {
	s.active.Add(1)
	defer s.active.Add(-1)
	// Shutdown interrupts a blocked read through its deadline, which every
	// transport has (closing is the caller's job).
	stop := context.AfterFunc(ctx, func() { _ = st.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	sess := &session{peer: peerIP(peer), ack: ack}
	log := s.log.With("peer", peer.String())
	defer func() {
		// A bug must cost one connection, not the server.
		if r := recover(); r != nil {
			s.panics.Add(1)
			log.Error("d4server: connection handler panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()

	rd := d4.NewReader(idleReader{ctx: ctx, st: st, idle: s.idle}, s.maxPayload)
	for {
		h, payload, err := rd.Next()
		if err != nil {
			s.readFailed(ctx, log, sess, h, err)
			return
		}
		if rej := s.frame(ctx, sess, h, payload, rd.Frame()); rej != nil {
			s.reject(ctx, log, sess, rej)
			return
		}
		if err := sess.acked(AckStored, ""); err != nil {
			log.Debug("d4server: acknowledging failed; ending the session", "uuid", sess.hex, "err", err)
			return
		}
	}
}

// idleReader arms the read deadline before every read, so the timeout means
// "no byte for IdleTimeout" rather than "no whole frame for IdleTimeout".
type idleReader struct {
	ctx  context.Context
	st   Stream
	idle time.Duration
}

func (r idleReader) Read(p []byte) (int, error) {
	if err := r.st.SetReadDeadline(time.Now().Add(r.idle)); err != nil {
		return 0, err
	}
	// Checked after arming: a shutdown that set its past deadline before
	// ours must still stop the read.
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.st.Read(p)
}

// session is the per-connection state.
type session struct {
	peer     string
	ack      AckFunc // nil on TLS
	done     uint64  // frames handled, for acks
	started  bool
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

// rejection is a frame the server refuses: the connection is closed.
type rejection struct {
	reason string
	uuid   string // 32 hex as claimed by the frame
	detail string
	// authed is true when the frame's HMAC verified: only then may the
	// rejection be written to the sensor's metadata (spec §8.3, §9).
	authed bool
}

// readFailed accounts for the end of a connection without a complete frame.
func (s *Server) readFailed(ctx context.Context, log *slog.Logger, sess *session, h d4.Header, err error) {
	var ne net.Error
	var fe *d4.FrameError
	switch {
	case errors.As(err, &fe):
		s.reject(ctx, log, sess, &rejection{reason: ReasonTooLarge, uuid: fe.Header.UUID.Hex(),
			detail: fmt.Sprintf("size %d > %d", fe.Header.Size, fe.Max)})
	case ctx.Err() != nil, errors.Is(err, net.ErrClosed):
		// Shutdown.
	case err == io.EOF:
		log.Debug("d4server: connection closed by the sensor", "uuid", sess.hex)
	case errors.As(err, &ne) && ne.Timeout():
		s.idles.Add(1)
		log.Info("d4server: closing idle connection", "uuid", sess.hex, "idle", s.idle)
	default:
		s.readErrs.Add(1)
		log.Info("d4server: connection failed", "uuid", sess.hex, "header_type", h.Type, "err", err)
	}
}

// reject counts, logs, acknowledges and records a refused frame.
func (s *Server) reject(ctx context.Context, log *slog.Logger, sess *session, r *rejection) {
	s.rejected[r.reason].Add(1)
	log.Warn("d4server: frame rejected, closing connection", "uuid", r.uuid, "reason", r.reason, "detail", r.detail)
	_ = sess.acked(AckRejected, r.reason) // the session ends either way
	if !r.authed || ctx.Err() != nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.store.SetError(sctx, r.uuid, r.reason); err != nil {
		s.storeErrs.Add(1)
		log.Warn("d4server: storing the sensor error failed", "uuid", r.uuid, "err", err)
	}
}

// keyFor returns the HMAC key of a sensor, or nil when registration mode
// does not know it.
func (s *Server) keyFor(hex string) []byte {
	if k, ok := s.keys[hex]; ok {
		return k
	}
	if s.register {
		return nil
	}
	return s.defaultKey
}

// frame runs the checks of spec §3.2 in order on one complete frame, then
// stores it. The HMAC is verified before anything is stored about the uuid.
func (s *Server) frame(ctx context.Context, sess *session, h d4.Header, payload, raw []byte) *rejection {
	hex := h.UUID.Hex()
	if !h.UUID.IsV4() {
		return &rejection{reason: ReasonNotV4, uuid: hex}
	}
	signer := sess.signer
	if !sess.started || h.UUID != sess.uuid {
		key := s.keyFor(hex)
		if key == nil {
			return &rejection{reason: ReasonUnregistered, uuid: hex}
		}
		signer = d4.NewSigner(key)
	}
	if !signer.Verify(raw) {
		return &rejection{reason: ReasonHMAC, uuid: hex}
	}
	switch {
	case !sess.started && h.Type == d4.TypeExtended:
		return &rejection{reason: ReasonNoMetaHeader, uuid: hex, authed: true}
	case sess.started && h.UUID != sess.uuid:
		// Recorded on the session's sensor: the sender proved both keys.
		return &rejection{reason: ReasonUUIDChange, uuid: sess.hex, authed: true, detail: "to " + hex}
	case sess.started && h.Type != sess.typ && (sess.typ != d4.TypeMeta || h.Type != d4.TypeExtended):
		return &rejection{reason: ReasonTypeChange, uuid: hex, authed: true,
			detail: fmt.Sprintf("%d to %d", sess.typ, h.Type)}
	case h.Type != d4.TypeMeta && h.Type != d4.TypeExtended:
		return &rejection{reason: ReasonUnsupportedType, uuid: hex, authed: true,
			detail: fmt.Sprintf("type %d", h.Type)}
	}

	first := !sess.started
	if first {
		sess.started, sess.uuid, sess.hex, sess.signer = true, h.UUID, hex, signer
	}
	sess.typ = h.Type

	if h.Type == d4.TypeMeta {
		if rej := sess.addMeta(payload); rej != nil {
			return rej
		}
	} else {
		if sess.metaType == "" {
			return &rejection{reason: ReasonIncompleteMeta, uuid: hex, authed: true}
		}
		if lines := sess.lines.feed(payload); len(lines) > 0 {
			if err := s.push(ctx, sess, lines); err != nil {
				return nil // shutdown; the connection closes
			}
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
		s.log.Warn("d4server: storing sensor statistics failed", "uuid", hex, "err", err)
	}
	return nil
}

// addMeta accumulates the type-2 payload; once it parses, it must be a JSON
// object with a string "type", and that type must be maltrail.
func (sess *session) addMeta(payload []byte) *rejection {
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
	return nil
}

// push stores lines, retrying while the store fails: the lines are only in
// memory, and blocking here pushes back on the sensor through TCP instead of
// dropping data. It fails only when ctx ends.
func (s *Server) push(ctx context.Context, sess *session, lines [][]byte) error {
	wait := 100 * time.Millisecond
	for {
		err := s.store.PushLines(ctx, sess.metaType, sess.hex, lines)
		if err == nil {
			s.lines.Add(uint64(len(lines)))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.storeErrs.Add(1)
		s.log.Warn("d4server: storing lines failed; retrying", "uuid", sess.hex, "lines", len(lines), "err", err, "retry_in", wait)
		if err := ctxtime.Sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, storeRetryMax)
	}
}
