/**
 * End to end for many hosts: three independent sandbox hosts (own netns, mount namespace, sshd, dockerd and nginx)
 * reachable only through a bastion, the committed dist/ under Node 24, continuous HTTP load on every host.
 */
import fs from 'node:fs';
import { outcome, runAction, SANDBOX, type LoadResult, type RunActionResult } from './harness.js';
import {
  cleanupFleetApp,
  dockerPsOn,
  fleetInputs,
  fleetVersions,
  loadFleet,
  onHostOk,
  prepareFleetApp,
  underFleetLoad,
  type Fleet
} from './fleet-harness.js';

const app = 'e2e-fleet';
const NAMES = ['bgf-h1', 'bgf-h2', 'bgf-h3'];
let fleet: Fleet;
let urls: Record<string, string>;
const ip = (name: string) => fleet.hosts.find((h) => h.name === name)!.host;

function run(inputs: Record<string, string>, names = NAMES): Promise<RunActionResult> {
  return runAction({
    ...fleetInputs(fleet, names),
    'ssh-private-key': SANDBOX.privateKey,
    'app-name': app,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'blue-port': '18301',
    'green-port': '18302',
    'verify-seconds': '0',
    'upload-artifacts': 'false',
    ...inputs
  });
}
const deploy = (tag: string, extra: Record<string, string> = {}, names = NAMES) =>
  run({ image: `${fleet.registry}/demo:${tag}`, ...extra }, names);

interface Metrics {
  rollout: { strategy: string; onHostFailure: string } | null;
  hosts: Array<{
    host: string;
    result: string;
    batch: number;
    startedAt: string;
    abortedBy: string | null;
    steps: Array<{ name: string; startedAt: string; endedAt: string; status: string }>;
  }>;
}
const metrics = (r: RunActionResult): Metrics =>
  JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8')) as Metrics;
const hostLabel = (name: string) => `${ip(name)}:22`;

const versions = () => fleetVersions(urls, NAMES);
const underLoad = <T>(fn: () => Promise<T>) => underFleetLoad(urls, NAMES, fn);

/** Waits until the background drain jobs (wait-for-drain: false) on every host have stopped the old colours. */
async function drained(): Promise<void> {
  await Promise.all(
    NAMES.map((n) =>
      onHostOk(n, `f=/home/ec2-user/.bluegreen/${app}/drain.lock; [ ! -e "$f" ] || flock -w 60 "$f" true`)
    )
  );
}

function expectNoFailedRequests(loads: Record<string, LoadResult>): void {
  for (const [n, l] of Object.entries(loads)) {
    expect({ host: n, failed: l.failed, errors: l.errors.slice(0, 3) }).toEqual({ host: n, failed: 0, errors: [] });
    expect(l.ok).toBeGreaterThan(0);
  }
}

beforeAll(async () => {
  fleet = await loadFleet({ hosts: 3 });
  ({ urls } = await prepareFleetApp(app, NAMES));
  const first = await deploy('v1');
  expect(outcome(first)).toBe('success');
}, 180_000);
afterAll(() => cleanupFleetApp(app));

test('the runner cannot reach the hosts directly: only through the bastion', async () => {
  const r = await runAction({
    ...fleetInputs(fleet, NAMES),
    'jump-host': '',
    'jump-known-hosts': '',
    'ssh-connect-timeout-seconds': '3',
    'ssh-connect-retries': '0',
    'ssh-private-key': SANDBOX.privateKey,
    'app-name': app,
    command: 'status',
    'upload-artifacts': 'false'
  });
  expect(r.code).not.toBe(0);
  expect(r.stdout).toMatch(/unreachable from the runner|no SSH handshake/);
});

test('parallel: all hosts switch to v2 under load with no failed request (keep-alive retries after a reload counted apart), then all commit', async () => {
  const { value: r, loads } = await underLoad(() => deploy('v2'));
  expect(r.code).toBe(0);
  expect(outcome(r)).toBe('success');
  expect(r.outputs['succeeded-hosts'].split(',').sort()).toEqual(NAMES.map(hostLabel).sort());
  expect(r.outputs['failed-hosts']).toBe('');
  expectNoFailedRequests(loads);
  expect(await versions()).toEqual({ 'bgf-h1': 'v2', 'bgf-h2': 'v2', 'bgf-h3': 'v2' });
  const m = metrics(r);
  expect(m.rollout).toMatchObject({ strategy: 'parallel', onHostFailure: 'rollback-all' });
  // All-or-nothing: no host drains its old colour before every host is verified.
  const verified = m.hosts.map((h) => Date.parse(h.steps.find((s) => s.name === 'verify')!.endedAt));
  const drains = m.hosts.map((h) => Date.parse(h.steps.find((s) => s.name === 'drain')!.startedAt));
  expect(Math.min(...drains)).toBeGreaterThanOrEqual(Math.max(...verified));
  // Output grouped and prefixed per host; one summary row per host.
  for (const n of NAMES) {
    expect(r.stdout).toContain(`[${hostLabel(n)}]`);
    expect(r.summary).toContain(`| ${hostLabel(n)} |`);
  }
  // Each host has its own containers: v2 live on every host, v1 kept.
  for (const n of NAMES) {
    const cs = await dockerPsOn(n, app);
    expect(cs.find((c) => c.labels['bluegreen.image']?.endsWith(':v2'))?.state).toBe('running');
    expect(cs.some((c) => c.labels['bluegreen.image']?.endsWith(':v1'))).toBe(true);
  }
}, 180_000);

test('rollback and status work across all hosts through the bastion', async () => {
  const { value: r, loads } = await underLoad(() => run({ command: 'rollback' }));
  expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
  expectNoFailedRequests(loads);
  expect(await versions()).toEqual({ 'bgf-h1': 'v1', 'bgf-h2': 'v1', 'bgf-h3': 'v1' });
  const s = await run({ command: 'status' });
  expect(s.code).toBe(0);
  const json = JSON.parse(s.outputs['status-json']) as {
    hosts: Array<{ host: string; reachable: boolean; live?: string }>;
  };
  expect(json.hosts.map((h) => [h.host, h.reachable])).toEqual(NAMES.map((n) => [hostLabel(n), true]));
  expect(s.outputs['succeeded-hosts'].split(',')).toHaveLength(3);
}, 180_000);

test('rolling with max-parallel 1: one host at a time, in order, each started after the previous one was verified', async () => {
  const { value: r, loads } = await underLoad(() => deploy('v2', { rollout: 'rolling', 'max-parallel': '1' }));
  expect(outcome(r)).toBe('success');
  expectNoFailedRequests(loads);
  const m = metrics(r);
  expect(m.hosts.map((h) => [h.host, h.batch])).toEqual(NAMES.map((n, i) => [hostLabel(n), i]));
  for (let i = 1; i < m.hosts.length; i++) {
    const prevVerified = Date.parse(m.hosts[i - 1].steps.find((s) => s.name === 'verify')!.endedAt);
    expect(Date.parse(m.hosts[i].startedAt)).toBeGreaterThanOrEqual(prevVerified);
  }
  expect(r.stdout).toMatch(/batch 1\/3: /);
  expect(r.summary).toContain('| Batch |');
  expect(await versions()).toEqual({ 'bgf-h1': 'v2', 'bgf-h2': 'v2', 'bgf-h3': 'v2' });
}, 180_000);

test('canary failing on the first host: no other host is touched', async () => {
  await drained();
  const before = await Promise.all(NAMES.map((n) => dockerPsOn(n, app)));
  const r = await deploy('unhealthy', {
    rollout: 'canary',
    'health-timeout-seconds': '3',
    'health-interval-seconds': '0.5'
  });
  expect(r.code).not.toBe(0);
  expect(r.outputs.result).toBe('failed');
  expect(r.outputs['failed-hosts']).toBe(hostLabel('bgf-h1'));
  expect(r.outputs['succeeded-hosts']).toBe('');
  const m = metrics(r);
  // every host was locked before the canary started (one lock order for every run); the others did nothing else
  expect(
    m.hosts.map((h) => [h.result, h.steps.map((s) => s.name).filter((n) => n !== 'connect' && n !== 'lock').length > 0])
  ).toEqual([
    ['failed', true],
    ['skipped', false],
    ['skipped', false]
  ]);
  const after = await Promise.all(NAMES.map((n) => dockerPsOn(n, app)));
  // The other hosts: exactly the same containers (ids and states) as before.
  for (const i of [1, 2]) expect(after[i].map((c) => [c.id, c.state])).toEqual(before[i].map((c) => [c.id, c.state]));
  expect(await versions()).toEqual({ 'bgf-h1': 'v2', 'bgf-h2': 'v2', 'bgf-h3': 'v2' });
  expect(r.summary).toContain('skipped');
}, 180_000);

test('one host failing after the others switched: every host back on the old version, no failed request anywhere (keep-alive retries counted apart)', async () => {
  // h3's nginx config test fails from now on (another site is broken), so its switch fails after h1 and h2 switched.
  await onHostOk(
    'bgf-h3',
    'printf "server { listen 80; bogus_directive on; }\\n" > /etc/nginx/bluegreen-sites/zz-broken.conf'
  );
  try {
    const { value: r, loads } = await underLoad(() => deploy('v3', { rollout: 'rolling', 'max-parallel': '1' }));
    expect(r.code).not.toBe(0);
    expectNoFailedRequests(loads);
    expect(r.outputs['failed-hosts']).toBe(hostLabel('bgf-h3'));
    const m = metrics(r);
    expect(m.hosts.map((h) => [h.host, h.result, h.abortedBy])).toEqual([
      [hostLabel('bgf-h1'), 'rolled-back', hostLabel('bgf-h3')],
      [hostLabel('bgf-h2'), 'rolled-back', hostLabel('bgf-h3')],
      [hostLabel('bgf-h3'), 'failed', null]
    ]);
    expect(m.hosts[2].steps.find((s) => s.status === 'failed')?.name).toBe('switch');
    expect(await versions()).toEqual({ 'bgf-h1': 'v2', 'bgf-h2': 'v2', 'bgf-h3': 'v2' });
    for (const n of NAMES)
      expect((await dockerPsOn(n, app)).some((c) => c.labels['bluegreen.image']?.endsWith(':v3'))).toBe(false);
    expect(r.summary).toMatch(/switched back `[^`]+`, `[^`]+`/);
    expect(r.stdout).toMatch(/switch failed on 10\.204\.0\.13:22/);
  } finally {
    await onHostOk('bgf-h3', 'rm -f /etc/nginx/bluegreen-sites/zz-broken.conf');
  }
  // A rerun afterwards succeeds on every host.
  const again = await deploy('v3');
  expect(outcome(again)).toBe('success');
  expect(await versions()).toEqual({ 'bgf-h1': 'v3', 'bgf-h2': 'v3', 'bgf-h3': 'v3' });
}, 240_000);

test('one host unreachable: with continue the others deploy and failed-hosts names it, after connect retries', async () => {
  const inputs = fleetInputs(fleet, NAMES);
  const r = await deploy('v2', {
    hosts: `${inputs.hosts},10.204.0.99:22`,
    'on-host-failure': 'continue',
    'ssh-connect-retries': '1',
    'ssh-connect-timeout-seconds': '8'
  });
  expect(r.code).not.toBe(0);
  expect(r.outputs['failed-hosts']).toBe('10.204.0.99:22');
  expect(r.outputs['succeeded-hosts'].split(',').sort()).toEqual(NAMES.map(hostLabel).sort());
  expect(r.stdout).toMatch(/connect attempt 1 failed \(jump-host 10\.203\.0\.2 could not reach 10\.204\.0\.99:22/);
  expect(r.stdout).toMatch(/gave up after 2 attempts/);
  expect(await versions()).toEqual({ 'bgf-h1': 'v2', 'bgf-h2': 'v2', 'bgf-h3': 'v2' });
}, 180_000);

test('a bastion with the wrong host key: refused before any host is touched, naming jump-host', async () => {
  await drained();
  const before = await Promise.all(NAMES.map((n) => dockerPsOn(n, app)));
  const wrong = fleet.hosts[0].knownHosts.replace(/^\S+/, fleet.bastion.host);
  const r = await deploy('v3', { 'jump-known-hosts': wrong });
  expect(r.code).not.toBe(0);
  expect(r.outputs.result).toBe('failed');
  expect(r.stdout).toMatch(/jump-host ec2-user@10\.203\.0\.2:22: .*(host key|HOST KEY)/i);
  const m = metrics(r);
  expect(m.hosts.every((h) => h.steps.every((s) => s.name === 'connect'))).toBe(true);
  const after = await Promise.all(NAMES.map((n) => dockerPsOn(n, app)));
  expect(after.map((cs) => cs.map((c) => [c.id, c.state]))).toEqual(before.map((cs) => cs.map((c) => [c.id, c.state])));
}, 120_000);
