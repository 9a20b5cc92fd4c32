package d4server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/export"
)

// DefaultClaimTimeout is how long a consumer may go without refreshing its
// claim before the queue's other consumers take over its in-flight lines.
// A consumer refreshes it at least every popBlock (a second) while it runs,
// and during a target outage at every backoff step (at most 5 s), so it
// must be well above both.
const DefaultClaimTimeout = 15 * time.Second

// QueueOption adjusts a queue consumer.
type QueueOption func(*queueOpts)

type queueOpts struct {
	consumer string
	claim    time.Duration
}

// Consumer names the consumer: its in-flight list is analyzer:<t>:<q>:
// inflight:<name>. A restarted exporter must use the same name to resend its
// lines at once (otherwise the others take them over after the claim
// timeout); two live exporters must not share one.
func Consumer(name string) QueueOption { return func(o *queueOpts) { o.consumer = name } }

// ClaimTimeout sets DefaultClaimTimeout.
func ClaimTimeout(d time.Duration) QueueOption { return func(o *queueOpts) { o.claim = d } }

func newQueueOpts(opts []QueueOption) queueOpts {
	o := queueOpts{consumer: "default", claim: DefaultClaimTimeout}
	for _, f := range opts {
		f(&o)
	}
	if o.claim <= 0 {
		o.claim = DefaultClaimTimeout
	}
	return o
}

// Queue returns a consumer of analyzer:<metaType>:<queueUUID> (the uuid
// exactly as stored, with or without dashes).
//
// The queue is d4-core's list, which d4-core's tools keep using as is.
// xtrail's keys for its consumers sit next to it, named with the queue's
// key as hash tag, so that on a Redis Cluster they share the queue's slot
// (the tag of "{analyzer:<t>:<q>}:..." hashes exactly like the queue's own
// key) and one script can move lines between them:
//   - {analyzer:<t>:<q>}:inflight:<consumer>: the consumer's in-flight
//     lines, newest at the head like the queue;
//   - {analyzer:<t>:<q>}:consumer:<consumer>: its claim, a token that
//     expires after the claim timeout unless refreshed;
//   - {analyzer:<t>:<q>}:consumers: the set of consumer names;
//   - {analyzer:<t>:<q>}:dead: lines no target can take;
//   - {analyzer:<t>:<q>}:epoch: present while Redis keeps its data; its
//     absence tells a consumer that the store was emptied.
func (s *RedisStore) Queue(metaType, queueUUID string, opts ...QueueOption) *RedisQueue {
	o := newQueueOpts(opts)
	base := keyAnalyzerList(metaType, queueUUID)
	tag := "{" + base + "}"
	tok, _ := d4.NewUUIDv4()
	q := &RedisQueue{
		c: s.an, log: s.log, opts: o, token: tok.String(),
		key:       base,
		tag:       tag,
		inflight:  tag + ":inflight:" + o.consumer,
		claim:     tag + ":consumer:" + o.consumer,
		consumers: tag + ":consumers",
		dead:      tag + ":dead",
		epoch:     tag + ":epoch",
	}
	if s.an.cluster == nil {
		// Names of earlier xtrail versions (one shared in-flight list,
		// then lists without the hash tag), emptied into the queue at
		// Open; a cluster never had them.
		q.legacy = []string{base + ":inflight", base + ":inflight:" + o.consumer}
	}
	return q
}

// RedisQueue is the export.Queue on d4-core's lists (producers LPUSH, so
// the oldest line is at the right).
type RedisQueue struct {
	c     *rconn
	log   *slog.Logger
	opts  queueOpts
	token string // this process's claim

	key, tag, inflight, claim, consumers, dead, epoch string
	legacy                                            []string

	calls uint64 // id of the next Next or Backlog call (with token)
	taken int64  // lines taken over and not reported yet (a Next failed)

	mu          sync.Mutex
	nextReclaim time.Time
}

var _ export.Queue = (*RedisQueue)(nil)

// Name returns the Redis key of the queue.
func (q *RedisQueue) Name() string { return q.key }

// openScript takes the consumer's claim unless another live process holds
// it. KEYS: claim, consumers, epoch. ARGV: token, ttl ms, consumer.
var openScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], '1', 'NX')
return 1
`)

// Open implements export.Queue.
func (q *RedisQueue) Open(ctx context.Context) ([]string, error) {
	warned := false
	for {
		// Through durable: the epoch marker the script may create must
		// survive a failover, or the next call would report the store
		// emptied.
		var res *redis.Cmd
		err := q.c.durable(ctx, q.claim, func(p redis.Pipeliner) {
			res = openScript.Eval(ctx, p, []string{q.claim, q.consumers, q.epoch},
				q.token, q.opts.claim.Milliseconds(), q.opts.consumer)
		})
		if err != nil {
			return nil, fmt.Errorf("d4server: redis claim %s: %w", q.claim, err)
		}
		if ok, _ := res.Int(); ok == 1 {
			break
		}
		if !warned {
			warned = true
			// A live twin, or this consumer's own previous run killed
			// without releasing: either way the claim expires if nobody
			// refreshes it.
			q.log.Warn("export: another process holds this consumer's claim; waiting for it to expire",
				"consumer", q.opts.consumer, "claim_timeout", q.opts.claim)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s", export.ErrConsumerBusy, q.opts.consumer)
		case <-time.After(min(time.Second, q.opts.claim/4)):
		}
	}
	// Lines an older xtrail left in flight go back to the queue first.
	for _, l := range q.legacy {
		if _, err := reclaimScript.Run(ctx, q.c, []string{l, q.key, l + ":none", q.consumers}, "").Result(); err != nil {
			return nil, fmt.Errorf("d4server: redis reclaim %s: %w", l, err)
		}
	}
	v, err := q.c.LRange(ctx, q.inflight, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("d4server: redis read %s: %w", q.inflight, err)
	}
	slices.Reverse(v)
	return v, nil
}

// nextScript acknowledges, buries, refreshes the claim and moves a batch in
// one round trip. KEYS: queue, inflight, dead, claim, consumers, epoch, seq.
// ARGV: done, max, token, ttl ms, consumer, call id, dead lines... Returns
// {status, backlog, lines oldest first}. Status 1: the consumer had been
// reclaimed (its acknowledgement is skipped: its lines went back to the
// queue); 2: the store lost its data; 3: this call id was already applied
// (its reply was lost), so the reply is the in-flight list as it stands,
// which is that call's batch plus any line a lost BLMOVE reply moved.
var nextScript = redis.NewScript(`
if redis.call('GET', KEYS[7]) == ARGV[6] then
  redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
  local v = redis.call('LRANGE', KEYS[2], 0, -1)
  local out = {3, redis.call('LLEN', KEYS[1])}
  for i = #v, 1, -1 do out[#out+1] = v[i] end
  return out
end
local status = 0
if redis.call('EXISTS', KEYS[6]) == 0 then
  status = 2
  redis.call('SET', KEYS[6], '1')
elseif redis.call('SISMEMBER', KEYS[5], ARGV[5]) == 0 then
  status = 1
end
redis.call('SADD', KEYS[5], ARGV[5])
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
redis.call('SET', KEYS[7], ARGV[6])
for i = 7, #ARGV do redis.call('LPUSH', KEYS[3], ARGV[i]) end
local done = tonumber(ARGV[1])
if done > 0 and status == 0 then redis.call('LTRIM', KEYS[2], 0, -done-1) end
local out = {status, 0}
local n = tonumber(ARGV[2])
if n > 0 then
  local v = redis.call('LRANGE', KEYS[1], -n, -1)
  if #v > 0 then
    redis.call('LTRIM', KEYS[1], 0, -#v-1)
    local r = {}
    for i = #v, 1, -1 do r[#r+1] = v[i] end
    redis.call('LPUSH', KEYS[2], unpack(r))
    for i = 1, #r do out[#out+1] = r[i] end
  end
end
out[2] = redis.call('LLEN', KEYS[1])
return out
`)

// reclaimScript gives a dead consumer's in-flight lines back to the queue's
// oldest end, in order, unless its claim is alive. KEYS: inflight, queue,
// claim, consumers. ARGV: consumer. Returns the lines moved, -1 if alive.
var reclaimScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local v = redis.call('LRANGE', KEYS[1], 0, -1)
for i = 1, #v, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(v, i, math.min(i + 999, #v)))
end
redis.call('DEL', KEYS[1])
if ARGV[1] ~= '' then redis.call('SREM', KEYS[4], ARGV[1]) end
return #v
`)

// Next implements export.Queue. A call that fails may have been applied:
// the caller retries it with the same arguments, and the retry carries the
// same call id, so nothing is acknowledged twice.
func (q *RedisQueue) Next(ctx context.Context, done int, dead []string, max int) (export.Batch, error) {
	taken, err := q.reclaimDead(ctx)
	if err != nil {
		return export.Batch{}, err
	}
	b, err := q.next(ctx, done, dead, max)
	if err != nil {
		if taken > 0 {
			// Taken over all the same: report it with the next call.
			q.taken += taken
		}
		return b, err
	}
	b.TakenOver, q.taken = taken+q.taken, 0
	if max == 0 || len(b.Lines) > 0 || b.Lost || b.Reclaimed {
		q.calls++
		return b, nil
	}
	// Empty: block for the next line, moving it into flight as it comes.
	v, err := q.c.BLMove(ctx, q.key, q.inflight, "RIGHT", "LEFT", popBlock).Result()
	switch {
	case err == nil:
		b.Lines = []string{v}
	case errors.Is(err, redis.Nil), ctx.Err() != nil:
	default:
		// The line may have moved: the retry's replay returns the
		// in-flight list, with it.
		return b, fmt.Errorf("d4server: redis wait on %s: %w", q.key, err)
	}
	q.calls++
	return b, nil
}

// Backlog implements export.Queue (it also refreshes the claim).
func (q *RedisQueue) Backlog(ctx context.Context) (export.Batch, error) {
	b, err := q.next(ctx, 0, nil, 0)
	if err == nil {
		q.calls++
	}
	return b, err
}

func (q *RedisQueue) next(ctx context.Context, done int, dead []string, max int) (export.Batch, error) {
	args := make([]any, 0, 6+len(dead))
	args = append(args, done, max, q.token, q.opts.claim.Milliseconds(), q.opts.consumer,
		q.token+":"+strconv.FormatUint(q.calls, 10))
	for _, d := range dead {
		args = append(args, d)
	}
	res, err := nextScript.Run(ctx, q.c, []string{q.key, q.inflight, q.dead, q.claim, q.consumers, q.epoch, q.inflight + ":call"}, args...).Slice()
	if err != nil {
		return export.Batch{}, fmt.Errorf("d4server: redis next batch of %s: %w", q.key, err)
	}
	if len(res) < 2 {
		return export.Batch{}, fmt.Errorf("d4server: redis next batch of %s: short reply", q.key)
	}
	status, _ := res[0].(int64)
	backlog, _ := res[1].(int64)
	b := export.Batch{Backlog: backlog, Reclaimed: status == 1, Lost: status == 2}
	for _, v := range res[2:] {
		s, _ := v.(string)
		b.Lines = append(b.Lines, s)
	}
	return b, nil
}

// reclaimDead gives the lines of consumers whose claim expired back to the
// queue, at most twice per claim timeout.
func (q *RedisQueue) reclaimDead(ctx context.Context) (int64, error) {
	q.mu.Lock()
	due := time.Now().After(q.nextReclaim)
	if due {
		q.nextReclaim = time.Now().Add(q.opts.claim / 2)
	}
	q.mu.Unlock()
	if !due {
		return 0, nil
	}
	names, err := q.c.SMembers(ctx, q.consumers).Result()
	if err != nil {
		return 0, fmt.Errorf("d4server: redis consumers of %s: %w", q.key, err)
	}
	var taken int64
	for _, c := range names {
		if c == q.opts.consumer {
			continue
		}
		n, err := reclaimScript.Run(ctx, q.c, []string{q.tag + ":inflight:" + c, q.key, q.tag + ":consumer:" + c, q.consumers}, c).Int()
		if err != nil {
			return taken, fmt.Errorf("d4server: redis reclaim consumer %s of %s: %w", c, q.key, err)
		}
		if n >= 0 {
			taken += int64(n)
			q.log.Warn("export: took over the in-flight lines of a consumer whose claim expired; they are sent again",
				"consumer", c, "lines", n)
		}
	}
	return taken, nil
}

// Close implements export.Queue: the claim is dropped (if still ours), so
// the other consumers take over what is in flight at their next look.
func (q *RedisQueue) Close(ctx context.Context) error {
	err := q.c.Eval(ctx, `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1`,
		[]string{q.claim}, q.token).Err()
	if err != nil {
		return fmt.Errorf("d4server: redis release %s: %w", q.claim, err)
	}
	return nil
}

// InFlight returns the consumer's in-flight lines, oldest first (tests).
func (q *RedisQueue) InFlight(ctx context.Context) ([]string, error) {
	v, err := q.c.LRange(ctx, q.inflight, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("d4server: redis read %s: %w", q.inflight, err)
	}
	slices.Reverse(v)
	return v, nil
}
