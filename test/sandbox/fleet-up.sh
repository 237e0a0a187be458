#!/usr/bin/env bash
# Multi-host sandbox for the fleet e2e tests (run as root, after test/sandbox/up.sh):  fleet-up.sh [N]   (default 3)
#
#   root ns (runner) --veth 10.203.0.1/30 <-> 10.203.0.2/30--  netns bgf-bastion
#                                                                 sshd 10.203.0.2:22 (ec2-user, TCP forwarding only)
#                                                                 tcp forwarders 10.203.0.2:800<i> -> 10.204.0.1<i>:80
#                                                                 bridge bgf-br0 10.204.0.1/24
#                                                                 docker-registry 10.204.0.1:5000 (same data + htpasswd as
#                                                                   the main registry 127.0.0.1:5000)
#                                                                 IMDSv2 169.254.169.254:80 for the hosts (imds-up.sh)
#   netns + private mount + UTS ns bgf-h<i> (i = 1..N, hostname bgf-h<i>), eth0 10.204.0.(10+i)/24 on bgf-br0:
#     own /run (tmpfs), /sys (this netns), /etc/hosts, /etc/nginx, /home/ec2-user, /var/lib/docker, /var/log/nginx
#     (from /var/lib/bgf-fleet/h<i>/), own dockerd (/run/docker.sock, cgroup parent /bgf-h<i>), nginx, sshd on :22.
#   The root ns has no route to 10.204.0.0/24 (an "unreachable" route makes connects fail at once): the runner
#   reaches the hosts only through the bastion (ssh -J) and their port 80 only through the forwarders.
#
# Idempotent: a second run checks everything end to end and starts only what is missing (a couple of seconds).
# Hosts above N are torn down. Writes test/sandbox/.state/fleet.json; host keys, configs and logs are in
# test/sandbox/.state/fleet/. test/sandbox/fleet-down.sh removes it all; fleet-exec.sh runs commands on a host.
set -euo pipefail
# shellcheck source=fleet-lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/fleet-lib.sh"

N="${1:-3}"
case "$N" in '' | *[!0-9]*) fdie "usage: fleet-up.sh [N]  (number of hosts, 1..$FLEET_MAX; got '$N')" ;; esac
N=$((10#$N))
[ "$N" -ge 1 ] && [ "$N" -le "$FLEET_MAX" ] || fdie "N must be 1..$FLEET_MAX, got $N"
[ "$(id -u)" = 0 ] || fdie "must run as root"
T0=$(date +%s%N)

# ---------------------------------------------------------------- preconditions (the main sandbox)
for f in id_ed25519 id_ed25519.pub id_ed25519_pass.pub registry.yml registry.htpasswd; do
  [ -s "$STATE/$f" ] || fdie "$STATE/$f is missing: run test/sandbox/up.sh first"
done
id ec2-user >/dev/null 2>&1 || fdie "user ec2-user is missing: run test/sandbox/up.sh first"
for c in nsenter unshare ip findmnt dockerd docker nginx /usr/sbin/sshd /usr/bin/docker-registry node curl ssh ssh-keygen; do
  command -v "$c" >/dev/null 2>&1 || fdie "$c is not installed: run test/sandbox/up.sh first"
done
mkdir -p "$FLEET" "$FLEET/bastion" "$FLEET_DATA"
chmod 700 "$FLEET"
FORWARDER="$SANDBOX_DIR/tcp-forward.mjs"
NODE="$(command -v node)"

# ---------------------------------------------------------------- a fleet built from another checkout
# Its pid files and host keys live in that checkout's .state/: tear it down by namespace and cgroup, then rebuild.
OWNER_FILE=/run/bgf-fleet.owner
# The owner is this checkout's state, not only its path: a fresh clone in the same folder has lost the pid files of
# the fleet a former clone there started, so it must tear that fleet down too.
[ -s "$FLEET/owner.id" ] || head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$FLEET/owner.id"
OWNER="$FLEET $(cat "$FLEET/owner.id")"
if { netns_ok "$BASTION_NS" || [ -n "$(existing_hosts)" ]; } && [ "$(cat "$OWNER_FILE" 2>/dev/null || true)" != "$OWNER" ]; then
  flog "a fleet built from another checkout ($(cat "$OWNER_FILE" 2>/dev/null || echo unknown)) is up: tearing it down"
  for i in $(existing_hosts); do teardown_host "$i"; done
  # shellcheck disable=SC2046
  kill_and_wait $(pids_in_netns "$BASTION_NS")
  if netns_ok "$BASTION_NS"; then ip netns del "$BASTION_NS"; fi
  ip link del bgf-rt 2>/dev/null || true
  rm -f "$FLEET"/bastion/*.pid "$FLEET"/bastion/sshd_config.running "$FLEET"/bastion/registry.hash "$FLEET"/h*/sshd_config.running
fi
echo "$OWNER" >"$OWNER_FILE"

# ---------------------------------------------------------------- hosts above N
for i in $(existing_hosts); do
  if [ "$i" -gt "$N" ]; then
    flog "tearing down bgf-h$i (fleet size is now $N)"
    teardown_host "$i"
  fi
done

# ---------------------------------------------------------------- network
netns_ok "$BASTION_NS" || { flog "creating netns $BASTION_NS"; ip netns add "$BASTION_NS"; }
if ! ip link show bgf-rt >/dev/null 2>&1 || ! ip -n "$BASTION_NS" link show bgf-bst >/dev/null 2>&1; then
  ip link del bgf-rt 2>/dev/null || true
  ip link add bgf-rt type veth peer name bgf-bst netns "$BASTION_NS"
fi
ip addr replace "$ROOT_VETH_IP/30" dev bgf-rt
ip link set bgf-rt up
ip -n "$BASTION_NS" link set lo up
ip -n "$BASTION_NS" addr replace "$BASTION_IP/30" dev bgf-bst
ip -n "$BASTION_NS" link set bgf-bst up
ip -n "$BASTION_NS" link show bgf-br0 >/dev/null 2>&1 || ip -n "$BASTION_NS" link add bgf-br0 type bridge
ip -n "$BASTION_NS" addr replace "$BRIDGE_IP/24" dev bgf-br0
ip -n "$BASTION_NS" link set bgf-br0 up
# the bastion is no router: nothing from the root ns reaches the hosts through it
in_bastion sh -c 'echo 0 >/proc/sys/net/ipv4/ip_forward'
# the root ns has no route to the hosts: an "unreachable" route makes a connect fail at once (EHOSTUNREACH)
# instead of wandering off to the default gateway and timing out
ip route replace unreachable "$FLEET_SUBNET"

for i in $(seq 1 "$N"); do
  ns="$(host_ns "$i")"
  netns_ok "$ns" || ip netns add "$ns"
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1 || ! ip -n "$BASTION_NS" link show "bgf-h${i}p" >/dev/null 2>&1; then
    ip -n "$ns" link del eth0 2>/dev/null || true
    ip -n "$BASTION_NS" link del "bgf-h${i}p" 2>/dev/null || true
    ip link add "bgf-h${i}p" netns "$BASTION_NS" type veth peer name eth0 netns "$ns"
  fi
  ip -n "$BASTION_NS" link set "bgf-h${i}p" master bgf-br0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$(host_ip "$i")/24" dev eth0
  ip -n "$ns" link set eth0 up
done

# ---------------------------------------------------------------- keys + known_hosts
[ -f "$FLEET/bastion/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C bgf-bastion -f "$FLEET/bastion/ssh_host_ed25519_key"
for i in $(seq 1 "$N"); do
  mkdir -p "$FLEET/h$i"
  [ -f "$FLEET/h$i/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "bgf-h$i" -f "$FLEET/h$i/ssh_host_ed25519_key"
done
chmod 600 "$FLEET"/*/ssh_host_ed25519_key
known_line() { printf '%s %s\n' "$1" "$(cut -d' ' -f1,2 "$2")"; }
{
  known_line "$BASTION_IP" "$FLEET/bastion/ssh_host_ed25519_key.pub"
  for i in $(seq 1 "$N"); do known_line "$(host_ip "$i")" "$FLEET/h$i/ssh_host_ed25519_key.pub"; done
} >"$FLEET/known_hosts.tmp"
mv -f "$FLEET/known_hosts.tmp" "$FLEET/known_hosts"
# ssh -J passes no -i/-o options to the jump connection, but it does pass -F: `ssh -F .state/fleet/ssh_config 10.204.0.11`
cat >"$FLEET/ssh_config.tmp" <<EOF
# generated by test/sandbox/fleet-up.sh: ssh -F $FLEET/ssh_config 10.204.0.11 (jumps via the bastion)
Host $BASTION_IP 10.204.0.*
  User ec2-user
  IdentityFile $STATE/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $FLEET/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
  LogLevel ERROR
Host 10.204.0.*
  ProxyJump ec2-user@$BASTION_IP
EOF
mv -f "$FLEET/ssh_config.tmp" "$FLEET/ssh_config"

AUTHORIZED_KEYS="$(cat "$STATE/id_ed25519.pub" "$STATE/id_ed25519_pass.pub")"

sshd_config() {  # listen hostkey pidfile extra...
  cat <<EOF
# generated by test/sandbox/fleet-up.sh
ListenAddress $1
HostKey $2
PidFile $3
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
X11Forwarding no
PrintMotd no
MaxSessions 30
MaxStartups 100:30:200
MaxAuthTries 10
LoginGraceTime 30
LogLevel VERBOSE
EOF
  shift 3
  printf '%s\n' "$@"
}

# ---------------------------------------------------------------- bastion: registry, sshd
REG_CFG="$FLEET/bastion/registry.yml"
# Serve the storage of the registry that runs on 127.0.0.1:5000, which up.sh keeps (possibly one started from
# another checkout, whose data holds the images): its config is the last argument of `docker-registry serve`.
MAIN_REG_CFG="$STATE/registry.yml"
main_reg_pid="$(ss -Hltnp 'sport = :5000' 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2 || true)"
if [ -n "$main_reg_pid" ]; then
  c="$(tr '\0' '\n' <"/proc/$main_reg_pid/cmdline" 2>/dev/null | tail -n 1)"
  [ -r "$c" ] && MAIN_REG_CFG="$c"
fi
sed "s|^\(  addr:\).*|\1 $FLEET_REGISTRY|" "$MAIN_REG_CFG" >"$REG_CFG.new"
grep -q "^  addr: $FLEET_REGISTRY\$" "$REG_CFG.new" || fdie "cannot derive the bastion registry config from $MAIN_REG_CFG"
reg_hash="$(cat "$REG_CFG.new" "$(sed -n 's/^ *path: *//p' "$MAIN_REG_CFG" | head -n 1)" | sha256sum | cut -c1-16)"
mv -f "$REG_CFG.new" "$REG_CFG"
registry_code() { in_bastion curl -s -o /dev/null -m 3 -w '%{http_code}' "http://$FLEET_REGISTRY/v2/" 2>/dev/null || true; }
reg_pid="$(live_pid "$FLEET/bastion/registry.pid" "$REG_CFG" || true)"
if [ -n "$reg_pid" ] && [ "$(cat "$FLEET/bastion/registry.hash" 2>/dev/null || true)" != "$reg_hash" ]; then
  flog "restarting the bastion registry (config or htpasswd changed)"
  kill_and_wait "$reg_pid"
  reg_pid=
fi
if [ -z "$reg_pid" ] || [ "$(registry_code)" != 401 ]; then
  [ -z "$reg_pid" ] || kill_and_wait "$reg_pid"
  flog "starting docker-registry on $FLEET_REGISTRY in $BASTION_NS (log: $FLEET/bastion/registry.log)"
  setsid nohup nsenter --net="/run/netns/$BASTION_NS" -- /usr/bin/docker-registry serve "$REG_CFG" \
    >>"$FLEET/bastion/registry.log" 2>&1 </dev/null &
  echo $! >"$FLEET/bastion/registry.pid"
  echo "$reg_hash" >"$FLEET/bastion/registry.hash"
  for _ in $(seq 1 100); do [ "$(registry_code)" = 401 ] && break; sleep 0.1; done
  [ "$(registry_code)" = 401 ] || fdie "the bastion registry did not come up on $FLEET_REGISTRY (want 401 on /v2/)" "$FLEET/bastion/registry.log"
fi

sshd_config "$BASTION_IP:22" "$FLEET/bastion/ssh_host_ed25519_key" "$FLEET/bastion/sshd.pid" \
  'AllowTcpForwarding yes' 'AllowAgentForwarding no' 'GatewayPorts no' 'PermitTunnel no' >"$FLEET/bastion/sshd_config"
/usr/sbin/sshd -t -f "$FLEET/bastion/sshd_config" || fdie "bastion sshd config invalid"
bastion_sshd_ok() {
  live_pid "$FLEET/bastion/sshd.pid" "$FLEET/bastion/sshd_config" >/dev/null &&
    in_bastion ss -Hltn "sport = :22" | grep -qF "$BASTION_IP:22"
}
if ! cmp -s "$FLEET/bastion/sshd_config" "$FLEET/bastion/sshd_config.running" 2>/dev/null || ! bastion_sshd_ok; then
  stop_pidfile "$FLEET/bastion/sshd.pid" "$FLEET/bastion/sshd_config"
  flog "starting the bastion sshd on $BASTION_IP:22 (log: $FLEET/bastion/sshd.log)"
  mkdir -p /run/sshd
  in_bastion /usr/sbin/sshd -f "$FLEET/bastion/sshd_config" -E "$FLEET/bastion/sshd.log"
  for _ in $(seq 1 50); do bastion_sshd_ok && break; sleep 0.1; done
  bastion_sshd_ok || fdie "the bastion sshd is not listening on $BASTION_IP:22" "$FLEET/bastion/sshd.log"
  cp "$FLEET/bastion/sshd_config" "$FLEET/bastion/sshd_config.running"
fi

# ---------------------------------------------------------------- hosts
# the persisted mount namespaces live on a private mount (unshare --mount=FILE requires that)
mkdir -p "$FLEET_RUN"
mountpoint -q "$FLEET_RUN" || mount -t tmpfs -o size=1m,mode=700 bgf-ns "$FLEET_RUN"
mount --make-private "$FLEET_RUN"

# Writes stdin to $1 only if the content differs (atomically); returns 0 if it changed.
write_if_changed() {
  local tmp="$1.tmp.$$"
  cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$1"
}

# Creates host i's persistent private mount namespace with its own /run, /sys, /etc/nginx, home, docker data.
create_host_mounts() {
  local i="$1" d="$FLEET_DATA/h$1" mnt
  mnt="$(host_mnt "$i")"
  # stale leftovers of an earlier generation of this host (its mount ns is gone)
  # shellcheck disable=SC2046
  kill_and_wait $(pids_in_netns "$(host_ns "$i")") $(pids_in_host_cgroup "$i")
  rm -f "$FLEET/h$i"/*.pid "$FLEET/h$i/verified"
  mkdir -p "$d/docker" "$d/log-nginx"
  if [ ! -d "$d/etc-nginx" ]; then
    cp -a /etc/nginx "$d/etc-nginx.tmp"
    rm -f "$d/etc-nginx.tmp"/bluegreen/*.conf "$d/etc-nginx.tmp"/bluegreen-sites/*.conf
    mv "$d/etc-nginx.tmp" "$d/etc-nginx"
  fi
  install -d -m 755 -o ec2-user -g ec2-user "$d/home"
  umount "$mnt" "$(host_uts "$i")" 2>/dev/null || true
  touch "$mnt" "$(host_uts "$i")"
  { cat /etc/hosts; printf '%s %s\n' "$(host_ip "$i")" "$(host_ns "$i")"; } >"$d/hosts"
  unshare --mount="$mnt" --uts="$(host_uts "$i")" --propagation private hostname "$(host_ns "$i")"
  in_host "$i" sh -ec '
    d="$1"
    mount -t tmpfs -o mode=755,size=256m bgf-run /run
    mkdir -p /run/sshd /run/lock /run/bgf-cgroup
    chmod 755 /run/sshd
    # /tmp stays shared: the checkout (and so .state/) may live under /tmp
    mount --bind "$d/etc-nginx" /etc/nginx
    mount --bind "$d/home" /home/ec2-user
    mount --bind "$d/docker" /var/lib/docker
    mount --bind "$d/log-nginx" /var/log/nginx
    mount --bind "$d/hosts" /etc/hosts
    # /sys of this network namespace (/sys/class/net shows eth0 + docker0 of this host), same cgroup tree
    mount --rbind /sys/fs/cgroup /run/bgf-cgroup
    mount -t sysfs sysfs /sys
    mount --move /run/bgf-cgroup /sys/fs/cgroup
    rmdir /run/bgf-cgroup
  ' sh "$d" || fdie "setting up the mounts of bgf-h$i failed"
}

# Brings host i up (everything that is not running); run in the background, one per host.
ensure_host() {
  local i="$1" ns ip d="$FLEET_DATA/h$1" h="$FLEET/h$1" pid status
  ns="$(host_ns "$i")"
  ip="$(host_ip "$i")"
  if ! mnt_ns_ok "$i" || [ "$(in_host "$i" findmnt -n -o SOURCE /run 2>/dev/null || true)" != bgf-run ]; then
    flog "bgf-h$i: creating mount namespace"
    create_host_mounts "$i"
  fi

  # per-host files (cheap, every run)
  install -d -m 755 -o ec2-user -g ec2-user "$d/home" "$d/etc-nginx/bluegreen"
  install -d -m 755 -o root -g root "$d/etc-nginx/bluegreen-sites"
  install -d -m 700 -o ec2-user -g ec2-user "$d/home/.ssh"
  printf '%s\n' "$AUTHORIZED_KEYS" | write_if_changed "$d/home/.ssh/authorized_keys" || true
  chown ec2-user:ec2-user "$d/home/.ssh/authorized_keys"
  chmod 600 "$d/home/.ssh/authorized_keys"
  local nginx_changed=
  write_if_changed "$d/etc-nginx/conf.d/bgf-fleet-host.conf" <<EOF && nginx_changed=1
# generated by test/sandbox/fleet-up.sh: identifies the host (GET /__fleet_host). It is the default server on
# port 80 until an app's site claims default_server (test/e2e/fleet-harness.ts prepareFleetApp).
server {
  listen 80;
  server_name bgf-fleet-host;
  location = /__fleet_host { default_type text/plain; return 200 "$ns\n"; }
  location / { default_type text/plain; return 404 "no app on $ns\n"; }
}
EOF
  sshd_config "$ip:22" "$h/ssh_host_ed25519_key" "$h/sshd.pid" 'AllowTcpForwarding yes' \
    'Subsystem sftp /usr/lib/openssh/sftp-server' >"$h/sshd_config"

  status="$(in_host "$i" sh -c '
    curl -s -m 2 --unix-socket /run/docker.sock http://docker/_ping 2>/dev/null | grep -q OK && echo docker
    p="$(cat /run/nginx.pid 2>/dev/null)"; [ -n "$p" ] && [ "$(cat /proc/$p/comm 2>/dev/null)" = nginx ] && echo nginx
    ss -Hltn "sport = :22" | grep -q . && echo sshd
    true' 2>/dev/null || true)"

  # dockerd
  if ! grep -qx docker <<<"$status"; then
    stop_pidfile "$h/dockerd.pid" dockerd
    flog "bgf-h$i: starting dockerd (log: $h/dockerd.log)"
    setsid nohup nsenter --mount="$(host_mnt "$i")" --uts="$(host_uts "$i")" --net="/run/netns/$ns" -- dockerd \
      --pidfile "$h/dockerd.pid" --group docker --insecure-registry "$FLEET_REGISTRY" \
      --iptables=false --ip-masq=false --cgroup-parent "/$ns" >>"$h/dockerd.log" 2>&1 </dev/null &
  fi
  # nginx
  if ! in_host "$i" nginx -t -q 2>"$h/nginx-t.err"; then
    flog "bgf-h$i: nginx -t failed ($(tr '\n' ' ' <"$h/nginx-t.err")); clearing test leftovers"
    rm -f "$d/etc-nginx"/bluegreen/*.conf "$d/etc-nginx"/bluegreen-sites/*.conf
    in_host "$i" nginx -t -q 2>"$h/nginx-t.err" || fdie "bgf-h$i: nginx config is invalid" "$h/nginx-t.err"
  fi
  if grep -qx nginx <<<"$status"; then
    if [ -n "$nginx_changed" ]; then
      in_host "$i" nginx -s reload 2>"$h/nginx-reload.err" || fdie "bgf-h$i: nginx -s reload failed" "$h/nginx-reload.err"
    fi
  else
    flog "bgf-h$i: starting nginx"
    in_host "$i" sh -c 'rm -f /run/nginx.pid; nginx' 2>"$h/nginx-start.err" \
      || fdie "bgf-h$i: nginx did not start" "$h/nginx-start.err"
  fi
  # sshd
  if ! grep -qx sshd <<<"$status" || ! cmp -s "$h/sshd_config" "$h/sshd_config.running" 2>/dev/null; then
    stop_pidfile "$h/sshd.pid" "$h/sshd_config"
    /usr/sbin/sshd -t -f "$h/sshd_config" || fdie "bgf-h$i: sshd config invalid"
    flog "bgf-h$i: starting sshd on $ip:22 (log: $h/sshd.log)"
    in_host "$i" /usr/sbin/sshd -f "$h/sshd_config" -E "$h/sshd.log"
    cp "$h/sshd_config" "$h/sshd_config.running"
  fi
  # forwarder 10.203.0.2:800i -> host:80 (in the bastion)
  if ! live_pid "$h/forward.pid" tcp-forward.mjs >/dev/null; then
    rm -f "$h/forward.pid"
    flog "bgf-h$i: starting forwarder $BASTION_IP:$(host_port "$i") -> $ip:80 (log: $h/forward.log)"
    setsid nohup nsenter --net="/run/netns/$BASTION_NS" -- "$NODE" "$FORWARDER" "$BASTION_IP:$(host_port "$i")" "$ip:80" \
      "$h/forward.pid" >>"$h/forward.log" 2>&1 </dev/null &
  fi

  # wait for everything, then check it end to end
  for _ in $(seq 1 150); do
    in_host "$i" curl -s -m 2 --unix-socket /run/docker.sock http://docker/_ping 2>/dev/null | grep -q OK && break
    sleep 0.2
  done
  in_host "$i" curl -s -m 2 --unix-socket /run/docker.sock http://docker/_ping 2>/dev/null | grep -q OK \
    || fdie "bgf-h$i: dockerd did not become ready" "$h/dockerd.log"
  for _ in $(seq 1 50); do [ -s "$h/forward.pid" ] && break; sleep 0.1; done
  [ -s "$h/forward.pid" ] || fdie "bgf-h$i: the forwarder did not start" "$h/forward.log"

  local got=
  for _ in $(seq 1 30); do
    got="$(curl -s -m 3 "http://$BASTION_IP:$(host_port "$i")/__fleet_host" 2>/dev/null || true)"
    [ "$got" = "$ns" ] && break
    sleep 0.1
  done
  [ "$got" = "$ns" ] || fdie "bgf-h$i: GET http://$BASTION_IP:$(host_port "$i")/__fleet_host answered '$got', want '$ns' (forwarder -> nginx)" "$h/forward.log"

  local out
  out="$(ssh -F "$FLEET/ssh_config" "ec2-user@$ip" \
    'echo "$(id -un)"; docker info --format "{{.Name}} {{.DockerRootDir}}" >/dev/null && echo docker-ok; sudo -n /usr/sbin/nginx -t -q && echo nginx-ok' \
    </dev/null 2>"$h/ssh-check.err" || true)"
  [ "$out" = $'ec2-user\ndocker-ok\nnginx-ok' ] || {
    cat "$h/ssh-check.err" >&2
    fdie "bgf-h$i: ssh -J ec2-user@$BASTION_IP ec2-user@$ip (docker, sudo nginx -t) failed: $(tr '\n' ' ' <<<"$out")" "$h/sshd.log"
  }

  # once per dockerd: a real pull from the bastion registry and a published port (userland proxy) that answers
  pid="$(live_pid "$h/dockerd.pid" dockerd || true)"
  if [ "$(cat "$h/verified" 2>/dev/null || true)" != "$pid" ]; then
    in_host "$i" sh -c '
      set -e
      reg="$1"; cfg="$(mktemp -d)"; trap "rm -rf $cfg" EXIT
      printf %s ci-registry-pass | docker --config "$cfg" login "$reg" -u ci --password-stdin >/dev/null
      docker --config "$cfg" pull -q "$reg/demo:v1" >/dev/null
      docker rm -f bgf-probe >/dev/null 2>&1 || true
      docker run -d --name bgf-probe -p 127.0.0.1:18999:8080 "$reg/demo:v1" >/dev/null
      ok=
      for _ in $(seq 1 50); do
        [ "$(curl -s -m 2 http://127.0.0.1:18999/ || true)" = v1 ] && { ok=1; break; }
        sleep 0.1
      done
      docker rm -f bgf-probe >/dev/null
      docker rmi "$reg/demo:v1" >/dev/null
      [ -n "$ok" ] || { echo "published port 127.0.0.1:18999 does not answer" >&2; exit 1; }
    ' sh "$FLEET_REGISTRY" >"$h/verify.log" 2>&1 \
      || fdie "bgf-h$i: pulling $FLEET_REGISTRY/demo:v1 and running it with -p 127.0.0.1:18999:8080 failed" "$h/verify.log"
    echo "$pid" >"$h/verified"
  fi
}

pids=()
for i in $(seq 1 "$N"); do
  ensure_host "$i" 2>"$FLEET/h$i/up.err" &
  pids+=($!)
done
failed=
for k in "${!pids[@]}"; do
  i=$((k + 1))
  if ! wait "${pids[$k]}"; then failed+=" bgf-h$i"; fi
  cat "$FLEET/h$i/up.err" >&2
done
[ -z "$failed" ] || fdie "hosts failed to come up:$failed (details above; logs in $FLEET/h<i>/)"

# ---------------------------------------------------------------- fleet.json
{
  printf '{\n'
  printf '  "bastion": {"host": "%s", "port": 22, "user": "ec2-user", "knownHosts": "%s"},\n' \
    "$BASTION_IP" "$(known_line "$BASTION_IP" "$FLEET/bastion/ssh_host_ed25519_key.pub")"
  printf '  "registry": "%s",\n' "$FLEET_REGISTRY"
  printf '  "privateKeyPath": "%s",\n' "$STATE/id_ed25519"
  printf '  "knownHostsPath": "%s",\n' "$FLEET/known_hosts"
  printf '  "sshConfigPath": "%s",\n' "$FLEET/ssh_config"
  printf '  "hosts": [\n'
  for i in $(seq 1 "$N"); do
    printf '    {"name": "%s", "host": "%s", "port": 22, "user": "ec2-user", "knownHosts": "%s", "httpUrl": "http://%s:%s"}%s\n' \
      "$(host_ns "$i")" "$(host_ip "$i")" "$(known_line "$(host_ip "$i")" "$FLEET/h$i/ssh_host_ed25519_key.pub")" \
      "$BASTION_IP" "$(host_port "$i")" "$([ "$i" -lt "$N" ] && echo , || true)"
  done
  printf '  ]\n}\n'
} >"$FLEET_JSON.tmp"
"$NODE" -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$FLEET_JSON.tmp" || fdie "generated fleet.json is not valid JSON"
mv -f "$FLEET_JSON.tmp" "$FLEET_JSON"

bash "$SANDBOX_DIR/imds-up.sh"  # IMDSv2 for the hosts at 169.254.169.254 (served from the bastion)
echo "fleet up: $N hosts behind bastion ec2-user@$BASTION_IP:22 (ssh -J), registry $FLEET_REGISTRY, $FLEET_JSON ($(( ($(date +%s%N) - T0) / 1000000 )) ms)"
