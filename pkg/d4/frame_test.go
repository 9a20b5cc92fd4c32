package d4

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

// Spec §1 test vectors.
const (
	vecKey  = "private key to change"
	vecUUID = "1d940331-9fc9-4381-8fc9-3b624db66025"
	vecMeta = "01 02 1d9403319fc943818fc93b624db66025 00f1536500000000 " +
		"7f60eedb85134b042be23b70a005e5b0f9d65a0a10c468359f7e0ebd3437f539 " +
		"13000000 7b2274797065223a226d616c747261696c227d"
	vec254HMAC = "b8201d084d81ae85a392a2b755e5fc1801d67f09961096ab7672341ecf8e1ba1"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func vecUUIDValue(t testing.TB) UUID {
	t.Helper()
	u, err := ParseUUID(vecUUID)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestVectorMetaFrame(t *testing.T) {
	want := mustHex(t, vecMeta)
	s := NewSigner([]byte(vecKey))
	got := s.AppendFrame(nil, TypeMeta, vecUUIDValue(t), 1700000000, []byte(`{"type":"maltrail"}`))
	if !bytes.Equal(got, want) {
		t.Fatalf("meta frame\n got %x\nwant %x", got, want)
	}
	if !s.Verify(got) {
		t.Fatal("Verify rejects the spec vector")
	}
	var h Header
	if err := h.Unmarshal(got); err != nil {
		t.Fatal(err)
	}
	if h.Version != 1 || h.Type != 2 || h.Timestamp != 1700000000 || h.Size != 19 || h.UUID.String() != vecUUID {
		t.Fatalf("decoded header %+v", h)
	}
	var back [HeaderSize]byte
	h.MarshalTo(back[:])
	if !bytes.Equal(back[:], got[:HeaderSize]) {
		t.Fatalf("MarshalTo(Unmarshal(x)) != x")
	}
}

func TestVectorExtendedFrame(t *testing.T) {
	s := NewSigner([]byte(vecKey))
	prefix := []byte("prefix")
	got := s.AppendFrame(prefix, TypeExtended, vecUUIDValue(t), 1700000001, []byte("line one\nline two\n"))
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatal("AppendFrame lost dst's content")
	}
	frame := got[len("prefix"):]
	if len(frame) != HeaderSize+18 {
		t.Fatalf("frame length %d", len(frame))
	}
	if h := hex.EncodeToString(frame[26:58]); h != vec254HMAC {
		t.Fatalf("hmac %s, want %s", h, vec254HMAC)
	}
	if !s.Verify(frame) {
		t.Fatal("Verify rejects the spec vector")
	}
}

func TestVerifyRejects(t *testing.T) {
	s := NewSigner([]byte(vecKey))
	good := s.AppendFrame(nil, TypeExtended, vecUUIDValue(t), 1700000001, []byte("line one\nline two\n"))
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		if s.Verify(bad) {
			t.Fatalf("Verify accepts a frame with byte %d flipped", i)
		}
	}
	if s.Verify(good[:len(good)-1]) {
		t.Fatal("Verify accepts a truncated frame")
	}
	if s.Verify(good[:10]) || s.Verify(nil) {
		t.Fatal("Verify accepts a short buffer")
	}
	if NewSigner([]byte("other key")).Verify(good) {
		t.Fatal("Verify accepts another key")
	}
	// Verify must not modify the frame it checks.
	before := bytes.Clone(good)
	s.Verify(good)
	if !bytes.Equal(before, good) {
		t.Fatal("Verify modified the frame")
	}
}

func TestSignerKeyCopied(t *testing.T) {
	key := []byte(vecKey)
	s := NewSigner(key)
	key[0] = 'X'
	got := s.AppendFrame(nil, TypeMeta, vecUUIDValue(t), 1700000000, []byte(`{"type":"maltrail"}`))
	if !bytes.Equal(got, mustHex(t, vecMeta)) {
		t.Fatal("Signer depends on the caller's key slice")
	}
}

func TestParseUUID(t *testing.T) {
	want := vecUUIDValue(t)
	for _, s := range []string{vecUUID, "1d9403319fc943818fc93b624db66025", strings.ToUpper(vecUUID)} {
		u, err := ParseUUID(s)
		if err != nil || u != want {
			t.Errorf("ParseUUID(%q) = %v, %v", s, u, err)
		}
	}
	if want.String() != vecUUID || want.Hex() != "1d9403319fc943818fc93b624db66025" || !want.IsV4() {
		t.Fatalf("String %s Hex %s IsV4 %v", want, want.Hex(), want.IsV4())
	}
	for _, s := range []string{"", "1d940331", "1d940331-9fc9-4381-8fc9-3b624db6602", "1d940331x9fc9-4381-8fc9-3b624db66025",
		"1d9403319fc943818fc93b624db6602g", "{1d940331-9fc9-4381-8fc9-3b624db66025}", "1d94033-19fc9-4381-8fc9-3b624db66025"} {
		if _, err := ParseUUID(s); err == nil {
			t.Errorf("ParseUUID(%q) accepted", s)
		}
	}
	v1, _ := ParseUUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
	if v1.IsV4() {
		t.Error("a v1 uuid is reported as v4")
	}
	badVariant, _ := ParseUUID("1d940331-9fc9-4381-cfc9-3b624db66025")
	if badVariant.IsV4() {
		t.Error("variant 11 is reported as v4")
	}
}

func TestNewUUIDv4(t *testing.T) {
	seen := map[UUID]bool{}
	for range 100 {
		u, err := NewUUIDv4()
		if err != nil {
			t.Fatal(err)
		}
		if !u.IsV4() || seen[u] {
			t.Fatalf("bad or repeated uuid %s", u)
		}
		seen[u] = true
		if p, err := ParseUUID(u.String()); err != nil || p != u {
			t.Fatalf("round trip %s: %v %v", u, p, err)
		}
	}
}

func TestHeaderUnmarshalShort(t *testing.T) {
	var h Header
	if err := h.Unmarshal(make([]byte, HeaderSize-1)); err == nil {
		t.Fatal("short header accepted")
	}
}

func TestAppendFrameAllocs(t *testing.T) {
	s := NewSigner([]byte(vecKey))
	u := vecUUIDValue(t)
	payload := bytes.Repeat([]byte("x"), 4096)
	buf := make([]byte, 0, HeaderSize+len(payload))
	allocs := testing.AllocsPerRun(100, func() {
		buf = s.AppendFrame(buf[:0], TypeExtended, u, 1, payload)
		if !s.Verify(buf) {
			t.Fatal("verify")
		}
	})
	if allocs != 0 {
		t.Fatalf("AppendFrame+Verify allocate %.1f times per call", allocs)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, n := range []int{200, 16 << 10} {
		b.Run(sizeName(n), func(b *testing.B) {
			s := NewSigner([]byte(vecKey))
			u := vecUUIDValue(b)
			payload := bytes.Repeat([]byte("x"), n)
			buf := make([]byte, 0, HeaderSize+n)
			b.ReportAllocs()
			b.SetBytes(int64(HeaderSize + n))
			for b.Loop() {
				buf = s.AppendFrame(buf[:0], TypeExtended, u, 1700000001, payload)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	s := NewSigner([]byte(vecKey))
	frame := s.AppendFrame(nil, TypeExtended, vecUUIDValue(b), 1700000001, bytes.Repeat([]byte("x"), 16<<10))
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if !s.Verify(frame) {
			b.Fatal("verify")
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
