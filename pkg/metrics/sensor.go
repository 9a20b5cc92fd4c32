package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xtrail/xtrail/pkg/d4"
	"github.com/xtrail/xtrail/pkg/sensor"
	"github.com/xtrail/xtrail/pkg/sink"
)

// Sensor collects a running sensor's metrics: the XDP program's counters
// summed over CPUs, the agent's counters, events per type, the trails,
// every output's tally and the D4 client. Nothing is reported for a part
// that is not there (no sensor running yet, no D4 output).
type Sensor struct {
	Probe *sensor.Probe
	Sinks interface{ Counts() []sink.Count } // nil: not reported
	D4    *d4.Client                         // nil: no D4 output
}

var (
	descXDP = prometheus.NewDesc("xtrail_xdp_counter_total",
		"XDP program counters summed over CPUs, one per branch of the program (bpf/xtrail.h enum xt_counter): packets, ringbuf_full, cand_dns, ...",
		[]string{"counter"}, nil)
	descCaptureDropped = prometheus.NewDesc("maltrail_capture_dropped_total",
		"Records the XDP program could not hand to the agent because the ring buffer was full (Maltrail's name; xtrail_xdp_counter_total{counter=\"ringbuf_full\"}).",
		nil, nil)
	descStateSaturations = prometheus.NewDesc("maltrail_state_saturations_total",
		"Times bounded detection state was full: new scan keys the kernel refused (xtrail_xdp_counter_total{counter=\"scan_key_cap\"}), and heuristic table entries evicted or names not kept (xtrail_sensor_counter_total{counter=~\"heur_.*_(evicted|capped)\"}) (Maltrail's name).",
		nil, nil)
	descAgent = prometheus.NewDesc("xtrail_sensor_counter_total",
		"The agent's counters, as named in the sensor's exit summary: records, records_dns, malformed_tls, events, emit_errors, ...",
		[]string{"counter"}, nil)
	descEvents = prometheus.NewDesc("xtrail_sensor_events_total",
		"Events handed to the outputs, by trail type (IP, IPORT, DNS, URL, HTTP, UA, PATH, PORT, CERT, other).",
		[]string{"type"}, nil)
	descTrailGeneration = prometheus.NewDesc("maltrail_trail_generation",
		"Trail sets this sensor made live since it started: 1 after the start's load, one more per reload (Maltrail's name).",
		nil, nil)
	descTrailMemory = prometheus.NewDesc("xtrail_trail_maps_bytes",
		"Kernel memory of the trail maps: the live generation, the idle one (non-zero while a load fills it), the info records, and the rest.",
		[]string{"part"}, nil)
	descTrailsLoaded = prometheus.NewDesc("xtrail_trails_loaded_timestamp_seconds",
		"When the live trail generation was loaded (Unix time).",
		nil, nil)
	descSinkSent = prometheus.NewDesc("xtrail_sink_sent_total",
		"Events an output took (file, console, udp:HOST:PORT, syslog:..., logstash:..., d4).",
		[]string{"sink"}, nil)
	descSinkFailed = prometheus.NewDesc("xtrail_sink_failed_total",
		"Events an output refused.",
		[]string{"sink"}, nil)
	descLocalErrors = prometheus.NewDesc("maltrail_local_log_errors_total",
		"Events the LOG_DIR file output failed to write (Maltrail's name).",
		nil, nil)
	descRemoteErrors = prometheus.NewDesc("maltrail_remote_log_errors_total",
		"Events the network outputs (LOG_SERVER, SYSLOG_SERVER, LOGSTASH_SERVER, D4) refused (Maltrail's name).",
		nil, nil)
	descD4Connected = prometheus.NewDesc("xtrail_d4_connected",
		"1 while the D4 client has a session with the server, else 0.",
		nil, nil)
	descD4Pending = prometheus.NewDesc("xtrail_d4_pending_lines",
		"Event lines in the D4 client's spool that are not yet delivered (earlier runs' included).",
		nil, nil)
	descD4Spooled = prometheus.NewDesc("xtrail_d4_spooled_lines_total",
		"Event lines the D4 client took into its spool.",
		nil, nil)
	descD4Acked = prometheus.NewDesc("xtrail_d4_acked_lines_total",
		"Event lines delivered and removed from the spool: acknowledged (QUIC) or received by the server's TCP (TLS).",
		nil, nil)
	descD4DroppedOldest = prometheus.NewDesc("xtrail_d4_dropped_oldest_lines_total",
		"Event lines deleted undelivered from a full spool, the oldest first (D4_SPOOL_MAX).",
		nil, nil)
	descD4Recovered = prometheus.NewDesc("xtrail_d4_recovered_lines_total",
		"Event lines found in the spool at start, left by an earlier run.",
		nil, nil)
	descD4Failovers = prometheus.NewDesc("xtrail_d4_failovers_total",
		"Moves to the next D4_SERVER entry after a failure.",
		nil, nil)
	descD4Rejected = prometheus.NewDesc("xtrail_d4_rejected_total",
		"Connections the server ended by rejecting a frame (QUIC).",
		nil, nil)
	descD4Sent = prometheus.NewDesc("xtrail_d4_sent_lines_total",
		"Event lines the D4 client wrote in frames.",
		nil, nil)
	descD4Frames = prometheus.NewDesc("xtrail_d4_frames_total",
		"Data frames (type 254) the D4 client wrote.",
		nil, nil)
	descD4Dropped = prometheus.NewDesc("xtrail_d4_dropped_lines_total",
		"Event lines the D4 client refused: longer than a frame or the spool, or the disk failed.",
		nil, nil)
	descD4Reconnects = prometheus.NewDesc("xtrail_d4_reconnects_total",
		"D4 sessions established after the first one.",
		nil, nil)
	descD4DialErrors = prometheus.NewDesc("xtrail_d4_dial_errors_total",
		"Failed D4 connection attempts.",
		nil, nil)
	descD4WriteErrors = prometheus.NewDesc("xtrail_d4_write_errors_total",
		"Failed D4 frame writes; each ended a session.",
		nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Sensor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descXDP, descCaptureDropped, descStateSaturations, descAgent, descEvents,
		descTrailGeneration, descTrailMemory, descTrailsLoaded, descSinkSent, descSinkFailed, descLocalErrors,
		descRemoteErrors, descD4Connected, descD4Pending, descD4Sent, descD4Frames, descD4Dropped, descD4Reconnects,
		descD4DialErrors, descD4WriteErrors, descD4Spooled, descD4Acked, descD4DroppedOldest, descD4Recovered,
		descD4Failovers, descD4Rejected} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Sensor) Collect(ch chan<- prometheus.Metric) {
	if s.Probe != nil {
		if snap, ok := s.Probe.Snapshot(); ok {
			collectSnapshot(ch, &snap)
			// what could not be read fails the scrape's error log, not the rest
			for _, err := range snap.Errors {
				ch <- prometheus.NewInvalidMetric(descXDP, err)
			}
		}
	}
	if s.Sinks != nil {
		collectSinks(ch, s.Sinks.Counts())
	}
	if s.D4 != nil {
		collectD4(ch, s.D4)
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func collectSnapshot(ch chan<- prometheus.Metric, s *sensor.Snapshot) {
	var saturations uint64
	for _, c := range s.XDP {
		counter(ch, descXDP, c.Value, c.Name)
		switch c.Name {
		case "ringbuf_full":
			counter(ch, descCaptureDropped, c.Value)
		case "scan_key_cap":
			saturations += c.Value
		}
	}
	for _, c := range s.Agent {
		counter(ch, descAgent, c.Value, c.Name)
		if saturated(c.Name) {
			saturations += c.Value
		}
	}
	counter(ch, descStateSaturations, saturations)
	for i, name := range sensor.EventTypeNames {
		counter(ch, descEvents, s.EventTypes[i], name)
	}
	gauge(ch, descTrailGeneration, float64(s.TrailLoads))
	m := s.TrailMemory
	for _, p := range []struct {
		name string
		v    uint64
	}{{"live", m.Live}, {"idle", m.Idle}, {"metas", m.Metas}, {"other", m.Other}} {
		gauge(ch, descTrailMemory, float64(p.v), p.name)
	}
	if !s.TrailsLoaded.IsZero() {
		gauge(ch, descTrailsLoaded, float64(s.TrailsLoaded.UnixNano())/1e9)
	}
}

// saturated reports whether an agent counter counts a full table: the
// heuristics' evictions and capped name lists.
func saturated(name string) bool {
	return strings.HasPrefix(name, "heur_") && (strings.HasSuffix(name, "_evicted") || strings.HasSuffix(name, "_capped"))
}

// collectSinks reports every output, and Maltrail's local (LOG_DIR) and
// remote (network outputs) error counts. The console is neither.
func collectSinks(ch chan<- prometheus.Metric, counts []sink.Count) {
	var local, remote uint64
	for _, c := range counts {
		counter(ch, descSinkSent, c.Sent, c.Sink)
		counter(ch, descSinkFailed, c.Failed, c.Sink)
		switch {
		case c.Sink == "file":
			local += c.Failed
		case c.Sink == "d4" || strings.Contains(c.Sink, ":"): // udp:, syslog:, logstash:
			remote += c.Failed
		}
	}
	counter(ch, descLocalErrors, local)
	counter(ch, descRemoteErrors, remote)
}

func collectD4(ch chan<- prometheus.Metric, c *d4.Client) {
	st := c.Stats()
	up := 0.0
	if c.Connected() {
		up = 1
	}
	gauge(ch, descD4Connected, up)
	gauge(ch, descD4Pending, float64(st.Pending))
	for _, x := range []struct {
		d *prometheus.Desc
		v uint64
	}{{descD4Sent, st.Sent}, {descD4Frames, st.Frames}, {descD4Dropped, st.Dropped}, {descD4Reconnects, st.Reconnects},
		{descD4DialErrors, st.DialErrors}, {descD4WriteErrors, st.WriteErrors}, {descD4Spooled, st.Spooled},
		{descD4Acked, st.Acked}, {descD4DroppedOldest, st.DroppedOldest}, {descD4Recovered, st.Recovered},
		{descD4Failovers, st.Failovers}, {descD4Rejected, st.Rejected}} {
		counter(ch, x.d, x.v)
	}
}
