package dataplane

// Keys and values of the trail maps, as in bpf/xtrail.h. The inner maps of
// a generation are declared in C by key and value size only (see
// bpf/xtrail.c), so these are written here; TestKeySizes checks them
// against the object's map specs.

// trailValue is struct xt_trail.
type trailValue struct {
	Meta  uint32
	Flags uint32
}

// ip6Key is struct xt_ip6_key.
type ip6Key struct {
	Addr [16]uint8
}

// port4Key is struct xt_port4_key (port in network order, pad zero).
type port4Key struct {
	Addr uint32
	Port uint16
	Pad  uint16
}

// port6Key is struct xt_port6_key.
type port6Key struct {
	Addr [16]uint8
	Port uint16
	Pad  uint16
}

// lpm4Key is struct xt_lpm4_key.
type lpm4Key struct {
	Prefixlen uint32
	Addr      uint32
}

// lpm6Key is struct xt_lpm6_key.
type lpm6Key struct {
	Prefixlen uint32
	Addr      [16]uint8
}
