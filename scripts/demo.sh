#!/usr/bin/env bash
# make demo: the whole chain on one host, in one command.
#   source netns --veth--> sensor netns  (XDP program attached, action drop)
#   xtrail sensor --D4/TLS--> xtrail server (in-process store) --export UDP--> xtrail collector
# A ping, a TCP SYN and a UDP datagram to trail addresses leave the source
# namespace; the demo waits for the three events in the collector's daily
# log, prints them, and removes every namespace, pin, process and file it
# made, also on failure or Ctrl-C. Exit 0 only if all three arrived.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (XDP, network namespaces, bpffs)" >&2; exit 1; }
XT=$PWD/bin/xtrail
[ -x "$XT" ] || { echo "demo: build first (make build)" >&2; exit 1; }

id=$$
NS_SRC=xtdemo-src-$id
NS_SEN=xtdemo-sen-$id
IF_SRC=xtds$((id % 100000))
IF_SEN=xtdn$((id % 100000))
PIN=/sys/fs/bpf/xtrail-demo-$id
D4_PORT=${XTRAIL_DEMO_D4_PORT:-4443}
COL_PORT=${XTRAIL_DEMO_COLLECTOR_PORT:-8337}
T=$(mktemp -d /tmp/xtrail-demo.XXXXXX)
pids=()
ok=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	set +e
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	if [ "$ok" != 1 ]; then
		for f in "$T"/*.err; do [ -s "$f" ] && { echo "--- $(basename "$f")"; tail -n 15 "$f"; }; done
	fi
	ip netns del "$NS_SRC" 2>/dev/null
	ip netns del "$NS_SEN" 2>/dev/null
	rm -rf "$PIN" "$T"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT TERM

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# wait_for FILE TEXT SECONDS: until FILE contains TEXT
wait_for() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: timed out waiting for '$2' in $(basename "$1")" >&2
	return 1
}

step "lab: namespaces $NS_SRC and $NS_SEN joined by veth $IF_SRC <-> $IF_SEN"
mac=02:58:54:de:00:01
ip netns add "$NS_SRC"
ip netns add "$NS_SEN"
ip link add "$IF_SRC" netns "$NS_SRC" type veth peer name "$IF_SEN" netns "$NS_SEN"
ip -n "$NS_SEN" link set "$IF_SEN" address $mac up
ip -n "$NS_SEN" addr add 169.254.77.1/24 dev "$IF_SEN"
ip -n "$NS_SRC" addr add 169.254.77.2/24 dev "$IF_SRC"
ip -n "$NS_SRC" link set "$IF_SRC" up
ip -n "$NS_SRC" link set lo up
# the sensor drops everything in XDP (monitor port), so the source needs no ARP reply
ip -n "$NS_SRC" neigh add 169.254.77.1 lladdr $mac dev "$IF_SRC" nud permanent
ip -n "$NS_SRC" route add default via 169.254.77.1 dev "$IF_SRC"

step "trails: one real static trail, one IP:port trail, one IP trail"
cat > "$T/trails.csv" <<'CSV'
136.161.101.53,sinkhole conficker (malware),(static)
198.51.100.77:8443,xtrail demo c2 (malware),(custom)
203.0.113.99,xtrail demo (suspicious),(custom)
CSV

step "server: certificate, sensor registration, D4 server with built-in exporter, collector"
"$XT" gencert -dir "$T/pki" -hosts 127.0.0.1,localhost >/dev/null
uuid=$(cat /proc/sys/kernel/random/uuid)
key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
echo "$uuid $key" > "$T/sensors.keys"
"$XT" collector -listen "127.0.0.1:$COL_PORT" -log-dir "$T/collector" 2> "$T/collector.err" &
pids+=($!)
wait_for "$T/collector.err" "collector listening" 10
"$XT" server -listen "127.0.0.1:$D4_PORT" -cert "$T/pki/server.crt" -key "$T/pki/server.key" \
	-mode registration -keys "$T/sensors.keys" -export "maltrail=127.0.0.1:$COL_PORT" 2> "$T/server.err" &
pids+=($!)
wait_for "$T/server.err" "D4 server listening" 10

step "sensor: XDP on $IF_SEN (netns $NS_SEN), events over D4/TLS to 127.0.0.1:$D4_PORT"
cat > "$T/maltrail.conf" <<CONF
# Maltrail's keys
MONITOR_INTERFACE $IF_SEN
CAPTURE_BUFFER 10%
TRAILS_FILE $T/trails.csv
LOG_DIR $T/sensor-log
SENSOR_NAME demo-sensor
# xtrail's keys
D4_SERVER 127.0.0.1:$D4_PORT
D4_UUID $uuid
D4_KEY $key
D4_CA $T/pki/ca.crt
D4_SPOOL_DIR $T/spool
XDP_ACTION drop
XDP_PIN_DIR $PIN
CONF
"$XT" sensor -c "$T/maltrail.conf" -netns "$NS_SEN" 2> "$T/sensor.err" &
pids+=($!)
wait_for "$T/sensor.err" "XDP program attached" 20
grep -o 'XDP program attached.*' "$T/sensor.err" | head -1

step "traffic from $NS_SRC: ping 136.161.101.53, TCP SYN to 198.51.100.77:8443, UDP to 203.0.113.99:5353"
ip netns exec "$NS_SRC" ping -c 1 -W 1 136.161.101.53 >/dev/null 2>&1 || true
ip netns exec "$NS_SRC" timeout 0.5 bash -c 'exec 3<>/dev/tcp/198.51.100.77/8443' 2>/dev/null || true
ip netns exec "$NS_SRC" bash -c 'echo xtrail-demo > /dev/udp/203.0.113.99/5353'

step "waiting for the events in the collector's daily log"
for ((i = 0; i < 300; i++)); do
	n=$(cat "$T"/collector/*.log 2>/dev/null | wc -l)
	[ "$n" -ge 3 ] && break
	sleep 0.1
done
log=$(cat "$T"/collector/*.log 2>/dev/null || true)
echo "$log"
if grep -q ' ICMP IP 136.161.101.53 ' <<<"$log" &&
	grep -q ' TCP IPORT 198.51.100.77:8443 ' <<<"$log" &&
	grep -q ' UDP IP 203.0.113.99 ' <<<"$log"; then
	ok=1
	step "all three events arrived: sensor -> D4 server -> exporter -> collector"
	exit 0
fi
echo "demo: FAILED: the collector has $(wc -l <<<"$log") line(s), want the ICMP, TCP and UDP events" >&2
exit 1
