// Package heuristics runs Maltrail's agent-side heuristics (spec §4) over
// parsed DNS and HTTP candidates: web scans, DNS exhaustion, NXDOMAIN
// floods, DGA names, sinkholed and parked answers, long domains,
// suspicious user agents, requests, POST bodies and downloads, IoT-malware
// downloads by direct IP, proxy probes, missing Host headers and
// suspicious HTTP responses. Port, UDP and infection scans are counted in
// the kernel (bpf/), not here.
//
// The sensor agent calls the heuristics in Maltrail's order, between its
// trail checks; each call says whether it found something and fills a
// Finding with the event's type, trail and info columns.
//
// An Engine is used by one goroutine. Its state lives in tables of fixed
// capacity (Limits), allocated when the Engine is made: a flood of unique
// keys evicts the lightest entries instead of growing memory, and every
// eviction is counted in Stats. The per-candidate paths do not allocate.
package heuristics

import (
	"fmt"
	"hash/maphash"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/xtrail/xtrail/pkg/lits"
	"github.com/xtrail/xtrail/pkg/proto"
	"github.com/xtrail/xtrail/pkg/trails"
)

// maxLitStates bounds a literal automaton (pkg/lits): its table takes
// states × columns × 4 bytes. WHITELIST_HTTP_REQUEST_PATHS snippets too
// many to join the families' automaton within it get one of their own.
var maxLitStates = 1 << 16

// Heuristic names a heuristic DISABLED_HEURISTICS can turn off.
type Heuristic uint8

// The heuristics DISABLED_HEURISTICS takes (spec §4). Port, UDP and
// infection scans are the kernel's; they are listed so that one parser
// reads the key for both.
const (
	PortScanning Heuristic = iota
	UDPScanning
	Infection
	WebScanning
	DNSExhaustion
	LongDomain
	numHeuristics
)

var heuristicNames = [numHeuristics]string{"port_scanning", "udp_scanning", "infection", "web_scanning", "dns_exhaustion", "long_domain"}

func (h Heuristic) String() string {
	if h < numHeuristics {
		return heuristicNames[h]
	}
	return fmt.Sprintf("heuristic(%d)", uint8(h))
}

// Disabled is a set of heuristics DISABLED_HEURISTICS turned off.
type Disabled uint8

// Has reports whether h is disabled.
func (d Disabled) Has(h Heuristic) bool { return d&(1<<h) != 0 }

// ParseDisabled reads DISABLED_HEURISTICS: names separated by commas,
// semicolons or white space. An unknown name is an error that lists the
// known ones.
func ParseDisabled(s string) (Disabled, error) {
	var d Disabled
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' }) {
		found := false
		for i, n := range heuristicNames {
			if strings.EqualFold(f, n) {
				d |= 1 << i
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown heuristic %q: want any of %s", f, strings.Join(heuristicNames[:], ", "))
		}
	}
	return d, nil
}

// Config selects and tunes the heuristics.
type Config struct {
	// Use is USE_HEURISTICS: off, only the heuristics Maltrail runs
	// regardless (DNS exhaustion, IoT downloads, HTTP responses) run.
	Use bool
	// Disabled is DISABLED_HEURISTICS.
	Disabled Disabled
	// CheckMissingHost is CHECK_MISSING_HOST (with Use): a request
	// without a Host header is an event.
	CheckMissingHost bool
	// UserAgents replaces the built-in suspicious user agents (nil: the
	// built-in list). See LoadUserAgents.
	UserAgents *UserAgents
	// WhitelistUA (WHITELIST_UA_REGEX) exempts user agents it matches;
	// nil exempts none.
	WhitelistUA *regexp.Regexp
	// WhitelistPaths (WHITELIST_HTTP_REQUEST_PATHS) are path snippets that
	// exempt a request from the request and POST checks; nil keeps the
	// built-in ones, an empty non-nil slice has none.
	WhitelistPaths []string
	// ScanWindow is SCAN_WINDOW in seconds, the web-scan window (0: 30).
	ScanWindow int64
	// LocalPrefix returns Maltrail's local prefix ("10.0.", from the
	// kernel's scan counts) at packet time sec, "" when none is known: an
	// IoT download from a destination under it is not reported. Nil judges
	// destinations by the private ranges instead.
	LocalPrefix func(sec int64) string
	// Limits bound the state (zero fields: defaults).
	Limits Limits
}

// Limits are the capacities of the heuristics' tables, each allocated
// once (rounded up to a power of two). A full neighbourhood of a table
// evicts its lightest entry; Stats counts the evictions.
type Limits struct {
	WebScanPairs  int // (src, dst) pairs of a web-scan window; default 16384
	DNSBases      int // DNS-exhaustion bases (last 2 or 3 labels) per hour; default 8192
	DNSSubdomains int // distinct (base, subdomain) pairs of the bases' 60 s windows; default 65536
	NXNames       int // NXDOMAIN counters of exact names per hour; default 16384
	NXGroups      int // NXDOMAIN counters of "*.<last2>" groups per hour, each holding its names; default 2048
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.WebScanPairs, 16384)
	def(&l.DNSBases, 8192)
	def(&l.DNSSubdomains, 65536)
	def(&l.NXNames, 16384)
	def(&l.NXGroups, 2048)
	return l
}

// Kind names a finding, for its counter.
type Kind uint8

const (
	KindWebScan Kind = iota
	KindDNSExhaustion
	KindNXDomain
	KindDGA
	KindSinkholed
	KindParked
	KindLongDomain
	KindUserAgent
	KindRequest
	KindPost
	KindDownload
	KindSuspiciousPath
	KindIoTDownload
	KindProxyProbe
	KindMissingHost
	KindSinkholeResponse
	KindSeized
	KindContentType
	numKinds
)

var kindNames = [numKinds]string{"web_scan", "dns_exhaustion", "nxdomain_flood", "dga", "sinkholed", "parked",
	"long_domain", "user_agent", "request", "post", "download", "suspicious_path", "iot_download",
	"proxy_probe", "missing_host", "sinkhole_response", "seized_domain", "content_type"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Stats counts what the heuristics found and what their bounded state
// gave up.
type Stats struct {
	Found [numKinds]atomic.Uint64 // findings per kind

	WebScanEvicted       atomic.Uint64 // (src, dst) web-scan pairs evicted from a full table before their window ended
	DNSBasesEvicted      atomic.Uint64 // DNS-exhaustion bases evicted from a full table before their hour ended
	DNSSubdomainsEvicted atomic.Uint64 // (base, subdomain) pairs evicted before their 60 s window ended (a repeat may then count twice)
	NXNamesEvicted       atomic.Uint64 // exact-name NXDOMAIN counters evicted before their hour ended
	NXGroupsEvicted      atomic.Uint64 // "*.<last2>" NXDOMAIN counters evicted before their hour ended
	NXNamesCapped        atomic.Uint64 // NXDOMAIN names not kept for a group's trail: its name buffer was full
}

// Summary lists the counters as slog key-value pairs (the sensor's exit
// summary); findings are keyed "heur_<kind>".
func (s *Stats) Summary() []any {
	args := make([]any, 0, 2*int(numKinds)+12)
	for k := range numKinds {
		args = append(args, "heur_"+kindNames[k], s.Found[k].Load())
	}
	return append(args,
		"heur_webscan_evicted", s.WebScanEvicted.Load(),
		"heur_dns_bases_evicted", s.DNSBasesEvicted.Load(),
		"heur_dns_subdomains_evicted", s.DNSSubdomainsEvicted.Load(),
		"heur_nx_names_evicted", s.NXNamesEvicted.Load(),
		"heur_nx_groups_evicted", s.NXGroupsEvicted.Load(),
		"heur_nx_names_capped", s.NXNamesCapped.Load())
}

// Finding is what a heuristic found: the event's trail type, trail and
// info columns. The reference is always "(heuristic)". Trail points into
// the Engine and is valid until its next call.
type Finding struct {
	Kind  Kind
	Type  string // "DNS", "URL", "HTTP", "UA", "PATH"
	Trail []byte
	Info  string
	// Forwarded is the forwarded-for address the event's source column
	// carries after the packet's ("src,fwd"); nil for none.
	Forwarded []byte
	// Ports, when set, replace the packet's ports (a web scan reports the
	// first request of its window).
	Ports            bool
	SrcPort, DstPort uint16
}

// Reference is the reference column of every heuristic event.
const Reference = "(heuristic)"

// Engine runs the heuristics. Make it with New; one goroutine uses it.
// Fork makes another for another goroutine, sharing the state that
// records of any source feed (see Fork).
type Engine struct {
	cfg    Config
	limits Limits
	stats  *Stats // shared with forks

	ua       *UserAgents
	families familySet
	// reqLits finds the family rules' triggers and the path snippets of
	// WHITELIST_HTTP_REQUEST_PATHS (wlTag) in one pass; wlLits holds the
	// snippets instead when they are too many to join it.
	reqLits  *lits.Set
	wlLits   *lits.Set
	pathLits *lits.Set // the suspicious files' triggers
	ctypes   map[string]struct{}
	dlInfo   [256][]dlExt // download extensions by their byte after the '.'

	iot     *regexp.Regexp
	pathRes []*regexp.Regexp // per suspicious path; nil: its trigger suffices
	scanWin int64

	web webScan
	dns *dnsShared

	// uaClean remembers user agents that gave no finding, by hash (the
	// low bit set, so that a zero slot is empty); uaSeed is random per
	// Engine so that no one can aim collisions at it.
	uaClean [uaCacheSize]uint64
	uaSeed  maphash.Seed

	// scratch, reused per call
	name   trails.Name // a DNS name the caller did not read (DNS.Prepared)
	f      Finding
	fwd    []byte             // the forwarded-for address of the request being checked
	fwdReq *proto.HTTPRequest // else the request to read it from, when a finding needs it
	trail  []byte
	lower  []byte
	unq    []byte
	enc    []byte
	encB   []byte
	uaBuf  []byte
}

// New returns an Engine for c. It allocates the tables of c.Limits.
func New(c Config) (*Engine, error) {
	e := &Engine{cfg: c, ua: c.UserAgents, scanWin: c.ScanWindow, uaSeed: maphash.MakeSeed(), stats: &Stats{}, dns: &dnsShared{}}
	if e.scanWin <= 0 {
		e.scanWin = 30
	}
	if e.ua == nil {
		e.ua = builtinUserAgents()
	}
	if err := e.families.build(); err != nil {
		return nil, err
	}
	paths := c.WhitelistPaths
	if paths == nil {
		paths = defaultWhitelistPaths
	}
	var wl []lits.Lit
	for _, p := range paths {
		if p = strings.TrimSpace(p); p != "" {
			wl = append(wl, lits.Lit{Pat: strings.ToLower(p), Tag: wlTag})
		}
	}
	var err error
	if e.reqLits, err = lits.New(append(slices.Clip(e.families.lits), wl...), maxLitStates); err != nil {
		// too many snippets to join the families' automaton
		if e.reqLits, err = lits.New(e.families.lits, maxLitStates); err != nil {
			return nil, err
		}
		if e.wlLits, err = lits.New(wl, maxLitStates); err != nil {
			return nil, fmt.Errorf("%s: %w", "WHITELIST_HTTP_REQUEST_PATHS", err)
		}
	}
	e.ctypes = make(map[string]struct{}, len(suspiciousContentTypes))
	for _, t := range suspiciousContentTypes {
		e.ctypes[t] = struct{}{}
	}
	for _, x := range downloadExtensions {
		e.dlInfo[x[1]] = append(e.dlInfo[x[1]], dlExt{ext: x, info: "direct " + x + " download (suspicious)"})
	}
	e.iot = regexp.MustCompile(iotPath)
	var pathLits []lits.Lit
	for i, p := range suspiciousPaths {
		for _, t := range p.triggers {
			pathLits = append(pathLits, lits.Lit{Pat: t, Tag: i})
		}
		var re *regexp.Regexp
		if p.re != "" {
			re = regexp.MustCompile(p.re)
		}
		e.pathRes = append(e.pathRes, re)
	}
	if e.pathLits, err = lits.New(pathLits, maxLitStates); err != nil {
		return nil, err
	}
	e.limits = c.Limits.withDefaults()
	e.web.init(e.limits, e.stats)
	e.dns.init(e.limits, e.stats)
	return e, nil
}

// Fork returns an Engine for another goroutine: its own scratch, verdict
// cache and web-scan table, and the DNS tables (exhaustion, NXDOMAIN)
// and counters of e, shared under a lock. The sensor spreads records
// over agents by source address, so a web-scan pair (one source) stays
// with one agent, while the DNS tables are keyed by names that any
// source may ask for, and must count them all.
func (e *Engine) Fork() *Engine {
	f := *e
	f.web = webScan{}
	f.web.init(e.limits, e.stats)
	f.uaSeed = maphash.MakeSeed()
	f.uaClean = [uaCacheSize]uint64{}
	f.fwdReq, f.name = nil, trails.Name{}
	f.f, f.fwd, f.trail, f.lower, f.unq, f.enc, f.encB, f.uaBuf = Finding{}, nil, nil, nil, nil, nil, nil, nil
	return &f
}

// Stats returns the Engine's counters.
func (e *Engine) Stats() *Stats { return e.stats }

// Use reports whether USE_HEURISTICS is on.
func (e *Engine) Use() bool { return e.cfg.Use }

// Reporter receives what the heuristics find, one Finding per event.
// The Finding and its Trail are valid only during the call.
type Reporter interface {
	Report(f *Finding)
}

// report counts and hands over a finding whose trail is in e.trail.
func (e *Engine) report(r Reporter, k Kind, typ, info string) {
	fwd := e.fwd
	if e.fwdReq != nil {
		fwd = e.fwdReq.ForwardedFor()
	}
	e.f = Finding{Kind: k, Type: typ, Trail: e.trail, Info: info, Forwarded: fwd}
	e.stats.Found[k].Add(1)
	r.Report(&e.f)
}
