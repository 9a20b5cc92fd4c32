package sensor

import (
	"bytes"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestAgentHTTPHost: a Host that is empty, or becomes empty once ":80" is
// stripped, stays empty as in Maltrail (`if host and host[0].isalpha()`):
// no "<dst> (<host>)" event, and the URL trail text is the bare path. A
// single such request used to stop the sensor (host[0] of an empty slice).
func TestAgentHTTPHost(t *testing.T) {
	names, err := trails.LoadNames(strings.NewReader("/malicious-login.php,malware (test),(static)\n"), "t.csv", trails.DefaultWhitelist())
	if err != nil {
		t.Fatal(err)
	}
	rules := NameRules{Names: names, Whitelist: trails.DefaultWhitelist()}
	at := time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)
	src, dst := netip.MustParseAddr("10.0.0.66"), netip.MustParseAddr("203.0.113.44")
	const head = `"2023-11-14 22:13:20.000000" t 10.0.0.66 50000 203.0.113.44 80 TCP `
	const m = ` "malware (test)" (static)`
	cases := []struct{ host, want string }{
		{"Host: :80\r\n", head + "URL /malicious-login.php" + m},
		{"Host:\r\n", head + "URL /malicious-login.php" + m},
		{"Host:  :80 \r\n", head + "URL /malicious-login.php" + m},
		{"", head + "URL (203.0.113.44)/malicious-login.php" + m}, // no Host: dst_ip
		{"Host: HostCheck.Example:80\r\n", head + `IP "203.0.113.44 (hostcheck.example)"` + m + "\n" +
			head + "URL (hostcheck.example)/malicious-login.php" + m},
		{"Host: a:8080\r\n", head + `IP "203.0.113.44 (a)"` + m + "\n" + head + "URL (a:8080)/malicious-login.php" + m},
		{"Host: [::1]:80\r\n", head + "URL ([::1])/malicious-login.php" + m},
		{"Host: [::1\r\n", head + "URL ([::1)/malicious-login.php" + m},
	}
	for _, c := range cases {
		t.Run(strings.TrimSpace(c.host), func(t *testing.T) {
			out := newCapture()
			a := NewAgent(AgentConfig{Meta: fakeMeta{7: {"malware (test)", "(static)"}}, Rules: rules,
				Render: &maltrail.Renderer{Sensor: "t", Loc: time.UTC}, Out: out, Throttle: throttle.Off})
			req := "GET /malicious-login.php HTTP/1.1\r\n" + c.host + "User-Agent: x\r\n\r\n"
			a.Handle(rec(dataplane.KindHTTP, dataplane.SideDst, dataplane.TrailIP, 6, src, dst, 50000, 80, 7, at, []byte(req)))
			if got := strings.Join(out.get(), ""); got != c.want+"\n" {
				t.Errorf("events:\n%swant:\n%s\n", got, c.want)
			}
			if a.Stats().Panics.Load() != 0 {
				t.Error("handling panicked")
			}
		})
	}
}

// panicky is a MetaSource and an Emitter that panic on demand, like a bug
// in a lookup or a sink would.
type panicky struct {
	fakeMeta
	capture *capture
	meta    bool // Meta panics
	emit    bool // Emit panics
}

func (p *panicky) Meta(id uint32) (string, string, error) {
	if p.meta {
		b := make([]byte, 1)
		_ = b[id] // id 1: index out of range, a runtime panic
	}
	return p.fakeMeta.Meta(id)
}

func (p *panicky) Emit(sec int64, line []byte) error {
	if p.emit {
		panic("sink bug")
	}
	return p.capture.Emit(sec, line)
}

// TestAgentGuard: a panic while a record is handled (here in a meta lookup
// or in a sink) is recovered, counted and logged with the record's hex,
// at most once per interval; the next record is handled as usual, and
// StageNames is not left waiting for a Handle that never ended.
func TestAgentGuard(t *testing.T) {
	at := time.Unix(1700000000, 0)
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("66.66.66.66")
	p := &panicky{fakeMeta: fakeMeta{1: {"malware (test)", "(static)"}}, capture: newCapture(), meta: true}
	logs := &lockedBuffer{}
	a := NewAgent(AgentConfig{Meta: p, Render: &maltrail.Renderer{Loc: time.UTC}, Out: p, Throttle: throttle.Off,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	hit := rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 6, src, dst, 50000, 443, 1, at, nil)

	a.Handle(hit)
	a.Handle(hit)
	st := a.Stats()
	if st.Panics.Load() != 2 || st.Events.Load() != 0 {
		t.Fatalf("panics %d events %d, want 2 and 0", st.Panics.Load(), st.Events.Load())
	}
	log := logs.String()
	if n := strings.Count(log, "level=ERROR"); n != 1 {
		t.Fatalf("%d panic logs for 2 panics within the interval, want 1:\n%s", n, log)
	}
	for _, want := range []string{"index out of range [1] with length 1", "record_hex=" + hexDump(hit, maxRecordDump), "panicky).Meta"} {
		if !strings.Contains(log, want) {
			t.Errorf("panic log lacks %q:\n%s", want, log)
		}
	}
	if a.handling.Load()%2 != 0 {
		t.Fatal("a recovered Handle left the agent marked busy")
	}

	p.meta = false
	a.Handle(hit)
	if got := p.capture.get(); len(got) != 1 || !strings.Contains(got[0], " 66.66.66.66 ") {
		t.Fatalf("the record after the panics gave %q", got)
	}

	// a sink that panics, reached from Handle and from Flush
	p.emit = true
	a2 := NewAgent(AgentConfig{Meta: p, Render: &maltrail.Renderer{Loc: time.UTC}, Out: p, Throttle: throttle.Summarize,
		Logger: slog.New(slog.DiscardHandler)})
	a2.Handle(hit)
	if a2.Stats().Panics.Load() != 1 {
		t.Fatalf("sink panic in Handle: panics %d", a2.Stats().Panics.Load())
	}
	// two more pass the summarize window (and panic in the sink), two
	// are held until the flush, which panics in the sink once more
	for range 4 {
		a2.Handle(rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 6, src, dst, 50001, 443, 1, at, nil))
	}
	if a2.Stats().Panics.Load() != 3 {
		t.Fatalf("sink panics in Handle: panics %d, want 3", a2.Stats().Panics.Load())
	}
	a2.Flush()
	if a2.Stats().Panics.Load() != 4 {
		t.Fatalf("sink panic in Flush: panics %d, want 4", a2.Stats().Panics.Load())
	}
	p.emit = false
	a2.Handle(rec(dataplane.KindIP, dataplane.SideDst, dataplane.TrailIP, 6, src, dst, 50002, 443, 1, at.Add(2*time.Hour), nil))
	if got := p.capture.get(); len(got) != 2 || !strings.Contains(got[1], " 50002 ") {
		t.Fatalf("the record after the sink panics gave %q", got)
	}
}

// TestAgentFailuresLoggedOnce: candidates that do not parse are counted
// per record kind and logged once per record kind and kind of failure,
// not per record, and the next record is handled.
func TestAgentFailuresLoggedOnce(t *testing.T) {
	logs := &lockedBuffer{}
	out := newCapture()
	names, err := trails.LoadNames(strings.NewReader(hitName+",malware (test),(static)\n"), "t.csv", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Names: names, CheckSNI: true}, Render: &maltrail.Renderer{Loc: time.UTC}, Out: out,
		Throttle: throttle.Off, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	at := time.Unix(1700000000, 0)
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.53")
	noSNI := pktbuild.TLSRecord(pktbuild.ClientHello(pktbuild.TLSExt{Type: 0x2b, Data: []byte{2, 3, 4}}))
	cases := []struct {
		kind, l4 uint8
		payload  []byte
		fails    bool
	}{
		{dataplane.KindDNS, 17, []byte{1, 2, 3}, true},                                                               // truncated
		{dataplane.KindDNS, 17, []byte{0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, true},      // malformed
		{dataplane.KindHTTP, 6, []byte("GET / HTTP/1.1"), true},                                                      // truncated
		{dataplane.KindHTTP, 6, []byte("HTTP/1.1 200 OK\r\n\r\n"), false},                                            // a response
		{dataplane.KindTLS, 6, []byte{0x16, 3, 1, 0, 9, 1, 0, 0, 5, 3}, true},                                        // truncated
		{dataplane.KindTLS, 6, []byte{0x16, 3, 1, 0, 9, 1, 0, 0, 5, 3, 3, 0, 0, 0}, true},                            // malformed
		{dataplane.KindTLS, 6, noSNI, false},                                                                         // no SNI
		{dataplane.KindQUIC, 17, append([]byte{0xc0, 0, 0, 0, 1, 0, 0, 0, 0x40, 0x20}, make([]byte, 40)...), true},   // bad tag: read, garbage frames
		{dataplane.KindQUIC, 17, append([]byte{0xc0, 0, 0, 0, 1, 21}, make([]byte, 40)...), true},                    // malformed
		{dataplane.KindQUIC, 17, append([]byte{0xc0, 0, 0, 0, 1, 0, 0, 0, 0x48, 0x20}, make([]byte, 2200)...), true}, // too large
	}
	var wantMalformed [8]uint64
	for _, c := range cases {
		if c.fails {
			wantMalformed[c.kind]++
		}
	}
	for i := range 50 {
		for _, c := range cases {
			a.Handle(rec(c.kind, 0, 0, c.l4, src, dst, uint16(40000+i), 53, 0, at, c.payload))
		}
	}
	short := rec(dataplane.KindDNS, 0, 0, 17, src, dst, 1, 53, 0, at, nil)[:20]
	unknown := rec(7, 0, 0, 17, src, dst, 1, 53, 0, at, nil)
	for range 10 {
		a.Handle(short)
		a.Handle(unknown)
	}
	st := a.Stats()
	for k, want := range wantMalformed {
		if got := st.Malformed[k].Load(); got != 50*want {
			t.Errorf("malformed %s: %d, want %d", kindNames[k], got, 50*want)
		}
	}
	if st.Bad.Load() != 20 || st.Records.Load() != 520 {
		t.Errorf("bad %d records %d, want 20 and 520", st.Bad.Load(), st.Records.Load())
	}
	checkCounters(t, st, 520)
	log := logs.String()
	// one line per (kind, failure): dns truncated and malformed, http
	// truncated, tls truncated and malformed, quic malformed (a bad tag is
	// read as Maltrail reads it, and its frames are garbage) and
	// unsupported; then the undecodable record and the unknown kind
	if n := strings.Count(log, "\n"); n != 9 {
		t.Errorf("%d log lines, want 9:\n%s", n, log)
	}
	if st.QUICBadTags.Load() != 50 {
		t.Errorf("quic_bad_tags %d, want 50", st.QUICBadTags.Load())
	}
	for _, want := range []string{"kind=dns", "kind=http", "kind=tls", "kind=quic", "src=10.0.0.5", "sport=40000",
		"payload_hex=c00000000100", "undecodable", "record kind 7"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	a.Handle(hitRecord())
	if got := out.get(); len(got) != 1 || !strings.Contains(got[0], " "+hitName+" ") {
		t.Fatalf("the trail hit after the failures gave %q", got)
	}
}

// TestStatsSummary: every counter of Stats reaches the exit summary.
func TestStatsSummary(t *testing.T) {
	var s Stats
	s.Records.Store(1)
	s.Events.Store(2)
	s.Bad.Store(3)
	s.Panics.Store(4)
	s.NoMeta.Store(5)
	s.UnknownLUT.Store(6)
	s.EmitErrors.Store(7)
	s.Skipped.Store(8)
	s.Frames.Store(9)
	s.Ignored.Store(10)
	s.Whitelisted.Store(11)
	s.QUICBadTags.Store(12)
	s.TrailLoads.Store(14)
	s.ReloadErrors.Store(13)
	for k := range kindNames {
		s.Kinds[k].Store(uint64(100 + k))
		s.Malformed[k].Store(uint64(200 + k))
	}
	s.EventTypes[eventType("DNS")].Store(300)
	s.EventTypes[eventType("no such type")].Store(301)
	got := map[string]uint64{}
	args := s.summary()
	for i := 0; i+1 < len(args); i += 2 {
		got[args[i].(string)] = args[i+1].(uint64)
	}
	want := map[string]uint64{"records": 1, "events": 2, "bad_records": 3, "panics": 4, "no_meta": 5, "unknown_proto": 6,
		"emit_errors": 7, "skipped_frames": 8, "frames": 9, "ignored": 10, "whitelisted": 11, "quic_bad_tags": 12,
		"records_ip": 101, "records_dns": 102, "records_http": 103, "records_tls": 104, "records_quic": 105, "records_scan": 106,
		"malformed_dns": 202, "malformed_http": 203, "malformed_tls": 204, "malformed_quic": 205, "malformed_scan": 206,
		"trail_loads": 14, "reload_errors": 13, "events_dns": 300, "events_other": 301}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("summary %s = %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("summary keys %v, want %d keys", got, len(want))
	}
	// two agents' counters summed (what the exit summary and /metrics of
	// several agents read) are every counter doubled
	var sum Stats
	s.addTo(&sum)
	s.addTo(&sum)
	sumArgs := sum.summary()
	for i := 0; i+1 < len(sumArgs); i += 2 {
		if k, v := sumArgs[i].(string), sumArgs[i+1].(uint64); v != 2*got[k] {
			t.Errorf("summed %s = %d, want %d", k, v, 2*got[k])
		}
	}
	if len(sumArgs) != 2*len(got) {
		t.Errorf("summed summary has %d keys, want %d", len(sumArgs)/2, len(got))
	}
	// Each (what /metrics reads) gives the same counters, but the events
	// per type
	each := map[string]uint64{}
	s.Each(func(name string, v uint64) { each[name] = v })
	delete(got, "events_dns")
	delete(got, "events_other")
	if !maps.Equal(each, got) {
		t.Errorf("Each gave %v, the summary %v", each, got)
	}
	// A counter added to Stats must be added to summary and to this test.
	tested := map[string]bool{"Records": true, "Events": true, "Bad": true, "Panics": true, "NoMeta": true, "UnknownLUT": true,
		"EmitErrors": true, "Skipped": true, "Frames": true, "Ignored": true, "Whitelisted": true, "Kinds": true, "Malformed": true,
		"QUICBadTags": true, "EventTypes": true, "TrailLoads": true, "ReloadErrors": true}
	rt := reflect.TypeFor[Stats]()
	for i := range rt.NumField() {
		if !tested[rt.Field(i).Name] {
			t.Errorf("Stats.%s is not checked here: add it to summary and to this test", rt.Field(i).Name)
		}
	}
}

// hitName is the domain trail the record after each fuzzed one queries.
const hitName = "evil-test-domain.com"

// hitRecord is a DNS query for the hitName trail from an address no rule
// or seed uses.
func hitRecord() []byte {
	return rec(dataplane.KindDNS, 0, 0, 17, netip.MustParseAddr("192.0.2.77"), netip.MustParseAddr("192.0.2.53"), 41414, 53, 0,
		time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC), dnsQuery(hitName))
}

// lockedBuffer collects log output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// checkCounters: every record read is bad or of one known kind.
func checkCounters(t *testing.T, st *Stats, records uint64) {
	t.Helper()
	sum := st.Bad.Load()
	for k := range st.Kinds {
		sum += st.Kinds[k].Load()
	}
	if st.Records.Load() != records || sum != records {
		t.Fatalf("records %d, bad + kinds %d, want %d", st.Records.Load(), sum, records)
	}
}
