package proto

import "bytes"

var (
	crlf      = []byte("\r\n")
	crlfcrlf  = []byte("\r\n\r\n")
	httpSlash = []byte("HTTP/")
	spHTTP    = []byte(" HTTP/")

	hdrHost        = []byte("\r\nHost:")
	hdrUserAgent   = []byte("\r\nUser-Agent:")
	hdrContentType = []byte("\r\nContent-Type:")
	titleOpen      = []byte("<title>")
	titleClose     = []byte("</title>")

	// The forwarded-for headers, matched case-insensitively as Maltrail's
	// `(?i)\b(CF-Connecting-IP|True-Client-IP|X-Forwarded-For):\s*([0-9.]+)`.
	fwdNames = [3][]byte{[]byte("x-forwarded-for"), []byte("cf-connecting-ip"), []byte("true-client-ip")}
)

var (
	errHTTPLine     = newErr("http request line", ErrTruncated)
	errHTTPLineForm = newErr("http request line: not METHOD SP PATH SP HTTP/…", ErrMalformed)
	errHTTPStatus   = newErr("http status line", ErrTruncated)
	errHTTPNotResp  = newErr("http response: does not start with HTTP/", ErrMalformed)
	errHTTPStatusF  = newErr("http status line: not HTTP/x SP 3DIGIT", ErrMalformed)
)

// HTTPRequest is the start of an HTTP request as Maltrail reads it. Every
// slice aliases the parsed payload; a nil slice means "absent".
type HTTPRequest struct {
	Method  []byte
	Path    []byte // as on the wire; Maltrail lowercases it before matching
	Version []byte // the third field of the request line, e.g. "HTTP/1.1"

	// HostFound reports that "\r\nHost:" occurs in the payload. Host is
	// its value, trimmed, and is set only when a CRLF ends it: Maltrail
	// then uses it, while a Host line cut by the snapshot leaves the host
	// at dst_ip without triggering the missing-Host heuristic. Host keeps
	// its case and any ":80"; the caller lowercases and strips it.
	HostFound bool
	Host      []byte

	// UserAgent and ContentType come from "\r\nUser-Agent:" and
	// "\r\nContent-Type:", matched case-sensitively anywhere in the
	// payload and set only when CRLF-terminated, trimmed, as Maltrail
	// reads them. The User-Agent is still percent-encoded: Maltrail
	// unquotes it and strips it again.
	UserAgent   []byte
	ContentType []byte

	// Body is what follows the first "\r\n\r\n", possibly empty; nil when
	// the snapshot holds no end of headers.
	Body []byte

	// The forwarded-for headers are searched only when asked for
	// (Forwarded, ForwardedFor): only an event's source column needs
	// them, and the search walks every colon of the payload.
	payload []byte
	fwdDone bool
	fwd     [3][]byte // X-Forwarded-For, CF-Connecting-IP, True-Client-IP values
	fwdPos  [3]int    // payload offsets of the three matches, -1 if absent
}

// Forwarded returns the values of X-Forwarded-For, CF-Connecting-IP and
// True-Client-IP: the run of digits and dots after "Name:" and optional
// whitespace, from the first occurrence of each name (case-insensitive,
// at a word boundary) in the payload, exactly what Maltrail's regex
// captures. A header whose value does not start with a digit or dot is
// absent (nil). The payload is searched at the first call after a parse.
func (r *HTTPRequest) Forwarded() (xff, cfConnectingIP, trueClientIP []byte) {
	r.findForwarded()
	return r.fwd[0], r.fwd[1], r.fwd[2]
}

// ForwardedFor returns the forwarded-for address Maltrail would pick: the
// value of whichever of X-Forwarded-For, CF-Connecting-IP and
// True-Client-IP occurs first in the payload, or nil.
func (r *HTTPRequest) ForwardedFor() []byte {
	r.findForwarded()
	best := -1
	for i, p := range r.fwdPos {
		if p >= 0 && (best < 0 || p < r.fwdPos[best]) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	return r.fwd[best]
}

func (r *HTTPRequest) findForwarded() {
	if !r.fwdDone {
		r.fwdDone = true
		r.fwd, r.fwdPos = [3][]byte{}, [3]int{-1, -1, -1}
		forwardedHeaders(r.payload, r)
	}
}

// ParseHTTPRequest parses the request start in b into r.
//
// The request line is the text before the first CRLF; as in Maltrail it
// must hold exactly two spaces and " HTTP/", and both the method and the
// path must be non-empty. Nothing else about the line is validated, since
// Maltrail accepts any such line. Headers are searched in the whole payload
// (Maltrail does not stop at the end of the headers).
func ParseHTTPRequest(b []byte, r *HTTPRequest) error {
	// field by field: the forwarded-for results are reset when searched
	r.Method, r.Path, r.Version = nil, nil, nil
	r.HostFound, r.Host, r.UserAgent, r.ContentType, r.Body = false, nil, nil, nil, nil
	r.payload, r.fwdDone = b, false
	i := indexCRLF(b)
	if i < 0 {
		return errHTTPLine
	}
	line := b[:i]
	// Exactly two spaces, and " HTTP/": with two spaces, it can only
	// start at one of them.
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errHTTPLineForm // no space, or an empty method
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return errHTTPLineForm // one space, or an empty path
	}
	sp2 += sp1 + 1
	if bytes.IndexByte(line[sp2+1:], ' ') >= 0 ||
		!hasSpHTTP(line[sp2:]) && !hasSpHTTP(line[sp1:]) {
		return errHTTPLineForm
	}
	r.Method = line[:sp1:sp1]
	r.Path = line[sp1+1 : sp2 : sp2]
	r.Version = line[sp2+1 : i : i]

	// Maltrail finds "\r\nHost:", "\r\nUser-Agent:", "\r\nContent-Type:"
	// and "\r\n\r\n" with separate searches of the whole payload. Each
	// occurrence starts at a CRLF and the request line holds none, so one
	// walk over the CRLFs from the request line's own finds the same first
	// occurrences, and a value ends at the CRLF the walk visits next. The
	// first byte of a line tells which of them it may start. At most one
	// value awaits its CRLF at a time.
	var pend *[]byte // the field it goes to, nil for none
	pendAt := 0      // its start
	var uaSeen, ctSeen bool
	for at := i; ; { // at: the '\r' of a CRLF
		if pend != nil {
			*pend = trimmedValue(b[pendAt:at])
			pend = nil
		}
		ls := at + 2 // the line's start
		if ls < len(b) {
			// constant-string compares, which the compiler inlines
			switch rest := b[ls:]; rest[0] {
			case '\r':
				if r.Body == nil && len(rest) > 1 && rest[1] == '\n' {
					r.Body = b[at+4:]
				}
			case 'H':
				if !r.HostFound && len(rest) >= len("Host:") && string(rest[:len("Host:")]) == "Host:" {
					r.HostFound = true
					pend, pendAt = &r.Host, at+len(hdrHost)
				}
			case 'U':
				if !uaSeen && len(rest) >= len("User-Agent:") && string(rest[:len("User-Agent:")]) == "User-Agent:" {
					uaSeen = true
					pend, pendAt = &r.UserAgent, at+len(hdrUserAgent)
				}
			case 'C':
				if !ctSeen && len(rest) >= len("Content-Type:") && string(rest[:len("Content-Type:")]) == "Content-Type:" {
					ctSeen = true
					pend, pendAt = &r.ContentType, at+len(hdrContentType)
				}
			}
		}
		// The line's CRLF: a '\n' after its start with a '\r' before it.
		for s := ls; ; {
			j := bytes.IndexByte(b[s:], '\n')
			if j < 0 {
				return nil // a value still awaiting its CRLF stays nil, as in Maltrail
			}
			s += j
			if s > ls && b[s-1] == '\r' {
				at = s - 1
				break
			}
			s++
		}
	}
}

// hasSpHTTP is bytes.HasPrefix(b, spHTTP), inlined (a call costs more
// than the compare).
func hasSpHTTP(b []byte) bool {
	return len(b) >= len(" HTTP/") && string(b[:len(" HTTP/")]) == " HTTP/"
}

// indexCRLF is bytes.Index(b, crlf), searching for the '\n' (with the
// vectorised IndexByte) and looking back for its '\r'.
func indexCRLF(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		if i+j > 0 && b[i+j-1] == '\r' {
			return i + j - 1
		}
		i += j + 1
	}
}

// HTTPResponse is the start of an HTTP response. Every slice aliases the
// parsed payload; a nil slice means "absent".
type HTTPResponse struct {
	Version    []byte // e.g. "HTTP/1.1"
	StatusCode int    // 100..999; 0 if the status line did not parse
	Reason     []byte // possibly empty

	// ContentType is the trimmed value of "\r\nContent-Type:" (matched
	// case-sensitively, CRLF-terminated), as Maltrail reads it; the caller
	// lowercases it.
	ContentType []byte
	// Title is the text between "<title>" and the next "</title>". With no
	// "</title>" it runs to the end of the payload less its last byte:
	// Maltrail slices to find()'s -1, and the seized-domain regex runs on
	// exactly that text.
	Title []byte
	// Body is what follows the first "\r\n\r\n", possibly empty; nil when
	// the snapshot holds no end of headers.
	Body []byte
}

// ParseHTTPResponse parses the response start in b into r. The payload must
// start with "HTTP/", as Maltrail requires. ContentType, Title and Body are
// filled even when the status line is cut or malformed (the error is still
// returned), because Maltrail's response heuristics never look at the
// status line.
func ParseHTTPResponse(b []byte, r *HTTPResponse) error {
	*r = HTTPResponse{}
	if !bytes.HasPrefix(b, httpSlash) {
		return errHTTPNotResp
	}
	_, r.ContentType = crlfHeader(b, hdrContentType)
	if i := bytes.Index(b, titleOpen); i >= 0 {
		start := i + len(titleOpen)
		if j := bytes.Index(b[start:], titleClose); j >= 0 {
			r.Title = b[start : start+j : start+j]
		} else if start < len(b)-1 {
			r.Title = b[start : len(b)-1 : len(b)-1]
		} else {
			r.Title = b[start:start:start]
		}
	}
	if j := bytes.Index(b, crlfcrlf); j >= 0 {
		r.Body = b[j+4:]
	}

	i := bytes.Index(b, crlf)
	if i < 0 {
		return errHTTPStatus
	}
	line := b[:i]
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || len(line)-sp-1 < 3 {
		return errHTTPStatusF
	}
	code := 0
	for _, c := range line[sp+1 : sp+4] {
		if c < '0' || c > '9' {
			return errHTTPStatusF
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return errHTTPStatusF
	}
	rest := line[sp+4:]
	switch {
	case len(rest) == 0:
	case rest[0] == ' ':
		rest = rest[1:]
	default:
		return errHTTPStatusF
	}
	r.Version = line[:sp:sp]
	r.StatusCode = code
	r.Reason = rest[:len(rest):len(rest)]
	return nil
}

// crlfHeader finds pat ("\r\nName:") in b and returns the trimmed value up
// to the next CRLF. found reports the pattern; value is nil when no CRLF
// ends it within b (Maltrail then ignores the header).
func crlfHeader(b, pat []byte) (found bool, value []byte) {
	i := bytes.Index(b, pat)
	if i < 0 {
		return false, nil
	}
	start := i + len(pat)
	j := bytes.Index(b[start:], crlf)
	if j < 0 {
		return true, nil
	}
	return true, trimmedValue(b[start : start+j])
}

// trimmedValue trims a header value and caps it, so that an append by a
// caller cannot write into the payload after it.
// The usual value, one space after the colon and none at its end, is cut
// without a call (the function is inlined).
func trimmedValue(b []byte) []byte {
	if n := len(b); n > 1 && b[0] == ' ' && b[1] > ' ' && b[n-1] > ' ' {
		return b[1:n:n]
	}
	return trimmedSlow(b)
}

func trimmedSlow(b []byte) []byte {
	v := trimSpace(b)
	return v[:len(v):len(v)]
}

// forwardedHeaders implements Maltrail's
// `(?i)\b(CF-Connecting-IP|True-Client-IP|X-Forwarded-For):\s*([0-9.]+)`
// search for each of the three names: the first case-insensitive
// occurrence at a word boundary followed by a colon, optional whitespace
// and at least one digit or dot. It walks the colons of the payload
// (IndexByte is vectorised, and colons are rare) and looks back for a name
// ending at each, rather than testing every byte as a possible start.
func forwardedHeaders(b []byte, r *HTTPRequest) {
	found := 0
	for i := 0; found < len(fwdNames); {
		j := bytes.IndexByte(b[i:], ':')
		if j < 0 {
			return
		}
		c := i + j
		i = c + 1
		for k, name := range fwdNames {
			start := c - len(name)
			if r.fwdPos[k] >= 0 || start < 0 || (start > 0 && isWordByte(b[start-1])) || !asciiEqualFold(b[start:c], name) {
				continue
			}
			v := c + 1
			for v < len(b) && isPySpace(b[v]) {
				v++
			}
			e := v
			for e < len(b) && (b[e] == '.' || ('0' <= b[e] && b[e] <= '9')) {
				e++
			}
			if e == v {
				continue
			}
			r.fwdPos[k] = start
			r.fwd[k] = b[v:e:e]
			found++
		}
	}
}

// isWordByte is Python's ASCII \w, which decides \b in a bytes regex.
func isWordByte(c byte) bool {
	return c == '_' || ('0' <= c && c <= '9') || ('a' <= c|0x20 && c|0x20 <= 'z')
}

// asciiEqualFold compares a with the lowercase ASCII lower, folding ASCII
// letters only (bytes.EqualFold folds Unicode, which a bytes regex does not).
func asciiEqualFold(a, lower []byte) bool {
	if len(a) != len(lower) {
		return false
	}
	for i, c := range a {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// isPySpace is \s of a Python bytes regex: space, \t, \n, \v, \f, \r.
func isPySpace(c byte) bool { return c == ' ' || ('\t' <= c && c <= '\r') }

// isStripSpace is what Python's str.strip() removes among ASCII bytes: the
// \s set plus the separators \x1c-\x1f (Maltrail strips decoded text).
func isStripSpace(c byte) bool { return isPySpace(c) || (0x1c <= c && c <= 0x1f) }

// trimSpace is Python's str.strip() with no argument, on ASCII.
// (Every such byte is at most ' ', which is tested first.)
func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && b[i] <= ' ' && isStripSpace(b[i]) {
		i++
	}
	for j > i && b[j-1] <= ' ' && isStripSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}
