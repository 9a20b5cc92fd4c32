// Package feeds downloads trail sources over HTTP(S) into a directory of
// local copies, for `xtrail trails update` (spec §8).
//
// Maltrail rebuilds its trails from whatever the feeds return and, when a
// feed breaks, keeps running on old trails without saying so (spec §10).
// This package therefore treats every download as untrusted until it is
// complete and plausible: it is written to a temporary file beside the copy,
// checked (complete, not empty, not oversized, not a sudden collapse in
// size), fsynced and only then renamed over the last good copy. Anything else
// leaves the last good copy byte-identical and is reported as a Result and a
// slog WARN, and copies not confirmed for twice the update period are
// reported as stale.
//
// Each copy <Dir>/<name> has a sidecar <Dir>/.<name>.meta.json holding the
// validators (ETag, Last-Modified) for conditional requests and the time the
// copy was last confirmed current.
package feeds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Feed is one trail source listed in the configuration.
type Feed struct {
	// Name names the local copy: letters, digits, '.', '_' and '-', not
	// starting with '.', so it cannot escape Dir or clash with the sidecars
	// and temporary files, which all start with '.'.
	Name string
	// URL is an http or https URL. A path ending in ".gz" is stored as
	// downloaded (still compressed).
	URL string
}

// Status is the outcome for one feed.
type Status string

const (
	// StatusUpdated: a new copy replaced (or became) the local copy.
	StatusUpdated Status = "updated"
	// StatusNotModified: the server answered 304; the copy is kept and
	// counts as confirmed current.
	StatusNotModified Status = "not-modified"
	// StatusRefused: a body arrived but failed a check (ErrTruncated,
	// ErrEmpty, ErrTooLarge, ErrShrank, ErrCorrupt); the last good copy is
	// kept.
	StatusRefused Status = "refused"
	// StatusFailed: no usable answer (bad config, network error, HTTP error
	// status, local I/O error, cancellation); the last good copy is kept.
	StatusFailed Status = "failed"
)

// Reasons for StatusRefused, for errors.Is on Result.Err.
var (
	ErrTruncated = errors.New("truncated download")
	ErrEmpty     = errors.New("empty feed")
	ErrTooLarge  = errors.New("feed larger than the size limit")
	ErrShrank    = errors.New("feed shrank below the minimum fraction of the current copy")
	ErrCorrupt   = errors.New("corrupt feed")
)

// ErrBusy is returned by Update when another update holds Dir's lock.
var ErrBusy = errors.New("another feed update is running")

// Defaults applied by Update to zero Options fields.
const (
	DefaultPeriod      = 24 * time.Hour // Maltrail's UPDATE_PERIOD, 86400 s
	DefaultMinFraction = 0.5
	DefaultMaxBytes    = 512 << 20
)

// Options configures Update. Zero fields take the defaults.
type Options struct {
	// Dir holds the copies and their sidecars, e.g. /var/lib/xtrail/feeds.
	// It is created if missing.
	Dir string
	// Client performs the requests; its Timeout bounds each download. Nil
	// means a client owned by the Update call, with connect, TLS and
	// header timeouts, a 30-minute overall timeout and no https-to-http
	// redirects.
	Client *http.Client
	// Force accepts a new copy that shrank below MinFraction of the current
	// one. It never accepts an empty, oversized, truncated or corrupt body.
	Force bool
	// Period is the update period (UPDATE_PERIOD); a copy not confirmed
	// for twice this long is stale. Default DefaultPeriod.
	Period time.Duration
	// MinFraction is the smallest accepted ratio of new to current
	// non-comment lines, in (0, 1]. Default DefaultMinFraction.
	MinFraction float64
	// MaxBytes bounds a body as stored and, for .gz feeds, as decompressed.
	// Default DefaultMaxBytes.
	MaxBytes int64
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives per-feed outcomes; refusals, failures and stale
	// copies are logged at WARN. Default slog.Default().
	Logger *slog.Logger
	// Progress, if set, is called from the downloading goroutine after
	// each chunk; total is -1 when the server did not declare a length.
	Progress func(name string, done, total int64)
}

// Result is the outcome for one feed, in the order of the feeds given.
type Result struct {
	Name   string
	Status Status
	// Bytes and Lines (non-comment, non-blank lines; decompressed for .gz
	// feeds) describe the copy in place after the run: the new copy when
	// updated, the kept one otherwise; zero when unknown or absent.
	Bytes int64
	Lines int
	// Age is how long ago the copy in place was last confirmed current
	// (zero when updated or not modified, and when there is no copy).
	Age time.Duration
	// Err says why the feed was refused or failed; for a refusal it wraps
	// one of the Err* reasons.
	Err error
}

// Update fetches each feed in turn and replaces its local copy only when
// the new body passes every check. Per-feed problems never stop the other
// feeds; they are reported in the Results. Update returns an error only
// when the run itself cannot proceed (bad Options, Dir unusable, ErrBusy)
// or when ctx is cancelled, in which case the feeds not yet fetched are
// reported as failed with ctx's error. Feeds are fetched one at a time on
// the calling goroutine.
func Update(ctx context.Context, feeds []Feed, o Options) ([]Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Client == nil {
		c := defaultClient()
		// The client is ours: close its kept-alive connections (and their
		// transport goroutines) when the run ends.
		defer c.CloseIdleConnections()
		o.Client = c
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("feeds: create %s: %w", o.Dir, err)
	}
	unlock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	sweepTemps(o.Dir, o.Logger)

	u := &updater{o: o}
	results := make([]Result, 0, len(feeds))
	seen := make(map[string]bool, len(feeds))
	var valid []Feed
	for _, f := range feeds {
		if err := ctx.Err(); err != nil {
			results = append(results, Result{Name: f.Name, Status: StatusFailed, Err: fmt.Errorf("feed %s: not fetched: %w", f.Name, err)})
			continue
		}
		var r Result
		nameErr := validName(f.Name)
		switch {
		case nameErr != nil:
			r = Result{Name: f.Name, Status: StatusFailed, Err: nameErr}
		case seen[f.Name]:
			r = Result{Name: f.Name, Status: StatusFailed, Err: fmt.Errorf("feed %s: duplicate name; only the first is fetched", f.Name)}
		default:
			seen[f.Name] = true
			valid = append(valid, f)
			r = u.one(ctx, f)
		}
		u.log(r)
		results = append(results, r)
	}
	for _, s := range Stale(o.Dir, valid, o.Period, o.Now()) {
		logStale(o.Logger, s, o.Period)
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("feeds: update cancelled: %w", err)
	}
	return results, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("feeds: Options.Dir is empty")
	}
	if o.Period == 0 {
		o.Period = DefaultPeriod
	}
	if o.Period < 0 {
		return o, fmt.Errorf("feeds: negative Period %v", o.Period)
	}
	if o.MinFraction == 0 {
		o.MinFraction = DefaultMinFraction
	}
	if !(o.MinFraction > 0 && o.MinFraction <= 1) { // also rejects NaN
		return o, fmt.Errorf("feeds: MinFraction %v outside (0, 1]", o.MinFraction)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBytes < 0 {
		return o, fmt.Errorf("feeds: negative MaxBytes %d", o.MaxBytes)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// defaultClient bounds every phase of a request so a silent server cannot
// hold an update forever, and refuses redirects that would drop TLS.
func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 30 * time.Second
	t.ResponseHeaderTimeout = time.Minute
	return &http.Client{
		Transport: t,
		Timeout:   30 * time.Minute,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return fmt.Errorf("refused redirect from https to %s", req.URL.Scheme)
			}
			return nil
		},
	}
}

func validName(name string) error {
	if name == "" || len(name) > 200 || name[0] == '.' {
		return fmt.Errorf("feed %q: invalid name (empty, too long or starting with '.')", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("feed %q: invalid name: only letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	return nil
}

// redactURL drops credentials, query and fragment before a URL reaches a
// log or an error: feed URLs often carry API keys in either.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// redactErr rewrites the URL inside a *url.Error (as returned by
// http.Client.Do) so the error can be logged.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	return err
}

func keepsCompressed(u *url.URL) bool {
	return strings.HasSuffix(strings.ToLower(u.Path), ".gz")
}

func (u *updater) log(r Result) {
	l := u.o.Logger
	switch r.Status {
	case StatusUpdated:
		if r.Err != nil {
			l.Warn("feed updated with a problem", "feed", r.Name, "bytes", r.Bytes, "lines", r.Lines, "err", r.Err)
			return
		}
		l.Info("feed updated", "feed", r.Name, "bytes", r.Bytes, "lines", r.Lines)
	case StatusNotModified:
		l.Info("feed not modified", "feed", r.Name, "bytes", r.Bytes, "lines", r.Lines)
	case StatusRefused:
		l.Warn("feed REFUSED, keeping the last good copy", "feed", r.Name, "reason", r.Err, "kept_bytes", r.Bytes, "kept_lines", r.Lines, "kept_age", r.Age.Round(time.Second))
	case StatusFailed:
		l.Warn("feed update FAILED, keeping the last good copy", "feed", r.Name, "err", r.Err, "kept_bytes", r.Bytes, "kept_lines", r.Lines, "kept_age", r.Age.Round(time.Second))
	}
}

func logStale(l *slog.Logger, s StaleFeed, period time.Duration) {
	if s.Missing {
		l.Warn("feed STALE: no local copy", "feed", s.Name, "update_period", period)
		return
	}
	l.Warn("feed STALE: trails not confirmed current for over twice the update period",
		"feed", s.Name, "age", s.Age.Round(time.Second), "last_checked", s.CheckedAt.UTC().Format(time.RFC3339), "update_period", period)
}
