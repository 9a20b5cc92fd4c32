// Package maltrail holds what xtrail shares with Maltrail byte for byte:
// the event, its log line and UDP datagram (spec §2, §3.1), the text of an
// address (spec §1.5) and the maltrail.conf format (spec §3.3).
package maltrail

import (
	"net/netip"
	"strconv"
	"time"
)

// Event is one Maltrail detection, the tuple
// (sec, usec, src_ip, src_port, dst_ip, dst_port, proto, trail_type, trail,
// info, reference) of spec §2.
type Event struct {
	Time  time.Time  // event time; sec = Time.Unix(), usec = Time.Nanosecond()/1000
	SrcIP netip.Addr // invalid renders "-"
	// SrcForwarded, when set, follows the source address in its column
	// after a comma: the forwarded-for address of an HTTP request
	// ("10.0.0.5,203.0.113.9", spec §2 and §4).
	SrcForwarded string
	SrcPort      uint16 // 0 renders "-" (safe_value of int 0 is "-")
	DstIP        netip.Addr
	DstPort      uint16
	Proto        string // "TCP", "UDP", "ICMP", "ICMPV6", ...
	Type         string // "IP", "IPORT", "DNS", "URL", "HTTP", "UA", ...
	Trail        string
	Info         string
	Reference    string
}

// TextEvent is an event whose address, port and protocol columns are
// already text. Event cannot express two column forms Maltrail writes:
// a forwarded-for source ("10.0.0.5,203.0.113.9", spec §2 and §4) and the
// comma lists of a condensed event ("50000,50001", spec §5). The sensor
// renders those through TextEvent; every column goes through safe_value,
// so "" renders "-".
type TextEvent struct {
	Time      time.Time
	SrcIP     string
	SrcPort   string
	DstIP     string
	DstPort   string
	Proto     string
	Type      string
	Trail     string
	Info      string
	Reference string
}

// Renderer renders event lines byte-exact to spec §2. Zero allocations per
// call when dst has room. A Renderer is not modified by rendering, so one
// value may be shared by many goroutines.
type Renderer struct {
	Sensor string         // SENSOR_NAME as configured ("" renders "-" like Maltrail's Python sensor)
	Loc    *time.Location // the sensor's time zone (nil = time.Local)
}

// AppendLine appends the whole log line of ev, including the trailing '\n'.
func (r *Renderer) AppendLine(dst []byte, ev *Event) []byte {
	dst = r.appendHead(dst, ev.Time)
	dst = append(dst, ' ')
	dst = AppendSrc(dst, ev)
	dst = append(dst, ' ')
	dst = appendPort(dst, ev.SrcPort)
	dst = append(dst, ' ')
	dst = AppendAddr(dst, ev.DstIP)
	dst = append(dst, ' ')
	dst = appendPort(dst, ev.DstPort)
	return appendTail(dst, ev.Proto, ev.Type, ev.Trail, ev.Info, ev.Reference)
}

// AppendSrc appends the source column's text of ev: the address, and
// ",<forwarded>" when SrcForwarded is set. It needs no quoting: a
// forwarded address is digits and dots.
func AppendSrc(dst []byte, ev *Event) []byte {
	dst = AppendAddr(dst, ev.SrcIP)
	if ev.SrcForwarded != "" {
		dst = append(append(dst, ','), ev.SrcForwarded...)
	}
	return dst
}

// AppendDatagram appends the LOG_SERVER datagram of ev (spec §3.1):
// "<sec> " followed by the log line with its '\n'. D4 payloads carry
// exactly these bytes.
func (r *Renderer) AppendDatagram(dst []byte, ev *Event) []byte {
	dst = strconv.AppendInt(dst, ev.Time.Unix(), 10)
	dst = append(dst, ' ')
	return r.AppendLine(dst, ev)
}

// AppendTextLine is AppendLine for a TextEvent.
func (r *Renderer) AppendTextLine(dst []byte, ev *TextEvent) []byte {
	dst = r.appendHead(dst, ev.Time)
	for _, v := range [...]string{ev.SrcIP, ev.SrcPort, ev.DstIP, ev.DstPort} {
		dst = append(dst, ' ')
		dst = AppendSafe(dst, v)
	}
	return appendTail(dst, ev.Proto, ev.Type, ev.Trail, ev.Info, ev.Reference)
}

// AppendTextDatagram is AppendDatagram for a TextEvent.
func (r *Renderer) AppendTextDatagram(dst []byte, ev *TextEvent) []byte {
	dst = strconv.AppendInt(dst, ev.Time.Unix(), 10)
	dst = append(dst, ' ')
	return r.AppendTextLine(dst, ev)
}

// appendHead appends the quoted local time and the sensor name.
func (r *Renderer) appendHead(dst []byte, t time.Time) []byte {
	loc := r.Loc
	if loc == nil {
		loc = time.Local
	}
	t = t.In(loc)
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	// The time contains a space, so safe_value always quotes it; it never
	// contains '"', CR or LF, so the quoting is written directly.
	dst = append(dst, '"')
	if year < 0 {
		dst = append(dst, '-')
		year = -year
	}
	dst = appendPadded(dst, year, 4)
	dst = append(dst, '-')
	dst = appendPadded(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendPadded(dst, day, 2)
	dst = append(dst, ' ')
	dst = appendPadded(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendPadded(dst, t.Nanosecond()/1000, 6)
	dst = append(dst, '"', ' ')
	return AppendSafe(dst, r.Sensor)
}

func appendTail(dst []byte, proto, typ, trail, info, ref string) []byte {
	for _, v := range [...]string{proto, typ, trail, info, ref} {
		dst = append(dst, ' ')
		dst = AppendSafe(dst, v)
	}
	return append(dst, '\n')
}

// appendPadded appends v (>= 0) in decimal, zero-padded to width digits.
func appendPadded(dst []byte, v, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v > 0 || i > len(buf)-width {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[i:]...)
}

func appendPort(dst []byte, p uint16) []byte {
	if p == 0 {
		return append(dst, '-')
	}
	return strconv.AppendUint(dst, uint64(p), 10)
}

// AppendSafe appends Maltrail's safe_value of v (spec §2): "" becomes "-",
// each CR and LF becomes a space, and a value containing a space or '"' is
// wrapped in '"' with inner '"' doubled. Nothing else is escaped: bytes
// such as tabs or invalid UTF-8 pass through unchanged.
func AppendSafe(dst []byte, v string) []byte {
	if v == "" {
		return append(dst, '-')
	}
	// CR and LF become spaces before the quoting decision, so a value with
	// a newline is quoted too.
	if !needsQuoting(v) {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\r', '\n':
			dst = append(dst, ' ')
		case '"':
			dst = append(dst, '"', '"')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// needsQuoting reports whether v holds a space, '"', CR or LF. It is a
// plain loop because strings.ContainsAny costs several times more on the
// short values of an event line.
func needsQuoting(v string) bool {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case ' ', '"', '\r', '\n':
			return true
		}
	}
	return false
}
