package d4server

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

// Verdict is a registry's answer about a sensor uuid.
type Verdict uint8

// Registry verdicts.
const (
	// Allowed: the sensor may send, with the returned key.
	Allowed Verdict = iota
	// Unregistered: registration mode and the uuid is not registered (or
	// has no key at all).
	Unregistered
	// Blacklisted: d4-core's blacklist_uuid or blacklist_ip_by_uuid holds
	// the uuid.
	Blacklisted
)

// Registry says which sensors may send and with which HMAC key. The server
// asks it once per session, before it reads or allocates anything of the
// session's first payload, so an answer may come from a short cache.
type Registry interface {
	// SensorKey returns the verdict on sensor uuid (32 hex) and, when
	// Allowed, its HMAC key.
	SensorKey(ctx context.Context, uuid string) (Verdict, []byte, error)
	// PeerAllowed reports whether a peer address may connect at all
	// (d4-core's blacklist_ip).
	PeerAllowed(ctx context.Context, ip netip.Addr) (bool, error)
}

// StaticRegistry is a fixed key list (the server's -keys file) and default
// key, for the in-process store.
type StaticRegistry struct {
	register   bool
	defaultKey []byte
	keys       map[string][]byte // by 32-hex uuid
}

// NewStaticRegistry checks the key list (uuids in either form, v4, non-empty
// keys) and returns its registry. In registration mode only listed uuids are
// Allowed; in shared-secret mode any uuid is, with its own key or defaultKey.
func NewStaticRegistry(mode string, defaultKey []byte, keys map[string][]byte) (*StaticRegistry, error) {
	r := &StaticRegistry{defaultKey: defaultKey, keys: make(map[string][]byte, len(keys))}
	switch mode {
	case "", ModeRegistration:
		r.register = true
		if len(keys) == 0 {
			return nil, fmt.Errorf("d4server: registration mode needs at least one sensor key")
		}
	case ModeSharedSecret:
		if len(defaultKey) == 0 && len(keys) == 0 {
			return nil, fmt.Errorf("d4server: shared-secret mode needs a default key")
		}
	default:
		return nil, fmt.Errorf("d4server: unknown mode %q (want %q or %q)", mode, ModeSharedSecret, ModeRegistration)
	}
	for u, k := range keys {
		id, err := d4.ParseUUID(u)
		if err != nil {
			return nil, fmt.Errorf("d4server: key list: %w", err)
		}
		if len(k) == 0 {
			return nil, fmt.Errorf("d4server: key list: empty key for %s", u)
		}
		r.keys[id.Hex()] = k
	}
	return r, nil
}

// SensorKey implements Registry.
func (r *StaticRegistry) SensorKey(_ context.Context, uuid string) (Verdict, []byte, error) {
	if k, ok := r.keys[uuid]; ok {
		return Allowed, k, nil
	}
	if r.register || len(r.defaultKey) == 0 {
		return Unregistered, nil, nil
	}
	return Allowed, r.defaultKey, nil
}

// PeerAllowed implements Registry: a key file has no address blacklist.
func (r *StaticRegistry) PeerAllowed(context.Context, netip.Addr) (bool, error) { return true, nil }

// registryCacheTTL bounds how long a cached answer is used: a key rotated or
// a sensor removed applies to new sessions within this delay.
const registryCacheTTL = 10 * time.Second

// registryCacheMax bounds the cache: unknown uuids are cached too (an
// attacker may try many), so the cache is cleared when it grows past this.
const registryCacheMax = 16384

// answerCache caches registry answers for registryCacheTTL.
type answerCache[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]cached[V]
}

type cached[V any] struct {
	v       V
	expires time.Time
}

func (c *answerCache[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || now.After(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *answerCache[K, V]) put(k K, v V, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= registryCacheMax {
		c.m = make(map[K]cached[V])
	}
	c.m[k] = cached[V]{v: v, expires: now.Add(registryCacheTTL)}
}
