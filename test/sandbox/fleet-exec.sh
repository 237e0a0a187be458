#!/usr/bin/env bash
# Runs a command as root on a fleet host, i.e. inside its network, mount and UTS namespaces (its own /etc/nginx,
# /home/ec2-user, /run/docker.sock, ...):   fleet-exec.sh bgf-h2 docker ps      (also: h2, 2)
#                                          fleet-exec.sh bastion ss -ltn        (the bastion's netns)
# stdin, stdout, stderr and the exit code are the command's.
set -euo pipefail
# shellcheck source=fleet-lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fleet-lib.sh"
[ "$#" -ge 2 ] || fdie "usage: fleet-exec.sh <bgf-hN|hN|N|bastion> <command> [args...]"
target="$1"
shift
if [ "$target" = bastion ] || [ "$target" = "$BASTION_NS" ]; then
  netns_ok "$BASTION_NS" || fdie "the bastion is not up: run test/sandbox/fleet-up.sh"
  exec nsenter --net="/run/netns/$BASTION_NS" -- "$@"
fi
i="$(host_index "$target")" || fdie "unknown fleet host '$target' (want bgf-hN, hN or N)"
mnt_ns_ok "$i" && netns_ok "$(host_ns "$i")" || fdie "fleet host bgf-h$i is not up: run test/sandbox/fleet-up.sh"
exec nsenter --mount="$(host_mnt "$i")" --uts="$(host_uts "$i")" --net="/run/netns/$(host_ns "$i")" -- "$@"
