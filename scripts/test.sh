#!/usr/bin/env bash
# The test command of README.md and .ci/run. As root it runs everything,
# including the BPF, XDP/veth, Redis and end-to-end tests; with CI=true a
# missing prerequisite fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -count=1 -timeout 40m "$@" ./...

# The race detector on every package with concurrency: goroutines, locks or
# atomics in its code or tests (found by grep, so a new one is not
# forgotten), and always the ones the design names. Tests that count
# allocations or only time the full trails file skip under -race; the run
# above covers them.
concurrent=$( {
	printf '%s\n' pkg/sensor pkg/d4 pkg/d4server pkg/export pkg/dataplane
	grep -rlE --include='*.go' '(^|[[:space:]])go (func|[A-Za-z_.]+\()|errgroup\.|sync\.(WaitGroup|Mutex|RWMutex|Once|Pool)|atomic\.' pkg internal cmd |
		xargs -r -n1 dirname
} | sort -u | sed 's|^|./|')
echo "race: ${concurrent//$'\n'/ }"
# shellcheck disable=SC2086 # one argument per package
go test -race -count=1 -timeout 40m "$@" $concurrent

scripts/fuzz.sh "${FUZZTIME:-8s}"
