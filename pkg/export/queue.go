package export

import (
	"context"
	"errors"
)

// Queue is one analyzer queue seen by one consumer as a reliable, batched
// FIFO. Each consumer has its own in-flight list: Next moves lines from the
// queue into it and removes them only when a later call reports them done,
// so a line is in exactly one place at any time and a consumer that dies
// leaves its lines in flight, for its next run or, after a timeout, for the
// other consumers of the queue. Delivery is at least once.
//
// pkg/d4server implements it on d4-core's Redis lists (RedisQueue) and in
// process (MemQueue).
type Queue interface {
	// Name identifies the queue in logs, e.g. "analyzer:maltrail:<q>".
	Name() string
	// Open claims this consumer's in-flight list, waiting while another
	// live consumer holds it, and returns what a previous run left there,
	// oldest first: Run sends those lines before any other.
	Open(ctx context.Context) ([]string, error)
	// Next removes the done oldest lines from the in-flight list (moving
	// dead, which must be among them, to a dead-letter list), then moves up
	// to max of the queue's oldest lines into it and returns them oldest
	// first, in one round trip. When the queue is empty it waits a little
	// (about a second) for a line before returning an empty batch.
	Next(ctx context.Context, done int, dead []string, max int) (Batch, error)
	// Backlog returns the number of lines waiting in the queue, and
	// detects a store that lost its data like Next does.
	Backlog(ctx context.Context) (Batch, error)
	// Close gives up the claim, so other consumers may take over at once
	// what is still in flight.
	Close(ctx context.Context) error
}

// Batch is what Next and Backlog return.
type Batch struct {
	Lines   []string // now in flight, oldest first
	Backlog int64    // lines still waiting in the queue
	// Reclaimed is set when this consumer's in-flight lines had been
	// handed to other consumers (it stalled past the claim timeout): the
	// lines it was delivering may reach the target twice.
	Reclaimed bool
	// Lost is set when the store was found emptied (Redis restarted
	// without its data): the queue's backlog before that is gone.
	Lost bool
	// TakenOver counts the lines this call handed back to the queue from
	// other consumers whose claim expired (they died or stalled): each may
	// reach the target twice.
	TakenOver int64
}

// ErrConsumerBusy is returned by Open when ctx ends while another live
// consumer holds the same consumer name.
var ErrConsumerBusy = errors.New("export: another live exporter uses this consumer name")
