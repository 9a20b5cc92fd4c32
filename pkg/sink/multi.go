package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Multi fans each event out to several sinks. A failing sink does not stop
// the others: its errors are counted, and logged once per sink and kind of
// error, so a dead collector produces one log line rather than one per
// detection.
type Multi struct {
	sinks  []Sink
	errs   []atomic.Uint64 // per sink, same index as sinks: events the sink refused
	sent   []atomic.Uint64 // per sink: events the sink took
	logger *slog.Logger

	mu     sync.Mutex
	logged map[errKind]struct{}
}

// errKind groups errors for the once-only log: the sink, the innermost
// error's dynamic type and, when there is one, its errno.
type errKind struct {
	sink  int
	typ   reflect.Type
	errno syscall.Errno
}

// NewMulti returns a Multi over sinks. A nil logger means slog.Default().
func NewMulti(logger *slog.Logger, sinks ...Sink) *Multi {
	if logger == nil {
		logger = slog.Default()
	}
	return &Multi{
		sinks:  append([]Sink(nil), sinks...),
		errs:   make([]atomic.Uint64, len(sinks)),
		sent:   make([]atomic.Uint64, len(sinks)),
		logger: logger,
		logged: make(map[errKind]struct{}),
	}
}

// Name implements Sink.
func (m *Multi) Name() string {
	names := make([]string, len(m.sinks))
	for i, s := range m.sinks {
		names[i] = s.Name()
	}
	return "multi(" + strings.Join(names, ",") + ")"
}

// Emit delivers the event to every sink. The returned error joins the
// sinks' failures; they are already counted and logged, so a caller may
// ignore it.
func (m *Multi) Emit(sec int64, line []byte) error {
	var errs []error
	for i, s := range m.sinks {
		if err := s.Emit(sec, line); err != nil {
			m.errs[i].Add(1)
			m.logOnce(i, err)
			errs = append(errs, err)
			continue
		}
		m.sent[i].Add(1)
	}
	return errors.Join(errs...)
}

func (m *Multi) logOnce(i int, err error) {
	k := errKind{sink: i}
	inner := err
	for {
		u := errors.Unwrap(inner)
		if u == nil {
			break
		}
		inner = u
	}
	k.typ = reflect.TypeOf(inner)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		k.errno = errno
	}
	m.mu.Lock()
	_, seen := m.logged[k]
	if !seen {
		m.logged[k] = struct{}{}
	}
	m.mu.Unlock()
	if !seen {
		m.logger.Warn("event sink failing; further errors of this kind are only counted",
			"sink", m.sinks[i].Name(), "err", err)
	}
}

// Errors returns the failed Emit count of each sink, by sink name.
func (m *Multi) Errors() map[string]uint64 {
	out := make(map[string]uint64, len(m.sinks))
	for i, s := range m.sinks {
		out[s.Name()] += m.errs[i].Load()
	}
	return out
}

// Count is one sink's tally of events.
type Count struct {
	Sink   string // the sink's Name
	Sent   uint64 // events the sink took (for a network sink: handed to the kernel or the D4 queue)
	Failed uint64 // events the sink refused
}

// Counts returns every sink's tally, in the order the sinks were given;
// safe while events are emitted.
func (m *Multi) Counts() []Count {
	out := make([]Count, len(m.sinks))
	for i, s := range m.sinks {
		out[i] = Count{Sink: s.Name(), Sent: m.sent[i].Load(), Failed: m.errs[i].Load()}
	}
	return out
}

// Close closes every sink and joins their errors. It logs each sink's
// failed events and, for the network sinks, sent datagrams: the exit
// summary of the outputs (a warning when any event failed).
func (m *Multi) Close() error {
	level, args := slog.LevelInfo, make([]any, 0, len(m.sinks))
	for i, s := range m.sinks {
		failed := m.errs[i].Load()
		attrs := []any{"failed", failed}
		if c, ok := s.(interface{ Sent() uint64 }); ok {
			attrs = append(attrs, "sent", c.Sent())
		}
		if failed > 0 {
			level = slog.LevelWarn
		}
		args = append(args, slog.Group(s.Name(), attrs...))
	}
	m.logger.Log(context.Background(), level, "output counters", args...)
	var errs []error
	for _, s := range m.sinks {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name(), err))
		}
	}
	return errors.Join(errs...)
}
