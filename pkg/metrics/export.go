package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xtrail/xtrail/pkg/export"
)

// Exporters collects the metrics of queue exporters (`xtrail export`, or
// the server's built-in ones), labelled by queue.
type Exporters struct {
	mu   sync.Mutex
	list []namedExporter
}

type namedExporter struct {
	queue string
	e     *export.Exporter
}

// Add reports e's counters under the queue label.
func (x *Exporters) Add(queue string, e *export.Exporter) {
	x.mu.Lock()
	x.list = append(x.list, namedExporter{queue, e})
	x.mu.Unlock()
}

func exportDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, []string{"queue"}, nil)
}

var (
	descExpSent         = exportDesc("xtrail_export_sent_lines_total", "Queue lines delivered to the target, and so acknowledged in the queue.")
	descExpRecovered    = exportDesc("xtrail_export_recovered_lines_total", "Of the lines sent, those a previous run had left in flight (they may have arrived twice).")
	descExpResent       = exportDesc("xtrail_export_resent_lines_total", "Lines written again after a refusal or a failure.")
	descExpRefusals     = exportDesc("xtrail_export_refusals_total", "Failed or refused sends (each backed off and retried).")
	descExpBuried       = exportDesc("xtrail_export_buried_lines_total", "Lines that can never be sent, moved to the queue's dead-letter list.")
	descExpReclaimed    = exportDesc("xtrail_export_reclaimed_total", "Times this exporter found its in-flight lines taken over by other exporters (it stalled).")
	descExpLostBacklog  = exportDesc("xtrail_export_lost_backlog_lines_total", "Lines the store lost while they waited in the queue (Redis restarted empty), as far as the last backlog reading tells: a lower bound.")
	descExpStoreLosses  = exportDesc("xtrail_export_store_losses_total", "Times the store was found emptied.")
	descExpReregistered = exportDesc("xtrail_export_reregistered_total", "Times the queue's registration was found missing and written again.")
	descExpQueueErrors  = exportDesc("xtrail_export_queue_errors_total", "Failed store calls (each retried).")
	descExpBacklog      = exportDesc("xtrail_export_backlog_lines", "Lines waiting in the queue at the exporter's last reading.")
	descExpLag          = exportDesc("xtrail_export_lag_seconds", "Age of the last line sent when it was sent: now less its leading epoch second (the event's time).")
	descExpOverflows    = exportDesc("xtrail_export_overflows_total", "Sends during which a collector on this host dropped datagrams for lack of buffer space (sent again, pace lowered).")
	descExpTakenOver    = exportDesc("xtrail_export_taken_over_lines_total", "Lines taken over from other exporters of the queue whose claim expired (each may arrive twice).")
	descExpRate         = exportDesc("xtrail_export_rate_lines_per_second", "The exporter's current pace: the configured one, or the one overflows set; 0 is unpaced.")
)

// Describe implements prometheus.Collector.
func (x *Exporters) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descExpSent, descExpRecovered, descExpResent, descExpRefusals, descExpBuried,
		descExpReclaimed, descExpLostBacklog, descExpStoreLosses, descExpReregistered, descExpQueueErrors,
		descExpBacklog, descExpLag, descExpOverflows, descExpTakenOver, descExpRate} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (x *Exporters) Collect(ch chan<- prometheus.Metric) {
	x.mu.Lock()
	list := x.list
	x.mu.Unlock()
	for _, n := range list {
		st := n.e.Stats()
		for _, c := range []struct {
			d *prometheus.Desc
			v uint64
		}{{descExpSent, st.Sent}, {descExpRecovered, st.Recovered}, {descExpResent, st.Resent}, {descExpRefusals, st.Refusals},
			{descExpBuried, st.Buried}, {descExpReclaimed, st.Reclaimed}, {descExpLostBacklog, st.LostBacklog},
			{descExpStoreLosses, st.StoreLosses}, {descExpReregistered, st.Reregistered}, {descExpQueueErrors, st.QueueErrors},
			{descExpOverflows, st.Overflows}, {descExpTakenOver, st.TakenOver}} {
			counter(ch, c.d, c.v, n.queue)
		}
		gauge(ch, descExpBacklog, float64(st.Backlog), n.queue)
		gauge(ch, descExpRate, st.Rate, n.queue)
		if st.Lag > 0 { // zero: no dated line sent yet
			gauge(ch, descExpLag, st.Lag.Seconds(), n.queue)
		}
	}
}
