/**
 * End to end for traffic: alb on the three fleet hosts (through the bastion, the committed dist/ under Node 24), in
 * front of them the sandbox's ALB stand-in (test/e2e/fake-aws/alb.ts): the ELBv2 API that the action's real SDK
 * reaches through AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2, and a real data plane (listeners forwarding by weight
 * to healthy targets, health checks, deregistration delay). Each host answers IMDSv2 (test/sandbox/imds-up.sh).
 * Continuous load through the stand-in's listeners: fresh and keep-alive clients, and slow requests.
 *
 *   one target group (alb-target-group): deploy, second deploy, failing deploy
 *   a listener and a group per colour:   deploy, second deploy (one ModifyListener, after every candidate is
 *                                        registered and healthy), canary by weight, rollback, failing deploy
 */
import fs from 'node:fs';
import { startFakeAlb, type FakeAlb } from './fake-aws/alb.js';
import { LoadGenerator, runAction, SANDBOX, waitFor, type LoadResult, type RunActionResult } from './harness.js';
import { cleanupFleetApp, dockerPsOn, fleetInputs, loadFleet, onHostOk, type Fleet } from './fleet-harness.js';

const NAMES = ['bgf-h1', 'bgf-h2', 'bgf-h3'];
const ONE = { app: 'alb-one', blue: 19351, green: 19352, listener: 19353, group: 'alb-one' };
const FLEET = {
  app: 'alb-fleet',
  blue: 19361,
  green: 19362,
  listener: 19363,
  groups: { blue: 'alb-fleet-blue', green: 'alb-fleet-green' }
};
const IP = { app: 'alb-ip', blue: 19371, green: 19372, listener: 19373, group: 'alb-ip' };
const API_PORT = 19350;
const instanceId = (name: string) => `i-0f1ee7${Number(name.replace('bgf-h', '')).toString(16).padStart(11, '0')}`;

let fleet: Fleet;
let alb: FakeAlb;

interface Metrics {
  hosts: Array<{
    host: string;
    result: string;
    error: { step: string; message: string } | null;
    loadBalancer: {
      instanceId?: string;
      health: Array<{ at: string; group: string; color: string; target: string; state: string }>;
    } | null;
  }>;
  loadBalancer: {
    before?: Record<string, number>;
    after?: Record<string, number>;
    allHealthyAt?: string;
    changes: Array<{ at: string; kind: string; weights: Record<string, number> }>;
  } | null;
}
const metrics = (r: RunActionResult): Metrics =>
  JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8')) as Metrics;

function run(
  app: string,
  ports: { blue: number; green: number },
  inputs: Record<string, string>
): Promise<RunActionResult> {
  return runAction(
    {
      ...fleetInputs(fleet, NAMES),
      'ssh-private-key': SANDBOX.privateKey,
      'app-name': app,
      'registry-auth': 'password',
      'registry-username': SANDBOX.registryUser,
      'registry-password': SANDBOX.registryPassword,
      traffic: 'alb',
      'blue-port': String(ports.blue),
      'green-port': String(ports.green),
      'verify-seconds': '1',
      'drain-seconds': '10',
      'wait-for-drain': 'true',
      'health-interval-seconds': '0.5',
      'upload-artifacts': 'false',
      ...inputs
    },
    { env: alb.env, timeoutMs: 300_000 }
  );
}

/** Load through a listener for the duration of fn: fresh and keep-alive clients, and slow requests beside them. */
async function underLoad<T>(url: string, fn: () => Promise<T>): Promise<{ value: T; load: LoadResult }> {
  const gen = new LoadGenerator(url, {
    concurrency: 4,
    keepAlive: 'mixed',
    retry: false,
    record: true,
    slow: { concurrency: 2, seconds: [1, 2, 3] }
  }).start();
  await new Promise((r) => setTimeout(r, 500));
  const value = await fn();
  await new Promise((r) => setTimeout(r, 500));
  return { value, load: await gen.stop() };
}

/**
 * The traffic moved from `from` to `to` at once: every request sent after the first answer of `to` arrived got `to`.
 * (Answers arrive out of order around the switch: four clients at once, so a request sent just before it may end
 * just after one sent just after it.)
 */
function expectSwitchedAtOnce(load: LoadResult, from: string, to: string): void {
  const ok = load.samples.filter((x) => x.ok);
  const first = Math.min(...ok.filter((x) => x.body === to).map((x) => x.end));
  expect(Number.isFinite(first)).toBe(true);
  expect(ok.some((x) => x.body === from && x.start < first)).toBe(true);
  expect(ok.filter((x) => x.start > first && x.body !== to).map((x) => x.body)).toEqual([]);
}

function expectNoFailedRequests(load: LoadResult): void {
  expect({
    failed: load.failed,
    errors: load.errors.slice(0, 3),
    slowFailed: load.slow.failed,
    slowErrors: load.slow.errors.slice(0, 3)
  }).toEqual({ failed: 0, errors: [], slowFailed: 0, slowErrors: [] });
  expect(load.ok).toBeGreaterThan(0);
  expect(load.slow.ok).toBeGreaterThan(0);
}

/** `${id}:${port} ${state}` of a group's targets now, sorted. */
async function targets(group: string): Promise<string[]> {
  return (await alb.targets())
    .filter((t) => t.targetGroup === group)
    .map((t) => `${t.id}:${t.port} ${t.state}`)
    .sort();
}
const all = (port: number, state: string) => NAMES.map((n) => `${instanceId(n)}:${port} ${state}`).sort();

/** Which version each request through the listener gets now (a few fresh requests). */
async function served(url: string): Promise<string[]> {
  const out = new Set<string>();
  for (let i = 0; i < 6; i++) out.add((await (await fetch(url)).text()).trim());
  return [...out].sort();
}

beforeAll(async () => {
  fleet = await loadFleet({ hosts: 3 });
  await Promise.all([cleanupFleetApp(ONE.app), cleanupFleetApp(FLEET.app), cleanupFleetApp(IP.app)]);
  const hc = { path: '/health' };
  alb = await startFakeAlb({
    apiPort: API_PORT,
    targetGroups: [
      { name: ONE.group, port: ONE.blue, healthCheck: hc, deregistrationDelaySeconds: 3 },
      { name: FLEET.groups.blue, port: FLEET.blue, healthCheck: hc, deregistrationDelaySeconds: 3 },
      { name: FLEET.groups.green, port: FLEET.green, healthCheck: hc, deregistrationDelaySeconds: 3 },
      { name: IP.group, port: IP.blue, targetType: 'ip', healthCheck: hc, deregistrationDelaySeconds: 3 }
    ],
    listeners: [
      { name: 'one', port: ONE.listener, defaultAction: { forward: [{ targetGroup: ONE.group }] } },
      { name: 'fleet', port: FLEET.listener, defaultAction: { forward: [{ targetGroup: FLEET.groups.blue }] } },
      { name: 'ip', port: IP.listener, defaultAction: { forward: [{ targetGroup: IP.group }] } }
    ]
  });
}, 240_000);

afterAll(async () => {
  await alb?.close();
  await Promise.all([cleanupFleetApp(ONE.app), cleanupFleetApp(FLEET.app), cleanupFleetApp(IP.app)]);
}, 120_000);

describe('one target group: each host swaps its own targets', () => {
  const deploy = (tag: string, extra: Record<string, string> = {}) =>
    run(ONE.app, ONE, { image: `${fleet.registry}/demo:${tag}`, 'alb-target-group': ONE.group, ...extra });
  const url = () => alb.listenerUrls.one;

  test('first deploy: every host registered by its instance id, healthy at the ALB', async () => {
    const r = await deploy('v1');
    expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
    expect(await targets(ONE.group)).toEqual(all(ONE.blue, 'healthy'));
    expect(await served(url())).toEqual(['v1']);
    // The ALB's view over time, per host, in the metrics and the summary.
    const m = metrics(r);
    for (const h of m.hosts)
      expect(h.loadBalancer?.health.map((s) => s.state)).toEqual(expect.arrayContaining(['initial', 'healthy']));
    expect(r.summary).toContain('### Load balancer');
  }, 300_000);

  test('second deploy under load: register, healthy, deregister the old, drain, stop; no failed request', async () => {
    // wait-for-drain false (the default): the run does not wait for the ALB's draining; a job on the host stops the
    // old colour once the group's deregistration delay (3 s here) has passed.
    const { value: r, load } = await underLoad(url(), () => deploy('v2', { 'wait-for-drain': 'false' }));
    expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
    expectNoFailedRequests(load);
    expect(load.transitions[0]).toBe('v1');
    expect(load.transitions[load.transitions.length - 1]).toBe('v2');
    // the run ended while the old targets may still drain (it does not wait for that)
    expect((await targets(ONE.group)).filter((t) => !t.endsWith('draining'))).toEqual(all(ONE.green, 'healthy'));
    expect(await served(url())).toEqual(['v2']);
    // On each host: the old colour deregistered only after the candidate was healthy; the old container kept, stopped.
    const m = metrics(r);
    for (const h of m.hosts) {
      const s = h.loadBalancer!.health;
      const healthy = s.find((x) => x.color === 'green' && x.state === 'healthy')!;
      const draining = s.find((x) => x.color === 'blue' && x.state === 'draining')!;
      expect(Date.parse(draining.at)).toBeGreaterThanOrEqual(Date.parse(healthy.at));
    }
    await Promise.all(
      NAMES.map((n) =>
        onHostOk(n, `f=/home/ec2-user/.bluegreen/${ONE.app}/drain.lock; [ ! -e "$f" ] || flock -w 60 "$f" true`)
      )
    );
    for (const n of NAMES) {
      const cs = await dockerPsOn(n, ONE.app);
      expect(cs.map((c) => [c.name, c.state]).sort()).toEqual([
        [`${ONE.app}-blue`, 'exited'],
        [`${ONE.app}-green`, 'running']
      ]);
    }
    // the job stopped them only after the deregistration delay: by then the ALB was done draining them
    expect(await targets(ONE.group)).toEqual(all(ONE.green, 'healthy'));
  }, 300_000);

  test('failing deploy (demo:unhealthy) under load: nothing registered, v2 keeps serving', async () => {
    const calls = alb.calls('RegisterTargets').length;
    const { value: r, load } = await underLoad(url(), () => deploy('unhealthy', { 'health-timeout-seconds': '4' }));
    expect(r.outputs.result).toBe('failed');
    expectNoFailedRequests(load);
    expect(Object.keys(load.bodies)).toEqual(['v2']);
    expect(alb.calls('RegisterTargets').length).toBe(calls);
    expect(await targets(ONE.group)).toEqual(all(ONE.green, 'healthy'));
    for (const n of NAMES)
      expect((await dockerPsOn(n, ONE.app)).some((c) => c.labels['bluegreen.image']?.endsWith(':unhealthy'))).toBe(
        false
      );
  }, 300_000);

  test('a missing permission: the error names the call and the IAM action; nothing changes for traffic', async () => {
    await alb.deny(['RegisterTargets']);
    try {
      const { value: r, load } = await underLoad(url(), () => deploy('v3'));
      expect(r.outputs.result).toBe('failed');
      expectNoFailedRequests(load);
      expect(r.stdout).toMatch(
        /RegisterTargets failed: the job's AWS identity may not call elasticloadbalancing:RegisterTargets/
      );
      expect(Object.keys(load.bodies)).toEqual(['v2']);
      expect(await targets(ONE.group)).toEqual(all(ONE.green, 'healthy'));
      for (const n of NAMES)
        expect((await dockerPsOn(n, ONE.app)).some((c) => c.labels['bluegreen.image']?.endsWith(':v3'))).toBe(false);
    } finally {
      await alb.deny([]);
    }
  }, 300_000);

  test('a host failing after the swap (its DeregisterTargets fails): every host switched back under load', async () => {
    await alb.faults([{ action: 'DeregisterTargets', code: 'ValidationError', message: 'injected', times: 1 }]);
    try {
      const { value: r, load } = await underLoad(url(), () => deploy('v3'));
      expect(r.outputs.result).toBe('rolled-back');
      expectNoFailedRequests(load);
      expect(r.stdout).toMatch(/DeregisterTargets failed: .*ValidationError: injected/);
      expect(load.transitions[load.transitions.length - 1]).toBe('v2');
      expect(await served(url())).toEqual(['v2']);
      expect((await targets(ONE.group)).filter((t) => !t.endsWith('draining'))).toEqual(all(ONE.green, 'healthy'));
      for (const n of NAMES)
        expect((await dockerPsOn(n, ONE.app)).some((c) => c.labels['bluegreen.image']?.endsWith(':v3'))).toBe(false);
    } finally {
      await alb.faults([]);
    }
  }, 300_000);
});

test('a target group of type ip: each host registered by its private IPv4 (read from IMDSv2)', async () => {
  const r = await run(IP.app, IP, { image: `${fleet.registry}/demo:v1`, 'alb-target-group': IP.group });
  expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
  expect(await targets(IP.group)).toEqual(
    fleet.hosts
      .filter((h) => NAMES.includes(h.name))
      .map((h) => `${h.host}:${IP.blue} healthy`)
      .sort()
  );
  expect(await served(alb.listenerUrls.ip)).toEqual(['v1']);
}, 300_000);

describe('a listener and a group per colour: the whole fleet switched in one call', () => {
  const listenerInputs = () => ({
    'alb-listener': alb.arns.listeners.fleet,
    'alb-blue-target-group': FLEET.groups.blue,
    'alb-green-target-group': FLEET.groups.green
  });
  const deploy = (tag: string, extra: Record<string, string> = {}) =>
    run(FLEET.app, FLEET, { image: `${fleet.registry}/demo:${tag}`, ...listenerInputs(), ...extra });
  const url = () => alb.listenerUrls.fleet;
  /** The weights of the listener's forward action in a ModifyListener call (awsQuery params), by group name. */
  const weightsOf = (params: Record<string, string>): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(params)) {
      const m = /^DefaultActions\.member\.\d+\.ForwardConfig\.TargetGroups\.member\.(\d+)\.TargetGroupArn$/.exec(k);
      if (!m) continue;
      const name = Object.entries(alb.arns.targetGroups).find(([, arn]) => arn === v)?.[0] ?? v;
      const w = Object.entries(params).find(([k2]) => k2 === k.replace(/TargetGroupArn$/, 'Weight'))?.[1];
      out[name] = Number(w ?? 1);
    }
    return out;
  };

  test('first deploy: the listener moves from the (empty) blue group to green', async () => {
    const r = await deploy('v1');
    expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
    expect(await targets(FLEET.groups.green)).toEqual(all(FLEET.green, 'healthy'));
    expect(await served(url())).toEqual(['v1']);
    // The listener forwarded to the blue group alone: green was added with weight 0 first (the ALB checks only used
    // groups), then one call moved the traffic.
    expect(alb.calls('ModifyListener').map((c) => weightsOf(c.params))).toEqual([
      { [FLEET.groups.blue]: 1, [FLEET.groups.green]: 0 },
      { [FLEET.groups.blue]: 0, [FLEET.groups.green]: 100 }
    ]);
    expect(metrics(r).loadBalancer?.changes.map((c) => c.kind)).toEqual(['attach', 'switch']);
  }, 300_000);

  test('second deploy under load: exactly one ModifyListener, after every candidate is registered and healthy', async () => {
    const t0 = Date.now();
    const { value: r, load } = await underLoad(url(), () => deploy('v2'));
    expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
    expectNoFailedRequests(load);
    const mods = alb.calls('ModifyListener').filter((c) => c.time >= t0);
    expect(mods).toHaveLength(1);
    expect(weightsOf(mods[0].params)).toEqual({ [FLEET.groups.blue]: 100, [FLEET.groups.green]: 0 });
    // Every host's candidate was registered in the blue group, and reported healthy by the ALB, before the switch.
    const regs = alb.calls('RegisterTargets').filter((c) => c.time >= t0);
    expect(regs.map((c) => c.params['Targets.member.1.Id']).sort()).toEqual(NAMES.map(instanceId).sort());
    for (const c of regs)
      expect([c.params.TargetGroupArn, c.time < mods[0].time]).toEqual([
        alb.arns.targetGroups[FLEET.groups.blue],
        true
      ]);
    const m = metrics(r);
    for (const h of m.hosts) {
      const healthy = h.loadBalancer!.health.find((s) => s.group === FLEET.groups.blue && s.state === 'healthy');
      expect(Date.parse(healthy!.at)).toBeLessThanOrEqual(mods[0].time);
    }
    // The stand-in's own record of target states says the same.
    for (const n of NAMES) {
      const ev = alb
        .healthLog()
        .find(
          (e) =>
            e.time >= t0 &&
            e.targetGroup === FLEET.groups.blue &&
            e.id === instanceId(n) &&
            e.port === FLEET.blue &&
            e.state === 'healthy'
        );
      expect([n, ev !== undefined && ev.time <= mods[0].time]).toEqual([n, true]);
    }
    expect(m.loadBalancer).toMatchObject({ before: { blue: 0, green: 100 }, after: { blue: 100, green: 0 } });
    // Requests moved from v1 to v2 at once for the whole fleet; the old group is empty, its containers stopped (kept).
    expectSwitchedAtOnce(load, 'v1', 'v2');
    expect(await targets(FLEET.groups.green)).toEqual([]);
    expect(await targets(FLEET.groups.blue)).toEqual(all(FLEET.blue, 'healthy'));
    for (const n of NAMES)
      expect((await dockerPsOn(n, FLEET.app)).map((c) => [c.name, c.state]).sort()).toEqual([
        [`${FLEET.app}-blue`, 'running'],
        [`${FLEET.app}-green`, 'exited']
      ]);
    expect(r.summary).toContain('weights before **blue 0, green 100** → after **blue 100, green 0**');
  }, 300_000);

  test('canary by weight: alb-canary-percent of the requests first, the rest after verify', async () => {
    const t0 = Date.now();
    const { value: r, load } = await underLoad(url(), () =>
      deploy('v3', { 'alb-canary-percent': '30', 'verify-seconds': '4' })
    );
    expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
    expectNoFailedRequests(load);
    const mods = alb.calls('ModifyListener').filter((c) => c.time >= t0);
    expect(mods.map((c) => weightsOf(c.params))).toEqual([
      { [FLEET.groups.blue]: 70, [FLEET.groups.green]: 30 },
      { [FLEET.groups.blue]: 0, [FLEET.groups.green]: 100 }
    ]);
    // While the canary share was on: requests went to both versions.
    const window = alb
      .served()
      .filter(
        (s) =>
          s.listener === alb.arns.listeners.fleet && s.start > mods[0].time && s.end < mods[1].time && s.status === 200
      );
    const groupName = (arn?: string) => Object.entries(alb.arns.targetGroups).find(([, a]) => a === arn)?.[0];
    const groupsServed = new Set(window.map((s) => groupName(s.targetGroup)));
    expect([...groupsServed].sort()).toEqual([FLEET.groups.blue, FLEET.groups.green]);
    expect(await served(url())).toEqual(['v3']);
    expect(metrics(r).loadBalancer?.changes.map((c) => c.kind)).toEqual(['canary', 'switch']);
  }, 300_000);

  test('canary whose second change fails: the weights are put back in one call, no failed request', async () => {
    const t0 = Date.now();
    const n0 = alb.calls('ModifyListener').length;
    const { value: r, load } = await underLoad(url(), async () => {
      const run0 = deploy('v2', { 'alb-canary-percent': '30', 'verify-seconds': '4' });
      // once the canary share is on, the next listener change (the rest) fails
      await waitFor(async () => alb.calls('ModifyListener').length > n0, {
        timeoutMs: 120_000,
        intervalMs: 100,
        what: 'the canary change'
      });
      await alb.faults([{ action: 'ModifyListener', code: 'ValidationError', message: 'injected', times: 1 }]);
      return run0;
    });
    await alb.faults([]);
    expect(r.outputs.result).toBe('rolled-back');
    expectNoFailedRequests(load);
    const mods = alb.calls('ModifyListener').filter((c) => c.time >= t0);
    expect(mods.map((c) => [weightsOf(c.params), c.error])).toEqual([
      [{ [FLEET.groups.blue]: 30, [FLEET.groups.green]: 70 }, undefined],
      [{ [FLEET.groups.blue]: 100, [FLEET.groups.green]: 0 }, 'ValidationError'],
      [{ [FLEET.groups.blue]: 0, [FLEET.groups.green]: 100 }, undefined]
    ]);
    expect(r.stdout).toMatch(/ModifyListener failed: .*ValidationError: injected/);
    expect(await served(url())).toEqual(['v3']);
    expect((await targets(FLEET.groups.blue)).filter((t) => !t.endsWith('draining'))).toEqual([]);
    expect(metrics(r).loadBalancer?.changes.map((c) => c.kind)).toEqual(['canary', 'restore']);
  }, 300_000);

  test('rollback under load: the kept colour started and healthy on every host, then one call moves the listener back', async () => {
    const t0 = Date.now();
    const { value: r, load } = await underLoad(url(), () =>
      run(FLEET.app, FLEET, { command: 'rollback', ...listenerInputs() })
    );
    expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
    expectNoFailedRequests(load);
    const mods = alb.calls('ModifyListener').filter((c) => c.time >= t0);
    expect(mods.map((c) => weightsOf(c.params))).toEqual([{ [FLEET.groups.blue]: 100, [FLEET.groups.green]: 0 }]);
    expect(await served(url())).toEqual(['v2']);
    expect(await targets(FLEET.groups.green)).toEqual([]);
  }, 300_000);

  test('failing deploy (demo:unhealthy) under load: no listener change, every candidate deregistered and removed', async () => {
    const t0 = Date.now();
    const { value: r, load } = await underLoad(url(), () => deploy('unhealthy', { 'health-timeout-seconds': '4' }));
    expect(r.outputs.result).toBe('failed');
    expectNoFailedRequests(load);
    expect(Object.keys(load.bodies)).toEqual(['v2']);
    expect(alb.calls('ModifyListener').filter((c) => c.time >= t0)).toHaveLength(0);
    expect((await targets(FLEET.groups.green)).filter((t) => !t.endsWith('draining'))).toEqual([]);
    expect(await targets(FLEET.groups.blue)).toEqual(all(FLEET.blue, 'healthy'));
    for (const n of NAMES)
      expect((await dockerPsOn(n, FLEET.app)).some((c) => c.labels['bluegreen.image']?.endsWith(':unhealthy'))).toBe(
        false
      );
    expect(await served(url())).toEqual(['v2']);
  }, 300_000);

  test("status: the listener weights and each group's targets with their health", async () => {
    const s = await run(FLEET.app, FLEET, { command: 'status', ...listenerInputs() });
    expect(s.code).toBe(0);
    const json = JSON.parse(s.outputs['status-json']) as {
      hosts: Array<{
        live?: string;
        alb?: {
          listener?: { weights: Record<string, number> };
          groups: Record<string, { targets: Array<{ target: string; state: string; color?: string }> }>;
        };
        findings: Array<{ level: string; message: string }>;
      }>;
    };
    for (const h of json.hosts) {
      expect(h.live).toBe('blue');
      expect(h.alb?.listener?.weights).toEqual({ blue: 100, green: 0 });
      expect(h.alb?.groups.blue.targets).toHaveLength(3);
      expect(h.alb?.groups.blue.targets.filter((t) => t.color === 'blue').map((t) => t.state)).toEqual(['healthy']);
      expect(h.findings.filter((f) => f.level === 'error')).toEqual([]);
    }
  }, 300_000);
});
