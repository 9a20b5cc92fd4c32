// Package d4server is xtrail's D4 server for the maltrail path: it accepts
// D4 sessions (a type-2 meta header {"type":"maltrail"} then type-254 frames,
// spec d4.md §2-§3) over TLS, or any transport through HandleStream,
// authenticates every frame by its HMAC, splits the payloads into lines as
// d4-core's maltrail handler does, and stores them in d4-core's Redis layout
// (§4) or an in-process store.
//
// Differences from d4-core's server, on purpose (spec §8-§9), are listed in
// docs/architecture.md. In short: nothing is allocated for a payload before
// its header's uuid is known, nothing is written about a uuid before its
// HMAC verifies (in constant time), frames outside a timestamp window or
// repeating a recent one are refused, connections are capped, timed out and
// rate limited, lines are stored before the next frame is read (no stream
// plus polling worker), and every rejection is counted.
package d4server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/xtrail/xtrail/internal/ctxtime"
	"github.com/xtrail/xtrail/pkg/d4"
)

// Server modes (d4-core's server_mode, spec §3.3).
const (
	// ModeSharedSecret accepts any v4 uuid; its own key if it has one, else
	// the default key.
	ModeSharedSecret = "shared-secret"
	// ModeRegistration accepts only registered uuids.
	ModeRegistration = "registration"
)

// Defaults of Config.
const (
	DefaultAddr = ":4443"
	// DefaultIdleTimeout is d4-core's 30 s without a byte, applied before
	// a session's first frame verified and inside every frame.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultFrameTimeout bounds one whole frame, from its first byte (and
	// a session's first frame from the connection's start): a peer that
	// drips bytes just often enough to beat the idle timeout is cut here.
	DefaultFrameTimeout = 60 * time.Second
	// DefaultTimeWindow is how far a frame's timestamp may be from the
	// server's clock; the replay state is kept as long.
	DefaultTimeWindow = 300 * time.Second
	// DefaultMaxConns caps open connections (all transports).
	DefaultMaxConns = 10000
	// DefaultMaxConnsPerSource caps the connections of one IPv4 address or
	// IPv6 /64 (sensors behind one NAT share it).
	DefaultMaxConnsPerSource = 256
	// DefaultMaxConnsPerSensor caps one sensor's authenticated sessions; a
	// new one beyond it closes the sensor's oldest.
	DefaultMaxConnsPerSensor = 4
	// DefaultMaxUnauthBytes caps the payload bytes buffered, all sessions
	// together, for peers that have not proven a key yet.
	DefaultMaxUnauthBytes = 16 << 20
	// DefaultSensorRate is a sensor's payload allowance in bytes/s (about
	// 50,000 Maltrail lines/s); frames beyond it wait (back-pressure).
	DefaultSensorRate = 10 << 20
)

// MetaTypeMaltrail is the only meta type this server accepts.
const MetaTypeMaltrail = "maltrail"

// maxMetaHeader bounds the type-2 buffer: d4-goclient refuses meta headers
// above 100 000 bytes, so a longer one is not a meta header.
const maxMetaHeader = 100_000

// storeRetryMax caps the backoff while the store refuses lines.
const storeRetryMax = 5 * time.Second

// pauseSlack: a read deadline found expired this late means the server
// itself was not running (SIGSTOP, swap); that time is not the peer's.
const pauseSlack = time.Second

// keepBuffer is the largest frame buffer a session keeps between frames;
// a larger one is dropped so idle sessions do not pin megabytes.
const keepBuffer = 64 << 10

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	Store Store // required
	// Registry says which sensors may send and with which key. Nil means a
	// StaticRegistry of Mode, DefaultKey and Keys.
	Registry Registry
	// Mode is ModeSharedSecret or ModeRegistration; "" means registration,
	// the safer one and d4-core's sample default. Used only without a
	// Registry.
	Mode string
	// DefaultKey is the HMAC key of sensors without their own key.
	DefaultKey []byte
	// Keys maps sensor uuids (32 hex or dashed) to their own HMAC key; in
	// registration mode it is the list of accepted sensors. See LoadKeys.
	Keys map[string][]byte
	// MaxPayload is the largest accepted frame payload, and so what one
	// stream may hold in server memory: the server reads a stream's next
	// frame only after the current one is stored, so a slow store pushes
	// back on the sensor through the transport's flow control. 0 means
	// d4.MaxPayload (1 000 000, as d4-core).
	MaxPayload uint32
	// IdleTimeout closes a connection that sent no byte for this long
	// before its first frame verified or inside a frame.
	IdleTimeout time.Duration
	// SessionIdleTimeout closes an authenticated session silent between
	// frames for this long; 0 means never, as d4-core (TCP keepalive and
	// QUIC's idle timeout find dead peers).
	SessionIdleTimeout time.Duration
	// FrameTimeout bounds a whole frame (see DefaultFrameTimeout).
	FrameTimeout time.Duration
	// TimeWindow is the accepted distance between a frame's timestamp and
	// the server's clock.
	TimeWindow time.Duration
	// MaxConns, MaxConnsPerSource and MaxConnsPerSensor: see the defaults.
	MaxConns, MaxConnsPerSource, MaxConnsPerSensor int
	// MaxUnauthBytes: see DefaultMaxUnauthBytes.
	MaxUnauthBytes int64
	// SensorRate is a sensor's payload allowance in bytes/s; negative
	// means unlimited.
	SensorRate int64
	// DropUnrouted makes the server drop (and count) lines that no queue
	// receives, as d4-core does. By default it holds the frame and retries
	// until a queue is registered, which pushes back on the sensor.
	DropUnrouted bool
	Logger       *slog.Logger     // nil discards logs
	Now          func() time.Time // nil means time.Now
}

// Rejection reasons, as counted in Stats.Rejected and logged. Each one
// ends the connection.
const (
	ReasonTooLarge          = "payload too large"
	ReasonNotV4             = "uuid not v4"
	ReasonUnregistered      = "unregistered uuid"
	ReasonBlacklisted       = "blacklisted"
	ReasonHMAC              = "hmac mismatch"
	ReasonTimestamp         = "timestamp outside window"
	ReasonReplay            = "replayed frame"
	ReasonNoMetaHeader      = "type 254 before a type-2 meta header"
	ReasonTypeChange        = "type change"
	ReasonUUIDChange        = "uuid change"
	ReasonUnsupportedType   = "unsupported type"
	ReasonBadMetaHeader     = "invalid meta header"
	ReasonUnsupportedMeta   = "unsupported meta type"
	ReasonIncompleteMeta    = "type 254 before the meta header was complete"
	ReasonMetaHeaderTooLong = "meta header too large"
	ReasonUnauthBudget      = "unauthenticated buffer budget exhausted"
	ReasonIdle              = "idle timeout"
	ReasonFrameTimeout      = "frame deadline exceeded"
	ReasonConnLimit         = "connection limit"
	ReasonSourceLimit       = "per-source connection limit"
	ReasonEvicted           = "replaced by a newer session of the sensor"
	ReasonUnavailable       = "sensor registry unavailable"
)

var reasons = []string{
	ReasonTooLarge, ReasonNotV4, ReasonUnregistered, ReasonBlacklisted, ReasonHMAC,
	ReasonTimestamp, ReasonReplay, ReasonNoMetaHeader, ReasonTypeChange, ReasonUUIDChange,
	ReasonUnsupportedType, ReasonBadMetaHeader, ReasonUnsupportedMeta, ReasonIncompleteMeta,
	ReasonMetaHeaderTooLong, ReasonUnauthBudget, ReasonIdle, ReasonFrameTimeout,
	ReasonConnLimit, ReasonSourceLimit, ReasonEvicted, ReasonUnavailable,
}

// Stats are a Server's counters since New.
type Stats struct {
	ActiveConns int64 // connections open now, authenticated or not
	// Sessions counts the authenticated sessions open now (a frame's HMAC
	// verified): the sensors connected, a sensor holding up to
	// MaxConnsPerSensor of them.
	Sessions     int64
	Conns        uint64 // connections admitted
	Frames       uint64 // frames accepted
	PayloadBytes uint64 // payload bytes of accepted frames
	Lines        uint64 // lines stored in at least one queue
	// Unrouted counts lines for which no queue was registered when they
	// came: held and retried (the default) or, with DropUnrouted, dropped.
	Unrouted uint64
	// UnroutedDropped counts the lines dropped for lack of a queue.
	UnroutedDropped uint64
	Throttled       uint64 // frames that waited for their sensor's rate limit
	// AlreadyStored counts data frames whose content another session had
	// stored already: a sensor's restamped resend after a lost
	// acknowledgement. Each was acknowledged (QUIC) or skipped (TLS), and
	// nothing stored again. (A byte-identical replay is rejected instead.)
	AlreadyStored uint64
	// ClaimWaits counts data frames that waited while another session
	// stored the same frame (a resend racing the original).
	ClaimWaits uint64
	// ClaimsTakenOver counts data frames taken over from a session whose
	// claim lapsed unstored (its server died or stopped while storing
	// them): the only frames whose lines may be stored twice.
	ClaimsTakenOver uint64
	ReadErrors      uint64 // TLS or transport errors, truncated frames
	StoreErrors     uint64 // failed store calls (retried)
	Panics          uint64 // recovered handler panics (bugs)
	// Rejected counts refused frames and connections per reason (every
	// reason is present): each closed a connection.
	Rejected map[string]uint64
}

// Server accepts D4 sessions. Create it with New and run it with Serve (TLS)
// or HandleStream (any transport, after Admit).
type Server struct {
	store        Store
	registry     Registry
	maxPayload   uint32
	idle         time.Duration
	sessionIdle  time.Duration
	frameTimeout time.Duration
	window       time.Duration
	claimLease   time.Duration
	dropUnrouted bool
	log          *slog.Logger
	now          func() time.Time

	admission admission
	unauth    budget
	sensors   sensorTable
	logs      logLimiter

	active, sessions                               atomic.Int64
	conns, frames, bytes, lines, unrouted, unrDrop atomic.Uint64
	throttled, readErrs, storeErrs, panics         atomic.Uint64
	alreadyStored, claimWaits, takenOver           atomic.Uint64
	rejected                                       map[string]*atomic.Uint64
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("d4server: Config.Store is required")
	}
	s := &Server{
		store:        cfg.Store,
		registry:     cfg.Registry,
		maxPayload:   cfg.MaxPayload,
		idle:         orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		sessionIdle:  max(cfg.SessionIdleTimeout, 0),
		frameTimeout: orDefault(cfg.FrameTimeout, DefaultFrameTimeout),
		window:       orDefault(cfg.TimeWindow, DefaultTimeWindow),
		claimLease:   claimLease,
		dropUnrouted: cfg.DropUnrouted,
		log:          cfg.Logger,
		now:          cfg.Now,
		admission: admission{
			max:       orDefault(cfg.MaxConns, DefaultMaxConns),
			perSource: orDefault(cfg.MaxConnsPerSource, DefaultMaxConnsPerSource),
		},
		unauth:   budget{max: orDefault(cfg.MaxUnauthBytes, DefaultMaxUnauthBytes)},
		logs:     logLimiter{every: 10 * time.Second},
		rejected: make(map[string]*atomic.Uint64, len(reasons)),
	}
	if s.registry == nil {
		r, err := NewStaticRegistry(cfg.Mode, cfg.DefaultKey, cfg.Keys)
		if err != nil {
			return nil, err
		}
		s.registry = r
	}
	if s.maxPayload == 0 {
		s.maxPayload = d4.MaxPayload
	}
	s.sensors = sensorTable{maxConns: orDefault(cfg.MaxConnsPerSensor, DefaultMaxConnsPerSensor), rate: rate.Inf}
	if r := orDefault(cfg.SensorRate, DefaultSensorRate); r > 0 {
		s.sensors.rate = rate.Limit(r)
		// A burst of at least two of the largest frames, so one frame
		// never exceeds it.
		s.sensors.burst = int(min(max(r, 2*int64(s.maxPayload)), math.MaxInt32))
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, r := range reasons {
		s.rejected[r] = new(atomic.Uint64)
	}
	return s, nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		ActiveConns:     s.active.Load(),
		Sessions:        s.sessions.Load(),
		Conns:           s.conns.Load(),
		Frames:          s.frames.Load(),
		PayloadBytes:    s.bytes.Load(),
		Lines:           s.lines.Load(),
		Unrouted:        s.unrouted.Load(),
		UnroutedDropped: s.unrDrop.Load(),
		Throttled:       s.throttled.Load(),
		AlreadyStored:   s.alreadyStored.Load(),
		ClaimWaits:      s.claimWaits.Load(),
		ClaimsTakenOver: s.takenOver.Load(),
		ReadErrors:      s.readErrs.Load(),
		StoreErrors:     s.storeErrs.Load(),
		Panics:          s.panics.Load(),
		Rejected:        make(map[string]uint64, len(s.rejected)),
	}
	for r, c := range s.rejected {
		st.Rejected[r] = c.Load()
	}
	return st
}

// ListenTLS listens on addr ("" means DefaultAddr) with TLS 1.2 or later.
// keyFile may be "" or equal certFile when the PEM file holds both, like
// d4-core's server.pem.
func ListenTLS(addr, certFile, keyFile string) (net.Listener, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	if keyFile == "" {
		keyFile = certFile
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("d4server: load TLS certificate: %w", err)
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		return nil, fmt.Errorf("d4server: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Admit takes a connection slot for a peer, before any byte of it is read
// (the TLS handshake included): the global and per-source caps, and d4-core's
// blacklist_ip. It returns the function that gives the slot back, or false
// after counting and logging the refusal. Every transport calls it once per
// connection.
func (s *Server) Admit(ctx context.Context, peer net.Addr) (release func(), ok bool) {
	ip := addrOf(peer)
	if ip.IsValid() {
		allowed, err := s.registry.PeerAllowed(ctx, ip)
		if err != nil {
			// Fail open: the blacklist is an admin convenience, and a
			// Redis outage must not lock every sensor out.
			s.storeErrs.Add(1)
			s.logOnce("blacklist check failed", slog.LevelWarn, "d4server: blacklist check failed; admitting", "err", err)
		} else if !allowed {
			s.count(ReasonBlacklisted, peer, "", "address in blacklist_ip")
			return nil, false
		}
	}
	if reason, ok := s.admission.admit(ip); !ok {
		s.count(reason, peer, "", "")
		return nil, false
	}
	s.conns.Add(1)
	return func() { s.admission.release(ip) }, true
}

// count counts a rejection and logs it, at most once per reason every ten
// seconds (with the number of lines suppressed meanwhile).
func (s *Server) count(reason string, peer net.Addr, uuid, detail string) {
	s.rejected[reason].Add(1)
	p := ""
	if peer != nil {
		p = peer.String()
	}
	s.logOnce(reason, slog.LevelWarn, "d4server: rejected, closing connection",
		"reason", reason, "peer", p, "uuid", uuid, "detail", detail)
}

// logOnce logs msg at most once per key and interval.
func (s *Server) logOnce(key string, level slog.Level, msg string, args ...any) {
	ok, skipped := s.logs.allow(key, time.Now())
	if !ok {
		return
	}
	if skipped > 0 {
		args = append(args, "similar_lines_suppressed", skipped)
	}
	s.log.Log(context.Background(), level, msg, args...)
}

// Serve accepts TLS connections on ln until ctx is done, then closes ln and
// every connection, waits for their handlers and returns nil. It returns an
// error if ln fails for another reason. Temporary accept errors (such as
// running out of file descriptors) are retried with backoff.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	return acceptLoop(ctx, s.log, "accept", func(context.Context) (net.Conn, error) { return ln.Accept() },
		func(err error) bool { return errors.Is(err, net.ErrClosed) },
		func(c net.Conn) {
			defer c.Close()
			release, ok := s.Admit(ctx, c.RemoteAddr())
			if !ok {
				return
			}
			defer release()
			s.HandleStream(ctx, c, c.RemoteAddr(), nil)
		})
}

// acceptLoop runs handle on its own goroutine for each connection accept
// returns, until ctx is done (nil) or accept fails for good (closed says
// which errors mean that); it then waits for the handlers. Other accept
// errors, such as running out of file descriptors, are retried with backoff.
func acceptLoop[C any](ctx context.Context, log *slog.Logger, what string, accept func(context.Context) (C, error), closed func(error) bool, handle func(C)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wait := 10 * time.Millisecond
	for {
		c, err := accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if closed(err) {
				return fmt.Errorf("d4server: %s: %w", what, err)
			}
			log.Warn("d4server: "+what+" failed; retrying", "err", err, "retry_in", wait)
			if ctxtime.Sleep(ctx, wait) != nil {
				return nil
			}
			wait = min(2*wait, time.Second)
			continue
		}
		wait = 10 * time.Millisecond
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(c)
		}()
	}
}

// peerIP is d4-core's <ip>: the address without port, IPv4-mapped prefix
// stripped.
func peerIP(a net.Addr) string {
	if ip := addrOf(a); ip.IsValid() {
		return ip.WithZone("").String()
	}
	return a.String()
}

// LoadKeys reads a sensor key list: one "<uuid> <key>" per line, uuid in
// either form, the key being the rest of the line without surrounding
// whitespace (inner spaces are kept, and '#' inside a key is part of it).
// Blank lines and lines starting with '#' are ignored. Uuids must be v4 and
// unique, keys non-empty; errors name the line.
func LoadKeys(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("d4server: key list: %w", err)
	}
	defer f.Close()
	keys := make(map[string][]byte)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		u, k := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			u, k = line[:i], strings.TrimSpace(line[i+1:])
		}
		id, err := d4.ParseUUID(u)
		switch {
		case err != nil:
			return nil, fmt.Errorf("d4server: %s:%d: %w", path, n, err)
		case !id.IsV4():
			return nil, fmt.Errorf("d4server: %s:%d: uuid %s is not version 4", path, n, u)
		case k == "":
			return nil, fmt.Errorf("d4server: %s:%d: no key after the uuid", path, n)
		}
		if _, dup := keys[id.Hex()]; dup {
			return nil, fmt.Errorf("d4server: %s:%d: uuid %s listed twice", path, n, u)
		}
		keys[id.Hex()] = []byte(k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("d4server: key list %s: %w", path, err)
	}
	return keys, nil
}
