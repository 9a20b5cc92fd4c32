package d4server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/pkg/d4"
)

// d4-core's sensor registry keys (spec §3.3, d4-core's Sensor.py), all in
// Redis_METADATA.
const (
	keyRegistered     = "registered_uuid"
	keyPending        = "sensor_pending_registration"
	keyDefaultKey     = "server:hmac_default_key"
	keyBlacklistUUID  = "blacklist_uuid"
	keyBlacklistIPofU = "blacklist_ip_by_uuid"
	keyBlacklistIP    = "blacklist_ip"
	fieldHMACKey      = "hmac_key"
)

// MaxKeyLen is the longest sensor key the admin commands accept: d4-core's
// web UI truncates keys to 100 characters and d4-goclient reads at most 100
// bytes of its key file, so a longer key could not work everywhere.
const MaxKeyLen = 100

// RedisRegistry is the Registry on d4-core's keys: registered_uuid, the
// hmac_key field of metadata_uuid:<u>, server:hmac_default_key and the
// blacklists, so sensors registered in d4-core's web UI or with `xtrail
// server sensors` are the same. Answers are cached for registryCacheTTL.
type RedisRegistry struct {
	s          *RedisStore
	register   bool
	defaultKey []byte // overrides server:hmac_default_key when set

	sensors answerCache[string, sensorAnswer]
	peers   answerCache[netip.Addr, bool]
}

type sensorAnswer struct {
	v   Verdict
	key []byte
}

// Registry returns the store's registry for a server mode; defaultKey, if
// set, is used instead of server:hmac_default_key (SetDefaultKey writes it
// there for d4-core's UI, as d4-core's server does at start).
func (s *RedisStore) Registry(mode string, defaultKey []byte) (*RedisRegistry, error) {
	r := &RedisRegistry{s: s, defaultKey: defaultKey}
	switch mode {
	case "", ModeRegistration:
		r.register = true
	case ModeSharedSecret:
	default:
		return nil, fmt.Errorf("d4server: unknown mode %q (want %q or %q)", mode, ModeSharedSecret, ModeRegistration)
	}
	return r, nil
}

// SensorKey implements Registry with one round trip per uncached uuid.
func (r *RedisRegistry) SensorKey(ctx context.Context, uuid string) (Verdict, []byte, error) {
	now := time.Now()
	if a, ok := r.sensors.get(uuid, now); ok {
		return a.v, a.key, nil
	}
	var reg, blU, blIPU, intact *redis.BoolCmd
	var own, def *redis.StringCmd
	for restored := false; ; restored = true {
		_, err := r.s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
			reg = p.SIsMember(ctx, keyRegistered, uuid)
			own = p.HGet(ctx, keyMetadataUUID(uuid), fieldHMACKey)
			def = p.Get(ctx, keyDefaultKey)
			blU = p.SIsMember(ctx, keyBlacklistUUID, uuid)
			blIPU = p.SIsMember(ctx, keyBlacklistIPofU, uuid)
			intact = p.SIsMember(ctx, keyAcceptedExtended, MetaTypeMaltrail)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, nil, fmt.Errorf("d4server: redis sensor %s: %w", uuid, err)
		}
		if intact.Val() || restored {
			break
		}
		// Redis restarted empty: the kept sensors are written again
		// before this one is judged unregistered.
		if err := r.s.restore(ctx); err != nil {
			return 0, nil, err
		}
	}
	a := sensorAnswer{v: Allowed, key: []byte(own.Val())}
	if len(a.key) == 0 {
		a.key = r.defaultKey
		if len(a.key) == 0 {
			a.key = []byte(def.Val())
		}
	}
	switch {
	case blU.Val() || blIPU.Val():
		a = sensorAnswer{v: Blacklisted}
	case (r.register && !reg.Val()) || len(a.key) == 0:
		a = sensorAnswer{v: Unregistered}
	}
	r.sensors.put(uuid, a, now)
	return a.v, a.key, nil
}

// PeerAllowed implements Registry on d4-core's blacklist_ip.
func (r *RedisRegistry) PeerAllowed(ctx context.Context, ip netip.Addr) (bool, error) {
	now := time.Now()
	if ok, hit := r.peers.get(ip, now); hit {
		return ok, nil
	}
	black, err := r.s.meta.SIsMember(ctx, keyBlacklistIP, ip.String()).Result()
	if err != nil {
		return false, fmt.Errorf("d4server: redis blacklist_ip: %w", err)
	}
	r.peers.put(ip, !black, now)
	return !black, nil
}

// SensorRecord is a registered or pending sensor, as `xtrail server sensors
// list` shows it.
type SensorRecord struct {
	UUID        string // 32 hex
	Registered  bool   // in registered_uuid (else pending)
	OwnKey      bool   // has its own hmac_key (else the default key)
	Description string
	FirstSeen   time.Time // zero if never seen
	LastSeen    time.Time
	Error       string
}

// NewSensorKey returns a random key: 32 bytes, base64url without padding
// (43 printable characters that d4-core's UI shows unchanged).
func NewSensorKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("d4server: random key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// checkSensorKey refuses keys other D4 tools would mangle.
func checkSensorKey(key string) error {
	switch {
	case key == "":
		return errors.New("d4server: empty sensor key")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("d4server: sensor key of %d bytes; d4-core and d4-goclient use at most %d", len(key), MaxKeyLen)
	case strings.ContainsAny(key, "\r\n"):
		return errors.New("d4server: sensor key contains a line break")
	}
	return nil
}

// sensorUUID parses a uuid in either form and returns d4-core's 32-hex form.
func sensorUUID(u string) (string, error) {
	id, err := d4.ParseUUID(u)
	if err != nil {
		return "", err
	}
	if !id.IsV4() {
		return "", fmt.Errorf("d4server: uuid %s is not version 4", u)
	}
	return id.Hex(), nil
}

// AddSensor registers a sensor with its key, as d4-core's registration plus
// approval does (hmac_key, registered_uuid, out of the pending set).
func (s *RedisStore) AddSensor(ctx context.Context, uuid, key, description string) error {
	u, err := sensorUUID(uuid)
	if err != nil {
		return err
	}
	if err := checkSensorKey(key); err != nil {
		return err
	}
	// The key first, then the registration: the keys live in different
	// hash slots on a cluster, so no transaction spans them, and a server
	// must never find the sensor registered without its key.
	fields := []any{fieldHMACKey, key}
	if description != "" {
		fields = append(fields, "description", description)
	}
	err = s.meta.HSet(ctx, keyMetadataUUID(u), fields...).Err()
	if err == nil {
		_, err = s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.SAdd(ctx, keyRegistered, u)
			p.SRem(ctx, keyPending, u)
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("d4server: redis add sensor %s: %w", u, err)
	}
	return nil
}

// errNotRegistered is returned by admin calls on an unknown sensor.
var errNotRegistered = errors.New("d4server: sensor not registered")

// SetSensorKey replaces a registered sensor's key. Sessions already open keep
// the key they were verified with; new ones use the new key within
// registryCacheTTL.
func (s *RedisStore) SetSensorKey(ctx context.Context, uuid, key string) error {
	u, err := sensorUUID(uuid)
	if err != nil {
		return err
	}
	if err := checkSensorKey(key); err != nil {
		return err
	}
	ok, err := s.meta.SIsMember(ctx, keyRegistered, u).Result()
	if err != nil {
		return fmt.Errorf("d4server: redis sensor %s: %w", u, err)
	}
	if !ok {
		return fmt.Errorf("%w: %s", errNotRegistered, u)
	}
	if err := s.meta.HSet(ctx, keyMetadataUUID(u), fieldHMACKey, key).Err(); err != nil {
		return fmt.Errorf("d4server: redis set key of %s: %w", u, err)
	}
	return nil
}

// RemoveSensor unregisters a sensor and deletes its key; its statistics stay
// (d4-core's UI keeps showing its history).
func (s *RedisStore) RemoveSensor(ctx context.Context, uuid string) error {
	u, err := sensorUUID(uuid)
	if err != nil {
		return err
	}
	// The registration first, then the key (see AddSensor).
	var removed *redis.IntCmd
	_, err = s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		removed = p.SRem(ctx, keyRegistered, u)
		p.SRem(ctx, keyPending, u)
		return nil
	})
	if err == nil {
		err = s.meta.HDel(ctx, keyMetadataUUID(u), fieldHMACKey).Err()
	}
	if err != nil {
		return fmt.Errorf("d4server: redis remove sensor %s: %w", u, err)
	}
	if removed.Val() == 0 {
		return fmt.Errorf("%w: %s", errNotRegistered, u)
	}
	return nil
}

// SetDefaultKey writes server:hmac_default_key, as d4-core's server does at
// start with its configured default key.
func (s *RedisStore) SetDefaultKey(ctx context.Context, key string) error {
	if err := s.meta.Set(ctx, keyDefaultKey, key, 0).Err(); err != nil {
		return fmt.Errorf("d4server: redis set default key: %w", err)
	}
	return nil
}

// ListSensors returns the registered and pending sensors, sorted by uuid.
func (s *RedisStore) ListSensors(ctx context.Context) ([]SensorRecord, error) {
	var reg, pend *redis.StringSliceCmd
	_, err := s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		reg = p.SMembers(ctx, keyRegistered)
		pend = p.SMembers(ctx, keyPending)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("d4server: redis list sensors: %w", err)
	}
	var recs []SensorRecord
	for _, u := range reg.Val() {
		recs = append(recs, SensorRecord{UUID: u, Registered: true})
	}
	for _, u := range pend.Val() {
		if !slices.Contains(reg.Val(), u) {
			recs = append(recs, SensorRecord{UUID: u})
		}
	}
	slices.SortFunc(recs, func(a, b SensorRecord) int { return strings.Compare(a.UUID, b.UUID) })
	meta := make([]*redis.MapStringStringCmd, len(recs))
	_, err = s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range recs {
			meta[i] = p.HGetAll(ctx, keyMetadataUUID(r.UUID))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("d4server: redis sensor metadata: %w", err)
	}
	for i := range recs {
		m := meta[i].Val()
		recs[i].OwnKey = m[fieldHMACKey] != ""
		recs[i].Description = m["description"]
		recs[i].Error = m["Error"]
		recs[i].FirstSeen = epochField(m["first_seen"])
		recs[i].LastSeen = epochField(m["last_seen"])
	}
	return recs, nil
}

// epochField reads d4-core's integer epoch fields; anything else is zero.
func epochField(v string) time.Time {
	var sec int64
	if _, err := fmt.Sscan(v, &sec); err != nil || sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}
