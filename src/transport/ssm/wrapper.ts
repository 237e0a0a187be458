/**
 * What one SSM Run Command (document AWS-RunShellScript) carries, built by pure functions: a FIXED POSIX sh wrapper
 * followed by a quoted here-document of base64 lines (the payload: the script body, its positional arguments and the
 * sealed stdin). Nothing the deploy passes is ever spliced into shell text: the wrapper decodes the payload lines into
 * files and `set --` arguments and runs the body with `sh -c "$body" sh "$@"`. A base64 line can never close the
 * here-document (its delimiter holds "_", which base64 never does), and the delimiter is quoted, so the shell expands
 * nothing in it.
 *
 * SSM keeps command parameters in its command history and CloudTrail: the positional arguments must never hold
 * secrets (they are base64, i.e. readable). Secrets travel as stdin, which is sealed to a key pair made on the host
 * (see seal.ts): only the sealed form is in the parameters.
 *
 * The wrapper answers with one small frame on stdout (SSM cuts stdout at 24,000 characters and stderr at 8,000):
 *   @@bgssm1 <exit code> <stdout bytes> <stderr bytes>   then optional lines
 *   @@pub <base64 PEM>        the session's public key (when asked for, or made now)
 *   @@nokey                    sealed stdin came but the session key is gone (expired): the runner makes a new one and retries
 *   @@out <base64>             the first FIRST_OUT_BYTES of the script's stdout (the rest is fetched with fetchPayload)
 *   @@err <base64>             the last ERR_TAIL_BYTES of its stderr
 * The script's stdout stays on the host (root-only, /run) until fetched when it is longer, so long output (docker logs,
 * status) arrives complete in bounded pieces.
 */
import crypto from 'node:crypto';

export const FRAME_MAGIC = '@@bgssm1';
/** Raw bytes of stdout in the first answer: 12,000 bytes are 16,000 base64 characters, well under SSM's 24,000 cut. */
export const FIRST_OUT_BYTES = 12000;
/** Raw bytes per later piece (20,000 base64 characters). A multiple of the wrapper's dd block (1000). */
export const PIECE_BYTES = 15000;
/** stderr is only read for error messages: its tail. */
export const ERR_TAIL_BYTES = 3000;
/** The most stdout one command may hand back (the rest is cut, with a note): protocol output is small. */
export const MAX_OUT_BYTES = 1024 * 1024;
/** A session directory nobody used for this long (and no command running in it) is removed by its reaper. */
export const SESSION_IDLE_SECONDS = 1800;

const DELIM = 'BLUEGREEN_SSM_PAYLOAD_END';

/**
 * The fixed wrapper. It runs as root (as the SSM agent does) in the root user's home, so `.bluegreen/<app>` state
 * lives in /root/.bluegreen (the ssh transport keeps it in the ssh user's home).
 */
const WRAPPER = [
  'umask 077',
  'LC_ALL=C; export LC_ALL',
  // The agent may start commands without HOME; the state directory is relative to it.
  'h=$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6); HOME=${h:-${HOME:-/root}}; export HOME',
  'cd "$HOME" || { echo "cannot cd to $HOME" >&2; exit 90; }',
  'for c in base64 openssl flock; do command -v "$c" >/dev/null 2>&1 || { echo "bluegreen-ec2-action (transport: ssm) needs $c on the host" >&2; exit 91; }; done',
  // /run is root-only tmpfs: the key never reaches a disk. (BLUEGREEN_SSM_DIR: tests on a machine that is no host.)
  'b=${BLUEGREEN_SSM_DIR:-/run/bluegreen-ssm}',
  // Root-only base: nobody else can plant a session directory or a symlink in it.
  'if [ ! -d "$b" ]; then mkdir -m 700 "$b" || exit 90; fi',
  '[ -L "$b" ] && { echo "$b is a symlink" >&2; exit 90; }',
  'chmod 700 "$b" || exit 90',
  'b64() { base64 | tr -d "\\n"; }',
  // decodes a payload line into a value (keeping trailing newlines: command substitution would drop them)
  'unb64() { _v=$(printf "%s" "$1" | base64 -d; echo x) || return 1; _v=${_v%x}; }',
  'main() {',
  '  IFS=" " read -r magic op sid want || exit 92',
  '  [ "$magic" = bgssm1 ] || { echo "unknown payload" >&2; exit 92; }',
  '  case "$sid" in ""|*[!0-9a-f]*) exit 92 ;; esac',
  '  d="$b/$sid"',
  '  if [ "$op" = close ]; then',
  '    [ -s "$d/reaper" ] && kill "$(cat "$d/reaper")" 2>/dev/null',
  '    rm -rf "$d"; echo "@@bgssm1 0 0 0"; exit 0',
  '  fi',
  '  if [ ! -d "$d" ]; then mkdir -m 700 "$d" || exit 90; fi',
  '  [ -L "$d" ] && exit 90',
  '  date +%s > "$d/alive"',
  '  if [ "$op" = fetch ]; then',
  '    IFS=" " read -r n off len || exit 92',
  '    case "$n$off$len" in ""|*[!0-9]*) exit 92 ;; esac',
  '    f="$d/out.$n"; [ -f "$f" ] || { echo "the output of command $n is gone from the host" >&2; exit 93; }',
  '    echo "@@bgssm1 0 0 0"',
  '    printf "@@out %s\\n" "$(dd if="$f" bs=1000 skip=$(( off / 1000 )) count=$(( (len + 999) / 1000 )) 2>/dev/null | head -c "$len" | b64)"',
  '    [ "$want" = last ] && rm -f "$f"',
  '    exit 0',
  '  fi',
  '  [ "$op" = run ] || exit 92',
  // ssm-run-as: the user the script runs as (root: as the agent runs it), in that user's home, like ssh-user over SSH
  '  IFS= read -r u || exit 92',
  '  case "$u" in ""|-*|*[!A-Za-z0-9_.-]*) echo "bad user" >&2; exit 92 ;; esac',
  '  uh=$(getent passwd "$u" | cut -d: -f6)',
  '  [ -n "$uh" ] || { echo "bluegreen-ec2-action (transport: ssm): ssm-run-as user $u does not exist on the host" >&2; exit 96; }',
  '  if [ "$u" != root ] && ! command -v runuser >/dev/null 2>&1; then echo "bluegreen-ec2-action (transport: ssm): ssm-run-as needs runuser (util-linux) on the host" >&2; exit 91; fi',
  '  exec 7>>"$d/busy"; flock -s 7',
  '  pub=""',
  '  if [ "$want" = key ] || { [ "$want" = key-if-missing ] && [ ! -s "$d/key.pem" ]; }; then',
  // A one-time RSA-3072 key for this session; the private half never leaves this root-only directory.
  '    rm -f "$d/key.pem"',
  '    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$d/key.pem" 2>"$d/keygen.err" || { cat "$d/keygen.err" >&2; exit 94; }',
  '    chmod 600 "$d/key.pem"',
  '    pub=$(openssl pkey -in "$d/key.pem" -pubout | b64) || exit 94',
  '    if [ ! -s "$d/reaper" ] && command -v setsid >/dev/null 2>&1; then',
  '      setsid sh -c "$REAPER" sh "$d" "$idle" </dev/null >/dev/null 2>&1 7>&- &',
  '      echo $! > "$d/reaper"',
  '    fi',
  '  fi',
  '  IFS=" " read -r skey sdata || exit 92',
  '  in=/dev/null',
  '  if [ "$skey" != - ]; then',
  '    if [ ! -s "$d/key.pem" ]; then echo "@@bgssm1 0 0 0"; echo "@@nokey"; exit 0; fi',
  '    in="$d/in.$$"; trap \'rm -f "$d/in.$$" "$d/pass.$$"\' EXIT',
  '    printf "%s" "$skey" | base64 -d | openssl pkeyutl -decrypt -inkey "$d/key.pem" -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -out "$d/pass.$$" 2>"$d/err.$$" || { echo "@@bgssm1 0 0 0"; echo "@@nokey"; exit 0; }',
  '    printf "%s" "$sdata" | base64 -d | openssl enc -d -aes-256-cbc -md sha256 -pass "file:$d/pass.$$" -out "$in" 2>"$d/err.$$" || { cat "$d/err.$$" >&2; exit 95; }',
  '    rm -f "$d/pass.$$"',
  '  fi',
  '  IFS= read -r l || exit 92; unb64 "$l" || exit 92; body=$_v',
  '  set --',
  '  while IFS= read -r l; do unb64 "$l" || exit 92; set -- "$@" "$_v"; done',
  '  n=$$',
  // fd 7 (busy) stays with the wrapper: a job the script leaves running (the drain job) must not pin the session
  '  if [ "$u" = root ] && [ "$(id -u)" = 0 ]; then',
  '    ( cd "$uh" && HOME=$uh && export HOME && exec sh -c "$body" sh "$@" ) <"$in" >"$d/out.$n" 2>"$d/err.$n" 7>&-; rc=$?',
  '  else',
  '    ( cd "$uh" && exec runuser -u "$u" -- env HOME="$uh" USER="$u" LOGNAME="$u" sh -c "$body" sh "$@" ) <"$in" >"$d/out.$n" 2>"$d/err.$n" 7>&-; rc=$?',
  '  fi',
  '  [ "$in" = /dev/null ] || rm -f "$in"',
  '  date +%s > "$d/alive"',
  '  os=$(wc -c < "$d/out.$n"); es=$(wc -c < "$d/err.$n")',
  '  echo "@@bgssm1 $rc $(( os )) $(( es )) $n"',
  '  [ -z "$pub" ] || echo "@@pub $pub"',
  `  printf "@@out %s\\n" "$(head -c ${FIRST_OUT_BYTES} "$d/out.$n" | b64)"`,
  `  printf "@@err %s\\n" "$(tail -c ${ERR_TAIL_BYTES} "$d/err.$n" | b64)"`,
  `  rm -f "$d/err.$n"; [ "$os" -gt ${FIRST_OUT_BYTES} ] || rm -f "$d/out.$n"`,
  '}'
].join('\n');

/**
 * The session's reaper, started detached (setsid) with the key: it removes the session directory (the private key,
 * kept outputs) once no command used it for `$2` seconds and none is running (each holds busy, shared), so a runner
 * that vanished leaves nothing behind. Constant text (no single quote in it), kept in a variable of the wrapper.
 */
const REAPER = [
  'while sleep 30; do',
  '  [ -d "$1" ] || exit 0',
  '  last=$(cat "$1/alive" 2>/dev/null); case "$last" in ""|*[!0-9]*) last=0 ;; esac',
  '  [ $(( $(date +%s) - last )) -ge "$2" ] || continue',
  '  flock -n -x "$1/busy" true 2>/dev/null || continue',
  '  rm -rf "$1"; exit 0',
  'done'
].join('\n');
const REAPER_LAUNCH = `REAPER='${REAPER}'`;

/** The whole text of the `commands` parameter, one element per line (the agent joins them with newlines). */
export function commandLines(payload: string[]): string[] {
  const text = [REAPER_LAUNCH, `idle=${SESSION_IDLE_SECONDS}`, WRAPPER, `main <<'${DELIM}'`, ...payload, DELIM].join(
    '\n'
  );
  return text.split('\n');
}

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

export type KeyWish = 'key' | 'key-if-missing' | 'no';

/** The payload of a command: script body and positional arguments as data, stdin sealed (or none). */
export function runPayload(
  sessionId: string,
  body: string,
  args: string[],
  opts: { wantKey: KeyWish; sealed?: { key: string; data: string }; runAs?: string }
): string[] {
  for (const a of [body, ...args]) if (a.includes('\0')) throw new Error('a NUL byte cannot be passed to a shell');
  const user = opts.runAs ?? 'root';
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(user)) throw new Error(`bad user ${JSON.stringify(user)}`);
  return [
    `bgssm1 run ${checkSession(sessionId)} ${opts.wantKey}`,
    user,
    opts.sealed ? `${opts.sealed.key} ${opts.sealed.data}` : '- -',
    b64(body),
    // An empty argument is an empty line: base64 of '' is ''. Lines are read with `read -r`, which keeps them.
    ...args.map((a) => b64(a))
  ];
}

/** Reads the bytes [offset, offset+length) of a long stdout kept on the host; `last` removes it after. */
export function fetchPayload(sessionId: string, n: string, offset: number, length: number, last: boolean): string[] {
  if (!/^\d+$/.test(n) || offset % 1000 !== 0) throw new Error(`bad piece ${n} at ${offset}`);
  return [`bgssm1 fetch ${checkSession(sessionId)} ${last ? 'last' : 'more'}`, `${n} ${offset} ${length}`];
}

/** Removes the session directory (key, kept outputs) and stops its reaper. */
export function closePayload(sessionId: string): string[] {
  return [`bgssm1 close ${checkSession(sessionId)} no`];
}

export function newSessionId(): string {
  return crypto.randomBytes(8).toString('hex');
}

function checkSession(id: string): string {
  if (!/^[0-9a-f]{8,64}$/.test(id)) throw new Error(`bad session id ${JSON.stringify(id)}`);
  return id;
}

export interface Frame {
  code: number;
  stdoutBytes: number;
  stderrBytes: number;
  /** The host-side number of a kept long stdout. */
  n?: string;
  pub?: string;
  noKey: boolean;
  out: Buffer;
  err: Buffer;
}

/** Parses the wrapper's answer; undefined when the stdout holds no frame (the wrapper itself failed). */
export function parseFrame(stdout: string): Frame | undefined {
  const lines = stdout.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`${FRAME_MAGIC} `));
  if (start < 0) return undefined;
  const [, code, os, es, n] = lines[start].trim().split(' ');
  const f: Frame = {
    code: Number(code),
    stdoutBytes: Number(os),
    stderrBytes: Number(es),
    n,
    noKey: false,
    out: Buffer.alloc(0),
    err: Buffer.alloc(0)
  };
  for (const l of lines.slice(start + 1)) {
    if (l.startsWith('@@pub ')) f.pub = Buffer.from(l.slice(6).trim(), 'base64').toString('utf8');
    else if (l.trim() === '@@nokey') f.noKey = true;
    else if (l.startsWith('@@out ')) f.out = Buffer.from(l.slice(6).trim(), 'base64');
    else if (l.startsWith('@@err ')) f.err = Buffer.from(l.slice(6).trim(), 'base64');
  }
  return f;
}
