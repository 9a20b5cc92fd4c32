package d4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// testFrames returns the two spec vector frames plus an empty-payload one.
func testFrames(t testing.TB) [][]byte {
	t.Helper()
	s := NewSigner([]byte(vecKey))
	u := vecUUIDValue(t)
	return [][]byte{
		s.AppendFrame(nil, TypeMeta, u, 1700000000, []byte(`{"type":"maltrail"}`)),
		s.AppendFrame(nil, TypeExtended, u, 1700000001, []byte("line one\nline two\n")),
		s.AppendFrame(nil, TypeExtended, u, 1700000002, nil),
		s.AppendFrame(nil, TypeExtended, u, 1700000003, bytes.Repeat([]byte("big line\n"), 2000)),
	}
}

func readAll(t *testing.T, r *Reader, frames [][]byte) {
	t.Helper()
	s := NewSigner([]byte(vecKey))
	for i, want := range frames {
		h, p, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !bytes.Equal(r.Frame(), want) || !bytes.Equal(p, want[HeaderSize:]) || int(h.Size) != len(p) {
			t.Fatalf("frame %d differs", i)
		}
		if !s.Verify(r.Frame()) {
			t.Fatalf("frame %d: hmac", i)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("EOF not sticky: %v", err)
	}
	if r.Frame() != nil {
		t.Fatal("Frame after EOF not nil")
	}
}

func TestReaderConcatenated(t *testing.T) {
	frames := testFrames(t)
	readAll(t, NewReader(bytes.NewReader(bytes.Join(frames, nil)), 0), frames)
}

func TestReaderOneByte(t *testing.T) {
	frames := testFrames(t)
	readAll(t, NewReader(iotest.OneByteReader(bytes.NewReader(bytes.Join(frames, nil))), 0), frames)
	readAll(t, NewReader(iotest.HalfReader(bytes.NewReader(bytes.Join(frames, nil))), 0), frames)
	readAll(t, NewReader(iotest.DataErrReader(bytes.NewReader(bytes.Join(frames, nil))), 0), frames)
}

func TestReaderTooLarge(t *testing.T) {
	frames := testFrames(t)
	// A reader whose only content is a header claiming 4 GiB: the reader
	// must refuse it before trying to read (or allocate) the payload.
	hdr := bytes.Clone(frames[1][:HeaderSize])
	binary.LittleEndian.PutUint32(hdr[58:], 0xffffffff)
	stream := append(bytes.Clone(frames[0]), hdr...)
	r := NewReader(bytes.NewReader(stream), 0)
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	h, p, err := r.Next()
	var fe *FrameError
	if !errors.As(err, &fe) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want *FrameError ErrTooLarge", err)
	}
	if fe.Header.Size != 0xffffffff || h.Size != 0xffffffff || p != nil || fe.Max != MaxPayload {
		t.Fatalf("FrameError %+v", fe)
	}
	if cap(r.buf) > HeaderSize+4096 {
		t.Fatalf("buffer grew to %d", cap(r.buf))
	}
	if _, _, err2 := r.Next(); err2 != err {
		t.Fatalf("error not sticky: %v", err2)
	}
	if err.Error() == "" {
		t.Fatal("empty message")
	}

	// Exactly at the limit is fine; one above is not.
	r = NewReader(bytes.NewReader(frames[1]), 18)
	if _, _, err := r.Next(); err != nil {
		t.Fatalf("size == max: %v", err)
	}
	r = NewReader(bytes.NewReader(frames[1]), 17)
	if _, _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("size == max+1: %v", err)
	}
}

func TestReaderTruncated(t *testing.T) {
	frames := testFrames(t)
	stream := append(bytes.Clone(frames[0]), frames[1]...)
	for cut := len(frames[0]) + 1; cut < len(stream); cut++ {
		r := NewReader(bytes.NewReader(stream[:cut]), 0)
		if _, _, err := r.Next(); err != nil {
			t.Fatalf("cut %d, first frame: %v", cut, err)
		}
		if _, _, err := r.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("cut %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
		if r.Frame() != nil {
			t.Fatalf("cut %d: Frame after error", cut)
		}
	}
	if _, _, err := NewReader(bytes.NewReader(nil), 0).Next(); err != io.EOF {
		t.Fatalf("empty stream: %v", err)
	}
}

var errTransient = errors.New("deadline")

// idleThenData fails once with errTransient before delivering data, like a
// read deadline expiring on an idle connection.
type idleThenData struct {
	failed bool
	r      io.Reader
}

func (i *idleThenData) Read(p []byte) (int, error) {
	if !i.failed {
		i.failed = true
		return 0, errTransient
	}
	return i.r.Read(p)
}

func TestReaderErrorBetweenFramesNotSticky(t *testing.T) {
	frames := testFrames(t)
	r := NewReader(&idleThenData{r: bytes.NewReader(frames[0])}, 0)
	if _, _, err := r.Next(); !errors.Is(err, errTransient) {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := r.Next(); err != nil {
		t.Fatalf("after a transient error at a boundary: %v", err)
	}
	// Mid-frame the same error is fatal: the stream is out of sync.
	r = NewReader(io.MultiReader(bytes.NewReader(frames[1][:70]), &idleThenData{r: bytes.NewReader(frames[1][70:])}), 0)
	if _, _, err := r.Next(); !errors.Is(err, errTransient) {
		t.Fatalf("err = %v", err)
	}
	if _, _, err := r.Next(); !errors.Is(err, errTransient) {
		t.Fatalf("mid-frame error not sticky: %v", err)
	}
}

func TestReaderReusesBuffer(t *testing.T) {
	frames := testFrames(t)
	stream := bytes.Join([][]byte{frames[1], frames[1], frames[1]}, nil)
	r := NewReader(bytes.NewReader(stream), 0)
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1, func() {
		if _, _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Next allocates %.1f per frame", allocs)
	}
}

func FuzzReader(f *testing.F) {
	frames := testFrames(f)
	all := bytes.Join(frames, nil)
	f.Add(all)
	f.Add(frames[0])
	f.Add(frames[0][:HeaderSize-1])
	f.Add(frames[1][:HeaderSize+3])
	huge := bytes.Clone(frames[1][:HeaderSize])
	binary.LittleEndian.PutUint32(huge[58:], 0xffffffff)
	f.Add(huge)
	f.Add([]byte{})
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), limit)
		consumed := 0
		for {
			h, p, err := r.Next()
			if cap(r.buf) > HeaderSize+limit {
				t.Fatalf("buffer capacity %d beyond the limit", cap(r.buf))
			}
			if err != nil {
				if errors.Is(err, ErrTooLarge) && h.Size <= limit {
					t.Fatalf("ErrTooLarge for size %d", h.Size)
				}
				if err == io.EOF && consumed != len(data) {
					t.Fatalf("EOF after %d of %d bytes", consumed, len(data))
				}
				return
			}
			fr := r.Frame()
			if int(h.Size) != len(p) || len(fr) != HeaderSize+len(p) || !bytes.Equal(fr, data[consumed:consumed+len(fr)]) {
				t.Fatalf("frame does not match the input at %d", consumed)
			}
			var back [HeaderSize]byte
			h.MarshalTo(back[:])
			if !bytes.Equal(back[:], fr[:HeaderSize]) {
				t.Fatal("header round trip")
			}
			consumed += len(fr)
		}
	})
}

// repeatReader serves the same bytes forever, so the benchmark measures
// Next rather than a growing input buffer.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

func BenchmarkReaderNext(b *testing.B) {
	s := NewSigner([]byte(vecKey))
	frame := s.AppendFrame(nil, TypeExtended, vecUUIDValue(b), 1, bytes.Repeat([]byte("l\n"), 8000))
	r := NewReader(&repeatReader{data: frame}, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
		if !s.Verify(r.Frame()) {
			b.Fatal("hmac")
		}
	}
}
