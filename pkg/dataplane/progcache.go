package dataplane

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// A sensor restart should not pay for the verifier again (it is most of a
// start: ~0.3 s). A live Dataplane therefore pins its verified program, with
// the maps only the program uses, under <PinDir>/prog-<key>, where key
// hashes everything that shaped the loaded program: the embedded object and
// the ring size. The next Load with the same key takes them from there.
//
// Only one Dataplane uses the cache of a pin dir at a time: it holds an
// exclusive flock on the pin dir. Another one (a second sensor on the same
// trail maps) loads a private program and ring buffer of its own, as before.

const progCachePrefix = "prog-"

// progCacheKey names the cache of a program loaded from spec: its object
// and the sizes of the maps only it uses (the ring, the scan maps), which
// Load sets from the options.
func progCacheKey(spec *ebpf.CollectionSpec) string {
	h := sha256.New()
	h.Write(_XtrailBytes)
	names := slices.Sorted(maps.Keys(spec.Maps))
	for _, name := range names {
		if m := spec.Maps[name]; m.Pinning != ebpf.PinByName {
			h.Write([]byte(name))
			h.Write(binary.LittleEndian.AppendUint32(nil, m.MaxEntries))
		}
	}
	return progCachePrefix + hex.EncodeToString(h.Sum(nil)[:8])
}

// lockPinDir takes the pin dir's program-cache lock without waiting. The
// returned file holds it until closed; nil means another Dataplane has it.
func lockPinDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock pin dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock pin dir %s: %w", dir, err)
	}
	return f, nil
}

// objectFields lists the generated objects' program and map fields by
// their names in the BPF object.
func objectFields(o *xtrailObjects) (progs map[string]**ebpf.Program, maps map[string]**ebpf.Map) {
	progs, maps = map[string]**ebpf.Program{}, map[string]**ebpf.Map{}
	for _, v := range []reflect.Value{reflect.ValueOf(&o.xtrailPrograms).Elem(), reflect.ValueOf(&o.xtrailMaps).Elem()} {
		for i := range v.NumField() {
			name := v.Type().Field(i).Tag.Get("ebpf")
			switch p := v.Field(i).Addr().Interface().(type) {
			case **ebpf.Program:
				progs[name] = p
			case **ebpf.Map:
				maps[name] = p
			}
		}
	}
	return progs, maps
}

// openProgCache fills o from the cache dir: the pinned program, its
// private maps from dir, its trail maps from pinDir. It checks that the
// program reads exactly those maps, so a cache left behind by trail maps
// that were since removed and recreated is never used.
func openProgCache(spec *ebpf.CollectionSpec, pinDir, dir string, o *xtrailObjects) (err error) {
	progs, maps := objectFields(o)
	defer func() {
		if err != nil {
			o.Close()
			*o = xtrailObjects{}
		}
	}()
	for name, p := range progs {
		if *p, err = ebpf.LoadPinnedProgram(filepath.Join(dir, name), nil); err != nil {
			return fmt.Errorf("program %s: %w", name, err)
		}
	}
	ids := map[string]ebpf.MapID{}
	for name, m := range maps {
		path := filepath.Join(dir, name)
		if spec.Maps[name].Pinning == ebpf.PinByName {
			path = filepath.Join(pinDir, name)
		}
		if *m, err = ebpf.LoadPinnedMap(path, nil); err != nil {
			return fmt.Errorf("map %s: %w", name, err)
		}
		info, err := (*m).Info()
		if err != nil {
			return fmt.Errorf("map %s: %w", name, err)
		}
		ids[name], _ = info.ID()
	}
	for name, p := range progs {
		info, err := (*p).Info()
		if err != nil {
			return fmt.Errorf("program %s: %w", name, err)
		}
		have, ok := info.MapIDs()
		if !ok {
			return errors.New("kernel does not report a program's maps")
		}
		// the maps the program's code refers to, as the kernel knows them
		var want []ebpf.MapID
		seen := map[string]bool{}
		for _, ins := range spec.Programs[name].Instructions {
			if ref := ins.Reference(); ins.IsLoadFromMap() && !seen[ref] {
				seen[ref] = true
				want = append(want, ids[ref])
			}
		}
		slices.Sort(have)
		slices.Sort(want)
		if !slices.Equal(have, want) {
			return fmt.Errorf("program %s reads other maps (ids %v) than those pinned (ids %v)", name, have, want)
		}
	}
	return nil
}

// saveProgCache pins o's program and private maps in dir and removes the
// caches of other keys (other versions, ring sizes).
func saveProgCache(spec *ebpf.CollectionSpec, pinDir, dir string, o *xtrailObjects) error {
	if err := clearProgCaches(pinDir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("program cache: %w", err)
	}
	progs, maps := objectFields(o)
	for name, p := range progs {
		if err := (*p).Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("program cache: pin %s: %w", name, err)
		}
	}
	for name, m := range maps {
		if spec.Maps[name].Pinning == ebpf.PinByName {
			continue
		}
		if err := (*m).Pin(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("program cache: pin %s: %w", name, err)
		}
	}
	return nil
}

// clearProgCaches removes every program cache in pinDir. Objects still
// open (a running Dataplane) live on; only the pins go.
func clearProgCaches(pinDir string) error {
	ents, err := os.ReadDir(pinDir)
	if err != nil {
		return fmt.Errorf("program cache: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), progCachePrefix) {
			if err := os.RemoveAll(filepath.Join(pinDir, e.Name())); err != nil {
				return fmt.Errorf("program cache: %w", err)
			}
		}
	}
	return nil
}

// PinDirHolder returns the pid of the process holding the pin dir's
// program-cache lock, a running sensor, or 0 when none does. It reads
// /proc/locks, so the pid is as this process's pid namespace sees it.
func PinDirHolder(dir string) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, nil
		}
		return 0, fmt.Errorf("pin dir %s: %w", dir, err)
	}
	// /proc/locks names the file as MAJOR:MINOR:INODE, the device in hex
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0, fmt.Errorf("read the lock table: %w", err)
	}
	for line := range strings.Lines(string(locks)) {
		// "1: FLOCK  ADVISORY  WRITE 1234 00:27:1 0 EOF"; a waiter's
		// line has "->" after the number and holds nothing
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && f[5] == want {
			pid, err := strconv.Atoi(f[4])
			if err != nil {
				return 0, fmt.Errorf("lock table line %q: %w", strings.TrimSpace(line), err)
			}
			if pid <= 0 {
				// the holder lives in a pid namespace this one cannot see
				return 0, fmt.Errorf("pin dir %s is held by a process outside this pid namespace", dir)
			}
			return pid, nil
		}
	}
	return 0, nil
}
