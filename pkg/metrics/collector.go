package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xtrail/xtrail/pkg/collector"
)

// Collector collects the Maltrail-compatible collector's metrics from its
// Stats.
type Collector struct {
	Stats func() collector.Stats
}

var (
	descColDatagrams = prometheus.NewDesc("xtrail_collector_datagrams_total",
		"Event datagrams received.", nil, nil)
	descColWritten = prometheus.NewDesc("xtrail_collector_lines_written_total",
		"Event lines appended to the daily log.", nil, nil)
	descColRejected = prometheus.NewDesc("xtrail_collector_rejected_total",
		"Datagrams not written, by reason.", []string{"reason"}, nil)
	descColLast = prometheus.NewDesc("xtrail_collector_last_datagram_timestamp_seconds",
		"When the last datagram was received (Unix time).", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descColDatagrams, descColWritten, descColRejected, descColLast} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.Stats()
	counter(ch, descColDatagrams, st.Datagrams)
	counter(ch, descColWritten, st.Written)
	// every reason, so a dashboard has its series before the first
	// rejection; and any other the collector counts
	for r := collector.DropBadSec; r <= collector.DropOutOfWindow; r++ {
		counter(ch, descColRejected, st.Dropped[r], r.String())
	}
	for r, n := range st.Dropped {
		if r < collector.DropBadSec || r > collector.DropOutOfWindow {
			counter(ch, descColRejected, n, r.String())
		}
	}
	if !st.Last.IsZero() {
		gauge(ch, descColLast, float64(st.Last.UnixNano())/1e9)
	}
}
