#!/usr/bin/env bash
# make bench: the figures the issues ask for, printed.
#  1. XDP ns/packet (BPF_PROG_TEST_RUN, repeat 1,000,000) with every IP and
#     IP:port trail of ../shared/data/trails-static.csv.gz loaded, next to an
#     empty XDP program (the floor of the measurement itself).
#  2. Whole-process CPU time and peak RSS of `xtrail sensor -r` on the 20k
#     and 200k traffic mixes of ../shared/bench/gen_mix_pcap.py; per-packet
#     cost = the slope between them.
#  3. Go micro-benchmarks of the per-event and per-frame paths.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${XTRAIL_SHARED:-$(cd .. && pwd)/shared}
[ -d "$SHARED/bench" ] || { echo "bench: $SHARED/bench not found (set XTRAIL_SHARED)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (BPF)" >&2; exit 1; }
XT=$PWD/bin/xtrail
T=$(mktemp -d /tmp/xtrail-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

echo "== XDP per packet, kernel-timed (BPF_PROG_TEST_RUN, repeat 1,000,000; full static trails loaded)"
go test -run '^$' -bench 'BenchmarkXDP' -benchtime=1000000x -count 5 ./pkg/dataplane/ |
	awk '/^BenchmarkXDP/ { n=$1; sub(/-[0-9]+$/, "", n); v=$5+0
	       if (!(n in min) || v < min[n]) min[n]=v; sum[n]+=v; cnt[n]++; runs[n]=runs[n] " " v }
	     END { for (n in min) printf "  %-36s min %4d  mean %5.1f ns/pkt   runs:%s\n", n, min[n], sum[n]/cnt[n], runs[n] }' | sort

echo "== replay: xtrail sensor -r, whole process (trails-static.csv.gz loaded at start)"
for n in 20000 200000; do
	python3 "$SHARED/bench/gen_mix_pcap.py" --count $n --seed 1 \
		--exclude "$SHARED/bench/exclude_hits_seed1.txt" --out "$T/mix$n.pcap" >/dev/null
done
cat > "$T/bench.conf" <<CONF
MONITOR_INTERFACE any
TRAILS_FILE $SHARED/data/trails-static.csv.gz
LOG_DIR $T/log
SENSOR_NAME bench
CONF
# rusage of the child: user+sys CPU seconds and peak RSS (kB)
measure() {
	python3 - "$@" <<'PY'
import resource, subprocess, sys, time
t0 = time.monotonic()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.monotonic() - t0
if r.returncode != 0:
    sys.stderr.write(r.stderr.decode()); sys.exit(r.returncode)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{u.ru_utime + u.ru_stime:.3f} {u.ru_maxrss} {wall:.3f}")
PY
}
declare -A cpu rss
for n in 20000 200000; do
	best=""
	for run in 1 2 3; do
		read -r c r w < <(measure "$XT" sensor -q -c "$T/bench.conf" -r "$T/mix$n.pcap")
		if [ -z "$best" ] || awk "BEGIN{exit !($c < $best)}"; then best=$c; bestr=$r; bestw=$w; fi
	done
	cpu[$n]=$best; rss[$n]=$bestr
	loop=$("$XT" sensor -c "$T/bench.conf" -r "$T/mix$n.pcap" 2>&1 >/dev/null | grep -o 'cpu_per_frame=[^ ]*' || true)
	printf "  mix %6d packets: CPU %6.3f s (best of 3), wall %6.3f s, peak RSS %6d kB; replay loop alone: %s\n" $n "$best" "$bestw" "$bestr" "$loop"
done
awk -v a="${cpu[20000]}" -v b="${cpu[200000]}" 'BEGIN {
	s = (b - a) / 180000 * 1e9
	printf "  per-packet CPU (slope 20k->200k): %.0f ns  (Maltrail Python sensor on the same captures: 15,100 ns)\n", s }'
echo "  (startup + trail load is the intercept: the 20k run's CPU minus 20k x slope)"

echo "== trail loads: xtrail trails load of trails-static.csv.gz into pinned maps (wall s, CPU s, peak RSS kB)"
P=/sys/fs/bpf/xtrail-bench-$$
for what in "first load" "reload (next generation, switch, free)"; do
	read -r c r w < <(measure "$XT" trails load -q -pin-dir "$P" "$SHARED/data/trails-static.csv.gz")
	printf "  %-40s wall %6.3f  CPU %6.3f  RSS %6d\n" "$what" "$w" "$c" "$r"
done
rm -rf "$P"

echo "== name matching with every row of trails-static.csv.gz loaded (ns/op, allocations)"
go test -run '^$' -bench 'BenchmarkCheckDomainMiss|BenchmarkCheckDomainHit|BenchmarkCheckURLMiss' -benchmem ./pkg/trails/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'
go test -run '^$' -bench 'BenchmarkAgentDNS|BenchmarkAgentHTTP' -benchtime 200000x -benchmem ./pkg/sensor/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'
echo "== kernel to event: XDP-made HTTP candidates through the real ring buffer into the agent"
go test -run '^$' -bench 'BenchmarkKernelToEvent' -benchtime 1000000x ./pkg/sensor/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'

echo "== Go micro-benchmarks (allocations per op)"
go test -run '^$' -bench 'AppendLine|AppendDatagram|AppendFrame|ReaderNext|Emit|Next|ToEthernet|ParseDNS|ParseHTTP|ClientHelloSNI|QUICInitialSNI' -benchmem \
	./pkg/maltrail/ ./pkg/d4/ ./pkg/sink/ ./pkg/pcap/ ./pkg/proto/ 2>/dev/null | grep -E '^Benchmark' | sed 's/^/  /'
