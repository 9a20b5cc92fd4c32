package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
)

// Cluster is a Redis Cluster of real redis-server processes on loopback,
// made with redis-cli --cluster create. Its nodes are Servers: a test kills
// one to make its replica take over, and restarts it (it comes back as a
// replica of the new primary).
type Cluster struct {
	t     testing.TB
	cli   string
	Nodes []*Server
}

// StartCluster starts primaries*(1+replicas) nodes, joins them into a
// cluster with every slot assigned and waits until every node reports it
// healthy. Every process and directory is removed in t.Cleanup. The test is
// skipped outside CI when redis-server or redis-cli is missing.
func StartCluster(t testing.TB, primaries, replicas int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, cli: testenv.RequireBinary(t, "redis-cli")}
	opts.Cluster = true
	// redis-cli waits for the nodes to meet on their bus ports, which can
	// hang (a bus port taken meanwhile by another test's process): it gets
	// a deadline, and a cluster that does not form is made again on other
	// ports.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = c.create(primaries, replicas, opts); err == nil {
			c.WaitHealthy(60 * time.Second)
			return c
		}
		for _, n := range c.Nodes {
			n.Kill()
		}
		c.Nodes = nil
	}
	t.Fatalf("redistest: %v", err)
	return nil
}

func (c *Cluster) create(primaries, replicas int, opts Options) error {
	args := []string{"--cluster", "create"}
	for range primaries * (1 + replicas) {
		n := StartServer(c.t, opts)
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, c.cli, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// URL is the cluster in go-redis's cluster URL form.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr() + "?"
	for i, n := range c.Nodes[1:] {
		if i > 0 {
			u += "&"
		}
		u += "addr=" + n.Addr()
	}
	return u
}

// Running reports whether the node is up (not killed or stopped).
func (s *Server) Running() bool { return s.stop != nil }

// Cmd runs a redis-cli command on a running node and returns its output.
func (c *Cluster) Cmd(n *Server, args ...string) (string, error) {
	out, err := exec.Command(c.cli, append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(n.port)}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// node is a line of CLUSTER NODES.
type node struct {
	id, addr string
	primary  bool
	failed   bool
	slots    [][2]int
}

func (c *Cluster) nodes() ([]node, error) {
	var last error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		out, err := c.Cmd(n, "cluster", "nodes")
		if err != nil {
			last = fmt.Errorf("%v: %s", err, out)
			continue
		}
		var ns []node
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) < 8 {
				continue
			}
			nd := node{id: f[0], addr: strings.Split(f[1], "@")[0],
				primary: strings.Contains(f[2], "master"), failed: strings.Contains(f[2], "fail")}
			for _, r := range f[8:] {
				if strings.HasPrefix(r, "[") {
					continue // a slot being migrated
				}
				a, b, ok := strings.Cut(r, "-")
				if !ok {
					b = a
				}
				lo, _ := strconv.Atoi(a)
				hi, _ := strconv.Atoi(b)
				nd.slots = append(nd.slots, [2]int{lo, hi})
			}
			ns = append(ns, nd)
		}
		return ns, nil
	}
	return nil, fmt.Errorf("no running node answered CLUSTER NODES: %v", last)
}

func (c *Cluster) byAddr(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// Primaries returns the running nodes that hold slots.
func (c *Cluster) Primaries() []*Server {
	c.t.Helper()
	ns, err := c.nodes()
	if err != nil {
		c.t.Fatalf("redistest: %v", err)
	}
	var out []*Server
	for _, nd := range ns {
		if s := c.byAddr(nd.addr); nd.primary && !nd.failed && len(nd.slots) > 0 && s != nil && s.Running() {
			out = append(out, s)
		}
	}
	return out
}

// PrimaryFor returns the node that holds key's slot.
func (c *Cluster) PrimaryFor(key string) *Server {
	c.t.Helper()
	var slot int
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		out, err := c.Cmd(n, "cluster", "keyslot", key)
		if err != nil {
			c.t.Fatalf("redistest: CLUSTER KEYSLOT: %v: %s", err, out)
		}
		slot, _ = strconv.Atoi(out)
		break
	}
	ns, err := c.nodes()
	if err != nil {
		c.t.Fatalf("redistest: %v", err)
	}
	for _, nd := range ns {
		for _, r := range nd.slots {
			if nd.primary && !nd.failed && slot >= r[0] && slot <= r[1] {
				if s := c.byAddr(nd.addr); s != nil {
					return s
				}
			}
		}
	}
	c.t.Fatalf("redistest: no primary holds slot %d of %q", slot, key)
	return nil
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// every replica's link to its primary is up and every slot is served by a
// running primary.
func (c *Cluster) WaitHealthy(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var why string
	for time.Now().Before(deadline) {
		if why = c.health(); why == "" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("redistest: the cluster is not healthy after %s: %s", within, why)
}

func (c *Cluster) health() string {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		out, err := c.Cmd(n, "cluster", "info")
		if err != nil || !strings.Contains(out, "cluster_state:ok") {
			return n.Addr() + " not ok: " + firstLine(out)
		}
		// A replica still in its first sync would hold every WAIT.
		out, err = c.Cmd(n, "info", "replication")
		if err != nil || (strings.Contains(out, "role:slave") && !strings.Contains(out, "master_link_status:up")) {
			return n.Addr() + " is a replica not in sync yet"
		}
	}
	covered := 0
	for _, s := range c.Primaries() {
		ns, _ := c.nodes()
		for _, nd := range ns {
			if nd.addr == s.Addr() {
				for _, r := range nd.slots {
					covered += r[1] - r[0] + 1
				}
			}
		}
	}
	if covered != 16384 {
		return fmt.Sprintf("running primaries serve %d of 16384 slots", covered)
	}
	return ""
}

// Replicas returns how many replicas primary p has that are in sync.
func (c *Cluster) Replicas(p *Server) int {
	out, err := c.Cmd(p, "info", "replication")
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "slave") && strings.Contains(l, "state=online") {
			n++
		}
	}
	return n
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
