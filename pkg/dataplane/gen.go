package dataplane

// The BPF object and its Go bindings are generated from bpf/xtrail.c and
// committed, so `go build` needs no clang. `make generate` reruns this.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type xt_rec -type xt_meta -type xt_config -type xt_counters -type xt_tuple -type xt_genid -type xt_scan_key -type xt_scan_ports -type xt_scan_state -type xt_replay_frame -type xt_replay_ctl xtrail ../../bpf/xtrail.c -- -I../../bpf
