#!/usr/bin/env bash
# Tears down what test/sandbox/fleet-up.sh built: the hosts (containers, dockerd, nginx, sshd, their mount and
# network namespaces and data in /var/lib/bgf-fleet), the bastion (registry, sshd, forwarders, IMDS, netns, veth) and the
# root ns route. Keeps the host keys in test/sandbox/.state/fleet/ (so known_hosts stay the same). Idempotent.
# Never touches the main sandbox (sshd :2222, the root dockerd, docker0, nginx, the registry on 127.0.0.1:5000).
set -uo pipefail
# shellcheck source=fleet-lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fleet-lib.sh"
[ "$(id -u)" = 0 ] || fdie "must run as root"

for i in $(existing_hosts); do
  teardown_host "$i"
  echo "removed bgf-h$i"
done
for f in "$FLEET"/h*/forward.pid; do [ -e "$f" ] && stop_pidfile "$f" tcp-forward.mjs; done
stop_pidfile "$FLEET/bastion/sshd.pid" "$FLEET/bastion/sshd_config"
stop_pidfile "$FLEET/bastion/registry.pid" "$FLEET/bastion/registry.yml"
stop_pidfile "$FLEET/bastion/imds.pid" imds-server.mjs
rm -f "$FLEET/bastion/sshd_config.running" "$FLEET/bastion/registry.hash"
# anything else still in the bastion netns was started by fleet-up.sh (sshd sessions, ...)
# shellcheck disable=SC2046
kill_and_wait $(pids_in_netns "$BASTION_NS")
[ -e "/run/netns/$BASTION_NS" ] && ip netns del "$BASTION_NS" && echo "removed $BASTION_NS"
ip link del bgf-rt 2>/dev/null || true
ip route del unreachable "$FLEET_SUBNET" 2>/dev/null || true
if mountpoint -q "$FLEET_RUN"; then umount "$FLEET_RUN" 2>/dev/null || flog "warning: could not unmount $FLEET_RUN"; fi
rmdir "$FLEET_RUN" 2>/dev/null || true
rmdir "$FLEET_DATA" 2>/dev/null || true
rm -f "$FLEET_JSON" "$FLEET"/h*/sshd_config.running /run/bgf-fleet.owner
echo "fleet down"
