package trails

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestLooksLikeRegex(t *testing.T) {
	tests := map[string]bool{
		`dga[0-9]+\.wildcard-test\.com`: true,
		`[a-z]{1}\.appjiagu\.com`:       true,
		`nklmtf[0-9][^.]*[0-9].t35.com`: true,
		`a.*b`:                          true,
		`a]+`:                           true,
		`[ABC]`:                         true, // case-insensitive
		`evil.com`:                      false,
		`/path?x=[1]`:                   true,
		`[]`:                            false,
		`[a b]`:                         false,
		`1.2.3.4`:                       false,
		`q(l|r)\.pw`:                    false,
	}
	for k, want := range tests {
		if got := looksLikeRegex([]byte(k)); got != want {
			t.Errorf("looksLikeRegex(%q) = %v", k, got)
		}
	}
	if !isRegexCandidate([]byte(`a[0-9]+\.com`), []byte("(static) (+abuse.ch)")) || isRegexCandidate([]byte(`a[0-9]+\.com`), []byte("(custom)")) {
		t.Error("isRegexCandidate: the reference must contain static")
	}
}

func TestTranslatePython(t *testing.T) {
	tests := []struct {
		in, out string
		err     string // substring; "" = translates
		python  bool   // Python rejects it too
	}{
		{`dga[0-9]+\.wildcard-test\.com`, `dga[0-9]+\.wildcard-test\.com`, "", false},
		{`^[a-z]{1,3}\-leboncoin\.(com|info)$`, `^[a-z]{1,3}\-leboncoin\.(com|info)$`, "", false},
		{`\b(a|b)\w{1,3}x\Z`, `\b(a|b)\w{1,3}x\z`, "", false},
		{`a{,3}b{,}c{2,}d{}e{x}`, `a{0,3}b{0,}c{2,}d\{}e\{x}`, "", false},
		{`[[:alpha:]]`, `[\[:alpha:]]`, "", false},
		{`[]a]`, `[\]a]`, "", false},
		{`[^]a]`, `[^\]a]`, "", false},
		{`[\b]`, `[\x08]`, "", false},
		{`\u00e9\U0001F600\0\012\101`, `\x{e9}\x{1f600}\x{0}\x{a}\x{41}`, "", false},
		{`(?P<tld>com|net)\.x`, `(com|net)\.x`, "", false},
		{`(?#note)a`, `a`, "", false},
		{`(?i)Evil`, `(?i)Evil`, "", false},
		{`(?au)a`, `a`, "", false},
		{`(?i:a)(?s-i:b)`, `(?i:a)(?s-i:b)`, "", false},
		{`a*?b+?`, `a*?b+?`, "", false},
		{`\/\-\ `, `\/\-\ `, "", false},
		{`\é`, `é`, "", false},
		// No RE2 equivalent.
		{`(a)\1`, "", "backreference", false},
		{`(?P<x>a)(?P=x)`, "", "backreference", false},
		{`a(?=b)`, "", "look-around", false},
		{`(?<!x)a`, "", "look-around", false},
		{`(?>a+)`, "", "atomic", false},
		{`a++`, "", "possessive", false},
		{`a{2}+`, "", "possessive", false},
		{`(a)?(?(1)b|c)`, "", "conditional", false},
		{`\N{DIGIT ONE}`, "", "named character", false},
		{`(?x) a b`, "", "verbose", false},
		{`a(?i)b`, "", "global flags not at the start", false},
		// Python rejects these too.
		{`\pL`, "", "bad escape", true},
		{`(?<name>a)`, "", "unknown extension", true},
		{`[a`, "", "unterminated", true},
		{`a\`, "", "bad escape", true},
		{`[\A]`, "", "bad escape", true},
		{`\x4`, "", "incomplete", true},
	}
	for _, tc := range tests {
		got, err := translatePython(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.out {
				t.Errorf("translatePython(%q) = %q, %v; want %q", tc.in, got, err, tc.out)
				continue
			}
			if _, err := regexp.Compile(got); err != nil {
				t.Errorf("translatePython(%q) = %q does not compile: %v", tc.in, got, err)
			}
			continue
		}
		te, ok := err.(*translateError)
		if !ok || !strings.Contains(te.msg, tc.err) || te.python != tc.python {
			t.Errorf("translatePython(%q) = %q, %v; want an error with %q (python %v)", tc.in, got, err, tc.err, tc.python)
		}
	}
}

// TestCompileRegexTrailLimits: RE2 refuses repeats over 1000, which Python
// allows; such a trail is reported, not dropped.
func TestCompileRegexTrailLimits(t *testing.T) {
	if _, err := compileRegexTrail(`a{1001}\.com`); err == nil || !strings.Contains(err.Error(), "RE2 rejects") {
		t.Errorf("a{1001}: %v", err)
	}
	n := mustLoadNames(t, "a[0-9]{1001}\\.com,x,(static)\n", nil)
	if len(n.Problems) != 1 || n.Stats.RegexSlots != 1 || n.Stats.Regexes != 0 {
		t.Errorf("problems %v stats %+v", n.Problems, n.Stats)
	}
}

func TestRequiredLiterals(t *testing.T) {
	tests := map[string][]string{
		`dga[0-9]+\.wildcard-test\.com`:           {".wildcard-test.com"},
		`byethost[0-9]+\.com`:                     {"byethost"},
		`\b(atztds|mtxtds)[0-9a-z]+\.(world|xyz)`: {"atztds", "mtxtds"},
		`[a-z]{1,3}`:                              nil,
		`(?i)evil\.com`:                           nil,
		`(ab)+c?`:                                 {"ab"},
		`x*`:                                      nil,
	}
	for pat, want := range tests {
		tr, err := compileRegexTrail(pat)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range tr.lits {
			got = append(got, string(l))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("requiredLiterals(%q) = %q, want %q", pat, got, want)
		}
	}
}

// TestStaticRegexTrails lists the regex rows of the real file: which take a
// slot, which translate, and the prefilter each gets.
func TestStaticRegexTrails(t *testing.T) {
	n := loadStaticNames(t)
	for _, r := range n.regex {
		var lits []string
		for _, l := range r.lits {
			lits = append(lits, string(l))
		}
		if len(lits) > 4 {
			lits = append(lits[:4], "…")
		}
		t.Logf("%-60.60q prefilter %q", r.key, lits)
		if len(r.lits) == 0 {
			t.Errorf("%q has no prefilter", r.key)
		}
	}
	if len(n.regex) != 27 {
		t.Errorf("%d regex trails translate, want all 27", len(n.regex))
	}
	for _, p := range n.Problems {
		t.Errorf("not translated: %s", p)
	}
}

// allRegexes is the mask of every trail of x: find without a prefilter.
func allRegexes(x *regexIndex) regexMask {
	var m regexMask
	for i := range x.trails {
		m.set(i)
	}
	return m
}

// TestRegexPrefilter: with the real regex trails, the prefiltered search
// answers as running every regex does, on names built from the trails'
// literals (whole, cut, mixed) and random name bytes; many of them match.
func TestRegexPrefilter(t *testing.T) {
	x := loadStaticNames(t).rx
	if x == nil || x.lits == nil {
		t.Fatal("no regex prefilter")
	}
	var pieces []string
	for _, tr := range x.trails {
		for _, l := range tr.lits {
			pieces = append(pieces, string(l))
		}
	}
	pieces = append(pieces, "www.", ".com", ".ru", ".top", "-", "123", "12", "a", "zz", ".")
	rng := rand.New(rand.NewPCG(9, 10))
	all := allRegexes(x)
	hits := 0
	for range 100000 {
		var b []byte
		for range 1 + rng.IntN(5) {
			p := pieces[rng.IntN(len(pieces))]
			if rng.IntN(4) == 0 {
				p = p[:rng.IntN(len(p)+1)]
			}
			b = append(b, p...)
		}
		gi, gs, ge := x.find(b)
		wi, ws, we := x.run(all, b)
		if gi != wi || gs != ws || ge != we {
			t.Fatalf("find(%q) = %d %d %d, every regex %d %d %d", b, gi, gs, ge, wi, ws, we)
		}
		if gi >= 0 {
			hits++
		}
	}
	if hits < 1000 {
		t.Errorf("only %d names matched", hits)
	}
	t.Logf("%d of 100000 names matched; prefilter %d states", hits, x.lits.States())
}

// FuzzRegexPrefilter: on any name, the prefiltered search answers as
// running every regex does, over regex trails of the real ones' shapes:
// alternations, classes, anchors, \b, literals across labels.
func FuzzRegexPrefilter(f *testing.F) {
	for _, s := range []string{"www.dga12.x.com", "ab-cde.top", "k.packjiagu.com", "vyplata12.ru", "zzfoo9.world", "a"} {
		f.Add([]byte(s))
	}
	csv := "\"dga[0-9]+\\.x\\.com\",a (malware),(static)\n" +
		"\"(gomain|perevod|v[i,y]plata)[0-9]{2,3}\\.ru\",b (malware),(static)\n" +
		"\"^[a-z]{2}\\-[a-z]{2,3}\\.(top|club)$\",c (malware),(static)\n" +
		"\"\\b(zzfoo|yybar)[0-9a-z]+\\.(world|xyz)\",d (malware),(static)\n" +
		"\"[a-z]{1}\\.packjiagu\\.com\",e (malware),(static)\n" +
		"\"q(l|r)[0-9]{5,6}\\.pw\",f (malware),(static)\n" +
		"\"www\\.[a-z]{1}\\-[a-z]{1,3}\\.top$\",g (malware),(static)\n"
	n := mustLoadNames(f, csv, nil)
	x := n.rx
	if x == nil || n.Stats.Regexes != 7 {
		f.Fatalf("%d regex trails: %v", n.Stats.Regexes, n.Problems)
	}
	all := allRegexes(x)
	f.Fuzz(func(t *testing.T, name []byte) {
		gi, gs, ge := x.find(name)
		wi, ws, we := x.run(all, name)
		if gi != wi || gs != ws || ge != we {
			t.Fatalf("find(%q) = %d %d %d, every regex %d %d %d", name, gi, gs, ge, wi, ws, we)
		}
	})
}
