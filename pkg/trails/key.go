package trails

import (
	"net/netip"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// keyKind is what a trail key looks like.
type keyKind uint8

const (
	kindOther        keyKind = iota // a domain, URL, regex: not an address
	kindIP                          // canonical IP or IP:port key
	kindNonCanonical                // looks like an address but is not Maltrail's text of one
)

// ParseIPKey parses an IP or IP:port trail key. It accepts only the text
// Maltrail itself produces for packets (spec §1.5), because trails are
// matched by comparing that text: "1.2.3.4", "1.2.3.4:8443", IPv6 exactly
// as maltrail.FormatAddr writes it ("dead::beef", "2001:db8::0") and
// "[dead::beef]:443". Any other spelling (leading zeros, octets over 255,
// RFC 5952 text where Maltrail's differs, upper-case hex, zones, port 0,
// ports over 65535 or with leading zeros) never matches in Maltrail, so it
// is rejected. port is 0 for a bare address.
func ParseIPKey(key string) (addr netip.Addr, port uint16, ok bool) {
	addr, port, kind := classifyKey(key)
	return addr, port, kind == kindIP
}

// ParseIPKeyShape is ParseIPKey that also says whether the key is shaped
// like an address at all: a rejected key that is ("1.2.3", "01.2.3.4",
// "1.2.3.4:0") is a spelling Maltrail never matches, not a domain, URL or
// regex.
func ParseIPKeyShape(key string) (addr netip.Addr, port uint16, ok, shaped bool) {
	addr, port, kind := classifyKey(key)
	return addr, port, kind == kindIP, kind != kindOther
}

// classifyKey is ParseIPKey plus the shape of rejected keys. It is generic
// so LoadSet can classify the reader's []byte fields without converting
// every key to a string.
func classifyKey[T ~string | ~[]byte](key T) (netip.Addr, uint16, keyKind) {
	if len(key) == 0 {
		return netip.Addr{}, 0, kindOther
	}
	if key[0] == '[' {
		return classifyBracketed(key)
	}
	// Only hex digits, '.' and ':' can make an address key; this rejects
	// almost every domain and URL at its first letters.
	colon, onlyDecimal := -1, true
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= '0' && c <= '9' || c == '.':
		case c == ':':
			if colon < 0 {
				colon = i
			}
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			onlyDecimal = false
		default:
			return netip.Addr{}, 0, kindOther
		}
	}
	if colon < 0 {
		if !onlyDecimal || !hasDot(key) {
			return netip.Addr{}, 0, kindOther // "cafe.be", "12345"
		}
		if a, ok := parseIPv4(key); ok {
			return a, 0, kindIP
		}
		return netip.Addr{}, 0, kindNonCanonical // "1.2.3", "01.2.3.4", "300.1.1.1"
	}
	if host := key[:colon]; hasDot(host) && isDecimalDots(host) {
		// IPv4 with something after ':'.
		a, ok := parseIPv4(host)
		p, pok := parsePort(key[colon+1:])
		if ok && pok {
			return a, p, kindIP
		}
		return netip.Addr{}, 0, kindNonCanonical // "1.2.3.4:0", "1.2.3.4:80:80", "1.2.3.4:99999"
	}
	if a, ok := parseCanonicalIPv6(key); ok {
		return a, 0, kindIP
	}
	return netip.Addr{}, 0, kindNonCanonical
}

// classifyBracketed handles keys starting with '['. "[v6]:port" is an
// address key; anything else, such as the regex "[a-z]{1}\.appjiagu\.com",
// is not.
func classifyBracketed[T ~string | ~[]byte](key T) (netip.Addr, uint16, keyKind) {
	end := -1
	for i := 1; i < len(key); i++ {
		c := key[i]
		if c == ']' {
			end = i
			break
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
			return netip.Addr{}, 0, kindOther
		}
	}
	if end < 0 || end+1 >= len(key) || key[end+1] != ':' {
		return netip.Addr{}, 0, kindOther
	}
	a, ok := parseCanonicalIPv6(key[1:end])
	p, pok := parsePort(key[end+2:])
	if ok && pok {
		return a, p, kindIP
	}
	return netip.Addr{}, 0, kindNonCanonical // "[0:0:0:0:0:ffff:2d3e:c649]:53"
}

// parseCanonicalIPv6 parses s as IPv6 and accepts it only if
// maltrail.AppendAddr writes it back byte for byte.
func parseCanonicalIPv6[T ~string | ~[]byte](s T) (netip.Addr, bool) {
	if len(s) < 2 || len(s) > 39 { // "::0" .. 8 groups of 4 and 7 colons
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(s))
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, false
	}
	var buf [40]byte
	if string(maltrail.AppendAddr(buf[:0], a)) != string(s) {
		return netip.Addr{}, false
	}
	return a, true
}

// parseIPv4 parses a dotted quad with no leading zeros and octets <= 255.
func parseIPv4[T ~string | ~[]byte](s T) (netip.Addr, bool) {
	var b [4]byte
	n, i := 0, 0
	for n < 4 {
		start, v := i, 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			v = v*10 + int(s[i]-'0')
			i++
			if i-start > 3 {
				return netip.Addr{}, false
			}
		}
		if i == start || v > 255 || (s[start] == '0' && i-start > 1) {
			return netip.Addr{}, false
		}
		b[n] = byte(v)
		n++
		if n < 4 {
			if i >= len(s) || s[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
	}
	if i != len(s) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(b), true
}

// parsePort parses a decimal port 1..65535 with no leading zeros.
func parsePort[T ~string | ~[]byte](s T) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 || s[0] == '0' {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		v = v*10 + int(s[i]-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

func hasDot[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

func isDecimalDots[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			return false
		}
	}
	return true
}
