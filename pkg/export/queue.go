package export

import "context"

// Queue is one analyzer queue seen as a reliable FIFO: Pop moves the oldest
// element to an in-flight list instead of deleting it, and only Ack removes
// it from there. An element popped but not acknowledged (the process died, or
// the destination kept failing until shutdown) is therefore still stored and
// InFlight hands it back to the next consumer. Delivery is at-least-once.
//
// pkg/d4server implements it for Redis (d4-core's lists, see RedisQueue) and
// for its in-process store.
type Queue interface {
	// Name identifies the queue in logs, e.g. "analyzer:maltrail:<q>".
	Name() string
	// InFlight returns the elements a previous consumer popped but never
	// acknowledged, oldest first. Run sends them before popping new ones.
	InFlight(ctx context.Context) ([]string, error)
	// Pop blocks until an element is available and returns the oldest one,
	// now in flight. It returns ctx.Err() once ctx is done.
	Pop(ctx context.Context) (string, error)
	// Ack removes one occurrence of elem from the in-flight list after it
	// was delivered.
	Ack(ctx context.Context, elem string) error
	// Bury moves elem from the in-flight list to a dead-letter list. Run
	// uses it only for an element that can never be sent (a datagram too
	// large for UDP), so it neither blocks the queue forever nor is lost.
	Bury(ctx context.Context, elem string) error
}
