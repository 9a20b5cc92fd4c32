package trails

import (
	"strings"
	"testing"
)

func TestHasDomainOrParentAndSkipped(t *testing.T) {
	n, err := LoadNames(strings.NewReader("kozow.com,dynamic domain (suspicious),(static)\n"+
		"evil.org,sinkhole x (malware),(static)\nbad.net,malware (test),(static)\n"), "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"kozow.com": true, "a.b.kozow.com": true, "bad.net": true, "notbad.net": false, "net": false} {
		if got := n.HasDomainOrParent([]byte(name)); got != want {
			t.Errorf("HasDomainOrParent(%s) = %v", name, got)
		}
	}
	for _, c := range []struct{ name, key, why string }{
		{"kozow.com", "kozow.com", "a dynamic-domain or free-web trail fires only through a name under it"},
		{"www.kozow.com", "kozow.com", "a dynamic-domain or free-web trail fires only through a name under it, not through www"},
		{"ns1.evil.org", "evil.org", "a name or mail server name (ns1., mx., ...) skips suspicious and sinkhole trails"},
		{"511mon.kozow.com", "", ""},
		{"bad.net", "", ""},
	} {
		s := n.Skipped([]byte(c.name))
		got := ""
		if len(s) > 0 {
			got = s[0].Key + "|" + s[0].Why
			if s[0].Meta.Info == "" {
				t.Errorf("%s: no meta", c.name)
			}
		}
		if want := c.key + "|" + c.why; c.key != "" && got != want || c.key == "" && got != "" {
			t.Errorf("Skipped(%s) = %q, want %q", c.name, got, want)
		}
	}
}
