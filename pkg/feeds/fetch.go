package feeds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// updater carries the defaulted Options through one Update run.
type updater struct{ o Options }

// local describes a feed's copy before the fetch.
type local struct {
	exists  bool
	size    int64
	mtime   time.Time
	meta    *meta // nil when absent or unreadable
	trusted bool  // meta describes this very copy of this URL
}

func (u *updater) local(f Feed) local {
	var l local
	st, err := os.Stat(copyPath(u.o.Dir, f.Name))
	switch {
	case err == nil:
		l.exists, l.size, l.mtime = true, st.Size(), st.ModTime()
	case !errors.Is(err, fs.ErrNotExist):
		u.o.Logger.Warn("feeds: cannot stat the local copy", "feed", f.Name, "err", err)
	}
	m, err := readMeta(u.o.Dir, f.Name)
	if err != nil {
		u.o.Logger.Warn("feeds: ignoring unreadable sidecar; the feed is fetched unconditionally", "feed", f.Name, "err", err)
	}
	l.meta = m
	// Validators are only sent when the sidecar matches the copy on disk
	// and the configured URL: a 304 must never vouch for a copy that was
	// replaced by hand, lost, or fetched from another URL.
	l.trusted = l.exists && m != nil && m.URLHash == urlHash(f.URL) && m.Bytes == l.size
	return l
}

func (l local) checkedAt() time.Time {
	if l.meta != nil && !l.meta.CheckedAt.IsZero() {
		return l.meta.CheckedAt
	}
	return l.mtime
}

// one fetches a single feed. It never returns a partial copy: every path
// that does not end in commit leaves the last good copy as it was.
func (u *updater) one(ctx context.Context, f Feed) Result {
	o := u.o
	res := Result{Name: f.Name}
	fail := func(err error) Result {
		res.Status, res.Err = StatusFailed, fmt.Errorf("feed %s: %w", f.Name, err)
		return res
	}
	cur := u.local(f)
	now := o.Now()
	if cur.exists {
		res.Bytes, res.Age = cur.size, now.Sub(cur.checkedAt())
		if cur.trusted {
			res.Lines = cur.meta.Lines
		}
	}

	pu, err := url.Parse(f.URL)
	if err != nil {
		return fail(errors.New("invalid URL"))
	}
	if pu.Scheme != "http" && pu.Scheme != "https" || pu.Host == "" {
		return fail(fmt.Errorf("URL %s: only http and https URLs with a host are fetched", redactURL(f.URL)))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return fail(fmt.Errorf("build request: %w", redactErr(err)))
	}
	req.Header.Set("User-Agent", "xtrail-feeds/1")
	raw := keepsCompressed(pu)
	if raw {
		// Setting Accept-Encoding ourselves stops the transport from
		// decoding gzip, so a .gz file is stored exactly as published.
		req.Header.Set("Accept-Encoding", "identity")
	}
	if cur.trusted {
		if cur.meta.ETag != "" {
			req.Header.Set("If-None-Match", cur.meta.ETag)
		}
		if cur.meta.LastModified != "" {
			req.Header.Set("If-Modified-Since", cur.meta.LastModified)
		}
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return fail(redactErr(err))
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
		return u.download(ctx, f, resp, cur, raw, res)
	case http.StatusNotModified:
		if !cur.trusted {
			return fail(errors.New("HTTP 304 to an unconditional request"))
		}
		m := *cur.meta
		m.CheckedAt = now
		// A 304 may carry refreshed validators (RFC 9110 §15.4.5).
		if v := resp.Header.Get("ETag"); v != "" {
			m.ETag = v
		}
		if v := resp.Header.Get("Last-Modified"); v != "" {
			m.LastModified = v
		}
		if err := writeMeta(o.Dir, f.Name, &m); err != nil {
			// The copy is fine, but without the new checked-at time it
			// would soon be reported stale: say so now.
			return fail(fmt.Errorf("not modified, but the check time was not recorded: %w", err))
		}
		res.Status, res.Age = StatusNotModified, 0
		return res
	default:
		return fail(fmt.Errorf("GET %s: HTTP %s", redactURL(f.URL), resp.Status))
	}
}

// download streams a 200 body to a temporary file beside the copy, checks
// it and renames it over the copy.
func (u *updater) download(ctx context.Context, f Feed, resp *http.Response, cur local, raw bool, res Result) Result {
	o := u.o
	end := func(st Status, err error) Result {
		res.Status, res.Err = st, fmt.Errorf("feed %s: %w", f.Name, err)
		return res
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && !raw && !strings.EqualFold(ce, "identity") {
		// Go decodes gzip itself and then drops the header; anything
		// left is an encoding we did not ask for and cannot read.
		return end(StatusRefused, fmt.Errorf("%w: unsupported Content-Encoding %q", ErrCorrupt, ce))
	}
	total := resp.ContentLength // -1 when unknown, including after transparent gzip decoding
	if total > o.MaxBytes {
		return end(StatusRefused, fmt.Errorf("%w: server declares %d bytes, limit %d", ErrTooLarge, total, o.MaxBytes))
	}

	tmp, err := os.CreateTemp(o.Dir, "."+f.Name+".*.tmp")
	if err != nil {
		return end(StatusFailed, fmt.Errorf("create temporary file: %w", err))
	}
	handedOff := false // commit owns tmp from then on
	defer func() {
		if !handedOff {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	var counter lineCounter
	head := &headBuffer{max: 512}
	n, st, err := u.copyBody(ctx, f.Name, io.MultiWriter(tmp, head), &counter, resp.Body, total, raw)
	if err != nil {
		return end(st, err)
	}
	if total >= 0 && n != total {
		// The transport reports a short body as io.ErrUnexpectedEOF
		// already; this catches any path where it would not.
		return end(StatusRefused, fmt.Errorf("%w: got %d of %d declared bytes", ErrTruncated, n, total))
	}
	if n == 0 {
		return end(StatusRefused, fmt.Errorf("%w: empty body", ErrEmpty))
	}

	if looksLikeHTML(head.b) {
		// A captive portal, a CDN challenge or an error page served with
		// 200: its lines would parse as (nonsense) trails.
		return end(StatusRefused, fmt.Errorf("%w: body is an HTML page, not a trail list", ErrCorrupt))
	}
	lines := counter.total()
	if raw {
		gz, err := isGzipFile(tmp.Name())
		if err != nil {
			return end(StatusFailed, fmt.Errorf("reread temporary file: %w", err))
		}
		if !gz {
			return end(StatusRefused, fmt.Errorf("%w: URL ends in .gz but the body is not gzip", ErrCorrupt))
		}
		// Decoding the whole stream is also what catches a .gz that the
		// server itself holds truncated.
		if lines, err = countFile(tmp.Name(), o.MaxBytes); err != nil {
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge) {
				return end(StatusRefused, err)
			}
			return end(StatusFailed, fmt.Errorf("count lines: %w", err))
		}
	}
	if lines == 0 {
		return end(StatusRefused, fmt.Errorf("%w: no data lines in %d bytes (only blanks and comments)", ErrEmpty, n))
	}
	if cur.exists && !o.Force {
		old := 0
		if cur.trusted {
			old = cur.meta.Lines
		} else if old, err = countFile(copyPath(o.Dir, f.Name), o.MaxBytes); err != nil {
			// An unreadable copy is not worth protecting.
			o.Logger.Warn("feeds: cannot count the current copy; skipping the shrink check", "feed", f.Name, "err", err)
			old = 0
		}
		if float64(lines) < o.MinFraction*float64(old) {
			return end(StatusRefused, fmt.Errorf("%w: %d data lines against %d in the current copy (minimum %g of it); force accepts it",
				ErrShrank, lines, old, o.MinFraction))
		}
	}

	handedOff = true
	if err := commit(tmp, nil, copyPath(o.Dir, f.Name)); err != nil {
		return end(StatusFailed, fmt.Errorf("replace the copy: %w", err))
	}
	now := o.Now()
	res.Status, res.Bytes, res.Lines, res.Age = StatusUpdated, n, lines, 0
	m := &meta{
		URL:          redactURL(f.URL),
		URLHash:      urlHash(f.URL),
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		CheckedAt:    now,
		UpdatedAt:    now,
		Bytes:        n,
		Lines:        lines,
	}
	if err := writeMeta(o.Dir, f.Name, m); err != nil {
		// The copy is in place; the stale sidecar no longer matches its
		// size, so the next run simply fetches unconditionally.
		res.Err = fmt.Errorf("feed %s: copy updated but %w", f.Name, err)
	}
	return res
}

// copyBody copies the body to w, counting data lines unless raw, reporting
// progress and enforcing MaxBytes. On error it also says which status the
// error means.
func (u *updater) copyBody(ctx context.Context, name string, w io.Writer, c *lineCounter, body io.Reader, total int64, raw bool) (int64, Status, error) {
	o := u.o
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			if n+int64(k) > o.MaxBytes {
				return n, StatusRefused, fmt.Errorf("%w: over %d bytes", ErrTooLarge, o.MaxBytes)
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return n, StatusFailed, fmt.Errorf("write temporary file: %w", err)
			}
			if !raw {
				c.Write(buf[:k])
			}
			n += int64(k)
			if o.Progress != nil {
				o.Progress(name, n, total)
			}
		}
		switch {
		case rerr == io.EOF:
			return n, "", nil
		case rerr != nil && ctx.Err() != nil:
			return n, StatusFailed, fmt.Errorf("download interrupted: %w", ctx.Err())
		case rerr != nil:
			// A cut connection, a short Content-Length body, a broken
			// chunked or gzip stream, or a client timeout mid-body: what
			// arrived is a prefix, and a prefix of a trail list looks
			// valid line by line, so it must never be used.
			return n, StatusRefused, fmt.Errorf("%w after %d bytes: %v", ErrTruncated, n, redactErr(rerr))
		}
	}
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	b   []byte
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.b); room > 0 {
		h.b = append(h.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// looksLikeHTML reports whether a body starts, after blanks, with an HTML
// doctype or tag. No trail list does; Content-Type is not used because
// feed servers label plain lists in every way.
func looksLikeHTML(head []byte) bool {
	head = bytes.TrimLeft(head, " \t\r\n\ufeff")
	head = bytes.ToLower(head[:min(len(head), 16)])
	return bytes.HasPrefix(head, []byte("<!doctype html")) || bytes.HasPrefix(head, []byte("<html")) || bytes.HasPrefix(head, []byte("<head"))
}
