package maltrail

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func cols(f *LineFields) []string {
	out := make([]string, NumCols)
	for i, c := range f.Cols {
		out[i] = string(c)
	}
	return out
}

func TestSplitLine(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string
	}{
		{`"2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS malware.bakewithdavid.com "asyncrat (malware)" (static)` + "\n",
			[]string{"2026-08-07 09:14:22.117034", "gw", "10.13.13.2", "57809", "1.1.1.1", "53", "UDP", "DNS", "malware.bakewithdavid.com", "asyncrat (malware)", "(static)"}},
		{`"2026-08-07 09:14:22.000001" s 10.0.0.5,203.0.113.9 50000 1.2.3.4 80 TCP URL "host.example(/a?b=c ""quoted"")" "potential sql injection (suspicious)" (heuristic)`,
			[]string{"2026-08-07 09:14:22.000001", "s", "10.0.0.5,203.0.113.9", "50000", "1.2.3.4", "80", "TCP", "URL", `host.example(/a?b=c "quoted")`, "potential sql injection (suspicious)", "(heuristic)"}},
		{`"2026-08-07 09:14:22.000000" "my sensor" - - - - - - """" "" "a""""b"` + "\n",
			[]string{"2026-08-07 09:14:22.000000", "my sensor", "-", "-", "-", "-", "-", "-", `"`, "", `a""b`}},
	} {
		var f LineFields
		if err := f.Split([]byte(c.line)); err != nil {
			t.Errorf("Split(%q): %v", c.line, err)
			continue
		}
		if got := cols(&f); strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("Split(%q)\n got %q\nwant %q", c.line, got, c.want)
		}
	}
}

func TestSplitLineRejects(t *testing.T) {
	for _, bad := range []string{
		"",
		"\n",
		`"t" s a b c d e f g h`,         // ten columns
		`"t" s a b c d e f g h i j`,     // twelve
		`"t" s a b c d e f g h  i`,      // an empty column
		`"t" s a b c d e f g h "i`,      // unterminated quote
		`"t" s a b c d e f g h"x" i`,    // a quote inside a bare column
		`"t" s a b c d e f g "h"x i`,    // text after a closing quote
		`"t" s a b c d e f g h i` + " ", // trailing space
	} {
		var f LineFields
		if err := f.Split([]byte(bad)); !errors.Is(err, ErrLine) {
			t.Errorf("Split(%q) = %v, want ErrLine", bad, err)
		}
	}
}

func TestSplitLineAllocs(t *testing.T) {
	line := []byte(`"2026-08-07 09:14:22.000001" s 10.0.0.5 50000 1.2.3.4 80 TCP URL "host.example(/a?b=c ""quoted"")" "potential sql injection (suspicious)" (heuristic)` + "\n")
	var f LineFields
	if err := f.Split(line); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = f.Split(line) }); n != 0 {
		t.Errorf("Split allocates %.1f times per line", n)
	}
}

// safeText is what a value reads as after AppendSafe and Split.
func safeText(v string) string {
	if v == "" {
		return "-"
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
}

// FuzzSplitLine renders arbitrary column values and splits the line back:
// every column must come back as safe_value left it.
func FuzzSplitLine(f *testing.F) {
	f.Add("gw", "10.0.0.5,203.0.113.9", "50000,50001", "1.2.3.4", "-", "TCP", "URL", `host.example(/a?b=c "q")`, "potential sql injection (suspicious)", "(heuristic)")
	f.Add("", "", "", "", "", "", "", "", "", "")
	f.Add("a b", "\"", "\r\n", " ", "\"\"", "x\ny", "-", "\x00", "é", "a  b")
	f.Fuzz(func(t *testing.T, sensor, src, sport, dst, dport, proto, typ, trail, info, ref string) {
		r := Renderer{Sensor: sensor, Loc: time.UTC}
		ev := TextEvent{Time: time.Unix(1786094062, 117034000), SrcIP: src, SrcPort: sport, DstIP: dst, DstPort: dport,
			Proto: proto, Type: typ, Trail: trail, Info: info, Reference: ref}
		line := r.AppendTextLine(nil, &ev)
		var lf LineFields
		if err := lf.Split(line); err != nil {
			t.Fatalf("Split(%q): %v", line, err)
		}
		want := []string{"2026-08-07 09:14:22.117034", safeText(sensor), safeText(src), safeText(sport), safeText(dst), safeText(dport),
			safeText(proto), safeText(typ), safeText(trail), safeText(info), safeText(ref)}
		if got := cols(&lf); strings.Join(got, "\x00|") != strings.Join(want, "\x00|") {
			t.Fatalf("line %q\n got %q\nwant %q", line, got, want)
		}
	})
}

// FuzzSplitRaw: any bytes either fail with ErrLine or split into columns
// that render back to a line splitting into the same columns.
func FuzzSplitRaw(f *testing.F) {
	f.Add([]byte(`"2026-08-07 09:14:22.117034" gw 10.13.13.2 57809 1.1.1.1 53 UDP DNS x "asyncrat (malware)" (static)` + "\n"))
	f.Add([]byte(`"t" "" """" a b c d e f g h`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var lf LineFields
		if err := lf.Split(b); err != nil {
			if !errors.Is(err, ErrLine) {
				t.Fatalf("error %v is not ErrLine", err)
			}
			return
		}
		first := cols(&lf)
		var again []byte
		for i, c := range first {
			if i > 0 {
				again = append(again, ' ')
			}
			again = AppendSafe(again, c)
		}
		var lf2 LineFields
		if err := lf2.Split(again); err != nil {
			t.Fatalf("re-rendered %q does not split: %v", again, err)
		}
		for i, c := range cols(&lf2) {
			if safeText(first[i]) != c {
				t.Fatalf("column %d: %q became %q", i+1, first[i], c)
			}
		}
	})
}
