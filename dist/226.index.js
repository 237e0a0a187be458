export const id = 226;
export const ids = [226];
export const modules = {

/***/ 10226:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {


// EXPORTS
__webpack_require__.d(__webpack_exports__, {
  run: () => (/* binding */ run)
});

// EXTERNAL MODULE: external "node:crypto"
var external_node_crypto_ = __webpack_require__(77598);
var external_node_crypto_default = /*#__PURE__*/__webpack_require__.n(external_node_crypto_);
// EXTERNAL MODULE: external "node:fs"
var external_node_fs_ = __webpack_require__(73024);
// EXTERNAL MODULE: external "node:os"
var external_node_os_ = __webpack_require__(48161);
;// CONCATENATED MODULE: ./src/log/workflow.ts
/**
 * The GitHub Actions workflow commands this action uses, written as @actions/core writes them (same escaping, same
 * file commands), without loading @actions/core: its OIDC client pulls @actions/http-client, undici, tunnel and
 * @actions/exec into the bundle's start, about 1 MB that every run compiled before its first SSH byte. The artifact
 * client, loaded only to upload, still brings its own copy.
 */



/** @actions/core's toCommandValue: strings as they are, nothing as '', anything else as JSON. */
function commandValue(v) {
    if (v === null || v === undefined)
        return '';
    return typeof v === 'string' || v instanceof String ? String(v) : JSON.stringify(v);
}
const escapeData = (s) => commandValue(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
const escapeProperty = (s) => escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
/** `::name key=value,...::message` on stdout, which the runner reads as a command. */
function issueCommand(name, properties, message) {
    const props = Object.entries(properties)
        .filter(([, v]) => v)
        .map(([k, v]) => `${k}=${escapeProperty(v)}`)
        .join(',');
    process.stdout.write(`::${name}${props ? ` ${props}` : ''}::${escapeData(message)}${external_node_os_.EOL}`);
}
const annotation = (p) => ({ title: p.title });
const workflow_text = (m) => (m instanceof Error ? m.toString() : m);
function info(message) {
    process.stdout.write(message + external_node_os_.EOL);
}
function debug(message) {
    issueCommand('debug', {}, message);
}
function workflow_warning(message, properties = {}) {
    issueCommand('warning', annotation(properties), workflow_text(message));
}
function error(message, properties = {}) {
    issueCommand('error', annotation(properties), workflow_text(message));
}
/** Fails the step (exit code 1 once the process ends) with an error annotation. */
function setFailed(message) {
    process.exitCode = 1;
    error(message);
}
function setSecret(secret) {
    issueCommand('add-mask', {}, secret);
}
function startGroup(name) {
    issueCommand('group', {}, name);
}
function endGroup() {
    issueCommand('endgroup', {}, '');
}
/** A step output: appended to $GITHUB_OUTPUT as a heredoc with a random delimiter (or the old ::set-output). */
function setOutput(name, value) {
    const file = process.env.GITHUB_OUTPUT;
    const v = commandValue(value);
    if (!file) {
        process.stdout.write(external_node_os_.EOL);
        issueCommand('set-output', { name }, v);
        return;
    }
    if (!(0,external_node_fs_.existsSync)(file))
        throw new Error(`Missing file at path: ${file}`);
    const delimiter = `ghadelimiter_${(0,external_node_crypto_.randomUUID)()}`;
    if (name.includes(delimiter) || v.includes(delimiter))
        throw new Error(`Unexpected input: the output ${name} holds its delimiter`);
    (0,external_node_fs_.appendFileSync)(file, `${name}<<${delimiter}${external_node_os_.EOL}${v}${external_node_os_.EOL}${delimiter}${external_node_os_.EOL}`, { encoding: 'utf8' });
}
/** The job summary ($GITHUB_STEP_SUMMARY), appended to as `core.summary.addRaw(markdown).write()` does. */
const summary = {
    addRaw(markdown) {
        return {
            async write() {
                const file = process.env.GITHUB_STEP_SUMMARY;
                if (!file)
                    throw new Error('Unable to find environment variable for $GITHUB_STEP_SUMMARY. Check if your runtime environment supports job summaries.');
                await external_node_fs_.promises.appendFile(file, markdown, { encoding: 'utf8' });
            }
        };
    }
};

// EXTERNAL MODULE: external "node:path"
var external_node_path_ = __webpack_require__(76760);
;// CONCATENATED MODULE: ./src/model/image.ts
/** Docker image references: `[registry/]repository[:tag][@sha256:digest]`. */
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN = '(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:]+\\])(?::[0-9]{1,5})?';
const NAME_RE = new RegExp(`^(?:(${DOMAIN})/)?(${COMPONENT}(?:/${COMPONENT})*)$`);
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
/** Parse an image reference; returns an error text instead of throwing. */
function parseImage(value) {
    if (value.length > 512)
        return 'is longer than 512 characters';
    let rest = value;
    let digest;
    const at = rest.indexOf('@');
    if (at >= 0) {
        digest = rest.slice(at + 1);
        rest = rest.slice(0, at);
        if (!DIGEST_RE.test(digest))
            return `has an invalid digest "${digest}" (expected sha256: and 64 hex digits)`;
    }
    let tag;
    const lastSlash = rest.lastIndexOf('/');
    const colon = rest.lastIndexOf(':');
    if (colon > lastSlash) {
        tag = rest.slice(colon + 1);
        rest = rest.slice(0, colon);
        if (!TAG_RE.test(tag))
            return `has an invalid tag "${tag}"`;
    }
    const m = NAME_RE.exec(rest);
    if (!m)
        return 'is not a valid repository name (lowercase letters, digits, and . _ - separators, optionally behind a registry host)';
    let registry = m[1] ?? '';
    // A first component without '.' or ':' that is not localhost is a Docker Hub namespace, not a host.
    if (registry && !/[.:]/.test(registry) && registry !== 'localhost' && !registry.startsWith('[')) {
        if (!new RegExp(`^${COMPONENT}$`).test(registry))
            return 'is not a valid repository name';
        registry = '';
    }
    return { registry, repository: rest, tag, digest };
}
/** The reference to pull: digest wins over tag. */
function imageReference(ref) {
    if (ref.digest)
        return `${ref.repository}@${ref.digest}`;
    return `${ref.repository}:${ref.tag ?? 'latest'}`;
}
/** `us-east-1` from `123456789012.dkr.ecr.us-east-1.amazonaws.com`. */
function ecrRegion(registry) {
    return /^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(registry)?.[1];
}

;// CONCATENATED MODULE: ./src/remote/shell.ts
/**
 * Shell quoting for commands that run on the host. Every value that reaches a remote
 * shell goes through `quote`; scripts are assembled from argument lists, never from
 * interpolated strings.
 */
/** A fragment of shell text that is already safe to splice (built only by this module). */
class Raw {
    text;
    constructor(text) {
        this.text = text;
    }
    toString() {
        return this.text;
    }
}
/** Marks trusted, constant shell text (operators, variable references written by us). */
function raw(text) {
    return new Raw(text);
}
const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;
/** POSIX single-quote a value: the result is always exactly one shell word with no expansion. */
function quote(value) {
    if (value.includes('\0'))
        throw new Error('a NUL byte cannot be passed to a shell');
    if (value !== '' && SAFE.test(value))
        return value;
    return `'${value.replace(/'/g, `'\\''`)}'`;
}
/** Join an argument list into one shell command line; strings are quoted, Raw is spliced. */
function cmd(...args) {
    return args.map((a) => (a instanceof Raw ? a.text : quote(String(a)))).join(' ');
}
/** A POSIX sh script from lines; run as `sh -c <script>` so the user's login shell does not matter. */
function script(lines) {
    return lines.filter((l) => l !== '').join('\n');
}
/** The command line that runs a script with POSIX sh regardless of the login shell. */
function shInvocation(body, args = []) {
    return cmd('sh', '-c', body, 'sh', ...args);
}
/**
 * Split a user-supplied argument string (like `docker-run-args`) into words with
 * POSIX-like quoting rules, without ever evaluating anything.
 */
function splitWords(input) {
    const words = [];
    let cur = '';
    let inWord = false;
    let i = 0;
    while (i < input.length) {
        const c = input[i];
        if (c === "'") {
            const end = input.indexOf("'", i + 1);
            if (end < 0)
                throw new Error('unterminated single quote');
            cur += input.slice(i + 1, end);
            inWord = true;
            i = end + 1;
        }
        else if (c === '"') {
            i++;
            let closed = false;
            while (i < input.length) {
                const d = input[i];
                if (d === '"') {
                    closed = true;
                    i++;
                    break;
                }
                if (d === '\\' && i + 1 < input.length && '"\\$`'.includes(input[i + 1])) {
                    cur += input[i + 1];
                    i += 2;
                    continue;
                }
                cur += d;
                i++;
            }
            if (!closed)
                throw new Error('unterminated double quote');
            inWord = true;
        }
        else if (c === '\\') {
            if (i + 1 >= input.length)
                throw new Error('trailing backslash');
            if (input[i + 1] !== '\n') {
                cur += input[i + 1];
                inWord = true;
            }
            i += 2;
        }
        else if (/\s/.test(c)) {
            if (inWord)
                words.push(cur);
            cur = '';
            inWord = false;
            i++;
        }
        else {
            cur += c;
            inWord = true;
            i++;
        }
    }
    if (inWord)
        words.push(cur);
    return words;
}

;// CONCATENATED MODULE: ./src/remote/common.ts
/**
 * What the remote script builders (see scripts.ts) share: the script type, the docker and trap preambles, and the
 * lease and secret-file shell helpers. Private to src/remote except what scripts.ts re-exports.
 */

/** Defines `D` as the docker command (e.g. `sudo -n docker`) for the script that follows. */
function dockerFn(dockerCommand) {
    return `D() { ${cmd(...dockerCommand)} "$@"; }`;
}
const TRAPS = `trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM`;
/** Where the action keeps per-app state on the host, relative to the SSH user's home. */
const stateDir = (app) => `.bluegreen/${app}`;
/**
 * Shell helpers for `$dir/lease`, one line `<token> <expires-epoch-s> <owner-json>` (token `<deployId>.<nonce>`).
 * Every read-modify-write happens in `under_lock`, which holds `$dir/lock` (the file older versions of the action
 * held for their whole run, so such a run still excludes us) only for the milliseconds the change takes: fd 9 is
 * open in the subshell alone, and nothing that waits (the keeper's heartbeat read) ever holds it.
 */
const LEASE_FNS = [
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
function secretTempLines(prefix, kind) {
    return [
        `for _s in "\${TMPDIR:-/tmp}"/${prefix}.[0-9]*.*; do`,
        '  [ -O "$_s" ] || continue; _p=${_s##*/}; _p=${_p#*.}; _p=${_p%%.*}',
        '  kill -0 "$_p" 2>/dev/null || rm -rf -- "$_s" || :',
        'done',
        `secret_tmp=$(mktemp ${kind === 'dir' ? '-d ' : ''}"\${TMPDIR:-/tmp}/${prefix}.$$.XXXXXX")`
    ];
}

;// CONCATENATED MODULE: ./src/remote/lease.ts
/** The app's deploy lease on the host: take, keep, renew and release it, and fence scripts on it. */

/**
 * How long a deploy lease lives without a renewal. The runner renews it every LEASE_HEARTBEAT_MS; a runner that
 * vanishes (VM gone, network partition: its connection goes silent and is never closed) loses it this long after
 * its last heartbeat, without waiting for sshd or TCP to notice the dead connection.
 */
const LEASE_TTL_SECONDS = 30;
const LEASE_HEARTBEAT_MS = 5000;
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
function lockScript(app, token, owner, timeoutSeconds, opts = {}) {
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
function renewLeaseScript(app, token, ttlSeconds = LEASE_TTL_SECONDS) {
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
function releaseLeaseScript(app, token) {
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
const LEASE_GUARD = [
    'lease_ok() {',
    '  _lf=".bluegreen/$1/lease"; [ -s "$_lf" ] || return 1',
    '  read -r _lt _le _lo < "$_lf" || [ -n "$_lt" ] || return 1',
    '  case "$_le" in ""|*[!0-9]*) return 1 ;; esac',
    '  [ "${_lt%.*}" = "$2" ] && [ "$_le" -gt "$(date +%s)" ]',
    '}'
].join('\n');
/** First line of a script wrapped by afterLease (the fake host and tests recognise it by this). */
const AFTER_LEASE = '# after-lease';
/**
 * `s`, run only once this deploy holds the app's lease: sent together with the lock command (pipelined, so it costs
 * no round trip of its own), it waits on the host (polling, up to about `waitSeconds`) until lease_ok says the
 * lease carries `deployId`, then runs `s` with its own positional arguments. Exit 75 (`@@no-lease` on stderr) when the
 * lease never became ours.
 */
function afterLease(app, deployId, waitSeconds, s) {
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

;// CONCATENATED MODULE: ./src/remote/pull.ts
/** Registry credentials (docker's config.json) and the image pull on the host. */

/** The key docker's config.json files a registry's credentials under (Docker Hub's is its v1 index URL, as `docker login` writes it). */
function dockerAuthKey(registry) {
    return ['', 'docker.io', 'index.docker.io', 'registry-1.docker.io'].includes(registry)
        ? 'https://index.docker.io/v1/'
        : registry;
}
/**
 * A DOCKER_CONFIG's config.json holding one registry's credentials: what `docker login` writes, without its process
 * start and its extra exchange with the registry on the pull's critical path (the pull itself presents them; the
 * registry refusing them fails the pull with "unauthorized"). A secret: sent on stdin only.
 */
function dockerConfigJson(registry, username, password) {
    return `${JSON.stringify({ auths: { [dockerAuthKey(registry)]: { auth: dockerAuthValue(username, password) } } })}\n`;
}
/** config.json's `auth`: base64 of `user:password`, as secret as the password (masked like it). */
function dockerAuthValue(username, password) {
    return Buffer.from(`${username}:${password}`).toString('base64');
}
/**
 * Registry login with a throwaway DOCKER_CONFIG (removed on any exit), pull, and the digests. With a password the
 * login is writing config.json from stdin (see dockerConfigJson); ecr-on-host runs `aws ecr get-login-password |
 * docker login` on the host. Prints `@@step login`, `@@step pull`, `@@digests` markers so the runner can time each part.
 */
function pullScript(dockerCommand, image, login) {
    const lines = ['set -e', dockerFn(dockerCommand), TRAPS, 'img=$1'];
    let cfg = '';
    if (login.kind !== 'none') {
        lines.push(...secretTempLines('bluegreen-login', 'dir'), 'cfg=$secret_tmp', `trap 'rm -rf "$cfg"' EXIT`, 'echo "@@step login"');
        if (login.kind === 'password')
            lines.push('cat > "$cfg/config.json"');
        else
            lines.push('command -v aws >/dev/null 2>&1 || { echo "the AWS CLI (aws) is not installed on the host, which registry-auth ecr-on-host needs" >&2; exit 127; }', 'aws ecr get-login-password --region "$3" | D --config "$cfg" login --username AWS --password-stdin "$2"');
        cfg = '--config "$cfg" ';
    }
    lines.push('echo "@@step pull"', `D ${cfg}pull "$img"`, 'echo "@@digests"', `D image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$img"`);
    const args = [image];
    if (login.kind === 'ecr-on-host')
        args.push(login.registry, login.region);
    return {
        body: lines.join('\n'),
        args,
        stdin: login.kind === 'password' ? dockerConfigJson(login.registry, login.username, login.password) : undefined
    };
}

;// CONCATENATED MODULE: ./src/remote/containers.ts
/** The app's containers on the host: detect, start, stop, swap, discard and restore them, their state, logs and images. */

/** One JSON object per container with only what the deploy needs (never the env, which holds secrets). */
const INSPECT_FORMAT = `'{"id":{{json .Id}},"name":{{json .Name}},"state":{{json .State.Status}},"running":{{json .State.Running}},"restarts":{{.RestartCount}},"labels":{{json .Config.Labels}}}'`;
/**
 * `ids`: the app's ($1) containers, by label or by the names we use, from one docker call (docker's filters cannot
 * say "label or name"): each container's id, name and app label. Exit 3 when docker does not answer.
 */
const APP_CONTAINER_IDS = [
    `l=$(D ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.Label "bluegreen.app"}}') || exit 3`,
    `ids=$(printf '%s\\n' "$l" | while read -r _id _n _a; do if [ "$_a" = "$1" ] || [ "$_n" = "$1-blue" ] || [ "$_n" = "$1-green" ]; then echo "$_id"; fi; done)`
];
/** Containers of the app (by label, or by the names we use), the upstream file and the recorded state. */
function detectScript(dockerCommand, app, upstreamFile) {
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
function startScript(dockerCommand, verb, name, removeExisting, envFile, dockerArgs) {
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
function containerStatusScript(dockerCommand, name, tailLines) {
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
function logsScript(dockerCommand, name, tailLines) {
    return {
        body: [dockerFn(dockerCommand), 'D logs --tail "$2" "$1" 2>&1'].join('\n'),
        args: [name, String(tailLines)]
    };
}
/** `docker stop` (kept for rollback). */
function stopScript(dockerCommand, name, timeoutSeconds) {
    return {
        body: [dockerFn(dockerCommand), 'D stop -t "$2" "$1" >/dev/null'].join('\n'),
        args: [name, String(timeoutSeconds)]
    };
}
/** Port-swap cut-over: stop the live container (if any), then start the candidate on the freed port. */
function portSwapScript(dockerCommand, stopName, startName, timeoutSeconds) {
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
function discardCandidateScript(dockerCommand, name, deployId) {
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
function restoreReplacedScript(dockerCommand, name) {
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
function startExistingScript(dockerCommand, name) {
    return { body: [dockerFn(dockerCommand), 'D start "$1" >/dev/null'].join('\n'), args: [name] };
}
/** The repository's images (newest first) and the image ids the named containers use. */
function listImagesScript(dockerCommand, repository, containers) {
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
function statusScript(dockerCommand, app, upstreamFile, historyLines, logLines) {
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

;// CONCATENATED MODULE: ./src/remote/health-scripts.ts
/** Health checks run on the host itself: the watcher of the health step and a one-shot HTTP probe. */


/** The one-line HTTP GET of httpProbeScript, for `bash -c` (args: port path timeout-seconds host). */
const DEV_TCP_PROBE = 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 7; printf "GET %s HTTP/1.0\\r\\nHost: %s\\r\\nUser-Agent: bluegreen-ec2-action\\r\\n\\r\\n" "$2" "$4" >&3; IFS= read -t "$3" -r line <&3 || { echo "no answer within $3 s" >&2; exit 8; }; printf "%s\\n" "$line"';
/**
 * The health step on the host itself, in one exchange: probes GET <path> on 127.0.0.1:<port> (curl, else bash's
 * /dev/tcp) one request at a time with `everySeconds` between them, and prints `@@healthy <status> <probes> <ms>` the
 * moment one answers 2xx, so the runner hears of it half a round trip later whatever its distance. The container's
 * state is read at the start and at most every 500 ms after a failed probe: `@@container <state> <restarts> <exit>`
 * (exit 3) when it is not running or restarted, `@@timeout <probes> <last answer>` (exit 4) after `timeoutMs`, each
 * followed by `@@logs` and the container's last log lines. `@@probe <n> <answer>` when a failed probe's answer changes.
 * `@@watch-unavailable` (exit 127): neither curl nor bash on the host (the runner probes itself then).
 */
function healthWatchScript(dockerCommand, name, port, path, host, everySeconds, timeoutMs, tailLines) {
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
function httpProbeScript(port, path, timeoutSeconds, host) {
    return {
        body: [
            'command -v bash >/dev/null 2>&1 || { echo "bash is needed on the host for health checks when TCP forwarding is disabled" >&2; exit 127; }',
            `exec ${cmd('bash', '-c', DEV_TCP_PROBE, 'bash')} "$1" "$2" "$3" "$4"`
        ].join('\n'),
        args: [String(port), path, String(timeoutSeconds), host ?? `127.0.0.1:${port}`]
    };
}

;// CONCATENATED MODULE: ./src/remote/finish.ts
/** After the switch: drain the old colour, stop it, clean up, and record the run. */


/**
 * A clock for host-side waits: `ms` prints milliseconds since the epoch (whole seconds × 1000 where `date` has
 * no %N), so every wait is bounded by time, not by a count of iterations that a loaded host stretches.
 */
const CLOCK = `ms() { t=$(date +%s%N 2>/dev/null); case "$t" in ""|*[!0-9]*) t=$(date +%s); echo $((t * 1000)) ;; *) echo $((t / 1000000)) ;; esac; }`;
/**
 * nginx-switch njs: nothing reloads, so there are no old workers to wait for. Instead waits until no established TCP
 * connection to 127.0.0.1:$1 is left on the host (nginx's connections to the old colour: in-flight requests and open
 * streams), at most $2 ms. Read from /proc/net/tcp and tcp6 (remote port $1, state 01 = ESTABLISHED), so no `ss` is
 * needed. Prints `@@drained <ms>` or `@@drain-timeout <connections left>`.
 */
function connectionDrainScript(port, maxMs) {
    return {
        body: [CLOCK, ...connectionDrainLoop('$1', '$2')].join('\n'),
        args: [String(port), String(Math.round(maxMs))]
    };
}
/** connectionDrainScript's loop, for the port and the ms in the shell words `port` and `maxMs` (CLOCK defined). */
function connectionDrainLoop(port, maxMs) {
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
/** Without a router's drain: wait drain-seconds by the clock ($2 ms), as far as the host can tell anything. */
const SLEEP_DRAIN = [
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
function finishScript(dockerCommand, app, opts) {
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
const HISTORY_KEEP = 200;
function recordScript(app, stateJson, historyLine, keep = HISTORY_KEEP) {
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

;// CONCATENATED MODULE: ./src/remote/scripts.ts
/**
 * Remote scripts, built by pure functions. Each returns a constant POSIX sh body plus the
 * values it needs as positional arguments (quoted by the transport) or as stdin (secrets,
 * file contents) — no value is ever spliced into shell text.
 *
 * The builders live in one module per concern (common, lease, pull, containers, health-scripts, finish); this
 * module re-exports them, so importers need not know which.
 */







;// CONCATENATED MODULE: ./src/model/results.ts
/** A failure attributed to a step; `logs` carries the candidate's last log lines when relevant. */
class StepError extends Error {
    step;
    logs;
    constructor(step, message, logs) {
        super(message);
        this.step = step;
        this.logs = logs;
        this.name = 'StepError';
    }
}
const other = (c) => (c === 'blue' ? 'green' : 'blue');

;// CONCATENATED MODULE: ./src/log/steps.ts

/** Times steps of one host, logs them, and turns any error into a StepError naming the step. */
class StepTimer {
    log;
    signal;
    steps = [];
    open;
    constructor(log, 
    /**
     * Aborted when the workflow run is cancelled (or the fleet stops this host): no new step starts; recovery
     * (soft steps) still runs. Replaced when a host that took its lock up front joins its rollout batch.
     */
    signal) {
        this.log = log;
        this.signal = signal;
    }
    /** Throws inside a step when the run was cancelled, so the usual recovery runs. */
    checkCancelled() {
        if (this.signal?.aborted)
            throw new StepError(this.open?.name ?? 'connect', `${cancelReason(this.signal)}; stopping here and cleaning up`);
    }
    begin(name) {
        if (this.open)
            this.end('ok');
        this.open = { name, start: Date.now() };
        this.log.begin(name);
    }
    end(status, detail) {
        if (!this.open)
            return undefined;
        const { name, start } = this.open;
        const endMs = Date.now();
        const rec = {
            name,
            startedAt: new Date(start).toISOString(),
            endedAt: new Date(endMs).toISOString(),
            durationMs: endMs - start,
            status,
            detail
        };
        this.steps.push(rec);
        this.open = undefined;
        this.log.end(name, status, rec.durationMs);
        return rec;
    }
    get current() {
        return this.open?.name;
    }
    async run(name, fn) {
        this.begin(name);
        try {
            this.checkCancelled();
            const value = await fn();
            if (this.open?.name === name)
                this.end('ok');
            else if (this.open)
                this.end('ok');
            return value;
        }
        catch (e) {
            const failedStep = this.open?.name ?? name;
            // The failing step is the one open now (a script can move through several steps).
            const err = new StepError(failedStep, e.message, e instanceof StepError ? e.logs : undefined);
            this.end('failed', err.message);
            throw err;
        }
    }
    /** A step whose failure is only a warning (after the new version is live). */
    async soft(name, fn) {
        this.begin(name);
        try {
            await fn();
            this.end('ok');
            return undefined;
        }
        catch (e) {
            const msg = e.message;
            this.log.warn(`${name}: ${msg}`);
            this.end('warning', msg);
            return `${name}: ${msg}`;
        }
    }
    /** Drops the open step unrecorded (it never really started: e.g. a host of the fleet whose lock was never tried). */
    abandon() {
        this.open = undefined;
    }
    /** Records a step measured elsewhere (e.g. connect before the timer existed). */
    record(rec) {
        this.steps.push(rec);
    }
}
/** Why a run stopped early: the workflow was cancelled, or (a string reason) another host of the fleet failed. */
function cancelReason(signal) {
    return typeof signal.reason === 'string' ? signal.reason : 'the workflow run was cancelled (SIGINT/SIGTERM)';
}

;// CONCATENATED MODULE: ./src/traffic/alb/elb.ts
const IAM_ACTION = {
    DescribeTargetGroups: 'elasticloadbalancing:DescribeTargetGroups',
    DescribeTargetGroupAttributes: 'elasticloadbalancing:DescribeTargetGroupAttributes',
    DescribeTargetHealth: 'elasticloadbalancing:DescribeTargetHealth',
    RegisterTargets: 'elasticloadbalancing:RegisterTargets',
    DeregisterTargets: 'elasticloadbalancing:DeregisterTargets',
    DescribeListeners: 'elasticloadbalancing:DescribeListeners',
    ModifyListener: 'elasticloadbalancing:ModifyListener',
    DescribeRules: 'elasticloadbalancing:DescribeRules',
    ModifyRule: 'elasticloadbalancing:ModifyRule'
};
/** An ALB call that failed, with the SDK's error name (for callers that decide on it). */
class ElbError extends Error {
    code;
    constructor(message, code) {
        super(message);
        this.code = code;
        this.name = 'ElbError';
    }
}
/** The message for a failed call: the call, the resource, what the ALB said and what to check. */
function explainElbError(call, resource, region, e) {
    const err = e;
    const code = (err.name && err.name !== 'Error' ? err.name : err.Code) ?? 'Error';
    const said = `${code.replace(/Exception$/, '')}: ${err.message}`;
    const short = code.replace(/Exception$/, '');
    let hint;
    if (/CredentialsProviderError|Could not load credentials/i.test(`${code} ${err.message}`)) {
        hint = `there are no AWS credentials on the runner for traffic: alb: add aws-actions/configure-aws-credentials before this step (${err.message})`;
        return new ElbError(`${call} ${resource}: ${hint}`, code);
    }
    if (/AccessDenied|UnauthorizedOperation|NotAuthorized|not authorized/i.test(`${code} ${err.message}`)) {
        hint = `the job's AWS identity may not call ${IAM_ACTION[call] ?? call}: allow it in the role's policy (README, ALB mode, lists every permission)`;
    }
    else if (short === 'TargetGroupNotFound') {
        hint = `${resource} does not exist in ${region}: check the name or ARN and aws-region`;
    }
    else if (short === 'ListenerNotFound') {
        hint = `${resource} does not exist in ${region}: check the ARN (aws elbv2 describe-listeners --load-balancer-arn …) and aws-region`;
    }
    else if (short === 'RuleNotFound') {
        hint = `${resource} does not exist in ${region}: check the ARN (aws elbv2 describe-rules --listener-arn …)`;
    }
    else if (short === 'InvalidTarget') {
        hint = `the ALB refused the target for ${resource}: an instance target must be a running instance in the group's VPC, an ip target an address in the VPC's ranges, and the port must be 1-65535`;
    }
    else if (short === 'TooManyTargets' || short === 'TooManyRegistrationsForTargetId') {
        hint = `a limit of the load balancer was reached registering in ${resource}`;
    }
    else if (short === 'OperationNotPermitted' || short === 'InvalidConfigurationRequest') {
        hint = `the ALB refused to change ${resource}`;
    }
    else if (/Throttl|TooManyRequests|RequestLimitExceeded/i.test(code)) {
        hint = `the ALB API throttled the call on ${resource} (retried ${3} times): try again, or deploy fewer hosts at once`;
    }
    else if (/ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|socket hang up|TimeoutError/i.test(`${code} ${err.message}`)) {
        hint = `the ELBv2 API in ${region} was not reachable from the runner for ${resource}`;
    }
    else {
        hint = `on ${resource} in ${region}`;
    }
    return new ElbError(`${call} failed: ${hint} (${said})`, code);
}
/** Loads the SDK only when traffic: alb is used: it stays out of every other run's cold start. */
async function loadElb(region) {
    const sdk = await Promise.all(/* import() */[__webpack_require__.e(861), __webpack_require__.e(586)]).then(__webpack_require__.t.bind(__webpack_require__, 50586, 19));
    return new Elb(new sdk.ElasticLoadBalancingV2Client({ region, maxAttempts: 3 }), sdk, region);
}
class Elb {
    client;
    sdk;
    region;
    constructor(client, sdk, region) {
        this.client = client;
        this.sdk = sdk;
        this.region = region;
    }
    close() {
        this.client.destroy?.();
    }
    async call(name, resource, command) {
        try {
            return (await this.client.send(command));
        }
        catch (e) {
            throw explainElbError(name, resource, this.region, e);
        }
    }
    /** A target group by name or ARN, with its target type and deregistration delay. */
    async targetGroup(nameOrArn, input) {
        const label = `${input} "${nameOrArn}"`;
        const byArn = nameOrArn.startsWith('arn:');
        const out = await this.call('DescribeTargetGroups', label, new this.sdk.DescribeTargetGroupsCommand(byArn ? { TargetGroupArns: [nameOrArn] } : { Names: [nameOrArn] }));
        const tg = out.TargetGroups?.[0];
        if (!tg?.TargetGroupArn)
            throw new ElbError(`DescribeTargetGroups failed: ${label} does not exist in ${this.region}: check the name or ARN and aws-region`, 'TargetGroupNotFound');
        const type = tg.TargetType ?? 'instance';
        if (type !== 'instance' && type !== 'ip')
            throw new ElbError(`${label} has target type ${type}: traffic: alb registers EC2 hosts, so the group's target type must be instance or ip`, 'UnsupportedTargetType');
        if (tg.Protocol && !/^HTTPS?$/.test(tg.Protocol))
            throw new ElbError(`${label} uses protocol ${tg.Protocol}: traffic: alb needs a target group of an Application Load Balancer (HTTP or HTTPS)`, 'UnsupportedProtocol');
        const attrs = await this.call('DescribeTargetGroupAttributes', label, new this.sdk.DescribeTargetGroupAttributesCommand({ TargetGroupArn: tg.TargetGroupArn }));
        const delay = attrs.Attributes?.find((a) => a.Key === 'deregistration_delay.timeout_seconds')?.Value;
        return {
            arn: tg.TargetGroupArn,
            name: tg.TargetGroupName ?? nameOrArn,
            targetType: type,
            label,
            deregistrationDelaySeconds: delay !== undefined && /^\d+$/.test(delay) ? Number(delay) : undefined,
            healthCheckPath: tg.HealthCheckPath,
            healthCheckIntervalSeconds: tg.HealthCheckIntervalSeconds,
            healthyThresholdCount: tg.HealthyThresholdCount,
            loadBalancerArns: tg.LoadBalancerArns ?? []
        };
    }
    /** The health of the given targets (or of every target in the group). A target the ALB does not know is "unregistered". */
    async targetHealth(tg, targets) {
        const out = await this.call('DescribeTargetHealth', tg.label, new this.sdk.DescribeTargetHealthCommand({
            TargetGroupArn: tg.arn,
            ...(targets ? { Targets: targets.map((t) => ({ Id: t.id, Port: t.port })) } : {})
        }));
        const views = (out.TargetHealthDescriptions ?? []).map((d) => ({
            id: d.Target?.Id ?? '',
            port: d.Target?.Port ?? 0,
            state: d.TargetHealth?.State ?? 'unavailable',
            reason: d.TargetHealth?.Reason,
            description: d.TargetHealth?.Description
        }));
        // Asked for by id, the ALB answers "unused" (Target.NotRegistered) for one it does not have.
        return views.map((v) => v.state === 'unused' && v.reason === 'Target.NotRegistered' ? { ...v, state: 'unregistered' } : v);
    }
    async register(tg, targets) {
        await this.call('RegisterTargets', `${tg.label} (${targets.map(describeTarget).join(', ')})`, new this.sdk.RegisterTargetsCommand({
            TargetGroupArn: tg.arn,
            Targets: targets.map((t) => ({ Id: t.id, Port: t.port }))
        }));
    }
    async deregister(tg, targets) {
        await this.call('DeregisterTargets', `${tg.label} (${targets.map(describeTarget).join(', ')})`, new this.sdk.DeregisterTargetsCommand({
            TargetGroupArn: tg.arn,
            Targets: targets.map((t) => ({ Id: t.id, Port: t.port }))
        }));
    }
    /** The actions that forward: the listener's default actions, or a rule's actions. */
    async readActions(listenerArn, ruleArn) {
        if (ruleArn) {
            const out = await this.call('DescribeRules', `alb-rule "${ruleArn}"`, new this.sdk.DescribeRulesCommand({ RuleArns: [ruleArn] }));
            const rule = out.Rules?.[0];
            if (!rule)
                throw new ElbError(`DescribeRules failed: alb-rule "${ruleArn}" does not exist in ${this.region}`, 'RuleNotFound');
            return rule.Actions ?? [];
        }
        const out = await this.call('DescribeListeners', `alb-listener "${listenerArn}"`, new this.sdk.DescribeListenersCommand({ ListenerArns: [listenerArn] }));
        const l = out.Listeners?.[0];
        if (!l)
            throw new ElbError(`DescribeListeners failed: alb-listener "${listenerArn}" does not exist in ${this.region}`, 'ListenerNotFound');
        return l.DefaultActions ?? [];
    }
    /** One call that replaces the forward action (ModifyListener, or ModifyRule with alb-rule). */
    async writeActions(listenerArn, ruleArn, actions) {
        if (ruleArn)
            await this.call('ModifyRule', `alb-rule "${ruleArn}"`, new this.sdk.ModifyRuleCommand({ RuleArn: ruleArn, Actions: actions }));
        else
            await this.call('ModifyListener', `alb-listener "${listenerArn}"`, new this.sdk.ModifyListenerCommand({ ListenerArn: listenerArn, DefaultActions: actions }));
    }
}
function describeTarget(t) {
    return `${t.id}:${t.port}`;
}
/** The forward action's weights by target group ARN (a plain TargetGroupArn forward is weight 1 on that group). */
function forwardWeights(actions) {
    const fwd = actions.find((a) => a.Type === 'forward');
    if (!fwd)
        return undefined;
    const groups = fwd.ForwardConfig?.TargetGroups;
    if (groups?.length)
        return Object.fromEntries(groups.filter((g) => g.TargetGroupArn).map((g) => [g.TargetGroupArn, g.Weight ?? 1]));
    if (fwd.TargetGroupArn)
        return { [fwd.TargetGroupArn]: 1 };
    return {};
}
/**
 * The same actions with the forward action sending `weights` (arn → weight): its order, stickiness and every other
 * action (authenticate-*, …) kept as they are.
 */
function withWeights(actions, weights) {
    return actions.map((a) => {
        if (a.Type !== 'forward')
            return a;
        const { TargetGroupArn: _single, ...rest } = a;
        void _single;
        return {
            ...rest,
            ForwardConfig: {
                ...(a.ForwardConfig ?? {}),
                TargetGroups: Object.entries(weights).map(([arn, w]) => ({ TargetGroupArn: arn, Weight: w }))
            }
        };
    });
}

;// CONCATENATED MODULE: ./src/traffic/alb/listener-switch.ts



function gate() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
        resolve = res;
        reject = rej;
    });
    promise.catch(() => undefined);
    return { promise, resolve, reject, started: false };
}
function describeWeights(w) {
    return `blue ${w.blue}, green ${w.green}`;
}
/**
 * The listener's weights per colour and the live colour; a forward action that is not blue/green's is refused. Strict
 * (before a deploy): one that sends requests to both colours is refused too; otherwise (the undo, status: the listener
 * as it is, e.g. mid-canary) the colour with the larger weight counts as live.
 */
function readListenerState(actions, groups, what, strict = true) {
    const fw = forwardWeights(actions);
    if (!fw)
        throw new Error(`${what} has no forward action: it must forward to alb-blue-target-group (${groups.blue.name}) and alb-green-target-group (${groups.green.name})`);
    const foreign = Object.keys(fw).filter((arn) => arn !== groups.blue.arn && arn !== groups.green.arn && fw[arn] > 0);
    if (foreign.length)
        throw new Error(`${what} forwards to ${foreign.join(', ')}, which is neither alb-blue-target-group (${groups.blue.name}) nor alb-green-target-group (${groups.green.name}): point it at those two groups (the action never changes other groups' traffic)`);
    const weights = { blue: fw[groups.blue.arn] ?? 0, green: fw[groups.green.arn] ?? 0 };
    const on = ['blue', 'green'].filter((c) => weights[c] > 0);
    if (on.length === 0)
        throw new Error(`${what} sends no requests to alb-blue-target-group (${groups.blue.name}) or alb-green-target-group (${groups.green.name}) (weights ${describeWeights(weights)}): make its forward action send everything to the group that serves now`);
    if (on.length === 2 && !strict)
        return { actions, weights, live: weights.green > weights.blue ? 'green' : 'blue' };
    if (on.length === 2) {
        throw new Error(`${what} sends requests to both colours (weights ${describeWeights(weights)}), e.g. after an interrupted canary: the action cannot tell which one is live. Send everything to the one that should serve (aws elbv2 modify-listener/modify-rule with weight 100 on it and 0 on the other), then deploy again`);
    }
    return { actions, weights, live: on[0] };
}
class ListenerSwitch {
    alb;
    shared;
    hostCount;
    note;
    initial;
    groupsP;
    arrived = new Set();
    verifiedHosts = new Set();
    first = gate();
    rest = gate();
    abortReason;
    restoring;
    /** Whether a change of this run may have reached the ALB (a call was made). */
    changed = false;
    report0;
    constructor(alb, shared, hostCount, 
    /** The run's log, for what is done once for the fleet. */
    note = () => undefined) {
        this.alb = alb;
        this.shared = shared;
        this.hostCount = hostCount;
        this.note = note;
        this.report0 = { listener: alb.listenerArn, rule: alb.ruleArn, groups: { ...alb.groups }, changes: [] };
    }
    get canaryPercent() {
        return this.alb.canaryPercent;
    }
    get what() {
        return this.alb.ruleArn
            ? `alb-rule ${this.alb.ruleArn}`
            : `the default action of alb-listener ${this.alb.listenerArn}`;
    }
    groups() {
        this.groupsP ??= Promise.all([
            this.shared.group(this.alb.groups.blue, 'alb-blue-target-group'),
            this.shared.group(this.alb.groups.green, 'alb-green-target-group')
        ]).then(([blue, green]) => {
            if (blue.arn === green.arn)
                throw new Error(`alb-blue-target-group and alb-green-target-group are the same group (${blue.name}): each colour needs its own`);
            return { blue, green };
        });
        this.groupsP.catch(() => (this.groupsP = undefined));
        return this.groupsP;
    }
    async read(strict) {
        const elb = await this.shared.elb();
        const groups = await this.groups();
        return readListenerState(await elb.readActions(this.alb.listenerArn, this.alb.ruleArn), groups, this.what, strict);
    }
    /**
     * The listener as it was before this run changed traffic (read once, shared by every host's detect). A forward
     * action that names only the live group gets the idle one added with weight 0 first: the ALB health-checks the
     * targets of a group only while a listener uses it (else they stay `unused`, Target.NotInUse).
     */
    before() {
        this.initial ??= this.read(true).then(async (s) => {
            const groups = await this.groups();
            const idle = groups[other(s.live)];
            if (!(idle.arn in (forwardWeights(s.actions) ?? {}))) {
                const elb = await this.shared.elb();
                const actions = withWeights(s.actions, { [groups[s.live].arn]: s.weights[s.live], [idle.arn]: 0 });
                await elb.writeActions(this.alb.listenerArn, this.alb.ruleArn, actions);
                this.report0.changes.push({ at: new Date().toISOString(), kind: 'attach', weights: s.weights });
                this.note(`${this.what} forwarded only to ${groups[s.live].name}: added ${idle.name} with weight 0 (no traffic moves), so that the load balancer health-checks its targets`);
                s = { ...s, actions };
            }
            this.report0.before = s.weights;
            this.report0.after ??= s.weights;
            return s;
        });
        this.initial.catch(() => (this.initial = undefined));
        return this.initial;
    }
    /** The listener now, whatever it sends where (for the undo, decided from the ALB's real state, and status). */
    now() {
        return this.read(false);
    }
    /** No change will be made any more (a host failed before the switch, the run was cancelled, or a restore began). */
    abort(reason) {
        this.abortReason ??= reason;
        if (!this.first.started)
            this.first.reject(new Error(`${reason}: the listener was not changed`));
        if (!this.rest.started)
            this.rest.reject(new Error(`${reason}: the rest of the traffic was not moved`));
    }
    /** A host's deploy ended (run.ts): one that ended without success before the switch releases the others. */
    hostDone(host, ok, step) {
        if (!ok && !this.first.started)
            this.abort(`${host} failed${step ? ` at ${step}` : ''}`);
        else if (!ok && this.canaryPercent && !this.rest.started)
            this.abort(`${host} failed${step ? ` at ${step}` : ''}`);
    }
    /** Marks the switch aborted without releasing the others at once (see the header). */
    markFailed(reason) {
        this.abortReason ??= reason;
    }
    async write(elb, weights, kind, log) {
        const s = await this.before();
        const groups = await this.groups();
        this.changed = true;
        await elb.writeActions(this.alb.listenerArn, this.alb.ruleArn, withWeights(s.actions, { [groups.blue.arn]: weights.blue, [groups.green.arn]: weights.green }));
        this.report0.changes.push({ at: new Date().toISOString(), kind, weights });
        this.report0.after = weights;
        log.info(`${this.alb.ruleArn ? 'ModifyRule' : 'ModifyListener'}: ${this.what} now sends ${describeWeights(weights)}${kind === 'canary' ? ` (canary: ${this.canaryPercent}% to the new colour)` : ''}`);
    }
    wait(g, signal, what) {
        if (!signal)
            return g.promise;
        return new Promise((resolve, reject) => {
            const onAbort = () => {
                this.abort(cancelReason(signal));
                reject(new Error(`${cancelReason(signal)} while ${what}`));
            };
            if (signal.aborted)
                return onAbort();
            signal.addEventListener('abort', onAbort, { once: true });
            g.promise.then(() => {
                signal.removeEventListener('abort', onAbort);
                resolve();
            }, (e) => {
                signal.removeEventListener('abort', onAbort);
                reject(e);
            });
        });
    }
    /**
     * A host's candidate is healthy in the idle group. Resolves once the one listener change is made (by the last host
     * to arrive); rejects if a host failed before, or the change failed.
     */
    arrive(host, signal, log) {
        this.arrived.add(host);
        log.info(`candidate healthy in the idle group; ${this.arrived.size} of ${this.hostCount} host(s) ready for the listener switch`);
        if (this.arrived.size >= this.hostCount && !this.first.started && !this.abortReason) {
            this.first.started = true;
            this.report0.allHealthyAt = new Date().toISOString();
            void (async () => {
                const elb = await this.shared.elb();
                const s = await this.before();
                const to = other(s.live);
                const p = this.canaryPercent;
                const w = { [to]: p ?? 100, [s.live]: p ? 100 - p : 0 };
                await this.write(elb, w, p ? 'canary' : 'switch', log);
            })().then(this.first.resolve, this.first.reject);
        }
        return this.wait(this.first, signal, 'waiting for the other hosts before the listener switch');
    }
    /** Canary: a host's verify window passed. Resolves once the rest of the traffic is on the new colour. */
    verified(host, signal, log) {
        this.verifiedHosts.add(host);
        if (this.verifiedHosts.size >= this.hostCount && !this.rest.started && !this.abortReason) {
            this.rest.started = true;
            void (async () => {
                const elb = await this.shared.elb();
                const s = await this.before();
                const to = other(s.live);
                await this.write(elb, { [to]: 100, [s.live]: 0 }, 'switch', log);
            })().then(this.rest.resolve, this.rest.reject);
        }
        return this.wait(this.rest, signal, 'waiting for the other hosts to verify the canary share');
    }
    /**
     * After a failure: the actions as they were before the run, in one call, once for the whole fleet. Resolves whether
     * the listener had been changed by this run (so traffic was moved back).
     */
    restore(log) {
        this.abort(this.abortReason ?? 'a host is switching back');
        this.restoring ??= (async () => {
            // A change in flight finishes (or fails) first: its outcome is read from the ALB below.
            if (this.first.started)
                await this.first.promise.catch(() => undefined);
            if (this.rest.started)
                await this.rest.promise.catch(() => undefined);
            if (!this.changed || !this.initial)
                return false;
            const before = await this.initial;
            const now = await this.now();
            if (now.weights.blue === before.weights.blue && now.weights.green === before.weights.green) {
                log.info(`${this.what} sends ${describeWeights(now.weights)} as before the run: nothing to put back`);
                return true;
            }
            const elb = await this.shared.elb();
            await elb.writeActions(this.alb.listenerArn, this.alb.ruleArn, before.actions);
            this.report0.changes.push({ at: new Date().toISOString(), kind: 'restore', weights: before.weights });
            this.report0.after = before.weights;
            log.info(`${this.alb.ruleArn ? 'ModifyRule' : 'ModifyListener'}: ${this.what} is back to ${describeWeights(before.weights)}`);
            return true;
        })();
        // A failed restore may be tried again by the next host that switches back.
        this.restoring.catch(() => (this.restoring = undefined));
        return this.restoring;
    }
    report() {
        return { ...this.report0, changes: [...this.report0.changes] };
    }
}

;// CONCATENATED MODULE: ./src/traffic/alb/report.ts

const clock = (iso) => iso.slice(11, 23);
/** One target's states in order: "16:30:01.120 initial → 16:30:03.410 healthy". */
function timeline(samples) {
    return samples
        .map((s) => `${clock(s.at)} ${s.state}${s.reason && s.state !== 'healthy' ? ` (${s.reason})` : ''}`)
        .join(' → ');
}
/** `cell` escapes text for a markdown table cell (the summary's own). */
function renderAlbSection(r, cell) {
    const hosts = r.hosts.filter((h) => h.loadBalancer?.health.length);
    // The listener's line only once it was read (a run refused before, e.g. at the lock, has nothing to say of it).
    const listener = r.alb?.before || r.alb?.changes.length ? r.alb : undefined;
    if (!listener && !hosts.length)
        return undefined;
    const out = ['### Load balancer', ''];
    if (listener) {
        const a = listener;
        const what = a.rule ? `Rule \`${cell(a.rule)}\`` : `Listener \`${cell(a.listener)}\``;
        const before = a.before ? describeWeights(a.before) : 'not read';
        const after = a.after ? describeWeights(a.after) : before;
        out.push(`${what} (blue: \`${cell(a.groups.blue)}\`, green: \`${cell(a.groups.green)}\`): weights before **${before}** → after **${after}**.`);
        if (a.allHealthyAt)
            out.push(`Every candidate was healthy in its group at ${clock(a.allHealthyAt)}.`);
        out.push(a.changes.length
            ? `Changes: ${a.changes.map((c) => `${clock(c.at)} ${c.kind} (${describeWeights(c.weights)})`).join(' · ')}.`
            : 'The listener was not changed.');
        out.push('');
    }
    if (hosts.length) {
        out.push('| Host | Target | Health as the load balancer reported it |', '| --- | --- | --- |');
        for (const h of hosts) {
            const byTarget = new Map();
            for (const s of h.loadBalancer.health) {
                const key = `${s.target} (${s.color}, ${s.group})`;
                byTarget.set(key, [...(byTarget.get(key) ?? []), s]);
            }
            for (const [target, samples] of byTarget)
                out.push(`| ${cell(h.host)} | ${cell(target)} | ${cell(timeline(samples))} |`);
        }
        out.push('');
    }
    return out.join('\n') + '\n';
}

;// CONCATENATED MODULE: ./src/traffic/alb/identity.ts

const IMDS_BASH = [
    't="$1"',
    'req() {',
    '  exec 3<>/dev/tcp/169.254.169.254/80 || { echo "the instance metadata service (169.254.169.254:80) is not reachable from the host" >&2; return 7; }',
    `  printf '%s %s HTTP/1.0\\r\\nHost: 169.254.169.254\\r\\n%s\\r\\n\\r\\n' "$1" "$2" "$3" >&3`,
    '  status=""; body=""; inbody=""',
    '  while IFS= read -r -t "$t" line <&3 || [ -n "$line" ]; do',
    `    line=\${line%$'\\r'}`,
    '    if [ -z "$status" ]; then status=$line; elif [ -z "$inbody" ]; then [ -z "$line" ] && inbody=1; else body="$body$line"; fi',
    '    line=""',
    '  done',
    '  exec 3<&-',
    '  case "$status" in',
    `    "HTTP/"*" 200"*) printf '%s' "$body" ;;`,
    '    *) echo "IMDSv2 $1 $2 answered ${status:-nothing within $t s}" >&2; return 8 ;;',
    '  esac',
    '}',
    'tok=$(req PUT /latest/api/token "X-aws-ec2-metadata-token-ttl-seconds: 60") || exit $?',
    'id=$(req GET /latest/meta-data/instance-id "X-aws-ec2-metadata-token: $tok") || exit $?',
    'ip=$(req GET /latest/meta-data/local-ipv4 "X-aws-ec2-metadata-token: $tok") || exit $?',
    `printf 'instance-id=%s\\nlocal-ipv4=%s\\n' "$id" "$ip"`
].join('\n');
const IMDS_PYTHON = [
    'import sys, urllib.request',
    't = float(sys.argv[1])',
    'o = urllib.request.build_opener(urllib.request.ProxyHandler({}))',
    'def r(m, p, h):',
    '    try:',
    "        return o.open(urllib.request.Request('http://169.254.169.254' + p, method=m, headers=h), timeout=t).read().decode().strip()",
    '    except Exception as e:',
    "        sys.stderr.write('IMDSv2 %s %s failed: %s\\n' % (m, p, e)); sys.exit(8)",
    "tok = r('PUT', '/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '60'})",
    "h = {'X-aws-ec2-metadata-token': tok}",
    "print('instance-id=' + r('GET', '/latest/meta-data/instance-id', h))",
    "print('local-ipv4=' + r('GET', '/latest/meta-data/local-ipv4', h))"
].join('\n');
/** $1: timeout per request in seconds. Prints instance-id=… and local-ipv4=… lines. */
function identityScript(timeoutSeconds = 3) {
    return {
        body: [
            `if command -v bash >/dev/null 2>&1; then exec ${cmd('bash', '-c', IMDS_BASH, 'bash')} "$1"; fi`,
            `if command -v python3 >/dev/null 2>&1; then exec ${cmd('python3', '-c', IMDS_PYTHON)} "$1"; fi`,
            'echo "reading the instance ID and private IPv4 from the instance metadata service (IMDSv2) needs bash or python3 on the host" >&2',
            'exit 127'
        ].join('\n'),
        args: [String(timeoutSeconds)]
    };
}
function parseIdentity(stdout) {
    const get = (k) => new RegExp(`^${k}=(.*)$`, 'm').exec(stdout)?.[1]?.trim() ?? '';
    const instanceId = get('instance-id');
    const privateIp = get('local-ipv4');
    if (!/^i-[0-9a-f]{8,17}$/.test(instanceId))
        throw new Error(`the instance metadata service answered no instance ID (got "${instanceId.slice(0, 40)}")`);
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(privateIp))
        throw new Error(`the instance metadata service answered no private IPv4 (got "${privateIp.slice(0, 40)}")`);
    return { instanceId, privateIp };
}

;// CONCATENATED MODULE: ./src/traffic/alb/routing.ts
/** A target taking part in the group: registered and not on its way out. */
function registered(v) {
    return Boolean(v) && v.state !== 'unregistered' && v.state !== 'draining' && v.state !== 'unused';
}
function parseAs(content, start) {
    if (!content?.startsWith(start))
        return undefined;
    try {
        return JSON.parse(content);
    }
    catch {
        return undefined;
    }
}
const parseListenerRouting = (content) => parseAs(content, '{"listener"');
const parseGroupRouting = (content) => parseAs(content, '{"group"');
/** The colour the group sends this host's requests to: the only one of its two targets registered in it. */
function routedColorOfGroup(r) {
    if (!r)
        return undefined;
    const live = ['blue', 'green'].filter((c) => registered(r.targets[c]));
    if (live.length === 1)
        return live[0];
    // Both registered (an interrupted swap): the healthy one, if only one is.
    const healthy = live.filter((c) => r.targets[c]?.state === 'healthy');
    return healthy.length === 1 ? healthy[0] : undefined;
}
/** routed: the colour the ALB sends this host's requests to; fleet: decided by the listener for every host. */
function albRouting(content) {
    const l = parseListenerRouting(content);
    if (l)
        return { routed: l.live, fleet: true };
    const g = parseGroupRouting(content);
    if (g)
        return { routed: routedColorOfGroup(g), fleet: false };
    return undefined;
}

;// CONCATENATED MODULE: ./src/traffic/alb/status.ts




async function groupStatus(alb, tg, mine) {
    const views = await (await alb.elb()).targetHealth(tg);
    return {
        name: tg.name,
        arn: tg.arn,
        targets: views.map((v) => {
            const t = describeTarget(v);
            const color = ['blue', 'green'].find((c) => mine[c] === t);
            return { target: t, state: v.state, reason: v.reason, color };
        })
    };
}
/** Reads the ALB's view for one host; never throws (an unreadable ALB is a finding). */
async function readAlbStatus(cfg, remote, alb, listener) {
    const mode = cfg.alb?.mode ?? 'target-group';
    const st = { mode, groups: {} };
    try {
        const s = identityScript();
        const res = await remote.run(s.body, s.args);
        if (res.code !== 0)
            throw new Error(`reading the instance identity (IMDSv2) failed (exit ${res.code}): ${res.stderr.trim().split('\n').slice(-2).join(' ')}`);
        const id = parseIdentity(res.stdout);
        st.instanceId = id.instanceId;
        st.privateIp = id.privateIp;
        const mineFor = (tg) => {
            const ident = tg.targetType === 'ip' ? id.privateIp : id.instanceId;
            return { blue: `${ident}:${cfg.ports.blue}`, green: `${ident}:${cfg.ports.green}` };
        };
        if (cfg.alb?.mode === 'listener' && listener) {
            const groups = await listener.groups();
            const l = await listener.now();
            st.listener = { arn: cfg.alb.listenerArn, rule: cfg.alb.ruleArn, weights: l.weights, live: l.live };
            for (const c of ['blue', 'green'])
                st.groups[c] = await groupStatus(alb, groups[c], mineFor(groups[c]));
            st.routed = l.live;
        }
        else if (cfg.alb?.mode === 'target-group') {
            const tg = await alb.group(cfg.alb.targetGroup, 'alb-target-group');
            const g = await groupStatus(alb, tg, mineFor(tg));
            st.groups.group = g;
            const targets = {};
            for (const t of g.targets)
                if (t.color)
                    targets[t.color] = { state: t.state };
            st.routed = routedColorOfGroup({ group: tg.name, targets: targets });
        }
    }
    catch (e) {
        st.error = e.message;
    }
    return st;
}
/** The ALB's findings for a host's status. */
function albFindings(s, a) {
    if (a.error)
        return [{ level: 'error', message: `load balancer: ${a.error}` }];
    const f = [];
    const mine = (g, c) => g?.targets.find((t) => t.color === c);
    const live = a.routed;
    if (!live) {
        f.push({
            level: 'error',
            message: a.mode === 'target-group'
                ? `neither of this host's targets (blue-port, green-port) is registered in ${a.groups.group?.name ?? 'the target group'} alone`
                : 'the listener routes to no single colour'
        });
        return f;
    }
    if (s.colors[live].state !== 'running')
        f.push({
            level: 'error',
            message: `the load balancer routes to ${live}, whose container on this host is ${s.colors[live].state ?? 'missing'}`
        });
    const g = a.mode === 'target-group' ? a.groups.group : a.groups[live];
    const t = mine(g, live);
    if (!t || !registered(t))
        f.push({
            level: 'error',
            message: `this host's ${live} target is not registered in ${g?.name ?? 'its group'}${t ? ` (${t.state})` : ''}: the load balancer sends it nothing`
        });
    else if (t.state !== 'healthy')
        f.push({
            level: 'error',
            message: `the load balancer reports this host's live ${live} target ${t.target} ${t.state}${t.reason ? ` (${t.reason})` : ''}`
        });
    const idle = live === 'blue' ? 'green' : 'blue';
    const o = mine(a.mode === 'target-group' ? a.groups.group : a.groups[idle], idle);
    if (o && registered(o) && !s.lock.held)
        f.push({
            level: 'warning',
            message: `this host's ${idle} target ${o.target} is still registered (${o.state})${a.mode === 'target-group' ? ': the load balancer may send it requests' : ''}`
        });
    return f;
}
/** `command: status` with traffic alb: the load balancer's view of this host (the ALB routers' status). */
async function albStatus(ctx, st, shared, listener) {
    const a = await readAlbStatus(ctx.cfg, ctx.remote, shared, listener);
    if (a.listener)
        ctx.log.info(`alb listener: ${describeWeights(a.listener.weights)} (live: ${a.listener.live})`);
    for (const [k, g] of Object.entries(a.groups))
        ctx.log.info(`alb ${k === 'group' ? 'target group' : `${k} group`} ${g.name}: ${g.targets.map((t) => `${t.target} ${t.state}${t.color ? ` (this host's ${t.color})` : ''}`).join(', ') || 'no targets'}`);
    st.alb = a;
    return { routed: a.routed, findings: (s) => albFindings(s, a) };
}
/** The status summary's line for the ALB. */
function albStatusLine(a, cell) {
    if (a.error)
        return `Load balancer: ${cell(a.error)}`;
    const parts = [];
    if (a.listener)
        parts.push(`listener weights ${describeWeights(a.listener.weights)}`);
    for (const [k, g] of Object.entries(a.groups)) {
        parts.push(`${k === 'group' ? '' : `${k} `}group \`${cell(g.name)}\`: ${g.targets.map((t) => `${cell(t.target)} ${t.state}${t.color ? ` (this host's ${t.color})` : ''}`).join(', ') || 'no targets'}`);
    }
    return `Load balancer (${a.instanceId ?? '?'}, ${a.privateIp ?? '?'}): ${parts.join(' · ')}`;
}

;// CONCATENATED MODULE: ./src/model/host.ts
const containerName = (app, color) => `${app}-${color}`;
/**
 * The live colour, the one rule for deploy and status: the colour traffic is routed to if it runs; else the only
 * running colour; with both running and no routing to tell, the recorded one (blue without a record).
 */
function liveColor(running, routedColor, recordedLive) {
    if (routedColor && running.includes(routedColor))
        return routedColor;
    if (running.length === 1)
        return running[0];
    if (running.length === 2)
        return recordedLive ?? 'blue';
    return undefined;
}

;// CONCATENATED MODULE: ./src/transport/exec.ts

async function runStep(remote, log, step, s, what, onLine, quiet = false) {
    log.debug(`$ ${what}`);
    const res = await remote.run(s.body, s.args, {
        stdin: s.stdin,
        onLine: (line, stream) => {
            if (line.startsWith('@@'))
                log.debug(line);
            else if (line.trim())
                (quiet ? log.debug : log.info).call(log, stream === 'stderr' ? `  ! ${line}` : `  ${line}`);
            onLine?.(line);
        }
    });
    if (res.code !== 0) {
        const out = (res.stderr.trim() || res.stdout.trim())
            .split('\n')
            .filter((l) => !l.startsWith('@@'))
            .slice(-8)
            .join('\n');
        throw new StepError(step, `${what} failed (exit ${res.code ?? res.signal ?? 'unknown'})${out ? `: ${out}` : ''}`);
    }
    return res.stdout;
}

;// CONCATENATED MODULE: ./src/traffic/router.ts

/** Runs a router's remote script within a step (see transport/exec.ts). */
function exec(ctx, step, s, what, onLine) {
    return runStep(ctx.remote, ctx.log, step, s, what, onLine);
}
/** Whether a config's content was written by this run (the upstream note names the deploy id). */
function writtenBy(content, deployId) {
    return Boolean(content?.includes(deployId));
}
/**
 * The verify-seconds watch (`ours`: our probes) and beside it the proxy's or load balancer's own view: `check` runs
 * every `everyMs` until the watch ends, and whichever fails first fails verify. The other one then ends by itself
 * (ours at the end of verify-seconds); its outcome no longer matters.
 */
async function watchBeside(ours, check, everyMs) {
    let done = false;
    const watched = ours.finally(() => {
        done = true;
    });
    const theirs = (async () => {
        while (!done) {
            try {
                await check();
            }
            catch (e) {
                if (!done)
                    throw e;
            }
            await new Promise((r) => setTimeout(r, everyMs));
        }
    })();
    try {
        await Promise.race([watched, theirs]);
        await Promise.all([watched, theirs]);
    }
    catch (e) {
        done = true;
        watched.catch(() => undefined);
        theirs.catch(() => undefined);
        throw e;
    }
}

;// CONCATENATED MODULE: ./src/traffic/alb/targets.ts





/** A router context as a TargetExec. */
function execOf(ctx) {
    return { exec: (step, s, what) => exec(ctx, step, s, what) };
}
/** A WatchCheck whose group and targets are looked up at its first check. */
function lazyWatch(make) {
    let c;
    return {
        everyMs: albTiming.pollMs * 2,
        check: async () => {
            c ??= make();
            await (await c).check();
        }
    };
}
/** How often DescribeTargetHealth is polled (tests make it shorter). */
const albTiming = { pollMs: 500 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
class HealthRecorder {
    samples = [];
    last = new Map();
    note(group, color, v) {
        const key = `${group.arn} ${v.id}:${v.port}`;
        const state = `${v.state}${v.reason ? ` ${v.reason}` : ''}`;
        if (this.last.get(key) === state)
            return;
        this.last.set(key, state);
        this.samples.push({
            at: new Date().toISOString(),
            group: group.name,
            color,
            target: describeTarget(v),
            state: v.state,
            reason: v.reason
        });
    }
}
/** How long the ALB may take to call a new target healthy: its checks' interval × threshold, plus a margin. */
function healthyWithinMs(cfg, tg) {
    const alb = tg.healthCheckIntervalSeconds && tg.healthyThresholdCount
        ? (tg.healthCheckIntervalSeconds * (tg.healthyThresholdCount + 1) + 10) * 1000
        : 0;
    return Math.max(cfg.healthTimeoutMs, alb);
}
function describeHealth(v) {
    if (!v)
        return 'not listed';
    return `${v.state}${v.reason ? ` (${v.reason}${v.description ? `: ${v.description}` : ''})` : ''}`;
}
class HostTargets {
    cfg;
    elb;
    identity;
    known;
    recorder = new HealthRecorder();
    targetType;
    /** When this run deregistered a target (`<group> <id>:<port>`): its draining started then. */
    deregisteredAt = new Map();
    constructor(cfg, elb) {
        this.cfg = cfg;
        this.elb = elb;
    }
    /** The host's instance ID and private IPv4, read once per host session (reused after a reconnect: it is the same host). */
    async readIdentity(h, step) {
        this.identity ??= h
            .exec(step, identityScript(), 'read the instance ID and private IPv4 from the instance metadata service (IMDSv2)')
            .then((out) => (this.known = parseIdentity(out)));
        this.identity.catch(() => (this.identity = undefined));
        try {
            return await this.identity;
        }
        catch (e) {
            throw new StepError(step, `${e.message}: traffic: alb names the host to the load balancer by its instance ID or private IPv4 (is this an EC2 instance with the metadata service enabled, and is its hop limit at least 1?)`);
        }
    }
    report() {
        return {
            targetType: this.targetType,
            instanceId: this.known?.instanceId,
            privateIp: this.known?.privateIp,
            health: this.recorder.samples
        };
    }
    async target(h, step, tg, color) {
        const id = await this.readIdentity(h, step);
        this.targetType = tg.targetType;
        return { id: tg.targetType === 'ip' ? id.privateIp : id.instanceId, port: this.cfg.ports[color] };
    }
    async health(tg, color, t, step) {
        let views;
        try {
            views = await this.elb.targetHealth(tg, [t]);
        }
        catch (e) {
            throw new StepError(step, e.message);
        }
        const v = views.find((x) => x.id === t.id && x.port === t.port) ?? { ...t, state: 'unregistered' };
        this.recorder.note(tg, color, v);
        return v;
    }
    async register(tg, color, t, step) {
        await this.elb.register(tg, [t]).catch((e) => {
            throw new StepError(step, e.message);
        });
    }
    async deregister(tg, color, t, step) {
        const at = Date.now();
        await this.elb.deregister(tg, [t]).catch((e) => {
            throw new StepError(step, e.message);
        });
        this.deregisteredAt.set(`${tg.name} ${t.id}:${t.port}`, at);
    }
    /** Polls DescribeTargetHealth until the target is healthy; unhealthy past the limit, or gone, fails the step. */
    async waitHealthy(h, tg, color, t, step, undoing = false) {
        const t0 = Date.now();
        const limit = healthyWithinMs(this.cfg, tg);
        let v;
        for (;;) {
            const signal = h.signal;
            if (!undoing && signal?.aborted)
                throw new StepError(step, `${cancelReason(signal)} while waiting for the load balancer to call ${describeTarget(t)} healthy`);
            v = await this.health(tg, color, t, step);
            if (v.state === 'healthy') {
                h.log.info(`the load balancer reports ${describeTarget(t)} (${color}) healthy in ${tg.name} after ${Date.now() - t0} ms`);
                return;
            }
            if (v.reason === 'Target.NotInUse') {
                throw new StepError(step, `the load balancer does not health-check ${tg.label}: no listener or rule forwards to it (Target.NotInUse). Make a listener rule of the load balancer forward to it${tg.loadBalancerArns.length ? '' : ' (it is attached to no load balancer)'}`);
            }
            if (v.state === 'unregistered' || v.state === 'draining' || v.state === 'unused') {
                throw new StepError(step, `${describeTarget(t)} (${color}) is ${describeHealth(v)} in ${tg.label}, not registered any more: did something else deregister it?`);
            }
            if (Date.now() - t0 >= limit) {
                throw new StepError(step, `the load balancer did not report ${describeTarget(t)} (${color}) healthy in ${tg.label} within ${Math.round(limit / 1000)} s (last: ${describeHealth(v)}): does the security group of the host allow the load balancer on port ${t.port}, is publish-address reachable, and does the group's health check path answer 2xx${tg.healthCheckPath ? ` (${tg.healthCheckPath})` : ''}?`);
            }
            await sleep(albTiming.pollMs);
        }
    }
    /**
     * wait-for-drain false: how long the ALB may still drain the old target, for the job on the host to wait by the
     * clock before the container stops (the host cannot ask the ALB): the group's deregistration delay, at most
     * drain-seconds, less the time since this run deregistered it; 0 when one look says it is out of the group already.
     */
    async drainLeftMs(h, tg, color, t, step) {
        if (this.drained(h, tg, color, t, step, await this.health(tg, color, t, step), Date.now()))
            return 0;
        const delayMs = tg.deregistrationDelaySeconds !== undefined ? tg.deregistrationDelaySeconds * 1000 : Infinity;
        const since = this.deregisteredAt.get(`${tg.name} ${t.id}:${t.port}`);
        const ms = Math.max(0, Math.min(this.cfg.drainMs, delayMs) - (since === undefined ? 0 : Date.now() - since));
        const why = `the group's deregistration delay ${tg.deregistrationDelaySeconds ?? '?'} s, at most drain-seconds, from the deregistration`;
        if (delayMs > this.cfg.drainMs)
            h.warn(`${describeTarget(t)} (${color}) may drain in ${tg.name} for up to ${tg.deregistrationDelaySeconds ?? '?'} s (its deregistration delay), longer than drain-seconds (${this.cfg.drainMs / 1000} s): the job on the host stops it after ${Math.round(ms / 100) / 10} s anyway`);
        else
            h.log.info(`${describeTarget(t)} (${color}) is draining in ${tg.name}; the job on the host stops it after ${Math.round(ms / 100) / 10} s (${why}): the run does not wait for it`);
        return ms;
    }
    /** Polls DescribeTargetHealth until the target is out of draining, at most maxMs; false when it still drains then. */
    async waitDrained(h, tg, color, t, step, maxMs) {
        const t0 = Date.now();
        for (;;) {
            if (this.drained(h, tg, color, t, step, await this.health(tg, color, t, step), t0))
                return true;
            if (Date.now() - t0 >= maxMs) {
                h.warn(`${describeTarget(t)} (${color}) was still draining in ${tg.name} after drain-seconds (${maxMs / 1000} s; the group's deregistration delay is ${tg.deregistrationDelaySeconds ?? '?'} s): stopping it anyway`);
                return false;
            }
            await sleep(albTiming.pollMs);
        }
    }
    /** True once a deregistered target has left the group; it must be draining otherwise. */
    drained(h, tg, color, t, step, v, since) {
        if (v.state === 'unregistered' || v.state === 'unused') {
            h.log.info(`${describeTarget(t)} (${color}) left ${tg.name}: draining took ${Date.now() - since} ms`);
            return true;
        }
        if (v.state !== 'draining')
            throw new StepError(step, `${describeTarget(t)} (${color}) is ${describeHealth(v)} in ${tg.label} instead of draining: was it registered again by someone else?`);
        return false;
    }
    /** Beside the verify-seconds watch: the ALB's view of the candidate; unhealthy there fails verify. */
    watchCheck(h, tg, color) {
        let t;
        return {
            everyMs: albTiming.pollMs * 2,
            check: async () => {
                t ??= await this.target(h, 'verify', tg, color);
                const v = await this.health(tg, color, t, 'verify');
                if (v.state !== 'healthy')
                    throw new StepError('verify', `the load balancer reports ${describeTarget(t)} (${color}) ${describeHealth(v)} in ${tg.name} after the switch`);
            }
        };
    }
}

;// CONCATENATED MODULE: ./src/traffic/alb/base.ts



class AlbRouterBase {
    cfg;
    shared;
    kind = 'alb';
    startVerb = 'run';
    targets;
    constructor(cfg, shared) {
        this.cfg = cfg;
        this.shared = shared;
    }
    routingFile() {
        return '';
    }
    /** On publish-address (default all interfaces): the load balancer reaches the colour's port from outside. */
    publishArgs(color) {
        return ['--publish', `${this.cfg.publishAddress ?? '0.0.0.0'}:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
    }
    probePort(color) {
        return this.cfg.ports[color];
    }
    retire(plan) {
        return plan.live ? containerName(this.cfg.app, plan.live) : undefined;
    }
    status(ctx, st) {
        return albStatus(ctx, st, this.shared, this.listenerSwitch());
    }
    /** alb-listener: the run's fleet switch (status reads the listener through it). */
    listenerSwitch() {
        return undefined;
    }
    report() {
        return this.targets?.report();
    }
    async hostTargets() {
        this.targets ??= new HostTargets(this.cfg, await this.shared.elb());
        return this.targets;
    }
}

;// CONCATENATED MODULE: ./src/traffic/alb/listener-router.ts





class AlbListenerRouter extends AlbRouterBase {
    sw;
    host;
    readOnce = false;
    registeredHere = false;
    constructor(cfg, shared, sw, host) {
        super(cfg, shared);
        this.sw = sw;
        this.host = host;
    }
    routedColor(state) {
        return parseListenerRouting(state.upstreamContent)?.live;
    }
    listenerSwitch() {
        return this.sw;
    }
    fleetRoutedColor(state) {
        return this.routedColor(state);
    }
    /** detect: the listener as before the run (read once for the fleet); later (the undo): as it is now. */
    async readRouting() {
        const s = this.readOnce ? await this.sw.now() : await this.sw.before();
        this.readOnce = true;
        const r = { listener: true, live: s.live, weights: s.weights };
        return JSON.stringify(r);
    }
    /**
     * Health, once the candidate answers: RegisterTargets in the idle colour's group (which the listener sends
     * nothing: no traffic moves yet) and DescribeTargetHealth until healthy.
     */
    async afterHealth(h) {
        const to = h.plan.candidate;
        const tg = (await this.sw.groups())[to];
        const t = await this.hostTargets();
        const cand = await t.target(execOf(h), 'health', tg, to);
        await t.register(tg, to, cand, 'health');
        this.registeredHere = true;
        h.log.info(`registered ${describeTarget(cand)} (${to}) in ${tg.name}, the idle colour's group; waiting until the load balancer calls it healthy`);
        await t.waitHealthy(h, tg, to, cand, 'health');
    }
    /** Before the switch: no listener change for anyone, and this candidate leaves the idle group again. */
    async abandon(h, how) {
        // The fleet switch is told in any case (no listener change for anyone); the group is the run's, not the host's.
        this.sw.markFailed(`${this.host} failed before the listener switch`);
        if (!this.registeredHere || !how.ownsHost)
            return;
        const to = h.plan.candidate;
        try {
            const tg = (await this.sw.groups())[to];
            const t = await this.hostTargets();
            const cand = await t.target(execOf(h), 'health', tg, to);
            await t.deregister(tg, to, cand, 'health').then(() => h.log.info(`deregistered ${describeTarget(cand)} (${to}) from ${tg.name} again`), (err) => h.warn(`could not deregister ${describeTarget(cand)} from ${tg.name} after the failure: ${err.message}`));
        }
        catch (e) {
            h.warn(`could not deregister the candidate after the failure: ${e.message}`);
        }
    }
    /** The barrier: when every host got here, one ModifyListener/ModifyRule moves the traffic (or the canary share). */
    async switchTraffic(h) {
        // The last host to arrive makes the listener change, which may reach the ALB even if its answer never arrives.
        await this.sw.arrive(this.host, h.signal, h.log);
        return { drained: true };
    }
    watchCheck(h) {
        return lazyWatch(async () => (await this.hostTargets()).watchCheck(execOf(h), (await this.sw.groups())[h.plan.candidate], h.plan.candidate));
    }
    /** With a canary: the share was served without a failure; the rest follows once every host got here. */
    async afterVerify(h) {
        if (!this.sw.canaryPercent)
            return;
        h.log.info(`the canary share (${this.sw.canaryPercent}%) was served without a failure; waiting for the other hosts before the rest follows`);
        await this.sw.verified(this.host, h.signal, h.log);
        await h.probe('verify', this.cfg.ports[h.plan.candidate]);
    }
    /** Committed: the old colour's target leaves its group (no requests come to it any more) and drains. */
    async drainOld(h, wait) {
        const from = h.plan.live;
        if (!from)
            return 0;
        const tg = (await this.sw.groups())[from];
        const t = await this.hostTargets();
        const old = await t.target(execOf(h), 'drain', tg, from);
        const v = await t.health(tg, from, old, 'drain');
        if (!registered(v) && v.state !== 'draining') {
            h.log.info(`${describeTarget(old)} (${from}) is ${describeHealth(v)} in ${tg.name}: nothing to deregister`);
            return 0;
        }
        if (registered(v))
            await t.deregister(tg, from, old, 'drain');
        if (!wait)
            return t.drainLeftMs(h, tg, from, old, 'drain');
        await t.waitDrained(h, tg, from, old, 'drain', this.cfg.drainMs);
        return 0;
    }
    async switchBack(h) {
        const to = h.plan.candidate;
        const tg = (await this.sw.groups())[to];
        const t = await this.hostTargets();
        const moved = await this.sw.restore(h.log);
        const cand = await t.target(execOf(h), 'switch-back', tg, to);
        const v = await t.health(tg, to, cand, 'switch-back');
        if (registered(v))
            await t.deregister(tg, to, cand, 'switch-back');
        // Requests the listener sent the candidate before the restore finish before its container goes.
        if (moved && (registered(v) || v.state === 'draining'))
            await t.waitDrained(h, tg, to, cand, 'switch-back', this.cfg.drainMs);
        if (!moved)
            h.log.info(`the listener was not changed (${describeWeights((await this.sw.before()).weights)}): ${describeTarget(cand)} left ${tg.name}`);
        return { moved };
    }
}

;// CONCATENATED MODULE: ./src/traffic/alb/target-group-router.ts




class AlbTargetGroupRouter extends AlbRouterBase {
    groupName;
    constructor(cfg, shared) {
        super(cfg, shared);
        this.groupName = cfg.alb?.mode === 'target-group' ? cfg.alb.targetGroup : '';
    }
    routedColor(state) {
        return routedColorOfGroup(parseGroupRouting(state.upstreamContent));
    }
    async group() {
        return this.shared.group(this.groupName, 'alb-target-group');
    }
    /** The ALB's view of this host's two targets (read at detect and again for the undo). */
    async readRouting(remote) {
        const tg = await this.group();
        const t = await this.hostTargets();
        const exec = async (_step, s, what) => {
            const res = await remote.run(s.body, s.args);
            if (res.code !== 0)
                throw new Error(`${what} failed (exit ${res.code ?? res.signal ?? 'unknown'}): ${(res.stderr || res.stdout).trim().split('\n').slice(-3).join(' ')}`);
            return res.stdout;
        };
        const routing = { group: tg.name, targets: {} };
        for (const c of ['blue', 'green']) {
            const target = await t.target({ exec }, 'detect', tg, c);
            const v = await t.health(tg, c, target, 'detect');
            routing.targets[c] = { id: v.id, port: v.port, state: v.state, reason: v.reason };
        }
        return JSON.stringify(routing);
    }
    /**
     * RegisterTargets(candidate), until DescribeTargetHealth says healthy (and our probe), then DeregisterTargets(old
     * colour): the ALB stops sending it new requests and drains it.
     */
    async switchTraffic(h) {
        const { cfg, plan } = h;
        const to = plan.candidate;
        const from = plan.live;
        const tg = await this.group();
        const t = await this.hostTargets();
        const x = execOf(h);
        const cand = await t.target(x, 'switch', tg, to);
        await t.register(tg, to, cand, 'switch');
        h.log.info(`registered ${describeTarget(cand)} (${to}) in ${tg.name}; waiting until the load balancer calls it healthy`);
        await t.waitHealthy(h, tg, to, cand, 'switch');
        await h.probe('switch', cfg.ports[to]);
        if (!from)
            return { drained: true };
        const old = await t.target(x, 'switch', tg, from);
        const v = await t.health(tg, from, old, 'switch');
        if (registered(v)) {
            await t.deregister(tg, from, old, 'switch');
            h.log.info(`deregistered ${describeTarget(old)} (${from}) from ${tg.name}: the load balancer sends it no new requests and drains it (deregistration delay ${tg.deregistrationDelaySeconds ?? '?'} s, waited for at most drain-seconds)`);
        }
        else {
            h.log.info(`${describeTarget(old)} (${from}) is ${describeHealth(v)} in ${tg.name}: nothing to deregister`);
        }
        return { drained: true };
    }
    watchCheck(h) {
        return lazyWatch(async () => (await this.hostTargets()).watchCheck(execOf(h), await this.group(), h.plan.candidate));
    }
    /** Committed: the old colour's target (deregistered by the switch) finishes draining before its container stops. */
    async drainOld(h, wait) {
        const from = h.plan.live;
        if (!from)
            return 0;
        const tg = await this.group();
        const t = await this.hostTargets();
        const old = await t.target(execOf(h), 'drain', tg, from);
        if (!wait)
            return t.drainLeftMs(h, tg, from, old, 'drain');
        await t.waitDrained(h, tg, from, old, 'drain', this.cfg.drainMs);
        return 0;
    }
    async switchBack(h, _state) {
        const { plan } = h;
        const to = plan.candidate;
        const back = plan.live;
        const tg = await this.group();
        const t = await this.hostTargets();
        const step = 'switch-back';
        const cand = await t.target(execOf(h), step, tg, to);
        const cv = await t.health(tg, to, cand, step);
        const prev = back ? await t.target(execOf(h), step, tg, back) : undefined;
        const pv = back && prev ? await t.health(tg, back, prev, step) : undefined;
        if (!registered(cv) && cv.state !== 'draining' && (!back || registered(pv))) {
            h.log.info(`${describeTarget(cand)} (${to}) is ${describeHealth(cv)} in ${tg.name}${back ? ` and ${back} is still registered` : ''}: traffic was not moved, nothing to switch back`);
            return { moved: false };
        }
        if (back && prev && !registered(pv)) {
            // The old colour was deregistered by the switch: it takes requests again once the ALB calls it healthy.
            await t.register(tg, back, prev, step);
            h.log.info(`registered ${describeTarget(prev)} (${back}) in ${tg.name} again; waiting until the load balancer calls it healthy`);
            await t.waitHealthy(h, tg, back, prev, step, true);
        }
        if (registered(cv))
            await t.deregister(tg, to, cand, step);
        if (registered(cv) || cv.state === 'draining') {
            // In-flight requests to the candidate finish before its container goes.
            await t.waitDrained(h, tg, to, cand, step, this.cfg.drainMs);
        }
        // Traffic was moved if the old colour had left the group, or the ALB sent the candidate requests (it was healthy).
        return {
            moved: Boolean(back && !registered(pv)) ||
                t.recorder.samples.some((x) => x.color === to && x.group === tg.name && x.state === 'healthy')
        };
    }
}

;// CONCATENATED MODULE: ./src/traffic/alb/traffic.ts




class AlbTraffic {
    cfg;
    load;
    elbP;
    groupsP = new Map();
    /** alb-listener: the one fleet switch of this run. */
    listener;
    constructor(cfg, load = loadElb, note) {
        this.cfg = cfg;
        this.load = load;
        const alb = cfg.alb;
        if (alb?.mode === 'listener')
            this.listener = new ListenerSwitch(alb, this, cfg.hosts.length, note);
    }
    elb() {
        this.elbP ??= this.load(this.cfg.awsRegion ?? 'us-east-1');
        this.elbP.catch(() => (this.elbP = undefined));
        return this.elbP;
    }
    group(nameOrArn, input) {
        const key = `${input} ${nameOrArn}`;
        let p = this.groupsP.get(key);
        if (!p) {
            p = this.elb().then((elb) => elb.targetGroup(nameOrArn, input));
            this.groupsP.set(key, p);
            p.catch(() => this.groupsP.delete(key));
        }
        return p;
    }
    routerFor(target) {
        if (this.listener)
            return new AlbListenerRouter(this.cfg, this, this.listener, target.label);
        return new AlbTargetGroupRouter(this.cfg, this);
    }
    /** A host's deploy ended: with the fleet switch, one that failed before it releases the others (no change). */
    hostDone(host, ok, step) {
        this.listener?.hostDone(host, ok, step);
    }
    report() {
        return this.listener?.report();
    }
    async close() {
        if (!this.elbP)
            return;
        await this.elbP.then((e) => e.close(), () => undefined);
    }
}

;// CONCATENATED MODULE: ./src/traffic/caddy/config.ts
/** Every object in a JSON tree, depth first. */
function* objects(v) {
    if (Array.isArray(v))
        for (const x of v)
            yield* objects(x);
    else if (v && typeof v === 'object') {
        yield v;
        for (const x of Object.values(v))
            yield* objects(x);
    }
}
const trimSlash = (p) => p.replace(/\/+$/, '');
/** The upstream dial addresses of every reverse_proxy handler in the config. */
function proxiedAddresses(config) {
    const out = [];
    for (const o of objects(config)) {
        if (o.handler !== 'reverse_proxy' || !Array.isArray(o.upstreams))
            continue;
        for (const u of o.upstreams)
            if (typeof u?.dial === 'string')
                out.push(u.dial);
    }
    return out;
}
/** Whether a `file` matcher looks for the green marker of `markerDir` (`<caddy-switch-dir>/<app>`). */
function hasMarkerMatcher(config, markerDir) {
    for (const o of objects(config)) {
        const f = o.file;
        if (!f || typeof f !== 'object')
            continue;
        const files = Array.isArray(f.try_files) ? f.try_files.filter((x) => typeof x === 'string') : [];
        const root = typeof f.root === 'string' ? trimSlash(f.root) : '';
        const wanted = `${trimSlash(markerDir)}/green`;
        if (files.some((x) => (x.startsWith('/') && root ? `${root}${x}` : x) === wanted || `${root}/${x}` === wanted))
            return true;
    }
    return false;
}
/** What is missing from Caddy's config for this app; undefined when it has all the action needs. */
function configProblem(config, markerDir, ports) {
    if (config === null || config === undefined)
        return 'Caddy has no config loaded';
    const dials = proxiedAddresses(config);
    const missing = [];
    if (!hasMarkerMatcher(config, markerDir))
        missing.push(`a file matcher for ${markerDir}/green`);
    for (const c of ['green', 'blue']) {
        const addr = `127.0.0.1:${ports[c]}`;
        // exactly as the drain looks it up in /reverse_proxy/upstreams (Caddy lists each upstream as its config dials it)
        if (!dials.includes(addr))
            missing.push(`a reverse_proxy to ${addr} (${c})`);
    }
    return missing.length ? `Caddy's config lacks ${missing.join(' and ')}` : undefined;
}

;// CONCATENATED MODULE: ./src/traffic/caddy/scripts.ts
/**
 * Caddy's remote scripts: the marker file that moves traffic (Caddy's `file` matcher looks for it at every request),
 * a GET of Caddy's admin API on the host, and the wait for Caddy's requests to the old colour to finish. Constant
 * POSIX sh bodies, values as positional arguments.
 */

/**
 * Points the app's traffic at `color`: green = the marker `<dir>/<app>/green` exists (written atomically, holding the
 * note), blue = it does not. Fencing: a run whose lease expired on the host changes nothing (exit 77).
 */
function markerScript(dir, app, color, note, lease) {
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
function adminGetScript(url) {
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
const CADDY_DRAIN = [
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
function caddyDrainScript(adminUrl, address, maxMs) {
    return { body: [CLOCK, ...CADDY_DRAIN].join('\n'), args: [`${adminUrl} ${address}`, String(Math.round(maxMs))] };
}

;// CONCATENATED MODULE: ./src/traffic/caddy/router.ts






class CaddyRouter {
    cfg;
    kind = 'caddy';
    startVerb = 'run';
    constructor(cfg) {
        this.cfg = cfg;
    }
    get markerDir() {
        return `${this.cfg.caddySwitchDir}/${this.cfg.app}`;
    }
    publishArgs(color) {
        return ['--publish', `127.0.0.1:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
    }
    /** The green marker: detect reads it (its content names the deploy that wrote it). */
    routingFile() {
        return `${this.markerDir}/green`;
    }
    routedColor(state) {
        return state.upstreamContent !== undefined ? 'green' : 'blue';
    }
    /** Only one colour runs and the marker routes to the other: that one is live (liveColor), but Caddy sends to the other. */
    routingNotes(state) {
        const routed = this.routedColor(state);
        return state.running.length === 1 && state.running[0] !== routed
            ? [
                `Caddy routes ${this.cfg.app} to ${routed} (${this.markerDir}/green ${routed === 'green' ? 'exists' : 'does not exist'}), which is not running; taking the running ${state.running[0]} container as live`
            ]
            : [];
    }
    probePort(color) {
        return this.cfg.ports[color];
    }
    retire(plan) {
        return plan.live ? containerName(this.cfg.app, plan.live) : undefined;
    }
    /** Caddy's config as its admin API has it (GET /config/), read on the host. */
    async readConfig(ctx, step) {
        const url = `${this.cfg.caddyAdminUrl}/config/`;
        const s = adminGetScript(url);
        const res = await ctx.remote.run(s.body, s.args);
        const out = res.stdout;
        const at = out.lastIndexOf('\n@@http ');
        const code = at >= 0 ? Number(out.slice(at + 8).trim()) : NaN;
        if (res.code !== 0 || code !== 200) {
            const why = (res.stderr.trim() || out.slice(0, Math.max(0, at)).trim()).split('\n').slice(-2).join(' ');
            throw new StepError(step, `Caddy's admin API did not answer GET ${url} on the host (${res.code !== 0 ? `exit ${res.code}` : `HTTP ${code}`}${why ? `: ${why}` : ''}): is Caddy running with its admin API on caddy-admin-url?`);
        }
        try {
            return JSON.parse(out.slice(0, at));
        }
        catch (e) {
            throw new StepError(step, `Caddy's admin API answered GET ${url} with no JSON (${e.message})`);
        }
    }
    /** Before anything takes traffic: Caddy's config must route this app by the marker, or the switch moves nothing. */
    async beforeHealth(ctx) {
        const problem = configProblem(await this.readConfig(ctx, 'health'), this.markerDir, this.cfg.ports);
        if (problem)
            throw new StepError('health', `${problem}: traffic caddy switches by the marker file, so Caddy must route the app to green when ${this.markerDir}/green exists and to blue otherwise (see docs/traffic.md, Caddy); nothing was changed`);
        ctx.log.info(`Caddy's config routes ${this.cfg.app} by ${this.markerDir}/green (admin API ${this.cfg.caddyAdminUrl})`);
    }
    async switchTraffic(ctx) {
        const { cfg, plan } = ctx;
        const to = plan.candidate;
        const t0 = Date.now();
        const note = `Live: ${to} (${ctx.imageLabel}), ${cfg.command} ${ctx.deployId}.`;
        try {
            await exec(ctx, 'switch', markerScript(cfg.caddySwitchDir, cfg.app, to, note, { app: cfg.app, deployId: ctx.deployId }), to === 'green'
                ? `write ${this.markerDir}/green: Caddy sends the next request to green (127.0.0.1:${cfg.ports.green})`
                : `remove ${this.markerDir}/green: Caddy sends the next request to blue (127.0.0.1:${cfg.ports.blue})`);
        }
        catch (e) {
            if (e instanceof StepError && /\(exit 77\)/.test(e.message))
                throw new StepError('switch', 'the deploy lock (lease) of this run expired on the host before the switch, so another deploy may own the host now: traffic was not changed');
            throw e;
        }
        return {
            cutoverMs: Date.now() - t0,
            // The finishing job stops the old colour once Caddy has no request to it in flight (at most drain-seconds).
            drain: plan.live
                ? {
                    lines: [CLOCK, ...CADDY_DRAIN],
                    words: `${cfg.caddyAdminUrl} 127.0.0.1:${cfg.ports[plan.live]}`,
                    said: (o, stopName, secs) => {
                        const left = /@@drain-timeout (\S+)/.exec(o);
                        return left
                            ? `Caddy still had ${left[1]} request(s) to ${stopName} after drain-seconds (${secs} s); stopped it anyway`
                            : undefined;
                    }
                }
                : undefined
        };
    }
    async confirm(ctx) {
        ctx.log.info(`Caddy sends new requests to ${ctx.plan.candidate} from the next one on (marker file, no reload)`);
    }
    /**
     * Decided from the marker as read after the failure: when it routes to the candidate and not as the host had it
     * before this run (plan.upstreamColor), it is put back as it was.
     */
    async switchBack(ctx, state) {
        const { cfg, plan } = ctx;
        const now = this.routedColor(state);
        const before = this.routedColor(plan);
        if (now !== plan.candidate || now === before) {
            ctx.log.info(`Caddy routes ${cfg.app} to ${now} (${this.markerDir}/green), as before this deploy: traffic was not moved, nothing to switch back`);
            return { moved: false };
        }
        const back = before ?? 'blue';
        await exec(ctx, 'switch-back', markerScript(cfg.caddySwitchDir, cfg.app, back, `Live: ${back}, switched back by ${cfg.command} ${ctx.deployId}.`), `point Caddy back at ${back} (${back === 'green' ? 'write' : 'remove'} ${this.markerDir}/green)`);
        // Requests Caddy already sent to the candidate finish before it is removed.
        const out = await exec(ctx, 'switch-back', caddyDrainScript(cfg.caddyAdminUrl, `127.0.0.1:${cfg.ports[plan.candidate]}`, cfg.drainMs), `let Caddy's requests to ${containerName(cfg.app, plan.candidate)} finish (up to ${cfg.drainMs / 1000} s)`);
        const left = /@@drain-timeout (\S+)/.exec(out);
        if (left)
            ctx.warn(`Caddy still had ${left[1]} request(s) to ${containerName(cfg.app, plan.candidate)} after drain-seconds: they end when it is removed`);
        return { moved: true };
    }
    /** `command: status`: whether Caddy's config routes the app by the marker (a finding if not). */
    async status(ctx, st) {
        const caddy = { adminUrl: this.cfg.caddyAdminUrl, markerDir: this.markerDir };
        try {
            caddy.error = configProblem(await this.readConfig(ctx, 'detect'), this.markerDir, this.cfg.ports);
        }
        catch (e) {
            caddy.error = e.message;
        }
        // The colour the marker routes to, as Caddy sees it now (the one Caddy sends the next request to).
        const m = await ctx.remote.run('if [ -e "$1" ]; then echo green; else echo blue; fi', [this.routingFile()]);
        const routed = m.code === 0 ? (m.stdout.trim() === 'green' ? 'green' : 'blue') : undefined;
        caddy.routed = routed;
        st.caddy = caddy;
        ctx.log.info(`caddy: routes ${this.cfg.app} to ${routed ?? '?'} (${this.markerDir}/green); ${caddy.error ?? 'the config routes by the marker'}`);
        return {
            routed,
            findings: (s) => {
                const f = caddy.error ? [{ level: 'error', message: `Caddy: ${caddy.error}` }] : [];
                if (routed && s.colors[routed].state !== 'running')
                    f.push({
                        level: 'error',
                        message: `Caddy routes ${this.cfg.app} to ${routed} (${this.markerDir}/green ${routed === 'green' ? 'exists' : 'does not exist'}), which is ${s.colors[routed].state ?? 'missing'}: every request fails; deploy again or roll back`
                    });
                return f;
            }
        };
    }
}
/** The status summary's line for Caddy. */
function caddyStatusLine(st, cell) {
    const c = st.caddy;
    if (!c)
        return undefined;
    return `Caddy (admin API \`${cell(c.adminUrl)}\`, marker \`${cell(c.markerDir)}/green\`): routes to ${c.routed ?? '?'}; ${c.error ? cell(c.error) : 'the config routes by the marker'}`;
}

;// CONCATENATED MODULE: ./src/traffic/haproxy/commands.ts
/** Backend names the action sends (haproxy-backend is validated to this). */
const BACKEND_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/;
function checkBackend(backend) {
    if (!BACKEND_NAME.test(backend))
        throw new Error(`invalid HAProxy backend name "${backend}"`);
    return backend;
}
/** `set server <backend>/<colour> state ready|drain|maint`. */
function setStateCommand(backend, server, state) {
    if (server !== 'blue' && server !== 'green')
        throw new Error(`invalid server ${String(server)}`);
    if (state !== 'ready' && state !== 'drain' && state !== 'maint')
        throw new Error(`invalid state ${String(state)}`);
    return `set server ${checkBackend(backend)}/${server} state ${state}`;
}
/** `show servers state [<backend>]`: all backends is what the server-state-file holds. */
function showServersStateCommand(backend) {
    return backend === undefined ? 'show servers state' : `show servers state ${checkBackend(backend)}`;
}
/** `show stat <backend> 4 -1`: the backend's servers only (type 4), all of them (-1). */
function showStatCommand(backend) {
    return `show stat ${checkBackend(backend)} 4 -1`;
}
/** HAProxy's clock (`date_now`), to time a change on the host itself. */
const SHOW_ACTIVITY = 'show activity';
/** Several commands as one line: HAProxy runs them in order, in the same pass of its event loop. */
function commandLine(commands) {
    for (const c of commands)
        if (/[;\n\r\0]/.test(c) || !c.trim())
            throw new Error(`invalid HAProxy command "${c}"`);
    return `${commands.join('; ')}\n`;
}
/**
 * The switch as one command line: the new colour `ready` and the old one `drain` in the same pass, so no request
 * finds neither (and none finds the old one once the line ran), with HAProxy's clock read before and after.
 */
function switchCommands(backend, to, from) {
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
function socketClientScript(socketPath) {
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
function socketDiagnosisScript(socketPath) {
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
function parseSocketDiagnosis(out, socketPath) {
    const m = /^@@socket (\S+)(?: (\S+) (\S+) (.*))?$/m.exec(out);
    if (!m)
        return undefined;
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
function writeStateFileScript(file) {
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

;// CONCATENATED MODULE: ./src/traffic/haproxy/runtime.ts

const ANSWER_TIMEOUT_MS = 10_000;
class HaproxyRuntime {
    remote;
    socketPath;
    onNote;
    /** Set once sshd refused the forward: the host-side client is used from then on. */
    viaHost = false;
    constructor(remote, socketPath, onNote = () => undefined) {
        this.remote = remote;
        this.socketPath = socketPath;
        this.onNote = onNote;
    }
    /** Sends one command line (see commandLine) and returns HAProxy's whole answer. */
    async send(line) {
        if (!this.viaHost && this.remote.forwardUnix) {
            let stream;
            try {
                stream = await this.remote.forwardUnix(this.socketPath);
            }
            catch (e) {
                // OpenSSH refuses a forward it does not allow (AllowStreamLocalForwarding no, a restricted key) with the same
                // "open failed" as a connect failure: the host tells which. A socket the SSH user can use means sshd refused.
                const msg = e.message.replace(/^\(SSH\) /, '');
                const d = await this.diagnose();
                if (!d.usable)
                    throw new Error(d.reason ?? `cannot open the HAProxy socket ${this.socketPath} on the host: ${msg}`);
                this.viaHost = true;
                this.onNote(`sshd does not allow stream-local forwarding to ${this.socketPath} (${msg}): using socat or nc -U on the host`);
                return this.sendViaHost(line);
            }
            return readAnswer(stream, line, this.socketPath);
        }
        return this.sendViaHost(line);
    }
    async sendViaHost(line) {
        const s = socketClientScript(this.socketPath);
        const t0 = Date.now();
        const res = await this.remote.run(s.body, s.args, { stdin: line });
        if (res.code === 127) {
            throw new Error(`cannot reach the HAProxy socket ${this.socketPath}: sshd does not allow stream-local forwarding (set AllowStreamLocalForwarding yes in sshd_config) and neither socat nor nc -U is installed on the host (install socat)`);
        }
        if (res.code !== 0)
            throw new Error(await this.explain(res.stderr.trim() || `exit ${res.code}`));
        return { text: res.stdout, roundTripMs: Date.now() - t0 };
    }
    /** Whether the SSH user can use the socket, read on the host; if not, why (missing socket, permissions, group). */
    async diagnose() {
        const d = socketDiagnosisScript(this.socketPath);
        const out = await this.remote
            .run(d.body, d.args)
            .then((r) => r.stdout)
            .catch(() => '');
        return { usable: /^@@socket ok$/m.test(out), reason: parseSocketDiagnosis(out, this.socketPath) };
    }
    async explain(detail) {
        return ((await this.diagnose()).reason ??
            `cannot open the HAProxy socket ${this.socketPath} on the host: ${detail.replace(/^\(SSH\) /, '')}`);
    }
}
function readAnswer(stream, line, socketPath) {
    return new Promise((resolve, reject) => {
        let text = '';
        let done = false;
        const t0 = Date.now();
        const finish = (err) => {
            if (done)
                return;
            done = true;
            clearTimeout(timer);
            if (err) {
                stream.destroy();
                reject(err);
            }
            else
                resolve({ text, roundTripMs: Date.now() - t0 });
        };
        const timer = setTimeout(() => finish(new Error(`HAProxy did not answer on ${socketPath} within ${ANSWER_TIMEOUT_MS / 1000} s`)), ANSWER_TIMEOUT_MS);
        stream.on('data', (d) => (text += d.toString('utf8')));
        // HAProxy closes after answering a non-interactive line.
        stream.on('end', () => finish());
        stream.on('close', () => finish());
        stream.on('error', (e) => finish(new Error(`the HAProxy socket ${socketPath}: ${e.message}`)));
        // Our side ends after the line (like socat): HAProxy still answers it, then closes.
        stream.end(line);
    });
}

;// CONCATENATED MODULE: ./src/traffic/haproxy/view.ts
const MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40;
const DRAIN_BITS = 0x08 | 0x10;
const OP = { '0': 'down', '1': 'starting', '2': 'up', '3': 'stopping' };
const OK_CHECKS = new Set(['L4OK', 'L6OK', 'L7OK', 'L7OKC', 'PROCOK']);
/** What HAProxy answers instead of data when a command fails (unknown backend, permission, syntax). */
class HaproxyAnswerError extends Error {
}
function cliError(text) {
    const t = text.trim();
    if (/^(Can't find backend|No such (backend|server)|Unknown command|Permission denied|Require '|'set server' |'show stat' |Failed|Invalid)/im.test(t))
        return t.split('\n')[0];
    return undefined;
}
/**
 * Parses `show servers state [<backend>]` (format version 1: a "1" line, a "# be_id be_name srv_id srv_name …" header,
 * then one line per server) and `show stat` CSV ("# pxname,svname,…" header) of the backend into one view of the blue
 * and green servers. Columns are looked up by their header names, so added columns in newer versions do not matter.
 */
function parseBackendView(backend, serversState, stat) {
    const err = cliError(serversState) ?? (stat !== undefined ? cliError(stat) : undefined);
    if (err)
        throw new HaproxyAnswerError(err);
    const lines = serversState
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
    const header = lines.find((l) => l.startsWith('#') && /\bbe_name\b/.test(l) && /\bsrv_name\b/.test(l));
    if (!header)
        throw new HaproxyAnswerError(`unexpected answer to "show servers state" (no header line): ${serversState.trim().slice(0, 200) || '(empty)'}`);
    const cols = header.replace(/^#\s*/, '').split(/\s+/);
    const at = (name) => cols.indexOf(name);
    const servers = {};
    for (const line of lines) {
        if (line.startsWith('#') || /^\d+$/.test(line))
            continue;
        const f = line.split(/\s+/);
        if (f[at('be_name')] !== backend)
            continue;
        const name = f[at('srv_name')];
        if (name !== 'blue' && name !== 'green')
            continue;
        const bits = Number(f[at('srv_admin_state')]);
        const port = at('srv_port') >= 0 ? Number(f[at('srv_port')]) : NaN;
        servers[name] = {
            name,
            adminBits: bits,
            admin: bits & MAINT_BITS ? 'maint' : bits & DRAIN_BITS ? 'drain' : 'ready',
            op: OP[f[at('srv_op_state')]] ?? 'down',
            address: f[at('srv_addr')] ?? '',
            port: Number.isFinite(port) && port > 0 ? port : undefined,
            checkHealth: Number(f[at('srv_check_health')] ?? 0)
        };
    }
    if (stat !== undefined) {
        const rows = stat.split('\n').filter((l) => l.trim());
        const h = rows.find((l) => l.startsWith('# pxname'));
        if (!h)
            throw new HaproxyAnswerError(`unexpected answer to "show stat" (no header line): ${stat.trim().slice(0, 200) || '(empty)'}`);
        const sc = h.replace(/^#\s*/, '').split(',');
        const col = (row, name) => {
            const i = sc.indexOf(name);
            return i >= 0 ? row[i] : undefined;
        };
        const num = (v) => (v === undefined || v === '' ? undefined : Number(v));
        for (const r of rows) {
            if (r.startsWith('#'))
                continue;
            const row = r.split(',');
            if (col(row, 'pxname') !== backend)
                continue;
            const s = servers[col(row, 'svname')];
            if (!s)
                continue;
            s.sessions = num(col(row, 'scur'));
            s.queued = num(col(row, 'qcur'));
            s.status = col(row, 'status');
            s.checkStatus = (col(row, 'check_status') ?? '').replace(/^\* ?/, '') || undefined;
            s.checkCode = col(row, 'check_code') || undefined;
            s.checkDesc = col(row, 'check_desc') || undefined;
            s.rise = num(col(row, 'check_rise'));
            s.fall = num(col(row, 'check_fall'));
        }
    }
    return { backend, servers };
}
/** The colour HAProxy sends new requests to: the one server that is ready (not drain/maint) and up; else the only ready one. */
function routedColor(view) {
    if (!view)
        return undefined;
    const ready = ['blue', 'green'].filter((c) => view.servers[c]?.admin === 'ready');
    if (ready.length === 1)
        return ready[0];
    const up = ready.filter((c) => view.servers[c]?.op === 'up');
    return up.length === 1 ? up[0] : undefined;
}
/** The colour from the raw `show servers state <backend>` text the detect step stores as the host's routing. */
function routedColorOf(backend, serversState) {
    if (!serversState)
        return undefined;
    try {
        return routedColor(parseBackendView(backend, serversState));
    }
    catch {
        return undefined;
    }
}
/** The server has no `check` in HAProxy's config: it counts as up whatever the app answers. */
function unchecked(s) {
    return s.status === 'no check';
}
/**
 * HAProxy itself found the server healthy since it left maint: up, its last check passed, and the health counter at
 * its top (HAProxy puts a server that leaves maint straight to "up" at `rise` without checking it; only a passing
 * check raises the counter to rise+fall-1).
 */
function checkedHealthy(s) {
    if (s.op !== 'up')
        return false;
    if (unchecked(s))
        return true;
    if (!s.checkStatus || !OK_CHECKS.has(s.checkStatus))
        return false;
    if (s.rise !== undefined && s.fall !== undefined)
        return s.checkHealth >= s.rise + s.fall - 1;
    return true;
}
/** One line for logs and errors: "green: ready, up, 0 sessions, check L7OK (200)". */
function describeServer(s) {
    if (!s)
        return 'missing';
    const check = s.checkStatus
        ? `check ${s.checkStatus}${s.checkCode ? ` (${s.checkCode})` : ''}${s.checkDesc && !/^OK$/i.test(s.checkDesc) ? ` ${s.checkDesc}` : ''}`
        : unchecked(s)
            ? 'no health check'
            : 'not checked yet';
    return `${s.name}: ${s.admin}, ${s.op}${s.sessions !== undefined ? `, ${s.sessions} session(s)` : ''}, ${check}`;
}
/** `show activity`'s `date_now: <seconds>.<microseconds>`: HAProxy's clock, in ms. */
function parseActivityDates(text) {
    return [...text.matchAll(/^date_now:\s*(\d+)\.(\d{1,6})/gm)].map((m) => Number(m[1]) * 1000 + Number(m[2].padEnd(6, '0')) / 1000);
}

;// CONCATENATED MODULE: ./src/traffic/haproxy/router.ts







const POLL_MS = 100;
const router_sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Reads HAProxy's view of the backend's two servers in one command line. */
async function readBackendView(rt, backend) {
    const { text } = await rt.send(commandLine([showServersStateCommand(backend), showStatCommand(backend)]));
    const at = text.indexOf('# pxname');
    return parseBackendView(backend, at >= 0 ? text.slice(0, at) : text, at >= 0 ? text.slice(at) : '');
}
/** A backend without servers named blue and green cannot be switched: say what the config must hold. */
function missingServers(view) {
    const missing = ['blue', 'green'].filter((c) => !view.servers[c]);
    if (!missing.length)
        return undefined;
    return `HAProxy's backend ${view.backend} has no server named ${missing.join(' or ')}: its servers must be named blue and green ("server blue 127.0.0.1:<blue-port> check" and "server green 127.0.0.1:<green-port> check")`;
}
class HaproxyRouter {
    cfg;
    kind = 'haproxy';
    startVerb = 'run';
    constructor(cfg) {
        this.cfg = cfg;
    }
    publishArgs(color) {
        return ['--publish', `127.0.0.1:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
    }
    routedColor(state) {
        return routedColorOf(this.cfg.haproxyBackend, state.upstreamContent);
    }
    probePort(color) {
        return this.cfg.ports[color];
    }
    retire(plan) {
        return plan.live ? containerName(this.cfg.app, plan.live) : undefined;
    }
    routingFile() {
        return '';
    }
    async readRouting(remote) {
        const rt = new HaproxyRuntime(remote, this.cfg.haproxySocket);
        const { text } = await rt.send(commandLine([showServersStateCommand(this.cfg.haproxyBackend)]));
        const view = parseBackendView(this.cfg.haproxyBackend, text);
        const missing = missingServers(view);
        if (missing)
            throw new Error(missing);
        return text;
    }
    status(ctx, st) {
        return haproxyStatus(ctx, st);
    }
    rt;
    rtRemote;
    /** The admin socket's client for the host's connection as it is now (a new one after a reconnect). */
    runtime(h) {
        if (!this.rt || this.rtRemote !== h.remote) {
            this.rt = new HaproxyRuntime(h.remote, this.cfg.haproxySocket, (m) => h.log.warn(m));
            this.rtRemote = h.remote;
        }
        return this.rt;
    }
    /** Runs state changes (one line) and fails the step with HAProxy's answer if it refused any. */
    async change(h, rt, step, commands) {
        h.log.debug(`$ haproxy: ${commands.join('; ')}`);
        const { text } = await rt.send(commandLine(commands)).catch((e) => {
            throw new StepError(step, e.message);
        });
        // `set server` answers nothing when it worked; show activity answers its counters.
        const refused = text
            .split('\n')
            .map((l) => l.trim())
            .filter((l) => l && !/^[A-Za-z0-9_]+: /.test(l));
        if (refused.length)
            throw new StepError(step, `HAProxy refused "${commands.filter((c) => c.startsWith('set ')).join('; ')}": ${refused.slice(0, 3).join(' ')}`);
        return text;
    }
    async view(rt, step) {
        try {
            const v = await readBackendView(rt, this.cfg.haproxyBackend);
            const missing = missingServers(v);
            if (missing)
                throw new Error(missing);
            return v;
        }
        catch (e) {
            throw new StepError(step, e.message);
        }
    }
    /** After every change: the server states into haproxy-state-file, for HAProxy's next start or reload. */
    async saveState(h, rt, step) {
        const { text } = await rt.send(commandLine([showServersStateCommand()])).catch((e) => {
            throw new StepError(step, e.message);
        });
        if (!/^1\s*\n#/.test(text.trimStart()))
            throw new StepError(step, `unexpected answer to "show servers state": ${text.trim().slice(0, 200)}`);
        const s = writeStateFileScript(this.cfg.haproxyStateFile);
        s.stdin = text.replace(/\n+$/, '\n');
        await exec(h, step, s, `write HAProxy's server states to ${this.cfg.haproxyStateFile}`);
    }
    /**
     * Takes `color` out of maint into drain: HAProxy checks it again and sends it no new requests. maint first:
     * HAProxy counts a server that leaves maint as up before checking it; this resets that, so only a check that
     * passes from now on counts (see checkedHealthy).
     */
    async enterDrain(h, rt, step, color) {
        const b = this.cfg.haproxyBackend;
        await this.change(h, rt, step, [setStateCommand(b, color, 'maint'), setStateCommand(b, color, 'drain')]);
        await this.saveState(h, rt, step);
    }
    /** Waits until HAProxy's own check of `color` passed since it left maint, at most `timeoutMs`. */
    async waitChecked(h, rt, step, color, timeoutMs) {
        const b = this.cfg.haproxyBackend;
        const until = Date.now() + timeoutMs;
        for (;;) {
            const s = (await this.view(rt, step)).servers[color];
            if (checkedHealthy(s)) {
                if (unchecked(s))
                    h.warn(`HAProxy has no health check for ${b}/${color} (add "check" to its server line): it would send requests to it whatever the app answers`);
                return s;
            }
            if (Date.now() >= until) {
                throw new StepError(step, `HAProxy's check of ${b}/${color} did not pass within ${timeoutMs / 1000} s (${describeServer(s)}), although the container answers on 127.0.0.1:${this.cfg.ports[color]}: does the server line of ${color} in backend ${b} point at 127.0.0.1:${this.cfg.ports[color]}, and does its check match health-path?`);
            }
            await router_sleep(POLL_MS);
        }
    }
    /** Waits until `color` has no sessions left (at most drain-seconds), then puts it into maint. */
    async drainThenMaint(h, rt, step, color) {
        const b = this.cfg.haproxyBackend;
        const t0 = Date.now();
        const until = t0 + this.cfg.drainMs;
        let s;
        for (;;) {
            s = (await this.view(rt, step)).servers[color];
            const left = (s.sessions ?? 0) + (s.queued ?? 0);
            if (left === 0) {
                h.log.info(`${b}/${color} has no sessions left (${Date.now() - t0} ms after it started draining)`);
                break;
            }
            if (Date.now() >= until) {
                h.warn(`${b}/${color} still had ${left} session(s) after drain-seconds (${this.cfg.drainMs / 1000} s): put into maint anyway (they go on until its container stops)`);
                break;
            }
            await router_sleep(POLL_MS);
        }
        await this.change(h, rt, step, [setStateCommand(b, color, 'maint')]);
        await this.saveState(h, rt, step);
    }
    /**
     * Makes `to` the only server HAProxy sends new requests to: `to` ready and `from` drain in one command line (HAProxy's
     * clock read around it). Returns the cut-over on HAProxy's clock.
     */
    async move(h, rt, step, to, from) {
        const b = this.cfg.haproxyBackend;
        const text = await this.change(h, rt, step, switchCommands(b, to, from));
        const dates = parseActivityDates(text);
        const cutoverMs = dates.length >= 2 ? Math.round(dates[dates.length - 1] - dates[0]) : undefined;
        await this.saveState(h, rt, step);
        const v = await this.view(rt, step);
        if (v.servers[to].admin !== 'ready' || v.servers[from].admin === 'ready') {
            throw new StepError(step, `HAProxy did not take the new states (${describeServer(v.servers[to])}; ${describeServer(v.servers[from])})`);
        }
        h.log.info(`HAProxy sends new requests to ${b}/${to} only: ready and drain applied in one pass (${cutoverMs ?? '?'} ms on HAProxy's clock); ${describeServer(v.servers[from])}`);
        return cutoverMs;
    }
    /** Health: HAProxy starts checking the candidate (in drain: no requests) while the deploy's probe waits for it. */
    async beforeHealth(h) {
        await this.enterDrain(h, this.runtime(h), 'health', h.plan.candidate);
    }
    /** Health: HAProxy's own check of the candidate passed since it left maint. */
    async afterHealth(h) {
        const s = await this.waitChecked(h, this.runtime(h), 'health', h.plan.candidate, this.cfg.healthTimeoutMs);
        h.log.info(`HAProxy's check passes: ${describeServer(s)}`);
    }
    /**
     * Until the switch nothing took traffic: whatever fails (health, the smoke test, a cancel), the candidate's server
     * goes back into maint, as it was before, not left in drain with HAProxy checking a container that is removed.
     */
    async abandon(h, how) {
        if (!how.ownsHost)
            return;
        const rt = this.runtime(h);
        await this.change(h, rt, 'health', [setStateCommand(this.cfg.haproxyBackend, h.plan.candidate, 'maint')])
            .then(() => this.saveState(h, rt, 'health'))
            .catch(() => undefined);
    }
    async switchTraffic(h) {
        const b = this.cfg.haproxyBackend;
        const to = h.plan.candidate;
        const from = h.plan.live;
        const rt = this.runtime(h);
        if (from)
            return { cutoverMs: await this.move(h, rt, 'switch', to, from), drained: true };
        // First deploy: the candidate ready; the other server (no container) in maint.
        const other = to === 'blue' ? 'green' : 'blue';
        await this.change(h, rt, 'switch', [setStateCommand(b, to, 'ready'), setStateCommand(b, other, 'maint')]);
        await this.saveState(h, rt, 'switch');
        return { drained: true };
    }
    async confirm(h) {
        const to = h.plan.candidate;
        const s = (await this.view(this.runtime(h), 'verify')).servers[to];
        if (!checkedHealthy(s) || s.admin !== 'ready')
            throw new StepError('verify', `HAProxy does not see ${this.cfg.haproxyBackend}/${to} healthy after the switch (${describeServer(s)})`);
    }
    /**
     * Beside the verify-seconds watch, HAProxy's view of the candidate: its first failed check fails verify. HAProxy
     * marks a server down only after `fall` failed checks, and the old colour is still in drain and checked, so
     * switching back then happens before HAProxy has no server left to send requests to.
     */
    watchCheck(h) {
        const b = this.cfg.haproxyBackend;
        const color = h.plan.candidate;
        return {
            everyMs: POLL_MS,
            check: async () => {
                const s = (await this.view(this.runtime(h), 'verify')).servers[color];
                if (s.admin !== 'ready' || !checkedHealthy(s))
                    throw new StepError('verify', `HAProxy's check of ${b}/${color} failed after the switch (${describeServer(s)})`);
            }
        };
    }
    /**
     * The old colour stayed in drain (checked by HAProxy) through verify, so a switch back needed no new check; now
     * it finishes its sessions (at most drain-seconds) and goes into maint.
     */
    async afterVerify(h) {
        const b = this.cfg.haproxyBackend;
        const to = h.plan.candidate;
        const rt = this.runtime(h);
        const after = (await this.view(rt, 'verify')).servers[to];
        if (after.op !== 'up' || after.admin !== 'ready')
            throw new StepError('verify', `HAProxy stopped sending requests to ${b}/${to} during verify (${describeServer(after)})`);
        if (h.plan.live)
            await this.drainThenMaint(h, rt, 'verify', h.plan.live);
    }
    async switchBack(h, _state) {
        const { cfg, plan } = h;
        const b = cfg.haproxyBackend;
        const to = plan.candidate;
        const back = plan.live;
        const rt = this.runtime(h);
        // HAProxy's states as they are now (state.upstreamContent was read just before; this adds sessions and checks).
        const v = await this.view(rt, 'switch-back');
        const cand = v.servers[to];
        const prev = back ? v.servers[back] : undefined;
        const candTakes = cand?.admin === 'ready';
        if ((!cand || cand.admin === 'maint') && (!back || prev?.admin === 'ready')) {
            h.log.info(`HAProxy sends nothing to ${b}/${to}${back ? ` and ${back} is ready` : ''}: traffic was not moved, nothing to switch back`);
            return { moved: false };
        }
        if (back) {
            // The previous colour first gets HAProxy's passing check (it may be in maint already), then takes the traffic back.
            if (!prev)
                throw new StepError('switch-back', `HAProxy's backend ${b} has no server ${back}`);
            if (prev.admin === 'maint' || !checkedHealthy(prev)) {
                await this.enterDrain(h, rt, 'switch-back', back);
                await this.waitChecked(h, rt, 'switch-back', back, cfg.healthTimeoutMs);
            }
            await this.move(h, rt, 'switch-back', back, to);
            await this.drainThenMaint(h, rt, 'switch-back', to);
        }
        else {
            // No previous colour: nothing served before this run, and nothing does after it.
            if (cand.admin === 'ready')
                await this.change(h, rt, 'switch-back', [setStateCommand(b, to, 'drain')]);
            await this.drainThenMaint(h, rt, 'switch-back', to);
        }
        return { moved: candTakes || prev?.admin !== 'ready' };
    }
}

;// CONCATENATED MODULE: ./src/traffic/haproxy/status.ts



/** Reads HAProxy's view; never throws (an unreachable socket is a finding). */
async function readHaproxyStatus(cfg, remote) {
    const base = { socket: cfg.haproxySocket, backend: cfg.haproxyBackend, servers: {} };
    try {
        const view = await readBackendView(new HaproxyRuntime(remote, cfg.haproxySocket), cfg.haproxyBackend);
        const missing = missingServers(view);
        const servers = {};
        for (const c of ['blue', 'green']) {
            const s = view.servers[c];
            if (s)
                servers[c] = {
                    admin: s.admin,
                    op: s.op,
                    sessions: s.sessions,
                    status: s.status,
                    checkStatus: s.checkStatus,
                    checkCode: s.checkCode,
                    checkDesc: s.checkDesc,
                    address: s.address,
                    port: s.port
                };
        }
        const lines = ['blue', 'green'].map((c) => `haproxy ${cfg.haproxyBackend}/${describeServer(view.servers[c]).replace(/^missing$/, `${c}: missing`)}`);
        return { status: { ...base, servers, routed: routedColor(view), error: missing }, lines };
    }
    catch (e) {
        return { status: { ...base, error: e.message }, lines: [] };
    }
}
/** HAProxy's findings for a host's status. */
function haproxyFindings(s, hx, cfg) {
    const f = [];
    if (hx.error)
        return [{ level: 'error', message: `HAProxy: ${hx.error}` }];
    const routed = hx.routed;
    if (!routed)
        f.push({
            level: 'error',
            message: `HAProxy routes to no single colour in backend ${hx.backend} (${['blue', 'green'].map((c) => `${c} ${hx.servers[c]?.admin ?? 'missing'}`).join(', ')})`
        });
    else {
        const srv = hx.servers[routed];
        if (s.colors[routed].state !== 'running')
            f.push({
                level: 'error',
                message: `HAProxy routes to ${routed}, whose container is ${s.colors[routed].state ?? 'missing'}`
            });
        if (srv.op !== 'up')
            f.push({
                level: 'error',
                message: `HAProxy's check finds the live ${routed} server ${srv.op} (${srv.checkStatus ?? 'no check'}${srv.checkDesc ? `: ${srv.checkDesc}` : ''})`
            });
        const other = routed === 'blue' ? 'green' : 'blue';
        const o = hx.servers[other];
        if (o && o.admin !== 'maint' && !s.lock.held)
            f.push({
                level: 'warning',
                message: `HAProxy's ${other} server is ${o.admin}, not maint: a restart of HAProxy without the server-state-file would send it requests`
            });
    }
    for (const c of ['blue', 'green']) {
        const srv = hx.servers[c];
        if (srv?.port !== undefined && srv.port !== cfg.ports[c])
            f.push({
                level: 'warning',
                message: `HAProxy's ${c} server points at port ${srv.port}, not ${c}-port ${cfg.ports[c]}`
            });
    }
    return f;
}
/** `command: status` with traffic haproxy: HAProxy's view of the host's backend (HaproxyRouter.status). */
async function haproxyStatus(ctx, st) {
    const { status: hx, lines } = await readHaproxyStatus(ctx.cfg, ctx.remote);
    for (const l of lines)
        ctx.log.info(l);
    st.haproxy = hx;
    return { routed: hx.routed, findings: (s) => haproxyFindings(s, hx, ctx.cfg) };
}
/** The status summary's line for HAProxy (`cell` escapes text for a markdown table cell). */
function haproxyStatusLine(st, cell) {
    const hx = st.haproxy;
    if (!hx)
        return undefined;
    return `HAProxy \`${cell(hx.backend)}\` (${cell(hx.socket)}): ${hx.error
        ? cell(hx.error)
        : ['blue', 'green']
            .map((c) => {
            const s = hx.servers[c];
            return s
                ? `${c} ${s.admin}/${s.op}, ${s.sessions ?? '?'} sessions, check ${cell(s.checkStatus ?? '—')}`
                : `${c} missing`;
        })
            .join(' · ')}`;
}

;// CONCATENATED MODULE: ./src/traffic/nginx/scripts.ts
/**
 * nginx's remote scripts: the upstream file written (and nginx reloaded, or not with njs) in one command that waits
 * for nginx's new workers, and the wait for the old workers' in-flight requests. Constant POSIX sh bodies, values as
 * positional arguments or stdin.
 */

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
function writeUpstreamScript(file, reloadCommand, opts = {}) {
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
const DRAIN_LOOP = [
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
function nginxDrainScript(workersBefore, maxMs) {
    return { body: DRAIN_LOOP.join('\n'), args: [workersBefore.join(' '), String(Math.round(maxMs))] };
}

;// CONCATENATED MODULE: ./src/probe/health.ts



const LOG_TAIL = 40;
/** One HTTP GET over a forwarded channel; resolves with the status code or an error text. */
async function probeViaForward(remote, port, path, timeoutMs, host, opened) {
    if (!remote.forward)
        throw Object.assign(new Error('this transport does not forward ports'), { reason: 1 });
    const stream = opened ?? (await remote.forward(port));
    return new Promise((resolve) => {
        let data = '';
        let done = false;
        const finish = (r) => {
            if (done)
                return;
            done = true;
            clearTimeout(timer);
            stream.destroy();
            resolve(r);
        };
        const timer = setTimeout(() => finish({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
        stream.on('data', (chunk) => {
            data += chunk.toString('latin1');
            const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(data);
            if (m)
                finish({ status: Number(m[1]) });
            else if (data.length > 64 && !data.startsWith('HTTP/'))
                finish({ error: 'the answer is not HTTP' });
        });
        stream.on('error', (e) => finish({ error: e.message }));
        stream.on('close', () => finish({
            error: data
                ? 'the connection closed before an HTTP status line'
                : 'connection closed without an answer (app not listening yet?)'
        }));
        stream.write(`GET ${path} HTTP/1.1\r\nHost: ${host ?? `127.0.0.1:${port}`}\r\nUser-Agent: bluegreen-ec2-action\r\nConnection: close\r\n\r\n`);
    });
}
async function probeViaShell(remote, port, path, timeoutMs, host) {
    const s = httpProbeScript(port, path, Math.max(1, Math.ceil(timeoutMs / 1000)), host);
    const res = await remote.run(s.body, s.args);
    const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(res.stdout);
    if (m)
        return { status: Number(m[1]) };
    return { error: (res.stderr || res.stdout).trim() || `probe exited with ${res.code}` };
}
/** Probes with forwarding, falling back to the host-side probe when sshd forbids forwarding. */
class Prober {
    remote;
    log;
    host;
    useShell = false;
    /** The host has neither curl nor bash for the host-side health watcher: the runner probes itself. */
    noWatcher = false;
    constructor(remote, log, 
    /** Host header for health probes (health-host); default 127.0.0.1:<port>. */
    host) {
        this.remote = remote;
        this.log = log;
        this.host = host;
    }
    prepared;
    /**
     * Opens the forwarded connection for the next probe of `port` now (e.g. while the switch runs), so that probe
     * costs one round trip (the request) instead of two. A connection that closes before it is used is replaced.
     */
    prepare(port) {
        this.discardPrepared();
        if (this.useShell || !this.remote.forward)
            return;
        const p = { port, closed: false, stream: Promise.resolve(undefined) };
        p.stream = this.remote.forward(port).then((st) => {
            st.on('close', () => (p.closed = true));
            st.on('error', () => (p.closed = true));
            return st;
        }, () => undefined);
        this.prepared = p;
    }
    discardPrepared() {
        const p = this.prepared;
        this.prepared = undefined;
        void p?.stream.then((st) => st?.destroy());
    }
    async probe(port, path, timeoutMs) {
        if (!this.useShell) {
            let opened;
            if (this.prepared?.port === port) {
                const p = this.prepared;
                this.prepared = undefined;
                opened = await p.stream;
                if (p.closed) {
                    opened?.destroy();
                    opened = undefined;
                }
            }
            else
                this.discardPrepared();
            try {
                const r = await probeViaForward(this.remote, port, path, timeoutMs, this.host, opened);
                // A connection opened ahead may have been closed by the app meanwhile (an idle timeout): ask once more on a new one.
                if (opened && r.status === undefined)
                    return await probeViaForward(this.remote, port, path, timeoutMs, this.host);
                return r;
            }
            catch (e) {
                const msg = e.message;
                // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (1): sshd forbids forwarding (OpenSSH says just "open failed"); or a
                // transport without forwarding at all.
                if (e.reason !== 1 && !/prohibited/i.test(msg))
                    return { error: msg };
                if (this.remote.forward)
                    this.log.warn(`sshd does not allow TCP forwarding (${msg}); probing with bash /dev/tcp on the host instead`);
                this.useShell = true;
            }
        }
        return probeViaShell(this.remote, port, path, timeoutMs, this.host);
    }
}
const describe = (p) => (p.status !== undefined ? `HTTP ${p.status}` : (p.error ?? 'no answer'));
/** Time between two probes of the host-side watcher (one request at a time; never more often than health-interval). */
const WATCH_EVERY_MS = 150;
/**
 * Waits for a 2xx: on the host itself when it can (healthWatchScript: probes every 150 ms there and reports the first
 * 2xx at once, so the runner learns of it half a round trip later), else from the runner through the connection.
 */
async function waitHealthy(remote, prober, opts, log, signal) {
    if (!prober.noWatcher) {
        const watched = await watchOnHost(remote, opts, log, signal);
        if (watched)
            return watched;
        prober.noWatcher = true;
    }
    return probeFromRunner(remote, prober, opts, log, signal);
}
/** The host-side watcher; undefined when the host cannot run it (then the runner probes). */
async function watchOnHost(remote, opts, log, signal) {
    const cancelled = () => new StepError('health', `${cancelReason(signal)} while waiting for ${opts.container} to become healthy`);
    if (signal?.aborted)
        throw cancelled();
    const every = Math.min(WATCH_EVERY_MS, opts.intervalMs) / 1000;
    const s = healthWatchScript(opts.dockerCommand, opts.container, opts.port, opts.path, opts.host ?? `127.0.0.1:${opts.port}`, every, opts.timeoutMs, LOG_TAIL);
    let healthy;
    let onAbort;
    // A cancel does not wait for the watcher: it ends by itself once the undo removed the container (or at the timeout).
    const aborted = new Promise((_, reject) => {
        onAbort = () => reject(cancelled());
        signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    let res;
    try {
        res = await Promise.race([
            remote.run(s.body, s.args, {
                onLine: (line) => {
                    if (line.startsWith('@@probe '))
                        log.debug(`probe ${line.slice(8)}`);
                    const m = /^@@healthy (\d{3}) (\d+) (\d+)$/.exec(line);
                    if (m)
                        healthy = { status: Number(m[1]), attempts: Number(m[2]), ms: Number(m[3]) };
                }
            }),
            aborted
        ]);
    }
    finally {
        if (onAbort)
            signal?.removeEventListener('abort', onAbort);
    }
    // a transport that does not stream lines (onLine) still returns the whole output
    const done = /^@@healthy (\d{3}) (\d+) (\d+)$/m.exec(res.stdout);
    if (!healthy && done)
        healthy = { status: Number(done[1]), attempts: Number(done[2]), ms: Number(done[3]) };
    if (healthy) {
        log.info(`GET ${opts.path} on 127.0.0.1:${opts.port} → HTTP ${healthy.status} after ${healthy.attempts} probe(s), ${healthy.ms} ms (probed on the host every ${every * 1000} ms)`);
        return { attempts: healthy.attempts };
    }
    const out = res.stdout;
    const logs = out.includes('@@logs\n') ? out.slice(out.indexOf('@@logs\n') + 7).trim() : '';
    const container = /^@@container (\S+) (\S+) (\S+)$/m.exec(out);
    if (container) {
        const [, state, restarts, exitCode] = container;
        const what = state === 'missing'
            ? 'disappeared'
            : Number(restarts) > 0
                ? `restarted ${restarts} time(s) (state ${state}, last exit code ${exitCode})`
                : `is ${state} (exit code ${exitCode})`;
        throw new StepError('health', `container ${opts.container} ${what} before it became healthy`, logs);
    }
    const timeout = /^@@timeout (\d+) ?(.*)$/m.exec(out);
    if (timeout) {
        throw new StepError('health', `GET ${opts.path} on port ${opts.port} did not answer 2xx within ${opts.timeoutMs / 1000} s (${timeout[1]} probes, last: ${timeout[2].trim() || 'no answer'})`, logs);
    }
    log.debug(out.includes('@@watch-unavailable')
        ? 'neither curl nor bash on the host: health is probed from the runner'
        : `the health watcher on the host ended without a verdict (exit ${res.code}): ${(res.stderr || out).trim().slice(-300)}; probing from the runner`);
    return undefined;
}
/**
 * From the runner. The first probes come quickly (50 ms doubling up to the interval) so a fast
 * app is not held back by a fixed sleep.
 */
async function probeFromRunner(remote, prober, opts, log, signal) {
    const start = Date.now();
    let delay = 50;
    let attempts = 0;
    let last = {};
    for (;;) {
        if (signal?.aborted)
            throw new StepError('health', `${cancelReason(signal)} while waiting for ${opts.container} to become healthy`);
        attempts++;
        const remaining = opts.timeoutMs - (Date.now() - start);
        // Short timeouts first: right after start, docker-proxy can accept and then hang while the
        // container's network comes up; a slow health endpoint still gets up to 5 s on later probes.
        const probeTimeout = Math.max(200, Math.min(5000, 100 * 2 ** attempts, remaining));
        last = await prober.probe(opts.port, opts.path, probeTimeout);
        if (last.status !== undefined && last.status >= 200 && last.status < 300) {
            log.info(`GET ${opts.path} on 127.0.0.1:${opts.port} → HTTP ${last.status} after ${attempts} probe(s), ${Date.now() - start} ms`);
            return { attempts };
        }
        log.debug(`probe ${attempts}: ${describe(last)}`);
        const st = containerStatusScript(opts.dockerCommand, opts.container, LOG_TAIL);
        const res = await remote.run(st.body, st.args);
        const [statusLine, ...rest] = res.stdout.split('\n');
        const [state, restarts, exitCode] = statusLine.trim().split(' ');
        const logs = rest
            .join('\n')
            .replace(/^@@logs\n?/, '')
            .trim();
        if (state !== 'running' || Number(restarts) > 0) {
            const what = state === 'missing'
                ? 'disappeared'
                : Number(restarts) > 0
                    ? `restarted ${restarts} time(s) (state ${state}, last exit code ${exitCode})`
                    : `is ${state} (exit code ${exitCode})`;
            throw new StepError('health', `container ${opts.container} ${what} before it became healthy`, logs);
        }
        if (Date.now() - start >= opts.timeoutMs) {
            const ls = logsScript(opts.dockerCommand, opts.container, LOG_TAIL);
            const tail = await remote.run(ls.body, ls.args);
            throw new StepError('health', `GET ${opts.path} on port ${opts.port} did not answer 2xx within ${opts.timeoutMs / 1000} s (${attempts} probes, last: ${describe(last)})`, tail.stdout.trim());
        }
        const wait = Math.min(delay, opts.intervalMs, Math.max(0, opts.timeoutMs - (Date.now() - start)));
        delay *= 2;
        await new Promise((r) => setTimeout(r, wait));
    }
}

;// CONCATENATED MODULE: ./src/traffic/nginx/switch-output.ts
/**
 * The one parser of the nginx switch script's output (writeUpstreamScript in src/remote/scripts.ts). Markers, one a line:
 *   @@masters <pid>...           nginx masters in the SSH session's PID namespace, before the reload
 *   @@workers-before <pid>...    their workers, before the reload
 *   @@reloaded | @@reload-failed <exit code>
 *   @@old-workers <pid>...       the previous workers of the master(s) that took the new config
 *   @@taken-over <new worker> <ms|-> <ms until the first new worker|-> [<master>...]
 *   @@foreign-masters <pid>...   nginx masters in other PID namespaces (containers): not watched
 *   @@no-takeover                masters are visible, none took the new config in time
 *   @@no-workers                 no nginx master is visible at all: whether nginx reloaded cannot be told
 * Any other line (the reload command's own output) is ignored.
 */
const words = (s) => s.trim().split(/\s+/).filter(Boolean);
const ms = (s) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);
function parseSwitchOutput(stdout) {
    const out = {
        masters: [],
        foreignMasters: [],
        workersBefore: [],
        reloaded: false,
        outcome: undefined,
        reloadedMasters: [],
        oldWorkers: [],
        drainWorkers: []
    };
    for (const line of stdout.split('\n')) {
        const [marker, ...rest] = words(line);
        switch (marker) {
            case '@@masters':
                out.masters = rest;
                break;
            case '@@foreign-masters':
                out.foreignMasters = rest;
                break;
            case '@@workers-before':
                out.workersBefore = rest;
                break;
            case '@@reloaded':
                out.reloaded = true;
                break;
            case '@@reload-failed':
                out.reloaded = false;
                out.reloadExitCode = ms(rest[0]);
                break;
            case '@@old-workers':
                out.oldWorkers = rest;
                break;
            case '@@taken-over':
                out.outcome = 'taken-over';
                out.cutoverMs = ms(rest[1]);
                out.switchMs = ms(rest[2]);
                out.reloadedMasters = rest.slice(3);
                break;
            case '@@no-takeover':
            case '@@no-workers':
                out.outcome = marker.slice(2);
                break;
        }
    }
    out.drainWorkers = out.workersBefore;
    return out;
}

;// CONCATENATED MODULE: ./src/traffic/nginx/upstream.ts
/** The one file the action owns on an nginx host: a complete `upstream` block for the live colour. */
function renderUpstream(name, port, note) {
    return [
        `# Managed by bluegreen-ec2-action; it is rewritten on every deploy. ${note}`,
        `upstream ${name} {`,
        `    server 127.0.0.1:${port};`,
        '}',
        ''
    ].join('\n');
}
/** The port the upstream block currently sends traffic to, if the file names exactly one server. */
function upstreamPort(content) {
    if (!content)
        return undefined;
    const ports = [...content.replace(/#.*$/gm, '').matchAll(/\bserver\s+(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)/g)].map((m) => Number(m[1]));
    return ports.length === 1 ? ports[0] : undefined;
}

;// CONCATENATED MODULE: ./src/traffic/nginx/router.ts







/** How long the switch waits (on the host, same round trip) for nginx's new workers. */
const TAKEOVER_MS = 10_000;
class NginxRouter {
    cfg;
    kind = 'nginx';
    startVerb = 'run';
    constructor(cfg) {
        this.cfg = cfg;
    }
    publishArgs(color) {
        return ['--publish', `127.0.0.1:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
    }
    routingFile() {
        return this.cfg.nginxUpstreamFile;
    }
    routedPort(content) {
        return upstreamPort(content);
    }
    routedColor(state) {
        const port = upstreamPort(state.upstreamContent);
        return port === this.cfg.ports.blue ? 'blue' : port === this.cfg.ports.green ? 'green' : undefined;
    }
    routingNotes(state) {
        const port = upstreamPort(state.upstreamContent);
        const routed = this.routedColor(state);
        const notes = [];
        if (state.upstreamContent && port !== undefined && !routed)
            notes.push(`the upstream file points at port ${port}, which is neither blue-port (${this.cfg.ports.blue}) nor green-port (${this.cfg.ports.green})`);
        // Only one colour runs and it is not the one the file names: that one is live (liveColor).
        if (state.running.length === 1 && state.running[0] !== routed)
            notes.push(`the upstream ${routed ? `points at ${routed}, which is not running` : 'names no colour'}; taking the running ${state.running[0]} container as live`);
        return notes;
    }
    probePort(color) {
        return this.cfg.ports[color];
    }
    retire(plan) {
        return plan.live ? `${this.cfg.app}-${plan.live}` : undefined;
    }
    /**
     * Writes the upstream file and (reload) reloads nginx and waits, on the host in the same round trip, until its new
     * workers took over; njs: writes it atomically, no reload (the next request nginx handles reads the new port).
     */
    async switchTraffic(ctx) {
        const { cfg, plan } = ctx;
        const port = cfg.ports[plan.candidate];
        const njs = cfg.nginxSwitch === 'njs';
        const note = `Live: ${plan.candidate} (${ctx.imageLabel}), ${cfg.command} ${ctx.deployId}.`;
        const s = writeUpstreamScript(cfg.nginxUpstreamFile, njs ? ':' : cfg.nginxReloadCommand, {
            takeoverMs: njs ? 0 : TAKEOVER_MS,
            lease: { app: cfg.app, deployId: ctx.deployId },
            content: renderUpstream(cfg.nginxUpstreamName, port, note)
        });
        const what = njs
            ? `point ${cfg.nginxUpstreamFile} at ${plan.candidate} (127.0.0.1:${port}); no reload: nginx reads the file at every request (njs)`
            : `point ${cfg.nginxUpstreamFile} at ${plan.candidate} (127.0.0.1:${port}), reload nginx and wait for its new workers`;
        const switchStart = Date.now();
        let out;
        try {
            out = await exec(ctx, 'switch', s, what);
        }
        catch (e) {
            const expired = leaseExpired(e);
            if (expired)
                throw expired;
            // A non-zero exit: the script could not write the file, or put the previous one back after a failed reload.
            if (!njs && e instanceof StepError)
                throw new StepError('switch', `${e.message.replace(/^.*?failed/, 'nginx switch failed')}; the previous upstream file was restored`);
            throw e;
        }
        if (njs) {
            // The old colour's open connections (in-flight requests, streams) are waited for by the finishing job, before
            // it stops the old colour: it keeps running until then, so a failed verify could switch back to it.
            return {
                cutoverMs: Date.now() - switchStart,
                drain: plan.live ? this.connectionDrain(cfg.ports[plan.live]) : undefined
            };
        }
        const sw = parseSwitchOutput(out);
        // Timed on the host from the write: the runner's round trip to the host is not part of it.
        const taken = sw.outcome === 'taken-over';
        return {
            cutoverMs: taken ? (sw.cutoverMs ?? Date.now() - switchStart) : undefined,
            switchMs: taken ? sw.switchMs : undefined,
            drain: {
                lines: DRAIN_LOOP,
                words: sw.drainWorkers.join(' '),
                said: (o, stopName, secs) => o.includes('@@drain-timeout')
                    ? `old nginx workers were still finishing requests after drain-seconds (${secs} s); stopped ${stopName} anyway`
                    : o.includes('@@unobservable')
                        ? 'no nginx worker processes are visible on the host; waited the full drain-seconds'
                        : undefined
            },
            detail: sw
        };
    }
    /** njs: the finishing job waits until nginx has no connection to the old colour's port left. */
    connectionDrain(port) {
        return {
            lines: [CLOCK, ...connectionDrainLoop('$1', '$2')],
            words: String(port),
            said: (o, stopName, secs) => {
                const left = /@@drain-timeout (\d+)/.exec(o);
                return left
                    ? `${stopName} still had ${left[1]} connection(s) from nginx after drain-seconds (${secs} s); stopped it anyway`
                    : undefined;
            }
        };
    }
    /** Verify, first: nginx took the new config (reload), and nginx-health-url answers through nginx. */
    async confirm(ctx, cutover) {
        const { cfg, plan } = ctx;
        if (cfg.nginxSwitch === 'njs') {
            ctx.log.info(`nginx sends new requests to ${plan.candidate} from the next one on (nginx-switch: njs, not reloaded)`);
            await this.probeNginxHealth(ctx, 'verify');
            return;
        }
        const sw = cutover.detail ?? parseSwitchOutput('');
        if (sw.outcome === 'no-takeover' || (sw.outcome === undefined && sw.workersBefore.length > 0)) {
            // No nginx master took the new config: the reload did not happen (wrong reload command, a bind-mounted
            // file in a containerized nginx, …). Stopping the old colour now would cause an outage.
            throw new StepError('verify', `nginx did not reload within ${TAKEOVER_MS / 1000} s (no nginx master on the host started new workers; masters ${sw.masters.join(', ') || '?'} with workers ${sw.workersBefore.join(', ')} are unchanged${sw.foreignMasters.length ? `; ${sw.foreignMasters.length} nginx master(s) in other PID namespaces (containers) are not watched` : ''}): check nginx-reload-command and that nginx reads ${cfg.nginxUpstreamFile}`);
        }
        if (sw.outcome !== 'taken-over')
            ctx.warn(`verify: no nginx master process is visible on the host, so the reload cannot be confirmed${cfg.nginxHealthUrl ? '; nginx-health-url is checked instead' : ' (set nginx-health-url to check nginx itself)'}`);
        else
            ctx.log.info(`nginx serves ${plan.candidate}: master ${sw.reloadedMasters.join(', ') || '?'} took the new config; first new worker ${sw.switchMs ?? '?'} ms, old workers no longer accepting ${cutover.cutoverMs} ms after the upstream was written`);
        await this.probeNginxHealth(ctx, 'verify');
    }
    /** Waits until nginx has no connection to `color`'s port left (in-flight requests, streams), at most drain-seconds. */
    async drainConnections(h, step, color) {
        const port = this.cfg.ports[color];
        const out = await exec(h, step, connectionDrainScript(port, this.cfg.drainMs), `let the connections to ${this.cfg.app}-${color} (127.0.0.1:${port}) finish (up to ${this.cfg.drainMs / 1000} s)`);
        const done = /@@drained (\d+)/.exec(out);
        const left = /@@drain-timeout (\d+)/.exec(out);
        if (done)
            h.log.info(`${this.cfg.app}-${color} has no connections left (${done[1]} ms)`);
        else if (left)
            h.warn(`${this.cfg.app}-${color} still had ${left[1]} connection(s) after drain-seconds (${this.cfg.drainMs / 1000} s): they end when its container stops`);
    }
    /**
     * nginx-health-url: one GET through the user's nginx (a second try after 500 ms), on the host's loopback through
     * the SSH connection. A non-2xx fails the step.
     */
    async probeNginxHealth(h, step) {
        const u = this.cfg.nginxHealthUrl;
        if (!u)
            return;
        const prober = new Prober(h.remote, h.log, this.cfg.healthHost ?? u.host);
        let p = await prober.probe(u.port, u.path, 5000);
        if (p.status === undefined || p.status < 200 || p.status >= 300) {
            await new Promise((r) => setTimeout(r, 500));
            p = await prober.probe(u.port, u.path, 5000);
        }
        if (p.status === undefined || p.status < 200 || p.status >= 300) {
            throw new StepError(step, `nginx-health-url ${u.url} answered ${p.status !== undefined ? `HTTP ${p.status}` : p.error} after the ${step === 'switch-back' ? 'switch-back' : 'switch'} (twice)`);
        }
        h.log.info(`nginx-health-url ${u.url} → HTTP ${p.status}`);
    }
    async switchBack(h, state) {
        const { cfg, plan } = h;
        if (!writtenBy(state.upstreamContent, h.deployId)) {
            // The file is not this run's: the switch never wrote it, put it back itself, or another deploy owns it now.
            h.log.info(`${cfg.nginxUpstreamFile} does not carry this deploy's id: traffic was not moved by this run, nothing to switch back`);
            return { moved: false };
        }
        const content = plan.upstreamContent;
        const njs = cfg.nginxSwitch === 'njs';
        const s = writeUpstreamScript(cfg.nginxUpstreamFile, njs ? ':' : cfg.nginxReloadCommand, {
            remove: content === undefined,
            takeoverMs: njs ? 0 : TAKEOVER_MS,
            content: content === undefined ? undefined : content.endsWith('\n') ? content : `${content}\n`
        });
        if (njs) {
            await exec(h, 'switch-back', s, `restore ${cfg.nginxUpstreamFile} (no reload: nginx reads it at every request)`);
            // requests already proxied to the candidate finish before it is removed
            await this.drainConnections(h, 'switch-back', plan.candidate);
            await this.probeNginxHealth(h, 'switch-back').catch((e) => h.warn(`after switching back: ${e.message}`));
            return { moved: true };
        }
        const back = parseSwitchOutput(await exec(h, 'switch-back', s, `restore ${cfg.nginxUpstreamFile}, reload nginx and wait for its new workers`));
        // nginx reloads asynchronously, and its previous workers keep proxying their requests to the candidate:
        // remove it only once they are done, or those requests fail with 502.
        if (back.outcome === 'taken-over' && back.drainWorkers.length) {
            await exec(h, 'switch-back', nginxDrainScript(back.drainWorkers, cfg.drainMs), `let in-flight requests to ${cfg.app}-${plan.candidate} finish (up to ${cfg.drainMs / 1000} s)`);
        }
        await this.probeNginxHealth(h, 'switch-back').catch((e) => h.warn(`after switching back: ${e.message}`));
        return { moved: true };
    }
}
/** The switch script's exit 77: the lease had expired on the host, so it changed nothing (both switch modes). */
function leaseExpired(e) {
    if (!(e instanceof StepError) || !/\(exit 77\)/.test(e.message))
        return undefined;
    return new StepError('switch', 'the deploy lock (lease) of this run expired on the host before the switch, so another deploy may own the host now: traffic was not changed');
}

;// CONCATENATED MODULE: ./src/traffic/port-swap/router.ts



class PortSwapRouter {
    cfg;
    kind = 'port-swap';
    startVerb = 'create';
    discardBeforeSwitchBack = true;
    constructor(cfg) {
        this.cfg = cfg;
    }
    publishArgs() {
        return ['--publish', `${this.cfg.publicPort}:${this.cfg.containerPort}`];
    }
    routingFile() {
        return '';
    }
    /** Nothing routes: the running colour is the one bound to the public port. */
    routedColor() {
        return undefined;
    }
    probePort() {
        return this.cfg.publicPort;
    }
    retire() {
        return undefined;
    }
    /** Stops the live colour and starts the candidate on the public port; the deploy then waits for its health. */
    async switchTraffic(ctx) {
        const { cfg, plan } = ctx;
        const stopName = plan.live ? containerName(cfg.app, plan.live) : undefined;
        const candidate = containerName(cfg.app, plan.candidate);
        await exec(ctx, 'switch', portSwapScript(cfg.dockerCommand, stopName, candidate, cfg.stopTimeoutSeconds), `stop ${stopName ?? '(nothing live)'} and start ${candidate} on port ${cfg.publicPort}`);
        return {};
    }
    /** The candidate was removed first (it holds the port): the previous colour starts again if it is stopped. */
    async switchBack(ctx, state) {
        const { cfg, plan } = ctx;
        const live = plan.live ? containerName(cfg.app, plan.live) : undefined;
        const old = live ? state.containers.find((c) => c.name === live) : undefined;
        if (!live || !old || old.running)
            return { moved: false };
        await exec(ctx, 'switch-back', portSwapScript(cfg.dockerCommand, undefined, live, cfg.stopTimeoutSeconds), `start ${live} again`);
        return { moved: true, restarted: { port: cfg.publicPort, container: live } };
    }
}

;// CONCATENATED MODULE: ./src/traffic/registry/index.ts








/** Routers that share nothing between hosts: a new one per host. */
const perHost = (make) => (cfg) => ({ routerFor: () => make(cfg) });
const ROUTERS = {
    nginx: { run: perHost((cfg) => new NginxRouter(cfg)) },
    'port-swap': { run: perHost((cfg) => new PortSwapRouter(cfg)) },
    haproxy: { run: perHost((cfg) => new HaproxyRouter(cfg)), statusLine: haproxyStatusLine },
    caddy: { run: perHost((cfg) => new CaddyRouter(cfg)), statusLine: caddyStatusLine },
    alb: {
        run: (cfg, deps) => new AlbTraffic(cfg, deps.elb, deps.note),
        summarySection: renderAlbSection,
        statusLine: (st, cell) => (st.alb ? albStatusLine(st.alb, cell) : undefined)
    }
};
/** The traffic of one run (deploy, rollback or status). */
function trafficFor(cfg, deps = {}) {
    return ROUTERS[cfg.traffic].run(cfg, deps);
}
/** The router of the config's first host, for a single-host caller (tests, tools). */
function routerFor(cfg) {
    return trafficFor(cfg).routerFor(cfg.hosts?.[0]);
}
/** The job summary's traffic section of a run, if its router has one. */
function summarySection(traffic, r, cell) {
    return ROUTERS[traffic].summarySection?.(r, cell);
}
/** The status summary's router line for a host, if its router has one. */
function statusLine(st, cell) {
    return ROUTERS[st.traffic]?.statusLine?.(st, cell);
}

;// CONCATENATED MODULE: ./src/deploy/fleet.ts
/** Splits the hosts into the batches of the rollout, in the order given. */
function planBatches(hosts, rollout) {
    const n = hosts.length;
    if (n === 0)
        return [];
    const mp = rollout.maxParallel;
    const canary = rollout.strategy === 'canary' && n > 1;
    const rest = canary ? hosts.slice(1) : hosts;
    const limit = mp
        ? 'count' in mp
            ? mp.count
            : Math.ceil((rest.length * mp.percent) / 100)
        : rollout.strategy === 'rolling'
            ? 1
            : rest.length;
    const size = Math.max(1, Math.min(limit, rest.length));
    const batches = canary ? [[hosts[0]]] : [];
    for (let i = 0; i < rest.length; i += size)
        batches.push(rest.slice(i, i + size));
    return batches;
}
function deferred() {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    return { promise, resolve };
}
/**
 * Runs the batches. A batch is done when each of its hosts is verified (all-or-nothing: waiting at the
 * gate) or finished. With continue, a failure only stops the rollout when it is the canary's.
 */
async function runRollout(hosts, rollout, deployOne, log, parentSignal) {
    const batches = planBatches(hosts, rollout);
    const allOrNothing = rollout.onHostFailure === 'rollback-all' && hosts.length > 1;
    const decision = deferred();
    const controllers = new Map();
    let failure;
    let stopped = false;
    const abortAll = (reason) => {
        decision.resolve('abort');
        for (const c of controllers.values())
            if (!c.signal.aborted)
                c.abort(reason);
    };
    const onCancel = () => abortAll(typeof parentSignal?.reason === 'string' ? parentSignal.reason : 'the workflow run was cancelled (SIGINT/SIGTERM)');
    parentSignal?.addEventListener('abort', onCancel, { once: true });
    const tasks = [];
    const results = [];
    const skipped = (target, batch) => ({
        host: target.label,
        result: 'skipped',
        image: '',
        durationMs: 0,
        switched: false,
        steps: [],
        warnings: [],
        batch,
        abortedBy: failure?.host,
        error: failure
            ? {
                step: 'connect',
                message: parentSignal?.aborted
                    ? 'not started: the workflow run was cancelled'
                    : `not started: ${failure.host} failed at ${failure.step}`
            }
            : undefined
    });
    try {
        for (const [index, batch] of batches.entries()) {
            if (stopped || parentSignal?.aborted) {
                for (const t of batch)
                    tasks.push(Promise.resolve(skipped(t, index)));
                continue;
            }
            if (index > 0 && rollout.batchWaitMs > 0) {
                log(`batch ${index} verified; waiting batch-wait-seconds (${rollout.batchWaitMs / 1000} s) before batch ${index + 1}`);
                await fleet_sleep(rollout.batchWaitMs, parentSignal);
                if (parentSignal?.aborted) {
                    for (const t of batch)
                        tasks.push(Promise.resolve(skipped(t, index)));
                    continue;
                }
            }
            if (batches.length > 1)
                log(`batch ${index + 1}/${batches.length}${rollout.strategy === 'canary' && index === 0 ? ' (canary)' : ''}: ${batch.map((t) => t.label).join(', ')}`);
            const arrivals = batch.map((target) => {
                const arrived = deferred();
                const controller = new AbortController();
                controllers.set(target.label, controller);
                if (parentSignal?.aborted)
                    controller.abort(parentSignal.reason);
                const hooks = {
                    ready: async () => {
                        arrived.resolve();
                        if ((await decision.promise) === 'abort') {
                            throw new Error(failure
                                ? `${failure.host} failed at ${failure.step}, so every host goes back (on-host-failure: rollback-all)`
                                : 'the workflow run was cancelled (SIGINT/SIGTERM)');
                        }
                    },
                    failed: (error) => {
                        arrived.resolve();
                        // A cancel stops every host; it is no host's failure (the others would name it as the cause).
                        if (failure || parentSignal?.aborted)
                            return;
                        failure = { host: target.label, step: error.step, message: error.message };
                        if (allOrNothing) {
                            stopped = true;
                            abortAll(`${target.label} failed at ${error.step}`);
                        }
                    },
                    abortedBy: () => (failure && failure.host !== target.label ? failure.host : undefined)
                };
                const task = deployOne(target, index, controller.signal, allOrNothing ? hooks : undefined).then((r) => {
                    // continue mode has no gate: learn of failures from the result.
                    if (!allOrNothing && r.result !== 'success' && !failure)
                        failure = { host: r.host, step: r.error?.step ?? 'deploy', message: r.error?.message ?? r.result };
                    return r;
                });
                task.finally(() => arrived.resolve()).catch(() => undefined);
                tasks.push(task);
                return arrived.promise;
            });
            await Promise.all(arrivals);
            if (!allOrNothing && rollout.strategy === 'canary' && index === 0 && failure) {
                stopped = true;
                log(`the canary ${failure.host} failed: the other hosts are not touched`);
            }
        }
        if (!stopped)
            decision.resolve('commit');
        results.push(...(await Promise.all(tasks)));
    }
    finally {
        parentSignal?.removeEventListener('abort', onCancel);
    }
    return results;
}
function fleet_sleep(ms, signal) {
    return new Promise((resolve) => {
        const t = setTimeout(done, ms);
        function done() {
            clearTimeout(t);
            signal?.removeEventListener('abort', done);
            resolve();
        }
        signal?.addEventListener('abort', done, { once: true });
    });
}

;// CONCATENATED MODULE: ./src/remote/outputs.ts
function parseDetectOutput(out) {
    const section = (name) => {
        const m = new RegExp(`@@${name}\\n([\\s\\S]*?)(?=\\n@@(?:containers|upstream|state)\\n|$)`).exec(out);
        const body = m?.[1]?.trim() ?? '';
        return body === '@@none' ? undefined : body;
    };
    let recordedLive;
    let stateUnreadable = false;
    try {
        const st = JSON.parse(section('state') ?? '{}');
        if (st.live === 'blue' || st.live === 'green')
            recordedLive = st.live;
    }
    catch {
        stateUnreadable = true;
    }
    return {
        containers: parseInspect(section('containers') ?? ''),
        upstreamContent: section('upstream'),
        recordedLive,
        stateUnreadable
    };
}
/** pullScript: the image's repo digests (`repo@sha256:…` lines after `@@digests`). */
function parsePullDigests(out) {
    const at = out.indexOf('@@digests');
    if (at < 0)
        return [];
    return out
        .slice(at + '@@digests'.length)
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.includes('@sha256:'));
}
function parseDiscardOutput(out) {
    const foreign = /^@@foreign (.*)$/m.exec(out)?.[1];
    return {
        removed: /^@@removed$/m.test(out),
        restored: /^@@restored$/m.test(out),
        foreign: foreign === undefined ? undefined : foreign.trim() || '(no deploy id)'
    };
}
/** Parses the one-object-per-line output of detectScript's `docker inspect --format`. */
function parseInspect(text) {
    return text
        .split('\n')
        .filter((l) => l.trim().startsWith('{'))
        .map((l) => {
        const c = JSON.parse(l);
        return {
            id: c.id,
            name: c.name.replace(/^\//, ''),
            state: c.state,
            running: c.running,
            restartCount: c.restarts,
            labels: c.labels ?? {}
        };
    });
}

;// CONCATENATED MODULE: ./src/deploy/images.ts
/** keep-images: which old images of the app's repository to remove from a host. */
function parseImageList(out) {
    const [, imagesPart = '', inUsePart = ''] = /@@images\n?([\s\S]*?)@@in-use\n?([\s\S]*)$/.exec(out) ?? [];
    const images = imagesPart
        .split('\n')
        .map((l) => l.trim().split(' '))
        .filter((p) => p.length === 2 && p[0].startsWith('sha256:'))
        .map(([id, ref]) => ({ id, ref }));
    const inUse = new Set(inUsePart
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean));
    return { images, inUse };
}
/**
 * Keeps `keep` images: first those the blue and green containers use (the live and the rollback
 * images), then the newest others; returns the references (repo:tag, or the id when untagged) of the rest.
 */
function imagesToPrune(images, inUse, keep) {
    const order = [];
    for (const i of images)
        if (!order.includes(i.id))
            order.push(i.id);
    const keepIds = new Set(inUse);
    for (const id of order)
        if (keepIds.size < keep)
            keepIds.add(id);
    const refs = [];
    for (const i of images) {
        if (keepIds.has(i.id))
            continue;
        const ref = i.ref.endsWith(':<none>') ? i.id : i.ref;
        if (!refs.includes(ref))
            refs.push(ref);
    }
    return refs;
}

;// CONCATENATED MODULE: ./src/deploy/cutover.ts


async function cutOver(d) {
    const { router: r, ctx, timer } = d;
    const { cfg, plan } = ctx;
    const port = r.probePort(plan.candidate);
    const name = containerName(cfg.app, plan.candidate);
    if (r.startVerb === 'run') {
        let lockLost = false;
        try {
            await timer.run('health', async () => {
                await r.beforeHealth?.(ctx);
                await d.waitHealthy(port, name);
                if (r.afterHealth) {
                    await d.ensureLock().catch((e) => {
                        lockLost = true;
                        throw e;
                    });
                    await r.afterHealth(ctx);
                }
            });
            await d.beforeTraffic(port);
            timer.checkCancelled();
        }
        catch (e) {
            // Nothing took traffic yet: the router puts back what it changed for the candidate (never throws) — on the
            // host only while this run still owns it (another deploy that took the lock decides what its proxy does).
            await r.abandon?.(ctx, { ownsHost: !lockLost });
            throw e;
        }
    }
    else
        timer.checkCancelled();
    const switchStart = Date.now();
    let cutover = {};
    await timer.run('switch', async () => {
        await d.ensureLock();
        // The router's change may reach the host even if its answer never arrives: from here the undo reads the host.
        d.trafficMayMove();
        cutover = await r.switchTraffic(ctx);
    });
    if (r.startVerb === 'create') {
        // The candidate starts only at the switch (it takes the live colour's port): the time until it is healthy is
        // the real downtime.
        await timer.run('health', () => d.waitHealthy(port, name));
        const ms = Date.now() - switchStart;
        ctx.log.info(plan.live ? `${r.kind} downtime: ${ms} ms (old stopped until new healthy)` : `first start took ${ms} ms`);
        cutover = { ...cutover, cutoverMs: ms, downtimeMs: plan.live ? ms : undefined };
    }
    await timer.run('verify', async () => {
        await r.confirm?.(ctx, cutover);
        await ctx.probe('verify', port);
        const check = r.watchCheck?.(ctx);
        await (check ? watchBeside(d.watch(port), check.check, check.everyMs) : d.watch(port));
        await r.afterVerify?.(ctx);
    });
    return cutover;
}

;// CONCATENATED MODULE: ./src/deploy/lock.ts
/**
 * The per-app deploy lock, runner side: a lease on the host (see lockScript) that expires by itself unless it is
 * renewed. Over SSH one channel takes the lease and then stays open as its keeper: the runner writes a heartbeat byte
 * every LEASE_HEARTBEAT_MS, the keeper renews the lease for each one and removes it at EOF (released, or the runner's
 * connection was closed) or when the heartbeats stop (the runner vanished without its connection ever closing).
 */




/** Confirmations may lag this much behind the host's clock and the channel's round trip before we call the lease lost. */
const SAFETY_MS = 5000;
async function acquireLock(remote, opts) {
    if (!opts.deployId || /\s/.test(opts.deployId))
        throw new Error(`deploy id ${JSON.stringify(opts.deployId)} must be a non-empty word`);
    const ttlMs = (opts.ttlSeconds ?? LEASE_TTL_SECONDS) * 1000;
    const token = `${opts.deployId}.${external_node_crypto_default().randomBytes(6).toString('hex')}`;
    if (!remote.open)
        return acquireByCommands(remote, opts, token, ttlMs);
    const s = lockScript(opts.app, token, JSON.stringify(opts.owner), opts.timeoutSeconds, {
        ttlSeconds: opts.ttlSeconds
    });
    const ch = await remote.open(s.body, s.args);
    const lock = new Lease(remote, ch, token, opts, ttlMs);
    await lock.acquired();
    return lock;
}
/** The lines the lock script prints while it waits: logged; returns the holder when a line names one. */
function waitingLine(line, opts) {
    if (line.startsWith('@@'))
        opts.log.debug(line);
    if (line.startsWith('@@lock-wait')) {
        const holder = describeOwner(line.slice('@@lock-wait'.length).trim());
        opts.log.info(`another deploy holds the lock (${holder || 'holder unknown'}); waiting up to ${opts.timeoutSeconds} s`);
        return holder;
    }
    if (line === '@@drain-wait')
        opts.log.info(`the previous deploy's old colour is still finishing its requests (drain job on the host); waiting up to ${opts.timeoutSeconds} s`);
    if (line.startsWith('@@lock-timeout'))
        return describeOwner(line.slice('@@lock-timeout'.length).trim()) || undefined;
    return undefined;
}
function lockFailed(opts, code, holder, err) {
    if (code === 75)
        return new StepError('lock', `another deploy of ${opts.app} still holds the lock on this host after ${opts.timeoutSeconds} s (${holder || 'holder unknown'}); raise lock-timeout-seconds or use a workflow concurrency group`);
    if (code !== null)
        return new StepError('lock', `could not take the deploy lock (exit ${code}): ${err.trim() || 'no output'}`);
    return new StepError('lock', `the lock command ended unexpectedly: ${err.trim() || 'no output'}`);
}
/**
 * A transport that keeps no channel open (e.g. AWS Systems Manager Run Command): one command waits for and takes
 * the lease on the host, a command every heartbeat renews it, and it expires by itself if the run goes silent.
 */
async function acquireByCommands(remote, opts, token, ttlMs) {
    const s = lockScript(opts.app, token, JSON.stringify(opts.owner), opts.timeoutSeconds, {
        keeper: false,
        ttlSeconds: opts.ttlSeconds
    });
    let holder = '';
    const res = await remote.run(s.body, s.args, { onLine: (line) => (holder = waitingLine(line, opts) ?? holder) });
    if (res.code !== 0 || !res.stdout.split('\n').includes(`@@locked ${token}`))
        throw lockFailed(opts, res.code ?? null, holder, res.stderr);
    return new CommandLease(remote, token, opts, ttlMs);
}
/** What both kinds of lease share: the lost signal, and who says so. */
class LeaseState {
    opts;
    abort = new AbortController();
    released = false;
    constructor(opts) {
        this.opts = opts;
    }
    get signal() {
        return this.abort.signal;
    }
    get lost() {
        return this.abort.signal.aborted ? String(this.abort.signal.reason) : undefined;
    }
    markLost(reason) {
        if (this.abort.signal.aborted || this.released)
            return;
        this.opts.log.warn(`deploy lock of ${this.opts.app}: ${reason}`);
        this.abort.abort(reason);
    }
}
class CommandLease extends LeaseState {
    remote;
    token;
    ttlMs;
    timer;
    validUntil;
    constructor(remote, token, opts, ttlMs) {
        super(opts);
        this.remote = remote;
        this.token = token;
        this.ttlMs = ttlMs;
        this.validUntil = Date.now() + ttlMs;
        this.timer = setInterval(() => void this.renew(), opts.heartbeatMs ?? LEASE_HEARTBEAT_MS);
        this.timer.unref();
    }
    async renew() {
        if (this.released || this.abort.signal.aborted)
            return;
        const sent = Date.now();
        const s = renewLeaseScript(this.opts.app, this.token, this.ttlMs / 1000);
        const res = await this.remote
            .run(s.body, s.args)
            .catch((e) => ({ code: null, stdout: '', stderr: e.message }));
        if (res.code === 0 && res.stdout.includes('@@renewed'))
            this.validUntil = Math.max(this.validUntil, sent + this.ttlMs);
        else if (res.code === 76)
            this.markLost(`the deploy lock was taken over on the host after our lease expired`);
        if (Date.now() > this.validUntil - Math.min(SAFETY_MS, this.ttlMs / 4))
            this.markLost('no lease renewal succeeded in time: the lease may have expired on the host');
    }
    releasedOnHost() {
        this.released = true;
        clearInterval(this.timer);
    }
    async release() {
        if (this.released)
            return;
        this.released = true;
        clearInterval(this.timer);
        if (!this.remote.isConnected())
            return;
        const s = releaseLeaseScript(this.opts.app, this.token);
        await this.remote
            .run(s.body, s.args)
            .catch((e) => this.opts.log.warn(`could not release the deploy lease (${e.message}); it expires by itself within ${this.ttlMs / 1000} s`));
    }
}
class Lease extends LeaseState {
    remote;
    ch;
    token;
    ttlMs;
    timer;
    closed = false;
    /** Send times of heartbeats not confirmed yet (the keeper answers each with `@@renewed`, in order). */
    pending = [];
    validUntil = 0;
    onLine = () => undefined;
    onEnd = () => undefined;
    constructor(remote, ch, token, opts, ttlMs) {
        super(opts);
        this.remote = remote;
        this.ch = ch;
        this.token = token;
        this.ttlMs = ttlMs;
        let buf = '';
        ch.on('data', (d) => {
            buf += d.toString();
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 1);
                this.onLine(line);
            }
        });
        // ssh2 emits exit (with the code) before close; close alone when the connection went away
        let code = null;
        ch.on('exit', (c) => (code = c));
        ch.on('close', () => {
            this.closed = true;
            this.stopHeartbeat();
            this.onEnd(code);
        });
        ch.on('error', () => undefined);
    }
    /** Resolves at `@@locked`; fails with a StepError('lock') naming the holder on timeout, cancel or error. */
    acquired() {
        const { signal, log } = this.opts;
        let err = '';
        this.ch.stderr.on('data', (d) => (err += d.toString()));
        return new Promise((resolve, reject) => {
            let holder = '';
            const onAbort = () => {
                reject(new StepError('lock', `${cancelReason(signal)} while waiting for the deploy lock`));
                this.ch.close();
            };
            if (signal?.aborted)
                return onAbort();
            signal?.addEventListener('abort', onAbort, { once: true });
            this.onLine = (line) => {
                if (line === `@@locked ${this.token}`) {
                    signal?.removeEventListener('abort', onAbort);
                    this.onLine = (l) => this.keeperLine(l);
                    this.onEnd = (code) => this.keeperEnded(code);
                    // The host wrote expires = its now + TTL just before this line left it; a first heartbeat right away
                    // gives a bound that does not depend on the channel's latency.
                    this.validUntil = Date.now() + this.ttlMs;
                    this.startHeartbeat();
                    this.beat();
                    log.debug(line);
                    resolve();
                }
                else
                    holder = waitingLine(line, this.opts) ?? holder;
            };
            this.onEnd = (code) => {
                signal?.removeEventListener('abort', onAbort);
                reject(lockFailed(this.opts, code, holder, err));
            };
        });
    }
    startHeartbeat() {
        const every = this.opts.heartbeatMs ?? LEASE_HEARTBEAT_MS;
        this.timer = setInterval(() => this.beat(), every);
        this.timer.unref();
    }
    stopHeartbeat() {
        if (this.timer)
            clearInterval(this.timer);
        this.timer = undefined;
    }
    beat() {
        if (this.closed || this.released)
            return;
        if (Date.now() > this.validUntil - Math.min(SAFETY_MS, this.ttlMs / 4))
            this.markLost(`no lease renewal was confirmed by the host for ${Math.round((Date.now() - this.validUntil + this.ttlMs) / 1000)} s: the lease may have expired there`);
        this.pending.push(Date.now());
        // never a newline: the keeper reads one byte per heartbeat with a command substitution, which drops newlines
        this.ch.write('.');
    }
    keeperLine(line) {
        if (line.startsWith('@@'))
            this.opts.log.debug(line);
        if (line.startsWith('@@renewed')) {
            const sent = this.pending.shift();
            if (sent !== undefined)
                this.validUntil = Math.max(this.validUntil, sent + this.ttlMs);
        }
        else if (line.startsWith('@@lease-lost')) {
            this.markLost(`the deploy lock was taken over on the host (${describeOwner(line.slice('@@lease-lost'.length).trim()) || 'holder unknown'}) after our lease expired`);
        }
        else if (line.startsWith('@@lease-expired')) {
            this.markLost('the host heard no heartbeat for the lease TTL and released our lease');
        }
    }
    keeperEnded(code) {
        if (this.released)
            return;
        this.markLost(code === null
            ? 'the channel holding the deploy lock closed (SSH connection lost?)'
            : `the lease keeper on the host ended (exit ${code})`);
    }
    goneOnHost = false;
    releasedOnHost() {
        this.released = true;
        this.goneOnHost = true;
        this.stopHeartbeat();
    }
    async release() {
        if (this.goneOnHost) {
            // EOF ends the keeper, which finds the lease gone; nothing to wait for
            this.goneOnHost = false;
            if (!this.closed)
                this.ch.end();
            return;
        }
        if (this.released)
            return;
        this.released = true;
        this.stopHeartbeat();
        if (!this.closed) {
            await new Promise((resolve) => {
                const t = setTimeout(resolve, 5000);
                t.unref();
                this.ch.once('close', () => {
                    clearTimeout(t);
                    resolve();
                });
                this.ch.end();
            });
            if (this.closed)
                return;
        }
        // The keeper is gone (or did not answer) but the connection may still work: remove our lease directly.
        if (!this.remote.isConnected())
            return;
        const s = releaseLeaseScript(this.opts.app, this.token);
        await this.remote.run(s.body, s.args).then((r) => {
            if (r.code !== 0)
                this.opts.log.warn(`could not release the deploy lease (exit ${r.code}): ${r.stderr.trim()}; it expires by itself within ${this.ttlMs / 1000} s`);
        }, (e) => this.opts.log.warn(`could not release the deploy lease (${e.message}); it expires by itself within ${this.ttlMs / 1000} s`));
    }
}
function describeOwner(json) {
    if (!json)
        return '';
    try {
        const o = JSON.parse(json);
        return `deploy ${o.deployId ?? '?'} by ${o.actor ?? '?'} since ${o.since ?? '?'}${o.runUrl ? `, ${o.runUrl}` : ''}`;
    }
    catch {
        return json;
    }
}

;// CONCATENATED MODULE: ./src/deploy/plan.ts


function planDeploy(cfg, router, containers, upstreamContent, recordedLive) {
    const notes = [];
    const byColor = {};
    for (const color of ['blue', 'green']) {
        const c = containers.find((x) => x.name === containerName(cfg.app, color));
        if (!c)
            continue;
        if (c.labels['bluegreen.app'] !== cfg.app) {
            throw new StepError('detect', `a container named ${c.name} exists on the host but was not created by this action (no bluegreen.app=${cfg.app} label); remove or rename it, or choose another app-name`);
        }
        byColor[color] = c;
    }
    const running = ['blue', 'green'].filter((c) => byColor[c]?.running);
    // The routing as the router reads it (nginx: the upstream file; haproxy: its server states; alb: the ALB's view).
    const state = { upstreamContent, running };
    const upstreamColor = router.routedColor(state);
    notes.push(...(router.routingNotes?.(state) ?? []));
    let live = liveColor(running, upstreamColor, recordedLive);
    if (running.length === 2 && live !== upstreamColor)
        notes.push(`both colours are running; taking ${live} as live (${recordedLive ? 'recorded state' : 'default'})`);
    let candidate = live ? other(live) : (upstreamColor ?? recordedLive ?? 'blue');
    const fleetColor = router.fleetRoutedColor?.(state);
    if (fleetColor) {
        // The listener decides for every host at once: the candidate goes to the idle colour's group, whatever runs here.
        if (live !== fleetColor && running.length)
            notes.push(`the listener sends traffic to ${fleetColor}, but this host runs ${running.join(' and ')}${byColor[fleetColor] ? '' : ` and no ${fleetColor} container`}; deploying to ${other(fleetColor)}, the idle colour`);
        live = running.includes(fleetColor) ? fleetColor : undefined;
        candidate = other(fleetColor);
    }
    const leftovers = containers
        .filter((c) => c.labels['bluegreen.app'] === cfg.app &&
        c.name !== containerName(cfg.app, 'blue') &&
        c.name !== containerName(cfg.app, 'green'))
        .map((c) => c.name);
    return {
        live,
        candidate,
        replaceExisting: Boolean(byColor[candidate]),
        upstreamContent,
        upstreamColor,
        byColor,
        leftovers,
        notes
    };
}

;// CONCATENATED MODULE: ./src/deploy/versions.ts
/** Adds what to do about the usual pull failures. */
function explainPullError(message, ref) {
    if (/command not found|docker: not found|No such file or directory.*docker/i.test(message))
        return `docker is not installed on the host or not on the SSH user's PATH (see docker-command): ${message}`;
    if (/Cannot connect to the Docker daemon|docker\.sock/i.test(message))
        return `docker is not reachable on the host (is dockerd running, and may the SSH user use it? add it to the docker group or set docker-command: sudo -n docker): ${message}`;
    if (/manifest unknown|manifest for .* not found|not found: manifest|repository .* not found|pull access denied|no such image|does not exist/i.test(message))
        return `image ${ref} was not found in the registry (was it pushed, and is the tag right?): ${message}`;
    if (/connection refused|no such host|i\/o timeout|dial tcp|server gave HTTP response to HTTPS|TLS handshake timeout/i.test(message))
        return `the registry for ${ref} is not reachable from the host (is it up, and does the host's network allow it?): ${message}`;
    if (/unauthorized|authentication required|denied|no basic auth credentials|401|incorrect username or password/i.test(message))
        return `the registry refused access to ${ref} (check registry-auth and the credentials or instance role): ${message}`;
    if (/no space left on device/i.test(message))
        return `the host ran out of disk space while pulling ${ref}: ${message}`;
    return message;
}
/** Whether a container runs the given tag or digest (from its labels). */
function matchesVersion(c, wanted) {
    if (wanted.startsWith('sha256:'))
        return c.labels['bluegreen.digest'] === wanted;
    const image = c.labels['bluegreen.image'] ?? '';
    return image.slice(image.lastIndexOf(':') + 1) === wanted && image.lastIndexOf(':') > image.lastIndexOf('/');
}
function describeContainer(c) {
    if (!c)
        return undefined;
    return `${c.name}: ${c.labels['bluegreen.image'] ?? 'unknown image'}, ${c.state}`;
}

;// CONCATENATED MODULE: ./src/deploy/host-steps.ts












/** Who holds the lock, as shown to whoever waits and by `command: status`. */
function lockOwner(deployId, ctx) {
    return { deployId, runUrl: ctx.runUrl, actor: ctx.actor, since: new Date().toISOString() };
}
class HostSteps {
    input;
    cfg;
    router;
    remote;
    log;
    timer;
    prober;
    lock;
    plan;
    phase = 'prepare';
    switchBackFailed = false;
    /** The image being made live: the input image, or for a rollback the kept standby's. */
    target;
    /** Rollback to the kept (stopped) standby container: started again, never removed. */
    rollbackKept = false;
    digest;
    cutover;
    candidateLogs;
    prunable;
    warnings = [];
    /** The finishing exchange wrote state and history already (finishScript's record). */
    recordedInFinish = false;
    constructor(input) {
        this.input = input;
        this.cfg = input.cfg;
        this.router = input.router ?? routerFor(input.cfg);
        this.remote = input.remote;
        this.log = input.log;
        this.timer = input.timer;
        this.lock = input.lock;
        this.prober = new Prober(this.remote, this.log, this.cfg.healthHost);
        this.target =
            input.cfg.command === 'deploy' ? input.cfg.image : { registry: input.cfg.image.registry, repository: '' };
    }
    /** Runs a remote script, logging the command's output; a non-zero exit becomes a StepError. */
    exec(step, s, what, onLine, quiet = false) {
        return runStep(this.remote, this.log, step, s, what, onLine, quiet);
    }
    get docker() {
        return this.cfg.dockerCommand;
    }
    name(color) {
        return containerName(this.cfg.app, color);
    }
    /** What the traffic router is given of this deployment. */
    get routerContext() {
        const timer = this.timer;
        return {
            cfg: this.cfg,
            deployId: this.input.deployId,
            plan: this.plan,
            log: this.log,
            imageLabel: imageReference(this.target),
            remote: this.remote,
            // read when used: the step timer's signal is replaced when a host joins its rollout batch, and cleared for the undo
            get signal() {
                return timer.signal;
            },
            probe: (step, port) => this.probeOnce(step, port),
            warn: (message) => {
                this.warnings.push(message);
                this.log.warn(message);
            }
        };
    }
    /** The health, switch and verify steps, driven by the deploy, answered by the router (deploy/cutover.ts). */
    cutOver() {
        const plan = this.plan;
        return cutOver({
            router: this.router,
            ctx: this.routerContext,
            timer: this.timer,
            waitHealthy: (port, container) => this.waitHealthy(port, container),
            beforeTraffic: (port) => this.beforeTraffic(port),
            ensureLock: () => this.ensureLock(),
            trafficMayMove: () => {
                this.phase = 'traffic';
                // The probe after the switch: its connection to the candidate's own port is opened while the switch runs.
                // Not where the candidate takes over the live colour's port (port-swap): that would reach the old one.
                if (this.router.startVerb === 'run')
                    this.prober.prepare(this.router.probePort(plan.candidate));
            },
            watch: (port) => this.watchAfterSwitch(port)
        });
    }
    async takeLock(timeoutSeconds = this.cfg.lockTimeoutSeconds) {
        this.lock = await acquireLock(this.remote, {
            app: this.cfg.app,
            deployId: this.input.deployId,
            owner: lockOwner(this.input.deployId, this.input.ctx),
            timeoutSeconds,
            log: this.log,
            signal: this.timer.signal
        });
    }
    /**
     * Sends login + pull now; on the host it waits for this run's lease (afterLease), so it can go out with the lock
     * command. The login/pull steps are timed from when the lock is held (pull()).
     */
    startPull() {
        const ref = imageReference(this.target);
        const s = afterLease(this.cfg.app, this.input.deployId, this.leaseWaitSeconds, pullScript(this.docker, ref, this.input.login));
        const first = this.input.login.kind === 'none' ? 'pull' : 'login';
        const st = { out: Promise.resolve(''), pullSeen: false };
        st.out = this.exec(first, s, `login and pull ${ref}`, (line) => {
            if (line !== '@@step pull')
                return;
            st.pullSeen = true;
            if (this.timer.current === 'login')
                this.timer.begin('pull');
        });
        st.out.catch(() => undefined);
        return st;
    }
    async pull(started = this.startPull()) {
        const ref = imageReference(this.target);
        const first = this.input.login.kind === 'none' ? 'pull' : 'login';
        let out = '';
        await this.timer
            .run(first, async () => {
            // the login may have finished before the lock step ended
            if (started.pullSeen && this.timer.current === 'login')
                this.timer.begin('pull');
            out = await started.out;
            if (this.timer.current === 'login')
                throw new StepError('login', 'the registry login did not complete');
        })
            .catch((e) => {
            throw new StepError(e.step, explainPullError(e.message, ref));
        });
        const digests = parsePullDigests(out);
        const repo = this.target.repository;
        const match = digests.find((d) => d.split('@')[0] === repo) ?? digests[0];
        this.digest = this.target.digest ?? match?.split('@')[1];
        this.log.info(this.digest ? `image ${ref} is ${this.digest}` : `image ${ref} has no registry digest (local image?)`);
    }
    /** The host as it is now: containers (with their labels), the upstream file, the recorded state. */
    async readState(step, whenLocked = false) {
        const d = detectScript(this.docker, this.cfg.app, this.router.routingFile());
        const s = whenLocked ? afterLease(this.cfg.app, this.input.deployId, this.leaseWaitSeconds, d) : d;
        const state = parseDetectOutput(await this.exec(step, s, 'read containers, upstream and state', undefined, true));
        // haproxy: the routing is HAProxy's server states, read from its runtime API. Only detect needs it to go on;
        // the undo reads HAProxy again itself, and removing a candidate must not depend on reaching HAProxy.
        if (this.router.readRouting) {
            state.upstreamContent = await this.router.readRouting(this.remote).catch((e) => {
                if (step === 'detect')
                    throw e;
                this.log.warn(`${step}: ${e.message}`);
                return undefined;
            });
        }
        return state;
    }
    /** How long a command sent with the lock waits on the host for the lease (the lock's own wait, and then some). */
    get leaseWaitSeconds() {
        return this.cfg.lockTimeoutSeconds + 30;
    }
    /** readState('detect') sent now, run on the host once the lease is ours, awaited later (a failure surfaces in detect). */
    readStateEarly() {
        const p = this.readState('detect', true);
        p.catch(() => undefined);
        return p;
    }
    async detect(repaired = false, early) {
        const state = await (early ?? this.readState('detect'));
        if (state.stateUnreadable)
            this.log.warn('the recorded state file on the host is not valid JSON; ignoring it');
        const plan = planDeploy(this.cfg, this.router, state.containers, state.upstreamContent, state.recordedLive);
        const replaced = `${this.name(plan.candidate)}-replaced`;
        if (plan.leftovers.includes(replaced) && !repaired) {
            // A run was killed between replacing the standby and finishing, before its candidate took traffic (the
            // candidate's colour is not live, so it is not): put the real standby back, then look again.
            this.log.warn(`an earlier run was interrupted (${replaced} exists): restoring the standby ${this.name(plan.candidate)}`);
            await this.exec('detect', restoreReplacedScript(this.docker, this.name(plan.candidate)), `repair: remove the interrupted candidate and restore ${replaced}`);
            return this.detect(true);
        }
        for (const n of plan.notes)
            this.log.warn(n);
        if (this.cfg.command === 'rollback')
            this.planRollback(plan);
        else
            this.log.info(plan.live
                ? `live colour: ${plan.live}; deploying to ${plan.candidate}`
                : `no live colour (first deploy); deploying to ${plan.candidate}`);
        return plan;
    }
    /** Rollback: the kept standby if it is what was asked for, else (rollback-to) a normal deploy of that version. */
    planRollback(plan) {
        const kept = plan.byColor[plan.candidate];
        const live = plan.live ? plan.byColor[plan.live] : undefined;
        const wanted = this.cfg.rollbackTo;
        if (wanted && !(kept && matchesVersion(kept, wanted))) {
            if (!this.cfg.image.repository) {
                throw new StepError('detect', `rollback-to ${wanted} is not the kept standby (${describeContainer(kept) ?? 'none is kept'}); deploying it needs the image input (the repository)`);
            }
            this.target = wanted.startsWith('sha256:')
                ? { ...this.cfg.image, digest: wanted }
                : { ...this.cfg.image, tag: wanted };
            this.log.info(`rollback-to ${wanted}: not the kept standby (${describeContainer(kept) ?? 'none'}); deploying ${imageReference(this.target)} to ${plan.candidate}`);
            return;
        }
        if (!kept) {
            throw new StepError('detect', `nothing to roll back to on this host: no ${plan.candidate} container is kept${live ? `; only ${plan.live} is there (${describeContainer(live)})` : '; no container of this app exists'}. Use rollback-to with a tag from the history (and image), or deploy`);
        }
        if (kept.running && plan.live)
            this.log.warn(`the standby ${kept.name} is running although ${plan.live} is live`);
        this.rollbackKept = true;
        const parsed = parseImage(kept.labels['bluegreen.image'] ?? '');
        this.target =
            typeof parsed === 'string' ? { registry: '', repository: kept.labels['bluegreen.image'] ?? 'unknown' } : parsed;
        this.digest = kept.labels['bluegreen.digest'] || undefined;
        this.log.info(`rolling back ${plan.live ? `from ${plan.live} (${describeContainer(live)}) ` : ''}to the kept ${plan.candidate} (${describeContainer(kept)})`);
    }
    runArgs(color) {
        const cfg = this.cfg;
        const ctx = this.input.ctx;
        const args = [];
        if (!cfg.dockerRunArgs.some((a) => a === '--restart' || a.startsWith('--restart=')))
            args.push('--restart', 'unless-stopped');
        const labels = {
            'bluegreen.app': cfg.app,
            'bluegreen.color': color,
            'bluegreen.image': imageReference(this.target),
            'bluegreen.digest': this.digest ?? '',
            'bluegreen.deploy-id': this.input.deployId,
            'bluegreen.run-url': ctx.runUrl,
            'bluegreen.actor': ctx.actor,
            'bluegreen.deployed-at': new Date().toISOString()
        };
        for (const [k, v] of Object.entries(labels))
            args.push('--label', `${k}=${v}`);
        args.push(...this.router.publishArgs(color));
        args.push(...cfg.dockerRunArgs);
        args.push(this.digest ? `${this.target.repository}@${this.digest}` : imageReference(this.target));
        return args;
    }
    envFile() {
        return this.cfg.env.map((v) => `${v.key}=${v.value}\n`).join('');
    }
    /**
     * Before a step that changes the host: if the lease may be gone (the keeper's channel closed, renewals stopped),
     * take it again first — at once if it is still ours; if another deploy took it meanwhile, this fails the step.
     */
    async ensureLock() {
        if (this.lock && !this.lock.signal.aborted)
            return;
        if (this.lock)
            this.log.warn(`the deploy lock may have been lost (${this.lock.lost}); taking it again before changing the host`);
        void this.lock?.release().catch(() => undefined);
        this.lock = undefined;
        // Our own lease is free to us at once; if another deploy holds it now, waiting would only delay the report.
        await this.takeLock(0);
    }
    /** The start step: from here the host holds a candidate (or the kept standby, started again). */
    async startCandidate() {
        await this.ensureLock();
        const plan = this.plan;
        const name = this.name(plan.candidate);
        const verb = this.router.startVerb;
        // Only now, after the step's cancel check: a cancel or fleet abort before this point changed nothing.
        this.phase = 'started';
        if (this.rollbackKept) {
            if (verb === 'run')
                await this.exec('start', startExistingScript(this.docker, name), `docker start ${name} (the kept standby)`);
            return;
        }
        const s = startScript(this.docker, verb, name, plan.replaceExisting, this.envFile(), this.runArgs(plan.candidate));
        await this.exec('start', s, `docker ${verb} ${name}`);
    }
    async waitHealthy(port, container) {
        await waitHealthy(this.remote, this.prober, {
            port,
            path: this.cfg.healthPath,
            intervalMs: this.cfg.healthIntervalMs,
            timeoutMs: this.cfg.healthTimeoutMs,
            container,
            dockerCommand: this.docker,
            host: this.cfg.healthHost
        }, this.log, this.timer.signal);
    }
    async probeOnce(step, port) {
        const p = await this.prober.probe(port, this.cfg.healthPath, 5000);
        if (p.status === undefined || p.status < 200 || p.status >= 300) {
            throw new StepError(step, `GET ${this.cfg.healthPath} on port ${port} answered ${p.status !== undefined ? `HTTP ${p.status}` : p.error} after the switch`);
        }
    }
    /** Hook before the candidate takes traffic (see HostDeployInput.beforeTraffic). */
    async beforeTraffic(port) {
        const hook = this.input.beforeTraffic;
        if (!hook)
            return;
        await hook({
            remote: this.remote,
            port,
            color: this.plan.candidate,
            image: imageReference(this.target),
            log: this.log,
            timer: this.timer
        });
    }
    /** The point of no return: all-or-nothing waits here, the old colour still ready to take traffic back. */
    async waitForFleet() {
        const fleet = this.input.fleet;
        if (!fleet)
            return;
        await this.timer.run('wait-fleet', async () => {
            this.log.info('verified; waiting for the other hosts before stopping the old colour');
            await fleet.ready();
        });
    }
    /**
     * verify-seconds: keeps probing the new colour while the old one can still take over. Two failed
     * probes in a row (or a restart/exit) fail the step, which switches traffic back.
     */
    async watchAfterSwitch(port) {
        // A rollback returns to a version that already ran: it must be fast, so it gets no watch window.
        if (this.rollbackKept)
            return;
        const until = Date.now() + this.cfg.verifyMs;
        const every = Math.max(200, Math.min(1000, this.cfg.healthIntervalMs));
        const name = this.name(this.plan.candidate);
        let failures = 0;
        let probes = 0;
        while (Date.now() < until) {
            this.timer.checkCancelled();
            await new Promise((r) => setTimeout(r, Math.min(every, Math.max(0, until - Date.now()))));
            probes++;
            const p = await this.prober.probe(port, this.cfg.healthPath, 3000);
            if (p.status !== undefined && p.status >= 200 && p.status < 300) {
                failures = 0;
                continue;
            }
            failures++;
            this.log.warn(`verify probe ${probes}: ${p.status !== undefined ? `HTTP ${p.status}` : p.error}`);
            if (failures >= 2) {
                const ls = logsScript(this.docker, name, 40);
                const logs = (await this.remote.run(ls.body, ls.args)).stdout.trim();
                const secs = ((this.cfg.verifyMs - (until - Date.now())) / 1000).toFixed(1);
                throw new StepError('verify', `${name} turned unhealthy ${secs} s after the switch (GET ${this.cfg.healthPath}: ${p.status !== undefined ? `HTTP ${p.status}` : p.error}, twice in a row)`, logs);
            }
        }
        if (this.cfg.verifyMs > 0)
            this.log.info(`${name} stayed healthy for ${this.cfg.verifyMs / 1000} s after the switch (${probes} probes)`);
    }
}

;// CONCATENATED MODULE: ./src/deploy/host-finish.ts
/** The committed steps of one host's deploy: drain and stop the old colour, clean up, record (host-deploy.ts). */




class HostFinish extends HostSteps {
    /**
     * keep-images: which image references to prune, read while the candidate boots (a concurrent channel on
     * the same connection), so pruning costs the deploy no round trip. Never fails the deploy.
     */
    listPrunableImages() {
        const repo = this.target.repository;
        if (this.cfg.keepImages <= 0 || !repo || this.rollbackKept)
            return;
        const list = listImagesScript(this.docker, repo, [this.name('blue'), this.name('green')]);
        this.prunable = this.remote
            .run(list.body, list.args)
            .then((res) => {
            if (res.code !== 0)
                throw new Error(res.stderr.trim() || `exit ${res.code}`);
            const { images, inUse } = parseImageList(res.stdout);
            return imagesToPrune(images, inUse, this.cfg.keepImages);
        })
            .catch((e) => {
            this.log.warn(`could not list the images of ${repo} (keep-images is skipped this time): ${e.message}`);
            return [];
        });
    }
    /**
     * After the point of no return: drain and stop the old colour (nginx), remove the standby the new version
     * replaced and leftovers, prune images. By default a job on the host does it after the run (wait-for-drain).
     */
    async finish(record) {
        const plan = this.plan;
        const cfg = this.cfg;
        const names = [...plan.leftovers];
        const replaced = `${this.name(plan.candidate)}-replaced`;
        if (plan.replaceExisting && !this.rollbackKept && !names.includes(replaced))
            names.push(replaced);
        // haproxy drained the old colour within the switch already: stop it at once. nginx: the job waits as the router
        // says (old workers, or nginx's connections to the old colour's port).
        const drained = this.cutover?.drained === true;
        const drain = this.cutover?.drain;
        // alb: the load balancer drains the old colour (deregistered) before it is stopped: the run waits for that only
        // with wait-for-drain; otherwise the job on the host waits by the clock (it cannot ask the ALB), as long as the
        // ALB may still drain it. After a failure there the old colour is stopped only after the whole drain-seconds.
        let drainMs = drained && !this.router.drainOld ? 0 : cfg.drainMs;
        if (this.router.drainOld) {
            const albDrain = await this.timer.soft('drain', async () => {
                drainMs = await this.router.drainOld(this.routerContext, cfg.waitForDrain);
            });
            if (albDrain)
                this.warnings.push(albDrain);
        }
        const refs = (await this.prunable) ?? [];
        const stopName = this.router.retire(plan);
        if (!stopName && !names.length && !refs.length)
            return;
        // Handed over to a job: that exchange also records the run and then, once the job holds drain.lock, removes the
        // lease (this run's last round trip on the host).
        const handOver = !cfg.waitForDrain;
        const s = finishScript(this.docker, cfg.app, {
            drain,
            drainMs,
            stopName,
            stopTimeoutSeconds: cfg.stopTimeoutSeconds,
            removeNames: names,
            removeImages: refs,
            background: handOver,
            record: handOver ? record : undefined,
            releaseToken: handOver ? this.lock?.token : undefined
        });
        const secs = drainMs / 1000;
        const what = [
            stopName ? `drain ${stopName} (up to ${secs} s), docker stop it (kept for rollback)` : '',
            names.length ? `remove ${names.join(', ')} (older than the kept standby, or leftovers)` : '',
            refs.length ? `prune ${refs.length} image reference(s) (keep-images ${cfg.keepImages})` : ''
        ]
            .filter(Boolean)
            .join('; ');
        const first = stopName ? (this.router.drainOld ? 'stop' : 'drain') : 'cleanup';
        const w = await this.timer.soft(first, async () => {
            if (!cfg.waitForDrain) {
                // as the lines come (so a failure after the record is known), and from the whole output (transports that do not stream)
                const said = (line) => {
                    if (line === '@@recorded')
                        this.recordedInFinish = true;
                    if (line === '@@released')
                        this.lock?.releasedOnHost?.();
                };
                const out = await this.exec(first, s, `hand over to a job on the host: ${what}`, said);
                out.split('\n').forEach(said);
                if (out.includes('@@no-setsid')) {
                    this.log.warn('setsid is not installed on the host (package util-linux): drained, stopped and cleaned up within the run instead');
                    return;
                }
                this.log.info(`${stopName ? `${stopName} finishes its in-flight requests; ` : ''}a job on the host does the rest (log ~/.bluegreen/${cfg.app}/drain.log); the next deploy of ${cfg.app} on this host waits for it.`);
                return;
            }
            const out = await this.exec(first, s, what, (line) => {
                if (line === '@@stop' && this.timer.current !== 'stop')
                    this.timer.begin('stop');
                if (line === '@@cleanup')
                    this.timer.begin('cleanup');
            });
            const said = stopName ? drain?.said?.(out, stopName, secs) : undefined;
            if (said)
                this.log.warn(said);
        });
        if (w)
            this.warnings.push(w);
    }
    async record(result, durationMs, error) {
        const { stateJson, historyLine } = this.recordContent(result, durationMs, error);
        await this.exec('record', recordScript(this.cfg.app, stateJson, historyLine), 'record state and history');
    }
    /** What record writes: state.json (on success) and the history line. */
    recordContent(result, durationMs, error) {
        const plan = this.plan;
        const ctx = this.input.ctx;
        const at = new Date().toISOString();
        const image = this.target.repository ? imageReference(this.target) : '';
        const history = {
            deployId: this.input.deployId,
            at,
            command: this.cfg.command,
            result,
            image,
            digest: this.digest,
            color: plan?.candidate,
            previous: plan?.live,
            actor: ctx.actor,
            runUrl: ctx.runUrl,
            durationMs,
            cutoverMs: this.cutover?.cutoverMs,
            steps: Object.fromEntries(this.timer.steps.map((s) => [s.name, s.durationMs])),
            error: error ? `${error.step}: ${error.message}`.slice(0, 500) : undefined
        };
        const state = result === 'success' && plan
            ? JSON.stringify({
                app: this.cfg.app,
                live: plan.candidate,
                standby: plan.live,
                image,
                digest: this.digest,
                deployId: this.input.deployId,
                deployedAt: at,
                actor: ctx.actor,
                runUrl: ctx.runUrl
            })
            : undefined;
        return { stateJson: state, historyLine: JSON.stringify(history) };
    }
}

;// CONCATENATED MODULE: ./src/deploy/host-deploy.ts
/**
 * One host's deploy (or rollback) as explicit phases, each with one undo rule — whatever stops it there (an
 * error, a cancel, a fleet abort, a lost connection):
 *
 *   phase      steps                                undo
 *   prepare    lock, login, pull, detect            nothing changed on the host
 *   started    start, health, smoke test            remove this run's candidate, put back the standby it replaced
 *   traffic    switch, verify, wait-fleet           put the previous colour back if this run moved traffic, then as above
 *   committed  drain, stop, cleanup, record         none: the verified new colour stays live (problems are warnings)
 *
 * The undo never trusts what the runner believed before the failure: it reads the host again (after
 * reconnecting and re-taking the lock if the connection was lost) and touches only containers and upstream
 * content that carry this run's deploy id.
 *
 * This file is the sequence and its undo; the steps it runs are in host-steps.ts (lock, pull, detect, start, health,
 * probes), the router's part of health, switch and verify in cutover.ts, and the committed steps in host-finish.ts.
 */








class HostDeployment extends HostFinish {
    async run() {
        const started = Date.now();
        let error;
        let result = 'success';
        let recorded;
        try {
            // Sent with the lock command (the lock first: it gets the first spare channel), each on its own channel: the
            // host runs them only once the lease is ours (afterLease), so the prepare phase costs the round trip of the lock.
            const locking = this.lock ? undefined : this.timer.run('lock', () => this.takeLock());
            locking?.catch(() => undefined);
            const early = this.readStateEarly();
            const pulling = this.cfg.command === 'deploy' ? this.startPull() : undefined;
            await locking;
            if (pulling)
                await this.pull(pulling);
            this.plan = await this.timer.run('detect', () => this.detect(false, early));
            if (this.cfg.command === 'rollback' && !this.rollbackKept)
                await this.pull();
            await this.timer.run('start', () => this.startCandidate());
            this.listPrunableImages();
            this.cutover = await this.cutOver();
            await this.waitForFleet();
            this.phase = 'committed';
            // The finishing job stops the old colour: only while this run still owns the host.
            const owned = await this.ensureLock().then(() => true, (e) => {
                this.warnings.push(`the old colour was not stopped and nothing was cleaned up: ${e.message}`);
                return false;
            });
            if (owned) {
                // The verified new colour stays whatever the finishing job does (its problems are warnings): the success is
                // recorded in the same exchange that hands the job over (or, when the run drains itself, on a second channel
                // meanwhile); the finishing steps' times are not in the history.
                const rec = this.recordContent('success', Date.now() - started);
                if (this.cfg.waitForDrain) {
                    recorded = this.exec('record', recordScript(this.cfg.app, rec.stateJson, rec.historyLine), 'record state and history').then(() => undefined);
                    recorded.catch(() => undefined);
                }
                await this.finish(rec);
                if (this.recordedInFinish)
                    recorded = Promise.resolve();
            }
        }
        catch (e) {
            error = e instanceof StepError ? e : new StepError(this.timer.current ?? 'detect', e.message);
            if (error.logs)
                this.candidateLogs = error.logs;
            if (!this.remote.isConnected()) {
                // "the SSH connection to … was lost (ECONNRESET)" from the transport: keep only the cause.
                const cause = /^the SSH connection to .* was lost \((.*)\)$/.exec(error.message)?.[1] ?? error.message;
                error = new StepError(error.step, `the SSH connection was lost during ${error.step} (${cause})`);
            }
            this.log.error(`${error.step} failed: ${error.message}`);
            const abortedBy = this.input.fleet?.abortedBy();
            if (!abortedBy)
                this.input.fleet?.failed(error);
            result = await this.undo();
            if (abortedBy && result === 'failed' && this.phase === 'prepare')
                result = 'skipped';
        }
        if (this.remote.isConnected()) {
            const rec = await this.timer.soft('record', () => result === 'success' && recorded ? recorded : this.record(result, Date.now() - started, error));
            if (rec)
                this.warnings.push(rec);
        }
        await this.lock?.release().catch(() => undefined);
        this.lock = undefined;
        const plan = this.plan;
        // After a failed switch-back nginx may still send traffic to the candidate: say "unknown", not the old colour.
        const active = result === 'success' ? plan?.candidate : this.switchBackFailed ? undefined : plan?.live;
        return {
            host: this.remote.target.label,
            result,
            activeColor: active,
            previousColor: result === 'success' ? plan?.live : undefined,
            candidateColor: plan?.candidate,
            image: this.target.repository ? imageReference(this.target) : '',
            digest: this.digest,
            cutoverMs: this.cutover?.cutoverMs,
            switchMs: this.cutover?.switchMs,
            downtimeMs: this.cutover?.downtimeMs,
            durationMs: Date.now() - started,
            switched: this.phase === 'traffic' || this.phase === 'committed',
            switchBackFailed: this.switchBackFailed || undefined,
            steps: this.timer.steps,
            error: error ? { step: error.step, message: error.message } : undefined,
            candidateLogs: this.candidateLogs,
            warnings: this.warnings,
            abortedBy: error ? this.input.fleet?.abortedBy() : undefined
        };
    }
    /**
     * After a dropped connection: reconnect (a few tries with backoff) and take the lock again — the same run's
     * lock, so it never waits on itself — before anything is read or changed.
     */
    async reconnectIfLost() {
        if (this.remote.isConnected())
            return true;
        if (!this.input.reconnect)
            return false;
        const old = this.lock;
        this.lock = undefined;
        void old?.release().catch(() => undefined); // it died with the connection
        // Each try is a full connect (with its own ssh-connect-retries); a host that stays silent is given up on
        // after about a minute, so the run still ends and reports instead of being killed by the runner.
        const giveUpAt = Date.now() + 45_000;
        for (const [i, wait] of [500, 1500, 4000].entries()) {
            if (i > 0 && Date.now() + wait > giveUpAt)
                break;
            await new Promise((r) => setTimeout(r, wait));
            try {
                this.remote = await this.input.reconnect();
                this.prober = new Prober(this.remote, this.log, this.cfg.healthHost);
            }
            catch (e) {
                this.log.warn(`reconnect try ${i + 1} failed: ${e.message}`);
                continue;
            }
            this.log.warn(`reconnected (try ${i + 1}) to clean up after the lost connection`);
            // The lock is taken again by undo (ensureLock): our own lease is free to us at once.
            return true;
        }
        return false;
    }
    /** The one rescue: the undo rule of the phase reached, decided from the host's state as it is now. */
    async undo() {
        const plan = this.plan;
        if (this.phase === 'prepare' || !plan)
            return 'failed';
        if (this.phase === 'committed')
            return 'success';
        // The cancel (or the fleet's abort) that may have brought us here must not stop the undo itself: it is
        // bounded on its own (reconnect tries, no lock wait).
        this.timer.signal = undefined;
        if (!(await this.reconnectIfLost())) {
            this.switchBackFailed = this.phase === 'traffic';
            this.warnings.push(`could not reconnect to clean up: ${this.phase === 'traffic' ? 'traffic may be on the new colour' : `the candidate ${this.name(plan.candidate)} may be left on the host (the next deploy replaces it)`}`);
            return 'failed';
        }
        // Only while this run owns the host: if another deploy took it over meanwhile, it decides what serves.
        const lockProblem = await this.ensureLock().then(() => undefined, (e) => e.message);
        if (lockProblem) {
            this.switchBackFailed = this.phase === 'traffic';
            this.warnings.push(`nothing was undone: this run no longer holds the deploy lock (${lockProblem}); another deploy owns the host now`);
            return 'failed';
        }
        if (this.phase === 'started') {
            const w = await this.timer.soft('cleanup', async () => this.discardCandidate(await this.readState('cleanup')));
            if (w)
                this.warnings.push(w);
            return 'failed';
        }
        let movedBack = false;
        const back = await this.timer.soft('switch-back', async () => {
            const state = await this.readState('switch-back');
            // port-swap: the candidate holds the public port, so it goes first.
            if (this.router.discardBeforeSwitchBack)
                await this.discardCandidate(state);
            const sb = await this.router.switchBack(this.routerContext, state);
            movedBack = sb.moved;
            if (sb.restarted)
                await this.waitHealthy(sb.restarted.port, sb.restarted.container);
            // Once moved back, the state read before is stale (it still routes to the candidate): remove it unconditionally.
            if (!this.router.discardBeforeSwitchBack)
                await this.discardCandidate(sb.moved ? undefined : state);
        });
        if (back) {
            this.switchBackFailed = true;
            this.warnings.push(back, 'switching back did not complete: check which colour the host serves before the next deploy');
            return 'failed';
        }
        return movedBack && plan.live ? 'rolled-back' : 'failed';
    }
    /**
     * Undo of `start`. A new candidate is removed only if it carries this run's deploy id (never the kept standby
     * or another run's container), and the standby it replaced is put back. The kept standby of a rollback is
     * stopped again, never removed — unless traffic is routed to it now (another run made it live meanwhile).
     */
    async discardCandidate(state) {
        const plan = this.plan;
        const name = this.name(plan.candidate);
        const step = this.timer.current ?? 'cleanup';
        if (this.rollbackKept) {
            if (state && this.router.routedColor(state) === plan.candidate) {
                this.log.warn(`${name} takes traffic now: left running`);
                return;
            }
            await this.exec(step, stopScript(this.docker, name, this.cfg.stopTimeoutSeconds), `stop ${name} again (kept as standby)`);
            return;
        }
        const out = await this.exec(step, discardCandidateScript(this.docker, name, this.input.deployId), `remove the failed candidate ${name}${plan.replaceExisting ? ' and put back the standby it replaced' : ''}`);
        const d = parseDiscardOutput(out);
        if (d.foreign)
            this.log.info(`${name} was not made by this deploy (it belongs to deploy ${d.foreign}): left alone`);
        if (d.restored)
            this.log.info(`put back the standby ${name}`);
    }
}

// EXTERNAL MODULE: external "node:net"
var external_node_net_ = __webpack_require__(77030);
var external_node_net_default = /*#__PURE__*/__webpack_require__.n(external_node_net_);
;// CONCATENATED MODULE: ./src/deploy/smoke-test.ts
/**
 * smoke-test: the user's command, run on the runner with @actions/exec once the candidate is healthy and before
 * it takes traffic (CodeDeploy's BeforeAllowTraffic). The candidate is reached through a runner-local port
 * (127.0.0.1, ephemeral) whose every connection is tunnelled over the host's SSH connection to the candidate's
 * 127.0.0.1 port on the host, so the runner needs no network path to the host and the candidate needs no
 * public port. Nothing of the command reaches the host: it runs here, with the runner's tools.
 */





/** Lines of the command's output kept for the summary (the whole output is in the host's log). */
const SMOKE_TAIL_LINES = 40;
/** After SIGTERM, how long the command's process group gets before SIGKILL. */
const KILL_GRACE_MS = 3000;
/** Printed by the wrapper before the user's command starts: the pid (= process group) to signal. */
const PID_MARKER = '@@bluegreen-smoke-pid ';
/** A runner-local TCP port whose connections are each piped through remote.forward(port) to the candidate. */
async function openTunnel(remote, port, log) {
    if (!remote.forward)
        throw new StepError('smoke-test', 'smoke-test needs a transport that forwards ports to the candidate (SSH does)');
    const sockets = new Set();
    const streams = new Set();
    let errors = 0;
    const server = external_node_net_default().createServer((sock) => {
        sockets.add(sock);
        sock.setNoDelay(true);
        sock.pause();
        sock.on('close', () => sockets.delete(sock));
        sock.on('error', () => sock.destroy());
        remote.forward(port).then((ch) => {
            streams.add(ch);
            if (sock.destroyed) {
                ch.destroy();
                return;
            }
            // End follows end both ways (pipe), so a half-closed request still gets its answer and the answer is
            // flushed before the socket closes; an error or the client going away tears both down.
            const abort = () => {
                streams.delete(ch);
                ch.destroy();
                sock.destroy();
            };
            ch.on('error', abort);
            ch.on('close', () => streams.delete(ch));
            sock.on('close', abort);
            sock.pipe(ch);
            ch.pipe(sock);
            sock.resume();
        }, (e) => {
            // Said once: a test hammering a dead port would fill the log.
            if (errors++ === 0)
                log.warn(`smoke-test tunnel: could not open a stream to 127.0.0.1:${port} on the host: ${e.message}`);
            sock.destroy();
        });
    });
    await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
    });
    const local = server.address().port;
    return {
        url: `http://127.0.0.1:${local}`,
        port: local,
        close: () => new Promise((resolve) => {
            for (const s of sockets)
                s.destroy();
            for (const ch of streams)
                ch.destroy();
            server.close(() => resolve());
        })
    };
}
/**
 * What the command does not get from the action's environment: the action's inputs (INPUT_*, the SSH key among
 * them), the runtime tokens the runner gives actions but not `run:` steps, and this step's file commands (the
 * command must not set the action's outputs, environment or job summary by writing to them).
 */
const WITHHELD = /^(INPUT_|STATE_|ACTIONS_RUNTIME_|ACTIONS_RESULTS_URL$|ACTIONS_CACHE_URL$|GITHUB_(OUTPUT|STATE|ENV|PATH|STEP_SUMMARY)$)/;
/** The environment of the command: the job's, less WITHHELD, plus BLUEGREEN_*. */
function smokeTestEnv(base, vars) {
    const env = {};
    for (const [k, v] of Object.entries(base)) {
        if (v === undefined || WITHHELD.test(k))
            continue;
        env[k] = v;
    }
    return { ...env, ...vars };
}
/**
 * Runs the command with `bash --noprofile --norc -eo pipefail -c` (what a workflow's `run:` uses), in its own
 * process group (setsid) so a timeout or cancel stops everything it started. Never throws: the outcome says.
 */
async function runSmokeCommand(test, vars, log, signal, baseEnv = process.env) {
    const started = Date.now();
    const tail = [];
    const keep = (line) => {
        tail.push(line);
        if (tail.length > SMOKE_TAIL_LINES)
            tail.shift();
    };
    let pid;
    let killedFor;
    const kill = (why) => {
        if (killedFor)
            return;
        killedFor = why;
        if (pid === undefined)
            return;
        signalGroup(pid, 'SIGTERM');
        setTimeout(() => signalGroup(pid, 'SIGKILL'), KILL_GRACE_MS).unref();
    };
    const timer = setTimeout(() => kill(`timed out after ${test.timeoutMs / 1000} s (smoke-test-timeout-seconds)`), test.timeoutMs);
    const onAbort = () => kill(`stopped: ${cancelReason(signal)}`);
    if (signal?.aborted)
        onAbort();
    else
        signal?.addEventListener('abort', onAbort, { once: true });
    const setsid = whichOrEmpty('setsid');
    // The wrapper prints its pid, then becomes the user's command (exec keeps the pid, so it leads the group).
    // Its stdin is /dev/null (a command that waits for input ends at once instead of at the timeout): redirected here,
    // not by writing an empty input to a pipe, which failed with EPIPE when the command had already exited.
    const wrapper = `printf '${PID_MARKER}%s\\n' "$$"; exec bash --noprofile --norc -eo pipefail -c "$1" </dev/null`;
    const argv = [
        ...(setsid ? [setsid] : []),
        'bash',
        '--noprofile',
        '--norc',
        '-c',
        wrapper,
        'bluegreen-smoke-test',
        test.command
    ];
    let exitCode;
    let spawnError;
    try {
        // loaded only for a smoke test: @actions/exec (and @actions/io) are not part of every run's start
        const exec = await __webpack_require__.e(/* import() */ 260).then(__webpack_require__.bind(__webpack_require__, 81260));
        const code = await exec.exec(argv[0], argv.slice(1), {
            env: smokeTestEnv(baseEnv, vars),
            silent: true,
            ignoreReturnCode: true,
            // A background process that keeps stdout open must not hold the deploy long after the command exits.
            delay: 2000,
            listeners: {
                stdline: (line) => {
                    if (pid === undefined && line.startsWith(PID_MARKER)) {
                        pid = Number(line.slice(PID_MARKER.length));
                        if (killedFor) {
                            signalGroup(pid, 'SIGTERM');
                            setTimeout(() => signalGroup(pid, 'SIGKILL'), KILL_GRACE_MS).unref();
                        }
                        return;
                    }
                    log.info(`  ${line}`);
                    keep(line);
                },
                errline: (line) => {
                    log.info(`  ! ${line}`);
                    keep(line);
                }
            }
        });
        exitCode = typeof code === 'number' && !Number.isNaN(code) ? code : undefined;
    }
    catch (e) {
        spawnError = e.message;
    }
    finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        // Whatever it left running in its group goes with it (a group's id is not reused while it has members; a
        // lone pid that exited might be, so without setsid nothing is signalled now).
        if (pid !== undefined && setsid)
            signalGroup(pid, 'SIGKILL', true);
    }
    const durationMs = Date.now() - started;
    let failure;
    if (killedFor)
        failure = killedFor;
    else if (spawnError)
        failure = `could not run: ${spawnError}`;
    else if (exitCode !== 0)
        failure = `exited with code ${exitCode ?? 'unknown'}`;
    return { exitCode, durationMs, tail: tail.join('\n'), failure };
}
function signalGroup(pid, sig, groupOnly = false) {
    for (const target of groupOnly ? [-pid] : [-pid, pid]) {
        try {
            process.kill(target, sig);
            return;
        }
        catch {
            // not a group leader (no setsid) or already gone: try the process itself
        }
    }
}
/** The tool's path on PATH, or '' (setsid comes with util-linux, on every GitHub-hosted Linux runner). */
function whichOrEmpty(tool) {
    for (const dir of (process.env.PATH ?? '').split(':')) {
        if (!dir)
            continue;
        try {
            (0,external_node_fs_.accessSync)((0,external_node_path_.join)(dir, tool), external_node_fs_.constants.X_OK);
            return (0,external_node_path_.join)(dir, tool);
        }
        catch {
            // not here
        }
    }
    return '';
}
/** The hook HostDeployment calls before the switch: tunnel, command, and a StepError that fails the host. */
async function smokeTestCandidate(test, c, record) {
    const tunnel = await openTunnel(c.remote, c.port, c.log);
    c.log.info(`running the smoke test on the runner against ${c.color} (${c.image}) at ${tunnel.url} → 127.0.0.1:${c.port} on ${c.remote.target.label} (timeout ${test.timeoutMs / 1000} s)`);
    let outcome;
    try {
        outcome = await runSmokeCommand(test, {
            BLUEGREEN_CANDIDATE_URL: tunnel.url,
            BLUEGREEN_HOST: c.remote.target.label,
            BLUEGREEN_COLOR: c.color,
            BLUEGREEN_IMAGE: c.image,
            BLUEGREEN_APP: c.app,
            BLUEGREEN_DEPLOY_ID: c.deployId
        }, c.log, c.signal);
    }
    finally {
        await tunnel.close();
    }
    record({ ...outcome, command: test.command });
    if (outcome.failure) {
        const last = outcome.tail
            .split('\n')
            .filter((l) => l.trim())
            .slice(-3)
            .join('\n');
        throw new StepError('smoke-test', `the smoke test ${outcome.failure}${last ? ` (last output: ${last.replace(/\n/g, ' | ')})` : ''}; the candidate got no traffic`);
    }
    c.log.info(`smoke test passed in ${outcome.durationMs} ms`);
}
/**
 * The beforeTraffic hook of one host, or undefined when no smoke test runs there: smoke-test is empty, the
 * command is not a deploy (a rollback returns to a version that already ran and must be fast), or
 * smoke-test-on: first and this is not the first host of the hosts input.
 */
function smokeTestHook(cfg, target, deployId, onReport) {
    const test = cfg.smokeTest;
    if (!test || cfg.command !== 'deploy')
        return undefined;
    if (test.on === 'first' && cfg.hosts[0]?.label !== target.label)
        return undefined;
    return ({ remote, port, color, image, log, timer }) => timer.run('smoke-test', () => smokeTestCandidate(test, { remote, port, color, image, log, signal: timer.signal, app: cfg.app, deployId }, onReport));
}

;// CONCATENATED MODULE: ./src/deploy/run.ts









function newDeployId(now = new Date()) {
    const stamp = now
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d+Z$/, 'Z');
    return `${stamp}-${Math.random().toString(16).slice(2, 8)}`;
}
function overallResult(hosts) {
    if (hosts.length && hosts.every((h) => h.result === 'success'))
        return 'success';
    if (hosts.some((h) => h.result === 'failed'))
        return 'failed';
    if (hosts.some((h) => h.result === 'rolled-back'))
        return 'rolled-back';
    return 'failed';
}
async function runDeploy(cfg, ctx, log, secrets, deps, deployId = newDeployId()) {
    const started = Date.now();
    const runSteps = [];
    const base = {
        deployId,
        command: cfg.command,
        app: cfg.app,
        image: cfg.command === 'deploy' ? imageReference(cfg.image) : '',
        startedAt: new Date(started).toISOString()
    };
    // One run's traffic: a router per host and what they share (alb: one API client and, alb-listener, one fleet switch).
    const traffic = trafficFor(cfg, { elb: deps.elb, note: (m) => log.log('info', m) });
    const finish = (hosts, error) => {
        const albReport = traffic.report?.();
        return {
            ...base,
            result: error && !hosts.length ? 'failed' : overallResult(hosts),
            endedAt: new Date().toISOString(),
            durationMs: Date.now() - started,
            steps: runSteps,
            hosts,
            error,
            ...(albReport ? { alb: albReport } : {})
        };
    };
    let login = { kind: 'none' };
    // Only a deploy (or a rollback-to of a version that is not kept) pulls; a plain rollback needs no registry.
    const mayPull = cfg.command === 'deploy' ||
        (cfg.command === 'rollback' && Boolean(cfg.rollbackTo) && Boolean(cfg.image.repository));
    if (!mayPull) {
        // no login
    }
    else if (cfg.registryAuth === 'ecr') {
        const t0 = Date.now();
        log.log('info', `fetching an ECR authorization token in ${cfg.awsRegion}`, { step: 'ecr-token' });
        try {
            const creds = await deps.fetchEcrToken(cfg.awsRegion);
            secrets.add(creds.password);
            login = { kind: 'password', registry: cfg.image.registry, username: creds.username, password: creds.password };
            runSteps.push(stepRecord('ecr-token', t0, 'ok'));
        }
        catch (e) {
            const message = e.message;
            runSteps.push(stepRecord('ecr-token', t0, 'failed', message));
            log.log('error', message, { step: 'ecr-token' });
            return finish([], { step: 'ecr-token', message });
        }
    }
    else if (cfg.registryAuth === 'password' && cfg.registryCredentials) {
        login = { kind: 'password', registry: cfg.image.registry, ...cfg.registryCredentials };
    }
    else if (cfg.registryAuth === 'ecr-on-host') {
        login = { kind: 'ecr-on-host', registry: cfg.image.registry, region: cfg.awsRegion };
    }
    if (login.kind === 'password')
        secrets.add(dockerAuthValue(login.username, login.password));
    const allOrNothing = cfg.rollout.onHostFailure === 'rollback-all' && cfg.hosts.length > 1;
    const sessions = new Map();
    const openSession = (target, signal) => {
        const log0 = log.forHost(target.label);
        const s = {
            target,
            log: log0,
            timer: new StepTimer(log0, signal),
            startedAt: Date.now(),
            remotes: [],
            connect: () => deps
                .connect(target, cfg.ssh, {
                signal: s.timer.signal,
                onRetry: (n, e, waitMs) => log0.warn(`connect attempt ${n} failed (${e.message}); retrying in ${waitMs / 1000} s`)
            })
                .then((r) => {
                s.remotes.push(r);
                return r;
            })
        };
        sessions.set(target.label, s);
        return s;
    };
    const failedAt = (s, step, err, batch) => ({
        host: s.target.label,
        result: 'failed',
        image: base.image,
        durationMs: Date.now() - s.startedAt,
        switched: false,
        steps: s.timer.steps,
        error: { step, message: err.message },
        warnings: [],
        batch,
        startedAt: new Date(s.startedAt).toISOString()
    });
    let upFront;
    if (allOrNothing)
        upFront = await lockFleet([...cfg.hosts], openSession, failedAt, cfg, deployId, ctx, log, deps.signal);
    const deployOne = async (target, batch, signal, fleet) => {
        const pre = sessions.get(target.label);
        const s = pre ?? openSession(target, signal);
        s.timer.signal = signal;
        // A host locked up front starts its deploy when its batch does.
        const meta = { batch, startedAt: new Date(pre ? Date.now() : s.startedAt).toISOString() };
        // alb-listener: the fleet's switch waits for every host to say how it ended, so this one says it exactly once,
        // even if its deploy threw.
        let said = false;
        const hostDone = (ok, step) => {
            if (!said)
                traffic.hostDone?.(target.label, ok, step);
            said = true;
        };
        try {
            let remote = s.remotes[0];
            if (!remote) {
                try {
                    remote = await s.timer.run('connect', s.connect);
                }
                catch (e) {
                    s.log.error(`connect failed: ${e.message}`);
                    fleet?.failed(e);
                    hostDone(false, 'connect');
                    return failedAt(s, 'connect', e, batch);
                }
            }
            let smokeTest;
            const beforeTraffic = smokeTestHook(cfg, target, deployId, (r) => (smokeTest = r));
            const router = traffic.routerFor(target);
            const result = await new HostDeployment({
                cfg,
                ctx,
                deployId,
                remote,
                log: s.log,
                timer: s.timer,
                login,
                lock: s.lock,
                reconnect: s.connect,
                fleet,
                beforeTraffic,
                router
            }).run();
            hostDone(result.result === 'success', result.error?.step);
            const loadBalancer = router?.report?.();
            return { ...result, ...meta, ...(smokeTest ? { smokeTest } : {}), ...(loadBalancer ? { loadBalancer } : {}) };
        }
        finally {
            hostDone(false, 'deploy');
            for (const r of s.remotes)
                r.close();
        }
    };
    let hosts;
    try {
        hosts =
            upFront ?? (await runRollout(cfg.hosts, cfg.rollout, deployOne, (msg) => log.log('info', msg), deps.signal));
    }
    finally {
        await traffic.close?.();
        // Hosts locked up front whose batch never started (the rollout stopped), or anything an error left open: let go.
        await Promise.all([...sessions.values()].map(async (s) => {
            await s.lock?.release().catch(() => undefined);
            for (const r of s.remotes)
                r.close();
        }));
    }
    if (deps.signal?.aborted) {
        // A cancel is nobody's failure: say so instead of naming the first host that stopped.
        const first = hosts.find((h) => h.error && !h.abortedBy);
        const message = first?.error && /cancelled/.test(first.error.message)
            ? first.error.message
            : 'the workflow run was cancelled (SIGINT/SIGTERM)';
        return finish(hosts, {
            step: first?.error?.step ?? 'connect',
            host: hosts.length === 1 ? first?.host : undefined,
            message
        });
    }
    // The run's error is the host that failed on its own, not one stopped because of it.
    const failed = hosts.find((h) => h.error && !h.abortedBy) ?? hosts.find((h) => h.error);
    return finish(hosts, failed?.error ? { ...failed.error, host: failed.host } : undefined);
}
/**
 * All-or-nothing: every host's lock is taken before any host deploys. First all at once without waiting (a free
 * fleet: one round trip); if any host is busy, every lock taken is let go and the hosts are locked one after the
 * other in one order (by address) that every run uses, each waiting its turn. Two overlapping fleet deploys can then
 * never each hold some hosts while waiting for the others (a deadlock until lock-timeout-seconds): nobody waits
 * while holding out of order, and in order the second simply waits for the first at its first host. Connecting is
 * done for all hosts at once. Returns the results when the fleet cannot
 * start (a host failed to connect or to lock: nothing was touched, every lock taken is released), else undefined.
 */
async function lockFleet(targets, open, failedAt, cfg, deployId, ctx, log, signal) {
    const all = targets.map((t) => open(t, signal));
    const failures = new Map();
    await Promise.all(all.map((s) => s.timer.run('connect', s.connect).catch((e) => {
        s.log.error(`connect failed: ${e.message}`);
        failures.set(s.target.label, failedAt(s, 'connect', e));
    })));
    if (!failures.size) {
        const take = (s, timeoutSeconds, lockLog) => acquireLock(s.remotes[0], {
            app: cfg.app,
            deployId,
            owner: lockOwner(deployId, ctx),
            timeoutSeconds,
            log: lockLog,
            signal
        });
        for (const s of all)
            s.timer.begin('lock');
        // First every host at once, none waiting (timeout 0): a free fleet is locked in one round trip. Waiting while
        // holding some is what deadlocks, so if any host is busy every lock taken is let go first, then the hosts are
        // locked in order, each waiting its turn.
        const quick = await Promise.all(all.map((s) => take(s, 0, { info: (m) => s.log.debug(m), warn: (m) => s.log.warn(m), debug: (m) => s.log.debug(m) }).catch(() => undefined)));
        if (quick.every((l) => l !== undefined)) {
            all.forEach((s, i) => {
                s.lock = quick[i];
                s.timer.end('ok');
            });
        }
        else {
            const busy = all.filter((_, i) => !quick[i]).map((s) => s.target.label);
            log.log('info', `the deploy lock is busy on ${busy.join(', ')}: letting go of the others, then locking the hosts one after another in a fixed order`);
            await Promise.all(quick.map((l) => l?.release().catch(() => undefined)));
            const ordered = [...all].sort((a, b) => lockOrder(a.target).localeCompare(lockOrder(b.target)));
            for (const s of ordered) {
                try {
                    s.timer.checkCancelled();
                    s.lock = await take(s, cfg.lockTimeoutSeconds, s.log);
                    s.timer.end('ok');
                }
                catch (e) {
                    const err = e instanceof StepError ? e : new StepError('lock', e.message);
                    s.timer.end('failed', err.message);
                    s.log.error(`lock failed: ${err.message}`);
                    failures.set(s.target.label, failedAt(s, 'lock', err));
                    break;
                }
            }
            // the hosts after the one that failed were never tried: no lock step for them
            for (const s of ordered)
                if (!s.lock && !failures.has(s.target.label))
                    s.timer.abandon();
        }
    }
    if (!failures.size)
        return undefined;
    const [first] = failures.values();
    log.log('error', `${first.host} failed at ${first.error.step}: no host was touched (on-host-failure: rollback-all)`);
    return Promise.all(all.map(async (s) => {
        await s.lock?.release().catch(() => undefined);
        for (const r of s.remotes)
            r.close();
        const own = failures.get(s.target.label);
        if (own)
            return own;
        return {
            host: s.target.label,
            result: 'skipped',
            image: '',
            durationMs: Date.now() - s.startedAt,
            switched: false,
            steps: s.timer.steps,
            warnings: [],
            batch: 0,
            abortedBy: first.host,
            error: { step: first.error.step, message: `not started: ${first.host} failed at ${first.error.step}` }
        };
    }));
}
/** The order hosts are locked in: the same for every run, whatever order the hosts input lists them in. */
function lockOrder(t) {
    return `${t.host}:${String(t.port).padStart(5, '0')}`;
}
function stepRecord(name, start, status, detail) {
    const end = Date.now();
    return {
        name,
        startedAt: new Date(start).toISOString(),
        endedAt: new Date(end).toISOString(),
        durationMs: end - start,
        status,
        detail
    };
}

;// CONCATENATED MODULE: ./src/log/log.ts
/**
 * The run log: every step and remote command, timestamped with a level, written to a file
 * (for the artifact) and to the Actions log (grouped per step when one host, prefixed per host otherwise).
 */



const actionsConsole = {
    write(level, text) {
        if (level === 'debug')
            debug(text);
        else if (level === 'warn')
            workflow_warning(text);
        else if (level === 'error')
            info(`Error: ${text}`);
        else
            info(text);
    },
    startGroup: (t) => startGroup(t),
    endGroup: () => endGroup()
};
class RunLog {
    file;
    secrets;
    sink;
    /** Whether console lines are prefixed with the host (several hosts log at once). */
    prefixHosts;
    groupOpen = false;
    constructor(file, secrets, sink, hostCount) {
        this.file = file;
        this.secrets = secrets;
        this.sink = sink;
        (0,external_node_fs_.mkdirSync)((0,external_node_path_.dirname)(file), { recursive: true });
        (0,external_node_fs_.writeFileSync)(file, '', { mode: 0o600 });
        this.prefixHosts = hostCount > 1;
    }
    log(level, message, where = {}) {
        const text = this.secrets.redact(message);
        const ts = new Date().toISOString();
        const tag = [where.host, where.step].filter(Boolean).join(' ');
        for (const line of text.split('\n')) {
            (0,external_node_fs_.appendFileSync)(this.file, `${ts} ${level.toUpperCase().padEnd(5)} ${tag ? `[${tag}] ` : ''}${line}\n`);
        }
        const consoleText = this.prefixHosts && where.host
            ? text
                .split('\n')
                .map((l) => `[${where.host}] ${l}`)
                .join('\n')
            : text;
        // Inside a group the Actions UI shows each line; annotations (warnings) are still raised.
        this.sink.write(level, consoleText);
    }
    /** Opens an Actions log group for a step (only when a single host is deployed; groups cannot interleave). */
    beginStep(host, step) {
        if (this.prefixHosts) {
            this.log('info', `▶ ${step}`, { host, step });
            return;
        }
        if (this.groupOpen)
            this.sink.endGroup();
        this.sink.startGroup(`${step} — ${host}`);
        this.groupOpen = true;
        (0,external_node_fs_.appendFileSync)(this.file, `${new Date().toISOString()} INFO  [${host} ${step}] ▶ ${step}\n`);
    }
    endStep(host, step, status, durationMs) {
        this.log(status === 'failed' ? 'error' : 'info', `${status === 'failed' ? '✗' : '✓'} ${step} ${status} in ${durationMs} ms`, { host, step });
        if (!this.prefixHosts && this.groupOpen) {
            this.sink.endGroup();
            this.groupOpen = false;
        }
    }
    forHost(host) {
        return new HostLog(this, host);
    }
}
class HostLog {
    run;
    host;
    step = '';
    constructor(run, host) {
        this.run = run;
        this.host = host;
    }
    debug(m) {
        this.run.log('debug', m, { host: this.host, step: this.step });
    }
    info(m) {
        this.run.log('info', m, { host: this.host, step: this.step });
    }
    warn(m) {
        this.run.log('warn', m, { host: this.host, step: this.step });
    }
    error(m) {
        this.run.log('error', m, { host: this.host, step: this.step });
    }
    begin(step) {
        this.step = step;
        this.run.beginStep(this.host, step);
    }
    end(step, status, durationMs) {
        this.run.endStep(this.host, step, status, durationMs);
        this.step = '';
    }
}

;// CONCATENATED MODULE: ./src/report/metrics.ts
const METRICS_SCHEMA_VERSION = 1;
function buildMetrics(result, ctx, cfg) {
    return {
        schemaVersion: METRICS_SCHEMA_VERSION,
        deployId: result.deployId,
        command: result.command,
        app: result.app,
        image: result.image,
        traffic: cfg.traffic,
        rollout: cfg.rollout
            ? {
                strategy: cfg.rollout.strategy,
                maxParallel: cfg.rollout.maxParallel ?? null,
                batchWaitMs: cfg.rollout.batchWaitMs,
                onHostFailure: cfg.rollout.onHostFailure
            }
            : null,
        result: result.result,
        startedAt: result.startedAt,
        endedAt: result.endedAt,
        durationMs: result.durationMs,
        run: {
            repository: ctx.repository,
            runId: ctx.runId,
            attempt: ctx.runAttempt,
            job: ctx.job,
            actor: ctx.actor,
            sha: ctx.sha,
            url: ctx.runUrl,
            event: ctx.eventName
        },
        steps: result.steps,
        hosts: result.hosts.map((h) => ({
            host: h.host,
            result: h.result,
            batch: h.batch ?? 0,
            startedAt: h.startedAt ?? null,
            abortedBy: h.abortedBy ?? null,
            activeColor: h.activeColor ?? null,
            previousColor: h.previousColor ?? null,
            candidateColor: h.candidateColor ?? null,
            image: h.image,
            digest: h.digest ?? null,
            cutoverMs: h.cutoverMs ?? null,
            switchMs: h.switchMs ?? null,
            downtimeMs: h.downtimeMs ?? null,
            durationMs: h.durationMs,
            stepDurationsMs: Object.fromEntries([
                ...h.steps.map((s) => [s.name, s.durationMs]),
                ['total', h.durationMs]
            ]),
            steps: h.steps,
            smokeTest: h.smokeTest
                ? {
                    exitCode: h.smokeTest.exitCode ?? null,
                    durationMs: h.smokeTest.durationMs,
                    failure: h.smokeTest.failure ?? null
                }
                : null,
            warnings: h.warnings,
            error: h.error ?? null,
            loadBalancer: h.loadBalancer ?? null
        })),
        loadBalancer: result.alb ?? null,
        error: result.error ?? null
    };
}

;// CONCATENATED MODULE: ./src/report/publish.ts
/** Where reports leave the action: the job summary and the artifact (its client is loaded only when used). */

// The artifact client is a large part of the bundle: loaded when needed, it stays out of the cold start.
const uploadReports = async (...args) => (await Promise.all(/* import() */[__webpack_require__.e(260), __webpack_require__.e(880), __webpack_require__.e(954)]).then(__webpack_require__.bind(__webpack_require__, 80954))).uploadReports(...args);
async function writeSummary(markdown) {
    if (!process.env.GITHUB_STEP_SUMMARY)
        return;
    try {
        await summary.addRaw(markdown).write();
    }
    catch (e) {
        workflow_warning(`could not write the job summary: ${e.message}`);
    }
}

;// CONCATENATED MODULE: ./src/report/timeline.ts
/** Above this many hosts a host's steps are merged into phases (the chart stays readable and small). */
const TIMELINE_DETAIL_HOSTS = 12;
const PHASES = [
    { name: 'prepare', steps: ['connect', 'lock', 'login', 'pull', 'detect', 'start'] },
    { name: 'check', steps: ['health', 'smoke-test'] },
    { name: 'switch', steps: ['switch', 'verify'] },
    { name: 'wait-fleet', steps: ['wait-fleet'] },
    { name: 'finish', steps: ['drain', 'stop', 'cleanup', 'record'] },
    { name: 'undo', steps: ['switch-back'] }
];
/**
 * Text safe in a gantt section or task name: the grammar ends a name at ":", "#" or ";" and a line at a line
 * break, and the labels become SVG text: only plain characters are kept, anything else becomes a space.
 */
function ganttText(s) {
    return (s
        .replace(/[^A-Za-z0-9 ._()[\]/@+-]/g, ' ')
        .replace(/\s+/g, ' ')
        .trim() || '-');
}
function tag(status) {
    // crit: red, active: highlighted, done: grey (the normal case)
    return status === 'failed' ? 'crit, ' : status === 'warning' ? 'active, ' : status === 'queued' ? '' : 'done, ';
}
function bars(h, runStart, detail) {
    const steps = h.steps
        .map((s) => ({
        name: s.name,
        status: s.status,
        start: Date.parse(s.startedAt),
        end: Date.parse(s.endedAt)
    }))
        .filter((s) => Number.isFinite(s.start) && Number.isFinite(s.end));
    const out = [];
    // A host of a later batch waits for the batches before it (after its lock, when all-or-nothing took it up front).
    const began = h.startedAt ? Date.parse(h.startedAt) : NaN;
    if ((h.batch ?? 0) > 0 && Number.isFinite(began)) {
        const from = Math.max(runStart, ...steps.filter((s) => s.end <= began).map((s) => s.end));
        if (began - from > 0)
            out.push({ name: `waits for batch ${h.batch}`, status: 'queued', start: from, end: began });
    }
    if (detail)
        return [...out, ...steps];
    for (const p of PHASES) {
        const of = h.steps.filter((s) => p.steps.includes(s.name));
        if (!of.length)
            continue;
        const status = of.some((s) => s.status === 'failed')
            ? 'failed'
            : of.some((s) => s.status === 'warning')
                ? 'warning'
                : 'ok';
        out.push({
            name: p.name,
            status,
            start: Math.min(...of.map((s) => Date.parse(s.startedAt))),
            end: Math.max(...of.map((s) => Date.parse(s.endedAt)))
        });
    }
    // cleanup also undoes a failed start: show it where it happened
    return out.filter((b) => Number.isFinite(b.start) && Number.isFinite(b.end));
}
/** The Mermaid gantt source (without the ``` fence), or undefined when there is nothing timed. */
function renderTimeline(r) {
    const runStart = Date.parse(r.startedAt);
    const detail = r.hosts.length <= TIMELINE_DETAIL_HOSTS;
    const sections = [];
    const runner = r.steps.map((s) => ({
        name: s.name,
        status: s.status,
        start: Date.parse(s.startedAt),
        end: Date.parse(s.endedAt)
    }));
    if (runner.length)
        sections.push({ title: 'runner', bars: runner });
    const batched = new Set(r.hosts.map((h) => h.batch ?? 0)).size > 1;
    for (const h of r.hosts) {
        const b = bars(h, runStart, detail);
        if (b.length)
            sections.push({ title: `${h.host}${batched ? ` (batch ${(h.batch ?? 0) + 1})` : ''} ${h.result}`, bars: b });
    }
    if (!sections.length)
        return undefined;
    const lines = [
        'gantt',
        `  title ${ganttText(`${r.app} ${r.command} ${r.deployId}${detail ? '' : ' (phases per host)'}`)}`,
        '  dateFormat x',
        '  axisFormat %H:%M:%S',
        '  todayMarker off'
    ];
    for (const s of sections) {
        lines.push(`  section ${ganttText(s.title)}`);
        // A step under a millisecond still gets a visible sliver.
        for (const b of s.bars)
            lines.push(`  ${ganttText(b.name)} :${tag(b.status)}${b.start}, ${Math.max(b.end, b.start + 1)}`);
    }
    return lines.join('\n');
}

;// CONCATENATED MODULE: ./src/report/summary.ts


/** GitHub rejects summaries over 1 MiB per step; stay well below it. */
const SUMMARY_LIMIT = 900 * 1024;
const LOGS_LIMIT = 16 * 1024;
function escapeHtml(s) {
    return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
/** Escapes text for a markdown table cell. */
function cell(s) {
    return escapeHtml(s).replace(/\|/g, '&#124;').replace(/\n/g, ' ');
}
function formatMs(ms) {
    if (ms === undefined)
        return '—';
    if (ms < 1000)
        return `${ms} ms`;
    if (ms < 60_000)
        return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}
const ICON = {
    success: '✅',
    'rolled-back': '↩️',
    failed: '❌',
    skipped: '⏭️',
    ok: '✓',
    warning: '⚠️'
};
const STEP_ORDER = [
    'connect',
    'lock',
    'login',
    'pull',
    'detect',
    'start',
    'health',
    'smoke-test',
    'switch',
    'verify',
    'wait-fleet',
    'drain',
    'stop',
    'cleanup',
    'switch-back',
    'record'
];
/** Above this many hosts the step table lists hosts as rows (it would be too wide otherwise). */
const WIDE_FLEET = 6;
/** owner/repo/.github/workflows/deploy.yml@refs/heads/main → { file: deploy.yml, ref: main }. */
function workflowFromRef(ref) {
    const m = /\/\.github\/workflows\/([^/@]+)@(.+)$/.exec(ref ?? '');
    if (!m)
        return undefined;
    return { file: m[1], ref: m[2].replace(/^refs\/(heads|tags)\//, '') };
}
function renderSummary(r, extras) {
    const out = [];
    const push = (text, rank = KEEP) => out.push({ text, rank });
    const noun = r.command === 'rollback' ? 'rollback' : 'deploy';
    const what = r.result === 'success'
        ? r.command === 'rollback'
            ? 'rolled back'
            : 'deployed'
        : r.result === 'rolled-back'
            ? `${noun} failed and was rolled back`
            : `${noun} failed`;
    const image = r.image || [...new Set(r.hosts.map((h) => h.image))].join(', ');
    push(`## ${ICON[r.result]} ${escapeHtml(r.app)} ${what}`);
    push('');
    push(outcomeLine(r, extras));
    push('');
    push(`**Result: \`${r.result}\`** · image \`${escapeHtml(image)}\` · ${r.hosts.length || 0} host(s) · ${formatMs(r.durationMs)} · traffic \`${extras.traffic}\`${extras.rollout && r.hosts.length > 1 ? ` · rollout ${escapeHtml(extras.rollout)}` : ''} · deploy \`${r.deployId}\``);
    push('');
    if (r.error) {
        push(`> **Failed at \`${r.error.step}\`${r.error.host ? ` on \`${escapeHtml(r.error.host)}\`` : ''}:** ${escapeHtml(r.error.message).replace(/\n/g, '<br>')}`);
        if (r.hosts.some((h) => h.switchBackFailed))
            push('>\n> **Switching back did not complete** on ' +
                r.hosts
                    .filter((h) => h.switchBackFailed)
                    .map((h) => `\`${escapeHtml(h.host)}\``)
                    .join(', ') +
                ': check which version serves there.');
        else if (r.result === 'rolled-back')
            push('>\n> Traffic was switched back: the previous version is serving.');
        else if (r.hosts.some((h) => h.error) && r.hosts.every((h) => !h.switched))
            push('>\n> The live version was not touched.');
        const aborted = r.hosts.filter((h) => h.abortedBy);
        if (aborted.length) {
            const back = aborted.filter((h) => h.result === 'rolled-back').map((h) => `\`${escapeHtml(h.host)}\``);
            const untouched = aborted.filter((h) => h.result !== 'rolled-back').map((h) => `\`${escapeHtml(h.host)}\``);
            push(`>\n> All-or-nothing (on-host-failure: rollback-all): ${back.length ? `switched back ${back.join(', ')}` : 'no other host had switched'}${untouched.length ? `; untouched ${untouched.join(', ')}` : ''}.`);
        }
        push('');
    }
    if (r.hosts.length) {
        const batched = new Set(r.hosts.map((h) => h.batch ?? 0)).size > 1;
        push(`| Host |${batched ? ' Batch |' : ''} Result | Live | Previous | Image digest | Cut-over | Total |`);
        push(`| --- |${batched ? ' ---: |' : ''} --- | --- | --- | --- | --- | --- |`);
        for (const h of r.hosts) {
            const cut = h.downtimeMs !== undefined ? `${formatMs(h.cutoverMs)} (downtime)` : formatMs(h.cutoverMs);
            const why = h.abortedBy ? ` (${cell(h.abortedBy)} failed)` : '';
            push(`| ${cell(h.host)} |${batched ? ` ${(h.batch ?? 0) + 1} |` : ''} ${ICON[h.result]} ${h.result}${why} | ${h.activeColor ?? '—'} | ${h.previousColor ?? '—'} | ${h.digest ? `\`${h.digest.slice(0, 19)}…\`` : '—'} | ${cut} | ${formatMs(h.durationMs)} |`);
        }
        push('');
        const names = STEP_ORDER.filter((n) => r.hosts.some((h) => h.steps.some((s) => s.name === n)));
        const table = ['### Steps', ''];
        if (r.hosts.length > WIDE_FLEET) {
            table.push(`| Host | ${[...r.steps.map((x) => `${x.name} (runner)`), ...names].join(' | ')} | total |`);
            table.push(`| --- | ${[...r.steps, ...names].map(() => '---:').join(' | ')} | ---: |`);
            for (const h of r.hosts) {
                table.push(`| ${cell(h.host)} | ${[...r.steps.map((x) => `${stepIcon(x.status)} ${formatMs(x.durationMs)}`.trim()), ...names.map((n) => stepCell(h, n))].join(' | ')} | **${formatMs(h.durationMs)}** |`);
            }
        }
        else {
            table.push(`| Step | ${r.hosts.map((h) => cell(h.host)).join(' | ')} |`);
            table.push(`| --- | ${r.hosts.map(() => '---:').join(' | ')} |`);
            for (const r0 of r.steps)
                table.push(`| ${r0.name} (runner) | ${r.hosts.map(() => `${stepIcon(r0.status)} ${formatMs(r0.durationMs)}`).join(' | ')} |`);
            for (const n of names)
                table.push(`| ${n} | ${r.hosts.map((h) => stepCell(h, n)).join(' | ')} |`);
            table.push(`| **total** | ${r.hosts.map((h) => `**${formatMs(h.durationMs)}**`).join(' | ')} |`);
        }
        push(table.join('\n') + '\n', STEPS);
        // The router's own section (alb: the listener's weights and each target's health over time).
        const routed = summarySection(extras.traffic, r, cell);
        if (routed)
            push(routed, STEPS);
        const timeline = renderTimeline(r);
        // Next to the tables: the same steps on the wall clock, waits between batches and at the gate included.
        if (timeline)
            push(`### Timeline\n\n\`\`\`mermaid\n${timeline}\n\`\`\`\n`, TIMELINE);
    }
    // Detail per host, shortened so that many hosts with long logs still fit (the budget is shared).
    const logBlocks = r.hosts.filter((h) => h.candidateLogs).length + r.hosts.filter((h) => h.smokeTest).length;
    const logLimit = Math.max(1024, Math.min(LOGS_LIMIT, Math.floor(LOGS_BUDGET / Math.max(1, logBlocks))));
    const tailOf = (text) => Buffer.byteLength(text) > logLimit
        ? `…${Buffer.from(text)
            .subarray(-logLimit)
            .toString('utf8')
            .replace(/^\uFFFD+/, '')}`
        : text;
    for (const h of r.hosts) {
        if (h.warnings.length) {
            const shown = h.warnings
                .slice(0, WARNINGS_PER_HOST)
                .map((w) => `- ${escapeHtml(w.length > WARNING_CHARS ? `${w.slice(0, WARNING_CHARS)}…` : w)}`);
            if (h.warnings.length > WARNINGS_PER_HOST)
                shown.push(`- … and ${h.warnings.length - WARNINGS_PER_HOST} more (see the log)`);
            push(`**Warnings on ${escapeHtml(h.host)}:**\n${shown.join('\n')}\n`, WARNINGS);
        }
        if (h.smokeTest) {
            const t = h.smokeTest;
            const status = t.failure ? `❌ ${escapeHtml(t.failure)}` : `✅ passed in ${formatMs(t.durationMs)}`;
            push(`<details${t.failure ? ' open' : ''}><summary>Smoke test on ${escapeHtml(h.host)}: ${status} — last lines of <code>${escapeHtml(t.command.split('\n')[0].slice(0, 120))}</code></summary>\n\n<pre>${escapeHtml(tailOf(t.tail)) || '(no output)'}</pre>\n</details>\n`, LOGS);
        }
        if (h.candidateLogs) {
            push(`<details open><summary>Last log lines of the candidate on ${escapeHtml(h.host)}</summary>\n\n<pre>${escapeHtml(tailOf(h.candidateLogs))}</pre>\n</details>\n`, LOGS);
        }
    }
    if (extras.artifact) {
        const a = extras.artifact;
        if (a.id !== undefined)
            push(`Logs and metrics: artifact ${a.url ? `[\`${escapeHtml(a.name)}\`](${a.url})` : `\`${escapeHtml(a.name)}\``} (id ${a.id}).`);
        else if (a.skipped)
            push(`Logs and metrics were not uploaded: ${escapeHtml(a.skipped)}`);
    }
    return fitToLimit(out);
}
const KEEP = 0;
const TIMELINE = 1;
const STEPS = 2;
const WARNINGS = 3;
const LOGS = 4;
/** Shared by every host's logs and smoke-test output (each gets at most LOGS_LIMIT). */
const LOGS_BUDGET = 384 * 1024;
const WARNINGS_PER_HOST = 10;
const WARNING_CHARS = 2000;
/** The line a person reads first: what is live now, where, since when, and what to do (the exact rollback). */
function outcomeLine(r, extras) {
    if (!r.hosts.length)
        return `**Nothing changed:** no host was contacted${r.error ? ` (\`${r.error.step}\` failed)` : ''}; whatever served before still serves. **Next:** fix the cause below and re-run.`;
    const list = (hs) => hs.length > 5 ? `${hs.length} hosts` : hs.map((h) => `\`${escapeHtml(h.host)}\``).join(', ');
    const colors = (hs) => [...new Set(hs.map((h) => h.activeColor).filter(Boolean))].join('/');
    const fresh = r.hosts.filter((h) => h.result === 'success');
    const unknown = r.hosts.filter((h) => h.switchBackFailed);
    const old = r.hosts.filter((h) => h.result !== 'success' && !h.switchBackFailed);
    const parts = [];
    if (fresh.length) {
        const images = [
            ...new Set(fresh.map((h) => h.digest ? `${h.image.replace(/@sha256:[a-f0-9]+$/, '')}@${h.digest.slice(0, 19)}…` : h.image))
        ];
        const since = latest(fresh.flatMap((h) => h.steps.filter((s) => s.name === 'switch').map((s) => s.endedAt))) ?? r.endedAt;
        parts.push(`\`${escapeHtml(images.join(', '))}\` (${colors(fresh)}) on ${list(fresh)} since ${utc(since)}`);
    }
    if (old.length) {
        const back = old.filter((h) => h.result === 'rolled-back');
        const untouched = old.filter((h) => h.result !== 'rolled-back');
        if (untouched.length)
            parts.push(`the previous version${colors(untouched) ? ` (${colors(untouched)})` : ''}, unchanged, on ${list(untouched)}`);
        if (back.length)
            parts.push(`the previous version (${colors(back)}) on ${list(back)} again since ${utc(r.endedAt)} (switched back)`);
    }
    if (unknown.length)
        parts.push(`**unknown** on ${list(unknown)} (switching back did not complete)`);
    const live = `**Live now:** ${parts.join('; ')}.`;
    const hostsArg = (hs) => hs.length === r.hosts.length ? '' : `, \`hosts: ${escapeHtml(hs.map((h) => h.host).join(','))}\``;
    const gh = extras.workflow
        ? ` — e.g. \`gh workflow run ${escapeHtml(extras.workflow.file)}${extras.workflow.ref ? ` --ref ${escapeHtml(extras.workflow.ref)}` : ''} -f command=rollback\` if the workflow takes a \`command\` input like the example`
        : '';
    let next;
    // The gh line rolls back every host of the workflow: only offered when that is what is meant (a rollback on a
    // host that kept the previous version would take it back one version further).
    const ghFor = (hs) => (hostsArg(hs) ? '' : gh);
    if (unknown.length)
        next = `**Next:** check what serves on ${list(unknown)}; to force the previous colour there run the action with \`command: rollback\`${hostsArg(unknown)}${ghFor(unknown)}.`;
    else if (r.result === 'success' && r.command === 'rollback')
        next = `**To go forward again:** run the action with \`command: rollback\` once more (the version rolled away from is the standby)${gh}.`;
    else if (r.result === 'success')
        next = `**If it misbehaves:** run the action with \`command: rollback\` (the previous version is kept stopped)${gh}.`;
    else if (fresh.length)
        next = `**Next:** fix the cause below and re-run, or put ${list(fresh)} back with \`command: rollback\`${hostsArg(fresh)} (only those hosts: the others still run the previous version)${ghFor(fresh)}.`;
    else
        next = `**Next:** fix the cause below and re-run; there is nothing to roll back.`;
    return `${live} ${next}`;
}
function latest(isos) {
    return isos.length ? isos.reduce((a, b) => (Date.parse(a) >= Date.parse(b) ? a : b)) : undefined;
}
function utc(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}
const TRUNCATED = "\n\n… (summary truncated to stay under GitHub's 1 MiB limit; see the log artifact)\n";
const DROPPED = (what) => `_(${what} left out to stay under GitHub's 1 MiB summary limit; see the log artifact)_`;
/**
 * Fits the blocks in SUMMARY_LIMIT bytes: drops whole detail blocks, least important first (logs, warnings, the
 * step table, the timeline), and says so; only if the kept blocks still do not fit (a giant error message) it
 * cuts by bytes, on a character boundary, and never inside HTML.
 */
function fitToLimit(blocks) {
    const size = (bs) => bs.reduce((n, b) => n + Buffer.byteLength(b.text) + 1, 0);
    let kept = blocks;
    const dropped = [];
    const budget = SUMMARY_LIMIT - Buffer.byteLength(TRUNCATED) - 512;
    for (const [rank, what] of [
        [LOGS, 'logs'],
        [WARNINGS, 'warnings'],
        [STEPS, 'the step table'],
        [TIMELINE, 'the timeline']
    ]) {
        if (size(kept) <= budget)
            break;
        kept = kept.filter((b) => b.rank !== rank);
        dropped.push(what);
    }
    if (dropped.length)
        kept = [...kept, { text: DROPPED(dropped.join(', ')), rank: KEEP }];
    if (size(kept) <= budget + 512)
        return kept.map((b) => b.text).join('\n') + '\n';
    let used = 0;
    const out = [];
    for (const { text } of kept) {
        const n = Buffer.byteLength(text) + 1;
        if (used + n > budget) {
            const room = budget - used - 1;
            if (room > 0 && !text.startsWith('<details'))
                out.push(Buffer.from(text)
                    .subarray(0, room)
                    .toString('utf8')
                    .replace(/\uFFFD$/, ''));
            return out.join('\n') + TRUNCATED;
        }
        out.push(text);
        used += n;
    }
    return out.join('\n') + TRUNCATED;
}
function stepIcon(status) {
    return status === 'failed' ? '❌' : status === 'warning' ? '⚠️' : '';
}
function stepCell(h, n) {
    const s = h.steps.filter((x) => x.name === n);
    if (!s.length)
        return '—';
    const ms = s.reduce((a, b) => a + b.durationMs, 0);
    const status = s.some((x) => x.status === 'failed')
        ? 'failed'
        : s.some((x) => x.status === 'warning')
            ? 'warning'
            : 'ok';
    return `${stepIcon(status)} ${formatMs(ms)}`.trim();
}

;// CONCATENATED MODULE: ./src/report/notify.ts

const NOTIFY_TIMEOUT_MS = 10_000;
const NOTIFY_SCHEMA_VERSION = 1;
const EMOJI = { success: '✅', 'rolled-back': '↩️', failed: '❌', skipped: '⏭️' };
const COLOR = {
    success: '#2eb67d',
    'rolled-back': '#ecb22e',
    failed: '#e01e5a',
    skipped: '#999999'
};
function notificationPayload({ result: r, ctx, image }) {
    const digest = /@(sha256:[a-f0-9]{64})$/.exec(image)?.[1] ?? null;
    const failedHosts = r.hosts.filter((h) => h.error && !h.abortedBy).map((h) => h.host);
    const succeeded = r.hosts.filter((h) => h.result === 'success').map((h) => h.host);
    const verb = r.result === 'success'
        ? r.command === 'rollback'
            ? 'rolled back'
            : 'deployed'
        : r.result === 'rolled-back'
            ? `${r.command} failed and was rolled back`
            : `${r.command} failed`;
    const cause = r.error ? { step: r.error.step, host: r.error.host ?? null, message: r.error.message } : null;
    const where = r.hosts.length === 1 ? r.hosts[0].host : `${r.hosts.length} hosts`;
    const link = ctx.runUrl ? ` (<${ctx.runUrl}|run ${ctx.runId}>)` : '';
    const text = `${EMOJI[r.result] ?? ''} ${r.app} ${verb}${image ? `: ${image}` : ''} on ${where} in ${formatMs(r.durationMs)}${link}${cause ? `\n${cause.step} failed${cause.host ? ` on ${cause.host}` : ''}: ${cause.message.slice(0, 500)}` : ''}`;
    const field = (title, value, short = true) => ({ title, value: value || '—', short });
    return {
        text,
        attachments: [
            {
                color: COLOR[r.result] ?? '#999999',
                fallback: text,
                fields: [
                    field('Result', r.result),
                    field('App', r.app),
                    field('Image', image, false),
                    field('Hosts', r.hosts.map((h) => `${h.host}: ${h.result}`).join(', '), false),
                    field('Duration', formatMs(r.durationMs)),
                    field('Run', ctx.runUrl, false),
                    ...(cause
                        ? [
                            field('Cause', `${cause.step}${cause.host ? ` on ${cause.host}` : ''}: ${cause.message.slice(0, 1000)}`, false)
                        ]
                        : [])
                ]
            }
        ],
        bluegreen: {
            schemaVersion: NOTIFY_SCHEMA_VERSION,
            result: r.result,
            command: r.command,
            app: r.app,
            image: image || null,
            digest,
            hosts: r.hosts.map((h) => ({ host: h.host, result: h.result, activeColor: h.activeColor ?? null })),
            failedHosts,
            succeededHosts: succeeded,
            durationMs: r.durationMs,
            deployId: r.deployId,
            runUrl: ctx.runUrl || null,
            repository: ctx.repository,
            sha: ctx.sha || null,
            actor: ctx.actor,
            cause
        }
    };
}
/**
 * POSTs the payload (secrets redacted). Never throws: returns a warning to print, or undefined when delivered.
 * The URL itself is a secret (Slack's carries its token): no message names it.
 */
async function sendNotification(url, facts, secrets, timeoutMs = NOTIFY_TIMEOUT_MS) {
    const body = JSON.stringify(secrets.redactDeep(notificationPayload(facts)));
    try {
        const res = await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'user-agent': 'bluegreen-ec2-action' },
            body,
            signal: AbortSignal.timeout(timeoutMs),
            redirect: 'error'
        });
        // Read the answer so the connection is released; it is not shown (it may echo the URL).
        await res.arrayBuffer().catch(() => undefined);
        if (!res.ok)
            return `notify-webhook answered HTTP ${res.status}; the message was not delivered (the deploy result is unchanged)`;
        return undefined;
    }
    catch (e) {
        const err = e;
        const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (err.cause?.code ?? err.name);
        return `notify-webhook could not be reached (${why}); the message was not delivered (the deploy result is unchanged)`;
    }
}

;// CONCATENATED MODULE: ./src/status/host-status.ts



function sections(out) {
    const res = {};
    const re = /^@@(containers|stats|upstream|history|state|lock|disk|logs)$/gm;
    const marks = [...out.matchAll(re)];
    marks.forEach((m, i) => {
        const start = m.index + m[0].length + 1;
        const end = i + 1 < marks.length ? marks[i + 1].index : out.length;
        res[m[1]] = out.slice(start, end).replace(/\n$/, '');
    });
    return res;
}
function jsonLines(text) {
    return (text ?? '')
        .split('\n')
        .filter((l) => l.trim().startsWith('{'))
        .flatMap((l) => {
        try {
            return [JSON.parse(l)];
        }
        catch {
            return [];
        }
    });
}
async function readHostStatus(cfg, router, remote, log, now = Date.now()) {
    const s = statusScript(cfg.dockerCommand, cfg.app, router.routingFile(), cfg.statusHistory, cfg.statusLogLines);
    log.debug('$ read containers, stats, upstream, history, lock and disk');
    const res = await remote.run(s.body, s.args);
    if (res.code !== 0)
        throw new Error(`reading the host's state failed (exit ${res.code}): ${(res.stderr || res.stdout).trim().split('\n').slice(-5).join('\n')}`);
    const sec = sections(res.stdout);
    const containers = jsonLines(sec.containers);
    const stats = jsonLines(sec.stats);
    const upstreamText = sec.upstream?.trim() === '@@none' ? undefined : sec.upstream;
    const port = router.routedPort?.(upstreamText);
    const upstreamColor = router.routedColor({ upstreamContent: upstreamText });
    let recordedLive;
    try {
        const st = sec.state?.trim() === '@@none' ? {} : JSON.parse(sec.state ?? '{}');
        recordedLive = st.live;
    }
    catch {
        /* an unreadable state file is reported below via live detection */
    }
    const colors = {};
    for (const color of ['blue', 'green']) {
        const c = containers.find((x) => x.name.replace(/^\//, '') === containerName(cfg.app, color));
        if (!c) {
            colors[color] = { exists: false, role: 'none' };
            continue;
        }
        const st = stats.find((x) => c.id.startsWith(x.ID) || x.Name === containerName(cfg.app, color));
        const labels = c.labels ?? {};
        colors[color] = {
            exists: true,
            container: containerName(cfg.app, color),
            state: c.state,
            role: 'none',
            image: labels['bluegreen.image'],
            digest: labels['bluegreen.digest'],
            deployId: labels['bluegreen.deploy-id'],
            deployedAt: labels['bluegreen.deployed-at'],
            runUrl: labels['bluegreen.run-url'],
            actor: labels['bluegreen.actor'],
            startedAt: c.running ? c.startedAt : undefined,
            uptimeSeconds: c.running ? Math.max(0, Math.round((now - Date.parse(c.startedAt)) / 1000)) : undefined,
            restartCount: c.restarts,
            exitCode: c.running ? undefined : c.exitCode,
            cpuPercent: st?.CPUPerc,
            memUsage: st?.MemUsage,
            memPercent: st?.MemPerc
        };
    }
    const running = ['blue', 'green'].filter((c) => colors[c].state === 'running');
    const live = liveColor(running, upstreamColor, recordedLive);
    for (const c of ['blue', 'green'])
        if (colors[c].exists)
            colors[c].role = c === live ? 'live' : 'standby';
    // Live probes: the same HTTP GET the deploy uses, through the SSH connection.
    const prober = new Prober(remote, log, cfg.healthHost);
    for (const c of running) {
        const probePort = router.probePort(c);
        // Both colours answer on one port (port-swap): only the live one can be probed.
        if (probePort === router.probePort(c === 'blue' ? 'green' : 'blue') && c !== live)
            continue;
        const p = await prober.probe(probePort, cfg.healthPath, 5000);
        colors[c].health = {
            ok: p.status !== undefined && p.status >= 200 && p.status < 300,
            status: p.status,
            error: p.error
        };
    }
    if (cfg.statusLogLines > 0 && sec.logs) {
        for (const part of sec.logs.split(/^@@log /m).filter(Boolean)) {
            const [first, ...rest] = part.split('\n');
            const c = first.trim();
            if ((c === 'blue' || c === 'green') && colors[c].exists)
                colors[c].logs = rest.join('\n').trim();
        }
    }
    const lock = parseLockSection(sec.lock ?? '', now);
    const df = (sec.disk ?? '').trim().split(/\s+/);
    const disk = df.length >= 6 && /^\d+%$/.test(df[4])
        ? { path: df[5], usedPercent: Number(df[4].replace('%', '')), availableKb: Number(df[3]) }
        : undefined;
    const status = {
        host: remote.target.label,
        reachable: true,
        live,
        traffic: cfg.traffic,
        // A router whose routing file names a port (nginx's upstream file): that file as read. (Caddy's marker file is
        // absent whenever blue is live: its router reports its own view.)
        upstream: router.routedPort
            ? { file: router.routingFile(), port, color: upstreamColor, exists: upstreamText !== undefined }
            : undefined,
        colors,
        leftovers: containers
            .map((c) => c.name.replace(/^\//, ''))
            .filter((n) => n !== containerName(cfg.app, 'blue') && n !== containerName(cfg.app, 'green')),
        history: jsonLines(sec.history).reverse(),
        lock,
        disk,
        findings: []
    };
    status.findings = findingsFor(status, now);
    return status;
}
function findingsFor(s, _now = Date.now()) {
    const f = [];
    const live = s.live ? s.colors[s.live] : undefined;
    if (!s.live)
        f.push({
            level: 'error',
            message: 'no colour is live: nothing serves this app' +
                (s.upstream?.color
                    ? ` (the upstream points at ${s.upstream.color}, which is ${s.colors[s.upstream.color].state ?? 'missing'})`
                    : '')
        });
    if (live?.health && !live.health.ok)
        f.push({
            level: 'error',
            message: `the live ${s.live} container is unhealthy right now (${live.health.status !== undefined ? `HTTP ${live.health.status}` : live.health.error})`
        });
    if (live && (live.restartCount ?? 0) > 0)
        f.push({ level: 'warning', message: `the live ${s.live} container has restarted ${live.restartCount} time(s)` });
    if (s.upstream && s.upstream.exists && s.upstream.color && s.colors[s.upstream.color].state !== 'running')
        f.push({
            level: 'error',
            message: `the nginx upstream points at ${s.upstream.color}, which is ${s.colors[s.upstream.color].state ?? 'missing'}`
        });
    if (s.upstream && !s.upstream.exists)
        f.push({ level: 'warning', message: `the nginx upstream file ${s.upstream.file} does not exist` });
    if (s.upstream?.exists && s.upstream.port !== undefined && !s.upstream.color)
        f.push({
            level: 'warning',
            message: `the nginx upstream points at port ${s.upstream.port}, which is neither colour's port`
        });
    const standby = s.live ? s.colors[s.live === 'blue' ? 'green' : 'blue'] : undefined;
    if (s.live && !standby?.exists)
        f.push({
            level: 'warning',
            message: 'no standby container is kept: a rollback is not possible (deploy once more, or use rollback-to with image)'
        });
    if (standby?.state === 'running' && s.lock.draining)
        f.push({
            level: 'info',
            message: `the standby ${standby.container} is finishing its in-flight requests; a job on the host stops it then (drain.log in the app's state directory)`
        });
    else if (standby?.state === 'running')
        f.push({ level: 'warning', message: `the standby ${standby.container} is running although it takes no traffic` });
    if (s.disk && s.disk.usedPercent >= 90)
        f.push({
            level: s.disk.usedPercent >= 95 ? 'error' : 'warning',
            message: `the docker disk (${s.disk.path}) is ${s.disk.usedPercent}% full`
        });
    const who = `${s.lock.owner?.deployId ?? 'unknown deploy'}${s.lock.owner?.runUrl ? ` (${s.lock.owner.runUrl})` : ''}`;
    if (s.lock.held)
        f.push({
            level: 'info',
            message: `a deploy is in progress: the lock is held by ${who}${s.lock.legacy ? ' (an older version of the action)' : s.lock.expiresAt ? `, lease renewed until ${s.lock.expiresAt}` : ''}`
        });
    else if (s.lock.stale)
        f.push({
            level: 'warning',
            message: `the deploy lock of ${who} expired at ${s.lock.expiresAt} without being released (its runner vanished or lost its connection); the next deploy takes it over`
        });
    if (s.leftovers.length)
        f.push({
            level: 'warning',
            message: `leftover containers of this app: ${s.leftovers.join(', ')} (the next successful deploy removes them)`
        });
    return f;
}
/** The `@@lock` section of statusScript: `now <epoch>`, `lease <token> <expires> <owner-json>`, `legacy <owner-json>`, `draining`. */
function parseLockSection(text, nowMs = Date.now()) {
    const lines = text.split('\n').map((l) => l.trim());
    const value = (key) => lines
        .find((l) => l === key || l.startsWith(`${key} `))
        ?.slice(key.length)
        .trim();
    const hostNow = Number(value('now'));
    const now = Number.isFinite(hostNow) && hostNow > 0 ? hostNow : Math.floor(nowMs / 1000);
    const draining = lines.includes('draining');
    const json = (t) => {
        if (!t)
            return undefined;
        try {
            const o = JSON.parse(t);
            return o && typeof o === 'object' ? o : { raw: t };
        }
        catch {
            return { raw: t };
        }
    };
    const legacy = value('legacy');
    if (legacy !== undefined)
        return { held: true, owner: json(legacy), draining, legacy: true };
    const lease = value('lease');
    const m = lease ? /^(\S+)\s+(\d+)\s*(.*)$/.exec(lease) : null;
    if (!m)
        return { held: false, draining };
    const expires = Number(m[2]);
    // host clock against host clock: the runner's clock does not matter
    const held = expires > now;
    return {
        held,
        owner: json(m[3]),
        draining,
        expiresAt: new Date(expires * 1000).toISOString(),
        stale: held ? undefined : true
    };
}

;// CONCATENATED MODULE: ./src/status/run.ts




const STATUS_SCHEMA_VERSION = 1;
/** Reads every host in parallel; an unreachable host is reported, not fatal for the others. */
async function runStatus(cfg, log, deps) {
    const started = Date.now();
    // One run's traffic for every host (alb: one load balancer client; the listener and groups are described once).
    const traffic = trafficFor(cfg, { elb: deps.elb });
    const hosts = await Promise.all(cfg.hosts.map(async (target) => {
        const hostLog = log.forHost(target.label);
        hostLog.begin('status');
        const t0 = Date.now();
        try {
            const remote = await deps.connect(target, cfg.ssh);
            try {
                const router = traffic.routerFor(target);
                const st = await readHostStatus(cfg, router, remote, hostLog);
                // The proxy's or load balancer's own view decides which colour is live, and adds its findings.
                const seen = await router.status?.({ cfg, remote, log: hostLog }, st);
                if (seen) {
                    const running = ['blue', 'green'].filter((c) => st.colors[c].state === 'running');
                    st.live = liveColor(running, seen.routed, st.live);
                    for (const c of ['blue', 'green'])
                        if (st.colors[c].exists)
                            st.colors[c].role = c === st.live ? 'live' : 'standby';
                    st.findings = [...findingsFor(st), ...(seen.findings?.(st) ?? [])];
                }
                for (const f of st.findings)
                    (f.level === 'info' ? hostLog.info : hostLog.warn).call(hostLog, `${f.level}: ${f.message}`);
                hostLog.info(st.live ? `live: ${st.live} (${st.colors[st.live].image ?? 'unknown image'})` : 'no colour is live');
                hostLog.end('status', 'ok', Date.now() - t0);
                return st;
            }
            finally {
                remote.close();
            }
        }
        catch (e) {
            const message = e.message;
            hostLog.error(message);
            hostLog.end('status', 'failed', Date.now() - t0);
            return {
                host: target.label,
                reachable: false,
                error: message,
                traffic: cfg.traffic,
                colors: { blue: { exists: false, role: 'none' }, green: { exists: false, role: 'none' } },
                leftovers: [],
                history: [],
                lock: { held: false },
                findings: [{ level: 'error', message }]
            };
        }
    }));
    await traffic.close?.();
    return {
        schemaVersion: STATUS_SCHEMA_VERSION,
        app: cfg.app,
        generatedAt: new Date().toISOString(),
        durationMs: Date.now() - started,
        hosts
    };
}

;// CONCATENATED MODULE: ./src/status/summary.ts
/** Job summary of `command: status`. */


const summary_cell = (s) => (s ? escapeHtml(s).replace(/\|/g, '&#124;').replace(/\n/g, ' ') : '—');
const summary_ICON = { error: '❌', warning: '⚠️', info: 'ℹ️' };
function uptime(sec) {
    if (sec === undefined)
        return '—';
    if (sec < 120)
        return `${sec} s`;
    if (sec < 7200)
        return `${Math.round(sec / 60)} min`;
    if (sec < 172800)
        return `${Math.round(sec / 3600)} h`;
    return `${Math.round(sec / 86400)} d`;
}
function hostSection(h) {
    const out = [`### ${escapeHtml(h.host)}${h.live ? ` — live: **${h.live}**` : ''}`, ''];
    if (!h.reachable)
        return [...out, `❌ ${escapeHtml(h.error ?? 'unreachable')}`, ''];
    out.push('| Colour | Role | State | Image | Digest | Deployed | Uptime | Health | Restarts | CPU | Memory |');
    out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const c of ['blue', 'green']) {
        const s = h.colors[c];
        if (!s.exists) {
            out.push(`| ${c} | — | missing | — | — | — | — | — | — | — | — |`);
            continue;
        }
        const health = s.health
            ? s.health.ok
                ? `✅ ${s.health.status}`
                : `❌ ${s.health.status ?? summary_cell(s.health.error)}`
            : '—';
        const deployed = s.deployedAt
            ? `${summary_cell(s.deployedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}${s.actor ? ` by ${summary_cell(s.actor)}` : ''}${s.runUrl ? ` ([run](${s.runUrl}))` : ''}`
            : '—';
        out.push(`| ${c} | ${s.role} | ${summary_cell(s.state)} | \`${summary_cell(s.image)}\` | ${s.digest ? `\`${s.digest.slice(0, 19)}…\`` : '—'} | ${deployed} | ${uptime(s.uptimeSeconds)} | ${health} | ${s.restartCount ?? '—'} | ${summary_cell(s.cpuPercent)} | ${summary_cell(s.memUsage)} |`);
    }
    out.push('');
    // The router's own view (haproxy: its servers; alb: the load balancer's targets).
    const routerLine = statusLine(h, summary_cell);
    if (routerLine)
        out.push(routerLine);
    if (h.upstream)
        out.push(`nginx upstream \`${summary_cell(h.upstream.file)}\`: ${h.upstream.exists ? `127.0.0.1:${h.upstream.port ?? '?'} (${h.upstream.color ?? 'no colour'})` : 'missing'} · lock: ${h.lock.held ? 'held' : 'free'}${h.disk ? ` · disk ${h.disk.usedPercent}% used` : ''}`);
    else
        out.push(`lock: ${h.lock.held ? 'held' : 'free'}${h.disk ? ` · disk ${h.disk.usedPercent}% used` : ''}`);
    out.push('');
    if (h.findings.length) {
        out.push('**Findings**', '');
        for (const f of h.findings)
            out.push(`- ${summary_ICON[f.level]} ${escapeHtml(f.message)}`);
        out.push('');
    }
    if (h.history.length) {
        out.push('<details><summary>Recent deploys and rollbacks</summary>', '', '| When | Command | Result | Image | Colour | Took | By |', '| --- | --- | --- | --- | --- | --- | --- |');
        for (const e of h.history) {
            const r = e;
            out.push(`| ${summary_cell(r.at)} | ${summary_cell(r.command)} | ${summary_cell(r.result)} | \`${summary_cell(r.image)}\` | ${summary_cell(r.color)} | ${formatMs(r.durationMs)} | ${summary_cell(r.actor)}${r.runUrl ? ` ([run](${r.runUrl}))` : ''} |`);
        }
        out.push('', '</details>', '');
    }
    for (const c of ['blue', 'green']) {
        const logs = h.colors[c].logs;
        if (logs)
            out.push(`<details><summary>Recent log lines of ${c}</summary>\n\n<pre>${escapeHtml(logs.slice(-16_000))}</pre>\n</details>\n`);
    }
    return out;
}
function renderStatusSummary(r) {
    const errors = r.hosts.flatMap((h) => h.findings.filter((f) => f.level === 'error'));
    const warnings = r.hosts.flatMap((h) => h.findings.filter((f) => f.level === 'warning'));
    const head = errors.length ? '❌' : warnings.length ? '⚠️' : '✅';
    const out = [
        `## ${head} ${escapeHtml(r.app)} status — ${r.hosts.length} host(s)`,
        '',
        `${errors.length} error(s), ${warnings.length} warning(s) · read in ${formatMs(r.durationMs)} · nothing was changed`,
        ''
    ];
    for (const h of r.hosts)
        out.push(...hostSection(h));
    let text = out.join('\n') + '\n';
    if (Buffer.byteLength(text) > SUMMARY_LIMIT)
        text =
            Buffer.from(text)
                .subarray(0, SUMMARY_LIMIT - 200)
                .toString('utf8')
                .replace(/\uFFFD$/, '') + '\n\n… (truncated; see the status-json output)\n';
    return text;
}

;// CONCATENATED MODULE: ./src/commands/status.ts
/** `command: status`: read every host, report (outputs, summary, artifact); fails only when a host cannot be read. */








async function statusCommand(cfg, ctx, secrets, deps, sink, env) {
    const runId = newDeployId();
    const dir = (0,external_node_path_.join)(ctx.runnerTemp, `bluegreen-${cfg.app}-status-${runId}`);
    const logFile = (0,external_node_path_.join)(dir, 'status.log');
    const jsonFile = (0,external_node_path_.join)(dir, 'status.json');
    const log = new RunLog(logFile, secrets, sink, cfg.hosts.length);
    log.log('info', `bluegreen-ec2-action: status of ${cfg.app} on ${cfg.hosts.map((h) => h.label).join(', ')} (read-only)`);
    const report = secrets.redactDeep(await runStatus(cfg, log, deps));
    const json = JSON.stringify(report);
    (0,external_node_fs_.writeFileSync)(jsonFile, JSON.stringify(report, null, 2) + '\n');
    let artifact;
    if (cfg.uploadArtifacts) {
        artifact = await uploadReports(cfg.artifactName, [logFile, jsonFile], cfg.artifactRetentionDays, runId.split('-').pop(), env);
        if (artifact.skipped)
            workflow_warning(`bluegreen-ec2-action: the status log was not uploaded as an artifact: ${artifact.skipped}`);
    }
    const unreachable = report.hosts.filter((h) => !h.reachable);
    setOutput('result', unreachable.length ? 'failed' : 'success');
    setOutput('failed-hosts', unreachable.map((h) => h.host).join(','));
    setOutput('succeeded-hosts', report.hosts
        .filter((h) => h.reachable)
        .map((h) => h.host)
        .join(','));
    setOutput('status-json', json);
    setOutput('active-color', unique(report.hosts.map((h) => h.live)));
    setOutput('deploy-id', '');
    setOutput('duration-ms', String(report.durationMs));
    setOutput('log-file', logFile);
    setOutput('metrics-file', jsonFile);
    setOutput('artifact-id', artifact?.id !== undefined ? String(artifact.id) : '');
    if (cfg.summary)
        await writeSummary(secrets.redact(renderStatusSummary(report)));
    if (unreachable.length) {
        const msg = `status could not be read on ${unreachable.map((h) => `${h.host} (${h.error})`).join('; ')}`;
        error(secrets.redact(msg), { title: 'bluegreen-ec2-action: status failed' });
        setFailed(secrets.redact(msg));
    }
}
function unique(values) {
    return [...new Set(values.filter((v) => Boolean(v)))].join(',');
}

;// CONCATENATED MODULE: ./src/commands/deploy.ts
/** `command: deploy` and `command: rollback`: every host, then the reports (metrics, artifact, outputs, summary, annotations). */










async function deployCommand(cfg, ctx, secrets, deps, sink, env) {
    const deployId = newDeployId();
    const dir = (0,external_node_path_.join)(ctx.runnerTemp, `bluegreen-${cfg.app}-${deployId}`);
    const logFile = (0,external_node_path_.join)(dir, 'deploy.log');
    const metricsFile = (0,external_node_path_.join)(dir, 'metrics.json');
    const log = new RunLog(logFile, secrets, sink, cfg.hosts.length);
    const what = cfg.command === 'rollback'
        ? `rollback${cfg.rollbackTo ? ` to ${cfg.rollbackTo}` : ''}`
        : `${cfg.image.repository}${cfg.image.digest ? `@${cfg.image.digest}` : `:${cfg.image.tag}`}`;
    const fleet = cfg.hosts.length > 1 ? `, rollout: ${cfg.rollout.strategy}, on-host-failure: ${cfg.rollout.onHostFailure}` : '';
    const via = cfg.transport === 'ssm'
        ? ', transport: ssm (AWS Systems Manager Run Command)'
        : cfg.ssh.jump
            ? `, via ${cfg.ssh.jump.target.label}`
            : '';
    log.log('info', `bluegreen-ec2-action: ${cfg.command} ${cfg.app} ← ${what} on ${cfg.hosts.map((h) => h.label).join(', ')} (traffic: ${cfg.traffic}${fleet}${via}, deploy ${deployId})`);
    if (cfg.ssh.hostKeys.insecureIgnore)
        log.log('warn', 'ssh-insecure-ignore-host-key is true: host keys are NOT verified, so a man-in-the-middle could impersonate the host');
    // A cancelled workflow sends SIGINT, then SIGTERM a few seconds later: stop starting new steps,
    // undo what was done (remove the candidate, or switch back) and report, instead of dying mid-step.
    const cancel = new AbortController();
    const onSignal = (sig) => {
        if (!cancel.signal.aborted)
            log.log('warn', `received ${sig}: the run was cancelled; finishing the current remote command, then cleaning up`);
        cancel.abort();
    };
    const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
    process.on('SIGINT', handlers.SIGINT).on('SIGTERM', handlers.SIGTERM);
    const result = await runDeploy(cfg, ctx, log, secrets, { ...deps, signal: cancel.signal }, deployId).finally(() => {
        process.off('SIGINT', handlers.SIGINT).off('SIGTERM', handlers.SIGTERM);
    });
    log.log(result.result === 'success' ? 'info' : 'error', `result: ${result.result} in ${result.durationMs} ms`);
    (0,external_node_fs_.writeFileSync)(metricsFile, JSON.stringify(secrets.redactDeep(buildMetrics(result, ctx, { traffic: cfg.traffic, hosts: cfg.hosts.length, rollout: cfg.rollout })), null, 2) + '\n', { mode: 0o644 });
    let artifact;
    if (cfg.uploadArtifacts) {
        artifact = await uploadReports(cfg.artifactName, [logFile, metricsFile], cfg.artifactRetentionDays, deployId.split('-').pop(), env);
        if (artifact.skipped)
            workflow_warning(`bluegreen-ec2-action: logs and metrics were not uploaded as an artifact: ${artifact.skipped}`);
        else
            info(`uploaded logs and metrics as artifact ${artifact.name} (id ${artifact.id})`);
    }
    setOutputs(result, logFile, metricsFile, artifact);
    if (cfg.summary)
        await writeSummary(secrets.redact(renderSummary(result, {
            artifact,
            traffic: cfg.traffic,
            rollout: describeRollout(cfg),
            workflow: workflowFromRef(env.GITHUB_WORKFLOW_REF)
        })));
    if (cfg.notifyWebhook) {
        const warning = await sendNotification(cfg.notifyWebhook, { result, ctx, image: outputImage(result) }, secrets);
        if (warning)
            workflow_warning(secrets.redact(warning), { title: 'bluegreen-ec2-action: notify-webhook' });
        else
            log.log('info', 'notify-webhook: message delivered');
    }
    if (result.result !== 'success') {
        const e = result.error;
        const message = e ? `${e.step} failed${e.host ? ` on ${e.host}` : ''}: ${e.message}` : `deploy ${result.result}`;
        const others = result.hosts.filter((h) => h.abortedBy);
        const back = others.filter((h) => h.result === 'rolled-back').map((h) => h.host);
        const fleetNote = others.length
            ? ` — on-host-failure rollback-all: ${back.length ? `switched back ${back.join(', ')}` : 'no other host had switched'}${others.length > back.length
                ? `; left untouched ${others
                    .filter((h) => h.result !== 'rolled-back')
                    .map((h) => h.host)
                    .join(', ')}`
                : ''}`
            : '';
        const suffix = (result.result === 'rolled-back' ? ' — traffic was switched back to the previous version' : '') + fleetNote;
        error(secrets.redact(message + suffix), { title: `bluegreen-ec2-action: ${result.result}` });
        setFailed(secrets.redact(`${message}${suffix}`));
    }
}
function describeRollout(cfg) {
    const r = cfg.rollout;
    const mp = r.maxParallel
        ? `, max-parallel ${'count' in r.maxParallel ? r.maxParallel.count : `${r.maxParallel.percent}%`}`
        : '';
    return `${r.strategy}${mp}, on-host-failure ${r.onHostFailure}`;
}
/** The `image` output: the deployed image with its digest when every host pulled the same one. */
function outputImage(r) {
    const digest = unique(r.hosts.map((h) => h.digest));
    const image = r.image || unique(r.hosts.filter((h) => h.result === 'success').map((h) => h.image));
    return digest && !digest.includes(',') && !image.includes(',') && image
        ? `${image.replace(/@sha256:[a-f0-9]+$/, '')}@${digest}`
        : image;
}
function setOutputs(r, logFile, metricsFile, artifact) {
    setOutput('result', r.result);
    setOutput('failed-hosts', r.hosts
        .filter((h) => h.error && !h.abortedBy)
        .map((h) => h.host)
        .join(','));
    setOutput('succeeded-hosts', r.hosts
        .filter((h) => h.result === 'success')
        .map((h) => h.host)
        .join(','));
    setOutput('active-color', unique(r.hosts.map((h) => h.activeColor)));
    setOutput('previous-color', unique(r.hosts.map((h) => h.previousColor)));
    setOutput('image', outputImage(r));
    setOutput('deploy-id', r.deployId);
    setOutput('duration-ms', String(r.durationMs));
    const cut = r.hosts.map((h) => h.cutoverMs).filter((v) => v !== undefined);
    setOutput('cutover-ms', cut.length ? String(Math.max(...cut)) : '');
    setOutput('log-file', logFile);
    setOutput('metrics-file', metricsFile);
    setOutput('artifact-id', artifact?.id !== undefined ? String(artifact.id) : '');
}

;// CONCATENATED MODULE: ./src/model/context.ts
function readRunContext(env = process.env) {
    const serverUrl = env.GITHUB_SERVER_URL || 'https://github.com';
    const repository = env.GITHUB_REPOSITORY || 'local/app';
    const runId = env.GITHUB_RUN_ID || String(Date.now());
    const runAttempt = env.GITHUB_RUN_ATTEMPT || '1';
    return {
        repository,
        runId,
        runAttempt,
        job: env.GITHUB_JOB || 'deploy',
        actor: env.GITHUB_ACTOR || env.USER || 'unknown',
        sha: env.GITHUB_SHA || '',
        serverUrl,
        runUrl: env.GITHUB_RUN_ID ? `${serverUrl}/${repository}/actions/runs/${runId}/attempts/${runAttempt}` : '',
        eventName: env.GITHUB_EVENT_NAME || '',
        runnerTemp: env.RUNNER_TEMP || env.TMPDIR || '/tmp'
    };
}

// EXTERNAL MODULE: ./src/config/inputs/collector.ts
var collector = __webpack_require__(9277);
;// CONCATENATED MODULE: ./src/config/inputs/alb.ts

const PARTITION = 'arn:aws(?:-[a-z]+)*:elasticloadbalancing:([a-z]{2}(?:-[a-z]+)+-\\d{1,2}):(\\d{12})';
const TARGET_GROUP_ARN = new RegExp(`^${PARTITION}:targetgroup/([A-Za-z0-9-]{1,32})/([0-9a-f]{1,32})$`);
const LISTENER_ARN = new RegExp(`^${PARTITION}:listener/app/([A-Za-z0-9-]{1,32})/([0-9a-f]{1,32})/([0-9a-f]{1,32})$`);
const RULE_ARN = new RegExp(`^${PARTITION}:listener-rule/app/([A-Za-z0-9-]{1,32})/([0-9a-f]{1,32})/([0-9a-f]{1,32})/([0-9a-f]{1,32})$`);
/** A target group's name: 1-32 letters, digits and hyphens, not beginning or ending with a hyphen. */
const TARGET_GROUP_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/;
const EXAMPLES = {
    targetGroup: 'backend-tg (or arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/backend-tg/50dc6c495c0c9188)',
    listener: 'arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/backend-alb/50dc6c495c0c9188/f2f7dc8efc522ab2',
    rule: 'arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/backend-alb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee',
    blue: 'backend-blue',
    green: 'backend-green'
};
const ALB_INPUTS = [
    'alb-target-group',
    'alb-listener',
    'alb-rule',
    'alb-blue-target-group',
    'alb-green-target-group',
    'alb-canary-percent',
    'publish-address'
];
/** The region an ALB ARN names (for the check against aws-region). */
function arnRegion(arn) {
    return /^arn:[^:]+:elasticloadbalancing:([^:]+):/.exec(arn)?.[1];
}
function targetGroupInput(c, name, example) {
    const v = c.raw(name);
    if (!v)
        return undefined;
    if (v.startsWith('arn:')) {
        if (!TARGET_GROUP_ARN.test(v))
            return c.fail(name, `is not a target group ARN (arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>; got "${(0,collector/* printable */.g$)(v)}")`, example);
    }
    else if (!TARGET_GROUP_NAME.test(v)) {
        return c.fail(name, `must be a target group's name (1-32 letters, digits and hyphens, not beginning or ending with "-") or its ARN (got "${(0,collector/* printable */.g$)(v)}")`, example);
    }
    return v;
}
function readAlb(c, traffic) {
    if (traffic !== 'alb') {
        for (const name of ALB_INPUTS)
            if (c.raw(name))
                c.fail(name, `only applies to traffic: alb (traffic is ${traffic})`, name === 'publish-address'
                    ? '0.0.0.0 with traffic: alb'
                    : `${EXAMPLES.targetGroup.split(' ')[0]} with traffic: alb`);
        return { alb: undefined, publishAddress: '127.0.0.1' };
    }
    const publishAddress = c.raw('publish-address') || '0.0.0.0';
    if (!/^(\d{1,3})(\.\d{1,3}){3}$/.test(publishAddress) || publishAddress.split('.').some((o) => Number(o) > 255)) {
        c.fail('publish-address', `must be an IPv4 address of the host that the load balancer reaches, or 0.0.0.0 for all (got "${(0,collector/* printable */.g$)(publishAddress)}")`, '0.0.0.0');
    }
    const single = targetGroupInput(c, 'alb-target-group', EXAMPLES.targetGroup);
    const listener = c.raw('alb-listener');
    const rule = c.raw('alb-rule');
    const blue = targetGroupInput(c, 'alb-blue-target-group', EXAMPLES.blue);
    const green = targetGroupInput(c, 'alb-green-target-group', EXAMPLES.green);
    const canaryRaw = c.raw('alb-canary-percent');
    const listenerWay = Boolean(listener || rule || c.raw('alb-blue-target-group') || c.raw('alb-green-target-group'));
    if (c.raw('alb-target-group') && listenerWay) {
        const others = ['alb-listener', 'alb-rule', 'alb-blue-target-group', 'alb-green-target-group'].filter((n) => c.raw(n));
        c.fail('alb-target-group', `and ${others.join(', ')} are two different ways and cannot be combined: one target group (each host swaps its own targets) or a listener with a group per colour (the whole fleet switched at once)`, `${EXAMPLES.blue}-tg alone, or alb-listener + alb-blue-target-group + alb-green-target-group`);
        return { alb: undefined, publishAddress };
    }
    if (!c.raw('alb-target-group') && !listenerWay) {
        c.fail('traffic', 'alb needs alb-target-group (one target group: each host swaps its own targets) or alb-listener with alb-blue-target-group and alb-green-target-group (the whole fleet switched at once)', `alb with alb-target-group: ${EXAMPLES.targetGroup.split(' ')[0]}`);
        return { alb: undefined, publishAddress };
    }
    if (c.raw('alb-target-group')) {
        if (canaryRaw)
            c.fail('alb-canary-percent', 'only applies with alb-listener (a weighted listener switch); with one target group use rollout: canary', '10 with alb-listener');
        return { alb: single ? { mode: 'target-group', targetGroup: single } : undefined, publishAddress };
    }
    let ok = true;
    if (!listener)
        ok = Boolean(c.fail('alb-listener', 'is required with alb-blue-target-group and alb-green-target-group (the listener whose forward action is switched)', EXAMPLES.listener));
    else if (!LISTENER_ARN.test(listener))
        ok = Boolean(c.fail('alb-listener', `must be a listener ARN of an Application Load Balancer (arn:aws:elasticloadbalancing:<region>:<account>:listener/app/<alb>/<id>/<id>; got "${(0,collector/* printable */.g$)(listener)}")`, EXAMPLES.listener));
    if (rule) {
        const r = RULE_ARN.exec(rule);
        const l = LISTENER_ARN.exec(listener);
        if (!r)
            ok = Boolean(c.fail('alb-rule', `must be a listener rule ARN (arn:aws:elasticloadbalancing:<region>:<account>:listener-rule/app/<alb>/<id>/<id>/<id>; got "${(0,collector/* printable */.g$)(rule)}")`, EXAMPLES.rule));
        else if (l && rule.replace(':listener-rule/', ':listener/').replace(/\/[0-9a-f]+$/, '') !== listener)
            ok = Boolean(c.fail('alb-rule', `belongs to another listener than alb-listener (${(0,collector/* printable */.g$)(listener)})`, EXAMPLES.rule));
    }
    for (const [name, v] of [
        ['alb-blue-target-group', blue],
        ['alb-green-target-group', green]
    ]) {
        if (!c.raw(name))
            ok = Boolean(c.fail(name, 'is required with alb-listener (one target group per colour)', name.includes('blue') ? EXAMPLES.blue : EXAMPLES.green));
        else if (!v)
            ok = false;
    }
    if (blue && green && blue === green)
        ok = Boolean(c.fail('alb-green-target-group', 'must differ from alb-blue-target-group (each colour needs its own group)', EXAMPLES.green));
    let canaryPercent;
    if (canaryRaw) {
        if (!/^\d{1,2}$/.test(canaryRaw) || Number(canaryRaw) < 1 || Number(canaryRaw) > 99)
            ok = Boolean(c.fail('alb-canary-percent', `must be a whole number from 1 to 99: the share of requests the new colour gets first (got "${(0,collector/* printable */.g$)(canaryRaw)}")`, '10'));
        else
            canaryPercent = Number(canaryRaw);
    }
    if (!ok)
        return { alb: undefined, publishAddress };
    const groups = { blue: blue, green: green };
    return {
        alb: { mode: 'listener', listenerArn: listener, ruleArn: rule || undefined, groups, canaryPercent },
        publishAddress
    };
}
/** Cross-section checks: the ALB's region, and a fleet switch needs every host in the run at once. */
function checkAlbFits(c, alb, awsRegion, rollout, hostCount) {
    if (!alb)
        return;
    if (!awsRegion)
        c.fail('aws-region', 'is required for traffic: alb (the region of the load balancer; it could not be read from AWS_REGION or the image host)', 'us-east-1');
    const arns = alb.mode === 'target-group'
        ? [['alb-target-group', alb.targetGroup]]
        : [
            ['alb-listener', alb.listenerArn],
            ['alb-rule', alb.ruleArn ?? ''],
            ['alb-blue-target-group', alb.groups.blue],
            ['alb-green-target-group', alb.groups.green]
        ];
    for (const [name, v] of arns) {
        const r = arnRegion(v);
        if (r && awsRegion && r !== awsRegion)
            c.fail(name, `is in ${r} but aws-region is ${awsRegion} (the load balancer's API is called in aws-region)`, r);
    }
    if (alb.mode !== 'listener' || hostCount < 2)
        return;
    // The listener moves every host's traffic in one call: no host can wait for another batch, and no host may go on alone.
    if (rollout.strategy !== 'parallel')
        c.fail('rollout', `must be parallel with alb-listener: the listener switches every host at once, after every candidate is healthy (got ${rollout.strategy}; for a gradual shift use alb-canary-percent)`, 'parallel');
    if (rollout.maxParallel)
        c.fail('max-parallel', 'does not apply with alb-listener: every host is prepared at once and switched by one listener change', '(leave empty)');
    if (rollout.onHostFailure !== 'rollback-all')
        c.fail('on-host-failure', 'must be rollback-all with alb-listener: one listener change moves every host, so one host cannot stay behind', 'rollback-all');
}

;// CONCATENATED MODULE: ./src/config/inputs/container.ts


function readContainer(c, read) {
    const containerPort = c.port('container-port');
    const env0 = parseEnv(read('env'));
    for (const p of env0.problems)
        c.fail('env', p, 'DATABASE_URL=postgres://… (one KEY=VALUE per line)');
    let dockerRunArgs = [];
    try {
        dockerRunArgs = splitWords(c.raw('docker-run-args'));
        for (const a of dockerRunArgs) {
            const opt = a.split('=')[0];
            if (collector/* MANAGED_RUN_OPTIONS */.BK.includes(opt) || /^-[dPit]{2,4}$/.test(a) || /^-p\d/.test(a)) {
                c.fail('docker-run-args', `must not set ${opt}: the action sets the name, ports, detach mode and labels itself`, '--memory 512m --log-opt max-size=10m');
                break;
            }
            if (a.includes('\n') || a.includes('\0')) {
                c.fail('docker-run-args', 'must not contain newlines or NUL bytes', '--memory 512m');
                break;
            }
        }
    }
    catch (e) {
        c.fail('docker-run-args', `cannot be split into arguments (${e.message})`, `--memory 512m --log-opt "max-size=10m"`);
    }
    const dockerCommand = c.get('docker-command').split(/ +/).filter(Boolean);
    if (dockerCommand.length === 0 ||
        /[^\x20-\x7e]/.test(c.get('docker-command')) ||
        c.get('docker-command').length > 200 ||
        dockerCommand.some((w) => w.includes('..')) ||
        dockerCommand.some((w) => !collector/* COMMAND_WORD */.J1.test(w)) ||
        dockerCommand[0].startsWith('-')) {
        c.fail('docker-command', `must be plain words such as "docker" or "sudo -n docker" (got "${(0,collector/* printable */.g$)(c.get('docker-command'))}")`, 'sudo -n docker');
    }
    const healthPath = c.get('health-path');
    if (!/^\/[\x21-\x7e]{0,2047}$/.test(healthPath))
        c.fail('health-path', `must start with "/" and hold only printable characters without spaces (got "${(0,collector/* printable */.g$)(healthPath)}")`, '/health');
    const healthHost = c.raw('health-host') || undefined;
    if (healthHost && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:\d{1,5})?$/.test(healthHost))
        c.fail('health-host', `must be a host name, optionally with :port (got "${(0,collector/* printable */.g$)(healthHost)}")`, 'api.example.com');
    const healthIntervalMs = c.number('health-interval-seconds', 0.1, 300) * 1000;
    const healthTimeoutMs = c.number('health-timeout-seconds', 1, 3600) * 1000;
    return {
        containerPort,
        env: env0.vars,
        dockerRunArgs,
        dockerCommand,
        healthPath,
        healthHost,
        healthIntervalMs,
        healthTimeoutMs
    };
}
function parseEnv(value) {
    const vars = [];
    const problems = [];
    value.split(/\r?\n/).forEach((line, i) => {
        if (line.trim() === '' || line.trimStart().startsWith('#'))
            return;
        const eq = line.indexOf('=');
        const key = (eq < 0 ? line : line.slice(0, eq)).trim();
        // Never echo the value: it is a secret. The key alone is safe to name.
        if (eq < 0)
            problems.push(`line ${i + 1} has no "=" (each line must be KEY=VALUE)`);
        else if (!collector/* ENV_KEY */.yG.test(key))
            problems.push(`line ${i + 1} has an invalid variable name "${(0,collector/* printable */.g$)(key.slice(0, 40))}"`);
        else if (vars.some((v) => v.key === key))
            problems.push(`line ${i + 1} sets ${key} a second time`);
        else if (line.slice(eq + 1).includes('\0'))
            problems.push(`line ${i + 1} (${key}) contains a NUL byte`);
        else
            vars.push({ key, value: line.slice(eq + 1) });
    });
    return { vars, problems };
}

;// CONCATENATED MODULE: ./src/config/inputs/image.ts


function readApp(c) {
    const app = c.raw('app-name');
    if (!collector/* APP */.uq.test(app))
        c.fail('app-name', app
            ? `"${(0,collector/* printable */.g$)(app)}" may only hold letters, digits, "_", "." and "-", start with a letter or digit, and be at most 63 characters`
            : 'is required', 'backend');
    return app;
}
function readImage(c, command, ctx, env) {
    const imageRaw = c.raw('image');
    const tagRaw = c.raw('tag');
    let image = { registry: '', repository: '' };
    // rollback and status work from what is on the hosts; image (the repository) is only needed to deploy.
    if (!imageRaw) {
        if (command === 'deploy')
            c.fail('image', 'is required', '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
    }
    // status ignores tag (a shared step may pass one); rollback refuses it, as rollback-to is probably meant.
    if (command === 'rollback' && tagRaw)
        c.fail('tag', `only applies to command: deploy${command === 'rollback' ? '; to roll back to a version use rollback-to' : ''}`, command === 'rollback' ? 'rollback-to: v1.4.2' : '(leave empty)');
    if (!imageRaw) {
        // nothing more to read
    }
    else if (command !== 'deploy') {
        const parsed = parseImage(imageRaw);
        if (typeof parsed === 'string')
            c.fail('image', `"${(0,collector/* printable */.g$)(imageRaw)}" ${parsed}`, '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
        else
            image = { registry: parsed.registry, repository: parsed.repository };
    }
    else {
        const parsed = parseImage(imageRaw);
        if (typeof parsed === 'string')
            c.fail('image', `"${(0,collector/* printable */.g$)(imageRaw)}" ${parsed}`, '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
        else {
            image = parsed;
            if (tagRaw && (parsed.tag || parsed.digest)) {
                c.fail('tag', `cannot be combined with an image that already names a ${parsed.digest ? 'digest' : 'tag'} ("${(0,collector/* printable */.g$)(imageRaw)}")`, `${parsed.repository} with tag: v1.2.3, or image: ${parsed.repository}:v1.2.3 without tag`);
            }
            else if (!parsed.tag && !parsed.digest) {
                const tag = tagRaw || ctx.sha;
                if (!tag)
                    c.fail('tag', 'is required when image has no tag and GITHUB_SHA is not set', 'v1.2.3');
                else if (!TAG_RE.test(tag))
                    c.fail('tag', `"${(0,collector/* printable */.g$)(tag)}" is not a valid docker tag (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`, 'v1.2.3');
                else
                    image = { ...parsed, tag };
            }
        }
    }
    const rollbackTo = c.raw('rollback-to') || undefined;
    if (rollbackTo && command !== 'rollback')
        c.fail('rollback-to', `only applies to command: rollback (command is ${command})`, 'v1.4.2');
    else if (rollbackTo && !TAG_RE.test(rollbackTo) && !DIGEST_RE.test(rollbackTo))
        c.fail('rollback-to', `"${(0,collector/* printable */.g$)(rollbackTo)}" is neither an image tag nor a sha256: digest`, 'v1.4.2');
    const registryAuth = c.oneOf('registry-auth', ['ecr', 'ecr-on-host', 'password', 'none']);
    let registryCredentials;
    if (registryAuth === 'password') {
        const username = c.raw('registry-username');
        const password = c.raw('registry-password');
        if (!username)
            c.fail('registry-username', 'is required for registry-auth password', '${{ github.actor }}');
        else if (!/^[\x21-\x7e]{1,255}$/.test(username) || username.includes(':') || username.startsWith('-'))
            c.fail('registry-username', 'must be printable ASCII without spaces or ":", not starting with "-"', 'deploy-bot');
        if (!password)
            c.fail('registry-password', 'is required for registry-auth password', '${{ secrets.REGISTRY_TOKEN }}');
        registryCredentials = { username, password };
    }
    let awsRegion = c.raw('aws-region') || env.AWS_REGION || env.AWS_DEFAULT_REGION || ecrRegion(image.registry);
    if (awsRegion && !/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/.test(awsRegion)) {
        c.fail('aws-region', `"${(0,collector/* printable */.g$)(awsRegion)}" is not an AWS region`, 'us-east-1');
        awsRegion = undefined;
    }
    const mayPull = command === 'deploy' || (command === 'rollback' && Boolean(rollbackTo) && Boolean(image.repository));
    if ((registryAuth === 'ecr' || registryAuth === 'ecr-on-host') && mayPull) {
        if (!awsRegion)
            c.fail('aws-region', `is required for registry-auth ${registryAuth} (it could not be read from the image host or AWS_REGION)`, 'us-east-1');
    }
    if (registryAuth !== 'none' && image.repository && !image.registry)
        c.fail('image', `names no registry host, so registry-auth ${registryAuth} has nothing to log in to`, '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
    return { image, rollbackTo, registryAuth, registryCredentials, awsRegion };
}

;// CONCATENATED MODULE: ./src/config/inputs/rollout.ts

function readRollout(c) {
    const strategy = c.oneOf('rollout', ['parallel', 'rolling', 'canary']);
    const raw = c.raw('max-parallel');
    let maxParallel;
    const m = /^(\d{1,4})(%?)$/.exec(raw);
    if (!raw)
        maxParallel = undefined;
    else if (!m || Number(m[1]) < 1 || (m[2] && Number(m[1]) > 100))
        c.fail('max-parallel', `must be a number of hosts (1 or more) or a percentage from 1% to 100% (got "${(0,collector/* printable */.g$)(raw)}")`, '2 (or 25%)');
    else
        maxParallel = m[2] ? { percent: Number(m[1]) } : { count: Number(m[1]) };
    const batchWaitMs = c.number('batch-wait-seconds', 0, 3600) * 1000;
    const onHostFailure = c.oneOf('on-host-failure', ['rollback-all', 'continue']);
    return { strategy, maxParallel, batchWaitMs, onHostFailure };
}

;// CONCATENATED MODULE: ./src/config/inputs/run.ts

function readRunSettings(c, ctx, app, traffic) {
    const drainMs = c.number('drain-seconds', 0, 3600) * 1000;
    const waitForDrain = c.bool('wait-for-drain');
    const stopTimeoutSeconds = c.number('stop-timeout-seconds', 0, 3600, { integer: true });
    const lockTimeoutSeconds = c.number('lock-timeout-seconds', 0, 21600, { integer: true });
    const uploadArtifacts = c.bool('upload-artifacts');
    const artifactRetentionDays = c.number('artifact-retention-days', 1, 90, { integer: true });
    const artifactName = c.raw('artifact-name') || `bluegreen-${collector/* APP */.uq.test(app) ? app : 'app'}-${ctx.job}-${ctx.runAttempt}`;
    if (collector/* ARTIFACT_FORBIDDEN */.pO.test(artifactName) || artifactName.length > 200)
        c.fail('artifact-name', `must not contain " : < > | * ? \\ / or newlines (got "${(0,collector/* printable */.g$)(artifactName)}")`, 'deploy-logs-production');
    const summary = c.bool('summary');
    const verifyMs = c.number('verify-seconds', 0, 3600) * 1000;
    const keepImages = c.number('keep-images', 0, 1000, { integer: true });
    const statusHistory = c.number('status-history', 0, 200, { integer: true });
    const statusLogLines = c.number('status-log-lines', 0, 1000, { integer: true });
    const smokeTest = readSmokeTest(c, traffic);
    const notifyWebhook = c.raw('notify-webhook') || undefined;
    // A secret (Slack's URL carries its token): the error never repeats the value.
    if (notifyWebhook && !isHttpUrl(notifyWebhook))
        c.fail('notify-webhook', 'must be an http:// or https:// URL (the value is not shown: it is a secret)', '${{ secrets.SLACK_WEBHOOK_URL }}');
    return {
        drainMs,
        waitForDrain,
        stopTimeoutSeconds,
        lockTimeoutSeconds,
        uploadArtifacts,
        artifactName,
        artifactRetentionDays,
        summary,
        verifyMs,
        keepImages,
        statusHistory,
        statusLogLines,
        smokeTest,
        notifyWebhook
    };
}
function isHttpUrl(v) {
    try {
        const u = new URL(v);
        return (u.protocol === 'https:' || u.protocol === 'http:') && Boolean(u.hostname) && !/\s/.test(v);
    }
    catch {
        return false;
    }
}
/** smoke-test, smoke-test-on, smoke-test-timeout-seconds. */
function readSmokeTest(c, traffic) {
    const command = c.raw('smoke-test');
    const on = c.oneOf('smoke-test-on', ['all', 'first']);
    const timeoutMs = c.number('smoke-test-timeout-seconds', 1, 3600) * 1000;
    if (!command)
        return undefined;
    if (command.includes('\0'))
        c.fail('smoke-test', 'must not contain NUL bytes', 'curl -fsS "$BLUEGREEN_CANDIDATE_URL/health"');
    // port-swap starts the candidate only at the switch, on the public port: there is no moment before traffic.
    if (traffic === 'port-swap')
        c.fail('smoke-test', 'needs traffic: nginx or haproxy (with port-swap the candidate only starts when it takes the public port, so it cannot be tested before it gets traffic)', 'curl -fsS "$BLUEGREEN_CANDIDATE_URL/health" with traffic: nginx');
    return { command, on, timeoutMs };
}

// EXTERNAL MODULE: ./node_modules/ssh2/lib/protocol/keyParser.js
var keyParser = __webpack_require__(41789);
;// CONCATENATED MODULE: ./src/transport/ssh/known-hosts.ts
/** known_hosts parsing and host-key matching, as OpenSSH does it (plain, hashed and [host]:port entries). */

const KEY_TYPES = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com|ssh-dss)$/;
function parseKnownHosts(text) {
    const entries = [];
    const problems = [];
    text.split(/\r?\n/).forEach((rawLine, i) => {
        const line = rawLine.trim();
        if (!line || line.startsWith('#'))
            return;
        const fields = line.split(/\s+/);
        let marker;
        if (fields[0] === '@revoked' || fields[0] === '@cert-authority')
            marker = fields.shift();
        const [hosts, keyType, keyB64] = fields;
        if (!hosts || !keyType || !keyB64 || !KEY_TYPES.test(keyType)) {
            problems.push(`line ${i + 1} is not "<host> <key-type> <base64-key>"`);
            return;
        }
        const key = Buffer.from(keyB64, 'base64');
        if (key.length < 20 || key.toString('base64').replace(/=+$/, '') !== keyB64.replace(/=+$/, '')) {
            problems.push(`line ${i + 1} has a key that is not valid base64`);
            return;
        }
        const entry = { patterns: [], keyType, key, marker, line: i + 1 };
        const hashed = /^\|1\|([^|]+)\|([^|]+)$/.exec(hosts);
        if (hashed)
            entry.hashed = { salt: Buffer.from(hashed[1], 'base64'), hash: Buffer.from(hashed[2], 'base64') };
        else
            entry.patterns = hosts.split(',');
        entries.push(entry);
    });
    return { entries, problems };
}
/** The name OpenSSH uses for a host in known_hosts: `host` on port 22, `[host]:port` otherwise. */
function knownHostsName(host, port) {
    return port === 22 ? host : `[${host}]:${port}`;
}
function globMatch(pattern, name) {
    const re = new RegExp(`^${pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`, 'i');
    return re.test(name);
}
function entryMatchesHost(entry, host, port) {
    const name = knownHostsName(host, port);
    if (entry.hashed) {
        const digest = (0,external_node_crypto_.createHmac)('sha1', entry.hashed.salt).update(name).digest();
        return digest.equals(entry.hashed.hash);
    }
    let matched = false;
    for (const p of entry.patterns) {
        if (p.startsWith('!')) {
            if (globMatch(p.slice(1), name))
                return false;
        }
        else if (globMatch(p, name))
            matched = true;
    }
    return matched;
}
function fingerprint(key) {
    return `SHA256:${(0,external_node_crypto_.createHash)('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}
/** The key type is the first length-prefixed string of the key blob. */
function keyTypeOf(key) {
    if (key.length < 4)
        return 'unknown';
    const len = key.readUInt32BE(0);
    return key.subarray(4, 4 + len).toString('latin1');
}
function knownHostsLine(host, port, key) {
    return `${knownHostsName(host, port)} ${keyTypeOf(key)} ${key.toString('base64')}`;
}
/**
 * Host-key algorithms to offer, so the server presents a key type we have a known_hosts entry for
 * (OpenSSH does the same); undefined means "no preference".
 */
function preferredHostKeyAlgorithms(entries, host, port) {
    const types = entries.filter((e) => !e.marker && entryMatchesHost(e, host, port)).map((e) => e.keyType);
    if (types.length === 0)
        return undefined;
    const algos = [];
    for (const t of types) {
        const list = t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t];
        for (const a of list)
            if (!algos.includes(a))
                algos.push(a);
    }
    return algos;
}
/** Decides whether the key a host presented is trusted. */
function verifyHostKey(policy, host, port, key) {
    if (policy.insecureIgnore)
        return { ok: true };
    const presented = fingerprint(key);
    const { entries } = parseKnownHosts(policy.knownHosts);
    const forHost = entries.filter((e) => entryMatchesHost(e, host, port));
    if (forHost.some((e) => e.marker === '@revoked' && e.key.equals(key))) {
        return { ok: false, reason: `the host key ${keyTypeOf(key)} ${presented} is marked @revoked in ssh-known-hosts` };
    }
    if (forHost.some((e) => !e.marker && e.key.equals(key)))
        return { ok: true };
    if (policy.fingerprints.includes(presented))
        return { ok: true };
    const line = knownHostsLine(host, port, key);
    const plain = forHost.filter((e) => !e.marker);
    if (plain.length > 0 || policy.fingerprints.length > 0) {
        return {
            ok: false,
            reason: `HOST KEY MISMATCH: the host presented ${keyTypeOf(key)} ${presented}, which matches neither ssh-known-hosts nor ssh-host-fingerprint. ` +
                `This can mean the instance was replaced, or that someone is intercepting the connection. If you trust this key, put this line in ssh-known-hosts: ${line}`
        };
    }
    return {
        ok: false,
        reason: `ssh-known-hosts has no entry for ${knownHostsName(host, port)}; the host presented ${keyTypeOf(key)} ${presented}. If you trust it, add this line to ssh-known-hosts: ${line}`
    };
}

// EXTERNAL MODULE: ./src/config/inputs/hosts.ts
var inputs_hosts = __webpack_require__(56793);
;// CONCATENATED MODULE: ./src/config/inputs/ssh.ts
/** The SSH section: hosts, key, host keys, connect behaviour and the bastion (and which of it transport: ssm ignores). */





/** Inputs only the ssh transport reads: with transport: ssm a value other than the default is warned about. */
const SSH_ONLY_INPUTS = [
    'ssh-user',
    'ssh-port',
    'ssh-private-key',
    'ssh-passphrase',
    'ssh-known-hosts',
    'ssh-host-fingerprint',
    'ssh-insecure-ignore-host-key',
    'ssh-connect-timeout-seconds',
    'ssh-connect-retries',
    'ssh-address',
    'jump-host',
    'jump-private-key',
    'jump-passphrase',
    'jump-known-hosts'
];
/** transport: ssm has no SSH: these settings are never used. */
const NO_SSH = {
    privateKey: '',
    hostKeys: { knownHosts: '', fingerprints: [], insecureIgnore: false },
    connectTimeoutMs: 20000,
    connectRetries: 0
};
function readSsh(c, transport = 'ssh') {
    const inputWarnings = [];
    const example = transport === 'ssm'
        ? 'tag:Role=backend (or i-0abc12345def67890, i-0def…)'
        : '10.0.1.5, ec2-user@10.0.1.6:2222 (or tag:Role=backend, i-0abc12345def67890)';
    if (transport === 'ssm') {
        // SSM runs commands as root; ssm-run-as runs them as that user (in its home: the ssh transport's state and permissions).
        const runAs = c.get('ssm-run-as');
        if (!collector/* USER */.m3.test(runAs))
            c.fail('ssm-run-as', `is not a valid user name (got "${(0,collector/* printable */.g$)(runAs)}")`, 'ec2-user');
        const { hosts, query, problems } = (0,inputs_hosts/* parseHosts */.t)(c.raw('hosts'), runAs, 22);
        for (const p of problems)
            c.fail('hosts', p, example);
        for (const h of hosts)
            c.fail('hosts', `"${(0,collector/* printable */.g$)(h.label)}" is an address: with transport: ssm name hosts by instance id or tag:KEY=VALUE`, example);
        const inputWarnings = SSH_ONLY_INPUTS.filter((n) => {
            const v = c.raw(n);
            return v !== '' && v !== collector/* DEFAULTS */.zY[n];
        }).map((n) => `input ${n} does not apply with transport: ssm (commands go through AWS Systems Manager, not SSH): ignored`);
        return { hosts: [], hostQuery: query, sshAddress: 'private', ssh: NO_SSH, inputWarnings };
    }
    if (c.get('ssm-run-as') !== collector/* DEFAULTS */.zY['ssm-run-as'])
        inputWarnings.push('input ssm-run-as only applies with transport: ssm: ignored');
    const sshUser = c.get('ssh-user');
    if (!collector/* USER */.m3.test(sshUser))
        c.fail('ssh-user', `is not a valid user name (got "${(0,collector/* printable */.g$)(sshUser)}")`, 'ec2-user');
    const sshPort = c.port('ssh-port');
    const hostsRaw = c.raw('hosts');
    const { hosts, query, problems: hostProblems } = (0,inputs_hosts/* parseHosts */.t)(hostsRaw, sshUser, sshPort);
    for (const p of hostProblems)
        c.fail('hosts', p, example);
    const sshAddress = c.oneOf('ssh-address', ['private', 'public']);
    const normalizedKey = readPrivateKey(c, 'ssh-private-key', 'ssh-passphrase', true) ?? '';
    const passphrase = c.raw('ssh-passphrase') || undefined;
    const knownHosts = readKnownHosts(c, 'ssh-known-hosts');
    const fingerprints = c
        .raw('ssh-host-fingerprint')
        .split(/[,\s]+/)
        .filter(Boolean);
    for (const fp of fingerprints) {
        if (!collector/* FINGERPRINT */.lj.test(fp))
            c.fail('ssh-host-fingerprint', `"${(0,collector/* printable */.g$)(fp)}" is not a SHA256 fingerprint`, 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s');
    }
    const insecureIgnore = c.bool('ssh-insecure-ignore-host-key');
    if (!knownHosts && fingerprints.length === 0 && !insecureIgnore) {
        c.fail('ssh-known-hosts', 'is required to verify the host key (or set ssh-host-fingerprint); run `ssh-keyscan -p 22 <host>` from a trusted machine and store its output in a variable', '${{ vars.EC2_KNOWN_HOSTS }}');
    }
    const connectTimeoutMs = c.number('ssh-connect-timeout-seconds', 1, 600) * 1000;
    const connectRetries = c.number('ssh-connect-retries', 0, 10, { integer: true });
    const jump = readJumpHost(c, sshUser, {
        privateKey: normalizedKey,
        passphrase,
        hostKeys: { knownHosts, fingerprints, insecureIgnore }
    });
    return {
        hosts,
        hostQuery: query,
        sshAddress,
        ssh: {
            privateKey: normalizedKey,
            passphrase,
            hostKeys: { knownHosts, fingerprints, insecureIgnore },
            connectTimeoutMs,
            connectRetries,
            jump
        },
        inputWarnings
    };
}
/** Reads and checks a private key input (and its passphrase input); undefined when missing or unusable. */
function readPrivateKey(c, keyInput, passInput, required) {
    const privateKey = c.raw(keyInput);
    const passphrase = c.raw(passInput) || undefined;
    const example = '${{ secrets.EC2_SSH_KEY }} (the whole "-----BEGIN OPENSSH PRIVATE KEY-----" block)';
    if (!privateKey) {
        if (required)
            c.fail(keyInput, 'is required', example);
        return undefined;
    }
    const normalized = normalizePrivateKey(privateKey);
    const parsed = (0,keyParser.parseKey)(normalized, passphrase);
    if (parsed instanceof Error) {
        if (/encrypted|passphrase/i.test(parsed.message)) {
            if (passphrase)
                c.fail(passInput, `does not decrypt ${keyInput}`, '${{ secrets.EC2_SSH_KEY_PASSPHRASE }}');
            else
                c.fail(passInput, `is required because ${keyInput} is encrypted`, '${{ secrets.EC2_SSH_KEY_PASSPHRASE }}');
        }
        else {
            c.fail(keyInput, `is not a private key ssh can use (${parsed.message})`, example);
        }
        return undefined;
    }
    if (Array.isArray(parsed) ? !parsed[0]?.isPrivateKey() : !parsed.isPrivateKey()) {
        c.fail(keyInput, 'holds a public key, not a private key', '${{ secrets.EC2_SSH_KEY }}');
        return undefined;
    }
    return normalized;
}
function readKnownHosts(c, name) {
    const knownHosts = c.raw(name);
    if (knownHosts) {
        const { problems } = parseKnownHosts(knownHosts);
        for (const p of problems)
            c.fail(name, p, '10.0.1.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… (the output of ssh-keyscan -t ed25519 10.0.1.5)');
    }
    return knownHosts;
}
/** jump-host: a bastion every host connection is tunnelled through; its key and known hosts default to the hosts'. */
function readJumpHost(c, sshUser, fallback) {
    const raw = c.raw('jump-host');
    const example = 'ec2-user@bastion.example.com:22';
    for (const name of ['jump-private-key', 'jump-passphrase', 'jump-known-hosts']) {
        if (!raw && c.raw(name))
            c.fail(name, 'only applies together with jump-host', `jump-host: ${example}`);
    }
    if (!raw)
        return undefined;
    const { hosts, problems, query } = (0,inputs_hosts/* parseHosts */.t)(raw, sshUser, 22);
    if (query)
        problems.push('must be an address (a bastion is not found by instance id or tag)');
    if (problems.length || hosts.length !== 1) {
        c.fail('jump-host', hosts.length > 1 ? 'must name exactly one host' : `${problems[0] ?? 'is invalid'}`, example);
        return undefined;
    }
    const ownKey = readPrivateKey(c, 'jump-private-key', 'jump-passphrase', false);
    const knownHosts = readKnownHosts(c, 'jump-known-hosts');
    return {
        target: { ...hosts[0], label: `jump-host ${hosts[0].label}` },
        privateKey: ownKey ?? fallback.privateKey,
        passphrase: c.raw('jump-private-key') ? c.raw('jump-passphrase') || undefined : fallback.passphrase,
        // Its own known hosts when given; otherwise the hosts' policy (ssh-known-hosts may list the bastion too).
        hostKeys: knownHosts ? { knownHosts, fingerprints: [], insecureIgnore: false } : fallback.hostKeys
    };
}
function normalizePrivateKey(value) {
    let key = value.replace(/\r\n/g, '\n');
    if (!key.includes('\n') && key.includes('\\n'))
        key = key.replace(/\\n/g, '\n');
    return key.trim() + '\n';
}

;// CONCATENATED MODULE: ./src/config/inputs/traffic.ts

function readTraffic(c, app) {
    const traffic = c.oneOf('traffic', ['nginx', 'port-swap', 'haproxy', 'alb', 'caddy']);
    const ports = { blue: c.port('blue-port'), green: c.port('green-port') };
    if (ports.blue === ports.green)
        c.fail('green-port', 'must differ from blue-port', '8082');
    const publicPort = c.port('public-port');
    const nginxUpstreamName = c.raw('nginx-upstream-name') || app;
    // Derived from app-name: only checked when given explicitly or when app-name itself is valid (no echo of its error).
    const appOk = collector/* APP */.uq.test(app);
    if ((appOk || c.raw('nginx-upstream-name')) && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(nginxUpstreamName))
        c.fail('nginx-upstream-name', `"${(0,collector/* printable */.g$)(nginxUpstreamName)}" may only hold letters, digits, "_", "." and "-"`, 'backend');
    const nginxUpstreamFile = c.raw('nginx-upstream-file') || `/etc/nginx/bluegreen/${app}.conf`;
    if ((appOk || c.raw('nginx-upstream-file')) &&
        (!collector/* PATH_SAFE */.A0.test(nginxUpstreamFile) ||
            nginxUpstreamFile.split('/').some((s) => s === '..' || s === '.') ||
            nginxUpstreamFile.endsWith('/'))) {
        c.fail('nginx-upstream-file', `must be an absolute file path without "..", spaces or special characters (got "${(0,collector/* printable */.g$)(nginxUpstreamFile)}")`, '/etc/nginx/bluegreen/backend.conf');
    }
    const nginxReloadCommand = c.get('nginx-reload-command');
    if (nginxReloadCommand.includes('\0') || nginxReloadCommand.length > 1000)
        c.fail('nginx-reload-command', 'must be one shell command line under 1000 characters', collector/* DEFAULTS */.zY['nginx-reload-command']);
    const nginxSwitch = c.oneOf('nginx-switch', ['reload', 'njs']);
    if (nginxSwitch === 'njs' && traffic !== 'nginx')
        c.fail('nginx-switch', `only applies to traffic: nginx (traffic is ${traffic})`, 'reload');
    const nginxHealthUrl = readNginxHealthUrl(c, traffic);
    const haproxySocket = c.get('haproxy-socket');
    if (!collector/* PATH_SAFE */.A0.test(haproxySocket) || haproxySocket.split('/').some((p) => p === '..') || haproxySocket.endsWith('/'))
        c.fail('haproxy-socket', `must be the absolute path of HAProxy's admin socket without "..", spaces or special characters (got "${(0,collector/* printable */.g$)(haproxySocket)}")`, collector/* DEFAULTS */.zY['haproxy-socket']);
    const haproxyStateFile = c.get('haproxy-state-file');
    if (!collector/* PATH_SAFE */.A0.test(haproxyStateFile) ||
        haproxyStateFile.split('/').some((p) => p === '..' || p === '.') ||
        haproxyStateFile.endsWith('/'))
        c.fail('haproxy-state-file', `must be an absolute file path without "..", spaces or special characters (got "${(0,collector/* printable */.g$)(haproxyStateFile)}")`, collector/* DEFAULTS */.zY['haproxy-state-file']);
    const haproxyBackend = c.raw('haproxy-backend') || app;
    if ((appOk || c.raw('haproxy-backend')) && !/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/.test(haproxyBackend))
        c.fail('haproxy-backend', `"${(0,collector/* printable */.g$)(haproxyBackend)}" may only hold letters, digits, "_", ".", ":" and "-" (the name of the backend in haproxy.cfg)`, 'web');
    const { caddyAdminUrl, caddySwitchDir } = readCaddy(c);
    return {
        traffic,
        ports,
        publicPort,
        nginxUpstreamFile,
        nginxUpstreamName,
        nginxReloadCommand,
        nginxSwitch,
        nginxHealthUrl,
        haproxySocket,
        haproxyBackend,
        haproxyStateFile,
        caddyAdminUrl,
        caddySwitchDir
    };
}
/**
 * traffic caddy: the admin API is read on the host (curl to its loopback), so its URL must be http:// on a loopback
 * address; the marker directory is an absolute path the SSH user can write (Caddy reads it).
 */
function readCaddy(c) {
    const raw = c.get('caddy-admin-url');
    let caddyAdminUrl = raw.replace(/\/+$/, '');
    let u;
    try {
        u = new URL(raw);
    }
    catch {
        u = undefined;
    }
    const host = u?.hostname.replace(/^\[|\]$/g, '') ?? '';
    if (!u ||
        u.protocol !== 'http:' ||
        u.username ||
        u.password ||
        u.search ||
        u.hash ||
        (u.pathname !== '/' && u.pathname !== '') ||
        !(host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host))) {
        c.fail('caddy-admin-url', `must be an http:// URL of Caddy's admin API on the host's loopback, without a path (got "${(0,collector/* printable */.g$)(raw)}")`, collector/* DEFAULTS */.zY['caddy-admin-url']);
        caddyAdminUrl = collector/* DEFAULTS */.zY['caddy-admin-url'];
    }
    const caddySwitchDir = c.get('caddy-switch-dir').replace(/\/+$/, '');
    if (!collector/* PATH_SAFE */.A0.test(caddySwitchDir) || caddySwitchDir.split('/').some((p) => p === '..' || p === '.'))
        c.fail('caddy-switch-dir', `must be an absolute directory path without "..", spaces or special characters (got "${(0,collector/* printable */.g$)(caddySwitchDir)}")`, collector/* DEFAULTS */.zY['caddy-switch-dir']);
    return { caddyAdminUrl, caddySwitchDir };
}
/**
 * nginx-health-url: an http:// URL probed through the user's nginx. The request goes to the URL's port on the host's
 * loopback through the SSH connection, so an IP address in it must be a loopback one; a name becomes the Host header.
 */
function readNginxHealthUrl(c, traffic) {
    const raw = c.raw('nginx-health-url');
    if (!raw)
        return undefined;
    const name = 'nginx-health-url';
    const example = 'http://127.0.0.1:80/health';
    if (traffic !== 'nginx')
        return c.fail(name, `only applies to traffic: nginx (traffic is ${traffic})`, example);
    let u;
    try {
        u = new URL(raw);
    }
    catch {
        return c.fail(name, `is not a URL (got "${(0,collector/* printable */.g$)(raw)}")`, example);
    }
    if (u.protocol !== 'http:')
        return c.fail(name, `must be an http:// URL: the probe speaks plain HTTP to nginx on the host (got "${(0,collector/* printable */.g$)(raw)}")`, example);
    if (u.username || u.password || u.hash)
        return c.fail(name, `must not hold a user, password or #fragment (got "${(0,collector/* printable */.g$)(raw)}")`, example);
    if (!/^[\x21-\x7e]+$/.test(raw))
        return c.fail(name, `must hold only printable characters without spaces (got "${(0,collector/* printable */.g$)(raw)}")`, example);
    const hostname = u.hostname.replace(/^\[|\]$/g, '');
    const ip = /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) || hostname.includes(':');
    if (ip && !/^127\./.test(hostname) && hostname !== '::1') {
        return c.fail(name, `is probed on the host's loopback through the SSH connection, so its address must be 127.0.0.1 (or a name, sent as the Host header; got "${(0,collector/* printable */.g$)(u.hostname)}")`, example);
    }
    return { url: raw, host: u.host, port: u.port ? Number(u.port) : 80, path: `${u.pathname}${u.search}` };
}

;// CONCATENATED MODULE: ./src/config/inputs.ts











function readConfig(read, ctx, env = process.env) {
    const c = new collector/* Collector */.gR(read);
    const command = c.oneOf('command', ['deploy', 'rollback', 'status']);
    const transport = c.oneOf('transport', ['ssh', 'ssm']);
    const hostsSection = readSsh(c, transport);
    const rollout = readRollout(c);
    const app = readApp(c);
    const image = readImage(c, command, ctx, env);
    const container = readContainer(c, read);
    const traffic = readTraffic(c, app);
    const alb = readAlb(c, traffic.traffic);
    // Hosts found by instance id or tag are counted in the run: the listener-mode rules apply to any count then.
    checkAlbFits(c, alb.alb, image.awsRegion, rollout, hostsSection.hosts.length + (hostsSection.hostQuery ? 2 : 0));
    const run = readRunSettings(c, ctx, app, traffic.traffic);
    // Instance ids and tags are looked up with EC2, and SSM is regional: both need the region.
    if (!image.awsRegion && (transport === 'ssm' || hostsSection.hostQuery)) {
        c.fail('aws-region', `is required ${transport === 'ssm' ? 'for transport: ssm' : 'to find hosts by instance id or tag'} (it could not be read from the image host or AWS_REGION)`, 'us-east-1');
    }
    if (transport === 'ssm' && run.smokeTest)
        c.fail('smoke-test', 'needs transport: ssh (it reaches the candidate through a forwarded port, which SSM Run Command cannot give)', '(leave empty with transport: ssm)');
    if (c.problems.length)
        throw new collector/* InputError */.dz(c.problems);
    return { command, transport, ...hostsSection, rollout, app, ...image, ...container, ...traffic, ...alb, ...run };
}

;// CONCATENATED MODULE: ./src/log/secrets.ts

/** Secret values: masked in the Actions log and scrubbed from every file and report we write. */
class Secrets {
    values = [];
    add(value) {
        if (!value)
            return;
        const parts = [value, ...value.split(/\r?\n/).map((l) => l.trim())];
        for (const v of parts) {
            // Too short or too ordinary to be a secret: masking "true" or "8080" would only garble reports.
            if (v.length < 3 ||
                /^(true|false|yes|no|on|off|null)$/i.test(v) ||
                /^\d{1,5}$/.test(v) ||
                this.values.includes(v))
                continue;
            setSecret(v);
            this.values.push(v);
        }
        this.values.sort((a, b) => b.length - a.length);
    }
    /** Redacts every string inside a JSON-able value (so the JSON stays valid). */
    redactDeep(value) {
        return JSON.parse(JSON.stringify(value), (_k, v) => (typeof v === 'string' ? this.redact(v) : v));
    }
    redact(text) {
        let out = text;
        for (const v of this.values)
            if (out.includes(v))
                out = out.split(v).join('***');
        return out;
    }
}

;// CONCATENATED MODULE: ./src/hosts/resolve.ts
class HostResolveError extends Error {
    constructor(message) {
        super(message);
        this.name = 'HostResolveError';
    }
}
/** The EC2 filters of the tag selectors, as DescribeInstances gets them. */
function tagFilters(query, states = ['running']) {
    return [
        ...query.tags.map((t) => ({ Name: `tag:${t.key}`, Values: [t.value] })),
        ...(states.length ? [{ Name: 'instance-state-name', Values: states }] : [])
    ];
}
const describeFilters = (f) => f.map((x) => `${x.Name}=${x.Values.join('|')}`).join(', ');
async function describeAll(describe, input) {
    const out = [];
    let token;
    do {
        const page = await describe({ ...input, NextToken: token });
        for (const r of page.Reservations ?? [])
            out.push(...(r.Instances ?? []));
        token = page.NextToken;
    } while (token);
    return out;
}
const nameOf = (i) => i.Tags?.find((t) => t.Key === 'Name')?.Value || undefined;
/** The label of an instance: `i-… (Name)`. */
function instanceLabel(id, name) {
    return name ? `${id} (${name.replace(/[(),\n]/g, ' ').trim()})` : id;
}
/** The instances of the query as targets; throws HostResolveError saying what was looked for when something is missing. */
async function resolveQuery(query, cfg, describe) {
    const region = cfg.awsRegion ?? '?';
    const found = [];
    if (query.instanceIds.length) {
        const byId = await describeAll(describe, { InstanceIds: query.instanceIds }).catch((e) => {
            throw explainEc2Error(e, region, `InstanceIds ${query.instanceIds.join(', ')}`);
        });
        const problems = [];
        for (const id of query.instanceIds) {
            const i = byId.find((x) => x.InstanceId === id);
            if (!i)
                problems.push(`${id} was not found in ${region}`);
            else if (i.State?.Name !== 'running')
                problems.push(`${instanceLabel(id, nameOf(i))} is ${i.State?.Name ?? 'not running'}`);
            else
                found.push(i);
        }
        if (problems.length)
            throw new HostResolveError(`hosts: ${problems.join('; ')} (DescribeInstances in ${region}); nothing was touched`);
    }
    if (query.tags.length) {
        const filters = tagFilters(query);
        const matched = await describeAll(describe, { Filters: filters }).catch((e) => {
            throw explainEc2Error(e, region, describeFilters(filters));
        });
        if (!matched.length) {
            // Say why: instances with these tags that are not running, if any.
            const any = await describeAll(describe, { Filters: tagFilters(query, []) }).catch(() => []);
            const others = any.length
                ? `; ${any.length} instance(s) with these tags are not running: ${any.map((i) => `${instanceLabel(i.InstanceId ?? '?', nameOf(i))} ${i.State?.Name ?? '?'}`).join(', ')}`
                : '';
            throw new HostResolveError(`hosts: no running instance matches ${query.tags.map((t) => `tag:${t.key}=${t.value}`).join(' AND ')} in ${region} (DescribeInstances filters: ${describeFilters(filters)})${others}; nothing was touched`);
        }
        matched.sort((a, b) => (a.InstanceId ?? '').localeCompare(b.InstanceId ?? ''));
        for (const i of matched)
            if (!found.some((f) => f.InstanceId === i.InstanceId))
                found.push(i);
    }
    return found.map((i) => toTarget(i, query, cfg));
}
function toTarget(i, query, cfg) {
    const id = i.InstanceId;
    const name = nameOf(i);
    const label = instanceLabel(id, name);
    if (cfg.transport === 'ssm')
        return { label, host: id, port: 0, user: query.user, instanceId: id, name };
    const address = cfg.sshAddress === 'public' ? i.PublicIpAddress : i.PrivateIpAddress;
    if (!address)
        throw new HostResolveError(`hosts: ${label} has no ${cfg.sshAddress} IPv4 address (ssh-address: ${cfg.sshAddress}${cfg.sshAddress === 'public' ? '; use ssh-address: private with a runner in the VPC' : ''}); nothing was touched`);
    return { label, host: address, port: query.port, user: query.user, instanceId: id, name };
}
function explainEc2Error(e, region, what) {
    const raw = `${e.name ?? 'Error'}: ${e.message}`;
    let why = 'EC2 DescribeInstances failed';
    if (/CredentialsProviderError|Could not load credentials|AuthFailure|InvalidClientTokenId|ExpiredToken/i.test(raw))
        why =
            'no usable AWS credentials on the runner to look the hosts up: add aws-actions/configure-aws-credentials before this step';
    else if (/UnauthorizedOperation|AccessDenied/i.test(raw))
        why = "the job's role may not look the hosts up: it needs ec2:DescribeInstances";
    else if (/InvalidInstanceID/i.test(raw))
        why = `an instance id is not known in ${region}`;
    return new HostResolveError(`hosts: ${why} (looked for ${what} in ${region}; ${raw}); nothing was touched`);
}
/** The EC2 client, loaded lazily (most of the bundle). */
async function ec2Describe(region) {
    const m = await Promise.all(/* import() */[__webpack_require__.e(861), __webpack_require__.e(193)]).then(__webpack_require__.t.bind(__webpack_require__, 35193, 19));
    const client = new m.EC2Client({ region, maxAttempts: 4 });
    return { describe: (input) => client.send(new m.DescribeInstancesCommand(input)), destroy: () => client.destroy() };
}
/** The run's hosts: those named by address, then the instances the query found (each once). */
async function resolveHosts(cfg, describe) {
    if (!cfg.hostQuery)
        return cfg;
    const own = describe ? undefined : await ec2Describe(cfg.awsRegion);
    try {
        const found = await resolveQuery(cfg.hostQuery, cfg, describe ?? own.describe);
        const hosts = [...cfg.hosts];
        for (const t of found)
            if (!hosts.some((h) => h.host === t.host && h.port === t.port))
                hosts.push(t);
        return { ...cfg, hosts };
    }
    finally {
        own?.destroy();
    }
}

// EXTERNAL MODULE: ./src/transport/ssh/preconnect.ts
var preconnect = __webpack_require__(64039);
;// CONCATENATED MODULE: ./src/transport/ssh/errors.ts
class ConnectError extends Error {
    kind;
    constructor(message, kind) {
        super(message);
        this.kind = kind;
        this.name = 'ConnectError';
    }
}
/** A connected host's SSH connection is gone: every call in flight or later rejects with this. */
class ConnectionLostError extends Error {
    where;
    reason;
    constructor(
    /** "ec2-user@10.0.1.5:22" */
    where, 
    /** What happened: "ECONNRESET", "no answer to SSH keepalives for 20 s", … */
    reason, options) {
        super(`the SSH connection to ${where} was lost (${reason})`, options);
        this.where = where;
        this.reason = reason;
        this.name = 'ConnectionLostError';
    }
}
const whereOf = (t) => `${t.user}@${t.host}:${t.port}`;
function classify(err, target, timeoutMs) {
    const where = whereOf(target);
    if (err instanceof ConnectError)
        return err;
    if (err.code === 'ECONNREFUSED')
        return new ConnectError(`connection to ${where} was refused: is sshd running and the port (${target.port}) right, and does the security group allow it?`, 'refused');
    if (err.code === 'ENETUNREACH' || err.code === 'EHOSTUNREACH')
        return new ConnectError(`${where} is unreachable from the runner (${err.code}): check the address, the VPC routing, or use a bastion`, 'network');
    if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN')
        return new ConnectError(`host name ${target.host} could not be resolved (${err.code})`, 'dns');
    if (err.code === 'ETIMEDOUT' || /Timed out while waiting for handshake/i.test(err.message)) {
        return new ConnectError(`no SSH handshake with ${where} within ${timeoutMs / 1000} s: the host is down or a firewall/security group drops the traffic`, 'timeout');
    }
    if (err.level === 'client-authentication' || /authentication methods failed/i.test(err.message)) {
        return new ConnectError(`${where} refused the key for user "${target.user}": check ssh-user and that the public key of ssh-private-key is in ~${target.user}/.ssh/authorized_keys`, 'auth');
    }
    // Thrown by ssh2 before any byte is sent: retrying cannot help.
    if (/Cannot parse privateKey/i.test(err.message))
        return new ConnectError(`the private key for ${where} cannot be used: ${err.message} (check the key text and its passphrase)`, 'auth');
    return new ConnectError(`SSH connection to ${where} failed: ${err.message}`, 'network');
}
function cancelledError(target, signal) {
    const reason = typeof signal?.reason === 'string' ? `: ${signal.reason}` : '';
    return new ConnectError(`cancelled while connecting to ${whereOf(target)}${reason}`, 'cancelled');
}

// EXTERNAL MODULE: ./node_modules/ssh2/lib/client.js
var client = __webpack_require__(66297);
var client_default = /*#__PURE__*/__webpack_require__.n(client);
;// CONCATENATED MODULE: ./src/transport/ssh/ssh2-internals.ts
/** Opens a session channel (one round trip): ssh2's openChannel(…, 'session'), which it does not export. */
function openSession(client) {
    return new Promise((resolve, reject) => {
        const c = client;
        const wrapper = Object.assign((err, ch) => (err ? reject(err) : resolve(ch)), {
            type: 'session'
        });
        const local = c._chanMgr.add(wrapper);
        if (local === -1)
            return reject(new Error('No free channels available'));
        // ssh2's own window and packet size for channels it opens (MAX_WINDOW, PACKET_SIZE)
        c._protocol.session(local, 2 * 1024 * 1024, 32 * 1024);
    });
}
/** The exec request on an open session channel (ssh2's reqExec); done is called with its reply. */
function sendExec(client, ch, command, done) {
    const raw = ch;
    if (raw.outgoing.state !== 'open')
        return done(new Error('Channel is not open'));
    raw._callbacks.push((failed) => done(failed ? new Error('Unable to exec') : undefined));
    raw.subtype = 'exec';
    raw.allowHalfOpen = true;
    client._protocol.exec(raw.outgoing.id, command, true);
}
/**
 * Public-key auth in one round trip: ssh2 first asks whether the key would be accepted (USERAUTH_PK_OK) and signs
 * only then; the signed request alone is just as valid (RFC 4252 §7) and saves the query. A refused key still
 * fails the same way (USERAUTH_FAILURE).
 */
function signFirst(client, onSent) {
    const proto = client._protocol;
    const authPK = proto?.authPK;
    if (!proto || typeof authPK !== 'function')
        return;
    proto.authPK = (user, key, keyAlgo, sign) => {
        const k = key;
        if (sign || typeof k?.sign !== 'function')
            return authPK.call(proto, user, key, keyAlgo, sign);
        const hash = keyAlgo === 'rsa-sha2-256'
            ? 'sha256'
            : keyAlgo === 'rsa-sha2-512'
                ? 'sha512'
                : keyAlgo === 'ssh-rsa'
                    ? 'sha1'
                    : undefined;
        authPK.call(proto, user, key, keyAlgo, (data, cb) => {
            const sig = k.sign(data, hash);
            // cannot sign here: the query round trip it is then
            if (sig instanceof Error)
                return authPK.call(proto, user, key, keyAlgo);
            cb(sig);
        });
        // A key with one signature algorithm (ed25519, ecdsa) is accepted or refused with this request: channel opens
        // sent right behind it are handled once it succeeded (sshd reads a connection's messages in order), which saves
        // the first command a round trip. An RSA key may be retried with another algorithm: nothing is sent ahead then.
        if (onSent && k.type !== 'ssh-rsa') {
            const once = onSent;
            onSent = undefined;
            once();
        }
    };
}

;// CONCATENATED MODULE: ./src/transport/ssh/session-pool.ts

/**
 * Spare session channels kept open per connection (see SessionPool): the lock, detect and login+pull go out at once
 * on a fresh connection. sshd allows 10 sessions per connection by default.
 */
const POOL_SIZE = 3;
/**
 * Session channels opened ahead of need (POOL_SIZE, from the moment the connection is ready): a command takes one
 * and another is opened in the background. A host that allows fewer sessions (sshd MaxSessions) refuses the
 * spare's open: then an idle spare is given up for the command that needs it, and the pool stops refilling.
 */
class SessionPool {
    client;
    poolSize;
    mayOpen;
    spares = [];
    constructor(client, poolSize, 
    /** Whether spares may be opened now: the connection is ready (or authenticating, when fill is told so). */
    mayOpen) {
        this.client = client;
        this.poolSize = poolSize;
        this.mayOpen = mayOpen;
    }
    fill(authenticating = false) {
        while (this.mayOpen(authenticating) && this.spares.length < this.poolSize) {
            const p = openSession(this.client);
            p.catch(() => {
                const i = this.spares.indexOf(p);
                if (i >= 0)
                    this.spares.splice(i, 1);
                this.poolSize = 0;
            });
            this.spares.push(p);
        }
    }
    async take() {
        const spare = this.spares.shift();
        this.fill();
        if (spare) {
            const ch = await spare.catch(() => undefined);
            if (ch)
                return ch;
        }
        try {
            return await openSession(this.client);
        }
        catch (e) {
            // Over the host's session limit: an idle spare makes room.
            const idle = this.spares.shift();
            if (!idle)
                throw e;
            this.poolSize = 0;
            (await idle.catch(() => undefined))?.close();
            return openSession(this.client);
        }
    }
}

;// CONCATENATED MODULE: ./src/transport/ssh/link.ts
// the client's own file: ssh2's index loads much that is never used (src/types/ssh2-parts.d.ts)





/**
 * Keepalive: a peer that goes silent (a partition, a VM switched off: nothing is ever closed, TCP retransmits for
 * many minutes) is declared lost after KEEPALIVE_INTERVAL_MS × (KEEPALIVE_COUNT_MAX + 1) = 20 s without an answer.
 * ssh2 pings every interval whatever the traffic, so busy connections are checked too.
 */
const KEEPALIVE_INTERVAL_MS = 5000;
const KEEPALIVE_COUNT_MAX = 3;
const SILENT_AFTER_S = (KEEPALIVE_INTERVAL_MS * (KEEPALIVE_COUNT_MAX + 1)) / 1000;
/** How long close() waits for the server to answer the disconnect before dropping the socket. */
const CLOSE_GRACE_MS = 1000;
/** Why a connected connection ended, in a few words for ConnectionLostError. */
function reasonOf(err) {
    if (typeof err === 'string')
        return err;
    if (!err)
        return 'closed by the remote side';
    if (err.level === 'client-timeout' && /keepalive/i.test(err.message))
        return `no answer to SSH keepalives for ${SILENT_AFTER_S} s`;
    return err.code ?? err.message;
}
/**
 * One ssh2 client over one stream (a TCP socket, or a direct-tcpip channel of the bastion's connection), with
 * its whole lifecycle: connecting (abortable), ready, then lost or closed, each exactly once.
 */
class Link {
    target;
    where;
    client = new (client_default())();
    sock;
    state = 'connecting';
    ended;
    endedListeners = new Set();
    /** Channels to settle if the connection ends while they are open. */
    channels = new Set();
    /** Aborts the connect phase: the caller's signal, or close() while connecting. */
    stop = new AbortController();
    connectFailed;
    closeTimer;
    /** Spare session channels (see SessionPool). */
    sessions;
    constructor(target, 
    /** Keep spare session channels (a host that runs commands; not a bastion, which only forwards). */
    pool = true) {
        this.target = target;
        this.where = whereOf(target);
        this.sessions = new SessionPool(this.client, pool ? POOL_SIZE : 0, (authenticating) => this.state === 'ready' || (authenticating && this.state === 'connecting'));
        // Persistent, for the client's whole life (see connection.ts's file comment).
        this.client.on('error', (e) => {
            if (this.state === 'connecting')
                this.connectFailed?.(e);
            else
                this.lose(e);
        });
        const onEnd = () => {
            if (this.state === 'connecting')
                this.connectFailed?.(new Error('the server closed the connection before the SSH handshake completed'));
            else
                this.lose();
        };
        this.client.on('end', onEnd);
        this.client.on('close', () => {
            clearTimeout(this.closeTimer);
            onEnd();
        });
    }
    isConnected() {
        return this.state === 'ready';
    }
    /** Ended, or will never connect: a new Link is needed. */
    isGone() {
        return this.state === 'lost' || this.state === 'closed';
    }
    /** Calls fn once when the connection (once ready) is lost or closed; returns an unsubscribe function. */
    onEnded(fn) {
        const ended = this.ended;
        if (ended) {
            queueMicrotask(() => fn(ended));
            return () => undefined;
        }
        this.endedListeners.add(fn);
        return () => this.endedListeners.delete(fn);
    }
    async connect(openStream, auth, timeoutMs, signal) {
        const abort = () => this.stop.abort();
        if (signal?.aborted)
            abort();
        else
            signal?.addEventListener('abort', abort, { once: true });
        try {
            if (this.stop.signal.aborted)
                throw cancelledError(this.target, signal);
            this.sock = await openStream(this.stop.signal);
            if (this.stop.signal.aborted)
                throw cancelledError(this.target, signal);
            await this.handshake(this.sock, auth, timeoutMs);
        }
        catch (e) {
            this.state = 'closed';
            this.endedListeners.clear();
            this.teardown();
            if (this.stop.signal.aborted)
                throw cancelledError(this.target, signal);
            throw classify(e, this.target, timeoutMs);
        }
        finally {
            signal?.removeEventListener('abort', abort);
        }
    }
    /** The SSH handshake over an open stream: strict host-key check, then public-key auth. */
    handshake(sock, auth, timeoutMs) {
        const target = this.target;
        let hostKeyProblem;
        const { entries } = parseKnownHosts(auth.hostKeys.knownHosts);
        const serverHostKey = auth.hostKeys.insecureIgnore
            ? undefined
            : preferredHostKeyAlgorithms(entries, target.host, target.port);
        const config = {
            sock: sock,
            host: target.host,
            port: target.port,
            username: target.user,
            // publickey only: skips the "none" probe round trip
            authHandler: ['publickey'],
            privateKey: auth.privateKey,
            passphrase: auth.passphrase,
            readyTimeout: timeoutMs,
            keepaliveInterval: KEEPALIVE_INTERVAL_MS,
            keepaliveCountMax: KEEPALIVE_COUNT_MAX,
            algorithms: serverHostKey ? { serverHostKey: serverHostKey } : undefined,
            hostVerifier: (key) => {
                const verdict = verifyHostKey(auth.hostKeys, target.host, target.port, key);
                if (!verdict.ok)
                    hostKeyProblem = verdict.reason;
                return verdict.ok;
            }
        };
        return new Promise((resolve, reject) => {
            const onAbort = () => this.connectFailed?.(cancelledError(target));
            const settle = () => {
                this.connectFailed = undefined;
                this.stop.signal.removeEventListener('abort', onAbort);
            };
            this.connectFailed = (e) => {
                settle();
                reject(hostKeyProblem ? new ConnectError(hostKeyProblem, 'host-key') : e);
            };
            this.stop.signal.addEventListener('abort', onAbort, { once: true });
            this.client.once('ready', () => {
                if (this.state !== 'connecting' || !this.connectFailed)
                    return;
                settle();
                this.state = 'ready';
                this.sessions.fill();
                resolve();
            });
            try {
                this.client.connect(config);
                // the signed auth request is sent: the first session channels go right behind it (see signFirst)
                signFirst(this.client, () => this.sessions.fill(true));
            }
            catch (e) {
                this.connectFailed?.(e);
            }
        });
    }
    /** The connection is gone (reset, silent, closed by the peer, its bastion gone): settle everything now. */
    lose(cause, parent) {
        if (this.state !== 'ready')
            return;
        this.state = 'lost';
        this.finish(new ConnectionLostError(this.where, reasonOf(cause), { cause: parent ?? cause }));
        this.teardown();
    }
    /** Ends the connection from our side; abandons it if it is still connecting. */
    close() {
        if (this.state === 'connecting') {
            this.stop.abort();
            return;
        }
        if (this.state !== 'ready')
            return;
        this.state = 'closed';
        this.finish(new ConnectionLostError(this.where, 'closed by this run'));
        this.client.end();
        // A silent peer never answers the disconnect: don't let its socket (and ssh2's keepalive timer) keep node alive.
        this.closeTimer = setTimeout(() => this.teardown(), CLOSE_GRACE_MS);
    }
    finish(e) {
        this.ended = e;
        const listeners = [...this.endedListeners];
        this.endedListeners.clear();
        for (const fn of listeners)
            fn(e);
        // ssh2 closes its channels when the socket closes, but only emits 'close' on a channel that was read to its
        // end, and never if the socket under it does not close (a tunnel whose bastion is silent): close the rest.
        setImmediate(() => {
            for (const ch of this.channels)
                ch.emit('close');
            this.channels.clear();
        });
    }
    teardown() {
        clearTimeout(this.closeTimer);
        this.client.destroy();
        this.sock?.destroy();
    }
    /** An error for an operation that the connection's end interrupted (or that started after it). */
    lostBecause(reason) {
        if (!this.ended)
            this.lose(reason);
        return this.ended ?? new ConnectionLostError(this.where, reason);
    }
    /**
     * Runs start(ok, fail) and settles with what it reports, unless the connection ends first: then rejects with
     * the ConnectionLostError at once, and a value that still arrives is handed to discard.
     */
    guard(start, discard) {
        if (this.ended)
            return Promise.reject(this.ended);
        if (this.state !== 'ready')
            return Promise.reject(new ConnectionLostError(this.where, 'not connected'));
        return new Promise((resolve, reject) => {
            let done = false;
            const off = this.onEnded((e) => {
                if (done)
                    return;
                done = true;
                reject(e);
            });
            const ok = (v) => {
                if (done)
                    return discard?.(v);
                done = true;
                off();
                resolve(v);
            };
            const fail = (e) => {
                if (done)
                    return;
                done = true;
                off();
                reject(this.ended ?? e);
            };
            try {
                start(ok, fail);
            }
            catch (e) {
                fail(e);
            }
        });
    }
    track(ch) {
        // 'close' at most once, whether ssh2 or finish() emits it first.
        const emit = ch.emit.bind(ch);
        let closed = false;
        ch.emit = ((event, ...args) => {
            if (event === 'close') {
                if (closed)
                    return false;
                closed = true;
                this.channels.delete(ch);
            }
            return emit(event, ...args);
        });
        this.channels.add(ch);
        return ch;
    }
    /**
     * Starts a command. setup runs synchronously right after the exec request is sent (before its reply): the exit
     * status (a plain event, not buffered like stream data) can arrive in the same TCP read as the exec reply, and
     * stdin written there follows the request at once instead of a round trip later (sshd handles a channel's
     * messages in order, so the data reaches the command). The session channel comes from the pool (opened ahead), so
     * a command costs one round trip instead of two (channel open, then exec).
     */
    exec(command, setup, onReply) {
        return this.guard((ok, fail) => {
            this.sessions.take().then((ch) => {
                if (this.ended) {
                    ch.close();
                    return fail(this.ended);
                }
                this.track(ch);
                sendExec(this.client, ch, command, (err) => {
                    if (err) {
                        ch.close();
                        return fail(err);
                    }
                    onReply?.(ch);
                    ok(ch);
                });
                setup?.(ch);
            }, fail);
        }, (ch) => ch.close());
    }
    forwardOut(host, port) {
        return this.guard((ok, fail) => this.client.forwardOut('127.0.0.1', 0, host, port, (err, ch) => (err ? fail(err) : ok(this.track(ch)))), (ch) => ch.close());
    }
    forwardStreamLocal(socketPath) {
        return this.guard((ok, fail) => this.client.openssh_forwardOutStreamLocal(socketPath, (err, ch) => (err ? fail(err) : ok(this.track(ch)))), (ch) => ch.close());
    }
}

;// CONCATENATED MODULE: ./src/transport/ssh/socket.ts
/** The TCP connection to a host or to the bastion (the entry point's early socket when there is one). */



/**
 * The TCP connection, with Nagle's algorithm off: SSH exchanges many small packets, and Nagle plus
 * delayed ACKs otherwise adds ~40 ms to every round trip (measured: 5 commands 409 ms → 22 ms on loopback).
 */
function openSocket(target, timeoutMs, stop) {
    return new Promise((resolve, reject) => {
        if (stop.aborted)
            return reject(cancelledError(target));
        // The entry point may have opened it already (preconnect.ts): connected by now, or still connecting.
        const early = (0,preconnect/* takeEarlySocket */.IN)(target.host, target.port);
        const sock = early ?? external_node_net_default().connect({ host: target.host, port: target.port, noDelay: true });
        const done = () => {
            clearTimeout(timer);
            stop.removeEventListener('abort', onAbort);
            sock.removeListener('error', onError);
        };
        const onError = (e) => {
            done();
            reject(e);
        };
        const onAbort = () => {
            done();
            sock.destroy();
            reject(cancelledError(target));
        };
        const timer = setTimeout(() => {
            done();
            sock.destroy();
            reject(Object.assign(new Error('Timed out while waiting for handshake'), { code: 'ETIMEDOUT' }));
        }, timeoutMs);
        stop.addEventListener('abort', onAbort, { once: true });
        const connected = () => {
            done();
            sock.setKeepAlive(true, 10_000);
            resolve(sock);
        };
        sock.once('error', onError);
        if (early && !early.connecting)
            connected();
        else
            sock.once('connect', connected);
    });
}

;// CONCATENATED MODULE: ./src/transport/ssh/bastion.ts



/**
 * One SSH connection to the bastion, shared by every host of the run (reference counted: closed with the last
 * host connection, opened again if it dropped). Hosts are reached with direct-tcpip channels, so neither the key
 * nor an agent ever reaches the bastion.
 *
 * Everything that decides which session to use runs synchronously, so concurrent callers after a drop share one
 * new session, and a session released while connecting is aborted rather than left open.
 */
class Bastion {
    jump;
    timeoutMs;
    current;
    refs = 0;
    constructor(jump, timeoutMs) {
        this.jump = jump;
        this.timeoutMs = timeoutMs;
    }
    acquire() {
        this.refs++;
    }
    release() {
        if (this.refs === 0)
            return;
        if (--this.refs > 0)
            return;
        const cur = this.current;
        this.current = undefined;
        cur?.link.close();
    }
    session() {
        const cur = this.current;
        if (cur && !cur.link.isGone())
            return cur.ready; // connected, or connecting: share it
        const t = this.jump.target;
        const link = new Link(t, false);
        const ready = link
            .connect((stop) => openSocket(t, this.timeoutMs, stop), this.jump, this.timeoutMs)
            .then(() => link, (e) => {
            if (this.current?.link === link)
                this.current = undefined;
            throw new ConnectError(`jump-host ${link.where}: ${e.message}${e.kind === 'host-key' ? " (set jump-known-hosts to the bastion's key)" : ''}`, e.kind);
        });
        ready.catch(() => undefined); // nobody may be waiting any more (released while connecting)
        link.onEnded(() => {
            if (this.current?.link === link)
                this.current = undefined;
        });
        this.current = { link, ready };
        return ready;
    }
    /** A direct-tcpip stream to the host through the bastion; stop abandons the wait (the shared session goes on). */
    async tunnel(target, stop) {
        const via = await untilAborted(this.session(), stop, target);
        const where = `${target.host}:${target.port}`;
        const name = `jump-host ${this.jump.target.host}`;
        const stream = await new Promise((resolve, reject) => {
            let done = false;
            const finish = (err, ch) => {
                if (done)
                    return;
                done = true;
                clearTimeout(timer);
                stop.removeEventListener('abort', onAbort);
                if (err)
                    reject(err);
                else
                    resolve(ch);
            };
            const onAbort = () => finish(cancelledError(target));
            stop.addEventListener('abort', onAbort, { once: true });
            const timer = setTimeout(() => {
                finish(new ConnectError(`${name} could not reach ${where} within ${this.timeoutMs / 1000} s: the host is down or a security group between the bastion and the host drops the traffic`, 'timeout'));
            }, this.timeoutMs);
            via.forwardOut(target.host, target.port).then((ch) => {
                if (done)
                    ch.close();
                else
                    finish(undefined, ch);
            }, (err) => {
                if (err instanceof ConnectionLostError)
                    return finish(new ConnectError(`${name}: ${err.message}`, 'network'));
                const reason = err.message.replace(/^\(SSH\) Channel open failure: ?/i, '');
                if (/refused/i.test(reason))
                    finish(new ConnectError(`${name} reached ${where} but the connection was refused: is sshd running there, and is the port (${target.port}) right?`, 'refused'));
                else if (/prohibited/i.test(reason))
                    finish(new ConnectError(`${name} does not allow TCP forwarding to ${where} (AllowTcpForwarding/PermitOpen in its sshd_config): ${reason}`, 'auth'));
                else if (/timed out/i.test(reason))
                    finish(new ConnectError(`${name} could not reach ${where} (timed out): the host is down or a security group drops the traffic`, 'timeout'));
                else if (/resolve|not known|name/i.test(reason))
                    finish(new ConnectError(`${name} could not resolve ${target.host}: ${reason}`, 'dns'));
                else
                    finish(new ConnectError(`${name} could not reach ${where}: ${reason || 'channel open failed'}`, 'network'));
            });
        });
        return { stream, via };
    }
}
/** p, or a cancellation error as soon as signal aborts (p goes on; its outcome is then ignored). */
function untilAborted(p, signal, target) {
    if (signal.aborted)
        return Promise.reject(cancelledError(target));
    return new Promise((resolve, reject) => {
        const onAbort = () => reject(cancelledError(target));
        signal.addEventListener('abort', onAbort, { once: true });
        p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
}
const bastions = new WeakMap();
function bastionFor(jump, timeoutMs) {
    let b = bastions.get(jump);
    if (!b)
        bastions.set(jump, (b = new Bastion(jump, timeoutMs)));
    return b;
}

;// CONCATENATED MODULE: ./src/transport/ssh/host.ts


class SshHost {
    link;
    target;
    constructor(link) {
        this.link = link;
        this.target = link.target;
    }
    async run(body, args = [], opts = {}) {
        const out = { stdout: [], stderr: [] };
        const partial = { stdout: '', stderr: '' };
        const feed = (stream) => (chunk) => {
            const text = chunk.toString('utf8');
            out[stream].push(text);
            if (!opts.onLine)
                return;
            partial[stream] += text;
            let nl;
            while ((nl = partial[stream].indexOf('\n')) >= 0) {
                opts.onLine(partial[stream].slice(0, nl), stream);
                partial[stream] = partial[stream].slice(nl + 1);
            }
        };
        let exit;
        const exited = () => exit !== undefined && (exit.code !== null || exit.signal !== null);
        let closed = false;
        let onClosed;
        await this.link.exec(shInvocation(body, args), (ch) => {
            ch.on('data', feed('stdout'));
            ch.stderr.on('data', feed('stderr'));
            ch.on('exit', (code, signal) => {
                exit = { code: code ?? null, signal: signal ?? null };
            });
            ch.on('close', () => {
                closed = true;
                onClosed?.();
            });
            // Data waits for sshd's window (opened only once it started the command: a round trip); EOF alone does not.
            if (opts.stdin)
                ch.write(opts.stdin);
            ch.end();
        });
        const result = () => {
            if (opts.onLine) {
                if (partial.stdout)
                    opts.onLine(partial.stdout, 'stdout');
                if (partial.stderr)
                    opts.onLine(partial.stderr, 'stderr');
            }
            return { code: exit.code, signal: exit.signal, stdout: out.stdout.join(''), stderr: out.stderr.join('') };
        };
        return this.link
            .guard((ok, fail) => {
            onClosed = () => {
                if (exited())
                    ok(result());
                // sshd always reports how a command ended; a channel closed without it means the session is broken.
                else
                    fail(this.link.lostBecause('the remote command ended without an exit status'));
            };
            if (closed)
                onClosed();
        })
            .catch((e) => {
            // The command had finished when the connection went: its result stands.
            if (e instanceof ConnectionLostError && exited())
                return result();
            throw e;
        });
    }
    open(body, args = []) {
        return this.link.exec(shInvocation(body, args), undefined, holdEarlyEnd);
    }
    forward(port) {
        return this.link.forwardOut('127.0.0.1', port);
    }
    // traffic: haproxy — the admin socket through the connection (sshd's AllowStreamLocalForwarding, on by default).
    forwardUnix(socketPath) {
        return this.link.forwardStreamLocal(socketPath);
    }
    isConnected() {
        return this.link.isConnected();
    }
    close() {
        this.link.close();
    }
}
/**
 * A command that ends at once (the lock script failing) can deliver its exit status and close with the exec reply
 * (this runs in the reply's callback),
 * before the caller of open() has attached listeners after its await: keep those two events until then.
 */
function holdEarlyEnd(ch) {
    const emit = ch.emit.bind(ch);
    let held = [];
    ch.emit = ((event, ...args) => {
        if (held && (event === 'exit' || event === 'close')) {
            held.push([event, args]);
            return true;
        }
        return emit(event, ...args);
    });
    // Runs after the microtasks that resume the caller.
    setImmediate(() => {
        const early = held ?? [];
        held = undefined;
        for (const [event, args] of early)
            emit(event, ...args);
    });
}

;// CONCATENATED MODULE: ./src/transport/ssh/connection.ts








const RETRYABLE = new Set(['refused', 'timeout', 'network', 'dns']);
/**
 * Opens the host's SSH connection (through the jump host when one is set). Only connecting is retried,
 * with backoff: a host that is still booting or a flaky network recovers; a wrong key or host key does not.
 */
async function connect(target, settings, opts = {}) {
    const { signal } = opts;
    // The entry point's early socket (preconnect.ts) may be one sshd has closed meanwhile: its failure is no attempt.
    let early = !settings.jump && (0,preconnect/* hasEarlySocket */.NB)(target.host, target.port);
    for (let attempt = 0;; attempt++) {
        if (signal?.aborted)
            throw cancelledError(target, signal);
        try {
            return await connectOnce(target, settings, signal);
        }
        catch (e) {
            // Whatever the attempt died of (its socket was destroyed by the abort), the cause is the cancellation.
            if (signal?.aborted)
                throw cancelledError(target, signal);
            const err = e instanceof ConnectError ? e : new ConnectError(e.message, 'network');
            // closed before the handshake (not a timeout: a silent host is not waited for twice; not an error that repeats)
            if (early && err.kind === 'network' && /closed the connection before|ECONNRESET|EPIPE/.test(err.message)) {
                early = false;
                attempt--;
                continue;
            }
            early = false;
            if (!RETRYABLE.has(err.kind) || attempt >= settings.connectRetries) {
                if (attempt > 0)
                    err.message += ` (gave up after ${attempt + 1} attempts)`;
                throw err;
            }
            const waitMs = 1000 * 2 ** attempt;
            opts.onRetry?.(attempt + 1, err, waitMs);
            await connection_sleep(waitMs, signal);
        }
    }
}
/** Resolves after ms, or at once when the signal aborts. */
function connection_sleep(ms, signal) {
    return new Promise((resolve) => {
        const done = () => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', done);
            resolve();
        };
        const timer = setTimeout(done, ms);
        signal?.addEventListener('abort', done, { once: true });
    });
}
async function connectOnce(target, settings, signal) {
    const timeoutMs = settings.connectTimeoutMs;
    const link = new Link(target);
    if (!settings.jump) {
        await link.connect((stop) => openSocket(target, timeoutMs, stop), settings, timeoutMs, signal);
        return new SshHost(link);
    }
    const bastion = bastionFor(settings.jump, timeoutMs);
    bastion.acquire();
    let released = false;
    const release = () => {
        if (released)
            return;
        released = true;
        bastion.release();
    };
    try {
        let via;
        await link.connect(async (stop) => {
            const t = await bastion.tunnel(target, stop);
            via = t.via;
            return t.stream;
        }, settings, timeoutMs, signal);
        const bastionLink = via;
        // The host's connection runs inside a channel of the bastion's: when that one goes, so does the host's.
        const off = bastionLink.onEnded((e) => link.lose(`the connection to jump-host ${e.where} was lost: ${e.reason}`, e));
        // Released as soon as the host's connection is gone (lost or closed), so the last one closes the bastion.
        link.onEnded(() => {
            off();
            release();
        });
        return new SshHost(link);
    }
    catch (e) {
        release();
        throw e;
    }
}

;// CONCATENATED MODULE: ./src/main.ts
/**
 * The action's entry: mask secrets, read and check the inputs, then run the command. Everything else lives in
 * src/commands/ (what each command reports) and below.
 */











// The AWS SDK is most of the bundle: loaded when needed, it stays out of the cold start.
const fetchEcrToken = async (region) => (await Promise.all(/* import() */[__webpack_require__.e(861), __webpack_require__.e(249), __webpack_require__.e(857)]).then(__webpack_require__.bind(__webpack_require__, 89857))).fetchEcrToken(region);
const defaultDeps = { connect: connect, fetchEcrToken };
/** transport: ssm reaches hosts through AWS Systems Manager Run Command; its SDK is loaded only then. */
function depsFor(cfg, deps) {
    if (cfg.transport !== 'ssm' || deps !== defaultDeps)
        return deps;
    return {
        ...deps,
        connect: async (target, _ssh, opts) => (await __webpack_require__.e(/* import() */ 9).then(__webpack_require__.bind(__webpack_require__, 58009))).connectSsm(target, cfg, opts?.signal)
    };
}
/** Instance ids and tag selectors become hosts (DescribeInstances) before anything is touched; undefined when that failed (reported). */
async function withHosts(cfg, deps, env, secrets) {
    if (!cfg.hostQuery)
        return cfg;
    try {
        const resolved = await (deps.resolveHosts ?? resolveHosts)(cfg);
        info(`hosts: ${resolved.hosts.map((h) => `${h.label}${cfg.transport === 'ssh' && h.instanceId ? ` at ${h.host}` : ''}`).join(', ')} (found with EC2 DescribeInstances in ${cfg.awsRegion})`);
        return resolved;
    }
    catch (e) {
        if (!(e instanceof HostResolveError))
            throw e;
        setOutput('result', 'failed');
        error(e.message, { title: 'bluegreen-ec2-action: no hosts' });
        if (cfg.summary)
            await writeSummary(`## ❌ ${cfg.command} not started: hosts not found\n\n${e.message.replace(/</g, '&lt;')}\n`);
        await notifyInvalidInput(env, e, secrets, 'hosts');
        setFailed(e.message);
        return undefined;
    }
}
/** Masks every secret input before anything else can print it. */
function maskSecretInputs(secrets, env) {
    const read = (0,collector/* envInputReader */.tT)(env);
    secrets.add(read('ssh-private-key'));
    secrets.add(read('ssh-passphrase'));
    secrets.add(read('jump-private-key'));
    secrets.add(read('jump-passphrase'));
    secrets.add(read('registry-password'));
    secrets.add(read('notify-webhook'));
    for (const line of read('env').split(/\r?\n/)) {
        const eq = line.indexOf('=');
        if (eq > 0)
            secrets.add(line.slice(eq + 1));
    }
}
/** notify-webhook after a run refused for its inputs (or hosts not found): the team hears of it like of any failed deploy. */
async function notifyInvalidInput(env, e, secrets, step = 'inputs') {
    const read = (0,collector/* envInputReader */.tT)(env);
    const url = read('notify-webhook');
    if (!/^https?:\/\/\S+$/.test(url) || read('command') === 'status')
        return;
    const now = new Date().toISOString();
    const ctx = readRunContext(env);
    const result = {
        deployId: '',
        command: read('command') || 'deploy',
        app: read('app-name'),
        image: '',
        result: 'failed',
        startedAt: now,
        endedAt: now,
        durationMs: 0,
        steps: [],
        hosts: [],
        error: { step, message: e.message }
    };
    const warning = await sendNotification(url, { result, ctx, image: '' }, secrets);
    if (warning)
        workflow_warning(secrets.redact(warning));
}
async function run(env = process.env, deps = defaultDeps, sink = actionsConsole) {
    const secrets = new Secrets();
    try {
        maskSecretInputs(secrets, env);
        const ctx = readRunContext(env);
        let cfg;
        try {
            cfg = readConfig((0,collector/* envInputReader */.tT)(env), ctx, env);
        }
        catch (e) {
            if (!(e instanceof collector/* InputError */.dz))
                throw e;
            setOutput('result', 'failed');
            for (const p of e.problems)
                error(p, { title: 'bluegreen-ec2-action: invalid input' });
            if ((0,collector/* envInputReader */.tT)(env)('summary') !== 'false')
                await writeSummary(`## ❌ deploy not started: invalid input\n\n${e.problems.map((p) => `- ${p.replace(/</g, '&lt;')}`).join('\n')}\n`);
            await notifyInvalidInput(env, e, secrets);
            setFailed(e.message);
            return;
        }
        for (const w of cfg.inputWarnings)
            workflow_warning(w, { title: 'bluegreen-ec2-action: input ignored' });
        const resolved = await withHosts(cfg, deps, env, secrets);
        if (!resolved)
            return;
        const runDeps = depsFor(resolved, deps);
        if (resolved.command === 'status')
            await statusCommand(resolved, ctx, secrets, runDeps, sink, env);
        else
            await deployCommand(resolved, ctx, secrets, runDeps, sink, env);
    }
    catch (e) {
        const err = e;
        debug(secrets.redact(err.stack ?? ''));
        setOutput('result', 'failed');
        setFailed(secrets.redact(`bluegreen-ec2-action crashed: ${err.message}`));
    }
}


/***/ })

};
