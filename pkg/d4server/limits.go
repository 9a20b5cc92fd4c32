package d4server

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// sourceKey is what the per-source connection cap counts by: the IPv4
// address, or the /64 of an IPv6 address (one host usually owns a /64).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// addrOf returns the IP of a transport address, or the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// admission counts open connections overall and per source.
type admission struct {
	max, perSource int

	mu    sync.Mutex
	total int
	by    map[netip.Addr]int
}

// admit takes a slot for a connection from src, or returns the reason it
// may not have one.
func (a *admission) admit(src netip.Addr) (string, bool) {
	k := sourceKey(src)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.total >= a.max {
		return ReasonConnLimit, false
	}
	if a.by[k] >= a.perSource {
		return ReasonSourceLimit, false
	}
	a.total++
	if a.by == nil {
		a.by = make(map[netip.Addr]int)
	}
	a.by[k]++
	return "", true
}

func (a *admission) release(src netip.Addr) {
	k := sourceKey(src)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.by[k]--; a.by[k] <= 0 {
		delete(a.by, k)
	}
}

// budget is a shared byte allowance: the payload bytes buffered for peers
// that have not yet proven a key.
type budget struct {
	max  int64
	used atomic.Int64
}

func (b *budget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) release(n int64) { b.used.Add(-n) }

// sensorTable tracks, per authenticated sensor, its open sessions (oldest
// first) and its rate limiter. Only sessions whose first HMAC verified are
// in it, so a peer without the key can neither take a sensor's place nor
// spend its rate.
type sensorTable struct {
	maxConns int
	rate     rate.Limit // bytes/s; rate.Inf when unlimited
	burst    int

	mu sync.Mutex
	m  map[string]*sensorState
}

// bytesPerSecond is the sensors' rate for a store that limits it; 0 means
// unlimited.
func (t *sensorTable) bytesPerSecond() float64 {
	if t.rate == rate.Inf {
		return 0
	}
	return float64(t.rate)
}

type sensorState struct {
	sessions []*session
	limiter  *rate.Limiter
	idle     time.Time // when the last session left
}

// sensorIdleKeep is how long a sensor without sessions keeps its limiter,
// so reconnecting does not refill its bucket.
const sensorIdleKeep = time.Minute

// attach adds sess to its sensor and returns the session it evicts, if the
// sensor now has more than maxConns: the oldest, since the newcomer just
// proved the key and the oldest is the likeliest to be a dead peer.
func (t *sensorTable) attach(sess *session, now time.Time) (limiter *rate.Limiter, evicted *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]*sensorState)
	}
	st := t.m[sess.hex]
	if st == nil {
		if len(t.m) > 1024 {
			for k, v := range t.m {
				if len(v.sessions) == 0 && now.Sub(v.idle) > sensorIdleKeep {
					delete(t.m, k)
				}
			}
		}
		st = &sensorState{limiter: rate.NewLimiter(t.rate, t.burst)}
		t.m[sess.hex] = st
	}
	st.sessions = append(st.sessions, sess)
	if len(st.sessions) > t.maxConns {
		evicted = st.sessions[0]
		st.sessions = st.sessions[1:]
	}
	return st.limiter, evicted
}

func (t *sensorTable) detach(sess *session, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.m[sess.hex]
	if st == nil {
		return
	}
	for i, s := range st.sessions {
		if s == sess {
			st.sessions = append(st.sessions[:i], st.sessions[i+1:]...)
			break
		}
	}
	if len(st.sessions) == 0 {
		st.idle = now
	}
}

// logLimiter lets one log line per key through every interval and counts the
// others, so a flood of bad peers cannot flood the log.
type logLimiter struct {
	every time.Duration

	mu      sync.Mutex
	next    map[string]time.Time
	skipped map[string]uint64
}

// allow reports whether to log now for key, and how many lines were
// suppressed since the last one.
func (l *logLimiter) allow(key string, now time.Time) (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == nil {
		l.next, l.skipped = make(map[string]time.Time), make(map[string]uint64)
	}
	if now.Before(l.next[key]) {
		l.skipped[key]++
		return false, 0
	}
	n := l.skipped[key]
	delete(l.skipped, key)
	l.next[key] = now.Add(l.every)
	return true, n
}

// waitTokens takes n bytes from a sensor's limiter, waiting as long as it
// takes (back-pressure: the sensor's transport fills up meanwhile). It
// reports whether the frame had to wait.
func waitTokens(ctx context.Context, l *rate.Limiter, n int) (bool, error) {
	if l == nil || l.Limit() == rate.Inf || n == 0 {
		return false, nil
	}
	r := l.ReserveN(time.Now(), n)
	if !r.OK() {
		// n exceeds the burst: cannot happen, burst >= the largest frame.
		return false, nil
	}
	d := r.Delay()
	if d == 0 {
		return false, nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true, nil
	case <-ctx.Done():
		r.Cancel()
		return true, ctx.Err()
	}
}
