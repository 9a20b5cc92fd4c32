package maltrail

import (
	"bytes"
	"errors"
	"fmt"
)

// Version is the Maltrail release whose formats this package reproduces
// (the spec's source, VERSION 3.1.2). The CEF output names it as the
// device version, as Maltrail's sensor names its own.
const Version = "3.1.2"

// Columns of a log line (spec §2), in order.
const (
	ColTime = iota
	ColSensor
	ColSrcIP
	ColSrcPort
	ColDstIP
	ColDstPort
	ColProto
	ColType
	ColTrail
	ColInfo
	ColReference
	NumCols
)

// ErrLine reports bytes that are not a Maltrail log line.
var ErrLine = errors.New("not a Maltrail log line")

// LineFields is a log line split back into its columns: the inverse of
// safe_value's quoting, so a quoted column loses its quotes and each
// doubled '"' inside it becomes one. What safe_value dropped stays dropped:
// a "-" column may have been empty, and a space may have been a CR or LF.
//
// The columns point into the line or into the LineFields' own buffer; they
// are valid until the next Split and until the line is changed. Split does
// not allocate once the buffer has grown to the longest line.
type LineFields struct {
	Cols [NumCols][]byte
	buf  []byte
}

// Split splits one log line, with or without its trailing '\n'. It
// accepts exactly what AppendLine and AppendTextLine write: eleven columns
// separated by single spaces, each either a bare non-empty run of bytes
// other than space and '"', or a quoted value.
func (f *LineFields) Split(line []byte) error {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	// Unquoting never lengthens a column, so with len(line) bytes of room
	// the appends below never move the buffer under earlier columns.
	if cap(f.buf) < len(line) {
		f.buf = make([]byte, 0, len(line))
	}
	f.buf = f.buf[:0]
	rest := line
	for i := range NumCols {
		if i > 0 {
			if len(rest) == 0 || rest[0] != ' ' {
				return fmt.Errorf("%w: %d columns, want %d", ErrLine, i, NumCols)
			}
			rest = rest[1:]
		}
		if len(rest) > 0 && rest[0] == '"' {
			var err error
			if rest, err = f.quoted(i, rest); err != nil {
				return err
			}
			continue
		}
		n := bytes.IndexAny(rest, " \"")
		if n < 0 {
			n = len(rest)
		}
		if n == 0 || (n < len(rest) && rest[n] == '"') {
			return fmt.Errorf("%w: column %d is empty or has a stray '\"'", ErrLine, i+1)
		}
		f.Cols[i] = rest[:n:n]
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: more than %d columns", ErrLine, NumCols)
	}
	return nil
}

// quoted reads the quoted column i at the start of s and returns what
// follows it.
func (f *LineFields) quoted(i int, s []byte) ([]byte, error) {
	start := len(f.buf)
	s = s[1:]
	for {
		n := bytes.IndexByte(s, '"')
		if n < 0 {
			return nil, fmt.Errorf("%w: column %d has no closing '\"'", ErrLine, i+1)
		}
		f.buf = append(f.buf, s[:n]...)
		s = s[n+1:]
		if len(s) > 0 && s[0] == '"' { // a doubled quote stands for one
			f.buf = append(f.buf, '"')
			s = s[1:]
			continue
		}
		end := len(f.buf)
		f.Cols[i] = f.buf[start:end:end]
		return s, nil
	}
}
