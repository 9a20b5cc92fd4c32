#!/usr/bin/env bash
# make lint: shellcheck on every shell script of the project (scripts/,
# scripts/provision/, vagrant/, .ci/run), found by their #! line.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v shellcheck >/dev/null 2>&1 || {
	echo "lint: shellcheck is missing (scripts/deps.sh test installs it)" >&2
	exit 1
}
scripts=()
while IFS= read -r -d '' f; do
	head -n1 "$f" | grep -Eq '^#!.*\b(ba)?sh\b' && scripts+=("$f")
done < <(git ls-files -z --cached --others --exclude-standard -- scripts vagrant .ci)
[ ${#scripts[@]} -gt 0 ] || { echo "lint: no shell scripts found" >&2; exit 1; }
# -x follows `source`d files; -P finds them next to the script
shellcheck -x -P SCRIPTDIR "${scripts[@]}"
echo "lint: shellcheck passed on ${#scripts[@]} scripts"
