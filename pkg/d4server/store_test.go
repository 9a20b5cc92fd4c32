package d4server

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/internal/redistest"
	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/export"
)

// Both queues must satisfy the one Queue definition the exporter uses.
var (
	_ export.Queue = (*RedisQueue)(nil)
	_ export.Queue = (*MemQueue)(nil)
	_ Store        = (*RedisStore)(nil)
	_ Store        = (*MemStore)(nil)
)

const (
	testSensor = "1d9403319fc943818fc93b624db66025"
	testQueue  = "6b3c5a0e-7d1f-4b8e-9a2c-1f0e3d4c5b6a"
)

// newRedisStore starts a real redis-server and returns a store on it plus raw
// clients on the metadata (db 0) and analyzer (db 2) databases.
func newRedisStore(t *testing.T, opts ...RedisOption) (*RedisStore, *redis.Client, *redis.Client) {
	t.Helper()
	addr := redistest.Start(t)
	s, err := NewRedisStore("redis://"+addr+"/0", DefaultAnalyzerDB, opts...)
	if err != nil {
		t.Fatal(err)
	}
	meta := redis.NewClient(&redis.Options{Addr: addr, DB: 0})
	an := redis.NewClient(&redis.Options{Addr: addr, DB: 2})
	t.Cleanup(func() { _ = s.Close(); _ = meta.Close(); _ = an.Close() })
	return s, meta, an
}

// must unwraps a (value, error) pair in a test; the panic fails the test
// with a stack pointing at the call.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRedisStoreLayout(t *testing.T) {
	ctx := context.Background()
	s, meta, an := newRedisStore(t)

	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if got := must(meta.SMembers(ctx, "server:accepted_type").Result()); !sameSet(got, "1", "2", "4", "8", "254") {
		t.Errorf("server:accepted_type = %v", got)
	}
	if got := must(meta.SMembers(ctx, "server:accepted_extended_type").Result()); !sameSet(got, "ja3-jl", "maltrail") {
		t.Errorf("server:accepted_extended_type = %v", got)
	}
	first := must(meta.Get(ctx, "first_date").Result())
	if len(first) != 8 {
		t.Errorf("first_date = %q, want YYYYMMDD", first)
	}
	// first_date is written only if absent.
	noErr(t, meta.Set(ctx, "first_date", "20200101", 0).Err())
	noErr(t, s.Init(ctx))
	if got := must(meta.Get(ctx, "first_date").Result()); got != "20200101" {
		t.Errorf("Init overwrote first_date: %q", got)
	}

	q := must(s.RegisterQueue(ctx, "maltrail", testQueue, "to the collector"))
	if q != testQueue {
		t.Fatalf("RegisterQueue kept %q, want %q", q, testQueue)
	}
	h := must(meta.HGetAll(ctx, "analyzer:"+q).Result())
	if h["type"] != "254" || h["metatype"] != "maltrail" || h["description"] != "to the collector" {
		t.Errorf("analyzer:<q> = %v", h)
	}
	for key, member := range map[string]string{
		"all:analyzer:format_type":               "254",
		"all:analyzer:by:format_type:254":        q,
		"all:analyzer:by:extended_type:maltrail": q,
		"all:analyzer:extended_type":             "maltrail",
		"all_analyzer_queues":                    q,
		"analyzer:254:maltrail":                  q,
	} {
		if ok := must(meta.SIsMember(ctx, key, member).Result()); !ok {
			t.Errorf("%s lacks %s", key, member)
		}
	}
	gen := must(s.RegisterQueue(ctx, "maltrail", "", ""))
	if len(gen) != 36 {
		t.Errorf("generated queue uuid %q is not dashed", gen)
	}
	// A sensor-group queue created by d4-core's UI gets this sensor's lines too.
	group := "9f0e1d2c-3b4a-4596-8877-665544332211"
	noErr(t, meta.SAdd(ctx, "sensor:queues:maltrail:"+testSensor, group).Err())
	noErr(t, meta.HSet(ctx, "analyzer:"+group, "max_size", 2).Err())
	s.mu.Lock()
	clear(s.routes)
	s.mu.Unlock()

	lines := [][]byte{[]byte("l1"), []byte("l2\r"), []byte("l3")}
	noErr(t, push(ctx, s, "maltrail", testSensor, lines))
	noErr(t, push(ctx, s, "maltrail", testSensor, [][]byte{[]byte("l4")}))

	// LPUSH order: newest at the head, in analyzer db 2 only.
	if got := must(an.LRange(ctx, "analyzer:maltrail:"+q, 0, -1).Result()); !slices.Equal(got, []string{"l4", "l3", "l2\r", "l1"}) {
		t.Errorf("analyzer:maltrail:<q> = %q", got)
	}
	// LTRIM 0 max_size keeps max_size+1 newest.
	if got := must(an.LRange(ctx, "analyzer:maltrail:"+group, 0, -1).Result()); !slices.Equal(got, []string{"l4", "l3", "l2\r"}) {
		t.Errorf("group queue = %q", got)
	}
	if n := must(meta.Exists(ctx, "analyzer:maltrail:"+q).Result()); n != 0 {
		t.Error("queue list written to the metadata db")
	}
	for _, k := range []string{q, group} {
		lu := must(meta.HGet(ctx, "analyzer:"+k, "last_updated").Result())
		if f, err := strconv.ParseFloat(lu, 64); err != nil || f < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Errorf("analyzer:%s last_updated = %q", k, lu)
		}
	}

	// SensorSeen / SetError.
	now := time.Date(2026, 8, 7, 9, 14, 22, 0, time.Local)
	noErr(t, s.SetError(ctx, testSensor, "boom"))
	seen := Sighting{UUID: testSensor, IP: "10.0.0.7", Type: 2, SessionStart: true, Time: now}
	noErr(t, s.SensorSeen(ctx, seen))
	seen.Type, seen.SessionStart, seen.MetaType, seen.Time = 254, false, "maltrail", now.Add(time.Second)
	noErr(t, s.SensorSeen(ctx, seen))

	md := must(meta.HGetAll(ctx, "metadata_uuid:"+testSensor).Result())
	if md["first_seen"] != fmt.Sprint(now.Unix()) || md["last_seen"] != fmt.Sprint(now.Unix()+1) {
		t.Errorf("metadata_uuid = %v", md)
	}
	if _, ok := md["Error"]; ok {
		t.Error("an accepted frame did not clear Error")
	}
	d := "20260807"
	for key, want := range map[string]map[string]float64{
		"stat_uuid_ip:" + d + ":" + testSensor:   {"10.0.0.7": 2},
		"stat_ip_uuid:" + d + ":10.0.0.7":        {testSensor: 2},
		"daily_uuid:" + d:                        {testSensor: 2},
		"daily_ip:" + d:                          {"10.0.0.7": 2},
		"daily_type:" + d:                        {"2": 1, "254": 1},
		"stat_type_uuid:" + d + ":254":           {testSensor: 1},
		"stat_uuid_type:" + d + ":" + testSensor: {"2": 1, "254": 1},
	} {
		zs := must(meta.ZRangeWithScores(ctx, key, 0, -1).Result())
		got := map[string]float64{}
		for _, z := range zs {
			got[z.Member.(string)] = z.Score
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if got := must(meta.LRange(ctx, "list_uuid_ip:"+testSensor, 0, -1).Result()); !slices.Equal(got, []string{"10.0.0.7-20260807091422"}) {
		t.Errorf("list_uuid_ip = %q (only a session's first frame is listed)", got)
	}
	if got := must(meta.HGet(ctx, "metadata_type_by_uuid:"+testSensor+":254", "first_seen").Result()); got != fmt.Sprint(now.Unix()+1) {
		t.Errorf("metadata_type_by_uuid first_seen = %q", got)
	}
	if got := must(meta.SMembers(ctx, "all_types_by_uuid:"+testSensor).Result()); !sameSet(got, "2", "254") {
		t.Errorf("all_types_by_uuid = %v", got)
	}
	if ok := must(meta.SIsMember(ctx, "all_extended_types_by_uuid:"+testSensor, "maltrail").Result()); !ok {
		t.Error("all_extended_types_by_uuid lacks maltrail")
	}
	// list_uuid_ip keeps 16 entries (LTRIM 0 15).
	for i := 0; i < 20; i++ {
		seen.SessionStart = true
		noErr(t, s.SensorSeen(ctx, seen))
	}
	if n := must(meta.LLen(ctx, "list_uuid_ip:"+testSensor).Result()); n != 16 {
		t.Errorf("list_uuid_ip has %d entries, want 16", n)
	}
	noErr(t, s.SetError(ctx, testSensor, "HMAC don't match"))
	if got := must(meta.HGet(ctx, "metadata_uuid:"+testSensor, "Error").Result()); got != "HMAC don't match" {
		t.Errorf("Error = %q", got)
	}
}

func sameSet(got []string, want ...string) bool {
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// queueStore is what the queue tests need from either store.
type queueStore struct {
	name  string
	store Store
	queue func(metaType, q string) export.Queue
}

func bothStores(t *testing.T) []queueStore {
	m := NewMemStore(0)
	return []queueStore{
		{"mem", m, func(mt, q string) export.Queue { return m.Queue(mt, q) }},
		{"redis", nil, nil}, // filled lazily so a missing redis-server skips only that subtest
	}
}

func storeFor(t *testing.T, qs queueStore) queueStore {
	t.Helper()
	if qs.store != nil {
		return qs
	}
	r, _, _ := newRedisStore(t)
	qs.store = r
	qs.queue = func(mt, q string) export.Queue { return r.Queue(mt, q) }
	return qs
}

func TestQueueBatches(t *testing.T) {
	for _, qs := range bothStores(t) {
		t.Run(qs.name, func(t *testing.T) {
			qs := storeFor(t, qs)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			must(qs.store.RegisterQueue(ctx, "maltrail", testQueue, ""))
			q := qs.queue("maltrail", testQueue)
			if fl := must(q.Open(ctx)); len(fl) != 0 {
				t.Fatalf("fresh consumer has %q in flight", fl)
			}
			// A waiting Next wakes up on a push.
			got := make(chan export.Batch, 1)
			go func() { b, _ := q.Next(ctx, 0, nil, 10); got <- b }()
			time.Sleep(50 * time.Millisecond)
			noErr(t, push(ctx, qs.store, "maltrail", testSensor, [][]byte{[]byte("a")}))
			if b := <-got; !slices.Equal(b.Lines, []string{"a"}) {
				t.Fatalf("waiting Next = %+v", b)
			}
			noErr(t, push(ctx, qs.store, "maltrail", testSensor, [][]byte{[]byte("b"), []byte("c"), []byte("d")}))
			b := must(q.Next(ctx, 1, nil, 2)) // "a" done; two more, oldest first
			if !slices.Equal(b.Lines, []string{"b", "c"}) || b.Backlog != 1 {
				t.Fatalf("Next = %+v, want [b c] with 1 waiting", b)
			}
			// A stop now: the next run of the same consumer gets b, c back.
			noErr(t, q.Close(ctx))
			again := qs.queue("maltrail", testQueue)
			if fl := must(again.Open(ctx)); !slices.Equal(fl, []string{"b", "c"}) {
				t.Fatalf("in flight after a restart = %q", fl)
			}
			b = must(again.Next(ctx, 2, []string{"c"}, 5)) // c can never be sent
			if !slices.Equal(b.Lines, []string{"d"}) || b.Backlog != 0 || b.Lost || b.Reclaimed {
				t.Fatalf("Next = %+v", b)
			}
			b = must(again.Backlog(ctx))
			if len(b.Lines) != 0 || b.Backlog != 0 {
				t.Fatalf("Backlog = %+v", b)
			}
			b = must(again.Next(ctx, 1, nil, 0))
			if len(b.Lines) != 0 {
				t.Fatalf("Next with max 0 moved %q", b.Lines)
			}
			// Nothing left in flight; c is in the dead-letter list.
			noErr(t, again.Close(ctx))
			reopened := qs.queue("maltrail", testQueue)
			if fl := must(reopened.Open(ctx)); len(fl) != 0 {
				t.Fatalf("in flight after acknowledging everything = %q", fl)
			}
		})
	}
}

func TestMemStoreBound(t *testing.T) {
	ctx := context.Background()
	m := NewMemStore(2)
	must(m.RegisterQueue(ctx, "maltrail", "q", ""))
	for _, l := range []string{"1", "2", "3", "4"} {
		noErr(t, push(ctx, m, "maltrail", testSensor, [][]byte{[]byte(l)}))
	}
	q := newPopper(m.Queue("maltrail", "q"))
	var got []string
	for range 3 {
		got = append(got, must(q.Pop(ctx)))
	}
	if !slices.Equal(got, []string{"2", "3", "4"}) {
		t.Fatalf("bounded queue kept %q, want the 3 newest", got)
	}
}

// push is PushLines without the queue count.
func push(ctx context.Context, s Store, metaType, uuid string, lines [][]byte) error {
	_, err := s.PushLines(ctx, metaType, uuid, lines)
	return err
}

// popper reads a queue one line at a time, as tests like it: each batch is
// acknowledged when the next one is asked for.
type popper struct {
	q       export.Queue
	buf     []string
	unacked int
}

func newPopper(q export.Queue) *popper { return &popper{q: q} }

// Pop returns the next line, waiting until ctx ends.
func (p *popper) Pop(ctx context.Context) (string, error) {
	for len(p.buf) == 0 {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		b, err := p.q.Next(ctx, p.unacked, nil, 100)
		p.unacked = 0
		if err != nil {
			return "", err
		}
		p.buf, p.unacked = b.Lines, len(b.Lines)
	}
	v := p.buf[0]
	p.buf = p.buf[1:]
	return v, nil
}

// TestRedisQueueConsumers: several consumers of one queue, each with its own
// in-flight list; a consumer that stops refreshing its claim has its lines
// handed back to the queue, oldest first, after the claim timeout; a twin
// waits for the claim; an emptied Redis is reported as a loss.
func TestRedisQueueConsumers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, _, an := newRedisStore(t)
	must(r.RegisterQueue(ctx, "maltrail", testQueue, ""))
	claim := ClaimTimeout(400 * time.Millisecond)
	a := r.Queue("maltrail", testQueue, Consumer("a"), claim)
	b := r.Queue("maltrail", testQueue, Consumer("b"), claim)
	must(a.Open(ctx))
	must(b.Open(ctx))
	lines := [][]byte{[]byte("1"), []byte("2"), []byte("3"), []byte("4"), []byte("5")}
	noErr(t, push(ctx, r, "maltrail", testSensor, lines))
	if got := must(a.Next(ctx, 0, nil, 3)).Lines; !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("a got %q", got)
	}
	if got := must(b.Next(ctx, 0, nil, 3)).Lines; !slices.Equal(got, []string{"4", "5"}) {
		t.Fatalf("b got %q", got)
	}
	// a dies (no Close, no refresh). A twin of a waits for the claim.
	twin := r.Queue("maltrail", testQueue, Consumer("a"), claim)
	start := time.Now()
	if fl := must(twin.Open(ctx)); !slices.Equal(fl, []string{"1", "2", "3"}) {
		t.Fatalf("a's next run found %q in flight", fl)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatalf("a second process took a live claim after %s", time.Since(start))
	}
	noErr(t, twin.Close(ctx))
	// Now nobody holds a's claim: b takes a's lines back into the queue.
	time.Sleep(450 * time.Millisecond)
	bb := must(b.Next(ctx, 2, nil, 10)) // b delivered 4, 5
	if !slices.Equal(bb.Lines, []string{"1", "2", "3"}) || bb.TakenOver != 3 {
		t.Fatalf("b after a's claim expired got %q (taken over %d), want a's 3 lines in order", bb.Lines, bb.TakenOver)
	}
	if n := an.LLen(ctx, "{analyzer:maltrail:"+testQueue+"}:inflight:a").Val(); n != 0 {
		t.Fatalf("a's in-flight list still has %d lines", n)
	}
	// A stalled consumer notices it was reclaimed.
	time.Sleep(450 * time.Millisecond) // b's claim expires too
	c := r.Queue("maltrail", testQueue, Consumer("c"), claim)
	must(c.Open(ctx))
	if got := must(c.Next(ctx, 0, nil, 10)).Lines; !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("c took over %q", got)
	}
	if got := must(b.Next(ctx, 3, nil, 10)); !got.Reclaimed {
		t.Fatalf("b, reclaimed while stalled, was not told: %+v", got)
	}
	// Redis emptied under the consumers.
	noErr(t, push(ctx, r, "maltrail", testSensor, lines[:2]))
	noErr(t, an.FlushAll(ctx).Err())
	if got := must(c.Backlog(ctx)); !got.Lost {
		t.Fatalf("Backlog after FLUSHALL = %+v, want Lost", got)
	}
	if got := must(c.Next(ctx, 3, nil, 10)); got.Lost {
		t.Fatal("the loss was reported twice")
	}
}

// TestRedisQueueRetryIsIdempotent: a batch call whose reply is lost (Redis
// went away after applying it) is retried with the same call id; the retry
// must not acknowledge a second time, which would drop unsent lines.
func TestRedisQueueRetryIsIdempotent(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newRedisStore(t)
	must(r.RegisterQueue(ctx, "maltrail", testQueue, ""))
	q := r.Queue("maltrail", testQueue)
	must(q.Open(ctx))
	noErr(t, push(ctx, r, "maltrail", testSensor, [][]byte{[]byte("1"), []byte("2"), []byte("3"), []byte("4"), []byte("5")}))
	if got := must(q.Next(ctx, 0, nil, 2)).Lines; !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("first batch %q", got)
	}
	// Applied, reply lost: the call id does not advance.
	must(q.next(ctx, 2, nil, 2))
	b := must(q.Next(ctx, 2, nil, 2)) // the retry
	if !slices.Equal(b.Lines, []string{"3", "4"}) || b.Backlog != 1 {
		t.Fatalf("retry gave %+v, want the lost reply's batch [3 4]", b)
	}
	if fl := must(q.InFlight(ctx)); !slices.Equal(fl, []string{"3", "4"}) {
		t.Fatalf("in flight after the retry: %q", fl)
	}
	if got := must(q.Next(ctx, 2, nil, 5)).Lines; !slices.Equal(got, []string{"5"}) {
		t.Fatalf("next batch %q", got)
	}
}

// TestRegistrationRestored: a Redis emptied under the server (FLUSHALL, as
// an empty restart) has the start keys and the known queues written again
// at the next route refresh, so lines keep reaching the queue; a
// description is never overwritten, and an admin's removal of one queue
// (Redis otherwise intact) is respected.
func TestRegistrationRestored(t *testing.T) {
	ctx := context.Background()
	s, meta, an := newRedisStore(t)
	noErr(t, s.Init(ctx))
	must(s.RegisterQueue(ctx, "maltrail", testQueue, "made in d4-core's UI"))
	must(s.RegisterQueue(ctx, "maltrail", testQueue, "xtrail export"))
	if d := must(meta.HGet(ctx, "analyzer:"+testQueue, "description").Result()); d != "made in d4-core's UI" {
		t.Fatalf("description overwritten: %q", d)
	}
	noErr(t, meta.FlushAll(ctx).Err())
	time.Sleep(routeTTL + 50*time.Millisecond)
	if n := must(s.PushLines(ctx, "maltrail", testSensor, [][]byte{[]byte("after")})); n != 1 {
		t.Fatalf("PushLines after the flush reached %d queues", n)
	}
	if s.Stats().Restores != 1 || !must(meta.SIsMember(ctx, "analyzer:254:maltrail", testQueue).Result()) {
		t.Fatalf("restores %d; queue registered again: %v", s.Stats().Restores, meta.SIsMember(ctx, "analyzer:254:maltrail", testQueue).Val())
	}
	if got := an.LRange(ctx, "analyzer:maltrail:"+testQueue, 0, -1).Val(); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("queue = %q", got)
	}
	// An admin removes the queue; Redis keeps its data: not restored.
	noErr(t, meta.SRem(ctx, "analyzer:254:maltrail", testQueue).Err())
	time.Sleep(routeTTL + 50*time.Millisecond)
	if n := must(s.PushLines(ctx, "maltrail", testSensor, [][]byte{[]byte("unrouted")})); n != 0 || s.Stats().Restores != 1 {
		t.Fatalf("a removed queue came back: %d queues, %d restores", n, s.Stats().Restores)
	}
}

// TestKeptSensorsRestored: a real redis-server restarted empty under a
// running server loses every registration. The first sensor that connects
// afterwards finds Redis emptied: the server writes the sensors it keeps
// (a -keys file's) and its queues again, lets the sensor in and stores its
// lines; a sensor registered only in Redis (not kept) stays unknown.
func TestKeptSensorsRestored(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rs := redistest.StartServer(t, redistest.Options{})
	s, err := NewRedisStore("redis://"+rs.Addr()+"/0", DefaultAnalyzerDB)
	if err != nil {
		t.Fatal(err)
	}
	meta := redis.NewClient(&redis.Options{Addr: rs.Addr(), DB: 0})
	an := redis.NewClient(&redis.Options{Addr: rs.Addr(), DB: DefaultAnalyzerDB})
	t.Cleanup(func() { _ = s.Close(); _ = meta.Close(); _ = an.Close() })
	noErr(t, s.KeepSensor(ctx, goodUUID, string(goodKey)))
	noErr(t, s.AddSensor(ctx, otherUUID, string(otherKey), ""))
	noErr(t, s.Init(ctx))
	must(s.RegisterQueue(ctx, "maltrail", testQueue, ""))
	srv := startServer(t, Config{Store: s, Registry: must(s.Registry(ModeRegistration, nil))})

	rs.Stop()
	rs.Wipe()
	rs.Restart()
	// The store's pooled connections died with the old process.
	for s.Ping(ctx) != nil || meta.Ping(ctx).Err() != nil || an.Ping(ctx).Err() != nil {
		if ctx.Err() != nil {
			t.Fatal("Redis did not come back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := meta.SCard(ctx, keyRegistered).Val(); n != 0 {
		t.Fatalf("Redis came back with %d registered sensors, not empty", n)
	}

	good := dialSensor(t, srv, goodUUID, goodKey)
	good.send(d4.TypeMeta, `{"type":"maltrail"}`)
	good.send(d4.TypeExtended, "after the restart\n")
	waitUntil(t, func() bool {
		return slices.Equal(an.LRange(ctx, "analyzer:maltrail:"+testQueue, 0, -1).Val(), []string{"after the restart"})
	})
	goodHex := strings.ReplaceAll(goodUUID, "-", "")
	if !meta.SIsMember(ctx, keyRegistered, goodHex).Val() || meta.HGet(ctx, keyMetadataUUID(goodHex), fieldHMACKey).Val() != string(goodKey) {
		t.Fatal("the kept sensor's registration was not written again")
	}
	if st := s.Stats(); st.Restores != 1 {
		t.Fatalf("restores %d, want 1", st.Restores)
	}
	other := dialSensor(t, srv, otherUUID, otherKey)
	other.send(d4.TypeMeta, `{"type":"maltrail"}`)
	other.expectClosed()
	if n := srv.Stats().Rejected[ReasonUnregistered]; n != 1 {
		t.Fatalf("the sensor registered only in Redis: %d unregistered rejections, want 1", n)
	}
}
