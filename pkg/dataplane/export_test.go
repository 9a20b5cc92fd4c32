package dataplane

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RunDirect runs one frame through xtrail_xdp with a BPF_PROG_TEST_RUN
// system call of its own, without cilium/ebpf's signal masking: the
// "fewer system calls per frame" way of BenchmarkReplayPaths.
func (d *Dataplane) RunDirect(frame []byte) error {
	attr := progRunAttr{progFd: uint32(d.objs.XtrailXdp.FD()), dataSizeIn: uint32(len(frame)),
		dataIn: uint64(uintptr(unsafe.Pointer(&frame[0]))), repeat: 1}
	_, _, e := unix.Syscall(unix.SYS_BPF, bpfProgTestRun, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if e != 0 && e != unix.EINTR {
		return fmt.Errorf("test-run: %w", e)
	}
	return nil
}
