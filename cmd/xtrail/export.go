package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"

	"github.com/xtrail/xtrail/pkg/d4server"
	"github.com/xtrail/xtrail/pkg/export"
)

// runExport takes d4_export_udp.py's arguments (-t -u -i -p, -ri/-rp) so it
// can replace it in place; --redis names the server as a URL instead.
func runExport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	typ := fs.String("t", "", "queue type or meta-type name, used literally in the key (maltrail)")
	queue := fs.String("u", "", "analyzer queue UUID, exactly as stored")
	ip := fs.String("i", "127.0.0.1", "destination address")
	port := fs.Int("p", 0, "destination UDP port")
	fs.Bool("n", true, "ignored: one line per datagram, always (as d4_export_udp.py)")
	redisHost := fs.String("ri", "127.0.0.1", "Redis host (d4_export_udp.py's -ri)")
	redisPort := fs.Int("rp", 6380, "Redis port (d4_export_udp.py's -rp)")
	redisURL := fs.String("redis", "", "Redis URL of the metadata db (overrides -ri/-rp); queues live in -analyzer-db")
	analyzerDB := fs.Int("analyzer-db", d4server.DefaultAnalyzerDB, "Redis db of the analyzer queues")
	register := fs.Bool("register", true, "register the queue for its type so the server fills it")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *typ == "" || *queue == "" || *port == 0 {
		fs.Usage()
		return errors.New("-t, -u and -p are required")
	}
	if *port < 1 || *port > 65535 {
		return fmt.Errorf("-p %d: not a port", *port)
	}
	log := newLogger(*quiet)
	url := *redisURL
	if url == "" {
		url = "redis://" + net.JoinHostPort(*redisHost, strconv.Itoa(*redisPort)) + "/0"
	}
	st, err := d4server.NewRedisStore(url, *analyzerDB)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Ping(ctx); err != nil {
		return err
	}
	if *register {
		if _, err := st.RegisterQueue(ctx, *typ, *queue, "xtrail export"); err != nil {
			return err
		}
	}
	conn, err := export.DialUDP(ctx, *ip, *port)
	if err != nil {
		return err
	}
	defer conn.Close()
	e := export.New(st.Queue(*typ, *queue), conn, log)
	log.Info("exporting", "queue", *queue, "type", *typ, "to", conn.RemoteAddr().String())
	err = e.Run(ctx)
	s := e.Stats()
	log.Info("export counters", "sent", s.Sent, "recovered", s.Recovered, "send_errors", s.SendErrors, "buried", s.Buried)
	return err
}
