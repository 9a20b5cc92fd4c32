package deploytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/internal/testenv"
)

var unitFiles = []string{"xtrail-sensor.service", "xtrail-server.service", "xtrail-export@.service", "xtrail-collector.service"}

// TestUnitsVerify: systemd-analyze verify accepts the installed units
// without a warning. It works offline: no systemd needs to run.
func TestUnitsVerify(t *testing.T) {
	skipUnderRace(t)
	testenv.RequireBinary(t, "systemd-analyze")
	root := install(t, t.TempDir())
	args := []string{"verify", "--man=no"}
	for _, u := range unitFiles {
		args = append(args, root.UnitPath(u))
	}
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify (%v) says:\n%s", err, out)
	}
}

// TestMakeInstall: `make install` with DESTDIR and PREFIX puts the binary,
// the units (naming the PREFIX paths), the configs and the docs in place,
// and a second install keeps an operator's configs.
func TestMakeInstall(t *testing.T) {
	skipUnderRace(t)
	testenv.RequireBinary(t, "make")
	dest := t.TempDir()
	installOnce := func() string {
		// -o build: the binary is built once for all the tests
		cmd := exec.Command("make", "-C", repoRoot(t), "-o", "build", "install", "BIN="+xtrailBinary(t), "DESTDIR="+dest, "PREFIX=/opt/xt")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		return string(out)
	}
	installOnce()
	for _, f := range []string{
		"opt/xt/bin/xtrail", "opt/xt/share/doc/xtrail/deploy.md", "opt/xt/share/doc/xtrail/README.md",
		"opt/xt/share/doc/xtrail/configuration.md", "opt/xt/share/doc/xtrail/grafana-dashboard.json",
		"etc/xtrail/maltrail.conf", "etc/xtrail/server.env", "etc/xtrail/export.env", "etc/xtrail/collector.env",
	} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install did not write %s: %v", f, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dest, "etc/xtrail")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("/etc/xtrail: %v, mode %v, want 0700 (it holds keys)", err, st.Mode().Perm())
	}
	for _, u := range unitFiles {
		b, err := os.ReadFile(filepath.Join(dest, "opt/xt/lib/systemd/system", u))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/opt/xt/bin/xtrail ") || strings.Contains(string(b), "/usr/local") || strings.Contains(string(b), dest) {
			t.Errorf("%s does not start /opt/xt/bin/xtrail, or names /usr/local or DESTDIR:\n%s", u, b)
		}
	}

	conf := filepath.Join(dest, "etc/xtrail/maltrail.conf")
	mine := []byte("MONITOR_INTERFACE span0\n")
	if err := os.WriteFile(conf, mine, 0o600); err != nil {
		t.Fatal(err)
	}
	out := installOnce()
	if b, _ := os.ReadFile(conf); string(b) != string(mine) {
		t.Errorf("a second make install overwrote the operator's maltrail.conf: %q", b)
	}
	if _, err := os.Stat(conf + ".dist"); err != nil || !strings.Contains(out, "kept") {
		t.Errorf("the new default is not beside the kept config as maltrail.conf.dist (%v):\n%s", err, out)
	}
}

// TestSensorUnitPinDirWritable: the sensor must be able to pin under
// /sys/fs/bpf (after a reboot it pins every map again). Under systemd 252,
// ProtectKernelTunables= makes /sys/fs/bpf read-only and ReadWritePaths=
// does not undo it; ReadOnlyPaths=/sys with ReadWritePaths=/sys/fs/bpf does
// (seen under a real systemd with scripts/systemd-lab.sh; CI has none).
func TestSensorUnitPinDirWritable(t *testing.T) {
	u, err := ParseUnit(filepath.Join(repoRoot(t), "deploy", "systemd", "xtrail-sensor.service"), "")
	if err != nil {
		t.Fatal(err)
	}
	if u.yes("Service.ProtectKernelTunables") {
		t.Error("xtrail-sensor.service sets ProtectKernelTunables=, which leaves /sys/fs/bpf read-only")
	}
	var rw, ro []string
	for _, v := range u.Values("Service.ReadWritePaths") {
		rw = append(rw, strings.Fields(v)...)
	}
	for _, v := range u.Values("Service.ReadOnlyPaths") {
		ro = append(ro, strings.Fields(v)...)
	}
	if !slices.Contains(rw, "/sys/fs/bpf") {
		t.Errorf("xtrail-sensor.service: ReadWritePaths=%q lacks /sys/fs/bpf", rw)
	}
	if !slices.Contains(ro, "/sys") || !slices.Contains(ro, "/proc/sys") {
		t.Errorf("xtrail-sensor.service: ReadOnlyPaths=%q should keep /sys and /proc/sys read-only", ro)
	}
}
