#!/usr/bin/env bash
# Runs every fuzz target for the given time each (default 10s): a smoke run
# in `make test`, long runs with `make fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
grep -rl --include='*_test.go' '^func Fuzz' pkg internal 2>/dev/null | xargs -r dirname | sort -u | while read -r dir; do
	for f in $(grep -h --include='*_test.go' -r -o '^func Fuzz[A-Za-z0-9_]*' "$dir" | sed 's/^func //' | sort -u); do
		echo "fuzz: $dir $f ($t)"
		if ! out=$(go test -run '^$' -fuzz "^${f}\$" -fuzztime "$t" "./$dir" 2>&1); then
			echo "$out" | tail -n 40
			echo "fuzz: $dir $f FAILED (a failing input is saved under $dir/testdata/fuzz/$f when the target found one)"
			exit 1
		fi
	done
done
echo "fuzz: all targets ran without a failure"
