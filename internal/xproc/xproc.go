// Package xproc runs the built xtrail binary as a test's subprocess: its
// output goes to a file, it can be signalled, killed or stopped, and its
// log lines (a listening address, an exit summary's counters) are read
// back. The fault tests of internal/faults and internal/d4fault share it.
package xproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build builds cmd/xtrail into dir and returns the binary's path. It uses
// the toolchain running the test (go test sets GOROOT to it).
func Build(dir string) (string, error) {
	goBin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		goBin = filepath.Join(root, "bin", "go")
	}
	bin := filepath.Join(dir, "xtrail")
	if out, err := exec.Command(goBin, "build", "-o", bin, "github.com/xtrail/xtrail/cmd/xtrail").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building xtrail: %w\n%s", err, out)
	}
	return bin, nil
}

// Proc is a running subprocess. At the test's cleanup a process still
// running is continued (a paused one cannot die) and stopped, killed if it
// does not stop within 5 s; a failed test logs its output's tail.
type Proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Start starts bin with args; name names it in messages.
func Start(t testing.TB, name, bin string, args ...string) *Proc {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	p := &Proc{t: t, name: name, cmd: cmd, log: f.Name(), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Signal(syscall.SIGTERM) // its exit summary helps a failure's reader
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("--- %s log (%s)\n%s", name, p.log, Tail(p.Output(), 60))
		}
	})
	return p
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogFile is the file holding the process's output.
func (p *Proc) LogFile() string { return p.log }

// Output is what the process wrote so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// WaitFor waits until the process wrote s.
func (p *Proc) WaitFor(s string, within time.Duration) {
	p.t.Helper()
	p.WaitMatch(regexp.MustCompile(regexp.QuoteMeta(s)), within)
}

// WaitMatch waits until the output matches re and returns the match's
// first group ("" without one).
func (p *Proc) WaitMatch(re *regexp.Regexp, within time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return ""
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, re, Tail(p.Output(), 40))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not log %q within %v:\n%s", p.name, re, within, Tail(p.Output(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Signal sends sig.
func (p *Proc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
}

// Kill ends the process with SIGKILL (no cleanup of any kind) and waits.
func (p *Proc) Kill() {
	p.t.Helper()
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop ends the process with SIGTERM and waits for it, at most within.
func (p *Proc) Stop(within time.Duration) {
	p.t.Helper()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(within):
		p.t.Fatalf("%s did not stop within %v of SIGTERM", p.name, within)
	}
}

// Counters parses the key=number pairs of the last log line holding
// marker (an exit summary's message); it fails the test without one.
func (p *Proc) Counters(marker string) map[string]int {
	p.t.Helper()
	out := p.Output()
	if !strings.Contains(out, marker) {
		p.t.Fatalf("%s logged no %q:\n%s", p.name, marker, Tail(out, 30))
	}
	return Counters(out, marker)
}

var counterRE = regexp.MustCompile(`(\w+)=(\d+)(?:\s|$)`)

// Counters parses the key=number pairs of the last line of log holding
// marker; none without one.
func Counters(log, marker string) map[string]int {
	out := map[string]int{}
	i := strings.LastIndex(log, marker)
	if i < 0 {
		return out
	}
	line, _, _ := strings.Cut(log[i:], "\n")
	for _, m := range counterRE.FindAllStringSubmatch(line, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Wait waits for the process to exit, at most within, and returns how it
// exited.
func (p *Proc) Wait(within time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(within):
		p.t.Fatalf("%s did not exit within %v", p.name, within)
		return nil
	}
}
