#!/usr/bin/env bash
# The lab's client: a host whose traffic is mirrored to the sensor, as a
# switch's SPAN port would: tc copies every frame its lab NIC sends or
# receives to its span NIC, wired to the sensor's monitor port.
#   client.sh [provision]   packages, the mirror (idempotent)
#   client.sh traffic       the demo's traffic: a ping to 136.161.101.53, a TCP
#                           SYN to 198.51.100.77:8443 and a UDP datagram to
#                           203.0.113.99:5353 (all trails), sent to a next hop
#                           that does not exist, so nothing goes further
# Settings (environment):
#   XTRAIL_LAB_IFACE or XTRAIL_LAB_MAC    the NIC on the lab network
#   XTRAIL_SPAN_IFACE or XTRAIL_SPAN_MAC  the NIC wired to the sensor's monitor port
. "$(dirname "$0")/common.sh"

settings=(XTRAIL_LAB_IFACE XTRAIL_LAB_MAC XTRAIL_SPAN_IFACE XTRAIL_SPAN_MAC)
load_settings "${settings[@]}"

# the trails' next hop: an address on the lab network that no host has,
# with a fixed neighbour entry, so the frames leave without an ARP exchange
NEXT_HOP_MAC=02:58:54:00:00:fe

mirror() {
	local lab span
	lab=$(iface "${XTRAIL_LAB_IFACE:-}" "${XTRAIL_LAB_MAC:-}")
	span=$(iface "${XTRAIL_SPAN_IFACE:-}" "${XTRAIL_SPAN_MAC:-}")
	ip link set dev "$span" up
	ip addr flush dev "$span"
	tc qdisc del dev "$lab" clsact 2>/dev/null || true
	tc qdisc add dev "$lab" clsact
	# u32 matching every frame: kernels without cls_matchall have cls_u32
	local dir
	for dir in ingress egress; do
		tc filter add dev "$lab" "$dir" protocol all u32 match u32 0 0 action mirred egress mirror dev "$span"
	done
	XTRAIL_LAB_IFACE=$lab XTRAIL_SPAN_IFACE=$span
	log "mirroring $lab (both directions) to $span"
}

provision() {
	packages ip:iproute2 tc:iproute2 ping:iputils-ping
	mirror
	save_settings "${settings[@]}"
}

traffic() {
	mirror
	local lab=$XTRAIL_LAB_IFACE net hop
	# the lab network's first IPv4 address, and .254 of it as the next hop
	net=$(ip -4 -o addr show dev "$lab" | awk '{ print $4; exit }')
	[ -n "$net" ] || die "$lab has no IPv4 address"
	hop=$(echo "${net%/*}" | awk -F. '{ print $1 "." $2 "." $3 ".254" }')
	ip neigh replace "$hop" lladdr "$NEXT_HOP_MAC" dev "$lab" nud permanent
	local dst
	for dst in 136.161.101.53 198.51.100.77 203.0.113.99; do
		ip route replace "$dst/32" via "$hop" dev "$lab"
	done
	log "ping 136.161.101.53, TCP SYN to 198.51.100.77:8443, UDP to 203.0.113.99:5353 (via $hop on $lab)"
	ping -c 1 -W 1 136.161.101.53 >/dev/null 2>&1 || true
	timeout 0.5 bash -c 'exec 3<>/dev/tcp/198.51.100.77/8443' 2>/dev/null || true
	bash -c 'echo xtrail-lab > /dev/udp/203.0.113.99/5353'
}

case "${1:-provision}" in
provision) provision ;;
traffic) traffic ;;
*) die "usage: $0 [provision | traffic]" ;;
esac
