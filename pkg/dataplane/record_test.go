package dataplane

import "testing"

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
