package dataplane

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
)

func FuzzRecordDecode(f *testing.F) {
	f.Add(make([]byte, RecordHeaderSize))
	seed := make([]byte, RecordHeaderSize+4)
	seed[9], seed[18] = 4, 4
	f.Add(seed)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := r.Decode(b); err != nil {
			return
		}
		if len(r.Payload) != int(r.CapLen) || RecordHeaderSize+len(r.Payload) > len(b) {
			t.Fatalf("payload %d bytes for cap_len %d in a %d-byte record", len(r.Payload), r.CapLen, len(b))
		}
		_ = r.SrcAddr().String() + r.DstAddr().String()
	})
}

// TestRecordLayout: Decode reads struct xt_rec as the compiler laid it out
// (the generated binding), field by field.
func TestRecordLayout(t *testing.T) {
	if n := binary.Size(xtrailXtRec{}); n != RecordHeaderSize {
		t.Fatalf("struct xt_rec is %d bytes, RecordHeaderSize %d", n, RecordHeaderSize)
	}
	in := xtrailXtRec{TsNs: 0x0102030405060708, Kind: KindDNS, Family: 6, L4proto: 17, Side: SideSrc,
		TrailType: TrailCIDR, TcpFlags: 0x12, Sport: 0xa1b2, Dport: 0xc3d4, CapLen: 3, OrigLen: 0xe5f6,
		Gen: 1, Scan: ScanInfection, Meta: 0x11223344, Ifindex: 0x55667788}
	for i := range in.Src {
		in.Src[i], in.Dst[i] = byte(i), byte(0xf0+i)
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &in); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("abc")
	var r Record
	if err := r.Decode(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	want := Record{TsNs: in.TsNs, Kind: in.Kind, Family: in.Family, L4Proto: in.L4proto, Side: in.Side,
		TrailType: in.TrailType, TCPFlags: in.TcpFlags, Sport: in.Sport, Dport: in.Dport, CapLen: in.CapLen,
		OrigLen: uint32(in.OrigLen), Gen: in.Gen, Scan: in.Scan, Meta: in.Meta, Ifindex: in.Ifindex, Src: in.Src, Dst: in.Dst,
		Payload: []byte("abc")}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("decoded %+v\nwant    %+v", r, want)
	}
}
