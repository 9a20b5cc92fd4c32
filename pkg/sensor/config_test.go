package sensor

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/throttle"
)

var quiet = slog.New(slog.DiscardHandler)

func writeFile(path, text string) error {
	return os.WriteFile(path, []byte(text), 0o644)
}

// readConf writes text to dir/maltrail.conf and reads the file as
// `xtrail sensor -c` does (without the process environment).
func readConf(t testing.TB, dir, text string) *maltrail.Config {
	t.Helper()
	path := filepath.Join(dir, "maltrail.conf")
	if err := writeFile(path, text); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	cfg, err := maltrail.ParseConfig(fh, path, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testHost is the process as Configure sees it, with standard output in a
// file the test can read (consoleOut).
func testHost(t testing.TB) process {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return process{stdout: f, hostname: os.Hostname}
}

func consoleOut(t testing.TB, h process) string {
	t.Helper()
	b, err := os.ReadFile(h.stdout.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	trails := dir + "/trails.csv"
	if err := writeFile(trails, "1.2.3.4,x,(static)\n"); err != nil {
		t.Fatal(err)
	}
	base := "TRAILS_FILE " + trails + "\nLOG_DIR " + dir + "/log\n"
	d4 := "D4_SERVER 127.0.0.1:4443\nD4_UUID 1d940331-9fc9-4381-8fc9-3b624db66025\nD4_KEY k\nDISABLE_D4_TLS_VERIFY true\nD4_SPOOL_DIR " + dir + "/spool\n"
	replay := Flags{Pcaps: []string{"x.pcap"}}
	cases := []struct {
		name, conf string
		flags      Flags
		sinks      string // Multi's name
	}{
		{"maltrail defaults", base, Flags{Interfaces: "eth9"}, "multi(file)"},
		{"log server and console", base + "LOG_SERVER 127.0.0.1:8337\n", Flags{Pcaps: []string{"x.pcap"}, Console: true}, "multi(file,udp:127.0.0.1:8337,console)"},
		{"no local storage, nothing else: console", base + "DISABLE_LOCAL_LOG_STORAGE true\n", replay, "multi(console)"},
		{"no local storage with a log server", base + "DISABLE_LOCAL_LOG_STORAGE true\nLOG_SERVER 127.0.0.1:8337\n", replay, "multi(udp:127.0.0.1:8337)"},
		{"empty log server is none", base + "DISABLE_LOCAL_LOG_STORAGE true\nLOG_SERVER ''\nSYSLOG_SERVER ''\n", replay, "multi(console)"},
		{"d4", base + "DISABLE_LOCAL_LOG_STORAGE true\n" + d4, replay, "multi(d4)"},
		{"syslog", base + "DISABLE_LOCAL_LOG_STORAGE 1\nSYSLOG_SERVER 127.0.0.1:514; [::1]:514\n", replay, "multi(syslog:127.0.0.1:514,[::1]:514)"},
		// Maltrail prints to the console here too; any output counts in xtrail
		{"logstash", base + "DISABLE_LOCAL_LOG_STORAGE TRUE\nLOGSTASH_SERVER 127.0.0.1:5044\n", replay, "multi(logstash:127.0.0.1:5044)"},
		{"every output", base + "LOG_SERVER 127.0.0.1:8337\nSYSLOG_SERVER 127.0.0.1:514\nLOGSTASH_SERVER 127.0.0.1:5044\n" + d4,
			Flags{Pcaps: []string{"x.pcap"}, Console: true}, "multi(file,udp:127.0.0.1:8337,d4,syslog:127.0.0.1:514,logstash:127.0.0.1:5044,console)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := configure(readConf(t, t.TempDir(), c.conf), c.flags, quiet, testHost(t))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Sinks.Close()
			if got := st.Sinks.Name(); got != c.sinks {
				t.Errorf("sinks %s, want %s", got, c.sinks)
			}
			if st.Options.TrailsFile != trails {
				t.Errorf("trails file %q", st.Options.TrailsFile)
			}
			if st.MetricsAddr != "" {
				t.Errorf("metrics served at %q without METRICS_ADDRESS: off by default", st.MetricsAddr)
			}
		})
	}
}

// TestConfigureValues reads a value for every key and checks the options
// it gives; the replay and live tests check what each option does.
func TestConfigureValues(t *testing.T) {
	dir := t.TempDir()
	if err := writeFile(dir+"/trails.csv", "1.2.3.4,x,(static)\n"); err != nil {
		t.Fatal(err)
	}
	conf := "TRAILS_FILE " + dir + "/trails.csv\nLOG_DIR " + dir + "/log\nSENSOR_NAME 007\n" +
		"XDP_MODE Generic\nXDP_ACTION DROP\nXDP_PIN_DIR /sys/fs/bpf/other/\nXDP_RING_SIZE 64KiB\n" +
		"SNAPLEN_DNS 100\nSNAPLEN_HTTP 0\nSNAPLEN_TLS 1536\nSNAPLEN_QUIC 1200\n" +
		"UPDATE_PERIOD 3600\nEVENT_THROTTLE_MODE Legacy\nPROCESS_COUNT 16\n" +
		"CHECK_HOST_DOMAINS 1\nUSE_FAST_PREFILTER true\nFAST_FLOW_CUTOFF 0\n" +
		"MONITOR_INTERFACE eth7, eth8\nTRAILS_FEEDS a=http://x/a\nTRAILS_FEED_DIR /tmp/feeds\nMETRICS_ADDRESS [::1]:9337\n"
	st, err := configure(readConf(t, dir, conf), Flags{}, quiet, testHost(t))
	if err != nil {
		t.Fatal(err)
	}
	st.Sinks.Close()
	o := st.Options
	got := fmt.Sprintf("mode %s action %s pin %s ring %d snap %v period %s throttle %v procs %d host %v sni %v ifs %q name %q",
		o.XDPMode, o.Action, o.PinDir, o.RingSize, o.Snap[dataplane.KindDNS:dataplane.KindQUIC+1], o.UpdatePeriod, o.Throttle, o.Processes,
		o.Rules.CheckHostDomains, o.Rules.CheckSNI, o.Interfaces, o.Renderer.Sensor)
	want := fmt.Sprintf("mode generic action drop pin /sys/fs/bpf/other ring 65536 snap [100 0 1536 1200] period 1h0m0s throttle %v procs 16 host true sni false ifs [\"eth7\" \"eth8\"] name \"7\"",
		throttle.Legacy)
	if got != want {
		t.Errorf("options\n got %s\nwant %s", got, want)
	}
	if st.MetricsAddr != "[::1]:9337" {
		t.Errorf("METRICS_ADDRESS: %q", st.MetricsAddr)
	}

	// flags win over the keys they shadow; 0 processes is the CPU count
	st, err = configure(readConf(t, dir, conf+"PROCESS_COUNT 0\nSENSOR_NAME 000\n"),
		Flags{Interfaces: "eth1", XDPMode: "native", XDPAction: "pass", PinDir: "/sys/fs/bpf/flag"}, quiet, testHost(t))
	if err != nil {
		t.Fatal(err)
	}
	st.Sinks.Close()
	o = st.Options
	got = fmt.Sprintf("%s %s %s %q %d %q", o.XDPMode, o.Action, o.PinDir, o.Interfaces, o.Processes, o.Renderer.Sensor)
	if want := fmt.Sprintf("native pass /sys/fs/bpf/flag [\"eth1\"] %d \"\"", runtime.NumCPU()); got != want {
		t.Errorf("with flags\n got %s\nwant %s", got, want)
	}
}

// TestConfigureRejects: a value a key does not allow stops the sensor at
// start, and the error names the key, where it was set, the value and
// what is allowed.
func TestConfigureRejects(t *testing.T) {
	dir := t.TempDir()
	trails := dir + "/trails.csv"
	for path, text := range map[string]string{trails: "1.2.3.4,x,(static)\n", dir + "/plain": "x\n", dir + "/ignore.txt": "1.2.3.4;*;*\n"} {
		if err := writeFile(path, text); err != nil {
			t.Fatal(err)
		}
	}
	base := "TRAILS_FILE " + trails + "\nLOG_DIR " + dir + "/log\n"
	d4 := "D4_SERVER 127.0.0.1:4443\nD4_UUID 1d940331-9fc9-4381-8fc9-3b624db66025\nD4_KEY k\n"
	cases := []struct {
		conf string // the bad line, last in the file
		says []string
	}{
		{`CHECK_HOST_DOMAINS yes`, []string{`CHECK_HOST_DOMAINS "yes": want true or false`}},
		{`USE_FAST_PREFILTER on`, []string{`USE_FAST_PREFILTER "on"`, "true or false"}},
		{`USE_HEURISTICS yes`, []string{`USE_HEURISTICS "yes"`, "true or false"}},
		{`DISABLE_LOCAL_LOG_STORAGE enabled`, []string{`DISABLE_LOCAL_LOG_STORAGE "enabled"`, "true or false"}},
		{d4 + `DISABLE_D4_TLS_VERIFY yes`, []string{`DISABLE_D4_TLS_VERIFY "yes"`, "true or false"}},
		{`FAST_FLOW_CUTOFF four`, []string{`FAST_FLOW_CUTOFF "four"`, "a number of packets"}},
		{`FAST_FLOW_CUTOFF -1`, []string{`FAST_FLOW_CUTOFF "-1"`, "a number of packets"}},
		{`UPDATE_PERIOD 0`, []string{`UPDATE_PERIOD "0"`, "a positive number of seconds"}},
		{`UPDATE_PERIOD 1d`, []string{`UPDATE_PERIOD "1d"`, "a positive number of seconds"}},
		{`PROCESS_COUNT many`, []string{`PROCESS_COUNT "many"`, "a number of processes"}},
		{`SNAPLEN_DNS 2000`, []string{`SNAPLEN_DNS "2000"`, "0 to 1536 bytes"}},
		{`SNAPLEN_QUIC x`, []string{`SNAPLEN_QUIC "x"`, "0 to 1536 bytes"}},
		{`XDP_RING_SIZE 5000`, []string{`XDP_RING_SIZE "5000"`, "a power of two from 4096 to 1G bytes"}},
		{`XDP_RING_SIZE 2K`, []string{`XDP_RING_SIZE "2K"`, "a power of two"}},
		{`XDP_RING_SIZE 2G`, []string{`XDP_RING_SIZE "2G"`, "a power of two"}},
		{`XDP_RING_SIZE 8 MB please`, []string{`XDP_RING_SIZE "8 MB please"`, "a power of two"}},
		{`XDP_MODE fast`, []string{`XDP_MODE "fast"`, "auto, native or generic"}},
		{`XDP_ACTION reject`, []string{`XDP_ACTION "reject"`, "pass or drop"}},
		{`EVENT_THROTTLE_MODE smart`, []string{`EVENT_THROTTLE_MODE "smart"`, "summarize, legacy or off"}},
		{`XDP_PIN_DIR bpf/xtrail`, []string{`XDP_PIN_DIR "bpf/xtrail"`, "an absolute path"}},
		{`TRAILS_FILE ` + dir + `/missing.csv`, []string{`TRAILS_FILE "` + dir + `/missing.csv"`, "no such file"}},
		{`TRAILS_FILE ` + dir, []string{`TRAILS_FILE "` + dir + `"`, "not a directory"}},
		{`TRAILS_FILE ''`, []string{`TRAILS_FILE ""`, "a trails.csv"}},
		{`LOG_DIR ''`, []string{`LOG_DIR ""`, "a directory"}},
		{`LOG_DIR ` + dir + `/plain`, []string{`LOG_DIR "` + dir + `/plain"`, "not a directory"}},
		{`LOG_SERVER 192.168.2.107`, []string{`LOG_SERVER "192.168.2.107"`, "host:port"}},
		{`SYSLOG_SERVER 127.0.0.1:514, 192.168.2.107`, []string{`SYSLOG_SERVER "192.168.2.107" must be host:port`}},
		{`SYSLOG_SERVER ,;`, []string{`SYSLOG_SERVER ",;"`, "no endpoint"}},
		{`LOGSTASH_SERVER logstash.example`, []string{`LOGSTASH_SERVER "logstash.example"`, "host:port"}},
		{`REMOTE_SEVERITY_REGEX (?P<high>malware(?! site))`, []string{`REMOTE_SEVERITY_REGEX "(?P<high>malware(?! site))"`, "no look-around"}},
		{`REMOTE_SEVERITY_REGEX malware|scanner`, []string{`REMOTE_SEVERITY_REGEX "malware|scanner"`, "(?P<high>…)"}},
		{`USER_WHITELIST ` + dir + `/none.txt`, []string{`USER_WHITELIST "` + dir + `/none.txt"`, "no such file"}},
		{`USER_IGNORELIST ` + dir + `/ignore.txt`, []string{`USER_IGNORELIST "` + dir + `/ignore.txt"`, "want src_ip;src_port;dst_ip;dst_port"}},
		{`D4_SERVER 127.0.0.1:4443` + "\nD4_UUID nope\nD4_KEY k", []string{`D4_UUID: d4: invalid uuid "nope"`, "8-4-4-4-12"}},
		{`D4_SERVER 127.0.0.1:4443` + "\nD4_UUID 6ba7b810-9dad-11d1-80b4-00c04fd430c8\nD4_KEY k", []string{"not version 4"}},
		{`D4_SERVER 127.0.0.1` + "\nD4_UUID 1d940331-9fc9-4381-8fc9-3b624db66025\nD4_KEY k", []string{`D4_SERVER "127.0.0.1"`, "host:port"}},
		{d4 + "D4_KEY ''\nD4_KEY_FILE " + dir + "/nokey", []string{`D4_KEY_FILE "` + dir + `/nokey"`, "no such file"}},
		{d4 + "D4_KEY ''", []string{"D4_SERVER needs D4_KEY or D4_KEY_FILE"}},
		{d4 + "D4_CA " + dir + "/noca.crt", []string{`D4_CA "` + dir + `/noca.crt"`, "no such file"}},
		{`XDP_ACTON drop`, []string{"unknown key XDP_ACTON", "XDP_ACTION"}},
		{`D4_SEVER 127.0.0.1:4443`, []string{"unknown key D4_SEVER"}},
		{`METRICS_ADDRESS 9337`, []string{`METRICS_ADDRESS "9337"`, "host:port, [v6]:port or :port"}},
		{`METRICS_ADDRESS 127.0.0.1:70000`, []string{`METRICS_ADDRESS "127.0.0.1:70000"`, "port 0 to 65535"}},
		{`METRICS_ADDRESS localhost:http`, []string{`METRICS_ADDRESS "localhost:http"`, "port 0 to 65535"}},
		{`METRICS_ADRESS 127.0.0.1:9337`, []string{"unknown key METRICS_ADRESS", "METRICS_ADDRESS"}},
	}
	for _, c := range cases {
		text := base + c.conf + "\n"
		line := 0
		st, err := configure(readConf(t, dir, text), Flags{Pcaps: []string{"x.pcap"}}, quiet, testHost(t))
		if err == nil {
			st.Sinks.Close()
			t.Errorf("%q accepted", c.conf)
			continue
		}
		for _, s := range c.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%q: error %q does not say %q", c.conf, err, s)
			}
		}
		// an error about a value says where it was set
		if strings.Contains(c.says[0], `"`) {
			key := strings.FieldsFunc(c.says[0], func(r rune) bool { return r == ' ' || r == ':' })[0]
			for i, l := range strings.Split(text, "\n") {
				if strings.HasPrefix(l, key+" ") {
					line = i + 1
				}
			}
			if where := fmt.Sprintf("maltrail.conf:%d: ", line); !strings.Contains(err.Error(), where) {
				t.Errorf("%q: error %q does not say where (%s)", c.conf, err, where)
			}
		}
	}
	// a flag's value is checked as the key's it shadows
	for _, f := range []Flags{{XDPMode: "fast"}, {XDPAction: "reject"}} {
		f.Pcaps = []string{"x.pcap"}
		if _, err := configure(readConf(t, dir, base), f, quiet, testHost(t)); err == nil || !strings.Contains(err.Error(), "--xdp-") {
			t.Errorf("flags %+v: %v", f, err)
		}
	}
	// no interface to monitor
	if _, err := configure(readConf(t, dir, base), Flags{}, quiet, testHost(t)); err == nil || !strings.Contains(err.Error(), "MONITOR_INTERFACE") {
		t.Errorf("no interface: %v", err)
	}
}

// TestConfigureNoOutput: when the only output would be standard output and
// that is /dev/null or closed, the sensor does not start.
func TestConfigureNoOutput(t *testing.T) {
	dir := t.TempDir()
	if err := writeFile(dir+"/trails.csv", "1.2.3.4,x,(static)\n"); err != nil {
		t.Fatal(err)
	}
	base := "TRAILS_FILE " + dir + "/trails.csv\nDISABLE_LOCAL_LOG_STORAGE true\n"
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	closed, err := os.Create(dir + "/closed")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	for _, c := range []struct {
		name   string
		conf   string
		flags  Flags
		stdout *os.File
		ok     bool
	}{
		{"console to /dev/null", base, Flags{}, devNull, false},
		{"--console to /dev/null", base, Flags{Console: true}, devNull, false},
		{"console closed", base, Flags{}, closed, false},
		{"console to a file", base, Flags{}, testHost(t).stdout, true},
		{"logstash, console to /dev/null", base + "LOGSTASH_SERVER 127.0.0.1:5044\n", Flags{Console: true}, devNull, true},
		{"local storage, console to /dev/null", "TRAILS_FILE " + dir + "/trails.csv\nLOG_DIR " + dir + "/log\n", Flags{Console: true}, devNull, true},
	} {
		c.flags.Pcaps = []string{"x.pcap"}
		st, err := configure(readConf(t, dir, c.conf), c.flags, quiet, process{stdout: c.stdout, hostname: os.Hostname})
		if err == nil {
			st.Sinks.Close()
		}
		if c.ok != (err == nil) {
			t.Errorf("%s: error %v", c.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "no output") {
			t.Errorf("%s: error %q does not say there is no output", c.name, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"4096": 4096, "8M": 8 << 20, "8 MiB": 8 << 20, "8mb": 8 << 20, "64k": 64 << 10, "1GiB": 1 << 30, "0": 0} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1", "+4096", "1.5M", "8T", "4096B", "99999999999"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

// TestOwnKeysDocumented: each of xtrail's own keys has a row of its own
// on the configuration reference page.
func TestOwnKeysDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range append(ownKeys, KeyD4NoVerify) {
		found := false
		for _, l := range strings.Split(string(b), "\n") {
			cells := strings.Split(l, "|")
			found = found || len(cells) > 2 && cells[0] == "" && strings.Contains(cells[1], "`"+key+"`")
		}
		if !found {
			t.Errorf("key %s has no row in docs/configuration.md", key)
		}
	}
}
