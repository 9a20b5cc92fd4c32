package main

// The tests of this file and of *_cli_test.go run the built xtrail binary,
// as an operator does: flags, exit codes, stderr and the files and
// datagrams the commands produce.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
)

// xtrailBin is the binary TestMain builds once for this test binary.
var xtrailBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xtrail-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xtrailBin = filepath.Join(dir, "xtrail")
	goBin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		goBin = filepath.Join(root, "bin", "go")
	}
	if out, err := exec.Command(goBin, "build", "-o", xtrailBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build xtrail: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is how a finished xtrail run ended.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("xtrail %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// runTimeout bounds one xtrail run that is expected to end by itself.
const runTimeout = 2 * time.Minute

// xtrail runs the binary to its end.
func xtrail(t *testing.T, args ...string) result {
	t.Helper()
	return xtrailIn(t, nil, args...)
}

// xtrailCmd is the binary with args; event times and daily files are UTC.
func xtrailCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, xtrailBin, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	return cmd
}

// xtrailIn runs the binary to its end with stdin (nil: none).
func xtrailIn(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := xtrailCmd(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%v (ctx %v)\n%s", err, ctx.Err(), r)
	}
	return r
}

// mustXtrail runs the binary and fails the test unless it exits 0.
func mustXtrail(t *testing.T, args ...string) result {
	t.Helper()
	r := xtrail(t, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	return r
}

// wantFail checks that a run exited with code and said each of msgs on
// stderr.
func wantFail(t *testing.T, r result, code int, msgs ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("want exit %d: %s", code, r)
		return
	}
	for _, m := range msgs {
		if !strings.Contains(r.stderr, m) {
			t.Errorf("stderr lacks %q: %s", m, r)
		}
	}
}

// proc is a long-running xtrail (server, collector, export).
type proc struct {
	t              *testing.T
	args           []string
	cmd            *exec.Cmd
	stdout, stderr *testenv.SyncBuffer
	exited         chan struct{}
	code           int
}

// startXtrail starts the binary; it is killed at the end of the test if
// it still runs.
func startXtrail(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, args: args, cmd: xtrailCmd(context.Background(), args...), stdout: &testenv.SyncBuffer{}, stderr: &testenv.SyncBuffer{},
		exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = -1
		var ee *exec.ExitError
		if err == nil {
			p.code = 0
		} else if errors.As(err, &ee) && ee.Exited() {
			p.code = ee.ExitCode()
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func (p *proc) String() string {
	return fmt.Sprintf("xtrail %s\nstdout:\n%s\nstderr:\n%s", strings.Join(p.args, " "), p.stdout, p.stderr)
}

// waitLog waits until the process's stderr matches re and returns the
// submatches of the first match. It fails the test when the process exits
// first or after 20 s.
func (p *proc) waitLog(re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := rx.FindStringSubmatch(p.stderr.String()); m != nil {
			return m
		}
		select {
		case <-p.exited:
			if m := rx.FindStringSubmatch(p.stderr.String()); m != nil {
				return m
			}
			p.t.Fatalf("exited (code %d) before logging %q: %s", p.code, re, p)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q logged within 20 s: %s", re, p)
		}
	}
}

// stop sends SIGTERM and returns the exit code, failing the test when the
// process does not end within 10 s.
func (p *proc) stop() int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait()
}

// wait waits for the process to end by itself (10 s at most).
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(10 * time.Second):
		p.t.Fatalf("did not exit within 10 s: %s", p)
		return 0
	}
}

// freeUDPAddr is a loopback UDP address nobody listens on now, for a
// command that needs a fixed address on its command line.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// decodeJSON decodes a command's -json output.
func decodeJSON(t *testing.T, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("decode -json output: %v\n%s", err, r)
	}
}

// writeFile writes a test input file.
func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUsage checks the dispatcher: no command or an unknown one is a usage
// error (exit 2) listing the commands; -h lists them and exits 0; a bad
// flag of any command exits 1 and names the flag.
func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"nosuch"}} {
		r := xtrail(t, args...)
		wantFail(t, r, 2, "usage: xtrail COMMAND", "sensor ", "server ", "export ", "collector ", "trails ", "gencert ")
		if len(args) > 0 {
			wantFail(t, r, 2, `unknown command "nosuch"`)
		}
	}
	if r := xtrail(t, "-h"); r.code != 0 || !strings.Contains(r.stderr, "usage: xtrail COMMAND") {
		t.Errorf("-h: %s", r)
	}
	for _, c := range commands() {
		r := xtrail(t, c.name, "-no-such-flag")
		if c.name == "trails" {
			// trails takes a subcommand first
			r = xtrail(t, c.name, "load", "-no-such-flag")
		}
		wantFail(t, r, 1, "flag provided but not defined: -no-such-flag", "xtrail "+c.name+": ")
		if r := xtrail(t, c.name, "-h"); c.name != "trails" && (r.code != 0 || !strings.Contains(r.stderr, "Usage of ")) {
			t.Errorf("%s -h: %s", c.name, r)
		}
	}
	wantFail(t, xtrail(t, "trails"), 1, "usage:", "xtrail trails load", "bad arguments")
	wantFail(t, xtrail(t, "trails", "nosuch"), 1, "usage:", "bad arguments")
}
