#!/usr/bin/env bash
# make bench: the figures the issues ask for, printed.
#  1. XDP ns/packet (BPF_PROG_TEST_RUN, repeat 1,000,000) with every IP and
#     IP:port trail of ../shared/data/trails-static.csv.gz loaded, next to an
#     empty XDP program (the floor of the measurement itself).
#  2. Whole-process CPU time and peak RSS of `xtrail sensor -r` on the 20k
#     and 1M traffic mixes of ../shared/bench/gen_mix_pcap.py with the static
#     trails compiled to a store; per-packet cost = the slope between them;
#     startup CPU (first replay, and from the replay cache); the ways a
#     replay can run frames; the live line rate (veth lab, kernel-side
#     generator).
#  3. Trail management: store compile, sensor start to ready (first start
#     and restarts on the same store), kernel map memory, store reload,
#     store lookups; `trails load` of the CSV (store and pinned maps).
#  4. D4 server ingest (CPU per 100k lines) and exporter drain (lines/s);
#     the chain end to end on one Redis and on a Redis Cluster, with 1-2
#     servers and 1-4 exporters (lines/s, latency p50/p99, peak RSS).
#  5. Go micro-benchmarks of the per-event and per-frame paths.
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

echo "== replay: xtrail sensor -r, whole process, every trail of trails-static.csv.gz from a compiled store"
for n in 10 20000 200000 1000000; do
	python3 "$SHARED/bench/gen_mix_pcap.py" --count $n --seed 1 \
		--exclude "$SHARED/bench/exclude_hits_seed1.txt" --out "$T/mix$n.pcap" >/dev/null
done
# the replay cache lives in a pin dir of the bench's own, removed at exit
RP=/sys/fs/bpf/xtrail-bench-replay-$$
trap 'rm -rf "$T" "$RP"' EXIT
"$XT" trails compile -o "$T/replay.xts" "$SHARED/data/trails-static.csv.gz" >/dev/null
cat > "$T/bench.conf" <<CONF
MONITOR_INTERFACE any
TRAILS_FILE $T/replay.xts
LOG_DIR $T/log
SENSOR_NAME bench
XDP_PIN_DIR $RP
CONF
# rusage of the child: user+sys CPU seconds and peak RSS (kB); the
# children's usage before the run is taken off (python3 may be a shim that
# ran children of its own)
measure() {
	python3 - "$@" <<'PY'
import resource, subprocess, sys, time
b = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.monotonic() - t0
if r.returncode != 0:
    sys.stderr.write(r.stderr.decode()); sys.exit(r.returncode)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{u.ru_utime - b.ru_utime + u.ru_stime - b.ru_stime:.3f} {u.ru_maxrss} {wall:.3f}")
PY
}
# best CONF N: the least CPU of 3 replays of the N-packet mix (CPU, RSS, wall)
best() {
	local b="" br bw
	for run in 1 2 3; do
		read -r c r w < <(measure "$XT" sensor -q -c "$1" -r "$T/mix$2.pcap")
		if [ -z "$b" ] || awk "BEGIN{exit !($c < $b)}"; then b=$c; br=$r; bw=$w; fi
	done
	echo "$b $br $bw"
}
read -r c r w < <(measure "$XT" sensor -q -c "$T/bench.conf" -r "$T/mix10.pcap")
printf "  startup, first replay of the store (verify the program, fill and freeze the replay cache's maps): CPU %6.3f s, peak RSS %6d kB\n" "$c" "$r"
sb=""
for run in 1 2 3 4 5; do
	read -r c r w < <(measure "$XT" sensor -q -c "$T/bench.conf" -r "$T/mix10.pcap")
	if [ -z "$sb" ] || awk "BEGIN{exit !($c < $sb)}"; then sb=$c; sbr=$r; fi
done
printf "  startup, replays from the replay cache (10 packets, best of 5):           CPU %6.3f s, peak RSS %6d kB  (issue 12 before: 0.52 s)\n" "$sb" "$sbr"
declare -A cpu
for n in 20000 1000000; do
	read -r c r w < <(best "$T/bench.conf" $n)
	cpu[$n]=$c
	loop=$("$XT" sensor -c "$T/bench.conf" -r "$T/mix$n.pcap" 2>&1 >/dev/null | grep -o 'cpu_per_frame=[^ ]*' || true)
	printf "  mix %7d packets: CPU %6.3f s (best of 3), wall %6.3f s, peak RSS %6d kB; replay loop alone: %s\n" $n "$c" "$w" "$r" "$loop"
done
awk -v a="${cpu[20000]}" -v b="${cpu[1000000]}" 'BEGIN {
	s = (b - a) / 980000 * 1e9
	printf "  per-packet CPU (slope 20k->1M): %.0f ns  (issue 12 before: 2,500 ns; Maltrail Python sensor: 18,000 ns)\n", s }'
echo "  (startup is the intercept: the 20k run's CPU minus 20k x slope; issue 12 before: 66 MB peak RSS for 1M)"
"$XT" sensor -c "$T/bench.conf" -r "$T/mix10.pcap" 2>&1 >/dev/null | grep 'msg="kernel memory"' | grep -o 'ring_bytes=.*' | sed 's/^/  kernel memory of the replay (not in RSS, the ring'"'"'s mapping aside): /'
# the same with every heuristic on (issue 9)
{ cat "$T/bench.conf"; printf 'USE_HEURISTICS true\nCHECK_MISSING_HOST true\n'; } > "$T/heur.conf"
measure "$XT" sensor -q -c "$T/heur.conf" -r "$T/mix10.pcap" >/dev/null # its own cached program
declare -A hcpu
for n in 20000 1000000; do
	read -r c r w < <(best "$T/heur.conf" $n)
	hcpu[$n]=$c
done
awk -v a="${hcpu[20000]}" -v b="${hcpu[1000000]}" -v a0="${cpu[20000]}" -v b0="${cpu[1000000]}" 'BEGIN {
	printf "  per-packet CPU with every heuristic on (USE_HEURISTICS, CHECK_MISSING_HOST): %.0f ns, without: %.0f ns\n", (b - a) / 980000 * 1e9, (b0 - a0) / 980000 * 1e9 }'
echo "  the ways a replay can run the mix's frames through the program (CPU per frame without the agent, best of 3):"
go test -run '^$' -bench 'BenchmarkReplayPaths' -benchtime 1x -count 3 ./pkg/dataplane/ 2>/dev/null |
	awk '/^BenchmarkReplayPaths/ { n=$1; sub(/-[0-9]+$/, "", n); for (i = 4; i < NF; i++) if ($(i+1) == "cpu-ns/pkt") v=$i+0
	       if (!(n in min) || v < min[n]) min[n]=v }
	     END { for (n in min) printf "    %-44s %6.0f ns\n", n, min[n] }' | sort

echo "== live line rate: packets/s one core absorbs without a loss, every static trail, frames from the kernel into the veth lab"
go test -run '^$' -bench 'BenchmarkLiveLineRate' -benchtime 1x ./pkg/sensor/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'
echo "  (floor/: the generator into a program that only drops; xdp-ns/pkt: the sensor's program beyond it)"

echo "== trail loads: xtrail trails load of trails-static.csv.gz, no sensor running: read, compile the store, fill the pinned maps (wall s, CPU s, peak RSS kB)"
P=/sys/fs/bpf/xtrail-bench-$$
for what in "first load" "reload (next generation, switch, free)"; do
	read -r c r w < <(measure "$XT" trails load -q -pin-dir "$P" -store "$T/load.xts" "$SHARED/data/trails-static.csv.gz")
	printf "  %-40s wall %6.3f  CPU %6.3f  RSS %6d\n" "$what" "$w" "$c" "$r"
done
rm -rf "$P"

echo "== trail management: a compiled store of trails-static.csv.gz (1,630,834 rows)"
# the sensor needs an interface: a veth pair of its own, removed at exit
V=xtb$$
P=/sys/fs/bpf/xtrail-bench-$$
trap 'rm -rf "$T" "$P" "$RP"; ip link del "${V}a" 2>/dev/null || true' EXIT
ip link add "${V}a" type veth peer name "${V}b"
ip link set "${V}a" up && ip link set "${V}b" up
read -r c r w < <(measure "$XT" trails compile -o "$T/static.xts" "$SHARED/data/trails-static.csv.gz")
printf "  %-44s wall %6.3f s  CPU %6.3f s  peak RSS %6d kB  (file %d bytes)\n" "compile (xtrail trails compile)" "$w" "$c" "$r" "$(stat -c %s "$T/static.xts")"
# a second store: the same trails plus one row, for the reload
{ gzip -dc "$SHARED/data/trails-static.csv.gz"; echo "203.0.113.250,bench reload (malware),(custom)"; } > "$T/static2.csv"
"$XT" trails compile -o "$T/static2.xts" "$T/static2.csv" >/dev/null
cat > "$T/sensor.conf" <<CONF
MONITOR_INTERFACE ${V}a
TRAILS_FILE $T/static.xts
LOG_DIR $T/log
SENSOR_NAME bench
XDP_PIN_DIR $P
CONF
startup() { python3 scripts/sensorbench.py "$@" -- "$XT" sensor -c "$T/sensor.conf"; }
fmt_start() { python3 -c 'import json,sys; d=json.loads(sys.argv[2]); print("  %-44s %6.3f s to ready  CPU %5.2f s  peak RSS %6d kB (at ready: anon %d kB, file-backed %d kB)" % (sys.argv[1], d["ready_s"], d["ready_cpu_s"], d["ready_peak_rss_kb"], d["ready_rss_anon_kb"], d["ready_rss_file_kb"]))' "$@"; }
fmt_start "sensor first start (verify program, fill maps)" "$(startup)"
for run in 1 2 3 4 5; do
	fmt_start "sensor restart $run (pinned program, same store)" "$(startup)"
done
startup --traffic "${V}b=$T/mix200000.pcap" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  sensor after the 200k-packet mix sent into its veth (%d frames in %.1f s): RSS %d kB, peak %d kB (anon %d kB, file-backed %d kB); without the ring mapping %d kB" % (d["traffic_frames"], d["traffic_send_s"], d["traffic_rss_kb"], d["traffic_peak_rss_kb"], d["traffic_rss_anon_kb"], d["traffic_rss_file_kb"], d["traffic_rss_less_ring_kb"])); print("  ring buffer mapping (kernel map memory, mapped twice): %d kB" % d["traffic_ring_kb"])'
echo "  (file-backed RSS includes the ring buffer's mapping, the binary's pages and the store pages lookups touched)"
"$XT" trails stats -pin-dir "$P" -json | python3 -c 'import json,sys; m=json.load(sys.stdin)["kernel_memory"]; print("  kernel map memory (not in RSS): %.1f MiB (live generation %.1f, info/reference %.1f)" % (sum(m.values())/2**20, m["live_generation"]/2**20, m["metas"]/2**20))'
startup --reload "$T/static.xts=$T/static2.xts" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  sensor reload of a replaced store: took %s (sensor log), peak RSS %d kB after it" % (d["reload_took"], d["reload_peak_rss_kb"]))'
echo "  lookups in the store-backed matcher (random keys: cache-cold; ns/op):"
go test -run '^$' -bench 'BenchmarkNamesStatic|BenchmarkLookupName$' -benchmem ./pkg/store/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/    /'
echo "  IP lookups are the kernel's: SYN hit / SYN miss above; CIDR (LPM) in BenchmarkXDPCIDR above"

echo "== name matching with every row of trails-static.csv.gz loaded (ns/op, allocations)"
go test -run '^$' -bench 'BenchmarkCheckDomainMiss|BenchmarkCheckDomainHit|BenchmarkCheckURLMiss' -benchmem ./pkg/trails/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'
go test -run '^$' -bench 'BenchmarkAgentDNS|BenchmarkAgentHTTP' -benchtime 200000x -count 5 -benchmem ./pkg/sensor/ 2>/dev/null |
	awk '/^Benchmark/ { n=$1; v=$3+0; if (!(n in min) || v < min[n]) { min[n]=v; line[n]=$0 } } END { for (n in line) print "  min of 5: " line[n] }' | sort
echo "  instructions per candidate (callgrind; not moved by other work on the machine):"
scripts/agentcost.sh | sed 's/^/  /'
echo "== every core: candidates per second the ring reader and 1 or 2 agents drain from a ring the XDP program filled (HTTP, static trails, heuristics on)"
go test -run '^$' -bench 'BenchmarkAgentsDrain' -benchtime 240000x -count 3 ./pkg/sensor/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'
echo "== heuristics alone (pkg/heuristics: clean and attack requests, responses, DNS queries, NXDOMAIN answers)"
go test -run '^$' -bench . -benchmem ./pkg/heuristics/ 2>/dev/null | grep -E '^Benchmark' | sed 's/^/  /'
echo "== kernel to event: XDP-made HTTP candidates through the real ring buffer into the agent"
go test -run '^$' -bench 'BenchmarkKernelToEvent' -benchtime 1000000x ./pkg/sensor/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'

echo "== D4 server and exporter on a real redis-server (loopback)"
go test -run '^$' -bench 'BenchmarkServerIngest' -benchtime 10x ./pkg/d4server/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'
echo "  (one TLS sensor, 100 lines per frame; the server is a separate process, its CPU per 100k lines stored)"
go test -run '^$' -bench 'BenchmarkExportDrain' -benchtime 1x ./pkg/export/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/  /'
echo "  (draining a 1M-line queue into a UDP sink, unpaced; d4_export_udp.py: about 13,400 lines/s)"

echo "== the chain end to end (issue 13): TLS sensors -> xtrail server -> Redis -> xtrail export -> xtrail collector's file"
echo "   one redis-server, then a 3-primary, 3-replica Redis Cluster (lines wait for a replica);"
echo "   max: 300,000 lines as fast as taken; 10k: 10,000 lines/s, latency from hand-off to the file"
go test -run '^$' -bench 'BenchmarkChain' -benchtime 1x -timeout 30m ./internal/faults/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^BenchmarkChain\//  /'

echo "== Go micro-benchmarks (allocations per op)"
go test -run '^$' -bench 'AppendLine|AppendDatagram|AppendFrame|ReaderNext|Emit|Next|ToEthernet|ParseDNS|ParseHTTP|ClientHelloSNI|QUICInitialSNI' -benchmem \
	./pkg/maltrail/ ./pkg/d4/ ./pkg/sink/ ./pkg/pcap/ ./pkg/proto/ 2>/dev/null | grep -E '^Benchmark' | sed 's/^/  /'

echo "== D4 transport, on loopback with a real redis-server (figures from a quiet machine only)"
echo "  lines/s and frames/s into xtrail server, 1, 8 and 64 concurrent sensors, TLS and QUIC (spools filled first, clock until all stored):"
go test -run '^$' -bench 'BenchmarkIngest' -benchtime 400000x ./pkg/d4server/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/    /'
echo "  latency from the sensor's hand-off (D4 sink) to the collector's file at 10,000 lines/s, p50 and p99:"
go test -run '^$' -bench 'BenchmarkLatency' -benchtime 100000x ./internal/e2e/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/    /'
echo "  the sensor side: spool hand-off, and Send -> spool -> frames -> server for one client:"
go test -run '^$' -bench 'BenchmarkSpoolAppend|BenchmarkClientTLS|BenchmarkClientQUIC' -benchmem ./pkg/d4/ 2>/dev/null |
	grep -E '^Benchmark' | sed 's/^/    /'
