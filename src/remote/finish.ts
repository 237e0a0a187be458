/** After the switch: drain the old colour, stop it, clean up, and record the run. */
import { dockerFn, LEASE_FNS, type RemoteScript } from './common.js';
import { cmd } from './shell.js';

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
