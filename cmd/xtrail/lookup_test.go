package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLookupSkipped: a lookup of a dynamic-domain trail's own name finds
// no event (Maltrail fires it only for names under it) and says so.
func TestLookupSkipped(t *testing.T) {
	file := filepath.Join(t.TempDir(), "trails.csv")
	if err := os.WriteFile(file, []byte("kozow.com,dynamic domain (suspicious),(static)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := lookupName(file, "KOZOW.com")
	if err != nil {
		t.Fatal(err)
	}
	if r.Found || len(r.Skipped) != 1 || r.Skipped[0].Key != "kozow.com" || r.Skipped[0].Info != "dynamic domain (suspicious)" ||
		!strings.Contains(r.Skipped[0].Why, "fires only through a name under it") {
		t.Errorf("%+v", r)
	}
	r, err = lookupName(file, "511mon.kozow.com")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Found || r.Trail != "(511mon).kozow.com" || len(r.Skipped) != 0 {
		t.Errorf("%+v", r)
	}
}
