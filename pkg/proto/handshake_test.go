package proto

import "github.com/xtrail/xtrail/internal/pktbuild"

// ---- TLS: the ClientHello builder of internal/pktbuild ----

type tlsExt = pktbuild.TLSExt

var (
	sniExt      = pktbuild.SNIExt
	clientHello = pktbuild.ClientHello
	browserExts = pktbuild.BrowserExts
	tlsRecord   = pktbuild.TLSRecord
)
