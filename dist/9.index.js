export const id = 9;
export const ids = [9];
export const modules = {

/***/ 58009:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {

// ESM COMPAT FLAG
__webpack_require__.r(__webpack_exports__);

// EXPORTS
__webpack_require__.d(__webpack_exports__, {
  connectSsm: () => (/* binding */ connectSsm),
  executionTimeoutFor: () => (/* binding */ executionTimeoutFor)
});

;// CONCATENATED MODULE: ./src/transport/ssm/errors.ts
/** What an SSM (or EC2) error means for the user: the call, the instance, and what to check. */
const CREDENTIALS = /CredentialsProviderError|Could not load credentials|UnrecognizedClientException|InvalidClientTokenId|ExpiredToken|security token/i;
/** The error of an SSM call, explained (the original name and message are kept at the end). */
function explainSsmError(call, instanceId, region, e) {
    const err = e;
    const name = err.name ?? 'Error';
    const raw = `${name}: ${err.message ?? String(e)}`;
    let why;
    if (CREDENTIALS.test(`${name} ${err.message}`)) {
        why = 'no usable AWS credentials on the runner: add aws-actions/configure-aws-credentials (OIDC) before this step';
    }
    else if (name === 'AccessDeniedException' || /not authorized|AccessDenied/i.test(raw)) {
        why =
            call === 'SendCommand'
                ? `the job's role may not run commands on ${instanceId}: it needs ssm:SendCommand on arn:aws:ssm:${region}::document/AWS-RunShellScript and on the instance (arn:aws:ec2:${region}:<account>:instance/${instanceId}, or a tag condition that matches it)`
                : `the job's role needs ssm:${call} (resource "*" or the command)`;
    }
    else if (name === 'InvalidInstanceId') {
        why = `${instanceId} is not a managed node SSM can reach in ${region}: is the instance running, in this region and account, with the SSM agent running and an instance profile that allows it (AmazonSSMManagedInstanceCore)? It must show as Online in Systems Manager → Fleet Manager`;
    }
    else if (name === 'InvalidDocument' || name === 'InvalidParameters') {
        why = 'SSM refused the AWS-RunShellScript document or its parameters';
    }
    else if (name === 'ThrottlingException' || name === 'TooManyUpdates') {
        why = "SSM kept throttling the calls (the account's Run Command rate); fewer hosts at once (max-parallel) helps";
    }
    else if (/ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|socket hang up|getaddrinfo/i.test(raw)) {
        why = `the SSM endpoint for ${region} is not reachable from the runner (network, proxy, or AWS_ENDPOINT_URL_SSM)`;
    }
    else {
        why = 'SSM failed';
    }
    return Object.assign(new Error(`SSM ${call} for ${instanceId} failed: ${why} (${raw})`), { awsName: name });
}
/** A command that ended without running our wrapper to the end: what its SSM status means. */
function explainStatus(status, details, instanceId) {
    // GetCommandInvocation's Status is coarse (TimedOut covers both timeouts): StatusDetails says which.
    switch (details && details !== status ? details : status) {
        case 'Undeliverable':
        case 'DeliveryTimedOut':
            return `the command never reached ${instanceId} (${details ?? status}): the SSM agent is offline or the instance is stopped; check it shows as Online in Systems Manager → Fleet Manager`;
        case 'ExecutionTimedOut':
        case 'TimedOut':
            return `the command on ${instanceId} ran past its executionTimeout (${details ?? status})`;
        case 'Terminated':
            return `the command on ${instanceId} was terminated (${details ?? status}): the instance may have stopped or rebooted`;
        case 'Cancelled':
        case 'Cancelling':
            return `the command on ${instanceId} was cancelled (CancelCommand)`;
        default:
            return `the command on ${instanceId} ended with status ${status}${details ? ` (${details})` : ''}`;
    }
}

// EXTERNAL MODULE: external "node:crypto"
var external_node_crypto_ = __webpack_require__(77598);
var external_node_crypto_default = /*#__PURE__*/__webpack_require__.n(external_node_crypto_);
;// CONCATENATED MODULE: ./src/transport/ssm/seal.ts
/**
 * Sealing a secret (stdin of a command: the registry password, the env file) to the one-time public key a host made
 * for this session, so that SSM's command history and CloudTrail, which keep every parameter, only ever hold the
 * sealed form. Only the host can open it, with the stock `openssl` CLI (OpenSSL 1.0.2 to 3.x, so AL2, AL2023, Ubuntu):
 *
 *   pass = 32 random bytes, hex                         a one-time passphrase
 *   key  = RSA-OAEP(SHA-256, MGF1-SHA-256)(pass)        `openssl pkeyutl -decrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256`
 *   data = "Salted__" | salt | AES-256-CBC(payload)      `openssl enc -d -aes-256-cbc -md sha256 -pass file:…`
 *          with key|iv = EVP_BytesToKey(SHA-256, salt, pass, 1 round)
 *
 * The passphrase is 256 random bits, so the one-round key derivation costs nothing in strength; it reaches openssl in
 * a root-only file (never on a command line, where `ps` would show it). No MAC: who can send SSM commands to the host
 * runs anything as root there anyway, and TLS protects the request; a damaged ciphertext fails to decrypt.
 */

function seal(publicKeyPem, plaintext) {
    const pass = Buffer.from(external_node_crypto_default().randomBytes(32).toString('hex'), 'utf8');
    const key = external_node_crypto_default().publicEncrypt({ key: publicKeyPem, padding: (external_node_crypto_default()).constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, pass);
    const salt = external_node_crypto_default().randomBytes(8);
    const { key: aesKey, iv } = bytesToKey(pass, salt);
    const cipher = external_node_crypto_default().createCipheriv('aes-256-cbc', aesKey, iv);
    const ct = Buffer.concat([cipher.update(Buffer.from(plaintext)), cipher.final()]);
    return { key: key.toString('base64'), data: Buffer.concat([Buffer.from('Salted__'), salt, ct]).toString('base64') };
}
/** OpenSSL's EVP_BytesToKey with SHA-256 and one round: key (32) and iv (16). */
function bytesToKey(pass, salt) {
    let d = Buffer.alloc(0);
    let out = Buffer.alloc(0);
    while (out.length < 48) {
        d = external_node_crypto_default().createHash('sha256')
            .update(Buffer.concat([d, pass, salt]))
            .digest();
        out = Buffer.concat([out, d]);
    }
    return { key: out.subarray(0, 32), iv: out.subarray(32, 48) };
}

;// CONCATENATED MODULE: ./src/transport/ssm/wrapper.ts
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

const FRAME_MAGIC = '@@bgssm1';
/** Raw bytes of stdout in the first answer: 12,000 bytes are 16,000 base64 characters, well under SSM's 24,000 cut. */
const FIRST_OUT_BYTES = 12000;
/** Raw bytes per later piece (20,000 base64 characters). A multiple of the wrapper's dd block (1000). */
const PIECE_BYTES = 15000;
/** stderr is only read for error messages: its tail. */
const ERR_TAIL_BYTES = 3000;
/** The most stdout one command may hand back (the rest is cut, with a note): protocol output is small. */
const MAX_OUT_BYTES = 1024 * 1024;
/** A session directory nobody used for this long (and no command running in it) is removed by its reaper. */
const SESSION_IDLE_SECONDS = 1800;
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
function commandLines(payload) {
    const text = [REAPER_LAUNCH, `idle=${SESSION_IDLE_SECONDS}`, WRAPPER, `main <<'${DELIM}'`, ...payload, DELIM].join('\n');
    return text.split('\n');
}
const b64 = (s) => Buffer.from(s).toString('base64');
/** The payload of a command: script body and positional arguments as data, stdin sealed (or none). */
function runPayload(sessionId, body, args, opts) {
    for (const a of [body, ...args])
        if (a.includes('\0'))
            throw new Error('a NUL byte cannot be passed to a shell');
    const user = opts.runAs ?? 'root';
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/.test(user))
        throw new Error(`bad user ${JSON.stringify(user)}`);
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
function fetchPayload(sessionId, n, offset, length, last) {
    if (!/^\d+$/.test(n) || offset % 1000 !== 0)
        throw new Error(`bad piece ${n} at ${offset}`);
    return [`bgssm1 fetch ${checkSession(sessionId)} ${last ? 'last' : 'more'}`, `${n} ${offset} ${length}`];
}
/** Removes the session directory (key, kept outputs) and stops its reaper. */
function closePayload(sessionId) {
    return [`bgssm1 close ${checkSession(sessionId)} no`];
}
function newSessionId() {
    return external_node_crypto_default().randomBytes(8).toString('hex');
}
function checkSession(id) {
    if (!/^[0-9a-f]{8,64}$/.test(id))
        throw new Error(`bad session id ${JSON.stringify(id)}`);
    return id;
}
/** Parses the wrapper's answer; undefined when the stdout holds no frame (the wrapper itself failed). */
function parseFrame(stdout) {
    const lines = stdout.split('\n');
    const start = lines.findIndex((l) => l.startsWith(`${FRAME_MAGIC} `));
    if (start < 0)
        return undefined;
    const [, code, os, es, n] = lines[start].trim().split(' ');
    const f = {
        code: Number(code),
        stdoutBytes: Number(os),
        stderrBytes: Number(es),
        n,
        noKey: false,
        out: Buffer.alloc(0),
        err: Buffer.alloc(0)
    };
    for (const l of lines.slice(start + 1)) {
        if (l.startsWith('@@pub '))
            f.pub = Buffer.from(l.slice(6).trim(), 'base64').toString('utf8');
        else if (l.trim() === '@@nokey')
            f.noKey = true;
        else if (l.startsWith('@@out '))
            f.out = Buffer.from(l.slice(6).trim(), 'base64');
        else if (l.startsWith('@@err '))
            f.err = Buffer.from(l.slice(6).trim(), 'base64');
    }
    return f;
}

;// CONCATENATED MODULE: ./src/transport/ssm/host.ts



const TERMINAL = new Set([
    'Success',
    'Failed',
    'Cancelled',
    'TimedOut',
    'Cancelling',
    'Undeliverable',
    'Terminated',
    'DeliveryTimedOut',
    'ExecutionTimedOut',
    'InvalidPlatform',
    'AccessDenied'
]);
class CommandCancelledError extends Error {
}
class SsmHost {
    target;
    sdk;
    opts;
    closed = false;
    sessionId = newSessionId();
    pub;
    commands = 0;
    inFlight = new Set();
    /** Every command not finished yet (close waits for them). */
    running = new Set();
    sleep;
    /** The close command, once sent (tests wait for it). */
    closing;
    constructor(target, sdk, opts) {
        this.target = target;
        this.sdk = sdk;
        this.opts = opts;
        this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
        opts.signal?.addEventListener('abort', () => void this.cancelInFlight(), { once: true });
    }
    get instanceId() {
        return this.target.host;
    }
    isConnected() {
        return !this.closed;
    }
    /**
     * Ends the session: removes the host's session directory (the private key, kept outputs) once the commands still
     * running have ended (a lease renewal or image listing in flight would otherwise make it again). Not waited for:
     * only SendCommand is needed, and the reaper removes the directory anyway once idle.
     */
    close() {
        if (this.closed)
            return;
        this.closed = true;
        if (this.commands === 0)
            return;
        this.closing = Promise.allSettled([...this.running])
            .then(() => this.send(commandLines(closePayload(this.sessionId))))
            .then(() => undefined, () => undefined);
    }
    async run(body, args = [], opts = {}) {
        if (this.closed)
            throw new Error(`the SSM session to ${this.target.label} was closed`);
        const stdin = opts.stdin ?? '';
        let frame;
        for (let attempt = 0; attempt < 2 && !frame; attempt++) {
            let wish = this.commands === 0 ? 'key-if-missing' : 'no';
            if (stdin && !this.pub) {
                // Sealed stdin needs the session key first (the first command makes it; it expires when idle).
                await this.invoke(runPayload(this.sessionId, ':', [], { wantKey: 'key' }));
                wish = 'no';
            }
            const sealed = stdin ? seal(this.pub, stdin) : undefined;
            const f = await this.invoke(runPayload(this.sessionId, body, args, { wantKey: wish, sealed, runAs: this.target.user }));
            if (f.noKey) {
                this.pub = undefined;
                continue;
            }
            frame = f;
        }
        if (!frame)
            throw new Error(`SSM: ${this.target.label} could not open the sealed stdin with a fresh session key twice in a row (is openssl on the host OpenSSL 1.0.2 or newer, with RSA-OAEP SHA-256?)`);
        const stdout = (await this.fullStdout(frame)).toString('utf8');
        const stderr = (frame.stderrBytes > frame.err.length ? '…' : '') + frame.err.toString('utf8');
        if (opts.onLine) {
            for (const l of splitLines(stdout))
                opts.onLine(l, 'stdout');
            for (const l of splitLines(stderr))
                opts.onLine(l, 'stderr');
        }
        return { code: frame.code, signal: null, stdout, stderr };
    }
    /** The first piece came with the answer; a longer stdout is read in pieces (each well under SSM's output cut). */
    async fullStdout(frame) {
        const parts = [frame.out];
        let have = frame.out.length;
        const total = Math.min(frame.stdoutBytes, MAX_OUT_BYTES);
        while (have < total && frame.n) {
            const len = Math.min(PIECE_BYTES, total - have);
            const last = have + len >= total;
            const f = await this.invoke(fetchPayload(this.sessionId, frame.n, have, len, last));
            if (!f.out.length)
                break;
            parts.push(f.out);
            have += f.out.length;
        }
        if (frame.stdoutBytes > MAX_OUT_BYTES)
            parts.push(Buffer.from(`\n… (output cut at ${MAX_OUT_BYTES} bytes of ${frame.stdoutBytes})\n`));
        return Buffer.concat(parts);
    }
    /** One command: send, wait, parse the wrapper's frame. */
    invoke(payload) {
        const p = this.invokeOnce(payload);
        this.running.add(p);
        void p.finally(() => this.running.delete(p)).catch(() => undefined);
        return p;
    }
    async invokeOnce(payload) {
        const before = this.opts.signal?.aborted ?? false;
        const commandId = await this.send(commandLines(payload));
        this.commands++;
        this.inFlight.add(commandId);
        // The cancel came while SendCommand was on its way: this command belongs to what was cancelled.
        if (!before && this.opts.signal?.aborted)
            void this.cancel(commandId);
        try {
            const inv = await this.wait(commandId);
            const frame = parseFrame(inv.StandardOutputContent ?? '');
            if (frame?.pub)
                this.pub = frame.pub;
            if (frame)
                return frame;
            if (inv.Status === 'Success' || inv.Status === 'Failed') {
                const err = (inv.StandardErrorContent ?? '').trim().split('\n').slice(-5).join('\n');
                throw new Error(`SSM: the command wrapper failed on ${this.target.label} (exit ${inv.ResponseCode ?? '?'})${err ? `: ${err}` : ''}`);
            }
            const msg = explainStatus(inv.Status ?? 'unknown', inv.StatusDetails, this.target.label);
            if (inv.Status === 'Cancelled' || inv.Status === 'Cancelling')
                throw new CommandCancelledError(`${msg}: the run was cancelled`);
            throw new Error(msg);
        }
        finally {
            this.inFlight.delete(commandId);
        }
    }
    async send(commands) {
        const input = {
            InstanceIds: [this.instanceId],
            DocumentName: 'AWS-RunShellScript',
            Parameters: { commands, executionTimeout: [String(this.opts.executionTimeoutSeconds)] },
            TimeoutSeconds: Math.max(30, this.opts.deliveryTimeoutSeconds ?? 60),
            Comment: (this.opts.comment ?? 'bluegreen-ec2-action').slice(0, 100)
        };
        const out = (await this.retryThrottled(() => this.sdk.client.send(new this.sdk.SendCommandCommand(input))).catch((e) => {
            throw explainSsmError('SendCommand', this.target.label, this.opts.region, e);
        }));
        const id = out.Command?.CommandId;
        if (!id)
            throw new Error(`SSM SendCommand for ${this.target.label} returned no command id`);
        return id;
    }
    /** Polls GetCommandInvocation with a short backoff until the command ended. */
    async wait(commandId) {
        const poll = this.opts.pollMs ?? { first: 100, max: 1000 };
        const graceUntil = Date.now() + (this.opts.invocationGraceMs ?? 30_000);
        let delay = poll.first;
        for (;;) {
            await this.sleep(delay);
            delay = Math.min(poll.max, Math.round(delay * 1.5));
            let inv;
            try {
                inv = (await this.retryThrottled(() => this.sdk.client.send(new this.sdk.GetCommandInvocationCommand({ CommandId: commandId, InstanceId: this.instanceId }))));
            }
            catch (e) {
                // Right after SendCommand the invocation may not exist yet.
                if (e.name === 'InvocationDoesNotExist' && Date.now() < graceUntil)
                    continue;
                throw explainSsmError('GetCommandInvocation', this.target.label, this.opts.region, e);
            }
            if (inv.Status && TERMINAL.has(inv.Status))
                return inv;
        }
    }
    /** ThrottlingException (on top of the SDK's own retries): wait and try again, up to about half a minute. */
    async retryThrottled(call) {
        let wait = 200;
        for (let i = 0;; i++) {
            try {
                return await call();
            }
            catch (e) {
                const name = e.name;
                if ((name !== 'ThrottlingException' && name !== 'TooManyRequestsException') || i >= 8)
                    throw e;
                await this.sleep(wait + Math.floor(Math.random() * wait));
                wait = Math.min(5000, wait * 2);
            }
        }
    }
    /** The run was cancelled: stop what runs now; the undo's commands come after and run. */
    async cancelInFlight() {
        await Promise.all([...this.inFlight].map((id) => this.cancel(id)));
    }
    async cancel(commandId) {
        await this.retryThrottled(() => this.sdk.client.send(new this.sdk.CancelCommandCommand({ CommandId: commandId, InstanceIds: [this.instanceId] }))).catch(() => undefined);
    }
}
function splitLines(s) {
    if (!s)
        return [];
    const lines = s.split('\n');
    if (lines[lines.length - 1] === '')
        lines.pop();
    return lines;
}

;// CONCATENATED MODULE: ./src/transport/ssm/connect.ts

let sdk;
let sdkRegion = '';
async function loadSdk(region) {
    if (!sdk || sdkRegion !== region) {
        sdkRegion = region;
        sdk = Promise.all(/* import() */[__webpack_require__.e(861), __webpack_require__.e(736)]).then(__webpack_require__.t.bind(__webpack_require__, 34736, 19)).then((m) => ({
            client: new m.SSMClient({ region, maxAttempts: 4 }),
            SendCommandCommand: m.SendCommandCommand,
            GetCommandInvocationCommand: m.GetCommandInvocationCommand,
            CancelCommandCommand: m.CancelCommandCommand
        }));
    }
    return sdk;
}
/**
 * executionTimeout of a command: the longest one can legitimately run is the lock wait (lock-timeout-seconds) or a
 * drain in the run (wait-for-drain) or a health wait; ten minutes more, at least an hour (SSM's default).
 */
function executionTimeoutFor(cfg) {
    const longest = Math.max(cfg.lockTimeoutSeconds, Math.ceil(cfg.drainMs / 1000) + cfg.stopTimeoutSeconds, Math.ceil(cfg.healthTimeoutMs / 1000));
    return Math.min(172800, Math.max(3600, longest + 600));
}
async function connectSsm(target, cfg, signal) {
    const region = cfg.awsRegion;
    return new SsmHost(target, await loadSdk(region), {
        region,
        executionTimeoutSeconds: executionTimeoutFor(cfg),
        signal,
        comment: `bluegreen-ec2-action ${cfg.command} ${cfg.app}`
    });
}


/***/ })

};
