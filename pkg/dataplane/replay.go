package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Replay runs captured frames through the program in batches: a Replayer
// copies frames into the program's queue (xt_replay_q, mapped into this
// process), and one BPF_PROG_TEST_RUN of the program, repeated once per
// frame, runs the whole batch, each run taking the next frame with the
// clock at its capture time (replay_frame in bpf/xtrail.c). One system call per batch rather than one per frame,
// which was most of a replay's cost.

// ReplayFrameMax is the longest frame a replay runs; longer ones are cut
// (XT_REPLAY_FRAME_MAX: the program reads headers and at most XT_SNAP_MAX
// bytes of payload).
const ReplayFrameMax = len(xtrailXtReplayFrame{}.Data)

// ReplayBatch is the number of frames a Replayer queues per system call
// (the entries of xt_replay_q in a replay program).
const ReplayBatch = 256

// ReplayRingSize is a ring big enough for a replay, which drains it after
// every batch: each frame makes at most a record of its payload (or two
// small ones, a scan alert and an IP hit), so a batch writes at most
// ReplayBatch x 1.6 KiB = 414 KiB. The ring is mapped into the process
// twice (the kernel's wrap-around layout), so it costs twice its size in
// RSS once read through.
const ReplayRingSize = 512 << 10

const (
	replayFrameSize = int(unsafe.Sizeof(xtrailXtReplayFrame{}))
	replayDataOff   = int(unsafe.Offsetof(xtrailXtReplayFrame{}.Data))
	replayCtlSize   = int(unsafe.Sizeof(xtrailXtReplayCtl{}))
)

// A Replayer queues frames for the program and runs them in batches. It
// belongs to the goroutine that made it: that goroutine stays on one thread,
// pinned to one CPU, until Close, because the program's repeat slots are
// per CPU and every packet of a replay must meet the same ones.
type Replayer struct {
	d      *Dataplane
	q, ctl []byte // the mapped queue and cursor
	n      int    // frames queued
	// in is the test run's input: any frame of ReplayFrameMax bytes,
	// in which the program places each queued frame in turn.
	in    []byte
	attr  progRunAttr
	unpin func() error // restores the thread's affinity
	fd    int
	held  *dispatcherHold
	Calls int // system calls made (test runs, including those a signal cut short)
}

// progRunAttr is union bpf_attr's BPF_PROG_TEST_RUN member (UAPI).
type progRunAttr struct {
	progFd      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      uint64
	dataOut     uint64
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       uint64
	ctxOut      uint64
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

const bpfProgTestRun = 10 // BPF_PROG_TEST_RUN

// NewReplayer returns the replay queue of a program loaded with
// Options.Replay. The calling goroutine is locked to its thread and the
// thread pinned to the CPU it runs on until Close.
func (d *Dataplane) NewReplayer() (*Replayer, error) {
	if !d.opts.Replay {
		return nil, errors.New("replay queue: the program was not loaded for replay")
	}
	info, err := d.objs.XtReplayQ.Info()
	if err != nil {
		return nil, fmt.Errorf("replay queue: %w", err)
	}
	if info.MaxEntries < ReplayBatch {
		return nil, fmt.Errorf("replay queue: %d entries, want %d", info.MaxEntries, ReplayBatch)
	}
	r := &Replayer{d: d, in: make([]byte, ReplayFrameMax), fd: d.objs.XtrailXdp.FD()}
	if r.q, err = mmapMap(d.objs.XtReplayQ.FD(), ReplayBatch*replayFrameSize); err != nil {
		return nil, fmt.Errorf("replay queue: %w", err)
	}
	if r.ctl, err = mmapMap(d.objs.XtReplayCur.FD(), replayCtlSize); err != nil {
		unix.Munmap(r.q)
		return nil, fmt.Errorf("replay cursor: %w", err)
	}
	r.attr = progRunAttr{progFd: uint32(r.fd), dataSizeIn: uint32(len(r.in)), dataIn: uint64(uintptr(unsafe.Pointer(&r.in[0])))}
	runtime.LockOSThread()
	if r.unpin, err = PinThread(); err != nil {
		r.unmap()
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("replay: %w", err)
	}
	if r.held, err = holdInDispatcher(d.objs.XtrailXdp); err != nil {
		// slower (two RCU grace periods a batch, in wall time), not wrong
		d.log.Warn("replay: the program is not held in the XDP dispatcher: each batch waits for it", "err", err)
	}
	return r, nil
}

// A BPF_PROG_TEST_RUN of an XDP program with repeat > 1 adds the program
// to the kernel's XDP dispatcher before its runs and removes it after,
// and each change waits for an RCU grace period (about 10 ms here, far
// more than a batch's runs). A program already there is only counted
// again. So a replay keeps its program there from start to end: attached,
// in generic mode, to the loopback of a network namespace of its own,
// which is down, has no other interface and carries no packet.
type dispatcherHold struct {
	ns   netns.NsHandle
	link link.Link
}

// HoldInDispatcher keeps an XDP program in the kernel's dispatcher until
// Close (see dispatcherHold), so its test runs with a repeat count cost no
// RCU grace period: it attaches prog to a fresh namespace's loopback. The
// calling goroutine must be locked to its thread (it enters the namespace
// to make it, and returns).
func HoldInDispatcher(prog *ebpf.Program) (io.Closer, error) {
	h, err := holdInDispatcher(prog)
	if err != nil {
		return nil, err
	}
	return h, nil
}

func holdInDispatcher(prog *ebpf.Program) (*dispatcherHold, error) {
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("replay: current network namespace: %w", err)
	}
	defer orig.Close()
	ns, err := netns.New() // unshare: this thread is now in ns
	if err != nil {
		return nil, fmt.Errorf("replay: private network namespace: %w", err)
	}
	h := &dispatcherHold{ns: ns}
	h.link, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: 1, Flags: link.XDPGenericMode}) // lo
	if serr := netns.Set(orig); serr != nil {
		// the thread is in the wrong namespace: lock it once more, so
		// the caller's unlock leaves it to be retired with its goroutine
		runtime.LockOSThread()
		if h.link != nil {
			h.link.Close()
		}
		ns.Close()
		return nil, errors.Join(err, fmt.Errorf("replay: return to the network namespace: %w", serr))
	}
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("replay: hold the program in the XDP dispatcher: %w", err)
	}
	return h, nil
}

func (h *dispatcherHold) Close() error {
	if h == nil {
		return nil
	}
	err := h.link.Close()
	h.ns.Close()
	return err
}

// mmapMap maps the first size bytes of an mmapable array map.
func mmapMap(fd, size int) ([]byte, error) {
	page := unix.Getpagesize()
	b, err := unix.Mmap(fd, 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return b, nil
}

// PinThread pins the calling thread, which must be locked
// (runtime.LockOSThread), to the CPU it runs on; the returned func restores
// its affinity.
func PinThread() (restore func() error, err error) {
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("CPU affinity: %w", err)
	}
	var cpu uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); e != 0 {
		return nil, fmt.Errorf("current CPU: %w", e)
	}
	one.Set(int(cpu))
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return func() error { return unix.SchedSetaffinity(0, &old) }, nil
}

// Queue copies a frame (cut to ReplayFrameMax bytes) captured at ts (ns
// since the epoch) into the queue. The queue holds ReplayBatch frames:
// Flush it when Full.
func (r *Replayer) Queue(ts int64, frame []byte) error {
	if r.n >= ReplayBatch {
		return errors.New("replay queue full")
	}
	if len(frame) < 14 {
		return fmt.Errorf("replay: %d-byte frame, shorter than an Ethernet header", len(frame))
	}
	if len(frame) > ReplayFrameMax {
		frame = frame[:ReplayFrameMax]
	}
	s := r.q[r.n*replayFrameSize:]
	binary.NativeEndian.PutUint64(s, uint64(ts))
	binary.NativeEndian.PutUint32(s[8:], uint32(len(frame)))
	copy(s[replayDataOff:], frame)
	r.n++
	return nil
}

// Full says the queue has no room for another frame.
func (r *Replayer) Full() bool { return r.n >= ReplayBatch }

// Flush runs every queued frame through the program, in order. Their
// records are in the ring buffer when it returns.
func (r *Replayer) Flush() error {
	if r.n == 0 {
		return nil
	}
	n := uint32(r.n)
	r.n = 0
	binary.NativeEndian.PutUint32(r.ctl[0:], 0) // next
	binary.NativeEndian.PutUint32(r.ctl[4:], n) // count
	binary.NativeEndian.PutUint32(r.ctl[8:], 0) // bad
	for {
		next := binary.NativeEndian.Uint32(r.ctl[0:])
		if next >= n {
			break
		}
		// a signal ends a test run early (EINTR) after whole runs; the
		// cursor says where to go on
		r.attr.repeat = n - next
		r.attr.dataSizeOut = 0 // the kernel wrote the last frame's length here
		r.Calls++
		_, _, e := unix.Syscall(unix.SYS_BPF, bpfProgTestRun, uintptr(unsafe.Pointer(&r.attr)), unsafe.Sizeof(r.attr))
		runtime.KeepAlive(r.in)
		if e != 0 && e != unix.EINTR {
			return fmt.Errorf("replay: test-run of %d frames: %w", n-next, e)
		}
	}
	if bad := binary.NativeEndian.Uint32(r.ctl[8:]); bad != 0 {
		return fmt.Errorf("replay: %d of %d frames not run", bad, n)
	}
	return nil
}

// Close unpins the thread and releases the queue's mappings. Frames still
// queued are not run.
func (r *Replayer) Close() error {
	if r.q == nil {
		return nil
	}
	herr := r.held.Close()
	r.held = nil
	err := r.unpin()
	runtime.UnlockOSThread()
	r.unmap()
	if err != nil {
		err = fmt.Errorf("replay: restore CPU affinity: %w", err)
	}
	if herr != nil {
		herr = fmt.Errorf("replay: release the program from the dispatcher: %w", herr)
	}
	return errors.Join(err, herr)
}

func (r *Replayer) unmap() {
	unix.Munmap(r.q)
	unix.Munmap(r.ctl)
	r.q, r.ctl = nil, nil
}
