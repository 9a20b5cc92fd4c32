package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xtrail/xtrail/pkg/d4server"
)

// Server collects the D4 server's metrics from its Stats, and its Redis
// store's when Redis is set.
type Server struct {
	Stats func() d4server.Stats
	Redis func() d4server.RedisStats // nil: the in-process store
}

var (
	descSrvActive = prometheus.NewDesc("xtrail_server_connections",
		"Connections open now (sensors connected, and peers not yet authenticated).", nil, nil)
	descSrvSessions = prometheus.NewDesc("xtrail_server_sensor_sessions",
		"Authenticated sessions open now: the sensors connected (a sensor may hold several, up to -max-conns-per-sensor).", nil, nil)
	descSrvConns = prometheus.NewDesc("xtrail_server_connections_total",
		"Connections admitted.", nil, nil)
	descSrvFrames = prometheus.NewDesc("xtrail_server_frames_total",
		"D4 frames accepted (HMAC verified).", nil, nil)
	descSrvBytes = prometheus.NewDesc("xtrail_server_payload_bytes_total",
		"Payload bytes of the accepted frames.", nil, nil)
	descSrvLines = prometheus.NewDesc("xtrail_server_lines_total",
		"Event lines stored in at least one analyzer queue.", nil, nil)
	descSrvRejected = prometheus.NewDesc("xtrail_server_rejected_total",
		"Frames and connections refused, by reason; each closed a connection.", []string{"reason"}, nil)
	descSrvUnrouted = prometheus.NewDesc("xtrail_server_unrouted_lines_total",
		"Lines that came while no queue was registered for them: held and retried, or with -drop-unrouted dropped.", nil, nil)
	descSrvUnroutedDropped = prometheus.NewDesc("xtrail_server_unrouted_dropped_lines_total",
		"Lines dropped for lack of a queue (-drop-unrouted).", nil, nil)
	descSrvThrottled = prometheus.NewDesc("xtrail_server_throttled_frames_total",
		"Frames that waited for their sensor's rate limit (-sensor-rate).", nil, nil)
	descSrvAlreadyStored = prometheus.NewDesc("xtrail_server_already_stored_frames_total",
		"Data frames whose content another session had stored already (a sensor's restamped resend after a lost acknowledgement): acknowledged or skipped, nothing stored again.", nil, nil)
	descSrvClaimWaits = prometheus.NewDesc("xtrail_server_claim_waits_total",
		"Data frames that waited while another session stored the same frame.", nil, nil)
	descSrvTakenOver = prometheus.NewDesc("xtrail_server_claims_taken_over_total",
		"Data frames taken over from a session whose server died or stopped while storing them; their lines may be stored twice.", nil, nil)
	descSrvReplicaWaits = prometheus.NewDesc("xtrail_server_replica_wait_timeouts_total",
		"WAITs for Redis replicas that timed out and were repeated (-redis-replica-timeout): frames held unacknowledged.", nil, nil)
	descSrvRestores = prometheus.NewDesc("xtrail_server_redis_restores_total",
		"Times Redis was found emptied and the registrations, queues and -keys sensors were written again.", nil, nil)
	descSrvReadErrors = prometheus.NewDesc("xtrail_server_read_errors_total",
		"TLS or transport errors and truncated frames.", nil, nil)
	descSrvStoreErrors = prometheus.NewDesc("xtrail_server_store_errors_total",
		"Failed store (Redis) calls; their lines are retried.", nil, nil)
	descSrvPanics = prometheus.NewDesc("xtrail_server_panics_total",
		"Connection handlers that panicked (a bug), recovered.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSrvActive, descSrvSessions, descSrvConns, descSrvFrames, descSrvBytes, descSrvLines,
		descSrvRejected, descSrvUnrouted, descSrvUnroutedDropped, descSrvThrottled, descSrvAlreadyStored, descSrvClaimWaits,
		descSrvTakenOver, descSrvReadErrors, descSrvStoreErrors, descSrvPanics} {
		ch <- d
	}
	if s.Redis != nil {
		ch <- descSrvReplicaWaits
		ch <- descSrvRestores
	}
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	gauge(ch, descSrvActive, float64(st.ActiveConns))
	gauge(ch, descSrvSessions, float64(st.Sessions))
	counter(ch, descSrvConns, st.Conns)
	counter(ch, descSrvFrames, st.Frames)
	counter(ch, descSrvBytes, st.PayloadBytes)
	counter(ch, descSrvLines, st.Lines)
	for reason, n := range st.Rejected {
		counter(ch, descSrvRejected, n, reason)
	}
	counter(ch, descSrvUnrouted, st.Unrouted)
	counter(ch, descSrvUnroutedDropped, st.UnroutedDropped)
	counter(ch, descSrvThrottled, st.Throttled)
	counter(ch, descSrvAlreadyStored, st.AlreadyStored)
	counter(ch, descSrvClaimWaits, st.ClaimWaits)
	counter(ch, descSrvTakenOver, st.ClaimsTakenOver)
	if s.Redis != nil {
		rs := s.Redis()
		counter(ch, descSrvReplicaWaits, rs.ReplicaWaits)
		counter(ch, descSrvRestores, rs.Restores)
	}
	counter(ch, descSrvReadErrors, st.ReadErrors)
	counter(ch, descSrvStoreErrors, st.StoreErrors)
	counter(ch, descSrvPanics, st.Panics)
}
