#!/usr/bin/env bash
# Runs every fuzz target for the given time each (default 10s): a smoke run
# in `make test`, long runs with `make fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}

# Minimizing a new interesting input tries removing every subset of its
# bytes until a time limit (60 s by default): on large inputs (a QUIC
# Initial is 1200 bytes) that limit, not fuzzing, took most of a run.
run() { go test -run '^$' -fuzz "^$2\$" -fuzztime "$t" -fuzzminimizetime "${FUZZMINTIME:-5s}" "./$1" 2>&1; }

grep -rl --include='*_test.go' '^func Fuzz' pkg internal 2>/dev/null | xargs -r dirname | sort -u | while read -r dir; do
	grep -h --include='*_test.go' -r -o '^func Fuzz[A-Za-z0-9_]*' "$dir" | sed 's/^func //' | sort -u | while read -r f; do
		echo "fuzz: $dir $f ($t)"
		out=$(run "$dir" "$f") && continue
		# On a loaded machine the fuzzer's coordinator can give up waiting
		# for a worker ("context deadline exceeded") without any failing
		# input: run it once more. A real finding writes a failing input.
		if grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
			echo "fuzz: $dir $f: the fuzzer timed out waiting for a worker; running it again"
			out=$(run "$dir" "$f") && continue
		fi
		echo "$out" | tail -n 40
		echo "fuzz: $dir $f FAILED (a failing input is saved under $dir/testdata/fuzz/$f when the target found one)"
		exit 1
	done
done
echo "fuzz: all targets ran without a failure"
