/** The app's containers on the host: detect, start, stop, swap, discard and restore them, their state, logs and images. */
import { dockerFn, secretTempLines, TRAPS, type RemoteScript } from './common.js';

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
