package trails

import "bytes"

// HasDomainOrParent reports whether name (lowercased) or one of its
// parents is a name trail, whatever the domain check's skip rules say:
// Maltrail's test for names the NXDOMAIN heuristic leaves alone. It does
// not allocate.
func (n *Names) HasDomainOrParent(name []byte) bool {
	for off := 0; ; {
		if len(name)-off <= n.maxNameKey {
			if _, ok := n.lookup(name[off:]); ok {
				return true
			}
		}
		dot := bytes.IndexByte(name[off:], '.')
		if dot < 0 {
			return false
		}
		off += dot + 1
	}
}
