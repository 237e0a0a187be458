/**
 * End to end, traffic: haproxy — the bundled dist/ run with Node 24 against the sandbox's real HAProxy
 * (test/sandbox/haproxy-up.sh: Debian's haproxy, backend e2e-hx-web with servers blue/green, admin socket group
 * ec2-user, server-state-file), reached over the real SSH connection's stream-local forward. Under continuous load
 * from four client kinds at once — fresh connections, pooled keep-alive connections that never retry, slow requests,
 * long-lived event streams — deploy, second deploy, rollback and a failing deploy each fail no request of any kind,
 * HAProxy's process is the same throughout, and after a restart of HAProxy the live colour still serves.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expectCleanSwitch, expectNoFailures, underMix, writeStreamCgi, type MixOptions } from './clients.js';
import {
  dockerPs,
  httpGet,
  LoadGenerator,
  REPO_ROOT,
  runAction,
  SANDBOX,
  sandboxInputs,
  sh,
  shOk,
  waitFor,
  type RunActionResult
} from './harness.js';

const APP = 'e2e-hx-web';
const FRONT = 'http://127.0.0.1:19610';
const PORTS = { blue: 19611, green: 19612 };
const SOCKET = '/run/bluegreen-haproxy/admin.sock';
const STATE_FILE = '/var/lib/bluegreen-haproxy/server-state';
const PIDFILE = path.join(REPO_ROOT, 'test/sandbox/.state/haproxy/haproxy.pid');
const UP = `bash ${path.join(REPO_ROOT, 'test/sandbox/haproxy-up.sh')}`;
/** Events per stream (one every 0.2 s): a stream lasts ~5 s, less than drain-seconds. */
const STREAM_EVENTS = 25;

let dir: string;
let streamArgs: string;

function inputs(tag: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...sandboxInputs(APP),
    image: SANDBOX.image,
    tag,
    traffic: 'haproxy',
    'haproxy-socket': SOCKET,
    'haproxy-state-file': STATE_FILE,
    'blue-port': String(PORTS.blue),
    'green-port': String(PORTS.green),
    // The stream CGI (the demo image has none): a file of this test, mounted read-only.
    'docker-run-args': streamArgs,
    'drain-seconds': '10',
    'health-interval-seconds': '0.2',
    'health-timeout-seconds': '20',
    'verify-seconds': '2',
    'wait-for-drain': 'true',
    ...extra
  };
}

/** Removes the app's containers and its state dir on the host (no nginx is involved: nothing to reload). */
async function removeApp(): Promise<void> {
  await sh(`ids=$(docker ps -aq --filter label=bluegreen.app=${APP}); [ -z "$ids" ] || docker rm -f $ids >/dev/null`);
  fs.rmSync(`/home/ec2-user/.bluegreen/${APP}`, { recursive: true, force: true });
}

function run(tag: string, extra: Record<string, string> = {}): Promise<RunActionResult> {
  return runAction(inputs(tag, extra), { timeoutMs: 240_000 });
}

async function haproxyPid(): Promise<string> {
  const pid = fs.readFileSync(PIDFILE, 'utf8').trim();
  expect(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toBe('haproxy');
  return pid;
}

/** One command on HAProxy's admin socket (the test runs as root on the host). */
function cli(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const c = new net.Socket();
    c.on('data', (d: Buffer) => (out += d.toString()));
    c.on('end', () => resolve(out));
    c.on('error', reject);
    c.connect(SOCKET, () => c.end(`${command}\n`));
  });
}

async function serverStates(): Promise<Record<string, { op: number; admin: number }>> {
  const out = await cli(`show servers state ${APP}`);
  const res: Record<string, { op: number; admin: number }> = {};
  for (const l of out.split('\n')) {
    const f = l.trim().split(/\s+/);
    if (f[1] === APP) res[f[3]] = { op: Number(f[5]), admin: Number(f[6]) };
  }
  return res;
}

/** The four client kinds at once (test/e2e/clients.ts): fresh, pooled keep-alive never retrying, slow 2–5 s on
 * pooled keep-alive connections, and event streams of ~5 s (less than drain-seconds). */
const MIX: MixOptions = {
  fresh: 2,
  pooled: 2,
  slow: 2,
  stream: 2,
  slowSeconds: [2, 3, 4, 5],
  streamEvents: STREAM_EVENTS
};

async function serving(): Promise<string> {
  return (await httpGet(FRONT, { timeoutMs: 3000 })).body.trim();
}

/** A deploy/rollback under the four kinds of load; returns the action's result and the load's. */
async function underLoad(fn: () => Promise<RunActionResult>) {
  await waitFor(async () => (await serving()) !== '', { timeoutMs: 5000, what: 'the app to serve' });
  return underMix(FRONT, MIX, 'haproxy e2e', fn);
}

function expectOk(r: RunActionResult): void {
  if (r.code !== 0) throw new Error(`action failed (${r.code}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
}

beforeAll(async () => {
  await shOk(UP, { timeoutMs: 120_000 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-hx-'));
  streamArgs = writeStreamCgi(dir);
  await removeApp();
}, 180_000);

afterAll(async () => {
  await removeApp();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('traffic: haproxy', () => {
  let pid: string;

  test('first deploy: HAProxy serves v1 from blue, green in maint, the state file says so', async () => {
    pid = await haproxyPid();
    const r = await run('v1');
    expectOk(r);
    expect(r.outputs['active-color']).toBeDefined();
    const live = r.outputs['active-color'];
    expect(await serving()).toBe('v1');
    const st = await serverStates();
    const other = live === 'blue' ? 'green' : 'blue';
    expect(st[live]).toEqual({ op: 2, admin: 0 });
    expect(st[other].admin & 1).toBe(1);
    const file = fs.readFileSync(STATE_FILE, 'utf8');
    expect(file).toMatch(new RegExp(`^\\d+ ${APP} \\d+ ${live} \\S+ 2 0 `, 'm'));
    expect(file).toMatch(new RegExp(`^\\d+ ${APP} \\d+ ${other} \\S+ \\d+ 1 `, 'm'));
  }, 300_000);

  test('deploy v2 under load: no failed request of any kind, same HAProxy process', async () => {
    const { res, load } = await underLoad(() => run('v2'));
    expectOk(res);
    expectCleanSwitch(load, 'v1', 'v2');
    // streams and slow requests opened before the switch finished on v1, later ones on v2
    expect(load.stream.versions.v1).toBeGreaterThan(0);
    expect(load.slow.versions.v1).toBeGreaterThan(0);
    expect(await serving()).toBe('v2');
    expect(await haproxyPid()).toBe(pid);
    expect(res.stdout).toMatch(/HAProxy sends new requests to e2e-hx-web\/\w+ only/);
    expect(res.outputs['cutover-ms']).toMatch(/^\d+$/);
    // the old colour was stopped (kept for rollback) only after HAProxy had no sessions left on it
    expect(res.stdout).toMatch(/has no sessions left/);
  }, 300_000);

  test('second deploy v3 under load: no failed request of any kind', async () => {
    const { res, load } = await underLoad(() => run('v3'));
    expectOk(res);
    expectCleanSwitch(load, 'v2', 'v3');
    expect(await serving()).toBe('v3');
    expect(await haproxyPid()).toBe(pid);
  }, 300_000);

  test('rollback under load: back to v2, no failed request of any kind', async () => {
    const { res, load } = await underLoad(() => run('', { command: 'rollback', image: SANDBOX.image }));
    expectOk(res);
    expectCleanSwitch(load, 'v3', 'v2');
    expect(await serving()).toBe('v2');
    expect(await haproxyPid()).toBe(pid);
  }, 300_000);

  test('failing deploy under load: the candidate never takes traffic, v2 keeps serving, the step names the cause', async () => {
    const { res, load } = await underLoad(() => run('unhealthy', { 'health-timeout-seconds': '3' }));
    expect(res.code).not.toBe(0);
    expect(res.stdout).toMatch(/health failed/);
    expectNoFailures(load);
    expect(load.fresh_.transitions).toEqual(['v2']);
    expect(Object.keys(load.stream.versions)).toEqual(['v2']);
    expect(await serving()).toBe('v2');
    expect(await haproxyPid()).toBe(pid);
    // the failed candidate's server is back in maint, the live one untouched
    const st = await serverStates();
    const live = Object.entries(st).find(([, s]) => s.admin === 0)?.[0];
    expect(live).toBeDefined();
    expect(Object.values(st).filter((s) => s.admin === 0)).toHaveLength(1);
    const containers = await dockerPs(APP);
    expect(containers.find((c) => c.name === `${APP}-${live}`)?.state).toBe('running');
  }, 300_000);

  test('a failing smoke test: the candidate never took traffic and its server is back in maint, not left in drain', async () => {
    const r = await run('v3', { 'smoke-test': 'echo "smoke: the candidate is not ready" >&2; exit 3' });
    expect(r.outputs.result).toBe('failed');
    expect(r.stdout).toMatch(/smoke-test failed/);
    expect(await serving()).toBe('v2');
    const st = await serverStates();
    const [live, cand] = Object.keys(st).sort((x, y) => st[x].admin - st[y].admin);
    // admin bits: 1 forced maint, 8 forced drain
    expect({ live: st[live].admin, candidateMaint: st[cand].admin & 1, candidateDrain: st[cand].admin & 8 }).toEqual({
      live: 0,
      candidateMaint: 1,
      candidateDrain: 0
    });
    // the failed candidate is gone and the standby it had replaced is back, stopped (this run's id is on neither)
    const deployId = r.outputs['deploy-id'];
    expect(deployId).toBeTruthy();
    const cs = await dockerPs(APP);
    expect(cs.find((c) => c.name === `${APP}-${cand}`)?.state).toBe('exited');
    expect(cs.filter((c) => c.labels['bluegreen.deploy-id'] === deployId)).toEqual([]);
  }, 120_000);

  test('an unreachable socket fails the deploy at detect, naming the cause; nothing changes', async () => {
    const before = await serverStates();
    const r = await run('v3', { 'haproxy-socket': '/run/bluegreen-haproxy/missing.sock' });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(
      /detect failed.*the HAProxy admin socket \/run\/bluegreen-haproxy\/missing\.sock does not exist on the host/
    );
    expect(await serverStates()).toEqual(before);
    expect(await serving()).toBe('v2');
  }, 120_000);

  test('a deploy that turns unhealthy after the switch is switched back: fresh and pooled clients see no failure', async () => {
    // degrade: healthy at start, /health answers 500 from 3 s on; verify-seconds covers that. The degrade image serves
    // static files only (no cgi-bin), so the slow and stream clients are left out here: they would get its 404.
    const fresh = new LoadGenerator(FRONT, { concurrency: 2, keepAlive: false, record: true }).start();
    const pooled = new LoadGenerator(FRONT, { concurrency: 2, keepAlive: true, retry: false, record: true }).start();
    await new Promise((r) => setTimeout(r, 1000));
    const res = await run('degrade', { 'verify-seconds': '8' });
    await new Promise((r) => setTimeout(r, 1000));
    const [f, p] = await Promise.all([fresh.stop(), pooled.stop()]);
    expect(res.code).not.toBe(0);
    expect(res.outputs.result).toBe('rolled-back');
    expect(res.stdout).toMatch(/verify failed/);
    expect({ fresh: f.failed, pooledNoRetry: p.failed, errors: [...f.errors, ...p.errors].slice(0, 5) }).toEqual({
      fresh: 0,
      pooledNoRetry: 0,
      errors: []
    });
    expect(await serving()).toBe('v2');
    expect(await haproxyPid()).toBe(pid);
  }, 300_000);

  test('a restart of HAProxy keeps the live colour serving (server-state-file)', async () => {
    const before = await serverStates();
    await shOk(`${UP} restart`, { timeoutMs: 60_000 });
    const after = await haproxyPid();
    expect(after).not.toBe(pid);
    const live = Object.entries(before).find(([, s]) => s.admin === 0)![0];
    await waitFor(async () => (await serving().catch(() => '')) === 'v2', {
      timeoutMs: 10_000,
      what: 'v2 to serve after the restart'
    });
    const st = await serverStates();
    expect(st[live].admin).toBe(0);
    expect(st[live === 'blue' ? 'green' : 'blue'].admin & 1).toBe(1);
    // and the next deploy works from there
    const r = await run('v3');
    expectOk(r);
    expect(await serving()).toBe('v3');
    expect(await haproxyPid()).toBe(after);
  }, 300_000);

  test("status reports HAProxy's view per colour", async () => {
    const r = await run('', { command: 'status' });
    expectOk(r);
    expect(r.stdout).toMatch(/haproxy e2e-hx-web\/(blue|green): ready, up, \d+ session\(s\), check L7OK/);
    expect(r.stdout).toMatch(/haproxy e2e-hx-web\/(blue|green): maint/);
  }, 120_000);
});

describe('traffic: haproxy when sshd forbids stream-local forwarding', () => {
  // A second sshd of this test only (port 19650, the sandbox's keys, AllowStreamLocalForwarding no).
  const PORT = 19650;
  const hx = path.join(REPO_ROOT, 'test/sandbox/.state/haproxy');
  const config = path.join(hx, 'sshd-no-streamlocal.config');
  const pidFile = path.join(hx, 'sshd-no-streamlocal.pid');

  beforeAll(async () => {
    const base = fs.readFileSync(path.join(REPO_ROOT, 'test/sandbox/.state/sshd_config'), 'utf8');
    fs.writeFileSync(
      config,
      `${base.replace(/^ListenAddress .*$/m, `ListenAddress 127.0.0.1:${PORT}`).replace(/^PidFile .*$/m, `PidFile ${pidFile}`)}\nAllowStreamLocalForwarding no\n`
    );
    await shOk(
      `/usr/sbin/sshd -t -f ${config} && /usr/sbin/sshd -f ${config} -E ${path.join(hx, 'sshd-no-streamlocal.log')}`
    );
    await waitFor(async () => (await sh(`ss -Hltn 'sport = :${PORT}' | grep -q .`)).code === 0, {
      timeoutMs: 10_000,
      what: 'the second sshd to listen'
    });
  }, 60_000);

  afterAll(() => {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    if (pid > 1) process.kill(pid);
  });

  test('the deploy goes through socat on the host instead, and says so', async () => {
    const r = await run('v2', {
      hosts: `127.0.0.1:${PORT}`,
      'ssh-known-hosts': SANDBOX.knownHosts.replace(/\[127\.0\.0\.1\]:2222/g, `[127.0.0.1]:${PORT}`)
    });
    expectOk(r);
    expect(r.stdout).toMatch(/sshd does not allow stream-local forwarding .*using socat or nc -U on the host/);
    expect(await serving()).toBe('v2');
  }, 300_000);
});
