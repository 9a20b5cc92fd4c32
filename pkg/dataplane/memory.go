package dataplane

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
)

// Memory is the kernel memory of the trail maps, as the kernel accounts it
// (bpftool's "memlock").
type Memory struct {
	Live uint64 `json:"live_generation"` // the live generation's maps
	// Idle is the other generation's maps: non-zero only while a load
	// fills it, or if a load failed before freeing it.
	Idle  uint64 `json:"idle_generation"`
	Metas uint64 `json:"metas"` // the info/reference map
	Other uint64 `json:"other"` // outer maps, generation and origin records
}

// Total is all the trail maps' kernel memory.
func (m Memory) Total() uint64 { return m.Live + m.Idle + m.Metas + m.Other }

// Memory reads the kernel memory of the trail maps.
func (t *TrailMaps) Memory() (Memory, error) {
	var mem Memory
	live, err := t.Generation()
	if err != nil {
		return mem, err
	}
	for kind := range nKinds {
		for _, g := range []uint32{live, live ^ 1} {
			var m *ebpf.Map
			if err := t.outer[kind].Lookup(g, &m); err != nil {
				if errors.Is(err, ebpf.ErrKeyNotExist) {
					continue
				}
				return mem, fmt.Errorf("read %s generation %d: %w", outerNames[kind], g, err)
			}
			n, err := memlock(m)
			m.Close()
			if err != nil {
				return mem, err
			}
			if g == live {
				mem.Live += n
			} else {
				mem.Idle += n
			}
		}
	}
	if mem.Metas, err = memlock(t.info); err != nil {
		return mem, err
	}
	for _, m := range append(t.outer[:], t.gen, t.live, t.origin) {
		n, err := memlock(m)
		if err != nil {
			return mem, err
		}
		mem.Other += n
	}
	return mem, nil
}

func memlock(m *ebpf.Map) (uint64, error) {
	info, err := m.Info()
	if err != nil {
		return 0, fmt.Errorf("map memory: %w", err)
	}
	n, _ := info.Memlock()
	return n, nil
}

// ProgramMemory is the kernel memory of the maps only the program uses (the
// trail maps are TrailMaps.Memory), as the kernel accounts it.
type ProgramMemory struct {
	Ring  uint64 `json:"ring"`  // the ring buffer to the agent
	Scan  uint64 `json:"scan"`  // the scan maps: 1 entry each for a scan not counted
	Other uint64 `json:"other"` // config, counters, repeat slots, scratch
}

// Total is all the program's own kernel memory.
func (m ProgramMemory) Total() uint64 { return m.Ring + m.Scan + m.Other }

// ProgramMemory reads the kernel memory of the program's own maps.
func (d *Dataplane) ProgramMemory() (ProgramMemory, error) {
	var mem ProgramMemory
	_, maps := objectFields(&d.objs)
	for name, m := range maps {
		var sum *uint64
		switch {
		case name == "xt_events":
			sum = &mem.Ring
		case strings.HasPrefix(name, "xt_scan_"):
			sum = &mem.Scan
		case slices.Contains(outerNames[:], name) || name == "xt_gen" || name == "xt_live" || name == "xt_info":
			continue // trail maps
		default:
			sum = &mem.Other
		}
		n, err := memlock(*m)
		if err != nil {
			return mem, fmt.Errorf("%s: %w", name, err)
		}
		*sum += n
	}
	return mem, nil
}
