package dataplane

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// A replay's start used to be most of its cost: verifying the program and
// filling private trail maps with the IP trails of the store. A replay of a
// compiled store therefore keeps both in a cache of its own under the pin
// dir, one per store: ReplayCacheDir is laid out as a pin dir (its own
// trail maps, xt_gen, xt_live, its verified program in prog-<key>), so Load
// with Options.PinDir set to it uses the program cache and the pinned
// maps as a live sensor does.
//   - It never touches a live sensor's maps or generation: they are other
//     maps, and a replay cache's trail maps are filled once, from one
//     store, then frozen (TrailMaps.Freeze): read-only to user space, and
//     its generation never changes.
//   - The program's own state (clock, repeat slots, scan maps, counters,
//     ring, replay queue) is one replay's at a time: the pin dir's lock
//     gives the cached program to one replay, and Load clears that state
//     when it takes it (resetReplayState). A second replay of the same
//     store at once loads a private program beside the shared trail maps.
//   - The newest cache is kept, older ones are removed once no replay holds
//     them (PruneReplayCaches), so the kernel memory left behind is one
//     store's maps and one program's.

const replayCachePrefix = "replay-"

// ReplayCacheDir is the replay cache of the store with checksum sum, under
// pinDir.
func ReplayCacheDir(pinDir string, sum [32]byte) string {
	return filepath.Join(pinDir, replayCachePrefix+hex.EncodeToString(sum[:16]))
}

// PruneReplayCaches removes the replay caches in pinDir other than keep
// (a path from ReplayCacheDir) that no process holds. Maps and programs a
// running replay has open live on; only the pins go.
func PruneReplayCaches(pinDir, keep string) error {
	ents, err := os.ReadDir(pinDir)
	if err != nil {
		return fmt.Errorf("replay caches: %w", err)
	}
	var errs []error
	for _, e := range ents {
		dir := filepath.Join(pinDir, e.Name())
		if !e.IsDir() || !strings.HasPrefix(e.Name(), replayCachePrefix) || dir == filepath.Clean(keep) {
			continue
		}
		if pid, err := PinDirHolder(dir); err != nil || pid != 0 {
			continue // in use (or unknown): the next replay tries again
		}
		if err := RemoveReplayCache(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveReplayCache removes the replay cache dir unless a process holds
// it: one another version of xtrail made, whose maps do not fit this one.
func RemoveReplayCache(dir string) error {
	pid, err := PinDirHolder(dir)
	if err != nil {
		return err
	}
	if pid != 0 {
		return fmt.Errorf("replay cache %s is in use by process %d", dir, pid)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove replay cache: %w", err)
	}
	return nil
}

// resetReplayState clears what a cached program kept from the replay
// before: repeat slots, scan state and records left in the ring (a replay
// that ended early). Counters are reset with every cached program.
func (d *Dataplane) resetReplayState() error {
	o := &d.objs
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("reset replay state: %w", err)
	}
	info, err := o.XtDup.Info()
	if err != nil {
		return fmt.Errorf("reset replay state: %w", err)
	}
	zero := make([]xtrailXtTuple, n)
	for slot := range info.MaxEntries {
		if err := o.XtDup.Update(slot, zero, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("reset repeat slots: %w", err)
		}
	}
	if err := errors.Join(clearHash[xtrailXtScanKey, xtrailXtScanPorts](o.XtScanTcp),
		clearHash[xtrailXtScanKey, xtrailXtScanPorts](o.XtScanUdp),
		clearHash[xtrailXtScanSrc, uint32](o.XtScanSrcs)); err != nil {
		return err
	}
	if err := o.XtScanWin.Update(uint32(0), xtrailXtScanState{}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("reset scan window: %w", err)
	}
	if info, err = o.XtScanPfx.Info(); err != nil {
		return fmt.Errorf("reset scan prefixes: %w", err)
	}
	if info.MaxEntries > 1 {
		keys := make([]uint32, info.MaxEntries)
		for i := range keys {
			keys[i] = uint32(i)
		}
		if _, err := o.XtScanPfx.BatchUpdate(keys, make([]uint64, info.MaxEntries), nil); err != nil {
			return fmt.Errorf("reset scan prefixes: %w", err)
		}
	}
	return discardRing(o.XtEvents)
}

// clearHash deletes every entry of a hash map (keys K, values V), a batch
// at a time.
func clearHash[K, V any](m *ebpf.Map) error {
	keys, vals := make([]K, 256), make([]V, 256)
	var cursor ebpf.MapBatchCursor
	for {
		_, err := m.BatchLookupAndDelete(&cursor, keys, vals, nil)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil // the last batch (maybe partial) is done
		}
		if err != nil {
			return fmt.Errorf("clear %v: %w", m, err)
		}
	}
}

// Freeze makes the live generation's maps, and the maps that choose and
// describe it, read-only to user space for good (BPF_MAP_FREEZE): for the
// trail maps of a replay cache, which hold one store for their lifetime.
// The program still reads them.
func (t *TrailMaps) Freeze() error {
	var errs []error
	for kind := range t.outer {
		m, err := t.liveMap(kind)
		if err != nil {
			return err
		}
		if m != nil {
			errs = append(errs, m.Freeze())
			m.Close()
		}
	}
	for _, m := range append(t.outer[:], t.gen, t.live, t.info, t.origin) {
		errs = append(errs, m.Freeze())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("freeze trail maps: %w", err)
	}
	return nil
}

// discardRing discards the records in a ring.
func discardRing(m *ebpf.Map) error {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return fmt.Errorf("drain ring buffer: %w", err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now())
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("drain ring buffer: %w", err)
		}
	}
}
