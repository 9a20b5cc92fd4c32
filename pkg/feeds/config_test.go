package feeds

import (
	"reflect"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

func TestConfigured(t *testing.T) {
	conf := "UPDATE_SERVER 192.0.2.10\nCUSTOM_TRAILS_URL https://example.org/custom.txt\n" +
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
