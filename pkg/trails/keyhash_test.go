package trails

import "testing"

// TestKeyHashGolden pins KeyHash: compiled trail stores file their keys
// under it, so a change must come with a new store format version.
func TestKeyHashGolden(t *testing.T) {
	const seed = 0x2d358dccaa6c78a5 // pkg/store's
	for _, c := range []struct {
		key  string
		want uint64
	}{
		{"", 0x1a3f5fe1279e131a},
		{"a", 0x3bfa6c21284dc44a},
		{"com", 0xec46a60035ff5e82},
		{"evil.com", 0x5cf2ba62affb7063},
		{"www.alpha-alpha0.alphaalpha.com", 0x9e2fa1b41a13a073},
		{"/malicious-login.php?id=", 0x634936a9b1518323},
		{"0123456789abcdef0123", 0xef30938a84659a15},
	} {
		if got := KeyHash(c.key, seed); got != c.want {
			t.Errorf("KeyHash(%q) = %#x, want %#x", c.key, got, c.want)
		}
		if got := KeyHash([]byte(c.key), seed); got != c.want {
			t.Errorf("KeyHash([]byte(%q)) = %#x, want %#x", c.key, got, c.want)
		}
	}
}
