/** Health checks run on the host itself: the watcher of the health step and a one-shot HTTP probe. */
import { dockerFn, type RemoteScript } from './common.js';
import { cmd } from './shell.js';

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
