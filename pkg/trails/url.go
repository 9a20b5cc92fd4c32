package trails

import (
	"bytes"
)

// maxURLCandidates bounds spec §1.4's candidate list: one from step 1, at
// most four from step 2 (or one from step 3), two from step 4.
const maxURLCandidates = 8

// URLScratch is per-call scratch for URLCandidates and CheckURL. Reuse one
// per goroutine: once its buffers have grown, calls do not allocate. What
// the calls return points into it and is valid until its next use.
type URLScratch struct {
	norm  []byte // path with "//" replaced by "/"
	buf   []byte // candidate texts
	spans [maxURLCandidates][2]int
	cands [maxURLCandidates][]byte
	key   []byte // host+candidate
	trail []byte
	url   []byte
}

// URLCandidates returns the lookup candidates of spec §1.4 for a
// lowercased request path and the POST body (nil for other methods), in
// the order they are tried, without the empty ones (Maltrail filters
// them out). Example: "/a/b/c.php?id=1&x=2" gives "/a/b/c.php?id=1&x=2",
// "/a/b/c.php", "/a/b/c.php?id=", "/a/b/c.php?id=&x=", "/c.php?id=&x=".
func URLCandidates(s *URLScratch, path, body []byte) [][]byte {
	s.norm = replaceDoubleSlash(s.norm[:0], path)
	p := s.norm
	s.buf = s.buf[:0]
	n := 0
	add := func(from int) {
		s.spans[n] = [2]int{from, len(s.buf)}
		n++
	}
	last := func() []byte { return s.buf[s.spans[n-1][0]:s.spans[n-1][1]] }

	// 1. The path without trailing slashes.
	from := len(s.buf)
	s.buf = append(s.buf, bytes.TrimRight(p, "/")...)
	add(from)
	if q := bytes.IndexByte(p, '?'); q >= 0 {
		// 2a. The part before '?'.
		from = len(s.buf)
		s.buf = append(s.buf, p[:q]...)
		add(from)
		// 2b. Up to and including the first '='.
		if e := bytes.IndexByte(p, '='); e >= 0 {
			from = len(s.buf)
			s.buf = append(s.buf, p[:e+1]...)
			add(from)
		}
		// 2c. Every "k=v" reduced to "k=", if new, then its last
		// segment.
		from = len(s.buf)
		s.buf = appendKeysOnly(s.buf, p)
		kv := s.buf[from:]
		isNew := true
		for i := range n {
			if bytes.Equal(s.buf[s.spans[i][0]:s.spans[i][1]], kv) {
				isNew = false
				break
			}
		}
		if !isNew {
			s.buf = s.buf[:from]
		} else {
			add(from)
			if bytes.Count(kv, []byte{'/'}) > 1 {
				seg := kv[bytes.LastIndexByte(kv, '/'):]
				from = len(s.buf)
				s.buf = append(s.buf, seg...) // seg is in buf below from: append copies before growing
				add(from)
			}
		}
	} else if len(body) > 0 {
		// 3. path?<unquoted, lowercased body>.
		from = len(s.buf)
		s.buf = append(s.buf, p...)
		s.buf = append(s.buf, '?')
		s.buf = appendUnquoteLower(s.buf, body)
		add(from)
	}
	// 4. The last candidate cut at its last '/', and the first one's last
	// segment without the query.
	if l := last(); bytes.Count(l, []byte{'/'}) > 1 {
		cut := bytes.LastIndexByte(l, '/')
		from = len(s.buf)
		s.buf = append(s.buf, l[:cut]...)
		add(from)
		first := s.buf[s.spans[0][0]:s.spans[0][1]]
		// Python's first[first.rfind('/'):] with rfind = -1 is the last
		// character; a first candidate without '/' is possible when the
		// body brought the slashes.
		i := bytes.LastIndexByte(first, '/')
		if i < 0 {
			i = max(len(first)-1, 0)
		}
		seg := first[i:]
		if qm := bytes.IndexByte(seg, '?'); qm >= 0 {
			seg = seg[:qm]
		}
		from = len(s.buf)
		s.buf = append(s.buf, seg...)
		add(from)
	}
	// Slices are made last: the appends above may move buf.
	out := s.cands[:0]
	for i := range n {
		if c := s.buf[s.spans[i][0]:s.spans[i][1]]; len(c) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// replaceDoubleSlash is Python's path.replace("//", "/"): left to right,
// non-overlapping, so "///" becomes "//".
// The text between pairs is copied whole (a path rarely holds one);
// replaceDoubleSlashRef in the tests is the byte-at-a-time form.
func replaceDoubleSlash(dst, p []byte) []byte {
	for {
		i := bytes.Index(p, doubleSlash)
		if i < 0 {
			return append(dst, p...)
		}
		dst = append(dst, p[:i+1]...)
		p = p[i+2:]
	}
}

var doubleSlash = []byte("//")

// appendKeysOnly is re.sub(r"(\w+=)[^&=]+", r"\g<1>", p): each run of word
// characters directly followed by '=' and at least one byte other than
// '&' and '=' loses that value. \w is ASCII here; Python's is Unicode, a
// difference only for non-ASCII paths.
//
// The text before the run of word bytes that ends at the first '=' is
// copied whole: no run before it is followed by '='. appendKeysOnlyRef in
// the tests is the scan from the start.
func appendKeysOnly(dst, p []byte) []byte {
	e := bytes.IndexByte(p, '=')
	if e < 0 {
		return append(dst, p...)
	}
	i := e
	for i > 0 && isWordByte(p[i-1]) {
		i--
	}
	dst = append(dst, p[:i]...)
	for i < len(p) {
		if !isWordByte(p[i]) {
			dst = append(dst, p[i])
			i++
			continue
		}
		s := i
		for i < len(p) && isWordByte(p[i]) {
			i++
		}
		if i+1 < len(p) && p[i] == '=' && p[i+1] != '&' && p[i+1] != '=' {
			dst = append(dst, p[s:i+1]...)
			i++
			for i < len(p) && p[i] != '&' && p[i] != '=' {
				i++
			}
			continue
		}
		dst = append(dst, p[s:i]...)
	}
	return dst
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// appendUnquoteLower is urllib.parse.unquote(body).lower() for ASCII:
// "%XX" becomes its byte, '+' stays, ASCII letters are lowercased.
// Decoded non-ASCII bytes are kept as they are, where Python would decode
// them as UTF-8 (replacing invalid sequences) before lowercasing.
func appendUnquoteLower(dst, b []byte) []byte {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '%' && i+2 < len(b) && isHex(string(b[i+1:i+3])) {
			c = unhex(b[i+1])<<4 | unhex(b[i+2])
			i += 2
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// HTTPRequest is what the URL check needs from one HTTP request (spec
// §1.4).
type HTTPRequest struct {
	Host   []byte // lowercased, trimmed, ":80" stripped; dst_ip's text when absent
	Path   []byte // lowercased request path
	Method []byte // e.g. "GET", "POST"
	Body   []byte // the POST body, nil for other requests
	// URL is the text the trail column is cut from: nil means Host+Path;
	// for an absolute "http://" path or CONNECT it is the target host/path.
	URL []byte
	// HostClear says the caller found Host not whitelisted by the
	// Names' whitelist (Names.Whitelist), which CheckURL then need not
	// check again.
	HostClear bool
}

// URLHit is the result of CheckURL. Trail points into the URLScratch.
type URLHit struct {
	Type  string // "URL" or "HTTP", the event's trail type
	Trail []byte
	Meta  Meta
}

// CheckURL runs the URL trail check of spec §1.4: each candidate bare,
// then as host+candidate, the first hit wins; then host+"/". A whitelisted
// host is not checked. Trail texts:
//   - a hit holding '?' on a path without one, with a body:
//     HTTP "host(path \(METHOD body\))";
//   - otherwise URL: the url split on the hit, each non-empty piece in
//     parentheses, joined with the hit: "evil.com/gate.php(?id=1)",
//     "(host.com)/malicious-login.php";
//   - the fallback: URL "host/".
//
// It does not allocate once s has grown.
func (n *Names) CheckURL(s *URLScratch, req *HTTPRequest) (URLHit, bool) {
	host := req.Host
	// IsWhitelistedDomain cuts the host at a ':' port itself.
	if !req.HostClear && n.wl.IsWhitelistedDomain(host) {
		return URLHit{}, false
	}
	// With no key under host+"/", a candidate starting with '/' cannot
	// make a host+candidate key (a host holding '/' could: it is looked
	// up as ever).
	noHostKeys := n.hosts != nil && bytes.IndexByte(host, '/') < 0 && !n.hosts.Contains(KeyHash(host, n.seed))
	if noHostKeys && n.noBareKeys(req.Path) {
		return URLHit{}, false // no candidate can be a key: none is made
	}
	for _, c := range URLCandidates(s, req.Path, req.Body) {
		mi, ok := n.lookup(c)
		hitKey := c
		if !ok && !(noHostKeys && c[0] == '/') {
			s.key = append(append(s.key[:0], host...), c...)
			mi, ok = n.lookup(s.key)
			hitKey = s.key
		}
		if !ok {
			continue
		}
		m := n.meta(mi)
		if bytes.IndexByte(hitKey, '?') >= 0 && bytes.IndexByte(s.norm, '?') < 0 && len(req.Body) > 0 {
			t := append(append(s.trail[:0], host...), '(')
			t = append(append(t, s.norm...), ` \(`...)
			t = append(append(t, req.Method...), ' ')
			t = append(append(t, bytes.TrimFunc(req.Body, isPySpace)...), `\))`...)
			s.trail = t
			return URLHit{Type: "HTTP", Trail: t, Meta: m}, true
		}
		url := req.URL
		if url == nil {
			s.url = append(append(s.url[:0], host...), req.Path...)
			url = s.url
		}
		s.trail = appendSplitWrap(s.trail[:0], url, hitKey)
		return URLHit{Type: "URL", Trail: s.trail, Meta: m}, true
	}
	if noHostKeys {
		return URLHit{}, false
	}
	s.key = append(append(s.key[:0], host...), '/')
	if mi, ok := n.lookup(s.key); ok {
		s.trail = append(s.trail[:0], s.key...)
		return URLHit{Type: "URL", Trail: s.trail, Meta: n.meta(mi)}, true
	}
	return URLHit{}, false
}

// noBareKeys reports whether no bare URL candidate of path (URLCandidates,
// with any body) can be a key: the path starts with '/', so every
// candidate does, and no head that follows one of its slashes is a key's
// (FilteredIndex.HeadFilter). Each candidate's head is one of those: the
// candidates cut the path (after '?' or '=', or at a '/'), drop trailing
// slashes and query values (after '='), or take the text after one of its
// slashes, none of which changes the bytes up to a head's end; and "//"
// made "/" leaves the text after the pair's second slash.
func (n *Names) noBareKeys(path []byte) bool {
	if n.heads == nil || len(path) == 0 || path[0] != '/' {
		return false
	}
	for i := 0; ; {
		j := i + 1
		for j < len(path) && !isHeadEnd(path[j]) {
			j++
		}
		if n.heads.Contains(KeyHash(path[i+1:j], n.seed)) {
			return false
		}
		k := bytes.IndexByte(path[j:], '/')
		if k < 0 {
			return true
		}
		i = j + k
	}
}

// appendSplitWrap is hit.join("(%s)" % p if p else p for p in
// url.split(hit)); hit is never empty.
func appendSplitWrap(dst, url, hit []byte) []byte {
	first := true
	for {
		i := bytes.Index(url, hit)
		piece := url
		if i >= 0 {
			piece = url[:i]
		}
		if !first {
			dst = append(dst, hit...)
		}
		first = false
		if len(piece) > 0 {
			dst = append(append(append(dst, '('), piece...), ')')
		}
		if i < 0 {
			return dst
		}
		url = url[i+len(hit):]
	}
}

// isPySpace is the ASCII part of Python's str.strip() white space.
func isPySpace(r rune) bool {
	return r == ' ' || r >= '\t' && r <= '\r' || r >= 0x1c && r <= 0x1f
}
