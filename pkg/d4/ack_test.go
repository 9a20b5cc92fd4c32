package d4

import (
	"bytes"
	"testing"
)

func TestAckRoundTrip(t *testing.T) {
	for _, a := range []Ack{{AckStored, 0}, {AckStored, 1}, {AckRejected, 7}, {AckStored, 1<<64 - 1}} {
		b := AppendAck(nil, a)
		if len(b) != AckSize {
			t.Fatalf("%+v: %d bytes", a, len(b))
		}
		got, err := ParseAck(b)
		if err != nil || got != a {
			t.Fatalf("ParseAck(AppendAck(%+v)) = %+v, %v", a, got, err)
		}
	}
	// the documented layout, byte for byte
	want := []byte{'D', '4', 'A', 'K', 1, 0, 0, 0, 0x2a, 0x01, 0, 0, 0, 0, 0, 0}
	if got := AppendAck(nil, Ack{AckStored, 0x12a}); !bytes.Equal(got, want) {
		t.Fatalf("AppendAck = % x, want % x", got, want)
	}
}

func TestParseAckRefuses(t *testing.T) {
	good := AppendAck(nil, Ack{AckStored, 3})
	for name, mutate := range map[string]func([]byte) []byte{
		"short":    func(b []byte) []byte { return b[:AckSize-1] },
		"magic":    func(b []byte) []byte { b[0] = 'X'; return b },
		"kind 0":   func(b []byte) []byte { b[4] = 0; return b },
		"kind 3":   func(b []byte) []byte { b[4] = 3; return b },
		"reserved": func(b []byte) []byte { b[6] = 1; return b },
	} {
		b := mutate(append([]byte(nil), good...))
		if a, err := ParseAck(b); err == nil {
			t.Errorf("%s: ParseAck(% x) = %+v, want an error", name, b, a)
		}
	}
}

func FuzzParseAck(f *testing.F) {
	f.Add(AppendAck(nil, Ack{AckStored, 1}))
	f.Add(AppendAck(nil, Ack{AckRejected, 0}))
	f.Add([]byte("D4AK"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAck(b)
		if err != nil {
			return
		}
		// whatever parses re-encodes to the same 16 bytes
		if got := AppendAck(nil, a); !bytes.Equal(got, b[:AckSize]) {
			t.Fatalf("re-encoded % x, input % x", got, b[:AckSize])
		}
	})
}
