package sensor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/pcap"
	"github.com/xtrail/xtrail/pkg/throttle"
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
	Snap       [8]uint16      // snapshot length per record kind (dataplane.Kind*); 0 = the maximum
	Scan       dataplane.Scan // scans the kernel counts (USE_HEURISTICS, DISABLED_HEURISTICS, SCAN_WINDOW)
	Renderer   maltrail.Renderer
	Out        Emitter
	Rules      NameRules     // Names is loaded from TrailsFile by Run
	Throttle   throttle.Mode // EVENT_THROTTLE_MODE (summarize by default)
	Processes  int           // PROCESS_COUNT, for the legacy throttle
	// Agents (live) is how many agents match the ring's records, each on
	// its own goroutine, fed by source address (fanout.go); 0 is one per
	// CPU (GOMAXPROCS). Replay runs one.
	Agents     int
	Heuristics heuristics.Config
	// D4, when set, is the client behind one of Out's sinks: Run runs it
	// beside the sensor. A replay then waits up to D4ReplayWait (default
	// a minute) for its events to be delivered; what is not stays in the
	// client's spool for the next run.
	D4           *d4.Client
	D4ReplayWait time.Duration
	Logger       *slog.Logger
	// Ready, if set, is called once the program is attached (live) or
	// loaded (replay).
	Ready func()
	// Probe, if set, lets other goroutines read the counters while Run
	// goes (/metrics, xtrail status).
	Probe *Probe
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
	replay := len(o.Pcaps) > 0
	if o.D4 != nil {
		// The client outlives the sensor loop by its delivery wait: it gets
		// its own context, cancelled once the loop is over.
		d4ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- o.D4.Run(d4ctx) }()
		defer func() {
			if replay {
				waitD4(ctx, o.D4, o.D4ReplayWait, log)
			}
			stop()
			if err := <-done; err != nil {
				log.Warn("D4 client", "err", err)
			}
			reportD4(log, o.D4.Stats())
		}()
	}
	began := time.Now()
	if !replay && len(o.Interfaces) == 0 {
		return errors.New("sensor: no interface to monitor and no capture to replay")
	}
	dopts := dataplane.Options{Action: o.Action, Replay: replay, RingSize: o.RingSize, Snap: o.Snap, Scan: o.Scan, Netns: o.Netns, Logger: log}
	if !replay {
		dopts.PinDir = o.PinDir
	} else if o.RingSize == 0 {
		// a replay drains the ring after every batch: a small one will do
		dopts.RingSize = dataplane.ReplayRingSize
	}
	var loadedVersion string
	if o.TrailsFile != "" {
		// the version read before the load: a file replaced during or
		// after it is reloaded by the watcher
		loadedVersion, _ = fileVersion(o.TrailsFile)
	} else if replay {
		log.Warn("replaying without a trails file: no trail can match")
	}
	replayCache := ""
	if replay {
		replayCache = o.PinDir
	}
	dp, ts, err := loadPlane(dopts, o.TrailsFile, o.Rules.Whitelist, replayCache, log)
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
	// live holds the trail sets of both generations, the same one at
	// start; reloadLoop replaces them, and the stores they read are
	// closed once the sensor loop (and reloadLoop, deferred later) is over.
	live := &liveTrails{slots: [2]*trailSet{ts, ts}}
	defer live.close(log)
	if ts != nil {
		rules.Names = ts.names
	}
	rd, err := dp.NewRingReader()
	if err != nil {
		return err
	}
	defer rd.Close()
	hc := o.Heuristics
	hc.LocalPrefix = (&localPrefix{dp: dp}).at // heurconfig.go
	nAgents := 1
	if !replay {
		if nAgents = o.Agents; nAgents <= 0 {
			nAgents = runtime.GOMAXPROCS(0)
		}
	}
	agents := agentSet(newAgents(AgentConfig{Meta: maps, Rules: rules, Render: &o.Renderer, Out: o.Out,
		Throttle: o.Throttle, Processes: o.Processes, Heuristics: hc, Logger: log}, nAgents))
	agent := agents[0]
	if ts != nil {
		agents.SetAnswers(0, true, ts.answers)
		agent.stats.TrailLoads.Add(1)
	}
	// deferred after dp.Close, so it runs before: no reader meets a closed map
	o.Probe.attach(dp, agents)
	defer o.Probe.detach()

	if replay {
		if o.Ready != nil {
			o.Ready()
		}
		rp, err := dp.NewReplayer()
		if err != nil {
			return err
		}
		var errs []error
		start := cpuTime()
		for _, p := range o.Pcaps {
			if err := replayFile(ctx, rp, rd, agent, p); err != nil {
				errs = append(errs, err)
				log.Error("replay", "file", p, "err", err)
			}
		}
		if err := rp.Close(); err != nil {
			errs = append(errs, err)
		}
		agent.Flush()
		if n := agent.stats.Frames.Load(); n > 0 {
			cpu := cpuTime() - start
			log.Info("replay done", "frames", n, "cpu", cpu, "cpu_per_frame", cpu/time.Duration(n))
		}
		logKernelMemory(log, dp)
		report(log, dp, agents)
		return errors.Join(errs...)
	}

	for _, ifc := range o.Interfaces {
		if _, err := dp.Attach(ifc, o.XDPMode); err != nil {
			return err
		}
	}
	log.Info("sensor ready", "interfaces", o.Interfaces, "agents", len(agents), "took", time.Since(began).Round(time.Millisecond))
	if o.Ready != nil {
		o.Ready()
	}
	if o.TrailsFile != "" {
		rctx, stop := context.WithCancel(ctx)
		reloaded := make(chan struct{})
		go func() {
			defer close(reloaded)
			reloadLoop(rctx, o, maps, agents, live, loadedVersion, log)
		}()
		defer func() { stop(); <-reloaded }()
	}
	err = runLive(ctx, dp, rd, agents, log)
	agents.Flush()
	report(log, dp, agents)
	return err
}

// waitD4 waits until the replay's events are delivered, no server can be
// reached, or wait (default a minute) is over, and says how many wait in
// the spool for the next run.
func waitD4(ctx context.Context, c *d4.Client, wait time.Duration, log *slog.Logger) {
	if wait <= 0 {
		wait = time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if n := c.Drain(wctx); n > 0 {
		log.Warn("D4: events wait in the spool; the next sensor run sends them", "lines", n, "spool", c.SpoolDir(), "timeout", wait)
	} else {
		log.Info("D4: every event delivered")
	}
}

// reportD4 logs the D4 client's counters in the exit summary.
func reportD4(log *slog.Logger, st d4.ClientStats) {
	log.Info("D4 client counters", "sent", st.Sent, "resent", st.Resent, "restamped", st.Restamped, "resent_late", st.ResentLate, "frames", st.Frames, "acked", st.Acked, "spooled", st.Spooled,
		"pending", st.Pending, "dropped", st.Dropped, "dropped_oldest", st.DroppedOldest, "recovered", st.Recovered,
		"reconnects", st.Reconnects, "failovers", st.Failovers, "dial_errors", st.DialErrors,
		"write_errors", st.WriteErrors, "rejected", st.Rejected)
}

// runLive reads records until ctx is done, and warns when the kernel
// reports lost records. With one agent it handles each record itself;
// with more it deals them out (fanout) and returns once every agent has
// handled what was read.
func runLive(ctx context.Context, dp *dataplane.Dataplane, rd *ringbuf.Reader, agents agentSet, log *slog.Logger) error {
	stop := context.AfterFunc(ctx, func() { rd.Close() })
	defer stop()
	done := make(chan struct{})
	watched := make(chan struct{})
	// the watcher reads the program's counters: it must be gone before
	// Run closes the data plane
	defer func() { close(done); <-watched }()
	go func() {
		defer close(watched)
		watchLosses(ctx, done, dp, log)
	}()
	handle, tick := agents[0].Handle, agents[0].Tick
	flush := func() {}
	if len(agents) > 1 {
		f := newFanout(agents)
		defer f.Close()
		handle, tick, flush = f.Handle, f.Tick, f.Flush
	}
	var rec ringbuf.Record
	// The read wakes up at least once a second so held and condensed
	// events leave on time when traffic is quiet.
	next := time.Now().Add(time.Second)
	rd.SetDeadline(next)
	for {
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			handle(rec.RawSample)
			if rd.AvailableBytes() == 0 {
				flush() // nothing more to batch with for now
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, ringbuf.ErrClosed) || ctx.Err() != nil:
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if now := time.Now(); !now.Before(next) {
			tick(now)
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

func replayFile(ctx context.Context, rp *dataplane.Replayer, rd *ringbuf.Reader, agent *Agent, path string) (err error) {
	var pr *pcap.Reader
	if path == "-" {
		pr, err = pcap.NewReader(bufio.NewReaderSize(os.Stdin, 1<<20))
	} else {
		// a file is read through a mapping (no copy out of the page
		// cache); one cut short while mapped faults where a read would
		// have ended early: that fault is this replay's error
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(interface{ Addr() uintptr }); !ok {
					panic(r)
				}
				err = fmt.Errorf("replay %s: the file shrank while it was read: %v", path, r)
			}
		}()
		pr, err = pcap.OpenFile(path)
		if pr != nil {
			defer pr.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("replay %s: %w", path, err)
	}
	frame := make([]byte, 0, 4096)
	var rec ringbuf.Record
	// run runs the frames queued and hands their records to the agent.
	// Records carry their packet's capture time (the program's clock is
	// set per frame), so the ring is read once per batch.
	run := func() error {
		if err := rp.Flush(); err != nil {
			return err
		}
		return drain(rd, &rec, agent)
	}
	for n := 0; ; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return run()
		}
		pkt, err := pr.Next()
		if err == io.EOF {
			return run()
		}
		if err != nil {
			return errors.Join(fmt.Errorf("replay %s: packet %d: %w", path, n+1, err), run())
		}
		frame, err = pcap.ToEthernet(frame[:0], pkt.LinkType, pkt.Data)
		if err != nil || len(frame) < 14 {
			agent.stats.Skipped.Add(1)
			continue
		}
		agent.stats.Frames.Add(1)
		if err := rp.Queue(pkt.Time.UnixNano(), frame); err != nil {
			return err
		}
		if rp.Full() {
			if err := run(); err != nil {
				return err
			}
		}
	}
}

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

// report logs the exit summary: every agent counter (summed over the
// agents), then the program's counters that are not zero.
func report(log *slog.Logger, dp *dataplane.Dataplane, agents agentSet) {
	args := agents.stats().summary()
	if h := agents[0].Heuristics(); h != nil { // forks share its counters
		args = append(args, h.Stats().Summary()...)
	}
	if cs, err := dp.Counters(); err == nil {
		for _, c := range cs {
			if c.Value != 0 {
				args = append(args, "xdp_"+c.Name, c.Value)
			}
		}
	}
	log.Info("sensor counters", args...)
}

// logKernelMemory logs the kernel memory of the program's maps and of its
// trail maps, which RSS does not show (the ring's mapping aside, which it
// shows twice).
func logKernelMemory(log *slog.Logger, dp *dataplane.Dataplane) {
	pm, err := dp.ProgramMemory()
	if err != nil {
		log.Warn("program map memory", "err", err)
		return
	}
	tm, err := dp.Trails().Memory()
	if err != nil {
		log.Warn("trail map memory", "err", err)
		return
	}
	log.Info("kernel memory", "ring_bytes", pm.Ring, "scan_map_bytes", pm.Scan, "other_program_map_bytes", pm.Other,
		"trail_map_bytes", tm.Total(), "replay_cache", dp.PinDir())
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
