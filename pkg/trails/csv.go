// Package trails models Maltrail trails: it reads trails.csv (spec §1.1),
// classifies IP and IP:port keys (spec §1.2, §1.5) and holds the loaded set
// (Set); LoadNames keeps the domain, URL and regex trails and runs the
// domain and URL checks (spec §1.3.1, §1.4); Whitelist and IgnoreRules
// are spec §1.6.
package trails

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Row is one trails.csv row with exactly three fields.
type Row struct {
	Trail, Info, Reference string
	Line                   int // 1-based line where the row starts
}

// Stats counts what ReadCSV saw.
type Stats struct {
	Rows    int      // rows with exactly 3 fields, handed to the caller
	Skipped int      // malformed rows: a field count other than 3, a bad quote, an oversized record
	Samples []string // up to maxSamples "name:line: reason" strings for skipped rows
}

const (
	maxSamples = 5
	// maxRecord bounds one record. Python's csv module refuses fields over
	// 128 KiB (csv.field_size_limit), so Maltrail cannot load a longer row
	// either; a record past this bound is skipped as malformed, which also
	// bounds how far an unterminated quote can reach.
	maxRecord  = 1 << 20
	readChunk  = 256 << 10
	maxFields  = 3
	maxInterns = 1 << 16
)

func (s *Stats) skip(name string, line int, reason string) {
	s.Skipped++
	if len(s.Samples) < maxSamples {
		s.Samples = append(s.Samples, fmt.Sprintf("%s:%d: %s", name, line, reason))
	}
}

// Open opens a trails file for ReadCSV or LoadSet, decompressing it when
// its name ends in ".gz".
func Open(path string) (io.ReadCloser, error) {
	return OpenProgress(path, nil)
}

// OpenProgress is Open that calls progress, when set, with the bytes read
// from the file so far (before decompression) after each read.
func OpenProgress(path string, progress func(read int64)) (io.ReadCloser, error) {
	return (&byteCounter{report: progress}).open(path)
}

// byteCounter counts the bytes read from the files it opens and reports
// the running total; a nil one or one without report just opens.
type byteCounter struct {
	n      int64
	report func(int64)
}

func (c *byteCounter) open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open trails: %w", err)
	}
	var r io.Reader = f
	if c != nil && c.report != nil {
		r = &countedFile{f: f, c: c}
	}
	sf := &sourceFile{Reader: r, f: f}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("open trails %s: %w", path, err)
		}
		sf.Reader, sf.zr = zr, zr
	}
	return sf, nil
}

type countedFile struct {
	f *os.File
	c *byteCounter
}

func (r *countedFile) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.c.n += int64(n)
	r.c.report(r.c.n)
	return n, err
}

// sourceFile reads through Reader (a gzip reader, a counter, or both) and
// closes the file under it.
type sourceFile struct {
	io.Reader
	f  *os.File
	zr *gzip.Reader
}

func (g *sourceFile) Close() error {
	var zerr error
	if g.zr != nil {
		zerr = g.zr.Close()
	}
	return errors.Join(zerr, g.f.Close())
}

// ReadCSV reads a Maltrail trails.csv from r and calls fn for every row that
// has exactly three fields; name is used in messages. It parses real CSV as
// Python's csv module reads what csv.writer (QUOTE_MINIMAL) wrote: a field
// starting with '"' is quoted, '""' inside it is a '"', and it may hold
// ',', CR and LF; a '"' inside an unquoted field is an ordinary byte.
// Records end in LF, CRLF or a lone CR. Blank lines are not rows and are
// not counted.
//
// Malformed rows are counted in Stats and skipped, never fatal: a row with
// another field count is dropped whole (as Maltrail drops it). A bad quote
// (text after a closing quote, or a quote that is not closed within
// maxRecord bytes or before the end of the input) drops the record and
// reading resumes at the line after the one where that record started, so
// one stray quote costs one row instead of swallowing the rest of the file
// the way Python's csv module would.
//
// Info and Reference strings are shared between rows with equal text, so a
// 1.6M-row file costs one allocation per row (the trail) rather than three.
// An error from fn stops the reading and is returned with name:line.
func ReadCSV(r io.Reader, name string, fn func(Row) error) (Stats, error) {
	cr := newCSVReader(r, name)
	interned := make(map[string]string)
	intern := func(b []byte) string {
		if s, ok := interned[string(b)]; ok {
			return s
		}
		s := string(b)
		if len(interned) < maxInterns {
			interned[s] = s
		}
		return s
	}
	for {
		fields, line, err := cr.next()
		if err == io.EOF {
			return cr.stats, nil
		}
		if err != nil {
			return cr.stats, err
		}
		row := Row{Trail: string(fields[0]), Info: intern(fields[1]), Reference: intern(fields[2]), Line: line}
		if err := fn(row); err != nil {
			return cr.stats, fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
}

// csvReader is a small CSV reader over its own buffer. It exists instead of
// encoding/csv because encoding/csv allocates per record and cannot resync
// after a bad quote, and because keeping the record in the buffer lets
// the caller look at fields without copying them.
type csvReader struct {
	r     io.Reader
	name  string
	buf   []byte
	start int // first unconsumed byte in buf
	end   int // end of valid data in buf
	base  int64
	eof   bool
	line  int // line number of buf[start]
	stats Stats

	// [quoteFreeLo, quoteFreeHi) is a stream range known to hold no '"'.
	// It keeps repeated resyncs after an unclosed quote linear: each
	// retry skips the part the previous one already searched.
	quoteFreeLo, quoteFreeHi int64

	fields  [maxFields][]byte
	spans   [maxFields]span
	scratch []byte // unescaped text of quoted fields that contain '""'
}

type span struct {
	from, to  int // offsets in buf, or in scratch when inScratch
	inScratch bool
}

// parse results
type result int

const (
	resOK       result = iota
	resNeedMore        // the record runs past the buffered data
	resBadQuote        // malformed quoting
	resTooLong         // record longer than maxRecord
)

func newCSVReader(r io.Reader, name string) *csvReader {
	return &csvReader{r: r, name: name, buf: make([]byte, readChunk), line: 1}
}

// fill makes room and reads more input. It keeps buf[start:end].
func (c *csvReader) fill() error {
	if c.start > 0 {
		n := copy(c.buf, c.buf[c.start:c.end])
		c.base += int64(c.start)
		c.start, c.end = 0, n
	}
	if c.end == len(c.buf) {
		c.buf = append(c.buf, make([]byte, len(c.buf))...)
	}
	// Like bufio, give up on a reader that keeps returning nothing.
	for range 100 {
		n, err := c.r.Read(c.buf[c.end:])
		c.end += n
		if err == io.EOF {
			c.eof = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", c.name, err)
		}
		if n > 0 {
			return nil
		}
	}
	return fmt.Errorf("read %s: %w", c.name, io.ErrNoProgress)
}

// next returns the fields of the next 3-field record, valid until the next
// call, and the line it starts on. It returns io.EOF at the end.
func (c *csvReader) next() ([maxFields][]byte, int, error) {
	for {
		// Skip blank lines.
		for c.start < c.end && (c.buf[c.start] == '\n' || c.buf[c.start] == '\r') {
			if c.buf[c.start] == '\r' && c.start+1 == c.end && !c.eof {
				break // need the next byte to tell CRLF from CR
			}
			if c.buf[c.start] == '\r' && c.start+1 < c.end && c.buf[c.start+1] == '\n' {
				c.start++
			}
			c.start++
			c.line++
		}
		if c.start == c.end || (c.buf[c.start] == '\r' && c.start+1 == c.end) {
			if c.eof {
				if c.start < c.end { // a lone final CR
					c.start++
				}
				return c.fields, 0, io.EOF
			}
			if err := c.fill(); err != nil {
				return c.fields, 0, err
			}
			continue
		}
		n, recEnd, lines, res, reason := c.parse()
		switch res {
		case resNeedMore:
			if err := c.fill(); err != nil {
				return c.fields, 0, err
			}
			continue
		case resBadQuote, resTooLong:
			c.stats.skip(c.name, c.line, reason)
			if !c.resync() {
				if err := c.discardLine(); err != nil {
					return c.fields, 0, err
				}
			}
			continue
		}
		line := c.line
		c.line += lines
		if n != maxFields {
			c.stats.skip(c.name, line, fmt.Sprintf("%d fields, want 3", n))
			c.start = recEnd
			continue
		}
		for i := range maxFields {
			s := c.spans[i]
			if s.inScratch {
				c.fields[i] = c.scratch[s.from:s.to]
			} else {
				c.fields[i] = c.buf[s.from:s.to]
			}
		}
		c.start = recEnd
		c.stats.Rows++
		return c.fields, line, nil
	}
}

// parse parses the record at buf[start:end]. It returns the field count,
// the offset just past the record's line break, the number of line breaks
// in the record, and the outcome.
func (c *csvReader) parse() (nfields, recEnd, lines int, res result, reason string) {
	buf := c.buf[:c.end]
	limit := c.start + maxRecord
	c.scratch = c.scratch[:0]
	p := c.start
	for {
		var sp span
		if p < len(buf) && buf[p] == '"' {
			var r result
			q := p
			sp, p, r, reason = c.quoted(buf, p, limit)
			if r != resOK {
				return 0, 0, 0, r, reason
			}
			// Only quoted fields hold line breaks; they are rare, so
			// they are counted here rather than for every record.
			lines += countLines(buf[q:p])
		} else {
			i := p
			for i < len(buf) && buf[i] != ',' && buf[i] != '\n' && buf[i] != '\r' {
				i++
			}
			if i-c.start > maxRecord {
				return 0, 0, 0, resTooLong, "record longer than 1 MiB"
			}
			if i == len(buf) && !c.eof {
				return 0, 0, 0, resNeedMore, ""
			}
			sp = span{from: p, to: i}
			p = i
		}
		if nfields < maxFields {
			c.spans[nfields] = sp
		}
		nfields++
		// p is at ',', a line break, or the end of the input.
		if p == len(buf) {
			return nfields, p, lines, resOK, ""
		}
		switch buf[p] {
		case ',':
			p++
		case '\n':
			return nfields, p + 1, lines + 1, resOK, ""
		case '\r':
			if p+1 == len(buf) && !c.eof {
				return 0, 0, 0, resNeedMore, ""
			}
			if p+1 < len(buf) && buf[p+1] == '\n' {
				return nfields, p + 2, lines + 1, resOK, ""
			}
			return nfields, p + 1, lines + 1, resOK, ""
		}
	}
}

// quoted parses the quoted field whose opening quote is at buf[p]. It
// returns the field's span and the offset just past the closing quote.
func (c *csvReader) quoted(buf []byte, p, limit int) (span, int, result, string) {
	from := p + 1
	seg := from // start of the text not yet copied to scratch
	i := from   // where the search for the next '"' starts
	inScratch := false
	for {
		// Skip what an earlier failed search already proved quote-free.
		segStart := c.base + int64(i)
		if segStart >= c.quoteFreeLo && segStart < c.quoteFreeHi {
			segStart = c.quoteFreeLo
			i = int(c.quoteFreeHi - c.base)
		}
		j := -1
		if i < len(buf) {
			j = bytes.IndexByte(buf[i:], '"')
		}
		if j < 0 || i+j >= limit {
			// [segStart, here) holds no '"': remember it for the retries
			// that follow a resync or a refill.
			free := len(buf)
			if j >= 0 {
				free = i + j
			}
			c.quoteFreeLo, c.quoteFreeHi = segStart, c.base+int64(free)
		}
		if j < 0 {
			switch {
			case len(buf) >= limit:
				return span{}, 0, resTooLong, "quoted field not closed within 1 MiB"
			case c.eof:
				return span{}, 0, resBadQuote, "quoted field not closed before the end of the input"
			}
			return span{}, 0, resNeedMore, ""
		}
		q := i + j
		if q >= limit {
			return span{}, 0, resTooLong, "quoted field not closed within 1 MiB"
		}
		if q+1 == len(buf) && !c.eof {
			return span{}, 0, resNeedMore, "" // '"' or '""'? need the next byte
		}
		if q+1 < len(buf) && buf[q+1] == '"' {
			// An escaped quote: from here on the field is built in scratch.
			if !inScratch {
				inScratch = true
				from = len(c.scratch)
			}
			c.scratch = append(c.scratch, buf[seg:q+1]...)
			seg, i = q+2, q+2
			continue
		}
		// The closing quote. What follows must end the field.
		if q+1 < len(buf) && buf[q+1] != ',' && buf[q+1] != '\n' && buf[q+1] != '\r' {
			return span{}, 0, resBadQuote, "text after a closing quote"
		}
		if inScratch {
			c.scratch = append(c.scratch, buf[seg:q]...)
			return span{from: from, to: len(c.scratch), inScratch: true}, q + 1, resOK, ""
		}
		return span{from: from, to: q}, q + 1, resOK, ""
	}
}

// resync moves start past the first line break after the current record's
// start. It reports false when that line break is not in the buffer.
func (c *csvReader) resync() bool {
	for i := c.start; i < c.end; i++ {
		switch c.buf[i] {
		case '\n':
			c.start, c.line = i+1, c.line+1
			return true
		case '\r':
			if i+1 == c.end && !c.eof {
				return false
			}
			if i+1 < c.end && c.buf[i+1] == '\n' {
				i++
			}
			c.start, c.line = i+1, c.line+1
			return true
		}
	}
	if c.eof {
		c.start = c.end
		return true
	}
	return false
}

// discardLine drops input up to and including the next line break, reading
// as needed, for a line longer than the buffer may grow.
func (c *csvReader) discardLine() error {
	for {
		if c.resync() {
			return nil
		}
		// No line break buffered: drop all but a trailing CR.
		keep := c.end
		if keep > c.start && c.buf[keep-1] == '\r' {
			keep--
		}
		c.start = keep
		if err := c.fill(); err != nil {
			return err
		}
	}
}

// countLines counts line breaks (LF, CRLF, lone CR) in b.
func countLines(b []byte) int {
	n := bytes.Count(b, []byte{'\n'})
	if bytes.IndexByte(b, '\r') < 0 {
		return n
	}
	for i, ch := range b {
		if ch == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			n++
		}
	}
	return n
}
