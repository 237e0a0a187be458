#!/usr/bin/env bash
# Local use only: stops what test/sandbox/up.sh started (sshd on :2222, the registry) and removes the
# containers the action created (label bluegreen.app). Leaves dockerd, nginx, packages, ec2-user and .state/ alone
# (so the next up.sh reuses keys and registry data). `down.sh --purge` also deletes .state/ and the test nginx files.
set -uo pipefail
STATE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.state"

stop_pidfile() {  # name pidfile
  local pid
  [ -s "$2" ] || return 0
  pid="$(cat "$2")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" && echo "stopped $1 (pid $pid)"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$2"
}
stop_pidfile sshd "$STATE/sshd.pid"
stop_pidfile registry "$STATE/registry.pid"
stop_pidfile haproxy "$STATE/haproxy/haproxy.pid"  # test/sandbox/haproxy-up.sh
stop_pidfile caddy /run/bluegreen-caddy/caddy.pid  # test/sandbox/caddy-up.sh

if docker info >/dev/null 2>&1; then
  ids="$(docker ps -aq --filter label=bluegreen.app)"
  if [ -n "$ids" ]; then docker rm -f $ids >/dev/null && echo "removed containers: $(echo $ids)"; fi
fi

if [ "${1:-}" = --purge ]; then
  rm -f /etc/nginx/bluegreen/*.conf /etc/nginx/bluegreen-sites/*.conf
  nginx -t -q 2>/dev/null && nginx -s reload 2>/dev/null
  rm -rf "$STATE" /home/ec2-user/.bluegreen
  rm -f /var/lib/bluegreen-caddy/config/caddy/autosave.json; rm -rf /var/lib/bluegreen/caddy  # Caddy config and marker files of the tests (caddy-up.sh)
  echo "purged $STATE"
fi
echo "sandbox down"
