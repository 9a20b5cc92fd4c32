package d4server

import (
	"context"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

// TestClaimFrame: the replay check's states on both stores. A new frame is
// claimed; its own session may claim it again (a renewal, or the same frame
// twice in a session); another session waits while the claim is live, takes
// it over once its lease lapsed, and is told "stored" once the owner marked
// it stored. Only the Redis store limits the rate, for every server.
func TestClaimFrame(t *testing.T) {
	ctx := context.Background()
	for name, mk := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			store, _, _ := mk(t)
			m := Mark{UUID: testSensor, Session: "a", Timestamp: uint64(time.Now().Unix()),
				Expires: time.Now().Add(time.Minute), Lease: 300 * time.Millisecond}
			m.HMAC[3] = 9
			other := m
			other.Session = "b"
			state := func(m Mark) ClaimState { return must(store.ClaimFrame(ctx, m)).State }

			if s := state(m); s != ClaimOwned {
				t.Fatalf("a new frame: state %d", s)
			}
			if s := state(m); s != ClaimOwned {
				t.Fatalf("its own session again: state %d", s)
			}
			if s := state(other); s != ClaimBusy {
				t.Fatalf("another session during the lease: state %d", s)
			}
			time.Sleep(400 * time.Millisecond)
			if c := must(store.ClaimFrame(ctx, other)); c.State != ClaimOwned || !c.TakenOver {
				t.Fatalf("another session after the lease: %+v", c)
			}
			if s := state(m); s != ClaimBusy {
				t.Fatalf("the first session after losing its claim: state %d", s)
			}
			noErr(t, store.FrameStored(ctx, other))
			if s := state(m); s != ClaimStored {
				t.Fatalf("after it was marked stored: state %d", s)
			}
			if c := must(store.ClaimFrame(ctx, other)); c.State != ClaimOwned || c.TakenOver {
				t.Fatalf("the storing session again (the same frame twice in one session): %+v", c)
			}

			// The rate: 1000 B/s with a 1000-byte burst, charged when the
			// claim is taken.
			r := Mark{UUID: testSensor, Session: "a", Timestamp: m.Timestamp, Expires: m.Expires, Lease: time.Minute,
				Bytes: 1000, Rate: 1000, Burst: 1000}
			r.HMAC[3] = 10
			first := must(store.ClaimFrame(ctx, r))
			r.HMAC[3] = 11
			second := must(store.ClaimFrame(ctx, r))
			if _, redis := store.(*RedisStore); redis {
				if !first.Limited || first.Wait != 0 || second.Wait < 900*time.Millisecond || second.Wait > time.Second {
					t.Fatalf("two frames of 1000 B at 1000 B/s: waits %v and %v (limited %v)", first.Wait, second.Wait, first.Limited)
				}
			} else if first.Limited || second.Limited {
				t.Fatal("the in-process store limited the rate: the server does it")
			}
		})
	}
}

// TestClaimFrameOlderMark: a mark an older server made (the session alone,
// set before storing) refuses the frame to other sessions, as it did.
func TestClaimFrameOlderMark(t *testing.T) {
	ctx := context.Background()
	store, meta, _ := newRedisStore(t)
	m := Mark{UUID: testSensor, Session: "new", Timestamp: uint64(time.Now().Unix()), Expires: time.Now().Add(time.Minute), Lease: time.Minute}
	noErr(t, meta.HSet(ctx, keyReplay(m.UUID, m.Timestamp), string(m.HMAC[:]), "old").Err())
	if c := must(store.ClaimFrame(ctx, m)); c.State != ClaimRefused {
		t.Fatalf("an older server's mark: %+v", c)
	}
	m.Session = "old"
	if c := must(store.ClaimFrame(ctx, m)); c.State != ClaimOwned {
		t.Fatalf("its own session: %+v", c)
	}
}

// TestResendWaitsForClaim: a frame another session is storing waits; once
// that session marks it stored, the resend is handled without storing
// anything. A frame whose claimant died is taken over when its lease lapses,
// stored, and counted.
func TestResendWaitsForClaim(t *testing.T) {
	for name, mk := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			store, queueOf, _ := queuedStore(t, mk)
			ctx := context.Background()
			srv := startServer(t, Config{Store: store, Mode: ModeSharedSecret, DefaultKey: goodKey})
			s := dialSensor(t, srv, goodUUID, goodKey)
			s.send(d4.TypeMeta, `{"type":"maltrail"}`)
			claimed := func(f []byte, session string, lease time.Duration) Mark {
				var h d4.Header
				noErr(t, h.Unmarshal(f))
				m := Mark{UUID: h.UUID.Hex(), Session: session, Timestamp: h.Timestamp, HMAC: h.HMAC,
					Expires: time.Now().Add(time.Minute), Lease: lease}
				if c := must(store.ClaimFrame(ctx, m)); c.State != ClaimOwned {
					t.Fatalf("claim: %+v", c)
				}
				return m
			}

			// Another session stores the frame while this one waits.
			busy := s.frameBytes(d4.TypeExtended, "stored elsewhere\n")
			m := claimed(busy, "elsewhere", time.Minute)
			s.write(busy)
			waitUntil(t, func() bool { return srv.Stats().ClaimWaits == 1 })
			noErr(t, store.FrameStored(ctx, m))
			waitUntil(t, func() bool { return srv.Stats().AlreadyStored == 1 })

			// Its claimant died: taken over after the lease, and stored.
			dead := s.frameBytes(d4.TypeExtended, "claimed by a dead session\n")
			claimed(dead, "dead", 500*time.Millisecond)
			s.write(dead)
			s.send(d4.TypeExtended, "after it\n")
			q := newPopper(queueOf("maltrail", testQueue))
			for _, want := range []string{"claimed by a dead session", "after it"} {
				if v := must(q.Pop(ctx)); v != want {
					t.Fatalf("queue gave %q, want %q", v, want)
				}
			}
			waitUntil(t, func() bool { return srv.Stats().Lines == 2 })
			if st := srv.Stats(); st.ClaimWaits != 2 || st.ClaimsTakenOver != 1 || st.AlreadyStored != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
