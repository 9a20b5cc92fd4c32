package feeds

import (
	"errors"
	"io/fs"
	"os"
	"time"
)

// StaleFeed is a feed whose copy was not confirmed current (by a 200 or a
// 304) for more than twice the update period, or that has no copy.
type StaleFeed struct {
	Name      string
	CheckedAt time.Time     // last confirmation; the copy's mtime when there is no sidecar
	Age       time.Duration // now - CheckedAt
	Missing   bool          // no local copy at all
}

// Stale lists the feeds in dir whose trails are stale at now: Maltrail
// could run for weeks on old trails while every update failed, so callers
// (Update itself, and the sensor at start and on each reload) should warn
// loudly about each. Twice the period allows one missed update without
// noise. A zero period means DefaultPeriod; invalid names are skipped.
func Stale(dir string, feeds []Feed, period time.Duration, now time.Time) []StaleFeed {
	if period <= 0 {
		period = DefaultPeriod
	}
	var out []StaleFeed
	for _, f := range feeds {
		if validName(f.Name) != nil {
			continue
		}
		st, err := os.Stat(copyPath(dir, f.Name))
		if errors.Is(err, fs.ErrNotExist) {
			out = append(out, StaleFeed{Name: f.Name, Missing: true})
			continue
		}
		if err != nil {
			// Unreadable is as bad as missing for the sensor.
			out = append(out, StaleFeed{Name: f.Name, Missing: true})
			continue
		}
		checked := st.ModTime()
		if m, err := readMeta(dir, f.Name); err == nil && m != nil && !m.CheckedAt.IsZero() {
			checked = m.CheckedAt
		}
		if age := now.Sub(checked); age > 2*period {
			out = append(out, StaleFeed{Name: f.Name, CheckedAt: checked, Age: age})
		}
	}
	return out
}
