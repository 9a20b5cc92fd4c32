package store

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzOpen writes the input to a file and opens it with and without
// Verify: Open must fail cleanly (ErrCorrupt or ErrVersion) or give a
// store whose readers never panic or fault. With reseal set, the input's
// header gets a correct size, body checksum and header CRC first, so the
// fuzzer reaches the structural checks behind the checksums.
func FuzzOpen(f *testing.F) {
	good, _ := smallStore(f)
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
