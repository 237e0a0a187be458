/**
 * `npm run bench`: repeated deploys of alternating versions onto the sandbox host under continuous HTTP load from the
 * four client kinds of test/e2e/clients.ts at once, counted apart (fresh connections; pooled keep-alive connections
 * that never retry; slow 2–5 s requests on pooled keep-alive connections that straddle the switch; ~5 s event
 * streams), with
 *   nginx      this action, traffic: nginx
 *   rollback   this action, command: rollback (nginx), after the nginx rounds
 *   nginx-njs  this action, traffic: nginx with nginx-switch: njs, on an nginx of the bench only (test/e2e/njs-nginx.ts;
 *              the reload modes use the sandbox's shared nginx, which other checkouts' tests may reload too)
 *   port-swap  this action, traffic: port-swap
 *   haproxy    this action, traffic: haproxy, on the sandbox's HAProxy (test/sandbox/haproxy-up.sh: backend e2e-hx-web,
 *              front 127.0.0.1:19610, servers on 19611/19612; do not run test/e2e/haproxy.test.ts at the same time)
 *   caddy      this action, traffic: caddy, on the sandbox's Caddy (test/sandbox/caddy-up.sh; an app of the bench's own,
 *              routed by the marker file: test/e2e/caddy-harness.ts; front BENCH_PORT_BASE +40, colours +41/+42)
 *   naive      bench/naive-deploy.sh: one ssh session doing login, pull, stop + rm, run on the same port, health, rollback
 * plus the action's cold start (process start to its first SSH byte) and bundle size. Prints tables (with the goals,
 * PASS/MISS) and writes bench/results/deploy.json. Rounds per mode: BENCH_ROUNDS (default 6); BENCH_MODES (default
 * "nginx,rollback,nginx-njs,port-swap,haproxy,caddy,naive") picks modes; app names start with BENCH_APP_PREFIX (default "bench") and
 * the bench's own ports with BENCH_PORT_BASE (default 18300: nginx +0..+2, port-swap +10, naive +20, nginx-njs +30..+32).
 * Not part of `npm test`.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import zlib from 'node:zlib';
import {
  CLIENT_KINDS,
  ClientMix,
  writeStreamCgi,
  type ClientKind,
  type MixOptions,
  type MixResult
} from '../test/e2e/clients.js';
import { NJS_MODULE, startNjsNginx } from '../test/e2e/njs-nginx.js';
import { ensureCaddy, prepareCaddyApp, removeCaddyApp } from '../test/e2e/caddy-harness.js';
import {
  cleanupApp,
  drainJobDone,
  prepareApp,
  REPO_ROOT,
  runAction,
  sh,
  SANDBOX,
  type LoadResult,
  type RequestSample
} from '../test/e2e/harness.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
/** The four client kinds: 3 fresh, 3 pooled keep-alive (no retry), 3 slow 2–5 s on pooled keep-alive, 2 streams of ~5 s. */
const MIX: MixOptions = {
  fresh: 3,
  pooled: 3,
  slow: 3,
  stream: 2,
  slowSeconds: [2, 3, 4, 5],
  streamEvents: 25,
  requestTimeoutMs: 15000,
  record: true
};
const MODES = (process.env.BENCH_MODES ?? 'nginx,rollback,nginx-njs,port-swap,haproxy,caddy,naive')
  .split(',')
  .map((m) => m.trim());
const PREFIX = process.env.BENCH_APP_PREFIX ?? 'bench';
const PORT_BASE = Number(process.env.BENCH_PORT_BASE ?? 18300);
/** The sandbox HAProxy's backend, front and server ports (test/sandbox/haproxy-up.sh). */
const HAPROXY = {
  backend: 'e2e-hx-web',
  front: 'http://127.0.0.1:19610',
  blue: 19611,
  green: 19612,
  socket: '/run/bluegreen-haproxy/admin.sock',
  stateFile: '/var/lib/bluegreen-haproxy/server-state'
};
/** Load runs this long before each deploy starts (so slow requests are in flight at the switch) and after it ends. */
const LEAD_MS = 1500;
const TAIL_MS = 1000;
const REST_MS = 4000;
const COLD_STARTS = 5;
const nginxApp = `${PREFIX}-nginx`;
const swapApp = `${PREFIX}-swap`;
const haproxyApp = `${PREFIX}-haproxy`;
const njsApp = `${PREFIX}-njs`;
const caddyApp = `${PREFIX}-caddy`;
/** docker-run-args mounting the stream CGI into the demo containers (set in the test). */
let streamArgs = '';
let streamVolume = '';

const GOALS = { switchMs: 50, overheadMs: 1500, rollbackMs: 2000 };

type Mode = 'nginx' | 'rollback' | 'nginx-njs' | 'port-swap' | 'haproxy' | 'caddy' | 'naive';

/** One client kind over one round. */
interface KindRound {
  ok: number;
  failed: number;
  codes: Record<string, number>;
}

/** The fresh and pooled requests as one LoadResult (the latency, gap and switch figures are over both). */
function regular(m: MixResult): LoadResult {
  const f = m.fresh_;
  const p = m.pooled_;
  const errorCodes: Record<string, number> = { ...f.errorCodes };
  for (const [k, n] of Object.entries(p.errorCodes)) errorCodes[k] = (errorCodes[k] ?? 0) + n;
  return {
    ...p,
    ok: f.ok + p.ok,
    failed: f.failed + p.failed,
    errors: [...f.errors, ...p.errors],
    errorCodes,
    keepAliveRetries: 0,
    maxLatencyMs: Math.max(f.maxLatencyMs, p.maxLatencyMs),
    samples: [...f.samples, ...p.samples]
  };
}

interface Deployed {
  ok: boolean;
  result: string;
  /** process start to exit (the action under Node 24, or the naive script's ssh) */
  wallMs: number;
  startedAt: number;
  endedAt: number;
  /** when the switch began: the action's switch step; naive: just before `docker stop` of the old container */
  switchAt?: number;
  /** the version traffic should move to (body of GET /) */
  target: string;
  /** action: cutover-ms output (nginx: until the old workers stop accepting) */
  cutoverMs?: number;
  /** action, nginx: the metrics' switchMs (upstream written until the first new worker serves) */
  firstWorkerMs?: number;
  actionMs?: number;
  pullMs: number;
  /** the app's boot until healthy: action health step; naive: docker run until the first good curl (1 s polls) */
  bootMs: number;
  steps: Record<string, number>;
  hostMs?: number;
  log?: string;
}

interface WindowStats {
  requests: number;
  failed: number;
  p50: number;
  p99: number;
  /** longest time without a successful response completing */
  gapMs: number;
}

interface Round extends Omit<Deployed, 'log'> {
  mode: Mode;
  tag: string;
  /** per client kind (fresh, pooled, slow, stream) */
  kinds: Record<ClientKind, KindRound>;
  failed: number;
  requests: number;
  keepAliveRetries: number;
  maxLatencyMs: number;
  errors: string[];
  slowOk: number;
  brokenSlow: number;
  slowErrors: string[];
  /** slow requests in flight when the switch began (started before, ended after) and how many of those failed */
  slowAcrossSwitch: number;
  brokenSlowAcrossSwitch: number;
  /** during the deploy (process start to exit) */
  deploy: WindowStats;
  /** switch: action nginx: upstream written until the first new nginx worker serves (timed on the host); port-swap:
   * cutover-ms (old stopped until new healthy); naive: docker stop of the old until the first client response from the new */
  switchMs: number;
  /** action nginx: cutover-ms, until the old workers stop accepting (nginx keeps them accepting 100 ms after the new ones start) */
  fullCutoverMs: number;
  /** the same seen by the load clients for every mode: switch start until the first response from the new version */
  clientSwitchMs: number;
  /** wall − pull − boot */
  overheadMs: number;
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const max = (xs: number[]) =>
  xs.some((x) => Number.isFinite(x)) ? Math.max(...xs.filter((x) => Number.isFinite(x))) : NaN;
const pct = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] : NaN;
const lastEnd = (samples: RequestSample[]) => samples.reduce((m, x) => Math.max(m, x.end), 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Over the regular requests sent in [from, to]: count, failures, latency percentiles of the successful ones; and the
 * longest time without a successful response completing in [gapFrom, gapTo] (wider: a request sent during the deploy
 * may hang past its end, e.g. a SYN retransmitted after 1 s while nothing listens on the port).
 */
function windowStats(samples: RequestSample[], from: number, to: number, gapFrom = from, gapTo = to): WindowStats {
  const inWin = samples.filter((s) => s.start >= from && s.start <= to);
  const lat = inWin
    .filter((s) => s.ok)
    .map((s) => s.end - s.start)
    .sort((a, b) => a - b);
  const ends = samples
    .filter((s) => s.ok && s.end >= gapFrom && s.end <= gapTo)
    .map((s) => s.end)
    .sort((a, b) => a - b);
  let gap = 0;
  let prev = gapFrom;
  for (const e of ends) {
    gap = Math.max(gap, e - prev);
    prev = e;
  }
  gap = Math.max(gap, gapTo - prev);
  return {
    requests: inWin.length,
    failed: inWin.length - lat.length,
    p50: pct(lat, 0.5),
    p99: pct(lat, 0.99),
    gapMs: gap
  };
}

/** First successful regular response from `target` that was sent after `at` (so it did not start before the switch). */
function firstFrom(samples: RequestSample[], target: string, at: number): number {
  const hit = samples.filter((s) => s.ok && s.body === target && s.start >= at).sort((a, b) => a.end - b.end)[0];
  return hit ? hit.end - at : NaN;
}

// ------------------------------------------------------------------ the deployers

async function actionDeploy(app: string, tag: string | undefined, extra: Record<string, string>): Promise<Deployed> {
  const startedAt = Date.now();
  const r = await runAction({
    hosts: SANDBOX.host,
    'ssh-private-key': SANDBOX.privateKey,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'app-name': app,
    ...(tag ? { image: `${SANDBOX.image}:${tag}` } : {}),
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'upload-artifacts': 'false',
    // The post-switch watch window is a deliberate wait (verify-seconds, default 10 s); measure the mechanism without it.
    'verify-seconds': '0',
    ...extra
  });
  const endedAt = Date.now();
  const metricsFile = r.outputs['metrics-file'];
  if (!metricsFile)
    throw new Error(
      `the action wrote no metrics (exit ${r.code}):\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`
    );
  const m = JSON.parse(fs.readFileSync(metricsFile, 'utf8'));
  const h = m.hosts[0];
  const steps = h.stepDurationsMs as Record<string, number>;
  const sw = (h.steps as Array<{ name: string; startedAt: string }>).find((s) => s.name === 'switch');
  const target = /:(v\d+)(@|$)/.exec(r.outputs.image ?? '')?.[1] ?? tag ?? '?';
  return {
    ok: r.outputs.result === 'success',
    result: r.outputs.result,
    wallMs: r.durationMs,
    startedAt,
    endedAt,
    switchAt: sw ? Date.parse(sw.startedAt) : undefined,
    target,
    cutoverMs: Number(r.outputs['cutover-ms']),
    firstWorkerMs: typeof h.switchMs === 'number' ? h.switchMs : undefined,
    actionMs: Number(r.outputs['duration-ms']),
    pullMs: steps.pull ?? 0,
    bootMs: steps.health ?? 0,
    steps,
    hostMs: h.durationMs,
    log: r.outputs.result === 'success' ? undefined : `${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`
  };
}

async function naiveDeploy(app: string, tag: string, port: number): Promise<Deployed> {
  const startedAt = Date.now();
  const r = await sh(`bash ${path.join(REPO_ROOT, 'bench', 'naive-deploy.sh')}`, {
    timeoutMs: 120000,
    env: {
      ...process.env,
      SSH_HOST: SANDBOX.sshHost,
      SSH_PORT: String(SANDBOX.sshPort),
      SSH_USER: SANDBOX.user,
      SSH_KEY: SANDBOX.privateKeyPath,
      SSH_KNOWN_HOSTS: SANDBOX.knownHostsPath,
      REGISTRY: SANDBOX.registry,
      REGISTRY_USER: SANDBOX.registryUser,
      REGISTRY_PASSWORD: SANDBOX.registryPassword,
      APP: app,
      IMAGE: `${SANDBOX.image}:${tag}`,
      PUBLIC_PORT: String(port),
      VOLUME: streamVolume
    }
  });
  const endedAt = Date.now();
  const t: Record<string, number> = {};
  for (const m of r.stdout.matchAll(/^@@t (\w+)=(\d+)$/gm)) t[m[1]] = Number(m[2]);
  const steps: Record<string, number> = {
    ssh: (t.begin ?? NaN) - startedAt,
    login: t.pull_start - t.begin,
    pull: t.pull_end - t.pull_start,
    'stop+rm': t.run - t.stop,
    'run+health': t.healthy - t.run,
    'stop→healthy': t.healthy - t.stop,
    total: endedAt - startedAt
  };
  return {
    ok: r.code === 0,
    result: r.code === 0 ? 'success' : 'failed',
    wallMs: endedAt - startedAt,
    startedAt,
    endedAt,
    switchAt: t.stop,
    target: tag,
    pullMs: steps.pull,
    bootMs: steps['run+health'],
    steps,
    log: r.code === 0 ? undefined : `${r.stdout}\n${r.stderr}`
  };
}

// ------------------------------------------------------------------ rounds under load

async function atRest(url: string): Promise<WindowStats & { slowOk: number; brokenSlow: number; failedTotal: number }> {
  const load = new ClientMix(url, MIX).start();
  const from = Date.now() + 500;
  await sleep(REST_MS);
  const to = Date.now();
  const mix = await load.stop();
  const stats = regular(mix);
  return {
    ...windowStats(stats.samples, from, to, from, lastEnd(stats.samples)),
    slowOk: stats.slow.ok,
    brokenSlow: stats.slow.failed,
    failedTotal: stats.failed
  };
}

async function rounds(mode: Mode, url: string, deploy: (tag: string) => Promise<Deployed>): Promise<Round[]> {
  const out: Round[] = [];
  const warmup = mode === 'rollback' ? 0 : 1;
  for (let i = 0; i < ROUNDS + warmup; i++) {
    const tag = i % 2 === 0 ? 'v1' : 'v2';
    if (i < warmup) {
      // the first deploy starts from nothing: warm-up, not a swap
      const d = await deploy(tag);
      if (!d.ok) throw new Error(`${mode} warm-up deploy failed: ${d.result}\n${d.log ?? ''}`);
      continue;
    }
    // Rounds are independent deploys: the previous one's background drain job (which the next deploy on the host
    // would wait for) is done first, outside the measurement.
    for (const app of [nginxApp, swapApp, haproxyApp, njsApp, caddyApp]) await drainJobDone(app);
    const load = new ClientMix(url, MIX).start();
    const loadFrom = Date.now();
    await sleep(LEAD_MS);
    const d = await deploy(tag);
    await sleep(TAIL_MS);
    const mix = await load.stop();
    const stats: LoadResult = regular(mix);
    const switchAt = d.switchAt ?? NaN;
    const across = stats.slow.samples.filter((s) => s.start < switchAt && s.end > switchAt);
    const clientSwitchMs = firstFrom(stats.samples, d.target, switchAt);
    const { log, ...rest } = d;
    if (log) process.stdout.write(`\n[${mode} round ${i}] ${d.result}:\n${log}\n`);
    out.push({
      ...rest,
      mode,
      tag: d.target,
      kinds: Object.fromEntries(
        CLIENT_KINDS.map((k) => [k, { ok: mix[k].ok, failed: mix[k].failed, codes: mix[k].codes }])
      ) as Record<ClientKind, KindRound>,
      failed: stats.failed,
      requests: stats.ok + stats.failed,
      keepAliveRetries: stats.keepAliveRetries,
      maxLatencyMs: stats.maxLatencyMs,
      errors: stats.errors.slice(0, 5),
      slowOk: stats.slow.ok,
      brokenSlow: stats.slow.failed,
      slowErrors: stats.slow.errors.slice(0, 5),
      slowAcrossSwitch: across.length,
      brokenSlowAcrossSwitch: across.filter((s) => !s.ok).length,
      // latency of the requests sent during the deploy; longest gap over the whole load of the round
      deploy: windowStats(stats.samples, d.startedAt, d.endedAt, loadFrom, lastEnd(stats.samples)),
      switchMs: mode === 'naive' ? clientSwitchMs : (d.firstWorkerMs ?? d.cutoverMs ?? NaN),
      fullCutoverMs: mode === 'naive' ? clientSwitchMs : (d.cutoverMs ?? NaN),
      clientSwitchMs,
      overheadMs: d.wallMs - d.pullMs - d.bootMs
    });
  }
  return out;
}

// ------------------------------------------------------------------ cold start + bundle

/**
 * Spawns `node24 dist/index.js` (through runAction, as a runner does) against a local TCP listener posing as the SSH
 * host and times from just before the spawn to the first byte the listener receives (the client's SSH version banner).
 */
async function coldStart(): Promise<{ runs: number[]; nodeFloor: number[]; banner: string }> {
  const runs: number[] = [];
  const nodeFloor: number[] = [];
  let banner = '';
  for (let i = 0; i < COLD_STARTS; i++) {
    let t0 = 0;
    const ac = new AbortController();
    let run: Promise<unknown> = Promise.resolve();
    const first = new Promise<number>((resolve) => {
      const server = net.createServer((sock) => {
        sock.once('data', (d: Buffer) => {
          const t = performance.now();
          banner = d.toString('latin1').split('\r\n')[0];
          sock.destroy();
          server.close();
          ac.abort();
          resolve(t - t0);
        });
      });
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as net.AddressInfo).port;
        t0 = performance.now();
        run = runAction(
          {
            hosts: `127.0.0.1:${port}`,
            'ssh-private-key': SANDBOX.privateKey,
            'ssh-known-hosts': SANDBOX.knownHosts.replaceAll(`[127.0.0.1]:${SANDBOX.sshPort}`, `[127.0.0.1]:${port}`),
            'app-name': 'bench-coldstart',
            image: `${SANDBOX.image}:v1`,
            'registry-auth': 'password',
            'registry-username': SANDBOX.registryUser,
            'registry-password': SANDBOX.registryPassword,
            'upload-artifacts': 'false',
            'ssh-connect-timeout-seconds': '5'
          },
          { signal: ac.signal, timeoutMs: 30000 }
        );
      });
    });
    runs.push(Math.round(await first));
    await run; // the aborted action exits (SIGTERM)
    // Node's own floor: a script that only opens a TCP connection and writes one line.
    nodeFloor.push(
      Math.round(
        await new Promise<number>((resolve) => {
          const server = net.createServer((sock) => {
            sock.once('data', () => {
              const t = performance.now();
              sock.destroy();
              server.close();
              resolve(t - t0);
            });
          });
          server.listen(0, '127.0.0.1', () => {
            const port = (server.address() as net.AddressInfo).port;
            t0 = performance.now();
            spawn(
              SANDBOX.node24,
              ['-e', `require('net').connect(${port}, '127.0.0.1', function () { this.end('SSH-2.0-x\\r\\n'); })`],
              { stdio: 'ignore' }
            );
          });
        })
      )
    );
  }
  return { runs, nodeFloor, banner };
}

function bundle() {
  const file = path.join(REPO_ROOT, 'dist', 'index.js');
  const buf = fs.readFileSync(file);
  const distBytes = fs
    .readdirSync(path.join(REPO_ROOT, 'dist'))
    .reduce((n, f) => n + fs.statSync(path.join(REPO_ROOT, 'dist', f)).size, 0);
  return {
    indexJsBytes: buf.length,
    indexJsGzipBytes: zlib.gzipSync(buf, { level: 9 }).length,
    distBytes,
    sha256: crypto.createHash('sha256').update(buf).digest('hex')
  };
}

// ------------------------------------------------------------------ the benchmark

test(`benchmark: ${ROUNDS} swaps per mode under load`, async () => {
  const naiveApp = `${PREFIX}-naive`;
  const naivePort = PORT_BASE + 20;
  const nginxExtra = {
    'blue-port': String(PORT_BASE + 1),
    'green-port': String(PORT_BASE + 2),
    'docker-run-args': streamArgs
  };
  const rest: Record<string, Awaited<ReturnType<typeof atRest>>> = {};
  const on = (m: Mode) => MODES.includes(m);
  const cgiDir = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-stream-`));
  streamArgs = writeStreamCgi(cgiDir);
  streamVolume = streamArgs.replace(/^--volume /, '');
  nginxExtra['docker-run-args'] = streamArgs;

  const cold = await coldStart();
  const size = bundle();

  let nginx: Round[] = [];
  let rollbacks: Round[] = [];
  if (on('nginx') || on('rollback')) {
    const nginxUrl = await prepareApp(nginxApp, { listenPort: PORT_BASE, bluePort: PORT_BASE + 1 });
    let restTaken = false;
    nginx = await rounds('nginx', nginxUrl, async (tag) => {
      if (!restTaken) {
        // first call is the warm-up deploy: measure the rest baseline right after it
        const d = await actionDeploy(nginxApp, tag, nginxExtra);
        rest.nginx = await atRest(nginxUrl);
        restTaken = true;
        return d;
      }
      return actionDeploy(nginxApp, tag, nginxExtra);
    });
    rest.rollback = rest.nginx;
    if (on('rollback'))
      rollbacks = await rounds('rollback', nginxUrl, () =>
        actionDeploy(nginxApp, undefined, { ...nginxExtra, command: 'rollback' })
      );
    await cleanupApp(nginxApp);
  }

  let njs: Round[] = [];
  if (on('nginx-njs') && !fs.existsSync(NJS_MODULE))
    process.stdout.write(
      `nginx-njs mode left out: ${NJS_MODULE} is missing (apt-get install -y libnginx-mod-http-js)\n`
    );
  else if (on('nginx-njs')) {
    await cleanupApp(njsApp);
    const upstreamDir = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-njs-upstream-`));
    fs.chmodSync(upstreamDir, 0o755);
    const upstreamFile = path.join(upstreamDir, `${njsApp}.conf`);
    fs.writeFileSync(upstreamFile, `upstream ${njsApp} { server 127.0.0.1:${PORT_BASE + 31}; }\n`);
    await sh(`chown -R ec2-user:ec2-user ${upstreamDir}`);
    const server = await startNjsNginx(path.join(cgiDir, 'njs-nginx'), { listenPort: PORT_BASE + 30, upstreamFile });
    const njsExtra = {
      'nginx-switch': 'njs',
      'nginx-upstream-file': upstreamFile,
      'nginx-reload-command': 'exit 99',
      'blue-port': String(PORT_BASE + 31),
      'green-port': String(PORT_BASE + 32),
      'docker-run-args': streamArgs
    };
    let njsRest = false;
    try {
      njs = await rounds('nginx-njs', server.url, async (tag) => {
        const d = await actionDeploy(njsApp, tag, njsExtra);
        if (!njsRest) {
          rest['nginx-njs'] = await atRest(server.url);
          njsRest = true;
        }
        return d;
      });
    } finally {
      await server.stop();
      await cleanupApp(njsApp);
      fs.rmSync(upstreamDir, { recursive: true, force: true });
    }
  }

  let swap: Round[] = [];
  if (on('port-swap')) {
    await cleanupApp(swapApp);
    const swapUrl = `http://127.0.0.1:${PORT_BASE + 10}`;
    const swapExtra = { traffic: 'port-swap', 'public-port': String(PORT_BASE + 10), 'docker-run-args': streamArgs };
    let swapRest = false;
    swap = await rounds('port-swap', swapUrl, async (tag) => {
      const d = await actionDeploy(swapApp, tag, swapExtra);
      if (!swapRest) {
        rest['port-swap'] = await atRest(swapUrl);
        swapRest = true;
      }
      return d;
    });
    await cleanupApp(swapApp);
  }

  let hx: Round[] = [];
  if (on('haproxy')) {
    await sh(`bash ${path.join(REPO_ROOT, 'test/sandbox/haproxy-up.sh')}`, { timeoutMs: 120_000 });
    await cleanupApp(haproxyApp);
    const hxExtra = {
      traffic: 'haproxy',
      'haproxy-backend': HAPROXY.backend,
      'haproxy-socket': HAPROXY.socket,
      'haproxy-state-file': HAPROXY.stateFile,
      'blue-port': String(HAPROXY.blue),
      'green-port': String(HAPROXY.green),
      'docker-run-args': streamArgs
    };
    let hxRest = false;
    hx = await rounds('haproxy', HAPROXY.front, async (tag) => {
      const d = await actionDeploy(haproxyApp, tag, hxExtra);
      if (!hxRest) {
        rest.haproxy = await atRest(HAPROXY.front);
        hxRest = true;
      }
      return d;
    });
    await cleanupApp(haproxyApp);
  }

  let cd: Round[] = [];
  if (on('caddy')) {
    await ensureCaddy();
    const ports = { blue: PORT_BASE + 41, green: PORT_BASE + 42 };
    const caddyUrl = await prepareCaddyApp(caddyApp, { listenPort: PORT_BASE + 40, ports });
    const cdExtra = {
      traffic: 'caddy',
      'blue-port': String(ports.blue),
      'green-port': String(ports.green),
      'docker-run-args': streamArgs
    };
    let cdRest = false;
    cd = await rounds('caddy', caddyUrl, async (tag) => {
      const d = await actionDeploy(caddyApp, tag, cdExtra);
      if (!cdRest) {
        rest.caddy = await atRest(caddyUrl);
        cdRest = true;
      }
      return d;
    });
    await removeCaddyApp(caddyApp);
  }

  let naive: Round[] = [];
  if (on('naive')) {
    await sh(`docker rm -f ${naiveApp}`);
    const naiveUrl = `http://127.0.0.1:${naivePort}`;
    let naiveRest = false;
    naive = await rounds('naive', naiveUrl, async (tag) => {
      const d = await naiveDeploy(naiveApp, tag, naivePort);
      if (!naiveRest) {
        rest.naive = await atRest(naiveUrl);
        naiveRest = true;
      }
      return d;
    });
    await sh(`docker rm -f ${naiveApp}`);
  }
  fs.rmSync(cgiDir, { recursive: true, force: true });

  // ---------------------------------------------------------------- tables
  // dist/ may be rebuilt while the bench runs (it takes minutes): then the modes did not all run the same code.
  const distAtEnd = bundle().sha256;
  const distChanged = distAtEnd !== size.sha256;
  const modes = (
    [
      ['nginx', 'action, nginx', nginx],
      ['rollback', 'action, rollback (nginx)', rollbacks],
      ['nginx-njs', 'action, nginx-switch: njs', njs],
      ['port-swap', 'action, port-swap', swap],
      ['haproxy', 'action, haproxy', hx],
      ['caddy', 'action, caddy', cd],
      ['naive', 'naive script', naive]
    ] as Array<[Mode, string, Round[]]>
  ).filter(([, , rs]) => rs.length > 0);
  // Failures per client kind: summed over the rounds (failed / requests), the worst round, and every error code.
  const kindLabel: Record<ClientKind, string> = {
    fresh: 'fresh connections',
    pooled: 'pooled keep-alive, no retry',
    slow: 'slow 2–5 s, pooled keep-alive',
    stream: 'event stream ~5 s'
  };
  const kindsTable = [
    `| mode | rounds | ${CLIENT_KINDS.map((k) => `${kindLabel[k]}: failed / requests (worst round)`).join(' | ')} | error codes (all rounds) |`,
    `| --- | --- | ${CLIENT_KINDS.map(() => '---').join(' | ')} | --- |`
  ];
  for (const [, label, rs] of modes) {
    const codes: Record<string, number> = {};
    const cells = CLIENT_KINDS.map((k) => {
      let failed = 0;
      let total = 0;
      let worst = 0;
      for (const r of rs) {
        const x = r.kinds[k];
        failed += x.failed;
        total += x.ok + x.failed;
        worst = Math.max(worst, x.failed);
        for (const [c, n] of Object.entries(x.codes)) codes[`${k}: ${c}`] = (codes[`${k}: ${c}`] ?? 0) + n;
      }
      return `${failed} / ${total} (${worst})`;
    });
    kindsTable.push(
      `| ${label} | ${rs.length} | ${cells.join(' | ')} | ${
        Object.entries(codes)
          .map(([c, n]) => `${c} ×${n}`)
          .join('; ') || '—'
      } |`
    );
  }
  const fmt = (x: number) => (Number.isFinite(x) ? String(Math.round(x)) : '—');
  const mm = (rs: Round[], f: (r: Round) => number) => `${fmt(median(rs.map(f)))} / ${fmt(max(rs.map(f)))}`;
  const summary: Record<string, Record<string, number>> = {};
  const traffic = [
    '| mode | rounds | failed fresh + pooled requests | broken slow requests (of those in flight at switch: broken / in flight) | longest gap ms | p50 ms deploy (rest) | p99 ms deploy (rest) |',
    '| --- | --- | --- | --- | --- | --- | --- |'
  ];
  const timing = [
    '| mode | switch ms | full cut-over ms | switch ms seen by clients | wall ms | overhead ms | pull ms | boot until healthy ms | drain ms |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |'
  ];
  for (const [mode, label, rs] of modes) {
    const r0 = rest[mode];
    const cols: Record<string, (r: Round) => number> = {
      'failed requests (fresh + pooled)': (r) => r.failed,
      'broken slow requests': (r) => r.brokenSlow,
      'slow requests across switch': (r) => r.slowAcrossSwitch,
      'broken slow requests across switch': (r) => r.brokenSlowAcrossSwitch,
      'keep-alive retries': (r) => r.keepAliveRetries,
      'longest gap ms': (r) => r.deploy.gapMs,
      'p50 ms during deploy': (r) => r.deploy.p50,
      'p99 ms during deploy': (r) => r.deploy.p99,
      'switch ms': (r) => r.switchMs,
      'full cutover ms': (r) => r.fullCutoverMs,
      'client switch ms': (r) => r.clientSwitchMs,
      'wall ms': (r) => r.wallMs,
      'action ms': (r) => r.actionMs ?? NaN,
      'overhead ms': (r) => r.overheadMs,
      'pull ms': (r) => r.pullMs,
      'boot ms': (r) => r.bootMs,
      'drain ms': (r) => r.steps.drain ?? NaN,
      // not in the tables: the same without the drain wait, and measured inside the action (host total, no Node start)
      'overhead minus drain ms': (r) => r.overheadMs - (r.steps.drain ?? 0),
      'in-process overhead ms': (r) => (r.hostMs ?? NaN) - r.pullMs - r.bootMs
    };
    summary[mode] = Object.fromEntries(
      Object.entries(cols).flatMap(([k, f]) => [
        [`${k} median`, median(rs.map(f))],
        [`${k} max`, max(rs.map(f))]
      ])
    );
    Object.assign(summary[mode], {
      'rest p50 ms': r0?.p50,
      'rest p99 ms': r0?.p99,
      'rest longest gap ms': r0?.gapMs,
      'rest failed': r0?.failedTotal,
      'rest broken slow': r0?.brokenSlow
    });
    traffic.push(
      `| ${label} | ${rs.length} | ${mm(rs, cols['failed requests (fresh + pooled)'])} | ${mm(rs, cols['broken slow requests'])} (${mm(rs, cols['broken slow requests across switch'])} of ${mm(rs, cols['slow requests across switch'])}) | ${mm(rs, cols['longest gap ms'])} (${fmt(r0?.gapMs ?? NaN)}) | ${mm(rs, cols['p50 ms during deploy'])} (${fmt(r0?.p50 ?? NaN)}) | ${mm(rs, cols['p99 ms during deploy'])} (${fmt(r0?.p99 ?? NaN)}) |`
    );
    timing.push(
      `| ${label} | ${mm(rs, cols['switch ms'])} | ${mm(rs, cols['full cutover ms'])} | ${mm(rs, cols['client switch ms'])} | ${mm(rs, cols['wall ms'])} | ${mm(rs, cols['overhead ms'])} | ${mm(rs, cols['pull ms'])} | ${mm(rs, cols['boot ms'])} | ${mode === 'naive' || mode === 'port-swap' ? '—' : mm(rs, cols['drain ms'])} |`
    );
  }

  const goal = (name: string, value: number, ok: boolean) => ({ goal: name, value, met: ok });
  const goals = [
    goal(
      'nginx: 0 failed requests (max per round)',
      max(nginx.map((r) => r.failed)),
      max(nginx.map((r) => r.failed)) === 0
    ),
    goal(
      'nginx: 0 broken slow requests (max per round)',
      max(nginx.map((r) => r.brokenSlow)),
      max(nginx.map((r) => r.brokenSlow)) === 0
    ),
    goal(
      `nginx: switch (upstream written → first new worker serving) < ${GOALS.switchMs} ms (max)`,
      max(nginx.map((r) => r.switchMs)),
      max(nginx.map((r) => r.switchMs)) < GOALS.switchMs
    ),
    goal(
      `nginx: full cut-over (cutover-ms: old workers no longer accept; includes nginx's fixed 100 ms overlap) < ${GOALS.switchMs} ms (max)`,
      max(nginx.map((r) => r.fullCutoverMs)),
      max(nginx.map((r) => r.fullCutoverMs)) < GOALS.switchMs
    ),
    goal(
      'nginx-njs: 0 failed requests of every client kind (max per round)',
      max(njs.map((r) => CLIENT_KINDS.reduce((n, k) => n + r.kinds[k].failed, 0))),
      max(njs.map((r) => CLIENT_KINDS.reduce((n, k) => n + r.kinds[k].failed, 0))) === 0
    ),
    goal(
      `port-swap: switch (cutover-ms) < ${GOALS.switchMs} ms (max)`,
      max(swap.map((r) => r.switchMs)),
      max(swap.map((r) => r.switchMs)) < GOALS.switchMs
    ),
    goal(
      'haproxy: 0 failed requests of every client kind (max per round)',
      max(hx.map((r) => CLIENT_KINDS.reduce((n, k) => n + r.kinds[k].failed, 0))),
      max(hx.map((r) => CLIENT_KINDS.reduce((n, k) => n + r.kinds[k].failed, 0))) === 0
    ),
    goal(
      `haproxy: switch (cutover-ms, on HAProxy's clock) < ${GOALS.switchMs} ms (max)`,
      max(hx.map((r) => r.switchMs)),
      max(hx.map((r) => r.switchMs)) < GOALS.switchMs
    ),
    goal(
      `nginx: overhead < ${GOALS.overheadMs} ms per deploy (max)`,
      max(nginx.map((r) => r.overheadMs)),
      max(nginx.map((r) => r.overheadMs)) < GOALS.overheadMs
    ),
    goal(
      `port-swap: overhead < ${GOALS.overheadMs} ms per deploy (max)`,
      max(swap.map((r) => r.overheadMs)),
      max(swap.map((r) => r.overheadMs)) < GOALS.overheadMs
    ),
    goal(
      `rollback: wall time < ${GOALS.rollbackMs} ms (max)`,
      max(rollbacks.map((r) => r.wallMs)),
      max(rollbacks.map((r) => r.wallMs)) < GOALS.rollbackMs
    )
  ];
  const goalTable = [
    '| goal | measured | met |',
    '| --- | --- | --- |',
    ...goals.map(
      (g) => `| ${g.goal} | ${fmt(g.value)} | ${g.met ? 'PASS' : Number.isFinite(g.value) ? 'MISS' : 'not run'} |`
    )
  ];

  const stepNames = [...new Set([...nginx, ...rollbacks, ...njs, ...swap, ...hx].flatMap((r) => Object.keys(r.steps)))];
  const stepRow = (rs: Round[]) => stepNames.map((s) => fmt(median(rs.map((r) => r.steps[s] ?? NaN)))).join(' | ');
  const naiveSteps = Object.keys(naive[0]?.steps ?? {});
  const steps = [
    `| action steps (median ms) | ${stepNames.join(' | ')} |`,
    `| --- | ${stepNames.map(() => '---:').join(' | ')} |`,
    `| nginx | ${stepRow(nginx)} |`,
    `| rollback | ${stepRow(rollbacks)} |`,
    `| nginx-njs | ${stepRow(njs)} |`,
    `| port-swap | ${stepRow(swap)} |`,
    `| haproxy | ${stepRow(hx)} |`,
    '',
    `| naive script (median ms) | ${naiveSteps.join(' | ')} |`,
    `| --- | ${naiveSteps.map(() => '---:').join(' | ')} |`,
    `| naive | ${naiveSteps.map((s) => fmt(median(naive.map((r) => r.steps[s] ?? NaN)))).join(' | ')} |`
  ];
  const coldTable = [
    '| cold start (spawn → first SSH byte) | median ms | max ms |',
    '| --- | --- | --- |',
    `| \`node24 dist/index.js\` | ${fmt(median(cold.runs))} | ${fmt(max(cold.runs))} |`,
    `| Node 24 floor (\`node -e\` connect + write) | ${fmt(median(cold.nodeFloor))} | ${fmt(max(cold.nodeFloor))} |`,
    '',
    `bundle: dist/index.js ${size.indexJsBytes} bytes (${(size.indexJsBytes / 1048576).toFixed(2)} MiB), gzip -9 ${size.indexJsGzipBytes} bytes (${(size.indexJsGzipBytes / 1048576).toFixed(2)} MiB); all of dist/ ${size.distBytes} bytes`
  ];
  const text = [
    ...kindsTable,
    '',
    'all four client kinds run at once in every round; a request on a pooled connection is never retried',
    '',
    ...traffic,
    '',
    'median / max over the rounds; broken slow requests: all that failed (a client retries after 50 ms, so an outage breaks several), in brackets those in flight when the switch began: broken of in flight; (…) after gap/latency: at rest',
    '',
    ...timing,
    '',
    'overhead = wall − pull − boot until healthy',
    '',
    ...goalTable,
    '',
    ...steps,
    '',
    ...coldTable,
    ...(distChanged
      ? [
          '',
          `WARNING: dist/index.js changed during the run (sha256 ${size.sha256.slice(0, 12)} at the start, ${distAtEnd.slice(0, 12)} at the end): the modes did not all run the same build`
        ]
      : [])
  ].join('\n');

  fs.mkdirSync(path.join(REPO_ROOT, 'bench', 'results'), { recursive: true });
  fs.writeFileSync(
    path.join(REPO_ROOT, 'bench', 'results', 'deploy.json'),
    JSON.stringify(
      {
        at: new Date().toISOString(),
        rounds: ROUNDS,
        load: { ...MIX, leadMs: LEAD_MS, tailMs: TAIL_MS, restMs: REST_MS },
        goals,
        summary,
        rest,
        coldStart: cold,
        bundle: size,
        distChangedDuringRun: distChanged,
        nginx,
        rollbacks,
        njs,
        swap,
        haproxy: hx,
        naive,
        tables: text
      },
      null,
      2
    )
  );
  process.stdout.write(`\n${text}\n\nwritten: bench/results/deploy.json\n`);
  expect(nginx.every((r) => r.result === 'success')).toBe(true);
  expect(rollbacks.every((r) => r.result === 'success')).toBe(true);
  expect(swap.every((r) => r.result === 'success')).toBe(true);
  expect(njs.every((r) => r.result === 'success')).toBe(true);
  expect(hx.every((r) => r.result === 'success')).toBe(true);
  expect(naive.every((r) => r.result === 'success')).toBe(true);
});
