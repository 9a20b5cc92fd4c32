// Package deploy makes a compiled trail store the trails of a sensor host,
// and reports what is live (Status).
// With a sensor running on the pin dir, the sensor itself switches to the
// store: it stages the store's name trails for the kernel's idle
// generation, fills that generation and switches both at once (see
// pkg/sensor). Deploy replaces the store file, signals the sensor, and
// waits until the kernel's live generation records the store's checksum.
// Without a sensor, Deploy fills the kernel maps itself, so a sensor that
// starts on the store finds its trails loaded and only maps the file.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/store"
)

// Origin describes a load of the store s at path by the loader by: the
// store file, then the sources it was compiled from.
func Origin(path string, s *store.Store, by string) dataplane.Origin {
	o := dataplane.Origin{ID: s.Info().SHA256, By: by,
		Sources: []dataplane.OriginSource{dataplane.FileSource(path, "store", s.Stats().Load.Rows)}}
	for _, src := range s.Sources() {
		// the file as it is now, when it is still there: its age is the
		// age of the trails, which the store's own mtime is not
		kind, path := sourcePath(src.Name)
		from := dataplane.FileSource(path, kind, src.Rows)
		from.Kind = CompiledKind
		if kind != "" {
			from.Kind += " (" + kind + ")"
		}
		o.Sources = append(o.Sources, from)
	}
	return o
}

// CompiledKind marks an origin source a store was compiled from.
const CompiledKind = "compiled into the store"

// sourcePath splits a store's source name, "KIND:PATH" for merged
// sources (trails.Source.String) or a bare path, into kind and path.
func sourcePath(name string) (kind, path string) {
	for _, k := range []string{"trails.csv", "static", "custom", "cidr"} {
		if rest, ok := strings.CutPrefix(name, k+":"); ok {
			return k, rest
		}
	}
	return "", name
}

// Result says how a store went live.
type Result struct {
	Store      string               `json:"store"`
	Sensor     int                  `json:"sensor_pid,omitempty"` // the sensor that switched, if one ran
	Generation uint32               `json:"generation"`
	Kernel     *dataplane.LoadStats `json:"kernel,omitempty"` // set when Deploy filled the kernel itself
	Took       time.Duration        `json:"took_ns"`
}

// ErrOtherFile is returned when the running sensor reads another trails
// file than the store: it would not switch to the store, and filling the
// kernel under it would give it IP trails of one set and names of another.
var ErrOtherFile = errors.New("the running sensor reads another trails file")

// Deploy makes the compiled store at path live on the trail maps in
// pinDir: it hands it to the sensor running there, or loads the kernel
// maps itself when none runs. wait bounds the wait for a sensor.
func Deploy(ctx context.Context, pinDir, path string, wait time.Duration) (Result, error) {
	start := time.Now()
	res := Result{Store: path}
	s, err := store.Open(path)
	if err != nil {
		return res, err
	}
	defer s.Close()
	maps, err := dataplane.OpenTrailMaps(pinDir)
	if err != nil {
		return res, err
	}
	defer maps.Close()
	pid, err := dataplane.PinDirHolder(pinDir)
	if err != nil {
		return res, err
	}
	sum := s.Info().SHA256
	if pid == 0 {
		st, err := maps.ReplaceFrom(s.IPSet(), Origin(path, s, "trails load"))
		if err != nil {
			return res, fmt.Errorf("load %s into the kernel maps: %w", path, err)
		}
		res.Generation, res.Kernel, res.Took = st.Generation, &st, time.Since(start)
		return res, nil
	}
	if id, live := maps.LiveID(); live && id == sum {
		res.Sensor, res.Took = pid, time.Since(start)
		res.Generation, _ = maps.Generation()
		return res, nil // already live
	}
	if f := sensorFile(maps); f == "" || !sameFile(f, path) {
		return res, fmt.Errorf("%w: sensor %d reads %q, not the store %s: set its TRAILS_FILE to the store and reload it", ErrOtherFile, pid, f, path)
	}
	res.Sensor = pid
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return res, fmt.Errorf("signal sensor %d to reload: %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if id, live := maps.LiveID(); live && id == sum {
			res.Generation, _ = maps.Generation()
			res.Took = time.Since(start)
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("sensor %d did not switch to %s within %v (see its log): %w", pid, path, wait, ctx.Err())
		case <-t.C:
		}
	}
}

// sensorFile is the trails file of the live generation, as its origin
// record names it: the first source, a store or a trails.csv.
func sensorFile(maps *dataplane.TrailMaps) string {
	o, ok, err := maps.Origin()
	if err != nil || !ok || len(o.Sources) == 0 {
		return ""
	}
	return o.Sources[0].Path
}

// sameFile says whether two paths name one file: the same absolute path,
// or two that lead to the same file now (a symlink on the way).
func sameFile(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 == nil && err2 == nil && aa == bb {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// ErrShrunk is returned for a trail set under half the size of the live
// one: what a truncated download or a failed source gives. Refusing it
// keeps the live trails; the operator may force it.
var ErrShrunk = errors.New("the new trails are under half the live ones")

// CheckSize compares the rows of a new trail set with those the live
// generation was loaded from (its origin record): under half is
// refused. Without a live origin there is nothing to compare.
func CheckSize(pinDir string, rows int) error {
	maps, err := dataplane.OpenTrailMaps(pinDir)
	if err != nil {
		return err
	}
	defer maps.Close()
	o, ok, err := maps.Origin()
	if err != nil || !ok || len(o.Sources) == 0 {
		return err
	}
	if live := o.Sources[0].Rows; rows*2 < live {
		return fmt.Errorf("%w: %d rows against %d from %s: keeping the live trails", ErrShrunk, rows, live, o.Sources[0].Path)
	}
	return nil
}

// ErrMalformed is returned for a trail set with more malformed rows than
// good ones: what a binary file, an HTML error page or another format
// named .csv gives. Its few rows that happen to have three fields are junk,
// so refusing it keeps the live trails; the operator may force it.
var ErrMalformed = errors.New("the new trails have more malformed rows than good ones")

// maxWhere bounds how many malformed rows CheckMalformed names.
const maxWhere = 3

// CheckMalformed refuses a set whose malformed rows outnumber its good
// ones; samples ("file:line: reason", trails.Stats.Samples) say where the
// first ones are.
func CheckMalformed(rows, malformed int, samples []string) error {
	if malformed <= rows {
		return nil
	}
	where := ""
	if len(samples) > 0 {
		where = " (first: " + strings.Join(samples[:min(len(samples), maxWhere)], "; ") + ")"
	}
	return fmt.Errorf("%w: %d malformed against %d good%s: keeping the live trails", ErrMalformed, malformed, rows, where)
}
