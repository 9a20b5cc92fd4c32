package trafficgen

// The generator's BPF object and bindings are generated from bpf/gen.c and
// committed, as pkg/dataplane's are; `make generate` reruns this.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type gen_frame -type gen_cfg gen bpf/gen.c -- -I../../bpf
