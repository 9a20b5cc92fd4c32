package dataplane

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

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

// TrailMaps are the kernel maps holding IP and IP:port trails and the info
// and reference text of each trail.
type TrailMaps struct {
	ip4, ip6, port4, port6, cidr4, cidr6, info *ebpf.Map
	owned                                      bool
}

var trailMapNames = []string{"xt_ip4", "xt_ip6", "xt_port4", "xt_port6", "xt_cidr4", "xt_cidr6", "xt_info"}

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
	ms := make([]*ebpf.Map, len(trailMapNames))
	for i, name := range trailMapNames {
		m, err := ebpf.NewMapWithOptions(spec.Maps[name], ebpf.MapOptions{PinPath: pinDir})
		if err != nil {
			for _, o := range ms[:i] {
				o.Close()
			}
			return nil, fmt.Errorf("open pinned map %s in %s: %w", name, pinDir, err)
		}
		ms[i] = m
	}
	return &TrailMaps{ip4: ms[0], ip6: ms[1], port4: ms[2], port6: ms[3], cidr4: ms[4], cidr6: ms[5], info: ms[6], owned: true}, nil
}

// Close releases maps opened by OpenTrailMaps (the pins stay).
func (t *TrailMaps) Close() error {
	if !t.owned {
		return nil
	}
	var errs []error
	for _, m := range []*ebpf.Map{t.ip4, t.ip6, t.port4, t.port6, t.cidr4, t.cidr6, t.info} {
		if err := m.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// LoadStats says what Replace did.
type LoadStats struct {
	IP4, IP6, Port4, Port6 int // trails now in each map
	CIDR4, CIDR6           int // CIDR trails now in each trie
	Removed                int // trails that were in the maps and are not in the new set
	Metas                  int // distinct (info, reference) pairs
	Skipped                int // trails whose info or reference is too long for the kernel record
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

// Replace makes the maps hold exactly the IP and IP:port trails of set:
// new and changed trails are written first, then trails no longer in the set
// are deleted. Each write is atomic per trail; a reader during Replace sees
// for each trail either its old or its new value (a generation swap of the
// whole set comes with map-in-map, see docs/architecture.md).
func (t *TrailMaps) Replace(set *trails.Set) (LoadStats, error) {
	var st LoadStats
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
		v4  []xtrailXtTrail
		k6  []xtrailXtIp6Key
		v6  []xtrailXtTrail
		kp4 []xtrailXtPort4Key
		vp4 []xtrailXtTrail
		kp6 []xtrailXtPort6Key
		vp6 []xtrailXtTrail
	)
	for _, tr := range set.IPs {
		if int(tr.Meta) >= len(set.Metas) || !ok[tr.Meta] {
			st.Skipped++
			continue
		}
		m := set.Metas[tr.Meta]
		v := xtrailXtTrail{Meta: ids[tr.Meta], Flags: kernelFlags(m.Flags())}
		a := tr.Addr
		switch {
		case a.Is4() && tr.Port == 0:
			k4 = append(k4, addr4Key(a))
			v4 = append(v4, v)
		case a.Is4():
			kp4 = append(kp4, xtrailXtPort4Key{Addr: addr4Key(a), Port: htons(tr.Port)})
			vp4 = append(vp4, v)
		case tr.Port == 0:
			k6 = append(k6, xtrailXtIp6Key{Addr: a.As16()})
			v6 = append(v6, v)
		default:
			kp6 = append(kp6, xtrailXtPort6Key{Addr: a.As16(), Port: htons(tr.Port)})
			vp6 = append(vp6, v)
		}
	}
	st.IP4, st.IP6, st.Port4, st.Port6 = len(k4), len(k6), len(kp4), len(kp6)
	var (
		kc4 []xtrailXtLpm4Key
		vc4 []xtrailXtTrail
		kc6 []xtrailXtLpm6Key
		vc6 []xtrailXtTrail
	)
	for _, c := range set.CIDRs {
		if int(c.Meta) >= len(set.Metas) || !ok[c.Meta] || !c.Prefix.IsValid() {
			st.Skipped++
			continue
		}
		p := c.Prefix.Masked()
		v := xtrailXtTrail{Meta: ids[c.Meta], Flags: kernelFlags(set.Metas[c.Meta].Flags()) | uint32(p.Bits())<<prefixShift}
		if p.Addr().Is4() {
			kc4 = append(kc4, xtrailXtLpm4Key{Prefixlen: uint32(p.Bits()), Addr: addr4Key(p.Addr())})
			vc4 = append(vc4, v)
		} else {
			kc6 = append(kc6, xtrailXtLpm6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()})
			vc6 = append(vc6, v)
		}
	}
	st.CIDR4, st.CIDR6 = len(kc4), len(kc6)

	// A map that was empty before the load has nothing stale to prune.
	fresh := [6]bool{isEmpty[uint32](t.ip4), isEmpty[xtrailXtIp6Key](t.ip6),
		isEmpty[xtrailXtPort4Key](t.port4), isEmpty[xtrailXtPort6Key](t.port6),
		isEmpty[xtrailXtLpm4Key](t.cidr4), isEmpty[xtrailXtLpm6Key](t.cidr6)}
	if err := upsert(t.ip4, k4, v4); err != nil {
		return st, fmt.Errorf("load IPv4 trails: %w", err)
	}
	if err := upsert(t.ip6, k6, v6); err != nil {
		return st, fmt.Errorf("load IPv6 trails: %w", err)
	}
	if err := upsert(t.port4, kp4, vp4); err != nil {
		return st, fmt.Errorf("load IPv4:port trails: %w", err)
	}
	if err := upsert(t.port6, kp6, vp6); err != nil {
		return st, fmt.Errorf("load IPv6:port trails: %w", err)
	}
	if err := upsert(t.cidr4, kc4, vc4); err != nil {
		return st, fmt.Errorf("load IPv4 CIDR trails: %w", err)
	}
	if err := upsert(t.cidr6, kc6, vc6); err != nil {
		return st, fmt.Errorf("load IPv6 CIDR trails: %w", err)
	}
	for i, p := range []func() (int, error){
		func() (int, error) { return prune(t.ip4, k4) },
		func() (int, error) { return prune(t.ip6, k6) },
		func() (int, error) { return prune(t.port4, kp4) },
		func() (int, error) { return prune(t.port6, kp6) },
		func() (int, error) { return prune(t.cidr4, kc4) },
		func() (int, error) { return prune(t.cidr6, kc6) },
	} {
		if fresh[i] {
			continue
		}
		n, err := p()
		st.Removed += n
		if err != nil {
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

func htons(p uint16) uint16 { return p>>8 | p<<8 }

const batchSize = 4096

// upsert writes keys and values in batches (one syscall per batch).
func upsert[K comparable](m *ebpf.Map, keys []K, vals []xtrailXtTrail) error {
	for i := 0; i < len(keys); i += batchSize {
		j := min(i+batchSize, len(keys))
		if _, err := m.BatchUpdate(keys[i:j], vals[i:j], nil); err != nil {
			if !errors.Is(err, ebpf.ErrNotSupported) {
				return fmt.Errorf("batch update of %d trails: %w", j-i, err)
			}
			for n := i; n < j; n++ {
				if err := m.Update(keys[n], vals[n], ebpf.UpdateAny); err != nil {
					return fmt.Errorf("update trail: %w", err)
				}
			}
		}
	}
	return nil
}

// isEmpty reports whether m holds no key (an error counts as not empty, so
// the caller prunes).
func isEmpty[K any](m *ebpf.Map) bool {
	var k K
	var v xtrailXtTrail
	it := m.Iterate()
	return !it.Next(&k, &v) && it.Err() == nil
}

// prune deletes every key of m not in keep and returns how many it deleted.
func prune[K comparable](m *ebpf.Map, keep []K) (int, error) {
	want := make(map[K]struct{}, len(keep))
	for _, k := range keep {
		want[k] = struct{}{}
	}
	var stale []K
	var k K
	var v xtrailXtTrail
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("iterate trail map: %w", err)
	}
	for _, s := range stale {
		if err := m.Delete(s); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, fmt.Errorf("delete stale trail: %w", err)
		}
	}
	return len(stale), nil
}

// LoadFile reads a Maltrail trails.csv (gzip when named .gz) and makes the
// maps hold its IP and IP:port trails. A file without a single row is
// refused and the current trails stay.
func (t *TrailMaps) LoadFile(path string) (*trails.Set, LoadStats, error) {
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
	st, err := t.Replace(set)
	if err != nil {
		return set, st, fmt.Errorf("trails file %s: %w", path, err)
	}
	return set, st, nil
}

// Prefix returns the CIDR trail that holds addr (longest prefix), for the
// trail text of a CIDR hit.
func (t *TrailMaps) Prefix(addr netip.Addr) (netip.Prefix, error) {
	var v xtrailXtTrail
	var err error
	if addr.Is4() {
		err = t.cidr4.Lookup(xtrailXtLpm4Key{Prefixlen: 32, Addr: addr4Key(addr)}, &v)
	} else {
		err = t.cidr6.Lookup(xtrailXtLpm6Key{Prefixlen: 128, Addr: addr.As16()}, &v)
	}
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("CIDR trail of %s: %w", addr, err)
	}
	return addr.Prefix(int(v.Flags >> prefixShift & 0xff))
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
	var v xtrailXtTrail
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
		var err error
		if a.Is4() {
			err = t.port4.Lookup(xtrailXtPort4Key{Addr: addr4Key(a), Port: htons(port)}, &v)
		} else {
			err = t.port6.Lookup(xtrailXtPort6Key{Addr: a.As16(), Port: htons(port)}, &v)
		}
		if err == nil {
			return found("IPORT", maltrail.FormatAddrPort(a, port), "IP:port trail (TCP SYN, DNS query dst)")
		}
	}
	var err error
	if a.Is4() {
		err = t.ip4.Lookup(addr4Key(a), &v)
	} else {
		err = t.ip6.Lookup(xtrailXtIp6Key{Addr: a.As16()}, &v)
	}
	if err == nil {
		return found("IP", maltrail.FormatAddr(a), "IP trail")
	}
	if p, perr := t.Prefix(a); perr == nil {
		if a.Is4() {
			err = t.cidr4.Lookup(xtrailXtLpm4Key{Prefixlen: 32, Addr: addr4Key(a)}, &v)
		} else {
			err = t.cidr6.Lookup(xtrailXtLpm6Key{Prefixlen: 128, Addr: a.As16()}, &v)
		}
		if err == nil {
			return found("IP", trails.CIDRText(p), "CIDR trail (longest prefix)")
		}
	}
	return res, nil
}

// Counts are the number of trails in each kernel map.
type Counts struct {
	IP4, IP6, Port4, Port6, CIDR4, CIDR6, Metas int
}

// Counts walks the maps and counts their entries.
func (t *TrailMaps) Counts() (Counts, error) {
	var c Counts
	for _, x := range []struct {
		m *ebpf.Map
		n *int
	}{{t.ip4, &c.IP4}, {t.ip6, &c.IP6}, {t.port4, &c.Port4}, {t.port6, &c.Port6}, {t.cidr4, &c.CIDR4}, {t.cidr6, &c.CIDR6}, {t.info, &c.Metas}} {
		var key, val []byte
		it := x.m.Iterate()
		for it.Next(&key, &val) {
			*x.n++
		}
		if err := it.Err(); err != nil {
			return c, fmt.Errorf("count trails: %w", err)
		}
	}
	return c, nil
}
