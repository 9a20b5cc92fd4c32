package d4server

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

// TestClaimFrame: the replay mark and the content claim, on both stores. A
// new frame is claimed; its own session may claim it again (a renewal, or
// the same frame twice in a session). The same bytes from another session
// are a replay, refused whatever the claim's state, and take nothing. The
// sensor's resend from another session (restamped: a fresh timestamp and
// HMAC, the same payload) waits while the claim is live, takes it over once
// its lease lapsed, and is told "stored" once the owner marked it stored;
// once the claim expired it is new again. Only the Redis store limits the
// rate, for every server.
func TestClaimFrame(t *testing.T) {
	ctx := context.Background()
	for name, mk := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			store, _, _ := mk(t)
			now := uint64(time.Now().Unix())
			m := Mark{UUID: testSensor, Session: "a", Timestamp: now,
				Expires: time.Now().Add(time.Minute), Lease: 300 * time.Millisecond, ClaimTTL: time.Minute}
			m.HMAC[3] = 9
			m.Content[0] = 1
			replay := m // the same bytes, from another session
			replay.Session = "b"
			resend := replay // the sensor's resend, restamped
			resend.Timestamp, resend.HMAC[3] = now+1, 19
			resendReplay := resend // the resend's bytes, from the first session
			resendReplay.Session = "a"
			state := func(m Mark) ClaimState { return must(store.ClaimFrame(ctx, m)).State }
			expect := func(what string, m Mark, want ClaimState) {
				t.Helper()
				if s := state(m); s != want {
					t.Fatalf("%s: state %d, want %d", what, s, want)
				}
			}

			expect("a new frame", m, ClaimOwned)
			expect("its own session again", m, ClaimOwned)
			expect("a replay while claimed", replay, ClaimRefused)
			expect("a resend during the lease", resend, ClaimBusy)
			time.Sleep(400 * time.Millisecond)
			if c := must(store.ClaimFrame(ctx, resend)); c.State != ClaimOwned || !c.TakenOver {
				t.Fatalf("a resend after the lease: %+v", c)
			}
			expect("the first session after losing its claim", m, ClaimBusy)
			expect("the resend's bytes from the first session", resendReplay, ClaimRefused)
			noErr(t, store.FrameStored(ctx, resend))
			expect("the first session after it was marked stored", m, ClaimStored)
			expect("a replay once stored", replay, ClaimRefused)
			if c := must(store.ClaimFrame(ctx, resend)); c.State != ClaimOwned || c.TakenOver {
				t.Fatalf("the storing session again (the same frame twice in one session): %+v", c)
			}
			other := m // other content in the first session's second
			other.HMAC[3], other.Content[0] = 29, 2
			expect("another frame of the same second", other, ClaimOwned)

			// A content claim lives ClaimTTL: a resend after it is new (and
			// may be stored twice), its replay is still refused.
			short := Mark{UUID: testSensor, Session: "a", Timestamp: now, Expires: m.Expires, Lease: time.Minute, ClaimTTL: 300 * time.Millisecond}
			short.HMAC[3], short.Content[0] = 39, 3
			expect("a short-lived claim", short, ClaimOwned)
			noErr(t, store.FrameStored(ctx, short))
			late := short
			late.Session, late.Timestamp, late.HMAC[3] = "b", now+2, 49
			time.Sleep(400 * time.Millisecond)
			if c := must(store.ClaimFrame(ctx, late)); c.State != ClaimOwned || c.TakenOver {
				t.Fatalf("a resend after the claim expired: %+v", c)
			}
			short.Session = "c"
			expect("a replay after the claim expired", short, ClaimRefused)

			// The rate: 1000 B/s with a 1000-byte burst, charged when the
			// claim is taken.
			r := Mark{UUID: testSensor, Session: "a", Timestamp: m.Timestamp, Expires: m.Expires, Lease: time.Minute, ClaimTTL: time.Minute,
				Bytes: 1000, Rate: 1000, Burst: 1000}
			r.HMAC[3], r.Content[0] = 10, 10
			first := must(store.ClaimFrame(ctx, r))
			r.HMAC[3], r.Content[0] = 11, 11
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

// TestClaimFrameOlderMark: the marks older servers made in the replay hash
// (the session alone, set before storing; or a claim "c <session> <lease>"
// or "s <session>") refuse the frame to other sessions.
func TestClaimFrameOlderMark(t *testing.T) {
	ctx := context.Background()
	store, meta, _ := newRedisStore(t)
	for i, old := range []string{"old", "c old 99999999999999", "s old"} {
		m := Mark{UUID: testSensor, Session: "new", Timestamp: uint64(time.Now().Unix()), Expires: time.Now().Add(time.Minute),
			Lease: time.Minute, ClaimTTL: time.Minute}
		m.HMAC[0], m.Content[0] = byte(i), byte(i)
		noErr(t, meta.HSet(ctx, keyReplay(m.UUID, m.Timestamp), string(m.HMAC[:]), old).Err())
		if c := must(store.ClaimFrame(ctx, m)); c.State != ClaimRefused {
			t.Fatalf("an older server's mark %q: %+v", old, c)
		}
		if n := meta.Exists(ctx, keyContent(m.UUID, m.Content)).Val(); n != 0 {
			t.Fatalf("a refused frame claimed its content")
		}
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
				// The same payload, restamped, from another session: its
				// bytes differ, so the frame is no replay of it.
				m := Mark{UUID: h.UUID.Hex(), Session: session, Timestamp: h.Timestamp - 1, HMAC: h.HMAC,
					Expires: time.Now().Add(time.Minute), Lease: lease, Content: sha256.Sum256(f[d4.HeaderSize:]), ClaimTTL: time.Minute}
				m.HMAC[0] ^= 0xff
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
