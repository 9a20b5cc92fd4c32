package dataplane_test

// Attach safety on a real veth (internal/lab), in native and generic mode:
// a foreign XDP program is never replaced and stays attached; only our
// own program is ever detached, by us or by the kernel when we die.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xtrail/xtrail/internal/lab"
	"github.com/xtrail/xtrail/pkg/dataplane"
)

// foreignProgram is someone else's XDP program: XDP_PASS, nothing more.
func foreignProgram(t *testing.T) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "foreign", Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func progID(t *testing.T, p *ebpf.Program) uint32 {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

// xdpFlag is the netlink mode flag of a mode.
func xdpFlag(m dataplane.Mode) int {
	if m == dataplane.ModeGeneric {
		return unix.XDP_FLAGS_SKB_MODE
	}
	return unix.XDP_FLAGS_DRV_MODE
}

// netlinkAttachMode is the IFLA_XDP_ATTACHED value of a mode.
func netlinkAttachMode(m dataplane.Mode) uint32 {
	if m == dataplane.ModeGeneric {
		return 2 // XDP_ATTACHED_SKB
	}
	return 1 // XDP_ATTACHED_DRV
}

// onIface reads which program is attached to the lab's sensor veth, and
// in which mode (0, 0 when none).
func onIface(t *testing.T, l *lab.Lab) (id, mode uint32) {
	t.Helper()
	if err := lab.InNetns(l.Sensor, func() error {
		ln, err := netlink.LinkByName(l.SensorIf)
		if err != nil {
			return err
		}
		if x := ln.Attrs().Xdp; x != nil && x.Attached {
			id, mode = x.ProgId, x.AttachMode
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return id, mode
}

func wantOnIface(t *testing.T, l *lab.Lab, id uint32, m dataplane.Mode, what string) {
	t.Helper()
	got, mode := onIface(t, l)
	if got != id || (id != 0 && mode != netlinkAttachMode(m)) {
		t.Fatalf("%s: program %d attached in mode %d, want %d in mode %d", what, got, mode, id, netlinkAttachMode(m))
	}
}

// netlinkSet sets (fd >= 0) or removes (fd -1) the interface's XDP
// program with netlink, as `ip link set dev IF xdp...` does.
func netlinkSet(l *lab.Lab, fd, flags int) error {
	return lab.InNetns(l.Sensor, func() error {
		ln, err := netlink.LinkByName(l.SensorIf)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(ln, fd, flags)
	})
}

// attachForeign attaches p to the sensor veth by netlink or by a bpf_link
// and returns how to remove it.
func attachForeign(t *testing.T, l *lab.Lab, p *ebpf.Program, m dataplane.Mode, how string) (remove func()) {
	t.Helper()
	if how == "netlink" {
		if err := netlinkSet(l, p.FD(), xdpFlag(m)); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := netlinkSet(l, -1, xdpFlag(m)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var lk link.Link
	if err := lab.InNetns(l.Sensor, func() error {
		ln, err := netlink.LinkByName(l.SensorIf)
		if err != nil {
			return err
		}
		flags := link.XDPDriverMode
		if m == dataplane.ModeGeneric {
			flags = link.XDPGenericMode
		}
		lk, err = link.AttachXDP(link.XDPOptions{Program: p, Interface: ln.Attrs().Index, Flags: flags})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lk.Close() })
	return func() { lk.Close() }
}

func loadDataplane(t *testing.T, l *lab.Lab) *dataplane.Dataplane {
	t.Helper()
	dp, err := dataplane.Load(dataplane.Options{Netns: lab.NetnsPath(l.Sensor)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	return dp
}

func TestAttachSafety(t *testing.T) {
	for _, m := range []dataplane.Mode{dataplane.ModeNative, dataplane.ModeGeneric} {
		t.Run(m.String(), func(t *testing.T) { attachSafety(t, m) })
	}
}

func attachSafety(t *testing.T, m dataplane.Mode) {
	l := lab.New(t)
	foreign := foreignProgram(t)
	foreignID := progID(t, foreign)

	// A foreign program, attached by netlink or by a bpf_link: every mode
	// of ours is refused with a clear error, theirs stays, and our Close
	// leaves it.
	for _, how := range []string{"netlink", "link"} {
		remove := attachForeign(t, l, foreign, m, how)
		dp := loadDataplane(t, l)
		for _, ours := range []dataplane.Mode{dataplane.ModeAuto, dataplane.ModeNative, dataplane.ModeGeneric} {
			_, err := dp.Attach(l.SensorIf, ours)
			if err == nil || !strings.Contains(err.Error(), "another XDP program is attached there") {
				t.Errorf("%s-attached foreign program, our %s attach: %v", how, ours, err)
			}
			wantOnIface(t, l, foreignID, m, fmt.Sprintf("after our %s attach over a %s-attached one", ours, how))
		}
		if err := dp.Close(); err != nil {
			t.Fatal(err)
		}
		wantOnIface(t, l, foreignID, m, "after our Close")
		remove()
		wantOnIface(t, l, 0, m, "after the foreign program's removal")
	}

	// Ours attached: netlink can neither replace it (even without
	// UPDATE_IF_NOEXIST) nor remove it.
	dp := loadDataplane(t, l)
	a, err := dp.Attach(l.SensorIf, m)
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode != m {
		t.Fatalf("attached in %s mode, want %s", a.Mode, m)
	}
	ours, _ := onIface(t, l)
	if ours == 0 || ours == foreignID {
		t.Fatalf("our program is not on the interface (%d)", ours)
	}
	if err := netlinkSet(l, foreign.FD(), xdpFlag(m)); err == nil {
		t.Error("netlink replaced our program")
	}
	if err := netlinkSet(l, -1, xdpFlag(m)); err == nil {
		t.Error("netlink removed our program")
	}
	wantOnIface(t, l, ours, m, "after netlink tried to replace and remove ours")

	// Someone force-detaches our link (bpftool link detach) and attaches
	// theirs: our Close leaves theirs.
	detachLinkOf(t, ours)
	wantOnIface(t, l, 0, m, "after our link was force-detached")
	remove := attachForeign(t, l, foreign, m, "netlink")
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	wantOnIface(t, l, foreignID, m, "after our Close, with theirs in our place")
	remove()

	// Our Close detaches ours.
	dp = loadDataplane(t, l)
	if _, err := dp.Attach(l.SensorIf, m); err != nil {
		t.Fatal(err)
	}
	if err := dp.Close(); err != nil {
		t.Fatal(err)
	}
	wantOnIface(t, l, 0, m, "after our Close")
}

// detachLinkOf detaches the XDP link of program id, as `bpftool link
// detach` does.
func detachLinkOf(t *testing.T, id uint32) {
	t.Helper()
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || info.Type != link.XDPType || uint32(info.Program) != id {
			continue
		}
		if err := it.Link.Detach(); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no XDP link of program %d (%v)", id, it.Err())
}

// childEnv makes the test binary a sensor that attaches to NETNS,IFACE
// and waits to be killed.
const childEnv = "XTRAIL_ATTACH_CHILD"

// TestAttachDiesWithTheSensor kills an attached sensor with SIGKILL: its
// program must not stay on the interface, and the next sensor attaches.
func TestAttachDiesWithTheSensor(t *testing.T) {
	if spec := os.Getenv(childEnv); spec != "" {
		ns, iface, _ := strings.Cut(spec, ",")
		dp, err := dataplane.Load(dataplane.Options{Netns: ns})
		if err == nil {
			_, err = dp.Attach(iface, dataplane.ModeGeneric)
		}
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("attached")
		select {} // until killed
	}
	l := lab.New(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAttachDiesWithTheSensor$")
	cmd.Env = append(os.Environ(), childEnv+"="+lab.NetnsPath(l.Sensor)+","+l.SensorIf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "attached\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	if id, _ := onIface(t, l); id == 0 {
		t.Fatal("the child's program is not attached")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) {
		t.Fatalf("child: %v", err)
	}
	// the kernel releases the link with the process's files
	deadline := time.Now().Add(5 * time.Second)
	for {
		id, _ := onIface(t, l)
		if id == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("program %d still attached 5 s after its sensor was killed", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dp := loadDataplane(t, l)
	if _, err := dp.Attach(l.SensorIf, dataplane.ModeGeneric); err != nil {
		t.Fatalf("a new sensor cannot attach after a killed one: %v", err)
	}
}
