#!/usr/bin/env bash
# Installs what a make target needs and is missing, from Debian's packages.
#   scripts/deps.sh demo      iproute2, ping
#   scripts/deps.sh test      + redis-server, redis-cli (Redis Cluster tests), tcpdump, python3 (corpus and Redis tests);
#                             for make lint, ShellCheck; for the deployment tests (internal/deploytest)
#                             vagrant, vagrant-libvirt, systemd-analyze, strace, ethtool, setpriv, nsenter
#   scripts/deps.sh generate  + clang, llvm, kernel UAPI headers (make generate)
#   scripts/deps.sh bench     + python3 (traffic mix generator), valgrind (agentcost.sh), redis-server and redis-cli
set -euo pipefail

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }

case "${1:-test}" in
demo)
	want ip iproute2; want ping iputils-ping ;;
test)
	want ip iproute2; want ping iputils-ping; want redis-server redis-server; want redis-cli redis-tools
	want python3 python3; want clang clang; want llvm-strip llvm
	[ -e /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
	[ -e /usr/include/x86_64-linux-gnu/asm/types.h ] || [ "$(uname -m)" != x86_64 ] || need+=(linux-libc-dev)
	want shellcheck shellcheck; want vagrant vagrant; want systemd-analyze systemd
	dpkg -s vagrant-libvirt >/dev/null 2>&1 || need+=(vagrant-libvirt)
	want strace strace; want ethtool ethtool; want tc iproute2
	want setpriv util-linux; want nsenter util-linux ;;
generate)
	want clang clang; want llvm-strip llvm
	[ -e /usr/include/linux/bpf.h ] || need+=(linux-libc-dev) ;;
bench)
	want ip iproute2; want python3 python3; want valgrind valgrind
	want redis-server redis-server; want redis-cli redis-tools ;;
*)
	echo "usage: $0 demo|test|generate|bench" >&2; exit 2 ;;
esac

command -v go >/dev/null 2>&1 || { echo "deps: Go is required (https://go.dev/doc/install)" >&2; exit 1; }
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	if [ "${1:-test}" = test ] && [ "${CI:-}" != true ]; then
		echo "deps: missing ${need[*]} (not root, not installing): the tests that need them will skip" >&2
		exit 0
	fi
	echo "deps: missing ${need[*]}; run as root (or install them) to continue" >&2
	exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
