#!/usr/bin/env bash
# The test command of README.md and .ci/run. As root it runs everything,
# including the BPF, XDP/veth, Redis and end-to-end tests; with CI=true a
# missing prerequisite fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
go vet ./...
go test -count=1 -timeout 40m "$@" ./...
scripts/fuzz.sh "${FUZZTIME:-8s}"
