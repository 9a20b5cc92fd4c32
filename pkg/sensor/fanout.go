package sensor

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/trails"
)

// A busy link brings more candidates than one goroutine can match, so a
// live sensor runs one agent per CPU. One goroutine reads the ring and
// deals the records out by source address: every record of one source
// goes to one agent, in ring order. That keeps whole what Maltrail keys
// by source: the condensing and the throttle ((source, trail)) and the
// web-scan pairs ((source, destination)), each in the agent of its
// source, exactly as one agent would see them. The DNS heuristics count
// names that any source may ask for, so their tables are shared by the
// agents, under a lock (heuristics.Engine.Fork). A source that sends
// most of the candidates (a resolver's answers) stays on one agent.

// newAgents returns n agents for c (n < 1: one). The first is made as
// NewAgent makes one; the others fork its heuristics.
func newAgents(c AgentConfig, n int) []*Agent {
	first := NewAgent(c)
	agents := []*Agent{first}
	for len(agents) < max(n, 1) {
		a := NewAgent(c)
		if first.heur != nil {
			a.heur = first.heur.Fork()
		}
		agents = append(agents, a)
	}
	return agents
}

// batchBytes bounds the records a batch carries: a few dozen candidates,
// so a handoff costs little per record and no agent waits long.
const (
	batchBytes   = 64 << 10
	batchRecords = 256
	batchesEach  = 4 // batches per agent: in flight, filling, spare
)

// batch is records copied out of the ring for one agent: ends[i] is the
// end of record i in buf.
type batch struct {
	buf  []byte
	ends []int
}

// fanMsg is a batch or, with a nil batch, a clock tick.
type fanMsg struct {
	b    *batch
	tick time.Time
}

// fanout hands records to agents by source address. Handle, Flush, Tick
// and Close are called by the one goroutine that reads the ring, which is
// also the first agent's: its records are handled at once, uncopied, so
// that with one agent per CPU no CPU only reads.
type fanout struct {
	agents []*Agent
	work   []chan fanMsg
	free   []chan *batch
	cur    []*batch
	done   sync.WaitGroup
}

// newFanout starts one goroutine per agent but the first; Close stops
// them.
func newFanout(agents []*Agent) *fanout {
	f := &fanout{agents: agents}
	for i, a := range agents {
		if i == 0 {
			f.work, f.free, f.cur = append(f.work, nil), append(f.free, nil), append(f.cur, nil)
			continue
		}
		work := make(chan fanMsg, batchesEach)
		free := make(chan *batch, batchesEach)
		for range batchesEach {
			free <- &batch{buf: make([]byte, 0, batchBytes), ends: make([]int, 0, batchRecords)}
		}
		f.work, f.free = append(f.work, work), append(f.free, free)
		f.cur = append(f.cur, nil)
		f.done.Add(1)
		go func() {
			defer f.done.Done()
			runAgent(a, work, free)
		}()
	}
	return f
}

// runAgent handles the batches and ticks of one agent until work closes.
func runAgent(a *Agent, work <-chan fanMsg, free chan<- *batch) {
	for m := range work {
		if m.b == nil {
			a.Tick(m.tick)
			continue
		}
		start := 0
		for _, end := range m.b.ends {
			a.Handle(m.b.buf[start:end])
			start = end
		}
		m.b.buf, m.b.ends = m.b.buf[:0], m.b.ends[:0]
		free <- m.b
	}
}

// shard picks the agent of a record: a hash of its source address
// (struct xt_rec in bpf/xtrail.h: 16 bytes at offset 32). A record too
// short to hold one goes to the first agent, which counts it as bad.
func (f *fanout) shard(raw []byte) int {
	if len(raw) < dataplane.RecordHeaderSize {
		return 0
	}
	h := binary.LittleEndian.Uint64(raw[32:]) ^ binary.LittleEndian.Uint64(raw[40:])*0x9E3779B97F4A7C15
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	h ^= h >> 32
	return int(h % uint64(len(f.agents)))
}

// Handle copies raw into its agent's batch, handing the batch over when
// it is full. It waits when that agent has all its batches in hand: the
// ring then fills, and the kernel counts what it drops.
func (f *fanout) Handle(raw []byte) {
	i := f.shard(raw)
	if i == 0 {
		f.agents[0].Handle(raw)
		return
	}
	b := f.cur[i]
	if b == nil {
		b = <-f.free[i]
		f.cur[i] = b
	}
	b.buf = append(b.buf, raw...)
	b.ends = append(b.ends, len(b.buf))
	if len(b.ends) == batchRecords || len(b.buf) >= batchBytes-2048 {
		f.send(i)
	}
}

func (f *fanout) send(i int) {
	f.work[i] <- fanMsg{b: f.cur[i]}
	f.cur[i] = nil
}

// Flush hands over every batch that holds records: the ring is empty
// for now, and no record should wait for more.
func (f *fanout) Flush() {
	for i, b := range f.cur {
		if b != nil && len(b.ends) > 0 {
			f.send(i)
		}
	}
}

// Tick advances every agent's suppression clock, after the records
// already read.
func (f *fanout) Tick(now time.Time) {
	f.Flush()
	f.agents[0].Tick(now)
	for _, w := range f.work[1:] {
		w <- fanMsg{tick: now}
	}
}

// Close hands over what is left and waits until every agent has handled
// it.
func (f *fanout) Close() {
	f.Flush()
	for _, w := range f.work[1:] {
		close(w)
	}
	f.done.Wait()
}

// agentSet is the agents of one sensor: what a reload stages, it stages
// in each.
type agentSet []*Agent

// SetAnswers is Agent.SetAnswers on every agent.
func (s agentSet) SetAnswers(gen uint32, all bool, t *heuristics.AnswerTrails) {
	for _, a := range s {
		a.SetAnswers(gen, all, t)
	}
}

// StageNames is Agent.StageNames on every agent: it returns once none
// can still use the Names it replaced, false if ctx ended first.
func (s agentSet) StageNames(ctx context.Context, gen uint32, n *trails.Names) bool {
	for _, a := range s {
		if !a.StageNames(ctx, gen, n) {
			return false
		}
	}
	return true
}

// Flush is Agent.Flush on every agent (none may be handling records).
func (s agentSet) Flush() {
	for _, a := range s {
		a.Flush()
	}
}

// stats sums the agents' counters.
func (s agentSet) stats() *Stats {
	if len(s) == 1 {
		return &s[0].stats
	}
	var sum Stats
	for _, a := range s {
		a.stats.addTo(&sum)
	}
	return &sum
}
