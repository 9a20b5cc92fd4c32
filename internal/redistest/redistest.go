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
	"os/exec"
	"strconv"
	"strings"
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
	bin := testenv.RequireBinary(t, "redis-server")
	dir := t.TempDir()

	// The port is found by binding :0 and releasing it; another process could
	// grab it in between, so a failed start is retried a few times.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: find a free port: %v", err)
		}
		addr, stop, err := launch(bin, dir, port)
		if err == nil {
			t.Cleanup(stop)
			return addr
		}
		lastErr = err
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return ""
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// launch starts one server and returns once it answers PING, or an error
// (after killing it) when it exits or does not answer in time.
func launch(bin, dir string, port int) (string, func(), error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
	)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			// Put the result back so stop() does not block forever.
			exited <- err
			return "", nil, fmt.Errorf("redis-server exited early (%v): %s", err, out.String())
		default:
		}
		if ping(addr) == nil {
			return addr, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("redis-server on %s did not answer PING within %s: %s", addr, startTimeout, out.String())
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
