// Package dataplane loads xtrail's XDP program (bpf/xtrail.c), pins its trail
// maps under /sys/fs/bpf/xtrail, attaches it to interfaces with a bpf_link,
// runs captured packets through it with BPF_PROG_TEST_RUN, and reads its
// counters and ring buffer.
package dataplane

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// DefaultPinDir is where the trail maps are pinned, so trails loaded by
// `xtrail trails load` survive a sensor restart.
const DefaultPinDir = "/sys/fs/bpf/xtrail"

// Action is what the program does with every packet once it has looked at it.
type Action uint32

const (
	// ActionPass hands packets on to the kernel stack (host or inline mode).
	ActionPass Action = 2 // XDP_PASS
	// ActionDrop ends them in the program: a dedicated monitor port whose
	// mirrored traffic the host stack should never see.
	ActionDrop Action = 1 // XDP_DROP
)

// ParseAction reads "pass" or "drop".
func ParseAction(s string) (Action, error) {
	switch s {
	case "", "pass":
		return ActionPass, nil
	case "drop":
		return ActionDrop, nil
	}
	return 0, fmt.Errorf("XDP action %q: want pass or drop", s)
}

func (a Action) String() string {
	if a == ActionDrop {
		return "drop"
	}
	return "pass"
}

// Options configure Load.
type Options struct {
	// PinDir pins the trail maps there (mounting bpffs if needed); empty
	// keeps every map private to this process (replay, tests).
	PinDir string
	// Action for every packet.
	Action Action
	// Replay makes the program's clock the capture time set with SetClock.
	Replay bool
	// RingSize is the ring buffer size in bytes (a power of two, at least
	// one page); 0 keeps the program's default of 8 MiB.
	RingSize int
	// Snap is the snapshot length per record kind (index = Kind*); 0 keeps
	// the maximum.
	Snap [8]uint16
	// Scan says which scans the program counts (default: none).
	Scan Scan
	// Netns, when set, is the path of the network namespace whose
	// interfaces Attach attaches to (e.g. /var/run/netns/NAME).
	Netns  string
	Logger *slog.Logger
}

// Dataplane is one loaded instance of the XDP program and its maps.
type Dataplane struct {
	objs     xtrailObjects
	opts     Options
	log      *slog.Logger
	attached []*Attachment
	cfg      xtrailXtConfig
	cfgMem   *ebpf.Memory // xt_cfg mapped into this process (replay clock)
	pfxMem   *ebpf.Memory // xt_scan_pfx mapped (LocalPrefix), once read
	trails   *TrailMaps
	clockBuf [8]byte
	// lock holds the pin dir's program-cache lock (see progcache.go);
	// cached says the program came from that cache.
	lock   *os.File
	cached bool
}

// Load verifies and loads the program. With Options.PinDir set, the trail
// maps already pinned there are reused (their trails stay loaded).
func Load(opts Options) (*Dataplane, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	began := time.Now()
	spec, err := loadXtrail()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	if opts.RingSize != 0 {
		spec.Maps["xt_events"].MaxEntries = uint32(opts.RingSize)
	}
	opts.Scan.size(spec)
	// the replay queue: a live program never runs one
	spec.Maps["xt_replay_q"].MaxEntries = 1
	if opts.Replay {
		spec.Maps["xt_replay_q"].MaxEntries = ReplayBatch
	}
	d := &Dataplane{opts: opts, log: log}
	colOpts := ebpf.CollectionOptions{}
	cache := ""
	if opts.PinDir != "" {
		if err := EnsurePinDir(opts.PinDir); err != nil {
			return nil, err
		}
		colOpts.Maps.PinPath = opts.PinDir
		if d.lock, err = lockPinDir(opts.PinDir); err != nil {
			return nil, err
		}
		if d.lock != nil {
			cache = filepath.Join(opts.PinDir, progCacheKey(spec))
		} else {
			log.Info("another sensor uses this pin dir's program: loading a private one", "pin_dir", opts.PinDir)
		}
	} else {
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}
	if err := d.loadObjects(spec, &colOpts, cache); err != nil {
		d.objs.Close()
		d.unlock()
		return nil, err
	}
	if err := d.setup(spec); err != nil {
		d.Close()
		return nil, err
	}
	level := slog.LevelInfo
	if opts.PinDir == "" {
		level = slog.LevelDebug // a private program (replay, tests): nothing to tell an operator
	}
	mem, err := d.ProgramMemory()
	if err != nil {
		d.Close()
		return nil, err
	}
	log.Log(context.Background(), level, "XDP program loaded", "verified_before", d.cached, "pin_dir", opts.PinDir,
		"ring_bytes", mem.Ring, "scan_map_bytes", mem.Scan, "took", time.Since(began).Round(time.Millisecond))
	if opts.Replay {
		// the clock field is the first of struct xt_config
		if d.cfgMem, err = d.objs.XtCfg.Memory(); err != nil {
			log.Debug("config map not mappable: replay clock via map updates", "err", err)
			d.cfgMem = nil
		}
	}
	return d, nil
}

// loadObjects fills d.objs: from the verified program cache (see
// progcache.go) when it holds this program, else by loading and verifying
// the program afresh and keeping it there.
func (d *Dataplane) loadObjects(spec *ebpf.CollectionSpec, colOpts *ebpf.CollectionOptions, cache string) error {
	if cache != "" {
		if _, err := os.Stat(cache); err == nil {
			err := openProgCache(spec, d.opts.PinDir, cache, &d.objs)
			if err == nil {
				d.cached = true
				if d.opts.Replay {
					if err := d.resetReplayState(); err != nil {
						return err
					}
				}
				return d.resetCounters()
			}
			d.log.Info("the pinned verified program is not usable: loading afresh", "dir", cache, "err", err)
		}
	}
	if err := spec.LoadAndAssign(&d.objs, colOpts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("load XDP program: %+v", ve)
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return fmt.Errorf("pinned maps in %s were made by another version of xtrail (remove that directory, or set XDP_PIN_DIR): %w", d.opts.PinDir, err)
		}
		return fmt.Errorf("load XDP program (pin dir %q): %w", d.opts.PinDir, err)
	}
	if cache != "" {
		if err := saveProgCache(spec, d.opts.PinDir, cache, &d.objs); err != nil {
			d.log.Warn("the verified program is not kept for the next start", "err", err)
			if err := clearProgCaches(d.opts.PinDir); err != nil {
				d.log.Warn("removing a partial program cache", "err", err)
			}
		}
	}
	return nil
}

// setup opens the trail maps' view and writes the program's config.
func (d *Dataplane) setup(spec *ebpf.CollectionSpec) error {
	o := &d.objs
	origin, err := openOrigin(d.opts.PinDir)
	if err != nil {
		return err
	}
	if d.trails, err = newTrailMaps(spec, [nKinds]*ebpf.Map{o.XtIp4, o.XtIp6, o.XtPort4, o.XtPort6, o.XtCidr4, o.XtCidr6, o.XtIpfilter},
		o.XtGen, o.XtLive, o.XtInfo, origin, false, d.opts.PinDir); err != nil {
		origin.Close()
		return err
	}
	seed, err := d.seed()
	if err != nil {
		return err
	}
	d.cfg = xtrailXtConfig{Action: uint32(d.opts.Action), Snap: d.opts.Snap, Seed: seed}
	if err := d.opts.Scan.apply(&d.cfg); err != nil {
		return err
	}
	if d.opts.Replay {
		d.cfg.Flags |= cfgReplay
	} else {
		off, err := taiToWall()
		if err != nil {
			return err
		}
		d.cfg.TaiToWallNs = off
	}
	return d.writeConfig()
}

// seed is the key of the program's hashes (xt_config.seed): random, kept
// from the last run when the program comes from the cache, whose scan maps
// hold keys made with it.
func (d *Dataplane) seed() (uint64, error) {
	if d.cached {
		var old xtrailXtConfig
		if err := d.objs.XtCfg.Lookup(uint32(0), &old); err == nil && old.Seed != 0 {
			return old.Seed, nil
		}
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("program hash seed: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:]) | 1, nil
}

// PinDir is the pin dir the program's trail maps are pinned in ("": they
// are private).
func (d *Dataplane) PinDir() string { return d.opts.PinDir }

// Cached says whether the program was taken verified from the pin dir
// rather than loaded (and verified) afresh.
func (d *Dataplane) Cached() bool { return d.cached }

func (d *Dataplane) unlock() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

// resetCounters zeroes the counters a cached program kept from its last
// run, so every run reports its own.
func (d *Dataplane) resetCounters() error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("reset XDP counters: %w", err)
	}
	if err := d.objs.XtCounts.Update(uint32(0), make([]xtrailXtCounters, n), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reset XDP counters: %w", err)
	}
	return nil
}

const cfgReplay = 1 // XT_CFG_REPLAY

func (d *Dataplane) writeConfig() error {
	if err := d.objs.XtCfg.Update(uint32(0), &d.cfg, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write program config: %w", err)
	}
	return nil
}

// taiToWall measures CLOCK_REALTIME - CLOCK_TAI in whole seconds: the
// program reads the TAI clock (no wall clock exists for XDP) and adds this.
func taiToWall() (int64, error) {
	var real, tai unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_TAI, &tai); err != nil {
		return 0, fmt.Errorf("read CLOCK_TAI: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &real); err != nil {
		return 0, fmt.Errorf("read CLOCK_REALTIME: %w", err)
	}
	diff := real.Nano() - tai.Nano()
	// round to whole seconds: the offset is a leap-second count
	sec := (diff + sign(diff)*500_000_000) / 1_000_000_000
	return sec * 1_000_000_000, nil
}

func sign(v int64) int64 {
	if v < 0 {
		return -1
	}
	return 1
}

// SetClock sets the program's clock for the packets that follow (replay):
// a plain store into the mapped config, no system call.
func (d *Dataplane) SetClock(t time.Time) error {
	ns := uint64(t.UnixNano())
	d.cfg.ClockNs = ns
	if d.cfgMem != nil {
		binary.LittleEndian.PutUint64(d.clockBuf[:], ns)
		if _, err := d.cfgMem.WriteAt(d.clockBuf[:], 0); err != nil {
			return fmt.Errorf("set program clock: %w", err)
		}
		return nil
	}
	return d.writeConfig()
}

// Run passes one frame through the program (BPF_PROG_TEST_RUN) and returns
// its verdict. Records it produces are in the ring buffer when Run returns.
func (d *Dataplane) Run(frame []byte) (uint32, error) {
	ret, err := d.objs.XtrailXdp.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return 0, fmt.Errorf("test-run XDP program on %d-byte frame: %w", len(frame), err)
	}
	return ret, nil
}

// Benchmark runs one frame repeat times in the kernel and returns the mean
// time per run as the kernel measured it.
func (d *Dataplane) Benchmark(frame []byte, repeat int) (time.Duration, error) {
	_, per, err := d.objs.XtrailXdp.Benchmark(frame, repeat, nil)
	if err != nil {
		return 0, fmt.Errorf("benchmark XDP program: %w", err)
	}
	return per, nil
}

// NewRingReader opens a reader of the program's ring buffer. The caller
// owns it and closes it to stop a blocked read.
func (d *Dataplane) NewRingReader() (*ringbuf.Reader, error) {
	rd, err := ringbuf.NewReader(d.objs.XtEvents)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return rd, nil
}

// Trails returns the trail maps the program reads.
func (d *Dataplane) Trails() *TrailMaps {
	return d.trails
}

// Close detaches the program from every interface it was attached to and
// releases it. Pinned trail maps stay in the bpffs.
func (d *Dataplane) Close() error {
	var errs []error
	for i := len(d.attached) - 1; i >= 0; i-- {
		if err := d.attached[i].Detach(); err != nil {
			errs = append(errs, err)
		}
	}
	d.attached = nil
	if err := d.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close BPF objects: %w", err))
	}
	if d.trails != nil {
		if err := d.trails.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close trail origin map: %w", err))
		}
	}
	d.unlock()
	return errors.Join(errs...)
}

// EnsurePinDir creates dir in a bpffs. Below /sys/fs/bpf it mounts the
// bpffs there first when the host has none (minimal hosts and containers).
func EnsurePinDir(dir string) error {
	dir = filepath.Clean(dir)
	root := filepath.Dir(dir)
	if strings.HasPrefix(dir, "/sys/fs/bpf/") {
		root = "/sys/fs/bpf"
	}
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("pin dir %s: %w", dir, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		if root != "/sys/fs/bpf" {
			return fmt.Errorf("pin dir %s: %s is not a bpffs", dir, root)
		}
		if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w", root, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin dir %s: %w", dir, err)
	}
	return nil
}
