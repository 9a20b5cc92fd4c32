package sensor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestCorpusStore replays corpus cases with the corpus trails.csv
// compiled to a trail store (as xtrail trails compile does) and requires
// the same lines as with the CSV.
func TestCorpusStore(t *testing.T) {
	dir := filepath.Join(testenv.SharedDir(t), "corpus")
	csvPath := filepath.Join(dir, "trails.csv")
	f, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	in, err := store.FromCSV(f, csvPath, trails.DefaultWhitelist())
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	xts := filepath.Join(t.TempDir(), "trails"+storeExt)
	if _, err := store.Compile(xts, in); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dns_queries", "http_trails", "ip_trails", "ipv6"} {
		t.Run(name, func(t *testing.T) {
			pcap := filepath.Join(dir, name+".pcap")
			want := replay(t, csvPath, false, pcap)
			got := replay(t, xts, false, pcap)
			if strings.Join(got, "") != strings.Join(want, "") {
				t.Errorf("store events:\n%sCSV events:\n%s", strings.Join(got, ""), strings.Join(want, ""))
			}
			if len(got) != len(corpusWant[name]) {
				t.Errorf("%d events, want %d", len(got), len(corpusWant[name]))
			}
		})
	}
}
