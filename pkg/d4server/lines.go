package d4server

import (
	"bytes"
	"encoding/json"
	"errors"
)

// lineSplitter turns type-254 payloads into lines as d4-core's maltrail
// handler does (spec §2): split on '\n', keep the partial last line for the
// next frame, drop empty lines, keep '\r', and cut a line after
// maxForcedLine bytes without '\n' (so memory per session stays bounded).
type lineSplitter struct {
	buf   []byte   // unconsumed bytes: the partial line, then new payload
	done  int      // bytes of buf already returned as lines
	lines [][]byte // reused result
}

// feed appends payload and returns the complete lines. They alias the
// splitter's buffer and are valid until the next call.
func (sp *lineSplitter) feed(payload []byte) [][]byte {
	if sp.done > 0 {
		// Lines returned last time have been stored by now: drop them and
		// keep only the partial line.
		sp.buf = sp.buf[:copy(sp.buf, sp.buf[sp.done:])]
		sp.done = 0
	}
	sp.buf = append(sp.buf, payload...)
	sp.lines = sp.lines[:0]
	start := 0
	for start < len(sp.buf) {
		rest := sp.buf[start:]
		i := bytes.IndexByte(rest, '\n')
		if i > maxForcedLine || (i < 0 && len(rest) >= maxForcedLine) {
			sp.lines = append(sp.lines, rest[:maxForcedLine])
			start += maxForcedLine
			continue
		}
		if i < 0 {
			break // partial line: wait for the next frame
		}
		if i > 0 {
			sp.lines = append(sp.lines, rest[:i])
		}
		start += i + 1
	}
	sp.done = start
	return sp.lines
}

// shrink gives back a buffer grown by a large frame once the lines returned
// last have been stored, keeping only the partial line.
func (sp *lineSplitter) shrink() {
	if cap(sp.buf) <= keepBuffer {
		return
	}
	rest := sp.buf[sp.done:]
	sp.buf = append(make([]byte, 0, len(rest)), rest...)
	sp.done = 0
	sp.lines = nil
}

// parseMetaHeader reads the meta-type name from the concatenated type-2
// payloads. complete is false while the bytes are not yet valid JSON (more
// frames may follow); once they are, it must be an object with a string
// "type".
func parseMetaHeader(b []byte) (name string, complete bool, err error) {
	if !json.Valid(b) {
		return "", false, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return "", true, errors.New("meta header is not a JSON object")
	}
	raw, ok := obj["type"]
	if !ok {
		return "", true, errors.New(`meta header has no "type"`)
	}
	if err := json.Unmarshal(raw, &name); err != nil {
		return "", true, errors.New(`meta header "type" is not a string`)
	}
	return name, true, nil
}
