// Package throttle implements Maltrail's event suppression (spec §5):
// condensing of scan-like events per (source, trail), then one of three
// throttles: "summarize" (the Rust sensor's default: the first 3 events per
// key per 60 s, the rest merged into one line when the window closes),
// "legacy" (the Python sensor's per-bucket rule) and "off".
//
// The clock is the events' own time (capture time in replay), advanced by
// Tick; nothing here reads the wall clock.
package throttle

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// Mode selects the throttle.
type Mode int

const (
	Summarize Mode = iota
	Legacy
	Off
)

// ParseMode reads EVENT_THROTTLE_MODE: summarize (default), legacy or off.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "summarize":
		return Summarize, nil
	case "legacy":
		return Legacy, nil
	case "off":
		return Off, nil
	}
	return 0, fmt.Errorf("EVENT_THROTTLE_MODE %q: want summarize, legacy or off", s)
}

// Out receives what passes: plain events, and merged events whose port,
// address and protocol columns may be comma lists.
type Out interface {
	Event(ev *maltrail.Event)
	Merged(ev *maltrail.TextEvent)
}

// Limits of spec §5.
const (
	condenseEvery  = 10 * time.Second
	condenseMax    = 1000 // events buffered per (source, trail)
	summarizeFirst = 3
	summarizeHold  = 1000
	summarizeWin   = 60 * time.Second
	maxKeys        = 50000
)

// condenseOn: info words that make an event condensable.
var condenseOn = [...]string{"attacker", "reputation", "scanner", "user agent", "tor exit", "port scanning", "potential infection"}

type key struct {
	src   netip.Addr
	trail string
}

type window struct {
	start time.Time
	seen  int
	held  []maltrail.Event
	used  uint64 // for LRU eviction
}

// Suppressor applies condensing and the throttle. One goroutine uses it.
type Suppressor struct {
	mode      Mode
	processes int64 // legacy: PROCESS_COUNT
	out       Out

	condensed  map[key][]maltrail.Event
	order      []key // condensing keys in first-seen order, for stable output
	lastFlush  time.Time
	windows    map[key]*window
	useCounter uint64

	// legacy state: one bucket and its seen (addr, trail) pairs
	bucket    int64
	hasBucket bool
	seen      map[key]struct{}

	Dropped uint64 // events not written (throttled or held then merged)
}

// New returns a Suppressor; processes is Maltrail's PROCESS_COUNT (legacy).
func New(mode Mode, processes int, out Out) *Suppressor {
	if processes < 1 {
		processes = 1
	}
	return &Suppressor{mode: mode, processes: int64(processes), out: out,
		condensed: map[key][]maltrail.Event{}, windows: map[key]*window{}, seen: map[key]struct{}{}}
}

// Add takes one event (copied if it is held).
func (s *Suppressor) Add(ev *maltrail.Event) {
	s.Tick(ev.Time)
	if condensable(ev.Info) {
		k := key{ev.SrcIP, ev.Trail}
		buf, ok := s.condensed[k]
		if !ok {
			s.order = append(s.order, k)
		}
		if len(buf) < condenseMax {
			s.condensed[k] = append(buf, *ev)
		}
		return
	}
	s.throttle(ev, nil)
}

func condensable(info string) bool {
	for _, w := range condenseOn {
		if strings.Contains(info, w) {
			return true
		}
	}
	return false
}

// Tick advances the clock: condensing buffers are flushed every 10 s and
// summarize windows older than 60 s close.
func (s *Suppressor) Tick(now time.Time) {
	if s.lastFlush.IsZero() {
		s.lastFlush = now
	}
	if now.Sub(s.lastFlush) >= condenseEvery {
		s.flushCondensed()
		s.lastFlush = now
	}
	if s.mode == Summarize {
		for k, w := range s.windows {
			if now.Sub(w.start) >= summarizeWin {
				s.closeWindow(k, w)
			}
		}
	}
}

// Flush emits everything held (end of a replay, shutdown).
func (s *Suppressor) Flush() {
	s.flushCondensed()
	for k, w := range s.windows {
		s.closeWindow(k, w)
	}
}

func (s *Suppressor) flushCondensed() {
	order := s.order
	s.order = nil
	bufs := s.condensed
	s.condensed = map[key][]maltrail.Event{}
	for _, k := range order {
		evs := bufs[k]
		if len(evs) == 1 {
			s.throttle(&evs[0], nil)
			continue
		}
		m, merged := merge(evs)
		if !merged {
			s.throttle(&evs[0], nil)
			continue
		}
		s.throttle(&evs[0], m)
	}
}

// throttle passes ev (or its merged form m, keyed like ev) through the mode.
func (s *Suppressor) throttle(ev *maltrail.Event, m *maltrail.TextEvent) {
	switch s.mode {
	case Off:
		s.emit(ev, m)
	case Legacy:
		s.legacy(ev, m)
	default:
		s.summarize(ev, m)
	}
}

func (s *Suppressor) emit(ev *maltrail.Event, m *maltrail.TextEvent) {
	if m != nil {
		s.out.Merged(m)
		return
	}
	s.out.Event(ev)
}

// legacy: the Python sensor keeps one bucket = sec / PROCESS_COUNT; the
// first event of a new bucket is written without being recorded, later
// ones are dropped once (src, trail) or (dst, trail) was recorded.
func (s *Suppressor) legacy(ev *maltrail.Event, m *maltrail.TextEvent) {
	b := ev.Time.Unix() / s.processes
	if !s.hasBucket || b != s.bucket {
		s.bucket, s.hasBucket = b, true
		clear(s.seen)
		s.emit(ev, m)
		return
	}
	ks, kd := key{ev.SrcIP, ev.Trail}, key{ev.DstIP, ev.Trail}
	_, a := s.seen[ks]
	_, d := s.seen[kd]
	if a || d {
		s.Dropped++
		return
	}
	s.seen[ks], s.seen[kd] = struct{}{}, struct{}{}
	s.emit(ev, m)
}

// summarize: the first 3 events per (src, trail) per 60 s pass; up to 1000
// more are held and merged into one line when the window closes.
func (s *Suppressor) summarize(ev *maltrail.Event, m *maltrail.TextEvent) {
	k := key{ev.SrcIP, ev.Trail}
	w := s.windows[k]
	if w == nil {
		if len(s.windows) >= maxKeys {
			s.evict()
		}
		w = &window{start: ev.Time}
		s.windows[k] = w
	}
	s.useCounter++
	w.used = s.useCounter
	if w.seen < summarizeFirst || m != nil {
		// merged (condensed) events already stand for many: never held
		w.seen++
		s.emit(ev, m)
		return
	}
	if len(w.held) < summarizeHold {
		w.held = append(w.held, *ev)
	} else {
		s.Dropped++
	}
}

func (s *Suppressor) closeWindow(k key, w *window) {
	delete(s.windows, k)
	switch len(w.held) {
	case 0:
	case 1:
		s.out.Event(&w.held[0])
	default:
		m, merged := merge(w.held)
		if merged {
			s.out.Merged(m)
		} else {
			// identical columns: one line stands for the held events
			s.out.Event(&w.held[0])
		}
		s.Dropped += uint64(len(w.held) - 1)
	}
}

// evict closes the least recently used 1% of windows, flushing what they hold.
func (s *Suppressor) evict() {
	type kw struct {
		k key
		w *window
	}
	all := make([]kw, 0, len(s.windows))
	for k, w := range s.windows {
		all = append(all, kw{k, w})
	}
	slices.SortFunc(all, func(a, b kw) int { return int(a.w.used) - int(b.w.used) })
	n := max(1, len(all)/100)
	for _, e := range all[:n] {
		s.closeWindow(e.k, e.w)
	}
}

// merge builds Maltrail's condensed event: the first event's time and
// columns, with src_port, dst_ip, dst_port and proto as sorted comma lists
// where the events differ (ports sort as numbers, addresses as text).
func merge(evs []maltrail.Event) (*maltrail.TextEvent, bool) {
	first := &evs[0]
	var sports, dports []int
	var dsts, protos []string
	differs := false
	for i := range evs {
		e := &evs[i]
		if e.SrcPort != first.SrcPort || e.DstIP != first.DstIP || e.DstPort != first.DstPort || e.Proto != first.Proto {
			differs = true
		}
		sports = addInt(sports, int(e.SrcPort))
		dports = addInt(dports, int(e.DstPort))
		dsts = addStr(dsts, maltrail.FormatAddr(e.DstIP))
		protos = addStr(protos, e.Proto)
	}
	if !differs {
		return nil, false
	}
	slices.Sort(sports)
	slices.Sort(dports)
	slices.Sort(dsts)
	slices.Sort(protos)
	return &maltrail.TextEvent{
		Time:      first.Time,
		SrcIP:     string(maltrail.AppendSrc(nil, first)),
		SrcPort:   joinInts(sports),
		DstIP:     strings.Join(dsts, ","),
		DstPort:   joinInts(dports),
		Proto:     strings.Join(protos, ","),
		Type:      first.Type,
		Trail:     first.Trail,
		Info:      first.Info,
		Reference: first.Reference,
	}, true
}

func addInt(s []int, v int) []int {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func addStr(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// joinInts renders ports; port 0 (no port: ICMP and other protocols) is
// "-" as Maltrail writes it, alone or in a list.
func joinInts(v []int) string {
	if len(v) == 1 && v[0] == 0 {
		return ""
	}
	var b strings.Builder
	for i, n := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		if n == 0 {
			b.WriteByte('-')
			continue
		}
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}
