package maltrail

import (
	"net/netip"
	"testing"
)

func TestFormatAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		// The examples of spec §1.5.
		{"::", "::0"},
		{"2001:db8::", "2001:db8::0"},
		{"1:0:0:2:0:0:0:3", "1:0:0:2::3"},
		{"1:0:2:0:3:0:4:0", "1::2:0:3:0:4:0"},
		{"dead::beef", "dead::beef"},
		// More of the algorithm.
		{"::1", "::1"},
		{"1::", "1::0"},
		{"0:0:1::", "0:0:1::0"},             // the longer run (groups 3-6) wins over groups 0-1
		{"1:0:0:2:0:0:3:4", "1::2:0:0:3:4"}, // equal runs: the first wins
		{"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
		{"1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0"}, // the last group never joins a run
		{"1:2:3:4:5:6:0:0", "1:2:3:4:5:6::0"},
		{"0:1:2:3:4:5:6:7", "::1:2:3:4:5:6:7"},
		{"fe80::abcd:ef01:0:1", "fe80::abcd:ef01:0:1"},
		{"2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
		{"2400:6180:0:d0::1008:2001", "2400:6180:0:d0::1008:2001"},
		{"2001:41d0:404:200::7f9", "2001:41d0:404:200::7f9"},
		{"::ffff:1.2.3.4", "::ffff:102:304"}, // IPv4-mapped stays IPv6
		{"fe80::1%eth0", "fe80::1"},          // zones are not printed
		// IPv4.
		{"1.2.3.4", "1.2.3.4"},
		{"0.0.0.0", "0.0.0.0"},
		{"255.255.255.255", "255.255.255.255"},
		{"10.0.100.7", "10.0.100.7"},
	}
	for _, tc := range tests {
		a := netip.MustParseAddr(tc.in)
		if got := FormatAddr(a); got != tc.want {
			t.Errorf("FormatAddr(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := FormatAddr(netip.Addr{}); got != "-" {
		t.Errorf("FormatAddr(invalid) = %q, want -", got)
	}
}

// compressIPv6Text is a literal, slow transcription of the textual
// algorithm in spec §1.5, used to cross-check AppendAddr.
func compressIPv6Text(a netip.Addr) string {
	b := a.As16()
	const hex = "0123456789abcdef"
	var s []byte
	for i := 0; i < 16; i += 2 {
		if i > 0 {
			s = append(s, ':')
		}
		s = append(s, hex[b[i]>>4], hex[b[i]&15], hex[b[i+1]>>4], hex[b[i+1]&15])
	}
	text := string(s)
	// Runs of "0000:" are found left to right, non-overlapping.
	best := ""
	for i := 0; i+5 <= len(text); {
		j := i
		for j+5 <= len(text) && text[j:j+5] == "0000:" {
			j += 5
		}
		if j > i {
			if j-i > len(best) {
				best = text[i:j]
			}
			i = j
		} else {
			i++
		}
	}
	if best != "" {
		for k := 0; k+len(best) <= len(text); k++ {
			if text[k:k+len(best)] == best {
				text = text[:k] + ":" + text[k+len(best):]
				break
			}
		}
	}
	// Strip leading zeros of each group; a zero group stays "0".
	var out []byte
	for i := 0; i < len(text); {
		if (i == 0 || text[i-1] == ':') && text[i] == '0' {
			j := i
			for j < len(text) && text[j] == '0' {
				j++
			}
			if j == len(text) || text[j] == ':' {
				j-- // keep one zero
			}
			i = j
		}
		out = append(out, text[i])
		i++
	}
	text = string(out)
	if len(text) > 1 && text[0] == ':' && text[1] != ':' {
		text = ":" + text
	}
	return text
}

func TestAppendAddrMatchesTextualAlgorithm(t *testing.T) {
	// Every pattern of zero and non-zero groups, with varied group values.
	vals := []uint16{1, 0x10, 0xbeef, 0x100, 0xf000}
	for mask := 0; mask < 256; mask++ {
		var b [16]byte
		for g := 0; g < 8; g++ {
			if mask&(1<<g) != 0 {
				v := vals[(g+mask)%len(vals)]
				b[2*g], b[2*g+1] = byte(v>>8), byte(v)
			}
		}
		a := netip.AddrFrom16(b)
		if got, want := FormatAddr(a), compressIPv6Text(a); got != want {
			t.Errorf("mask %08b: AppendAddr %q, textual algorithm %q", mask, got, want)
		}
	}
}

func TestFormatAddrPort(t *testing.T) {
	tests := []struct {
		addr string
		port uint16
		want string
	}{
		{"1.2.3.4", 8443, "1.2.3.4:8443"},
		{"6.6.6.6", 8443, "6.6.6.6:8443"},
		{"dead::beef", 443, "[dead::beef]:443"},
		{"fe80::12c3:7bff:fe6d:cf9b", 53, "[fe80::12c3:7bff:fe6d:cf9b]:53"},
		{"::", 65535, "[::0]:65535"},
		{"1.2.3.4", 0, "1.2.3.4:0"},
	}
	for _, tc := range tests {
		if got := FormatAddrPort(netip.MustParseAddr(tc.addr), tc.port); got != tc.want {
			t.Errorf("FormatAddrPort(%s, %d) = %q, want %q", tc.addr, tc.port, got, tc.want)
		}
	}
}

func BenchmarkAppendAddr6(b *testing.B) {
	a := netip.MustParseAddr("2001:db8:0:0:1:0:0:1")
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendAddr(buf[:0], a)
	}
}
