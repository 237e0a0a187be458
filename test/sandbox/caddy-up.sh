#!/usr/bin/env bash
# The sandbox's Caddy for `traffic: caddy` (issue #21), run by up.sh after the rest (it touches nothing else: no
# other service is restarted). Idempotent; safe to run by hand (as root):
#   - installs Debian's caddy package (2.6.2 on Debian 12) if missing; a packaged caddy.service that a systemd host
#     started on install (:80, admin localhost:2019) is stopped and disabled: this instance owns the admin port,
#   - one Caddy process run as the package's `caddy` user (no systemd here: like the sandbox's haproxy), started with
#     `caddy run --resume --config /etc/caddy/bluegreen-sandbox.json` (what the packaged caddy-api.service does:
#     the base config on first start, afterwards the config it autosaved after the last admin API change),
#     XDG dirs in /var/lib/bluegreen-caddy (autosave: config/caddy/autosave.json), pid /run/bluegreen-caddy/caddy.pid,
#     log .state/caddy/caddy.log,
#   - admin API on http://127.0.0.1:2019 (loopback TCP, no auth: any local user, ec2-user too, may call it; Caddy
#     accepts only the Host headers 127.0.0.1:2019, localhost:2019 and [::1]:2019 there),
#   - base config: server e2e-cd-web on 127.0.0.1:19620 routed as traffic: caddy expects (docs/traffic.md): to green
#     (127.0.0.1:19622) while the marker /var/lib/bluegreen/caddy/e2e-cd-web/green exists, else to blue (19621);
#     tests add their own apps the same way through the admin API (test/e2e/caddy-harness.ts: one server per app),
#   - /var/lib/bluegreen/caddy (caddy-switch-dir's default) owned by ec2-user, readable by Caddy.
# A running Caddy is left alone (with whatever the tests configured through the API) unless the base config in this
# file changed: then it is restarted from the new base config (the autosave is dropped).
# `caddy-up.sh restart` stops it and starts it again with --resume (the live colour must survive that).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1

SANDBOX_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$SANDBOX_DIR/.state"
CD="$STATE/caddy"
LOG="$CD/caddy.log"
CFG=/etc/caddy/bluegreen-sandbox.json
HOME_DIR=/var/lib/bluegreen-caddy
AUTOSAVE="$HOME_DIR/config/caddy/autosave.json"
RUN_DIR=/run/bluegreen-caddy
SWITCH_DIR=/var/lib/bluegreen/caddy
PIDFILE="$RUN_DIR/caddy.pid"
ADMIN=127.0.0.1:2019
APP=e2e-cd-web
FRONT_PORT=19620
BLUE_PORT=19621
GREEN_PORT=19622

log() { printf '[sandbox caddy] %s\n' "$*" >&2; }
die() { printf '[sandbox caddy] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

if ! command -v caddy >/dev/null 2>&1; then
  log "installing caddy"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends caddy >/dev/null
fi
# On a host with systemd the package starts its own caddy (Caddyfile, :80, admin localhost:2019): not ours.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for unit in caddy caddy-api; do
    if systemctl is-active --quiet "$unit" 2>/dev/null || systemctl is-enabled --quiet "$unit" 2>/dev/null; then
      log "stopping and disabling the packaged $unit.service"
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
fi
id caddy >/dev/null 2>&1 || die "the caddy package did not create the user caddy"

mkdir -p "$CD"
install -d -m 755 -o caddy -g caddy "$HOME_DIR"
install -d -m 755 -o caddy -g caddy "$RUN_DIR"
# traffic caddy's marker files (caddy-switch-dir): written by the SSH user, read by Caddy
install -d -m 755 -o ec2-user -g ec2-user "$SWITCH_DIR"
new_cfg="$(mktemp)"
cat >"$new_cfg" <<EOF
{
  "admin": { "listen": "$ADMIN" },
  "logging": { "logs": { "default": { "level": "INFO" } } },
  "apps": {
    "http": {
      "servers": {
        "$APP": {
          "listen": ["127.0.0.1:$FRONT_PORT"],
          "automatic_https": { "disable": true },
          "routes": [
            {
              "match": [{ "file": { "root": "$SWITCH_DIR/$APP", "try_files": ["/green"] } }],
              "handle": [{ "handler": "reverse_proxy", "upstreams": [{ "dial": "127.0.0.1:$GREEN_PORT" }] }],
              "terminal": true
            },
            { "handle": [{ "handler": "reverse_proxy", "upstreams": [{ "dial": "127.0.0.1:$BLUE_PORT" }] }] }
          ]
        }
      }
    }
  }
}
EOF
changed=
if ! cmp -s "$new_cfg" "$CFG"; then install -m 644 -o root -g root "$new_cfg" "$CFG"; changed=1; fi
rm -f "$new_cfg"
caddy validate --config "$CFG" >"$CD/validate.log" 2>&1 || { cat "$CD/validate.log" >&2; die "caddy config $CFG is invalid"; }

running_pid() {
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = caddy ] && echo "$pid"
}
admin_ok() { curl -fsS -m 3 -o /dev/null "http://$ADMIN/config/" 2>/dev/null; }
stop() {
  local pid
  pid="$(running_pid)" || return 0
  log "stopping caddy (pid $pid)"
  kill "$pid"
  # the default grace period is eternal: a client holding a connection open would keep it alive
  for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.05; done
  if [ -d "/proc/$pid" ]; then log "caddy (pid $pid) still running after 5 s: SIGKILL"; kill -9 "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$PIDFILE"
}
[ "${1:-}" = restart ] && stop
if [ -n "$changed" ]; then
  if running_pid >/dev/null; then log "base config changed"; stop; fi
  rm -f "$AUTOSAVE"
fi
if ! running_pid >/dev/null; then
  if port_listening "${ADMIN##*:}"; then die "port ${ADMIN##*:} is taken by something that is not this sandbox's caddy"; fi
  if port_listening "$FRONT_PORT"; then die "port $FRONT_PORT is taken"; fi
  log "starting caddy: admin http://$ADMIN, $APP on 127.0.0.1:$FRONT_PORT (log $LOG)"
  setsid nohup runuser -u caddy -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$HOME_DIR" \
    XDG_CONFIG_HOME="$HOME_DIR/config" XDG_DATA_HOME="$HOME_DIR/data" \
    caddy run --resume --config "$CFG" --pidfile "$PIDFILE" >>"$LOG" 2>&1 </dev/null &
  for _ in $(seq 1 100); do running_pid >/dev/null && admin_ok && break; sleep 0.05; done
  running_pid >/dev/null && admin_ok || { tail -n 20 "$LOG" >&2; die "caddy did not come up (admin http://$ADMIN)"; }
fi
admin_ok || die "caddy (pid $(running_pid)) runs but its admin API http://$ADMIN does not answer"
echo "sandbox caddy: pid $(running_pid), admin http://$ADMIN, $APP on 127.0.0.1:$FRONT_PORT"
