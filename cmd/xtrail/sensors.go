package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xtrail/xtrail/pkg/d4server"
)

// runSensors is `xtrail server sensors add|list|remove|rotate-key`: the
// sensor registry on d4-core's Redis keys, so d4-core's web UI and this
// server agree on who may send.
func runSensors(ctx context.Context, args []string) error {
	usage := errors.New("usage: xtrail server sensors add|list|remove|rotate-key [flags] [UUID]")
	if len(args) == 0 {
		return usage
	}
	verb := args[0]
	fs := flag.NewFlagSet("server sensors "+verb, flag.ContinueOnError)
	var rf redisFlags
	rf.register(fs)
	key := fs.String("key", "", "add, rotate-key: the sensor's HMAC key (default: a new random key, printed)")
	keyFile := fs.String("key-file", "", "add, rotate-key: read the key from this file")
	desc := fs.String("description", "", "add: a description shown in d4-core's UI")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if rf.metadata == "" {
		rf.metadata = d4server.DefaultRedisURL
	}
	st, err := rf.open(nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.Ping(ctx); err != nil {
		return err
	}
	needUUID := func() (string, error) {
		if fs.NArg() != 1 {
			return "", fmt.Errorf("%s needs exactly one sensor UUID", verb)
		}
		return fs.Arg(0), nil
	}
	switch verb {
	case "list":
		return listSensors(ctx, st)
	case "add", "rotate-key":
		u, err := needUUID()
		if err != nil {
			return err
		}
		k, generated, err := sensorKey(*key, *keyFile)
		if err != nil {
			return err
		}
		if verb == "add" {
			err = st.AddSensor(ctx, u, k, *desc)
		} else {
			err = st.SetSensorKey(ctx, u, k)
		}
		if err != nil {
			return err
		}
		if generated {
			// The key is shown once: the sensor's D4_KEY needs it.
			fmt.Println(k)
		}
		return nil
	case "remove":
		u, err := needUUID()
		if err != nil {
			return err
		}
		return st.RemoveSensor(ctx, u)
	}
	return usage
}

// sensorKey returns the key given by flag or file, or a new random one.
func sensorKey(key, file string) (string, bool, error) {
	switch {
	case key != "" && file != "":
		return "", false, errors.New("-key and -key-file are exclusive")
	case key != "":
		return key, false, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", false, err
		}
		return strings.TrimRight(string(b), "\r\n"), false, nil
	}
	k, err := d4server.NewSensorKey()
	return k, true, err
}

func listSensors(ctx context.Context, st *d4server.RedisStore) error {
	recs, err := st.ListSensors(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "UUID\tSTATE\tKEY\tLAST SEEN\tDESCRIPTION\tERROR")
	for _, r := range recs {
		state, key, seen := "pending", "default", "never"
		if r.Registered {
			state = "registered"
		}
		if r.OwnKey {
			key = "own"
		}
		if !r.LastSeen.IsZero() {
			seen = r.LastSeen.Format(time.DateTime)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.UUID, state, key, seen, r.Description, r.Error)
	}
	return w.Flush()
}
