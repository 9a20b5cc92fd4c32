package store

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xtrail/xtrail/pkg/trails"
)

// FuzzOpen writes the input to a file and opens it with and without
// Verify: Open must fail cleanly (ErrCorrupt or ErrVersion) or give a
// store whose readers never panic or fault. With reseal set, the input's
// header gets a correct size, body checksum and header CRC first, so the
// fuzzer reaches the structural checks behind the checksums.
func FuzzOpen(f *testing.F) {
	// A tiny seed with every section non-empty: the fuzzer minimizes
	// each new input it finds by re-running it many times, which on a
	// large seed takes all of a short fuzzing run.
	c := NewCollector(nil)
	c.in.Names = []Name{{Key: "k", Meta: c.Meta("x (malware)", "(static)")}, {Key: "evil.com/gate.php", Meta: c.Meta("known attacker", "abuse.ch")}}
	c.in.IPs = []trails.IPTrail{{Addr: netip.MustParseAddr("1.2.3.4"), Meta: 0}, {Addr: netip.MustParseAddr("dead::beef"), Port: 443, Meta: 1}}
	c.AddCIDR(netip.MustParsePrefix("10.0.0.0/8"), "cidr", "(custom)")
	c.in.Regexes = []Regex{{Key: `dga[0-9]+\.x\.com`, Meta: 0, Line: 3}}
	c.in.Sources = []Source{{Name: "t.csv", Rows: 4}}
	good := buildBytes(f, c.Input())
	f.Add(good, false)
	f.Add(good[:len(good)/2], true)
	f.Add(good[:headerSize], true)
	empty := buildBytes(f, &Input{})
	f.Add(empty, false)
	f.Add([]byte("XTRAILS\x00"), false)
	dir := f.TempDir()
	probes := [][]byte{[]byte("k"), []byte("kk"), []byte("kkkkkkkkk"), []byte("miss.example.org"), nil}
	f.Fuzz(func(t *testing.T, data []byte, seal bool) {
		data = slices.Clone(data)
		if seal {
			reseal(data)
		}
		path := filepath.Join(dir, "fuzz.xts")
		// A new file each time: on ext4, rewriting a truncated file
		// makes its close wait for the disk (auto_da_alloc).
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		verified := false
		for _, verify := range []bool{true, false} {
			s, err := OpenWith(path, OpenOptions{Verify: verify})
			if err != nil {
				if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
					t.Fatalf("verify %v: error %v wraps neither ErrCorrupt nor ErrVersion", verify, err)
				}
				if verified {
					t.Fatalf("Open with Verify succeeded, without it failed: %v", err)
				}
				continue
			}
			verified = verify
			exercise(s, probes)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
