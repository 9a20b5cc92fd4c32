package sensor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/maltrail"
)

// capture is an Emitter that keeps every line.
type capture struct {
	mu    sync.Mutex
	lines []string
	secs  []int64
	note  chan struct{}
}

func newCapture() *capture { return &capture{note: make(chan struct{}, 1024)} }

func (c *capture) Emit(sec int64, line []byte) error {
	c.mu.Lock()
	c.lines = append(c.lines, string(line))
	c.secs = append(c.secs, sec)
	c.mu.Unlock()
	select {
	case c.note <- struct{}{}:
	default:
	}
	return nil
}

func (c *capture) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

func replay(t *testing.T, trailsFile string, pcaps ...string) []string {
	t.Helper()
	testenv.RequireRoot(t)
	c := newCapture()
	err := Run(context.Background(), Options{
		Pcaps:      pcaps,
		TrailsFile: trailsFile,
		Renderer:   maltrail.Renderer{Sensor: "corpus", Loc: time.UTC},
		Out:        c,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.get()
}

// Lines derived by hand from spec §1.3 and §2 for each corpus case of the
// IP chain (pcap times are 2023-11-14 22:13:20 UTC onwards).
var corpusWant = map[string][]string{
	"clean_tcp":       nil,
	"ack_sweep_no_fp": nil,
	"truncated":       nil,
	"ip_trails": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50002 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)`,
		`"2023-11-14 22:13:21.000000" corpus 10.0.0.66 50003 6.6.6.6 8443 TCP IPORT 6.6.6.6:8443 "malware (test)" (static)`,
		// src side: "botnet c2" has no "malware", so it speaks
		`"2023-11-14 22:13:22.000000" corpus 198.51.100.66 31337 10.0.0.66 50004 TCP IP 198.51.100.66 "botnet c2 (test)" (static)`,
	},
	// five identical SYNs in one second collapse; the later seconds each speak
	"duplicate_syn": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50001 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)`,
		`"2023-11-14 22:13:30.000000" corpus 10.0.0.66 50001 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)`,
		`"2023-11-14 22:13:31.000000" corpus 10.0.0.66 50001 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)`,
		`"2023-11-14 22:13:32.000000" corpus 10.0.0.66 50001 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)`,
	},
	// the echo reply is not matched; ICMP has no ports
	"icmp": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 - 66.66.66.66 - ICMP IP 66.66.66.66 "malware (test)" (static)`,
	},
	// SYN to [dead::beef]:443 hits the IP:port trail first; the DNS query
	// (second packet) is the name matchers' part
	"ipv6": {
		`"2023-11-14 22:13:20.000000" corpus dead::1 50080 dead::beef 443 TCP IPORT [dead::beef]:443 "malware (test)" (static)`,
		`"2023-11-14 22:13:22.000000" corpus dead::1 - dead::beef - ICMPV6 IP dead::beef "malware (test)" (static)`,
	},
	"dlt_raw": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50500 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)`,
	},
}

type manifestCase struct {
	Name   string   `json:"name"`
	Pcap   string   `json:"pcap"`
	Expect []string `json:"expect"`
}

func TestCorpusIPChain(t *testing.T) {
	dir := filepath.Join(testenv.SharedDir(t), "corpus")
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest []manifestCase
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	byName := map[string]manifestCase{}
	for _, c := range manifest {
		byName[c.Name] = c
	}
	trails := filepath.Join(dir, "trails.csv")
	for name, want := range corpusWant {
		t.Run(name, func(t *testing.T) {
			mc, ok := byName[name]
			if !ok {
				t.Fatalf("case %s not in the manifest", name)
			}
			got := replay(t, trails, filepath.Join(dir, mc.Pcap))
			for i := range got {
				got[i] = strings.TrimSuffix(got[i], "\n")
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// and the manifest's own check: each expected substring in some line
			if len(mc.Expect) == 0 && len(got) != 0 {
				t.Errorf("manifest expects no event, got %d", len(got))
			}
			for _, e := range mc.Expect {
				if e == "evil-test-domain.com" {
					continue // DNS: the name matchers' part of the case
				}
				if !strings.Contains(strings.Join(got, "\n"), e) {
					t.Errorf("manifest expects %q in an event", e)
				}
			}
		})
	}
}

// TestCorpusVLAN: one 802.1Q tag is followed like Maltrail does; xtrail also
// follows QinQ, which Maltrail drops, so the third packet is one more event.
func TestCorpusVLAN(t *testing.T) {
	dir := filepath.Join(testenv.SharedDir(t), "corpus")
	got := replay(t, filepath.Join(dir, "trails.csv"), filepath.Join(dir, "vlan.pcap"))
	want := []string{
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50060 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)` + "\n",
		// QinQ (tags 100, 101): beyond Maltrail
		`"2023-11-14 22:13:22.000000" corpus 10.0.0.66 50062 66.66.66.66 443 TCP IP 66.66.66.66 "malware (test)" (static)` + "\n",
	}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("events:\n%swant:\n%s", strings.Join(got, ""), strings.Join(want, ""))
	}
}
