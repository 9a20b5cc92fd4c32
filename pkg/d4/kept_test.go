package d4

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// heldLink records frames and delivers only as many as the test says, then
// fails when the test says: a server that stored frames and died before
// acknowledging them.
type heldLink struct {
	mu      sync.Mutex
	writes  [][]byte
	deliver uint64
	err     error
	notify  notifier
}

func newHeldLink() *heldLink { return &heldLink{notify: make(notifier, 1)} }

func (h *heldLink) write(b []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return h.err
	}
	h.writes = append(h.writes, bytes.Clone(b))
	return nil
}

func (h *heldLink) done() (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return min(h.deliver, uint64(len(h.writes))), h.err
}

// set delivers the first n frames and, with err, ends the link.
func (h *heldLink) set(n uint64, err error) {
	h.mu.Lock()
	h.deliver, h.err = n, err
	h.mu.Unlock()
	h.notify.signal()
}

func (h *heldLink) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.writes)
}

// data returns the type-254 frames written, as written.
func (h *heldLink) data() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out [][]byte
	for _, w := range h.writes {
		if w[1] == TypeExtended {
			out = append(out, w)
		}
	}
	return out
}

func (h *heldLink) wake() <-chan struct{} { return h.notify }
func (h *heldLink) remote() string        { return "held" }
func (h *heldLink) abort()                {}
func (h *heldLink) close()                {}

// heldClient is a client whose connections are the given links, in turn,
// with a clock the test moves.
func heldClient(t *testing.T, links []*heldLink, configure func(*ClientConfig)) (*Client, *atomic.Int64) {
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	c := newTestClient(t, "d4.invalid:4443", &tls.Config{}, func(cfg *ClientConfig) {
		cfg.MaxFrame = 12 // one line per frame
		cfg.Backoff = time.Millisecond
		cfg.Now = func() time.Time { return time.Unix(clock.Load(), 0) }
		if configure != nil {
			configure(cfg)
		}
	})
	c.dial = linksInTurn(links)
	return c, &clock
}

// Frames a lost connection left undelivered go out again on the next one
// restamped: the same payload with a fresh timestamp and HMAC, never the
// same bytes (a server would refuse those from a new session as a replay),
// even within the same second; those delivered do not go again. A resend
// later than ResendWithin after the first send is counted.
func TestClientResendsRestamped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance int64 // seconds between the first send and the resend
		fail    error
		late    uint64
	}{
		{"same second", 0, errors.New("server gone"), 0},
		{"later", 30, errors.New("server gone"), 0},
		{"rejected", 1, &RejectedError{Reason: "timestamp outside window", Count: 2}, 0},
		{"late", 61, errors.New("server gone"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			links := []*heldLink{newHeldLink(), newHeldLink()}
			c, clock := heldClient(t, links, func(cfg *ClientConfig) { cfg.ResendWithin = time.Minute })
			for i := range 4 {
				c.Send(fmt.Appendf(nil, "line %04d\n", i))
			}
			runClient(t, c)
			waitFor(t, func() bool { return links[0].count() == 5 }) // meta + 4
			clock.Add(tc.advance)
			links[0].set(2, tc.fail)                                 // meta and line 0 delivered
			waitFor(t, func() bool { return links[1].count() == 4 }) // meta + the 3 undelivered
			links[1].set(4, nil)
			waitFor(t, func() bool { return c.Stats().Pending == 0 })

			first, again := links[0].data(), links[1].data()
			if len(again) != 3 {
				t.Fatalf("%d data frames sent again, want 3", len(again))
			}
			signer := NewSigner([]byte(vecKey))
			for i, f := range again {
				var h0, h1 Header
				f0 := first[i+1]
				if err := errors.Join(h0.Unmarshal(f0), h1.Unmarshal(f)); err != nil {
					t.Fatal(err)
				}
				want := max(uint64(clock.Load()), h0.Timestamp+1)
				switch {
				case h1.Timestamp != want:
					t.Fatalf("frame %d sent again with timestamp %d (first %d, now %d), want %d", i+1, h1.Timestamp, h0.Timestamp, clock.Load(), want)
				case h1.HMAC == h0.HMAC:
					t.Fatalf("frame %d sent again with its first HMAC", i+1)
				case !bytes.Equal(f0[HeaderSize:], f[HeaderSize:]):
					t.Fatalf("frame %d sent again with payload %q, first %q", i+1, f[HeaderSize:], f0[HeaderSize:])
				case !signer.Verify(f):
					t.Fatalf("frame %d: the restamped frame's HMAC does not verify", i+1)
				}
			}
			if st := c.Stats(); st.Resent != 3 || st.Restamped != 3 || st.ResentLate != tc.late || st.Acked != 4 || st.Sent != 7 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// Keeping frames allocates nothing once the chunks exist, and a chunk is
// reused once every frame in it is delivered.
func TestFrameArena(t *testing.T) {
	var a frameArena
	var held []*chunk
	for range 3 * chunkSize / 1000 {
		_, c := a.alloc(1000)
		held = append(held, c)
	}
	first := held[0]
	for _, c := range held {
		a.release(c)
	}
	if len(a.free) == 0 || a.free[0] != first {
		t.Fatalf("the first chunk was not kept for reuse: %d free", len(a.free))
	}
	allocs := testing.AllocsPerRun(100, func() {
		for range 2 * chunkSize / 1000 {
			_, c := a.alloc(1000)
			a.release(c)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
	if b, c := a.alloc(chunkSize + 1); c != nil || cap(b) != chunkSize+1 {
		t.Fatal("a frame larger than a chunk did not get its own buffer")
	}
}
