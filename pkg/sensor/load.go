package sensor

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/deploy"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/trails"
)

// A trails file goes live in two halves: the kernel's generation of IP,
// IP:port and CIDR trails, and the agent's name trails. Every ring record
// names the kernel generation its packet was matched against, and the
// agent keeps the name trails of each generation, so a reload stages the
// new names in the idle generation's slot first and then lets the kernel
// switch: each packet is matched against one generation of both.

// storeExt marks a trails file that is a compiled trail store (xtrail
// trails compile) rather than a trails.csv.
const storeExt = ".xts"

// trailSet is one trails file read: the agent's name trails, the open
// store they read (a compiled store; nil for a trails.csv), and until
// they are in the kernel, the IP part of a trails.csv.
type trailSet struct {
	path  string
	names *trails.Names
	store *store.Store
	ips   *trails.Set
	// answers are the IP trails a DNS answer can hit in the sinkhole and
	// parked heuristics (spec §4), kept apart from the kernel's copy.
	answers *heuristics.AnswerTrails
}

// readTrails reads a trails file without touching the kernel maps.
func readTrails(path string, wl *trails.Whitelist, log *slog.Logger) (*trailSet, error) {
	ts := &trailSet{path: path}
	if strings.HasSuffix(path, storeExt) {
		s, err := store.Open(path)
		if err != nil {
			return nil, err
		}
		if s.Stats().IPs == 0 && s.Stats().CIDRs == 0 && s.Stats().Names == 0 {
			s.Close()
			return nil, fmt.Errorf("trail store %s has no trails: keeping the loaded trails", path)
		}
		n, probs, err := s.Names(wl)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("trail store %s: %w", path, err)
		}
		n.Problems = append(n.Problems, probs...)
		ts.names, ts.store = n, s
		ts.answers = answerTrails(s.IPs(), func(mi uint32) string { info, _ := s.Meta(mi); return info })
	} else {
		rc, err := trails.Open(path)
		if err != nil {
			return nil, fmt.Errorf("trails file: %w", err)
		}
		ts.ips, err = trails.LoadSet(rc, path)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("trails file %s: %w", path, err)
		}
		if ts.ips.Stats.Rows == 0 {
			return nil, fmt.Errorf("trails file %s has no trail rows: keeping the loaded trails", path)
		}
		// as a compiled store drops them at compile time: a whitelisted
		// address never makes a kernel record
		ts.ips.DropWhitelisted(wl)
		ts.answers = answerTrails(slices.Values(ts.ips.IPs), func(mi uint32) string { return ts.ips.Metas[mi].Info })
		if rc, err = trails.Open(path); err != nil {
			return nil, fmt.Errorf("trails file: %w", err)
		}
		ts.names, err = trails.LoadNames(rc, path, wl)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("trails file %s: %w", path, err)
		}
	}
	for _, p := range ts.names.Problems {
		log.Warn("trail not usable", "problem", p.String())
	}
	n := ts.names
	log.Info("name trails loaded", "file", path, "keys", n.Stats.Keys, "urls", n.Stats.URLs,
		"regexes", n.Stats.Regexes, "whitelisted", n.Stats.Whitelisted)
	return ts, nil
}

// answerTrails keeps the bare-address trails whose info names a sinkhole
// or a parking site. The info of each meta is read once.
func answerTrails(ips iter.Seq[trails.IPTrail], info func(meta uint32) string) *heuristics.AnswerTrails {
	a := &heuristics.AnswerTrails{}
	keep := map[uint32]string{}
	for t := range ips {
		if t.Port != 0 {
			continue
		}
		s, seen := keep[t.Meta]
		if !seen {
			s = info(t.Meta)
			if !strings.Contains(s, "sinkhole") && !strings.Contains(s, "parking") {
				s = ""
			}
			keep[t.Meta] = s
		}
		if s != "" {
			a.Add(t.Addr, s)
		}
	}
	return a
}

// inKernel says whether the kernel's live generation already holds the
// set's IP trails: a compiled store whose checksum the generation records
// (a restart, or a load by `xtrail trails load`).
func (ts *trailSet) inKernel(maps *dataplane.TrailMaps) bool {
	if ts.store == nil {
		return false
	}
	id, live := maps.LiveID()
	return live && id == ts.store.Info().SHA256
}

// loadKernel fills the kernel's idle generation with the set's IP trails
// and switches to it. It returns the generation now live.
func (ts *trailSet) loadKernel(maps *dataplane.TrailMaps, log *slog.Logger) (uint32, error) {
	var (
		set    *trails.Set
		origin dataplane.Origin
	)
	if ts.store != nil {
		set, origin = ts.store.IPSet(), deploy.Origin(ts.path, ts.store, "sensor")
	} else {
		set = ts.ips
		origin = dataplane.Origin{By: "sensor", Sources: []dataplane.OriginSource{
			dataplane.FileSource(ts.path, "trails.csv", set.Stats.Rows)}}
	}
	ts.ips = nil // the kernel holds them now, or the load failed
	st, err := maps.ReplaceFrom(set, origin)
	if err != nil {
		return 0, fmt.Errorf("trails file %s: %w", ts.path, err)
	}
	log.Info("IP trails loaded", "file", ts.path, "rows", set.Stats.Rows,
		"skipped_rows", set.Stats.Skipped, "ipv4", st.IP4, "ipv4_port", st.Port4,
		"ipv6", st.IP6, "ipv6_port", st.Port6, "cidr4", st.CIDR4, "cidr6", st.CIDR6, "generation", st.Generation,
		"switched_after", st.Switch.Round(time.Millisecond))
	if st.Skipped > 0 {
		log.Warn("trails with info or reference too long for the kernel record were not loaded", "count", st.Skipped)
	}
	return st.Generation, nil
}

// release drops from the resident set the store pages that reading the
// set touched (store.ReleasePages), once the kernel holds its IP trails.
func (ts *trailSet) release(log *slog.Logger) {
	if ts == nil || ts.store == nil {
		return
	}
	if err := ts.store.ReleasePages(); err != nil {
		log.Warn("releasing trail store pages", "file", ts.path, "err", err)
	}
}

// close releases the store, if any.
func (ts *trailSet) close(log *slog.Logger) {
	if ts == nil || ts.store == nil {
		return
	}
	if err := ts.store.Close(); err != nil {
		log.Warn("closing a trail store", "file", ts.path, "err", err)
	}
	ts.store = nil
}

// lowGC runs a load with the collector working harder: the load's garbage
// (CSV rows, IP rows, map batches) dwarfs the sensor's steady heap. Once
// done, the garbage goes back to the system now, not over minutes.
func lowGC(f func() error) error {
	gc := debug.SetGCPercent(25)
	defer func() {
		debug.SetGCPercent(gc)
		debug.FreeOSMemory()
	}()
	return f()
}

// loadPlane loads the XDP program and the trails file (if any). With a
// pin dir the trail maps exist apart from the program, so the trails are
// loaded into them while the kernel verifies the program: the two are the
// bulk of a first start and need different CPUs. Without one (replay) the
// maps are the program's own, and the trails follow the program.
//
// A replay of a compiled store with replayCache set (the pin dir) uses the
// store's replay cache there (loadReplayCache).
func loadPlane(dopts dataplane.Options, file string, wl *trails.Whitelist, replayCache string, log *slog.Logger) (*dataplane.Dataplane, *trailSet, error) {
	if file == "" {
		dp, err := dataplane.Load(dopts)
		return dp, nil, err
	}
	if dopts.Replay && replayCache != "" && strings.HasSuffix(file, storeExt) {
		return loadReplayCache(dopts, file, wl, replayCache, log)
	}
	load := func(maps *dataplane.TrailMaps) (ts *trailSet, err error) {
		err = lowGC(func() error {
			if ts, err = readTrails(file, wl, log); err != nil {
				return err
			}
			defer ts.release(log)
			if ts.inKernel(maps) {
				// a restart on the same store: the pinned generation holds its trails
				log.Info("IP trails already loaded in the kernel from this store", "file", file)
				return nil
			}
			_, err = ts.loadKernel(maps, log)
			return err
		})
		if err != nil && ts != nil {
			ts.close(log)
			ts = nil
		}
		return ts, err
	}
	if dopts.PinDir == "" {
		dp, err := dataplane.Load(dopts)
		if err != nil {
			return nil, nil, err
		}
		ts, err := load(dp.Trails())
		if err != nil {
			dp.Close()
			return nil, nil, err
		}
		return dp, ts, nil
	}
	maps, err := dataplane.OpenTrailMaps(dopts.PinDir)
	if err != nil {
		return nil, nil, err
	}
	type result struct {
		ts  *trailSet
		err error
	}
	done := make(chan result, 1)
	go func() {
		ts, err := load(maps)
		done <- result{ts, err}
	}()
	dp, err := dataplane.Load(dopts)
	r := <-done
	maps.Close()
	if err = errors.Join(err, r.err); err != nil {
		if dp != nil {
			dp.Close()
		}
		r.ts.close(log)
		return nil, nil, err
	}
	return dp, r.ts, nil
}

// loadReplayCache loads a replay of a compiled store from the store's
// replay cache under root (dataplane.ReplayCacheDir): the verified program
// and the store's IP trails already in frozen kernel maps, when an earlier
// replay of the store left them; else it fills and freezes them, and keeps
// them for the next replay in place of older caches. Without a usable
// bpffs the replay runs on private maps.
func loadReplayCache(dopts dataplane.Options, file string, wl *trails.Whitelist, root string, log *slog.Logger) (*dataplane.Dataplane, *trailSet, error) {
	var ts *trailSet
	if err := lowGC(func() (err error) { ts, err = readTrails(file, wl, log); return err }); err != nil {
		return nil, nil, err
	}
	private := dopts
	dopts.PinDir = dataplane.ReplayCacheDir(root, ts.store.Info().SHA256)
	dp, err := dataplane.Load(dopts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// a cache left by another version of xtrail: make it anew
		if rerr := dataplane.RemoveReplayCache(dopts.PinDir); rerr == nil {
			dp, err = dataplane.Load(dopts)
		}
	}
	if err != nil {
		log.Warn("replay cache not usable: loading the trails into private maps", "dir", dopts.PinDir, "err", err)
		if dp, err = dataplane.Load(private); err != nil {
			ts.close(log)
			return nil, nil, err
		}
	}
	maps := dp.Trails()
	if ts.inKernel(maps) {
		log.Info("IP trails of this store already in the replay cache's maps", "file", file, "dir", dopts.PinDir)
	} else {
		err := lowGC(func() error { _, err := ts.loadKernel(maps, log); return err })
		if err == nil && dp.PinDir() != "" {
			err = maps.Freeze()
		}
		if err != nil {
			dp.Close()
			ts.close(log)
			return nil, nil, err
		}
	}
	if dp.PinDir() != "" {
		if err := dataplane.PruneReplayCaches(root, dopts.PinDir); err != nil {
			log.Warn("older replay caches stay", "err", err)
		}
	}
	ts.release(log)
	return dp, ts, nil
}

// liveTrails are the trail sets of the agent's two generation slots. Both
// may be the same set (at start); a store is closed once neither slot
// holds it.
type liveTrails struct {
	slots [2]*trailSet
}

// replace puts ts in slot and returns what it held, or nil when the
// other slot still holds that.
func (l *liveTrails) replace(slot uint32, ts *trailSet) (unused *trailSet) {
	old := l.slots[slot&1]
	l.slots[slot&1] = ts
	if old == l.slots[(slot&1)^1] {
		return nil
	}
	return old
}

// stage makes ts the trail set of generation slot, for the agent too,
// and releases the store only that slot held once no record handler can
// use it. It returns false when ctx ended first (the old store is then
// left to the process exit rather than unmapped under a handler).
func (l *liveTrails) stage(ctx context.Context, agent agentSet, slot uint32, ts *trailSet, log *slog.Logger) bool {
	unused := l.replace(slot, ts)
	agent.SetAnswers(slot, false, ts.answers)
	if !agent.StageNames(ctx, slot, ts.names) {
		return false
	}
	unused.close(log)
	return true
}

func (l *liveTrails) close(log *slog.Logger) {
	l.slots[0].close(log)
	if l.slots[1] != l.slots[0] {
		l.slots[1].close(log)
	}
}

// reloadLoop reloads the trails file on request and when it is replaced.
// A load that fails keeps the current trails: the kernel switches
// generations only after the new one is complete.
func reloadLoop(ctx context.Context, o Options, maps *dataplane.TrailMaps, agent agentSet, live *liveTrails, last string, log *slog.Logger) {
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
		ok, gen := reload(ctx, o, maps, agent, live, log)
		if !ok {
			return
		}
		if gen < 0 {
			continue
		}
		agent[0].stats.TrailLoads.Add(1)
		log.Info("trails reloaded", "file", o.TrailsFile, "why", why, "generation", gen, "took", time.Since(start).Round(time.Millisecond))
		if !settle(ctx, agent, live, uint32(gen), log) {
			return
		}
	}
}

// settleAfter is how long the previous generation's names stay after a
// switch: records the kernel made before it are in the ring, and the
// agent reads the ring far faster than this.
const settleAfter = time.Second

// settle gives the previous generation's slot the live generation's trail
// set too, once records of the previous one are handled, and releases
// the previous set's store. It returns false when the sensor is shutting
// down.
func settle(ctx context.Context, agent agentSet, live *liveTrails, gen uint32, log *slog.Logger) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(settleAfter):
	}
	return live.stage(ctx, agent, gen^1, live.slots[gen&1], log)
}

// reload reads the trails file, stages its names in the agent's slot of
// the kernel's idle generation, then has the kernel switch to that
// generation. It returns the generation now live (-1 when the reload
// failed), and false when the sensor is shutting down.
func reload(ctx context.Context, o Options, maps *dataplane.TrailMaps, agent agentSet, live *liveTrails, log *slog.Logger) (bool, int) {
	liveGen := -1
	err := lowGC(func() error {
		ts, err := readTrails(o.TrailsFile, o.Rules.Whitelist, log)
		if err != nil {
			return err
		}
		defer ts.release(log)
		gen, err := maps.Generation()
		if err != nil {
			ts.close(log)
			return err
		}
		slot, switchKernel := gen^1, true
		if ts.inKernel(maps) {
			// `xtrail trails load` already made this store's generation
			// live: only the names follow
			slot, switchKernel = gen, false
		}
		if !live.stage(ctx, agent, slot, ts, log) {
			return context.Canceled
		}
		if !switchKernel {
			liveGen = int(slot)
			return nil
		}
		now, err := ts.loadKernel(maps, log)
		if err != nil {
			return err
		}
		if now != slot {
			log.Warn("another loader switched the trail maps during this reload: the agent's names may not match the kernel's generation until the next reload",
				"staged", slot, "live", now)
		}
		liveGen = int(now)
		return nil
	})
	if errors.Is(err, context.Canceled) {
		return false, -1
	}
	if err != nil {
		agent[0].stats.ReloadErrors.Add(1)
		log.Error("trail reload failed: the current trails stay loaded", "file", o.TrailsFile, "err", err)
		return true, -1
	}
	return true, liveGen
}

// ReloadOnHangup returns a channel for Options.Reload that receives once
// per SIGHUP (one pending reload at most) until ctx ends.
func ReloadOnHangup(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default: // a reload is already pending
				}
			}
		}
	}()
	return reload
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
