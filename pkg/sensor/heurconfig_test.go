package sensor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
)

func TestHeuristicsConfig(t *testing.T) {
	ua := filepath.Join(t.TempDir(), "ua.txt")
	if err := os.WriteFile(ua, []byte("# mine\nevilbot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hc := func(cfg *maltrail.Config) (heuristics.Config, error) {
		scan, err := ScanOptions(cfg)
		if err != nil {
			return heuristics.Config{}, err
		}
		return keys{cfg}.heuristics(scan)
	}
	c, err := hc(parseConf(t, "USE_HEURISTICS true\nCHECK_MISSING_HOST 1\nDISABLED_HEURISTICS long_domain,web_scanning\n"+
		"USER_AGENTS_FILE "+ua+"\nWHITELIST_UA_REGEX (?i)goodbot\\d+\nWHITELIST_HTTP_REQUEST_PATHS /a/, /b/\nSCAN_WINDOW 60\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Use || !c.CheckMissingHost || !c.Disabled.Has(heuristics.LongDomain) || !c.Disabled.Has(heuristics.WebScanning) ||
		c.UserAgents == nil || c.UserAgents.Len() != 1 || !c.WhitelistUA.MatchString("GoodBot7") ||
		strings.Join(c.WhitelistPaths, "|") != "/a/|/b/" || c.ScanWindow != 60 {
		t.Errorf("%+v", c)
	}
	// absent keys: Maltrail's defaults
	c, err = hc(parseConf(t, "LOG_DIR /tmp\n"))
	if err != nil || c.Use || c.CheckMissingHost || c.Disabled != 0 || c.UserAgents != nil || c.WhitelistPaths != nil || c.ScanWindow != 30 {
		t.Errorf("%+v %v", c, err)
	}
	// a bad value stops the sensor, naming key, value and what it takes
	for _, bad := range []struct{ conf, want string }{
		{"USE_HEURISTICS yes", `USE_HEURISTICS "yes": want true or false`},
		{"CHECK_MISSING_HOST maybe", `CHECK_MISSING_HOST "maybe": want true or false`},
		{"DISABLED_HEURISTICS long_domain,bogus", `DISABLED_HEURISTICS: unknown heuristic "bogus": want some of port_scanning`},
		{"USER_AGENTS_FILE /nonexistent/ua.txt", `USER_AGENTS_FILE "/nonexistent/ua.txt"`},
		{"WHITELIST_UA_REGEX a(?<=b)", `WHITELIST_UA_REGEX "a(?<=b)"`},
	} {
		_, err := hc(parseConf(t, bad.conf+"\n"))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.conf, err, bad.want)
		}
	}
}
