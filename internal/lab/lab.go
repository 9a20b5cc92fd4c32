// Package lab builds the test network of xtrail's live tests: two network
// namespaces joined by a veth pair. Traffic from the source namespace is
// routed over the veth to the sensor namespace, whose stack has no route
// onward, so test traffic to trail addresses never leaves the machine.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
)

// Addresses inside the lab (link-local: never routed off a link).
const (
	SensorAddr = "169.254.77.1"
	SourceAddr = "169.254.77.2"
)

// Lab is one pair of namespaces.
type Lab struct {
	Source, Sensor     string // namespace names
	SourceIf, SensorIf string // veth ends
}

// New creates the lab and removes it (namespaces, veths) when the test ends,
// whether it passed or not. It needs root and iproute2.
func New(t testing.TB) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "ip")
	testenv.RequireBinary(t, "ping")
	testenv.RequireBinary(t, "bash")
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	l := &Lab{Source: "xts-" + id, Sensor: "xtn-" + id, SourceIf: "xtv" + id + "s", SensorIf: "xtv" + id + "n"}
	t.Cleanup(func() {
		for _, ns := range []string{l.Source, l.Sensor} {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	mac := "02:58:54:" + id[0:2] + ":" + id[2:4] + ":" + id[4:6]
	steps := [][]string{
		{"netns", "add", l.Source},
		{"netns", "add", l.Sensor},
		{"link", "add", l.SourceIf, "netns", l.Source, "type", "veth", "peer", "name", l.SensorIf, "netns", l.Sensor},
		{"-n", l.Sensor, "link", "set", l.SensorIf, "address", mac},
		{"-n", l.Sensor, "addr", "add", SensorAddr + "/24", "dev", l.SensorIf},
		{"-n", l.Sensor, "link", "set", l.SensorIf, "up"},
		{"-n", l.Sensor, "link", "set", "lo", "up"},
		{"-n", l.Source, "addr", "add", SourceAddr + "/24", "dev", l.SourceIf},
		{"-n", l.Source, "link", "set", l.SourceIf, "up"},
		{"-n", l.Source, "link", "set", "lo", "up"},
		// a permanent neighbour: with the drop action even ARP ends in XDP
		{"-n", l.Source, "neigh", "add", SensorAddr, "lladdr", mac, "dev", l.SourceIf, "nud", "permanent"},
		{"-n", l.Source, "route", "add", "default", "via", SensorAddr, "dev", l.SourceIf},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Fatalf("lab: ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return l
}

// NetnsPath is the path of a lab namespace, for dataplane.Options.Netns.
func NetnsPath(name string) string { return "/var/run/netns/" + name }

// Run runs a command in namespace ns, bounded by 10 s.
func (l *Lab) Run(ns string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
}

// Ping sends one ICMP echo request from the source namespace.
func (l *Lab) Ping(dst string) error {
	// no reply comes back: the sensor side has no such host
	out, err := l.Run(l.Source, "ping", "-c", "1", "-W", "1", dst)
	if err != nil && !strings.Contains(string(out), "1 packets transmitted") {
		return fmt.Errorf("ping %s: %v: %s", dst, err, out)
	}
	return nil
}

// SYN opens a TCP connection attempt from the source namespace (one SYN goes
// out; the attempt is abandoned before the first retransmission).
func (l *Lab) SYN(dst string, port int) error {
	_, _ = l.Run(l.Source, "timeout", "0.5", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", dst, port))
	return nil
}

// UDP sends one datagram from the source namespace.
func (l *Lab) UDP(dst string, port int) error {
	out, err := l.Run(l.Source, "bash", "-c", fmt.Sprintf("echo xtrail-lab > /dev/udp/%s/%d", dst, port))
	if err != nil {
		return fmt.Errorf("udp to %s:%d: %v: %s", dst, port, err, out)
	}
	return nil
}

// XDPAttached reports whether an XDP program is attached to the sensor's veth.
func (l *Lab) XDPAttached() (bool, error) {
	out, err := exec.Command("ip", "-n", l.Sensor, "-d", "link", "show", l.SensorIf).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("ip link show: %v: %s", err, out)
	}
	return strings.Contains(string(out), "xdp"), nil
}

// InNetns runs fn on a thread inside lab namespace ns: sockets fn makes
// there stay in that namespace whichever thread later uses them.
func InNetns(ns string, fn func() error) error {
	return dataplane.InNetns(NetnsPath(ns), fn)
}

// AddAddress gives the sensor namespace's loopback an extra address, so a
// listener there answers for a (trail) address routed over the veth.
func (l *Lab) AddAddress(addr string) error {
	out, err := exec.Command("ip", "-n", l.Sensor, "addr", "add", addr+"/32", "dev", "lo").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip addr add %s: %v: %s", addr, err, out)
	}
	return nil
}
