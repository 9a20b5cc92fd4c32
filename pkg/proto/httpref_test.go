package proto

import (
	"bytes"
	"testing"
)

// refParseHTTPRequest is ParseHTTPRequest as it was before it walked the
// lines by their first byte and found CRLFs through IndexByte: the
// reference the parser's answers are checked against.
func refParseHTTPRequest(b []byte, r *HTTPRequest) error {
	*r = HTTPRequest{payload: b, fwdPos: [3]int{-1, -1, -1}}
	i := bytes.Index(b, crlf)
	if i < 0 {
		return errHTTPLine
	}
	line := b[:i]
	if bytes.Count(line, []byte{' '}) != 2 || !bytes.Contains(line, spHTTP) {
		return errHTTPLineForm
	}
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := sp1 + 1 + bytes.IndexByte(line[sp1+1:], ' ')
	if sp1 == 0 || sp2 == sp1+1 {
		return errHTTPLineForm
	}
	r.Method = line[:sp1:sp1]
	r.Path = line[sp1+1 : sp2 : sp2]
	r.Version = line[sp2+1 : i : i]

	// Maltrail finds "\r\nHost:", "\r\nUser-Agent:", "\r\nContent-Type:"
	// and "\r\n\r\n" with separate searches of the whole payload. Each
	// occurrence starts at a CRLF and the request line holds none, so one
	// walk over the CRLFs from the request line's own finds the same first
	// occurrences, and a value ends at the CRLF the walk visits next.
	hostAt, uaAt, ctAt := -1, -1, -1 // value starts awaiting their CRLF
	var uaSeen, ctSeen bool
	for at := i; ; {
		if hostAt >= 0 {
			r.Host = refTrimmedValue(b[hostAt:at])
			hostAt = -1
		}
		if uaAt >= 0 {
			r.UserAgent = refTrimmedValue(b[uaAt:at])
			uaAt = -1
		}
		if ctAt >= 0 {
			r.ContentType = refTrimmedValue(b[ctAt:at])
			ctAt = -1
		}
		line := b[at+2:]
		switch {
		case r.Body == nil && bytes.HasPrefix(line, crlf):
			r.Body = b[at+4:]
		case !r.HostFound && bytes.HasPrefix(line, hdrHost[2:]):
			r.HostFound = true
			hostAt = at + len(hdrHost)
		case !uaSeen && bytes.HasPrefix(line, hdrUserAgent[2:]):
			uaSeen = true
			uaAt = at + len(hdrUserAgent)
		case !ctSeen && bytes.HasPrefix(line, hdrContentType[2:]):
			ctSeen = true
			ctAt = at + len(hdrContentType)
		}
		next := bytes.Index(line, crlf)
		if next < 0 {
			break // a value still awaiting its CRLF stays nil, as in Maltrail
		}
		at += 2 + next
	}
	return nil
}

// refTrimmedValue is trimmedValue by the former trimSpace, a byte at a
// time from each end by isStripSpace.
func refTrimmedValue(b []byte) []byte {
	for len(b) > 0 && isStripSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isStripSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b[:len(b):len(b)]
}

// TestTrimSpace: trimSpace strips what the former trim did, for every
// byte at either end.
func TestTrimSpace(t *testing.T) {
	for c := range 256 {
		for _, s := range [][]byte{{byte(c)}, {byte(c), 'x', byte(c)}, {byte(c), byte(c), 'x', ' ', byte(c)}, {' ', byte(c), ' '}, {' ', byte(c), 'x'}, {' ', 'x', byte(c)}, {' ', byte(c)}} {
			if got, want := trimmedValue(s), refTrimmedValue(s); !bytes.Equal(got, want) {
				t.Fatalf("trimmedValue(%q) = %q, want %q", s, got, want)
			}
		}
	}
}

// sameRequest fails when ParseHTTPRequest and the reference disagree on
// b: the error and every field.
func sameRequest(t *testing.T, b []byte) {
	t.Helper()
	var got, want HTTPRequest
	gerr, werr := ParseHTTPRequest(b, &got), refParseHTTPRequest(b, &want)
	if gerr != werr {
		t.Fatalf("ParseHTTPRequest(%q): error %v, reference %v", b, gerr, werr)
	}
	if gerr != nil {
		return
	}
	for i, f := range [][2][]byte{{got.Method, want.Method}, {got.Path, want.Path}, {got.Version, want.Version},
		{got.Host, want.Host}, {got.UserAgent, want.UserAgent}, {got.ContentType, want.ContentType}, {got.Body, want.Body},
		{got.ForwardedFor(), want.ForwardedFor()}} {
		if !bytes.Equal(f[0], f[1]) || (f[0] == nil) != (f[1] == nil) {
			t.Fatalf("ParseHTTPRequest(%q): field %d %q, reference %q", b, i, f[0], f[1])
		}
	}
	if got.HostFound != want.HostFound {
		t.Fatalf("ParseHTTPRequest(%q): HostFound %v, reference %v", b, got.HostFound, want.HostFound)
	}
}

// FuzzParseHTTPRequestRef: on any payload the parser answers as the
// reference does.
func FuzzParseHTTPRequestRef(f *testing.F) {
	httpSeeds(f)
	for _, s := range []string{"GET  HTTP/1.1\r\n", "GET / HTTP/1.1 \r\n", "GET /a HTTP/1.1\nHost: x\r\n\r\n", "\nGET / HTTP/1.1\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nUser-Agent: c\r\n", "A B HTTP/\r\n\r\n\r\n\r\nContent-Type: x\r\n", "GET /HTTP/ x\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { sameRequest(t, b) })
}
