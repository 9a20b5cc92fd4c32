package d4server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

// Spec d4.md §1 test vectors.
const (
	vecKey    = "private key to change"
	vecUUID   = "1d940331-9fc9-4381-8fc9-3b624db66025"
	vecMeta   = "01021d9403319fc943818fc93b624db6602500f15365000000007f60eedb85134b042be23b70a005e5b0f9d65a0a10c468359f7e0ebd3437f539130000007b2274797065223a226d616c747261696c227d"
	vecData   = "line one\nline two\n"
	vecDataTS = 1700000001
	vecMAC254 = "b8201d084d81ae85a392a2b755e5fc1801d67f09961096ab7672341ecf8e1ba1"
)

// memStream is a Stream over fixed bytes, for driving HandleStream without a
// transport (interop and fuzz tests).
type memStream struct{ r *bytes.Reader }

func (m memStream) Read(p []byte) (int, error)    { return m.r.Read(p) }
func (memStream) SetReadDeadline(time.Time) error { return nil }

// session runs HandleStream over b and returns the acks and the lines
// stored, in order.
type runResult struct {
	lines  []string
	done   uint64
	reason string // rejection reason, "" if none
}

func runBytes(t testing.TB, srv *Server, store *MemStore, b []byte) runResult {
	var res runResult
	srv.HandleStream(context.Background(), memStream{bytes.NewReader(b)}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1},
		func(kind AckKind, done uint64, reason string) error {
			res.done, res.reason = done, reason
			return nil
		})
	q := newPopper(store.Queue("maltrail", testQueue))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	for {
		v, err := q.Pop(ctx)
		if err != nil {
			return res
		}
		res.lines = append(res.lines, v)
	}
}

// vectorServer accepts the spec's vector sensor, with its clock at the
// vectors' time so their timestamps are within the window.
func vectorServer(t testing.TB) (*Server, *MemStore) {
	store := NewMemStore(0)
	if _, err := store.RegisterQueue(context.Background(), "maltrail", testQueue, ""); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: store, Mode: ModeRegistration, Keys: map[string][]byte{vecUUID: []byte(vecKey)},
		Now: func() time.Time { return time.Unix(1700000000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return srv, store
}

// signRaw sets the HMAC of an already laid-out frame by the spec's rule
// (whole frame, hmac field zeroed), for frames d4.Signer would not build
// (another version byte).
func signRaw(f []byte, key string) []byte {
	copy(f[26:58], make([]byte, 32))
	m := hmac.New(sha256.New, []byte(key))
	m.Write(f)
	copy(f[26:58], m.Sum(nil))
	return f
}

// TestInteropVectors: in the encode direction, xtrail's frames are the
// spec's vector bytes (what d4-core's server verifies); in the decode
// direction, xtrail's server accepts exactly those bytes and stores the
// lines as d4-core's maltrail handler does.
func TestInteropVectors(t *testing.T) {
	u, _ := d4.ParseUUID(vecUUID)
	sg := d4.NewSigner([]byte(vecKey))
	meta := sg.AppendFrame(nil, d4.TypeMeta, u, 1700000000, []byte(`{"type":"maltrail"}`))
	if got := hex.EncodeToString(meta); got != vecMeta {
		t.Fatalf("type-2 frame\n got %s\nwant %s", got, vecMeta)
	}
	data := sg.AppendFrame(nil, d4.TypeExtended, u, vecDataTS, []byte(vecData))
	if got := hex.EncodeToString(data[26:58]); got != vecMAC254 {
		t.Fatalf("type-254 hmac %s, want %s", got, vecMAC254)
	}

	srv, store := vectorServer(t)
	raw, _ := hex.DecodeString(vecMeta)
	res := runBytes(t, srv, store, append(raw, data...))
	if res.reason != "" || res.done != 2 || !slices.Equal(res.lines, []string{"line one", "line two"}) {
		t.Fatalf("vector session: %+v", res)
	}
	// One flipped payload bit, and the same frame is refused.
	bad := slices.Clone(data)
	bad[len(bad)-2] ^= 1
	res = runBytes(t, srv, store, append(slices.Clone(raw), bad...))
	if res.reason != ReasonHMAC || res.done != 1 || len(res.lines) != 0 {
		t.Fatalf("tampered frame: %+v", res)
	}
}

// TestInteropSessionRules: spec §2's session rules and d4-goclient's way of
// sending (§6.3), byte for byte.
func TestInteropSessionRules(t *testing.T) {
	u, _ := d4.ParseUUID(vecUUID)
	sg := d4.NewSigner([]byte(vecKey))
	ts := uint64(1700000000)
	frame := func(typ uint8, p string) []byte {
		ts++ // distinct timestamps: each case is a fresh capture
		return sg.AppendFrame(nil, typ, u, ts, []byte(p))
	}
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	cases := []struct {
		name   string
		stream []byte
		lines  []string
		reason string
	}{
		{"goclient: raw meta file with its newline, split at a small snaplen; lines not aligned to frames",
			cat(frame(2, "{\"type\":\n"), frame(2, "\"maltrail\"}\n"),
				frame(254, "a one\na t"), frame(254, "wo\n"), frame(254, "a three\r\n\n")),
			[]string{"a one", "a two", "a three\r"}, ""},
		{"newlines are deleted from the meta header, even inside the name (d4-core's rule)",
			cat(frame(2, "{\"type\":\"malt\n"), frame(2, "rail\"}"), frame(254, "n\n")), []string{"n"}, ""},
		{"extra meta keys", cat(frame(2, `{"type":"maltrail","encoding":"utf-8","tags":["x"]}`), frame(254, "b\n")),
			[]string{"b"}, ""},
		{"several type-2 frames after the header change nothing", cat(frame(2, `{"type":"maltrail"}`), frame(2, `junk`), frame(254, "c\n")),
			[]string{"c"}, ""},
		{"empty payload", cat(frame(2, `{"type":"maltrail"}`), frame(254, ""), frame(254, "d\n")), []string{"d"}, ""},
		{"a session starting with 254 (a reconnect without the meta header)", frame(254, "e\n"), nil, ReasonNoMetaHeader},
		{"254 then 2", cat(frame(2, `{"type":"maltrail"}`), frame(254, "f\n"), frame(2, `{"type":"maltrail"}`)),
			[]string{"f"}, ReasonTypeChange},
		{"type 1 (pcap) is not the maltrail path", frame(1, "pcap"), nil, ReasonUnsupportedType},
		{"another meta type", frame(2, `{"type":"ja3-jl"}`), nil, ReasonUnsupportedMeta},
		{"meta header without type", frame(2, `{"encoding":"x"}`), nil, ReasonBadMetaHeader},
		{"size over 1 000 000", func() []byte {
			f := frame(2, `{"type":"maltrail"}`)
			f[58], f[59], f[60], f[61] = 0x41, 0x42, 0x0f, 0 // 1 000 001
			return f
		}(), nil, ReasonTooLarge},
		{"the version byte is not checked", cat(func() []byte {
			f := frame(2, `{"type":"maltrail"}`)
			f[0] = 0xff
			return signRaw(f, vecKey)
		}(), frame(254, "g\n")), []string{"g"}, ""},
		{"a truncated frame stores nothing", cat(frame(2, `{"type":"maltrail"}`), frame(254, "h is cut\n")[:66]), nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, store := vectorServer(t)
			res := runBytes(t, srv, store, c.stream)
			if res.reason != c.reason || !slices.Equal(res.lines, c.lines) {
				t.Fatalf("got lines %q, rejection %q; want %q, %q", res.lines, res.reason, c.lines, c.reason)
			}
		})
	}
}

// FuzzHandleStream feeds any bytes to a session: it must never panic, acks
// only grow, at most one rejection ends the session, and nothing stored
// contains a newline or is empty.
func FuzzHandleStream(f *testing.F) {
	raw, _ := hex.DecodeString(vecMeta)
	u, _ := d4.ParseUUID(vecUUID)
	sg := d4.NewSigner([]byte(vecKey))
	data := sg.AppendFrame(nil, d4.TypeExtended, u, vecDataTS, []byte(vecData))
	f.Add(append(slices.Clone(raw), data...))
	f.Add(raw)
	f.Add(raw[:40])
	f.Add(append(slices.Clone(raw), sg.AppendFrame(nil, d4.TypeMeta, u, 1700000000, []byte("{}"))...))
	big := slices.Clone(raw)
	big[61] = 0x40
	f.Add(big)
	f.Add([]byte(strings.Repeat("\x01\xfe", 40)))
	srv, store := vectorServer(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var last uint64
		rejections := 0
		srv.HandleStream(context.Background(), memStream{bytes.NewReader(b)}, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1},
			func(kind AckKind, done uint64, reason string) error {
				if done < last || rejections > 0 {
					t.Fatalf("ack %d %d %q after %d (rejections %d)", kind, done, reason, last, rejections)
				}
				if kind == AckRejected {
					rejections++
				}
				last = done
				return nil
			})
		if last > uint64(len(b)/d4.HeaderSize) {
			t.Fatalf("%d frames acked from %d bytes", last, len(b))
		}
		q := newPopper(store.Queue("maltrail", testQueue))
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			v, err := q.Pop(ctx)
			cancel()
			if err != nil {
				break
			}
			if v == "" || strings.Contains(v, "\n") {
				t.Fatalf("stored %q", v)
			}
		}
	})
}

// FuzzMetaHeader: the meta-header parser on any bytes: never panics, and a
// name is returned only for a complete object with a string "type".
func FuzzMetaHeader(f *testing.F) {
	for _, s := range []string{`{"type":"maltrail"}`, `{"type":`, `{"type":3}`, `[]`, `null`, `{"type":"x","a":{"b":[1,2]}}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		name, complete, err := parseMetaHeader(b)
		if name != "" && (!complete || err != nil) {
			t.Fatalf("name %q with complete=%v err=%v", name, complete, err)
		}
		if !complete && err != nil {
			t.Fatalf("error %v on an incomplete header", err)
		}
	})
}

// FuzzLineSplitter: split points never change the lines (any chunking of
// the same bytes gives the same lines), and no line holds a '\n'.
func FuzzLineSplitter(f *testing.F) {
	f.Add([]byte("a\nb\n\nc\r\nd"), uint8(3))
	f.Add([]byte("\n\n\n"), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		split := func(size int) []string {
			var sp lineSplitter
			var out []string
			for rest := b; len(rest) > 0; {
				n := min(size, len(rest))
				for _, l := range sp.feed(rest[:n]) {
					out = append(out, string(l))
				}
				sp.shrink()
				rest = rest[n:]
			}
			return out
		}
		whole, chunked := split(len(b)+1), split(int(chunk)+1)
		if !slices.Equal(whole, chunked) {
			t.Fatalf("chunks of %d: %q, whole: %q", int(chunk)+1, chunked, whole)
		}
		for _, l := range whole {
			if l == "" || strings.Contains(l, "\n") {
				t.Fatalf("line %q", l)
			}
		}
	})
}

var _ io.Reader = memStream{}
