/**
 * HAProxy runtime API (the `stats socket … level admin`) commands, built by pure functions, and the few host-side
 * scripts the router needs (values as positional arguments or stdin, never spliced into shell text). The action only
 * ever changes server states: never HAProxy's configuration, never a reload or restart.
 */
import type { Color } from '../../model/config.js';
import type { RemoteScript } from '../../remote/scripts.js';
import type { AdminState } from './view.js';

/** Backend names the action sends (haproxy-backend is validated to this). */
export const BACKEND_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/;

function checkBackend(backend: string): string {
  if (!BACKEND_NAME.test(backend)) throw new Error(`invalid HAProxy backend name "${backend}"`);
  return backend;
}

/** `set server <backend>/<colour> state ready|drain|maint`. */
export function setStateCommand(backend: string, server: Color, state: AdminState): string {
  if (server !== 'blue' && server !== 'green') throw new Error(`invalid server ${String(server)}`);
  if (state !== 'ready' && state !== 'drain' && state !== 'maint') throw new Error(`invalid state ${String(state)}`);
  return `set server ${checkBackend(backend)}/${server} state ${state}`;
}

/** `show servers state [<backend>]`: all backends is what the server-state-file holds. */
export function showServersStateCommand(backend?: string): string {
  return backend === undefined ? 'show servers state' : `show servers state ${checkBackend(backend)}`;
}

/** `show stat <backend> 4 -1`: the backend's servers only (type 4), all of them (-1). */
export function showStatCommand(backend: string): string {
  return `show stat ${checkBackend(backend)} 4 -1`;
}

/** HAProxy's clock (`date_now`), to time a change on the host itself. */
export const SHOW_ACTIVITY = 'show activity';

/** Several commands as one line: HAProxy runs them in order, in the same pass of its event loop. */
export function commandLine(commands: string[]): string {
  for (const c of commands) if (/[;\n\r\0]/.test(c) || !c.trim()) throw new Error(`invalid HAProxy command "${c}"`);
  return `${commands.join('; ')}\n`;
}

/**
 * The switch as one command line: the new colour `ready` and the old one `drain` in the same pass, so no request
 * finds neither (and none finds the old one once the line ran), with HAProxy's clock read before and after.
 */
export function switchCommands(backend: string, to: Color, from: Color | undefined): string[] {
  return [
    SHOW_ACTIVITY,
    setStateCommand(backend, to, 'ready'),
    ...(from ? [setStateCommand(backend, from, 'drain')] : []),
    SHOW_ACTIVITY
  ];
}

/**
 * Fallback when sshd refuses the stream-local forward: the same command line (stdin) through a client on the host,
 * socat or OpenBSD netcat (`nc -U`). Exit 127 names what is missing.
 */
export function socketClientScript(socketPath: string): RemoteScript {
  return {
    body: [
      'if command -v socat >/dev/null 2>&1; then exec socat -t 5 stdio "UNIX-CONNECT:$1"; fi',
      'if command -v nc >/dev/null 2>&1 && nc -h 2>&1 | grep -q -- "-U"; then exec nc -U "$1"; fi',
      'echo "neither socat nor a netcat with -U (OpenBSD netcat) is installed on the host" >&2; exit 127'
    ].join('\n'),
    args: [socketPath]
  };
}

/** Why the socket cannot be opened, in words (prints one `@@socket <reason>` line; read by parseSocketDiagnosis). */
export function socketDiagnosisScript(socketPath: string): RemoteScript {
  return {
    body: [
      'p=$1; d=$(dirname -- "$p")',
      'if [ ! -e "$p" ]; then',
      '  if [ -d "$d" ] && [ ! -x "$d" ]; then echo "@@socket no-dir-access $(id -un) $(id -Gn | tr " " ,) $(stat -c "%U:%G %a" -- "$d" 2>/dev/null)"; else echo "@@socket missing"; fi',
      'elif [ ! -S "$p" ]; then echo "@@socket not-a-socket"',
      'elif [ ! -w "$p" ] || [ ! -r "$p" ]; then echo "@@socket no-permission $(id -un) $(id -Gn | tr " " ,) $(stat -c "%U:%G %a" -- "$p" 2>/dev/null)"',
      'else echo "@@socket ok"; fi'
    ].join('\n'),
    args: [socketPath]
  };
}

/** What socketDiagnosisScript found, as a sentence that says what to change. */
export function parseSocketDiagnosis(out: string, socketPath: string): string | undefined {
  const m = /^@@socket (\S+)(?: (\S+) (\S+) (.*))?$/m.exec(out);
  if (!m) return undefined;
  const [, what, user, groups, perms] = m;
  switch (what) {
    case 'missing':
      return `the HAProxy admin socket ${socketPath} does not exist on the host: is HAProxy running, and does its global section have "stats socket ${socketPath} mode 660 level admin group <a group of the SSH user>"? (haproxy-socket)`;
    case 'not-a-socket':
      return `${socketPath} exists on the host but is not a socket (haproxy-socket)`;
    case 'no-permission':
      return `the SSH user ${user} (groups ${groups}) may not use the HAProxy socket ${socketPath} (${perms}): add "mode 660 group <group>" to its stats socket line with a group of ${user}`;
    case 'no-dir-access':
      return `the SSH user ${user} (groups ${groups}) may not enter the directory of ${socketPath} (${perms})`;
    default:
      return undefined;
  }
}

/**
 * Writes HAProxy's server states (stdin: the `show servers state` answer) to the server-state-file, so a reload or
 * restart of HAProxy (`load-server-state-from-file`) keeps the live colour live and the other in maint. Replaced
 * atomically when the directory is writable, else rewritten in place.
 */
export function writeStateFileScript(file: string): RemoteScript {
  return {
    body: [
      'f=$1; tmp="$f.bluegreen.$$"',
      'if cat > "$tmp" 2>/dev/null; then chmod 644 "$tmp"; mv -f -- "$tmp" "$f" && exit 0; rm -f -- "$tmp"; exit 3; fi',
      'rm -f -- "$tmp" 2>/dev/null',
      // The directory is not writable: the file itself may be (it was created for the SSH user).
      'if [ -w "$f" ]; then cat > "$f" && exit 0; fi',
      'echo "cannot write the HAProxy server-state-file $f: make it (or its directory $(dirname -- "$f")) writable by $(id -un)" >&2; exit 3'
    ].join('\n'),
    args: [file]
  };
}
