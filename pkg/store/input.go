package store

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/xtrail/xtrail/pkg/trails"
)

// Input is everything a compile needs. Meta fields index Metas. Fill it
// with a Collector (FromCSV does), or directly.
type Input struct {
	// Names are the domain and URL trail rows (regex trail keys included),
	// in row order. A key may repeat: the last row wins, as in Maltrail's
	// dict. Keys must not be empty.
	Names []Name
	// IPs are the IP and IP:port trails, in row order; a repeated
	// (address, port) keeps the last row. Zones are dropped.
	IPs []trails.IPTrail
	// CIDRs are xtrail's CIDR trails; a repeated prefix keeps the last.
	CIDRs []trails.CIDRTrail
	// Regexes are the rows that pass spec §1.2's textual regex test, in
	// CSV order, repeats included. A regex whose key is also in Names
	// takes that name's final meta at Build, as Maltrail's dict holds one
	// value per key.
	Regexes []Regex
	// Metas are the (info, reference) pairs the tables index.
	Metas   []trails.Meta
	Sources []Source
	Load    LoadStats
	// BuildTime is recorded in the header; zero means time.Now().
	BuildTime time.Time
}

// Name is one domain or URL trail row.
type Name struct {
	Key  string
	Meta uint32
}

// Regex is one regex trail row.
type Regex struct {
	Key    string
	Meta   uint32
	Line   int // line in its source where the row starts
	Source int // index into Sources
}

// Source is one file the trails came from.
type Source struct {
	Name string
	Rows int // rows read from it (well-formed ones)
}

// LoadStats counts what collecting the rows saw, as trails.LoadNames and
// trails.LoadSet count it.
type LoadStats struct {
	Rows        int // well-formed rows read
	Skipped     int // malformed rows (trails.Stats.Skipped)
	Empty       int // rows with an empty key
	Whitelisted int // rows dropped because the whitelist has their key
	// NonCanonical counts keys shaped like an address but not Maltrail's
	// text of one (spec §1.5): they never match as IPs. Those holding ':'
	// are dropped; the others stay name keys, as LoadNames keeps them.
	NonCanonical int
	IPRows       int // rows that are IP or IP:port trails
	// Samples are "file:line: reason" strings for some malformed rows
	// (not stored in the file).
	Samples []string `json:",omitempty"`
}

// maxSamples bounds LoadStats.Samples.
const maxSamples = 20

func (l *LoadStats) addSamples(s []string) {
	l.Samples = append(l.Samples, s[:min(len(s), maxSamples-len(l.Samples))]...)
}

// Collector fills an Input from trails.csv rows, classifying each key as
// trails.LoadNames and trails.LoadSet (with Set.DropWhitelisted) do. A
// Collector is not safe for concurrent use.
type Collector struct {
	in      Input
	wl      *trails.Whitelist
	metaIdx map[string]uint32
	mkey    []byte
	kbuf    []byte // the key and reference as bytes, for the whitelist and regex tests
	rbuf    []byte
	source  int // index of the source being read
}

// NewCollector returns a Collector that drops keys wl whitelists (nil
// drops none).
func NewCollector(wl *trails.Whitelist) *Collector {
	return &Collector{wl: wl, metaIdx: make(map[string]uint32)}
}

// FromCSV reads one trails.csv (the format trails.ReadCSV reads) into an
// Input; name is used in messages and recorded as the source.
func FromCSV(r io.Reader, name string, wl *trails.Whitelist) (*Input, error) {
	c := NewCollector(wl)
	if err := c.ReadCSV(r, name); err != nil {
		return nil, err
	}
	return c.Input(), nil
}

// ReadCSV adds the rows of one trails.csv and records it as a source.
// Malformed rows are counted, not fatal; only a read error fails.
func (c *Collector) ReadCSV(r io.Reader, name string) error {
	c.source = len(c.in.Sources)
	st, err := trails.ReadCSV(r, name, func(row trails.Row) error {
		c.Add(row)
		return nil
	})
	if err != nil {
		return fmt.Errorf("collect trails: %w", err)
	}
	c.in.Sources = append(c.in.Sources, Source{Name: name, Rows: st.Rows})
	c.in.Load.Rows += st.Rows
	c.in.Load.Skipped += st.Skipped
	c.in.Load.addSamples(st.Samples)
	return nil
}

// Add classifies one row. The rules follow trails.LoadNames: an empty key
// is dropped; a key holding ':' that is shaped like an address is an IP
// trail (or, when not canonical, dropped) and never a name key; a
// whitelisted key is dropped; every other key is a name key, and a bare
// canonical IPv4 key is both a name key and an IP trail, as LoadNames and
// LoadSet both keep it. Row.Line is kept for regex trails, and the row
// counts towards the source ReadCSV is reading.
func (c *Collector) Add(row trails.Row) {
	key := row.Trail
	if key == "" {
		c.in.Load.Empty++
		return
	}
	addr, port, isIP, shaped := trails.ParseIPKeyShape(key)
	if shaped && !isIP {
		c.in.Load.NonCanonical++
	}
	hasColon := strings.IndexByte(key, ':') >= 0
	if shaped && hasColon && !isIP {
		return
	}
	c.kbuf = append(c.kbuf[:0], key...)
	if c.wl.IsWhitelistedKey(c.kbuf) {
		c.in.Load.Whitelisted++
		return
	}
	mi := c.Meta(row.Info, row.Reference)
	if isIP {
		c.in.Load.IPRows++
		c.in.IPs = append(c.in.IPs, trails.IPTrail{Addr: addr, Port: port, Meta: mi})
		if hasColon {
			return
		}
	}
	c.in.Names = append(c.in.Names, Name{Key: key, Meta: mi})
	c.rbuf = append(c.rbuf[:0], row.Reference...)
	if trails.IsRegexCandidate(c.kbuf, c.rbuf) { // spec §1.2, as trails applies it
		c.in.Regexes = append(c.in.Regexes, Regex{Key: key, Meta: mi, Line: row.Line, Source: c.source})
	}
}

// AddCIDR adds a CIDR trail (xtrail's CIDR lists). The prefix is masked
// at Build; the whitelist is not consulted, as trails.Merge already did.
func (c *Collector) AddCIDR(p netip.Prefix, info, ref string) {
	c.in.CIDRs = append(c.in.CIDRs, trails.CIDRTrail{Prefix: p, Meta: c.Meta(info, ref)})
}

// Meta returns the index of (info, ref) in the Input's Metas, adding it
// the first time, so each distinct pair is stored once.
func (c *Collector) Meta(info, ref string) uint32 {
	// The map key is len(info) as a varint, info, then ref, which no two
	// different pairs share; the lookup with string(mkey) does not
	// allocate.
	c.mkey = binary.AppendUvarint(c.mkey[:0], uint64(len(info)))
	c.mkey = append(c.mkey, info...)
	c.mkey = append(c.mkey, ref...)
	if mi, ok := c.metaIdx[string(c.mkey)]; ok {
		return mi
	}
	mi := uint32(len(c.in.Metas))
	c.in.Metas = append(c.in.Metas, trails.Meta{Info: info, Reference: ref})
	c.metaIdx[string(c.mkey)] = mi
	return mi
}

// Input returns the collected Input. The Collector must not be used
// afterwards, since the Input shares its slices.
func (c *Collector) Input() *Input {
	in := c.in
	return &in
}

// FromMerged collects merged sources (trails.Merge): the trails.csv rows
// in the merged order, the CIDR trails, and the sources. Merge already
// dropped what its whitelist holds; wl is applied again to the rows, as
// the sensor's loaders apply it. Merged rows keep no source line, so a
// regex trail is attributed to the first source, line 0.
func FromMerged(m *trails.Merged, wl *trails.Whitelist) *Input {
	c := NewCollector(wl)
	for _, s := range m.Sources {
		c.in.Sources = append(c.in.Sources, Source{Name: s.Source.String(), Rows: s.Stats.Rows})
		c.in.Load.Skipped += s.Stats.Skipped
		c.in.Load.addSamples(s.Stats.Samples)
	}
	c.source = 0
	for _, t := range m.Trails {
		mt := m.Metas[t.Meta]
		c.Add(trails.Row{Trail: t.Key, Info: mt.Info, Reference: mt.Reference})
	}
	for _, p := range m.CIDRs {
		mt := m.Metas[p.Meta]
		c.AddCIDR(p.Prefix, mt.Info, mt.Reference)
	}
	c.in.Load.Rows = m.Stats.Rows
	c.in.Load.Whitelisted += m.Stats.Whitelisted
	return c.Input()
}
