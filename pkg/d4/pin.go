package d4

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Fingerprint is the SHA-256 of a certificate's DER encoding, the value
// `openssl x509 -noout -fingerprint -sha256` prints.
type Fingerprint [sha256.Size]byte

// String is the fingerprint as colon-separated upper-case hex, as openssl
// prints it.
func (f Fingerprint) String() string {
	h := strings.ToUpper(hex.EncodeToString(f[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// CertFingerprint returns the fingerprint of a DER certificate.
func CertFingerprint(der []byte) Fingerprint { return sha256.Sum256(der) }

// ParseFingerprints reads one or more SHA-256 fingerprints separated by
// spaces or commas, each 64 hex digits, colons between bytes allowed, any
// case, with an optional "sha256:" or "SHA256 Fingerprint=" prefix.
func ParseFingerprints(s string) ([]Fingerprint, error) {
	var out []Fingerprint
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		if strings.EqualFold(f, "sha256") { // openssl's "SHA256 Fingerprint=..."
			continue
		}
		v := f
		if i := strings.LastIndexByte(v, '='); i >= 0 {
			v = v[i+1:]
		}
		if len(v) > 7 && strings.EqualFold(v[:7], "sha256:") {
			v = v[7:]
		}
		v = strings.ReplaceAll(v, ":", "")
		b, err := hex.DecodeString(v)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("d4: %q is not a SHA-256 fingerprint (64 hex digits)", f)
		}
		out = append(out, Fingerprint(b))
	}
	if len(out) == 0 {
		return nil, errors.New("d4: no fingerprint given")
	}
	return out, nil
}

// PinServer makes tc accept only a server whose certificate (the leaf) has
// one of the fingerprints. With chain set the certificate must also verify
// as usual (CA and name); without it the pin alone authenticates the
// server, which is how a self-signed certificate is trusted.
func PinServer(tc *tls.Config, pins []Fingerprint, chain bool) {
	tc.InsecureSkipVerify = !chain
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("d4: the server sent no certificate")
		}
		got := CertFingerprint(cs.PeerCertificates[0].Raw)
		for _, p := range pins {
			if subtle.ConstantTimeCompare(got[:], p[:]) == 1 {
				return nil
			}
		}
		return fmt.Errorf("d4: server certificate SHA-256 %s matches no pinned fingerprint", got)
	}
}
