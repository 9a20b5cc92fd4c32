// Package trafficgen sends traffic into the veth lab from the kernel: a
// small XDP program (bpf/gen.c), run by BPF_PROG_TEST_RUN in live-frame mode,
// sends the frames of a pool out of an interface in turn, far faster than
// a process could write them. For benchmarks of the live sensor.
package trafficgen

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"

	"github.com/xtrail/xtrail/pkg/dataplane"
)

// FrameMax is the longest frame of a pool (GEN_FRAME_MAX); longer ones are
// cut.
const FrameMax = len(genGenFrame{}.Data)

const liveFrames = 1 << 1 // BPF_F_TEST_XDP_LIVE_FRAMES

// Generator is the loaded program with its pool.
type Generator struct {
	objs genObjects
	hold io.Closer
}

// New loads a generator that sends frames out of the interface with index
// ifindex, in turn, and starting over when the pool is done. With vary
// set, the 16-bit word at that offset of every frame (a TCP source port,
// say) has the number of times the pool was started over added to it, so
// a pool of one SYN makes a flood of distinct ones. It must be called, and
// used, on a goroutine locked to a thread in the interface's network
// namespace (lab.InNetns): the program runs there, and the interface
// index means an interface of that namespace.
func New(frames [][]byte, ifindex, vary int) (*Generator, error) {
	if len(frames) == 0 {
		return nil, errors.New("traffic generator: no frames")
	}
	spec, err := loadGen()
	if err != nil {
		return nil, fmt.Errorf("traffic generator: %w", err)
	}
	spec.Maps["gen_pool"].MaxEntries = uint32(len(frames))
	g := &Generator{}
	if err := spec.LoadAndAssign(&g.objs, nil); err != nil {
		return nil, fmt.Errorf("traffic generator: load: %w", err)
	}
	keys := make([]uint32, len(frames))
	vals := make([]genGenFrame, len(frames))
	for i, f := range frames {
		keys[i] = uint32(i)
		vals[i].Len = uint32(copy(vals[i].Data[:], f))
	}
	if _, err := g.objs.GenPool.BatchUpdate(keys, vals, nil); err != nil {
		g.Close()
		return nil, fmt.Errorf("traffic generator: frames: %w", err)
	}
	cfg := genGenCfg{Frames: uint32(len(frames)), Ifindex: uint32(ifindex), Vary: uint32(vary)}
	if err := g.objs.GenConfig.Put(uint32(0), cfg); err != nil {
		g.Close()
		return nil, fmt.Errorf("traffic generator: config: %w", err)
	}
	// a test run with a repeat count waits twice for RCU unless the
	// program is in the XDP dispatcher already
	if g.hold, err = dataplane.HoldInDispatcher(g.objs.Gen); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Send sends n frames (the pool in turn) and returns how many the program
// ran on; a frame the interface refused is counted by the interface, not
// here.
func (g *Generator) Send(n int) (int, error) {
	before, err := g.runs()
	if err != nil {
		return 0, err
	}
	in := make([]byte, FrameMax)
	_, err = g.objs.Gen.Run(&ebpf.RunOptions{Data: in, Repeat: uint32(n), Flags: liveFrames})
	after, rerr := g.runs()
	if err == nil {
		err = rerr
	}
	if err != nil {
		return int(after - before), fmt.Errorf("traffic generator: %w", err)
	}
	return int(after - before), nil
}

// runs reads the program's run count; a run that sent nothing is an error.
func (g *Generator) runs() (uint64, error) {
	var c genGenCfg
	if err := g.objs.GenConfig.Lookup(uint32(0), &c); err != nil {
		return 0, err
	}
	if c.Bad != 0 {
		return c.Next, fmt.Errorf("%d frames not sent (a bug)", c.Bad)
	}
	return c.Next, nil
}

// Close releases the program.
func (g *Generator) Close() error {
	var errs []error
	if g.hold != nil {
		errs = append(errs, g.hold.Close())
	}
	errs = append(errs, g.objs.Close())
	return errors.Join(errs...)
}
