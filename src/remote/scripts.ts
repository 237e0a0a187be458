/**
 * Remote scripts, built by pure functions. Each returns a constant POSIX sh body plus the
 * values it needs as positional arguments (quoted by the transport) or as stdin (secrets,
 * file contents) — no value is ever spliced into shell text.
 */
import { cmd } from './shell.js';

export interface RemoteScript {
  body: string;
  args: string[];
  stdin?: string;
}

/** Defines `D` as the docker command (e.g. `sudo -n docker`) for the script that follows. */
function dockerFn(dockerCommand: string[]): string {
  return `D() { ${cmd(...dockerCommand)} "$@"; }`;
}

const TRAPS = `trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM`;

/** Where the action keeps per-app state on the host, relative to the SSH user's home. */
export const stateDir = (app: string) => `.bluegreen/${app}`;

/**
 * How long a deploy lease lives without a renewal. The runner renews it every LEASE_HEARTBEAT_MS; a runner that
 * vanishes (VM gone, network partition: its connection goes silent and is never closed) loses it this long after
 * its last heartbeat, without waiting for sshd or TCP to notice the dead connection.
 */
export const LEASE_TTL_SECONDS = 30;
export const LEASE_HEARTBEAT_MS = 5000;

/**
 * Shell helpers for `$dir/lease`, one line `<token> <expires-epoch-s> <owner-json>` (token `<deployId>.<nonce>`).
 * Every read-modify-write happens in `under_lock`, which holds `$dir/lock` (the file older versions of the action
 * held for their whole run, so such a run still excludes us) only for the milliseconds the change takes: fd 9 is
 * open in the subshell alone, and nothing that waits (the keeper's heartbeat read) ever holds it.
 */
const LEASE_FNS = [
  'lease_read() { lt=""; le=0; lo=""; if [ -s "$dir/lease" ]; then read -r lt le lo < "$dir/lease"; fi; case "$le" in ""|*[!0-9]*) le=0 ;; esac; }',
  // written next to it and renamed: readers without the lock (status, lease_ok) never see half a line
  `lease_write() { printf '%s %s %s\\n' "$1" "$2" "$3" > "$dir/lease.new" && mv -f "$dir/lease.new" "$dir/lease"; }`,
  // under_lock WAIT CMD...: exit 99 when the lock file could not be taken within WAIT seconds
  'under_lock() { w=$1; shift; ( flock -w "$w" 9 || exit 99; "$@" ) 9>>"$dir/lock"; }'
].join('\n');

const LEASE_PREAMBLE = [
  // (a directory that is there costs no mkdir: every fork is on a step's critical path)
  'dir=".bluegreen/$1"; [ -d "$dir" ] || mkdir -p "$dir" || exit 70',
  `command -v flock >/dev/null 2>&1 || { echo "flock is not installed on the host (package util-linux)" >&2; exit 71; }`,
  LEASE_FNS
].join('\n');

/**
 * Takes the app's deploy lease. Waits (polling every 200 ms, up to `timeoutSeconds` by the host's clock) while
 * another deploy holds an unexpired lease, a deploy by an older version of the action holds the lock file, or the
 * previous deploy's background job still drains its old colour (it holds drain.lock, see finishScript). The lease is
 * free when there is none, it expired, or it carries our deployId: a run that reconnects takes its own lease back at
 * once. Prints `@@lock-wait <owner>` when waiting starts and whenever the holder changes, `@@drain-wait`,
 * `@@lock-timeout <owner>` (exit 75), then `@@locked <token>`.
 *
 * `keeper`: the channel then stays open as the lease's keeper. Each byte on stdin (a heartbeat, never a newline)
 * renews the lease for `ttlSeconds` (`@@renewed <expires>`); at EOF (the runner released it, or its connection was
 * closed) or when no heartbeat came within `ttlSeconds` (the runner went silent: `@@lease-expired`) it removes the
 * lease if it is still its own. `@@lease-lost <owner>` (exit 76): someone else holds it now.
 * Without `keeper` (a transport that keeps no channel open) the script exits after `@@locked`: renew with
 * renewLeaseScript, release with releaseLeaseScript.
 */
export function lockScript(
  app: string,
  token: string,
  owner: string,
  timeoutSeconds: number,
  opts: { keeper?: boolean; ttlSeconds?: number } = {}
): RemoteScript {
  return {
    body: [
      LEASE_PREAMBLE,
      'tok=$2; own=$3; ttl=$5; id=${tok%.*}',
      'try_take() {',
      '  now=$((nowms / 1000)); lease_read',
      '  if [ -n "$lt" ] && [ "${lt%.*}" != "$id" ] && [ "$le" -gt "$now" ]; then echo "held $lo"; return 0; fi',
      // Drain jobs are started only by a lease holder: when the lease still carries our deployId, nobody else held it
      // since we did, and a running job is our own.
      '  if [ "${lt%.*}" != "$id" ] && ! flock -n "$dir/drain.lock" true; then echo drain; return 0; fi',
      '  lease_write "$tok" "$((now + ttl))" "$own" || exit 70',
      '  echo took',
      '}',
      // milliseconds where date has %N (GNU, recent busybox), else whole seconds
      `ms() { t=$(date +%s%N 2>/dev/null); case "$t" in ""|*[!0-9]*) echo $(( $(date +%s) * 1000 )) ;; *) echo $(( t / 1000000 )) ;; esac; }`,
      // one clock read per round (try_take's "now" too): each is two forks. It is taken before the lock file's wait (at
      // most 1 s), so a lease may be written to end up to that much early and one just expired may wait a round more.
      'nowms=$(ms); deadline=$(( nowms + $4 * 1000 )); left=$(( $4 * 1000 )); last=""; why=""',
      'while :; do',
      '  w=1; [ "$left" -gt 0 ] || w=0',
      '  r=$(under_lock "$w" try_take); rc=$?',
      // the lock file itself is held: a deploy by an older version of the action (it holds it for its whole run)
      '  if [ $rc = 99 ]; then r="held $(cat "$dir/lock.owner" 2>/dev/null)"; elif [ $rc != 0 ]; then exit 70; fi',
      '  case "$r" in',
      '    took) break ;;',
      '    drain) [ "$last" = drain ] || echo "@@drain-wait"; why="the previous deploy is still draining its old colour" ;;',
      '    *) [ "$r" = "$last" ] || echo "@@lock-wait ${r#held }"; why=${r#held } ;;',
      '  esac',
      '  last=$r',
      '  [ "$left" -gt 0 ] || { echo "@@lock-timeout $why"; exit 75; }',
      '  sleep 0.2',
      '  nowms=$(ms); left=$(( deadline - nowms ))',
      'done',
      'release() { lease_read; if [ "$lt" = "$tok" ]; then rm -f "$dir/lease"; fi; }',
      // the runner left while we were waiting: do not keep a lease nobody renews
      `trap 'under_lock 10 release; exit 141' PIPE`,
      'echo "@@locked $tok"',
      '[ "$6" = keeper ] || exit 0',
      `trap 'under_lock 10 release; exit 129' HUP; trap 'under_lock 10 release; exit 130' INT; trap 'under_lock 10 release; exit 143' TERM`,
      'renew() { lease_read; if [ "$lt" != "$tok" ]; then echo "lost $lo"; return 0; fi; e=$(( $(date +%s) + ttl )); lease_write "$tok" "$e" "$own" || exit 70; echo "renewed $e"; }',
      // one heartbeat byte; dash has no `read -t`: coreutils timeout exits 124 when none came in time
      'if command -v timeout >/dev/null 2>&1; then beat() { timeout "$ttl" dd bs=1 count=1 2>/dev/null; }; else beat() { dd bs=1 count=1 2>/dev/null; }; fi',
      'while :; do',
      '  b=$(beat); rc=$?',
      '  if [ $rc = 124 ]; then under_lock 10 release; echo "@@lease-expired no heartbeat for $ttl s"; exit 0; fi',
      '  if [ -z "$b" ]; then under_lock 10 release; exit 0; fi',
      '  if ! r=$(under_lock 10 renew); then echo "@@renew-failed"; continue; fi',
      '  case "$r" in renewed*) echo "@@renewed ${r#renewed }" ;; *) echo "@@lease-lost ${r#lost }"; exit 76 ;; esac',
      'done'
    ].join('\n'),
    args: [
      app,
      token,
      owner,
      String(timeoutSeconds),
      String(opts.ttlSeconds ?? LEASE_TTL_SECONDS),
      opts.keeper === false ? 'once' : 'keeper'
    ]
  };
}

/** Renews our lease for `ttlSeconds` (without a keeper): `@@renewed <expires>`, or `@@lease-lost <owner>` and exit 76. */
export function renewLeaseScript(app: string, token: string, ttlSeconds = LEASE_TTL_SECONDS): RemoteScript {
  return {
    body: [
      LEASE_PREAMBLE,
      'tok=$2; ttl=$3',
      'renew() { lease_read; if [ "$lt" != "$tok" ]; then echo "lost $lo"; return 0; fi; e=$(( $(date +%s) + ttl )); lease_write "$tok" "$e" "$lo" || exit 70; echo "renewed $e"; }',
      'r=$(under_lock 10 renew) || { echo "the lock file $dir/lock stayed busy for 10 s" >&2; exit 70; }',
      'case "$r" in renewed*) echo "@@renewed ${r#renewed }" ;; *) echo "@@lease-lost ${r#lost }"; exit 76 ;; esac'
    ].join('\n'),
    args: [app, token, String(ttlSeconds)]
  };
}

/** Removes our lease (without a keeper, or after the keeper's channel was lost); a lease someone else holds stays. */
export function releaseLeaseScript(app: string, token: string): RemoteScript {
  return {
    body: [
      LEASE_PREAMBLE,
      'tok=$2',
      'release() { lease_read; if [ "$lt" = "$tok" ]; then rm -f "$dir/lease"; echo "@@released"; else echo "@@not-ours"; fi; }',
      'under_lock 10 release || { echo "the lock file $dir/lock stayed busy for 10 s" >&2; exit 70; }'
    ].join('\n'),
    args: [app, token]
  };
}

/**
 * Fencing for scripts that change what serves: `lease_ok "$app" "$deployId"` is true while the app's lease carries
 * that deployId and has not expired (read without the lock: the file is replaced atomically). A run whose lease
 * expired (it went silent, another deploy may have taken over) must not touch the host any more.
 */
export const LEASE_GUARD = [
  'lease_ok() {',
  '  _lf=".bluegreen/$1/lease"; [ -s "$_lf" ] || return 1',
  '  read -r _lt _le _lo < "$_lf" || [ -n "$_lt" ] || return 1',
  '  case "$_le" in ""|*[!0-9]*) return 1 ;; esac',
  '  [ "${_lt%.*}" = "$2" ] && [ "$_le" -gt "$(date +%s)" ]',
  '}'
].join('\n');

/** First line of a script wrapped by afterLease (the fake host and tests recognise it by this). */
export const AFTER_LEASE = '# after-lease';

/**
 * `s`, run only once this deploy holds the app's lease: sent together with the lock command (pipelined, so it costs
 * no round trip of its own), it waits on the host (polling, up to about `waitSeconds`) until lease_ok says the
 * lease carries `deployId`, then runs `s` with its own positional arguments. Exit 75 (`@@no-lease` on stderr) when the
 * lease never became ours.
 */
export function afterLease(app: string, deployId: string, waitSeconds: number, s: RemoteScript): RemoteScript {
  return {
    body: [
      AFTER_LEASE,
      LEASE_GUARD,
      // The lock is usually free and taken within milliseconds of this script's start, and every ms waited here is on
      // the deploy's critical path (pull, detect): every 5 ms for the first 0.5 s, every 50 ms until 2 s, then every
      // 200 ms like the lock command itself. A check is a read and one `date`.
      '_app=$1; _id=$2; _i=0; _max=$(( 130 + $3 * 5 )); shift 3',
      'until lease_ok "$_app" "$_id"; do',
      '  [ "$_i" -lt "$_max" ] || { echo "@@no-lease: this deploy did not get the lock" >&2; exit 75; }',
      '  _i=$((_i + 1)); if [ "$_i" -le 100 ]; then _s=0.005; elif [ "$_i" -le 130 ]; then _s=0.05; else _s=0.2; fi',
      '  sleep "$_s" 2>/dev/null || sleep 1',
      'done',
      s.body
    ].join('\n'),
    args: [app, deployId, String(Math.ceil(waitSeconds)), ...s.args],
    stdin: s.stdin
  };
}

/**
 * A throwaway file or directory for secrets in $TMPDIR, named `<prefix>.<pid of this script>.XXXXXX`, its path in
 * the shell variable `secret_tmp`. The script removes it on any exit it sees; one killed hard (SIGKILL, the OOM killer) cannot,
 * so every script that makes one first removes this user's ones whose script is gone: a rerun leaves no credentials
 * behind. `-O`: only what this user owns; `kill -0` fails for a pid that no longer runs (or runs as another user: it
 * was reused, ours is gone).
 */
export function secretTempLines(prefix: 'bluegreen-login' | 'bluegreen-env', kind: 'dir' | 'file'): string[] {
  return [
    `for _s in "\${TMPDIR:-/tmp}"/${prefix}.[0-9]*.*; do`,
    '  [ -O "$_s" ] || continue; _p=${_s##*/}; _p=${_p#*.}; _p=${_p%%.*}',
    '  kill -0 "$_p" 2>/dev/null || rm -rf -- "$_s" || :',
    'done',
    `secret_tmp=$(mktemp ${kind === 'dir' ? '-d ' : ''}"\${TMPDIR:-/tmp}/${prefix}.$$.XXXXXX")`
  ];
}

export type LoginMode =
  | { kind: 'none' }
  | { kind: 'password'; registry: string; username: string; password: string }
  | { kind: 'ecr-on-host'; registry: string; region: string };

/** The key docker's config.json files a registry's credentials under (Docker Hub's is its v1 index URL, as `docker login` writes it). */
export function dockerAuthKey(registry: string): string {
  return ['', 'docker.io', 'index.docker.io', 'registry-1.docker.io'].includes(registry)
    ? 'https://index.docker.io/v1/'
    : registry;
}

/**
 * A DOCKER_CONFIG's config.json holding one registry's credentials: what `docker login` writes, without its process
 * start and its extra exchange with the registry on the pull's critical path (the pull itself presents them; the
 * registry refusing them fails the pull with "unauthorized"). A secret: sent on stdin only.
 */
export function dockerConfigJson(registry: string, username: string, password: string): string {
  return `${JSON.stringify({ auths: { [dockerAuthKey(registry)]: { auth: dockerAuthValue(username, password) } } })}\n`;
}

/** config.json's `auth`: base64 of `user:password`, as secret as the password (masked like it). */
export function dockerAuthValue(username: string, password: string): string {
  return Buffer.from(`${username}:${password}`).toString('base64');
}

/**
 * Registry login with a throwaway DOCKER_CONFIG (removed on any exit), pull, and the digests. With a password the
 * login is writing config.json from stdin (see dockerConfigJson); ecr-on-host runs `aws ecr get-login-password |
 * docker login` on the host. Prints `@@step login`, `@@step pull`, `@@digests` markers so the runner can time each part.
 */
export function pullScript(dockerCommand: string[], image: string, login: LoginMode): RemoteScript {
  const lines = ['set -e', dockerFn(dockerCommand), TRAPS, 'img=$1'];
  let cfg = '';
  if (login.kind !== 'none') {
    lines.push(
      ...secretTempLines('bluegreen-login', 'dir'),
      'cfg=$secret_tmp',
      `trap 'rm -rf "$cfg"' EXIT`,
      'echo "@@step login"'
    );
    if (login.kind === 'password') lines.push('cat > "$cfg/config.json"');
    else
      lines.push(
        'command -v aws >/dev/null 2>&1 || { echo "the AWS CLI (aws) is not installed on the host, which registry-auth ecr-on-host needs" >&2; exit 127; }',
        'aws ecr get-login-password --region "$3" | D --config "$cfg" login --username AWS --password-stdin "$2"'
      );
    cfg = '--config "$cfg" ';
  }
  lines.push(
    'echo "@@step pull"',
    `D ${cfg}pull "$img"`,
    'echo "@@digests"',
    `D image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$img"`
  );
  const args = [image];
  if (login.kind === 'ecr-on-host') args.push(login.registry, login.region);
  return {
    body: lines.join('\n'),
    args,
    stdin: login.kind === 'password' ? dockerConfigJson(login.registry, login.username, login.password) : undefined
  };
}

/** One JSON object per container with only what the deploy needs (never the env, which holds secrets). */
const INSPECT_FORMAT = `'{"id":{{json .Id}},"name":{{json .Name}},"state":{{json .State.Status}},"running":{{json .State.Running}},"restarts":{{.RestartCount}},"labels":{{json .Config.Labels}}}'`;

/**
 * `ids`: the app's ($1) containers, by label or by the names we use, from one docker call (docker's filters cannot
 * say "label or name"): each container's id, name and app label. Exit 3 when docker does not answer.
 */
const APP_CONTAINER_IDS: readonly string[] = [
  `l=$(D ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.Label "bluegreen.app"}}') || exit 3`,
  `ids=$(printf '%s\\n' "$l" | while read -r _id _n _a; do if [ "$_a" = "$1" ] || [ "$_n" = "$1-blue" ] || [ "$_n" = "$1-green" ]; then echo "$_id"; fi; done)`
];

/** Containers of the app (by label, or by the names we use), the upstream file and the recorded state. */
export function detectScript(dockerCommand: string[], app: string, upstreamFile: string): RemoteScript {
  return {
    body: [
      dockerFn(dockerCommand),
      ...APP_CONTAINER_IDS,
      'echo "@@containers"',
      // ids are docker's hex ids, word splitting is intended
      `if [ -n "$ids" ]; then D inspect --format ${INSPECT_FORMAT} $ids || exit 3; fi`,
      'echo "@@upstream"',
      'if [ -n "$2" ] && [ -f "$2" ]; then cat -- "$2"; echo; else echo "@@none"; fi',
      'echo "@@state"',
      'cat ".bluegreen/$1/state.json" 2>/dev/null || echo "@@none"'
    ].join('\n'),
    args: [app, upstreamFile]
  };
}

/**
 * Creates (and with `run`, starts) the candidate. Env values arrive on stdin into a 0600 file
 * that is removed on any exit; `docker run --env-file` reads it on the host.
 */
export function startScript(
  dockerCommand: string[],
  verb: 'run' | 'create',
  name: string,
  removeExisting: boolean,
  envFile: string,
  dockerArgs: string[]
): RemoteScript {
  return {
    body: [
      'set -e',
      dockerFn(dockerCommand),
      TRAPS,
      'name=$1; replace=$2; verb=$3; shift 3',
      // The kept standby of this colour steps aside (renamed, stopped) instead of being deleted, so a
      // failed deploy can put it back and the rollback target survives.
      'if [ "$replace" = 1 ]; then D rm -f "$name-replaced" >/dev/null 2>&1; D rename "$name" "$name-replaced"; D stop "$name-replaced" >/dev/null; fi',
      'umask 077',
      ...secretTempLines('bluegreen-env', 'file'),
      'envf=$secret_tmp',
      `trap 'rm -f "$envf"' EXIT`,
      'cat > "$envf"',
      'if [ "$verb" = run ]; then D run -d --name "$name" --env-file "$envf" "$@"; else D create --name "$name" --env-file "$envf" "$@"; fi'
    ].join('\n'),
    args: [name, removeExisting ? '1' : '0', verb, ...dockerArgs],
    stdin: envFile
  };
}

/** One line `status restartCount exitCode`, then (when it is not running cleanly) its last log lines. */
export function containerStatusScript(dockerCommand: string[], name: string, tailLines: number): RemoteScript {
  return {
    body: [
      dockerFn(dockerCommand),
      `s=$(D inspect --format '{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}' "$1" 2>&1) || { echo "missing 0 0"; echo "$s"; exit 0; }`,
      'echo "$s"',
      'case "$s" in "running 0 "*) ;; *) echo "@@logs"; D logs --tail "$2" "$1" 2>&1 ;; esac'
    ].join('\n'),
    args: [name, String(tailLines)]
  };
}

/** Last log lines of a container (stdout and stderr). */
export function logsScript(dockerCommand: string[], name: string, tailLines: number): RemoteScript {
  return {
    body: [dockerFn(dockerCommand), 'D logs --tail "$2" "$1" 2>&1'].join('\n'),
    args: [name, String(tailLines)]
  };
}

/** The one-line HTTP GET of httpProbeScript, for `bash -c` (args: port path timeout-seconds host). */
const DEV_TCP_PROBE =
  'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 7; printf "GET %s HTTP/1.0\\r\\nHost: %s\\r\\nUser-Agent: bluegreen-ec2-action\\r\\n\\r\\n" "$2" "$4" >&3; IFS= read -t "$3" -r line <&3 || { echo "no answer within $3 s" >&2; exit 8; }; printf "%s\\n" "$line"';

/**
 * The health step on the host itself, in one exchange: probes GET <path> on 127.0.0.1:<port> (curl, else bash's
 * /dev/tcp) one request at a time with `everySeconds` between them, and prints `@@healthy <status> <probes> <ms>` the
 * moment one answers 2xx, so the runner hears of it half a round trip later whatever its distance. The container's
 * state is read at the start and at most every 500 ms after a failed probe: `@@container <state> <restarts> <exit>`
 * (exit 3) when it is not running or restarted, `@@timeout <probes> <last answer>` (exit 4) after `timeoutMs`, each
 * followed by `@@logs` and the container's last log lines. `@@probe <n> <answer>` when a failed probe's answer changes.
 * `@@watch-unavailable` (exit 127): neither curl nor bash on the host (the runner probes itself then).
 */
export function healthWatchScript(
  dockerCommand: string[],
  name: string,
  port: number,
  path: string,
  host: string,
  everySeconds: number,
  timeoutMs: number,
  tailLines: number
): RemoteScript {
  return {
    body: [
      dockerFn(dockerCommand),
      'name=$1; port=$2; path=$3; host=$4; every=$5; limit=$6; tail=$7',
      `ms() { t=$(date +%s%N 2>/dev/null); case "$t" in ""|*[!0-9]*) echo $(( $(date +%s) * 1000 )) ;; *) echo $(( t / 1000000 )) ;; esac; }`,
      'if command -v curl >/dev/null 2>&1; then',
      `  probe() { curl -gsS -o /dev/null -w ' %{http_code}' --max-time "$1" -H "Host: $host" -A bluegreen-ec2-action "http://127.0.0.1:$port$path" 2>&1; }`,
      'elif command -v bash >/dev/null 2>&1; then',
      `  probe() { l=$(${cmd('bash', '-c', DEV_TCP_PROBE, 'bash')} "$port" "$path" "$1" "$host" 2>&1); case "$l" in HTTP/*) set -- $l; echo " $2" ;; *) echo "$l" ;; esac; }`,
      'else echo "@@watch-unavailable"; exit 127; fi',
      // the last log lines after a marker line, then the exit code
      'logs() { echo "@@logs"; D logs --tail "$tail" "$name" 2>&1; exit "$1"; }',
      `check() { s=$(D inspect --format '{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}' "$name" 2>/dev/null) || { echo "@@container missing 0 0"; exit 3; }; case "$s" in "running 0 "*) ;; *) echo "@@container $s"; logs 3 ;; esac; }`,
      'start=$(ms); n=0; checked=$start; prev=""; check',
      'while :; do',
      '  n=$((n + 1)); left=$(( (limit - ($(ms) - start)) / 1000 ))',
      '  t=1; [ $n -le 3 ] || t=5; [ $left -ge $t ] || t=$left; [ $t -ge 1 ] || t=1',
      '  out=$(probe $t); code=${out##* }',
      '  case "$code" in 2[0-9][0-9]) echo "@@healthy $code $n $(( $(ms) - start ))"; exit 0 ;; esac',
      // curl: its error text then " 000"; bash: the error text or the status
      '  case "$code" in [1-9][0-9][0-9]) last="HTTP $code" ;; *) last=$(printf "%s" "${out% 000}" | tr "\n" " ") ;; esac',
      // only when the answer changes: a runner that went silent must not fill the pipe (and block the watcher) soon
      '  [ "$last" = "$prev" ] || echo "@@probe $n $last"; prev=$last',
      '  now=$(ms)',
      '  if [ $((now - checked)) -ge 500 ]; then check; checked=$now; fi',
      '  if [ $((now - start)) -ge "$limit" ]; then echo "@@timeout $n $last"; logs 4; fi',
      '  sleep "$every" 2>/dev/null || sleep 1',
      'done'
    ].join('\n'),
    args: [name, String(port), path, host, String(everySeconds), String(Math.round(timeoutMs)), String(tailLines)]
  };
}

/** HTTP GET on the host itself with bash's /dev/tcp (used when sshd forbids TCP forwarding). */
export function httpProbeScript(port: number, path: string, timeoutSeconds: number, host?: string): RemoteScript {
  return {
    body: [
      'command -v bash >/dev/null 2>&1 || { echo "bash is needed on the host for health checks when TCP forwarding is disabled" >&2; exit 127; }',
      `exec ${cmd('bash', '-c', DEV_TCP_PROBE, 'bash')} "$1" "$2" "$3" "$4"`
    ].join('\n'),
    args: [String(port), path, String(timeoutSeconds), host ?? `127.0.0.1:${port}`]
  };
}

/**
 * A clock for host-side waits: `ms` prints milliseconds since the epoch (whole seconds × 1000 where `date` has
 * no %N), so every wait is bounded by time, not by a count of iterations that a loaded host stretches.
 */
export const CLOCK = `ms() { t=$(date +%s%N 2>/dev/null); case "$t" in ""|*[!0-9]*) t=$(date +%s); echo $((t * 1000)) ;; *) echo $((t / 1000000)) ;; esac; }`;

/**
 * nginx-switch njs: nothing reloads, so there are no old workers to wait for. Instead waits until no established TCP
 * connection to 127.0.0.1:$1 is left on the host (nginx's connections to the old colour: in-flight requests and open
 * streams), at most $2 ms. Read from /proc/net/tcp and tcp6 (remote port $1, state 01 = ESTABLISHED), so no `ss` is
 * needed. Prints `@@drained <ms>` or `@@drain-timeout <connections left>`.
 */
export function connectionDrainScript(port: number, maxMs: number): RemoteScript {
  return {
    body: [CLOCK, ...connectionDrainLoop('$1', '$2')].join('\n'),
    args: [String(port), String(Math.round(maxMs))]
  };
}

/** connectionDrainScript's loop, for the port and the ms in the shell words `port` and `maxMs` (CLOCK defined). */
export function connectionDrainLoop(port: string, maxMs: string): string[] {
  return [
    `t0=$(ms); end=$(( t0 + ${maxMs} )); hex=$(printf "%04X" "${port}")`,
    `open() { cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -c "^ *[0-9]*: [0-9A-F]*:[0-9A-F]* [0-9A-F]*:$hex 01 "; }`,
    'while :; do',
    '  n=$(open)',
    '  [ "${n:-0}" -eq 0 ] && { echo "@@drained $(( $(ms) - t0 ))"; break; }',
    '  [ "$(ms)" -lt "$end" ] || { echo "@@drain-timeout $n"; break; }',
    '  sleep 0.1',
    'done'
  ];
}

/**
 * A router's way of draining the old colour in the finishing job: constant sh lines that read the router's words in
 * $1 (e.g. nginx's worker pids, or a port) and the most milliseconds to wait in $2, with CLOCK defined. They print
 * `@@drained…` or `@@drain-timeout <what is left>`.
 */
export interface DrainFragment {
  lines: readonly string[];
  words: string;
}

/** Without a router's drain: wait drain-seconds by the clock ($2 ms), as far as the host can tell anything. */
const SLEEP_DRAIN: readonly string[] = [
  `[ "$2" -gt 0 ] && sleep "$(printf '%d.%03d' $(( $2 / 1000 )) $(( $2 % 1000 )))"`
];

/**
 * What is left after the switch, off the critical path: drain the old colour (the router's drain fragment, e.g. wait
 * until the nginx workers from before the reload have exited; at most `drainMs`) and stop it (kept for rollback),
 * then remove leftover containers and prune image references.
 * `background`: all that runs as a job on the host that outlives the SSH session and holds the app's
 * drain.lock (taken here, before the deploy lock is released), so the next deploy waits for it.
 * Prints `@@stop` and `@@cleanup` as it moves on, for step timings.
 */
export function finishScript(
  dockerCommand: string[],
  app: string,
  opts: {
    /** How the old colour drains (a router's): without one, the job waits drainMs by the clock. */
    drain?: DrainFragment;
    drainMs: number;
    stopName?: string;
    stopTimeoutSeconds: number;
    removeNames: string[];
    removeImages: string[];
    background: boolean;
    /** The run's record (recordScript's state and history line), written first: `@@recorded`. */
    record?: { stateJson?: string; historyLine: string; keep?: number };
    /**
     * This run's lease token: once the job holds drain.lock (so the next deploy waits for it), the lease is removed
     * if it is still ours (`@@released`), which spares the runner the round trip of ending its keeper. Background only.
     */
    releaseToken?: string;
  }
): RemoteScript {
  const job = [
    dockerFn(dockerCommand),
    'set -f; rc=0',
    'if [ "${13}" = record ]; then h=".bluegreen/$6/history.jsonl"; tail -n "${11}" "$h" > "$h.tmp" && mv -f "$h.tmp" "$h"; fi',
    'if [ -n "$3" ]; then',
    ...(opts.drain?.lines ?? SLEEP_DRAIN).map((l) => `  ${l}`),
    '  echo "@@stop"',
    '  D stop -t "$4" "$3" >/dev/null && echo "@@stopped" || rc=3',
    'fi',
    'echo "@@cleanup"',
    // names and references are validated words (no spaces or glob characters): split on spaces on purpose
    'if [ -n "$7" ]; then D rm -f $7 >/dev/null && echo "removed $7" || rc=3; fi',
    'for r in $8; do D rmi "$r" >/dev/null 2>&1 && echo "removed $r"; done',
    'exit $rc'
  ];
  const logged = [
    'date -u +"%Y-%m-%dT%H:%M:%SZ finishing: drain and stop ${3:-nothing}, remove ${7:-nothing}"',
    '(',
    ...job,
    ')',
    'echo "exit $?"',
    'date -u +"%Y-%m-%dT%H:%M:%SZ done"'
  ].join('\n');
  return {
    body: [
      // the record (as recordScript, from arguments 9-11)
      'if [ "${13}" = record ]; then',
      '  rd=".bluegreen/$6"; [ -d "$rd" ] || mkdir -p "$rd" || exit 3',
      `  if [ -n "$9" ]; then printf '%s\\n' "$9" > "$rd/state.json.tmp" && mv -f "$rd/state.json.tmp" "$rd/state.json"; fi`,
      // trimmed to the last ${11} lines by the job, off the run's path (the next deploy waits for the job)
      `  printf '%s\\n' "\${10}" >> "$rd/history.jsonl" && echo "@@recorded"`,
      'fi',
      // Without setsid the job could die with the SSH session: do it in the run instead.
      'if [ "$5" != background ] || ! command -v setsid >/dev/null 2>&1; then',
      '  [ "$5" = background ] && echo "@@no-setsid"',
      `  exec ${cmd('sh', '-c', job.join('\n'), 'sh')} "$@"`,
      'fi',
      'dir=".bluegreen/$6"; { [ -d "$dir" ] || mkdir -p "$dir"; } && exec 8>>"$dir/drain.lock" || exit 70',
      // A concurrent `command: status` probes drain.lock for an instant (flock -n): wait for it rather than fail.
      'flock -w 10 8 || { echo "drain.lock stayed held by another process for 10 s" >&2; exit 70; }',
      `${cmd('setsid', 'sh', '-c', logged, 'sh')} "$@" </dev/null >"$dir/drain.log" 2>&1 &`,
      'echo "@@background $!"',
      // the job holds drain.lock now: the lease may go
      'if [ -n "${12}" ]; then',
      '  tok=${12}',
      LEASE_FNS.split('\n')
        .map((l) => `  ${l}`)
        .join('\n'),
      '  release() { lease_read; if [ "$lt" = "$tok" ]; then rm -f "$dir/lease"; echo "@@released"; fi; }',
      '  under_lock 10 release',
      'fi'
    ].join('\n'),
    args: [
      opts.drain?.words ?? '',
      String(Math.round(opts.drainMs)),
      opts.stopName ?? '',
      String(opts.stopTimeoutSeconds),
      opts.background ? 'background' : 'wait',
      app,
      opts.removeNames.join(' '),
      opts.removeImages.join(' '),
      opts.record?.stateJson ?? '',
      opts.record?.historyLine ?? '',
      String(opts.record?.keep ?? HISTORY_KEEP),
      opts.releaseToken ?? '',
      opts.record ? 'record' : ''
    ]
  };
}

/** `docker stop` (kept for rollback). */
export function stopScript(dockerCommand: string[], name: string, timeoutSeconds: number): RemoteScript {
  return {
    body: [dockerFn(dockerCommand), 'D stop -t "$2" "$1" >/dev/null'].join('\n'),
    args: [name, String(timeoutSeconds)]
  };
}

/** Port-swap cut-over: stop the live container (if any), then start the candidate on the freed port. */
export function portSwapScript(
  dockerCommand: string[],
  stopName: string | undefined,
  startName: string,
  timeoutSeconds: number
): RemoteScript {
  return {
    body: [
      dockerFn(dockerCommand),
      'if [ -n "$1" ]; then D stop -t "$3" "$1" >/dev/null || exit 3; fi',
      'D start "$2" >/dev/null'
    ].join('\n'),
    args: [stopName ?? '', startName, String(timeoutSeconds)]
  };
}

/**
 * Undo of `start`: removes the container `name` only if it carries this run's deploy id (never the kept standby
 * or another run's container), then puts back the standby it had replaced (`<name>-replaced`) if the name is free.
 * Prints `@@removed`, `@@foreign <deploy id>` (left alone) and `@@restored`; exit 3 when docker does not answer.
 */
export function discardCandidateScript(dockerCommand: string[], name: string, deployId: string): RemoteScript {
  return {
    body: [
      dockerFn(dockerCommand),
      `id=$(D inspect --format '{{index .Config.Labels "bluegreen.deploy-id"}}' "$1" 2>&1); there=$?`,
      // Only "no such container" means it is gone: docker not answering must not pass for a clean host (the candidate
      // would be left running unnoticed); exit 3 with docker's words, which the run reports.
      'if [ $there != 0 ]; then case "$id" in *"No such object"*|*"No such container"*|*"no such object"*) ;; *) echo "$id" >&2; exit 3 ;; esac; fi',
      'if [ $there = 0 ]; then',
      '  if [ "$id" = "$2" ]; then D rm -f "$1" >/dev/null || exit 3; echo "@@removed"; there=1; else echo "@@foreign $id"; fi',
      'fi',
      'if [ $there != 0 ] && D inspect --format "{{.Id}}" "$1-replaced" >/dev/null 2>&1; then D rename "$1-replaced" "$1" || exit 3; echo "@@restored"; fi',
      'exit 0'
    ].join('\n'),
    args: [name, deployId]
  };
}

/** Removes a failed candidate and puts back the standby it had replaced (renamed `<name>-replaced`). */
export function restoreReplacedScript(dockerCommand: string[], name: string): RemoteScript {
  return {
    body: [
      dockerFn(dockerCommand),
      'D rm -f "$1" >/dev/null || exit 3',
      'if D inspect --format "{{.Id}}" "$1-replaced" >/dev/null 2>&1; then D rename "$1-replaced" "$1" || exit 3; echo "@@restored"; fi'
    ].join('\n'),
    args: [name]
  };
}

/** Writes state.json (on success) and appends one history line, keeping the last `keep` lines. */
/** History lines kept on the host. */
export const HISTORY_KEEP = 200;

export function recordScript(
  app: string,
  stateJson: string | undefined,
  historyLine: string,
  keep = HISTORY_KEEP
): RemoteScript {
  return {
    body: [
      'dir=".bluegreen/$1"; mkdir -p "$dir" || exit 3',
      `if [ -n "$2" ]; then printf '%s\\n' "$2" > "$dir/state.json.tmp" && mv -f "$dir/state.json.tmp" "$dir/state.json"; fi`,
      `printf '%s\\n' "$3" >> "$dir/history.jsonl"`,
      'tail -n "$4" "$dir/history.jsonl" > "$dir/history.jsonl.tmp" && mv -f "$dir/history.jsonl.tmp" "$dir/history.jsonl"'
    ].join('\n'),
    args: [app, stateJson ?? '', historyLine, String(keep)]
  };
}

/** Starts an existing (stopped) container: the kept standby on rollback. */
export function startExistingScript(dockerCommand: string[], name: string): RemoteScript {
  return { body: [dockerFn(dockerCommand), 'D start "$1" >/dev/null'].join('\n'), args: [name] };
}

/** The repository's images (newest first) and the image ids the named containers use. */
export function listImagesScript(dockerCommand: string[], repository: string, containers: string[]): RemoteScript {
  return {
    body: [
      dockerFn(dockerCommand),
      'echo "@@images"',
      `D images --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}' "$1" || exit 3`,
      'echo "@@in-use"',
      'shift',
      // a colour that does not exist (yet) is no error
      `for n in "$@"; do D inspect --format '{{.Image}}' "$n" 2>/dev/null; done; exit 0`
    ].join('\n'),
    args: [repository, ...containers]
  };
}

const STATUS_FORMAT = `'{"id":{{json .Id}},"name":{{json .Name}},"state":{{json .State.Status}},"running":{{json .State.Running}},"restarts":{{.RestartCount}},"exitCode":{{.State.ExitCode}},"startedAt":{{json .State.StartedAt}},"finishedAt":{{json .State.FinishedAt}},"labels":{{json .Config.Labels}}}'`;

/**
 * Everything `command: status` reports, read in one round trip and changing nothing: containers,
 * resource use, upstream, history, recorded state, lock, disk and (optionally) recent logs.
 */
export function statusScript(
  dockerCommand: string[],
  app: string,
  upstreamFile: string,
  historyLines: number,
  logLines: number
): RemoteScript {
  return {
    body: [
      dockerFn(dockerCommand),
      'dir=".bluegreen/$1"',
      ...APP_CONTAINER_IDS,
      'echo "@@containers"',
      `if [ -n "$ids" ]; then D inspect --format ${STATUS_FORMAT} $ids || exit 3; fi`,
      'echo "@@stats"',
      'running=$(D ps -q --filter "label=bluegreen.app=$1")',
      `if [ -n "$running" ]; then D stats --no-stream --format '{{json .}}' $running 2>/dev/null; fi`,
      'echo "@@upstream"',
      'if [ -n "$2" ] && [ -f "$2" ]; then cat -- "$2"; echo; else echo "@@none"; fi',
      'echo "@@history"',
      '[ "$3" -gt 0 ] && tail -n "$3" "$dir/history.jsonl" 2>/dev/null',
      'echo "@@state"',
      'cat "$dir/state.json" 2>/dev/null || echo "@@none"',
      // The lease is read without the lock (it is replaced atomically), against the host's clock that expires it.
      'echo "@@lock"',
      'echo "now $(date +%s)"',
      'if [ -s "$dir/lease" ]; then echo "lease $(head -n 1 "$dir/lease")"; fi',
      // An older version of the action holds the lock file for its whole run and names itself in lock.owner; a short
      // non-blocking probe only (deploys wait for the lock file, they do not give up on a busy one).
      'if [ -s "$dir/lock.owner" ] && command -v flock >/dev/null 2>&1 && ! flock -n "$dir/lock" true; then echo "legacy $(head -n 1 "$dir/lock.owner")"; fi',
      'if [ -e "$dir/drain.lock" ] && command -v flock >/dev/null 2>&1 && ! flock -n "$dir/drain.lock" true; then echo draining; fi',
      'echo "@@disk"',
      `root=$(D info --format '{{.DockerRootDir}}' 2>/dev/null); [ -n "$root" ] || root=/`,
      'df -P "$root" 2>/dev/null | tail -n 1 || df -P / | tail -n 1',
      'echo "@@logs"',
      'if [ "$4" -gt 0 ]; then for c in blue green; do echo "@@log $c"; D logs --tail "$4" "$1-$c" 2>&1 || true; done; fi',
      'exit 0'
    ].join('\n'),
    args: [app, upstreamFile, String(historyLines), String(logLines)]
  };
}
