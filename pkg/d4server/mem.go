package d4server

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/xtrail/xtrail/pkg/export"
)

// MemStore is an in-process Store with the semantics of RedisStore: the same
// queue fan-out, bounds and reliable pop. Nothing survives the process, so a
// caller that runs it outside tests must say loudly that it is not durable.
// Sensor-group queues (sensor:queues:...) are not supported: only global
// queues registered with RegisterQueue receive lines.
type MemStore struct {
	max int64

	mu      sync.Mutex
	sensors map[string]*SensorInfo
	queues  map[string]*memQueueMeta       // by queue uuid
	byType  map[string]map[string]struct{} // meta type -> queue uuids
	lists   map[string]*memList            // by analyzer:<t>:<q>
	marks   map[markKey]markVal            // replay marks
	claims  map[contentKey]claimVal        // content claims
	sweep   int                            // claims made since the last expiry sweep
	active  map[string]map[string]bool     // sensor -> open sessions
}

type markKey struct {
	uuid string
	ts   uint64
	mac  [32]byte
}

type markVal struct {
	session string
	expires time.Time
}

type contentKey struct {
	uuid string
	sum  [32]byte
}

type claimVal struct {
	session string
	stored  bool
	lease   time.Time // end of the claim while not stored
	expires time.Time
}

// SensorInfo is what MemStore keeps about a sensor (d4-core's metadata_uuid).
type SensorInfo struct {
	FirstSeen, LastSeen time.Time
	Error               string
	IPs                 []string // "<ip>-<YYYYmmddHHMMSS>", newest first, at most 16
	Frames              uint64
}

type memQueueMeta struct {
	metaType, description string
	maxSize               int64
	lastUpdated           time.Time
}

// memList mirrors a Redis list and its consumers' in-flight lists, all
// kept oldest first. wake is closed and replaced on every push, so any number of blocked
// consumers wake up without a sync.Cond (which cannot select on a context).
type memList struct {
	items, dead []string
	inflight    map[string][]string // by consumer
	wake        chan struct{}
}

// NewMemStore returns an empty in-process store whose queues keep at most
// maxSize+1 elements (as LTRIM 0 maxSize does); maxSize <= 0 means
// DefaultQueueMaxSize.
func NewMemStore(maxSize int64) *MemStore {
	if maxSize <= 0 {
		maxSize = DefaultQueueMaxSize
	}
	return &MemStore{
		max:     maxSize,
		sensors: make(map[string]*SensorInfo),
		queues:  make(map[string]*memQueueMeta),
		byType:  make(map[string]map[string]struct{}),
		lists:   make(map[string]*memList),
		marks:   make(map[markKey]markVal),
		claims:  make(map[contentKey]claimVal),
		active:  make(map[string]map[string]bool),
	}
}

// ClaimFrame implements Store's replay check and content claim in memory,
// as the Redis store's script does. It does not limit the sensor's rate:
// the server does that in process.
func (m *MemStore) ClaimFrame(_ context.Context, mk Mark) (Claim, error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sweep++; m.sweep >= 4096 {
		m.sweep = 0
		for k, v := range m.marks {
			if now.After(v.expires) {
				delete(m.marks, k)
			}
		}
		for k, v := range m.claims {
			if now.After(v.expires) {
				delete(m.claims, k)
			}
		}
	}
	mkey := markKey{mk.UUID, mk.Timestamp, mk.HMAC}
	if v, ok := m.marks[mkey]; ok && now.Before(v.expires) && v.session != mk.Session {
		return Claim{State: ClaimRefused}, nil
	}
	m.marks[mkey] = markVal{session: mk.Session, expires: mk.Expires}
	ckey := contentKey{mk.UUID, mk.Content}
	c := Claim{State: ClaimOwned}
	if v, ok := m.claims[ckey]; ok && now.Before(v.expires) && v.session != mk.Session {
		switch {
		case v.stored:
			return Claim{State: ClaimStored}, nil
		case now.Before(v.lease):
			return Claim{State: ClaimBusy}, nil
		}
		c.TakenOver = true
	}
	m.claims[ckey] = claimVal{session: mk.Session, lease: now.Add(mk.Lease), expires: now.Add(mk.ClaimTTL)}
	return c, nil
}

// FrameStored implements Store.
func (m *MemStore) FrameStored(_ context.Context, mk Mark) error {
	m.mu.Lock()
	m.claims[contentKey{mk.UUID, mk.Content}] = claimVal{session: mk.Session, stored: true, expires: time.Now().Add(mk.ClaimTTL)}
	m.mu.Unlock()
	return nil
}

// SessionState tracks open sessions per sensor (see Active).
func (m *MemStore) SessionState(_ context.Context, ev SessionEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch ev.Kind {
	case SessionOpened:
		if m.active[ev.UUID] == nil {
			m.active[ev.UUID] = make(map[string]bool)
		}
		m.active[ev.UUID][ev.Session] = true
	case SessionClosed:
		delete(m.active[ev.UUID], ev.Session)
		if len(m.active[ev.UUID]) == 0 {
			delete(m.active, ev.UUID)
		}
	}
	return nil
}

// Active returns the number of open sessions of sensor uuid (32 hex).
func (m *MemStore) Active(uuid string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.active[uuid])
}

// Init does nothing: the accepted types are fixed by the server's code.
func (m *MemStore) Init(context.Context) error { return nil }

// Close does nothing: there is nothing to release.
func (m *MemStore) Close() error { return nil }

func (m *MemStore) sensor(u string) *SensorInfo {
	s := m.sensors[u]
	if s == nil {
		s = &SensorInfo{}
		m.sensors[u] = s
	}
	return s
}

// SensorSeen records an accepted frame.
func (m *MemStore) SensorSeen(_ context.Context, v Sighting) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sensor(v.UUID)
	if s.FirstSeen.IsZero() {
		s.FirstSeen = v.Time
	}
	s.LastSeen = v.Time
	s.Error = ""
	s.Frames++
	if v.SessionStart {
		s.IPs = slices.Insert(s.IPs, 0, ipStamp(v.IP, v.Time))
		if len(s.IPs) > 16 {
			s.IPs = s.IPs[:16]
		}
	}
	return nil
}

// SetError sets the sensor's last error.
func (m *MemStore) SetError(_ context.Context, uuid, msg string) error {
	m.mu.Lock()
	m.sensor(uuid).Error = msg
	m.mu.Unlock()
	return nil
}

// Sensor returns a copy of what is known about sensor uuid (32 hex).
func (m *MemStore) Sensor(uuid string) (SensorInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sensors[uuid]
	if !ok {
		return SensorInfo{}, false
	}
	c := *s
	c.IPs = slices.Clone(s.IPs)
	return c, true
}

func (m *MemStore) list(key string) *memList {
	l := m.lists[key]
	if l == nil {
		l = &memList{wake: make(chan struct{}), inflight: make(map[string][]string)}
		m.lists[key] = l
	}
	return l
}

// PushLines appends the lines to every queue registered for metaType.
func (m *MemStore) PushLines(_ context.Context, metaType, _ string, lines [][]byte) (int, error) {
	if len(lines) == 0 {
		return 0, nil
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for q := range m.byType[metaType] {
		meta := m.queues[q]
		l := m.list(keyAnalyzerList(metaType, q))
		for _, b := range lines {
			l.items = append(l.items, string(b)) // copy: b is the caller's buffer
		}
		bound := m.max
		if meta.maxSize > 0 {
			bound = meta.maxSize
		}
		if n := int64(len(l.items)); n > bound+1 {
			l.items = slices.Delete(l.items, 0, int(n-bound-1)) // drop the oldest
		}
		meta.lastUpdated = now
		close(l.wake)
		l.wake = make(chan struct{})
	}
	return len(m.byType[metaType]), nil
}

// RegisterQueue creates or updates a global queue of metaType.
func (m *MemStore) RegisterQueue(_ context.Context, metaType, queueUUID, description string) (string, error) {
	q, err := checkQueueArgs(metaType, queueUUID)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	meta := m.queues[q]
	if meta == nil {
		meta = &memQueueMeta{}
		m.queues[q] = meta
	}
	meta.metaType = metaType
	if meta.description == "" {
		meta.description = description
	}
	if m.byType[metaType] == nil {
		m.byType[metaType] = make(map[string]struct{})
	}
	m.byType[metaType][q] = struct{}{}
	return q, nil
}

// SetQueueMaxSize sets a queue's own bound (d4-core's max_size field).
func (m *MemStore) SetQueueMaxSize(queueUUID string, n int64) {
	m.mu.Lock()
	if meta := m.queues[queueUUID]; meta != nil {
		meta.maxSize = n
	}
	m.mu.Unlock()
}

// Queue returns a consumer of the queue, like RedisStore.Queue (without
// claims: in process a consumer name has one user).
func (m *MemStore) Queue(metaType, queueUUID string, opts ...QueueOption) *MemQueue {
	return &MemQueue{m: m, key: keyAnalyzerList(metaType, queueUUID), consumer: newQueueOpts(opts).consumer}
}

// MemQueue is MemStore's export.Queue.
type MemQueue struct {
	m             *MemStore
	key, consumer string
}

var _ export.Queue = (*MemQueue)(nil)

// Name returns the Redis-style key of the queue.
func (q *MemQueue) Name() string { return q.key }

// Open implements export.Queue.
func (q *MemQueue) Open(context.Context) ([]string, error) {
	return q.InFlight(context.Background())
}

// InFlight returns the consumer's in-flight lines, oldest first.
func (q *MemQueue) InFlight(context.Context) ([]string, error) {
	q.m.mu.Lock()
	defer q.m.mu.Unlock()
	return slices.Clone(q.m.list(q.key).inflight[q.consumer]), nil
}

// Next implements export.Queue.
func (q *MemQueue) Next(ctx context.Context, done int, dead []string, max int) (export.Batch, error) {
	for {
		q.m.mu.Lock()
		l := q.m.list(q.key)
		fl := l.inflight[q.consumer]
		l.inflight[q.consumer] = slices.Delete(fl, 0, min(done, len(fl)))
		l.dead = append(l.dead, dead...)
		done, dead = 0, nil
		n := min(max, len(l.items))
		lines := slices.Clone(l.items[:n])
		l.items = l.items[n:]
		l.inflight[q.consumer] = append(l.inflight[q.consumer], lines...)
		b := export.Batch{Lines: lines, Backlog: int64(len(l.items))}
		wake := l.wake
		q.m.mu.Unlock()
		if n > 0 || max == 0 {
			return b, nil
		}
		select {
		case <-ctx.Done():
			return b, nil
		case <-wake:
		case <-time.After(popBlock):
			return b, nil
		}
	}
}

// Backlog implements export.Queue.
func (q *MemQueue) Backlog(ctx context.Context) (export.Batch, error) { return q.Next(ctx, 0, nil, 0) }

// Close implements export.Queue. Undelivered lines stay in flight for the
// consumer's next run: in process there are no other consumers to take
// them over.
func (q *MemQueue) Close(context.Context) error { return nil }

// Dead returns the dead-letter lines (tests).
func (q *MemQueue) Dead() []string {
	q.m.mu.Lock()
	defer q.m.mu.Unlock()
	return slices.Clone(q.m.list(q.key).dead)
}
