package heuristics

import (
	"bytes"
	"fmt"
	"math/bits"
	"net/netip"
	"regexp"

	"github.com/xtrail/xtrail/pkg/lits"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/proto"
	"github.com/xtrail/xtrail/pkg/trails"
)

// HTTP is what the request heuristics read of one HTTP request.
type HTTP struct {
	Sec              int64
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Method           []byte
	// Host is lowercased, trimmed, without ":80"; the dst address's text
	// when the request has no Host header; for a proxy request (an
	// absolute "http://" path, CONNECT) the target's host.
	Host []byte
	// Path is the lowercased request path; for a proxy request the
	// target's path.
	Path []byte
	// Body is what follows the end of the headers (any method), nil when
	// the payload holds no end of headers.
	Body []byte
	// Forwarded is the forwarded-for address of the request's headers,
	// nil for none. When it is nil and Req is set, Req.ForwardedFor() is
	// read instead, only when a finding needs it: the search walks the
	// whole payload, and clean requests need none.
	Forwarded []byte
	Req       *proto.HTTPRequest
	Whitelist *trails.Whitelist
}

// Enabled reports whether a heuristic runs: USE_HEURISTICS and not in
// DISABLED_HEURISTICS. DNS exhaustion needs no USE_HEURISTICS (spec §4).
func (e *Engine) Enabled(h Heuristic) bool {
	if e.cfg.Disabled.Has(h) {
		return false
	}
	return e.cfg.Use || h == DNSExhaustion
}

// isPrivate is Maltrail's is_local for a destination or source: loopback
// and the private ranges (IPv4 127/8, 10/8, 172.16/12, 192.168/16; IPv6
// ::1 and fc00::/7).
//
// An IPv4 address (or one mapped into IPv6) is judged from its first two
// bytes: the agent asks twice per HTTP request, and netip's general tests
// cost several calls each. isPrivateRef is the general form.
func isPrivate(a netip.Addr) bool {
	if a.Is4() || a.Is4In6() {
		b := a.As4()
		switch b[0] {
		case 10, 127:
			return true
		case 172:
			return b[1]&0xf0 == 16
		case 192:
			return b[1] == 168
		}
		return false
	}
	return isPrivateRef(a)
}

// isPrivateRef is isPrivate by netip's tests, the reference of
// TestIsPrivate.
func isPrivateRef(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate()
}

// IsPrivate reports whether a is loopback or private, as the heuristics
// judge a client or destination.
func IsPrivate(a netip.Addr) bool { return isPrivate(a) }

// ---- web scan ----------------------------------------------------------

// webScanThreshold: more distinct first path segments than this from one
// source to one destination in a window is a web scan.
const webScanThreshold = 10

type webScan struct {
	pairs    *table[webPair]
	winStart int64
	started  bool
}

type webPair struct {
	segs             [webScanThreshold + 1]uint32 // first-segment hashes; 0 = free
	n                uint8
	fired            bool
	srcPort, dstPort uint16 // of the pair's first request in the window
}

func (w *webScan) init(l Limits, st *Stats) {
	w.pairs = newTable[webPair](l.WebScanPairs, 0, &st.WebScanEvicted)
}

// WebScan counts the request's first path segment for its (src, dst) pair
// and reports a web scan when the pair passes 10 distinct segments in the
// SCAN_WINDOW window, once per pair and window (spec §4): `PATH *`
// "potential web scanning", with the ports of the pair's first request.
// Pairs whose ends are both private are not counted. The caller checks
// Enabled(WebScanning).
func (e *Engine) WebScan(h *HTTP, r Reporter) bool {
	if isPrivate(h.Src) && isPrivate(h.Dst) {
		return false
	}
	w := &e.web
	if !w.started || h.Sec-w.winStart >= e.scanWin {
		w.started, w.winStart = true, h.Sec
		w.pairs.reset()
	}
	k := hashPair(h.Src, h.Dst)
	s, isNew := w.pairs.put(k, uint32(h.Sec))
	p := &s.val
	if isNew {
		p.srcPort, p.dstPort = h.SrcPort, h.DstPort
	}
	if p.fired {
		return false
	}
	seg := uint32(hashNew(firstSegment(h.Path)))
	if seg == 0 {
		seg = 1
	}
	for _, v := range p.segs[:p.n] {
		if v == seg {
			return false
		}
	}
	p.segs[p.n] = seg
	p.n++
	s.weight = uint32(p.n)
	if int(p.n) <= webScanThreshold {
		return false
	}
	p.fired = true
	e.trail = append(e.trail[:0], '*')
	e.f = Finding{Kind: KindWebScan, Type: "PATH", Trail: e.trail, Info: "potential web scanning",
		Ports: true, SrcPort: p.srcPort, DstPort: p.dstPort}
	e.stats.Found[KindWebScan].Add(1)
	r.Report(&e.f)
	return true
}

// firstSegment is the first segment of a path: after the scheme and host
// of an absolute path, between the first '/' and the next '/', '?' or '#'.
func firstSegment(p []byte) []byte {
	// "://" is rare in a path: a ':' is looked for first, which is cheaper
	if bytes.IndexByte(p, ':') >= 0 {
		if i := bytes.Index(p, []byte("://")); i >= 0 {
			p = p[i+3:]
			if j := bytes.IndexByte(p, '/'); j >= 0 {
				p = p[j:]
			} else {
				return nil
			}
		}
	}
	if len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	for i, c := range p {
		if c == '/' || c == '?' || c == '#' {
			return p[:i]
		}
	}
	return p
}

// ---- host and proxy rules ---------------------------------------------

// IoTDownload is the IoT-malware download rule of spec §1.4 (no
// USE_HEURISTICS gate): a numeric Host whose path names a CPU
// architecture build or a shell dropper, to a destination outside the
// local network (see Config.LocalPrefix), gives `HTTP (<host>)<path>` "potential iot-malware download
// (suspicious)". The caller then stops processing the request.
func (e *Engine) IoTDownload(h *HTTP, r Reporter) bool {
	if !isNumericHost(h.Host) || !e.iot.Match(h.Path) || e.isLocal(h) {
		return false
	}
	e.trail = append(append(append(append(e.trail[:0], '('), h.Host...), ')'), h.Path...)
	e.report(r, KindIoTDownload, "HTTP", "potential iot-malware download (suspicious)")
	return true
}

// isLocal reports whether the destination is inside the monitored
// network: under Maltrail's local prefix when the sensor knows it (a
// textual prefix of the address, as Maltrail compares), else private.
func (e *Engine) isLocal(h *HTTP) bool {
	if e.cfg.LocalPrefix == nil {
		return isPrivate(h.Dst)
	}
	p := e.cfg.LocalPrefix(h.Sec)
	if p == "" {
		return false // Maltrail's "_": no address starts with it
	}
	e.lower = maltrail.AppendAddr(e.lower[:0], h.Dst)
	return bytes.HasPrefix(e.lower, []byte(p))
}

// isNumericHost is \A\d+\.[0-9.]+\Z.
func isNumericHost(h []byte) bool {
	i := 0
	for i < len(h) && '0' <= h[i] && h[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(h)-1 || h[i] != '.' {
		return false
	}
	for _, c := range h[i+1:] {
		if c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// MissingHost reports a request without a Host header (CHECK_MISSING_HOST
// with USE_HEURISTICS): `HTTP <dst><path>` "missing host header
// (suspicious)"; h.Host is then the dst address's text.
func (e *Engine) MissingHost(h *HTTP, r Reporter) bool {
	if !e.cfg.Use || !e.cfg.CheckMissingHost {
		return false
	}
	// the agent passes the dst address's text as the Host; a caller that
	// passes none gets it here, so the trail is never empty
	if len(h.Host) == 0 {
		e.trail = maltrail.AppendAddr(e.trail[:0], h.Dst)
	} else {
		e.trail = append(e.trail[:0], h.Host...)
	}
	e.trail = append(e.trail, h.Path...)
	e.report(r, KindMissingHost, "HTTP", "missing host header (suspicious)")
	return true
}

var proxyProbeWords = [...][]byte{[]byte("probe"), []byte("proxy"), []byte("echo"), []byte("check")}

// ProxyProbe reports an absolute "http://" request to port 80 whose path
// holds probe, proxy, echo or check, to a target that is not whitelisted
// (spec §4): `HTTP http://<target>/(<rest>)` "potential proxy probe
// (suspicious)", the target without port or trailing dots. The caller
// checks Use and then stops processing the request.
func (e *Engine) ProxyProbe(h *HTTP, r Reporter) bool {
	const scheme = "http://"
	p := h.Path
	if h.DstPort != 80 || len(p) < len(scheme) || string(p[:len(scheme)]) != scheme { // (inlined)
		return false
	}
	probe := false
	for _, w := range proxyProbeWords {
		if bytes.Contains(p, w) {
			probe = true
			break
		}
	}
	if !probe {
		return false
	}
	rest := p[len(scheme):]
	target := rest
	slash := bytes.IndexByte(rest, '/')
	if slash >= 0 {
		target = rest[:slash]
	}
	if h.Whitelist.IsWhitelistedDomain(target) {
		return false
	}
	// Maltrail: re.sub(r"(http://[^/]+/)(.+)", r"\g<1>(\g<2>)", path), then
	// each "http://" host (up to '/' or '(') loses its port and trailing dots.
	e.lower = e.lower[:0]
	if slash > 0 && slash+1 < len(rest) {
		e.lower = append(append(e.lower, p[:len(scheme)+slash+1]...), '(')
		e.lower = append(append(e.lower, rest[slash+1:]...), ')')
	} else {
		e.lower = append(e.lower, p...)
	}
	e.trail = appendProxyHosts(e.trail[:0], e.lower)
	e.report(r, KindProxyProbe, "HTTP", "potential proxy probe (suspicious)")
	return true
}

// appendProxyHosts rewrites every "http://<host>" of t, host being the run
// up to '/' or '(', as host.split(':')[0].rstrip('.').
func appendProxyHosts(dst, t []byte) []byte {
	const scheme = "http://"
	for {
		i := bytes.Index(t, []byte(scheme))
		if i < 0 {
			return append(dst, t...)
		}
		dst = append(dst, t[:i+len(scheme)]...)
		t = t[i+len(scheme):]
		n := 0
		for n < len(t) && t[n] != '/' && t[n] != '(' {
			n++
		}
		host := t[:n]
		if c := bytes.IndexByte(host, ':'); c >= 0 {
			host = host[:c]
		}
		dst = append(dst, bytes.TrimRight(host, ".")...)
		t = t[n:]
	}
}

// IsRCE reports whether a lowercased request path, unquoted, is a remote
// code execution attempt: such an absolute "http://" path is an attack on
// the server, not a proxy request (spec §1.4).
func (e *Engine) IsRCE(path []byte) bool {
	e.unq = appendUnquote(e.unq[:0], path)
	e.lower = lowerASCII(e.lower[:0], e.unq)
	return e.families.matches(famRCE, e.reqTags(e.lower), e.lower)
}

// ---- request families, POST bodies, downloads --------------------------

// familySet matches the families' rules: one literal scan (the Engine's
// request automaton) finds every triggered rule (a bit each, in family
// then rule order), and the expressions of those rules run in that
// order.
type familySet struct {
	lits   []lits.Lit       // every rule's triggers, tagged with the rule's bit
	res    []*regexp.Regexp // per rule; nil: the trigger suffices
	family []uint8          // per rule
	first1 [numFamilies]int // each family's first rule
	all    uint64           // every rule's bit
}

func (fs *familySet) build() error {
	for fi := range families {
		fs.first1[fi] = len(fs.res)
		for _, ru := range families[fi].rules {
			bit := len(fs.res)
			if bit >= wlTag {
				return fmt.Errorf("heuristics: more than %d request rules", wlTag)
			}
			for _, t := range ru.triggers {
				fs.lits = append(fs.lits, lits.Lit{Pat: t, Tag: bit})
			}
			var re *regexp.Regexp
			if ru.re != "" {
				var err error
				if re, err = regexp.Compile("(?s)" + ru.re); err != nil {
					return err
				}
			}
			fs.res = append(fs.res, re)
			fs.family = append(fs.family, uint8(fi))
			fs.all |= 1 << bit
		}
	}
	return nil
}

// first returns the first family, in Maltrail's order, that lower is of,
// given the trigger tags found in it; -1 for none.
func (fs *familySet) first(tags uint64, lower []byte) int {
	return fs.scan(tags&fs.all, lower)
}

func (fs *familySet) scan(m uint64, lower []byte) int {
	for m != 0 {
		i := bits.TrailingZeros64(m)
		m &^= 1 << i
		if fs.res[i] == nil || fs.res[i].Match(lower) {
			return int(fs.family[i])
		}
	}
	return -1
}

// matches reports whether lower, holding the trigger tags, is of family
// f.
func (fs *familySet) matches(f int, tags uint64, lower []byte) bool {
	end := len(fs.res)
	if f+1 < numFamilies {
		end = fs.first1[f+1]
	}
	var want uint64
	for i := fs.first1[f]; i < end; i++ {
		want |= 1 << i
	}
	return fs.scan(tags&want, lower) == f
}

// wlTag is the tag bit of WHITELIST_HTTP_REQUEST_PATHS in the request
// automaton; the family rules take the bits below it.
const wlTag = 63

// reqTags returns the trigger tags found in a lowercased path or body:
// the bits of the family rules triggered, and wlTag for a whitelisted
// path snippet.
func (e *Engine) reqTags(lower []byte) uint64 {
	m := e.reqLits.Tags(lower)
	if e.wlLits != nil && e.wlLits.Tags(lower) != 0 {
		m |= 1 << wlTag
	}
	return m
}

// hasPrecondition: the text holds one of ? .. .ht = space ' (spec §4).
func hasPrecondition(b []byte) bool {
	for i, c := range b {
		switch c {
		case '?', '=', ' ', '\'':
			return true
		case '.':
			if i+1 < len(b) && b[i+1] == '.' || i+2 < len(b) && b[i+1] == 'h' && b[i+2] == 't' {
				return true
			}
		}
	}
	return false
}

// Request runs the request heuristics of spec §4 on a request whose host
// is not whitelisted and that matched no URL trail; the caller checks
// Use. In order, the first that finds something ends the request:
//   - suspicious request: the unquoted path holds one of ? .. .ht = space '
//     and is of a family (sql injection ... dns changer; data leakage not
//     to a private destination): `URL host(<path>)` "<family>
//     (suspicious)";
//   - suspicious POST: the same on the unquoted body: `HTTP host(<path>
//     \(METHOD <body>\))`;
//   - direct download: the file's extension is a download extension, its
//     name is under 10 characters, the query holds no '=', the
//     destination is public and the path holds no exempt word:
//     `URL host(<path>)` "direct .exe download (suspicious)";
//   - suspicious path: the file is a scanner's probe: "non-existent page"
//     or "potential web scan".
//
// A path snippet of WHITELIST_HTTP_REQUEST_PATHS skips the first two. In
// trails, "(", ")", CR and LF of the path and body are %-encoded, and the
// source carries the forwarded-for address.
func (e *Engine) Request(h *HTTP, r Reporter) bool {
	e.fwd, e.fwdReq = h.Forwarded, nil
	if h.Forwarded == nil {
		e.fwdReq = h.Req
	}
	found := e.request(h, r)
	e.fwd, e.fwdReq = nil, nil
	return found
}

func (e *Engine) request(h *HTTP, r Reporter) bool {
	path := h.Path
	if bytes.Contains(path, []byte("//")) {
		e.enc = appendNoDoubleSlash(e.enc[:0], path)
		path = e.enc
	}
	// unq is the unquoted path, lower that lowercased; a path without '%'
	// is both (the caller lowercased it)
	unq, lower := path, path
	if bytes.IndexByte(path, '%') >= 0 {
		e.unq = appendUnquote(e.unq[:0], path)
		e.lower = lowerASCII(e.lower[:0], e.unq)
		unq, lower = e.unq, e.lower
	}
	if tags := e.reqTags(lower); tags&(1<<wlTag) == 0 {
		// no family matches a path that triggers none of its rules: the
		// precondition is not looked for
		if tags&e.families.all != 0 && hasPrecondition(unq) {
			if fam := e.families.first(tags, lower); fam >= 0 && !(fam == famLeak && isPrivate(h.Dst)) {
				t := append(append(e.trail[:0], h.Host...), '(')
				t = appendForceEncoded(t, path)
				e.trail = append(t, ')')
				e.report(r, KindRequest, "URL", familyInfo[fam])
				return true
			}
		}
		if len(h.Body) > 0 {
			e.unq = appendUnquote(e.unq[:0], h.Body)
			if hasPrecondition(e.unq) {
				e.lower = lowerASCII(e.lower[:0], e.unq)
				if fam := e.families.first(e.reqTags(e.lower), e.lower); fam >= 0 {
					t := append(append(e.trail[:0], h.Host...), '(')
					t = append(appendForceEncoded(t, path), ` \(`...)
					t = append(append(t, h.Method...), ' ')
					e.encB = appendForceEncoded(e.encB[:0], h.Body)
					t = append(append(t, trimPySpace(e.encB)...), `\))`...)
					e.trail = t
					e.report(r, KindPost, "HTTP", familyInfo[fam])
					return true
				}
			}
		}
	}
	if bytes.IndexByte(path, '.') < 0 {
		return false
	}
	file, name, ext, query := splitFile(h.Path)
	if info, ok := e.download(ext); ok && !isPrivate(h.Dst) && len(name) < 10 &&
		bytes.IndexByte(query, '=') < 0 && !containsAnyString(path, downloadExempt) {
		e.fileTrail(h.Host, path)
		e.report(r, KindDownload, "URL", info)
		return true
	}
	if m := e.pathLits.Tags(file); m != 0 {
		for i, re := range e.pathRes {
			if m&(1<<i) != 0 && (re == nil || re.Match(file)) {
				e.fileTrail(h.Host, path)
				e.report(r, KindSuspiciousPath, "URL", suspiciousPathInfo[i])
				return true
			}
		}
	}
	return false
}

var familyInfo = func() (out [numFamilies]string) {
	for i, f := range &families {
		out[i] = f.desc + " (suspicious)"
	}
	return out
}()

var suspiciousPathInfo = func() (out []string) {
	for _, p := range suspiciousPaths {
		out = append(out, p.desc+" (suspicious)")
	}
	return out
}()

func (e *Engine) fileTrail(host, path []byte) {
	t := append(append(e.trail[:0], host...), '(')
	t = appendForceEncoded(t, path)
	e.trail = append(t, ')')
}

// dlExt is a download extension and its finding's info.
type dlExt struct{ ext, info string }

// download returns the info of a download extension ext (".exe").
func (e *Engine) download(ext []byte) (string, bool) {
	if len(ext) < 2 {
		return "", false
	}
	for _, d := range e.dlInfo[ext[1]] {
		if d.ext == string(ext) {
			return d.info, true
		}
	}
	return "", false
}

func containsAnyString(b []byte, subs []string) bool {
	for _, s := range subs {
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

// splitFile splits a path as Python's urlparse and os.path.splitext do:
// the file is the last segment of the path before '?' and '#' (and its
// ";params"), name and ext its splitext halves (ext "" when the only dots
// lead the name), query what follows '?' up to '#'.
func splitFile(p []byte) (file, name, ext, query []byte) {
	if i := bytes.IndexByte(p, '#'); i >= 0 {
		p = p[:i]
	}
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		p, query = p[:i], p[i+1:]
	}
	// One pass back from the end to the last '/' finds the first ';' of
	// the segment and the last '.' before it (a ';' forgets the dots
	// after it); splitFileRef in the tests is the former searches.
	semi, dot := len(p), -1
	i := len(p) - 1
scan:
	for ; i >= 0; i-- {
		switch p[i] {
		case '/':
			break scan
		case ';':
			semi, dot = i, -1
		case '.':
			if dot < 0 {
				dot = i
			}
		}
	}
	file = p[i+1 : semi]
	if d := dot - (i + 1); d > 0 {
		for _, c := range file[:d] {
			if c != '.' {
				return file, file[:d], file[d:], query
			}
		}
	}
	return file, file, nil, query
}

// appendNoDoubleSlash is Python's path.replace("//", "/").
func appendNoDoubleSlash(dst, p []byte) []byte {
	for i := 0; i < len(p); i++ {
		dst = append(dst, p[i])
		if p[i] == '/' && i+1 < len(p) && p[i+1] == '/' {
			i++
		}
	}
	return dst
}

// appendForceEncoded %-encodes the bytes Maltrail encodes in a trail's
// path and body: '(' ')' CR LF.
func appendForceEncoded(dst, b []byte) []byte {
	for _, c := range b {
		switch c {
		case '(':
			dst = append(dst, "%28"...)
		case ')':
			dst = append(dst, "%29"...)
		case '\r':
			dst = append(dst, "%0D"...)
		case '\n':
			dst = append(dst, "%0A"...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// ---- responses -----------------------------------------------------------

// responseScan is how much of a response the sinkhole rule reads.
const responseScan = 2000

// Response runs the HTTP response heuristics (spec §4; no USE_HEURISTICS
// gate) on a payload starting "HTTP/": a header of a sinkhole server in
// the first 2000 bytes gives `HTTP <header line>` "sinkhole response
// (malware)"; otherwise a page title announcing a seized domain gives
// `HTTP <title>` "seized domain (suspicious)", and a script or shortcut
// Content-Type `HTTP <content type>` "content type (suspicious)".
func (e *Engine) Response(payload []byte, resp *proto.HTTPResponse, r Reporter) bool {
	if line := sinkholeHeader(payload[:min(len(payload), responseScan)]); line != nil {
		e.trail = append(e.trail[:0], line...)
		e.report(r, KindSinkholeResponse, "HTTP", "sinkhole response (malware)")
		return true
	}
	found := false
	if t := resp.Title; len(t) > 0 && isSeizedTitle(t, &e.lower) {
		e.trail = append(e.trail[:0], t...)
		e.report(r, KindSeized, "HTTP", "seized domain (suspicious)")
		found = true
	}
	if ct := resp.ContentType; len(ct) > 0 {
		e.lower = lowerASCII(e.lower[:0], ct)
		media := e.lower
		if i := bytes.IndexByte(media, ';'); i >= 0 {
			media = trimPySpace(media[:i])
		}
		if _, ok := e.ctypes[string(media)]; ok {
			e.trail = append(e.trail[:0], e.lower...)
			e.report(r, KindContentType, "HTTP", "content type (suspicious)")
			found = true
		}
	}
	return found
}

// sinkholeHeader returns the first header line (after the status line,
// before the end of the headers) whose name holds "sinkhole", or whose
// name is Server or X-Powered-By and whose value holds it: the mark
// sinkhole operators put on their answers.
func sinkholeHeader(b []byte) []byte {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return nil
	}
	b = b[i+2:]
	for len(b) > 0 {
		end := bytes.Index(b, []byte("\r\n"))
		line := b
		if end >= 0 {
			line = b[:end]
		}
		if len(line) == 0 {
			return nil
		}
		if colon := bytes.IndexByte(line, ':'); colon > 0 {
			name, value := line[:colon], line[colon+1:]
			if containsFold(name, "sinkhole") ||
				(equalFold(name, "server") || equalFold(name, "x-powered-by")) && containsFold(value, "sinkhole") {
				return trimPySpace(line)
			}
		}
		if end < 0 {
			return nil
		}
		b = b[end+2:]
	}
	return nil
}

// isSeizedTitle: a title that says a domain or website was seized.
func isSeizedTitle(t []byte, scratch *[]byte) bool {
	*scratch = lowerASCII((*scratch)[:0], t)
	l := *scratch
	return bytes.Contains(l, []byte("seiz")) && (bytes.Contains(l, []byte("domain")) || bytes.Contains(l, []byte("website")))
}

func containsFold(b []byte, lower string) bool {
	n := len(lower)
	for i := 0; i+n <= len(b); i++ {
		if equalFold(b[i:i+n], lower) {
			return true
		}
	}
	return false
}

func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
