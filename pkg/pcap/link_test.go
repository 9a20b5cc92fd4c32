package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestToEthernet(t *testing.T) {
	v4, v6 := ipv4Packet(1), ipv6Packet(2)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	sll := func(proto uint16) []byte {
		return []byte{0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, byte(proto >> 8), byte(proto)}
	}
	sll2 := func(proto uint16) []byte {
		return []byte{byte(proto >> 8), byte(proto), 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0}
	}
	for _, c := range []struct {
		name     string
		link     uint32
		in       []byte
		etype    uint16 // 0: frame returned as is
		payload  []byte
		wantKind error
	}{
		{"ethernet", LinkTypeEthernet, etherFrame(0x0800, v4), 0, nil, nil},
		{"ethernet arp passes as is", LinkTypeEthernet, etherFrame(0x0806, nil), 0, nil, nil},
		{"ethernet runt", LinkTypeEthernet, []byte{1, 2, 3}, 0, nil, ErrShortFrame},
		{"raw12 v4", LinkTypeRaw, v4, 0x0800, v4, nil},
		{"raw12 v6", LinkTypeRaw, v6, 0x86dd, v6, nil},
		{"raw101 v4", LinkTypeRawIP, v4, 0x0800, v4, nil},
		{"raw101 v6", LinkTypeRawIP, v6, 0x86dd, v6, nil},
		{"raw version 5", LinkTypeRaw, []byte{0x50, 0}, 0, nil, ErrNotIP},
		{"raw empty", LinkTypeRaw, nil, 0, nil, ErrShortFrame},
		{"ipv4 linktype", LinkTypeIPv4, v4, 0x0800, v4, nil},
		{"ipv4 linktype with v6", LinkTypeIPv4, v6, 0, nil, ErrNotIP},
		{"ipv6 linktype", LinkTypeIPv6, v6, 0x86dd, v6, nil},
		{"ipv6 linktype with v4", LinkTypeIPv6, v4, 0, nil, ErrNotIP},
		{"sll v4", LinkTypeLinuxSLL, cat(sll(0x0800), v4), 0x0800, v4, nil},
		{"sll v6", LinkTypeLinuxSLL, cat(sll(0x86dd), v6), 0x86dd, v6, nil},
		{"sll vlan", LinkTypeLinuxSLL, cat(sll(0x8100), []byte{0, 100, 8, 0}, v4), 0x8100, cat([]byte{0, 100, 8, 0}, v4), nil},
		{"sll arp", LinkTypeLinuxSLL, cat(sll(0x0806), make([]byte, 28)), 0, nil, ErrNotIP},
		{"sll short", LinkTypeLinuxSLL, sll(0x0800)[:15], 0, nil, ErrShortFrame},
		{"sll2 v4", LinkTypeLinuxSLL2, cat(sll2(0x0800), v4), 0x0800, v4, nil},
		{"sll2 v6", LinkTypeLinuxSLL2, cat(sll2(0x86dd), v6), 0x86dd, v6, nil},
		{"sll2 arp", LinkTypeLinuxSLL2, cat(sll2(0x0806), make([]byte, 28)), 0, nil, ErrNotIP},
		{"sll2 short", LinkTypeLinuxSLL2, sll2(0x0800)[:19], 0, nil, ErrShortFrame},
		{"null le v4", LinkTypeNull, cat(le32(2), v4), 0x0800, v4, nil},
		{"null be v4", LinkTypeNull, cat(be32(2), v4), 0x0800, v4, nil},
		{"null le v6 bsd", LinkTypeNull, cat(le32(24), v6), 0x86dd, v6, nil},
		{"null le v6 freebsd", LinkTypeNull, cat(le32(28), v6), 0x86dd, v6, nil},
		{"null be v6 darwin", LinkTypeNull, cat(be32(30), v6), 0x86dd, v6, nil},
		{"null other family", LinkTypeNull, cat(le32(7), v4), 0, nil, ErrNotIP},
		{"null short", LinkTypeNull, []byte{2, 0}, 0, nil, ErrShortFrame},
		{"loop v4", LinkTypeLoop, cat(be32(2), v4), 0x0800, v4, nil},
		{"loop v6", LinkTypeLoop, cat(be32(24), v6), 0x86dd, v6, nil},
		{"loop host order is wrong", LinkTypeLoop, cat(le32(2), v4), 0, nil, ErrNotIP},
		{"ppp v4", LinkTypePPP, cat([]byte{0xff, 0x03, 0x00, 0x21}, v4), 0x0800, v4, nil},
		{"ppp v6", LinkTypePPP, cat([]byte{0xff, 0x03, 0x00, 0x57}, v6), 0x86dd, v6, nil},
		{"ppp lcp", LinkTypePPP, cat([]byte{0xff, 0x03, 0xc0, 0x21}, v4), 0, nil, ErrNotIP},
		{"ppp short", LinkTypePPP, []byte{0xff, 0x03, 0x00}, 0, nil, ErrShortFrame},
		{"unknown link type", 147, v4, 0, nil, ErrUnsupportedLinkType},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ToEthernet(make([]byte, 0, 256), c.link, c.in)
			if c.wantKind != nil {
				var le *LinkError
				if !errors.As(err, &le) || !errors.Is(err, c.wantKind) || le.LinkType != c.link {
					t.Fatalf("err = %v, want a *LinkError of kind %v", err, c.wantKind)
				}
				if got != nil {
					t.Errorf("frame returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.etype == 0 {
				if !bytes.Equal(got, c.in) || &got[0] != &c.in[0] {
					t.Errorf("Ethernet frame not returned as is")
				}
				return
			}
			want := cat(make([]byte, 12), []byte{byte(c.etype >> 8), byte(c.etype)}, c.payload)
			if !bytes.Equal(got, want) {
				t.Errorf("frame\n got % x\nwant % x", got, want)
			}
		})
	}
}

func TestToEthernetAllocs(t *testing.T) {
	dst := make([]byte, 0, 2048)
	in := append([]byte{0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00}, ipv4Packet(1)...)
	raw := ipv4Packet(2)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = ToEthernet(dst, LinkTypeLinuxSLL, in)
		_, _ = ToEthernet(dst, LinkTypeRaw, raw)
	}); n != 0 {
		t.Errorf("ToEthernet allocates %.1f times with a large enough dst", n)
	}
}

func BenchmarkToEthernetRaw(b *testing.B) {
	dst := make([]byte, 0, 2048)
	raw := ipv4Packet(2)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ToEthernet(dst, LinkTypeRaw, raw)
	}
}

func FuzzToEthernet(f *testing.F) {
	v4 := ipv4Packet(1)
	f.Add(uint32(1), append(make([]byte, 12), append([]byte{8, 0}, v4...)...))
	f.Add(uint32(12), v4)
	f.Add(uint32(229), ipv6Packet(1))
	f.Add(uint32(113), append([]byte{0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x86, 0xdd}, ipv6Packet(3)...))
	f.Add(uint32(276), append([]byte{8, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0}, v4...))
	f.Add(uint32(0), append([]byte{2, 0, 0, 0}, v4...))
	f.Add(uint32(108), append([]byte{0, 0, 0, 30}, v4...))
	f.Add(uint32(9), append([]byte{0xff, 3, 0, 0x57}, v4...))
	f.Add(uint32(7), []byte{})
	dst := make([]byte, 0, 64)
	f.Fuzz(func(t *testing.T, link uint32, data []byte) {
		got, err := ToEthernet(dst, link, data)
		if err != nil {
			var le *LinkError
			if !errors.As(err, &le) || le.LinkType != link {
				t.Fatalf("error %v is not a *LinkError for link type %d", err, link)
			}
			return
		}
		if len(got) < EthernetHeaderLen {
			t.Fatalf("frame of %d bytes", len(got))
		}
		if link == LinkTypeEthernet {
			if !bytes.Equal(got, data) {
				t.Fatal("Ethernet frame modified")
			}
			return
		}
		if !followedEtherType(binary.BigEndian.Uint16(got[12:14])) {
			t.Fatalf("EtherType % x", got[12:14])
		}
		if !bytes.HasSuffix(data, got[EthernetHeaderLen:]) {
			t.Fatal("payload is not the tail of the input")
		}
	})
}
