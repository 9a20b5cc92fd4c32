package sensor

import (
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/proto"
)

// kindNames names the record kinds the agent handles, in logs and the exit
// summary; "" is a kind it does not know.
var kindNames = [8]string{
	dataplane.KindIP:   "ip",
	dataplane.KindDNS:  "dns",
	dataplane.KindHTTP: "http",
	dataplane.KindTLS:  "tls",
	dataplane.KindQUIC: "quic",
	dataplane.KindScan: "scan",
}

// Kinds of failure. A record that cannot be handled is logged for the
// first failure of each kind per record kind (Agent.logged), then only
// counted.
const (
	failDecode      uint8 = 1 << iota // the record did not decode: program and agent disagree on the layout
	failKind                          // a record kind the agent does not know
	failTruncated                     // the payload ends before what it starts (usually the snapshot length)
	failMalformed                     // the payload violates its format
	failUnsupported                   // well-formed, of a form the parser does not take
	failDecrypt                       // a QUIC Initial that does not decrypt
	failOther                         // any other parser error
)

const (
	// panicLogEvery spaces the logs of recovered panics: a bug that every
	// packet of an attack triggers logs one line per interval, not one
	// per packet.
	panicLogEvery = 10 * time.Second
	// maxRecordDump bounds the hex of a record in a panic log: the largest
	// record the program writes, so a real record is always dumped whole.
	maxRecordDump = dataplane.RecordHeaderSize + dataplane.SnapMax
	// maxPayloadDump bounds the hex of a payload in a parse-failure log,
	// enough to recognise what it is.
	maxPayloadDump = 64
	// maxStackDump bounds the stack of a panic log.
	maxStackDump = 8 << 10
)

// bad counts a record that did not decode or names an unknown kind, and
// logs the first of each.
func (a *Agent) bad(f uint8, raw []byte, err error) {
	a.stats.Bad.Add(1)
	if a.logged[0]&f != 0 {
		return
	}
	a.logged[0] |= f
	msg := "undecodable ring-buffer record (logged once; bad_records counts them)"
	if f == failKind {
		msg = "ring-buffer record of a kind the agent does not know (logged once; bad_records counts them)"
		err = fmt.Errorf("record kind %d", raw[8])
	}
	a.log.Warn(msg, "err", err, "len", len(raw), "hex", hexDump(raw, maxRecordDump))
}

// malformed counts a candidate whose payload did not parse and logs the
// first failure of each kind per record kind, with what finds the packet
// in a capture: addresses, ports, lengths and the payload's first bytes.
// Parser errors that are no failure (a ClientHello without a server name)
// are not counted.
func (a *Agent) malformed(r *dataplane.Record, err error) {
	f := failureOf(err)
	if f == 0 {
		return
	}
	k := r.Kind & 7
	a.stats.Malformed[k].Add(1)
	if a.logged[k]&f != 0 {
		return
	}
	a.logged[k] |= f
	a.log.Warn("candidate payload not parsed (logged once per record kind and kind of failure; malformed_"+kindNames[k]+" counts them)",
		"kind", kindNames[k], "err", err, "src", r.SrcAddr(), "sport", r.Sport, "dst", r.DstAddr(), "dport", r.Dport,
		"l4proto", r.L4Proto, "cap_len", r.CapLen, "orig_len", r.OrigLen, "payload_hex", hexDump(r.Payload, maxPayloadDump))
}

// failureOf classifies a parser error; 0 means it is no failure.
func failureOf(err error) uint8 {
	pe, ok := err.(*proto.Error)
	if !ok {
		return failOther
	}
	switch pe.Kind {
	case proto.ErrNoSNI:
		return 0
	case proto.ErrTruncated:
		return failTruncated
	case proto.ErrMalformed:
		return failMalformed
	case proto.ErrUnsupported:
		return failUnsupported
	case proto.ErrDecrypt:
		return failDecrypt
	}
	return failOther
}

// recovered counts a panic met while handling raw (nil: while the clock
// ticked) and logs it with the record's hex and the stack, at most once
// per panicLogEvery.
func (a *Agent) recovered(v any, raw []byte) {
	a.stats.Panics.Add(1)
	now := time.Now()
	if !a.panicLogged.IsZero() && now.Sub(a.panicLogged) < panicLogEvery {
		a.panicsUnlogged++
		return
	}
	a.panicLogged = now
	stack := debug.Stack()
	if len(stack) > maxStackDump {
		stack = stack[:maxStackDump]
	}
	args := []any{"panic", fmt.Sprint(v), "unlogged_before", a.panicsUnlogged}
	a.panicsUnlogged = 0
	if raw != nil {
		args = append(args, "record_len", len(raw), "record_hex", hexDump(raw, maxRecordDump))
	} else {
		args = append(args, "during", "clock tick or flush")
	}
	args = append(args, "stack", string(stack))
	a.log.Error("bug: handling a record panicked; recovered, the sensor goes on (panics counts them; please report this log line)", args...)
}

// hexDump is the hex of b's first max bytes, with "..." when b is longer.
func hexDump(b []byte, max int) string {
	if len(b) <= max {
		return hex.EncodeToString(b)
	}
	return hex.EncodeToString(b[:max]) + "..."
}
