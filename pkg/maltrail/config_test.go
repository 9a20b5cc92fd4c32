package maltrail

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// shippedConf is shaped like Maltrail's shipped maltrail.conf (abridged).
const shippedConf = `# [Server]

# Listen address of (reporting) HTTP server
HTTP_ADDRESS 0.0.0.0
#HTTP_ADDRESS ::

HTTP_PORT 8338
USE_SSL false

# User entries (username:sha256(password):UID:filter_netmask(s))
USERS
    admin:9ab3cd9d67bf49d01f6a2e33d0bd9bc804ddbe6ce1ff5d219c42624851db5dbc:0:                        # changeme!
#    local:9ab3cd9d67bf49d01f6a2e33d0bd9bc804ddbe6ce1ff5d219c42624851db5dbc:1000:192.168.0.0/16       # changeme!

#UDP_ADDRESS 0.0.0.0
USE_SERVER_UPDATE_TRAILS false

# [Sensor]
PROCESS_COUNT $CPU_CORES
DISABLE_CPU_AFFINITY false
USE_FEED_UPDATES true
DISABLED_FEEDS turris, ciarmy, policeman, myip, alienvault
UPDATE_PERIOD 86400
CUSTOM_TRAILS_DIR ./trails/custom
CAPTURE_BUFFER 10%
MONITOR_INTERFACE any
CAPTURE_FILTER udp or icmp or (tcp and (tcp[tcpflags] == tcp-syn or port 80))
SENSOR_NAME $HOSTNAME
LOG_SERVER 192.168.2.107:8337
DISABLE_LOCAL_LOG_STORAGE false
USE_HEURISTICS true
CHECK_MISSING_HOST false

# [All]
SHOW_DEBUG false
LOG_DIR $SYSTEM_LOG_DIR/maltrail
`

func testParser() *ConfigParser {
	return &ConfigParser{Hostname: func() (string, error) { return "gw", nil }, CPUCores: 16}
}

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseConfigShipped(t *testing.T) {
	c, err := testParser().Parse(strings.NewReader(shippedConf), "maltrail.conf", mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	strs := map[string]string{
		"HTTP_ADDRESS":      "0.0.0.0",
		"SENSOR_NAME":       "gw",
		"LOG_DIR":           "/var/log/maltrail",
		"PROCESS_COUNT":     "16",
		"CAPTURE_BUFFER":    "10%",
		"DISABLED_FEEDS":    "turris, ciarmy, policeman, myip, alienvault",
		"CAPTURE_FILTER":    "udp or icmp or (tcp and (tcp[tcpflags] == tcp-syn or port 80))",
		"LOG_SERVER":        "192.168.2.107:8337",
		"CUSTOM_TRAILS_DIR": "./trails/custom",
	}
	for k, want := range strs {
		if got, ok := c.Get(k); !ok || got != want {
			t.Errorf("Get(%s) = %q, %v; want %q", k, got, ok, want)
		}
	}
	for k, want := range map[string]bool{
		"USE_HEURISTICS": true, "USE_FEED_UPDATES": true, "USE_SSL": false,
		"CHECK_MISSING_HOST": false, "SHOW_DEBUG": false, "DISABLE_CHECK_SUDO": false,
		"use_heuristics": true,
	} {
		if got := c.Bool(k); got != want {
			t.Errorf("Bool(%s) = %v, want %v", k, got, want)
		}
	}
	if n, err := c.Int("HTTP_PORT", 0); err != nil || n != 8338 {
		t.Errorf("Int(HTTP_PORT) = %d, %v", n, err)
	}
	if n, err := c.Int("PROCESS_COUNT", 1); err != nil || n != 16 {
		t.Errorf("Int(PROCESS_COUNT) = %d, %v", n, err)
	}
	if n, err := c.Int("SCAN_WINDOW", 30); err != nil || n != 30 {
		t.Errorf("Int(SCAN_WINDOW) absent = %d, %v", n, err)
	}
	if _, err := c.Int("CAPTURE_BUFFER", 0); err == nil || !strings.Contains(err.Error(), "maltrail.conf:") {
		t.Errorf("Int(CAPTURE_BUFFER) error = %v, want one naming the file line", err)
	}
	users := c.List("USERS")
	if want := []string{"admin:9ab3cd9d67bf49d01f6a2e33d0bd9bc804ddbe6ce1ff5d219c42624851db5dbc:0:"}; !slices.Equal(users, want) {
		t.Errorf("List(USERS) = %q, want %q", users, want)
	}
	if _, ok := c.Get("USERS"); ok {
		t.Error("Get(USERS) of an array reported ok")
	}
	if got := c.List("LOG_DIR"); got != nil {
		t.Errorf("List(LOG_DIR) = %q, want nil", got)
	}
	if err := c.Require("MONITOR_INTERFACE", "CAPTURE_BUFFER", "LOG_DIR"); err != nil {
		t.Errorf("Require: %v", err)
	}
	err = c.Require("MONITOR_INTERFACE", "TRAILS_FILE", "udp_port")
	if err == nil || !strings.Contains(err.Error(), "TRAILS_FILE, UDP_PORT") || !strings.HasPrefix(err.Error(), "maltrail.conf:") {
		t.Errorf("Require of missing keys: %v", err)
	}
	keys := c.Keys()
	if !slices.IsSorted(keys) || !slices.Contains(keys, "USERS") || slices.Contains(keys, "UDP_ADDRESS") {
		t.Errorf("Keys() = %q", keys)
	}
	if got := c.String("TRAILS_FILE", "~/.maltrail/trails.csv"); got != "~/.maltrail/trails.csv" {
		t.Errorf("String default = %q", got)
	}
}

func TestParseConfigRules(t *testing.T) {
	env := mapEnv(map[string]string{
		"MALTRAIL_LOG_SERVER":     "10.0.0.1:9999",
		"MALTRAIL_USE_HEURISTICS": "1",
		"MALTRAIL_SENSOR_NAME":    "", // empty does not override
		"MALTRAIL_NOT_IN_FILE":    "x",
		"MALTRAIL_LOG_DIR":        "$SYSTEM_LOG_DIR/env",
		"SITE":                    "lab",
	})
	conf := "LOG_SERVER 1.2.3.4:8337\r\n" +
		"USE_HEURISTICS false\r\n" +
		"SENSOR_NAME   'sensor-$SITE-$HOSTNAME'  \n" +
		"LOG_DIR /tmp\n" +
		"QUOTED \"a b\"\n" +
		"EMPTY \n" +
		"UNKNOWN_VAR $NOPE/x $ $lower\n" +
		"lower_key value\n" +
		"TABBED\tvalue here\n" +
		"IP_ALIASES\n" +
		"    8.8.8.8:google\n" +
		"\n" +
		"# comment inside the array does not close it\n" +
		"\t8.8.4.4:google   # trailing comment\n" +
		"ENABLE_X TRUE\n" +
		"SET_Y yes\n" +
		"DUP 1\n" +
		"DUP 2\n" +
		"BIG 99999999999999999999999\n" +
		"EMPTY_ARRAY\n" +
		"#   commented:item\n"
	c, err := testParser().Parse(strings.NewReader(conf), "t.conf", env)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"LOG_SERVER":  "10.0.0.1:9999",
		"SENSOR_NAME": "sensor-lab-gw",
		"LOG_DIR":     "/var/log/env",
		"QUOTED":      "a b",
		"EMPTY":       "",
		"UNKNOWN_VAR": "$NOPE/x $ $lower",
		"LOWER_KEY":   "value",
		"TABBED":      "value here",
		"DUP":         "2",
	} {
		if got, ok := c.Get(k); !ok || got != want {
			t.Errorf("Get(%s) = %q, %v; want %q", k, got, ok, want)
		}
	}
	if _, ok := c.Get("NOT_IN_FILE"); ok {
		t.Error("MALTRAIL_NOT_IN_FILE created a key; Maltrail only overrides keys of the file")
	}
	if !c.Bool("USE_HEURISTICS") || !c.Bool("ENABLE_X") || c.Bool("SET_Y") {
		t.Errorf("Bool: USE_HEURISTICS %v ENABLE_X %v SET_Y %v", c.Bool("USE_HEURISTICS"), c.Bool("ENABLE_X"), c.Bool("SET_Y"))
	}
	if got, want := c.List("IP_ALIASES"), []string{"8.8.8.8:google", "8.8.4.4:google"}; !slices.Equal(got, want) {
		t.Errorf("List(IP_ALIASES) = %q, want %q", got, want)
	}
	if got := c.List("EMPTY_ARRAY"); got == nil || len(got) != 0 {
		t.Errorf("List(EMPTY_ARRAY) = %#v, want empty non-nil", got)
	}
	if n, err := c.Int("EMPTY", 7); err != nil || n != 7 {
		t.Errorf("Int(EMPTY) = %d, %v; want default", n, err)
	}
	if _, err := c.Int("BIG", 0); err == nil || !strings.HasPrefix(err.Error(), "t.conf:19: BIG") {
		t.Errorf("Int(BIG) error = %v", err)
	}
	if _, err := c.Int("LOG_SERVER", 0); err == nil || !strings.Contains(err.Error(), "env MALTRAIL_LOG_SERVER") {
		t.Errorf("Int of an overridden key: error %v should name the environment", err)
	}
	if _, err := c.Int("IP_ALIASES", 0); err == nil {
		t.Error("Int of an array: no error")
	}
	for key, want := range map[string]string{"LOG_DIR": "env MALTRAIL_LOG_DIR", "DUP": "t.conf:18", "IP_ALIASES": "t.conf:10", "NOT_IN_FILE": ""} {
		if got := c.Where(key); got != want {
			t.Errorf("Where(%s) = %q, want %q", key, got, want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ name, conf, want string }{
		{"indented without array", "LOG_DIR /x\n  stray\n", "c.conf:2: indented line"},
		{"indented after value closes array", "USERS\n  a:b:c:d\nLOG_DIR /x\n  stray\n", "c.conf:4: indented line"},
		{"bad bare word", "LOG_DIR /x\nfoo=bar\n", "c.conf:2: invalid key"},
		{"bad key", "LOG-DIR /x\n", "c.conf:1: invalid key"},
		{"hostname failure", "SENSOR_NAME $HOSTNAME\n", "c.conf:1: SENSOR_NAME: expand $HOSTNAME: no host"},
		{"long line", "K " + strings.Repeat("x", maxConfigLine+10) + "\n", "c.conf:1: line longer"},
	}
	p := &ConfigParser{Hostname: func() (string, error) { return "", errors.New("no host") }}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := p.Parse(strings.NewReader(tc.conf), "c.conf", nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
			if c != nil {
				t.Error("config returned with an error")
			}
		})
	}
}

func TestParseConfigDefaultHost(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("SENSOR_NAME $HOSTNAME\nPROCESS_COUNT $CPU_CORES\n"), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := c.String("SENSOR_NAME", ""); v == "" || v == "$HOSTNAME" {
		t.Errorf("SENSOR_NAME = %q", v)
	}
	if n, err := c.Int("PROCESS_COUNT", 0); err != nil || n < 1 {
		t.Errorf("PROCESS_COUNT = %d, %v", n, err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add(shippedConf)
	f.Add("MONITOR_INTERFACE any\nCAPTURE_BUFFER 10%\nPROCESS_COUNT 1\nUPDATE_PERIOD 999999999\nUSE_FEED_UPDATES false\n" +
		"DISABLE_CHECK_SUDO true\nUSE_HEURISTICS true\nSENSOR_NAME corpus\nSCAN_WINDOW 30\nTRAILS_FILE /x/trails.csv\nLOG_DIR /tmp/l\n")
	f.Add("USERS\n    admin:9ab3:0:   # changeme!\n\tlocal:x:1000:192.168.0.0/16\nIP_ALIASES\n")
	f.Add("SENSOR_NAME '$HOSTNAME:$NOPE'\r\nLOG_DIR \"$SYSTEM_LOG_DIR/maltrail\"\r\n")
	f.Add("  stray\n")
	f.Add("K\tV\nK2  \nfoo=bar\n#\n\n$ $$ ${X}\n")
	f.Fuzz(func(t *testing.T, conf string) {
		p := testParser()
		c, err := p.Parse(strings.NewReader(conf), "fuzz.conf", mapEnv(map[string]string{"MALTRAIL_LOG_DIR": "/env", "X": "$X"}))
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		for _, k := range c.Keys() {
			if k != strings.ToUpper(k) {
				t.Fatalf("key %q not upper case", k)
			}
			v, ok := c.Get(k)
			if l := c.List(k); (l != nil) == ok {
				t.Fatalf("key %q is both or neither scalar and array", k)
			}
			if strings.Contains(v, "#") && !strings.HasPrefix(c.entry(k).where, "env") {
				t.Fatalf("key %q keeps a comment: %q", k, v)
			}
			c.Bool(k)
			_, _ = c.Int(k, 0)
		}
		_ = c.Require("LOG_DIR", "MONITOR_INTERFACE")
	})
}
