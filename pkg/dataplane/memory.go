package dataplane

import (
	"errors"
	"fmt"

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
		return 0, fmt.Errorf("trail map memory: %w", err)
	}
	n, _ := info.Memlock()
	return n, nil
}
