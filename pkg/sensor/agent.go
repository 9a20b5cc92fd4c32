// Package sensor is xtrail's sensor agent: it reads the XDP program's ring
// buffer (live) or runs captures through the program (replay), turns trail
// hits into Maltrail events and hands their lines to the sinks.
package sensor

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// MetaSource gives the info and reference text of a trail meta id, and the
// CIDR trail holding an address (for the text of a CIDR hit).
type MetaSource interface {
	Meta(id uint32) (info, ref string, err error)
	Prefix(addr netip.Addr) (netip.Prefix, error)
}

// Emitter receives each rendered event line (with its trailing '\n') and
// the event's epoch second.
type Emitter interface {
	Emit(sec int64, line []byte) error
}

// Stats counts what the agent did with the records it read. Every record
// read is either Bad or counted once in Kinds: Records = Bad + sum(Kinds).
type Stats struct {
	Records     atomic.Uint64    // ring-buffer records read
	Events      atomic.Uint64    // events emitted
	Bad         atomic.Uint64    // records that failed to decode or name a kind the agent does not know
	Kinds       [8]atomic.Uint64 // per record kind (dataplane.Kind*): records of a known kind that decoded
	Malformed   [8]atomic.Uint64 // per record kind: candidates whose payload did not parse (truncated, malformed, unsupported, undecryptable); a ClientHello without a server name is not one
	Panics      atomic.Uint64    // records (or clock ticks) whose handling panicked: a bug, recovered and logged with the record's hex
	NoMeta      atomic.Uint64    // hits whose trail was removed before the event was rendered
	UnknownLUT  atomic.Uint64    // hits on an IP protocol Maltrail has no name for
	EmitErrors  atomic.Uint64    // events a sink refused
	Skipped     atomic.Uint64    // replay frames the program cannot take (not IP, shorter than Ethernet)
	Frames      atomic.Uint64    // replay frames run through the program
	QUICBadTags atomic.Uint64    // QUIC Initials read although their AEAD tag did not verify (Maltrail does not check it)
	Ignored     atomic.Uint64    // events dropped by the ignore rules
	Whitelisted atomic.Uint64    // events dropped for a whitelisted address
	// EventTypes splits Events by trail type (EventTypeNames, same index).
	EventTypes   [len(EventTypeNames)]atomic.Uint64
	TrailLoads   atomic.Uint64 // trail sets made live: the one loaded (or found loaded) at start, then each reload
	ReloadErrors atomic.Uint64 // trail reloads that failed (the trails loaded before stay)
}

// EventTypeNames are the trail types of Maltrail's events (spec §2), the
// index of Stats.EventTypes; a type not listed counts as "other".
var EventTypeNames = [...]string{"IP", "IPORT", "DNS", "URL", "HTTP", "UA", "PATH", "PORT", "CERT", "other"}

// eventType is the EventTypes index of a trail type.
func eventType(t string) int {
	for i, n := range EventTypeNames[:len(EventTypeNames)-1] {
		if n == t {
			return i
		}
	}
	return len(EventTypeNames) - 1
}

// addTo adds every counter of s to d.
func (s *Stats) addTo(d *Stats) {
	for _, c := range []struct{ from, to *atomic.Uint64 }{
		{&s.Records, &d.Records}, {&s.Events, &d.Events}, {&s.Bad, &d.Bad}, {&s.Panics, &d.Panics},
		{&s.NoMeta, &d.NoMeta}, {&s.UnknownLUT, &d.UnknownLUT}, {&s.EmitErrors, &d.EmitErrors},
		{&s.Skipped, &d.Skipped}, {&s.Frames, &d.Frames}, {&s.QUICBadTags, &d.QUICBadTags},
		{&s.Ignored, &d.Ignored}, {&s.Whitelisted, &d.Whitelisted},
		{&s.TrailLoads, &d.TrailLoads}, {&s.ReloadErrors, &d.ReloadErrors},
	} {
		c.to.Add(c.from.Load())
	}
	for k := range s.Kinds {
		d.Kinds[k].Add(s.Kinds[k].Load())
		d.Malformed[k].Add(s.Malformed[k].Load())
	}
	for t := range s.EventTypes {
		d.EventTypes[t].Add(s.EventTypes[t].Load())
	}
}

// summary lists every counter as slog key-value pairs for the exit
// summary; per-kind counters are keyed by kind name (records_dns,
// malformed_dns, ...), and the events of each type seen by type
// (events_ip, ...).
func (s *Stats) summary() []any {
	args := s.counters()
	// events per type: only the types seen, to keep the line short
	for i, name := range EventTypeNames {
		if n := s.EventTypes[i].Load(); n > 0 {
			args = append(args, "events_"+strings.ToLower(name), n)
		}
	}
	return args
}

// counters is the summary less the events per type.
func (s *Stats) counters() []any {
	args := []any{"records", s.Records.Load(), "events", s.Events.Load(),
		"bad_records", s.Bad.Load(), "panics", s.Panics.Load()}
	for k, name := range kindNames {
		if name == "" {
			continue
		}
		args = append(args, "records_"+name, s.Kinds[k].Load())
		if k != dataplane.KindIP {
			args = append(args, "malformed_"+name, s.Malformed[k].Load())
		}
	}
	return append(args, "no_meta", s.NoMeta.Load(), "unknown_proto", s.UnknownLUT.Load(),
		"ignored", s.Ignored.Load(), "whitelisted", s.Whitelisted.Load(), "emit_errors", s.EmitErrors.Load(),
		"quic_bad_tags", s.QUICBadTags.Load(),
		"frames", s.Frames.Load(), "skipped_frames", s.Skipped.Load(),
		"trail_loads", s.TrailLoads.Load(), "reload_errors", s.ReloadErrors.Load())
}

// Each calls fn with every counter of the exit summary by its name there
// (records, records_dns, ...), but the events per type, which
// EventTypes holds: what /metrics exports as the agent's counters, so a
// counter added to the summary reaches it too.
func (s *Stats) Each(fn func(name string, value uint64)) {
	args := s.counters()
	for i := 0; i+1 < len(args); i += 2 {
		if v, ok := args[i+1].(uint64); ok {
			fn(args[i].(string), v)
		}
	}
}

// Agent turns ring-buffer records into events. It is used by one goroutine.
type Agent struct {
	meta  MetaSource
	rules NameRules
	// names holds the name trails per kernel trail generation (the slot
	// xt_gen names): a record is matched against the names of the
	// generation the kernel matched its packet against, so a reload
	// switches kernel and agent trails for the same packet.
	names [2]atomic.Pointer[trails.Names]
	// handling is odd while Handle runs. StageNames reads it to know when
	// no Handle can still use the Names it replaced, whose trail store
	// may then be unmapped.
	handling atomic.Uint64
	ns       nameState
	// heur runs Maltrail's heuristics between the name checks; answers
	// are the sinkhole and parking IP trails of each generation, which
	// DNS answers are looked up in.
	heur    *heuristics.Engine
	answers [2]atomic.Pointer[heuristics.AnswerTrails]
	hout    heurOut
	sup     *throttle.Suppressor
	out     *lineOut
	log     *slog.Logger
	stats   Stats

	rec dataplane.Record
	ev  maltrail.Event
	// A record that cannot be handled is logged once per record kind and
	// kind of failure (failure bits), not per record: hostile traffic
	// must not flood the log. The counters hold the rest.
	logged [8]uint8
	// panics are logged at most once per panicLogEvery, with how many
	// were not.
	panicLogged    time.Time
	panicsUnlogged uint64
}

// AgentConfig configures an Agent.
type AgentConfig struct {
	Meta      MetaSource
	Rules     NameRules
	Render    *maltrail.Renderer
	Out       Emitter
	Throttle  throttle.Mode // EVENT_THROTTLE_MODE
	Processes int           // PROCESS_COUNT, for the legacy throttle
	// Heuristics configures the heuristics (USE_HEURISTICS and the keys
	// around it); the zero value runs only those Maltrail runs without
	// USE_HEURISTICS.
	Heuristics heuristics.Config
	Logger     *slog.Logger
}

// NewAgent returns an agent.
func NewAgent(c AgentConfig) *Agent {
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Agent{meta: c.Meta, rules: c.Rules, log: log}
	a.hout.a = a
	if e, err := heuristics.New(c.Heuristics); err != nil {
		// the built-in patterns failed to compile: a bug, caught by tests
		log.Error("heuristics disabled", "err", err)
	} else {
		a.heur = e
	}
	a.SetNames(c.Rules.Names)
	a.out = &lineOut{render: c.Render, out: c.Out, stats: &a.stats, line: make([]byte, 0, 512)}
	a.sup = throttle.New(c.Throttle, c.Processes, a.out)
	return a
}

// SetNames makes n the name trails of both generations; safe from any
// goroutine.
func (a *Agent) SetNames(n *trails.Names) {
	a.hookNames(n)
	a.names[0].Store(n)
	a.names[1].Store(n)
}

// StageNames makes n the name trails of kernel generation gen, before the
// kernel switches to it, and returns once no Handle can still be using
// the Names it replaced there, so that memory they read (a mapped trail
// store) may be released. It returns false if ctx ends first; the old
// Names must then be kept.
func (a *Agent) StageNames(ctx context.Context, gen uint32, n *trails.Names) bool {
	a.hookNames(n)
	a.names[gen&1].Store(n)
	seq := a.handling.Load()
	if seq%2 == 0 {
		return true // idle: the next Handle loads n
	}
	for a.handling.Load() == seq {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// hookNames plugs the long-domain heuristic into a Names the agent has not
// shared yet (a Names set again, as settle does, already has it).
func (a *Agent) hookNames(n *trails.Names) {
	if n != nil && a.heur != nil && n.LongDomain == nil {
		n.LongDomain = a.heur.LongDomain
	}
}

// SetAnswers makes t the sinkhole and parking IP trails of kernel
// generation gen (both when all is set), ahead of the kernel's switch
// like StageNames.
func (a *Agent) SetAnswers(gen uint32, all bool, t *heuristics.AnswerTrails) {
	a.answers[gen&1].Store(t)
	if all {
		a.answers[(gen&1)^1].Store(t)
	}
}

// Heuristics returns the agent's heuristics engine (nil if it failed to
// start), for its counters.
func (a *Agent) Heuristics() *heuristics.Engine { return a.heur }

// namesFor returns the name trails for a record of kernel generation gen.
func (a *Agent) namesFor(gen uint8) *trails.Names { return a.names[gen&1].Load() }

// Tick advances the suppression clock (live: wall time, once a second).
// Events it releases reach the sinks, so it is guarded like Handle.
func (a *Agent) Tick(now time.Time) {
	defer a.endTick()
	a.sup.Tick(now)
}

// Flush writes every event the suppression still holds (end of a replay,
// shutdown).
func (a *Agent) Flush() {
	defer a.endTick()
	a.sup.Flush()
}

func (a *Agent) endTick() {
	if v := recover(); v != nil {
		a.recovered(v, nil)
	}
}

// lineOut renders what passes the suppression and hands it to the sinks.
type lineOut struct {
	render *maltrail.Renderer
	out    Emitter
	stats  *Stats
	line   []byte
}

func (o *lineOut) Event(ev *maltrail.Event) {
	o.line = o.render.AppendLine(o.line[:0], ev)
	o.emit(ev.Time.Unix(), ev.Type)
}

func (o *lineOut) Merged(ev *maltrail.TextEvent) {
	o.line = o.render.AppendTextLine(o.line[:0], ev)
	o.emit(ev.Time.Unix(), ev.Type)
}

func (o *lineOut) emit(sec int64, typ string) {
	if err := o.out.Emit(sec, o.line); err != nil {
		o.stats.EmitErrors.Add(1)
		return
	}
	o.stats.Events.Add(1)
	o.stats.EventTypes[eventType(typ)].Add(1)
}

// Stats returns the agent's counters.
func (a *Agent) Stats() *Stats { return &a.stats }

// Handle processes one raw ring-buffer record. The event time is the
// program's clock: wall time live, the capture time in replay. It never
// panics: a record that cannot be handled is counted and logged, and a
// bug met while handling one is recovered, counted and logged with the
// record's hex (see endHandle).
func (a *Agent) Handle(raw []byte) {
	a.handling.Add(1)
	defer a.endHandle(raw)
	a.stats.Records.Add(1)
	r := &a.rec
	if err := r.Decode(raw); err != nil {
		a.bad(failDecode, raw, err)
		return
	}
	if int(r.Kind) >= len(kindNames) || kindNames[r.Kind] == "" {
		a.bad(failKind, raw, nil)
		return
	}
	a.stats.Kinds[r.Kind].Add(1)
	switch r.Kind {
	case dataplane.KindIP:
		a.handleIP(r)
	case dataplane.KindDNS:
		a.handleDNS(r)
	case dataplane.KindHTTP:
		a.handleHTTP(r)
	case dataplane.KindTLS:
		a.handleTLS(r)
	case dataplane.KindQUIC:
		a.handleQUIC(r)
	case dataplane.KindScan:
		a.handleScan(r) // scan.go
	}
}

// endHandle ends every Handle, deferred: the last-resort guard. A panic
// while handling a record is a bug, never the input's fault; it is
// recovered here so that one packet cannot stop the sensor, and the next
// record is handled as usual. A deferred call with recover costs a few
// nanoseconds and no allocation when nothing panics (BenchmarkAgentOverhead).
func (a *Agent) endHandle(raw []byte) {
	if v := recover(); v != nil {
		a.recovered(v, raw)
	}
	a.handling.Add(1)
}

// handleIP renders an IP or IP:port trail hit.
func (a *Agent) handleIP(r *dataplane.Record) {
	proto := protoName[r.L4Proto]
	if proto == "" {
		a.stats.UnknownLUT.Add(1)
		return
	}
	info, ref, err := a.meta.Meta(r.Meta)
	if err != nil {
		a.stats.NoMeta.Add(1)
		return
	}
	ev := &a.ev
	*ev = maltrail.Event{
		Time:      timeOf(r),
		SrcIP:     r.SrcAddr(),
		DstIP:     r.DstAddr(),
		Proto:     proto,
		Info:      info,
		Reference: ref,
	}
	if r.L4Proto == protoTCP || r.L4Proto == protoUDP {
		ev.SrcPort, ev.DstPort = r.Sport, r.Dport
	}
	addr, port := ev.DstIP, ev.DstPort
	if r.Side == dataplane.SideSrc {
		addr, port = ev.SrcIP, ev.SrcPort
	}
	ev.Type, ev.Trail = a.trailText(r.TrailType, addr, port)
	a.report(ev)
}

// trailText is the type and trail column of an address hit: "IP" with the
// address, "IPORT" with address:port, or "IP" with the CIDR trail's text
// (CIDR trails are an xtrail extension, reported like IP trails).
func (a *Agent) trailText(ttype uint8, addr netip.Addr, port uint16) (string, string) {
	switch ttype {
	case dataplane.TrailIPort:
		return "IPORT", maltrail.FormatAddrPort(addr, port)
	case dataplane.TrailCIDR:
		if p, err := a.meta.Prefix(addr); err == nil {
			return "IP", trails.CIDRText(p)
		}
	}
	return "IP", maltrail.FormatAddr(addr)
}

// report passes an event through the ignore rules, the whitelist and the
// suppression to the sinks (Maltrail's log_event order).
func (a *Agent) report(ev *maltrail.Event) {
	if a.dropped(ev) {
		return
	}
	a.sup.Add(ev)
}

// timeOf is the event time of a record: the program's clock (wall time
// live, capture time in replay).
func timeOf(r *dataplane.Record) time.Time { return time.Unix(0, int64(r.TsNs)) }

const (
	protoTCP = 6
	protoUDP = 17
)

// protoName is Maltrail's IPPROTO_LUT: the names Python's socket module
// gives IP protocol numbers on Linux. A protocol without a name is never
// reported (Maltrail skips it too).
var protoName = [256]string{
	0: "IP", 1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 8: "EGP", 12: "PUP",
	17: "UDP", 22: "IDP", 29: "TP", 41: "IPV6", 43: "ROUTING", 44: "FRAGMENT",
	46: "RSVP", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPV6", 59: "NONE",
	60: "DSTOPTS", 103: "PIM", 132: "SCTP", 136: "UDPLITE", 255: "RAW",
}
