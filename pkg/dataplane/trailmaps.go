package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/trails"
)

// Kernel trail flags (XT_F_* in bpf/xtrail.h).
const (
	flagAttacker = 1 << 0
	flagParking  = 1 << 1
	flagMalware  = 1 << 2
	prefixShift  = 8 // XT_F_PREFIX_SHIFT: CIDR prefix length in the flags
)

const (
	infoMax = len(xtrailXtMeta{}.Info) - 1 // room for the NUL
	refMax  = len(xtrailXtMeta{}.Ref) - 1
)

// Trail map kinds, in the order of outerNames.
const (
	kindIP4 = iota
	kindIP6
	kindPort4
	kindPort6
	kindCIDR4
	kindCIDR6
	kindFilter // not trails: the generation's address filter (filter.go)
	nKinds
)

var outerNames = [nKinds]string{"xt_ip4", "xt_ip6", "xt_port4", "xt_port6", "xt_cidr4", "xt_cidr6", "xt_ipfilter"}

// TrailMaps are the kernel's trail maps: for each kind an outer map with
// two generations of inner maps, xt_gen naming the live one, and xt_info
// holding the info and reference text of each trail.
type TrailMaps struct {
	outer [nKinds]*ebpf.Map
	inner [nKinds]*ebpf.MapSpec // templates of a generation's maps
	gen   *ebpf.Map
	live  *ebpf.Map // xt_live: what the live generation holds
	info  *ebpf.Map
	// origin (xt_origin) records where the live generation came from;
	// the program never reads it.
	origin *ebpf.Map
	owned  bool
	// pinDir, when the maps are pinned, holds the lock that keeps loads
	// from two processes (a starting sensor, `xtrail trails load`) from
	// filling the same idle generation at once.
	pinDir string
	// Grace is how long the previous generation stays reachable after a
	// switch: a packet that read the old generation number finishes its
	// lookups well within it.
	Grace time.Duration
}

func newTrailMaps(spec *ebpf.CollectionSpec, outer [nKinds]*ebpf.Map, gen, live, info, origin *ebpf.Map, owned bool, pinDir string) (*TrailMaps, error) {
	t := &TrailMaps{outer: outer, gen: gen, live: live, info: info, origin: origin, owned: owned, pinDir: pinDir, Grace: 50 * time.Millisecond}
	for i, name := range outerNames {
		ms := spec.Maps[name]
		if ms == nil || ms.InnerMap == nil {
			return nil, fmt.Errorf("BPF object: %s is not a map of maps", name)
		}
		t.inner[i] = ms.InnerMap.Copy()
		t.inner[i].Name = strings.TrimPrefix(name, "xt_") + "_gen"
	}
	return t, nil
}

// OpenTrailMaps opens the trail maps pinned in pinDir, creating and pinning
// them when no sensor has yet, so trails can be loaded before a sensor starts.
func OpenTrailMaps(pinDir string) (*TrailMaps, error) {
	if err := EnsurePinDir(pinDir); err != nil {
		return nil, err
	}
	spec, err := loadXtrail()
	if err != nil {
		return nil, fmt.Errorf("read embedded BPF object: %w", err)
	}
	names := append(outerNames[:], "xt_gen", "xt_live", "xt_info")
	ms := make([]*ebpf.Map, len(names))
	for i, name := range names {
		m, err := ebpf.NewMapWithOptions(spec.Maps[name], ebpf.MapOptions{PinPath: pinDir})
		if err != nil {
			for _, o := range ms[:i] {
				o.Close()
			}
			if errors.Is(err, ebpf.ErrMapIncompatible) {
				return nil, fmt.Errorf("pinned map %s in %s was made by another version of xtrail (remove that directory): %w", name, pinDir, err)
			}
			return nil, fmt.Errorf("open pinned map %s in %s: %w", name, pinDir, err)
		}
		ms[i] = m
	}
	origin, err := openOrigin(pinDir)
	if err != nil {
		for _, m := range ms {
			m.Close()
		}
		return nil, err
	}
	t, err := newTrailMaps(spec, [nKinds]*ebpf.Map(ms[:nKinds]), ms[nKinds], ms[nKinds+1], ms[nKinds+2], origin, true, pinDir)
	if err != nil {
		for _, m := range append(ms, origin) {
			m.Close()
		}
		return nil, err
	}
	return t, nil
}

// Close releases maps opened by OpenTrailMaps (the pins stay).
func (t *TrailMaps) Close() error {
	if !t.owned {
		return t.origin.Close()
	}
	var errs []error
	for _, m := range append(t.outer[:], t.gen, t.live, t.info, t.origin) {
		if err := m.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Generation returns the live generation (0 or 1).
func (t *TrailMaps) Generation() (uint32, error) {
	var g uint32
	if err := t.gen.Lookup(uint32(0), &g); err != nil {
		return 0, fmt.Errorf("read trail generation: %w", err)
	}
	return g & 1, nil
}

// liveMap returns the live generation's inner map of one kind, or nil when
// that generation has none (no trails loaded yet). The caller closes it.
func (t *TrailMaps) liveMap(kind int) (*ebpf.Map, error) {
	g, err := t.Generation()
	if err != nil {
		return nil, err
	}
	var m *ebpf.Map
	if err := t.outer[kind].Lookup(g, &m); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s generation %d: %w", outerNames[kind], g, err)
	}
	return m, nil
}

// LoadStats says what Replace did.
type LoadStats struct {
	IP4, IP6, Port4, Port6 int           // trails now in each map
	CIDR4, CIDR6           int           // CIDR trails now in each trie
	Generation             uint32        // the generation now live
	Switch                 time.Duration // from the start of the load to the switch
	Metas                  int           // distinct (info, reference) pairs
	Skipped                int           // trails whose info or reference is too long for the kernel record
}

// Meta returns the info and reference of trail meta id.
func (t *TrailMaps) Meta(id uint32) (info, ref string, err error) {
	var m xtrailXtMeta
	if err := t.info.Lookup(id, &m); err != nil {
		return "", "", fmt.Errorf("trail meta %d: %w", id, err)
	}
	return cString(m.Info[:]), cString(m.Ref[:]), nil
}

func cString(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}

func putCString(dst []int8, s string) {
	for i := range dst {
		dst[i] = 0
	}
	for i := 0; i < len(s) && i < len(dst)-1; i++ {
		dst[i] = int8(s[i])
	}
}

// Replace makes the program match exactly the IP, IP:port and CIDR trails
// of set: it fills a new generation of maps, switches to it with one write
// (no packet sees a mix of generations), and frees the previous one after
// Grace. Calls must not overlap (the trail loader runs one at a time).
func (t *TrailMaps) Replace(set *trails.Set) (LoadStats, error) {
	return t.ReplaceFrom(set, Origin{})
}

// LiveID returns the identity recorded with the live generation (zero when
// unknown) and whether it is still the live one. A generation without an
// address filter (loaded by an xtrail without filters) is not: loading
// its store again gives it one.
func (t *TrailMaps) LiveID() ([32]byte, bool) {
	var v xtrailXtGenid
	var filter uint32
	g, err := t.Generation()
	if err != nil || t.live.Lookup(uint32(0), &v) != nil {
		return [32]byte{}, false
	}
	if t.outer[kindFilter].Lookup(g, &filter) != nil {
		return v.Sum, false
	}
	return v.Sum, v.Gen == g
}

// ReplaceFrom is Replace that records where the trails came from: o.ID (a
// compiled store's checksum) in xt_live, the rest in xt_origin.
func (t *TrailMaps) ReplaceFrom(set *trails.Set, o Origin) (LoadStats, error) {
	var st LoadStats
	start := time.Now()
	unlock, err := t.lockLoads()
	if err != nil {
		return st, err
	}
	defer unlock()
	// Reuse the ids of (info, reference) pairs already in the kernel, so
	// records in flight during a reload still name the right text.
	known := map[trails.Meta]uint32{}
	used := map[uint32]bool{}
	var id uint32
	var mv xtrailXtMeta
	it := t.info.Iterate()
	for it.Next(&id, &mv) {
		known[trails.Meta{Info: cString(mv.Info[:]), Reference: cString(mv.Ref[:])}] = id
		used[id] = true
	}
	if err := it.Err(); err != nil {
		return st, fmt.Errorf("read trail meta map: %w", err)
	}
	ids := make([]uint32, len(set.Metas))
	ok := make([]bool, len(set.Metas))
	keep := map[uint32]bool{}
	next := uint32(1)
	for i, m := range set.Metas {
		if len(m.Info) > infoMax || len(m.Reference) > refMax {
			continue
		}
		ok[i] = true
		if old, found := known[m]; found {
			ids[i] = old
			keep[old] = true
			continue
		}
		for used[next] {
			next++
		}
		used[next] = true
		ids[i] = next
		keep[next] = true
		putCString(mv.Info[:], m.Info)
		putCString(mv.Ref[:], m.Reference)
		if err := t.info.Update(next, &mv, ebpf.UpdateAny); err != nil {
			return st, fmt.Errorf("write trail meta %d (%q): %w", next, m.Info, err)
		}
		known[m] = next
	}
	st.Metas = len(keep)

	var (
		k4  []uint32
		v4  []trailValue
		k6  []ip6Key
		v6  []trailValue
		kp4 []port4Key
		vp4 []trailValue
		kp6 []port6Key
		vp6 []trailValue
	)
	for _, tr := range set.IPs {
		if int(tr.Meta) >= len(set.Metas) || !ok[tr.Meta] {
			st.Skipped++
			continue
		}
		m := set.Metas[tr.Meta]
		v := trailValue{Meta: ids[tr.Meta], Flags: kernelFlags(m.Flags())}
		a := tr.Addr
		switch {
		case a.Is4() && tr.Port == 0:
			k4 = append(k4, addr4Key(a))
			v4 = append(v4, v)
		case a.Is4():
			kp4 = append(kp4, port4Key{Addr: addr4Key(a), Port: htons(tr.Port)})
			vp4 = append(vp4, v)
		case tr.Port == 0:
			k6 = append(k6, ip6Key{Addr: a.As16()})
			v6 = append(v6, v)
		default:
			kp6 = append(kp6, port6Key{Addr: a.As16(), Port: htons(tr.Port)})
			vp6 = append(vp6, v)
		}
	}
	st.IP4, st.IP6, st.Port4, st.Port6 = len(k4), len(k6), len(kp4), len(kp6)
	var (
		kc4 []lpm4Key
		vc4 []trailValue
		kc6 []lpm6Key
		vc6 []trailValue
	)
	for _, c := range set.CIDRs {
		if int(c.Meta) >= len(set.Metas) || !ok[c.Meta] || !c.Prefix.IsValid() {
			st.Skipped++
			continue
		}
		p := c.Prefix.Masked()
		v := trailValue{Meta: ids[c.Meta], Flags: kernelFlags(set.Metas[c.Meta].Flags()) | uint32(p.Bits())<<prefixShift}
		if p.Addr().Is4() {
			kc4 = append(kc4, lpm4Key{Prefixlen: uint32(p.Bits()), Addr: addr4Key(p.Addr())})
			vc4 = append(vc4, v)
		} else {
			kc6 = append(kc6, lpm6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()})
			vc6 = append(vc6, v)
		}
	}
	st.CIDR4, st.CIDR6 = len(kc4), len(kc6)

	filter := new(ipFilter)
	for _, k := range k4 {
		filter.add(netip.AddrFrom4(addr4Bytes(k)))
	}
	for _, k := range kp4 {
		filter.add(netip.AddrFrom4(addr4Bytes(k.Addr)))
	}
	for _, k := range k6 {
		filter.add(netip.AddrFrom16(k.Addr))
	}
	for _, k := range kp6 {
		filter.add(netip.AddrFrom16(k.Addr))
	}
	if len(kc4) > 0 {
		filter.Flags |= filterCIDR4
	}
	if len(kc6) > 0 {
		filter.Flags |= filterCIDR6
	}

	// Fill the next generation's maps, fresh, while traffic uses the live one.
	live, err := t.Generation()
	if err != nil {
		return st, err
	}
	nextGen := live ^ 1
	var fresh [nKinds]*ebpf.Map
	defer func() {
		for _, m := range fresh {
			if m != nil {
				m.Close()
			}
		}
	}()
	for i := range fresh {
		if fresh[i], err = ebpf.NewMap(t.inner[i]); err != nil {
			return st, fmt.Errorf("create %s generation: %w", outerNames[i], err)
		}
	}
	// The batches go to all CPUs: inserts into the kernel's hash maps
	// cost about a microsecond each, and the IP:port map alone holds most
	// of a large trail set.
	var fills []func() error
	fills = appendBatches(fills, fresh[kindIP4], k4, v4)
	fills = appendBatches(fills, fresh[kindIP6], k6, v6)
	fills = appendBatches(fills, fresh[kindPort4], kp4, vp4)
	fills = appendBatches(fills, fresh[kindPort6], kp6, vp6)
	fills = appendBatches(fills, fresh[kindCIDR4], kc4, vc4)
	fills = appendBatches(fills, fresh[kindCIDR6], kc6, vc6)
	fills = append(fills, func() error {
		if err := fresh[kindFilter].Put(uint32(0), filter); err != nil {
			return fmt.Errorf("write the address filter: %w", err)
		}
		return nil
	})
	if err := runParallel(fills, runtime.NumCPU()); err != nil {
		return st, fmt.Errorf("fill the next trail generation: %w", err)
	}
	// Each write into a map of maps waits for an RCU grace period in the
	// kernel; written side by side, the six waits overlap.
	installs := make([]func() error, nKinds)
	for i, m := range fresh {
		installs[i] = func() error {
			if err := t.outer[i].Put(nextGen, m); err != nil {
				return fmt.Errorf("install %s generation %d: %w", outerNames[i], nextGen, err)
			}
			return nil
		}
	}
	if err := runParallel(installs, nKinds); err != nil {
		return st, err
	}
	old, err := t.generationInstalled(live)
	if err != nil {
		return st, err
	}
	// The switch: one write, read once per packet by the program.
	if err := t.gen.Put(uint32(0), nextGen); err != nil {
		return st, fmt.Errorf("switch trail generation: %w", err)
	}
	if err := t.live.Put(uint32(0), xtrailXtGenid{Sum: o.ID, Gen: nextGen}); err != nil {
		return st, fmt.Errorf("record trail generation: %w", err)
	}
	o.Generation = nextGen
	if o.LoadedAt.IsZero() {
		o.LoadedAt = time.Now().UTC()
	}
	rec, err := encodeOrigin(o)
	if err == nil {
		err = t.origin.Update(uint32(0), rec, ebpf.UpdateAny)
	}
	if err != nil {
		return st, fmt.Errorf("record trail origin: %w", err)
	}
	st.Generation, st.Switch = nextGen, time.Since(start)
	// Free the previous generation once no packet can be using it: a
	// packet that read the old generation number finishes its lookups
	// well within Grace. A first load has nothing to free.
	if old {
		time.Sleep(t.Grace)
		frees := make([]func() error, nKinds)
		for i := range t.outer {
			frees[i] = func() error {
				if err := t.outer[i].Delete(live); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return fmt.Errorf("free %s generation %d: %w", outerNames[i], live, err)
				}
				return nil
			}
		}
		if err := runParallel(frees, nKinds); err != nil {
			return st, err
		}
	}
	for id := range used {
		if !keep[id] {
			if err := t.info.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return st, fmt.Errorf("delete unused trail meta %d: %w", id, err)
			}
		}
	}
	return st, nil
}

func kernelFlags(f trails.Flags) uint32 {
	var k uint32
	if f&trails.FlagAttacker != 0 {
		k |= flagAttacker
	}
	if f&trails.FlagParking != 0 {
		k |= flagParking
	}
	if f&trails.FlagMalware != 0 {
		k |= flagMalware
	}
	return k
}

// addr4Key is the address as the program reads it from the packet: network
// byte order in a host-order u32.
func addr4Key(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// addr4Bytes undoes addr4Key.
func addr4Bytes(k uint32) [4]byte {
	return [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
}

func htons(p uint16) uint16 { return p>>8 | p<<8 }

const batchSize = 4096

// appendBatches adds one job per batch of keys and values to jobs; a job
// writes its batch with one system call.
func appendBatches[K comparable](jobs []func() error, m *ebpf.Map, keys []K, vals []trailValue) []func() error {
	for i := 0; i < len(keys); i += batchSize {
		j := min(i+batchSize, len(keys))
		jobs = append(jobs, func() error { return upsert(m, keys[i:j], vals[i:j]) })
	}
	return jobs
}

// upsert writes keys and values in one batch, or one by one where the
// kernel has no batch updates for the map type.
func upsert[K comparable](m *ebpf.Map, keys []K, vals []trailValue) error {
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("batch update of %d trails: %w", len(keys), err)
		}
		for n := range keys {
			if err := m.Update(keys[n], vals[n], ebpf.UpdateAny); err != nil {
				return fmt.Errorf("update trail: %w", err)
			}
		}
	}
	return nil
}

// runParallel runs the jobs on up to workers goroutines and returns
// once all are done, with their errors joined.
func runParallel(jobs []func() error, workers int) error {
	next := make(chan func() error)
	errs := make(chan error, len(jobs))
	var wg sync.WaitGroup
	for range max(1, min(workers, len(jobs))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range next {
				errs <- job()
			}
		}()
	}
	for _, job := range jobs {
		next <- job
	}
	close(next)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// loaderLock is the directory in the pin dir whose flock serializes loads.
const loaderLock = "loader" // bpffs refuses names holding a dot

// lockLoads waits for the pin dir's loader lock; the returned func
// releases it. Private maps need none.
func (t *TrailMaps) lockLoads() (func(), error) {
	if t.pinDir == "" {
		return func() {}, nil
	}
	dir := filepath.Join(t.pinDir, loaderLock)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("trail loader lock: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("trail loader lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("trail loader lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil // closing the last descriptor releases it
}

// generationInstalled says whether any kind has maps in generation g.
func (t *TrailMaps) generationInstalled(g uint32) (bool, error) {
	for i := range t.outer {
		// the inner map's id, not the map: opening a map by id needs
		// CAP_SYS_ADMIN, which the sensor's unit does not grant
		var id uint32
		err := t.outer[i].Lookup(g, &id)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("read %s generation %d: %w", outerNames[i], g, err)
		}
		return true, nil
	}
	return false, nil
}

// LoadFile reads a Maltrail trails.csv (gzip when named .gz) and makes the
// maps hold its IP and IP:port trails; by names the loader in the origin
// record. A file without a single row is refused and the current trails
// stay.
func (t *TrailMaps) LoadFile(path, by string) (*trails.Set, LoadStats, error) {
	rc, err := trails.Open(path)
	if err != nil {
		return nil, LoadStats{}, fmt.Errorf("trails file: %w", err)
	}
	defer rc.Close()
	set, err := trails.LoadSet(rc, path)
	if err != nil {
		return nil, LoadStats{}, fmt.Errorf("trails file %s: %w", path, err)
	}
	if set.Stats.Rows == 0 {
		return set, LoadStats{}, fmt.Errorf("trails file %s has no trail rows: keeping the loaded trails", path)
	}
	st, err := t.ReplaceFrom(set, Origin{By: by, Sources: []OriginSource{FileSource(path, "trails.csv", set.Stats.Rows)}})
	if err != nil {
		return set, st, fmt.Errorf("trails file %s: %w", path, err)
	}
	return set, st, nil
}

// Prefix returns the CIDR trail that holds addr (longest prefix), for the
// trail text of a CIDR hit.
func (t *TrailMaps) Prefix(addr netip.Addr) (netip.Prefix, error) {
	var v trailValue
	if !t.lookupLive(cidrKind(addr), cidrKey(addr), &v) {
		return netip.Prefix{}, fmt.Errorf("no CIDR trail holds %s", addr)
	}
	return addr.Prefix(int(v.Flags >> prefixShift & 0xff))
}

func cidrKind(a netip.Addr) int {
	if a.Is4() {
		return kindCIDR4
	}
	return kindCIDR6
}

func cidrKey(a netip.Addr) any {
	if a.Is4() {
		return lpm4Key{Prefixlen: 32, Addr: addr4Key(a)}
	}
	return lpm6Key{Prefixlen: 128, Addr: a.As16()}
}

// lookupLive looks key up in the live generation of one kind.
func (t *TrailMaps) lookupLive(kind int, key any, v *trailValue) bool {
	m, err := t.liveMap(kind)
	if err != nil || m == nil {
		return false
	}
	defer m.Close()
	return m.Lookup(key, v) == nil
}

// LookupResult says which trail an address or name hits, and by which rule.
type LookupResult struct {
	Found     bool   `json:"found"`
	Type      string `json:"type,omitempty"`
	Trail     string `json:"trail,omitempty"`
	Info      string `json:"info,omitempty"`
	Reference string `json:"reference,omitempty"`
	Rule      string `json:"rule,omitempty"`
}

// Lookup looks an address (and port, 0 = none) up in the kernel maps in the
// program's order: address:port, address, CIDR tries.
func (t *TrailMaps) Lookup(a netip.Addr, port uint16) (LookupResult, error) {
	var v trailValue
	res := LookupResult{}
	found := func(typ, text, rule string) (LookupResult, error) {
		info, ref, err := t.Meta(v.Meta)
		if err != nil {
			return res, err
		}
		return LookupResult{Found: true, Type: typ, Trail: text, Info: info, Reference: ref, Rule: rule}, nil
	}
	a = a.Unmap()
	if port != 0 {
		var k any = port6Key{Addr: a.As16(), Port: htons(port)}
		kind := kindPort6
		if a.Is4() {
			k, kind = port4Key{Addr: addr4Key(a), Port: htons(port)}, kindPort4
		}
		if t.lookupLive(kind, k, &v) {
			return found("IPORT", maltrail.FormatAddrPort(a, port), "IP:port trail (TCP SYN, DNS query dst)")
		}
	}
	var k any = ip6Key{Addr: a.As16()}
	kind := kindIP6
	if a.Is4() {
		k, kind = addr4Key(a), kindIP4
	}
	if t.lookupLive(kind, k, &v) {
		return found("IP", maltrail.FormatAddr(a), "IP trail")
	}
	if t.lookupLive(cidrKind(a), cidrKey(a), &v) {
		p, _ := a.Prefix(int(v.Flags >> prefixShift & 0xff))
		return found("IP", trails.CIDRText(p), "CIDR trail (longest prefix)")
	}
	return res, nil
}

// Counts are the number of trails in each kernel map.
type Counts struct {
	IP4        int    `json:"ipv4"`
	IP6        int    `json:"ipv6"`
	Port4      int    `json:"ipv4_port"`
	Port6      int    `json:"ipv6_port"`
	CIDR4      int    `json:"cidr4"`
	CIDR6      int    `json:"cidr6"`
	Metas      int    `json:"metas"`
	Generation uint32 `json:"generation"`
}

// Counts walks the live generation's maps and counts their entries.
func (t *TrailMaps) Counts() (Counts, error) {
	var c Counts
	counts := [...]*int{kindIP4: &c.IP4, kindIP6: &c.IP6, kindPort4: &c.Port4, kindPort6: &c.Port6, kindCIDR4: &c.CIDR4, kindCIDR6: &c.CIDR6}
	for kind, n := range counts {
		m, err := t.liveMap(kind)
		if err != nil {
			return c, err
		}
		if m == nil {
			continue
		}
		*n, err = count(m)
		m.Close()
		if err != nil {
			return c, err
		}
	}
	var err error
	c.Metas, err = count(t.info)
	c.Generation, _ = t.Generation()
	return c, err
}

func count(m *ebpf.Map) (int, error) {
	var key, val []byte
	n := 0
	it := m.Iterate()
	for it.Next(&key, &val) {
		n++
	}
	if err := it.Err(); err != nil {
		return n, fmt.Errorf("count trails: %w", err)
	}
	return n, nil
}

// LiveMapIDs returns the kernel ids of the live generation's maps, and
// whether the other generation's slots are all empty (freed).
func (t *TrailMaps) LiveMapIDs() (ids []ebpf.MapID, otherFree bool, err error) {
	g, err := t.Generation()
	if err != nil {
		return nil, false, err
	}
	otherFree = true
	// An outer map's value read from user space is the inner map's id;
	// reading ids rather than opening the maps needs no CAP_SYS_ADMIN
	// (the sensor's unit grants only CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON).
	for kind := range t.outer {
		var id uint32
		err := t.outer[kind].Lookup(g, &id)
		switch {
		case err == nil:
			ids = append(ids, ebpf.MapID(id))
		case !errors.Is(err, ebpf.ErrKeyNotExist):
			return nil, false, fmt.Errorf("read %s generation %d: %w", outerNames[kind], g, err)
		}
		if err := t.outer[kind].Lookup(g^1, &id); err == nil {
			otherFree = false
		}
	}
	return ids, otherFree, nil
}

// Diff is what loading a set would change in the kernel's IP, IP:port and
// CIDR trails.
type Diff struct {
	Added, Removed, Changed int
	Samples                 []string // a few "+key", "-key", "~key" lines
}

// Diff compares set with the live generation without changing anything.
func (t *TrailMaps) Diff(set *trails.Set) (Diff, error) {
	var d Diff
	sample := func(s string) {
		if len(d.Samples) < 20 {
			d.Samples = append(d.Samples, s)
		}
	}
	// the live keys, as text, with their info and reference
	live := map[string]trails.Meta{}
	metaOf := func(id uint32) trails.Meta {
		info, ref, _ := t.Meta(id)
		return trails.Meta{Info: info, Reference: ref}
	}
	walk := func(kind int, text func(k []byte) string) error {
		m, err := t.liveMap(kind)
		if err != nil || m == nil {
			return err
		}
		defer m.Close()
		var k []byte
		var v trailValue
		it := m.Iterate()
		for it.Next(&k, &v) {
			live[text(k)] = metaOf(v.Meta)
		}
		return it.Err()
	}
	addr4 := func(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }
	addr16 := func(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b[:16])) }
	port := func(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
	if err := errors.Join(
		walk(kindIP4, func(k []byte) string { return maltrail.FormatAddr(addr4(k)) }),
		walk(kindIP6, func(k []byte) string { return maltrail.FormatAddr(addr16(k)) }),
		walk(kindPort4, func(k []byte) string { return maltrail.FormatAddrPort(addr4(k), port(k[4:])) }),
		walk(kindPort6, func(k []byte) string { return maltrail.FormatAddrPort(addr16(k), port(k[16:])) }),
		walk(kindCIDR4, func(k []byte) string {
			p, _ := addr4(k[4:]).Prefix(int(k[0]))
			return trails.CIDRText(p)
		}),
		walk(kindCIDR6, func(k []byte) string {
			p, _ := addr16(k[4:]).Prefix(int(k[0]))
			return trails.CIDRText(p)
		}),
	); err != nil {
		return d, fmt.Errorf("read live trails: %w", err)
	}
	next := map[string]trails.Meta{}
	for _, ip := range set.IPs {
		key := maltrail.FormatAddr(ip.Addr)
		if ip.Port != 0 {
			key = maltrail.FormatAddrPort(ip.Addr, ip.Port)
		}
		next[key] = set.Metas[ip.Meta]
	}
	for _, c := range set.CIDRs {
		next[trails.CIDRText(c.Prefix.Masked())] = set.Metas[c.Meta]
	}
	for k, m := range next {
		old, ok := live[k]
		switch {
		case !ok:
			d.Added++
			sample("+" + k)
		case old != m:
			d.Changed++
			sample("~" + k)
		}
	}
	for k := range live {
		if _, ok := next[k]; !ok {
			d.Removed++
			sample("-" + k)
		}
	}
	return d, nil
}
