package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xtrail/xtrail/internal/progress"
	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/deploy"
	"github.com/xtrail/xtrail/pkg/feeds"
	"github.com/xtrail/xtrail/pkg/store"
	"github.com/xtrail/xtrail/pkg/trails"
)

const trailsUsage = `usage:
  xtrail trails load   [-pin-dir DIR] [-store FILE.xts] [-o merged.csv] [-wait 30s] [-force] [-json] SRC...
                       (SRC: trails.csv, csv:F, static:DIR, custom:F|DIR, cidr:F|DIR; compiles the store and makes
                       it live: a running sensor switches to it, else the kernel maps are loaded for the next one)
  xtrail trails lookup [-pin-dir DIR] [-trails FILE] [-json] IP|IP:PORT|DOMAIN|URL
  xtrail trails diff   [-pin-dir DIR] [-json] SRC...   (what load would add, remove and change in the kernel)
  xtrail trails stats  [-pin-dir DIR] [-period 24h] [-json]   (counts, kernel memory, store, generation, age, sources)
  xtrail trails update [-c maltrail.conf] [-dir DIR] [-force] [-period 24h] [-json] [NAME=URL...]
  xtrail trails compile [-o FILE.xts] [-json] SRC.csv[.gz]   (a trail store for TRAILS_FILE; default -o /var/lib/xtrail/trails.xts)`

func runTrails(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return trailsUsageErr()
	}
	switch args[0] {
	case "load":
		return trailsLoad(ctx, args[1:])
	case "lookup":
		return trailsLookup(args[1:])
	case "stats":
		return trailsStats(args[1:])
	case "update":
		return trailsUpdate(ctx, args[1:])
	case "diff":
		return trailsDiff(args[1:])
	case "compile":
		return trailsCompile(args[1:])
	}
	return trailsUsageErr()
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseSources parses the flags and reads the SRC arguments (later ones
// win on duplicates); quiet is the -q flag.
func parseSources(fs *flag.FlagSet, args []string, quiet *bool) ([]trails.Source, *slog.Logger, error) {
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() == 0 {
		return nil, nil, trailsUsageErr()
	}
	var srcs []trails.Source
	for i, a := range fs.Args() {
		s, err := trails.ParseSource(a, i)
		if err != nil {
			return nil, nil, err
		}
		srcs = append(srcs, s)
	}
	return srcs, newLogger(*quiet), nil
}

// sourceBar is a progress bar over the bytes of the sources' files.
func sourceBar(srcs []trails.Source) (*progress.Bar, func(int64)) {
	bar := progress.New(os.Stderr)
	var total int64
	for _, s := range srcs {
		total += dataplane.FileSource(s.Path, "", 0).Bytes
	}
	return bar, func(read int64) { bar.Update("reading trails", read, total) }
}

// trailsLoad merges the sources into the next compiled store and makes it
// live: a sensor running on the pin dir switches its kernel generation
// and its name trails to it at once; with none running, the kernel maps
// are loaded for the next sensor to start on the store.
func trailsLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trails load", flag.ContinueOnError)
	pinDir := fs.String("pin-dir", dataplane.DefaultPinDir, "bpffs directory of the sensor's trail maps")
	storePath := fs.String("store", store.DefaultPath, "the compiled store to write (the sensor's TRAILS_FILE)")
	out := fs.String("o", "", "also write the merged trails as a Maltrail trails.csv")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for a running sensor to switch")
	force := fs.Bool("force", false, "load a set under half the size of the live one, or with more malformed rows than good ones")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	srcs, log, err := parseSources(fs, args, quiet)
	if err != nil {
		return err
	}
	if *wait < 0 {
		return fmt.Errorf("-wait %s: want 0 or more", *wait)
	}
	wl := trails.DefaultWhitelist()
	bar, report := sourceBar(srcs)
	var (
		in *store.Input
		m  *trails.Merged
	)
	if len(srcs) == 1 && srcs[0].Kind == trails.KindTrailsCSV && *out == "" {
		// one trails.csv: nothing to merge
		var rc io.ReadCloser
		if rc, err = trails.OpenProgress(srcs[0].Path, report); err == nil {
			in, err = store.FromCSV(rc, srcs[0].Path, wl)
			rc.Close()
		}
	} else if m, err = trails.MergeWith(srcs, trails.MergeOptions{Whitelist: wl, Progress: report}); err == nil {
		in = store.FromMerged(m, wl)
	}
	bar.Done()
	if err != nil {
		return err
	}
	for _, s := range in.Load.Samples {
		log.Warn("skipped trail row", "where", s)
	}
	if in.Load.Rows == 0 {
		return fmt.Errorf("trails load: the sources hold no trail rows (%d malformed): keeping the loaded trails", in.Load.Skipped)
	}
	if !*force {
		err := deploy.CheckMalformed(in.Load.Rows, in.Load.Skipped, in.Load.Samples)
		if err == nil {
			err = deploy.CheckSize(*pinDir, in.Load.Rows)
		}
		if err != nil {
			return fmt.Errorf("trails load: %w (-force loads it anyway)", err)
		}
	}
	if m != nil && *out != "" {
		if err := m.WriteFile(*out); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(*storePath), 0o755); err != nil {
		return fmt.Errorf("trails load: %w", err)
	}
	st, err := store.Compile(*storePath, in)
	if err != nil {
		return err
	}
	res, err := deploy.Deploy(ctx, *pinDir, *storePath, *wait)
	if err != nil {
		return err
	}
	if *asJSON {
		out := map[string]any{"pin_dir": *pinDir, "store_stats": st, "deploy": res}
		if m != nil {
			out["merge"] = m.Stats
		}
		return printJSON(out)
	}
	fmt.Printf("store %s: rows %d (malformed %d, whitelisted %d)  names %d (URLs %d)  IPs %d  CIDRs %d\n",
		*storePath, st.Load.Rows, st.Load.Skipped, st.Load.Whitelisted, st.Names, st.URLs, st.IPs, st.CIDRs)
	if k := res.Kernel; k != nil {
		fmt.Printf("no sensor running: kernel maps loaded, generation %d (ipv4 %d  ipv4:port %d  ipv6 %d  ipv6:port %d  cidr4 %d  cidr6 %d, switched after %s)\n",
			res.Generation, k.IP4, k.Port4, k.IP6, k.Port6, k.CIDR4, k.CIDR6, k.Switch.Round(time.Millisecond))
		if k.Skipped > 0 {
			log.Warn("trails with info or reference too long for the kernel record were not loaded", "count", k.Skipped)
		}
		return nil
	}
	fmt.Printf("sensor %d switched its kernel maps and name trails to generation %d in %s\n", res.Sensor, res.Generation, res.Took.Round(time.Millisecond))
	return nil
}

// trailsDiff says what loading the sources would add, remove and change
// in the kernel's IP, IP:port and CIDR trails.
func trailsDiff(args []string) error {
	fs := flag.NewFlagSet("trails diff", flag.ContinueOnError)
	pinDir := fs.String("pin-dir", dataplane.DefaultPinDir, "bpffs directory of the sensor's trail maps")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	srcs, log, err := parseSources(fs, args, quiet)
	if err != nil {
		return err
	}
	bar, report := sourceBar(srcs)
	var set *trails.Set
	if len(srcs) == 1 && srcs[0].Kind == trails.KindTrailsCSV {
		set, err = readCSVSet(srcs[0].Path, report)
	} else {
		var m *trails.Merged
		if m, err = trails.MergeWith(srcs, trails.MergeOptions{Whitelist: trails.DefaultWhitelist(), Progress: report}); err == nil {
			set = m.IPSet()
		}
	}
	bar.Done()
	if err != nil {
		return err
	}
	for _, s := range set.Stats.Samples {
		log.Warn("skipped trail row", "where", s)
	}
	maps, err := dataplane.OpenTrailMaps(*pinDir)
	if err != nil {
		return err
	}
	defer maps.Close()
	d, err := maps.Diff(set)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(d)
	}
	fmt.Printf("added %d  removed %d  changed %d\n", d.Added, d.Removed, d.Changed)
	for _, s := range d.Samples {
		fmt.Println("  " + s)
	}
	return nil
}

// trailsLookup says which trail and rule would fire for an address (from
// the kernel maps) or a name or URL (from a trails file).
func trailsLookup(args []string) error {
	fs := flag.NewFlagSet("trails lookup", flag.ContinueOnError)
	pinDir := fs.String("pin-dir", dataplane.DefaultPinDir, "bpffs directory of the sensor's trail maps")
	file := fs.String("trails", "", "trails.csv or compiled store for names and URLs (default: the one the live trails came from)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return trailsUsageErr()
	}
	q := fs.Arg(0)
	var res lookupResult
	if ap, err := netip.ParseAddrPort(q); err == nil {
		res.LookupResult, err = lookupAddr(*pinDir, ap.Addr(), ap.Port())
		if err != nil {
			return err
		}
	} else if a, err := netip.ParseAddr(q); err == nil {
		res.LookupResult, err = lookupAddr(*pinDir, a, 0)
		if err != nil {
			return err
		}
	} else {
		if *file == "" {
			if *file, err = loadedNamesFile(*pinDir); err != nil {
				return err
			}
		}
		r, err := lookupName(*file, q)
		if err != nil {
			return err
		}
		res = r
	}
	if *asJSON {
		return printJSON(res)
	}
	if !res.Found {
		fmt.Printf("%s: no trail\n", q)
	} else {
		fmt.Printf("%s: %s %s  info %q  reference %q  (%s)\n", q, res.Type, res.Trail, res.Info, res.Reference, res.Rule)
	}
	for _, s := range res.Skipped {
		fmt.Printf("%s: trail %s  info %q  reference %q  is skipped: %s\n", q, s.Key, s.Info, s.Reference, s.Why)
	}
	return nil
}

func lookupAddr(pinDir string, a netip.Addr, port uint16) (dataplane.LookupResult, error) {
	maps, err := dataplane.OpenTrailMaps(pinDir)
	if err != nil {
		return dataplane.LookupResult{}, err
	}
	defer maps.Close()
	return maps.Lookup(a, port)
}

// loadedNamesFile is the trails file or store the live generation was
// loaded from, as its origin record says.
func loadedNamesFile(pinDir string) (string, error) {
	maps, err := dataplane.OpenTrailMaps(pinDir)
	if err != nil {
		return "", err
	}
	defer maps.Close()
	o, ok, err := maps.Origin()
	if err != nil {
		return "", err
	}
	if ok {
		for _, s := range o.Sources {
			if s.Kind == "store" || s.Kind == "trails.csv" {
				return s.Path, nil
			}
		}
	}
	return "", errors.New("trails lookup: the live trails name no trails file or store: give -trails FILE for a name or URL")
}

// openNames loads the name trails of a trails.csv or a compiled store
// (closed by the returned func).
func openNames(file string) (*trails.Names, func(), error) {
	if strings.HasSuffix(file, ".xts") {
		st, err := store.Open(file)
		if err != nil {
			return nil, nil, err
		}
		n, _, err := st.Names(trails.DefaultWhitelist())
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		return n, func() { st.Close() }, nil
	}
	rc, err := trails.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	n, err := trails.LoadNames(rc, file, trails.DefaultWhitelist())
	if err != nil {
		return nil, nil, err
	}
	return n, func() {}, nil
}

// lookupResult is a lookup's result, with the trails a name lookup met
// that Maltrail's skip rules pass over.
type lookupResult struct {
	dataplane.LookupResult
	Skipped []skippedTrail `json:"skipped,omitempty"`
}

// skippedTrail is a trail a lookup met but Maltrail's rules skip, and why.
type skippedTrail struct {
	Key       string `json:"key"`
	Info      string `json:"info"`
	Reference string `json:"reference"`
	Why       string `json:"why"`
}

func lookupName(file, q string) (lookupResult, error) {
	n, done, err := openNames(file)
	if err != nil {
		return lookupResult{}, err
	}
	defer done()
	lower := strings.ToLower(q)
	if host, path, ok := strings.Cut(strings.TrimPrefix(lower, "http://"), "/"); ok {
		var s trails.URLScratch
		if hit, ok := n.CheckURL(&s, &trails.HTTPRequest{Host: []byte(host), Path: []byte("/" + path), Method: []byte("GET")}); ok {
			return lookupResult{LookupResult: dataplane.LookupResult{Found: true, Type: hit.Type, Trail: string(hit.Trail), Info: hit.Meta.Info,
				Reference: hit.Meta.Reference, Rule: "URL candidates (spec §1.4)"}}, nil
		}
		return lookupResult{}, nil
	}
	var skipped []skippedTrail
	for _, s := range n.Skipped([]byte(lower)) {
		skipped = append(skipped, skippedTrail{Key: s.Key, Info: s.Meta.Info, Reference: s.Meta.Reference, Why: s.Why})
	}
	var hit trails.DomainHit
	if !n.CheckDomain([]byte(lower), &hit) {
		return lookupResult{Skipped: skipped}, nil
	}
	rules := map[trails.DomainRule]string{trails.RuleExact: "exact name", trails.RuleParent: "parent domain",
		trails.RuleIPAdress: ".ip-adress.com rule", trails.RuleRegex: "regex trail", trails.RuleOnion: ".onion rule",
		trails.RuleHeuristic: "long-domain heuristic"}
	return lookupResult{LookupResult: dataplane.LookupResult{Found: true, Type: "DNS", Trail: string(hit.Trail), Info: hit.Meta.Info,
		Reference: hit.Meta.Reference, Rule: rules[hit.Rule]}, Skipped: skipped}, nil
}

func trailsStats(args []string) error {
	fs := flag.NewFlagSet("trails stats", flag.ContinueOnError)
	pinDir := fs.String("pin-dir", dataplane.DefaultPinDir, "bpffs directory of the sensor's trail maps")
	period := fs.Duration("period", feeds.DefaultPeriod, "update period (UPDATE_PERIOD): trails older than twice this are reported stale")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *period <= 0 {
		return fmt.Errorf("-period %s: want a positive duration", *period)
	}
	maps, err := dataplane.OpenTrailMaps(*pinDir)
	if err != nil {
		return err
	}
	defer maps.Close()
	r, err := deploy.ReadStatus(maps, *period)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(r)
	}
	printStats(os.Stdout, r, *period)
	return nil
}

func printStats(w io.Writer, r deploy.Status, period time.Duration) {
	k := r.Kernel
	fmt.Fprintf(w, "generation %d", r.Generation)
	if o := r.Origin; o != nil {
		fmt.Fprintf(w, ", loaded %s (%s ago) by %s", o.LoadedAt.Format(time.DateTime+" MST"), ago(o.LoadedAt), o.By)
	} else {
		fmt.Fprint(w, ", origin not recorded")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "kernel   ipv4 %d  ipv4:port %d  ipv6 %d  ipv6:port %d  cidr4 %d  cidr6 %d  info/reference pairs %d\n",
		k.IP4, k.Port4, k.IP6, k.Port6, k.CIDR4, k.CIDR6, k.Metas)
	m := r.Memory
	fmt.Fprintf(w, "kernel memory %s (live generation %s, info/reference %s, other %s)\n",
		mib(int64(m.Total())), mib(int64(m.Live)), mib(int64(m.Metas)), mib(int64(m.Other)))
	if m.Idle > 0 {
		fmt.Fprintf(w, "  and %s in the idle generation: a load is running, or one failed before freeing it\n", mib(int64(m.Idle)))
	}
	if s := r.Store; s != nil {
		if s.Err != "" {
			fmt.Fprintf(w, "store    %s: %s\n", s.Path, s.Err)
		} else {
			st := s.Stats
			fmt.Fprintf(w, "store    %s: %d names (%d URLs), %d regex rows, %d IPs, %d CIDRs, %d info/reference pairs; %s, built %s\n",
				s.Path, st.Names, st.URLs, st.Regexes, st.IPs, st.CIDRs, st.Metas, mib(st.FileSize), s.Built.UTC().Format(time.DateTime+" MST"))
		}
	}
	if o := r.Origin; o != nil {
		fmt.Fprintln(w, "sources")
		for _, src := range o.Sources {
			fmt.Fprintf(w, "  %-24s %s  %d rows", src.Kind, src.Path, src.Rows)
			if !src.Modified.IsZero() {
				fmt.Fprintf(w, "  %s  modified %s (%s ago)", mib(src.Bytes), src.Modified.Format(time.DateTime+" MST"), ago(src.Modified))
			}
			fmt.Fprintln(w)
		}
		if o.SourcesOmitted > 0 {
			fmt.Fprintf(w, "  and %d more\n", o.SourcesOmitted)
		}
	}
	if r.Stale {
		fmt.Fprintf(w, "STALE: the newest source is %s old, over twice the update period (%s): run `xtrail trails update` and reload\n",
			r.Age.Round(time.Minute), period)
	}
}

func ago(t time.Time) time.Duration {
	return time.Since(t).Round(time.Second)
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// trailsUpdate downloads feeds into -dir, keeping the last good copy of each.
func trailsUpdate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trails update", flag.ContinueOnError)
	conf := fs.String("c", "", "maltrail.conf: feeds from UPDATE_SERVER, CUSTOM_TRAILS_URL and TRAILS_FEEDS, UPDATE_PERIOD, TRAILS_FEED_DIR")
	dir := fs.String("dir", "", "where the feed copies live (default TRAILS_FEED_DIR, else "+feeds.DefaultDir+")")
	force := fs.Bool("force", false, "accept a feed under half the size of the current copy")
	period := fs.Duration("period", 0, "update period: copies older than twice this are reported stale (default UPDATE_PERIOD, else 24h)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	quiet := fs.Bool("q", false, "log warnings and errors only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *period < 0 {
		return fmt.Errorf("-period %s: want a positive duration, or 0 for UPDATE_PERIOD", *period)
	}
	cfg, err := readConfig(*conf)
	if err != nil {
		return err
	}
	set, err := feeds.FromConfig(cfg)
	if err != nil {
		return err
	}
	list := set.Feeds
	for _, a := range fs.Args() {
		name, url, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("feed %q: want NAME=URL", a)
		}
		list = append(list, feeds.Feed{Name: name, URL: url})
	}
	if len(list) == 0 {
		return fmt.Errorf("trails update: no feeds: give NAME=URL arguments or a config (-c) that lists them: %w", trailsUsageErr())
	}
	if *dir == "" {
		*dir = set.Dir
	}
	if *period == 0 {
		*period = set.Period
	}
	bar := progress.New(os.Stderr)
	res, err := feeds.Update(ctx, list, feeds.Options{Dir: *dir, Force: *force, Period: *period, Logger: newLoggerTo(bar.Clearing(os.Stderr), *quiet),
		Progress: func(name string, done, total int64) { bar.Update("downloading "+name, done, total) }})
	bar.Done()
	if *asJSON {
		type row struct {
			Name, Status string
			Bytes        int64
			Lines        int
			Age          time.Duration
			Error        string `json:",omitempty"`
		}
		var rows []row
		for _, r := range res {
			e := ""
			if r.Err != nil {
				e = r.Err.Error()
			}
			rows = append(rows, row{r.Name, string(r.Status), r.Bytes, r.Lines, r.Age, e})
		}
		if jerr := printJSON(rows); jerr != nil {
			return jerr
		}
	} else {
		for _, r := range res {
			fmt.Printf("%-20s %-12s %10d bytes %8d lines  age %s", r.Name, r.Status, r.Bytes, r.Lines, r.Age.Round(time.Second))
			if r.Err != nil {
				fmt.Printf("  (%v)", r.Err)
			}
			fmt.Println()
		}
	}
	if err != nil {
		return err
	}
	// A cron job or a unit must see a feed that is not current.
	bad := 0
	for _, r := range res {
		if r.Status == feeds.StatusFailed || r.Status == feeds.StatusRefused {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d feeds failed or were refused: their last good copies are kept", bad, len(res))
	}
	return nil
}

// trailsUsageErr prints the trails usage and returns the error to exit with.
func trailsUsageErr() error {
	fmt.Fprintln(os.Stderr, trailsUsage)
	return errors.New("bad arguments")
}

// readCSVSet reads the IP part of one trails.csv.
func readCSVSet(path string, progress func(read int64)) (*trails.Set, error) {
	rc, err := trails.OpenProgress(path, progress)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	set, err := trails.LoadSet(rc, path)
	if err != nil {
		return nil, fmt.Errorf("trails file %s: %w", path, err)
	}
	set.DropWhitelisted(trails.DefaultWhitelist())
	if set.Stats.Rows == 0 {
		return nil, fmt.Errorf("trails file %s has no trail rows: keeping the loaded trails", path)
	}
	return set, nil
}

// trailsCompile compiles a trails.csv into a trail store, which a sensor
// with TRAILS_FILE ending in ".xts" maps instead of parsing the CSV. Keys
// the default whitelist holds are dropped, as the other trails commands
// drop them.
func trailsCompile(args []string) error {
	fs := flag.NewFlagSet("trails compile", flag.ContinueOnError)
	out := fs.String("o", store.DefaultPath, "the store to write (a sensor without TRAILS_FILE uses "+store.DefaultPath+")")
	asJSON := fs.Bool("json", false, "print the store's stats as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return trailsUsageErr()
	}
	src, dst := fs.Arg(0), *out
	if filepath.Clean(dst) == filepath.Clean(src) {
		return fmt.Errorf("trails compile: the store would overwrite its source %s", src)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("trails compile: %w", err)
	}
	start := time.Now()
	bar := progress.New(os.Stderr)
	total := dataplane.FileSource(src, "", 0).Bytes
	rc, err := trails.OpenProgress(src, func(read int64) { bar.Update("reading "+src, read, total) })
	if err != nil {
		return fmt.Errorf("trails compile: %w", err)
	}
	in, err := store.FromCSV(rc, src, trails.DefaultWhitelist())
	rc.Close()
	bar.Done()
	if err != nil {
		return fmt.Errorf("trails compile %s: %w", src, err)
	}
	st, err := store.Compile(dst, in)
	if err != nil {
		return fmt.Errorf("trails compile %s: %w", src, err)
	}
	if *asJSON {
		return printJSON(struct {
			File  string
			Took  string
			Stats store.Stats
		}{dst, time.Since(start).Round(time.Millisecond).String(), st})
	}
	fmt.Printf("%s: %d names (%d URLs), %d IPs, %d CIDRs, %d regex rows, %d metas; %d rows read, %d malformed, %d whitelisted, %d duplicates; %d bytes in %v\n",
		dst, st.Names, st.URLs, st.IPs, st.CIDRs, st.Regexes, st.Metas, st.Load.Rows, st.Load.Skipped,
		st.Load.Whitelisted, st.Duplicates, st.FileSize, time.Since(start).Round(time.Millisecond))
	return nil
}
