// Package testenv decides whether a test that needs root, BPF, a server
// binary or the shared corpus may run. Outside CI such a test skips with the
// reason; in CI (CI=true) a missing prerequisite is a failure.
package testenv

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test outside CI and fails it in CI: for a
// prerequisite the machine lacks (a tool, a device, a file).
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and a prerequisite is missing: %s", reason)
		return
	}
	t.Skipf("skipped outside CI: %s", reason)
}

// RequireRoot skips (outside CI) or fails (in CI) when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root for BPF, XDP and network namespaces")
	}
}

// RequireBinary returns the path of a program the test needs, such as
// redis-server.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, name+" is not installed (scripts/deps.sh installs it)")
	}
	return p
}

// SharedDir returns the read-only shared folder (the replay corpus and the
// real trails file live there): $XTRAIL_SHARED when set, else ../shared
// next to the project.
func SharedDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("XTRAIL_SHARED"); d != "" {
		// an explicit setting wins, and a wrong one is not papered over
		if hasCorpus(d) {
			return d
		}
		SkipOrFail(t, "XTRAIL_SHARED="+d+" has no corpus folder")
		return ""
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		// internal/testenv/testenv.go -> project root -> ../shared
		dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared")
		if hasCorpus(dir) {
			return dir
		}
	}
	SkipOrFail(t, "../shared (corpus and trails data) is not next to the project; set XTRAIL_SHARED")
	return ""
}

func hasCorpus(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "corpus"))
	return err == nil && st.IsDir()
}

// PinDir names a fresh bpffs directory for a test's pinned BPF objects,
// removed with everything in it at cleanup.
func PinDir(t testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	dir := "/sys/fs/bpf/xtrail-test-" + hex.EncodeToString(b)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// StaticTrails returns ../shared/data/trails-static.csv.gz decompressed
// (the real 1.63M-row trails file), read once per test binary; a missing
// file skips the test (fails it in CI).
func StaticTrails(t testing.TB) []byte {
	t.Helper()
	path := StaticTrailsPath(t)
	if _, err := os.Stat(path); err != nil {
		SkipOrFail(t, path+" is missing: "+err.Error())
	}
	static.once.Do(func() { static.data, static.err = readGzip(path) })
	if static.err != nil {
		t.Fatal(static.err)
	}
	return static.data
}

// StaticTrailsPath is the path of the real trails file.
func StaticTrailsPath(t testing.TB) string {
	return filepath.Join(SharedDir(t), "data", "trails-static.csv.gz")
}

// MixCapture writes n packets of the benchmark traffic mix
// (../shared/bench/gen_mix_pcap.py, seed 1, the trail hits excluded) to a
// pcap in a temporary directory of t and returns its path.
func MixCapture(t testing.TB, n int) string {
	t.Helper()
	bench := filepath.Join(SharedDir(t), "bench")
	py := RequireBinary(t, "python3")
	out := filepath.Join(t.TempDir(), "mix.pcap")
	cmd := exec.Command(py, filepath.Join(bench, "gen_mix_pcap.py"), "--count", strconv.Itoa(n), "--seed", "1",
		"--exclude", filepath.Join(bench, "exclude_hits_seed1.txt"), "--out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen_mix_pcap.py: %v: %s", err, msg)
	}
	return out
}

// static caches StaticTrails: ~110 MB that a test binary's tests and
// benchmarks share rather than decompress each.
var static struct {
	once sync.Once
	data []byte
	err  error
}

func readGzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return io.ReadAll(zr)
}

// SyncBuffer is a buffer that a process or logger writes while the test
// reads it: a log destination for several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
