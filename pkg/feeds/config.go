package feeds

import (
	"fmt"
	"net"
	"strings"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// Configured lists the feeds a maltrail.conf names: Maltrail's
// UPDATE_SERVER (a server's trails.csv: a URL, or HOST[:PORT] for
// http://HOST:PORT/trails, port 8338 by default) and CUSTOM_TRAILS_URL,
// and xtrail's TRAILS_FEEDS ("NAME=URL NAME=URL ...").
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
	for _, f := range strings.FieldsFunc(cfg.String("TRAILS_FEEDS", ""), func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		name, url, ok := strings.Cut(f, "=")
		if !ok || name == "" || url == "" {
			return nil, fmt.Errorf("TRAILS_FEEDS: %q: want NAME=URL", f)
		}
		list = append(list, Feed{Name: name, URL: url})
	}
	return list, nil
}
