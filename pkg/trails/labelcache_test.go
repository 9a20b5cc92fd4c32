package trails

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestLabelCache: a DomainHit reused across names and across two Names
// (one holding single-label keys, which the cached last-label lookup
// finds) answers every check as a fresh DomainHit does.
func TestLabelCache(t *testing.T) {
	a := mustLoadNames(t, "bit,tld (malware),(static)\r\nzz,tld (malware),(static)\r\nevil.com,x (malware),(static)\r\n"+
		"abcdefghijklmnopq,long label (malware),(static)\r\n", NewWhitelist())
	b := mustLoadNames(t, "evil.net,y (malware),(static)\r\nzz.zz,z (malware),(static)\r\n", NewWhitelist())
	if _, ok := a.Lookup("bit"); !ok {
		t.Fatal("the single-label key is not loaded: the test checks nothing")
	}
	labels := []string{"com", "net", "bit", "biz", "zz", "zy", "evil", "abcdefghijklmnopq", "abcdefghijklmnop", "b", "co"}
	rng := rand.New(rand.NewPCG(11, 12))
	var reused DomainHit
	hits := 0
	for i := range 100000 {
		name := ""
		for range 1 + rng.IntN(3) {
			name += labels[rng.IntN(len(labels))] + "."
		}
		name = name[:len(name)-1]
		if rng.IntN(4) == 0 {
			name = fmt.Sprintf("h%d.%s", i%7, name)
		}
		n := a
		if rng.IntN(3) == 0 {
			n = b
		}
		var fresh DomainHit
		want := n.CheckDomain([]byte(name), &fresh)
		got := n.CheckDomain([]byte(name), &reused)
		if got != want || want && (!bytes.Equal(reused.Trail, fresh.Trail) || reused.Rule != fresh.Rule || reused.Meta != fresh.Meta) {
			t.Fatalf("CheckDomain(%q) = %v %q %v with a reused DomainHit, %v %q %v with a fresh one", name, got, reused.Trail, reused.Rule, want, fresh.Trail, fresh.Rule)
		}
		if want {
			hits++
		}
	}
	if hits < 1000 {
		t.Fatalf("%d hits: the names do not exercise the cache", hits)
	}
}
