package maltrail

import (
	"net/netip"
	"strconv"
)

const hexDigits = "0123456789abcdef"

// AppendAddr appends the Maltrail text of a (spec §1.5): a dotted quad for
// IPv4, and for IPv6 the output of Maltrail's compress_ipv6, which is NOT
// RFC 5952: a single zero group is compressed too, the last group never
// takes part in the compressed run, and a run at the end leaves a trailing
// "0" ("2001:db8::" is written "2001:db8::0", "::" is written "::0").
// Trail keys are compared as text, so any other spelling would never match.
//
// An IPv4-mapped IPv6 address is rendered as IPv6 ("::ffff:102:304"),
// because that is what Maltrail prints for such a packet. A zone is
// dropped: packets carry none. An invalid address appends "-", the
// safe_value of a missing address.
func AppendAddr(dst []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(dst, '-')
	case a.Is4():
		b := a.As4()
		dst = strconv.AppendUint(dst, uint64(b[0]), 10)
		for _, o := range b[1:] {
			dst = append(dst, '.')
			dst = strconv.AppendUint(dst, uint64(o), 10)
		}
		return dst
	}
	b := a.As16()
	var g [8]uint16
	for i := range g {
		g[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	// compress_ipv6 looks for runs of the text "0000:" in the eight
	// four-digit groups; the last group has no trailing colon, so only
	// groups 0..6 can be part of a run. The first of the longest runs wins.
	runStart, runLen := -1, 0
	for i := 0; i < 7; {
		if g[i] != 0 {
			i++
			continue
		}
		j := i
		for j < 7 && g[j] == 0 {
			j++
		}
		if j-i > runLen {
			runStart, runLen = i, j-i
		}
		i = j
	}
	if runLen == 0 {
		for i, v := range g {
			if i > 0 {
				dst = append(dst, ':')
			}
			dst = appendHex16(dst, v)
		}
		return dst
	}
	// The run's text is replaced by ":"; whether it started the address
	// (and so got a second ':' prefixed) or not, the result is "::"
	// between the groups before and after it. At least group 7 follows.
	for i := 0; i < runStart; i++ {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = appendHex16(dst, g[i])
	}
	dst = append(dst, ':', ':')
	for i := runStart + runLen; i < 8; i++ {
		if i > runStart+runLen {
			dst = append(dst, ':')
		}
		dst = appendHex16(dst, g[i])
	}
	return dst
}

// appendHex16 appends v in lowercase hex without leading zeros ("0" for 0).
func appendHex16(dst []byte, v uint16) []byte {
	started := false
	for shift := 12; shift > 0; shift -= 4 {
		d := (v >> uint(shift)) & 0xf
		if d != 0 || started {
			dst = append(dst, hexDigits[d])
			started = true
		}
	}
	return append(dst, hexDigits[v&0xf])
}

// FormatAddr returns the Maltrail text of a (see AppendAddr).
func FormatAddr(a netip.Addr) string {
	var buf [40]byte
	return string(AppendAddr(buf[:0], a))
}

// FormatAddrPort returns Maltrail's IP:port trail key for a and port:
// "1.2.3.4:8443", or "[dead::beef]:443" for IPv6. Port 0 is written as
// "0" (Maltrail formats the port number as is); the trails package never
// produces a key with port 0.
func FormatAddrPort(a netip.Addr, port uint16) string {
	var buf [48]byte
	dst := buf[:0]
	if a.Is6() {
		dst = append(dst, '[')
		dst = AppendAddr(dst, a)
		dst = append(dst, ']')
	} else {
		dst = AppendAddr(dst, a)
	}
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, uint64(port), 10)
	return string(dst)
}
