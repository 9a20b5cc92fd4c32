package sensor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/pcap"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// Options say what one sensor run does.
type Options struct {
	Interfaces []string // live: attach to these
	Pcaps      []string // replay these captures instead ("-" = standard input)
	XDPMode    dataplane.Mode
	Action     dataplane.Action
	PinDir     string // live: where the trail maps are pinned
	Netns      string // live: path of the network namespace of Interfaces ("" = ours)
	TrailsFile string // loaded into the maps at start; "" keeps the pinned trails
	RingSize   int
	Snap       [8]uint16 // snapshot length per record kind (dataplane.Kind*); 0 = the maximum
	Renderer   maltrail.Renderer
	Out        Emitter
	Rules      NameRules     // Names is loaded from TrailsFile by Run
	Throttle   throttle.Mode // EVENT_THROTTLE_MODE (summarize by default)
	Processes  int           // PROCESS_COUNT, for the legacy throttle
	// D4, when set, is the client behind one of Out's sinks: Run runs it
	// beside the sensor and lets it flush when the sensor stops.
	D4     *d4.Client
	Logger *slog.Logger
	// Ready, if set, is called once the program is attached (live) or
	// loaded (replay).
	Ready func()
	// Reload (live): each receive reloads TrailsFile (the command sends
	// one per SIGHUP). The file is also reloaded when it is replaced,
	// checked every WatchEvery (default 5 s; negative: never).
	Reload     <-chan struct{}
	WatchEvery time.Duration
	// UpdatePeriod (UPDATE_PERIOD) is how often the trails should be
	// renewed: a live sensor warns while TrailsFile is older than twice
	// this. Default 24 h.
	UpdatePeriod time.Duration
}

const defaultUpdatePeriod = 24 * time.Hour

// Run runs the sensor until ctx is done (live) or the captures end (replay).
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.D4 != nil {
		// The client outlives the sensor loop by its flush: it gets its own
		// context, cancelled once the loop is over.
		d4ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- o.D4.Run(d4ctx) }()
		defer func() {
			stop()
			if err := <-done; err != nil {
				log.Warn("D4 client", "err", err)
			}
			st := o.D4.Stats()
			log.Info("D4 client counters", "sent", st.Sent, "frames", st.Frames, "dropped", st.Dropped,
				"pending", st.Pending, "reconnects", st.Reconnects, "write_errors", st.WriteErrors)
		}()
	}
	began := time.Now()
	replay := len(o.Pcaps) > 0
	if !replay && len(o.Interfaces) == 0 {
		return errors.New("sensor: no interface to monitor and no capture to replay")
	}
	dopts := dataplane.Options{Action: o.Action, Replay: replay, RingSize: o.RingSize, Snap: o.Snap, Netns: o.Netns, Logger: log}
	if !replay {
		dopts.PinDir = o.PinDir
	}
	var loadedVersion string
	if o.TrailsFile != "" {
		// the version read before the load: a file replaced during or
		// after it is reloaded by the watcher
		loadedVersion, _ = fileVersion(o.TrailsFile)
	} else if replay {
		log.Warn("replaying without a trails file: no trail can match")
	}
	dp, loaded, err := loadPlane(dopts, o.TrailsFile, o.Rules.Whitelist, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := dp.Close(); cerr != nil {
			log.Warn("closing the data plane", "err", cerr)
		}
	}()
	maps := dp.Trails()
	rules := o.Rules
	rules.Names = loaded.names
	// st is the open trail store the Names read, when TrailsFile is a
	// compiled store; reloadLoop replaces it, and it is closed once the
	// sensor loop (and reloadLoop, deferred later) is over.
	st := loaded.store
	defer func() {
		if st != nil {
			if cerr := st.Close(); cerr != nil {
				log.Warn("closing the trail store", "err", cerr)
			}
		}
	}()
	rd, err := dp.NewRingReader()
	if err != nil {
		return err
	}
	defer rd.Close()
	agent := NewAgent(AgentConfig{Meta: maps, Rules: rules, Render: &o.Renderer, Out: o.Out,
		Throttle: o.Throttle, Processes: o.Processes, Logger: log})

	if replay {
		if o.Ready != nil {
			o.Ready()
		}
		var errs []error
		start := cpuTime()
		for _, p := range o.Pcaps {
			if err := replayFile(ctx, dp, rd, agent, p); err != nil {
				errs = append(errs, err)
				log.Error("replay", "file", p, "err", err)
			}
		}
		agent.Flush()
		if n := agent.stats.Frames.Load(); n > 0 {
			cpu := cpuTime() - start
			log.Info("replay done", "frames", n, "cpu", cpu, "cpu_per_frame", cpu/time.Duration(n))
		}
		report(log, dp, agent)
		return errors.Join(errs...)
	}

	for _, ifc := range o.Interfaces {
		if _, err := dp.Attach(ifc, o.XDPMode); err != nil {
			return err
		}
	}
	log.Info("sensor ready", "interfaces", o.Interfaces, "took", time.Since(began).Round(time.Millisecond))
	if o.Ready != nil {
		o.Ready()
	}
	if o.TrailsFile != "" {
		rctx, stop := context.WithCancel(ctx)
		reloaded := make(chan struct{})
		go func() {
			defer close(reloaded)
			reloadLoop(rctx, o, maps, agent, &st, loadedVersion, log)
		}()
		defer func() { stop(); <-reloaded }()
	}
	err = runLive(ctx, dp, rd, agent, log)
	agent.Flush()
	report(log, dp, agent)
	return err
}

// loadedTrails is what loadTrails returns.
type loadedTrails struct {
	names *trails.Names
	store *store.Store
}

// loadPlane loads the XDP program and the trails file (if any). With a
// pin dir the trail maps exist apart from the program, so the trails are
// loaded into them while the kernel verifies the program: the two are the
// bulk of a first start and need different CPUs. Without one (replay) the
// maps are the program's own, and the trails follow the program.
func loadPlane(dopts dataplane.Options, file string, wl *trails.Whitelist, log *slog.Logger) (*dataplane.Dataplane, loadedTrails, error) {
	var lt loadedTrails
	if file == "" {
		dp, err := dataplane.Load(dopts)
		return dp, lt, err
	}
	if dopts.PinDir == "" {
		dp, err := dataplane.Load(dopts)
		if err != nil {
			return nil, lt, err
		}
		if lt.names, lt.store, err = loadTrails(file, dp.Trails(), wl, log); err != nil {
			dp.Close()
			return nil, lt, err
		}
		return dp, lt, nil
	}
	maps, err := dataplane.OpenTrailMaps(dopts.PinDir)
	if err != nil {
		return nil, lt, err
	}
	done := make(chan error, 1)
	go func() {
		var err error
		lt.names, lt.store, err = loadTrails(file, maps, wl, log)
		done <- err
	}()
	dp, err := dataplane.Load(dopts)
	terr := <-done
	maps.Close()
	if err = errors.Join(err, terr); err != nil {
		if dp != nil {
			dp.Close()
		}
		if lt.store != nil {
			lt.store.Close()
		}
		return nil, loadedTrails{}, err
	}
	return dp, lt, nil
}

// runLive reads records until ctx is done, and warns when the kernel
// reports lost records.
func runLive(ctx context.Context, dp *dataplane.Dataplane, rd *ringbuf.Reader, agent *Agent, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go watchLosses(ctx, done, dp, log)
	var rec ringbuf.Record
	// The read wakes up at least once a second so held and condensed
	// events leave on time when traffic is quiet.
	next := time.Now().Add(time.Second)
	rd.SetDeadline(next)
	for {
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			agent.Handle(rec.RawSample)
		case errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, ringbuf.ErrClosed) || ctx.Err() != nil:
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if now := time.Now(); !now.Before(next) {
			agent.Tick(now)
			next = now.Add(time.Second)
			rd.SetDeadline(next)
		}
	}
}

// watchLosses logs ring-buffer losses as they happen, at most every 10 s.
func watchLosses(ctx context.Context, done <-chan struct{}, dp *dataplane.Dataplane, log *slog.Logger) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
			m, err := dp.CounterMap()
			if err != nil {
				continue
			}
			if n := m["ringbuf_full"]; n > last {
				log.Warn("ring buffer full: records lost", "lost", n-last, "lost_total", n)
				last = n
			}
		}
	}
}

// maxReplayFrame keeps test-run frames within one page with XDP headroom;
// the program reads headers and at most XT_SNAP_MAX bytes of payload.
const maxReplayFrame = 3072

func replayFile(ctx context.Context, dp *dataplane.Dataplane, rd *ringbuf.Reader, agent *Agent, path string) error {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		defer f.Close()
		in = f
	}
	pr, err := pcap.NewReader(bufio.NewReaderSize(in, 1<<20))
	if err != nil {
		return fmt.Errorf("replay %s: %w", path, err)
	}
	frame := make([]byte, 0, 4096)
	var rec ringbuf.Record
	for n := 0; ; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return drain(rd, &rec, agent)
		}
		pkt, err := pr.Next()
		if err == io.EOF {
			return drain(rd, &rec, agent)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("replay %s: packet %d: %w", path, n+1, err), drain(rd, &rec, agent))
		}
		frame, err = pcap.ToEthernet(frame[:0], pkt.LinkType, pkt.Data)
		if err != nil || len(frame) < 14 {
			agent.stats.Skipped.Add(1)
			continue
		}
		if len(frame) > maxReplayFrame {
			frame = frame[:maxReplayFrame]
		}
		agent.stats.Frames.Add(1)
		if err := dp.SetClock(pkt.Time); err != nil {
			return err
		}
		if _, err := dp.Run(frame); err != nil {
			return err
		}
		// Records carry the exact capture time (the clock is set per
		// packet), so the ring is read in batches, not after every packet.
		if n%replayBatch == replayBatch-1 || rd.AvailableBytes() > drainAt {
			if err := drain(rd, &rec, agent); err != nil {
				return err
			}
		}
	}
}

// Replay reads the ring every replayBatch packets, or sooner when it holds
// drainAt bytes: far below the 8 MiB ring even if every packet of a batch
// were a full-size candidate.
const (
	replayBatch = 1024
	drainAt     = 1 << 20
)

// drain reads every record in the ring without waiting for more.
func drain(rd *ringbuf.Reader, rec *ringbuf.Record, agent *Agent) error {
	if rd.AvailableBytes() == 0 {
		return nil
	}
	rd.SetDeadline(time.Now())
	for {
		if err := rd.ReadInto(rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		agent.Handle(rec.RawSample)
	}
}

func report(log *slog.Logger, dp *dataplane.Dataplane, a *Agent) {
	args := []any{"records", a.stats.Records.Load(), "events", a.stats.Events.Load(),
		"bad_records", a.stats.Bad.Load(), "skipped_frames", a.stats.Skipped.Load(),
		"emit_errors", a.stats.EmitErrors.Load()}
	if cs, err := dp.Counters(); err == nil {
		for _, c := range cs {
			if c.Value != 0 {
				args = append(args, "xdp_"+c.Name, c.Value)
			}
		}
	}
	log.Info("sensor counters", args...)
}

// storeExt marks a trails file that is a compiled trail store (xtrail
// trails compile) rather than a trails.csv.
const storeExt = ".xts"

// loadTrails loads a trails file: its IP and IP:port trails into the kernel
// maps, its domain, URL and regex trails into the returned Names. A
// compiled store (storeExt) is returned open, since its Names read the
// mapping: the caller closes it once the Names are no longer used. For a
// trails.csv the store is nil.
func loadTrails(path string, maps *dataplane.TrailMaps, wl *trails.Whitelist, log *slog.Logger) (*trails.Names, *store.Store, error) {
	// The load's garbage (CSV rows, IP rows, map batches) dwarfs the
	// sensor's steady heap: collect more often while it runs to keep the
	// peak RSS down.
	gc := debug.SetGCPercent(25)
	defer func() {
		debug.SetGCPercent(gc)
		// and hand it back to the system now, not over minutes
		debug.FreeOSMemory()
	}()
	if strings.HasSuffix(path, storeExt) {
		return loadStore(path, maps, wl, log)
	}
	set, st, err := maps.LoadFile(path, "sensor")
	if err != nil {
		return nil, nil, err
	}
	logIPLoad(log, path, set, st)
	n, err := loadNames(path, wl, log)
	return n, nil, err
}

func logIPLoad(log *slog.Logger, path string, set *trails.Set, st dataplane.LoadStats) {
	log.Info("IP trails loaded", "file", path, "rows", set.Stats.Rows,
		"skipped_rows", set.Stats.Skipped, "ipv4", st.IP4, "ipv4_port", st.Port4,
		"ipv6", st.IP6, "ipv6_port", st.Port6, "cidr4", st.CIDR4, "cidr6", st.CIDR6, "generation", st.Generation,
		"switched_after", st.Switch.Round(time.Millisecond))
}

// loadStore opens a compiled trail store (checksum verified), loads its IP
// and CIDR trails into the kernel maps and serves its name trails from
// the mapping. The store's whitelisted keys were dropped when it was
// compiled; wl still skips whitelisted names at check time.
func loadStore(path string, maps *dataplane.TrailMaps, wl *trails.Whitelist, log *slog.Logger) (*trails.Names, *store.Store, error) {
	s, err := store.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if id, live := maps.LiveID(); live && id == s.Info().SHA256 {
		// a restart on the same store: the pinned generation holds its trails
		log.Info("IP trails already loaded in the kernel from this store", "file", path)
	} else {
		set := storeSet(s)
		if len(set.IPs) == 0 && len(set.CIDRs) == 0 && s.Stats().Names == 0 {
			s.Close()
			return nil, nil, fmt.Errorf("trail store %s has no trails: keeping the loaded trails", path)
		}
		st, err := maps.ReplaceFrom(set, storeOrigin(path, s))
		if err != nil {
			s.Close()
			return nil, nil, fmt.Errorf("trail store %s: %w", path, err)
		}
		logIPLoad(log, path, set, st)
	}
	n, probs, err := s.Names(wl)
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("trail store %s: %w", path, err)
	}
	for _, p := range probs {
		log.Warn("trail not usable", "problem", p.String())
	}
	log.Info("name trails loaded", "file", path, "keys", n.Stats.Keys, "urls", n.Stats.URLs,
		"regexes", n.Stats.Regexes, "whitelisted", n.Stats.Whitelisted)
	return n, s, nil
}

// storeOrigin describes a load from store s at path: the store file, then
// the sources it was compiled from.
func storeOrigin(path string, s *store.Store) dataplane.Origin {
	o := dataplane.Origin{ID: s.Info().SHA256, By: "sensor",
		Sources: []dataplane.OriginSource{dataplane.FileSource(path, "store", s.Stats().Load.Rows)}}
	for _, src := range s.Sources() {
		o.Sources = append(o.Sources, dataplane.OriginSource{Path: src.Name, Kind: "compiled into the store", Rows: src.Rows})
	}
	return o
}

// storeSet builds the kernel maps' Set from a store's IP and CIDR trails,
// with only the metas they use: the store's metas also serve the name
// trails, and every Set meta takes a slot in the kernel's meta map.
func storeSet(s *store.Store) *trails.Set {
	st := s.Stats()
	set := &trails.Set{
		IPs:   make([]trails.IPTrail, 0, st.IPs),
		CIDRs: make([]trails.CIDRTrail, 0, st.CIDRs),
		Stats: trails.Stats{Rows: st.Load.Rows, Skipped: st.Load.Skipped},
	}
	remap := make(map[uint32]uint32)
	meta := func(mi uint32) uint32 {
		if id, ok := remap[mi]; ok {
			return id
		}
		id := uint32(len(set.Metas))
		info, ref := s.Meta(mi)
		set.Metas = append(set.Metas, trails.Meta{Info: info, Reference: ref})
		remap[mi] = id
		return id
	}
	for t := range s.IPs() {
		t.Meta = meta(t.Meta)
		set.IPs = append(set.IPs, t)
	}
	for c := range s.CIDRs() {
		c.Meta = meta(c.Meta)
		set.CIDRs = append(set.CIDRs, c)
	}
	return set
}

// loadNames reads the domain, URL and regex trails of a trails file.
func loadNames(path string, wl *trails.Whitelist, log *slog.Logger) (*trails.Names, error) {
	rc, err := trails.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trails file: %w", err)
	}
	defer rc.Close()
	n, err := trails.LoadNames(rc, path, wl)
	if err != nil {
		return nil, fmt.Errorf("trails file %s: %w", path, err)
	}
	for _, p := range n.Problems {
		log.Warn("trail not usable", "problem", p.String())
	}
	log.Info("name trails loaded", "file", path, "keys", n.Stats.Keys, "urls", n.Stats.URLs,
		"regexes", n.Stats.Regexes, "whitelisted", n.Stats.Whitelisted)
	return n, nil
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reloadLoop reloads the trails file on request and when it is replaced.
// A load that fails keeps the current trails: the kernel switches
// generations only after the new one is complete.
//
// cur is the open trail store the current Names read (nil for a
// trails.csv): a reload replaces it and closes the old one once no
// record handler can still use it.
func reloadLoop(ctx context.Context, o Options, maps *dataplane.TrailMaps, agent *Agent, cur **store.Store, last string, log *slog.Logger) {
	every := o.WatchEvery
	if every == 0 {
		every = 5 * time.Second
	}
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	period := o.UpdatePeriod
	if period <= 0 {
		period = defaultUpdatePeriod
	}
	nextStale := time.Now()
	for {
		if now := time.Now(); !now.Before(nextStale) {
			warnIfStale(o.TrailsFile, period, now, log)
			nextStale = now.Add(staleEvery)
		}
		why := "signal"
		select {
		case <-ctx.Done():
			return
		case <-o.Reload:
		case <-tick:
			v, err := fileVersion(o.TrailsFile)
			if err != nil || v == last {
				continue
			}
			why = "file replaced"
		}
		last, _ = fileVersion(o.TrailsFile)
		start := time.Now()
		n, st, err := loadTrails(o.TrailsFile, maps, o.Rules.Whitelist, log)
		if err != nil {
			log.Error("trail reload failed: the current trails stay loaded", "file", o.TrailsFile, "why", why, "err", err)
			continue
		}
		old := *cur
		*cur = st
		if !agent.SwapNames(ctx, n) {
			// Shutting down while a record is handled: leave the old
			// mapping to the process exit rather than fault under it.
			return
		}
		if old != nil {
			if err := old.Close(); err != nil {
				log.Warn("closing the previous trail store", "err", err)
			}
		}
		log.Info("trails reloaded", "file", o.TrailsFile, "why", why, "took", time.Since(start).Round(time.Millisecond))
	}
}

// staleEvery is how often a sensor on stale trails says so again.
const staleEvery = time.Hour

// warnIfStale warns when the trails file is older than twice the update
// period: a sensor must not run silently on trails nobody renews.
func warnIfStale(path string, period time.Duration, now time.Time, log *slog.Logger) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	age := now.Sub(st.ModTime())
	if age <= 2*period {
		return false
	}
	log.Warn("STALE TRAILS: the trails file is older than twice UPDATE_PERIOD; run `xtrail trails update` and reload",
		"file", path, "age", age.Round(time.Minute), "update_period", period)
	return true
}

// fileVersion identifies the file's content version by inode, size and
// modification time (a replaced file has a new inode or mtime).
func fileVersion(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	ino := uint64(0)
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	return fmt.Sprintf("%d/%d/%d", ino, st.Size(), st.ModTime().UnixNano()), nil
}
