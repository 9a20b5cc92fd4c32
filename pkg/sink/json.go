package sink

import (
	"strconv"
	"unicode/utf8"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// JSON formats an event as Maltrail's LOGSTASH_SERVER datagram (spec §3.3):
// the object Python's json.dumps writes, keys in this order, ", " and ": "
// as separators, non-ASCII escaped:
//
//	{"timestamp": 1786094062, "sensor": "gw", "severity": "high", "src_ip": "10.13.13.2", "src_port": 57809, "dst_ip": "1.1.1.1", "dst_port": 53, "proto": "UDP", "type": "DNS", "trail": "malware.bakewithdavid.com", "info": "asyncrat (malware)", "reference": "(static)"}
//
// A JSON is used by one sink, under its lock.
//
// A port is a number when the column is one port, and a string otherwise
// ("-", or the comma list of a condensed event), as Maltrail's tuple holds
// an int or a string there.
type JSON struct {
	Host     string // the OS host name (Maltrail's HOSTNAME), not SENSOR_NAME
	Severity *Severity

	host []byte // Host as a JSON string, made on first use
}

// Append appends the JSON object of the event in f, which happened at sec.
func (j *JSON) Append(dst []byte, sec int64, f *maltrail.LineFields) []byte {
	dst = append(dst, `{"timestamp": `...)
	dst = strconv.AppendInt(dst, sec, 10)
	dst = append(dst, `, "sensor": `...)
	if j.host == nil {
		j.host = appendJSONString(nil, []byte(j.Host))
	}
	dst = append(dst, j.host...)
	dst = append(dst, `, "severity": "`...)
	dst = append(dst, j.Severity.Of(f.Cols[maltrail.ColInfo]).String()...)
	dst = append(dst, `", "src_ip": `...)
	dst = appendJSONString(dst, f.Cols[maltrail.ColSrcIP])
	dst = append(dst, `, "src_port": `...)
	dst = appendJSONPort(dst, f.Cols[maltrail.ColSrcPort])
	dst = append(dst, `, "dst_ip": `...)
	dst = appendJSONString(dst, f.Cols[maltrail.ColDstIP])
	dst = append(dst, `, "dst_port": `...)
	dst = appendJSONPort(dst, f.Cols[maltrail.ColDstPort])
	dst = append(dst, `, "proto": `...)
	dst = appendJSONString(dst, f.Cols[maltrail.ColProto])
	dst = append(dst, `, "type": `...)
	dst = appendJSONString(dst, f.Cols[maltrail.ColType])
	dst = append(dst, `, "trail": `...)
	dst = appendJSONString(dst, f.Cols[maltrail.ColTrail])
	dst = append(dst, `, "info": `...)
	dst = appendJSONString(dst, f.Cols[maltrail.ColInfo])
	dst = append(dst, `, "reference": `...)
	dst = appendJSONString(dst, f.Cols[maltrail.ColReference])
	return append(dst, '}')
}

// appendJSONPort writes a port column: a number when it is one canonical
// decimal port, else a string. "0" is a string: Maltrail's int 0 renders
// "-", so a 0 in a line was text.
func appendJSONPort(dst, v []byte) []byte {
	if len(v) == 0 || len(v) > 5 || v[0] == '0' {
		return appendJSONString(dst, v)
	}
	for _, b := range v {
		if b < '0' || b > '9' {
			return appendJSONString(dst, v)
		}
	}
	return append(dst, v...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes v as Python's json.dumps does with ensure_ascii:
// '"' and '\' escaped, \b \f \n \r \t by name, every other byte outside
// ' '..'~' as \uXXXX (lower-case hex; a surrogate pair above U+FFFF). A
// byte that is not UTF-8 becomes U+FFFD: the datagram must stay valid JSON.
func appendJSONString(dst, v []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(v); {
		b := v[i]
		if b >= ' ' && b <= '~' {
			if b == '"' || b == '\\' {
				dst = append(dst, '\\')
			}
			dst = append(dst, b)
			i++
			continue
		}
		switch b {
		case '\b':
			dst = append(dst, `\b`...)
		case '\f':
			dst = append(dst, `\f`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		default:
			r, n := rune(b), 1
			if b >= utf8.RuneSelf {
				r, n = utf8.DecodeRune(v[i:]) // RuneError, 1 for a bad byte
			}
			if r > 0xFFFF {
				r -= 0x10000
				dst = appendU(dst, 0xD800+(r>>10))
				r = 0xDC00 + r&0x3FF
			}
			dst = appendU(dst, r)
			i += n
			continue
		}
		i++
	}
	return append(dst, '"')
}

func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&15], hexDigits[r>>8&15], hexDigits[r>>4&15], hexDigits[r&15])
}
