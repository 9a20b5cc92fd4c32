package d4server

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/internal/redistest"
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

func TestQueueReliablePop(t *testing.T) {
	for _, qs := range bothStores(t) {
		t.Run(qs.name, func(t *testing.T) {
			qs := storeFor(t, qs)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			must(qs.store.RegisterQueue(ctx, "maltrail", testQueue, ""))
			q := qs.queue("maltrail", testQueue)

			// A blocked Pop wakes up on a push (no polling).
			got := make(chan string, 1)
			go func() {
				v, err := q.Pop(ctx)
				if err != nil {
					v = "error: " + err.Error()
				}
				got <- v
			}()
			time.Sleep(50 * time.Millisecond)
			noErr(t, push(ctx, qs.store, "maltrail", testSensor, [][]byte{[]byte("a"), []byte("b")}))
			if v := <-got; v != "a" {
				t.Fatalf("first Pop = %q, want oldest %q", v, "a")
			}
			if v := must(q.Pop(ctx)); v != "b" {
				t.Fatalf("second Pop = %q", v)
			}
			if fl := must(q.InFlight(ctx)); !slices.Equal(fl, []string{"a", "b"}) {
				t.Fatalf("InFlight = %q, want oldest first", fl)
			}
			noErr(t, q.Ack(ctx, "a"))
			noErr(t, q.Bury(ctx, "b"))
			if fl := must(q.InFlight(ctx)); len(fl) != 0 {
				t.Fatalf("InFlight after Ack/Bury = %q", fl)
			}

			// Pop honours cancellation.
			cctx, ccancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { _, err := q.Pop(cctx); done <- err }()
			time.Sleep(50 * time.Millisecond)
			ccancel()
			select {
			case err := <-done:
				if err != context.Canceled {
					t.Fatalf("cancelled Pop returned %v", err)
				}
			case <-time.After(3 * popBlock):
				t.Fatal("Pop ignored cancellation")
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
	q := m.Queue("maltrail", "q")
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
