package trails

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
)

// Meta is what a trail says about itself: the info and reference columns.
type Meta struct{ Info, Reference string }

// Flags are the facts about a trail's info that decide whether a hit is
// reported (spec §1.3).
type Flags uint8

const (
	// FlagAttacker: info contains "attacker". Spec §1.3 suppresses a TCP
	// SYN hit on the destination side with it (Rs also a UDP dst hit).
	FlagAttacker Flags = 1 << iota
	// FlagParking: info contains "parking site". A TCP dst hit is
	// suppressed unless the destination port is 80 or 443.
	FlagParking
	// FlagMalware: info contains "malware". A source-side hit is
	// suppressed (Py suppresses UDP hits on both sides with it, a bug §1.3
	// records; Rs only on the source side).
	FlagMalware
)

// Flags derives the suppression flags from m.Info.
func (m Meta) Flags() Flags {
	var f Flags
	if strings.Contains(m.Info, "attacker") {
		f |= FlagAttacker
	}
	if strings.Contains(m.Info, "parking site") {
		f |= FlagParking
	}
	if strings.Contains(m.Info, "malware") {
		f |= FlagMalware
	}
	return f
}

// IPTrail is one IP or IP:port trail.
type IPTrail struct {
	Addr netip.Addr
	Port uint16 // 0 = bare IP
	Meta uint32 // index into Set.Metas
}

// Set is the IP part of a loaded trails file.
type Set struct {
	// IPs holds one entry per distinct (Addr, Port), sorted by Addr
	// (IPv4 before IPv6) then Port. When a key appears more than once,
	// the last row wins, as in Maltrail, whose loader fills a dict in
	// file order.
	IPs []IPTrail
	// Metas holds each distinct (info, reference) pair of the IP trails
	// once; the real file has about 3,100.
	Metas        []Meta
	Other        int // rows that are not IP trails (domains, URLs, regexes: see LoadNames)
	NonCanonical int // rows whose key looks like an address but is not Maltrail's text of one; they never match
	Duplicates   int // IP rows whose key an earlier row already had
	// CIDRs are CIDR trails (an xtrail extension; a trails.csv has none):
	// Meta indexes Metas like IPTrail.Meta.
	CIDRs []CIDRTrail
	Stats Stats
}

// LoadSet reads a trails.csv (see ReadCSV) and keeps its IP and IP:port
// trails. Malformed rows are counted in Stats, not fatal; only a read error
// fails the load.
func LoadSet(r io.Reader, name string) (*Set, error) {
	cr := newCSVReader(r, name)
	s := &Set{}
	metaIdx := make(map[string]uint32)
	var key []byte
	var all []seqTrail
	for {
		fields, _, err := cr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("load trails: %w", err)
		}
		addr, port, kind := classifyKey(fields[0])
		switch kind {
		case kindOther:
			s.Other++
			continue
		case kindNonCanonical:
			s.NonCanonical++
			continue
		}
		// Intern (info, reference): the map key is len(info) as a varint,
		// info, then reference, which no two different pairs share. The
		// lookup with string(key) does not allocate.
		key = binary.AppendUvarint(key[:0], uint64(len(fields[1])))
		key = append(key, fields[1]...)
		key = append(key, fields[2]...)
		mi, ok := metaIdx[string(key)]
		if !ok {
			mi = uint32(len(s.Metas))
			s.Metas = append(s.Metas, Meta{Info: string(fields[1]), Reference: string(fields[2])})
			metaIdx[string(key)] = mi
		}
		all = append(all, seqTrail{IPTrail{Addr: addr, Port: port, Meta: mi}, uint32(len(all))})
	}
	s.Stats = cr.stats
	// Sort by key, then file order, so the last of each run of equal keys
	// is the row that wins. (A stable sort would do the same, but
	// slices.SortStableFunc is several times slower on 300k trails.)
	slices.SortFunc(all, func(a, b seqTrail) int {
		if c := compareTrail(a.IPTrail, b.IPTrail); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	s.IPs = make([]IPTrail, 0, len(all))
	for i, t := range all {
		if i+1 < len(all) && compareTrail(t.IPTrail, all[i+1].IPTrail) == 0 {
			s.Duplicates++
			continue
		}
		s.IPs = append(s.IPs, t.IPTrail)
	}
	s.IPs = slices.Clip(s.IPs)
	return s, nil
}

// seqTrail is an IPTrail with its row number, for last-row-wins dedup.
type seqTrail struct {
	IPTrail
	seq uint32
}

func compareTrail(a, b IPTrail) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// Lookup returns the trail for addr and port (0 = the bare-IP trail). A
// zone on addr is ignored. It is a binary search, meant for tests and
// tools; the data plane uses its own maps.
func (s *Set) Lookup(addr netip.Addr, port uint16) (Meta, bool) {
	want := IPTrail{Addr: addr.WithZone(""), Port: port}
	i, ok := slices.BinarySearchFunc(s.IPs, want, compareTrail)
	if !ok {
		return Meta{}, false
	}
	return s.Metas[s.IPs[i].Meta], true
}
