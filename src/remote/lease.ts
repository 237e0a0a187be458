/** The app's deploy lease on the host: take, keep, renew and release it, and fence scripts on it. */
import { LEASE_FNS, type RemoteScript } from './common.js';

/**
 * How long a deploy lease lives without a renewal. The runner renews it every LEASE_HEARTBEAT_MS; a runner that
 * vanishes (VM gone, network partition: its connection goes silent and is never closed) loses it this long after
 * its last heartbeat, without waiting for sshd or TCP to notice the dead connection.
 */
export const LEASE_TTL_SECONDS = 30;
export const LEASE_HEARTBEAT_MS = 5000;

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
