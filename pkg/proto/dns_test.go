package proto

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestParseDNSQuestion(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	name253 := strings.Join([]string{long63, long63, long63, strings.Repeat("b", 61)}, ".") // 253 chars, 255 octets
	tests := []struct {
		name      string
		msg       []byte
		wantErr   error
		wantQName string
		qtype     uint16
		qclass    uint16
		labels    int
	}{
		{
			name:      "standard A query, mixed case lowered",
			msg:       newDNSMsg(0x1337, 0x01, 0x00, 1, 0, 0, 0).question("WwW.Evil-Test-Domain.COM", 1, 1).b,
			wantQName: "www.evil-test-domain.com", qtype: 1, qclass: 1, labels: 3,
		},
		{
			name:      "AAAA query",
			msg:       newDNSMsg(1, 0x01, 0x00, 1, 0, 0, 0).question("a.b", DNSTypeAAAA, 1).b,
			wantQName: "a.b", qtype: 28, qclass: 1, labels: 2,
		},
		{
			name:      "root name renders empty",
			msg:       newDNSMsg(1, 0x01, 0x00, 1, 0, 0, 0).raw(0).u16(2).u16(1).b,
			wantQName: "", qtype: 2, qclass: 1,
		},
		{
			name:      "label bytes copied verbatim, as Maltrail",
			msg:       newDNSMsg(1, 0x01, 0x00, 1, 0, 0, 0).raw(3, 'a', '.', 0xff).name("com").u16(1).u16(1).b,
			wantQName: "a.\xff.com", qtype: 1, qclass: 1, labels: 2,
		},
		{
			name:      "longest legal name",
			msg:       newDNSMsg(1, 0x01, 0x00, 1, 0, 0, 0).question(name253, 1, 1).b,
			wantQName: name253, qtype: 1, qclass: 1, labels: 4,
		},
		{
			name:      "QDCount 0: still read at offset 12, as Maltrail",
			msg:       newDNSMsg(1, 0x01, 0x00, 0, 0, 0, 0).question("x.org", 1, 1).b,
			wantQName: "x.org", qtype: 1, qclass: 1, labels: 2,
		},
		{name: "empty", msg: nil, wantErr: ErrTruncated},
		{name: "short header", msg: []byte{0, 1, 2}, wantErr: ErrTruncated},
		{name: "header only", msg: newDNSMsg(0x1234, 0x01, 0, 1, 0, 0, 0).b, wantErr: ErrTruncated},
		{name: "name without root label", msg: newDNSMsg(1, 1, 0, 1, 0, 0, 0).labels("evil.com").b, wantErr: ErrTruncated},
		{name: "label longer than message", msg: newDNSMsg(1, 1, 0, 1, 0, 0, 0).raw(63, 'A', 'A').b, wantErr: ErrTruncated},
		{name: "no qtype/qclass", msg: newDNSMsg(1, 1, 0, 1, 0, 0, 0).name("evil.com").u16(1).b, wantErr: ErrTruncated},
		{name: "compression pointer", msg: newDNSMsg(1, 1, 0, 1, 0, 0, 0).ptr(12).b, wantErr: ErrMalformed},
		{name: "pointer after a label", msg: newDNSMsg(1, 1, 0, 1, 0, 0, 0).labels("www").ptr(12).u16(1).u16(1).b, wantErr: ErrMalformed},
		{name: "reserved label type 0x40", msg: newDNSMsg(1, 1, 0, 1, 0, 0, 0).raw(0x41, 'a').raw(0).u16(1).u16(1).b, wantErr: ErrMalformed},
		{name: "name over 255 octets", msg: newDNSMsg(1, 1, 0, 1, 0, 0, 0).question(name253+".c", 1, 1).b, wantErr: ErrMalformed},
	}
	var m DNSMessage
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ParseDNS(tc.msg, &m)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				var pe *Error
				if !errors.As(err, &pe) || pe.Where == "" {
					t.Fatalf("error %v is not a *proto.Error with context", err)
				}
				if len(m.QName()) != 0 {
					t.Errorf("QName after error = %q, want empty", m.QName())
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got := string(m.QName()); got != tc.wantQName {
				t.Errorf("QName = %q, want %q", got, tc.wantQName)
			}
			if m.QType != tc.qtype || m.QClass != tc.qclass || m.QLabels != tc.labels {
				t.Errorf("qtype, qclass, labels = %d, %d, %d; want %d, %d, %d", m.QType, m.QClass, m.QLabels, tc.qtype, tc.qclass, tc.labels)
			}
		})
	}
}

func TestParseDNSHeader(t *testing.T) {
	var m DNSMessage
	// An NXDOMAIN answer (QR, RD | RA, rcode 3): Maltrail's byte3 == 0x83.
	msg := newDNSMsg(0xBEEF, 0x81, 0x83, 1, 2, 3, 4).question("nx.example.org", 1, 1).b
	if err := ParseDNS(msg, &m); err != nil {
		t.Fatal(err)
	}
	if m.ID != 0xBEEF || m.Byte2 != 0x81 || m.Byte3 != 0x83 || !m.QR || m.Opcode != 0 || m.RCode != 3 {
		t.Errorf("header = %+v", m)
	}
	if m.QDCount != 1 || m.ANCount != 2 || m.NSCount != 3 || m.ARCount != 4 {
		t.Errorf("counts = %d %d %d %d", m.QDCount, m.ANCount, m.NSCount, m.ARCount)
	}
	if m.IsStandardQuery() {
		t.Error("a response is not a standard query")
	}

	// Maltrail's standard-query mask 0xFA lets AA and RD through, not
	// opcode or TC.
	for b2, want := range map[byte]bool{0x00: true, 0x01: true, 0x04: true, 0x05: true, 0x02: false, 0x08: false, 0x28: false, 0x80: false} {
		msg := newDNSMsg(1, b2, 0, 1, 0, 0, 0).question("a.org", 1, 1).b
		if err := ParseDNS(msg, &m); err != nil {
			t.Fatal(err)
		}
		if m.IsStandardQuery() != want {
			t.Errorf("byte2 %#02x: IsStandardQuery = %v, want %v", b2, !want, want)
		}
		if got := (m.Opcode); got != (b2>>3)&0xf {
			t.Errorf("byte2 %#02x: opcode %d", b2, got)
		}
	}

	// On a question error the header stays readable.
	bad := newDNSMsg(0x4242, 0x81, 0x83, 1, 0, 0, 0).ptr(12).b
	if err := ParseDNS(bad, &m); err == nil {
		t.Fatal("pointer in question accepted")
	}
	if m.ID != 0x4242 || m.Byte3 != 0x83 || !m.QR {
		t.Errorf("header after question error = %+v", m)
	}
}

func TestStripTCPLength(t *testing.T) {
	q := newDNSMsg(7, 1, 0, 1, 0, 0, 0).question("tcp.evil.org", 1, 1).b
	framed := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	tests := []struct {
		name string
		in   []byte
		want []byte
	}{
		{"exact", framed, q},
		{"pipelined second message ignored", append(append([]byte(nil), framed...), framed...), q},
		{"snapshot cut: what is there", framed[:20], q[:18]},
		{"one byte", []byte{0}, nil},
		{"empty", nil, nil},
	}
	for _, tc := range tests {
		if got := StripTCPLength(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %x, want %x", tc.name, got, tc.want)
		}
	}
	var m DNSMessage
	if err := ParseDNS(StripTCPLength(framed), &m); err != nil || string(m.QName()) != "tcp.evil.org" {
		t.Errorf("TCP query: %q, %v", m.QName(), err)
	}
}

// sinkholeResponse answers name with a CNAME then two A records, names
// compressed against the question, the way resolvers write them.
func sinkholeResponse() []byte {
	m := newDNSMsg(0x1337, 0x81, 0x80, 1, 3, 0, 0).question("www.Sinkholed.com", 1, 1)
	m.ptr(12).rr(DNSTypeCNAME, 1, 60, []byte{4, 'e', 'd', 'g', 'e', 0xC0, 16}) // edge.sinkholed.com
	cnameTarget := 12 + 23 + 2 + 10                                            // header, question (19+4), the CNAME owner pointer and fixed fields
	m.ptr(cnameTarget).rr(DNSTypeA, 1, 60, []byte{198, 51, 100, 90})
	m.ptr(cnameTarget).rr(DNSTypeA, 1, 60, []byte{198, 51, 100, 91})
	return m.b
}

func TestDNSAnswers(t *testing.T) {
	type rec struct {
		name string
		typ  uint16
		ttl  uint32
		addr string
	}
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	tests := []struct {
		name    string
		msg     []byte
		want    []rec
		wantErr error
		firstA  string
	}{
		{
			name: "compressed CNAME chain",
			msg:  sinkholeResponse(),
			want: []rec{
				{"www.sinkholed.com", DNSTypeCNAME, 60, ""},
				{"edge.sinkholed.com", DNSTypeA, 60, "198.51.100.90"},
				{"edge.sinkholed.com", DNSTypeA, 60, "198.51.100.91"},
			},
			firstA: "198.51.100.90",
		},
		{
			name: "uncompressed owner name (corpus dns_responses #2)",
			msg: newDNSMsg(0x1337, 0x81, 0x80, 1, 1, 0, 0).question("parked.com", 1, 1).
				name("parked.com").rr(DNSTypeA, 1, 60, []byte{198, 51, 100, 91}).b,
			want:   []rec{{"parked.com", DNSTypeA, 60, "198.51.100.91"}},
			firstA: "198.51.100.91",
		},
		{
			name: "AAAA then A",
			msg: newDNSMsg(1, 0x81, 0x80, 1, 2, 0, 0).question("v6.org", 28, 1).
				ptr(12).rr(DNSTypeAAAA, 1, 5, v6[:]).ptr(12).rr(DNSTypeA, 1, 6, []byte{192, 0, 2, 1}).b,
			want:   []rec{{"v6.org", DNSTypeAAAA, 5, "2001:db8::1"}, {"v6.org", DNSTypeA, 6, "192.0.2.1"}},
			firstA: "192.0.2.1",
		},
		{
			name: "A with a wrong RDATA size has no address",
			msg: newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).question("odd.org", 1, 1).
				ptr(12).rr(DNSTypeA, 1, 1, []byte{1, 2, 3}).b,
			want: []rec{{"odd.org", DNSTypeA, 1, ""}},
		},
		{
			name: "second question skipped (compressed)",
			msg: newDNSMsg(1, 0x81, 0x80, 2, 1, 0, 0).question("a.org", 1, 1).ptr(12).u16(1).u16(1).
				ptr(12).rr(DNSTypeA, 1, 9, []byte{10, 0, 0, 1}).b,
			want:   []rec{{"a.org", DNSTypeA, 9, "10.0.0.1"}},
			firstA: "10.0.0.1",
		},
		{
			name: "root owner name",
			msg: newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).question("a.org", 1, 1).
				raw(0).rr(2, 1, 9, []byte{0}).b,
			want: []rec{{"", 2, 9, ""}},
		},
		{
			name:    "ANCount larger than the records (corpus dns_malformed #5)",
			msg:     newDNSMsg(0x1234, 0x80, 0x80, 1, 1, 0, 0).question("evil.com", 1, 1).b,
			wantErr: ErrTruncated,
		},
		{
			name:    "RDATA cut",
			msg:     newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).question("a.org", 1, 1).ptr(12).u16(1).u16(1).u32(1).u16(4).raw(1, 2).b,
			wantErr: ErrTruncated,
		},
		{
			name:    "pointer loop onto itself",
			msg:     newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).question("a.org", 1, 1).ptr(23).rr(1, 1, 1, []byte{1, 2, 3, 4}).b,
			wantErr: ErrMalformed,
		},
		{
			name: "two pointers forming a loop",
			// answer owner at 23: label "x" then a pointer to 23.
			msg:     newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).question("a.org", 1, 1).raw(1, 'x').ptr(23).rr(1, 1, 1, []byte{1, 2, 3, 4}).b,
			wantErr: ErrMalformed,
		},
		{
			name:    "forward pointer",
			msg:     newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).question("a.org", 1, 1).ptr(40).rr(1, 1, 1, []byte{1, 2, 3, 4}).b,
			wantErr: ErrMalformed,
		},
		{
			name:    "pointer past the end",
			msg:     newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).question("a.org", 1, 1).raw(0xC0).b,
			wantErr: ErrTruncated,
		},
	}
	var m DNSMessage
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := ParseDNS(tc.msg, &m); err != nil {
				t.Fatalf("ParseDNS: %v", err)
			}
			var got []rec
			it := m.Answers()
			for it.Next() {
				rr := it.Record()
				r := rec{string(it.Name()), rr.Type, rr.TTL, ""}
				if rr.Addr.IsValid() {
					r.addr = rr.Addr.String()
				}
				got = append(got, r)
			}
			if !errors.Is(it.Err(), tc.wantErr) || (tc.wantErr == nil) != (it.Err() == nil) {
				t.Fatalf("Err = %v, want %v", it.Err(), tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("records = %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("record %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			a, err := m.FirstA()
			if tc.firstA == "" {
				if a.IsValid() {
					t.Errorf("FirstA = %v, want none", a)
				}
			} else if err != nil || a.String() != tc.firstA {
				t.Errorf("FirstA = %v, %v; want %s", a, err, tc.firstA)
			}
		})
	}
}

func TestDNSAnswersNeedQuestion(t *testing.T) {
	var m DNSMessage
	_ = ParseDNS(newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).ptr(12).b, &m)
	it := m.Answers()
	if it.Next() || !errors.Is(it.Err(), ErrMalformed) {
		t.Errorf("answers after a failed question: Next ok, err %v", it.Err())
	}
	_ = ParseDNS([]byte{1}, &m)
	it = m.Answers()
	if it.Next() || !errors.Is(it.Err(), ErrTruncated) {
		t.Errorf("answers after a failed header: err %v", it.Err())
	}
	// QDCount 0: the answer section starts right after the header.
	msg := newDNSMsg(1, 0x81, 0x80, 0, 1, 0, 0).name("z.org").rr(1, 1, 1, []byte{9, 9, 9, 9}).b
	_ = ParseDNS(msg, &m) // reads the answer's name as a "question", as Maltrail would
	if a, err := m.FirstA(); err != nil || a != netip.AddrFrom4([4]byte{9, 9, 9, 9}) {
		t.Errorf("QDCount 0: FirstA = %v, %v", a, err)
	}
}

// TestDNSCorpus runs every port-53 payload of the shared replay corpus
// through the parser and checks the ones whose content the corpus manifest
// describes.
func TestDNSCorpus(t *testing.T) {
	var m DNSMessage
	want := map[string][]string{
		"dns_queries.pcap":   {"evil-test-domain.com", "www.evil-parent.com", "badsite.onion.to", "evilname.ip-adress.com", "dga1234.wildcard-test.com", "clean.example.org"},
		"dns_responses.pcap": {"sinkholed.com", "parked.com"},
	}
	for file, names := range want {
		var got []string
		for _, p := range corpusPayloads(t, file) {
			if err := ParseDNS(p.data, &m); err != nil {
				t.Errorf("%s #%d: %v", file, p.index, err)
				continue
			}
			got = append(got, string(m.QName()))
		}
		if strings.Join(got, " ") != strings.Join(names, " ") {
			t.Errorf("%s: names %q, want %q", file, got, names)
		}
	}
	var firstA []string
	for _, p := range corpusPayloads(t, "dns_responses.pcap") {
		_ = ParseDNS(p.data, &m)
		a, err := m.FirstA()
		if err != nil {
			t.Errorf("dns_responses #%d: %v", p.index, err)
		}
		firstA = append(firstA, a.String())
	}
	if strings.Join(firstA, " ") != "198.51.100.90 198.51.100.91" {
		t.Errorf("dns_responses first A records: %q", firstA)
	}
	// dns_malformed: every packet but the fifth (a response whose answer
	// is missing) must fail the question; Maltrail drops them all.
	for _, p := range corpusPayloads(t, "dns_malformed.pcap") {
		err := ParseDNS(p.data, &m)
		if (err == nil) != (p.index == 4) {
			t.Errorf("dns_malformed #%d: err %v", p.index, err)
		}
	}
	for _, file := range corpusFiles(t) {
		for _, p := range corpusPayloads(t, file) {
			if p.sport == 53 || p.dport == 53 {
				d := p.data
				if p.proto == 6 {
					d = StripTCPLength(d)
				}
				_ = ParseDNS(d, &m)
				it := m.Answers()
				for it.Next() {
				}
			}
		}
	}
}

func TestParseDNSAllocs(t *testing.T) {
	msg := sinkholeResponse()
	var m DNSMessage
	n := testing.AllocsPerRun(100, func() {
		if err := ParseDNS(msg, &m); err != nil {
			t.Fatal(err)
		}
		it := m.Answers()
		for it.Next() {
		}
		if _, err := m.FirstA(); err != nil {
			t.Fatal(err)
		}
		_ = ParseDNS(msg[:20], &m) // error path
	})
	if n != 0 {
		t.Errorf("ParseDNS + answer walk: %v allocs, want 0", n)
	}
}

func BenchmarkParseDNSQuery(b *testing.B) {
	msg := newDNSMsg(0x1337, 0x01, 0x00, 1, 0, 0, 1).question("www.evil-test-domain.com", 1, 1).b
	var m DNSMessage
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := ParseDNS(msg, &m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDNSResponse(b *testing.B) {
	msg := sinkholeResponse()
	var m DNSMessage
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := ParseDNS(msg, &m); err != nil {
			b.Fatal(err)
		}
		if a, err := m.FirstA(); err != nil || !a.IsValid() {
			b.Fatal(a, err)
		}
	}
}

// refQName reads the first question's name label by label, a byte at a
// time: the reference of the parser's word-at-a-time copy.
func refQName(b []byte) ([]byte, bool) {
	var out []byte
	for off := 12; off < len(b); {
		l := int(b[off])
		if l == 0 {
			return out, true
		}
		if l&0xC0 != 0 || off+1+l > len(b) {
			return nil, false
		}
		if len(out) > 0 {
			out = append(out, '.')
		}
		for _, c := range b[off+1 : off+1+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out = append(out, c)
		}
		off += 1 + l
	}
	return nil, false
}

// TestQNameWords: names of labels of every length up to 63, in both
// cases, with and without bytes after the question, read as the
// reference reads them.
func TestQNameWords(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var q []byte
		for range 1 + rng.IntN(5) {
			l := 1 + rng.IntN(30)
			q = append(q, byte(l))
			for range l {
				q = append(q, "aZ09-_.\xff\x00"[rng.IntN(9)])
			}
		}
		msg := append([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}, q...)
		msg = append(msg, 0, 0, 1, 0, 1)
		if rng.IntN(2) == 0 {
			msg = append(msg, make([]byte, rng.IntN(20))...)
		}
		var m DNSMessage
		if err := ParseDNS(msg, &m); err != nil {
			if len(q) < 250 {
				t.Fatalf("%q: %v", msg, err)
			}
			continue
		}
		if want, _ := refQName(msg); string(m.QName()) != string(want) {
			t.Fatalf("%q: QName %q, reference %q", msg, m.QName(), want)
		}
	}
}

func FuzzParseDNS(f *testing.F) {
	f.Add(newDNSMsg(0x1337, 0x01, 0x00, 1, 0, 0, 0).question("www.evil-test-domain.com", 1, 1).b)
	f.Add(sinkholeResponse())
	f.Add(newDNSMsg(1, 0x81, 0x83, 1, 0, 1, 0).question("nx.example.org", 1, 1).
		ptr(12).rr(6, 1, 60, []byte{0xC0, 12, 0xC0, 12, 0, 0, 0, 1}).b)
	f.Add(newDNSMsg(1, 0x81, 0x80, 2, 1, 0, 0).question("a.org", 1, 1).ptr(12).u16(1).u16(1).ptr(12).rr(1, 1, 9, []byte{10, 0, 0, 1}).b)
	f.Add(newDNSMsg(1, 0x81, 0x80, 1, 1, 0, 0).question("a.org", 1, 1).raw(1, 'x').ptr(23).rr(1, 1, 1, []byte{1, 2, 3, 4}).b)
	f.Add(newDNSMsg(1, 1, 0, 1, 0, 0, 0).ptr(12).b)
	for _, file := range corpusFiles(f) {
		if strings.HasPrefix(file, "dns_") {
			for _, p := range corpusPayloads(f, file) {
				f.Add(p.data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m DNSMessage
		err := ParseDNS(b, &m)
		q := m.QName()
		if want, ok := refQName(b); err == nil && (!ok || string(q) != string(want)) {
			t.Fatalf("QName %q, reference %q %v", q, want, ok)
		}
		if len(q) > MaxNameLen {
			t.Fatalf("QName %d bytes", len(q))
		}
		if bytes.ContainsFunc(q, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
			t.Fatalf("QName %q not lowercased", q)
		}
		if err != nil && len(q) != 0 {
			t.Fatalf("QName %q with error %v", q, err)
		}
		if err != nil && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("untyped error %v", err)
		}
		it := m.Answers()
		for n := 0; it.Next(); n++ {
			if n >= int(m.ANCount) {
				t.Fatalf("more than ANCount=%d records", m.ANCount)
			}
			rr := it.Record()
			if len(it.Name()) > MaxNameLen {
				t.Fatalf("owner name %d bytes", len(it.Name()))
			}
			if rr.Addr.IsValid() && !(rr.Type == DNSTypeA && rr.Addr.Is4() || rr.Type == DNSTypeAAAA && rr.Addr.Is6()) {
				t.Fatalf("address %v on a type %d record", rr.Addr, rr.Type)
			}
		}
		_, _ = m.FirstA()
	})
}
