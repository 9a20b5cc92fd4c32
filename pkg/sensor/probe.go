package sensor

import (
	"sync"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
)

// Probe lets other goroutines read a running sensor's counters: the
// command hands one to Run (Options.Probe), and /metrics and `xtrail
// status` read it while Run goes. A zero Probe is ready; it reports
// nothing before Run has loaded the program and after Run returns.
type Probe struct {
	mu     sync.RWMutex
	dp     *dataplane.Dataplane // nil when no sensor runs
	agents agentSet
}

// attach makes a running sensor's parts readable.
func (p *Probe) attach(dp *dataplane.Dataplane, agents agentSet) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.dp, p.agents = dp, agents
	p.mu.Unlock()
}

// detach is called before the data plane is closed: a reader holding the
// read lock finishes first, and none reads a closed map after.
func (p *Probe) detach() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.dp, p.agents = nil, nil
	p.mu.Unlock()
}

// Snapshot is a running sensor's counters at one moment.
type Snapshot struct {
	// XDP are the program's counters summed over CPUs, in bpf/xtrail.h's
	// order; nil if they could not be read.
	XDP []dataplane.Counter
	// Agent is every counter of the agent's exit summary, in its order,
	// the heuristics' (heur_*) included.
	Agent []NamedCount
	// EventTypes are the events emitted per trail type, in
	// EventTypeNames' order.
	EventTypes [len(EventTypeNames)]uint64
	// TrailLoads is Stats.TrailLoads: trail sets made live since start.
	TrailLoads uint64
	// TrailMemory is the trail maps' kernel memory; TrailsLoaded when the
	// live generation was loaded (zero if no load recorded it).
	TrailMemory  dataplane.Memory
	TrailsLoaded time.Time
	// Errors lists what could not be read (the rest is still reported).
	Errors []error
}

// NamedCount is one counter with its exit summary name.
type NamedCount struct {
	Name  string
	Value uint64
}

// Snapshot reads the running sensor's counters; ok is false when no
// sensor runs.
func (p *Probe) Snapshot() (s Snapshot, ok bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.dp == nil {
		return s, false
	}
	st := p.agents.stats() // summed over the agents
	st.Each(func(name string, v uint64) { s.Agent = append(s.Agent, NamedCount{name, v}) })
	if h := p.agents[0].Heuristics(); h != nil { // forks share its counters
		args := h.Stats().Summary()
		for i := 0; i+1 < len(args); i += 2 {
			if v, ok := args[i+1].(uint64); ok {
				s.Agent = append(s.Agent, NamedCount{args[i].(string), v})
			}
		}
	}
	for i := range s.EventTypes {
		s.EventTypes[i] = st.EventTypes[i].Load()
	}
	s.TrailLoads = st.TrailLoads.Load()
	var err error
	if s.XDP, err = p.dp.Counters(); err != nil {
		s.Errors = append(s.Errors, err)
	}
	maps := p.dp.Trails()
	if s.TrailMemory, err = maps.Memory(); err != nil {
		s.Errors = append(s.Errors, err)
	}
	if o, found, err := maps.Origin(); err != nil {
		s.Errors = append(s.Errors, err)
	} else if found {
		s.TrailsLoaded = o.LoadedAt
	}
	return s, true
}
