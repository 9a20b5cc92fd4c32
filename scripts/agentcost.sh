#!/usr/bin/env bash
# Instructions per candidate of the agent (pkg/sensor BenchmarkAgent*)
# and the store's lookups, counted by valgrind's callgrind: unlike a
# wall-clock figure, a count does not move when other work shares the
# machine. Each benchmark runs twice under callgrind, with N1 and N2
# iterations, counting only inside the timed function (--toggle-collect);
# (Ir(N2) - Ir(N1)) / (N2 - N1) is the cost of one candidate, setup and
# warm-up cancelled out. With --cache, callgrind also simulates the
# caches and reports last-level misses per candidate.
# usage: scripts/agentcost.sh [--cache] [BENCHMARK-REGEX]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${XTRAIL_SHARED:-$(cd .. && pwd)/shared}
cache=no
if [ "${1:-}" = --cache ]; then cache=yes; shift; fi
want=${1:-'^BenchmarkAgent(DNS|HTTP|DNSHeuristics|HTTPHeuristics|DNSResponse|DNSNXDomain|Overhead)$'}
command -v valgrind >/dev/null || { echo "agentcost: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
T=$(mktemp -d /tmp/xtrail-agentcost.XXXXXX)
trap 'rm -rf "$T"' EXIT
go build -o "$T/xtrail" ./cmd/xtrail
"$T/xtrail" trails compile -o "$T/static.xts" "$SHARED/data/trails-static.csv.gz" >/dev/null
# No cgo and no asynchronous preemption: callgrind trips over the
# signals both send. No garbage collection and one P: the counting is on
# while Handle runs, and a collector's work in that time would count too
# (the benchmarks allocate nothing per candidate).
CGO_ENABLED=0 go test -c -o "$T/sensor.test" ./pkg/sensor/
N1=2000 N2=12000
ir() { # benchmark, iterations, function to count in -> total Ir
	(cd pkg/sensor && GOGC=off GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 XTRAIL_BENCH_STORE="$T/static.xts" \
		valgrind --tool=callgrind --cache-sim=$cache --callgrind-out-file="$T/cg.out" --toggle-collect="$3" \
		"$T/sensor.test" -test.run '^$' -test.bench "^$1\$" -test.benchtime "${2}x" >/dev/null 2>&1)
	callgrind_annotate "$T/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", ""); print $1, $2, $3, $4, $5, $6, $7, $8, $9; exit }'
}
for b in $("$T/sensor.test" -test.list "$want" | grep '^Benchmark'); do
	read -r -a a < <(ir "$b" $N1 'github.com/xtrail/xtrail/pkg/sensor.(*Agent).Handle')
	read -r -a c < <(ir "$b" $N2 'github.com/xtrail/xtrail/pkg/sensor.(*Agent).Handle')
	if [ "$cache" = yes ]; then
		# events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
		awk -v b="$b" -v n=$((N2 - N1)) -v a="${a[*]}" -v c="${c[*]}" 'BEGIN { split(a, x); split(c, y)
			printf "  %-32s %7.0f instructions  %6.2f L1d misses  %6.2f LL misses per candidate\n", b, (y[1]-x[1])/n, (y[5]+y[6]-x[5]-x[6])/n, (y[8]+y[9]-x[8]-x[9])/n }'
	else
		awk -v b="$b" -v n=$((N2 - N1)) -v a="${a[0]}" -v c="${c[0]}" 'BEGIN { printf "  %-32s %7.0f instructions per candidate\n", b, (c-a)/n }'
	fi
done
