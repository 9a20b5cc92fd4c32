package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Options say how Show shows a role's metrics.
type Options struct {
	JSON  bool          // JSON instead of a table (with Watch: one object per line)
	All   bool          // the table also shows labelled counters that are zero
	Watch time.Duration // > 0: read again at this interval until ctx is done
	Clear bool          // clear the screen before each table (a terminal)
}

// Show reads t and writes its metrics to w; with Watch it keeps reading,
// and a table then also shows each counter's rate since the reading
// before. A failed reading ends a single run; while watching it is
// reported on errw and the next reading is tried.
func Show(ctx context.Context, t Target, o Options, w, errw io.Writer) error {
	var prev *Report
	for {
		r, err := Fetch(ctx, t)
		switch {
		case err != nil && o.Watch <= 0:
			return err
		case err != nil:
			fmt.Fprintf(errw, "%s %v\n", time.Now().Format(time.TimeOnly), err)
			prev = nil
		case o.JSON:
			if err := writeJSON(w, r, o.Watch <= 0); err != nil {
				return err
			}
		default:
			if o.Clear {
				io.WriteString(w, "\033[H\033[2J")
			}
			if err := WriteTable(w, r, prev, o.All); err != nil {
				return err
			}
			prev = r
		}
		if o.Watch <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.Watch):
		}
		if !o.Clear && !o.JSON {
			io.WriteString(w, "\n")
		}
	}
}

func writeJSON(w io.Writer, r *Report, indent bool) error {
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(r)
}

// WriteTable writes r as a table, one row per series; with prev (the
// reading before) counters also show their rate per second. Labelled
// counters at zero are left out unless all.
func WriteTable(w io.Writer, r, prev *Report, all bool) error {
	fmt.Fprintf(w, "xtrail %s  %s  %s\n", r.Role, r.Source, r.Time.Format(time.DateTime+" MST"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rateHead := ""
	var secs float64
	if prev != nil {
		secs = r.Time.Sub(prev.Time).Seconds()
		rateHead = "\tPER SECOND"
	}
	fmt.Fprintf(tw, "METRIC\tLABELS\tVALUE%s\n", rateHead)
	names := make([]string, 0, len(r.Metrics))
	for n := range r.Metrics {
		if n != "xtrail_info" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	hidden := 0
	for _, n := range names {
		f := r.Metrics[n]
		for _, s := range f.Series {
			if !all && f.Type == "counter" && len(s.Labels) > 0 && s.Value == 0 {
				hidden++
				continue
			}
			row := n + "\t" + labelText(s.Labels) + "\t" + formatValue(n, s.Value, r.Time)
			if prev != nil {
				row += "\t" + rate(f, s, prev.Metrics[n], secs)
			}
			fmt.Fprintln(tw, row)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if hidden > 0 {
		fmt.Fprintf(w, "(%d labelled counters at zero not shown; --all shows them)\n", hidden)
	}
	return nil
}

// formatValue writes integers whole, and Unix times as a time and an age.
func formatValue(name string, v float64, now time.Time) string {
	if strings.HasSuffix(name, "_timestamp_seconds") && v > 0 {
		sec, frac := math.Modf(v)
		t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
		return t.Format(time.DateTime) + " UTC (" + now.Sub(t).Round(time.Second).String() + " ago)"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// rate is a counter's increase per second since the reading before.
func rate(f *Family, s Series, before *Family, secs float64) string {
	if f.Type != "counter" || before == nil || secs <= 0 {
		return ""
	}
	key := labelText(s.Labels)
	for _, b := range before.Series {
		if labelText(b.Labels) == key {
			if d := s.Value - b.Value; d >= 0 {
				return strconv.FormatFloat(d/secs, 'f', 1, 64)
			}
			return "reset"
		}
	}
	return ""
}
