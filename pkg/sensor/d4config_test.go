package sensor

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/certs"
	"github.com/xtrail/xtrail/pkg/maltrail"
)

// The D4 keys: several servers, the transport, the spool, keep-alive and
// the server's authentication (CA, pinned fingerprint, explicit opt-out).
func TestConfigureD4(t *testing.T) {
	dir := t.TempDir()
	if err := certs.Generate(filepath.Join(dir, "pki"), []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "pki", certs.CAFile)
	base := "DISABLE_LOCAL_LOG_STORAGE true\nD4_UUID 1d940331-9fc9-4381-8fc9-3b624db66025\nD4_KEY k\n"
	conf := func(extra string) *maltrail.Config {
		cfg, err := maltrail.ParseConfig(strings.NewReader(base+extra), "test.conf", func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	n := 0
	spool := func() string { n++; return "\nD4_SPOOL_DIR " + filepath.Join(dir, "spool", strings.Repeat("s", n)) }
	for _, c := range []struct {
		name, conf string
		ok         bool
	}{
		{"two servers over quic with a CA", "D4_SERVER a.example:4443 127.0.0.1:4443\nD4_TRANSPORT quic\nD4_CA " + ca + spool(), true},
		{"comma-separated, pinned", "D4_SERVER a.example:4443,b.example:4443\nD4_SERVER_SHA256 " + strings.Repeat("ab:", 31) + "ab" + spool(), true},
		{"explicit opt-out", "D4_SERVER a.example:4443\nDISABLE_D4_TLS_VERIFY true\nD4_SPOOL_MAX 1048576\nD4_KEEPALIVE 2" + spool(), true},
		{"system CAs by default", "D4_SERVER a.example:4443\nD4_REPLAY_TIMEOUT 5" + spool(), true},
		{"entry without a port", "D4_SERVER a.example:4443 b.example" + spool(), false},
		{"unknown transport", "D4_SERVER a.example:4443\nD4_TRANSPORT sctp" + spool(), false},
		{"bad fingerprint", "D4_SERVER a.example:4443\nD4_SERVER_SHA256 abcd" + spool(), false},
		{"tiny spool", "D4_SERVER a.example:4443\nD4_SPOOL_MAX 100" + spool(), false},
		{"zero keep-alive", "D4_SERVER a.example:4443\nD4_KEEPALIVE 0" + spool(), false},
		{"bad replay timeout", "D4_SERVER a.example:4443\nD4_REPLAY_TIMEOUT -1" + spool(), false},
		{"missing CA file", "D4_SERVER a.example:4443\nD4_CA " + filepath.Join(dir, "nope.crt") + spool(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := Configure(conf(c.conf), Flags{Pcaps: []string{"x.pcap"}}, nil)
			if !c.ok {
				if err == nil {
					st.Sinks.Close()
					t.Fatal("configuration accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer st.Sinks.Close()
			if st.Options.D4 == nil || st.Sinks.Name() != "multi(d4)" {
				t.Fatalf("no D4 sink: %s", st.Sinks.Name())
			}
			if _, err := os.Stat(st.Options.D4.SpoolDir()); err != nil {
				t.Fatalf("spool dir: %v", err)
			}
		})
	}
}

func TestD4TLS(t *testing.T) {
	discard := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	if err := certs.Generate(dir, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	parse := func(text string) *maltrail.Config {
		cfg, err := maltrail.ParseConfig(strings.NewReader(text), "test.conf", func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	// default: verified against the system roots, each entry's own name
	tc, err := d4TLS(parse(""), discard)
	if err != nil || tc.InsecureSkipVerify || tc.RootCAs != nil || tc.ServerName != "" || tc.VerifyConnection != nil {
		t.Fatalf("default %+v %v", tc, err)
	}
	// a pin alone authenticates the server without a CA chain
	tc, err = d4TLS(parse("D4_SERVER_SHA256 "+strings.Repeat("0", 64)), discard)
	if err != nil || !tc.InsecureSkipVerify || tc.VerifyConnection == nil {
		t.Fatalf("pin %+v %v", tc, err)
	}
	// CA and pin: both; the opt-out cannot weaken them
	tc, err = d4TLS(parse("D4_CA "+filepath.Join(dir, certs.CAFile)+"\nD4_SERVER_SHA256 "+strings.Repeat("0", 64)+
		"\nDISABLE_D4_TLS_VERIFY true\nD4_SERVER_NAME d4.example"), discard)
	if err != nil || tc.InsecureSkipVerify || tc.RootCAs == nil || tc.VerifyConnection == nil || tc.ServerName != "d4.example" {
		t.Fatalf("CA and pin %+v %v", tc, err)
	}
	tc, err = d4TLS(parse("DISABLE_D4_TLS_VERIFY true"), discard)
	if err != nil || !tc.InsecureSkipVerify {
		t.Fatalf("opt-out %+v %v", tc, err)
	}
}
