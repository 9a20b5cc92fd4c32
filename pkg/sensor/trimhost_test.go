package sensor

import (
	"bytes"
	"testing"

	"github.com/xtrail/xtrail/pkg/proto"
)

// TestTrimHost: on every Host value ParseHTTPRequest gives for values of
// letters, ASCII and Unicode spaces, trimHost is bytes.TrimSpace.
func TestTrimHost(t *testing.T) {
	pieces := []string{"a", "B.", " ", "\t", "\x1c", "\x0b", "\u0085", "\u00a0", "\u3000", "\u2000", "\xc2", "\xff", "é"}
	var walk func(v string, depth int)
	n := 0
	walk = func(v string, depth int) {
		var h proto.HTTPRequest
		if err := proto.ParseHTTPRequest([]byte("GET / HTTP/1.1\r\nHost:"+v+"\r\n\r\n"), &h); err != nil {
			t.Fatal(err)
		}
		n++
		if got, want := trimHost(h.Host), bytes.TrimSpace(h.Host); !bytes.Equal(got, want) {
			t.Fatalf("trimHost(%q) = %q, want %q", h.Host, got, want)
		}
		if depth == 0 {
			return
		}
		for _, p := range pieces {
			walk(v+p, depth-1)
		}
	}
	walk("", 4)
	if n < 20000 {
		t.Fatalf("%d values", n)
	}
}
