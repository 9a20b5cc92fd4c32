# shellcheck shell=bash
# Shared by the lab's provisioning scripts (server.sh, sensor.sh,
# client.sh): the same steps run in the Vagrant VMs (vagrant/Vagrantfile)
# and, in CI, in network namespaces on one host (internal/deploytest).
# Settings come from the environment; a provisioned host keeps them in
# $SYSCONFDIR/xtrail/lab.env for the scripts' other commands.
#   XTRAIL_BIN      the binary to install (default bin/xtrail of this tree)
#   PREFIX, SYSCONFDIR, LOCALSTATEDIR   as for make install (scripts/install.sh)
#   XTRAIL_LAB      files the server hands to the sensor (its CA, the sensor's
#                   UUID and key); the VMs pass them through vagrant/.lab
#   XTRAIL_START    auto: enable and start the units when systemd runs;
#                   no: only install and configure (CI starts them itself)
set -euo pipefail

XTRAIL_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PREFIX=${PREFIX:-/usr/local}
export SYSCONFDIR=${SYSCONFDIR:-/etc}
export LOCALSTATEDIR=${LOCALSTATEDIR:-/var}
ETC=$SYSCONFDIR/xtrail
XT=$PREFIX/bin/xtrail
LAB_ENV=$ETC/lab.env

log() { printf '%s: %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"

# load_settings NAME...: each unset NAME from lab.env (the environment wins)
load_settings() {
	[ -r "$LAB_ENV" ] || return 0
	local name line
	for name in "$@"; do
		[ -n "${!name:-}" ] && continue
		line=$(grep -m1 "^$name=" "$LAB_ENV" || true)
		[ -n "$line" ] && export "$name=${line#*=}"
	done
	return 0
}

# save_settings NAME...: record the current values for later commands
save_settings() {
	local name tmp
	mkdir -p "$ETC"
	tmp=$(mktemp "$LAB_ENV.XXXXXX")
	for name in "$@"; do printf '%s=%s\n' "$name" "${!name:-}"; done > "$tmp"
	chmod 0600 "$tmp"
	mv "$tmp" "$LAB_ENV"
}

# packages CMD:PACKAGE...: install the Debian packages whose command is missing
packages() {
	local need=() spec
	for spec in "$@"; do
		command -v "${spec%%:*}" >/dev/null 2>&1 || need+=("${spec#*:}")
	done
	[ ${#need[@]} -eq 0 ] && return 0
	command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get to install them"
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# install_xtrail: binary, units, default configs (make install's script)
install_xtrail() {
	local bin=${XTRAIL_BIN:-$XTRAIL_SRC/bin/xtrail}
	[ -x "$bin" ] || die "no xtrail binary at $bin: build it first (make build, or CGO_ENABLED=0 go build -o bin/xtrail ./cmd/xtrail)"
	"$XTRAIL_SRC/scripts/install.sh" "$bin" >/dev/null
	log "installed $XT, units and default configs"
}

# set_key FILE KEY VALUE: a maltrail.conf line `KEY VALUE`, replacing the
# key's line (or its commented-out default) or appending one
set_key() {
	local file=$1 key=$2 value=$3 tmp
	tmp=$(mktemp "$file.XXXXXX")
	awk -v k="$key" -v v="$value" '
		!done && ($1 == k || $1 == "#" k) { print k " " v; done = 1; next }
		{ print }
		END { if (!done) print k " " v }' "$file" > "$tmp"
	chmod --reference="$file" "$tmp"
	mv "$tmp" "$file"
}

# set_env FILE KEY VALUE: a systemd environment file line KEY=VALUE
set_env() {
	local file=$1 key=$2 value=$3 tmp
	tmp=$(mktemp "$file.XXXXXX")
	awk -v k="$key" -v v="$value" -F= '
		!done && $1 == k { print k "=" v; done = 1; next }
		{ print }
		END { if (!done) print k "=" v }' "$file" > "$tmp"
	chmod --reference="$file" "$tmp"
	mv "$tmp" "$file"
}

# iface NAME MAC: NAME when set, else the interface whose address is MAC
# (the Vagrantfile fixes each lab NIC's MAC; names differ by provider)
iface() {
	local name=$1 mac=$2 dev
	if [ -n "$name" ]; then
		ip link show dev "$name" >/dev/null 2>&1 || die "no interface $name"
		echo "$name"
		return
	fi
	[ -n "$mac" ] || die "neither an interface name nor a MAC address given"
	mac=$(echo "$mac" | tr 'A-F' 'a-f' | sed 's/[^0-9a-f]//g; s/../&:/g; s/:$//')
	dev=$(ip -o link show | awk -v m="$mac" '$0 ~ "link/ether " m " " { sub(":$", "", $2); sub("@.*", "", $2); print $2; exit }')
	[ -n "$dev" ] || die "no interface with MAC $mac"
	echo "$dev"
}

# start_units UNIT...: enable and (re)start them, when systemd runs here
start_units() {
	if [ "${XTRAIL_START:-auto}" = no ] || [ ! -d /run/systemd/system ]; then
		log "not starting $* (XTRAIL_START=${XTRAIL_START:-auto}, systemd running: $([ -d /run/systemd/system ] && echo yes || echo no))"
		return 0
	fi
	systemctl daemon-reload
	systemctl enable --quiet "$@"
	systemctl restart "$@"
	log "started $*"
}
