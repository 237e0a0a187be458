#!/usr/bin/env bash
# The naive deploy this action replaces, as a reference for `npm run bench`: what people paste into
# appleboy/ssh-action. ONE ssh session (system ssh client, strict host-key checking) that logs in to the registry
# (throwaway DOCKER_CONFIG), pulls, stops + removes the old container, runs the new one on the same public port,
# polls its health with curl on the host every second, and on failure starts the old image again.
#
# Usage (all settings from the environment):
#   SSH_HOST=127.0.0.1 SSH_PORT=2222 SSH_USER=ec2-user SSH_KEY=path SSH_KNOWN_HOSTS=path \
#   REGISTRY=127.0.0.1:5000 REGISTRY_USER=ci REGISTRY_PASSWORD=... \
#   APP=backend IMAGE=127.0.0.1:5000/demo:v2 PUBLIC_PORT=8080 [CONTAINER_PORT=8080] [HEALTH_PATH=/health] \
#   [HEALTH_TRIES=30] [VOLUME=host-path:container-path[:ro]] bash bench/naive-deploy.sh
# Prints "@@t <event>=<epoch ms>" lines (taken on the host) for the benchmark; exit 0 = deployed, 1 = rolled back/failed.
set -euo pipefail

: "${SSH_HOST:?}" "${SSH_PORT:=22}" "${SSH_USER:=ec2-user}" "${SSH_KEY:?}" "${SSH_KNOWN_HOSTS:?}"
: "${REGISTRY:?}" "${REGISTRY_USER:?}" "${REGISTRY_PASSWORD:?}" "${APP:?}" "${IMAGE:?}" "${PUBLIC_PORT:?}"
: "${CONTAINER_PORT:=8080}" "${HEALTH_PATH:=/health}" "${HEALTH_TRIES:=30}" "${VOLUME:=}"

# The values go first (quoted), then a constant script body; both on ssh's stdin, like a heredoc script.
{
  for v in REGISTRY REGISTRY_USER REGISTRY_PASSWORD APP IMAGE PUBLIC_PORT CONTAINER_PORT HEALTH_PATH HEALTH_TRIES VOLUME; do
    printf '%s=%q\n' "$v" "${!v}"
  done
  cat <<'REMOTE'
set -eu
t() { echo "@@t $1=$(date +%s%3N)"; }
t begin
export DOCKER_CONFIG="$(mktemp -d)"
trap 'rm -rf "$DOCKER_CONFIG"' EXIT
echo "$REGISTRY_PASSWORD" | docker login "$REGISTRY" -u "$REGISTRY_USER" --password-stdin >/dev/null
t pull_start
docker pull -q "$IMAGE" >/dev/null
t pull_end

OLD_IMAGE="$(docker inspect -f '{{.Config.Image}}' "$APP" 2>/dev/null || true)"
t stop
docker stop "$APP" >/dev/null 2>&1 || true
docker rm "$APP" >/dev/null 2>&1 || true
t run
docker run -d --name "$APP" --restart unless-stopped -p "$PUBLIC_PORT:$CONTAINER_PORT" ${VOLUME:+--volume "$VOLUME"} "$IMAGE" >/dev/null

for i in $(seq 1 "$HEALTH_TRIES"); do
  if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PUBLIC_PORT$HEALTH_PATH"; then
    t healthy
    echo "deployed $IMAGE"
    exit 0
  fi
  sleep 1
done

echo "health check failed, rolling back to ${OLD_IMAGE:-nothing}" >&2
docker logs --tail 20 "$APP" >&2 || true
docker rm -f "$APP" >/dev/null 2>&1 || true
if [ -n "$OLD_IMAGE" ]; then
  docker run -d --name "$APP" --restart unless-stopped -p "$PUBLIC_PORT:$CONTAINER_PORT" ${VOLUME:+--volume "$VOLUME"} "$OLD_IMAGE" >/dev/null
  t rolled_back
fi
exit 1
REMOTE
} | ssh -T -i "$SSH_KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" -o ConnectTimeout=20 -p "$SSH_PORT" "$SSH_USER@$SSH_HOST" bash -s
