package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
	"github.com/xtrail/xtrail/pkg/metrics"
)

// runExport takes d4_export_udp.py's arguments (-t -u -i -p, -ri/-rp) so it
// can replace it in place; -redis names the server as a URL instead, and
// -target picks another kind of target.
func runExport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	typ := fs.String("t", "", "queue type or meta-type name, used literally in the key (maltrail)")
	queue := fs.String("u", "", "analyzer queue UUID, exactly as stored")
	ip := fs.String("i", "127.0.0.1", "destination address")
	port := fs.Int("p", 0, "destination UDP port")
	target := fs.String("target", "", "destination as udp://, tcp://, syslog:// or syslog+tcp://HOST:PORT (overrides -i/-p)")
	fs.Bool("n", true, "ignored: one line per datagram, always (as d4_export_udp.py)")
	redisHost := fs.String("ri", "127.0.0.1", "Redis host (d4_export_udp.py's -ri)")
	redisPort := fs.Int("rp", 6380, "Redis port (d4_export_udp.py's -rp)")
	var rf redisFlags
	rf.register(fs)
	register := fs.Bool("register", true, "register the queue for its type so the server fills it, and restore the registration when it goes missing")
	host, _ := os.Hostname()
	consumer := fs.String("consumer", host, "this exporter's name among the queue's consumers (its in-flight list); unique per live exporter, the same across restarts")
	claim := fs.Duration("claim-timeout", d4server.DefaultClaimTimeout, "after this long without a sign of life, an exporter's in-flight lines go to the queue's other exporters")
	batch := fs.Int("batch", export.DefaultBatch, "lines moved and sent per round trip")
	rate := fs.Float64("rate", 0, "lines per second at most (0: no limit; a receiver on this host that overflows is detected and paced; give 20000 for Maltrail's Python collector on another host)")
	confirm := fs.Duration("confirm-delay", export.DefaultConfirmDelay, "UDP: wait this long after a batch for an ICMP refusal before taking it as delivered")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	metricsAddr := metricsFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := notNegative(fs, "batch", "confirm-delay", "analyzer-db", "redis-replica-timeout"); err != nil {
		return err
	}
	if *rate < 0 {
		return fmt.Errorf("-rate %g: want lines/s, 0 for no limit", *rate)
	}
	if *typ == "" || *queue == "" || (*port == 0 && *target == "") {
		fs.Usage()
		return errors.New("-t, -u and -p are required (-target may replace -i and -p)")
	}
	if strings.ContainsAny(*queue, "{}: \t") || strings.ContainsAny(*typ, "{}: \t") {
		return fmt.Errorf("-t %q -u %q: braces, colons and spaces are not allowed (they would break the key names)", *typ, *queue)
	}
	if *target == "" {
		if *port < 1 || *port > 65535 {
			return fmt.Errorf("-p %d: not a port", *port)
		}
		*target = "udp://" + net.JoinHostPort(*ip, strconv.Itoa(*port))
	}
	if *claim < 3*time.Second {
		return fmt.Errorf("-claim-timeout %s: want at least 3s (a live exporter refreshes its claim every second or so)", *claim)
	}
	log := newLogger(*quiet)
	mln, err := listenMetrics(*metricsAddr, log)
	if err != nil {
		return err
	}
	if mln != nil {
		defer mln.Close()
	}
	if rf.metadata == "" {
		rf.metadata = "redis://" + net.JoinHostPort(*redisHost, strconv.Itoa(*redisPort)) + "/0"
	}
	st, err := rf.open(log)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Ping(ctx); err != nil {
		return err
	}
	cfg := export.Config{Batch: *batch, Rate: *rate, Logger: log}
	if *register {
		cfg.Register = func(ctx context.Context) (bool, error) {
			ok, err := st.QueueRegistered(ctx, *typ, *queue)
			if err != nil || ok {
				return false, err
			}
			// The description is written only on a queue that has none.
			_, err = st.RegisterQueue(ctx, *typ, *queue, "xtrail export")
			return err == nil, err
		}
	}
	tgt, err := export.Dial(ctx, *target, *confirm)
	if err != nil {
		return err
	}
	defer tgt.Close()
	cfg.Queue = st.Queue(*typ, *queue, d4server.Consumer(*consumer), d4server.ClaimTimeout(*claim))
	cfg.Target = tgt
	e := export.New(cfg)
	log.Info("exporting", "queue", *queue, "type", *typ, "to", tgt.Target(), "consumer", *consumer)
	g, gctx := errgroup.WithContext(ctx)
	exporters := &metrics.Exporters{}
	exporters.Add(*queue, e)
	if err := serveMetrics(gctx, g, mln, metrics.RoleExport, log, exporters); err != nil {
		return err
	}
	g.Go(func() error { return e.Run(gctx) })
	err = g.Wait()
	logExportStats(log, e.Stats())
	return err
}

func logExportStats(log interface{ Info(string, ...any) }, s export.Stats) {
	log.Info("export counters", "sent", s.Sent, "recovered_possible_duplicates", s.Recovered, "resent", s.Resent,
		"refusals", s.Refusals, "buried", s.Buried, "reclaimed", s.Reclaimed, "taken_over", s.TakenOver, "lost_backlog", s.LostBacklog,
		"store_losses", s.StoreLosses, "reregistered", s.Reregistered, "queue_errors", s.QueueErrors,
		"overflows", s.Overflows, "rate", int64(s.Rate), "backlog", s.Backlog, "lag", s.Lag)
}
