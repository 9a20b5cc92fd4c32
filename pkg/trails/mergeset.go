package trails

import (
	"fmt"
	"os"
	"strings"
)

// IPSet returns the part of a merge the kernel holds: its IP and IP:port
// trails and its CIDR trails, sharing m's Metas.
func (m *Merged) IPSet() *Set {
	s := &Set{Metas: m.Metas, CIDRs: m.CIDRs}
	for _, t := range m.Trails {
		addr, port, ok := ParseIPKey(t.Key)
		if !ok {
			s.Other++
			continue
		}
		s.IPs = append(s.IPs, IPTrail{Addr: addr, Port: port, Meta: t.Meta})
	}
	for _, src := range m.Sources {
		s.Stats.Rows += src.Stats.Rows
		s.Stats.Skipped += src.Stats.Skipped
		s.Stats.Samples = append(s.Stats.Samples, src.Stats.Samples...)
	}
	return s
}

// ParseSource reads a source argument: "csv:PATH", "static:DIR",
// "custom:PATH" or "cidr:PATH"; a bare path is a static list directory when
// it is a directory and a trails.csv otherwise. Later arguments get higher
// priority, so they win on duplicate keys (spec §8 merge rules).
func ParseSource(arg string, priority int) (Source, error) {
	kinds := map[string]SourceKind{"csv": KindTrailsCSV, "static": KindStaticDir, "custom": KindCustomList, "cidr": KindCIDRList}
	if k, path, ok := strings.Cut(arg, ":"); ok {
		if kind, known := kinds[k]; known {
			if path == "" {
				return Source{}, fmt.Errorf("trail source %q: no path", arg)
			}
			return Source{Kind: kind, Path: path, Priority: priority}, nil
		}
	}
	st, err := os.Stat(arg)
	if err != nil {
		return Source{}, fmt.Errorf("trail source: %w", err)
	}
	if st.IsDir() {
		return Source{Kind: KindStaticDir, Path: arg, Priority: priority}, nil
	}
	return Source{Kind: KindTrailsCSV, Path: arg, Priority: priority}, nil
}
