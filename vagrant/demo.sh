#!/usr/bin/env bash
# The demo across the lab's VMs, after `vagrant up` in this directory: the
# client pings 136.161.101.53, sends a TCP SYN to 198.51.100.77:8443 and a
# UDP datagram to 203.0.113.99 (all trails); its mirrored frames reach the
# sensor's monitor port; the events go over D4/TLS to the server, into Redis,
# through the exporter to the collector, whose log must show all three.
set -euo pipefail
cd "$(dirname "$0")"
vagrant ssh client -c "sudo /vagrant/scripts/provision/client.sh traffic"
vagrant ssh server -c "sudo /vagrant/scripts/provision/server.sh events 3 30"
