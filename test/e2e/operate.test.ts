/**
 * End to end for the operate commands: rollback (kept standby and rollback-to), status, and the
 * post-switch verification window, with the committed dist/ on the sandbox host.
 */
import fs from 'node:fs';
import {
  cleanupApp,
  dockerPs,
  drainJobDone,
  httpGet,
  LoadGenerator,
  prepareApp,
  outcome,
  runAction,
  SANDBOX,
  sh,
  type RunActionResult
} from './harness.js';

const app = 'e2e-operate';
const ports = { blue: 18241, green: 18242 };
let url: string;

function run(inputs: Record<string, string>): Promise<RunActionResult> {
  return runAction({
    hosts: SANDBOX.host,
    'ssh-private-key': SANDBOX.privateKey,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'app-name': app,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'blue-port': String(ports.blue),
    'green-port': String(ports.green),
    'verify-seconds': '1',
    'upload-artifacts': 'false',
    ...inputs
  });
}
const deploy = (tag: string, extra: Record<string, string> = {}) => run({ image: `${SANDBOX.image}:${tag}`, ...extra });
const rollback = (extra: Record<string, string> = {}) => run({ command: 'rollback', ...extra });

interface StatusJson {
  schemaVersion: number;
  hosts: Array<{
    host: string;
    reachable: boolean;
    live?: string;
    upstream?: { port?: number; color?: string; exists: boolean };
    colors: Record<
      string,
      {
        exists: boolean;
        state?: string;
        role: string;
        image?: string;
        digest?: string;
        health?: { ok: boolean; status?: number };
        restartCount?: number;
        uptimeSeconds?: number;
        memUsage?: string;
        logs?: string;
      }
    >;
    history: Array<{ command: string; result: string; image: string }>;
    lock: { held: boolean };
    disk?: { usedPercent: number };
    findings: Array<{ level: string; message: string }>;
  }>;
}
async function status(extra: Record<string, string> = {}): Promise<{ r: RunActionResult; s: StatusJson['hosts'][0] }> {
  await drainJobDone(app);
  const r = await run({ command: 'status', ...extra });
  expect(r.code).toBe(0);
  const json = JSON.parse(r.outputs['status-json']) as StatusJson;
  expect(json.schemaVersion).toBe(1);
  return { r, s: json.hosts[0] };
}
const upstreamFile = () => fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8');

beforeAll(async () => {
  url = await prepareApp(app, { listenPort: 18240, bluePort: ports.blue });
});
afterAll(() => cleanupApp(app));

test('rollback with nothing kept is refused, saying what is there', async () => {
  expect((await deploy('v1')).outputs.result).toBe('success');
  const r = await rollback();
  expect(r.code).toBe(1);
  expect(r.outputs.result).toBe('failed');
  expect(r.stdout).toMatch(
    /detect failed on 127\.0\.0\.1:2222: nothing to roll back to on this host: no green container is kept; only blue is there \(e2e-operate-blue: 127\.0\.0\.1:5000\/demo:v1, running\)/
  );
  expect((await httpGet(`${url}/`)).body).toBe('v1');
  const { s } = await status();
  expect(s.findings).toContainEqual({
    level: 'warning',
    message: expect.stringContaining('no standby container is kept')
  });
});

test('status after two deploys reports live and standby from the real state, and changes nothing', async () => {
  expect((await deploy('v2')).outputs.result).toBe('success');
  const before = upstreamFile();
  const containersBefore = await dockerPs(app);
  const { r, s } = await status({ 'status-log-lines': '5' });
  expect(outcome(r)).toBe('success');
  expect(r.outputs['active-color']).toBe('green');
  expect(s.live).toBe('green');
  expect(s.upstream).toMatchObject({ exists: true, port: ports.green, color: 'green' });
  expect(s.colors.green).toMatchObject({
    exists: true,
    state: 'running',
    role: 'live',
    image: `${SANDBOX.image}:v2`,
    health: { ok: true, status: 200 },
    restartCount: 0
  });
  expect(s.colors.green.digest).toMatch(/^sha256:/);
  expect(s.colors.green.memUsage).toMatch(/B/);
  expect(s.colors.green.logs).toContain('demo v2');
  expect(s.colors.blue).toMatchObject({ exists: true, state: 'exited', role: 'standby', image: `${SANDBOX.image}:v1` });
  expect(s.history.slice(0, 3).map((h) => [h.command, h.result, h.image])).toEqual(
    [
      ['deploy', 'success', `${SANDBOX.image}:v2`],
      ['rollback', 'failed', ''],
      ['deploy', 'success', `${SANDBOX.image}:v1`]
    ].map(([c, res, img]) => (img ? [c, res, img] : [c, res, expect.any(String)]))
  );
  expect(s.lock.held).toBe(false);
  expect(s.disk?.usedPercent).toBeGreaterThan(0);
  expect(s.findings.filter((f) => f.level !== 'info')).toEqual([]);
  expect(r.summary).toMatch(/^## ✅ e2e-operate status — 1 host\(s\)/);
  expect(r.summary).toContain('| green | live | running |');
  expect(r.summary).toContain('Recent log lines of green');
  // read-only: nothing changed
  expect(upstreamFile()).toBe(before);
  expect(await dockerPs(app)).toEqual(containersBefore);
});

test('rollback under load: zero failed requests (keep-alive retries after the reload counted apart), v1 served again, v2 kept stopped', async () => {
  const load = new LoadGenerator(url, { concurrency: 6, keepAlive: 'mixed' }).start();
  await new Promise((r) => setTimeout(r, 300));
  const r = await rollback();
  const atReturn = { ...load.current.bodies };
  await new Promise((r) => setTimeout(r, 300));
  const stats = await load.stop();
  expect(r.code).toBe(0);
  expect(outcome(r)).toBe('success');
  expect(r.outputs['active-color']).toBe('blue');
  expect(r.outputs['previous-color']).toBe('green');
  expect(r.outputs.image).toMatch(/^127\.0\.0\.1:5000\/demo:v1@sha256:/);
  expect(stats.failed).toBe(0);
  expect(stats.bodies.v2).toBe(atReturn.v2);
  expect(stats.bodies.v1).toBeGreaterThan(atReturn.v1 ?? 0);
  const m = JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
  expect(m.command).toBe('rollback');
  expect(m.hosts[0].steps.map((s: { name: string }) => s.name)).not.toContain('pull');
  expect(r.summary.split('\n')[0]).toBe('## ✅ e2e-operate rolled back');
  const cs = await dockerPs(app);
  expect(cs.map((c) => [c.name, c.state, c.labels['bluegreen.image']]).sort()).toEqual([
    [`${app}-blue`, 'running', `${SANDBOX.image}:v1`],
    [`${app}-green`, 'exited', `${SANDBOX.image}:v2`]
  ]);
  const { s } = await status();
  expect(s.live).toBe('blue');
  expect(s.history[0]).toMatchObject({ command: 'rollback', result: 'success', image: `${SANDBOX.image}:v1` });
});

test('rollback-to the kept version is a plain rollback; rollback-to an older tag deploys it', async () => {
  const back = await rollback({ 'rollback-to': 'v2' });
  expect(outcome(back)).toBe('success');
  expect((await httpGet(`${url}/`)).body).toBe('v2');
  expect(back.stdout).toContain('to the kept green');
  const noImage = await rollback({ 'rollback-to': 'v3' });
  expect(noImage.outputs.result).toBe('failed');
  expect(noImage.stdout).toContain('rollback-to v3 is not the kept standby');
  expect((await httpGet(`${url}/`)).body).toBe('v2');
  const older = await rollback({ 'rollback-to': 'v3', image: SANDBOX.image });
  expect(outcome(older)).toBe('success');
  expect(older.stdout).toMatch(/rollback-to v3: not the kept standby .*deploying 127\.0\.0\.1:5000\/demo:v3/);
  expect((await httpGet(`${url}/`)).body).toBe('v3');
  const { s } = await status();
  expect(s.colors[s.live!].image).toBe(`${SANDBOX.image}:v3`);
  expect(s.colors[s.live === 'blue' ? 'green' : 'blue']).toMatchObject({
    state: 'exited',
    image: `${SANDBOX.image}:v2`
  });
});

test('an image that passes health and fails shortly after the switch is switched back during verify', async () => {
  const live = (await httpGet(`${url}/`)).body;
  const r = await deploy('degrade', { 'verify-seconds': '8' });
  expect(r.code).toBe(1);
  expect(r.outputs.result).toBe('rolled-back');
  expect(r.stdout).toMatch(
    /verify failed on 127\.0\.0\.1:2222: e2e-operate-(blue|green) turned unhealthy [\d.]+ s after the switch \(GET \/health: HTTP 500, twice in a row\)/
  );
  expect((await httpGet(`${url}/`)).body).toBe(live);
  const m = JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
  const names = m.hosts[0].steps.map((s: { name: string; status: string }) => `${s.name}:${s.status}`);
  expect(names).toEqual(expect.arrayContaining(['health:ok', 'switch:ok', 'verify:failed', 'switch-back:ok']));
  expect(r.summary).toContain('| verify |');
  // the live v3 serves again and the standby v2 survived the failed deploy
  const cs = await dockerPs(app);
  expect(cs.map((c) => [c.state, c.labels['bluegreen.image']]).sort()).toEqual([
    ['exited', `${SANDBOX.image}:v2`],
    ['running', `${SANDBOX.image}:v3`]
  ]);
});

test('keep-images prunes old images of the repository but keeps what blue and green use', async () => {
  const r = await deploy('v1', { 'keep-images': '1' });
  expect(outcome(r)).toBe('success');
  expect(r.stdout).toMatch(/prune \d+ image reference\(s\) \(keep-images 1\)/);
  // the pruning is part of the job on the host that drains and stops the old colour
  await drainJobDone(app);
  const left = (await sh(`docker images --no-trunc --format '{{.ID}}' ${SANDBOX.image} | sort -u`)).stdout
    .trim()
    .split('\n');
  // images still used by any container on the host (ours, or another app's) cannot be removed
  const used = new Set(
    (await sh(`docker ps -aq | xargs -r docker inspect --format '{{.Image}}'`)).stdout.trim().split('\n')
  );
  for (const c of await dockerPs(app))
    expect(left).toContain((await sh(`docker inspect --format '{{.Image}}' ${c.name}`)).stdout.trim());
  expect(left.filter((id) => !used.has(id))).toEqual([]);
});

test('background drain: a slow request outlives the run that switched away from it, and the next deploy waits for the drain', async () => {
  const first = await deploy('v1');
  expect(outcome(first)).toBe('success');
  const live = (await httpGet(`${url}/`)).body;
  // in flight on the current colour while the next deploy switches away from it
  let slowDone = false;
  const slow = httpGet(`${url}/cgi-bin/slow?6`, { timeoutMs: 20_000 }).finally(() => (slowDone = true));
  await new Promise((r) => setTimeout(r, 300));
  const next = await deploy(live === 'v1' ? 'v2' : 'v1');
  expect(outcome(next)).toBe('success');
  // the run ended while the old colour still had the request (the job on the host keeps it until it is done)
  expect(slowDone).toBe(false);
  const again = await deploy(live);
  expect(outcome(again)).toBe('success');
  expect(again.stdout).toContain(
    "the previous deploy's old colour is still finishing its requests (drain job on the host); waiting"
  );
  const s = await slow;
  expect(s.status).toBe(200);
  expect(s.body.trim()).toBe(live);
  await drainJobDone(app);
  expect(fs.readFileSync(`/home/ec2-user/.bluegreen/${app}/drain.log`, 'utf8')).toMatch(
    /@@drained\n@@stop\n@@stopped\n@@cleanup\n(removed .*\n)*exit 0\n/
  );
}, 120_000);
