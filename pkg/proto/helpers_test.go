package proto

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/internal/testenv"
)

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// ---- DNS ----

// dnsMsg builds DNS messages field by field, so tests can also build
// broken ones.
type dnsMsg struct{ b []byte }

func newDNSMsg(id uint16, b2, b3 byte, qd, an, ns, ar uint16) *dnsMsg {
	m := &dnsMsg{}
	m.u16(id)
	m.b = append(m.b, b2, b3)
	m.u16(qd).u16(an).u16(ns).u16(ar)
	return m
}

func (m *dnsMsg) u16(v uint16) *dnsMsg  { m.b = binary.BigEndian.AppendUint16(m.b, v); return m }
func (m *dnsMsg) u32(v uint32) *dnsMsg  { m.b = binary.BigEndian.AppendUint32(m.b, v); return m }
func (m *dnsMsg) raw(p ...byte) *dnsMsg { m.b = append(m.b, p...); return m }

// labels appends the labels of name without the terminating root label.
func (m *dnsMsg) labels(name string) *dnsMsg {
	for _, l := range strings.Split(name, ".") {
		if l == "" {
			continue
		}
		m.b = append(m.b, byte(len(l)))
		m.b = append(m.b, l...)
	}
	return m
}

func (m *dnsMsg) name(name string) *dnsMsg { return m.labels(name).raw(0) }
func (m *dnsMsg) ptr(off int) *dnsMsg      { return m.u16(0xC000 | uint16(off)) }
func (m *dnsMsg) question(name string, qtype, qclass uint16) *dnsMsg {
	return m.name(name).u16(qtype).u16(qclass)
}

// rr appends the fixed fields and RDATA of a record whose owner name the
// caller has appended.
func (m *dnsMsg) rr(typ, class uint16, ttl uint32, rdata []byte) *dnsMsg {
	m.u16(typ).u16(class).u32(ttl).u16(uint16(len(rdata)))
	return m.raw(rdata...)
}

// ---- corpus: minimal classic-pcap reading at test time ----

type corpusPayload struct {
	file         string
	index        int
	proto        byte // 6 or 17
	sport, dport uint16
	data         []byte
}

// corpusPayloads returns the TCP and UDP payloads of one pcap of the
// shared corpus (testenv.SharedDir: skipped outside CI, failed in CI when
// it is absent). It reads
// only what the corpus uses: classic pcap, Ethernet (one VLAN tag) or raw
// IP, IPv4 and IPv6 without extension headers.
func corpusPayloads(tb testing.TB, name string) []corpusPayload {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.SharedDir(tb), "corpus", name))
	if err != nil {
		tb.Fatal(err)
	}
	if len(raw) < 24 {
		tb.Fatalf("%s: short pcap header", name)
	}
	var bo binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(raw) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	default:
		bo = binary.BigEndian
	}
	link := bo.Uint32(raw[20:]) & 0x03ffffff
	var out []corpusPayload
	for off, i := 24, 0; len(raw)-off >= 16; i++ {
		capLen := int(bo.Uint32(raw[off+8:]))
		off += 16
		if capLen > len(raw)-off {
			tb.Fatalf("%s: record %d runs past the file", name, i)
		}
		frame := raw[off : off+capLen]
		off += capLen
		var ip []byte
		switch link {
		case 1: // Ethernet
			if len(frame) < 14 {
				continue
			}
			et, p := binary.BigEndian.Uint16(frame[12:]), frame[14:]
			if et == 0x8100 && len(p) >= 4 {
				et, p = binary.BigEndian.Uint16(p[2:]), p[4:]
			}
			if et != 0x0800 && et != 0x86dd {
				continue
			}
			ip = p
		case 12, 101: // raw IP
			ip = frame
		default:
			continue
		}
		var l4 []byte
		var proto byte
		switch {
		case len(ip) >= 20 && ip[0]>>4 == 4:
			ihl := int(ip[0]&0x0f) * 4
			tot := int(binary.BigEndian.Uint16(ip[2:]))
			if ihl < 20 || tot < ihl || tot > len(ip) {
				continue
			}
			proto, l4 = ip[9], ip[ihl:tot]
		case len(ip) >= 40 && ip[0]>>4 == 6:
			pl := int(binary.BigEndian.Uint16(ip[4:]))
			if 40+pl > len(ip) {
				continue
			}
			proto, l4 = ip[6], ip[40:40+pl]
		default:
			continue
		}
		p := corpusPayload{file: name, index: i, proto: proto}
		switch proto {
		case 6:
			if len(l4) < 20 || int(l4[12]>>4)*4 > len(l4) || l4[12]>>4 < 5 {
				continue
			}
			p.data = l4[int(l4[12]>>4)*4:]
		case 17:
			if len(l4) < 8 {
				continue
			}
			p.data = l4[8:]
		default:
			continue
		}
		p.sport, p.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		out = append(out, p)
	}
	return out
}

// corpusFiles lists the corpus pcaps (as corpusPayloads, a missing corpus
// skips outside CI and fails in CI).
func corpusFiles(tb testing.TB) []string {
	tb.Helper()
	m, _ := filepath.Glob(filepath.Join(testenv.SharedDir(tb), "corpus", "*.pcap"))
	if len(m) == 0 {
		tb.Fatal("the corpus holds no pcap")
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}
