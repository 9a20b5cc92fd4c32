package sensor

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestReplayUDPRepeatDigest replays DNS queries on one socket within one
// second: the UDP repeat rule drops a datagram only when its payload is the
// previous one's too (the Rust sensor's rule), so the second, different
// query is matched, the retransmitted one is not, and a query after it
// with a new ID is matched again.
func TestReplayUDPRepeatDigest(t *testing.T) {
	testenv.RequireRoot(t)
	trailsFile := filepath.Join(testenv.SharedDir(t), "corpus", "trails.csv")
	t0 := time.Date(2026, 8, 7, 9, 14, 22, 0, time.UTC)
	query := func(id uint16, name string) []byte {
		q := []byte{byte(id >> 8), byte(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
		for _, l := range strings.Split(name, ".") {
			q = append(append(q, byte(len(l))), l...)
		}
		return append(q, 0, 0, 1, 0, 1)
	}
	var pkts []pcapPkt
	add := func(ms int, q []byte) {
		f := pktbuild.Frame{Src: netip.MustParseAddr("10.0.0.66"), Dst: netip.MustParseAddr("8.8.8.8"), Proto: pktbuild.UDP, Sport: 50000, Dport: 53, Payload: q}
		pkts = append(pkts, pcapPkt{t0.Add(time.Duration(ms) * time.Millisecond), f.Bytes()})
	}
	add(0, query(1, "evil-test-domain.com"))
	add(100, query(2, "www.evil-parent.com"))
	add(200, query(2, "www.evil-parent.com")) // retransmitted: dropped
	add(300, query(3, "evil-test-domain.com"))
	c := newCapture()
	err := Run(context.Background(), Options{Pcaps: []string{writePcap(t, pkts)}, TrailsFile: trailsFile,
		Rules: NameRules{Whitelist: trails.DefaultWhitelist()}, Renderer: maltrail.Renderer{Sensor: "rep", Loc: time.UTC}, Out: c})
	if err != nil {
		t.Fatal(err)
	}
	stamp := func(ms int) string {
		return `"` + t0.Add(time.Duration(ms)*time.Millisecond).Format("2006-01-02 15:04:05.000000") + `" rep 10.0.0.66 50000 8.8.8.8 53 UDP DNS `
	}
	want := []string{
		stamp(0) + `evil-test-domain.com "malware (test)" (static)`,
		stamp(100) + `(www).evil-parent.com "malware (test)" (static)`,
		stamp(300) + `evil-test-domain.com "malware (test)" (static)`,
	}
	got := c.get()
	for i := range got {
		got[i] = strings.TrimSuffix(got[i], "\n")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
