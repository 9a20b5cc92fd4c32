package pcap

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
)

func readAll(t *testing.T, b []byte) ([]Packet, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return packets(r)
}

// packets reads every packet of r, each with a copy of its data.
func packets(r *Reader) ([]Packet, error) {
	var out []Packet
	for {
		p, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		p.Data = append([]byte(nil), p.Data...)
		out = append(out, p)
	}
}

func TestCorpus(t *testing.T) {
	dir := filepath.Join(testenv.SharedDir(t), "corpus")
	mb, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Name     string `json:"name"`
		Pcap     string `json:"pcap"`
		Packets  int    `json:"packets"`
		LinkType uint32 `json:"linktype"`
	}
	if err := json.Unmarshal(mb, &cases); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if len(files) == 0 || len(files) != len(cases) {
		t.Fatalf("%d pcaps but %d manifest cases", len(files), len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, c.Pcap))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			frame := make([]byte, 0, MaxRecordSize+EthernetHeaderLen)
			n := 0
			for {
				p, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("packet %d: %v", n+1, err)
				}
				n++
				if p.LinkType != c.LinkType {
					t.Errorf("packet %d: link type %d, manifest says %d", n, p.LinkType, c.LinkType)
				}
				if p.Time.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) || p.OrigLen < len(p.Data) {
					t.Errorf("packet %d: implausible time %v or orig len %d < %d", n, p.Time, p.OrigLen, len(p.Data))
				}
				eth, err := ToEthernet(frame, p.LinkType, p.Data)
				if err != nil {
					t.Errorf("packet %d: ToEthernet: %v", n, err)
					continue
				}
				if et := binary.BigEndian.Uint16(eth[12:14]); !followedEtherType(et) {
					t.Errorf("packet %d: EtherType %#x", n, et)
				}
			}
			if n != c.Packets {
				t.Errorf("%d packets, manifest says %d", n, c.Packets)
			}
		})
	}
}

func TestDLTRawLinkType(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.SharedDir(t), "corpus", "dlt_raw.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := readAll(t, b)
	if err != nil || len(pkts) != 1 {
		t.Fatalf("%d packets, %v", len(pkts), err)
	}
	if pkts[0].LinkType != LinkTypeRaw {
		t.Errorf("link type %d, want 12", pkts[0].LinkType)
	}
	eth, err := ToEthernet(nil, pkts[0].LinkType, pkts[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(eth[14:], pkts[0].Data) || eth[12] != 0x08 || eth[13] != 0x00 {
		t.Errorf("frame % x", eth[:20])
	}
}

func TestClassicVariants(t *testing.T) {
	pkts := []synthPkt{
		{sec: 1786094062, frac: 117034, data: etherFrame(0x0800, ipv4Packet(1))},
		{sec: 1786094063, frac: 999999, data: etherFrame(0x0800, ipv4Packet(2)), orig: 1500},
		{sec: 1786094064, frac: 0, data: nil},
	}
	for _, c := range []struct {
		name  string
		order byteOrder
		nano  bool
	}{{"le-usec", binary.LittleEndian, false}, {"be-usec", binary.BigEndian, false},
		{"le-nsec", binary.LittleEndian, true}, {"be-nsec", binary.BigEndian, true}} {
		t.Run(c.name, func(t *testing.T) {
			// FCS bits in the high nibble of the network field are not
			// part of the link type.
			b := buildClassic(c.order, c.nano, 1|0x10000000, pkts)
			got, err := readAll(t, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(pkts) {
				t.Fatalf("%d packets", len(got))
			}
			for i, p := range got {
				ns := int64(pkts[i].frac)
				if !c.nano {
					ns *= 1000
				}
				if want := time.Unix(int64(pkts[i].sec), ns); !p.Time.Equal(want) {
					t.Errorf("packet %d time %v, want %v", i, p.Time, want)
				}
				if p.LinkType != 1 || !bytes.Equal(p.Data, pkts[i].data) {
					t.Errorf("packet %d: link %d data % x", i, p.LinkType, p.Data)
				}
				wantOrig := int(pkts[i].orig)
				if wantOrig == 0 {
					wantOrig = len(pkts[i].data)
				}
				if p.OrigLen != wantOrig {
					t.Errorf("packet %d orig %d, want %d", i, p.OrigLen, wantOrig)
				}
			}
		})
	}
}

// A reader that returns one byte at a time must give the same result.
func TestClassicOneByteReader(t *testing.T) {
	b := buildClassic(binary.LittleEndian, true, 12, []synthPkt{{sec: 5, frac: 7, data: ipv4Packet(9)}})
	r, err := NewReader(iotest.OneByteReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Next()
	if err != nil || !bytes.Equal(p.Data, ipv4Packet(9)) || !p.Time.Equal(time.Unix(5, 7)) {
		t.Fatalf("%v %v", p, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

func buildNG(order byteOrder) ([]byte, []Packet) {
	w := &ngWriter{order: order}
	w.shb()
	w.idb(1, 65535, -1, 0)                 // 0: Ethernet, default µs
	w.idb(101, 65535, 9, 100)              // 1: raw IP, ns, +100 s offset
	w.idb(113, 0, 0x80|10, 0)              // 2: SLL, 2^-10 s
	w.block(0x0bad, []byte{1, 2, 3, 4, 5}) // unknown block
	w.block(4, []byte{0, 0, 0, 0})         // name resolution, skipped
	e0 := etherFrame(0x0800, ipv4Packet(1))
	w.epb(synthPkt{iface: 0, ts: 1786094062_117034, data: e0})
	r1 := ipv6Packet(2)
	w.epb(synthPkt{iface: 1, ts: 1786094062_000000123, data: r1, orig: 9000})
	sll := append([]byte{0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00}, ipv4Packet(3)...)
	w.epb(synthPkt{iface: 2, ts: 1786094062<<10 | 512, data: sll})
	w.block(5, make([]byte, 20)) // interface statistics, skipped
	w.opb(synthPkt{iface: 0, ts: 1_000_001, data: e0})
	want := []Packet{
		{Time: time.Unix(1786094062, 117034000), LinkType: 1, Data: e0, OrigLen: len(e0)},
		{Time: time.Unix(1786094162, 123), LinkType: 101, Data: r1, OrigLen: 9000},
		{Time: time.Unix(1786094062, 500000000), LinkType: 113, Data: sll, OrigLen: len(sll)},
		{Time: time.Unix(1, 1000), LinkType: 1, Data: e0, OrigLen: len(e0)},
	}
	// A new section in the other byte order, with its own interfaces.
	other := byteOrder(binary.BigEndian)
	if order == binary.BigEndian {
		other = binary.LittleEndian
	}
	w2 := &ngWriter{order: other}
	w2.shb()
	w2.idb(228, 20, 6, 0)     // snaplen 20 cuts the SPB
	w2.spb(29, ipv4Packet(4)) // 29 bytes, block holds 29 + padding
	w2.epb(synthPkt{iface: 0, ts: 42, data: ipv4Packet(5)})
	want = append(want,
		Packet{LinkType: 228, Data: ipv4Packet(4)[:20], OrigLen: 29},
		Packet{Time: time.Unix(0, 42000), LinkType: 228, Data: ipv4Packet(5), OrigLen: 29},
	)
	return append(w.b, w2.b...), want
}

func TestPcapNG(t *testing.T) {
	for _, order := range []byteOrder{binary.LittleEndian, binary.BigEndian} {
		t.Run(order.String(), func(t *testing.T) {
			b, want := buildNG(order)
			r, err := NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if !r.IsNG() {
				t.Error("IsNG false")
			}
			got, err := readAll(t, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d packets, want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if !g.Time.Equal(w.Time) || g.LinkType != w.LinkType || !bytes.Equal(g.Data, w.Data) || g.OrigLen != w.OrigLen {
					t.Errorf("packet %d:\n got %v %d % x %d\nwant %v %d % x %d", i, g.Time, g.LinkType, g.Data, g.OrigLen, w.Time, w.LinkType, w.Data, w.OrigLen)
				}
			}
		})
	}
}

func TestTimestampResolutions(t *testing.T) {
	for _, c := range []struct {
		resol byte
		ts    uint64
		want  time.Time
	}{
		{0, 5, time.Unix(5, 0)},
		{3, 5_001, time.Unix(5, 1_000_000)},
		{12, 5_000_000_000_007, time.Unix(5, 0)}, // picoseconds round down
		{12, 5_000_000_001_000, time.Unix(5, 1)},
		{19, 1<<63 + 5, time.Unix(0, 922337203)}, // 10^-19: huge units, no overflow
		{0x80, 7, time.Unix(7, 0)},               // 2^-0
		{0x80 | 1, 7, time.Unix(3, 500_000_000)},
		{0x80 | 63, 1 << 63, time.Unix(1, 0)},
	} {
		w := &ngWriter{order: binary.LittleEndian}
		w.shb()
		w.idb(1, 0, int(c.resol), 0)
		w.epb(synthPkt{ts: c.ts, data: etherFrame(0x0800, nil)})
		got, err := readAll(t, w.b)
		if err != nil || len(got) != 1 {
			t.Fatalf("resol %#x: %v", c.resol, err)
		}
		if !got[0].Time.Equal(c.want) {
			t.Errorf("resol %#x ts %d: %v, want %v", c.resol, c.ts, got[0].Time, c.want)
		}
	}
}

func TestUnusableResolution(t *testing.T) {
	w := &ngWriter{order: binary.LittleEndian}
	w.shb()
	w.idb(1, 0, 0x80|64, 0)
	w.idb(1, 0, -1, 0)
	w.epb(synthPkt{iface: 0, ts: 1, data: etherFrame(0x0800, nil)})
	w.epb(synthPkt{iface: 1, ts: 1, data: etherFrame(0x0800, nil)})
	r, err := NewReader(bytes.NewReader(w.b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "if_tsresol") {
		t.Fatalf("IDB with 2^-64: %v", err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrFormat) {
		t.Fatalf("packet on the bad interface: %v", err)
	}
	// The second interface is still numbered 1 and works.
	if p, err := r.Next(); err != nil || !p.Time.Equal(time.Unix(0, 1000)) {
		t.Fatalf("packet on interface 1: %v %v", p, err)
	}
}

func TestCorruptInputs(t *testing.T) {
	good := buildClassic(binary.LittleEndian, false, 1, []synthPkt{{sec: 1, data: etherFrame(0x0800, ipv4Packet(1))}})
	hugeCap := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(hugeCap[24+8:], 0xfffffff0)
	badVersion := append([]byte(nil), good...)
	binary.LittleEndian.PutUint16(badVersion[4:], 3)

	ng, _ := buildNG(binary.LittleEndian)
	ngBadLen := append([]byte(nil), ng...)
	ngBadLen[4] = 0x1d // SHB length not a multiple of 4
	ngTrailer := append([]byte(nil), ng...)
	// Corrupt the trailing length of the first IDB (it follows the SHB).
	shbLen := binary.LittleEndian.Uint32(ng[4:8])
	idbLen := binary.LittleEndian.Uint32(ng[shbLen+4:])
	binary.LittleEndian.PutUint32(ngTrailer[shbLen+idbLen-4:], 12)
	ngBigEPB := func() []byte {
		w := &ngWriter{order: binary.LittleEndian}
		w.shb()
		w.idb(1, 0, -1, 0)
		b := w.b
		b = binary.LittleEndian.AppendUint32(b, 6)
		return binary.LittleEndian.AppendUint32(b, MaxRecordSize+4)
	}()

	for _, c := range []struct {
		name      string
		in        []byte
		newErr    bool
		substring string
	}{
		{"empty", nil, true, "magic"},
		{"short magic", []byte{0xd4, 0xc3}, true, "magic"},
		{"unknown magic", []byte("GIF89a............................"), true, "unknown magic"},
		{"short header", good[:20], true, "file header"},
		{"bad version", badVersion, true, "version"},
		{"truncated record header", good[:24+7], false, "truncated record header"},
		{"truncated data", good[:len(good)-3], false, "truncated packet data"},
		{"huge caplen", hugeCap, false, "exceeds"},
		{"ng bad length", ngBadLen, true, "invalid block length"},
		{"ng trailer mismatch", ngTrailer, false, "trailing length"},
		{"ng truncated", ng[:len(ng)-6], false, "truncated"},
		{"ng huge EPB", ngBigEPB, false, "exceeds"},
		{"ng shb only BOM garbage", []byte{0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0}, true, "byte-order"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(c.in))
			if c.newErr {
				if err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.substring) {
					t.Fatalf("NewReader error %v, want ErrFormat containing %q", err, c.substring)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var last error
			for range 20 {
				if _, last = r.Next(); last != nil {
					break
				}
			}
			if last == nil || last == io.EOF || !errors.Is(last, ErrFormat) || !strings.Contains(last.Error(), c.substring) {
				t.Fatalf("Next error %v, want ErrFormat containing %q", last, c.substring)
			}
			// Framing errors are sticky.
			if _, again := r.Next(); again != last {
				t.Errorf("after a framing error Next returned %v", again)
			}
		})
	}
}

func TestRecoverableBlockErrors(t *testing.T) {
	w := &ngWriter{order: binary.LittleEndian}
	w.shb()
	w.idb(1, 0, -1, 0)
	w.epb(synthPkt{iface: 7, data: etherFrame(0x0800, nil)}) // no interface 7
	// EPB whose captured length exceeds its data.
	body := binary.LittleEndian.AppendUint32(nil, 0)
	body = binary.LittleEndian.AppendUint32(body, 0)
	body = binary.LittleEndian.AppendUint32(body, 0)
	body = binary.LittleEndian.AppendUint32(body, 400)
	body = binary.LittleEndian.AppendUint32(body, 400)
	w.block(6, append(body, 1, 2, 3, 4))
	w.block(6, []byte{1, 2, 3, 4}) // EPB too short
	w.epb(synthPkt{iface: 0, ts: 3, data: etherFrame(0x86dd, nil)})
	r, err := NewReader(bytes.NewReader(w.b))
	if err != nil {
		t.Fatal(err)
	}
	for i, sub := range []string{"interface 7", "captured length 400", "shorter than 20"} {
		if _, err := r.Next(); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), sub) {
			t.Fatalf("block %d: %v, want %q", i, err, sub)
		}
	}
	if p, err := r.Next(); err != nil || p.Data[13] != 0xdd {
		t.Fatalf("reader did not recover: %v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), f.n)
	for i := range p[:n] {
		p[i] = 0
	}
	copy(p, []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0})
	f.n -= n
	return n, nil
}

func TestIOErrorIsNotFormatError(t *testing.T) {
	_, err := NewReader(&failingReader{n: 10})
	if err == nil || errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("got %v", err)
	}
}

func TestNextAllocs(t *testing.T) {
	var pkts []synthPkt
	for i := range 300 {
		pkts = append(pkts, synthPkt{sec: uint32(i), data: etherFrame(0x0800, ipv4Packet(byte(i)))})
	}
	for _, name := range []string{"pcap", "pcapng"} {
		var b []byte
		if name == "pcap" {
			b = buildClassic(binary.LittleEndian, false, 1, pkts)
		} else {
			w := &ngWriter{order: binary.LittleEndian}
			w.shb()
			w.idb(1, 0, -1, 0)
			for _, p := range pkts {
				w.epb(p)
			}
			b = w.b
		}
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(200, func() {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: Next allocates %.1f per packet", name, n)
		}
	}
}

func fuzzSeeds() [][]byte {
	ngLE, _ := buildNG(binary.LittleEndian)
	ngBE, _ := buildNG(binary.BigEndian)
	return [][]byte{
		buildClassic(binary.LittleEndian, false, 1, []synthPkt{{sec: 1, data: etherFrame(0x0800, ipv4Packet(1))}}),
		buildClassic(binary.BigEndian, true, 12, []synthPkt{{sec: 1, data: ipv4Packet(1)}, {data: nil}}),
		ngLE, ngBE,
		{0x0a, 0x0d, 0x0d, 0x0a},
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		frame := make([]byte, 0, 2048)
		for range 1000 {
			p, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				// A bytes.Reader never fails, so every error is about the
				// file's content.
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("error %v does not wrap ErrFormat", err)
				}
				continue
			}
			if len(p.Data) > MaxRecordSize {
				t.Fatalf("packet of %d bytes", len(p.Data))
			}
			_, _ = ToEthernet(frame, p.LinkType, p.Data)
		}
	})
}

func BenchmarkNext(b *testing.B) {
	var pkts []synthPkt
	for i := range 1000 {
		pkts = append(pkts, synthPkt{sec: uint32(i), data: etherFrame(0x0800, ipv4Packet(byte(i)))})
	}
	classic := buildClassic(binary.LittleEndian, false, 1, pkts)
	w := &ngWriter{order: binary.LittleEndian}
	w.shb()
	w.idb(1, 0, -1, 0)
	for _, p := range pkts {
		w.epb(p)
	}
	for _, c := range []struct {
		name string
		in   []byte
	}{{"pcap", classic}, {"pcapng", w.b}} {
		b.Run(c.name, func(b *testing.B) {
			br := bytes.NewReader(c.in)
			r, _ := NewReader(br)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Next(); err == io.EOF {
					br.Reset(c.in)
					r, _ = NewReader(br)
				}
			}
		})
	}
}
