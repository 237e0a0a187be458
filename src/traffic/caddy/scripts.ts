/**
 * Caddy's remote scripts: the marker file that moves traffic (Caddy's `file` matcher looks for it at every request),
 * a GET of Caddy's admin API on the host, and the wait for Caddy's requests to the old colour to finish. Constant
 * POSIX sh bodies, values as positional arguments.
 */
import { CLOCK, LEASE_GUARD, type RemoteScript } from '../../remote/scripts.js';

/**
 * Points the app's traffic at `color`: green = the marker `<dir>/<app>/green` exists (written atomically, holding the
 * note), blue = it does not. Fencing: a run whose lease expired on the host changes nothing (exit 77).
 */
export function markerScript(
  dir: string,
  app: string,
  color: 'blue' | 'green',
  note: string,
  lease?: { app: string; deployId: string }
): RemoteScript {
  return {
    body: [
      LEASE_GUARD,
      'if [ -n "$5" ] && ! lease_ok "$5" "$6"; then echo "this run no longer holds the deploy lock (lease) of $5 on the host" >&2; exit 77; fi',
      'd="$1/$2"; f="$d/green"',
      '[ -d "$d" ] || { mkdir -p -- "$d" 2>/dev/null && chmod 755 "$d"; } || { echo "cannot create $d: caddy-switch-dir ($1) must exist and be writable by $(id -un)" >&2; exit 3; }',
      // Caddy runs as another user: every folder on the way must let others in, or its file matcher never sees the
      // marker and the switch would move nothing while the deploy goes on to stop the old colour.
      'p=$d; while [ -n "$p" ] && [ "$p" != / ]; do',
      '  [ -n "$(find "$p" -maxdepth 0 -perm -o=x 2>/dev/null)" ] || { echo "Caddy (another user) cannot enter $p: chmod o+rx $p (the marker files under caddy-switch-dir must be readable by Caddy)" >&2; exit 3; }',
      '  p=${p%/*}',
      'done',
      'if [ "$3" = green ]; then',
      '  tmp="$f.bluegreen-new.$$"',
      `  if ! printf '%s\\n' "$4" > "$tmp" 2>/dev/null; then rm -f -- "$tmp"; echo "cannot write in $d: it must be writable by $(id -un)" >&2; exit 3; fi`,
      '  chmod 644 "$tmp"; mv -f -- "$tmp" "$f" || { rm -f -- "$tmp"; exit 3; }',
      'else',
      '  rm -f -- "$f" || exit 3',
      'fi',
      'echo "@@switched $3"'
    ].join('\n'),
    args: [dir, app, color, note, lease?.app ?? '', lease?.deployId ?? '']
  };
}

/** GET of a Caddy admin API URL on the host (loopback): the body, then `@@http <status>` on a line of its own. */
export function adminGetScript(url: string): RemoteScript {
  return {
    body: [
      'command -v curl >/dev/null 2>&1 || { echo "curl is not installed on the host: traffic caddy reads Caddy\'s admin API with it" >&2; exit 3; }',
      `curl -sS --max-time 5 -w '\\n@@http %{http_code}\\n' -- "$1" || exit 3`
    ].join('\n'),
    args: [url]
  };
}

/**
 * Waits until Caddy has no request in flight to the upstream address (admin API `/reverse_proxy/upstreams`,
 * num_requests), at most $2 ms; $1 is "<admin-url> <address>". An admin API that does not answer, or a list without
 * the address, counts as busy, so the old colour is then stopped only after the whole time. Prints `@@drained <ms>` or `@@drain-timeout <requests>`.
 * Used by the finishing job (with CLOCK defined) and, as a script, by the switch-back.
 */
export const CADDY_DRAIN: readonly string[] = [
  'url=${1%% *}; addr=${1#* }; t0=$(ms); end=$(( t0 + $2 ))',
  'busy() {',
  '  n="?"; out=$(curl -sS --max-time 2 -- "$url/reverse_proxy/upstreams" 2>/dev/null) || return 0',
  `  n=$(printf '%s' "$out" | tr '{' '\\n' | grep -F "\\"address\\":\\"$addr\\"" | sed -n 's/.*"num_requests":\\([0-9]*\\).*/\\1/p' | head -n 1)`,
  // an upstream Caddy does not list (dialled by another name?) is unknown, not idle: wait the whole time
  '  n=${n:-?}',
  '}',
  'while :; do',
  '  busy',
  '  [ "$n" = 0 ] && { echo "@@drained $(( $(ms) - t0 ))"; break; }',
  '  [ "$(ms)" -lt "$end" ] || { echo "@@drain-timeout $n"; break; }',
  '  sleep 0.1',
  'done'
];

/** CADDY_DRAIN as a script of its own (the switch-back lets the candidate's requests finish before removing it). */
export function caddyDrainScript(adminUrl: string, address: string, maxMs: number): RemoteScript {
  return { body: [CLOCK, ...CADDY_DRAIN].join('\n'), args: [`${adminUrl} ${address}`, String(Math.round(maxMs))] };
}
