package sensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/maltrail"
	"github.com/xtrail/xtrail/pkg/pcap"
	"github.com/xtrail/xtrail/pkg/throttle"
	"github.com/xtrail/xtrail/pkg/trails"
)

// corpusRecords runs a corpus capture through the XDP program (replay
// mode, the corpus trails loaded) and returns the ring records it made,
// copied, in ring order, with what an agent needs to handle them.
func corpusRecords(t *testing.T, trailsFile string, pcapFiles ...string) ([][]byte, AgentConfig, *trailSet) {
	t.Helper()
	testenv.RequireRoot(t)
	log := slog.New(slog.DiscardHandler)
	wl := trails.DefaultWhitelist()
	dp, ts, err := loadPlane(dataplane.Options{Replay: true, Scan: dataplane.Scan{Port: true, UDP: true, Infection: true, Window: 30 * time.Second}, Logger: log},
		trailsFile, wl, "", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close(); ts.close(log) })
	rd, err := dp.NewRingReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var recs [][]byte
	var rec ringbuf.Record
	frame := make([]byte, 0, 4096)
	for _, p := range pcapFiles {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		pr, err := pcap.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		for {
			pkt, err := pr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if frame, err = pcap.ToEthernet(frame[:0], pkt.LinkType, pkt.Data); err != nil || len(frame) < 14 {
				continue
			}
			if err := dp.SetClock(pkt.Time); err != nil {
				t.Fatal(err)
			}
			if _, err := dp.Run(frame[:min(len(frame), dataplane.ReplayFrameMax)]); err != nil {
				t.Fatal(err)
			}
		}
	}
	rd.SetDeadline(time.Now())
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
		recs = append(recs, bytes.Clone(rec.RawSample))
	}
	hc := heuristics.Config{Use: true, CheckMissingHost: true, ScanWindow: 30}
	hc.LocalPrefix = (&localPrefix{dp: dp}).at
	c := AgentConfig{Meta: dp.Trails(), Rules: NameRules{Names: ts.names, Whitelist: wl, CheckHostDomains: true, CheckSNI: true},
		Render: &maltrail.Renderer{Sensor: "corpus", Loc: time.UTC}, Throttle: throttle.Summarize, Heuristics: hc, Logger: log}
	return recs, c, ts
}

// handleSpread runs recs through n agents as the live loop does (one
// agent: directly; more: through the fanout) and returns the event
// lines, sorted: agents write side by side, so only their order among
// agents may differ.
func handleSpread(recs [][]byte, c AgentConfig, ts *trailSet, n int) []string {
	out := newCapture()
	c.Out = out
	agents := agentSet(newAgents(c, n))
	agents.SetAnswers(0, true, ts.answers)
	if n == 1 {
		for _, r := range recs {
			agents[0].Handle(r)
		}
	} else {
		f := newFanout(agents)
		for i, r := range recs {
			f.Handle(r)
			if i%7 == 0 {
				f.Flush() // as the live loop does when the ring runs empty
			}
		}
		f.Close()
	}
	agents.Flush()
	lines := out.get()
	slices.Sort(lines)
	return lines
}

// TestFanoutCorpus: every corpus case gives the same events with 2, 3
// and 8 agents as with one, and the ones the corpus expects; so do all
// the cases replayed as one capture, which brings many sources. The records
// of a source stay with one agent, so condensing and the throttle, keyed
// by source, see what one agent sees; the DNS heuristics' shared tables
// count every agent's queries.
func TestFanoutCorpus(t *testing.T) {
	dir := filepath.Join(testenv.SharedDir(t), "corpus")
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest []manifestCase
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, mc := range manifest {
		all = append(all, filepath.Join(dir, mc.Pcap))
		t.Run(mc.Name, func(t *testing.T) {
			recs, c, ts := corpusRecords(t, filepath.Join(dir, "trails.csv"), filepath.Join(dir, mc.Pcap))
			c.Rules.CheckSNI = mc.Name == "tls_sni" // the corpus harness's prefilter
			one := handleSpread(recs, c, ts, 1)
			if want, ok := corpusWant[mc.Name]; ok {
				w := slices.Clone(want)
				for i := range w {
					w[i] += "\n"
				}
				slices.Sort(w)
				if !slices.Equal(one, w) {
					t.Fatalf("one agent:\n%swant:\n%s", strings.Join(one, ""), strings.Join(w, ""))
				}
			}
			for _, n := range []int{2, 3, 8} {
				if got := handleSpread(recs, c, ts, n); !slices.Equal(got, one) {
					t.Errorf("%d agents:\n%sone agent:\n%s", n, strings.Join(got, ""), strings.Join(one, ""))
				}
			}
		})
	}
	t.Run("all", func(t *testing.T) {
		recs, c, ts := corpusRecords(t, filepath.Join(dir, "trails.csv"), all...)
		if n := sources(recs); n < 5 {
			t.Fatalf("records from %d sources: too few to spread", n)
		}
		one := handleSpread(recs, c, ts, 1)
		if len(one) < 20 {
			t.Fatalf("%d events from every corpus case", len(one))
		}
		for _, n := range []int{2, 3, 8} {
			if got := handleSpread(recs, c, ts, n); !slices.Equal(got, one) {
				t.Errorf("%d agents:\n%sone agent:\n%s", n, strings.Join(got, ""), strings.Join(one, ""))
			}
		}
		t.Logf("%d records from %d sources, %d events", len(recs), sources(recs), len(one))
	})
}

// sources counts the distinct source addresses of records.
func sources(recs [][]byte) int {
	seen := map[netip.Addr]bool{}
	var r dataplane.Record
	for _, raw := range recs {
		if r.Decode(raw) == nil {
			seen[r.SrcAddr()] = true
		}
	}
	return len(seen)
}

// TestFanoutSharesDNSTables: DNS exhaustion counts the subdomains of a
// base over every agent. 1001 clients, spread over the agents by source,
// each ask one subdomain of one base: the 1001st query passes the
// threshold whatever agent it lands on, as with one agent.
func TestFanoutSharesDNSTables(t *testing.T) {
	for _, n := range []int{1, 2, 4} {
		out := newCapture()
		agents := agentSet(newAgents(AgentConfig{Meta: fakeMeta{}, Rules: NameRules{Whitelist: trails.DefaultWhitelist()},
			Render: &maltrail.Renderer{Sensor: "t", Loc: time.UTC}, Out: out, Throttle: throttle.Off,
			Heuristics: heuristics.Config{Use: true}, Logger: slog.New(slog.DiscardHandler)}, n))
		f := newFanout(agents)
		at := time.Unix(1700000000, 0)
		for i := range 1002 {
			src := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
			f.Handle(rec(dataplane.KindDNS, 0, 0, 17, src, benchDst, uint16(20000+i), 53, 0, at, dnsQuery(
				"s"+strconv.Itoa(i)+".exhausted-base.com")))
		}
		f.Close()
		agents.Flush()
		if got := out.count("potential dns exhaustion"); got != 1 {
			t.Errorf("%d agents: %d exhaustion events, want 1: %q", n, got, out.get())
		}
	}
}
