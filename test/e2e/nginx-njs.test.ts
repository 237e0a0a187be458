/**
 * End to end, traffic: nginx with nginx-switch: njs — the bundled dist/ run with Node 24 over real SSH against a real
 * nginx with the official njs module (test/e2e/njs-nginx.ts: an nginx of this test only, configured as the README
 * says), which reads the live port from the action's upstream file at every request. Under continuous load from the
 * four client kinds at once (fresh connections, pooled keep-alive never retrying, slow 2–5 s requests on pooled
 * keep-alive, event streams): deploy, second deploy, rollback and a failing deploy fail no request of any kind, and
 * nginx is never reloaded (its master and workers are the same processes throughout; the reload command would fail).
 * The old colour is drained by nginx's connections to it, by the job on the host after the run: a stream longer than
 * drain-seconds keeps flowing from the old colour until the drain ends, then ends.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  expectCleanSwitch,
  expectCleanSwitchBack,
  expectNoFailures,
  expectOneSwitch,
  openStream,
  underMix,
  writeStreamCgi
} from './clients.js';
import {
  drainJobDone,
  httpGet,
  runAction,
  SANDBOX,
  sandboxInputs,
  sh,
  shOk,
  waitFor,
  type RunActionResult
} from './harness.js';
import { startNjsNginx, type NjsNginx } from './njs-nginx.js';

const APP = 'h9-njs';
const LISTEN = 19120;
const PORTS = { blue: 19121, green: 19122 };
/** Outside /etc/nginx/bluegreen: the sandbox's shared nginx includes that directory and must not see this test. */
const UPSTREAM_DIR = '/tmp/h9-njs-upstream';
const UPSTREAM = `${UPSTREAM_DIR}/${APP}.conf`;
const STREAM_EVENTS = 25;

let dir: string;
let streamArgs: string;
let nginx: NjsNginx;
let procs: { master: string; workers: string[] };

function inputs(tag: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...sandboxInputs(APP),
    image: SANDBOX.image,
    tag,
    traffic: 'nginx',
    'nginx-switch': 'njs',
    'nginx-upstream-file': UPSTREAM,
    // never run in njs mode: a run that reloaded would fail its switch
    'nginx-reload-command': 'echo "nginx-reload-command must not run with nginx-switch: njs" >&2; exit 99',
    'nginx-health-url': `http://127.0.0.1:${LISTEN}/health`,
    'blue-port': String(PORTS.blue),
    'green-port': String(PORTS.green),
    'docker-run-args': streamArgs,
    'drain-seconds': '10',
    'health-interval-seconds': '0.2',
    'health-timeout-seconds': '20',
    'verify-seconds': '2',
    ...extra
  };
}

const run = (tag: string, extra: Record<string, string> = {}) => runAction(inputs(tag, extra), { timeoutMs: 240_000 });

async function removeApp(): Promise<void> {
  await sh(`ids=$(docker ps -aq --filter label=bluegreen.app=${APP}); [ -z "$ids" ] || docker rm -f $ids >/dev/null`);
  fs.rmSync(`/home/ec2-user/.bluegreen/${APP}`, { recursive: true, force: true });
}

/** The finishing job's log on the host, once it is done (it drains and stops the old colour after the run). */
async function drainLog(): Promise<string> {
  await drainJobDone(APP);
  return fs.readFileSync(`/home/ec2-user/.bluegreen/${APP}/drain.log`, 'utf8');
}

async function serving(): Promise<string> {
  return (await httpGet(nginx.url, { timeoutMs: 3000 })).body.trim();
}

function expectOk(r: RunActionResult): void {
  if (r.code !== 0) throw new Error(`action failed (${r.code}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
}

async function expectNotReloaded(): Promise<void> {
  expect({ master: nginx.master(), workers: await nginx.workers() }).toEqual(procs);
}

const underLoad = (fn: () => Promise<RunActionResult>) =>
  underMix(
    nginx.url,
    { fresh: 2, pooled: 2, slow: 2, stream: 2, slowSeconds: [2, 3, 4, 5], streamEvents: STREAM_EVENTS },
    'njs e2e',
    fn
  );

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h9-njs-'));
  streamArgs = writeStreamCgi(dir);
  await removeApp();
  // as an operator would before the first deploy: the upstream file (owned by the SSH user) points at blue
  fs.rmSync(UPSTREAM_DIR, { recursive: true, force: true });
  fs.mkdirSync(UPSTREAM_DIR, { mode: 0o755 });
  fs.writeFileSync(UPSTREAM, `upstream ${APP} { server 127.0.0.1:${PORTS.blue}; }\n`);
  await shOk(`chown -R ec2-user:ec2-user ${UPSTREAM_DIR}`);
  nginx = await startNjsNginx(path.join(dir, 'nginx'), { listenPort: LISTEN, upstreamFile: UPSTREAM });
  procs = { master: nginx.master(), workers: await nginx.workers() };
  expect(procs.workers).toHaveLength(2);
}, 120_000);

afterAll(async () => {
  await nginx?.stop();
  await removeApp();
  fs.rmSync(UPSTREAM_DIR, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('traffic: nginx, nginx-switch: njs', () => {
  test('first deploy: nginx serves v1 without a reload', async () => {
    const r = await run('v1');
    expectOk(r);
    expect(await serving()).toBe('v1');
    expect(fs.readFileSync(UPSTREAM, 'utf8')).toMatch(
      new RegExp(`server 127\\.0\\.0\\.1:${PORTS[r.outputs['active-color'] as 'blue' | 'green']};`)
    );
    await expectNotReloaded();
  }, 300_000);

  test('deploy v2 under load: no failed request of any kind, nginx not reloaded, the old colour drained by its connections', async () => {
    const { res, load } = await underLoad(() => run('v2'));
    expectOk(res);
    expectCleanSwitch(load, 'v1', 'v2');
    // streams and slow requests opened before the switch finished on v1 (the job's drain waited for them)
    expect(load.stream.versions.v1).toBeGreaterThan(0);
    expect(load.slow.versions.v1).toBeGreaterThan(0);
    expect(res.stdout).toMatch(/no reload: nginx reads the file at every request/);
    expect(await drainLog()).toMatch(/@@drained \d+\n@@stop\n@@stopped/);
    expect(await serving()).toBe('v2');
    await expectNotReloaded();
  }, 300_000);

  test('second deploy v3 under load: no failed request of any kind', async () => {
    const { res, load } = await underLoad(() => run('v3'));
    expectOk(res);
    expectNoFailures(load);
    expectOneSwitch(load.pooled_, 'v2', 'v3');
    expect(await serving()).toBe('v3');
    await expectNotReloaded();
  }, 300_000);

  test('rollback under load: back to v2, no failed request of any kind', async () => {
    const { res, load } = await underLoad(() => run('', { command: 'rollback' }));
    expectOk(res);
    expectNoFailures(load);
    expectOneSwitch(load.pooled_, 'v3', 'v2');
    expect(await serving()).toBe('v2');
    await expectNotReloaded();
  }, 300_000);

  test('failing deploy under load: the candidate never takes traffic, v2 keeps serving', async () => {
    const { res, load } = await underLoad(() => run('unhealthy', { 'health-timeout-seconds': '3' }));
    expect(res.code).not.toBe(0);
    expect(res.stdout).toMatch(/health failed/);
    expectNoFailures(load);
    expect(load.fresh_.transitions).toEqual(['v2']);
    expect(Object.keys(load.stream.versions)).toEqual(['v2']);
    expect(await serving()).toBe('v2');
    await expectNotReloaded();
  }, 300_000);

  test('a deploy that turns unhealthy after the switch is switched back without a reload: fresh and pooled clients see no failure', async () => {
    await expectCleanSwitchBack(nginx.url, () => run('degrade', { 'verify-seconds': '8' }));
    expect(await serving()).toBe('v2');
    await expectNotReloaded();
  }, 300_000);

  test('a stream longer than drain-seconds flows from the old colour until the drain ends, then ends', async () => {
    let first!: () => void;
    const flowing = new Promise<void>((res) => (first = res));
    const stream = openStream(nginx.url, 150, { onEvent: () => first() });
    await flowing;
    const r = await run('v3', { 'drain-seconds': '4' });
    const s = await stream;
    expectOk(r);
    expect(await drainLog()).toMatch(/@@drain-timeout 1\n@@stop\n@@stopped/);
    const m = JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
    const sw = (m.hosts[0].steps as Array<{ name: string; startedAt: string; durationMs: number }>).find(
      (x) => x.name === 'switch'
    )!;
    expect({ versions: [...new Set(s.versions)], ended: s.ended, status: s.status }).toEqual({
      versions: ['v2'],
      ended: false,
      status: 200
    });
    expect(s.lastAt).toBeGreaterThan(Date.parse(sw.startedAt) + sw.durationMs);
    process.stdout.write(`[njs e2e] long stream ended "${s.how}" after ${s.events} events\n`);
    expect(s.how).toBe('closed before the end marker');
    await waitFor(async () => (await serving()) === 'v3', { timeoutMs: 5000, what: 'v3' });
    await expectNotReloaded();
  }, 300_000);
});
