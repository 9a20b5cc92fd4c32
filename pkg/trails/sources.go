package trails

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// SourceKind is the format of a trail source.
type SourceKind uint8

const (
	// KindTrailsCSV is a Maltrail trails.csv (spec §1.1), read with
	// ReadCSV; a ".gz" name is decompressed. Rows are taken as they are:
	// the updater that wrote the file already normalised the keys.
	KindTrailsCSV SourceKind = iota + 1
	// KindStaticDir is a Maltrail trails/static directory (spec §1.1, §8):
	// <dir>/<category>/<name>.txt with one indicator per line. The info is
	// the file name with '_' turned into ' ' plus " (<category>)" from the
	// directory the file is in, none for files directly in <dir> (such as
	// mass_scanner.txt); the reference is "(static)". Lines follow
	// StaticTrail.
	KindStaticDir
	// KindCustomList is a list of the operator's own trails, as in
	// CUSTOM_TRAILS_DIR (spec §8): one trail per line, optionally followed
	// by ",info" or ",info,reference". The defaults are the file name
	// without its extension and "(custom)". The trail goes through the
	// same line rules as a static one (StaticTrail). Path is one file, or
	// a directory whose *.txt files are read (not recursively, in name
	// order, as Maltrail globs CUSTOM_TRAILS_DIR/*.txt).
	KindCustomList
	// KindCIDRList is an xtrail extension with no Maltrail counterpart
	// (Maltrail has no CIDR trails, spec §1.2): one IPv4 or IPv6 prefix
	// per line, optionally followed by ",info" or ",info,reference", with
	// the defaults of KindCustomList. Prefixes are masked ("10.1.2.3/8" is
	// 10.0.0.0/8) and a bare address is a host prefix. The row's trail is
	// the canonical text (CIDRText), which events report as type IP. Path
	// is a file or a directory as for KindCustomList.
	KindCIDRList
)

func (k SourceKind) String() string {
	switch k {
	case KindTrailsCSV:
		return "trails.csv"
	case KindStaticDir:
		return "static"
	case KindCustomList:
		return "custom"
	case KindCIDRList:
		return "cidr"
	}
	return "SourceKind(" + strconv.Itoa(int(k)) + ")"
}

// Source is one place trails come from.
type Source struct {
	Kind SourceKind
	Path string
	// Priority orders sources for Merge: lower first, and a later
	// (higher) source wins a duplicate key as far as the merge rules let
	// it. Sources of equal priority keep their order in the slice.
	Priority int
}

func (s Source) String() string { return s.Kind.String() + ":" + s.Path }

// Defaults of the line-based sources (spec §1.1).
const (
	staticReference = "(static)"
	customReference = "(custom)"
)

// ReadSource reads src and calls fn for every trail in it, in file order
// (files of a directory in lexical order). Row.Line is the line within
// its file; error messages and Stats.Samples name the file.
//
// Malformed lines (a field count other than 1..3, white space or control
// characters inside a trail, a non-ASCII trail, an address that could
// never match, a bad CIDR, a line over 1 MiB) are counted in Stats and
// skipped, never fatal. Blank and comment lines are not counted. A source
// that cannot be opened or read, and any error from fn, ends the reading
// and is returned with context.
func ReadSource(src Source, fn func(Row) error) (Stats, error) {
	return readSource(src, nil, func(r Row, _ netip.Prefix) error { return fn(r) })
}

// readSource is ReadSource that also hands over the parsed prefix of a
// KindCIDRList row (the zero Prefix for the other kinds), so Merge need
// not parse the text again.
func readSource(src Source, c *byteCounter, fn func(Row, netip.Prefix) error) (Stats, error) {
	var st Stats
	var err error
	switch src.Kind {
	case KindTrailsCSV:
		err = readCSVSource(src.Path, c, &st, fn)
	case KindStaticDir:
		err = readStaticDir(src.Path, c, &st, fn)
	case KindCustomList, KindCIDRList:
		err = readListSource(src, c, &st, fn)
	default:
		err = fmt.Errorf("unknown source kind %d", src.Kind)
	}
	if err != nil {
		return st, fmt.Errorf("read trail source %s: %w", src, err)
	}
	return st, nil
}

func readCSVSource(path string, c *byteCounter, st *Stats, fn func(Row, netip.Prefix) error) error {
	f, err := c.open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	s, err := ReadCSV(f, path, func(r Row) error { return fn(r, netip.Prefix{}) })
	*st = s
	return err
}

// readStaticDir walks dir in lexical order. Hidden files and directories
// (".git") and files not ending in ".txt" (Maltrail's __init__.py) are
// not trail lists.
func readStaticDir(dir string, c *byteCounter, st *Stats, fn func(Row, netip.Prefix) error) error {
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path != dir && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(name, ".txt") {
			return nil
		}
		info := staticInfo(dir, path)
		return readFileLines(path, c, st, func(line []byte, n int) error {
			trail, reason := StaticTrail(string(line))
			return st.take(path, n, reason, Row{Trail: trail, Info: info, Reference: staticReference, Line: n}, netip.Prefix{}, fn)
		})
	})
}

// take hands one parsed list line to fn and counts it. A line with a
// reason is malformed (counted and sampled); one without a trail is blank
// or a comment.
func (st *Stats) take(path string, n int, reason string, row Row, p netip.Prefix, fn func(Row, netip.Prefix) error) error {
	if reason != "" {
		st.skip(path, n, reason)
		return nil
	}
	if row.Trail == "" {
		return nil
	}
	st.Rows++
	return fn(row, p)
}

// staticInfo derives a static file's info (spec §1.1): "asyncrat
// (malware)" for <dir>/malware/asyncrat.txt, "mass scanner" for
// <dir>/mass_scanner.txt. The category is the name of the directory
// holding the file; Maltrail only has malware, malicious and suspicious,
// and any other directory name is used as it is rather than dropping the
// files in it.
func staticInfo(root, path string) string {
	info := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(path), ".txt"), "_", " ")
	parent := filepath.Dir(path)
	if filepath.Clean(parent) == filepath.Clean(root) {
		return info
	}
	return info + " (" + filepath.Base(parent) + ")"
}

// readListSource reads a custom or CIDR list: one file, or the *.txt
// files directly in a directory.
func readListSource(src Source, c *byteCounter, st *Stats, fn func(Row, netip.Prefix) error) error {
	info, err := os.Stat(src.Path)
	if err != nil {
		return err
	}
	files := []string{src.Path}
	if info.IsDir() {
		ents, err := os.ReadDir(src.Path) // sorted by name
		if err != nil {
			return err
		}
		files = files[:0]
		for _, e := range ents {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".txt") && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, filepath.Join(src.Path, e.Name()))
			}
		}
	}
	for _, path := range files {
		defInfo := listInfo(path)
		err := readFileLines(path, c, st, func(line []byte, n int) error {
			if src.Kind == KindCIDRList {
				p, text, info, ref, reason := parseCIDRLine(string(line), defInfo)
				return st.take(path, n, reason, Row{Trail: text, Info: info, Reference: ref, Line: n}, p, fn)
			}
			trail, info, ref, reason := parseCustomLine(string(line), defInfo)
			return st.take(path, n, reason, Row{Trail: trail, Info: info, Reference: ref, Line: n}, netip.Prefix{}, fn)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// listInfo is the default info of a custom or CIDR list: the file name
// without its extension (and without ".gz" first, since Open reads
// compressed lists too).
func listInfo(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), ".gz")
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// StaticTrail applies the line rules of Maltrail's trails/static lists
// (spec §8) to one line and returns the trail key:
//   - everything from '#' on is a comment, and surrounding white space
//     is trimmed; a line left empty gives ("", "");
//   - the line is lowercased;
//   - a leading "scheme://" is removed, and a bare "scheme://host"
//     becomes "host/";
//   - anything containing '/' is a URL trail, kept as it is;
//   - a dotted quad, with or without ":port", is kept as it is;
//   - anything else is a domain (or a regex trail) with dots stripped
//     from both ends.
//
// A line that cannot be a trail returns a non-empty reason instead: white
// space or control characters inside it, non-ASCII text (Maltrail would
// IDNA-encode it; xtrail has no IDNA table), a dotted quad that is not
// Maltrail's text of an address (octet over 255, a leading zero, port 0:
// it could never match), or nothing left but dots or a scheme.
func StaticTrail(line string) (trail, reason string) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	s := strings.TrimSpace(line)
	if s == "" {
		return "", ""
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			return "", "non-ASCII trail (IDNA is not applied)"
		case c <= ' ' || c == 0x7f:
			return "", "white space or control character inside the trail"
		}
	}
	s = strings.ToLower(s)
	if n := schemeLen(s); n > 0 {
		s = s[n:]
		if s == "" {
			return "", "nothing after the scheme"
		}
		if strings.IndexByte(s, '/') < 0 {
			s += "/"
		}
	}
	if strings.IndexByte(s, '/') >= 0 {
		return s, ""
	}
	// A dotted quad has no dots at its ends, so stripping them first
	// changes nothing for one, and it makes ".1.2.3.4", which the rules
	// turn into the key 1.2.3.4 by way of the domain branch, go through
	// the address check too.
	s = strings.Trim(s, ".")
	if s == "" {
		return "", "nothing but dots"
	}
	if isQuad(s) {
		if _, _, kind := classifyKey(s); kind != kindIP {
			return "", "not Maltrail's text of an address (octet over 255, leading zero or bad port); it could never match"
		}
	}
	return s, ""
}

// schemeLen returns the length of a leading "scheme://" (RFC 3986 scheme
// characters), or 0. Only a leading scheme counts, so a URL trail that
// carries "://" in its query ("evil.com/r?u=http://x") is kept whole.
func schemeLen(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			if strings.HasPrefix(s[i:], "://") {
				return i + 3
			}
			return 0
		default:
			return 0
		}
	}
	return 0
}

// isQuad reports whether s has the shape digits.digits.digits.digits with
// an optional :digits, the shape Maltrail keeps as an IP trail.
func isQuad(s string) bool {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		if !allDigits(s[i+1:]) {
			return false
		}
		s = s[:i]
	}
	parts := 0
	for part := range strings.SplitSeq(s, ".") {
		if !allDigits(part) {
			return false
		}
		parts++
	}
	return parts == 4
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// splitListLine cuts a custom or CIDR line into its fields after removing
// the comment. A trail holding ',' cannot be written in a list; such a
// trail belongs in a trails.csv source, which quotes it.
func splitListLine(line, defInfo string) (first, info, ref, reason string) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	if strings.TrimSpace(line) == "" {
		return "", "", "", ""
	}
	f := strings.Split(line, ",")
	if len(f) > 3 {
		return "", "", "", fmt.Sprintf("%d fields, want trail[,info[,reference]]", len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	first, info, ref = f[0], defInfo, customReference
	if len(f) > 1 && f[1] != "" {
		info = f[1]
	}
	if len(f) > 2 && f[2] != "" {
		ref = f[2]
	}
	if first == "" {
		return "", "", "", "empty trail"
	}
	if !isText(info) || !isText(ref) {
		return "", "", "", "info or reference is not printable UTF-8"
	}
	return first, info, ref, ""
}

// isText reports whether s is valid UTF-8 without control characters, so
// it can go into a trails.csv field and an event line unchanged.
func isText(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

func parseCustomLine(line, defInfo string) (trail, info, ref, reason string) {
	first, info, ref, reason := splitListLine(line, defInfo)
	if reason != "" || first == "" {
		return "", "", "", reason
	}
	trail, reason = StaticTrail(first)
	if reason != "" {
		return "", "", "", reason
	}
	return trail, info, ref, ""
}

func parseCIDRLine(line, defInfo string) (p netip.Prefix, text, info, ref, reason string) {
	first, info, ref, reason := splitListLine(line, defInfo)
	if reason != "" || first == "" {
		return netip.Prefix{}, "", "", "", reason
	}
	p, reason = ParseCIDR(first)
	if reason != "" {
		return netip.Prefix{}, "", "", "", reason
	}
	return p, CIDRText(p), info, ref, ""
}

// ParseCIDR parses one CIDR trail: "a.b.c.d/n" or an IPv6 prefix, masked
// to its network ("10.1.2.3/8" is 10.0.0.0/8), or a bare address as a
// host prefix. A prefix of length 0 is refused: it would match every
// packet, which is never what a list meant. The reason is empty on
// success.
func ParseCIDR(s string) (netip.Prefix, string) {
	var p netip.Prefix
	if strings.IndexByte(s, '/') >= 0 {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, "not a CIDR prefix"
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, "not a CIDR prefix or address"
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, "prefix length 0 covers every address"
	}
	return p.Masked(), ""
}

// CIDRText is the trail text of a CIDR trail: the network address as
// Maltrail writes addresses (spec §1.5, so "2001:db8::0/32", consistent
// with the IP trails of the same events) and the prefix length.
func CIDRText(p netip.Prefix) string {
	var buf [48]byte
	b := maltrail.AppendAddr(buf[:0], p.Addr())
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(p.Bits()), 10)
	return string(b)
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// readFileLines opens path (Open: ".gz" is decompressed) and calls fn for
// each line without its line break.
func readFileLines(path string, c *byteCounter, st *Stats, fn func(line []byte, n int) error) error {
	f, err := c.open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return eachLine(f, path, st, fn)
}

// eachLine calls fn for each line of r, without "\n" or "\r\n". A UTF-8
// byte order mark at the start is dropped (editors on Windows write one,
// and it would otherwise become part of the first trail). A line longer
// than maxRecord is skipped and counted, and reading goes on after it. An
// error from fn is returned with name:line.
func eachLine(r io.Reader, name string, st *Stats, fn func(line []byte, n int) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var acc []byte // a line longer than br's buffer
	tooLong := false
	n := 0
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !tooLong {
				if len(acc)+len(chunk) > maxRecord {
					tooLong, acc = true, acc[:0]
				} else {
					acc = append(acc, chunk...)
				}
			}
			continue
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if len(chunk) == 0 && len(acc) == 0 && !tooLong {
			return nil // io.EOF right after a line break
		}
		n++
		line := chunk
		if len(acc) > 0 {
			acc = append(acc, chunk...)
			line = acc
		}
		if tooLong || len(line) > maxRecord {
			st.skip(name, n, "line longer than 1 MiB")
		} else {
			line = bytes.TrimSuffix(line, []byte{'\n'})
			line = bytes.TrimSuffix(line, []byte{'\r'})
			if n == 1 {
				line = bytes.TrimPrefix(line, utf8BOM)
			}
			if ferr := fn(line, n); ferr != nil {
				return fmt.Errorf("%s:%d: %w", name, n, ferr)
			}
		}
		acc, tooLong = acc[:0], false
		if err == io.EOF {
			return nil
		}
	}
}
