package dataplane

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf/link"
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
//
// It is a bpf_link, not a netlink attachment: the kernel refuses to put it
// in place of any program already attached (by netlink or by a link, in
// either mode), refuses any netlink request to replace or remove it, and
// detaches it when the link is closed: by Detach, or by the kernel when
// the sensor dies without a word (SIGKILL, a crash), so a restart never
// finds its own stale program in the way. Closing the link detaches only
// this program: one that took the interface after someone force-detached
// ours (bpftool link detach) stays.
type Attachment struct {
	Iface  string
	Mode   Mode // native or generic: the mode that took
	link   link.Link
	progID uint32
}

// Attach attaches the program to the named interface. It refuses to replace
// another XDP program already there.
func (d *Dataplane) Attach(iface string, mode Mode) (*Attachment, error) {
	var a *Attachment
	// the link's interface index is resolved in the calling thread's
	// network namespace
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
	nl, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("attach XDP to %s: %w", iface, err)
	}
	info, err := d.objs.XtrailXdp.Info()
	if err != nil {
		return nil, fmt.Errorf("attach XDP to %s: program info: %w", iface, err)
	}
	id, _ := info.ID()
	a := &Attachment{Iface: iface, progID: uint32(id)}
	try := func(m Mode) error {
		flags := link.XDPDriverMode
		if m == ModeGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: d.objs.XtrailXdp, Interface: nl.Attrs().Index, Flags: flags})
		if err != nil {
			return err
		}
		a.Mode, a.link = m, l
		return nil
	}
	switch mode {
	case ModeNative, ModeGeneric:
		err = try(mode)
	default:
		if err = try(ModeNative); err != nil && !foreign(err) {
			d.log.Info("native XDP refused, falling back to generic mode", "iface", iface, "err", err)
			err = try(ModeGeneric)
		}
	}
	if err != nil {
		if foreign(err) {
			return nil, fmt.Errorf("attach XDP to %s: another XDP program is attached there; xtrail never replaces one (detach it first): %w", iface, err)
		}
		return nil, fmt.Errorf("attach XDP to %s (%s mode): %w", iface, mode, err)
	}
	return a, nil
}

// foreign says whether the kernel refused an attachment because another
// program holds the interface: EBUSY in the same mode, EEXIST in the
// other one (native and generic cannot both be active).
func foreign(err error) bool {
	return errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST)
}

// Detach removes our program from the interface by closing its link; a
// program someone attached after force-detaching ours is not touched.
func (a *Attachment) Detach() error {
	if a == nil || a.link == nil {
		return nil
	}
	err := a.link.Close()
	a.link = nil
	if err != nil {
		return fmt.Errorf("detach XDP from %s: %w", a.Iface, err)
	}
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
