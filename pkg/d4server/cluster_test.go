package d4server

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xtrail/xtrail/internal/redistest"
)

// TestRedisCluster runs two stores (two servers) on a real 3-primary,
// 3-replica Redis Cluster: d4-core's key names in database 0, sensor
// registrations and replay marks seen by both, session sets consistent
// across them, and a queue whose lines (waited for on a replica) and
// in-flight lines survive the kill of their primary.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 1, redistest.Options{})
	ctx := context.Background()
	open := func() *RedisStore {
		s, err := NewRedisStore(cl.URL(), DefaultAnalyzerDB)
		noErr(t, err)
		t.Cleanup(func() { _ = s.Close() })
		noErr(t, s.Ping(ctx))
		return s
	}
	a, b := open(), open()
	if !a.Cluster() || a.Replicas() != 1 {
		t.Fatalf("cluster %v, replicas %d: want a cluster waiting for 1 replica", a.Cluster(), a.Replicas())
	}
	raw := redis.NewClusterClient(must(redis.ParseClusterURL(cl.URL())))
	t.Cleanup(func() { _ = raw.Close() })

	noErr(t, a.Init(ctx))
	noErr(t, a.AddSensor(ctx, testSensor, "cluster key", "on a"))
	regB := must(b.Registry(ModeRegistration, nil))
	if v, key, err := regB.SensorKey(ctx, testSensor); err != nil || v != Allowed || string(key) != "cluster key" {
		t.Fatalf("store b sees the sensor a registered as %v %q %v", v, key, err)
	}

	// Replay: the replay mark, the claim and the stored mark one server
	// made hold on the other (one slot: one script call on a cluster).
	m := Mark{UUID: testSensor, Session: "s-a", Timestamp: uint64(time.Now().Unix()), Expires: time.Now().Add(time.Minute),
		Lease: time.Minute, ClaimTTL: time.Minute}
	m.HMAC[0], m.Content[0] = 7, 7
	if c := must(a.ClaimFrame(ctx, m)); c.State != ClaimOwned {
		t.Fatalf("a new frame: %+v", c)
	}
	replay := m
	replay.Session = "s-b"
	resend := replay
	resend.Timestamp++
	resend.HMAC[0] = 8
	if c := must(b.ClaimFrame(ctx, replay)); c.State != ClaimRefused {
		t.Fatalf("a frame sent through server a, replayed on server b: %+v", c)
	}
	if c := must(b.ClaimFrame(ctx, resend)); c.State != ClaimBusy {
		t.Fatalf("a frame claimed through server a, resent on server b: %+v", c)
	}
	noErr(t, a.FrameStored(ctx, m))
	if c := must(b.ClaimFrame(ctx, resend)); c.State != ClaimStored {
		t.Fatalf("a frame stored through server a, resent on server b: %+v", c)
	}

	// Session sets: one session on each server, closed one after the other.
	ev := func(k SessionEventKind, sid string, typ uint8) SessionEvent {
		return SessionEvent{Kind: k, UUID: testSensor, Session: sid, Type: typ, MetaType: MetaTypeMaltrail}
	}
	noErr(t, a.SessionState(ctx, ev(SessionOpened, "s1", 2)))
	noErr(t, b.SessionState(ctx, ev(SessionOpened, "s2", 2)))
	noErr(t, a.SessionState(ctx, ev(SessionTypeChanged, "s1", 254)))
	noErr(t, a.SessionState(ctx, ev(SessionClosed, "s1", 254)))
	if !raw.SIsMember(ctx, "active_connection", testSensor).Val() || !raw.SIsMember(ctx, "active_connection:2", testSensor).Val() {
		t.Fatal("the sensor left the active sets while its session on server b is open")
	}
	if raw.SIsMember(ctx, "active_connection:254", testSensor).Val() {
		t.Fatal("the sensor is still listed for type 254 after its only 254 session closed")
	}
	noErr(t, b.SessionState(ctx, ev(SessionClosed, "s2", 2)))
	if raw.SIsMember(ctx, "active_connection", testSensor).Val() {
		t.Fatal("the sensor is still active after its last session closed")
	}

	// A queue: d4-core's name in database 0, lines pushed by both servers.
	q := must(a.RegisterQueue(ctx, MetaTypeMaltrail, testQueue, "cluster test"))
	key := keyAnalyzerList(MetaTypeMaltrail, q)
	for i := range 10 {
		st := []*RedisStore{a, b}[i%2]
		n := must(st.PushLines(ctx, MetaTypeMaltrail, testSensor, [][]byte{fmt.Appendf(nil, "line %d", i)}))
		if n != 1 {
			t.Fatalf("push reached %d queues", n)
		}
	}
	if n := raw.LLen(ctx, key).Val(); n != 10 {
		t.Fatalf("%s holds %d lines, want 10", key, n)
	}
	cons := a.Queue(MetaTypeMaltrail, q, Consumer("c1"))
	if _, err := cons.Open(ctx); err != nil {
		t.Fatal(err)
	}
	batch := must(cons.Next(ctx, 0, nil, 4))
	if !slices.Equal(batch.Lines, []string{"line 0", "line 1", "line 2", "line 3"}) {
		t.Fatalf("first batch %q", batch.Lines)
	}
	// The queue and its consumer's keys share one slot.
	qslot := raw.ClusterKeySlot(ctx, key).Val()
	for _, k := range []string{cons.inflight, cons.claim, cons.consumers, cons.epoch} {
		if s := raw.ClusterKeySlot(ctx, k).Val(); s != qslot {
			t.Fatalf("%s is in slot %d, the queue in %d", k, s, qslot)
		}
	}
	// Wait until the in-flight move reached the replica, then kill the
	// primary: its replica takes over with every line.
	primary := cl.PrimaryFor(key)
	node := must(raw.MasterForKey(ctx, key))
	noErr(t, node.Do(ctx, "wait", 1, 5000).Err())
	primary.Kill()
	cl.WaitHealthy(30 * time.Second)
	if cl.PrimaryFor(key) == primary {
		t.Fatal("no failover")
	}
	var inflight []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := cons.InFlight(ctx)
		if err == nil {
			inflight = v
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue's new primary does not answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(inflight) != 4 {
		t.Fatalf("after the failover the in-flight list holds %q", inflight)
	}
	// The new primary has no replica until the old node comes back: a
	// push waits (its WAIT times out, counted) and completes once it does.
	pushed := make(chan error, 1)
	go func() {
		_, err := a.PushLines(ctx, MetaTypeMaltrail, testSensor, [][]byte{[]byte("after failover")})
		pushed <- err
	}()
	deadline = time.Now().Add(10 * time.Second)
	for a.Stats().ReplicaWaits == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-pushed:
		t.Fatalf("a push completed with no replica to hold it (err %v)", err)
	default:
	}
	if a.Stats().ReplicaWaits == 0 {
		t.Fatal("no replica wait was counted while the primary had no replica")
	}
	primary.Restart() // rejoins as a replica of the new primary
	select {
	case err := <-pushed:
		noErr(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the push never completed after a replica came back")
	}
	b2 := must(cons.Next(ctx, 4, nil, 100))
	want := []string{"line 4", "line 5", "line 6", "line 7", "line 8", "line 9", "after failover"}
	if !slices.Equal(b2.Lines, want) {
		t.Fatalf("after the failover the queue gave %q, want %q", b2.Lines, want)
	}
}
