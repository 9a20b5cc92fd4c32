package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/internal/testenv"
)

// vagrantValidate runs `vagrant validate` on dir's Vagrantfile for one
// provider, with a throwaway VAGRANT_HOME and machine state. Vagrant
// validates a provider's settings only when the provider is usable: the
// libvirt one is Debian's vagrant-libvirt plugin; VirtualBox is not
// packaged by Debian, so a stand-in VBoxManage that only tells its version
// makes it usable (validate starts no VM).
func vagrantValidate(t *testing.T, dir, provider string) (string, error) {
	t.Helper()
	tmp := t.TempDir()
	env := append(os.Environ(), "VAGRANT_HOME="+filepath.Join(tmp, "home"),
		"VAGRANT_DOTFILE_PATH="+filepath.Join(tmp, "machines"), "VAGRANT_DEFAULT_PROVIDER="+provider,
		"VAGRANT_CHECKPOINT_DISABLE=1")
	if provider == "virtualbox" {
		bin := filepath.Join(tmp, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "VBoxManage"), []byte("#!/bin/sh\necho 7.0.14r161095\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		env = append(env, "PATH="+bin+":"+os.Getenv("PATH"))
	}
	cmd := exec.Command("vagrant", "validate")
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestVagrantValidate: vagrant/Vagrantfile is valid for both providers,
// and validation does catch a wrong setting of either.
func TestVagrantValidate(t *testing.T) {
	skipUnderRace(t)
	testenv.RequireBinary(t, "vagrant")
	dir := filepath.Join(repoRoot(t), "vagrant")
	src, err := os.ReadFile(filepath.Join(dir, "Vagrantfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ provider, good, bad string }{
		{"virtualbox", "vb.memory = 1024", "vb.memoryx = 1024"},
		{"libvirt", "lv.memory = 1024", "lv.memoryx = 1024"},
	} {
		t.Run(p.provider, func(t *testing.T) {
			if out, err := vagrantValidate(t, dir, p.provider); err != nil {
				t.Fatalf("vagrant validate (%s): %v\n%s(scripts/deps.sh test installs vagrant and vagrant-libvirt)", p.provider, err, out)
			}
			// the same file with a misspelled provider setting, in a copy of
			// the tree's shape (the Vagrantfile syncs its parent directory)
			if !strings.Contains(string(src), p.good) {
				t.Fatalf("the Vagrantfile no longer sets %q: update this test", p.good)
			}
			broken := filepath.Join(t.TempDir(), "vagrant")
			if err := os.MkdirAll(broken, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(broken, "Vagrantfile"), []byte(strings.Replace(string(src), p.good, p.bad, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := vagrantValidate(t, broken, p.provider)
			if err == nil || !strings.Contains(out, "memoryx") {
				t.Fatalf("vagrant validate (%s) accepted a misspelled setting (%v):\n%s", p.provider, err, out)
			}
		})
	}
}
