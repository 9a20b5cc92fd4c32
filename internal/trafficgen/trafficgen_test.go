package trafficgen

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/internal/pktbuild"
	"github.com/xtrail/xtrail/internal/testenv"
	"github.com/xtrail/xtrail/pkg/dataplane"
)

// TestGenerator: frames sent by the generator reach the lab's sensor
// veth, where xtrail's program counts them: every one, in the pool's
// order of kinds, and with vary set a pool of one SYN makes distinct SYNs
// (none dropped as a repeat).
func TestGenerator(t *testing.T) {
	testenv.RequireRoot(t)
	l := lab.New(t)
	dp, err := dataplane.Load(dataplane.Options{Action: dataplane.ActionDrop, Netns: lab.NetnsPath(l.Sensor)})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	if _, err := dp.Attach(l.SensorIf, dataplane.ModeNative); err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("93.184.216.34")
	syn := pktbuild.Frame{Src: src, Dst: dst, Proto: pktbuild.TCP, Sport: 40000, Dport: 443, TCPFlags: pktbuild.SYN}.Bytes()
	udp := pktbuild.Frame{Src: src, Dst: dst, Proto: pktbuild.UDP, Sport: 40000, Dport: 443, Payload: []byte("datagram")}.Bytes()
	send := func(frames [][]byte, vary, n int) {
		t.Helper()
		err := lab.InNetns(l.Source, func() error {
			ifc, err := net.InterfaceByName(l.SourceIf)
			if err != nil {
				return err
			}
			g, err := New(frames, ifc.Index, vary)
			if err != nil {
				return err
			}
			defer g.Close()
			sent, err := g.Send(n)
			if err == nil && sent != n {
				t.Errorf("sent %d of %d", sent, n)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(want map[string]uint64) map[string]uint64 {
		t.Helper()
		var c map[string]uint64
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if c, err = dp.CounterMap(); err != nil {
				t.Fatal(err)
			}
			if c["ipv4"] >= want["ipv4"] {
				break
			}
		}
		for k, v := range want {
			if c[k] != v {
				t.Errorf("counter %s: %d, want %d (all: %v)", k, c[k], v, c)
			}
		}
		return c
	}
	send([][]byte{syn, udp}, 0, 1000)
	// the generator's frames are counted by ipv4, not packets: the kernel
	// may send an IPv6 neighbour or multicast packet of its own on the veth
	c := waitFor(map[string]uint64{"ipv4": 1000, "tcp_syn": 500, "udp": 500})
	// one SYN, its source port moved on at every run: no repeats (the
	// SYNs above repeat one another)
	flood := pktbuild.Frame{Src: src, Dst: dst, Proto: pktbuild.TCP, Sport: 50000, Dport: 443, TCPFlags: pktbuild.SYN}.Bytes()
	send([][]byte{flood}, 14+20, 3000)
	waitFor(map[string]uint64{"ipv4": 4000, "tcp_syn": 3500, "syn_dup": c["syn_dup"]})
}
