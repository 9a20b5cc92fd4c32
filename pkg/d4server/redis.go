package d4server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
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

// RedisStore is the Store in d4-core's Redis layout (spec §4): metadata,
// statistics and queue metadata in one database, the analyzer queues (lists)
// in another, both on the same server.
type RedisStore struct {
	meta *redis.Client // Redis_METADATA
	an   *redis.Client // Redis_ANALYZER
	max  int64         // LTRIM bound when analyzer:<q> has no max_size

	mu     sync.Mutex
	routes map[routeKey]route
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

// RedisOption adjusts a RedisStore.
type RedisOption func(*RedisStore)

// WithQueueMaxSize sets the default queue bound (d4-core's
// analyzer_queues_max_size) used when a queue has no max_size of its own.
func WithQueueMaxSize(n int64) RedisOption {
	return func(s *RedisStore) {
		if n > 0 {
			s.max = n
		}
	}
}

// NewRedisStore connects to the Redis server of url ("" means
// DefaultRedisURL; the URL's database is the metadata database) and uses
// database analyzerDB of the same server for the analyzer queues. It does not
// dial: call Ping or Init to check the server.
func NewRedisStore(url string, analyzerDB int, opts ...RedisOption) (*RedisStore, error) {
	if url == "" {
		url = DefaultRedisURL
	}
	mo, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("d4server: redis url: %w", err)
	}
	ao := *mo
	ao.DB = analyzerDB
	s := &RedisStore{
		meta:   redis.NewClient(mo),
		an:     redis.NewClient(&ao),
		max:    DefaultQueueMaxSize,
		routes: make(map[routeKey]route),
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Ping checks that Redis answers (d4_export_udp.py does the same at start).
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.meta.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("d4server: redis ping: %w", err)
	}
	return nil
}

// Close closes both clients.
func (s *RedisStore) Close() error {
	return errors.Join(s.meta.Close(), s.an.Close())
}

// Init writes what d4-core's server writes at start, plus the maltrail
// extended type that d4-core needs an admin to add ("Add New Types").
func (s *RedisStore) Init(ctx context.Context) error {
	_, err := s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, "server:accepted_type", 1, 2, 4, 8, 254)
		p.SAdd(ctx, "server:accepted_extended_type", "ja3-jl", "maltrail")
		p.SetNX(ctx, "first_date", day(time.Now()), 0)
		return nil
	})
	if err != nil {
		return fmt.Errorf("d4server: redis init: %w", err)
	}
	return nil
}

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

// PushLines does d4-core's push for each line: LPUSH to every target queue,
// LTRIM to its bound, HSET last_updated. One LPUSH carries the whole batch:
// Redis pushes its arguments left to right, so the list ends exactly as with
// one LPUSH per line, and one LTRIM afterwards leaves the same max+1 newest.
func (s *RedisStore) PushLines(ctx context.Context, metaType, uuid string, lines [][]byte) error {
	if len(lines) == 0 {
		return nil
	}
	targets, err := s.route(ctx, metaType, uuid)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return nil // d4-core drops data no queue asked for
	}
	args := make([]any, len(lines))
	for i, l := range lines {
		args[i] = l
	}
	_, err = s.an.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range targets {
			k := keyAnalyzerList(metaType, q.uuid)
			p.LPush(ctx, k, args...)
			p.LTrim(ctx, k, 0, q.max)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("d4server: redis push %d lines of %s: %w", len(lines), uuid, err)
	}
	now := floatEpoch(time.Now())
	_, err = s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range targets {
			p.HSet(ctx, keyAnalyzerMeta(q.uuid), "last_updated", now)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("d4server: redis queue last_updated: %w", err)
	}
	return nil
}

// route returns the queues that receive metaType data from sensor uuid:
// the global ones (analyzer:254:<name>) and the sensor-group ones
// (sensor:queues:<name>:<u>), with their LTRIM bounds.
func (s *RedisStore) route(ctx context.Context, metaType, uuid string) ([]queueTarget, error) {
	k := routeKey{metaType, uuid}
	now := time.Now()
	s.mu.Lock()
	r, ok := s.routes[k]
	s.mu.Unlock()
	if ok && now.Before(r.expires) {
		return r.queues, nil
	}

	var all, group *redis.StringSliceCmd
	_, err := s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.SMembers(ctx, keyQueuesOfMetaType(metaType))
		group = p.SMembers(ctx, keySensorQueues(metaType, uuid))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("d4server: redis queues of %s: %w", metaType, err)
	}
	names := append(all.Val(), group.Val()...)
	slices.Sort(names)
	names = slices.Compact(names)

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
	s.mu.Unlock()
	return targets, nil
}

// RegisterQueue writes d4-core's create_queues keys for a type-254 queue
// (spec §4). Unlike d4-core it is idempotent: registering an existing uuid
// again keeps it (and updates the description) instead of silently creating a
// second queue, so a server can register its exporter's queue at every start.
func (s *RedisStore) RegisterQueue(ctx context.Context, metaType, queueUUID, description string) (string, error) {
	q, err := checkQueueArgs(metaType, queueUUID)
	if err != nil {
		return "", err
	}
	_, err = s.meta.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keyAnalyzerMeta(q), "type", 254, "metatype", metaType)
		if description != "" {
			p.HSet(ctx, keyAnalyzerMeta(q), "description", description)
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
		return "", fmt.Errorf("d4server: redis register queue %s: %w", q, err)
	}
	s.mu.Lock()
	clear(s.routes) // the new queue must get the very next lines
	s.mu.Unlock()
	return q, nil
}

// Queue returns the reliable consumer of analyzer:<metaType>:<queueUUID>.
// queueUUID must be given exactly as stored (with or without dashes).
func (s *RedisStore) Queue(metaType, queueUUID string) *RedisQueue {
	return &RedisQueue{
		c:        s.an,
		key:      keyAnalyzerList(metaType, queueUUID),
		inflight: keyInflight(metaType, queueUUID),
		dead:     keyDead(metaType, queueUUID),
	}
}

// RedisQueue consumes one d4-core analyzer list reliably (export.Queue).
// Producers LPUSH, so the oldest element is at the right: Pop is
// BLMOVE <list> <list>:inflight RIGHT LEFT, and the in-flight list in turn has
// its oldest element at the right. Several exporters may share a queue; each
// element goes to one of them. Because they also share the in-flight list, an
// exporter that restarts re-sends what the others hold at that moment
// (duplicates, never losses).
type RedisQueue struct {
	c                   *redis.Client
	key, inflight, dead string
}

// Name returns the Redis key of the queue.
func (q *RedisQueue) Name() string { return q.key }

// InFlight returns the in-flight list, oldest first.
func (q *RedisQueue) InFlight(ctx context.Context) ([]string, error) {
	v, err := q.c.LRange(ctx, q.inflight, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("d4server: redis read %s: %w", q.inflight, err)
	}
	slices.Reverse(v)
	return v, nil
}

// Pop blocks on BLMOVE until an element arrives or ctx is done.
func (q *RedisQueue) Pop(ctx context.Context) (string, error) {
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		v, err := q.c.BLMove(ctx, q.key, q.inflight, "RIGHT", "LEFT", popBlock).Result()
		switch {
		case err == nil:
			return v, nil
		case errors.Is(err, redis.Nil):
			// The block timed out empty: look at ctx and block again.
		case ctx.Err() != nil:
			return "", ctx.Err()
		default:
			return "", fmt.Errorf("d4server: redis pop %s: %w", q.key, err)
		}
	}
}

// Ack removes elem from the in-flight list.
func (q *RedisQueue) Ack(ctx context.Context, elem string) error {
	if err := q.c.LRem(ctx, q.inflight, 1, elem).Err(); err != nil {
		return fmt.Errorf("d4server: redis ack on %s: %w", q.inflight, err)
	}
	return nil
}

// Bury moves elem to <list>:dead atomically (MULTI/EXEC), so it is in exactly
// one of the two lists at any time.
func (q *RedisQueue) Bury(ctx context.Context, elem string) error {
	_, err := q.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, q.dead, elem)
		p.LRem(ctx, q.inflight, 1, elem)
		return nil
	})
	if err != nil {
		return fmt.Errorf("d4server: redis bury on %s: %w", q.dead, err)
	}
	return nil
}
