package d4server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/xtrail/xtrail/pkg/d4"
)

// DefaultQueueMaxSize is d4-core's sample analyzer_queues_max_size: the LTRIM
// bound of a queue whose analyzer:<q> hash has no max_size field.
const DefaultQueueMaxSize = 100_000_000

// maxForcedLine is where d4-core's line splitter forces a line break when a
// stream carries no '\n' (spec §2), so one sensor cannot grow a line forever.
const maxForcedLine = 100_000

// Store persists what the server accepts: sensor metadata and statistics,
// session state, replay state, and the analyzer queues the exporters
// consume. RedisStore writes d4-core's layout (spec §4) so d4-core's
// analyzers and web UI work on our data; MemStore keeps the same semantics in
// process for demos and tests (not durable).
//
// All methods are safe for concurrent use. Slices passed in are only read
// during the call.
type Store interface {
	// Init records the server's accepted types, as d4-core does on every
	// start, so its web UI and analyzers see a consistent server.
	Init(ctx context.Context) error
	// SensorSeen records one accepted (HMAC-verified) frame.
	SensorSeen(ctx context.Context, s Sighting) error
	// SessionState records a session change (d4-core's active sets).
	SessionState(ctx context.Context, ev SessionEvent) error
	// SetError stores msg as the sensor's last error (d4-core's Error field).
	SetError(ctx context.Context, uuid, msg string) error
	// ClaimFrame checks an authentic data frame for every server on the
	// store, in one step: the replay mark of its (uuid, timestamp, HMAC)
	// first, then the claim of its content (uuid, SHA-256 of the payload).
	// A frame whose mark another session holds is a replay (ClaimRefused);
	// otherwise the mark becomes the session's, and the session takes the
	// content's claim unless another session stored that content
	// (ClaimStored: a resend, restamped, of a frame stored elsewhere) or
	// holds a live claim on it (ClaimBusy). It charges m.Bytes to the
	// sensor's rate when the store limits it and the claim is taken. The
	// session that owns the claim stores the lines and then calls
	// FrameStored. Calling it again while owning the claim renews the
	// claim's lease.
	ClaimFrame(ctx context.Context, m Mark) (Claim, error)
	// FrameStored marks the frame's content stored by m.Session for
	// m.ClaimTTL. Call it only once the frame's lines are stored (on a
	// replica too, where the store waits for replicas), and make it as
	// durable.
	FrameStored(ctx context.Context, m Mark) error
	// PushLines appends lines (without '\n') to every analyzer queue of
	// metaType that receives data from sensor uuid, oldest line first, and
	// returns how many queues received them: 0 means no queue is registered
	// and nothing was stored.
	PushLines(ctx context.Context, metaType, uuid string, lines [][]byte) (int, error)
	// RegisterQueue creates (or completes) an analyzer queue for metaType
	// and returns its uuid; an empty queueUUID makes a new dashed uuid4. The
	// description is set only on a queue that has none.
	RegisterQueue(ctx context.Context, metaType, queueUUID, description string) (string, error)
	// Close releases connections.
	Close() error
}

// Mark identifies a frame for replay protection (UUID, Timestamp, HMAC:
// the replay mark) and for storing its lines once (UUID, Content: the
// content claim).
type Mark struct {
	UUID      string // sensor, 32 hex
	Session   string // the session that sent it
	Timestamp uint64
	HMAC      [32]byte
	Expires   time.Time // when the replay mark goes: a repeat can no longer pass the time window
	// Content is the SHA-256 of the frame's payload: a sensor resends a
	// frame with a fresh timestamp and HMAC, and the same payload.
	Content [32]byte
	// ClaimTTL is how long the content claim lives after it is taken or
	// marked stored: a resend later than that may be stored again.
	ClaimTTL time.Duration
	// Lease is how long a claim holds without being renewed or the frame
	// marked stored (the server's claimLease).
	Lease time.Duration

	// Bytes is charged to the sensor's rate (bytes/s, 0: unlimited, with
	// Burst) by a store that limits it for all servers, when the claim
	// is taken; 0 charges nothing (a renewal).
	Bytes int64
	Rate  float64
	Burst int64
}

// ClaimState is what ClaimFrame found.
type ClaimState uint8

// Claim states.
const (
	// ClaimOwned: the session holds the content's claim: it was new, the
	// session's own (D4 has no sequence number, so a sensor may send one
	// frame twice in a session), or its claimant's lease lapsed.
	ClaimOwned ClaimState = iota + 1
	// ClaimStored: another session stored this content (the sensor's
	// restamped resend of a frame whose acknowledgement it lost):
	// acknowledge it, store nothing.
	ClaimStored
	// ClaimBusy: another session's claim on the content is live: it is
	// storing it now. Ask again later.
	ClaimBusy
	// ClaimRefused: another session sent this very frame (uuid, timestamp,
	// HMAC) within the time window: a replay, refused.
	ClaimRefused
)

// claimLease is how long a claim holds without being renewed or the frame
// marked stored. A session whose server died (or stopped) while storing the
// frame loses it after this, so a resend is not held up longer; its owner
// renews it before each store attempt once half of it has passed.
const claimLease = 10 * time.Second

// claimMargin is how much longer than the time window a content claim
// lives: a sensor resends the frames a lost connection left unacknowledged,
// restamped, once it reconnects, and a resend up to the window plus this
// after the frame was stored (10 min by default) is recognised. The
// sensor's ResendWithin (pkg/d4) counts the later ones, which may be
// stored twice.
const claimMargin = 5 * time.Minute

// Claim is ClaimFrame's answer.
type Claim struct {
	State ClaimState
	// TakenOver: the claim was another session's, whose lease lapsed
	// before it marked the frame stored (its server was killed or
	// stopped): its lines may be stored already.
	TakenOver bool
	// Limited: the store charged Mark.Bytes to the sensor's rate for every
	// server; Wait is how long the frame must wait for it. Without it the
	// server limits the sensor's rate in process.
	Limited bool
	Wait    time.Duration
}

// SessionEventKind is what happened to a session.
type SessionEventKind uint8

// Session events, in the order a session goes through them.
const (
	SessionOpened      SessionEventKind = iota + 1 // first frame verified (Type is its type)
	SessionMetaType                                // the meta header parsed (MetaType)
	SessionTypeChanged                             // 2 -> 254
	SessionClosed                                  // the connection ended (Type is the last type)
)

// SessionEvent is one session change.
type SessionEvent struct {
	Kind     SessionEventKind
	UUID     string // sensor, 32 hex
	Session  string // d4-core's <s>: a dashed uuid4 per connection
	Type     uint8
	MetaType string
}

// Sighting is one accepted frame, as SensorSeen records it.
type Sighting struct {
	UUID string // sensor uuid, 32 lowercase hex (d4-core's <u>)
	IP   string // peer IP, IPv4-mapped prefix stripped
	Type uint8  // D4 frame type
	// MetaType is the meta-type name once the session's meta header is
	// known (type-254 frames), else "".
	MetaType string
	// SessionStart is true for the session's first stored frame, which
	// d4-core records in list_uuid_ip:<u>.
	SessionStart bool
	Time         time.Time
}

// Key names of d4-core's layout (spec §4), kept in one place so RedisStore
// and the tests agree.
func keyMetadataUUID(u string) string { return "metadata_uuid:" + u }
func keyAnalyzerList(metaType, q string) string {
	return "analyzer:" + metaType + ":" + q
}

func keyAnalyzerMeta(q string) string            { return "analyzer:" + q }
func keyQueuesOfMetaType(metaType string) string { return "analyzer:254:" + metaType }
func keySensorQueues(metaType, u string) string {
	return "sensor:queues:" + metaType + ":" + u
}

// day is d4-core's <d>: the server-local date.
func day(t time.Time) string { return t.Local().Format("20060102") }

// ipStamp is an element of list_uuid_ip:<u>: "<ip>-<YYYYmmddHHMMSS>", local time.
func ipStamp(ip string, t time.Time) string { return ip + "-" + t.Local().Format("20060102150405") }

// floatEpoch renders time.time() as Python prints it, for last_updated.
func floatEpoch(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMicro())/1e6, 'f', -1, 64)
}

// checkQueueArgs validates RegisterQueue's arguments and supplies d4-core's
// default queue uuid (a dashed uuid4) when none is given.
func checkQueueArgs(metaType, queueUUID string) (string, error) {
	if metaType == "" || strings.ContainsAny(metaType, ": \t\r\n{}") {
		return "", fmt.Errorf("d4server: invalid meta type %q", metaType)
	}
	if queueUUID == "" {
		u, err := d4.NewUUIDv4()
		if err != nil {
			return "", fmt.Errorf("d4server: new queue uuid: %w", err)
		}
		return u.String(), nil
	}
	if strings.ContainsAny(queueUUID, ": \t\r\n{}") {
		return "", fmt.Errorf("d4server: invalid queue uuid %q", queueUUID)
	}
	return queueUUID, nil
}
