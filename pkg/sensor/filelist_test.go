package sensor

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestUserWhitelistFiles: USER_WHITELIST takes several files (a list or an
// array), each in Maltrail's whitelist.txt format.
func TestUserWhitelistFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "mine.txt"), filepath.Join(dir, "whitelist.txt")
	if err := os.WriteFile(a, []byte("# mine\nintranet.example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("203.0.113.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, conf := range []string{
		"USER_WHITELIST " + a + ", " + b + "\n",
		"USER_WHITELIST\n    " + a + "\n    " + b + "\n",
	} {
		st, err := Configure(parseConf(t, "LOG_DIR "+dir+"\nTRAILS_FILE "+a+"\n"+conf), Flags{Pcaps: []string{"x.pcap"}}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		st.Sinks.Close()
		wl := st.Options.Rules.Whitelist
		if !wl.IsWhitelistedDomain([]byte("www.intranet.example.org")) || !wl.IsWhitelistedIP(netip.MustParseAddr("203.0.113.9")) {
			t.Errorf("%q: both files not loaded", conf)
		}
	}
	if _, err := Configure(parseConf(t, "LOG_DIR "+dir+"\nUSER_WHITELIST "+a+","+filepath.Join(dir, "missing.txt")+"\n"),
		Flags{Pcaps: []string{"x.pcap"}}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a missing whitelist file did not stop the start")
	}
}
