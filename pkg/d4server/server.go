// Package d4server is xtrail's D4 server for the maltrail path: it accepts
// D4 sessions (a type-2 meta header {"type":"maltrail"} then type-254 frames,
// spec d4.md §2-§3) over TLS, or any transport through HandleStream,
// authenticates every frame by its HMAC, splits the payloads into lines as
// d4-core's maltrail handler does, and stores them in d4-core's Redis layout
// (§4) or an in-process store.
//
// Differences from d4-core's server, on purpose (spec §8-§9): the HMAC is
// verified (in constant time) before anything is written about a uuid, so an
// unauthenticated peer can create no per-sensor state and cannot write Error
// strings; lines are queued synchronously while the frame is read (no stream
// plus polling worker), so a slow store slows the sensor down instead of
// growing memory; a connection idle for IdleTimeout is closed even in the
// middle of a frame; and rejections are counted.
package d4server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtrail/xtrail/internal/ctxtime"
	"github.com/xtrail/xtrail/pkg/d4"
)

// Server modes (d4-core's server_mode, spec §3.3).
const (
	// ModeSharedSecret accepts any v4 uuid; its own key if Config.Keys has
	// one, else Config.DefaultKey.
	ModeSharedSecret = "shared-secret"
	// ModeRegistration accepts only the uuids of Config.Keys.
	ModeRegistration = "registration"
)

// Defaults of Config.
const (
	DefaultAddr        = ":4443"
	DefaultIdleTimeout = 30 * time.Second
)

// MetaTypeMaltrail is the only meta type this server accepts.
const MetaTypeMaltrail = "maltrail"

// maxMetaHeader bounds the type-2 buffer: d4-goclient refuses meta headers
// above 100 000 bytes, so a longer one is not a meta header.
const maxMetaHeader = 100_000

// storeRetryMax caps the backoff while the store refuses lines.
const storeRetryMax = 5 * time.Second

// Config configures a Server.
type Config struct {
	Store Store // required
	// Mode is ModeSharedSecret or ModeRegistration; "" means registration,
	// the safer one and d4-core's sample default.
	Mode string
	// DefaultKey is the HMAC key of sensors without their own key.
	DefaultKey []byte
	// Keys maps sensor uuids (32 hex or dashed) to their own HMAC key; in
	// registration mode it is the list of accepted sensors. See LoadKeys.
	Keys map[string][]byte
	// MaxPayload is the largest accepted frame payload; 0 means
	// d4.MaxPayload (1 000 000, as d4-core).
	MaxPayload uint32
	// IdleTimeout closes a connection that sent no byte for this long; 0
	// means DefaultIdleTimeout.
	IdleTimeout time.Duration
	Logger      *slog.Logger     // nil discards logs
	Now         func() time.Time // nil means time.Now
}

// Rejection reasons, as counted in Stats.Rejected and logged.
const (
	ReasonTooLarge          = "payload too large"
	ReasonNotV4             = "uuid not v4"
	ReasonUnregistered      = "unregistered uuid"
	ReasonHMAC              = "hmac mismatch"
	ReasonNoMetaHeader      = "type 254 before a type-2 meta header"
	ReasonTypeChange        = "type change"
	ReasonUUIDChange        = "uuid change"
	ReasonUnsupportedType   = "unsupported type"
	ReasonBadMetaHeader     = "invalid meta header"
	ReasonUnsupportedMeta   = "unsupported meta type"
	ReasonIncompleteMeta    = "type 254 before the meta header was complete"
	ReasonMetaHeaderTooLong = "meta header too large"
)

var reasons = []string{
	ReasonTooLarge, ReasonNotV4, ReasonUnregistered, ReasonHMAC, ReasonNoMetaHeader,
	ReasonTypeChange, ReasonUUIDChange, ReasonUnsupportedType, ReasonBadMetaHeader,
	ReasonUnsupportedMeta, ReasonIncompleteMeta, ReasonMetaHeaderTooLong,
}

// Stats are a Server's counters since New.
type Stats struct {
	ActiveConns  int64
	Conns        uint64            // connections accepted
	Frames       uint64            // frames accepted
	PayloadBytes uint64            // payload bytes of accepted frames
	Lines        uint64            // lines stored
	IdleTimeouts uint64            // connections closed for silence
	ReadErrors   uint64            // TLS or transport errors, truncated frames
	StoreErrors  uint64            // failed store calls (lines are retried)
	Panics       uint64            // recovered handler panics (bugs)
	Rejected     map[string]uint64 // per reason; every reason is present
}

// Server accepts D4 sessions. Create it with New and run it with Serve.
type Server struct {
	store      Store
	register   bool
	defaultKey []byte
	keys       map[string][]byte // by 32-hex uuid
	maxPayload uint32
	idle       time.Duration
	log        *slog.Logger
	now        func() time.Time

	active                                                          atomic.Int64
	conns, frames, bytes, lines, idles, readErrs, storeErrs, panics atomic.Uint64
	rejected                                                        map[string]*atomic.Uint64
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("d4server: Config.Store is required")
	}
	s := &Server{
		store:      cfg.Store,
		defaultKey: cfg.DefaultKey,
		keys:       make(map[string][]byte, len(cfg.Keys)),
		maxPayload: cfg.MaxPayload,
		idle:       cfg.IdleTimeout,
		log:        cfg.Logger,
		now:        cfg.Now,
		rejected:   make(map[string]*atomic.Uint64, len(reasons)),
	}
	switch cfg.Mode {
	case "", ModeRegistration:
		s.register = true
		if len(cfg.Keys) == 0 {
			return nil, errors.New("d4server: registration mode needs at least one sensor key")
		}
	case ModeSharedSecret:
		if len(cfg.DefaultKey) == 0 && len(cfg.Keys) == 0 {
			return nil, errors.New("d4server: shared-secret mode needs a default key")
		}
	default:
		return nil, fmt.Errorf("d4server: unknown mode %q (want %q or %q)", cfg.Mode, ModeSharedSecret, ModeRegistration)
	}
	for u, k := range cfg.Keys {
		id, err := d4.ParseUUID(u)
		if err != nil {
			return nil, fmt.Errorf("d4server: key list: %w", err)
		}
		if len(k) == 0 {
			return nil, fmt.Errorf("d4server: key list: empty key for %s", u)
		}
		s.keys[id.Hex()] = k
	}
	if s.maxPayload == 0 {
		s.maxPayload = d4.MaxPayload
	}
	if s.idle <= 0 {
		s.idle = DefaultIdleTimeout
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

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		ActiveConns:  s.active.Load(),
		Conns:        s.conns.Load(),
		Frames:       s.frames.Load(),
		PayloadBytes: s.bytes.Load(),
		Lines:        s.lines.Load(),
		IdleTimeouts: s.idles.Load(),
		ReadErrors:   s.readErrs.Load(),
		StoreErrors:  s.storeErrs.Load(),
		Panics:       s.panics.Load(),
		Rejected:     make(map[string]uint64, len(s.rejected)),
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

// Serve accepts connections on ln until ctx is done, then closes ln and every
// connection, waits for their handlers and returns nil. It returns an error
// if ln fails for another reason. Temporary accept errors (such as running
// out of file descriptors) are retried with backoff.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	wait := 10 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("d4server: accept: %w", err)
			}
			s.log.Warn("d4server: accept failed; retrying", "err", err, "retry_in", wait)
			if ctxtime.Sleep(ctx, wait) != nil {
				return nil
			}
			wait = min(2*wait, time.Second)
			continue
		}
		wait = 10 * time.Millisecond
		s.conns.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			s.HandleStream(ctx, c, c.RemoteAddr(), nil)
		}()
	}
}

// peerIP is d4-core's <ip>: the address without port, IPv4-mapped prefix
// stripped.
func peerIP(a net.Addr) string {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap().WithZone("").String()
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
