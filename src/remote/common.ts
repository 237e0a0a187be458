/**
 * What the remote script builders (see scripts.ts) share: the script type, the docker and trap preambles, and the
 * lease and secret-file shell helpers. Private to src/remote except what scripts.ts re-exports.
 */
import { cmd } from './shell.js';

export interface RemoteScript {
  body: string;
  args: string[];
  stdin?: string;
}

/** Defines `D` as the docker command (e.g. `sudo -n docker`) for the script that follows. */
export function dockerFn(dockerCommand: string[]): string {
  return `D() { ${cmd(...dockerCommand)} "$@"; }`;
}

export const TRAPS = `trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM`;

/** Where the action keeps per-app state on the host, relative to the SSH user's home. */
export const stateDir = (app: string) => `.bluegreen/${app}`;

/**
 * Shell helpers for `$dir/lease`, one line `<token> <expires-epoch-s> <owner-json>` (token `<deployId>.<nonce>`).
 * Every read-modify-write happens in `under_lock`, which holds `$dir/lock` (the file older versions of the action
 * held for their whole run, so such a run still excludes us) only for the milliseconds the change takes: fd 9 is
 * open in the subshell alone, and nothing that waits (the keeper's heartbeat read) ever holds it.
 */
export const LEASE_FNS = [
  'lease_read() { lt=""; le=0; lo=""; if [ -s "$dir/lease" ]; then read -r lt le lo < "$dir/lease"; fi; case "$le" in ""|*[!0-9]*) le=0 ;; esac; }',
  // written next to it and renamed: readers without the lock (status, lease_ok) never see half a line
  `lease_write() { printf '%s %s %s\\n' "$1" "$2" "$3" > "$dir/lease.new" && mv -f "$dir/lease.new" "$dir/lease"; }`,
  // under_lock WAIT CMD...: exit 99 when the lock file could not be taken within WAIT seconds
  'under_lock() { w=$1; shift; ( flock -w "$w" 9 || exit 99; "$@" ) 9>>"$dir/lock"; }'
].join('\n');

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
