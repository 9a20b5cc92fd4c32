package deploytest

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
)

// repoRoot is the project's top directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var built struct {
	once sync.Once
	dir  string
	err  error
}

// xtrailBinary builds cmd/xtrail once per test binary.
func xtrailBinary(t testing.TB) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "xtrail-deploytest-")
		if built.err != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(built.dir, "xtrail"), filepath.Join(repoRoot(t), "cmd", "xtrail")).CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return filepath.Join(built.dir, "xtrail")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// layout is one installed root: what PREFIX, SYSCONFDIR and LOCALSTATEDIR
// name for scripts/install.sh and the provisioning scripts.
type layout struct {
	Root, Prefix, SysconfDir, LocalStateDir, RuntimeDir string
}

func newLayout(root string) layout {
	return layout{Root: root, Prefix: filepath.Join(root, "usr"), SysconfDir: filepath.Join(root, "etc"),
		LocalStateDir: filepath.Join(root, "var"), RuntimeDir: filepath.Join(root, "run")}
}

func (l layout) Env() []string {
	return []string{"PREFIX=" + l.Prefix, "SYSCONFDIR=" + l.SysconfDir, "LOCALSTATEDIR=" + l.LocalStateDir}
}

func (l layout) Etc(name string) string { return filepath.Join(l.SysconfDir, "xtrail", name) }
func (l layout) UnitPath(n string) string {
	return filepath.Join(l.Prefix, "lib", "systemd", "system", n)
}

func (l layout) Unit(t testing.TB, file, instance string) *Unit {
	t.Helper()
	u, err := ParseUnit(l.UnitPath(file), instance)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (l layout) Run() Run { return Run{LocalStateDir: l.LocalStateDir, RuntimeDir: l.RuntimeDir} }

// install runs `scripts/install.sh` into a fresh root below dir, with
// paths inside it (not DESTDIR: the installed units and configs then name
// files that exist, so they can run).
func install(t testing.TB, dir string) layout {
	t.Helper()
	l := newLayout(dir)
	cmd := exec.Command(filepath.Join(repoRoot(t), "scripts", "install.sh"), xtrailBinary(t))
	cmd.Env = append(os.Environ(), l.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/install.sh: %v\n%s", err, out)
	}
	return l
}

// proc is a started unit, stopped (SIGTERM, then SIGKILL) at cleanup.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	log    *lockedBuffer
	traced bool
	done   chan struct{}
	err    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs a unit as Command builds it.
func start(t testing.TB, u *Unit, r Run) *proc {
	t.Helper()
	cmd, err := u.Command(r)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: u.Name, cmd: cmd, log: &lockedBuffer{}, traced: r.Trace != "", done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", u.Name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s output:\n%s", p.name, p.log.String())
		}
	})
	return p
}

// pid is the unit's own process: strace's child when traced (nsenter and
// setpriv exec, so they leave no process of their own).
func (p *proc) pid() int {
	if !p.traced {
		return p.cmd.Process.Pid
	}
	for i := 0; i < 100; i++ {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.Atoi(f[0])
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

// stop ends the unit as systemd would (SIGTERM) and waits for it.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	if pid := p.pid(); pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		if pid := p.pid(); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-p.done
		return fmt.Errorf("%s did not stop within 15s of SIGTERM", p.name)
	}
	return p.err
}

// exited says whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// waitLog waits until the unit's output contains text; it fails the test
// when the unit exits first or the time runs out.
func (p *proc) waitLog(text string, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.log.String(), text) {
			return
		}
		if done, err := p.exited(); done {
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, err, text, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("%s did not log %q within %s:\n%s", p.name, text, d, p.log.String())
}

// capEff is a process's effective capability set, as /proc shows it.
func capEff(t testing.TB, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no CapEff in /proc/%d/status", pid)
	return 0
}

// capBits maps capability names to their bits (the few the units name).
var capBits = map[string]uint{"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}

// checkSandbox fails the test when the traced process made a system call
// that the unit's SystemCallFilter= would refuse, or opened a socket of a
// family RestrictAddressFamilies= leaves out.
func checkSandbox(t testing.TB, u *Unit, trace string) {
	t.Helper()
	calls, families, err := Traced(trace, u.Exec())
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) < 10 {
		t.Fatalf("%s: the trace %s holds %d distinct system calls: strace did not trace it?", u.Name, trace, len(calls))
	}
	f, err := u.SyscallFilter()
	if err != nil {
		t.Fatal(err)
	}
	if f == nil {
		t.Fatalf("%s has no SystemCallFilter=", u.Name)
	}
	for c, n := range calls {
		if !f.Allows(c) {
			t.Errorf("%s made %d %s call(s), which its SystemCallFilter= refuses", u.Name, n, c)
		}
	}
	allowed := strings.Fields(u.Value("Service.RestrictAddressFamilies"))
	if len(allowed) == 0 {
		t.Fatalf("%s has no RestrictAddressFamilies=", u.Name)
	}
	for fam, n := range families {
		if !slices.Contains(allowed, fam) {
			t.Errorf("%s opened %d %s socket(s), which its RestrictAddressFamilies= refuses", u.Name, n, fam)
		}
	}
	t.Logf("%s: %d distinct system calls and socket families %v, all within its sandbox", u.Name, len(calls), slices.Sorted(maps.Keys(families)))
}

// skipUnderRace skips a test that runs external programs in the race
// detector's run of make test (the plain run covers it).
func skipUnderRace(t testing.TB) {
	t.Helper()
	if raceEnabled {
		t.Skip("runs external programs; the run without -race covers it")
	}
}

// requireDeployTools: what the deployment tests run besides xtrail.
func requireDeployTools(t testing.TB) {
	t.Helper()
	skipUnderRace(t)
	testenv.RequireRoot(t)
	for _, b := range []string{"setpriv", "nsenter", "strace", "systemd-analyze", "ip", "tc", "bash", "ethtool"} {
		testenv.RequireBinary(t, b)
	}
}
