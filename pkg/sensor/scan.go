package sensor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/proto"
)

// Scans (spec §4) are counted by the XDP program, which sends one
// dataplane.KindScan record per key per window when a scan crosses its
// threshold (see docs/architecture.md). The agent only renders the event.
// Maltrail skips whitelisted scan sources; report's whitelist rule (no
// event with a whitelisted src or dst) covers that, so the kernel needs no
// copy of the whitelist and counts every probe at the same cost.

// handleScan turns a scan record into Maltrail's event.
func (a *Agent) handleScan(r *dataplane.Record) {
	var ev *maltrail.Event
	switch r.Scan {
	case dataplane.ScanPort:
		ev = a.baseEvent(r, "TCP")
		ev.Type, ev.Trail, ev.Info = "IP", maltrail.FormatAddr(ev.SrcIP), "potential port scanning"
	case dataplane.ScanUDP:
		ev = a.baseEvent(r, "UDP")
		ev.Type, ev.Trail, ev.Info = "IP", maltrail.FormatAddr(ev.SrcIP), "potential udp scanning"
	case dataplane.ScanInfection:
		ev = a.baseEvent(r, "TCP")
		ev.Type, ev.Trail, ev.Info = "PORT", strconv.Itoa(int(r.Dport)), "potential infection"
	default:
		// counted as malformed_scan, logged once
		a.malformed(r, &proto.Error{Where: "scan record kind " + strconv.Itoa(int(r.Scan)), Kind: proto.ErrUnsupported})
		return
	}
	ev.Reference = "(heuristic)"
	a.report(ev)
}

// Configuration keys of the scans (spec §3.3, §4).
const (
	KeyUseHeuristics      = "USE_HEURISTICS"
	KeyDisabledHeuristics = "DISABLED_HEURISTICS"
	KeyScanWindow         = "SCAN_WINDOW"
)

// HeuristicNames are the names DISABLED_HEURISTICS takes (spec §4).
var HeuristicNames = []string{"port_scanning", "udp_scanning", "infection", "web_scanning", "dns_exhaustion", "long_domain"}

// DisabledHeuristics reads DISABLED_HEURISTICS: names from HeuristicNames
// separated by commas or white space, in any case (or the items of an
// array). An unknown name is an error: a typo must not leave a heuristic on.
func DisabledHeuristics(cfg *maltrail.Config) (map[string]bool, error) {
	items := cfg.List(KeyDisabledHeuristics)
	if v, ok := cfg.Get(KeyDisabledHeuristics); ok {
		items = []string{v}
	}
	off := map[string]bool{}
	for _, item := range items {
		for _, name := range strings.FieldsFunc(item, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			name = strings.ToLower(name)
			if !slices.Contains(HeuristicNames, name) {
				return nil, fmt.Errorf("sensor: %s: unknown heuristic %q: want some of %s", KeyDisabledHeuristics, name, strings.Join(HeuristicNames, " "))
			}
			off[name] = true
		}
	}
	return off, nil
}

// ScanOptions reads which scans the kernel counts: all three with
// USE_HEURISTICS, less those in DISABLED_HEURISTICS, over SCAN_WINDOW
// seconds (1..3600, default 30).
func ScanOptions(cfg *maltrail.Config) (dataplane.Scan, error) {
	off, err := DisabledHeuristics(cfg)
	if err != nil {
		return dataplane.Scan{}, err
	}
	max := int(dataplane.MaxScanWindow / time.Second)
	n, err := cfg.Int(KeyScanWindow, int(dataplane.DefaultScanWindow/time.Second))
	if err != nil {
		return dataplane.Scan{}, fmt.Errorf("sensor: %w: want 1..%d seconds", err, max)
	}
	if n < 1 || n > max {
		return dataplane.Scan{}, fmt.Errorf("sensor: %s %d: want 1..%d seconds", KeyScanWindow, n, max)
	}
	on := cfg.Bool(KeyUseHeuristics)
	return dataplane.Scan{
		Port:      on && !off["port_scanning"],
		UDP:       on && !off["udp_scanning"],
		Infection: on && !off["infection"],
		Window:    time.Duration(n) * time.Second,
	}, nil
}
