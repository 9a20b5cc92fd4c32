package sink

import (
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// signatureEvery is how long the CEF signature id (the trails file's date)
// is reused before the file is looked at again, as in Maltrail: the date
// changes at most daily, and a stat per event would be waste.
const signatureEvery = 5 * time.Minute

// CEF formats an event as Maltrail's SYSLOG_SERVER datagram (spec §3.3), a
// CEF record without a syslog <PRI>:
//
//	Aug 07 09:14:22 gw CEF:0|Maltrail|sensor|3.1.2|2026-08-22|asyncrat (malware)|2|src=10.13.13.2 spt=57809 dst=1.1.1.1 dpt=53 trail=(511mon).kozow.com ref=(static)
//
// The time is the event's, in Loc; then the host name, the device version,
// the date (in Loc) of the trails file's ctime as the signature id, the info
// as the name, the severity (0 low, 1 medium, 2 high) and the extension.
// The name escapes '\' and '|'; trail and ref escape '\' and '='; the
// addresses and ports are written as they are, as Maltrail writes them.
// A CEF is used by one sink, under its lock.
type CEF struct {
	Host       string // the OS host name (Maltrail's HOSTNAME), not SENSOR_NAME
	Version    string // the device version (maltrail.Version)
	TrailsFile string // "" or unreadable: today's date is the signature id, as in Maltrail
	Loc        *time.Location
	Severity   *Severity

	// ctime and now are the file's change time and the clock; tests
	// replace them.
	ctime func(path string) (time.Time, error)
	now   func() time.Time
	sig   []byte
	sigAt time.Time
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// Append appends the CEF record of the event in f, which happened at sec.
func (c *CEF) Append(dst []byte, sec int64, f *maltrail.LineFields) []byte {
	t := time.Unix(sec, 0).In(c.loc())
	_, mon, day := t.Date()
	hh, mm, ss := t.Clock()
	dst = append(dst, months[mon-1]...)
	dst = append(dst, ' ')
	dst = append2(dst, day)
	dst = append(dst, ' ')
	dst = append2(dst, hh)
	dst = append(dst, ':')
	dst = append2(dst, mm)
	dst = append(dst, ':')
	dst = append2(dst, ss)
	dst = append(dst, ' ')
	dst = append(dst, c.Host...)
	dst = append(dst, " CEF:0|Maltrail|sensor|"...)
	dst = append(dst, c.Version...)
	dst = append(dst, '|')
	dst = append(dst, c.signature()...)
	dst = append(dst, '|')
	dst = appendCEFEscaped(dst, f.Cols[maltrail.ColInfo], '|')
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(c.Severity.Of(f.Cols[maltrail.ColInfo])), 10)
	dst = append(dst, "|src="...)
	dst = append(dst, f.Cols[maltrail.ColSrcIP]...)
	dst = append(dst, " spt="...)
	dst = append(dst, f.Cols[maltrail.ColSrcPort]...)
	dst = append(dst, " dst="...)
	dst = append(dst, f.Cols[maltrail.ColDstIP]...)
	dst = append(dst, " dpt="...)
	dst = append(dst, f.Cols[maltrail.ColDstPort]...)
	dst = append(dst, " trail="...)
	dst = appendCEFEscaped(dst, f.Cols[maltrail.ColTrail], '=')
	dst = append(dst, " ref="...)
	return appendCEFEscaped(dst, f.Cols[maltrail.ColReference], '=')
}

func (c *CEF) loc() *time.Location {
	if c.Loc == nil {
		return time.Local
	}
	return c.Loc
}

// signature returns the YYYY-MM-DD date of the trails file's ctime,
// looked up again every signatureEvery.
func (c *CEF) signature() []byte {
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	if c.sig != nil && now.Sub(c.sigAt) < signatureEvery && !now.Before(c.sigAt) {
		return c.sig
	}
	ctime := fileCtime
	if c.ctime != nil {
		ctime = c.ctime
	}
	day := now
	if c.TrailsFile != "" {
		if t, err := ctime(c.TrailsFile); err == nil {
			day = t
		}
	}
	c.sig = day.In(c.loc()).AppendFormat(c.sig[:0], "2006-01-02")
	c.sigAt = now
	return c.sig
}

// fileCtime is the inode change time of path (Python's os.path.getctime).
func fileCtime(path string) (time.Time, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return time.Time{}, err
	}
	return time.Unix(st.Ctim.Sec, st.Ctim.Nsec), nil
}

// appendCEFEscaped appends v with '\' and special escaped by a '\', and CR
// and LF turned into spaces (a line break would end the syslog record).
func appendCEFEscaped(dst, v []byte, special byte) []byte {
	for _, b := range v {
		switch b {
		case '\\', special:
			dst = append(dst, '\\', b)
		case '\r', '\n':
			dst = append(dst, ' ')
		default:
			dst = append(dst, b)
		}
	}
	return dst
}
