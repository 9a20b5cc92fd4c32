#!/usr/bin/env bash
# make lint: no build output or large data in git. A tracked file over 1 MB
# fails unless scripts/fixtures.txt lists its path (a fixture kept on purpose).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((1024 * 1024))
allowed=$(grep -v '^#' scripts/fixtures.txt 2>/dev/null || true)
bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue
	size=$(stat -c %s "$f")
	[ "$size" -gt "$limit" ] || continue
	grep -qxF "$f" <<<"$allowed" && continue
	echo "lint: $f is $((size / 1024)) KiB, over 1 MB and not listed in scripts/fixtures.txt (a build output or data that belongs elsewhere?)" >&2
	bad=1
done < <(git ls-files -z)
for f in xtrail bin; do
	if git ls-files --error-unmatch "$f" >/dev/null 2>&1; then
		echo "lint: build output $f is tracked" >&2
		bad=1
	fi
done
exit $bad
