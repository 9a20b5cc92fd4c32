package maltrail

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// maxConfigLine bounds one maltrail.conf line; the real file's longest line
// is a few hundred bytes.
const maxConfigLine = 1 << 20

// boolPrefixes are the key prefixes Maltrail turns into booleans (spec §3.3).
var boolPrefixes = [...]string{"USE_", "SET_", "CHECK_", "ENABLE_", "SHOW_", "DISABLE_"}

// IsBoolKey reports whether Maltrail treats key as a boolean switch.
func IsBoolKey(key string) bool {
	for _, p := range boolPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// Config is a parsed maltrail.conf. Keys are upper case (Maltrail upper-cases
// them when reading); every accessor upper-cases its key argument too.
type Config struct {
	name    string
	entries map[string]*confEntry
}

type confEntry struct {
	value  string   // scalar value, after expansion or override
	list   []string // array items, for keys opened by a bare word
	isList bool
	where  string // "file:line" or "env MALTRAIL_KEY", for error messages
}

// ConfigParser holds what $VARIABLE expansion needs from the host, so tests
// can fix it. The zero value uses the running host.
type ConfigParser struct {
	// Hostname gives $HOSTNAME; nil means os.Hostname. It is called only
	// when a value refers to $HOSTNAME.
	Hostname func() (string, error)
	// CPUCores gives $CPU_CORES (the shipped maltrail.conf has
	// "PROCESS_COUNT $CPU_CORES"); 0 means runtime.NumCPU().
	CPUCores int
}

// ParseConfig parses a maltrail.conf with the running host's hostname and
// CPU count. See ConfigParser.Parse.
func ParseConfig(r io.Reader, name string, env func(string) (string, bool)) (*Config, error) {
	var p ConfigParser
	return p.Parse(r, name, env)
}

// Parse reads a maltrail.conf (spec §3.3). name is used in error messages;
// env looks up environment variables (os.LookupEnv in production, nil for
// none).
//
// The rules follow Maltrail's read_config:
//   - a '#' starts a comment that runs to the end of the line, wherever it
//     is (the shipped file has "admin:…:0:   # changeme!" in USERS), so a
//     value cannot contain '#'; blank lines are skipped;
//   - "KEY value" splits at the first run of blanks; the value is trimmed
//     and then stripped of surrounding ' and " characters;
//   - a line that is one bare word (letters, digits, '_') opens an array
//     (USERS, IP_ALIASES); the indented lines after it are its items, until
//     the next KEY value line or bare word; items are not expanded;
//   - an indented line with no open array, a bare word with other
//     characters, and a key with other characters are errors "file:line: …";
//   - a non-empty environment variable MALTRAIL_<KEY> replaces the value of
//     a KEY present in the file (Maltrail consults the environment only for
//     keys the file has);
//   - in values of keys that are not booleans, $NAME (NAME of A-Z, 0-9, _)
//     expands to the hostname for HOSTNAME, "/var/log" for SYSTEM_LOG_DIR,
//     the CPU count for CPU_CORES, else the environment variable NAME, else
//     it stays as written. Overriding values are expanded too.
//
// Booleans and integers are interpreted by Bool and Int; Get returns the
// text. Mandatory keys are the caller's business (see Require). A later
// duplicate key replaces an earlier one, as in Maltrail.
func (p *ConfigParser) Parse(r io.Reader, name string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	c := &Config{name: name, entries: make(map[string]*confEntry)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxConfigLine)
	var array *confEntry // the open array, nil when none
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), "\r")
		if i := strings.IndexByte(line, '#'); i >= 0 {
			// The comment takes the blanks before it along, so "USERS  # x"
			// is still a bare word; other trailing blanks stay, as in
			// Maltrail, where "KEY " is KEY with an empty value.
			line = strings.TrimRight(line[:i], " \t\r\v\f")
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, lineNo)
		if line[0] == ' ' || line[0] == '\t' {
			if array == nil {
				return nil, fmt.Errorf("%s: indented line %q outside an array (a bare word such as USERS must open it)", where, strings.TrimSpace(line))
			}
			array.list = append(array.list, strings.TrimSpace(line))
			continue
		}
		key, value, hasValue := strings.Cut(line, " ")
		if k, v, ok := strings.Cut(line, "\t"); ok && (!hasValue || len(k) < len(key)) {
			key, value, hasValue = k, v, true
		}
		if !isWord(key) {
			return nil, fmt.Errorf("%s: invalid key %q (keys are letters, digits and '_')", where, key)
		}
		key = strings.ToUpper(key)
		if !hasValue {
			array = &confEntry{isList: true, list: []string{}, where: where}
			c.entries[key] = array
			continue
		}
		array = nil
		value = strings.TrimSpace(strings.Trim(strings.TrimSpace(value), `'"`))
		e := &confEntry{value: value, where: where}
		if v, ok := env("MALTRAIL_" + key); ok && v != "" {
			e.value, e.where = v, "env MALTRAIL_"+key
		}
		if !IsBoolKey(key) && !isDigits(e.value) {
			v, err := p.expand(e.value, env)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", e.where, key, err)
			}
			e.value = v
		}
		c.entries[key] = e
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes: %w", name, lineNo+1, maxConfigLine, err)
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return c, nil
}

// expand replaces $NAME references in v (see Parse).
func (p *ConfigParser) expand(v string, env func(string) (string, bool)) (string, error) {
	if !strings.Contains(v, "$") {
		return v, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(v, '$')
		if i < 0 {
			b.WriteString(v)
			return b.String(), nil
		}
		b.WriteString(v[:i])
		j := i + 1
		for j < len(v) && (v[j] >= 'A' && v[j] <= 'Z' || v[j] >= '0' && v[j] <= '9' || v[j] == '_') {
			j++
		}
		ref, varName := v[i:j], v[i+1:j]
		v = v[j:]
		switch varName {
		case "":
			b.WriteString(ref)
		case "HOSTNAME":
			hostname := p.Hostname
			if hostname == nil {
				hostname = os.Hostname
			}
			h, err := hostname()
			if err != nil {
				return "", fmt.Errorf("expand $HOSTNAME: %w", err)
			}
			b.WriteString(h)
		case "SYSTEM_LOG_DIR":
			b.WriteString("/var/log")
		case "CPU_CORES":
			n := p.CPUCores
			if n <= 0 {
				n = runtime.NumCPU()
			}
			b.WriteString(strconv.Itoa(n))
		default:
			if e, ok := env(varName); ok {
				b.WriteString(e)
			} else {
				b.WriteString(ref)
			}
		}
	}
}

func isWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (c *Config) entry(key string) *confEntry {
	return c.entries[strings.ToUpper(key)]
}

// Get returns the text of a scalar key. An array key (see List) is not a
// scalar: Get reports false for it.
func (c *Config) Get(key string) (string, bool) {
	e := c.entry(key)
	if e == nil || e.isList {
		return "", false
	}
	return e.value, true
}

// String returns the text of a scalar key, or def when the key is absent
// or an array.
//
// Maltrail turns digit-only values into ints, so a Python sensor writes
// SENSOR_NAME "007" as "7" (and "0" as "-"); String returns the text as
// written, and a caller that must mimic that reads the value with Int.
func (c *Config) String(key, def string) string {
	if v, ok := c.Get(key); ok {
		return v
	}
	return def
}

// Bool reports whether key is set to "1" or "true" (any case), the rule
// Maltrail applies to USE_/SET_/CHECK_/ENABLE_/SHOW_/DISABLE_ keys. It
// applies the same rule to any other key; an absent key is false.
func (c *Config) Bool(key string) bool {
	v, ok := c.Get(key)
	if !ok {
		return false
	}
	v = strings.ToLower(v)
	return v == "1" || v == "true"
}

// Int returns the value of key as a decimal integer, or def when the key
// is absent or its value empty (Maltrail then falls back to its default,
// as in "int(config.PROCESS_COUNT or CPU_CORES)"). A value that is not
// digits only is an error naming where it was set.
func (c *Config) Int(key string, def int) (int, error) {
	e := c.entry(key)
	if e == nil || (!e.isList && e.value == "") {
		return def, nil
	}
	if e.isList {
		return 0, fmt.Errorf("%s: %s is an array, not an integer", e.where, strings.ToUpper(key))
	}
	if !isDigits(e.value) {
		return 0, fmt.Errorf("%s: %s: %q is not a decimal integer", e.where, strings.ToUpper(key), e.value)
	}
	n, err := strconv.Atoi(e.value)
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %w", e.where, strings.ToUpper(key), err)
	}
	return n, nil
}

// Where returns where key was set, "file:line" or "env MALTRAIL_KEY", for
// error messages; "" when the file does not set it.
func (c *Config) Where(key string) string {
	if e := c.entry(key); e != nil {
		return e.where
	}
	return ""
}

// List returns a copy of the items of an array key (a bare word followed by
// indented lines), or nil when key is absent or a scalar. An array whose
// items are all commented out is empty, not nil.
func (c *Config) List(key string) []string {
	e := c.entry(key)
	if e == nil || !e.isList {
		return nil
	}
	return slices.Clone(e.list)
}

// Keys returns the keys the file sets, sorted.
func (c *Config) Keys() []string {
	keys := make([]string, 0, len(c.entries))
	for k := range c.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Require returns an error naming every key of keys the file does not set
// (Maltrail's sensor requires MONITOR_INTERFACE, CAPTURE_BUFFER and
// LOG_DIR). A key set to an empty value counts as set, as in Maltrail.
func (c *Config) Require(keys ...string) error {
	var missing []string
	for _, k := range keys {
		if c.entry(k) == nil {
			missing = append(missing, strings.ToUpper(k))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s: missing mandatory option(s) %s", c.name, strings.Join(missing, ", "))
	}
	return nil
}
