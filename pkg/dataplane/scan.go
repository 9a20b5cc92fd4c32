package dataplane

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// Scan configures the XDP program's scan counting (spec §4): which scans it
// counts and alerts on, and over what window. The zero value counts none.
type Scan struct {
	Port      bool          // TCP port scans (SYN and NULL/FIN/Xmas probes)
	UDP       bool          // UDP port scans (not DNS)
	Infection bool          // many hosts on one infection port
	Window    time.Duration // SCAN_WINDOW, whole seconds in 1s..1h; 0 means 30 s
}

// Scan record kinds (enum xt_scan), in Record.Scan of a KindScan record.
const (
	ScanPort      = 1
	ScanUDP       = 2
	ScanInfection = 3
)

// Thresholds and caps of the kernel's scan counting (bpf/xtrail.h).
const (
	ScanPortThreshold = 10    // a port or UDP scan is more distinct ports than this
	ScanHostThreshold = 32    // an infection scan is more distinct hosts than this
	ScanMaxKeys       = 50000 // keys per window, TCP and UDP each
)

// DefaultScanWindow is SCAN_WINDOW's default.
const DefaultScanWindow = 30 * time.Second

// MaxScanWindow is the longest SCAN_WINDOW.
const MaxScanWindow = time.Hour

// xt_config.flags bits of the scans.
const (
	cfgScanPort      = 1 << 1
	cfgScanUDP       = 1 << 2
	cfgScanInfection = 1 << 3
	cfgScanAll       = cfgScanPort | cfgScanUDP | cfgScanInfection
)

func (s Scan) apply(c *xtrailXtConfig) error {
	if s.Window < 0 || s.Window > MaxScanWindow || s.Window%time.Second != 0 || (s.Window != 0 && s.Window < time.Second) {
		return fmt.Errorf("scan window %v: want whole seconds from 1s to %v", s.Window, MaxScanWindow)
	}
	c.Flags &^= cfgScanAll
	if s.Port {
		c.Flags |= cfgScanPort
	}
	if s.UDP {
		c.Flags |= cfgScanUDP
	}
	if s.Infection {
		c.Flags |= cfgScanInfection
	}
	c.ScanWindow = uint32(s.Window / time.Second)
	return nil
}

// SetScan changes what the program counts, for the packets that follow.
func (d *Dataplane) SetScan(s Scan) error {
	if err := s.apply(&d.cfg); err != nil {
		return err
	}
	return d.writeConfig()
}

// LocalPrefix is Maltrail's "local prefix" of the current scan window (spec
// §1.4, §4): the most common "a.b." among the sources of the window's TCP
// scan keys, an IPv6 source counting as its whole address, ties going to
// the textually largest, written as Maltrail writes it ("10.0.", or an
// IPv6 address). It is "" while the window has no source (Maltrail then
// keeps its last prefix, else "_"). The kernel counts the sources while
// port or infection scans are counted. One pass over the prefix map: call
// it at most once a second.
func (d *Dataplane) LocalPrefix() (string, error) {
	var st xtrailXtScanState
	if err := d.objs.XtScanWin.Lookup(uint32(0), &st); err != nil {
		return "", fmt.Errorf("read scan window: %w", err)
	}
	var (
		k          xtrailXtScanKey
		n, bestN   uint64
		best, text string
		it         = d.objs.XtScanPfx.Iterate()
		win        = uint32(st.Start)
	)
	for it.Next(&k, &n) {
		if k.Win != win {
			continue // a past window's, not yet reclaimed
		}
		if k.Family == 4 {
			text = strconv.Itoa(int(k.Src[0])) + "." + strconv.Itoa(int(k.Src[1])) + "."
		} else {
			text = maltrail.FormatAddr(netip.AddrFrom16(k.Src))
		}
		if n > bestN || n == bestN && text > best {
			best, bestN = text, n
		}
	}
	if err := it.Err(); err != nil {
		return "", fmt.Errorf("read scan prefixes: %w", err)
	}
	return best, nil
}
