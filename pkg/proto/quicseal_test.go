package proto

import (
	"testing"

	"github.com/xtrail/xtrail/internal/pktbuild"
)

// ---- QUIC: the test-only Initial encryptor of internal/pktbuild ----

// testInitialKeys derives client Initial keys with crypto/hkdf, an
// implementation independent of the package's own fixed-array HKDF.
func testInitialKeys(tb testing.TB, version uint32, dcid []byte) (key, iv, hp []byte) {
	tb.Helper()
	return pktbuild.QUICInitialKeys(version, dcid)
}

type initialSpec struct {
	version    uint32
	dcid, scid []byte
	token      []byte
	pn         uint64
	pnLen      int // 1..4
	frames     []byte
	padTo      int // pad the plaintext with PADDING up to this many bytes
}

// sealInitial builds a protected client Initial packet (RFC 9001 §5.3,
// §5.4).
func sealInitial(tb testing.TB, s initialSpec) []byte {
	tb.Helper()
	return pktbuild.QUICInitial{Version: s.version, DCID: s.dcid, SCID: s.scid, Token: s.token,
		PN: s.pn, PNLen: s.pnLen, Frames: s.frames, PadTo: s.padTo}.Seal()
}

var cryptoFrame = pktbuild.CryptoFrame
