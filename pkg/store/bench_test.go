package store

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/trails"
)

// childEnv makes the test binary a bare "sensor start": open the store
// named by it, look a few keys up, print its own memory and exit. It
// measures what a fresh process pays, which a benchmark inside a test
// binary that has just compiled 1.6M rows cannot.
const childEnv = "XTRAIL_STORE_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(child(path))
	}
	code := m.Run()
	if compiled.dir != "" {
		os.RemoveAll(compiled.dir)
	}
	os.Exit(code)
}

func child(path string) int {
	start := time.Now()
	s, err := OpenWith(path, OpenOptions{Verify: os.Getenv(childEnv+"_NOVERIFY") == ""})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opened := time.Since(start)
	hits := 0
	for _, k := range []string{"alspearowa.com", "ammankeyan.com", "junocis.com/work/fix.php", "not-a-trail.example.org"} {
		if _, ok := s.LookupNameString(k); ok {
			hits++
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := procStatus()
	fmt.Printf("open_ns %d heap_alloc %d sys %d rss_kb %d hwm_kb %d rss_file_kb %d hits %d\n",
		opened.Nanoseconds(), ms.HeapAlloc, ms.Sys, st["VmRSS"], st["VmHWM"], st["RssFile"], hits)
	return 0
}

// procStatus reads the kB figures of /proc/self/status.
func procStatus() map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 2 && fields[1] == "kB" {
			n, _ := strconv.ParseInt(fields[0], 10, 64)
			out[k] = n
		}
	}
	return out
}

// compiled is the real trails file compiled once per test binary.
var compiled struct {
	once  sync.Once
	dir   string
	path  string
	stats Stats
	err   error
	dur   time.Duration
}

func staticStore(b *testing.B) (string, Stats) {
	b.Helper()
	csv := testenv.StaticTrails(b)
	compiled.once.Do(func() {
		compiled.dir, compiled.err = os.MkdirTemp("", "xtrail-store-bench-")
		if compiled.err != nil {
			return
		}
		start := time.Now()
		in, err := FromCSV(bytes.NewReader(csv), "trails-static.csv", trails.DefaultWhitelist())
		if err != nil {
			compiled.err = err
			return
		}
		compiled.path = filepath.Join(compiled.dir, "trails.xts")
		compiled.stats, compiled.err = Compile(compiled.path, in)
		compiled.dur = time.Since(start)
	})
	if compiled.err != nil {
		b.Fatal(compiled.err)
	}
	return compiled.path, compiled.stats
}

// BenchmarkCompileStatic compiles trails-static.csv.gz from the file:
// gunzip, parse, classify, build, write, fsync, rename.
func BenchmarkCompileStatic(b *testing.B) {
	testenv.StaticTrails(b) // skip when absent
	src := testenv.StaticTrailsPath(b)
	dst := filepath.Join(b.TempDir(), "trails.xts")
	var st Stats
	for b.Loop() {
		rc, err := trails.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		in, err := FromCSV(rc, src, trails.DefaultWhitelist())
		rc.Close()
		if err != nil {
			b.Fatal(err)
		}
		if st, err = Compile(dst, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.FileSize)/1e6, "file_MB")
	b.ReportMetric(float64(st.Names), "names")
	b.ReportMetric(float64(st.MaxProbe), "max_probe")
}

func BenchmarkOpenStatic(b *testing.B) {
	for _, verify := range []bool{true, false} {
		b.Run(fmt.Sprintf("verify=%v", verify), func(b *testing.B) {
			path, st := staticStore(b)
			b.SetBytes(st.FileSize)
			for b.Loop() {
				s, err := OpenWith(path, OpenOptions{Verify: verify})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}

// lookupKeys returns up to n keys of s (copied) and n names that are not
// in it.
func lookupKeys(b *testing.B, s *Store, n int) (hits, misses [][]byte) {
	b.Helper()
	all := make([][]byte, 0, s.Stats().Names)
	for k := range s.Keys() {
		all = append(all, k)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range n {
		hits = append(hits, bytes.Clone(all[rng.IntN(len(all))]))
	}
	for len(misses) < n {
		k := fmt.Appendf(nil, "x%x.miss-%d.example.net", rng.Uint64(), len(misses))
		if _, ok := s.LookupName(k); !ok {
			misses = append(misses, k)
		}
	}
	return hits, misses
}

func BenchmarkLookupName(b *testing.B) {
	path, _ := staticStore(b)
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	hits, misses := lookupKeys(b, s, 1<<16)
	for _, c := range []struct {
		name string
		keys [][]byte
		want bool
	}{{"hit", hits, true}, {"miss", misses, false}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := s.LookupName(c.keys[i&(1<<16-1)]); ok != c.want {
					b.Fatalf("%q: ok %v", c.keys[i&(1<<16-1)], ok)
				}
				i++
			}
		})
	}
}

// BenchmarkOpenMemory reports what an open store costs this process:
// Go heap, resident mapping, and both after 1M lookups have faulted in
// the pages they touch. The RSS figures are deltas in a test binary that
// has compiled the file; BenchmarkOpenFreshProcess measures a clean one.
func BenchmarkOpenMemory(b *testing.B) {
	path, st := staticStore(b)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ps0 := procStatus()
		s, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		ps1 := procStatus()
		hits, misses := lookupKeys(b, s, 1<<19)
		// Collecting the keys walked the whole table: drop the mapping's
		// pages from this process again so that only the lookups count.
		if err := unix.Madvise(s.data, unix.MADV_DONTNEED); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		ps2 := procStatus()
		for i := range hits {
			s.LookupName(hits[i])
			s.LookupName(misses[i])
		}
		ps3 := procStatus()
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)), "heap_B")
		b.ReportMetric(float64(st.FileSize)/1e6, "file_MB")
		b.ReportMetric(float64(ps1["RssFile"]-ps0["RssFile"])/1024, "rss_file_open_MiB")
		// 512k random hits and 512k misses touch most pages of the
		// table: near the bound for a long-running sensor under varied
		// traffic. These are page-cache pages, shared and reclaimable.
		b.ReportMetric(float64(ps3["RssFile"]-ps2["RssFile"])/1024, "rss_file_1M_lookups_MiB")
		s.Close()
	}
}

// BenchmarkOpenFreshProcess starts a process that only opens the store
// and looks four keys up (three trails, one miss): its wall time to Open, heap, and peak RSS.
func BenchmarkOpenFreshProcess(b *testing.B) {
	path, _ := staticStore(b)
	for _, verify := range []bool{true, false} {
		b.Run(fmt.Sprintf("verify=%v", verify), func(b *testing.B) {
			var line string
			for b.Loop() {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), childEnv+"="+path)
				if !verify {
					cmd.Env = append(cmd.Env, childEnv+"_NOVERIFY=1")
				}
				out, err := cmd.Output()
				if err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				line = string(out)
			}
			f := strings.Fields(line)
			for i := 0; i+1 < len(f); i += 2 {
				v, _ := strconv.ParseFloat(f[i+1], 64)
				switch f[i] {
				case "open_ns":
					b.ReportMetric(v/1e6, "open_ms")
				case "heap_alloc":
					b.ReportMetric(v/1024, "heap_KiB")
				case "hwm_kb":
					b.ReportMetric(v/1024, "peak_rss_MiB")
				case "rss_file_kb":
					b.ReportMetric(v/1024, "rss_file_MiB")
				case "hits":
					if v != 3 {
						b.Fatalf("child found %v of the 3 trails it looks up: %s", v, line)
					}
				}
			}
		})
	}
}

// BenchmarkLoadNamesStatic is the baseline the store replaces:
// trails.LoadNames on the same file, with its retained heap.
func BenchmarkLoadNamesStatic(b *testing.B) {
	csv := testenv.StaticTrails(b)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		n, err := trails.LoadNames(bytes.NewReader(csv), "trails-static.csv", trails.DefaultWhitelist())
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap_MiB")
		runtime.KeepAlive(n)
	}
}

// BenchmarkLookupNameBaseline runs the same keys through what the store
// replaces, trails.Names (a Go map of 1.35M keys), and through a small
// store that fits in cache, which separates the lookup's own cost from
// the memory latency of a 65 MB table.
func BenchmarkLookupNameBaseline(b *testing.B) {
	path, _ := staticStore(b)
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	hits, misses := lookupKeys(b, s, 1<<16)
	names, err := trails.LoadNames(bytes.NewReader(testenv.StaticTrails(b)), "trails-static.csv", trails.DefaultWhitelist())
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		keys [][]byte
	}{{"gomap-hit", hits}, {"gomap-miss", misses}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				names.Lookup(string(c.keys[i&(1<<16-1)]))
				i++
			}
		})
	}
	small := mustOpen(b, buildBytes(b, synthInput(rand.New(rand.NewPCG(1, 1)), 1000)))
	sh, sm := lookupKeys(b, small, 1<<10)
	for _, c := range []struct {
		name string
		keys [][]byte
	}{{"small-store-hit", sh}, {"small-store-miss", sm}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				small.LookupName(c.keys[i&(1<<10-1)])
				i++
			}
		})
	}
}
