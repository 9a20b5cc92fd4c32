package d4

// keptFrame is a data frame written and not yet delivered: after a lost
// connection the client sends it again restamped (a fresh timestamp and
// HMAC, the same payload), so a server that stored it knows its content and
// stores nothing again, and refuses only byte-identical replays.
type keptFrame struct {
	buf   []byte // the whole frame, as last sent
	ts    uint64 // its timestamp, as last sent
	first uint64 // its timestamp when first sent
	end   Pos    // spool position after its lines
	lines int
	chunk *chunk // where buf lives; nil for a frame with its own buffer
}

// Frames are kept in chunks of this size, reused once every frame in them is
// delivered, so keeping them allocates nothing in the steady state; a frame
// larger than a chunk gets its own buffer.
const (
	chunkSize     = 256 << 10
	maxFreeChunks = maxInflight / chunkSize // enough for a full window in flight
)

type chunk struct {
	b    []byte // used bytes
	live int    // frames in it not yet delivered
}

// frameArena hands out frame buffers from chunks, oldest to newest. Frames
// are released in the order they were allocated (delivery is in order).
type frameArena struct {
	cur  *chunk
	free []*chunk
}

// alloc returns an empty buffer of capacity n and the chunk that holds it.
func (a *frameArena) alloc(n int) ([]byte, *chunk) {
	if n > chunkSize {
		return make([]byte, 0, n), nil
	}
	if a.cur == nil || cap(a.cur.b)-len(a.cur.b) < n {
		switch {
		case len(a.free) > 0:
			a.cur = a.free[len(a.free)-1]
			a.free = a.free[:len(a.free)-1]
		default:
			a.cur = &chunk{b: make([]byte, 0, chunkSize)}
		}
	}
	c := a.cur
	off := len(c.b)
	c.b = c.b[:off+n]
	c.live++
	return c.b[off : off : off+n], c
}

// release gives back one frame's buffer of chunk c.
func (a *frameArena) release(c *chunk) {
	if c == nil {
		return
	}
	if c.live--; c.live > 0 {
		return
	}
	c.b = c.b[:0] // nothing in it is needed any more
	if c != a.cur && len(a.free) < maxFreeChunks {
		a.free = append(a.free, c)
	}
}
