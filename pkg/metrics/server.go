package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xtrail/xtrail/pkg/d4server"
)

// Server collects the D4 server's metrics from its Stats.
type Server struct {
	Stats func() d4server.Stats
}

var (
	descSrvActive = prometheus.NewDesc("xtrail_server_connections",
		"Connections open now (sensors connected, and peers not yet authenticated).", nil, nil)
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
	descSrvReadErrors = prometheus.NewDesc("xtrail_server_read_errors_total",
		"TLS or transport errors and truncated frames.", nil, nil)
	descSrvStoreErrors = prometheus.NewDesc("xtrail_server_store_errors_total",
		"Failed store (Redis) calls; their lines are retried.", nil, nil)
	descSrvPanics = prometheus.NewDesc("xtrail_server_panics_total",
		"Connection handlers that panicked (a bug), recovered.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSrvActive, descSrvConns, descSrvFrames, descSrvBytes, descSrvLines,
		descSrvRejected, descSrvUnrouted, descSrvUnroutedDropped, descSrvThrottled, descSrvReadErrors, descSrvStoreErrors, descSrvPanics} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	st := s.Stats()
	gauge(ch, descSrvActive, float64(st.ActiveConns))
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
	counter(ch, descSrvReadErrors, st.ReadErrors)
	counter(ch, descSrvStoreErrors, st.StoreErrors)
	counter(ch, descSrvPanics, st.Panics)
}
