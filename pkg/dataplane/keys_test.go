package dataplane

import (
	"encoding/binary"
	"testing"
)

// TestKeySizes: the Go key and value types match the inner map specs of
// bpf/xtrail.c, which declares them by size.
func TestKeySizes(t *testing.T) {
	spec, err := loadXtrail()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		outer      string
		key, value any
	}{
		{"xt_ip4", uint32(0), trailValue{}},
		{"xt_ip6", ip6Key{}, trailValue{}},
		{"xt_port4", port4Key{}, trailValue{}},
		{"xt_port6", port6Key{}, trailValue{}},
		{"xt_cidr4", lpm4Key{}, trailValue{}},
		{"xt_cidr6", lpm6Key{}, trailValue{}},
		{"xt_ipfilter", uint32(0), ipFilter{}},
	} {
		in := spec.Maps[c.outer].InnerMap
		if in == nil {
			t.Fatalf("%s has no inner map", c.outer)
		}
		if k, v := binary.Size(c.key), binary.Size(c.value); uint32(k) != in.KeySize || uint32(v) != in.ValueSize {
			t.Errorf("%s: Go key/value %d/%d bytes, BPF %d/%d", c.outer, k, v, in.KeySize, in.ValueSize)
		}
	}
}
