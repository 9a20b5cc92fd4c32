package dataplane

import "fmt"

// counterNames follows enum xt_counter in bpf/xtrail.h, in order.
var counterNames = [...]string{
	"packets", "truncated", "vlan", "qinq", "pppoe", "non_ip", "ipv4", "ipv6",
	"ip_bad", "fragment", "tcp", "tcp_syn", "syn_dup", "udp", "udp_dup",
	"udp_new_payload", "icmp_echo", "icmp_other", "other_proto", "hit_dst", "hit_src",
	"hit_suppressed", "hit_repeat", "cand_dns", "cand_http", "cand_tls",
	"cand_quic", "cand_cut", "ringbuf_full", "action_drop",
	"scan_stealth", "scan_local_dst", "scan_window", "scan_key", "scan_key_cap",
	"scan_key_full", "scan_source", "scan_nonlocal", "scan_port", "scan_udp", "scan_infection",
}

// The generated counters struct has XT_C_MAX slots; this fails to compile
// when bpf/xtrail.h and the name table disagree on the count.
var _ = [1]struct{}{}[len(xtrailXtCounters{}.C)-len(counterNames)]

// Counter is one program counter summed over all CPUs.
type Counter struct {
	Name  string
	Value uint64
}

// Counters reads every program counter, summed over CPUs, in the order of
// bpf/xtrail.h.
func (d *Dataplane) Counters() ([]Counter, error) {
	var perCPU []xtrailXtCounters
	if err := d.objs.XtCounts.Lookup(uint32(0), &perCPU); err != nil {
		return nil, fmt.Errorf("read XDP counters: %w", err)
	}
	out := make([]Counter, len(counterNames))
	for i, n := range counterNames {
		out[i].Name = n
		for _, c := range perCPU {
			out[i].Value += c.C[i]
		}
	}
	return out, nil
}

// CounterMap is Counters as a name -> value map.
func (d *Dataplane) CounterMap() (map[string]uint64, error) {
	cs, err := d.Counters()
	if err != nil {
		return nil, err
	}
	m := make(map[string]uint64, len(cs))
	for _, c := range cs {
		m[c.Name] = c.Value
	}
	return m, nil
}
