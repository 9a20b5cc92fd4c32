package sensor

import (
	"strings"

	"github.com/xtrail/xtrail/pkg/maltrail"
)

// fileList reads a key that names files: a list separated by commas,
// semicolons or white space, or an array (a bare key with indented
// items). USER_WHITELIST takes several whitelists this way, such as an
// operator's own and the copy of Maltrail's data/whitelist.txt that
// `xtrail trails update` keeps (USER_WHITELIST_URL).
func fileList(cfg *maltrail.Config, key string) []string {
	items := cfg.List(key)
	if v, ok := cfg.Get(key); ok {
		items = append(items, v)
	}
	var out []string
	for _, it := range items {
		out = append(out, strings.FieldsFunc(it, func(r rune) bool {
			return r == ',' || r == ';' || r == ' ' || r == '\t'
		})...)
	}
	return out
}
