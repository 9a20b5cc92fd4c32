package d4server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

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
