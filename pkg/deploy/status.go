package deploy

import (
	"strings"
	"time"

	"github.com/xtrail/xtrail/pkg/dataplane"
	"github.com/xtrail/xtrail/pkg/store"
)

// Status is what is live on a pin dir's trail maps: what `xtrail trails
// stats` reports.
type Status struct {
	Generation uint32                  `json:"generation"`
	Kernel     dataplane.Counts        `json:"kernel"`
	Memory     dataplane.Memory        `json:"kernel_memory"`
	Origin     *dataplane.LoadedOrigin `json:"origin,omitempty"`
	Store      *StoreStatus            `json:"store,omitempty"`
	// Newest is the modification time of the newest source; Age is its
	// age, Stale whether that is over twice the update period.
	Newest time.Time     `json:"newest_source,omitzero"`
	Age    time.Duration `json:"age_ns,omitempty"`
	Stale  bool          `json:"stale"`
}

// StoreStatus describes the store the live trails came from.
type StoreStatus struct {
	Path     string      `json:"path"`
	Built    time.Time   `json:"built"`
	Verified bool        `json:"verified"`
	Stats    store.Stats `json:"stats"`
	Err      string      `json:"error,omitempty"`
}

// ReadStatus reads the live generation's counts, kernel memory and origin,
// and opens the store it came from; trails older than twice period are
// stale.
func ReadStatus(maps *dataplane.TrailMaps, period time.Duration) (Status, error) {
	var r Status
	var err error
	if r.Kernel, err = maps.Counts(); err != nil {
		return r, err
	}
	r.Generation = r.Kernel.Generation
	if r.Memory, err = maps.Memory(); err != nil {
		return r, err
	}
	o, ok, err := maps.Origin()
	if err != nil {
		return r, err
	}
	if !ok {
		return r, nil
	}
	r.Origin = &o
	// The age of the trails is that of their newest source file; for a
	// store, of the files it was compiled from, when they are known.
	compiled := false
	for _, src := range o.Sources {
		compiled = compiled || strings.HasPrefix(src.Kind, CompiledKind) && !src.Modified.IsZero()
	}
	for _, src := range o.Sources {
		if src.Kind == "store" && r.Store == nil {
			r.Store = storeStatus(src.Path)
		}
		if compiled && !strings.HasPrefix(src.Kind, CompiledKind) {
			continue
		}
		if src.Modified.After(r.Newest) {
			r.Newest = src.Modified
		}
	}
	if !r.Newest.IsZero() {
		r.Age = time.Since(r.Newest)
		r.Stale = r.Age > 2*period
	}
	return r, nil
}

// storeStatus reads the stats of the store a sensor loaded (checksum
// verified, as the sensor does).
func storeStatus(path string) *StoreStatus {
	ss := &StoreStatus{Path: path}
	st, err := store.Open(path)
	if err != nil {
		ss.Err = err.Error()
		return ss
	}
	defer st.Close()
	ss.Built, ss.Verified, ss.Stats = st.Info().BuildTime, st.Info().Verified, st.Stats()
	return ss
}
