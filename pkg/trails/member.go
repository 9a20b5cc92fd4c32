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

// SkippedTrail is a trail the domain check passes over for a name.
type SkippedTrail struct {
	Key  string
	Meta Meta
	Why  string
}

// Skipped returns the trails of name and its parents that the domain
// check's skip rules pass over (spec §1.3.1 step 3), in the order the
// walk meets them, with why: `xtrail trails lookup` shows them, since a
// trail that exists but never fires for a name is a question operators
// ask.
func (n *Names) Skipped(name []byte) []SkippedTrail {
	q := AppendLower(nil, name)
	var out []SkippedTrail
	nsLike := -1
	for off := 0; ; {
		if mi, ok := n.lookup(q[off:]); ok && n.skipParentHit(q, off, mi, &nsLike) {
			why := "a name or mail server name (ns1., mx., ...) skips suspicious and sinkhole trails"
			if _, dyn := n.skips(mi); dyn && (off == 0 || firstLabelIsWWW(q)) {
				why = "a dynamic-domain or free-web trail fires only through a name under it"
				if off > 0 {
					why += ", not through www"
				}
			}
			out = append(out, SkippedTrail{Key: string(q[off:]), Meta: n.meta(mi), Why: why})
		}
		dot := bytes.IndexByte(q[off:], '.')
		if dot < 0 {
			return out
		}
		off += dot + 1
	}
}
