package trails

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t testing.TB, input string) ([]Row, Stats) {
	t.Helper()
	var rows []Row
	st, err := ReadCSV(strings.NewReader(input), "t.csv", func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		t.Fatalf("ReadCSV: %v", err)
	}
	return rows, st
}

func TestReadCSV(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Row
		skipped int
		samples []string
	}{
		{
			name: "crlf plain",
			in:   "evil.com,asyncrat (malware),(static)\r\n1.2.3.4,mass scanner,(static)\r\n",
			want: []Row{{"evil.com", "asyncrat (malware)", "(static)", 1}, {"1.2.3.4", "mass scanner", "(static)", 2}},
		},
		{
			name: "lf, no final newline",
			in:   "a,b,c\nd,e,f",
			want: []Row{{"a", "b", "c", 1}, {"d", "e", "f", 2}},
		},
		{
			name: "lone cr ends records",
			in:   "a,b,c\rd,e,f\r",
			want: []Row{{"a", "b", "c", 1}, {"d", "e", "f", 2}},
		},
		{
			name: "quoted fields",
			in:   "\"q(l|r)[0-9]{5,6}\\.pw\",magentocore (malicious),(static)\r\n\"a\"\"b\",\"\",\"x,y\"\r\n",
			want: []Row{{`q(l|r)[0-9]{5,6}\.pw`, "magentocore (malicious)", "(static)", 1}, {`a"b`, "", "x,y", 2}},
		},
		{
			name: "escaped quotes at both ends and middle",
			in:   "\"\"\"a\"\"\"\"b\"\"\",i,r\n",
			want: []Row{{`"a""b"`, "i", "r", 1}},
		},
		{
			name: "embedded newlines",
			in:   "\"multi\r\nline\",\"info\nmore\",r\r\nnext,i,r\r\n",
			want: []Row{{"multi\r\nline", "info\nmore", "r", 1}, {"next", "i", "r", 4}},
		},
		{
			name: "quote inside unquoted field is literal",
			in:   "a\"b,c\"\",d\n",
			want: []Row{{`a"b`, `c""`, "d", 1}},
		},
		{
			name:    "wrong field counts",
			in:      "a,b\r\na,b,c,d\r\nok,i,r\r\na,b,c,\r\n,,\r\nsingle\r\n",
			want:    []Row{{"ok", "i", "r", 3}, {"", "", "", 5}},
			skipped: 4,
			samples: []string{"t.csv:1: 2 fields, want 3", "t.csv:2: 4 fields, want 3", "t.csv:4: 4 fields, want 3", "t.csv:6: 1 fields, want 3"},
		},
		{
			name: "blank lines are not rows",
			in:   "\r\n\r\na,b,c\r\n\n\r\nd,e,f\r\n\r\n",
			want: []Row{{"a", "b", "c", 3}, {"d", "e", "f", 6}},
		},
		{
			name:    "text after closing quote resyncs at the next line",
			in:      "\"ab\"c,i,r\r\nok,i,r\r\n",
			want:    []Row{{"ok", "i", "r", 2}},
			skipped: 1,
			samples: []string{"t.csv:1: text after a closing quote"},
		},
		{
			name:    "unclosed quote costs one row",
			in:      "\"stray,i,r\r\nok1,i,r\r\nok2,i,r\r\n",
			want:    []Row{{"ok1", "i", "r", 2}, {"ok2", "i", "r", 3}},
			skipped: 1,
			samples: []string{"t.csv:1: quoted field not closed before the end of the input"},
		},
		{
			name: "stray quote meets a later quoted field",
			// Python would read "stray…\n" up to the quote of line 3 and
			// fail there; the resync keeps lines 2 and 3.
			in:      "\"stray,i,r\nok,i,r\n\"q,x\",i,r\n",
			want:    []Row{{"ok", "i", "r", 2}, {"q,x", "i", "r", 3}},
			skipped: 1,
			samples: []string{"t.csv:1: text after a closing quote"},
		},
		{
			name:    "many stray quotes",
			in:      "\"a\n\"b\n\"c\nok,i,r\n",
			want:    []Row{{"ok", "i", "r", 4}},
			skipped: 3,
		},
		{
			name: "empty input",
			in:   "",
		},
		{
			name: "multi-line quoted field with wrong count is skipped whole",
			in:   "\"a\nb\",c\nok,i,r\n",
			want: []Row{{"ok", "i", "r", 3}}, skipped: 1,
			samples: []string{"t.csv:1: 2 fields, want 3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, st := readAll(t, tc.in)
			if !slices.Equal(rows, tc.want) {
				t.Errorf("rows:\n got %+v\nwant %+v", rows, tc.want)
			}
			if st.Rows != len(tc.want) || st.Skipped != tc.skipped {
				t.Errorf("stats = %+v, want %d rows, %d skipped", st, len(tc.want), tc.skipped)
			}
			if tc.samples != nil && !slices.Equal(st.Samples, tc.samples) {
				t.Errorf("samples:\n got %q\nwant %q", st.Samples, tc.samples)
			}
			if refRows, refSkipped := refReadCSV(tc.in); !slices.Equal(rows, refRows) || st.Skipped != refSkipped {
				t.Errorf("reference reader: %+v skipped %d", refRows, refSkipped)
			}
			// The same input, read one byte at a time, must give the same
			// result: records that straddle reads are the hard case.
			var rows1 []Row
			st1, err := ReadCSV(iotest.OneByteReader(strings.NewReader(tc.in)), "t.csv", func(r Row) error {
				rows1 = append(rows1, r)
				return nil
			})
			if err != nil || !slices.Equal(rows1, rows) || st1.Rows != st.Rows || st1.Skipped != st.Skipped {
				t.Errorf("one byte at a time: rows %+v stats %+v err %v", rows1, st1, err)
			}
		})
	}
}

func TestReadCSVSamplesCapped(t *testing.T) {
	_, st := readAll(t, strings.Repeat("x\n", 12)+"a,b,c\n")
	if st.Skipped != 12 || len(st.Samples) != maxSamples || st.Rows != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestReadCSVLongRecords(t *testing.T) {
	long := strings.Repeat("x", maxRecord+100)
	in := long + ",i,r\nok1,i,r\n\"" + long + "\",i,r\nok2,i,r\n"
	rows, st := readAll(t, in)
	want := []Row{{"ok1", "i", "r", 2}, {"ok2", "i", "r", 4}}
	if !slices.Equal(rows, want) || st.Skipped != 2 {
		t.Errorf("rows %d %+v, stats %+v", len(rows), rows, st)
	}
	// A quoted field under the limit but longer than the read buffer.
	mid := strings.Repeat("y", 3*readChunk)
	rows, st = readAll(t, "\""+mid+"\"\"z\",i,r\r\n")
	if len(rows) != 1 || rows[0].Trail != mid+"\"z" || st.Skipped != 0 {
		t.Errorf("long quoted field: %d rows, stats %+v", len(rows), st)
	}
}

// TestReadCSVUnclosedQuotesLinear: a file where every line opens a quote
// and none closes must not cost a scan to the end of input per line.
func TestReadCSVUnclosedQuotesLinear(t *testing.T) {
	in := strings.Repeat("\"unclosed,i,r\n", 200000) // 2.8 MB
	calls := 0
	r := &countingReader{r: strings.NewReader(in), n: &calls}
	st, err := ReadCSV(r, "t.csv", func(Row) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 200000 || st.Rows != 0 {
		t.Errorf("stats %+v", st)
	}
}

type countingReader struct {
	r io.Reader
	n *int
}

func (c *countingReader) Read(p []byte) (int, error) { *c.n++; return c.r.Read(p) }

func TestReadCSVCallbackError(t *testing.T) {
	stop := errors.New("stop")
	_, err := ReadCSV(strings.NewReader("a,b,c\nd,e,f\n"), "t.csv", func(r Row) error {
		if r.Line == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !strings.HasPrefix(err.Error(), "t.csv:2: ") {
		t.Errorf("err = %v", err)
	}
}

func TestReadCSVReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("a,b,c\n"), iotest.ErrReader(boom))
	st, err := ReadCSV(r, "t.csv", func(Row) error { return nil })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "t.csv") || st.Rows != 1 {
		t.Errorf("err = %v, stats %+v", err, st)
	}
}

func TestOpenGzip(t *testing.T) {
	dir := t.TempDir()
	data := "a,b,c\r\nd,e,f\r\n"
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(data))
	zw.Close()
	for name, content := range map[string][]byte{"t.csv": []byte(data), "t.csv.gz": zb.Bytes()} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		rc, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || string(got) != data {
			t.Errorf("%s: %q, %v", name, got, err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing.csv")); err == nil {
		t.Error("Open of a missing file succeeded")
	}
	bad := filepath.Join(dir, "bad.gz")
	os.WriteFile(bad, []byte("not gzip"), 0o644)
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), "bad.gz") {
		t.Errorf("Open of a bad gzip: %v", err)
	}
}

func FuzzReadCSV(f *testing.F) {
	f.Add("evil.com,asyncrat (malware),(static)\r\n1.2.3.4:80,mass scanner,(static)\r\n")
	f.Add("\"q(l|r)[0-9]{5,6}\\.pw\",magentocore (malicious),(static)\r\n\"a\"\"b\",\"\",\"x,y\"\r\n")
	f.Add("\"multi\r\nline\",\"info\nmore\",r\r\nnext,i,r\r\n")
	f.Add("\"stray,i,r\nok,i,r\n\"q,x\",i,r\n")
	f.Add("\"ab\"c,i,r\r\n\r\n\ra,b\r\na,b,c,d\n\"")
	f.Add("[dead::beef]:443,malware (test),(static)\ndead::beef,malware (test),(static)\n")
	f.Fuzz(func(t *testing.T, in string) {
		var rows []Row
		st, err := ReadCSV(strings.NewReader(in), "f.csv", func(r Row) error {
			rows = append(rows, r)
			return nil
		})
		if err != nil {
			t.Fatalf("ReadCSV: %v", err)
		}
		if st.Rows != len(rows) || len(st.Samples) > maxSamples || len(st.Samples) > st.Skipped {
			t.Fatalf("stats %+v with %d rows", st, len(rows))
		}
		last := 0
		for _, r := range rows {
			if r.Line <= last {
				t.Fatalf("line numbers not increasing: %d after %d", r.Line, last)
			}
			last = r.Line
		}
		// A naive reader with the same rules agrees (inputs here are far
		// below maxRecord).
		if len(in) < maxRecord {
			refRows, refSkipped := refReadCSV(in)
			if !slices.Equal(rows, refRows) || st.Skipped != refSkipped {
				t.Fatalf("reference reader differs:\n got %+v skipped %d\nwant %+v skipped %d", rows, st.Skipped, refRows, refSkipped)
			}
		}
		// Reading in one-byte pieces must not change anything.
		var rows1 []Row
		st1, err := ReadCSV(iotest.OneByteReader(strings.NewReader(in)), "f.csv", func(r Row) error {
			rows1 = append(rows1, r)
			return nil
		})
		if err != nil || !slices.Equal(rows, rows1) || st1.Skipped != st.Skipped {
			t.Fatalf("one-byte reads differ: %+v vs %+v", rows1, rows)
		}
		// LoadSet sees the same rows.
		s, err := LoadSet(strings.NewReader(in), "f.csv")
		if err != nil {
			t.Fatalf("LoadSet: %v", err)
		}
		if s.Stats.Rows != st.Rows || s.Other+s.NonCanonical+s.Duplicates+len(s.IPs) != st.Rows {
			t.Fatalf("LoadSet counts %+v vs %d rows", s, st.Rows)
		}
		// A row written back by a QUOTE_MINIMAL writer reads back the same.
		var b strings.Builder
		for _, r := range rows {
			writeField(&b, r.Trail)
			b.WriteByte(',')
			writeField(&b, r.Info)
			b.WriteByte(',')
			writeField(&b, r.Reference)
			b.WriteString("\r\n")
		}
		back, st2 := readAll(t, b.String())
		if st2.Skipped != 0 || len(back) != len(rows) {
			t.Fatalf("round trip: %d rows, stats %+v", len(back), st2)
		}
		for i := range back {
			r, w := back[i], rows[i]
			if r.Trail != w.Trail || r.Info != w.Info || r.Reference != w.Reference {
				t.Fatalf("round trip row %d: %+v vs %+v", i, r, w)
			}
		}
	})
}

// writeField writes s as Python's csv.writer with QUOTE_MINIMAL does.
// A field starting with '"' or empty-looking edge cases are quoted too,
// so the round trip is exact.
func writeField(b *strings.Builder, s string) {
	if !strings.ContainsAny(s, ",\"\r\n") {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	b.WriteString(strings.ReplaceAll(s, `"`, `""`))
	b.WriteByte('"')
}

// refReadCSV is a slow, obvious transcription of ReadCSV's rules over a
// whole string, without buffers, size limits or the quote-free memo.
func refReadCSV(in string) (rows []Row, skipped int) {
	isDelim := func(c byte) bool { return c == ',' || c == '\n' || c == '\r' }
	pos, line := 0, 1
	for pos < len(in) {
		switch in[pos] {
		case '\n':
			pos, line = pos+1, line+1
			continue
		case '\r':
			pos++
			if pos < len(in) && in[pos] == '\n' {
				pos++
			}
			line++
			continue
		}
		var fields []string
		p, lines, bad := pos, 0, false
	record:
		for {
			if p < len(in) && in[p] == '"' {
				var sb strings.Builder
				i := p + 1
				for {
					if i >= len(in) {
						bad = true
						break record
					}
					if in[i] == '"' {
						if i+1 < len(in) && in[i+1] == '"' {
							sb.WriteByte('"')
							i += 2
							continue
						}
						break
					}
					sb.WriteByte(in[i])
					i++
				}
				if i+1 < len(in) && !isDelim(in[i+1]) {
					bad = true
					break record
				}
				lines += countLines([]byte(in[p : i+1]))
				fields = append(fields, sb.String())
				p = i + 1
			} else {
				i := p
				for i < len(in) && !isDelim(in[i]) {
					i++
				}
				fields = append(fields, in[p:i])
				p = i
			}
			switch {
			case p == len(in):
				break record
			case in[p] == ',':
				p++
			default: // a line break ends the record
				if in[p] == '\r' && p+1 < len(in) && in[p+1] == '\n' {
					p++
				}
				p++
				lines++
				break record
			}
		}
		if bad {
			skipped++
			i := pos
			for i < len(in) && in[i] != '\n' && in[i] != '\r' {
				i++
			}
			if i < len(in) && in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
				i++
			}
			if i < len(in) {
				line++
			}
			pos = i + 1
			continue
		}
		if len(fields) == 3 {
			rows = append(rows, Row{Trail: fields[0], Info: fields[1], Reference: fields[2], Line: line})
		} else {
			skipped++
		}
		line += lines
		pos = p
	}
	return rows, skipped
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestReadCSVNoProgress(t *testing.T) {
	_, err := ReadCSV(emptyReader{}, "t.csv", func(Row) error { return nil })
	if !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("err = %v, want io.ErrNoProgress", err)
	}
}
