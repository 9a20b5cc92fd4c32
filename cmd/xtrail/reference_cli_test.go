package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docSection is the part of a markdown page under the first heading that
// holds token, down to the next heading of the same or a higher level.
func docSection(t *testing.T, page, token string) string {
	t.Helper()
	lines := strings.Split(page, "\n")
	for i, l := range lines {
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || !strings.Contains(l, token) {
			continue
		}
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if lv := len(lines[j]) - len(strings.TrimLeft(lines[j], "#")); lv > 0 && lv <= level && strings.HasPrefix(lines[j][lv:], " ") {
				end = j
				break
			}
		}
		return strings.Join(lines[i:end], "\n")
	}
	t.Fatalf("no heading with %s", token)
	return ""
}

// usageFlags parses `xtrail CMD -h`: each flag and the default it shows.
func usageFlags(t *testing.T, args ...string) map[string]string {
	t.Helper()
	r := xtrail(t, append(args, "-h")...)
	if r.code != 0 {
		t.Fatalf("-h: %s", r)
	}
	flags := map[string]string{}
	name := ""
	defRe := regexp.MustCompile(`\(default (.*)\)$`)
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "  -") {
			name = strings.Fields(l)[0][1:]
			flags[name] = ""
		}
		if m := defRe.FindStringSubmatch(l); m != nil && name != "" {
			flags[name] = strings.Trim(m[1], `"`)
		}
	}
	if len(flags) == 0 {
		t.Fatalf("no flags in %s", r)
	}
	return flags
}

// sameDefault reports whether a documented default cell says def: the
// same text (less the backticks), or the same duration.
func sameDefault(cell, def string) bool {
	if strings.Contains(strings.ReplaceAll(cell, "`", ""), def) {
		return true
	}
	want, err := time.ParseDuration(def)
	if err != nil {
		return false
	}
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cell, -1) {
		if d, err := time.ParseDuration(m[1]); err == nil && d == want {
			return true
		}
	}
	return false
}

// TestConfigurationReference: every flag of every command is on the one
// reference page, docs/configuration.md, in its command's section, with
// the default the command shows.
func TestConfigurationReference(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	host, _ := os.Hostname()
	for _, cmd := range [][]string{{"sensor"}, {"server"}, {"export"}, {"collector"}, {"status"}, {"gencert"},
		{"trails", "load"}, {"trails", "lookup"}, {"trails", "diff"}, {"trails", "stats"}, {"trails", "update"}, {"trails", "compile"},
		{"server", "sensors", "list"}} {
		name := "xtrail " + strings.Join(cmd, " ")
		// one section for the verbs of `xtrail server sensors`
		section := docSection(t, page, "`"+strings.TrimSuffix(name, " list")+"`")
		for flag, def := range usageFlags(t, cmd...) {
			if def == host {
				def = "" // this machine's name: the page says "the host name"
			}
			row := ""
			rowRe := regexp.MustCompile("`--?" + regexp.QuoteMeta(flag) + "[` ]")
			for _, l := range strings.Split(section, "\n") {
				if cells := strings.Split(l, "|"); len(cells) > 2 && cells[0] == "" && rowRe.MatchString(cells[1]) {
					row = l
					break
				}
			}
			if row == "" {
				t.Errorf("%s -%s is not in its section of docs/configuration.md", name, flag)
				continue
			}
			cells := strings.Split(row, "|")
			if def != "" && (len(cells) < 3 || !sameDefault(cells[2], def)) {
				t.Errorf("%s -%s: the command's default is %q, docs/configuration.md says %q", name, flag, def, row)
			}
		}
	}
}

// TestCLIRefusesBadValues: values the commands used to take silently stop
// them at start: a negative limit or timeout of the server or exporter
// would refuse every sensor, frame or line.
func TestCLIRefusesBadValues(t *testing.T) {
	dir := t.TempDir()
	src := writeFile(t, filepath.Join(dir, "trails.csv"), "1.2.3.4,x,(static)\n")
	wantFail(t, xtrail(t, "trails", "load", "-wait", "-1s", "-pin-dir", filepath.Join(dir, "pins"), src), 1, "-wait -1s: want 0 or more")
	wantFail(t, xtrail(t, "trails", "stats", "-period", "0"), 1, "-period 0s: want a positive duration")
	wantFail(t, xtrail(t, "trails", "stats", "stray"), 1, `unexpected arguments ["stray"]`)
	wantFail(t, xtrail(t, "trails", "update", "-period", "-1h", "a=http://127.0.0.1:1/a"), 1, "-period -1h0m0s: want a positive duration, or 0")
	for _, bad := range [][]string{{"-max-conns", "-1"}, {"-max-conns-per-source", "-1"}, {"-max-conns-per-sensor", "-2"},
		{"-time-window", "-1s"}, {"-idle-timeout", "-1s"}, {"-frame-timeout", "-1s"}, {"-session-idle-timeout", "-1s"},
		{"-max-unauth-bytes", "-1"}, {"-export-rate", "-5"}, {"-analyzer-db", "-1"}} {
		wantFail(t, xtrail(t, append([]string{"server", "-cert", "x.crt"}, bad...)...), 1, bad[0]+" "+bad[1]+": want 0 or more")
	}
	wantFail(t, xtrail(t, "server", "-cert", "x.crt", "-sensor-rate", "-2"), 1, "-sensor-rate -2: want bytes/s, or -1 for no limit")
	for _, bad := range [][]string{{"-batch", "-1"}, {"-confirm-delay", "-1ms"}} {
		wantFail(t, xtrail(t, append([]string{"export", "-t", "maltrail", "-u", "q", "-p", "8337"}, bad...)...), 1, bad[0]+" "+bad[1]+": want 0 or more")
	}
	wantFail(t, xtrail(t, "export", "-t", "maltrail", "-u", "q", "-p", "8337", "-rate", "-2"), 1, "-rate -2: want lines/s")
}
