package sensor

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestQUICBadTagMatched: a QUIC Initial whose AEAD tag does not verify is
// read as Maltrail reads it: its SNI is matched, and the bad tag counted.
func TestQUICBadTagMatched(t *testing.T) {
	names, err := trails.LoadNames(strings.NewReader("quic-evil.example,malware (test),(static)\n"), "t.csv", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := newCapture()
	a := NewAgent(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Names: names, CheckSNI: true},
		Render: &maltrail.Renderer{Sensor: "t", Loc: time.UTC}, Out: out, Throttle: throttle.Off})
	pkt := pktbuild.QUICInitial{Version: pktbuild.QUICVersion1, DCID: []byte{1, 2, 3, 4, 5, 6, 7, 8}, PNLen: 2,
		Frames: pktbuild.CryptoFrame(0, pktbuild.ClientHello(pktbuild.BrowserExts("quic-evil.example")...)), PadTo: 1162}.Seal()
	src, dst := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("203.0.113.30")
	at := time.Unix(1700000000, 0)
	a.Handle(rec(dataplane.KindQUIC, 0, 0, 17, src, dst, 50000, 443, 0, at, pkt))
	pkt[len(pkt)-1] ^= 0x80 // the tag
	a.Handle(rec(dataplane.KindQUIC, 0, 0, 17, src, dst, 50001, 443, 0, at.Add(time.Second), pkt))
	got := out.get()
	if len(got) != 2 || !strings.Contains(got[1], " 50001 203.0.113.30 443 UDP DNS quic-evil.example ") {
		t.Errorf("events %q", got)
	}
	if n := a.Stats().QUICBadTags.Load(); n != 1 {
		t.Errorf("quic_bad_tags %d, want 1", n)
	}
}
