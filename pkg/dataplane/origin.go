package dataplane

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
)

// Origin says where the trails of a generation came from. It is kept with
// the trail maps (the pinned xt_origin map, which only user space reads), so
// `xtrail trails stats` can tell how old the loaded trails are and from
// which sources, whoever loaded them.
type Origin struct {
	// ID is the compiled store's checksum (zero for other sources); a
	// sensor restarting on the same store keeps the loaded generation.
	ID       [32]byte       `json:"-"`
	By       string         `json:"by"` // the loader: "sensor", "trails load"
	LoadedAt time.Time      `json:"loaded_at"`
	Sources  []OriginSource `json:"sources"`
	// Generation is the generation these trails went into (set by Replace).
	Generation uint32 `json:"generation"`
}

// OriginSource is one source of a load.
type OriginSource struct {
	Path     string    `json:"path"`
	Kind     string    `json:"kind,omitempty"`
	Rows     int       `json:"rows,omitempty"`
	Bytes    int64     `json:"bytes"`
	Modified time.Time `json:"modified"` // the file's (or directory's newest file's) mtime
}

// FileSource describes a source file or directory as it is now: its size
// and modification time, for a directory the sum of its files' sizes and
// the newest file's time.
func FileSource(path, kind string, rows int) OriginSource {
	s := OriginSource{Path: path, Kind: kind, Rows: rows}
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // an unreadable part just does not count
		}
		if fi, err := d.Info(); err == nil {
			s.Bytes += fi.Size()
			if m := fi.ModTime().UTC(); m.After(s.Modified) {
				s.Modified = m
			}
		}
		return nil
	})
	return s
}

// originSpec is xt_origin: one record, {gen u32, len u32, JSON}.
func originSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: "xt_origin", Type: ebpf.Array, KeySize: 4, ValueSize: originSize, MaxEntries: 1}
}

const originSize = 8192

// openOrigin creates or opens (pinned in pinDir, when set) the origin map.
func openOrigin(pinDir string) (*ebpf.Map, error) {
	spec := originSpec()
	opts := ebpf.MapOptions{}
	if pinDir != "" {
		spec.Pinning = ebpf.PinByName
		opts.PinPath = pinDir
	}
	m, err := ebpf.NewMapWithOptions(spec, opts)
	if err != nil {
		return nil, fmt.Errorf("open trail origin map in %q: %w", pinDir, err)
	}
	return m, nil
}

// encodeOrigin packs o into one map value. Sources that do not fit are
// dropped from the end; the record says how many were.
func encodeOrigin(o Origin) ([]byte, error) {
	buf := make([]byte, originSize)
	binary.LittleEndian.PutUint32(buf, o.Generation)
	all := len(o.Sources)
	for {
		js, err := json.Marshal(struct {
			Origin
			Omitted int `json:"sources_omitted,omitempty"`
		}{o, all - len(o.Sources)})
		if err != nil {
			return nil, fmt.Errorf("encode trail origin: %w", err)
		}
		if len(js) <= originSize-8 {
			binary.LittleEndian.PutUint32(buf[4:], uint32(len(js)))
			copy(buf[8:], js)
			return buf, nil
		}
		if len(o.Sources) == 0 {
			return nil, errors.New("encode trail origin: record too long")
		}
		o.Sources = o.Sources[:len(o.Sources)-1]
	}
}

// LoadedOrigin is the origin of the live generation as read back.
type LoadedOrigin struct {
	Origin
	SourcesOmitted int `json:"sources_omitted,omitempty"`
}

// Origin returns the origin recorded for the live generation; ok is false
// when none was recorded (trails loaded by an older xtrail, or none yet).
func (t *TrailMaps) Origin() (o LoadedOrigin, ok bool, err error) {
	if t.origin == nil {
		return o, false, nil
	}
	buf := make([]byte, originSize)
	if err := t.origin.Lookup(uint32(0), buf); err != nil {
		return o, false, fmt.Errorf("read trail origin: %w", err)
	}
	n := binary.LittleEndian.Uint32(buf[4:])
	if n == 0 || n > originSize-8 {
		return o, false, nil
	}
	g, err := t.Generation()
	if err != nil {
		return o, false, err
	}
	if binary.LittleEndian.Uint32(buf) != g {
		return o, false, nil // written for a generation that is no longer live
	}
	if err := json.Unmarshal(buf[8:8+n], &o); err != nil {
		return o, false, fmt.Errorf("decode trail origin: %w", err)
	}
	return o, true, nil
}
