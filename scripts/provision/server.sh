#!/usr/bin/env bash
# The lab's server: Redis, xtrail server, one exporter queue and the
# collector, with the lab's certificates and the sensor's registration.
#   server.sh [provision]   install, configure, start (idempotent)
#   server.sh events [N] [SECONDS]
#                           wait until the collector's log holds the demo's
#                           events (N of them, default 3) and print them
# Settings (environment; see common.sh for the shared ones):
#   XTRAIL_SERVER_IP   the address sensors reach the server on (in its certificate)
#   XTRAIL_D4_PORT     D4/TLS port (4443)
#   XTRAIL_REDIS_PORT  Redis on 127.0.0.1 (6379, Debian's redis-server)
#   XTRAIL_COLLECTOR_PORT  the collector's UDP port on 127.0.0.1 (8337)
. "$(dirname "$0")/common.sh"

settings=(XTRAIL_SERVER_IP XTRAIL_D4_PORT XTRAIL_REDIS_PORT XTRAIL_COLLECTOR_PORT XTRAIL_LAB)
load_settings "${settings[@]}"
: "${XTRAIL_D4_PORT:=4443}" "${XTRAIL_REDIS_PORT:=6379}" "${XTRAIL_COLLECTOR_PORT:=8337}"
: "${XTRAIL_LAB:=$ETC/lab}"

provision() {
	[ -n "${XTRAIL_SERVER_IP:-}" ] || die "set XTRAIL_SERVER_IP (the address sensors reach this server on)"
	packages redis-server:redis-server ip:iproute2
	install_xtrail
	mkdir -p "$XTRAIL_LAB"

	# TLS: a private CA and a server certificate for this address, made once
	# (again only when the address changes)
	local hosts
	hosts="$XTRAIL_SERVER_IP,$(hostname)"
	if [ ! -s "$ETC/server.crt" ] || [ "$(cat "$ETC/server.hosts" 2>/dev/null)" != "$hosts" ]; then
		# gencert never overwrites; the old pair is for another address
		rm -f "$ETC/ca.crt" "$ETC/server.crt" "$ETC/server.key"
		"$XT" gencert -dir "$ETC" -hosts "$hosts" >/dev/null
		echo "$hosts" > "$ETC/server.hosts"
		log "certificate for $hosts in $ETC"
	fi
	install -m 0644 "$ETC/ca.crt" "$XTRAIL_LAB/ca.crt"

	# the lab's sensor: a v4 UUID and an HMAC key, registered once
	if [ ! -s "$XTRAIL_LAB/sensor.uuid" ] || [ ! -s "$XTRAIL_LAB/sensor.key" ]; then
		cat /proc/sys/kernel/random/uuid > "$XTRAIL_LAB/sensor.uuid"
		(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$XTRAIL_LAB/sensor.key")
	fi
	chmod 0600 "$XTRAIL_LAB/sensor.key"
	local uuid key
	uuid=$(cat "$XTRAIL_LAB/sensor.uuid")
	key=$(cat "$XTRAIL_LAB/sensor.key")
	touch "$ETC/sensors.keys"
	chmod 0600 "$ETC/sensors.keys"
	grep -q "^$uuid " "$ETC/sensors.keys" || echo "$uuid $key" >> "$ETC/sensors.keys"
	log "sensor $uuid registered in $ETC/sensors.keys"

	# D4 server on every address, Redis and the collector on loopback
	set_env "$ETC/server.env" SERVER_LISTEN "0.0.0.0:$XTRAIL_D4_PORT"
	set_env "$ETC/server.env" REDIS_URL "redis://127.0.0.1:$XTRAIL_REDIS_PORT/0"
	set_env "$ETC/export.env" REDIS_URL "redis://127.0.0.1:$XTRAIL_REDIS_PORT/0"
	set_env "$ETC/export.env" EXPORT_HOST 127.0.0.1
	set_env "$ETC/export.env" EXPORT_PORT "$XTRAIL_COLLECTOR_PORT"
	set_env "$ETC/collector.env" COLLECTOR_LISTEN "127.0.0.1:$XTRAIL_COLLECTOR_PORT"

	# one analyzer queue, exported to the collector by xtrail-export@QUEUE
	[ -s "$ETC/lab.queue" ] || cat /proc/sys/kernel/random/uuid > "$ETC/lab.queue"
	save_settings "${settings[@]}"
	start_units xtrail-collector.service xtrail-server.service "xtrail-export@$(cat "$ETC/lab.queue").service"
	log "server ready: D4 on $XTRAIL_SERVER_IP:$XTRAIL_D4_PORT, queue $(cat "$ETC/lab.queue")"
}

# events N SECONDS: the collector's log lines, once N demo events are there
events() {
	local want=${1:-3} secs=${2:-30} dir i n=0
	dir=$(sed -n 's/^COLLECTOR_LOG_DIR=//p' "$ETC/collector.env")
	for ((i = 0; i < secs * 10; i++)); do
		n=$(cat "$dir"/*.log 2>/dev/null | grep -cE ' (ICMP IP 136\.161\.101\.53|TCP IPORT 198\.51\.100\.77:8443|UDP IP 203\.0\.113\.99) ' || true)
		[ "$n" -ge "$want" ] && break
		sleep 0.1
	done
	cat "$dir"/*.log 2>/dev/null || true
	[ "$n" -ge "$want" ] || die "the collector's log ($dir) has $n of the $want demo events after ${secs}s"
	log "the collector has the $want demo events: client -> SPAN -> sensor -> D4 -> server -> Redis -> exporter -> collector"
}

case "${1:-provision}" in
provision) provision ;;
events) events "${2:-3}" "${3:-30}" ;;
*) die "usage: $0 [provision | events [N] [SECONDS]]" ;;
esac
