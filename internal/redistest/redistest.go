// Package redistest runs a throwaway redis-server for tests. Tests use a real
// server (not a fake) so that the key layout and the blocking list semantics
// they assert are the ones d4-core's analyzers and exporters will see.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
)

// startTimeout bounds how long we wait for a fresh server to answer PING.
const startTimeout = 10 * time.Second

// Start launches redis-server on a free 127.0.0.1 port with persistence off
// and its working directory in t.TempDir(), waits until it answers PING and
// returns its "host:port". The server is killed and reaped in t.Cleanup.
//
// Outside CI the test is skipped when redis-server is missing; in CI that is
// a failure (see internal/testenv).
func Start(t testing.TB) (addr string) {
	t.Helper()
	return StartServer(t, Options{}).Addr()
}

// Options of StartServer.
type Options struct {
	// AppendOnly turns on the append-only file (fsync every second), so a
	// restart keeps the data, as production Redis for xtrail should run.
	AppendOnly bool
	// Cluster starts the server as a Redis Cluster node (see StartCluster)
	// whose peers are declared failed after NodeTimeout (default 1 s).
	Cluster     bool
	NodeTimeout time.Duration
}

// Server is a redis-server that a fault test can stop, kill, wipe and start
// again on the same port and directory.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	opts Options
	stop func() // kills and reaps the running process; nil when stopped

	stopWith func(syscall.Signal) // signals the running process and reaps it
	pid      int
}

// Pid is the running process's id (0 when stopped), for CPU and memory
// readings.
func (s *Server) Pid() int {
	if s.stop == nil {
		return 0
	}
	return s.pid
}

// StartServer is Start with options, returning a Server to restart.
func StartServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: testenv.RequireBinary(t, "redis-server"), dir: t.TempDir(), opts: opts}
	// The port is found by binding :0 and releasing it; another process could
	// grab it in between, so a failed start is retried a few times.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		find := freePort
		if opts.Cluster {
			find = freeClusterPort
		}
		port, err := find()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		s.port = port
		if lastErr = s.launch(); lastErr == nil {
			t.Cleanup(func() {
				if s.stop != nil {
					s.stop()
				}
			})
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// Addr returns "host:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Stop shuts the server down cleanly (SIGTERM: with AppendOnly, the file is
// flushed first) and waits for it to exit.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill stops the server with SIGKILL: with AppendOnly, up to the last
// second of writes may be lost, as in a crash.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	if s.stop == nil {
		return
	}
	s.stopWith(sig)
	s.stop = nil
}

// Wipe deletes the data of a stopped server, so the next Start comes back
// empty (a lost disk, or Redis without persistence).
func (s *Server) Wipe() {
	s.t.Helper()
	if s.stop != nil {
		s.t.Fatal("redistest: Wipe on a running server")
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			s.t.Fatal(err)
		}
	}
}

// Restart starts a stopped server again on its port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	if s.stop != nil {
		s.t.Fatal("redistest: Restart on a running server")
	}
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		// The port may linger briefly after the old process exits.
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server: %v", err)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// freeClusterPort finds a port that is free with its cluster bus port
// (port + 10000).
func freeClusterPort() (int, error) {
	for range 100 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		if p+10000 > 65535 {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		ln.Close()
		return p, nil
	}
	return 0, errors.New("no free port pair for a cluster node")
}

// launch starts the server on s.port and returns once it answers PING, or
// an error (after killing it) when it exits or does not answer in time.
func (s *Server) launch() error {
	addr := s.Addr()
	aof := "no"
	if s.opts.AppendOnly {
		aof = "yes"
	}
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", aof,
		"--appendfsync", "everysec",
		"--dir", s.dir,
	}
	if s.opts.Cluster {
		nt := s.opts.NodeTimeout
		if nt <= 0 {
			nt = time.Second
		}
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(nt.Milliseconds(), 10))
	}
	cmd := exec.Command(s.bin, args...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	s.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopWith := func(sig syscall.Signal) {
		_ = cmd.Process.Signal(sig)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	s.stopWith = stopWith
	s.stop = func() { stopWith(syscall.SIGKILL) }

	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			s.stop = nil
			return fmt.Errorf("redis-server exited early (%v): %s", err, out.String())
		default:
		}
		if ping(addr) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	s.stop = nil
	return fmt.Errorf("redis-server on %s did not answer PING within %s: %s", addr, startTimeout, out.String())
}

// ping speaks just enough RESP to check readiness without depending on a
// client library.
func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		// "-LOADING" and similar mean the server is up but not ready yet.
		return errors.New("unexpected PING reply " + strings.TrimSpace(line))
	}
	return nil
}
