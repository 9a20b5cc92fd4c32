package sensor

import (
	"bytes"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/proto"
	"github.com/xtrail/xtrail/pkg/trails"
)

// NameRules are the name-based matchers and filters of spec §1.3-1.6.
type NameRules struct {
	Names     *trails.Names       // domain, URL and regex trails (nil: none)
	Whitelist *trails.Whitelist   // events on whitelisted addresses are dropped, except type DNS
	Ignore    *trails.IgnoreRules // src;sport;dst;dport rules, applied first
	// CheckSNI looks TLS and QUIC SNIs up as domains (Maltrail:
	// USE_FAST_PREFILTER with FAST_FLOW_CUTOFF > 0).
	CheckSNI bool
	// CheckHostDomains looks HTTP Host values up as domains.
	CheckHostDomains bool
}

// nameState is the agent's reusable parse and match scratch: the candidate
// paths allocate nothing on a miss once these buffers have grown.
type nameState struct {
	dns      proto.DNSMessage
	http     proto.HTTPRequest
	quic     proto.QUICScratch
	hit      trails.DomainHit
	name     trails.Name // a DNS query name, SNI or proxy target, read once for every check
	hostName trails.Name // an HTTP request's Host, read once for the domain check and the whitelist
	urls     trails.URLScratch
	req      trails.HTTPRequest
	host     []byte
	path     []byte
	url      []byte
	text     []byte
	resp     proto.HTTPResponse
	hreq     heuristics.HTTP
	hdns     heuristics.DNS
}

// ignoredTLD reports whether a DNS query whose last label is tld is
// never checked (spec §1.3). A switch, not a map: it compares without
// hashing, on every query.
func ignoredTLD(tld []byte) bool {
	switch string(tld) {
	case "arpa", "local", "guest", "intranet", "corp", "home", "lan", "intra",
		"intran", "workgroup", "localdomain", "url", "alienvault", "example",
		"internal", "localnet", "test":
		return true
	}
	return false
}

// queryName applies the DNS query filter of spec §1.3 to a name read
// once (the parser lowercased it): non-empty, matching
// \A[a-zA-Z0-9._-]*\.[a-zA-Z0-9-]+\Z, no ".intranet.", no ignored TLD.
func queryName(m *trails.Name) bool {
	return m.Whole() && m.Valid() && !m.HasInnerLabel("intranet") && !ignoredTLD(m.LastLabels(1))
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// baseEvent fills the columns every event of record r shares.
func (a *Agent) baseEvent(r *dataplane.Record, proto string) *maltrail.Event {
	ev := &a.ev
	*ev = maltrail.Event{Time: timeOf(r), SrcIP: r.SrcAddr(), SrcPort: r.Sport, DstIP: r.DstAddr(), DstPort: r.Dport, Proto: proto}
	return ev
}

func l4Name(r *dataplane.Record) string {
	if r.L4Proto == protoTCP {
		return "TCP"
	}
	return "UDP"
}

// handleDNS: spec §1.3 (queries) and §4 (the DNS heuristics).
func (a *Agent) handleDNS(r *dataplane.Record) {
	msg := r.Payload
	if r.L4Proto == protoTCP {
		msg = proto.StripTCPLength(msg)
	}
	m := &a.ns.dns
	if err := proto.ParseDNS(msg, m); err != nil {
		a.malformed(r, err)
		return
	}
	q := m.QName()
	nm := &a.ns.name
	nm.Set(q)
	if !queryName(nm) {
		return
	}
	heur := a.heur
	if !m.IsStandardQuery() {
		if heur != nil && heur.Use() && m.Byte2&0x80 != 0 {
			a.dnsResponse(r, m, q)
		}
		return
	}
	if heur != nil && heur.Enabled(heuristics.DNSExhaustion) && heur.Exhaustion(a.dnsFacts(r, q), a.heurOut(r)) {
		return // past the threshold, the base's queries skip the trails
	}
	if m.QType == proto.DNSTypePTR || m.QType == proto.DNSTypeAAAA || m.QClass != proto.DNSClassIN {
		return
	}
	pname := l4Name(r)
	if r.Side != 0 {
		if info, ref, err := a.meta.Meta(r.Meta); err == nil {
			ev := a.baseEvent(r, pname)
			ev.Info, ev.Reference = info, ref
			if r.Side == dataplane.SideDst {
				// "<dst> (<qname>)", for IP:port trails too
				ev.Type = "IP"
				if r.TrailType == dataplane.TrailIPort {
					ev.Type = "IPORT"
				}
				a.ns.text = maltrail.AppendAddr(a.ns.text[:0], ev.DstIP)
				a.ns.text = append(append(append(a.ns.text, " ("...), q...), ')')
				ev.Trail = string(a.ns.text)
			} else {
				ev.Type, ev.Trail = a.trailText(r.TrailType, ev.SrcIP, 0)
			}
			a.report(ev)
		} else {
			a.stats.NoMeta.Add(1)
		}
	}
	a.checkName(r, nm, pname)
}

// dnsResponse runs the response heuristics (spec §4): sinkholed and
// parked answers (flags byte 3 exactly 0x80), NXDOMAIN floods and DGA
// names (exactly 0x83).
func (a *Agent) dnsResponse(r *dataplane.Record, m *proto.DNSMessage, q []byte) {
	switch m.Byte3 {
	case 0x80:
		if addr, _ := m.FirstA(); addr.IsValid() {
			a.heur.Sinkhole(a.dnsFacts(r, q), addr, a.answers[r.Gen&1].Load(), a.heurOut(r))
		}
	case 0x83:
		d := a.dnsFacts(r, q)
		d.ClientPrivate = heuristics.IsPrivate(r.DstAddr()) // (only the NXDOMAIN rules read it)
		a.heur.NXDomain(d, a.heurOut(r))
	}
}

// dnsFacts fills the heuristics' view of a DNS message in the agent's
// scratch.
func (a *Agent) dnsFacts(r *dataplane.Record, q []byte) *heuristics.DNS {
	d := &a.ns.hdns
	*d = heuristics.DNS{Sec: int64(r.TsNs / 1e9), Name: q, Prepared: &a.ns.name, Whitelist: a.rules.Whitelist, Names: a.namesFor(r.Gen)}
	return d
}

// heurOut turns heuristic findings on record r into events.
type heurOut struct {
	a *Agent
	r *dataplane.Record
}

func (a *Agent) heurOut(r *dataplane.Record) *heurOut {
	a.hout.r = r
	return &a.hout
}

func (o *heurOut) Report(f *heuristics.Finding) {
	a := o.a
	ev := a.baseEvent(o.r, l4Name(o.r))
	ev.Type, ev.Trail, ev.Info, ev.Reference = f.Type, string(f.Trail), f.Info, heuristics.Reference
	if f.Ports {
		ev.SrcPort, ev.DstPort = f.SrcPort, f.DstPort
	}
	if f.Forwarded != nil {
		ev.SrcForwarded = string(f.Forwarded)
	}
	a.report(ev)
}

// checkDomain reports a domain-check hit on name as a DNS event.
func (a *Agent) checkDomain(r *dataplane.Record, name []byte, pname string) {
	a.ns.name.Set(name)
	a.checkName(r, &a.ns.name, pname)
}

// checkName is checkDomain of a name already read.
func (a *Agent) checkName(r *dataplane.Record, m *trails.Name, pname string) {
	n := a.namesFor(r.Gen)
	if n == nil || !n.CheckName(m, &a.ns.hit) {
		return
	}
	ev := a.baseEvent(r, pname)
	ev.Type = "DNS"
	ev.Trail = string(a.ns.hit.Trail)
	ev.Info, ev.Reference = a.ns.hit.Meta.Info, a.ns.hit.Meta.Reference
	a.report(ev)
}

// handleTLS and handleQUIC: the SNI of a ClientHello is a domain (spec §1.3).
func (a *Agent) handleTLS(r *dataplane.Record) {
	if !a.rules.CheckSNI {
		return
	}
	sni, err := proto.ClientHelloSNI(r.Payload)
	if err != nil {
		a.malformed(r, err)
		return
	}
	a.checkDomain(r, sni, "TCP")
}

func (a *Agent) handleQUIC(r *dataplane.Record) {
	if !a.rules.CheckSNI {
		return
	}
	sni, err := proto.QUICInitialSNI(r.Payload, &a.ns.quic)
	if a.ns.quic.BadTag {
		a.stats.QUICBadTags.Add(1)
	}
	if err != nil {
		a.malformed(r, err)
		return
	}
	a.checkDomain(r, sni, "UDP")
}

// trimHost is bytes.TrimSpace of a Host value ParseHTTPRequest trimmed:
// its ASCII spaces are gone, so TrimSpace can strip more (Unicode spaces)
// only at an end that is not ASCII, and is not called otherwise.
func trimHost(v []byte) []byte {
	if len(v) > 0 && (v[0] >= 0x80 || v[len(v)-1] >= 0x80) {
		return bytes.TrimSpace(v)
	}
	return v
}

// handleHTTP: spec §1.4 (requests) and §4 (the HTTP heuristics), in
// Maltrail's order.
func (a *Agent) handleHTTP(r *dataplane.Record) {
	heur := a.heur
	isResp := len(r.Payload) >= len("HTTP/") && string(r.Payload[:len("HTTP/")]) == "HTTP/" // (inlined, unlike bytes.HasPrefix)
	if isResp && heur != nil {
		resp := &a.ns.resp
		_ = proto.ParseHTTPResponse(r.Payload, resp) // the response heuristics read no status line
		heur.Response(r.Payload, resp, a.heurOut(r))
	}
	h := &a.ns.http
	if err := proto.ParseHTTPRequest(r.Payload, h); err != nil {
		if !isResp {
			a.malformed(r, err) // a response is no request, and no failure
		}
		return
	}
	st := &a.ns
	st.path = trails.AppendLower(st.path[:0], h.Path)
	dst := r.DstAddr()
	// Host: trimmed, lowercased, ":80" stripped; dst_ip when absent. A
	// Host that is empty, or becomes empty ("Host: :80"), stays empty, as
	// in Maltrail: it starts with no letter, and the URL check sees the
	// bare path.
	if h.Host != nil {
		st.host = trails.AppendLower(st.host[:0], trimHost(h.Host))
		if n := len(st.host) - len(":80"); n >= 0 && string(st.host[n:]) == ":80" {
			st.host = st.host[:n]
		}
	} else {
		st.host = maltrail.AppendAddr(st.host[:0], dst)
	}
	host, path := st.host, st.path
	hn := &st.hostName
	hn.Set(host)
	hr := &st.hreq
	// every field, one by one: cheaper than a composite literal's zeroing
	// and copy (TestAgentHTTPFields checks that none is left over)
	hr.Sec, hr.Src, hr.Dst, hr.SrcPort, hr.DstPort = int64(r.TsNs/1e9), r.SrcAddr(), dst, r.Sport, r.Dport
	hr.Method, hr.Host, hr.Path, hr.Body = h.Method, host, path, h.Body
	hr.Forwarded, hr.Req, hr.Whitelist = nil, nil, a.rules.Whitelist
	out := a.heurOut(r)
	if heur != nil && heur.Enabled(heuristics.WebScanning) {
		heur.WebScan(hr, out)
	}
	switch {
	case h.Host == nil:
		if !h.HostFound && heur != nil {
			heur.MissingHost(hr, out)
		}
	case len(host) > 0 && isLetter(host[0]) && r.Side == dataplane.SideDst:
		if info, ref, err := a.meta.Meta(r.Meta); err == nil {
			ev := a.baseEvent(r, "TCP")
			ev.Type, ev.Info, ev.Reference = "IP", info, ref
			bare := host
			if i := bytes.IndexByte(bare, ':'); i >= 0 {
				bare = bare[:i]
			}
			st.text = maltrail.AppendAddr(st.text[:0], dst)
			st.text = append(append(append(st.text, " ("...), bare...), ')')
			ev.Trail = string(st.text)
			a.report(ev)
		}
	case heur != nil && heur.IoTDownload(hr, out):
		return
	case a.rules.CheckHostDomains:
		a.checkName(r, hn, "TCP")
	}
	if heur != nil && heur.Use() && heur.ProxyProbe(hr, out) {
		return
	}
	// A proxy request (an absolute "http://" path that is no code
	// execution attempt, or CONNECT): its target is domain-checked and
	// becomes the host and path of what follows; url is target/path.
	var url []byte
	switch {
	case len(path) >= len("http://") && string(path[:len("http://")]) == "http://" && !(heur != nil && heur.IsRCE(path)):
		url = append(st.url[:0], path[len("http://"):]...)
		if bytes.IndexByte(url, '/') < 0 {
			url = append(url, '/')
		}
		st.url = url
		host, path = splitTarget(url)
	case string(h.Method) == "CONNECT":
		url = append(st.url[:0], path...)
		if bytes.IndexByte(url, '/') < 0 {
			url = append(url, '/')
		}
		st.url = url
		host, path = splitTarget(url)
		url = append(append(st.text[:0], host...), path...)
		st.text = url
	}
	if url != nil {
		target := host
		if i := bytes.IndexByte(target, ':'); i >= 0 {
			target = target[:i]
		}
		a.checkDomain(r, target, "TCP")
		hr.Host, hr.Path = host, path
	}
	if heur != nil && heur.Use() {
		heur.UserAgent(h.UserAgent, out)
	}
	if url == nil && a.rules.Whitelist.NameWhitelisted(hn) || url != nil && a.rules.Whitelist.IsWhitelistedDomain(host) {
		return // (a proxy request's host is its target's)
	}
	if names := a.namesFor(r.Gen); names != nil {
		// the host is clear of the same whitelist: CheckURL need not look again
		// (every field, one by one, as hr's)
		q := &st.req
		q.Host, q.Path, q.Method, q.URL, q.Body = host, path, h.Method, url, nil
		q.HostClear = names.Whitelist() == a.rules.Whitelist
		if string(h.Method) == "POST" {
			q.Body = h.Body
		}
		if hit, ok := names.CheckURL(&st.urls, &st.req); ok {
			ev := a.baseEvent(r, "TCP")
			ev.Type, ev.Trail = hit.Type, string(hit.Trail)
			ev.Info, ev.Reference = hit.Meta.Info, hit.Meta.Reference
			a.report(ev)
			return
		}
	}
	if heur != nil && heur.Use() {
		hr.Req = h // the forwarded-for address, read only for a finding
		heur.Request(hr, out)
	}
}

// splitTarget splits a proxy target "host[:port]/path" as Maltrail does:
// host without ":80", path from the first '/'.
func splitTarget(url []byte) (host, path []byte) {
	i := bytes.IndexByte(url, '/')
	host, path = url[:i], url[i:]
	return bytes.TrimSuffix(host, []byte(":80")), path
}

// dropped applies the ignore rules and the whitelist (spec §1.6): events
// on a whitelisted address are dropped unless their type is DNS.
func (a *Agent) dropped(ev *maltrail.Event) bool {
	if ig := a.rules.Ignore; ig != nil && ig.IgnoredAddr(ev.SrcIP, ev.SrcPort, ev.DstIP, ev.DstPort) {
		a.stats.Ignored.Add(1)
		return true
	}
	if wl := a.rules.Whitelist; wl != nil && ev.Type != "DNS" && (wl.IsWhitelistedIP(ev.SrcIP) || wl.IsWhitelistedIP(ev.DstIP)) {
		a.stats.Whitelisted.Add(1)
		return true
	}
	return false
}
