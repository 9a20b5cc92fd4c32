package feeds

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// DefaultDir is where `xtrail trails update` keeps the feed copies when
// TRAILS_FEED_DIR is not set.
const DefaultDir = "/var/lib/xtrail/feeds"

// Settings are what `xtrail trails update -c maltrail.conf` reads from the
// file.
type Settings struct {
	Feeds  []Feed        // see Configured
	Dir    string        // TRAILS_FEED_DIR, default DefaultDir
	Period time.Duration // UPDATE_PERIOD, default DefaultPeriod
}

// FromConfig reads the feeds (Configured), TRAILS_FEED_DIR and
// UPDATE_PERIOD. A value the key does not allow is an error naming the
// key, where it was set, the value and what is allowed.
func FromConfig(cfg *maltrail.Config) (Settings, error) {
	s := Settings{Dir: DefaultDir, Period: DefaultPeriod}
	var err error
	if s.Feeds, err = Configured(cfg); err != nil {
		return s, err
	}
	if v, ok := cfg.Get("TRAILS_FEED_DIR"); ok {
		if v == "" {
			return s, badValue(cfg, "TRAILS_FEED_DIR", v, "a directory (default "+DefaultDir+")")
		}
		s.Dir = v
	}
	v, _ := cfg.Get("UPDATE_PERIOD")
	secs, err := cfg.Int("UPDATE_PERIOD", int(DefaultPeriod/time.Second))
	if err != nil || secs <= 0 {
		return s, badValue(cfg, "UPDATE_PERIOD", v, "a positive number of seconds (default 86400)")
	}
	s.Period = time.Duration(secs) * time.Second
	return s, nil
}

func badValue(cfg *maltrail.Config, key, value, allowed string) error {
	where := ""
	if w := cfg.Where(key); w != "" {
		where = w + ": "
	}
	return fmt.Errorf("%s%s %q: want %s", where, key, value, allowed)
}

// Configured lists the feeds a maltrail.conf names: Maltrail's
// UPDATE_SERVER (a server's trails.csv: a URL, or HOST[:PORT] for
// http://HOST:PORT/trails, port 8338 by default) and CUSTOM_TRAILS_URL,
// and xtrail's USER_WHITELIST_URL (a whitelist, kept as whitelist.txt)
// and TRAILS_FEEDS ("NAME=URL NAME=URL ...", also separated by
// commas). A TRAILS_FEEDS entry needs a file name (letters, digits, '.',
// '_', '-') and an http or https URL.
func Configured(cfg *maltrail.Config) ([]Feed, error) {
	var list []Feed
	if v := cfg.String("UPDATE_SERVER", ""); v != "" {
		if !strings.Contains(v, "://") {
			if _, _, err := net.SplitHostPort(v); err != nil {
				v = net.JoinHostPort(v, "8338")
			}
			v = "http://" + v + "/trails"
		}
		list = append(list, Feed{Name: "trails.csv", URL: v})
	}
	if v := cfg.String("CUSTOM_TRAILS_URL", ""); v != "" {
		list = append(list, Feed{Name: "custom_trails.txt", URL: v})
	}
	// a whitelist in Maltrail's data/whitelist.txt format, kept like any
	// feed; USER_WHITELIST names the copy for the sensor
	if v := cfg.String("USER_WHITELIST_URL", ""); v != "" {
		list = append(list, Feed{Name: "whitelist.txt", URL: v})
	}
	for _, f := range strings.FieldsFunc(cfg.String("TRAILS_FEEDS", ""), func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		name, raw, ok := strings.Cut(f, "=")
		u, err := url.Parse(raw)
		if !ok || validName(name) != nil || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// the URL may hold a key: the error shows it redacted
			return nil, badValue(cfg, "TRAILS_FEEDS", name+"="+redactURL(raw),
				"NAME=URL entries: NAME of letters, digits, '.', '_' and '-', an http or https URL")
		}
		list = append(list, Feed{Name: name, URL: raw})
	}
	return list, nil
}
