package deploytest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xtrail/xtrail/internal/testenv"
)

func writeUnit(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCommandExpansion: ExecStart is expanded as systemd does it: ${VAR}
// is one word, $VAR alone splits into zero or more, %i and %d are the
// instance and the credentials directory, later environment files win.
func TestCommandExpansion(t *testing.T) {
	dir := t.TempDir()
	writeUnit(t, dir, "a.env", "# comment\nLISTEN=0.0.0.0:1\nOPTS=-x  -y\nEMPTY=\n")
	writeUnit(t, dir, "a-q1.env", "LISTEN=\"127.0.0.1:2\"\n")
	cred := writeUnit(t, dir, "secret", "k")
	path := writeUnit(t, dir, "a@.service", strings.Join([]string{
		"[Unit]", "Description=x", "[Service]",
		"EnvironmentFile=" + dir + "/a.env",
		"EnvironmentFile=-" + dir + "/a-%i.env",
		"EnvironmentFile=-" + dir + "/missing.env",
		"LoadCredential=key:" + cred,
		"ExecStart=/bin/prog run -l ${LISTEN} -u %i -k %d/key -e ${EMPTY} $OPTS $EMPTY 100%%",
		"CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN",
		"NoNewPrivileges=yes",
	}, "\n"))
	u, err := ParseUnit(path, "q1")
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "a@q1.service" || u.Exec() != "/bin/prog" {
		t.Fatalf("name %q exec %q", u.Name, u.Exec())
	}
	cmd, err := u.Command(Run{RuntimeDir: filepath.Join(dir, "run"), LocalStateDir: filepath.Join(dir, "var")})
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "run", "credentials", "a@q1.service")
	want := []string{"setpriv", "--bounding-set=-all,+bpf,+net_admin", "--inh-caps=-all", "--no-new-privs", "--",
		"/bin/prog", "run", "-l", "127.0.0.1:2", "-u", "q1", "-k", creds + "/key", "-e", "", "-x", "-y", "100%"}
	if !slices.Equal(cmd.Args, want) {
		t.Fatalf("args\n got %q\nwant %q", cmd.Args, want)
	}
	if b, err := os.ReadFile(filepath.Join(creds, "key")); err != nil || string(b) != "k" {
		t.Fatalf("credential: %q, %v", b, err)
	}
	if !slices.Contains(cmd.Env, "CREDENTIALS_DIRECTORY="+creds) {
		t.Fatalf("env %q lacks CREDENTIALS_DIRECTORY", cmd.Env)
	}

	for _, bad := range []string{"ExecStart=/bin/prog %h", "ExecStart=+/bin/prog", "ExecStart=/bin/prog ${X"} {
		p := writeUnit(t, dir, "b.service", "[Service]\n"+bad+"\n")
		u, err := ParseUnit(p, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.Command(Run{RuntimeDir: dir, LocalStateDir: dir}); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// TestSyscallFilter: the first assignment makes an allow or a deny list,
// later ones add or (~) take away; groups expand through systemd's tables.
func TestSyscallFilter(t *testing.T) {
	testenv.RequireBinary(t, "systemd-analyze")
	dir := t.TempDir()
	for _, c := range []struct {
		lines   []string
		allowed []string
		refused []string
	}{
		{[]string{"@system-service bpf"}, []string{"read", "bpf", "execve", "flock"}, []string{"mount", "perf_event_open"}},
		{[]string{"@system-service", "~@privileged"}, []string{"read", "socket"}, []string{"bpf", "setuid", "mount"}},
		{[]string{"~@mount", "mount"}, []string{"mount", "read", "bpf"}, []string{"umount2"}},
	} {
		text := "[Service]\nExecStart=/bin/true\n"
		for _, l := range c.lines {
			text += "SystemCallFilter=" + l + "\n"
		}
		u, err := ParseUnit(writeUnit(t, dir, "f.service", text), "")
		if err != nil {
			t.Fatal(err)
		}
		f, err := u.SyscallFilter()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.allowed {
			if !f.Allows(s) {
				t.Errorf("%q refuses %s", c.lines, s)
			}
		}
		for _, s := range c.refused {
			if f.Allows(s) {
				t.Errorf("%q allows %s", c.lines, s)
			}
		}
	}
}
