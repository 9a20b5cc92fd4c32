// Package deploytest starts the project's systemd units without systemd,
// for the deployment tests (CI has no running systemd): a unit's ExecStart,
// expanded as systemd expands it, with its environment files, credentials,
// state and log directories, user and capabilities. The sandboxing that
// needs systemd itself (ProtectSystem=, SystemCallFilter=, ...) is checked
// by `systemd-analyze verify` and, for the system calls and socket
// families, against a strace of the running process (Trace).
package deploytest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Unit is a parsed unit file; an instance name fills %i of a template.
type Unit struct {
	Name     string // e.g. xtrail-export@QUEUE.service
	Instance string
	values   map[string][]string // "Section.Key" -> assignments in order
}

// ParseUnit reads a unit file. instance is the template instance (""
// for a plain unit).
func ParseUnit(path, instance string) (*Unit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	name := filepath.Base(path)
	if instance != "" {
		name = strings.Replace(name, "@.", "@"+instance+".", 1)
	}
	u := &Unit{Name: name, Instance: instance, values: map[string][]string{}}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
		case strings.HasSuffix(line, `\`):
			return nil, fmt.Errorf("%s:%d: continuation lines are not supported here", path, n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("%s:%d: not a KEY=VALUE line in a section: %q", path, n, line)
			}
			key := section + "." + strings.TrimSpace(k)
			u.values[key] = append(u.values[key], strings.TrimSpace(v))
		}
	}
	return u, sc.Err()
}

// Exec is the program ExecStart= runs.
func (u *Unit) Exec() string {
	if f := strings.Fields(u.Value("Service.ExecStart")); len(f) > 0 {
		return f[0]
	}
	return ""
}

// Values returns the assignments of "Section.Key", in file order.
func (u *Unit) Values(key string) []string { return u.values[key] }

// Value returns the last assignment of "Section.Key".
func (u *Unit) Value(key string) string {
	v := u.values[key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func (u *Unit) yes(key string) bool {
	switch u.Value(key) {
	case "yes", "true", "on", "1":
		return true
	}
	return false
}

// Capabilities is the unit's CapabilityBoundingSet as capability names
// (CAP_BPF, ...); set is false when the unit does not restrict it.
func (u *Unit) Capabilities() (caps []string, set bool) {
	vs := u.Values("Service.CapabilityBoundingSet")
	for _, v := range vs {
		if strings.HasPrefix(v, "~") {
			return nil, false // a deny list: not used by the project's units
		}
		if v == "" {
			caps = nil // an empty assignment resets the list
		}
		caps = append(caps, strings.Fields(v)...)
	}
	return caps, len(vs) > 0
}

// Run says where and how Command starts a unit.
type Run struct {
	// LocalStateDir is what /var is for the unit's StateDirectory= and
	// LogsDirectory=; RuntimeDir holds its credentials (as /run does).
	LocalStateDir, RuntimeDir string
	// Netns, when set, is the network namespace to start it in (a path).
	Netns string
	// Trace, when set, is a file for `strace -f` of the unit's process.
	Trace string
	// Drop removes capabilities from the unit's bounding set (to show
	// that each one it grants is needed).
	Drop []string
}

// The user a unit with DynamicUser= runs as here: systemd would pick a
// fresh uid; nobody has no files either.
const dynamicUID = 65534

// Command returns ExecStart as systemd would start it: setpriv applies the
// unit's user, capability bounding set and no-new-privileges; the
// environment is the unit's files and directories only.
func (u *Unit) Command(r Run) (*exec.Cmd, error) {
	for _, k := range []string{"Service.AmbientCapabilities"} {
		if u.Value(k) != "" {
			return nil, fmt.Errorf("%s: %s is not supported here", u.Name, k)
		}
	}
	uid := 0
	if u.yes("Service.DynamicUser") {
		uid = dynamicUID
	} else if user := u.Value("Service.User"); user != "" && user != "root" {
		return nil, fmt.Errorf("%s: User=%s is not supported here (DynamicUser= or root)", u.Name, user)
	}
	env, err := u.environment()
	if err != nil {
		return nil, err
	}
	creds, err := u.credentials(r.RuntimeDir, uid)
	if err != nil {
		return nil, err
	}
	if creds != "" {
		env["CREDENTIALS_DIRECTORY"] = creds
	}
	for key, sub := range map[string]string{"StateDirectory": "lib", "LogsDirectory": "log"} {
		for _, name := range strings.Fields(u.Value("Service." + key)) {
			dir := filepath.Join(r.LocalStateDir, sub, name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			if err := chown(dir, uid); err != nil {
				return nil, err
			}
			env[strings.ToUpper(strings.TrimSuffix(key, "Directory"))+"_DIRECTORY"] = dir
		}
	}
	execStart := u.Values("Service.ExecStart")
	if len(execStart) != 1 {
		return nil, fmt.Errorf("%s: want one ExecStart=, have %d", u.Name, len(execStart))
	}
	argv, err := u.expand(execStart[0], env, creds)
	if err != nil {
		return nil, err
	}

	var pre []string
	if r.Netns != "" {
		pre = append(pre, "nsenter", "--net="+r.Netns, "--")
	}
	if r.Trace != "" {
		// strace keeps root's rights to write the trace; it sees setpriv
		// too, which Traced skips
		pre = append(pre, "strace", "-f", "-qq", "-o", r.Trace, "--")
	}
	pre = append(pre, "setpriv")
	if uid != 0 {
		pre = append(pre, fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups")
	}
	if caps, set := u.Capabilities(); set {
		spec := "-all"
		for _, c := range caps {
			if !slices.Contains(r.Drop, c) {
				spec += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
			}
		}
		pre = append(pre, "--bounding-set="+spec, "--inh-caps=-all")
	}
	if u.yes("Service.NoNewPrivileges") || u.yes("Service.DynamicUser") {
		pre = append(pre, "--no-new-privs")
	}
	pre = append(pre, "--")
	argv = append(pre, argv...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd, nil
}

// environment reads Environment= and EnvironmentFile= (a leading "-"
// makes a missing file fine) in order.
func (u *Unit) environment() (map[string]string, error) {
	env := map[string]string{}
	for _, v := range u.Values("Service.Environment") {
		for _, w := range strings.Fields(v) {
			if k, val, ok := strings.Cut(w, "="); ok {
				env[k] = val
			}
		}
	}
	for _, f := range u.Values("Service.EnvironmentFile") {
		optional := strings.HasPrefix(f, "-")
		path, err := u.specifiers(strings.TrimPrefix(f, "-"), "")
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) && optional {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: EnvironmentFile: %w", u.Name, err)
		}
		for n, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' || line[0] == ';' {
				continue
			}
			k, val, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("%s:%d: not KEY=VALUE: %q", path, n+1, line)
			}
			env[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(val), `"'`)
		}
	}
	return env, nil
}

// credentials copies LoadCredential= files into a directory only the
// unit's user can read, as systemd does, and returns it ("" for none).
func (u *Unit) credentials(runtimeDir string, uid int) (string, error) {
	loads := u.Values("Service.LoadCredential")
	if len(loads) == 0 {
		return "", nil
	}
	dir := filepath.Join(runtimeDir, "credentials", u.Name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	if err := os.Mkdir(dir, 0o500); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	for _, l := range loads {
		id, src, ok := strings.Cut(l, ":")
		if !ok {
			return "", fmt.Errorf("%s: LoadCredential=%s: want ID:PATH", u.Name, l)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return "", fmt.Errorf("%s: LoadCredential %s: %w", u.Name, id, err)
		}
		dst := filepath.Join(dir, id)
		if err := os.WriteFile(dst, b, 0o400); err != nil {
			return "", err
		}
		if err := chown(dst, uid); err != nil {
			return "", err
		}
	}
	return dir, chown(dir, uid)
}

// chown gives path to uid (and its group), unless it is ours already;
// only root can give a file away (the unit tests of this package run
// without root and start nothing).
func chown(path string, uid int) error {
	if uid == os.Geteuid() || os.Geteuid() != 0 {
		return nil
	}
	return os.Chown(path, uid, uid)
}

// expand splits a command line into words and expands specifiers and
// variables as systemd does: "$VAR" alone is split into zero or more
// words, "${VAR}" is replaced in place.
func (u *Unit) expand(line string, env map[string]string, creds string) ([]string, error) {
	if line != "" && strings.ContainsRune("-+!@:", rune(line[0])) {
		return nil, fmt.Errorf("%s: ExecStart prefix %q is not supported here", u.Name, line[0])
	}
	var argv []string
	for _, w := range strings.Fields(line) {
		w, err := u.specifiers(w, creds)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(w, "$") && !strings.HasPrefix(w, "${") {
			argv = append(argv, strings.Fields(env[w[1:]])...)
			continue
		}
		for {
			i := strings.Index(w, "${")
			if i < 0 {
				break
			}
			j := strings.IndexByte(w[i:], '}')
			if j < 0 {
				return nil, fmt.Errorf("%s: unterminated ${ in %q", u.Name, w)
			}
			w = w[:i] + env[w[i+2:i+j]] + w[i+j+1:]
		}
		argv = append(argv, w)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("%s: empty ExecStart", u.Name)
	}
	return argv, nil
}

// specifiers replaces %i, %I, %n, %d and %%; any other is an error, so a
// unit that starts using one is noticed here.
func (u *Unit) specifiers(s, creds string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("%s: lone %% in %q", u.Name, s)
		}
		i++
		switch s[i] {
		case 'i', 'I':
			b.WriteString(u.Instance)
		case 'n':
			b.WriteString(u.Name)
		case 'd':
			if creds == "" {
				return "", fmt.Errorf("%s: %%d without LoadCredential=", u.Name)
			}
			b.WriteString(creds)
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("%s: specifier %%%c is not supported here", u.Name, s[i])
		}
	}
	return b.String(), nil
}
