#!/usr/bin/env bash
# IMDSv2 for every fleet host (run as root once test/sandbox/fleet-up.sh has built the fleet; fleet-up.sh calls it
# last). As on EC2 the service is off the host at the link-local 169.254.169.254:80 and tells instances apart by
# the caller's address: 169.254.169.254/32 sits on the bastion netns' lo with test/sandbox/imds-server.mjs bound to
# it there, and each host netns routes 169.254.169.254 via the bastion's bridge address 10.204.0.1 (a local address
# of the bastion, so nothing is forwarded: the bastion stays no router). Not on the host itself: each host's nginx
# listens on *:80, which no other socket on port 80 of that netns may overlap.
# bgf-hN gets instance id i-0f1ee7<N as 11 hex digits> (bgf-h1 -> i-0f1ee700000000001), local-ipv4 10.204.0.(10+N).
# Pid and log: test/sandbox/.state/fleet/bastion/imds.{pid,log}.
#
# Idempotent and harmless to a running fleet: if every host gets the right answers nothing is restarted; it adds
# only the address, the routes and its own server. fleet-down.sh stops it (and drops the namespaces anyway).
set -euo pipefail
# shellcheck source=fleet-lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fleet-lib.sh"
[ "$(id -u)" = 0 ] || fdie "must run as root"
IMDS_IP=169.254.169.254
SERVER="$SANDBOX_DIR/imds-server.mjs"
B="$FLEET/bastion"
NODE="$(command -v node)"
netns_ok "$BASTION_NS" || fdie "the bastion is not up: run test/sandbox/fleet-up.sh"
mkdir -p "$B"

instance_id() { printf 'i-0f1ee7%011x' "$1"; }

# what a client on host i gets: "<instance-id> <local-ipv4> <status of a GET without a token>"
probe() {
  nsenter --net="/run/netns/$(host_ns "$1")" -- sh -c '
    tok="$(curl -s -m 2 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 30" "http://$1/latest/api/token")" || exit 0
    id="$(curl -s -m 2 -H "X-aws-ec2-metadata-token: $tok" "http://$1/latest/meta-data/instance-id")"
    ip="$(curl -s -m 2 -H "X-aws-ec2-metadata-token: $tok" "http://$1/latest/meta-data/local-ipv4")"
    noauth="$(curl -s -m 2 -o /dev/null -w "%{http_code}" "http://$1/latest/meta-data/instance-id")"
    echo "$id $ip $noauth"' sh "$IMDS_IP" 2>/dev/null || true
}

hosts=()
for i in $(existing_hosts); do netns_ok "$(host_ns "$i")" && hosts+=("$i"); done

ip -n "$BASTION_NS" addr replace "$IMDS_IP/32" dev lo
for i in "${hosts[@]}"; do ip -n "$(host_ns "$i")" route replace "$IMDS_IP/32" via "$BRIDGE_IP" dev eth0; done

all_ok() {
  local i
  for i in "${hosts[@]}"; do [ "$(probe "$i")" = "$(instance_id "$i") $(host_ip "$i") 401" ] || return 1; done
}
if ! live_pid "$B/imds.pid" imds-server.mjs >/dev/null || ! all_ok; then
  stop_pidfile "$B/imds.pid" imds-server.mjs
  flog "starting IMDSv2 on $IMDS_IP:80 in $BASTION_NS (log: $B/imds.log)"
  setsid nohup nsenter --net="/run/netns/$BASTION_NS" -- "$NODE" "$SERVER" "$IMDS_IP" "$B/imds.pid" \
    >>"$B/imds.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do all_ok && break; sleep 0.1; done
  for i in "${hosts[@]}"; do
    got="$(probe "$i")"
    want="$(instance_id "$i") $(host_ip "$i") 401"
    [ "$got" = "$want" ] || fdie "bgf-h$i: IMDS at $IMDS_IP:80 answers '$got', want '$want'" "$B/imds.log"
  done
fi
echo "imds up at $IMDS_IP:80 for ${#hosts[@]} fleet host(s)"
