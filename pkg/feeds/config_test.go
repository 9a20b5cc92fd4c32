package feeds

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

func TestConfigured(t *testing.T) {
	conf := "UPDATE_SERVER 192.0.2.10\nCUSTOM_TRAILS_URL https://example.org/custom.txt\n" +
		"USER_WHITELIST_URL https://example.org/whitelist.txt\n" +
		"TRAILS_FEEDS blocklist=https://example.org/a.txt, abuse=http://example.net/b.txt\n"
	cfg, err := maltrail.ParseConfig(strings.NewReader(conf), "test.conf", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	got, err := Configured(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []Feed{
		{Name: "trails.csv", URL: "http://192.0.2.10:8338/trails"},
		{Name: "custom_trails.txt", URL: "https://example.org/custom.txt"},
		{Name: "whitelist.txt", URL: "https://example.org/whitelist.txt"},
		{Name: "blocklist", URL: "https://example.org/a.txt"},
		{Name: "abuse", URL: "http://example.net/b.txt"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("feeds %+v\nwant  %+v", got, want)
	}
	for _, c := range []struct{ conf, url string }{
		{"UPDATE_SERVER srv.example:9000\n", "http://srv.example:9000/trails"},
		{"UPDATE_SERVER https://srv.example/trails\n", "https://srv.example/trails"},
	} {
		cfg, _ := maltrail.ParseConfig(strings.NewReader(c.conf), "t.conf", func(string) (string, bool) { return "", false })
		if got, err := Configured(cfg); err != nil || len(got) != 1 || got[0].URL != c.url {
			t.Errorf("%q: %+v, %v; want %s", c.conf, got, err, c.url)
		}
	}
	cfg, _ = maltrail.ParseConfig(strings.NewReader("TRAILS_FEEDS just-a-name\n"), "t.conf", func(string) (string, bool) { return "", false })
	if _, err := Configured(cfg); err == nil {
		t.Error("a TRAILS_FEEDS entry without a URL was accepted")
	}
}

// TestFromConfig: `trails update -c` takes its feeds from TRAILS_FEEDS, keeps
// them in TRAILS_FEED_DIR and judges staleness by UPDATE_PERIOD; the file
// is a real maltrail.conf and the feeds are fetched from a local server.
func TestFromConfig(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# feed %s\n198.51.100.%d\n", r.URL.Path, len(r.URL.Path))
	}))
	defer srv.Close()
	dir := t.TempDir()
	feedDir := filepath.Join(dir, "feeds")
	conf := filepath.Join(dir, "maltrail.conf")
	text := "TRAILS_FEEDS alpha.txt=" + srv.URL + "/a, beta=" + srv.URL + "/bb\nTRAILS_FEED_DIR " + feedDir + "\nUPDATE_PERIOD 3600\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	cfg, err := maltrail.ParseConfig(fh, conf, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	set, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if set.Dir != feedDir || set.Period != time.Hour || len(set.Feeds) != 2 {
		t.Fatalf("settings %+v", set)
	}
	res, err := Update(context.Background(), set.Feeds, Options{Dir: set.Dir, Period: set.Period})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range map[string]string{"alpha.txt": "# feed /a\n198.51.100.2\n", "beta": "# feed /bb\n198.51.100.3\n"} {
		b, err := os.ReadFile(filepath.Join(feedDir, i))
		if err != nil || string(b) != want {
			t.Errorf("%s in TRAILS_FEED_DIR: %q, %v (results %+v)", i, b, err, res)
		}
	}

	empty, err := FromConfig(parse(t, ""))
	if err != nil || empty.Dir != DefaultDir || empty.Period != DefaultPeriod || len(empty.Feeds) != 0 {
		t.Errorf("defaults %+v, %v", empty, err)
	}
	for _, c := range []struct{ conf, says string }{
		{"TRAILS_FEED_DIR ''", `TRAILS_FEED_DIR ""`},
		{"UPDATE_PERIOD 0", `UPDATE_PERIOD "0"`},
		{"UPDATE_PERIOD daily", `UPDATE_PERIOD "daily"`},
		{"TRAILS_FEEDS ../passwd=https://x.example/a", `TRAILS_FEEDS "../passwd=https://x.example/a"`},
		{"TRAILS_FEEDS a=ftp://x.example/a", `TRAILS_FEEDS "a=ftp://x.example/a"`},
		{"TRAILS_FEEDS a=https://user:pw@x.example/a?key=SECRET b", `TRAILS_FEEDS "b="`},
		{"TRAILS_FEEDS a=/local/file", `TRAILS_FEEDS "a=/local/file"`},
	} {
		_, err := FromConfig(parse(t, c.conf+"\n"))
		if err == nil || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "t.conf:1: ") || !strings.Contains(err.Error(), "want") {
			t.Errorf("%q: error %v, want it to say %s, where and what is allowed", c.conf, err, c.says)
		}
	}
	_, err = FromConfig(parse(t, "TRAILS_FEEDS a=https://user:pw@x.example/a?key=SECRET,bad\n"))
	if err == nil || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "pw") {
		t.Errorf("the error shows a feed's secret: %v", err)
	}
}

func parse(t *testing.T, text string) *maltrail.Config {
	t.Helper()
	cfg, err := maltrail.ParseConfig(strings.NewReader(text), "t.conf", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
