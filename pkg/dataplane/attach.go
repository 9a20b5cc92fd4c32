package dataplane

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Mode selects how the program attaches to an interface.
type Mode int

const (
	// ModeAuto tries native (driver) mode and falls back to generic.
	ModeAuto Mode = iota
	// ModeNative requires driver mode.
	ModeNative
	// ModeGeneric forces generic (skb) mode.
	ModeGeneric
)

// ParseMode reads "auto", "native" or "generic".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return ModeAuto, nil
	case "native", "drv":
		return ModeNative, nil
	case "generic", "skb":
		return ModeGeneric, nil
	}
	return 0, fmt.Errorf("XDP mode %q: want auto, native or generic", s)
}

func (m Mode) String() string {
	switch m {
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return "auto"
}

// Attachment is the program attached to one interface.
type Attachment struct {
	Iface  string
	Mode   Mode // native or generic: the mode that took
	index  int
	flags  int
	progID uint32
	netns  string
}

// Attach attaches the program to the named interface. It refuses to replace
// another XDP program already there.
func (d *Dataplane) Attach(iface string, mode Mode) (*Attachment, error) {
	var a *Attachment
	err := InNetns(d.opts.Netns, func() error {
		var err error
		a, err = d.attach(iface, mode)
		return err
	})
	if err != nil {
		return nil, err
	}
	d.attached = append(d.attached, a)
	d.log.Info("XDP program attached", "iface", iface, "mode", a.Mode, "prog_id", a.progID, "netns", d.opts.Netns)
	return a, nil
}

func (d *Dataplane) attach(iface string, mode Mode) (*Attachment, error) {
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("attach XDP to %s: %w", iface, err)
	}
	info, err := d.objs.XtrailXdp.Info()
	if err != nil {
		return nil, fmt.Errorf("attach XDP to %s: program info: %w", iface, err)
	}
	id, _ := info.ID()
	a := &Attachment{Iface: iface, index: link.Attrs().Index, progID: uint32(id), netns: d.opts.Netns}
	try := func(m Mode) error {
		flags := unix.XDP_FLAGS_UPDATE_IF_NOEXIST
		if m == ModeNative {
			flags |= unix.XDP_FLAGS_DRV_MODE
		} else {
			flags |= unix.XDP_FLAGS_SKB_MODE
		}
		if err := netlink.LinkSetXdpFdWithFlags(link, d.objs.XtrailXdp.FD(), flags); err != nil {
			return err
		}
		a.Mode, a.flags = m, flags
		return nil
	}
	switch mode {
	case ModeNative, ModeGeneric:
		err = try(mode)
	default:
		if err = try(ModeNative); err != nil {
			d.log.Info("native XDP refused, falling back to generic mode", "iface", iface, "err", err)
			err = try(ModeGeneric)
		}
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("attach XDP to %s: another XDP program is attached there (detach it first): %w", iface, err)
		}
		return nil, fmt.Errorf("attach XDP to %s (%s mode): %w", iface, mode, err)
	}
	return a, nil
}

// Detach removes the program from the interface, if it is still ours.
func (a *Attachment) Detach() error {
	if a == nil || a.index == 0 {
		return nil
	}
	return InNetns(a.netns, a.detach)
}

func (a *Attachment) detach() error {
	link, err := netlink.LinkByIndex(a.index)
	if err != nil {
		// the interface is gone, and the program with it
		a.index = 0
		return nil
	}
	if x := link.Attrs().Xdp; x == nil || !x.Attached || x.ProgId != a.progID {
		a.index = 0
		return nil
	}
	flags := a.flags &^ unix.XDP_FLAGS_UPDATE_IF_NOEXIST
	if err := netlink.LinkSetXdpFdWithFlags(link, -1, flags); err != nil {
		return fmt.Errorf("detach XDP from %s: %w", a.Iface, err)
	}
	a.index = 0
	return nil
}

// InNetns runs fn on a thread switched into the network namespace at path
// ("" = the caller's). netlink requests open their socket in the thread's
// namespace, so this is how an interface of another namespace is reached.
func InNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// leave the thread locked: Go retires it when this goroutine ends
		return errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return ferr
}
