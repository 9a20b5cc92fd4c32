package d4server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is d4-core's Redis_METADATA (spec §4): port 6380, db 0.
const DefaultRedisURL = "redis://127.0.0.1:6380/0"

// DefaultAnalyzerDB is d4-core's Redis_ANALYZER database; d4_export_udp.py
// hard-codes it, so queues must live there for d4-core exporters to work.
const DefaultAnalyzerDB = 2

// routeTTL bounds how long PushLines trusts its cached list of target queues.
// Queues are registered rarely (web UI, RegisterQueue) while lines arrive
// constantly; caching keeps PushLines at one round trip per store per batch,
// and a queue created elsewhere starts receiving within this delay.
const routeTTL = time.Second

// popBlock is the BLMOVE timeout. go-redis cannot interrupt a blocking read
// when its context is cancelled, so Pop blocks in slices this long and checks
// the context between them: it bounds shutdown latency, it is not a poll.
const popBlock = time.Second

// RedisConfig says where each part of d4-core's layout lives (spec §4).
// d4-core splits it over two instances: Redis_STREAM (6379 db 0) and
// Redis_METADATA (6380 db 0) with the analyzer queues in db 2 of the latter.
// xtrail uses one instance by default: everything on Metadata's server.
//
// Each URL may name a Redis Cluster instead, in go-redis's cluster form
// redis://HOST:PORT?addr=HOST:PORT&addr=HOST:PORT. A cluster has database 0
// only: the queues are there too. Key names are d4-core's either way; the
// keys that must move together share a hash slot (see docs/architecture.md).
type RedisConfig struct {
	// Metadata is the URL of Redis_METADATA: sensors, keys, statistics,
	// queue registrations. "" means DefaultRedisURL.
	Metadata string
	// Analyzer is the URL of Redis_ANALYZER (the queues); "" means
	// Metadata's server with database AnalyzerDB (a cluster: database 0).
	Analyzer   string
	AnalyzerDB int
	// Stream is the URL of Redis_STREAM (session state and xtrail's replay
	// state); "" means Metadata's server and database.
	Stream string
	// QueueMaxSize is the LTRIM bound of a queue without a max_size field
	// (d4-core's analyzer_queues_max_size); 0 means DefaultQueueMaxSize.
	QueueMaxSize int64
	// Replicas is how many replicas must hold a frame's lines and replay
	// mark before the frame counts as stored (and is acknowledged to the
	// sensor): Redis replicates asynchronously, and a failover to a replica
	// that lacks them would lose them. Negative means the default: 1 on a
	// cluster, 0 on a single server.
	Replicas int
	// ReplicaTimeout bounds one WAIT; a wait that times out is repeated.
	// 0 means DefaultReplicaTimeout.
	ReplicaTimeout time.Duration
	Logger         *slog.Logger // nil discards
}

// RedisStore is the Store in d4-core's Redis layout (spec §4).
type RedisStore struct {
	meta   *rconn // Redis_METADATA
	an     *rconn // Redis_ANALYZER
	stream *rconn // Redis_STREAM
	max    int64  // LTRIM bound when analyzer:<q> has no max_size
	log    *slog.Logger

	mu     sync.Mutex
	routes map[routeKey]route
	known  map[string]knownQueue // queues registered or routed to, for restore
	kept   map[string]string     // sensors kept (uuid hex -> key), for restore

	restoreMu sync.Mutex // one restore at a time

	restores, replicaWaits atomic.Uint64
	waitLog                atomic.Int64 // unix nanos of the last replica-wait log line
}

type routeKey struct{ metaType, uuid string }

type route struct {
	queues  []queueTarget
	expires time.Time
}

type queueTarget struct {
	uuid string
	max  int64
}

// knownQueue is what RegisterQueue needs to write a queue again.
type knownQueue struct{ metaType, description string }

// RedisOption adjusts a RedisStore made by NewRedisStore.
type RedisOption func(*RedisConfig)

// WithQueueMaxSize sets the default queue bound (d4-core's
// analyzer_queues_max_size) used when a queue has no max_size of its own.
func WithQueueMaxSize(n int64) RedisOption {
	return func(c *RedisConfig) { c.QueueMaxSize = n }
}

// WithReplicas sets RedisConfig.Replicas and ReplicaTimeout.
func WithReplicas(n int, timeout time.Duration) RedisOption {
	return func(c *RedisConfig) { c.Replicas, c.ReplicaTimeout = n, timeout }
}

// NewRedisStore is OpenRedis on one server or cluster: url is the metadata
// database ("" means DefaultRedisURL), analyzerDB the queues' database (on
// a single server).
func NewRedisStore(url string, analyzerDB int, opts ...RedisOption) (*RedisStore, error) {
	cfg := RedisConfig{Metadata: url, AnalyzerDB: analyzerDB, Replicas: -1}
	for _, o := range opts {
		o(&cfg)
	}
	return OpenRedis(cfg)
}

// OpenRedis returns a store on the configured instances. It does not dial:
// call Ping or Init to check them.
func OpenRedis(cfg RedisConfig) (*RedisStore, error) {
	if cfg.Metadata == "" {
		cfg.Metadata = DefaultRedisURL
	}
	s := &RedisStore{
		max:    cfg.QueueMaxSize,
		log:    cfg.Logger,
		routes: make(map[routeKey]route),
		known:  make(map[string]knownQueue),
		kept:   make(map[string]string),
	}
	if s.max <= 0 {
		s.max = DefaultQueueMaxSize
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if s.meta, err = dialURL(cfg.Metadata, -1); err != nil {
		return nil, fmt.Errorf("d4server: metadata %w", err)
	}
	an, db := cfg.Analyzer, cfg.AnalyzerDB
	if an == "" {
		an = cfg.Metadata
	} else {
		db = -1 // the URL's own database
	}
	if s.an, err = dialURL(an, db); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("d4server: analyzer %w", err)
	}
	s.stream = s.meta
	if cfg.Stream != "" && cfg.Stream != cfg.Metadata {
		if s.stream, err = dialURL(cfg.Stream, -1); err != nil {
			s.stream = s.meta
			_ = s.Close()
			return nil, fmt.Errorf("d4server: stream %w", err)
		}
	}
	if cfg.ReplicaTimeout <= 0 {
		cfg.ReplicaTimeout = DefaultReplicaTimeout
	}
	for _, c := range []*rconn{s.meta, s.an, s.stream} {
		c.replicas = cfg.Replicas
		if c.replicas < 0 {
			c.replicas = 0
			if c.cluster != nil {
				c.replicas = 1
			}
		}
		c.timeout, c.waits, c.log = cfg.ReplicaTimeout, &s.replicaWaits, s.logWait
	}
	return s, nil
}

// logWait logs a replica wait at most every ten seconds.
func (s *RedisStore) logWait(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := s.waitLog.Load()
	if now-last < int64(10*time.Second) || !s.waitLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn(msg, append(args, "waits_so_far", s.replicaWaits.Load())...)
}

// Cluster reports whether the queues live on a Redis Cluster.
func (s *RedisStore) Cluster() bool { return s.an.cluster != nil }

// Replicas returns how many replicas a frame's lines wait for.
func (s *RedisStore) Replicas() int { return s.an.replicas }

// Ping checks that every instance answers (d4_export_udp.py pings at start),
// every primary of a cluster.
func (s *RedisStore) Ping(ctx context.Context) error {
	for _, c := range []struct {
		name string
		c    *rconn
	}{{"metadata", s.meta}, {"analyzer", s.an}, {"stream", s.stream}} {
		if err := c.c.ping(ctx); err != nil {
			return fmt.Errorf("d4server: redis ping (%s, %s): %w", c.name, c.c.name, err)
		}
	}
	return nil
}

// Close closes the clients.
func (s *RedisStore) Close() error {
	var err error
	if s.meta != nil {
		err = s.meta.Close()
	}
	if s.an != nil {
		err = errors.Join(err, s.an.Close())
	}
	if s.stream != nil && s.stream != s.meta {
		err = errors.Join(err, s.stream.Close())
	}
	return err
}

// RedisStats are a RedisStore's counters since it was opened.
type RedisStats struct {
	// ReplicaWaits counts the WAITs for replicas that timed out and were
	// repeated: frames held unacknowledged because a primary's replicas
	// lag or are gone.
	ReplicaWaits uint64
	// Restores counts the times the store found Redis emptied (its
	// registration keys gone) and wrote them, the known queues and the
	// kept sensors again.
	Restores uint64
}

// Stats returns a snapshot of the store's counters.
func (s *RedisStore) Stats() RedisStats {
	return RedisStats{ReplicaWaits: s.replicaWaits.Load(), Restores: s.restores.Load()}
}

// Init writes what d4-core's server writes at start, plus the maltrail
// extended type that d4-core needs an admin to add ("Add New Types").
func (s *RedisStore) Init(ctx context.Context) error {
	_, err := s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, "server:accepted_type", 1, 2, 4, 8, 254)
		p.SAdd(ctx, keyAcceptedExtended, "ja3-jl", MetaTypeMaltrail)
		p.SetNX(ctx, "first_date", day(time.Now()), 0)
		return nil
	})
	if err != nil {
		return fmt.Errorf("d4server: redis init: %w", err)
	}
	return nil
}

// keyAcceptedExtended doubles as the sign that Redis kept its data: Init
// writes maltrail into it, and only a flush or an empty restart removes it.
const keyAcceptedExtended = "server:accepted_extended_type"

// SensorSeen writes the per-frame statistics and sensor metadata of spec §4
// ("Per accepted frame", the METADATA part) in one round trip.
func (s *RedisStore) SensorSeen(ctx context.Context, v Sighting) error {
	d := day(v.Time)
	u, ip, t := v.UUID, v.IP, strconv.Itoa(int(v.Type))
	ts := v.Time.Unix()
	_, err := s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZIncrBy(ctx, "stat_uuid_ip:"+d+":"+u, 1, ip)
		p.ZIncrBy(ctx, "stat_ip_uuid:"+d+":"+ip, 1, u)
		p.ZIncrBy(ctx, "daily_uuid:"+d, 1, u)
		p.ZIncrBy(ctx, "daily_ip:"+d, 1, ip)
		p.ZIncrBy(ctx, "daily_type:"+d, 1, t)
		p.ZIncrBy(ctx, "stat_type_uuid:"+d+":"+t, 1, u)
		p.ZIncrBy(ctx, "stat_uuid_type:"+d+":"+u, 1, t)
		p.HSetNX(ctx, keyMetadataUUID(u), "first_seen", ts)
		p.HSet(ctx, keyMetadataUUID(u), "last_seen", ts)
		p.HDel(ctx, keyMetadataUUID(u), "Error")
		p.HSetNX(ctx, "metadata_type_by_uuid:"+u+":"+t, "first_seen", ts)
		p.HSet(ctx, "metadata_type_by_uuid:"+u+":"+t, "last_seen", ts)
		// Idempotent, so it is simply repeated rather than tracked per type.
		p.SAdd(ctx, "all_types_by_uuid:"+u, t)
		if v.MetaType != "" {
			p.SAdd(ctx, "all_extended_types_by_uuid:"+u, v.MetaType)
			k := "metadata_extended_type_by_uuid:" + u + ":" + v.MetaType
			p.HSetNX(ctx, k, "first_seen", ts)
			p.HSet(ctx, k, "last_seen", ts)
		}
		if v.SessionStart {
			p.LPush(ctx, "list_uuid_ip:"+u, ipStamp(ip, v.Time))
			p.LTrim(ctx, "list_uuid_ip:"+u, 0, 15)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("d4server: redis sensor %s seen: %w", u, err)
	}
	return nil
}

// SetError sets field Error of metadata_uuid:<u>.
func (s *RedisStore) SetError(ctx context.Context, uuid, msg string) error {
	if err := s.meta.HSet(ctx, keyMetadataUUID(uuid), "Error", msg).Err(); err != nil {
		return fmt.Errorf("d4server: redis set error of %s: %w", uuid, err)
	}
	return nil
}

// claimScript is ClaimFrame in one round trip. First the replay check: the
// frame's mark is field ARGV[1] (its HMAC) of the hash KEYS[1] of its sensor
// and timestamp second, valued with the session that sent it (ARGV[2]) and
// expiring at ARGV[4] (the time window passed); a mark of another session
// refuses the frame, and nothing else happens. Then the content claim,
// KEYS[3] (the sensor and its payload's SHA-256), for the session, with a
// lease of ARGV[3] ms, living ARGV[8] ms: "c <session> <lease end, ms>"
// while claimed, "s <session>" once stored. Then, when the claim is taken
// and ARGV[5] > 0, the sensor's rate (KEYS[2], a GCRA: the theoretical
// arrival time in µs of the sensor's next byte at ARGV[6] bytes/s with a
// burst of ARGV[7] bytes). The keys hold the sensor's hash tag, and the
// clock is Redis's, the same for every server. It returns the state, 1 if
// the claim was taken over, and the µs the frame must wait for the rate.
var claimScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and v ~= ARGV[2] then return {'refused', 0, 0} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[4])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local taken = 0
local c = redis.call('GET', KEYS[3])
if c then
	local kind, owner, lease = string.match(c, '^([cs]) (%S+) ?(%d*)$')
	if kind and owner ~= ARGV[2] then
		if kind == 's' then return {'stored', 0, 0} end
		if tonumber(lease) > ms then return {'busy', 0, 0} end
		taken = 1
	end
end
redis.call('SET', KEYS[3], 'c ' .. ARGV[2] .. ' ' .. (ms + tonumber(ARGV[3])), 'PX', ARGV[8])
local wait = 0
local bytes, rate = tonumber(ARGV[5]), tonumber(ARGV[6])
if bytes > 0 and rate > 0 then
	local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
	local tat = math.max(tonumber(redis.call('GET', KEYS[2]) or 0), us) + bytes * 1000000 / rate
	local allow = tat - tonumber(ARGV[7]) * 1000000 / rate
	if allow > us then wait = math.ceil(allow - us) end
	redis.call('SET', KEYS[2], string.format('%.0f', tat), 'PX', math.ceil((tat - us) / 1000) + 1000)
end
return {'owned', taken, wait}
`)

// ClaimFrame keeps the replay marks in Redis_STREAM, one hash per sensor and
// timestamp second (field: the HMAC), expiring when the time window has
// passed, the content claims next to them, and the sensor's rate, so all
// hold for every server on the store: one script call (claimScript). The
// claim is not waited for on replicas: FrameStored's wait covers it.
func (s *RedisStore) ClaimFrame(ctx context.Context, m Mark) (Claim, error) {
	res, err := claimScript.Run(ctx, s.stream, []string{keyReplay(m.UUID, m.Timestamp), keyRate(m.UUID), keyContent(m.UUID, m.Content)},
		string(m.HMAC[:]), m.Session, m.Lease.Milliseconds(), m.Expires.Unix(), m.Bytes, m.Rate, m.Burst, m.ClaimTTL.Milliseconds()).Slice()
	if err != nil {
		return Claim{}, fmt.Errorf("d4server: redis replay check of %s: %w", m.UUID, err)
	}
	if len(res) != 3 {
		return Claim{}, fmt.Errorf("d4server: redis replay check of %s: reply %v", m.UUID, res)
	}
	state, _ := res[0].(string)
	taken, _ := res[1].(int64)
	wait, _ := res[2].(int64)
	c := Claim{TakenOver: taken == 1, Limited: m.Rate > 0, Wait: time.Duration(wait) * time.Microsecond}
	switch state {
	case "owned":
		c.State = ClaimOwned
	case "stored":
		c.State = ClaimStored
	case "busy":
		c.State = ClaimBusy
	case "refused":
		c.State = ClaimRefused
	default:
		return Claim{}, fmt.Errorf("d4server: redis replay check of %s: state %q", m.UUID, state)
	}
	return c, nil
}

// FrameStored marks the frame's content stored; with replicas to wait for,
// the mark reaches them before the frame is acknowledged, and so do the
// replay mark and the claim written before it (WAIT counts the primary's
// replication stream up to this write), so a resend sent to another server
// after a failover is still known as stored, and a replay still refused.
func (s *RedisStore) FrameStored(ctx context.Context, m Mark) error {
	k := keyContent(m.UUID, m.Content)
	err := s.stream.durable(ctx, k, func(p redis.Pipeliner) {
		p.Set(ctx, k, "s "+m.Session, m.ClaimTTL)
	})
	if err != nil {
		return fmt.Errorf("d4server: redis frame of %s stored: %w", m.UUID, err)
	}
	return nil
}

// SessionState writes d4-core's connection sets in Redis_STREAM (spec §4,
// "Per session") so its web UI shows the sensor connected. xtrail writes no
// stream:<type>:<s> and no session_uuid:<type>: it stores lines itself, and
// d4-core workers finding those would queue the lines a second time.
//
// The sets live in different hash slots on a cluster, so no command or
// script spans them. A session joins its sensor's own sets before the
// global ones, and leaves them first; a server that takes the sensor out
// of a global set because its last session left looks again afterwards
// and puts it back if a session joined meanwhile (on any server), so
// concurrent servers end with the sensor listed while it has a session.
func (s *RedisStore) SessionState(ctx context.Context, ev SessionEvent) error {
	u, sid, t := ev.UUID, ev.Session, strconv.Itoa(int(ev.Type))
	var err error
	switch ev.Kind {
	case SessionOpened:
		err = s.sessionJoin(ctx, u, sid, t)
	case SessionMetaType:
		_, err = s.stream.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, "map:session-uuid_active_extended_type", sid, ev.MetaType)
			p.SAdd(ctx, "active_connection_extended_type:"+u, ev.MetaType)
			return nil
		})
	case SessionTypeChanged:
		if err = s.sessionLeave(ctx, u, sid, "2", "", false); err == nil {
			err = s.sessionJoin(ctx, u, sid, "254")
		}
	case SessionClosed:
		err = s.sessionLeave(ctx, u, sid, t, ev.MetaType, true)
	}
	if err != nil {
		return fmt.Errorf("d4server: redis session state of %s: %w", u, err)
	}
	return nil
}

func keySessionsOf(u string) string      { return "map:active_connection-uuid-session_uuid:" + u }
func keyTypeSessions(u, t string) string { return "active_uuid_type" + t + ":" + u }
func keyReplay(u string, ts uint64) string {
	return "xtrail:replay:{" + u + "}:" + strconv.FormatUint(ts, 10)
}

// keyContent is the content claim of a frame of sensor u whose payload's
// SHA-256 is sum, in its replay marks' slot.
func keyContent(u string, sum [32]byte) string {
	return "xtrail:content:{" + u + "}:" + hex.EncodeToString(sum[:])
}

// keyRate is the sensor's rate state, in its replay marks' slot.
func keyRate(u string) string { return "xtrail:rate:{" + u + "}" }

// sessionJoin adds session sid of sensor u to type t's sets: the sensor's
// own session sets first (see SessionState).
func (s *RedisStore) sessionJoin(ctx context.Context, u, sid, t string) error {
	_, err := s.stream.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, keySessionsOf(u), sid)
		p.SAdd(ctx, keyTypeSessions(u, t), sid)
		return nil
	})
	if err != nil {
		return err
	}
	return s.listed(ctx, true, u, t, true, true, "")
}

// listed adds sensor u to (or removes it from) type t's global sets and,
// with all, the sets of any session (metaType, if known, back into its
// extended types; removing clears them).
func (s *RedisStore) listed(ctx context.Context, add bool, u, t string, typ, all bool, metaType string) error {
	if !typ && !all {
		return nil
	}
	_, err := s.stream.Pipelined(ctx, func(p redis.Pipeliner) error {
		set := p.SRem
		if add {
			set = p.SAdd
		}
		if typ {
			set(ctx, "active_connection:"+t, u)
			set(ctx, "active_connection_by_uuid:"+u, t)
		}
		if all {
			set(ctx, "active_connection", u)
			switch {
			case !add:
				p.Del(ctx, "active_connection_extended_type:"+u)
			case metaType != "":
				p.SAdd(ctx, "active_connection_extended_type:"+u, metaType)
			}
		}
		return nil
	})
	return err
}

// sessionLeave removes session sid from type t's sets and, on close, from
// the sensor's; the sensor leaves a global set when its last session of
// that kind left, and comes back if one joined meanwhile (see
// SessionState).
func (s *RedisStore) sessionLeave(ctx context.Context, u, sid, t, metaType string, closing bool) error {
	var typeLeft, allLeft *redis.IntCmd
	_, err := s.stream.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SRem(ctx, keyTypeSessions(u, t), sid)
		typeLeft = p.SCard(ctx, keyTypeSessions(u, t))
		if closing {
			p.SRem(ctx, keySessionsOf(u), sid)
			p.HDel(ctx, "map:session-uuid_active_extended_type", sid)
			allLeft = p.SCard(ctx, keySessionsOf(u))
		}
		return nil
	})
	if err != nil {
		return err
	}
	lastOfType := typeLeft.Val() == 0
	last := closing && allLeft.Val() == 0
	if !lastOfType && !last {
		return nil
	}
	if err := s.listed(ctx, false, u, t, lastOfType, last, ""); err != nil {
		return err
	}
	// Look again: a session of the sensor may have joined meanwhile.
	var typeNow, allNow *redis.IntCmd
	_, err = s.stream.Pipelined(ctx, func(p redis.Pipeliner) error {
		typeNow = p.SCard(ctx, keyTypeSessions(u, t))
		allNow = p.SCard(ctx, keySessionsOf(u))
		return nil
	})
	if err != nil {
		return err
	}
	back := lastOfType && typeNow.Val() > 0
	backAll := last && allNow.Val() > 0
	if !back && !backAll {
		return nil
	}
	return s.listed(ctx, true, u, t, back, backAll, metaType)
}

// PushLines does d4-core's push for each line: LPUSH to every target queue,
// LTRIM to its bound, HSET last_updated. One LPUSH carries the whole batch:
// Redis pushes its arguments left to right, so the list ends exactly as with
// one LPUSH per line, and one LTRIM afterwards leaves the same max+1 newest.
// It returns the number of queues; with none it stores nothing.
func (s *RedisStore) PushLines(ctx context.Context, metaType, uuid string, lines [][]byte) (int, error) {
	if len(lines) == 0 {
		return 0, nil
	}
	targets, err := s.route(ctx, metaType, uuid)
	if err != nil || len(targets) == 0 {
		return 0, err
	}
	args := make([]any, len(lines))
	for i, l := range lines {
		args[i] = l
	}
	// Each queue is its own durable write: on a cluster the queues may
	// live on different primaries, and each one's replicas are waited for.
	for _, q := range targets {
		k := keyAnalyzerList(metaType, q.uuid)
		if err = s.an.durable(ctx, k, func(p redis.Pipeliner) {
			p.LPush(ctx, k, args...)
			p.LTrim(ctx, k, 0, q.max)
		}); err != nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("d4server: redis push %d lines of %s: %w", len(lines), uuid, err)
	}
	now := floatEpoch(time.Now())
	_, err = s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range targets {
			p.HSet(ctx, keyAnalyzerMeta(q.uuid), "last_updated", now)
		}
		return nil
	})
	if err != nil {
		// The lines are stored; only the UI's "last updated" is stale.
		s.log.Warn("d4server: redis queue last_updated failed", "err", err)
	}
	return len(targets), nil
}

// route returns the queues that receive metaType data from sensor uuid:
// the global ones (analyzer:254:<name>) and the sensor-group ones
// (sensor:queues:<name>:<u>), with their LTRIM bounds. When it finds Redis
// emptied, it writes the registrations it knows again first.
func (s *RedisStore) route(ctx context.Context, metaType, uuid string) ([]queueTarget, error) {
	k := routeKey{metaType, uuid}
	now := time.Now()
	s.mu.Lock()
	r, ok := s.routes[k]
	s.mu.Unlock()
	if ok && now.Before(r.expires) {
		return r.queues, nil
	}

	names, intact, err := s.queueNames(ctx, metaType, uuid)
	if err != nil {
		return nil, err
	}
	if !intact {
		if err := s.restore(ctx); err != nil {
			return nil, err
		}
		if names, _, err = s.queueNames(ctx, metaType, uuid); err != nil {
			return nil, err
		}
	}
	targets := make([]queueTarget, len(names))
	if len(names) > 0 {
		sizes := make([]*redis.StringCmd, len(names))
		_, err = s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, q := range names {
				sizes[i] = p.HGet(ctx, keyAnalyzerMeta(q), "max_size")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("d4server: redis queue sizes: %w", err)
		}
		for i, q := range names {
			targets[i] = queueTarget{uuid: q, max: s.max}
			if n, err := strconv.ParseInt(sizes[i].Val(), 10, 64); err == nil && n >= 0 {
				targets[i].max = n
			}
		}
	}

	s.mu.Lock()
	// Sessions come and go; drop stale entries so the cache stays the size
	// of the set of active sensors.
	if len(s.routes) > 256 {
		for rk, rv := range s.routes {
			if now.After(rv.expires) {
				delete(s.routes, rk)
			}
		}
	}
	s.routes[k] = route{queues: targets, expires: now.Add(routeTTL)}
	for _, q := range names {
		if _, ok := s.known[q]; !ok {
			s.known[q] = knownQueue{metaType: metaType}
		}
	}
	s.mu.Unlock()
	return targets, nil
}

// queueNames reads the queues of metaType for sensor uuid, and whether Redis
// still holds the registration keys Init wrote.
func (s *RedisStore) queueNames(ctx context.Context, metaType, uuid string) ([]string, bool, error) {
	var all, group *redis.StringSliceCmd
	var intact *redis.BoolCmd
	_, err := s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.SMembers(ctx, keyQueuesOfMetaType(metaType))
		group = p.SMembers(ctx, keySensorQueues(metaType, uuid))
		intact = p.SIsMember(ctx, keyAcceptedExtended, MetaTypeMaltrail)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("d4server: redis queues of %s: %w", metaType, err)
	}
	names := append(all.Val(), group.Val()...)
	slices.Sort(names)
	return slices.Compact(names), intact.Val(), nil
}

// restore writes every queue this store registered or routed to, the
// sensors it keeps, and Init's keys again: Redis lost them (an empty
// restart or a flush), and without them no line would be routed and no kept
// sensor let in until someone re-registers by hand. A queue or sensor an
// admin deleted while Redis kept its data is not restored. Init's keys go
// last: they tell every caller that Redis holds the registrations again.
func (s *RedisStore) restore(ctx context.Context) error {
	s.restoreMu.Lock()
	defer s.restoreMu.Unlock()
	// Another session may have restored it while this one waited.
	intact, err := s.meta.SIsMember(ctx, keyAcceptedExtended, MetaTypeMaltrail).Result()
	if err != nil {
		return fmt.Errorf("d4server: redis restore: %w", err)
	}
	if intact {
		return nil
	}
	s.mu.Lock()
	known := maps.Clone(s.known)
	kept := maps.Clone(s.kept)
	s.mu.Unlock()
	for q, k := range known {
		if err := s.writeQueue(ctx, k.metaType, q, k.description); err != nil {
			return err
		}
	}
	for u, key := range kept {
		if err := s.AddSensor(ctx, u, key, ""); err != nil {
			return err
		}
	}
	if err := s.Init(ctx); err != nil {
		return err
	}
	s.restores.Add(1)
	s.log.Warn("d4server: Redis lost its data (restarted empty or flushed): registration keys, queues and kept sensors written again; lines queued before are lost",
		"queues", len(known), "sensors", len(kept))
	return nil
}

// KeepSensor registers a sensor with its key (AddSensor) and keeps it in
// this store, so that a restore writes it again: the sensors of a server's
// -keys file come back when Redis restarts empty.
func (s *RedisStore) KeepSensor(ctx context.Context, uuid, key string) error {
	if err := s.AddSensor(ctx, uuid, key, ""); err != nil {
		return err
	}
	u, _ := sensorUUID(uuid) // AddSensor checked it
	s.mu.Lock()
	s.kept[u] = key
	s.mu.Unlock()
	return nil
}

// RegisterQueue writes d4-core's create_queues keys for a type-254 queue
// (spec §4). Unlike d4-core it is idempotent: registering an existing uuid
// again keeps it instead of silently creating a second queue, so a server or
// exporter can register its queue at every start. The description is written
// only where the queue has none, so a queue created in d4-core's UI keeps
// its own.
func (s *RedisStore) RegisterQueue(ctx context.Context, metaType, queueUUID, description string) (string, error) {
	q, err := checkQueueArgs(metaType, queueUUID)
	if err != nil {
		return "", err
	}
	if err := s.writeQueue(ctx, metaType, q, description); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.known[q] = knownQueue{metaType: metaType, description: description}
	clear(s.routes) // the new queue must get the very next lines
	s.mu.Unlock()
	return q, nil
}

func (s *RedisStore) writeQueue(ctx context.Context, metaType, q, description string) error {
	_, err := s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keyAnalyzerMeta(q), "type", 254, "metatype", metaType)
		if description != "" {
			p.HSetNX(ctx, keyAnalyzerMeta(q), "description", description)
		}
		p.SAdd(ctx, "all:analyzer:format_type", 254)
		p.SAdd(ctx, "all:analyzer:by:format_type:254", q)
		p.SAdd(ctx, "all:analyzer:by:extended_type:"+metaType, q)
		p.SAdd(ctx, "all:analyzer:extended_type", metaType)
		p.SAdd(ctx, "all_analyzer_queues", q)
		p.SAdd(ctx, keyQueuesOfMetaType(metaType), q)
		return nil
	})
	if err != nil {
		return fmt.Errorf("d4server: redis register queue %s: %w", q, err)
	}
	return nil
}

// QueueRegistered reports whether queue q is registered for metaType.
func (s *RedisStore) QueueRegistered(ctx context.Context, metaType, q string) (bool, error) {
	ok, err := s.meta.SIsMember(ctx, keyQueuesOfMetaType(metaType), q).Result()
	if err != nil {
		return false, fmt.Errorf("d4server: redis queue %s registered: %w", q, err)
	}
	return ok, nil
}
