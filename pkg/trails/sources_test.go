package trails

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeTree creates files (relative path -> content) under a new temp dir
// and returns the dir.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readSourceAll(t testing.TB, src Source) ([]Row, Stats) {
	t.Helper()
	var rows []Row
	st, err := ReadSource(src, func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadSource(%s): %v", src, err)
	}
	return rows, st
}

func TestStaticTrail(t *testing.T) {
	tests := []struct{ in, want, reason string }{
		{"", "", ""},
		{"   ", "", ""},
		{"# a comment", "", ""},
		{"evil.com", "evil.com", ""},
		{"  Evil.COM  # seen 2024", "evil.com", ""},
		{"evil.com\r", "evil.com", ""},
		{".evil.com.", "evil.com", ""},
		{"http://evil.com", "evil.com/", ""},
		{"HTTPS://Evil.com", "evil.com/", ""},
		{"hxxp://evil.com/", "evil.com/", ""},
		{"http://evil.com/Gate.PHP?id=", "evil.com/gate.php?id=", ""},
		{"evil.com/gate.php", "evil.com/gate.php", ""},
		{"/wp-content/x.php", "/wp-content/x.php", ""},
		{"evil.com/r?u=http://x.org", "evil.com/r?u=http://x.org", ""}, // only a leading scheme is removed
		{"1.2.3.4", "1.2.3.4", ""},
		{"1.2.3.4:8443", "1.2.3.4:8443", ""},
		{"http://1.2.3.4:8080", "1.2.3.4:8080/", ""},
		{"1.2.3", "1.2.3", ""},           // not a quad: a domain by the rules
		{"dead::beef", "dead::beef", ""}, // not a quad: kept, LoadSet reads it as IPv6
		{`dga[0-9]+\.wildcard-test\.com`, `dga[0-9]+\.wildcard-test\.com`, ""},
		{`q(l|r)[0-9]{5,6}\.pw`, `q(l|r)[0-9]{5,6}\.pw`, ""},
		{"300.1.2.3", "", "not Maltrail's text"},
		{"01.2.3.4", "", "not Maltrail's text"},
		{"1.2.3.4:0", "", "not Maltrail's text"},
		{"1.2.3.4:65536", "", "not Maltrail's text"},
		{"evil.com extra", "", "white space"},
		{"evil\x00.com", "", "control"},
		{"bücher.de", "", "non-ASCII"},
		{"http://", "", "nothing after the scheme"},
		{"...", "", "nothing but dots"},
	}
	for _, tt := range tests {
		got, reason := StaticTrail(tt.in)
		if got != tt.want || (tt.reason == "") != (reason == "") || !strings.Contains(reason, tt.reason) {
			t.Errorf("StaticTrail(%q) = %q, %q; want %q, reason containing %q", tt.in, got, reason, tt.want, tt.reason)
		}
	}
}

func TestReadSourceStaticDir(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"malware/asyncrat.txt":          "# AsyncRAT\n# reference: somewhere\nasyncrat-c2.com\nhttp://Evil.example.org/gate.php # panel\n\n1.2.3.4:6606\n999.1.1.1\n",
		"malware/android_hydra.txt":     "hydra.top\r\n",
		"suspicious/dynamic_domain.txt": "kozow.com\n",
		"malicious/bad_stuff.txt":       "bad stuff.com\n",
		"mass_scanner.txt":              "\xef\xbb\xbf192.0.2.7\n",
		"__init__.py":                   "not a list\n",
		"malware/README.md":             "not a list\n",
		".git/x.txt":                    "hidden.com\n",
	})
	rows, st := readSourceAll(t, Source{Kind: KindStaticDir, Path: dir})
	// Lexical walk: malicious/, malware/ (android_hydra before asyncrat),
	// mass_scanner.txt, suspicious/.
	want := []Row{
		{"hydra.top", "android hydra (malware)", "(static)", 1},
		{"asyncrat-c2.com", "asyncrat (malware)", "(static)", 3},
		{"evil.example.org/gate.php", "asyncrat (malware)", "(static)", 4},
		{"1.2.3.4:6606", "asyncrat (malware)", "(static)", 6},
		{"192.0.2.7", "mass scanner", "(static)", 1},
		{"kozow.com", "dynamic domain (suspicious)", "(static)", 1},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("rows\n got %+v\nwant %+v", rows, want)
	}
	if st.Rows != len(want) || st.Skipped != 2 || len(st.Samples) != 2 {
		t.Fatalf("stats %+v", st)
	}
	bad := filepath.Join(dir, "malicious", "bad_stuff.txt") + ":1: white space"
	if !strings.HasPrefix(st.Samples[0], bad) {
		t.Errorf("sample %q, want prefix %q", st.Samples[0], bad)
	}
	bad = filepath.Join(dir, "malware", "asyncrat.txt") + ":7: not Maltrail's text"
	if !strings.HasPrefix(st.Samples[1], bad) {
		t.Errorf("sample %q, want prefix %q", st.Samples[1], bad)
	}
}

func TestReadSourceCustomList(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"my_list.txt": "\xef\xbb\xbfEvil.com\r\n" +
			"bad.org, phishing (malicious) \r\n" +
			"1.2.3.4,known attacker,(remote custom)\n" +
			"x.net,,\n" + // empty fields take the defaults
			"# only a comment\n" +
			"a.com,b,c,d\n" + // too many fields
			",info\n" + // no trail
			"y.net,ctrl\x01info\n" +
			"http://z.net # trailing comment, not a field\n" +
			"evil.com\n", // the final line has no line break
		"other.txt":   "other.org\n",
		"skip.md":     "not read\n",
		"sub/sub.txt": "not read either\n",
	})
	rows, st := readSourceAll(t, Source{Kind: KindCustomList, Path: dir})
	want := []Row{
		{"evil.com", "my_list", "(custom)", 1},
		{"bad.org", "phishing (malicious)", "(custom)", 2},
		{"1.2.3.4", "known attacker", "(remote custom)", 3},
		{"x.net", "my_list", "(custom)", 4},
		{"z.net/", "my_list", "(custom)", 9},
		{"evil.com", "my_list", "(custom)", 10},
		{"other.org", "other", "(custom)", 1},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("rows\n got %+v\nwant %+v", rows, want)
	}
	if st.Skipped != 3 || st.Rows != len(want) {
		t.Errorf("stats %+v", st)
	}
	for i, w := range []string{":6: 4 fields", ":7: empty trail", ":8: info or reference"} {
		if i >= len(st.Samples) || !strings.Contains(st.Samples[i], "my_list.txt"+w) {
			t.Errorf("sample %d of %q, want %q", i, st.Samples, w)
		}
	}

	// One file, compressed: the info drops ".txt.gz".
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("gz.example.org\n"))
	zw.Close()
	p := filepath.Join(t.TempDir(), "zipped.txt.gz")
	if err := os.WriteFile(p, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, _ = readSourceAll(t, Source{Kind: KindCustomList, Path: p})
	if want := []Row{{"gz.example.org", "zipped", "(custom)", 1}}; !slices.Equal(rows, want) {
		t.Errorf("gz rows %+v", rows)
	}
}

func TestReadSourceCIDRList(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"scanners.txt": "10.1.2.3/8\n" +
			"192.0.2.0/24, census scanner (suspicious) ,shodan.io\n" +
			"2001:DB8:0:0:1::/64\n" +
			"2001:db8::/32\n" +
			"198.51.100.7\n" + // a host prefix
			"dead::beef\n" +
			"0.0.0.0/0\n" +
			"10.0.0.0/33\n" +
			"010.0.0.0/8\n" +
			"fe80::1%eth0\n" +
			"evil.com\n",
	})
	var prefixes []netip.Prefix
	var rows []Row
	st, err := readSource(Source{Kind: KindCIDRList, Path: filepath.Join(dir, "scanners.txt")}, nil, func(r Row, p netip.Prefix) error {
		rows = append(rows, r)
		prefixes = append(prefixes, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{"10.0.0.0/8", "scanners", "(custom)", 1},
		{"192.0.2.0/24", "census scanner (suspicious)", "shodan.io", 2},
		{"2001:db8::0/64", "scanners", "(custom)", 3},
		{"2001:db8::0/32", "scanners", "(custom)", 4},
		{"198.51.100.7/32", "scanners", "(custom)", 5},
		{"dead::beef/128", "scanners", "(custom)", 6},
	}
	if !slices.Equal(rows, want) {
		t.Errorf("rows\n got %+v\nwant %+v", rows, want)
	}
	wantP := []string{"10.0.0.0/8", "192.0.2.0/24", "2001:db8::/64", "2001:db8::/32", "198.51.100.7/32", "dead::beef/128"}
	for i, p := range prefixes {
		if i < len(wantP) && p != netip.MustParsePrefix(wantP[i]) {
			t.Errorf("prefix %d = %v, want %s", i, p, wantP[i])
		}
	}
	if st.Skipped != 5 || !strings.Contains(st.Samples[0], "scanners.txt:7: prefix length 0") {
		t.Errorf("stats %+v", st)
	}
}

func TestCIDRText(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3/8":          "10.0.0.0/8",
		"2001:DB8:1:2:3::/48": "2001:db8:1::0/48",
		"2001:db8::/32":       "2001:db8::0/32",
		"::/1":                "::0/1",
		"1:0:0:2:0:0:0:3/128": "1:0:0:2::3/128",
		"::ffff:10.0.0.0/104": "::ffff:a00:0/104",
	} {
		p, reason := ParseCIDR(in)
		if reason != "" {
			t.Errorf("ParseCIDR(%q): %s", in, reason)
			continue
		}
		if got := CIDRText(p); got != want {
			t.Errorf("CIDRText(%q) = %q, want %q", in, got, want)
		}
		// The text parses back to the same prefix.
		if q, reason := ParseCIDR(CIDRText(p)); reason != "" || q != p {
			t.Errorf("ParseCIDR(CIDRText(%v)) = %v, %q", p, q, reason)
		}
	}
}

func TestReadSourceTrailsCSV(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"trails.csv": "evil.com,asyncrat (malware),(static)\r\nbroken\r\n\"a,b\",x,y\r\n",
	})
	rows, st := readSourceAll(t, Source{Kind: KindTrailsCSV, Path: filepath.Join(dir, "trails.csv")})
	want := []Row{{"evil.com", "asyncrat (malware)", "(static)", 1}, {"a,b", "x", "y", 3}}
	if !slices.Equal(rows, want) || st.Skipped != 1 || !strings.Contains(st.Samples[0], "trails.csv:2:") {
		t.Errorf("rows %+v stats %+v", rows, st)
	}
}

func TestReadSourceErrors(t *testing.T) {
	dir := writeTree(t, map[string]string{"malware/x.txt": "a.com\nb.com\n", "list.txt": "a.com\n"})
	for _, src := range []Source{
		{Kind: KindStaticDir, Path: filepath.Join(dir, "missing")},
		{Kind: KindStaticDir, Path: filepath.Join(dir, "list.txt")}, // a file, not a directory
		{Kind: KindCustomList, Path: filepath.Join(dir, "missing.txt")},
		{Kind: KindTrailsCSV, Path: filepath.Join(dir, "missing.csv")},
		{Kind: 0, Path: dir},
	} {
		_, err := ReadSource(src, func(Row) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "read trail source") {
			t.Errorf("%s: err %v", src, err)
		}
	}
	// An error from fn stops the reading and names file:line.
	stop := errors.New("stop")
	n := 0
	_, err := ReadSource(Source{Kind: KindStaticDir, Path: dir}, func(r Row) error {
		n++
		if r.Trail == "b.com" {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 || // list.txt, then malware/x.txt
		!strings.Contains(err.Error(), filepath.Join("malware", "x.txt")+":2:") {
		t.Errorf("err %v after %d rows", err, n)
	}
}

func TestReadSourceLongLine(t *testing.T) {
	long := strings.Repeat("a", maxRecord+10)
	dir := writeTree(t, map[string]string{
		"long.txt":  "first.com\n" + long + "\nafter.com\n" + strings.Repeat("b", 100<<10) + ".com\n",
		"final.txt": "ok.com\n" + long, // no final line break
	})
	rows, st := readSourceAll(t, Source{Kind: KindCustomList, Path: dir})
	var got []string
	for _, r := range rows {
		got = append(got, r.Trail)
	}
	want := []string{"ok.com", "first.com", "after.com", strings.Repeat("b", 100<<10) + ".com"}
	if !slices.Equal(got, want) {
		t.Errorf("trails %d, want %d", len(got), len(want))
	}
	if st.Skipped != 2 || !strings.Contains(st.Samples[0], "final.txt:2: line longer") || !strings.Contains(st.Samples[1], "long.txt:2: line longer") {
		t.Errorf("stats %+v", st)
	}
	if rows[2].Line != 3 {
		t.Errorf("after.com at line %d", rows[2].Line)
	}
}

// FuzzReadSourceLine checks the static-list line rules on any line: no
// panic; a kept trail is non-empty, lowercase printable ASCII without
// white space or '#', reads back as itself unless it starts with a
// scheme, is a valid address when it
// looks like a dotted quad, has no dots at its ends when it is a domain,
// and survives WriteCSV and ReadCSV unchanged; and reading the line from a
// file through a custom list gives the same trail.
func FuzzReadSourceLine(f *testing.F) {
	for _, s := range []string{
		"evil.com", "http://evil.com", "HTTPS://x.org/a?b=c#frag", ".a.b.", "1.2.3.4:80", "300.1.1.1",
		`dga[0-9]+\.x\.com`, "a,b\"c", "bücher.de", "\ufeffx.com", "x://y://z", "...", "::1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		trail, reason := StaticTrail(line)
		if reason != "" && trail != "" {
			t.Fatalf("%q: both trail %q and reason %q", line, trail, reason)
		}
		if trail == "" {
			return
		}
		for i := 0; i < len(trail); i++ {
			c := trail[i]
			if c <= ' ' || c >= 0x7f || c == '#' || (c >= 'A' && c <= 'Z') {
				t.Fatalf("%q: trail %q has byte %q", line, trail, c)
			}
		}
		if schemeLen(trail) == 0 {
			if again, reason := StaticTrail(trail); again != trail || reason != "" {
				t.Fatalf("%q: trail %q read again gives %q, %q", line, trail, again, reason)
			}
		}
		if !strings.Contains(trail, "/") {
			if isQuad(trail) {
				if _, _, ok := ParseIPKey(trail); !ok {
					t.Fatalf("%q: quad trail %q is not an address key", line, trail)
				}
			} else if trail[0] == '.' || trail[len(trail)-1] == '.' {
				t.Fatalf("%q: domain trail %q has end dots", line, trail)
			}
		}
		// WriteCSV -> ReadCSV keeps the trail.
		m := &Merged{Trails: []Trail{{Key: trail}}, Metas: []Meta{{Info: "i", Reference: "(static)"}}}
		var buf bytes.Buffer
		if err := m.WriteCSV(&buf); err != nil {
			t.Fatal(err)
		}
		var back []Row
		if _, err := ReadCSV(&buf, "f.csv", func(r Row) error { back = append(back, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(back) != 1 || back[0].Trail != trail {
			t.Fatalf("%q: round trip of %q gave %+v", line, trail, back)
		}
		// The same line through a file, where ',' separates fields and
		// line breaks separate lines.
		if strings.ContainsAny(line, ",\r\n") || strings.HasPrefix(line, "\ufeff") {
			return
		}
		var st Stats
		var got []string
		err := eachLine(strings.NewReader(line+"\n"), "f.txt", &st, func(b []byte, _ int) error {
			tr, _, _, reason := parseCustomLine(string(b), "f")
			if reason == "" && tr != "" {
				got = append(got, tr)
			}
			return nil
		})
		if err != nil || len(got) != 1 || got[0] != trail {
			t.Fatalf("%q: through a file %q, %v; want %q", line, got, err, trail)
		}
	})
}
