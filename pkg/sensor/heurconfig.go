package sensor

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/trails"
)

// Configuration keys of the agent's heuristics (spec §4), besides
// USE_HEURISTICS, DISABLED_HEURISTICS and SCAN_WINDOW (scan.go).
const (
	KeyCheckMissingHost = "CHECK_MISSING_HOST"
	KeyUserAgentsFile   = "USER_AGENTS_FILE"             // replaces the built-in suspicious user agents (Maltrail's ua.txt format)
	KeyWhitelistUA      = "WHITELIST_UA_REGEX"           // user agents it matches (case-insensitive) are never suspicious
	KeyWhitelistPaths   = "WHITELIST_HTTP_REQUEST_PATHS" // comma-separated path snippets exempt from the request checks
)

// heuristics reads the agent's heuristics keys; scan is what ScanOptions
// read of the keys the kernel's scans share (its window is the web-scan
// window). A value it cannot use is an error naming the key, the value
// and what the key takes: a sensor must not start with a heuristic
// silently off.
func (k keys) heuristics(scan dataplane.Scan) (heuristics.Config, error) {
	c := heuristics.Config{ScanWindow: int64(scan.Window / time.Second)}
	var err error
	if c.Use, err = k.boolean(KeyUseHeuristics); err != nil {
		return c, err
	}
	if c.CheckMissingHost, err = k.boolean(KeyCheckMissingHost); err != nil {
		return c, err
	}
	off, err := DisabledHeuristics(k.cfg)
	if err != nil {
		return c, err
	}
	names := make([]string, 0, len(off))
	for n := range off {
		names = append(names, n)
	}
	if c.Disabled, err = heuristics.ParseDisabled(strings.Join(names, ",")); err != nil {
		return c, k.wrap(KeyDisabledHeuristics, err)
	}
	if f, ok := k.cfg.Get(KeyUserAgentsFile); ok && f != "" {
		if c.UserAgents, err = heuristics.LoadUserAgentsFile(expandHome(f)); err != nil {
			return c, k.wrap(KeyUserAgentsFile, fmt.Errorf("%w (want a file of user agent patterns, one per line)", err))
		}
	}
	if v, ok := k.cfg.Get(KeyWhitelistUA); ok && v != "" {
		g, err := trails.TranslatePythonRegex(v)
		if err == nil {
			c.WhitelistUA, err = regexp.Compile("(?i)" + g)
		}
		if err != nil {
			return c, k.wrap(KeyWhitelistUA, fmt.Errorf("%w (want a regular expression)", err))
		}
	}
	if v, ok := k.cfg.Get(KeyWhitelistPaths); ok {
		c.WhitelistPaths = []string{}
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.WhitelistPaths = append(c.WhitelistPaths, p)
			}
		}
	}
	return c, nil
}

// localPrefix reads Maltrail's local prefix from the kernel's scan counts
// for the IoT-download rule: at most once per packet second (it walks a
// map), keeping the last prefix known when the window has none, as
// Maltrail does.
type localPrefix struct {
	dp   *dataplane.Dataplane
	last string
	sec  int64
	read bool
}

func (l *localPrefix) at(sec int64) string {
	if !l.read || sec != l.sec {
		l.read, l.sec = true, sec
		if p, err := l.dp.LocalPrefix(); err == nil && p != "" {
			l.last = p
		}
	}
	return l.last
}
