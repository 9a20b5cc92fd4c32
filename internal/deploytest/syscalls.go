package deploytest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// SyscallFilter is a unit's SystemCallFilter= as systemd applies it: the
// first assignment decides between an allow list and a deny list, and
// later ones add to it or (with ~) take from it.
type SyscallFilter struct {
	allowList bool
	set       map[string]bool
}

// SyscallFilter expands the unit's SystemCallFilter= with the groups of
// the installed systemd (`systemd-analyze syscall-filter`); nil when the
// unit has none.
func (u *Unit) SyscallFilter() (*SyscallFilter, error) {
	vs := u.Values("Service.SystemCallFilter")
	if len(vs) == 0 {
		return nil, nil
	}
	groups, err := syscallGroups()
	if err != nil {
		return nil, err
	}
	f := &SyscallFilter{allowList: !strings.HasPrefix(vs[0], "~"), set: map[string]bool{}}
	if f.allowList {
		// systemd always adds @default to an allow list
		for _, n := range expandGroup(groups, "@default", nil) {
			f.set[n] = true
		}
	}
	for _, v := range vs {
		deny := strings.HasPrefix(v, "~")
		add := deny != f.allowList // allow list + plain, or deny list + ~
		for _, w := range strings.Fields(strings.TrimPrefix(v, "~")) {
			names := []string{w}
			if strings.HasPrefix(w, "@") {
				if _, ok := groups[w]; !ok {
					return nil, fmt.Errorf("%s: unknown system call group %s", u.Name, w)
				}
				names = expandGroup(groups, w, nil)
			}
			for _, n := range names {
				if add {
					f.set[n] = true
				} else {
					delete(f.set, n)
				}
			}
		}
	}
	return f, nil
}

// Allows says whether the filter lets the named system call through.
func (f *SyscallFilter) Allows(name string) bool { return f.set[name] == f.allowList }

// syscallGroups reads systemd's groups: "@name" -> members (names or groups).
func syscallGroups() (map[string][]string, error) {
	out, err := exec.Command("systemd-analyze", "syscall-filter").Output()
	if err != nil {
		return nil, fmt.Errorf("systemd-analyze syscall-filter: %w", err)
	}
	groups := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
		case !strings.HasPrefix(line, " ") && strings.HasPrefix(t, "@"):
			cur = t
			groups[cur] = nil
		case cur != "":
			groups[cur] = append(groups[cur], t)
		}
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("systemd-analyze syscall-filter listed no group")
	}
	return groups, nil
}

func expandGroup(groups map[string][]string, g string, seen map[string]bool) []string {
	if seen == nil {
		seen = map[string]bool{}
	}
	if seen[g] {
		return nil
	}
	seen[g] = true
	var out []string
	for _, m := range groups[g] {
		if strings.HasPrefix(m, "@") {
			out = append(out, expandGroup(groups, m, seen)...)
		} else {
			out = append(out, m)
		}
	}
	return out
}

var (
	traceCall   = regexp.MustCompile(`^\d+\s+([a-z_][a-z0-9_]*)\(`)
	traceSocket = regexp.MustCompile(`\bsocket\((AF_[A-Z0-9]+)`)
)

// Traced reads an `strace -f` output: the system calls made and the
// socket families opened, each with a count, from the moment program exe
// was executed (what ran before it, setpriv, is not the unit's program).
func Traced(path, exe string) (calls, families map[string]int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	calls, families = map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	started := false
	for sc.Scan() {
		line := sc.Text()
		if !started {
			started = strings.Contains(line, ` execve("`+exe+`", `) && strings.HasSuffix(line, "= 0")
			continue
		}
		if m := traceCall.FindStringSubmatch(line); m != nil {
			calls[m[1]]++
		}
		if m := traceSocket.FindStringSubmatch(line); m != nil {
			families[m[1]]++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if !started {
		return nil, nil, fmt.Errorf("%s: no successful execve of %s", path, exe)
	}
	return calls, families, nil
}
