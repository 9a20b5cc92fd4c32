package sensor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/pcap"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// The fuzz targets run Agent.Handle, one per record kind, on a raw ring
// record built as the XDP program writes it around the fuzzed header
// fields and payload, so Record.Decode, the parsers, the matchers, the
// suppression and the renderer all run. Each input must leave every
// counter adding up and every line well formed, and the agent must handle
// a trail hit right after it.

// fuzzTrailsCSV holds a name trail of every form the matchers know:
// exact and parent domains, .onion, .ip-adress.com, skip rules, regex,
// URL and host+path trails, a POST query trail, and infos that need
// quoting or hold line breaks.
const fuzzTrailsCSV = `evil-test-domain.com,malware (test),(static)
sub.evil-parent.com,malware (test),(static)
evil-parent.com,malware (test),(static)
badsite.onion,malware (test),(static)
evilname,malware (test),(static)
kozow.com,dynamic domain (suspicious),(static)
sinkhole-test.com,sinkhole (suspicious),(static)
dga[0-9]+\.wildcard-test\.com,malware (test),(static)
tls-evil.example,malware (test),(static)
quic-evil.example,malware (test),(static)
/malicious-login.php,malware (test),(static)
evil-url.example/bad/path,malware (test),(static)
evil-url.example/gate.php?id=,"info with ""quotes"" and spaces",(static)
/post.php?cmd=,"info with a
line break",(static)
quoted"host.example,malware (test),(static)
scanner-host.example,known scanner (attacker),(static)
`

// fuzzMeta answers the meta ids the kernel could attach to a record: a
// few texts that need quoting, one condensed by the suppression, and an
// unknown id (a trail removed before the event was rendered).
var fuzzMeta = fakeMeta{
	0: {"malware (test)", "(static)"},
	1: {"known attacker", "(static)"},
	2: {`info with "quotes"`, "ref with spaces"},
	3: {"info\r\nwith CR LF", ""},
	4: {"", ""},
}

// fuzzSensorName needs quoting, so every line checks safe_value on it.
const fuzzSensorName = `fuzz "sensor"`

// fuzzRules loads the name trails and rules every fuzz target uses.
func fuzzRules(tb testing.TB) NameRules {
	tb.Helper()
	wl := trails.DefaultWhitelist()
	names, err := trails.LoadNames(strings.NewReader(fuzzTrailsCSV), "fuzz.csv", wl)
	if err != nil {
		tb.Fatal(err)
	}
	if len(names.Problems) != 0 || names.Stats.CSV.Skipped != 0 {
		tb.Fatalf("fuzz trails: problems %v, skipped %v", names.Problems, names.Stats.CSV.Samples)
	}
	ig := &trails.IgnoreRules{}
	if err := ig.Load(strings.NewReader("10.66.66.66;*;*;*\n*;*;*;6666\n"), "ignore"); err != nil {
		tb.Fatal(err)
	}
	return NameRules{Names: names, Whitelist: wl, Ignore: ig, CheckSNI: true, CheckHostDomains: true}
}

// recFields are the header fields of a ring record the fuzzer varies.
// Addrs gives the source then the destination address (family 4: the
// first 4 bytes of each, the rest zero, as the program writes them). Lie
// is added to the real payload length in cap_len, so a record can claim
// more than it carries (Decode must refuse it) or less (the payload is cut).
type recFields struct {
	Payload, Addrs                      []byte
	Family, L4, Side, TType, Flags, Gen uint8
	Sport, Dport                        uint16
	Meta                                uint32
	TsNs                                int64
	Lie                                 int8
}

// args lists the fields in the fuzz functions' parameter order.
func (r recFields) args() []any {
	return []any{r.Payload, r.Addrs, r.Family, r.L4, r.Side, r.TType, r.Flags, r.Gen, r.Sport, r.Dport, r.Meta, r.TsNs, r.Lie}
}

// raw builds the ring record of kind as struct xt_rec in bpf/xtrail.h
// lays it out (little endian, the payload after the 64-byte header).
func (r recFields) raw(kind uint8) []byte {
	b := make([]byte, dataplane.RecordHeaderSize+len(r.Payload))
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(r.TsNs))
	b[8], b[9], b[10], b[11], b[12], b[13] = kind, r.Family, r.L4, r.Side, r.TType, r.Flags
	le.PutUint16(b[14:], r.Sport)
	le.PutUint16(b[16:], r.Dport)
	capLen := min(max(len(r.Payload)+int(r.Lie), 0), 0xffff)
	le.PutUint16(b[18:], uint16(capLen))
	le.PutUint16(b[20:], uint16(len(r.Payload)))
	b[22] = r.Gen
	le.PutUint32(b[24:], r.Meta)
	var src, dst [16]byte
	copy(src[:], r.Addrs)
	if len(r.Addrs) > 16 {
		copy(dst[:], r.Addrs[16:])
	}
	if r.Family == 4 {
		clear(src[4:])
		clear(dst[4:])
	}
	copy(b[32:48], src[:])
	copy(b[48:64], dst[:])
	copy(b[64:], r.Payload)
	return b
}

// fields returns the record fields of a packet between src and dst.
func fields(src, dst netip.Addr, l4 uint8, sport, dport uint16, payload []byte) recFields {
	s, d := src.As16(), dst.As16()
	fam := uint8(6)
	if src.Is4() {
		fam = 4
		s4, d4 := src.As4(), dst.As4()
		s, d = [16]byte{}, [16]byte{}
		copy(s[:], s4[:])
		copy(d[:], d4[:])
	}
	return recFields{Payload: payload, Addrs: append(s[:], d[:]...), Family: fam, L4: l4, Sport: sport, Dport: dport,
		TsNs: time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC).UnixNano()}
}

// fuzzAgent is an agent as the sensor runs it (summarize throttle), with
// its output and log captured.
func fuzzAgent(rules NameRules, meta MetaSource) (*Agent, *capture, *lockedBuffer) {
	out := newCapture()
	logs := &lockedBuffer{}
	a := NewAgent(AgentConfig{Meta: meta, Rules: rules, Render: &maltrail.Renderer{Sensor: fuzzSensorName, Loc: time.UTC},
		Out: out, Throttle: throttle.Summarize, Processes: 1, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Heuristics: heuristics.Config{Use: true, CheckMissingHost: true}}) // every heuristic runs on the fuzzed payloads
	return a, out, logs
}

// checkHandle runs one fuzzed record through a fresh agent and checks
// what it left: no panic, counters that add up, well-formed lines, and a
// trail hit handled right after it.
func checkHandle(t *testing.T, rules NameRules, kind uint8, raw []byte) {
	a, out, logs := fuzzAgent(rules, fuzzMeta)
	a.Handle(raw)
	a.Flush()
	st := a.Stats()
	if st.Panics.Load() != 0 {
		t.Fatalf("handling the record panicked (the guard recovered it):\n%s", logs)
	}
	checkCounters(t, st, 1)
	if n := st.Malformed[kind].Load(); n > st.Kinds[kind].Load() {
		t.Fatalf("malformed %d of %d records of kind %d", n, st.Kinds[kind].Load(), kind)
	}
	for k := range st.Malformed {
		if k != int(kind) && st.Malformed[k].Load() != 0 {
			t.Fatalf("a record of kind %d counted malformed as kind %d", kind, k)
		}
	}
	lines := out.get()
	if uint64(len(lines)) != st.Events.Load() {
		t.Fatalf("%d lines, %d events counted", len(lines), st.Events.Load())
	}
	for _, l := range lines {
		checkLine(t, l)
	}
	a.Handle(hitRecord())
	got := out.get()
	if len(got) != len(lines)+1 || !strings.Contains(got[len(lines)], " DNS "+hitName+" ") {
		t.Fatalf("the trail hit after the record gave %q (logs:\n%s)", got[len(lines):], logs)
	}
	checkCounters(t, st, 2)
}

// lineTime is the first field of a line: the quoted local time.
var lineTime = regexp.MustCompile(`^"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"$`)

// checkLine checks a rendered line against spec §2: one '\n', at the end;
// no CR; exactly 11 space-separated fields, each through safe_value.
func checkLine(t *testing.T, line string) {
	t.Helper()
	if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 || strings.Contains(line, "\r") {
		t.Fatalf("line %q: want exactly one line break, at the end, and no CR", line)
	}
	f, err := splitFields(strings.TrimSuffix(line, "\n"))
	if err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	if len(f) != 11 {
		t.Fatalf("line %q: %d fields, want 11", line, len(f))
	}
	if !lineTime.MatchString(f[0]) {
		t.Fatalf("line %q: time field %s", line, f[0])
	}
	if want := string(maltrail.AppendSafe(nil, fuzzSensorName)); f[1] != want {
		t.Fatalf("line %q: sensor field %s, want %s", line, f[1], want)
	}
}

// splitFields splits a line into its fields as safe_value wrote them: a
// field is quoted (inner quotes doubled) when it holds a space or a quote,
// and is never empty.
func splitFields(line string) ([]string, error) {
	var out []string
	for {
		var f string
		if strings.HasPrefix(line, `"`) {
			i := 1
			for {
				j := strings.IndexByte(line[i:], '"')
				if j < 0 {
					return nil, errors.New("unterminated quoted field")
				}
				i += j
				if i+1 < len(line) && line[i+1] == '"' {
					i += 2
					continue
				}
				break
			}
			f, line = line[:i+1], line[i+1:]
			if inner := strings.ReplaceAll(f[1:len(f)-1], `""`, ""); !strings.ContainsAny(f[1:len(f)-1], ` "`) || strings.Contains(inner, `"`) {
				return nil, fmt.Errorf("field %s quoted without need or with a lone quote", f)
			}
		} else {
			f, line, _ = strings.Cut(line, " ")
			if f == "" || strings.Contains(f, `"`) {
				return nil, fmt.Errorf("empty field or stray quote in %q", f)
			}
			out = append(out, f)
			if line == "" {
				return out, nil
			}
			continue
		}
		out = append(out, f)
		if line == "" {
			return out, nil
		}
		if line[0] != ' ' || len(line) == 1 {
			return nil, fmt.Errorf("no single space after field %s", f)
		}
		line = line[1:]
	}
}

// fuzzKind is the body of every target: seeds, then the check.
func fuzzKind(f *testing.F, kind uint8, seeds []recFields) {
	rules := fuzzRules(f)
	for _, s := range seeds {
		f.Add(s.args()...)
	}
	f.Fuzz(func(t *testing.T, payload, addrs []byte, family, l4, side, ttype, flags, gen uint8,
		sport, dport uint16, meta uint32, ts int64, lie int8) {
		r := recFields{payload, addrs, family, l4, side, ttype, flags, gen, sport, dport, meta, ts, lie}
		checkHandle(t, rules, kind, r.raw(kind))
	})
}

func FuzzAgentIP(f *testing.F)   { fuzzKind(f, dataplane.KindIP, seedsFor(f, dataplane.KindIP)) }
func FuzzAgentDNS(f *testing.F)  { fuzzKind(f, dataplane.KindDNS, seedsFor(f, dataplane.KindDNS)) }
func FuzzAgentHTTP(f *testing.F) { fuzzKind(f, dataplane.KindHTTP, seedsFor(f, dataplane.KindHTTP)) }
func FuzzAgentTLS(f *testing.F)  { fuzzKind(f, dataplane.KindTLS, seedsFor(f, dataplane.KindTLS)) }
func FuzzAgentQUIC(f *testing.F) { fuzzKind(f, dataplane.KindQUIC, seedsFor(f, dataplane.KindQUIC)) }

// seedsFor returns the seeds of a record kind: the packets of that kind in
// the shared corpus captures, then the hostile payloads of hostile.go
// wrapped in a record of every shape the program writes (IPv4 and IPv6,
// with and without the kernel's trail lookup attached).
func seedsFor(tb testing.TB, kind uint8) []recFields {
	var out []recFields
	for _, p := range corpusPackets(tb) {
		if p.kind == kind {
			out = append(out, p.fields)
		}
	}
	v4s, v4d := netip.MustParseAddr("10.0.0.66"), netip.MustParseAddr("203.0.113.44")
	v6s, v6d := netip.MustParseAddr("2001:db8::66"), netip.MustParseAddr("dead::beef")
	for i, h := range hostilePayloads(kind) {
		sport := uint16(50000 + i)
		for _, addr := range [][2]netip.Addr{{v4s, v4d}, {v6s, v6d}} {
			r := fields(addr[0], addr[1], h.l4, sport, h.dport, h.payload)
			out = append(out, r)
			if kind == dataplane.KindIP || kind == dataplane.KindDNS || kind == dataplane.KindHTTP {
				// the kernel's trail lookup: dst side, meta 0, then src side, meta 2
				r.Side, r.TType, r.Meta = dataplane.SideDst, dataplane.TrailIP, 0
				out = append(out, r)
				r.Side, r.TType, r.Meta = dataplane.SideSrc, dataplane.TrailIPort, 2
				out = append(out, r)
			}
			if kind == dataplane.KindIP {
				// a CIDR trail, a trail type the agent does not know, a
				// removed trail's meta
				r.Side, r.TType, r.Meta = dataplane.SideDst, dataplane.TrailCIDR, 3
				out = append(out, r)
				r.Side, r.TType, r.Meta = 7, 99, 1000
				out = append(out, r)
			}
		}
	}
	// records the program never writes: Decode must refuse them
	lie := fields(v4s, v4d, 17, 5353, 53, dnsQuery(hitName))
	lie.Lie = 1
	out = append(out, lie)
	lie.Lie, lie.Family = 0, 5
	return append(out, lie)
}

// corpusPacket is a packet of the shared corpus as a record of the kind
// the program would make of it.
type corpusPacket struct {
	kind   uint8
	fields recFields
}

// corpusPackets reads every capture of ../shared/corpus and classifies
// its packets as the XDP program does (bpf/xtrail.c): port 53 is DNS; a
// TCP payload starting a ClientHello is TLS, one starting a method token
// or "HTTP/" is HTTP; a UDP QUIC v1/v2 long-header Initial is QUIC; every
// TCP, UDP and ICMP packet also gives an IP record seed.
func corpusPackets(tb testing.TB) []corpusPacket {
	dir := filepath.Join(testenv.SharedDir(tb), "corpus")
	files, err := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no corpus captures in %s (%v)", dir, err)
	}
	var out []corpusPacket
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			tb.Fatal(err)
		}
		rd, err := pcap.NewReader(f)
		if err != nil {
			f.Close()
			tb.Fatalf("%s: %v", path, err)
		}
		var frame []byte
		for {
			p, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				tb.Fatalf("%s: %v", path, err)
			}
			if frame, err = pcap.ToEthernet(frame[:0], p.LinkType, p.Data); err != nil {
				continue
			}
			out = append(out, classify(frame, p.Time)...)
		}
		f.Close()
	}
	return out
}

// classify decodes Ethernet (two VLAN tags at most), IPv4 or IPv6, and the
// transport header of a frame, and returns the records the program would
// make of it.
func classify(frame []byte, at time.Time) []corpusPacket {
	if len(frame) < 14 {
		return nil
	}
	et, p := binary.BigEndian.Uint16(frame[12:]), frame[14:]
	for i := 0; i < 2 && (et == 0x8100 || et == 0x88a8) && len(p) >= 4; i++ {
		et, p = binary.BigEndian.Uint16(p[2:]), p[4:]
	}
	var src, dst netip.Addr
	var l4p uint8
	var l4 []byte
	switch {
	case et == 0x0800 && len(p) >= 20:
		ihl, tot := int(p[0]&0x0f)*4, int(binary.BigEndian.Uint16(p[2:]))
		if ihl < 20 || tot < ihl || tot > len(p) || binary.BigEndian.Uint16(p[6:])&0x1fff != 0 {
			return nil
		}
		src, dst, l4p, l4 = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), p[9], p[ihl:tot]
	case et == 0x86dd && len(p) >= 40:
		n := int(binary.BigEndian.Uint16(p[4:]))
		if 40+n > len(p) {
			return nil
		}
		src, dst, l4p, l4 = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), p[6], p[40:40+n]
	default:
		return nil
	}
	var sport, dport uint16
	var flags uint8
	var payload []byte
	switch l4p {
	case 6:
		if len(l4) < 20 || int(l4[12]>>4)*4 < 20 || int(l4[12]>>4)*4 > len(l4) {
			return nil
		}
		flags, payload = l4[13], l4[int(l4[12]>>4)*4:]
	case 17:
		if len(l4) < 8 {
			return nil
		}
		payload = l4[8:]
	}
	if l4p == 6 || l4p == 17 {
		sport, dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	}
	ip := fields(src, dst, l4p, sport, dport, nil)
	ip.TsNs, ip.Flags = at.UnixNano(), flags
	ip.Side, ip.TType = dataplane.SideDst, dataplane.TrailIP
	out := []corpusPacket{{dataplane.KindIP, ip}}
	kind := candidateKind(l4p, sport, dport, payload)
	if kind == 0 {
		return out
	}
	c := fields(src, dst, l4p, sport, dport, bytes.Clone(payload[:min(len(payload), dataplane.SnapMax)]))
	c.TsNs, c.Flags = at.UnixNano(), flags
	return append(out, corpusPacket{kind, c})
}

// candidateKind is the program's choice of candidate (bpf/xtrail.c do_tcp
// and do_udp), or 0.
func candidateKind(l4p uint8, sport, dport uint16, b []byte) uint8 {
	if l4p == 17 && (sport == 53 || dport == 53) {
		return dataplane.KindDNS // any length, even empty
	}
	if (l4p != 6 && l4p != 17) || len(b) < 6 {
		return 0
	}
	if sport == 53 || dport == 53 {
		return dataplane.KindDNS
	}
	if l4p == 17 {
		v := binary.BigEndian.Uint32(b[1:])
		if b[0]&0xc0 == 0xc0 && (v == 1 && b[0]&0x30 == 0 || v == 0x6b3343cf && b[0]&0x30 == 0x10) {
			return dataplane.KindQUIC
		}
		return 0
	}
	if b[0] == 0x16 && b[1] == 3 && b[5] == 1 {
		return dataplane.KindTLS
	}
	for _, m := range []string{"GET ", "POST", "HEAD", "PUT ", "DELE", "OPTI", "CONN", "PATC", "TRAC", "HTTP"} {
		if string(b[:4]) == m {
			return dataplane.KindHTTP
		}
	}
	return 0
}
