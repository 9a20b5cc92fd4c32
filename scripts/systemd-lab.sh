#!/usr/bin/env bash
# The lab's provisioning under a real systemd, on this host: a Debian 12
# container (systemd-nspawn) boots systemd, and server.sh, sensor.sh and
# client.sh run in it as in the Vagrant VMs (all three roles in one
# container), so systemd starts the units with all their sandboxing. The
# sensor must then come back after its pins are gone (as after a reboot),
# restart on its cached program, reload, and the demo's three events must
# reach the collector. CI has no systemd to do this; this script is the check
# for a change to deploy/systemd. It is not part of `make test`: the first run
# downloads a Debian base system with debootstrap (about 270 MB, kept in
# $XTRAIL_ROOTFS), and a run takes a minute or two.
#   scripts/systemd-lab.sh        (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "systemd-lab: run as root" >&2; exit 1; }

ROOTFS=${XTRAIL_ROOTFS:-/var/tmp/xtrail-rootfs-bookworm}
for tool in debootstrap:debootstrap systemd-nspawn:systemd-container nsenter:util-linux; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || {
		echo "systemd-lab: installing ${tool#*:}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tool#*:}" >/dev/null
	}
done

if [ ! -x "$ROOTFS/lib/systemd/systemd" ]; then
	echo "systemd-lab: a Debian 12 base system in $ROOTFS (once)"
	rm -rf "$ROOTFS.new"
	debootstrap --variant=minbase \
		--include=systemd,systemd-sysv,dbus,iproute2,iputils-ping,ethtool,redis-server,procps \
		bookworm "$ROOTFS.new" http://deb.debian.org/debian >/dev/null
	mv "$ROOTFS.new" "$ROOTFS"
fi

T=$(mktemp -d /tmp/xtrail-systemd-lab.XXXXXX)
PIN=/sys/fs/bpf/xtrail-systemd-lab-$$
nspawn=""
cleanup() {
	set +e
	if [ -n "$nspawn" ]; then
		kill -TERM "$nspawn" 2>/dev/null
		for _ in $(seq 30); do kill -0 "$nspawn" 2>/dev/null || break; sleep 1; done
		kill -KILL "$nspawn" 2>/dev/null
	fi
	rm -rf "$PIN" "$T"
}
trap cleanup EXIT

echo "systemd-lab: building a static xtrail"
CGO_ENABLED=0 go build -o "$T/xtrail" ./cmd/xtrail
mkdir -p "$PIN"

# the checks, run inside the container once systemd is up
cat > "$T/check.sh" <<'CHECK'
#!/bin/bash
set -euo pipefail
step() { printf '==> %s\n' "$*"; }
export XTRAIL_BIN=/lab/xtrail
# the client's lab NIC and its span NIC wired to the sensor's monitor port
ip link add clab type veth peer name xlab
ip link add cspan type veth peer name mon0
ip link set xlab up && ip link set clab up
ip addr add 169.254.56.12/24 dev clab
step "provision: server, sensor, client"
XTRAIL_SERVER_IP=127.0.0.1 /vagrant/scripts/provision/server.sh
XTRAIL_SERVER_IP=127.0.0.1 XTRAIL_LAB=/etc/xtrail/lab XTRAIL_MONITOR_IFACE=mon0 /vagrant/scripts/provision/sensor.sh
XTRAIL_LAB_IFACE=clab XTRAIL_SPAN_IFACE=cspan /vagrant/scripts/provision/client.sh
step "the sensor pins everything again (as after a reboot), restarts on its cached program, reloads"
systemctl stop xtrail-sensor
rm -r /sys/fs/bpf/xtrail
systemctl start xtrail-sensor
sleep 2
systemctl restart xtrail-sensor
sleep 2
systemctl reload xtrail-sensor
sleep 1
systemctl is-active xtrail-sensor xtrail-server xtrail-collector 'xtrail-export@*'
journalctl --no-pager -u xtrail-sensor -o cat | grep -o 'msg="XDP program loaded".*'
step "the demo's traffic, and its events in the collector's log"
/vagrant/scripts/provision/client.sh traffic
/vagrant/scripts/provision/server.sh events 3 20
if journalctl --no-pager -u 'xtrail-*' -p warning -q | grep .; then
	echo "systemd-lab: the units logged warnings or errors (above)" >&2
	exit 1
fi
step "all units ran under systemd with their sandboxing"
CHECK
chmod +x "$T/check.sh"

echo "systemd-lab: booting the container"
setsid systemd-nspawn -D "$ROOTFS" --volatile=overlay -M "xtrail-lab-$$" --register=no --keep-unit \
	--private-network --capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN --system-call-filter="bpf perf_event_open" \
	--bind="$PIN:/sys/fs/bpf" --bind-ro="$PWD:/vagrant" --bind-ro="$T:/lab" -b \
	> "$T/console.log" 2>&1 < /dev/null &
nspawn=$!
# the container's systemd is nspawn's child
init=""
for _ in $(seq 100); do
	init=$(awk '{ print $1 }' "/proc/$nspawn/task/$nspawn/children" 2>/dev/null || true)
	state=""
	[ -z "$init" ] || state=$(nsenter -t "$init" -a -- systemctl is-system-running --wait 2>/dev/null || true)
	case $state in running | degraded) break ;; esac
	kill -0 "$nspawn" 2>/dev/null || { cat "$T/console.log"; exit 1; }
	sleep 0.3
done
case $state in
running | degraded) ;;
*) echo "systemd-lab: the container's systemd did not come up (${state:-no state})" >&2; cat "$T/console.log"; exit 1 ;;
esac

if nsenter -t "$init" -a -- /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /lab/check.sh; then
	echo "systemd-lab: passed"
else
	echo "systemd-lab: FAILED; the units' journal:" >&2
	nsenter -t "$init" -a -- journalctl --no-pager -u 'xtrail-*' -n 60 >&2 || true
	exit 1
fi
