package sink

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// Remote sends each event, re-formatted, as one datagram to each endpoint
// of Maltrail's SYSLOG_SERVER (CEF, NewSyslog) or LOGSTASH_SERVER (JSON,
// NewLogstash), spec §3.3. As with LOG_SERVER there is no acknowledgement:
// each endpoint's socket is reused, and recreated once when a send fails.
//
// The sink reads the event back from its rendered line (maltrail.LineFields),
// so it formats plain and condensed events alike.
type Remote struct {
	name   string
	format func(dst []byte, sec int64, f *maltrail.LineFields) []byte

	mu     sync.Mutex
	eps    []*endpoint
	fields maltrail.LineFields
	buf    []byte
	closed bool

	sent atomic.Uint64 // datagrams handed to the kernel
	errs atomic.Uint64 // datagrams not sent, and lines that did not split into columns
}

// NewSyslog returns the SYSLOG_SERVER sink: Maltrail's CEF line, sent to
// every endpoint of endpoints (see SplitEndpoints).
func NewSyslog(endpoints string, c *CEF) (*Remote, error) {
	return newRemote("SYSLOG_SERVER", "syslog", endpoints, c.Append)
}

// NewLogstash returns the LOGSTASH_SERVER sink: Maltrail's JSON object,
// sent to every endpoint of endpoints (see SplitEndpoints).
func NewLogstash(endpoints string, j *JSON) (*Remote, error) {
	return newRemote("LOGSTASH_SERVER", "logstash", endpoints, j.Append)
}

func newRemote(key, kind, endpoints string, format func([]byte, int64, *maltrail.LineFields) []byte) (*Remote, error) {
	addrs := SplitEndpoints(endpoints)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("sink: %s %q: no endpoint (want host:port, several separated by ',', ';' or spaces)", key, endpoints)
	}
	r := &Remote{name: kind + ":" + strings.Join(addrs, ","), format: format, buf: make([]byte, 0, 512)}
	for _, a := range addrs {
		ep, err := newEndpoint(key, a)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.eps = append(r.eps, ep)
	}
	return r, nil
}

// Name implements Sink.
func (r *Remote) Name() string { return r.name }

// Sent returns how many datagrams were handed to the kernel.
func (r *Remote) Sent() uint64 { return r.sent.Load() }

// Errors returns how many datagrams could not be sent, plus the lines that
// were not Maltrail log lines.
func (r *Remote) Errors() uint64 { return r.errs.Load() }

// Emit formats the event of line and sends it to every endpoint. A failing
// endpoint does not keep the event from the others.
func (r *Remote) Emit(sec int64, line []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.errs.Add(1)
		return fmt.Errorf("sink: %s: %w", r.name, net.ErrClosed)
	}
	if err := r.fields.Split(line); err != nil {
		r.errs.Add(1)
		return fmt.Errorf("sink: %s: %w", r.name, err)
	}
	r.buf = r.format(r.buf[:0], sec, &r.fields)
	var errs []error
	for _, ep := range r.eps {
		if err := ep.send(r.buf); err != nil {
			r.errs.Add(1)
			errs = append(errs, err)
			continue
		}
		r.sent.Add(1)
	}
	return errors.Join(errs...)
}

// Close closes every endpoint's socket.
func (r *Remote) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	var errs []error
	for _, ep := range r.eps {
		if err := ep.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
