package trails

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// lookupMerged returns the meta of key in m.
func lookupMerged(m *Merged, key string) (Meta, bool) {
	for _, t := range m.Trails {
		if t.Key == key {
			return m.Metas[t.Meta], true
		}
	}
	return Meta{}, false
}

// feed writes a custom list standing for one feed: "key,info,reference"
// lines, and returns its Source.
func feed(t *testing.T, prio int, lines ...string) Source {
	t.Helper()
	p := filepath.Join(t.TempDir(), "feed.txt")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Source{Kind: KindCustomList, Path: p, Priority: prio}
}

func TestMergeRules(t *testing.T) {
	tests := []struct {
		name    string
		sources [][]string // each a feed, in priority order
		want    Meta
	}{
		{"later feed wins", [][]string{{"k.com,malware,a.org"}, {"k.com,potential malware site,b.org"}},
			Meta{"potential malware site", "b.org (+a.org)"}},
		{"static entry stays against a feed", [][]string{{"k.com,asyncrat (malware),(static)"}, {"k.com,phishing,b.org"}},
			Meta{"asyncrat (malware)", "(static) (+b.org)"}},
		{"custom entry stays against a feed", [][]string{{"k.com,mine,(custom)"}, {"k.com,phishing,b.org"}},
			Meta{"mine", "(custom) (+b.org)"}},
		{"static takes over a feed", [][]string{{"k.com,phishing,b.org"}, {"k.com,asyncrat (malware),(static)"}},
			Meta{"asyncrat (malware)", "(static) (+b.org)"}},
		{"static takes over static", [][]string{{"k.com,one,(static)"}, {"k.com,two,(static)"}},
			Meta{"two", "(static)"}}, // one reference: no empty " (+)"
		{"static with history does not take over static", [][]string{{"k.com,one,(static)"}, {"k.com,bad history,(custom)"}},
			Meta{"one", "(static) (+(custom))"}},
		{"static with history takes over a feed", [][]string{{"k.com,one,a.org"}, {"k.com,history,(static)"}},
			Meta{"history", "(static) (+a.org)"}},
		{"low-priority info does not take over", [][]string{{"k.com,malware,a.org"}, {"k.com,known attacker,b.org"}},
			Meta{"malware", "a.org (+b.org)"}},
		{"each low-priority word", [][]string{{"k.com,x,a.org"}, {"k.com,reputation,b"}, {"k.com,spammer,c"}, {"k.com,abuser,d"},
			{"k.com,malicious,e"}, {"k.com,dnspod,f"}, {"k.com,nicru,g"}, {"k.com,crawler,h"}, {"k.com,compromised,i"}, {"k.com,bad history,j"}},
			Meta{"x", "a.org (+b,c,d,e,f,g,h,i,j)"}},
		{"'bad' alone is no low-priority word", [][]string{{"k.com,x,a.org"}, {"k.com,bad guys,b.org"}},
			Meta{"bad guys", "b.org (+a.org)"}},
		{"mass scanner always wins", [][]string{{"k.com,asyncrat (malware),(static)"}, {"k.com,mass scanner,shodan"}},
			Meta{"mass scanner", "shodan (+(static))"}},
		{"ipinfo always wins", [][]string{{"k.com,x,(custom)"}, {"k.com,attacker ipinfo,ipinfo.io"}},
			Meta{"attacker ipinfo", "ipinfo.io (+(custom))"}},
		{"same reference twice", [][]string{{"k.com,a,abuse.ch"}, {"k.com,b,abuse.ch"}},
			Meta{"b", "abuse.ch"}},
		{"references sorted and deduplicated", [][]string{{"k.com,a,z.org"}, {"k.com,b,m.org"}, {"k.com,c,a.org"}, {"k.com,d,m.org"}},
			Meta{"d", "m.org (+a.org,z.org)"}},
		{"inside one source the last row wins quietly", [][]string{{"k.com,first,a.org", "k.com,second,b.org"}},
			Meta{"second", "b.org"}},
		{"inside one source the last row meets the rules", [][]string{{"k.com,s,(static)"}, {"k.com,x,(static)", "k.com,attacker,c.org"}},
			Meta{"s", "(static) (+c.org)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var srcs []Source
			for i, lines := range tt.sources {
				srcs = append(srcs, feed(t, i, lines...))
			}
			m, err := Merge(srcs, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := lookupMerged(m, "k.com")
			if !ok || got != tt.want || len(m.Trails) != 1 {
				t.Errorf("got %+v (%v, %d trails), want %+v", got, ok, len(m.Trails), tt.want)
			}
			// The same sources again, in reverse slice order but with the
			// same priorities, merge the same way.
			slices.Reverse(srcs)
			m2, err := Merge(srcs, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got2, _ := lookupMerged(m2, "k.com"); got2 != tt.want {
				t.Errorf("reversed slice: got %+v", got2)
			}
		})
	}
}

func TestMergeSourcesAndOrder(t *testing.T) {
	static := writeTree(t, map[string]string{
		"malware/asyncrat.txt":          "asyncrat-c2.com\nshared.com\n1.2.3.4:6606\n",
		"suspicious/dynamic_domain.txt": "kozow.com\n",
		"mass_scanner.txt":              "192.0.2.7\n",
	})
	custom := writeTree(t, map[string]string{"mine.txt": "shared.com\nmine.org\n192.0.2.7,scanner we run,(custom)\n"})
	feeds := writeTree(t, map[string]string{
		"trails.csv": "shared.com,phishing,openphish.com\r\nfeed-only.net,malware,abuse.ch\r\n192.0.2.7,known attacker,blocklist.de\r\n",
	})
	cidrs := writeTree(t, map[string]string{"nets.txt": "10.1.2.3/8,bad net,(custom)\n2001:db8:1::/48\n10.0.0.0/8,again\n"})
	srcs := []Source{
		{Kind: KindStaticDir, Path: static, Priority: 30},
		{Kind: KindCIDRList, Path: filepath.Join(cidrs, "nets.txt"), Priority: 20},
		{Kind: KindTrailsCSV, Path: filepath.Join(feeds, "trails.csv"), Priority: 0},
		{Kind: KindCustomList, Path: custom, Priority: 20},
	}
	m, err := Merge(srcs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tr := range m.Trails {
		keys = append(keys, tr.Key)
	}
	// First-seen order over the sources in priority order: the feed file,
	// then the custom list, then the static directory.
	wantKeys := []string{"shared.com", "feed-only.net", "192.0.2.7", "mine.org", "asyncrat-c2.com", "1.2.3.4:6606", "kozow.com"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("keys %q, want %q", keys, wantKeys)
	}
	for key, want := range map[string]Meta{
		"shared.com":    {"asyncrat (malware)", "(static) (+(custom),openphish.com)"},
		"192.0.2.7":     {"mass scanner", "(static) (+(custom),blocklist.de)"},
		"feed-only.net": {"malware", "abuse.ch"},
		"mine.org":      {"mine", "(custom)"},
		"kozow.com":     {"dynamic domain (suspicious)", "(static)"},
	} {
		if got, _ := lookupMerged(m, key); got != want {
			t.Errorf("%s: %+v, want %+v", key, got, want)
		}
	}
	wantCIDRs := []struct {
		p    string
		meta Meta
	}{
		{"10.0.0.0/8", Meta{"again", "(custom)"}},
		{"2001:db8:1::/48", Meta{"nets", "(custom)"}},
	}
	if len(m.CIDRs) != len(wantCIDRs) {
		t.Fatalf("CIDRs %+v", m.CIDRs)
	}
	for i, w := range wantCIDRs {
		c := m.CIDRs[i]
		if c.Prefix != netip.MustParsePrefix(w.p) || m.Metas[c.Meta] != w.meta {
			t.Errorf("CIDR %d: %v %+v, want %s %+v", i, c.Prefix, m.Metas[c.Meta], w.p, w.meta)
		}
	}
	if len(m.Sources) != 4 || m.Sources[0].Source.Kind != KindTrailsCSV || m.Sources[3].Source.Kind != KindStaticDir {
		t.Errorf("sources %+v", m.Sources)
	}
	// Overwritten: shared.com and 192.0.2.7 by the custom list, then both
	// again by the static directory. SameSource: 10.0.0.0/8 twice.
	wantStats := MergeStats{Rows: 14, SameSource: 1, Overwritten: 4}
	if m.Stats != wantStats {
		t.Errorf("stats %+v, want %+v", m.Stats, wantStats)
	}
	// Every Meta is used and distinct.
	seen := map[Meta]bool{}
	for _, mt := range m.Metas {
		if seen[mt] {
			t.Errorf("meta %+v twice", mt)
		}
		seen[mt] = true
	}
}

// TestMergeReadBackReference: a reference that already carries
// " (+...)" (a merged trails.csv read back) counts those sources again.
func TestMergeReadBackReference(t *testing.T) {
	dir := writeTree(t, map[string]string{"trails.csv": "k.com,x,\"(static) (+abuse.ch,b.org)\"\r\n"})
	srcs := []Source{
		{Kind: KindTrailsCSV, Path: filepath.Join(dir, "trails.csv")},
		feed(t, 1, "k.com,y,c.org", "j.com,z,\"q\""),
	}
	m, err := Merge(srcs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := lookupMerged(m, "k.com"); got != (Meta{"x", "(static) (+abuse.ch,b.org,c.org)"}) {
		t.Errorf("k.com: %+v", got)
	}
	// A list line does no CSV unquoting: the quotes are part of the text.
	if got, _ := lookupMerged(m, "j.com"); got != (Meta{"z", `"q"`}) {
		t.Errorf("j.com: %+v", got)
	}
	for _, tt := range []struct {
		ref, base string
		others    []string
	}{
		{"abuse.ch", "abuse.ch", nil},
		{"(static) (+a.org,b.org)", "(static)", []string{"a.org", "b.org"}},
		{"x (y) (+b)", "x (y)", []string{"b"}},
		{"a (+b,,c)", "a", []string{"b", "c"}},
		{"a (+)", "a", nil}, // Maltrail's empty suffix: dropped when written again
		{"a (+b", "a (+b", nil},
		{"(+b)", "(+b)", nil},
	} {
		base, others := splitReference(tt.ref)
		if base != tt.base || !slices.Equal(others, tt.others) {
			t.Errorf("splitReference(%q) = %q, %q", tt.ref, base, others)
		}
	}
}

func TestMergeWhitelist(t *testing.T) {
	wl := NewWhitelist()
	for _, e := range []string{"good.com", "1.2.3.4", "10.0.0.0/8", "dead::beef", "192.0.2.0/24", "2001:db8::0/32"} {
		wl.Add(e)
	}
	src := feed(t, 0,
		"good.com,x,a", "sub.good.com,x,a", "1.2.3.4,x,a", "1.2.3.4:80,x,a", "10.9.9.9,x,a", "evil.com,x,a", "dead::beef,x,a")
	cidrs := writeTree(t, map[string]string{"c.txt": "10.1.0.0/16\n10.0.0.0/7\n192.0.2.128/25\n192.0.0.0/16\n1.2.3.4/32\n1.2.3.0/24\n2001:db8::/32\n2001:db8::/31\n"})
	m, err := Merge([]Source{src, {Kind: KindCIDRList, Path: cidrs}}, wl)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tr := range m.Trails {
		keys = append(keys, tr.Key)
	}
	// The load check has no parent walk (spec §1.6), so sub.good.com
	// stays, and it matches IP:port keys as literals only.
	if want := []string{"sub.good.com", "1.2.3.4:80", "evil.com"}; !slices.Equal(keys, want) {
		t.Errorf("kept %q, want %q", keys, want)
	}
	var got []string
	for _, c := range m.CIDRs {
		got = append(got, c.Prefix.String())
	}
	// Inside a whitelisted range or equal to a literal: dropped. Only
	// overlapping a range: kept.
	if want := []string{"1.2.3.0/24", "10.0.0.0/7", "192.0.0.0/16", "2001:db8::/31"}; !slices.Equal(got, want) {
		t.Errorf("CIDRs %q, want %q", got, want)
	}
	if m.Stats.Whitelisted != 4+4 {
		t.Errorf("whitelisted %d", m.Stats.Whitelisted)
	}
}

func TestMergeEmpty(t *testing.T) {
	if _, err := Merge(nil, nil); !errors.Is(err, ErrNoTrails) {
		t.Errorf("no sources: %v", err)
	}
	wl := NewWhitelist()
	wl.Add("good.com")
	src := feed(t, 0, "good.com,x,y", "bad line here", "# only comments")
	_, err := Merge([]Source{src}, wl)
	if !errors.Is(err, ErrNoTrails) || !strings.Contains(err.Error(), "1 malformed lines, 1 whitelisted") {
		t.Errorf("all whitelisted: %v", err)
	}
	// A source that cannot be read fails the merge, naming it.
	_, err = Merge([]Source{src, {Kind: KindStaticDir, Path: filepath.Join(t.TempDir(), "none")}}, nil)
	if err == nil || errors.Is(err, ErrNoTrails) || !strings.Contains(err.Error(), "static:") {
		t.Errorf("missing source: %v", err)
	}
}

func TestWriteCSVQuoting(t *testing.T) {
	m := &Merged{
		Trails: []Trail{
			{Key: "evil.com", Meta: 0},
			{Key: `[0-9]{2,3}\.ru`, Meta: 1},
			{Key: `a"b`, Meta: 2},
			{Key: "x\ny", Meta: 0},
			{Key: "cr\rhere", Meta: 0},
			{Key: "", Meta: 3},
			{Key: " spaced ", Meta: 0},
		},
		Metas: []Meta{
			{"asyncrat (malware)", "(static)"},
			{"x (malware)", "(static) (+a.org,b.org)"},
			{`"quoted"`, "r"},
			{"", ""},
		},
	}
	var buf bytes.Buffer
	if err := m.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	// What Python's csv.writer (QUOTE_MINIMAL, lineterminator "\r\n")
	// writes for these rows.
	want := "evil.com,asyncrat (malware),(static)\r\n" +
		`"[0-9]{2,3}\.ru",x (malware),"(static) (+a.org,b.org)"` + "\r\n" +
		`"a""b","""quoted""",r` + "\r\n" +
		"\"x\ny\",asyncrat (malware),(static)\r\n" +
		"\"cr\rhere\",asyncrat (malware),(static)\r\n" +
		",,\r\n" +
		" spaced ,asyncrat (malware),(static)\r\n"
	if buf.String() != want {
		t.Errorf("got\n%q\nwant\n%q", buf.String(), want)
	}
	rows, st := readAll(t, want)
	if st.Skipped != 0 || len(rows) != len(m.Trails) {
		t.Fatalf("read back %d rows, %+v", len(rows), st)
	}
	for i, r := range rows {
		mt := m.Metas[m.Trails[i].Meta]
		if r.Trail != m.Trails[i].Key || r.Info != mt.Info || r.Reference != mt.Reference {
			t.Errorf("row %d: %+v", i, r)
		}
	}

	bad := &Merged{Trails: []Trail{{Key: "x", Meta: 1}}, Metas: []Meta{{}}}
	if err := bad.WriteCSV(&buf); err == nil {
		t.Error("a meta index out of range was written")
	}
	if err := m.WriteCSV(errWriter{}); err == nil || !strings.Contains(err.Error(), "write trails.csv") {
		t.Errorf("write error: %v", err)
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestMergeRoundTrip writes the merge of a static directory and a feed as
// trails.csv and loads it with LoadSet and LoadNames; merging the written
// file again gives the same bytes.
func TestMergeRoundTrip(t *testing.T) {
	static := writeTree(t, map[string]string{
		"malware/asyncrat.txt":          "asyncrat-c2.com\nevil.com/gate.php\n1.2.3.4:6606\n1.2.3.4\ndead::beef\n[dead::beef]:443\n" + `dga[0-9]+\.wildcard-test\.com` + "\n" + `[0-9]{2,3}\.ru` + "\n",
		"suspicious/dynamic_domain.txt": "kozow.com\n",
		"mass_scanner.txt":              "192.0.2.7\n",
	})
	fd := feed(t, 0, "asyncrat-c2.com,c2,abuse.ch", "5.6.7.8,known attacker,blocklist.de")
	m, err := Merge([]Source{fd, {Kind: KindStaticDir, Path: static, Priority: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := m.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "asyncrat-c2.com,asyncrat (malware),(static) (+abuse.ch)\r\n") || !strings.Contains(out, "\"[0-9]{2,3}\\.ru\",asyncrat (malware),(static)\r\n") {
		t.Errorf("csv:\n%s", out)
	}

	set, err := LoadSet(strings.NewReader(out), "merged.csv")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		addr string
		port uint16
		want Meta
	}{
		{"1.2.3.4", 6606, Meta{"asyncrat (malware)", "(static)"}},
		{"1.2.3.4", 0, Meta{"asyncrat (malware)", "(static)"}},
		{"dead::beef", 443, Meta{"asyncrat (malware)", "(static)"}},
		{"192.0.2.7", 0, Meta{"mass scanner", "(static)"}},
		{"5.6.7.8", 0, Meta{"known attacker", "blocklist.de"}},
	} {
		if got, ok := set.Lookup(netip.MustParseAddr(k.addr), k.port); !ok || got != k.want {
			t.Errorf("LoadSet %s:%d = %+v, %v", k.addr, k.port, got, ok)
		}
	}
	if set.Stats.Skipped != 0 || len(set.IPs) != 6 {
		t.Errorf("set: %d IPs, %+v", len(set.IPs), set.Stats)
	}

	names, err := LoadNames(strings.NewReader(out), "merged.csv", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := names.Lookup("evil.com/gate.php"); !ok || got.Info != "asyncrat (malware)" {
		t.Errorf("URL trail: %+v %v", got, ok)
	}
	if got, ok := names.Lookup("kozow.com"); !ok || got.Info != "dynamic domain (suspicious)" {
		t.Errorf("domain trail: %+v %v", got, ok)
	}
	if names.Stats.Regexes != 2 || len(names.Problems) != 0 {
		t.Errorf("regexes %d, problems %v", names.Stats.Regexes, names.Problems)
	}
	var hit DomainHit
	if !names.CheckDomain([]byte("dga123.wildcard-test.com"), &hit) {
		t.Error("regex trail from the static list does not match")
	}

	// Merging the written file again changes nothing, and WriteFile
	// writes the same bytes.
	path := filepath.Join(t.TempDir(), "trails.csv")
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	m2, err := Merge([]Source{{Kind: KindTrailsCSV, Path: path}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf2 bytes.Buffer
	if err := m2.WriteCSV(&buf2); err != nil {
		t.Fatal(err)
	}
	if buf2.String() != out {
		t.Errorf("second merge differs:\n%s\nvs\n%s", buf2.String(), out)
	}
	if _, err := os.Stat(path + ".new"); !os.IsNotExist(err) {
		t.Errorf("%s.new left behind: %v", path, err)
	}
	if err := m.WriteFile(filepath.Join(t.TempDir(), "no", "such", "dir", "trails.csv")); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}
