/**
 * nginx's remote scripts: the upstream file written (and nginx reloaded, or not with njs) in one command that waits
 * for nginx's new workers, and the wait for the old workers' in-flight requests. Constant POSIX sh bodies, values as
 * positional arguments or stdin.
 */
import { CLOCK, LEASE_GUARD, type RemoteScript } from '../../remote/scripts.js';

/**
 * Finds the nginx masters and their workers from /proc (readable by any user). Only masters in the SSH session's
 * PID namespace count: processes of containers also show in the host's /proc, one NSpid entry deeper. A master
 * is found by its title, whatever its config or pid file (OpenResty, a custom prefix, `nginx -c`).
 *   scan: sets `now` to the masters seen now (caching which pids are in our namespace)
 *   kids <master>: sets `kids` to its workers (children titled "nginx: worker process", shutting down or not)
 *   accepting <pid>...: sets `acc` to those still accepting (a worker told to quit retitles itself "… is shutting down")
 * Results go in variables, and /proc/<pid>/status, children and cmdline are read with the shell's own `read`
 * (dash, bash and busybox sh all stop at the title's first NUL or drop the NULs): the switch polls these every 10 ms
 * while nginx reloads, and each command substitution or external command is a fork (1–3 ms on a busy small host,
 * on the switch's critical path). Only `scan` runs one grep, over every process.
 */
const NGINX_PROCS = [
  // status_field <pid> <name>: sets `sf` to the rest of that line of /proc/<pid>/status ("" when the process is gone)
  `status_field() { sf=""; { while read -r _k _r; do [ "$_k" = "$2:" ] && { sf=$_r; break; }; done < "/proc/$1/status"; } 2>/dev/null; }`,
  // nsd <pid>: sets `ns` to its PID namespace depth (the number of NSpid entries)
  'nsd() { status_field "$1" NSpid; set -- $sf; ns=$#; }',
  // title <pid>: sets `t` to its title (the cmdline up to its first NUL; "" when the process is gone), without a fork
  `title() { t=""; { read -r t < "/proc/$1/cmdline"; } 2>/dev/null; }`,
  'nsd $$; myns=$ns; ours=""; foreign=""',
  'scan() {',
  '  now=""',
  `  for _f in $(grep -ls '^nginx: master process' /proc/[0-9]*/cmdline 2>/dev/null); do`,
  '    _p=${_f#/proc/}; _p=${_p%/cmdline}',
  '    case " $ours " in *" $_p "*) now="$now $_p"; continue ;; esac',
  '    case " $foreign " in *" $_p "*) continue ;; esac',
  '    nsd "$_p"; if [ "$ns" = "$myns" ]; then ours="$ours $_p"; now="$now $_p"; else foreign="$foreign $_p"; fi',
  '  done',
  '}',
  'kids() {',
  '  kids=""',
  // The master's children file is one read; scanning every process's parent is the fallback (kernels without CONFIG_PROC_CHILDREN).
  '  if [ -r "/proc/$1/task/$1/children" ]; then',
  '    _c=""; { read -r _c < "/proc/$1/task/$1/children"; } 2>/dev/null',
  `    for _p in $_c; do title "$_p"; case "$t" in 'nginx: worker process'*) kids="$kids $_p" ;; esac; done`,
  '    return 0',
  '  fi',
  `  for _f in $(grep -ls '^nginx: worker process' /proc/[0-9]*/cmdline 2>/dev/null); do`,
  '    _p=${_f#/proc/}; _p=${_p%/cmdline}',
  '    status_field "$_p" PPid; [ "$sf" = "$1" ] && kids="$kids $_p"',
  '  done',
  '  return 0',
  '}',
  'accepting() {',
  `  acc=""; for _p in "$@"; do title "$_p"; case "$t" in *'shutting down'*) ;; 'nginx: worker process'*) acc="$acc $_p" ;; esac; done`,
  '}'
].join('\n');

/**
 * Atomically replaces the upstream file with `content` and runs the reload command; if the reload fails, the
 * previous file is put back. With `takeoverMs`, prints the nginx masters and their workers from before the reload (see
 * src/traffic/nginx/switch-output.ts, the one parser of this output; without it, nginx's processes are not read), then waits (polling
 * every 10 ms, in the same round trip, at most `takeoverMs` by the clock) until a master has taken the new config:
 * it has a worker that was not there before and none of its previous workers still accepts. An nginx whose workers
 * never change (another site's, a container's) does not matter. A master that replaced the previous ones (a
 * restart-style reload command) counts too, with the workers of the masters that are gone. Prints `@@old-workers`
 * (the previous workers of the master(s) that reloaded) and `@@taken-over <pid>
 * <ms until then> <ms until the first new worker> <masters>`, timed on the host from the start of the script
 * (`-` where `date` has no %N); `@@no-takeover` when none did in time (after `@@foreign-masters`: the masters in other PID namespaces, not watched); `@@no-workers` when no master is visible.
 */
export function writeUpstreamScript(
  file: string,
  reloadCommand: string,
  opts: { remove?: boolean; takeoverMs?: number; lease?: { app: string; deployId: string }; content?: string } = {}
): RemoteScript {
  return {
    body: [
      't0=$(date +%s%N 2>/dev/null)',
      // Fencing: a run whose lease expired on the host (it went silent, another deploy may own the host) changes nothing.
      LEASE_GUARD,
      'if [ -n "$5" ] && ! lease_ok "$5" "$6"; then echo "this run no longer holds the deploy lock (lease) of $5 on the host" >&2; exit 77; fi',
      CLOCK,
      NGINX_PROCS,
      'f=$1; tmp="$f.bluegreen-new.$$"; prev="$f.bluegreen-prev"',
      // before: one word per worker, "<master>:<worker>" ("<master>:" for a master without workers)
      // Without a takeover to wait for (nginx-switch njs: nothing reloads) the processes are not read at all.
      'bm=""; before=""; bw=""',
      'if [ "$4" -gt 0 ]; then scan; bm=$now; fi',
      `for m in $bm; do kids "$m"; [ -n "$kids" ] || before="$before $m:"; for p in $kids; do before="$before $m:$p"; bw="$bw $p"; done; done`,
      'echo "@@masters$bm"',
      'echo "@@workers-before$bw"',
      'had=0',
      'if [ -e "$f" ]; then cp -p -- "$f" "$prev" || { echo "cannot write next to $f: the directory must be writable by $(id -un)" >&2; exit 3; }; had=1; fi',
      'if [ "$3" = remove ]; then rm -f -- "$f" || exit 3; else',
      // the content as argument 8 (not secret; stdin would cost a round trip: sshd lets it through only once the command runs)
      '  if ! printf "%s" "$8" > "$tmp" 2>/dev/null; then rm -f -- "$tmp"; echo "cannot write $tmp: the directory must be writable by $(id -un)" >&2; exit 3; fi',
      '  chmod 644 "$tmp"; mv -f -- "$tmp" "$f" || { rm -f -- "$tmp"; exit 3; }',
      'fi',
      // Root on a host without sudo: the default `sudo -n nginx …` then runs nginx directly.
      `if ! command -v sudo >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then sudo() { while [ "\${1#-}" != "$1" ]; do shift; done; "$@"; }; fi`,
      '( eval "$2" ) 2>&1; rc=$?',
      'if [ $rc -ne 0 ]; then',
      '  if [ $had = 1 ]; then mv -f -- "$prev" "$f"; else rm -f -- "$f"; fi',
      '  echo "@@reload-failed $rc"; exit 4',
      'fi',
      'rm -f -- "$prev"; echo "@@reloaded"',
      '[ "$4" -gt 0 ] || exit 0',
      `elapsed() { t=$(date +%s%N 2>/dev/null); case "$t0$t" in *[!0-9]*|"") echo - ;; *) echo $(( (t - t0) / 1000000 )) ;; esac; }`,
      'end=$(( $(ms) + $4 )); first=""; round=0',
      'while :; do',
      '  round=$((round + 1))',
      '  scan; took=""; old=""; new=""; gone=""; seen=""',
      '  for m in $bm; do case " $now " in *" $m "*) ;; *) gone="$gone $m" ;; esac; done',
      '  for m in $now; do',
      '    n=""; kids "$m"; for p in $kids; do case " $bw " in *" $p "*) ;; *) n=$p ;; esac; done',
      '    [ -n "$n" ] || continue',
      '    seen=1; case " $bm " in *" $m "*) mine=$m ;; *) mine=$gone ;; esac',
      '    mo=""; for x in $before; do case " $mine " in *" ${x%%:*} "*) [ -n "${x#*:}" ] && mo="$mo ${x#*:}" ;; esac; done',
      // Each master on its own: one that was caught halfway through another reload when `before` was taken (a new
      // worker of it was listed as "before", and it keeps accepting) must not hold up the master that reloads now.
      '    accepting $mo; [ -z "$acc" ] && { new=$n; took="$took $m"; old="$old$mo"; }',
      '  done',
      // Traffic starts on the new colour with the first new worker; it is all there once no previous worker of a
      // master that reloaded accepts (retitled "... is shutting down", which nginx does 100 ms after starting the new ones).
      '  [ -z "$seen" ] || [ -n "$first" ] || first=$(elapsed)',
      '  if [ -n "$took" ]; then echo "@@old-workers$old"; echo "@@taken-over $new $(elapsed) $first$took"; exit 0; fi',
      '  [ -z "$bm" ] && [ -z "$now" ] && { echo "@@no-workers"; exit 0; }',
      // the clock (a fork) every 10th round only
      '  [ $((round % 10)) -ne 0 ] || [ "$(ms)" -lt "$end" ] || { echo "@@foreign-masters$foreign"; echo "@@no-takeover"; exit 0; }',
      '  sleep 0.01',
      'done'
    ].join('\n'),
    args: [
      file,
      reloadCommand,
      opts.remove ? 'remove' : 'write',
      String(opts.takeoverMs ?? 0),
      opts.lease?.app ?? '',
      opts.lease?.deployId ?? '',
      'arg',
      opts.content ?? ''
    ]
  };
}

/**
 * Waits until those of the nginx workers $1 that are shutting down have exited: they exit once their in-flight
 * requests are done (at most $2 ms by the clock; without workers to watch, the full time). A listed worker that
 * still accepts belongs to an nginx that did not reload (another site's) and is not waited for, so the list may
 * hold every worker seen before the reload: which master reloaded first need not be known exactly.
 */
export const DRAIN_LOOP: readonly string[] = [
  CLOCK,
  'end=$(( $(ms) + $2 ))',
  `if [ -z "$1" ]; then echo "@@unobservable"; sleep "$(printf '%d.%03d' $(( $2 / 1000 )) $(( $2 % 1000 )))"; else`,
  '  while :; do',
  '    alive=""',
  `    for p in $1; do grep -qs '^nginx: worker process is shutting down' "/proc/$p/cmdline" && alive="$alive $p"; done`,
  '    [ -z "$alive" ] && { echo "@@drained"; break; }',
  '    [ "$(ms)" -lt "$end" ] || { echo "@@drain-timeout$alive"; break; }',
  '    sleep 0.05',
  '  done',
  'fi'
];

/** Drain only: the workers from before a reload finish their in-flight requests. */
export function nginxDrainScript(workersBefore: string[], maxMs: number): RemoteScript {
  return { body: DRAIN_LOOP.join('\n'), args: [workersBefore.join(' '), String(Math.round(maxMs))] };
}
