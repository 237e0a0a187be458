/**
 * `npm run bench` (distance part): the same deploy (image cached, verify-seconds 0, nginx) and a rollback to the
 * kept standby, with the runner "far" from the host: a forwarder in front of sshd adds a fixed delay to every
 * chunk, each way (the kernel here has no netem). For each added delay it prints, per step, the median time, and
 * against the 0 ms run the implied sequential round trips ((t_delay − t_0) / RTT). The health detection lag is
 * measured against the test app's known ready time: the demo image is started through a wrapper entrypoint that
 * sleeps READY_MS before the app starts listening, so the app is ready at the container's StartedAt + READY_MS
 * (+ a few ms of httpd start-up); the lag is the health step's end minus that.
 *
 * Env: BENCH_DELAYS (ms each way, default "0,20,100"; 0 is always measured), BENCH_DISTANCE_ROUNDS (deploys per
 * delay, default 4; each round takes every delay in turn), BENCH_READY_MS (default 1500), BENCH_SWITCH (`reload`,
 * the default: the sandbox's nginx, reloaded; `njs`: an nginx of the bench's own with nginx-switch njs, never
 * reloaded), BENCH_DIST (the bundle to run instead of dist/index.js, to compare two builds). Writes
 * bench/results/distance[-njs].json and .md.
 *   npm run bench -- bench/distance.bench.ts
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { cleanupApp, drainJobDone, prepareApp, REPO_ROOT, runAction, sh, SANDBOX } from '../test/e2e/harness.js';
import { startNjsNginx, type NjsNginx } from '../test/e2e/njs-nginx.js';

const DELAYS = [
  ...new Set([
    0,
    ...(process.env.BENCH_DELAYS ?? '20,100')
      .split(',')
      .map(Number)
      .filter((n) => n > 0)
  ])
];
const ROUNDS = Number(process.env.BENCH_DISTANCE_ROUNDS ?? 4);
const READY_MS = Number(process.env.BENCH_READY_MS ?? 1500);
const SWITCH = process.env.BENCH_SWITCH === 'njs' ? 'njs' : 'reload';
const app = 'f11-dist';
const PORTS = { listen: 19200, blue: 19201, green: 19202, njsListen: 19203, proxy: 19290 };
/** nginx-switch njs: the bench's own nginx reads this file at every request (outside the shared nginx's include dir). */
const NJS_UPSTREAM = `/tmp/${app}-njs-upstream/${app}.conf`;
/** The goals of issue #11, in sequential round trips outside the health step (connect included). */
const GOALS = { deployRoundTrips: 12, rollbackRoundTrips: 10, healthLagMs: 250 };

/**
 * Passes chunks on (null: end) to the socket `to()` returns at their due times, in the order they were queued (due
 * times never decrease), with one timer: chunks due in the same millisecond keep their order. `to()` returns
 * undefined while that socket is not open yet, null once it never will be (the rest is dropped).
 */
function orderedSender(to: () => net.Socket | undefined | null): (at: number, chunk: Buffer | null) => void {
  const queue: Array<{ at: number; chunk: Buffer | null }> = [];
  let timer: NodeJS.Timeout | undefined;
  const pump = () => {
    timer = undefined;
    while (queue.length && queue[0].at <= Date.now()) {
      const s = to();
      if (s === null) return void queue.splice(0);
      // not connected yet (its timer is due in the same millisecond): a moment later
      if (!s) return void (timer = setTimeout(pump, 1));
      const { chunk } = queue.shift()!;
      if (s.destroyed) continue;
      if (chunk) s.write(chunk);
      else s.end();
    }
    if (queue.length) timer = setTimeout(pump, queue[0].at - Date.now());
  };
  return (at, chunk) => {
    queue.push({ at, chunk });
    if (!timer) timer = setTimeout(pump, Math.max(0, at - Date.now()));
  };
}

/**
 * A fixed one-way delay per direction: every chunk is passed on `delayMs` after it arrived, in order (a link of
 * that latency and plenty of bandwidth; unlike FaultProxy's delay, a burst of chunks is not serialized), and a new
 * connection pays the TCP handshake's round trip before its first byte reaches sshd.
 */
class DelayLink {
  /** For connections accepted from now on. */
  delayMs = 0;
  private constructor(private readonly server: net.Server) {}

  static async start(listenPort: number, target: { host: string; port: number }): Promise<DelayLink> {
    const server = net.createServer({ noDelay: true });
    const link = new DelayLink(server);
    server.on('connection', (client) => {
      const d = link.delayMs;
      // The TCP handshake of a link of that latency: the client's connect() would return after a round trip (SYN,
      // SYN-ACK), so its first byte reaches sshd 3 × d (1.5 round trips) after it called connect, and sshd accepts (and
      // sends its banner) then. The kernel completes the client's connect to this forwarder at once: its bytes are held
      // until then instead.
      const opensAt = Date.now() + 3 * d;
      let upstream: net.Socket | undefined | null;
      const toUpstream = orderedSender(() => upstream);
      const toClient = orderedSender(() => client);
      client.on('data', (chunk: Buffer) => toUpstream(Math.max(Date.now() + d, opensAt), chunk));
      client.on('end', () => toUpstream(Math.max(Date.now() + d, opensAt), null));
      client.on('error', () => upstream?.destroy());
      client.on('close', () => setTimeout(() => upstream?.destroy(), Math.max(d + 5, opensAt - Date.now() + d + 5)));
      setTimeout(() => {
        if (client.destroyed) return void (upstream = null);
        upstream = net.connect({ ...target, noDelay: true });
        upstream.on('data', (chunk: Buffer) => toClient(Date.now() + d, chunk));
        upstream.on('end', () => toClient(Date.now() + d, null));
        upstream.on('error', () => client.destroy());
        upstream.on('close', () => setTimeout(() => client.destroy(), d + 5));
      }, 3 * d);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, '127.0.0.1', () => resolve());
    });
    return link;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

interface Run {
  delayMs: number;
  kind: 'deploy' | 'rollback';
  wallMs: number;
  steps: Record<string, number>;
  /** health step end − (container StartedAt + READY_MS) */
  healthLagMs?: number;
  pullMs: number;
  /** From spawning the action's process until the run's start (Node start, loading the bundle, reading the inputs). */
  startupMs: number;
  /** From the end of the last step until the process has exited (summary, metrics, logs, closing the connection). */
  tailMs: number;
}

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

const wrapperDir = path.join('/tmp', `${app}-bench`);
const wrapper = path.join(wrapperDir, 'ready-later.sh');

async function once(delayMs: number, kind: Run['kind'], tag: string): Promise<Run> {
  await drainJobDone(app);
  const r = await runAction(
    {
      hosts: `127.0.0.1:${PORTS.proxy}`,
      'ssh-private-key': SANDBOX.privateKey,
      // the proxy's port is not the one in known_hosts: pin the host key by fingerprint
      'ssh-host-fingerprint': SANDBOX.fingerprint,
      'app-name': app,
      ...(kind === 'deploy' ? { image: `${SANDBOX.image}:${tag}` } : { command: 'rollback' }),
      'registry-auth': 'password',
      'registry-username': SANDBOX.registryUser,
      'registry-password': SANDBOX.registryPassword,
      'blue-port': String(PORTS.blue),
      'green-port': String(PORTS.green),
      'docker-run-args': `--entrypoint /ready-later.sh -v ${wrapper}:/ready-later.sh:ro`,
      'verify-seconds': '0',
      'upload-artifacts': 'false',
      summary: 'false',
      ...(SWITCH === 'njs'
        ? {
            'nginx-switch': 'njs',
            'nginx-upstream-file': NJS_UPSTREAM,
            'nginx-reload-command': 'echo "no reload with njs" >&2; exit 99'
          }
        : {})
    },
    { script: process.env.BENCH_DIST || undefined }
  );
  if (r.outputs.result !== 'success')
    throw new Error(
      `${kind} at ${delayMs} ms: ${r.outputs.result}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`
    );
  const m = JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
  const h = m.hosts[0];
  const steps = { ...(h.stepDurationsMs as Record<string, number>) };
  const health = (h.steps as Array<{ name: string; endedAt: string }>).find((s) => s.name === 'health');
  let healthLagMs: number | undefined;
  if (health) {
    const started = await sh(`docker inspect -f '{{.State.StartedAt}}' ${app}-${r.outputs['active-color']}`);
    const readyAt = Date.parse(started.stdout.trim()) + READY_MS;
    healthLagMs = Date.parse(health.endedAt) - readyAt;
  }
  const ends = (h.steps as Array<{ endedAt: string }>).map((s) => Date.parse(s.endedAt));
  const startupMs = Date.parse(m.startedAt) - r.spawnedAt;
  const tailMs = r.spawnedAt + r.durationMs - Math.max(...ends);
  return { delayMs, kind, wallMs: r.durationMs, steps, healthLagMs, pullMs: steps.pull ?? 0, startupMs, tailMs };
}

const ORDER = [
  'connect',
  'lock',
  'login',
  'pull',
  'detect',
  'start',
  'health',
  'switch',
  'verify',
  'drain',
  'stop',
  'cleanup',
  'record'
];

function table(runs: Run[], kind: Run['kind']): string {
  const lines: string[] = [];
  const of = (d: number) => runs.filter((r) => r.kind === kind && r.delayMs === d);
  const names = ORDER.filter((n) => runs.some((r) => r.kind === kind && n in r.steps));
  const extra = DELAYS.filter((d) => d > 0);
  const head = ['step', '0 ms', ...extra.flatMap((d) => [`+${d} ms each way`, `RTs @${d}`])];
  lines.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
  const row = (label: string, get: (r: Run) => number) => {
    const base = median(of(0).map(get));
    const cells = [label, `${Math.round(base)} ms`];
    for (const d of extra) {
      const t = median(of(d).map(get));
      cells.push(`${Math.round(t)} ms`, ((t - base) / (2 * d)).toFixed(1));
    }
    lines.push(`| ${cells.join(' | ')} |`);
  };
  for (const n of names) row(n, (r) => r.steps[n] ?? 0);
  row('steps outside health (sum)', (r) =>
    Object.entries(r.steps)
      .filter(([k]) => k !== 'health' && k !== 'total')
      .reduce((a, [, v]) => a + v, 0)
  );
  row('Node start (spawn → run starts)', (r) => r.startupMs);
  row('after the last step (→ exit)', (r) => r.tailMs);
  row('wall (process start to exit)', (r) => r.wallMs);
  row('**wall − health**', (r) => r.wallMs - (r.steps.health ?? 0));
  // Issue #11: wall ≤ the app's boot (start + health) + the pull + 12 round trips + 300 ms.
  row('wall − boot (start + health) − pull', (r) => r.wallMs - (r.steps.start ?? 0) - (r.steps.health ?? 0) - r.pullMs);
  if (kind === 'deploy')
    row(`health detection lag (app ready ${READY_MS} ms after start)`, (r) => r.healthLagMs ?? NaN);
  return lines.join('\n');
}

test(`distance benchmark: deploy + rollback at ${DELAYS.join(', ')} ms added each way, ${ROUNDS} rounds`, async () => {
  fs.mkdirSync(wrapperDir, { recursive: true });
  // Busybox sh inside the demo image: the app starts listening READY_MS after the container starts.
  fs.writeFileSync(wrapper, `#!/bin/sh\nsleep ${READY_MS / 1000}\nexec /bin/sh /entry.sh\n`, { mode: 0o755 });
  await prepareApp(app, { listenPort: PORTS.listen, bluePort: PORTS.blue });
  let njs: NjsNginx | undefined;
  if (SWITCH === 'njs') {
    fs.rmSync(path.dirname(NJS_UPSTREAM), { recursive: true, force: true });
    fs.mkdirSync(path.dirname(NJS_UPSTREAM), { mode: 0o755 });
    fs.writeFileSync(NJS_UPSTREAM, `upstream ${app} { server 127.0.0.1:${PORTS.blue}; }\n`);
    await sh(`chown -R ec2-user:ec2-user ${path.dirname(NJS_UPSTREAM)}`);
    njs = await startNjsNginx(path.join(wrapperDir, 'nginx'), {
      listenPort: PORTS.njsListen,
      upstreamFile: NJS_UPSTREAM
    });
  }
  const runs: Run[] = [];
  const link = await DelayLink.start(PORTS.proxy, { host: SANDBOX.sshHost, port: SANDBOX.sshPort });
  const load: number[] = [];
  try {
    // Warm-up (both versions cached, a live colour and a kept standby), then rounds that take every delay in turn,
    // so the shared machine's load varies alike for all of them.
    await once(0, 'deploy', 'v1');
    await once(0, 'deploy', 'v2');
    for (let i = 0; i < ROUNDS; i++) {
      for (const delayMs of DELAYS) {
        link.delayMs = delayMs;
        load.push(os.loadavg()[0]);
        // v2 is live and v1 kept: deploy v1, then roll back to the kept v2 (so every round starts alike)
        runs.push(await once(delayMs, 'deploy', 'v1'));
        runs.push(await once(delayMs, 'rollback', ''));
      }
    }
  } finally {
    await link.close();
    await njs?.stop();
    await cleanupApp(app);
    fs.rmSync(path.dirname(NJS_UPSTREAM), { recursive: true, force: true });
    fs.rmSync(wrapperDir, { recursive: true, force: true });
  }
  const out = [
    `Deploy (image cached, verify-seconds 0, nginx ${SWITCH === 'njs' ? 'with nginx-switch njs (no reload)' : '(reload)'}, health-interval default), median of ${ROUNDS}; machine load average during the runs ${Math.min(...load).toFixed(1)}–${Math.max(...load).toFixed(1)} (2 cores):`,
    table(runs, 'deploy'),
    '',
    'Rollback to the kept standby, median:',
    table(runs, 'rollback'),
    '',
    `Goals: ≤ ${GOALS.deployRoundTrips} RTs outside health per deploy (connect included), ≤ ${GOALS.rollbackRoundTrips} per rollback, health lag ≤ ${GOALS.healthLagMs} ms + 1 RT, wall − boot − pull ≤ 300 ms + 12 RTs (${DELAYS.map((d) => `${300 + 24 * d} ms @${d}`).join(', ')}).`
  ].join('\n');
  console.log(out);
  fs.mkdirSync(path.join(REPO_ROOT, 'bench', 'results'), { recursive: true });
  const name = SWITCH === 'njs' ? 'distance-njs' : 'distance';
  fs.writeFileSync(
    path.join(REPO_ROOT, 'bench', 'results', `${name}.json`),
    JSON.stringify({ delays: DELAYS, readyMs: READY_MS, switch: SWITCH, runs }, null, 2)
  );
  fs.writeFileSync(path.join(REPO_ROOT, 'bench', 'results', `${name}.md`), `${out}\n`);
  expect(runs.length).toBeGreaterThan(0);
});
