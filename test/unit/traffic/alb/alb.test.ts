/**
 * traffic alb against fakes: the fake hosts (test/unit/deploy/fake-host.ts) and an in-process fake of the ELBv2 client's
 * send (fake-alb.ts). The real proof is test/e2e/alb.test.ts (the sandbox's stand-in ALB, three fleet hosts, load).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readRunContext } from '../../../../src/model/context.js';
import { InputError, readConfig } from '../../../../src/config/inputs.js';
import type { DeployConfig, HostTarget } from '../../../../src/model/config.js';
import { runDeploy, type RunDeps } from '../../../../src/deploy/run.js';
import { RunLog, type ConsoleSink } from '../../../../src/log/log.js';
import { Secrets } from '../../../../src/log/secrets.js';
import { renderSummary } from '../../../../src/report/summary.js';
import { albFindings, readAlbStatus } from '../../../../src/traffic/alb/status.js';
import type { HostStatus } from '../../../../src/model/status.js';
import { AlbTraffic } from '../../../../src/traffic/alb/traffic.js';
import { explainElbError, forwardWeights, withWeights } from '../../../../src/traffic/alb/elb.js';
import { parseIdentity } from '../../../../src/traffic/alb/identity.js';
import { readListenerState } from '../../../../src/traffic/alb/listener-switch.js';
import { albTiming } from '../../../../src/traffic/alb/targets.js';
import { arnOf, FakeAlb, LISTENER, RULE } from './fake-alb.js';
import { FakeHost } from '../../deploy/fake-host.js';

const APP = 'shop';
const PORTS = { blue: 8081, green: 8082 };

const ctx = readRunContext({
  GITHUB_SHA: 'a'.repeat(40),
  GITHUB_RUN_ID: '1',
  GITHUB_REPOSITORY: 'o/r',
  GITHUB_JOB: 'deploy',
  RUNNER_TEMP: os.tmpdir()
});

let tmpDir: string;
let savedPoll: number;
beforeAll(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-alb-'));
  savedPoll = albTiming.pollMs;
  albTiming.pollMs = 5;
});
afterAll(() => {
  albTiming.pollMs = savedPoll;
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

function makeLog(hostCount = 1) {
  const lines: string[] = [];
  const sink: ConsoleSink = {
    write: (level, text) => lines.push(`${level} ${text}`),
    startGroup: () => {},
    endGroup: () => {}
  };
  const log = new RunLog(
    path.join(tmpDir, `run-${Math.random().toString(16).slice(2)}.log`),
    new Secrets(),
    sink,
    hostCount
  );
  return { log, lines };
}

function targets(n: number): HostTarget[] {
  return Array.from({ length: n }, (_, i) => ({ label: `h${i + 1}`, host: `h${i + 1}`, port: 22, user: 'ec2-user' }));
}

const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-alb-key-'));
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(keyDir, 'k')]);
const KEY = fs.readFileSync(path.join(keyDir, 'k'), 'utf8');
fs.rmSync(keyDir, { recursive: true });
const read = (inputs: Record<string, string>) => (name: string) => (inputs[name] ?? '').trim();

/** The config the documented inputs give (read as the action reads them), with the fake hosts and fast timings. */
function makeConfig(over: Partial<DeployConfig> = {}): DeployConfig {
  const inputs = {
    hosts: 'h1',
    'ssh-private-key': KEY,
    'ssh-insecure-ignore-host-key': 'true',
    'app-name': APP,
    image: 'registry.example.com/shop',
    tag: 'v2',
    'registry-auth': 'none',
    'aws-region': 'us-east-1',
    traffic: 'alb',
    'alb-target-group': 'web',
    'health-interval-seconds': '0.1',
    'health-timeout-seconds': '1',
    'drain-seconds': '1',
    'wait-for-drain': 'true',
    'verify-seconds': '0',
    'keep-images': '0',
    'upload-artifacts': 'false',
    summary: 'false'
  };
  return { ...readConfig(read(inputs), ctx, {}), hosts: targets(1), ...over };
}

/** Hosts with blue live (running on blue-port), and an ALB whose health checks pass where a host runs that port. */
function fleet(n: number) {
  const hosts = targets(n).map((t) =>
    new FakeHost(t.label, APP).add('blue', { running: true, port: PORTS.blue, image: 'registry.example.com/shop:v1' })
  );
  const alb = new FakeAlb();
  alb.healthy = ({ id, port }) => Boolean(hosts.find((h) => h.instanceId === id)?.serving(port));
  const deps: RunDeps = {
    connect: async (t) => hosts.find((h) => h.target.label === t.label)!,
    fetchEcrToken: async () => {
      throw new Error('not used');
    },
    elb: async () => alb.elb()
  };
  return { hosts, alb, deps };
}

const listenerCfg = (n: number, over: Partial<DeployConfig> = {}, canaryPercent?: number) =>
  makeConfig({
    hosts: targets(n),
    alb: { mode: 'listener', listenerArn: LISTENER, groups: { blue: 'web-blue', green: 'web-green' }, canaryPercent },
    ...over
  });

describe('traffic alb, one target group (per-host swap)', () => {
  test('deploy: the candidate is registered, healthy at the ALB, then the old target drains and its container stops', async () => {
    const { hosts, alb, deps } = fleet(1);
    const h = hosts[0];
    alb.addGroup('web').targets.clear();
    alb.seed('web', h.instanceId, PORTS.blue);
    const { log } = makeLog();
    const r = await runDeploy(makeConfig(), ctx, log, new Secrets(), deps, 'dep-1');
    expect(r.result).toBe('success');
    expect(alb.targetsOf('web')).toEqual([`${h.instanceId}:${PORTS.green} healthy`]);
    expect(h.containers()).toEqual([
      ['shop-blue', 'exited'],
      ['shop-green', 'running']
    ]);
    // The old target was deregistered only once the candidate was healthy at the ALB.
    const reg = alb.callsNamed('RegisterTargets')[0];
    const dereg = alb.callsNamed('DeregisterTargets')[0];
    expect((dereg.input.Targets as unknown[])[0]).toEqual({ Id: h.instanceId, Port: PORTS.blue });
    expect(alb.healthySince.get(`web ${h.instanceId}:${PORTS.green}`)!).toBeGreaterThan(reg.seq);
    expect(dereg.seq).toBeGreaterThan(alb.healthySince.get(`web ${h.instanceId}:${PORTS.green}`)!);
    // The ALB's view over time, as the summary shows it.
    const states = r.hosts[0].loadBalancer!.health.map((s) => `${s.color} ${s.state}`);
    expect(states).toEqual(
      expect.arrayContaining(['green initial', 'green healthy', 'blue draining', 'blue unregistered'])
    );
    expect(r.hosts[0].loadBalancer!.instanceId).toBe(h.instanceId);
    expect(h.callsOf('start')[0].args).toContain(`0.0.0.0:${PORTS.green}:8080`);
  });

  test('wait-for-drain false: the run does not wait for the draining; the job on the host stops the old colour after the deregistration delay (at most drain-seconds)', async () => {
    for (const [drainSeconds, delaySeconds, waitMs] of [
      [10, 5, 5000],
      [2, 5, 2000]
    ] as const) {
      const { hosts, alb, deps } = fleet(1);
      const h = hosts[0];
      alb.addGroup('web', 'instance', delaySeconds).targets.clear();
      alb.seed('web', h.instanceId, PORTS.blue);
      const { log } = makeLog();
      const r = await runDeploy(
        makeConfig({ waitForDrain: false, drainMs: drainSeconds * 1000 }),
        ctx,
        log,
        new Secrets(),
        deps,
        'dep-1'
      );
      expect(r.result).toBe('success');
      const states = r.hosts[0].loadBalancer!.health.map((s) => `${s.color} ${s.state}`);
      expect((alb.callsNamed('DeregisterTargets')[0].input.Targets as unknown[])[0]).toEqual({
        Id: h.instanceId,
        Port: PORTS.blue
      });
      // one look after the switch: draining; the run never saw it leave the group: it did not wait for that
      expect(states).toContain('blue draining');
      expect(states).not.toContain('blue unregistered');
      expect(alb.targetsOf('web')).toContain(`${h.instanceId}:${PORTS.blue} draining`);
      // handed over: drain by the clock for that long (less the moments since the switch deregistered it), then stop
      // blue (kept); a delay longer than drain-seconds is warned about
      const [finish] = h.callsOf('finish');
      expect([finish.args[2], finish.args[4]]).toEqual(['shop-blue', 'background']);
      expect(Number(finish.args[1])).toBeGreaterThan(waitMs - 1000);
      expect(Number(finish.args[1])).toBeLessThanOrEqual(waitMs);
      expect(r.hosts[0].warnings.some((w) => /longer than drain-seconds/.test(w))).toBe(drainSeconds < delaySeconds);
    }
  });

  test('ip target type: the host is registered by its private IPv4', async () => {
    const { hosts, alb, deps } = fleet(1);
    const h = hosts[0];
    alb.addGroup('web', 'ip');
    alb.seed('web', h.privateIp, PORTS.blue);
    alb.healthy = ({ port }) => Boolean(h.serving(port));
    const { log } = makeLog();
    const r = await runDeploy(makeConfig(), ctx, log, new Secrets(), deps);
    expect(r.result).toBe('success');
    expect(alb.targetsOf('web')).toEqual([`${h.privateIp}:${PORTS.green} healthy`]);
  });

  test('the ALB never calls the candidate healthy: switched back, the old target stays, the candidate is removed', async () => {
    const { hosts, alb, deps } = fleet(1);
    const h = hosts[0];
    alb.addGroup('web');
    alb.seed('web', h.instanceId, PORTS.blue);
    alb.healthy = ({ port }) => port === PORTS.blue;
    const { log } = makeLog();
    const r = await runDeploy(makeConfig(), ctx, log, new Secrets(), deps);
    expect(r.result).toBe('failed');
    expect(r.hosts[0].error?.step).toBe('switch');
    expect(r.hosts[0].error?.message).toMatch(
      /did not report i-0f1ee700000000001:8082 \(green\) healthy in alb-target-group "web".*security group/
    );
    expect(alb.targetsOf('web')).toEqual([`${h.instanceId}:${PORTS.blue} healthy`]);
    expect(
      alb.callsNamed('DeregisterTargets').map((c) => (c.input.Targets as Array<{ Port: number }>)[0].Port)
    ).toEqual([PORTS.green]);
    expect(h.containers()).toEqual([['shop-blue', 'running']]);
  });

  test('a group that does not exist: the error names the call, the input and the region', async () => {
    const { alb, deps } = fleet(1);
    alb.addGroup('other');
    const { log } = makeLog();
    const r = await runDeploy(
      makeConfig({ alb: { mode: 'target-group', targetGroup: 'green-tg' } }),
      ctx,
      log,
      new Secrets(),
      deps
    );
    expect(r.result).toBe('failed');
    expect(r.hosts[0].error).toEqual({
      step: 'detect',
      message: expect.stringContaining('alb-target-group "green-tg" does not exist in us-east-1')
    });
  });
});

describe('traffic alb, a listener and a group per colour (fleet switch)', () => {
  function setup(n: number) {
    const f = fleet(n);
    f.alb.addGroup('web-blue');
    f.alb.addGroup('web-green');
    for (const h of f.hosts) f.alb.seed('web-blue', h.instanceId, PORTS.blue);
    f.alb.forwardTo({ 'web-blue': 1, 'web-green': 0 });
    return f;
  }

  test('a forward action that names only the live group gets the idle one with weight 0 first (the ALB checks only used groups)', async () => {
    const { alb, deps } = setup(2);
    alb.forwardTo({ 'web-blue': 1 });
    const { log, lines } = makeLog(2);
    const r = await runDeploy(listenerCfg(2), ctx, log, new Secrets(), deps);
    expect(r.result).toBe('success');
    const mods = alb.callsNamed('ModifyListener');
    expect(mods).toHaveLength(2);
    expect(mods[0].seq).toBeLessThan(alb.callsNamed('RegisterTargets')[0].seq);
    expect(r.alb?.changes.map((c) => [c.kind, c.weights])).toEqual([
      ['attach', { blue: 1, green: 0 }],
      ['switch', { blue: 0, green: 100 }]
    ]);
    expect(lines.join('\n')).toMatch(/added web-green with weight 0 \(no traffic moves\)/);
  });

  test('deploy: one ModifyListener, after every candidate is registered and healthy; then the old group is emptied', async () => {
    const { hosts, alb, deps } = setup(3);
    const { log } = makeLog(3);
    const r = await runDeploy(listenerCfg(3), ctx, log, new Secrets(), deps, 'dep-1');
    expect(r.result).toBe('success');
    const mods = alb.callsNamed('ModifyListener');
    expect(mods).toHaveLength(1);
    for (const h of hosts)
      expect(mods[0].seq).toBeGreaterThan(alb.healthySince.get(`web-green ${h.instanceId}:${PORTS.green}`)!);
    expect(alb.weights()).toEqual({ 'web-blue': 0, 'web-green': 100 });
    expect(alb.targetsOf('web-blue')).toEqual([]);
    expect(alb.targetsOf('web-green')).toEqual(hosts.map((h) => `${h.instanceId}:${PORTS.green} healthy`).sort());
    for (const h of hosts)
      expect(h.containers()).toEqual([
        ['shop-blue', 'exited'],
        ['shop-green', 'running']
      ]);
    expect(r.alb?.before).toEqual({ blue: 1, green: 0 });
    expect(r.alb?.after).toEqual({ blue: 0, green: 100 });
    const md = renderSummary(r, { traffic: 'alb' });
    expect(md).toContain('weights before **blue 1, green 0** → after **blue 0, green 100**');
    expect(md).toMatch(
      /\| h2 \| i-0f1ee700000000002:8082 \(green, web-green\) \| [0-9:.]+ initial → [0-9:.]+ healthy \|/
    );

    // status: the listener's weights and each group's targets, this host's marked.
    const cfg = listenerCfg(3);
    const st = await readAlbStatus(cfg, hosts[0], ...albStatusArgs(new AlbTraffic(cfg, async () => alb.elb())));
    expect(st.listener?.weights).toEqual({ blue: 0, green: 100 });
    expect(st.routed).toBe('green');
    expect(st.groups.green?.targets.find((t) => t.color)).toEqual({
      target: `${hosts[0].instanceId}:${PORTS.green}`,
      state: 'healthy',
      reason: undefined,
      color: 'green'
    });
    expect(st.groups.green?.targets).toHaveLength(3);
    expect(st.groups.blue?.targets).toEqual([]);
    const hs = {
      colors: {
        blue: { exists: true, state: 'exited', role: 'standby' },
        green: { exists: true, state: 'running', role: 'live' }
      },
      lock: { held: false }
    } as unknown as HostStatus;
    expect(albFindings(hs, st)).toEqual([]);
    expect(
      albFindings(
        { ...hs, colors: { ...hs.colors, green: { exists: true, state: 'exited', role: 'live' } } } as HostStatus,
        st
      )
    ).toEqual([
      { level: 'error', message: 'the load balancer routes to green, whose container on this host is exited' }
    ]);

    // rollback: the kept blue on every host, healthy in web-blue, then one call moves the listener back.
    const { log: log2 } = makeLog(3);
    const rb = await runDeploy(listenerCfg(3, { command: 'rollback' }), ctx, log2, new Secrets(), deps, 'dep-2');
    expect(rb.result).toBe('success');
    expect(alb.callsNamed('ModifyListener')).toHaveLength(2);
    expect(alb.weights()).toEqual({ 'web-blue': 100, 'web-green': 0 });
    expect(alb.targetsOf('web-green')).toEqual([]);
    for (const h of hosts)
      expect(h.containers()).toEqual([
        ['shop-blue', 'running'],
        ['shop-green', 'exited']
      ]);
  });

  test('wait-for-drain false with alb-listener: the old targets are deregistered and the job waits; the run does not', async () => {
    const { hosts, alb, deps } = setup(2);
    const { log } = makeLog(2);
    const r = await runDeploy(
      listenerCfg(2, { waitForDrain: false, drainMs: 10_000 }),
      ctx,
      log,
      new Secrets(),
      deps,
      'dep-1'
    );
    expect(r.result).toBe('success');
    expect(alb.callsNamed('DeregisterTargets')).toHaveLength(2);
    for (const [i, h] of hosts.entries()) {
      expect(r.hosts[i].loadBalancer!.health.map((s) => `${s.color} ${s.state}`)).not.toContain('blue unregistered');
      // deregistered by the drain step itself, a moment before: about the whole delay
      expect(Number(h.callsOf('finish')[0].args[1])).toBeGreaterThan(4000);
      expect(Number(h.callsOf('finish')[0].args[1])).toBeLessThanOrEqual(5000);
    }
  });

  test('canary: the first change sends alb-canary-percent, the rest follows after verify', async () => {
    const { alb, deps } = setup(2);
    const { log } = makeLog(2);
    const r = await runDeploy(listenerCfg(2, { verifyMs: 200 }, 10), ctx, log, new Secrets(), deps);
    expect(r.result).toBe('success');
    const w = alb.callsNamed('ModifyListener').map((c) =>
      (
        c.input.DefaultActions as Array<{
          ForwardConfig: { TargetGroups: Array<{ TargetGroupArn: string; Weight: number }> };
        }>
      )[0].ForwardConfig.TargetGroups.map(
        (g) => `${g.TargetGroupArn === arnOf('web-green') ? 'green' : 'blue'} ${g.Weight}`
      )
        .sort()
        .join(', ')
    );
    expect(w).toEqual(['blue 90, green 10', 'blue 0, green 100']);
    expect(r.alb?.changes.map((c) => c.kind)).toEqual(['canary', 'switch']);
  });

  test("alb-rule: the rule's forward action is switched (ModifyRule), the listener's default action is left alone", async () => {
    const { alb, deps } = setup(2);
    alb.ruleActions = [
      {
        Type: 'forward',
        Order: 1,
        ForwardConfig: {
          TargetGroups: [
            { TargetGroupArn: arnOf('web-blue'), Weight: 100 },
            { TargetGroupArn: arnOf('web-green'), Weight: 0 }
          ]
        }
      }
    ];
    const defaults = JSON.stringify(alb.listenerActions);
    const { log } = makeLog(2);
    const cfg = listenerCfg(2);
    const r = await runDeploy(
      { ...cfg, alb: { ...(cfg.alb as Extract<DeployConfig['alb'], { mode: 'listener' }>), ruleArn: RULE } },
      ctx,
      log,
      new Secrets(),
      deps
    );
    expect(r.result).toBe('success');
    expect(alb.callsNamed('ModifyRule')).toHaveLength(1);
    expect(alb.callsNamed('ModifyListener')).toHaveLength(0);
    expect(forwardWeights(alb.ruleActions)).toEqual({ [arnOf('web-blue')]: 0, [arnOf('web-green')]: 100 });
    expect(JSON.stringify(alb.listenerActions)).toBe(defaults);
  });

  test('canary whose second change fails: the listener goes back from the mixed weights to before the run, in one call', async () => {
    const { hosts, alb, deps } = setup(2);
    alb.failOn = (name) =>
      name === 'ModifyListener' && alb.callsNamed('ModifyListener').length === 2
        ? Object.assign(new Error('injected'), { name: 'ValidationError' })
        : undefined;
    const { log } = makeLog(2);
    const r = await runDeploy(listenerCfg(2, { verifyMs: 100 }, 10), ctx, log, new Secrets(), deps);
    expect(r.result).toBe('rolled-back');
    expect(r.error?.message).toMatch(/ModifyListener failed: .*\(ValidationError: injected\)/);
    expect(alb.callsNamed('ModifyListener')).toHaveLength(3);
    expect(alb.weights()).toEqual({ 'web-blue': 1, 'web-green': 0 });
    expect(r.alb?.changes.map((c) => c.kind)).toEqual(['canary', 'restore']);
    for (const h of hosts) expect(h.containers()).toEqual([['shop-blue', 'running']]);
  });

  test("one host's candidate never healthy at the ALB: no listener change, every candidate deregistered and removed", async () => {
    const { hosts, alb, deps } = setup(3);
    const bad = hosts[2];
    alb.healthy = ({ id, port }) =>
      id !== bad.instanceId && Boolean(hosts.find((h) => h.instanceId === id)?.serving(port));
    const { log } = makeLog(3);
    const r = await runDeploy(listenerCfg(3), ctx, log, new Secrets(), deps);
    expect(r.result).toBe('failed');
    expect(r.error).toEqual({ step: 'health', host: 'h3', message: expect.stringContaining('did not report') });
    expect(alb.callsNamed('ModifyListener')).toHaveLength(0);
    expect(alb.weights()).toEqual({ 'web-blue': 1, 'web-green': 0 });
    expect(alb.targetsOf('web-green').filter((t) => !t.endsWith('draining'))).toEqual([]);
    for (const h of hosts) expect(h.containers()).toEqual([['shop-blue', 'running']]);
    expect(alb.targetsOf('web-blue')).toHaveLength(3);
  });

  test('a host fails verify after the switch: the weights are put back in one call, every host back on blue', async () => {
    const { hosts, alb, deps } = setup(3);
    hosts[1].httpStatus = (port, h) =>
      port === PORTS.green && alb.callsNamed('ModifyListener').length ? 500 : h.serving(port) ? 200 : 0;
    const { log } = makeLog(3);
    const r = await runDeploy(listenerCfg(3, { verifyMs: 400 }), ctx, log, new Secrets(), deps);
    expect(r.result).toBe('rolled-back');
    expect(r.error?.host).toBe('h2');
    expect(r.error?.step).toBe('verify');
    const mods = alb.callsNamed('ModifyListener');
    expect(mods).toHaveLength(2);
    expect(alb.weights()).toEqual({ 'web-blue': 1, 'web-green': 0 });
    expect(r.alb?.changes.map((c) => c.kind)).toEqual(['switch', 'restore']);
    for (const h of hosts) expect(h.containers()).toEqual([['shop-blue', 'running']]);
    expect(alb.targetsOf('web-blue')).toHaveLength(3);
  });

  test('a listener that already sends traffic to both colours is refused before any host changes', async () => {
    const { hosts, alb, deps } = setup(2);
    alb.forwardTo({ 'web-blue': 90, 'web-green': 10 });
    const { log } = makeLog(2);
    const r = await runDeploy(listenerCfg(2), ctx, log, new Secrets(), deps);
    expect(r.result).toBe('failed');
    expect(r.error?.step).toBe('detect');
    expect(r.error?.message).toMatch(/sends requests to both colours \(weights blue 90, green 10\)/);
    expect(alb.callsNamed('RegisterTargets')).toHaveLength(0);
    for (const h of hosts) expect(h.containers()).toEqual([['shop-blue', 'running']]);
  });
});

describe('ALB pieces', () => {
  test('errors name the call, the resource, the region and what to check', () => {
    const nf = Object.assign(new Error('One or more target groups not found'), {
      name: 'TargetGroupNotFoundException'
    });
    expect(explainElbError('DescribeTargetGroups', 'alb-green-target-group "green-tg"', 'us-east-1', nf).message).toBe(
      'DescribeTargetGroups failed: alb-green-target-group "green-tg" does not exist in us-east-1: check the name or ARN and aws-region (TargetGroupNotFound: One or more target groups not found)'
    );
    const denied = Object.assign(
      new Error(
        'User: arn:aws:sts::1:assumed-role/ci is not authorized to perform: elasticloadbalancing:ModifyListener'
      ),
      { name: 'AccessDenied' }
    );
    expect(explainElbError('ModifyListener', 'alb-listener "arn:…"', 'us-east-1', denied).message).toMatch(
      /may not call elasticloadbalancing:ModifyListener/
    );
    const invalid = Object.assign(new Error('The following targets are not in a running state'), {
      name: 'InvalidTargetException'
    });
    expect(explainElbError('RegisterTargets', 'alb-target-group "web"', 'us-east-1', invalid).message).toMatch(
      /must be a running instance/
    );
  });

  test('the forward action keeps its other settings and every other action when its weights change', () => {
    const actions = [
      {
        Type: 'authenticate-oidc' as const,
        Order: 1,
        AuthenticateOidcConfig: {
          Issuer: 'x',
          AuthorizationEndpoint: 'a',
          TokenEndpoint: 't',
          UserInfoEndpoint: 'u',
          ClientId: 'c'
        }
      },
      {
        Type: 'forward' as const,
        Order: 2,
        TargetGroupArn: arnOf('web-blue'),
        ForwardConfig: {
          TargetGroups: [{ TargetGroupArn: arnOf('web-blue'), Weight: 1 }],
          TargetGroupStickinessConfig: { Enabled: true, DurationSeconds: 60 }
        }
      }
    ];
    const next = withWeights(actions, { [arnOf('web-blue')]: 0, [arnOf('web-green')]: 100 });
    expect(next[0]).toEqual(actions[0]);
    expect(next[1]).toEqual({
      Type: 'forward',
      Order: 2,
      ForwardConfig: {
        TargetGroups: [
          { TargetGroupArn: arnOf('web-blue'), Weight: 0 },
          { TargetGroupArn: arnOf('web-green'), Weight: 100 }
        ],
        TargetGroupStickinessConfig: { Enabled: true, DurationSeconds: 60 }
      }
    });
    expect(forwardWeights(next)).toEqual({ [arnOf('web-blue')]: 0, [arnOf('web-green')]: 100 });
    const groups = {
      blue: { arn: arnOf('web-blue'), name: 'web-blue' },
      green: { arn: arnOf('web-green'), name: 'web-green' }
    } as Parameters<typeof readListenerState>[1];
    expect(readListenerState(next, groups, 'the listener').live).toBe('green');
    expect(() =>
      readListenerState([{ Type: 'forward', TargetGroupArn: arnOf('other') }], groups, 'the listener')
    ).toThrow(/forwards to .*other.*neither alb-blue-target-group/);
  });

  test('the identity read from IMDSv2 is checked', () => {
    expect(parseIdentity('instance-id=i-0f1ee700000000001\nlocal-ipv4=10.204.0.11\n')).toEqual({
      instanceId: 'i-0f1ee700000000001',
      privateIp: '10.204.0.11'
    });
    expect(() => parseIdentity('instance-id=\nlocal-ipv4=10.0.0.1\n')).toThrow(/no instance ID/);
  });
});

describe('alb inputs', () => {
  const base = {
    hosts: '10.0.0.5',
    'ssh-private-key': KEY,
    'ssh-insecure-ignore-host-key': 'true',
    'app-name': 'backend',
    image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend',
    tag: 'v1',
    traffic: 'alb'
  };
  const problems = (inputs: Record<string, string>): string[] => {
    try {
      readConfig(read({ ...base, ...inputs }), ctx, {});
      return [];
    } catch (e) {
      if (e instanceof InputError) return e.problems;
      throw e;
    }
  };
  const LISTENER_IN =
    'arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2';

  test('one target group by name, publish-address 0.0.0.0 by default', () => {
    const c = readConfig(read({ ...base, 'alb-target-group': 'web-tg' }), ctx, {});
    expect(c.alb).toEqual({ mode: 'target-group', targetGroup: 'web-tg' });
    expect(c.publishAddress).toBe('0.0.0.0');
  });

  test('a listener with a group per colour and a canary', () => {
    const c = readConfig(
      read({
        ...base,
        'alb-listener': LISTENER_IN,
        'alb-blue-target-group': 'web-blue',
        'alb-green-target-group': arnOf('web-green'),
        'alb-canary-percent': '10',
        'publish-address': '10.0.0.5'
      }),
      ctx,
      {}
    );
    expect(c.alb).toEqual({
      mode: 'listener',
      listenerArn: LISTENER_IN,
      ruleArn: undefined,
      groups: { blue: 'web-blue', green: arnOf('web-green') },
      canaryPercent: 10
    });
    expect(c.publishAddress).toBe('10.0.0.5');
  });

  test('bad combinations and shapes name the input and give an example', () => {
    expect(problems({})).toEqual([
      expect.stringMatching(
        /^Input "traffic" alb needs alb-target-group .* Example: traffic: alb with alb-target-group: backend-tg/
      )
    ]);
    expect(problems({ 'alb-target-group': 'web', 'alb-listener': LISTENER_IN })[0]).toMatch(
      /^Input "alb-target-group" and alb-listener are two different ways and cannot be combined/
    );
    expect(problems({ 'alb-target-group': '-web' })[0]).toMatch(
      /^Input "alb-target-group" must be a target group's name .* Example:/
    );
    expect(problems({ 'alb-target-group': 'arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/x' })[0]).toMatch(
      /is not a target group ARN/
    );
    expect(
      problems({
        'alb-listener': 'arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/1',
        'alb-blue-target-group': 'b',
        'alb-green-target-group': 'g'
      })[0]
    ).toMatch(/^Input "alb-listener" must be a listener ARN/);
    expect(problems({ 'alb-listener': LISTENER_IN, 'alb-blue-target-group': 'b' })).toEqual([
      expect.stringMatching(/^Input "alb-green-target-group" is required with alb-listener/)
    ]);
    expect(
      problems({ 'alb-listener': LISTENER_IN, 'alb-blue-target-group': 'b', 'alb-green-target-group': 'b' })[0]
    ).toMatch(/must differ from alb-blue-target-group/);
    for (const p of ['0', '100', '5.5', 'ten'])
      expect(
        problems({
          'alb-listener': LISTENER_IN,
          'alb-blue-target-group': 'b',
          'alb-green-target-group': 'g',
          'alb-canary-percent': p
        })[0]
      ).toMatch(/^Input "alb-canary-percent" must be a whole number from 1 to 99/);
    expect(problems({ 'alb-target-group': 'web', 'alb-canary-percent': '10' })[0]).toMatch(
      /^Input "alb-canary-percent" only applies with alb-listener/
    );
    expect(problems({ 'alb-target-group': 'web', 'publish-address': 'all' })[0]).toMatch(
      /^Input "publish-address" must be an IPv4 address/
    );
    expect(problems({ traffic: 'nginx', 'alb-target-group': 'web' })[0]).toMatch(
      /^Input "alb-target-group" only applies to traffic: alb/
    );
    expect(problems({ 'alb-target-group': arnOf('web').replace('us-east-1', 'eu-west-1') })[0]).toMatch(
      /^Input "alb-target-group" is in eu-west-1 but aws-region is us-east-1/
    );
    const rule =
      'arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/0000000000000000/9683b2d02a6cabee';
    expect(
      problems({
        'alb-listener': LISTENER_IN,
        'alb-rule': rule,
        'alb-blue-target-group': 'b',
        'alb-green-target-group': 'g'
      })[0]
    ).toMatch(/^Input "alb-rule" belongs to another listener/);
  });

  test('a fleet switch needs every host at once', () => {
    const fleetInputs = {
      hosts: '10.0.0.5, 10.0.0.6',
      'alb-listener': LISTENER_IN,
      'alb-blue-target-group': 'b',
      'alb-green-target-group': 'g'
    };
    expect(problems({ ...fleetInputs, rollout: 'rolling' })[0]).toMatch(
      /^Input "rollout" must be parallel with alb-listener/
    );
    expect(problems({ ...fleetInputs, 'on-host-failure': 'continue' })[0]).toMatch(
      /^Input "on-host-failure" must be rollback-all with alb-listener/
    );
    expect(problems({ ...fleetInputs, 'max-parallel': '1' })[0]).toMatch(
      /^Input "max-parallel" does not apply with alb-listener/
    );
    expect(problems({ 'alb-target-group': 'web', hosts: '10.0.0.5, 10.0.0.6', rollout: 'rolling' })).toEqual([]);
  });
});

/** readAlbStatus's load balancer arguments: the run's shared client and (alb-listener) its fleet switch. */
function albStatusArgs(t: AlbTraffic): [AlbTraffic, AlbTraffic['listener']] {
  return [t, t.listener];
}
