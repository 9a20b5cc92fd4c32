package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that records a skip or failure instead of
// ending the goroutine, so the helpers' decisions can be checked.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recorder) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestSharedDir(t *testing.T) {
	mine := t.TempDir()
	if err := os.Mkdir(filepath.Join(mine, "corpus"), 0o755); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, c := range []struct {
		name, env, ci string
		want          string // the dir returned
		skip, fail    bool
	}{
		// an explicit XTRAIL_SHARED wins over ../shared
		{"explicit", mine, "true", mine, false, false},
		{"explicit, no corpus, CI", empty, "true", "", false, true},
		{"explicit, no corpus, outside CI", empty, "", "", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("XTRAIL_SHARED", c.env)
			t.Setenv("CI", c.ci)
			r := &recorder{TB: t}
			got := SharedDir(r)
			if got != c.want || (r.skipped != "") != c.skip || (r.failed != "") != c.fail {
				t.Errorf("SharedDir = %q, skipped %q, failed %q", got, r.skipped, r.failed)
			}
		})
	}
	// unset: ../shared when it is next to the project, else skip or fail
	t.Setenv("XTRAIL_SHARED", "")
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	got := SharedDir(r)
	if wantDir := filepath.Join("..", "..", "..", "shared"); hasCorpus(wantDir) {
		if r.failed != "" || !hasCorpus(got) {
			t.Errorf("with ../shared present: %q, failed %q", got, r.failed)
		}
	} else if r.failed == "" {
		t.Errorf("CI=true without a shared folder did not fail: %q", got)
	}
}
