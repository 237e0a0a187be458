# shellcheck shell=bash
# Shared by test/sandbox/fleet-{up,down,exec}.sh: names, addresses and helpers of the fleet sandbox.
# Sourced, not run.

SANDBOX_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$SANDBOX_DIR/.state"
FLEET="$STATE/fleet"                # host keys, configs, pid files, logs
FLEET_JSON="$STATE/fleet.json"
FLEET_DATA=/var/lib/bgf-fleet       # per-host /etc/nginx, /home/ec2-user, /var/lib/docker, /var/log/nginx
FLEET_RUN=/run/bgf                  # private tmpfs holding the persisted mount namespaces (h<i>.mnt)
BASTION_NS=bgf-bastion
BASTION_IP=10.203.0.2
ROOT_VETH_IP=10.203.0.1
BRIDGE_IP=10.204.0.1
FLEET_SUBNET=10.204.0.0/24
FLEET_REGISTRY="$BRIDGE_IP:5000"
FLEET_MAX=40

flog() { printf '[fleet] %s\n' "$*" >&2; }
fdie() {  # message [log file whose tail to show]
  printf '[fleet] ERROR: %s\n' "$1" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    printf '[fleet] --- last lines of %s ---\n' "$2" >&2
    tail -n 25 "$2" >&2
    printf '[fleet] ---\n' >&2
  fi
  exit 1
}

host_ns() { echo "bgf-h$1"; }
host_ip() { echo "10.204.0.$((10 + $1))"; }
host_port() { echo "$((8000 + $1))"; }
host_mnt() { echo "$FLEET_RUN/h$1.mnt"; }
host_uts() { echo "$FLEET_RUN/h$1.uts"; }

# "bgf-h2" | "h2" | "2" -> 2
host_index() {
  local n="${1#bgf-}"
  n="${n#h}"
  case "$n" in '' | *[!0-9]*) return 1 ;; esac
  echo "$((10#$n))"
}

mnt_ns_ok() {
  [ "$(findmnt -n -o FSTYPE "$(host_mnt "$1")" 2>/dev/null | head -n1)" = nsfs ] &&
    [ "$(findmnt -n -o FSTYPE "$(host_uts "$1")" 2>/dev/null | head -n1)" = nsfs ]
}
netns_ok() { [ -e "/run/netns/$1" ]; }

# Runs a command as root inside host i's network, mount and UTS namespaces.
in_host() {
  local i="$1"
  shift
  nsenter --mount="$(host_mnt "$i")" --uts="$(host_uts "$i")" --net="/run/netns/$(host_ns "$i")" -- "$@"
}
in_bastion() { nsenter --net="/run/netns/$BASTION_NS" -- "$@"; }

# pid from a pid file if that process is alive and its command line contains $2
live_pid() {  # pidfile marker
  local pid
  pid="$(cat "$1" 2>/dev/null || true)"
  case "$pid" in '' | *[!0-9]*) return 1 ;; esac
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" && echo "$pid"
}

# Pids of all processes in network namespace $1 (all of them were started by the fleet scripts).
pids_in_netns() {
  local ino p
  [ -e "/run/netns/$1" ] || return 0
  ino="$(stat -L -c %i "/run/netns/$1")"
  for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" = "$ino" ] && echo "${p#/proc/}"
  done
  return 0
}
# Pids of processes in cgroup parent /bgf-h<i> (the containers of host i's dockerd).
pids_in_host_cgroup() {
  grep -lE ":/bgf-h$1(/|$)" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 || true
}

# alive = exists and is not a zombie (PID 1 here may be slow to reap orphans)
is_alive() {
  local st
  st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  st="${st##*) }"
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}

kill_and_wait() {  # pid...
  local p alive
  [ "$#" -gt 0 ] || return 0
  kill "$@" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=
    for p in "$@"; do is_alive "$p" && alive=1; done
    [ -z "$alive" ] && return 0
    sleep 0.1
  done
  kill -9 "$@" 2>/dev/null || true
}

stop_pidfile() {  # pidfile marker
  local pid
  pid="$(live_pid "$1" "$2" || true)"
  [ -z "$pid" ] || kill_and_wait "$pid"
  rm -f "$1"
}

# Stops everything of host i and removes its namespaces and data (keeps its host key).
teardown_host() {
  local i="$1" ns f
  ns="$(host_ns "$i")"
  if mnt_ns_ok "$i" && netns_ok "$ns"; then
    # containers first, so dockerd/containerd stop cleanly
    in_host "$i" sh -c 'ids="$(docker ps -aq 2>/dev/null)"; [ -z "$ids" ] || docker rm -f $ids' >/dev/null 2>&1 || true
  fi
  stop_pidfile "$FLEET/h$i/forward.pid" tcp-forward.mjs
  stop_pidfile "$FLEET/h$i/dockerd.pid" dockerd
  # shellcheck disable=SC2046
  kill_and_wait $(pids_in_netns "$ns") $(pids_in_host_cgroup "$i")
  for f in "$(host_mnt "$i")" "$(host_uts "$i")"; do
    if [ -e "$f" ]; then
      umount "$f" 2>/dev/null || true
      rm -f "$f"
    fi
  done
  [ -e "/run/netns/$ns" ] && ip netns del "$ns"
  if netns_ok "$BASTION_NS"; then ip -n "$BASTION_NS" link del "bgf-h${i}p" 2>/dev/null || true; fi
  if [ -d "$FLEET_DATA/h$i" ]; then
    if findmnt -rn -o TARGET | grep -q "^$FLEET_DATA/h$i\(/\|$\)"; then
      flog "warning: something is mounted under $FLEET_DATA/h$i, not deleting it"
    else
      rm -rf "${FLEET_DATA:?}/h$i"
    fi
  fi
  rm -f "$FLEET/h$i"/*.pid "$FLEET/h$i/verified"
}

# Indexes of hosts that exist in any form (netns, mount ns, data dir, pid files).
existing_hosts() {
  local f
  {
    for f in /run/netns/bgf-h*; do [ -e "$f" ] && basename "$f" | sed 's/^bgf-h//'; done
    for f in "$FLEET_RUN"/h*.mnt; do [ -e "$f" ] && basename "$f" .mnt | sed 's/^h//'; done
    for f in "$FLEET_DATA"/h*; do [ -d "$f" ] && basename "$f" | sed 's/^h//'; done
    for f in "$FLEET"/h*/*.pid; do [ -e "$f" ] && basename "$(dirname "$f")" | sed 's/^h//'; done
  } | grep -E '^[0-9]+$' | sort -n -u || true
}
