package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/cilium/ebpf"

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

// scanEntries is XT_SCAN_ENTRIES: the size of each scan map that something
// counted needs.
const scanEntries = 65536

// tcpMaps says whether s counts into the TCP scan maps (pairs, infection
// keys, sources, prefixes): port scans, or infection scans, whose
// destinations are counted through their pairs and whose sources make the
// local prefix.
func (s Scan) tcpMaps() bool { return s.Port || s.Infection }

// size sets the scan maps of spec to what s counts: a map nothing counted
// needs gets 1 entry, so scans off cost no kernel memory. A Dataplane can
// count only what it was loaded for (SetScan).
func (s Scan) size(spec *ebpf.CollectionSpec) {
	n := func(on bool) uint32 {
		if on {
			return scanEntries
		}
		return 1
	}
	spec.Maps["xt_scan_tcp"].MaxEntries = n(s.tcpMaps())
	spec.Maps["xt_scan_srcs"].MaxEntries = n(s.tcpMaps())
	spec.Maps["xt_scan_pfx"].MaxEntries = n(s.tcpMaps())
	spec.Maps["xt_scan_udp"].MaxEntries = n(s.UDP)
}

// SetScan changes what the program counts, for the packets that follow.
// It can turn on only scans the Dataplane was loaded with (Options.Scan):
// the maps of the others have no room.
func (d *Dataplane) SetScan(s Scan) error {
	if s.tcpMaps() && !d.opts.Scan.tcpMaps() || s.UDP && !d.opts.Scan.UDP {
		return fmt.Errorf("scans %+v: the program was loaded for %+v only (its maps are sized at load)", s, d.opts.Scan)
	}
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
// port or infection scans are counted. One pass over the prefix counts,
// and over the sources when no prefix has two: call it at most once a
// second.
func (d *Dataplane) LocalPrefix() (string, error) {
	if !d.opts.Scan.tcpMaps() {
		return "", nil
	}
	var st xtrailXtScanState
	if err := d.objs.XtScanWin.Lookup(uint32(0), &st); err != nil {
		return "", fmt.Errorf("read scan window: %w", err)
	}
	win := uint32(st.Start)
	if d.pfxMem == nil {
		var err error
		if d.pfxMem, err = d.objs.XtScanPfx.Memory(); err != nil {
			return "", fmt.Errorf("map scan prefixes: %w", err)
		}
	}
	var (
		chunk      [8192]byte
		bestN      uint32
		best, text string
	)
	for off := 0; off < scanEntries*8; off += len(chunk) {
		if _, err := d.pfxMem.ReadAt(chunk[:], int64(off)); err != nil {
			return "", fmt.Errorf("read scan prefixes: %w", err)
		}
		for j := 0; j < len(chunk); j += 8 {
			v := binary.NativeEndian.Uint64(chunk[j:])
			n := uint32(v)
			if uint32(v>>32) != win || n == 0 {
				continue // none, or a past window's
			}
			i := (off + j) / 8 // a << 8 | b
			text = strconv.Itoa(i>>8) + "." + strconv.Itoa(i&0xff) + "."
			if n > bestN || n == bestN && text > best {
				best, bestN = text, n
			}
		}
	}
	if bestN > 1 {
		return best, nil
	}
	// an IPv6 source is its own prefix, of one source: it counts when no
	// IPv4 prefix has more
	var (
		cursor ebpf.MapBatchCursor
		keys   = make([]xtrailXtScanSrc, 4096)
		wins   = make([]uint32, len(keys))
	)
	for {
		n, err := d.objs.XtScanSrcs.BatchLookup(&cursor, keys, wins, nil)
		for i := range n {
			a := netip.AddrFrom16(keys[i].Addr)
			if wins[i] != win || a.Is4In6() {
				continue
			}
			if text = maltrail.FormatAddr(a); bestN < 1 || text > best {
				best, bestN = text, 1
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return best, nil
		}
		if err != nil {
			return "", fmt.Errorf("read scan sources: %w", err)
		}
	}
}
