#!/usr/bin/env bash
# The lab's sensor: xtrail sensor on a monitor port that receives the
# client's mirrored traffic, reporting over D4/TLS to the lab's server.
#   sensor.sh [provision]   install, configure, load trails, start (idempotent)
# Settings (environment; see common.sh for the shared ones):
#   XTRAIL_SERVER_IP     the server's address
#   XTRAIL_D4_PORT       its D4/TLS port (4443)
#   XTRAIL_MONITOR_IFACE the monitor port, or XTRAIL_MONITOR_MAC to find it
#   XTRAIL_PIN_DIR       bpffs directory of the trail maps (default /sys/fs/bpf/xtrail)
#   XTRAIL_LAB           where the server's ca.crt, sensor.uuid and sensor.key are
. "$(dirname "$0")/common.sh"

settings=(XTRAIL_SERVER_IP XTRAIL_D4_PORT XTRAIL_MONITOR_IFACE XTRAIL_MONITOR_MAC XTRAIL_PIN_DIR XTRAIL_LAB)
load_settings "${settings[@]}"
: "${XTRAIL_D4_PORT:=4443}" "${XTRAIL_PIN_DIR:=/sys/fs/bpf/xtrail}"

provision() {
	[ -n "${XTRAIL_SERVER_IP:-}" ] || die "set XTRAIL_SERVER_IP (the server's address)"
	[ -n "${XTRAIL_LAB:-}" ] || die "set XTRAIL_LAB (the directory with the server's ca.crt and this sensor's credentials)"
	local f
	for f in ca.crt sensor.uuid sensor.key; do
		[ -s "$XTRAIL_LAB/$f" ] || die "$XTRAIL_LAB/$f is missing: provision the server first (vagrant up server)"
	done
	packages ip:iproute2 ethtool:ethtool
	install_xtrail

	# credentials from the server
	install -m 0644 "$XTRAIL_LAB/ca.crt" "$ETC/ca.crt"
	install -m 0600 "$XTRAIL_LAB/sensor.key" "$ETC/sensor.key"

	# the monitor port: up without an address, promiscuous (mirrored frames
	# are addressed to other hosts), no receive offloads (XDP wants frames as
	# they were on the wire; generic XDP sees GRO's merged super-frames)
	local mon
	mon=$(iface "${XTRAIL_MONITOR_IFACE:-}" "${XTRAIL_MONITOR_MAC:-}")
	XTRAIL_MONITOR_IFACE=$mon
	ip link set dev "$mon" up promisc on
	ip addr flush dev "$mon"
	ethtool -K "$mon" gro off lro off >/dev/null 2>&1 || log "$mon: GRO/LRO could not be turned off (not offered by its driver?)"
	if [ -d /run/systemd/system ] && [ "${XTRAIL_START:-auto}" != no ]; then
		# again at every start of the sensor (after a reboot too)
		mkdir -p /etc/systemd/system/xtrail-sensor.service.d
		cat > /etc/systemd/system/xtrail-sensor.service.d/monitor-port.conf <<-CONF
			[Service]
			ExecStartPre=+$(command -v ip) link set dev $mon up promisc on
			ExecStartPre=-+$(command -v ethtool) -K $mon gro off lro off
		CONF
	fi

	local conf=$ETC/maltrail.conf
	set_key "$conf" MONITOR_INTERFACE "$mon"
	set_key "$conf" SENSOR_NAME lab-sensor
	set_key "$conf" D4_SERVER "$XTRAIL_SERVER_IP:$XTRAIL_D4_PORT"
	set_key "$conf" D4_UUID "$(cat "$XTRAIL_LAB/sensor.uuid")"
	set_key "$conf" D4_KEY_FILE "$ETC/sensor.key"
	set_key "$conf" D4_CA "$ETC/ca.crt"
	set_key "$conf" XDP_ACTION drop
	set_key "$conf" XDP_PIN_DIR "$XTRAIL_PIN_DIR"

	# the demo's trails: a real static trail, an IP:port and an IP trail;
	# compiled into the store and loaded into the pinned kernel maps (a
	# running sensor switches to them)
	cat > "$ETC/lab-trails.csv" <<-CSV
		136.161.101.53,sinkhole conficker (malware),(static)
		198.51.100.77:8443,xtrail demo c2 (malware),(custom)
		203.0.113.99,xtrail demo (suspicious),(custom)
	CSV
	mkdir -p "$LOCALSTATEDIR/lib/xtrail"
	"$XT" trails load -q -pin-dir "$XTRAIL_PIN_DIR" -store "$LOCALSTATEDIR/lib/xtrail/trails.xts" "$ETC/lab-trails.csv" >/dev/null
	log "trails loaded into $XTRAIL_PIN_DIR"

	save_settings "${settings[@]}"
	start_units xtrail-sensor.service
	log "sensor ready: monitor port $mon, D4 to $XTRAIL_SERVER_IP:$XTRAIL_D4_PORT"
}

case "${1:-provision}" in
provision) provision ;;
*) die "usage: $0 [provision]" ;;
esac
