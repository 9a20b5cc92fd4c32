package d4server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

// helperEnv makes the test binary run a bare server instead of the tests,
// so a test can measure a server's RSS without its own clients in it.
const helperEnv = "XTRAIL_D4SERVER_HELPER"

// helperRedisEnv, if set, gives the helper server a RedisStore on that
// address instead of the in-process store.
const helperRedisEnv = "XTRAIL_D4SERVER_HELPER_REDIS"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelperServer())
	}
	os.Exit(m.Run())
}

// runHelperServer serves TLS on 127.0.0.1:0 with the certificate named by
// the environment, prints "ADDR <addr>", runs until stdin closes, then
// prints "STATS <json>".
func runHelperServer() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var store Store
	if addr := os.Getenv(helperRedisEnv); addr != "" {
		rs, err := NewRedisStore("redis://"+addr+"/0", DefaultAnalyzerDB)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		store = rs
	} else {
		ms := NewMemStore(0)
		store = ms
		// Only the legitimate sensor's lines are stored: drain them so the
		// queue itself does not grow the RSS being measured.
		go func() {
			q := newPopper(ms.Queue("maltrail", testQueue))
			for {
				if _, err := q.Pop(ctx); err != nil {
					return
				}
			}
		}()
	}
	if _, err := store.RegisterQueue(ctx, "maltrail", testQueue, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := ListenTLS("127.0.0.1:0", os.Getenv(helperEnv), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err := New(Config{Store: store, Mode: ModeRegistration, Keys: map[string][]byte{goodUUID: goodKey},
		IdleTimeout: 1500 * time.Millisecond, FrameTimeout: 3 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	fmt.Printf("ADDR %s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	<-done
	b, _ := json.Marshal(srv.Stats())
	fmt.Printf("STATS %s\n", b)
	return 0
}

// rssKiB reads a process's resident set size.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// TestSlowLorisMemory: 300 peers, each from its own address, open
// connections that claim a 1 MB frame (a registered uuid for half of them)
// or a 1 GB one, then drip one byte per second, below the idle timeout and
// reconnecting whenever they are cut; meanwhile a real sensor sends a line
// every 200 ms. The server (a subprocess, so the attackers' memory is not
// counted) must keep its RSS flat and lose none of the sensor's lines.
// Timeouts are scaled down from d4-core's 30 s (idle 1.5 s, frame 3 s,
// drip 1 s instead of 20 s) so the test takes under 20 s.
func TestSlowLorisMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 20 s")
	}
	if raceEnabled {
		t.Skip("RSS under the race detector says nothing about the server")
	}
	ts, cmd, stdin, out := startHelper(t, "")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var sent atomic.Int64
	real := dialSensor(t, ts, goodUUID, goodKey)
	real.send(d4.TypeMeta, `{"type":"maltrail"}`)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			f := real.frameBytes(d4.TypeExtended, fmt.Sprintf("line %d\n", sent.Load()))
			if _, err := real.conn.Write(f); err != nil {
				t.Errorf("the real sensor's write failed: %v", err)
				return
			}
			sent.Add(1)
		}
	}()

	sample := func(d time.Duration) (peak int) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			kb, err := rssKiB(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			peak = max(peak, kb)
			time.Sleep(100 * time.Millisecond)
		}
		return peak
	}
	base := sample(time.Second)

	var attempts atomic.Int64
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loris(ctx, ts, ts.pool, i, &attempts)
		}()
	}
	first := sample(6 * time.Second)
	second := sample(6 * time.Second)
	stop()
	wg.Wait()
	// The last frames may still sit in the server's socket buffer: let it
	// read them before it stops.
	time.Sleep(time.Second)
	_ = stdin.Close()
	var st Stats
	for out.Scan() {
		if j, ok := strings.CutPrefix(out.Text(), "STATS "); ok {
			if err := json.Unmarshal([]byte(j), &st); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("RSS: base %d KiB, attack first half %d KiB, second half %d KiB; %d attack connections; rejections %v",
		base, first, second, attempts.Load(), st.Rejected)
	if attempts.Load() < 600 {
		t.Fatalf("only %d attack connections: the attackers were not cut and did not reconnect", attempts.Load())
	}
	// Each attack connection costs its TLS state; the claimed sizes cost
	// nothing but the 16 MiB budget. Before the checks existed, 300 such
	// peers took the server from 29 MB to 333 MB.
	if grow := max(first, second) - base; grow > 64<<10 {
		t.Errorf("RSS grew by %d KiB under attack", grow)
	}
	if second > first+16<<10 {
		t.Errorf("RSS kept growing: %d KiB then %d KiB", first, second)
	}
	if st.Lines != uint64(sent.Load()) {
		t.Errorf("server stored %d lines, the sensor sent %d", st.Lines, sent.Load())
	}
	if st.Rejected[ReasonFrameTimeout] == 0 || st.Rejected[ReasonTooLarge] == 0 {
		t.Errorf("rejections %v: want frame deadlines and 1 GB sizes", st.Rejected)
	}
}

// startHelper runs the helper server (with a RedisStore on redisAddr, if
// set) and returns its address, process, stdin (close it to stop the
// server) and stdout (the STATS line follows the stop).
func startHelper(t testing.TB, redisAddr string) (*testServer, *exec.Cmd, io.WriteCloser, *bufio.Scanner) {
	pemPath, pool := selfSigned(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+pemPath, helperRedisEnv+"="+redisAddr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := bufio.NewScanner(stdout)
	if !out.Scan() || !strings.HasPrefix(out.Text(), "ADDR ") {
		t.Fatalf("helper said %q", out.Text())
	}
	return &testServer{addr: strings.TrimPrefix(out.Text(), "ADDR "), pool: pool}, cmd, stdin, out
}

// loris is one slow-loris peer: from its own loopback address it claims a
// big frame and drips a byte a second, reconnecting when cut, until ctx ends.
func loris(ctx context.Context, ts *testServer, pool *x509.CertPool, i int, attempts *atomic.Int64) {
	local := &net.TCPAddr{IP: net.IPv4(127, 1, byte(i/250), byte(1+i%250))}
	u := d4.UUID{}
	if i%2 == 0 {
		u, _ = d4.ParseUUID(goodUUID)
	} else {
		u, _ = d4.NewUUIDv4()
	}
	size := uint32(d4.MaxPayload)
	if i%10 == 0 {
		size = 1 << 30
	}
	for ctx.Err() == nil {
		d := &net.Dialer{LocalAddr: local, Timeout: 2 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", ts.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		attempts.Add(1)
		var h [d4.HeaderSize]byte
		(&d4.Header{Version: 1, Type: d4.TypeMeta, UUID: u, Timestamp: uint64(time.Now().Unix()), Size: size}).MarshalTo(h[:])
		binary.LittleEndian.PutUint32(h[58:], size)
		_, err = c.Write(h[:])
		for err == nil && ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
				_, err = c.Write([]byte{0})
			}
		}
		_ = c.Close()
	}
}
