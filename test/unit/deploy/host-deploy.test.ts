import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RunContext } from '../../../src/model/context.js';
import type { DeployConfig, HostTarget } from '../../../src/model/config.js';
import { HostDeployment } from '../../../src/deploy/host-deploy.js';
import { runDeploy, type RunDeps } from '../../../src/deploy/run.js';
import { StepTimer } from '../../../src/log/steps.js';
import type { HostResult } from '../../../src/model/results.js';
import type { LoginMode } from '../../../src/remote/scripts.js';
import { RunLog, type ConsoleSink } from '../../../src/log/log.js';
import { Secrets } from '../../../src/log/secrets.js';
import { renderUpstream } from '../../../src/traffic/nginx/upstream.js';
import { FakeHost } from './fake-host.js';

const APP = 'shop';
const PORTS = { blue: 8081, green: 8082 };
const ORIGINAL_UPSTREAM = renderUpstream(APP, PORTS.blue, 'Live: blue (old), deploy 1.').trim();

/** The usual host before a deploy: blue live (running, routed to), no standby kept. */
function liveBlue(label = 'h1'): FakeHost {
  const h = new FakeHost(label, APP)
    .add('blue', { running: true, port: PORTS.blue, image: 'registry.example.com/shop:v1' })
    .setUpstream(ORIGINAL_UPSTREAM);
  h.stateJson = '{"live":"blue"}';
  return h;
}

// ---------------------------------------------------------------------------------------------
// Config, context, log
// ---------------------------------------------------------------------------------------------

function makeConfig(over: Partial<DeployConfig> = {}): DeployConfig {
  return {
    command: 'deploy',
    transport: 'ssh',
    sshAddress: 'private',
    inputWarnings: [],
    hosts: [{ label: 'h1', host: 'h1', port: 22, user: 'ec2-user' }],
    ssh: {
      privateKey: 'KEY',
      hostKeys: { knownHosts: '', fingerprints: [], insecureIgnore: true },
      connectTimeoutMs: 1000,
      connectRetries: 0
    },
    rollout: { strategy: 'parallel', batchWaitMs: 0, onHostFailure: 'rollback-all' },
    app: APP,
    image: { registry: 'registry.example.com', repository: 'registry.example.com/shop', tag: 'v2' },
    registryAuth: 'none',
    containerPort: 8080,
    env: [{ key: 'DB_PASSWORD', value: 's3cret-value' }],
    dockerRunArgs: [],
    dockerCommand: ['docker'],
    healthPath: '/health',
    healthIntervalMs: 20,
    healthTimeoutMs: 2000,
    traffic: 'nginx',
    ports: { ...PORTS },
    publicPort: 8080,
    nginxUpstreamFile: '/etc/nginx/bluegreen/shop.conf',
    nginxUpstreamName: APP,
    nginxReloadCommand: 'nginx -s reload',
    nginxSwitch: 'reload',
    haproxySocket: '/run/haproxy/admin.sock',
    haproxyBackend: APP,
    haproxyStateFile: '/var/lib/haproxy/server-state',
    caddyAdminUrl: 'http://127.0.0.1:2019',
    caddySwitchDir: '/var/lib/bluegreen/caddy',
    drainMs: 1000,
    waitForDrain: true,
    stopTimeoutSeconds: 10,
    lockTimeoutSeconds: 5,
    uploadArtifacts: false,
    artifactName: 'logs',
    artifactRetentionDays: 1,
    summary: false,
    verifyMs: 0,
    keepImages: 0,
    statusHistory: 10,
    statusLogLines: 0,
    ...over
  };
}

const ctx: RunContext = {
  repository: 'o/r',
  runId: '1',
  runAttempt: '1',
  job: 'deploy',
  actor: 'tester',
  sha: 'abc',
  serverUrl: 'https://github.com',
  runUrl: 'https://github.com/o/r/actions/runs/1',
  eventName: 'push',
  runnerTemp: os.tmpdir()
};

let tmpDir: string;
beforeAll(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-unit-'));
});
afterAll(() => {
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

function makeLog(secrets = new Secrets(), hostCount = 1) {
  const lines: string[] = [];
  const sink: ConsoleSink = {
    write: (level, text) => lines.push(`${level} ${text}`),
    startGroup: () => {},
    endGroup: () => {}
  };
  const file = path.join(tmpDir, `run-${Math.random().toString(16).slice(2)}.log`);
  const log = new RunLog(file, secrets, sink, hostCount);
  return { log, lines, file };
}

async function deploy(
  host: FakeHost,
  cfg = makeConfig(),
  login: LoginMode = { kind: 'none' }
): Promise<{ result: HostResult; lines: string[] }> {
  const { log, lines } = makeLog();
  const hostLog = log.forHost(host.target.label);
  const timer = new StepTimer(hostLog);
  const result = await new HostDeployment({
    cfg,
    ctx,
    deployId: 'dep-1',
    remote: host,
    log: hostLog,
    timer,
    login
  }).run();
  return { result, lines };
}

const stepNames = (r: HostResult) => r.steps.map((s) => s.name);

// ---------------------------------------------------------------------------------------------
// HostDeployment — nginx
// ---------------------------------------------------------------------------------------------

describe('HostDeployment (nginx)', () => {
  test('success: scripts run in order, candidate becomes active, old colour is stopped', async () => {
    const host = liveBlue();
    const { result } = await deploy(host);

    // detect reads the host alongside the pull (both under the lock); the success is recorded while the finishing
    // job is handed over; the host has no curl/bash here, so health is probed from the runner (after the watcher's 127)
    // (the second probe's connection, for the check after the switch, is opened as the switch is sent)
    expect(host.events).toEqual([
      'lock-open',
      'detect',
      'pull',
      'start',
      'watch',
      'probe:8082',
      'probe:8082',
      'upstream',
      'record',
      'finish',
      'lock-end'
    ]);
    // what a user sees: green serves, blue is kept stopped for rollback
    expect(host.serving()).toBe('shop-green');
    expect(host.containers()).toEqual([
      ['shop-blue', 'exited'],
      ['shop-green', 'running']
    ]);
    expect(result.result).toBe('success');
    expect(result.activeColor).toBe('green');
    expect(result.previousColor).toBe('blue');
    expect(result.candidateColor).toBe('green');
    expect(result.digest).toBe(`sha256:${'a'.repeat(64)}`);
    expect(result.error).toBeUndefined();
    expect(stepNames(result)).toEqual([
      'lock',
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
    ]);
    expect(result.steps.every((s) => s.status === 'ok')).toBe(true);
    expect(typeof result.cutoverMs).toBe('number');
    expect(result.downtimeMs).toBeUndefined();
    expect(host.lockEnded).toBe(true);

    // start: green, not replacing, published on the green port, pinned to the digest, env on stdin
    const [start] = host.callsOf('start');
    expect(start.args.slice(0, 3)).toEqual(['shop-green', '0', 'run']);
    expect(start.args).toContain('127.0.0.1:8082:8080');
    expect(start.args[start.args.length - 1]).toBe(`registry.example.com/shop@sha256:${'a'.repeat(64)}`);
    expect(start.stdin).toBe('DB_PASSWORD=s3cret-value\n');
    // upstream now points at green
    const [up] = host.callsOf('upstream');
    expect(up.args[7]).toContain('server 127.0.0.1:8082;');
    // the switch waits for new nginx workers in the same round trip; drain gets the workers seen before the reload
    expect(up.args[3]).toBe('10000');
    expect(result.cutoverMs).toBe(23);
    expect(host.callsOf('finish')[0].args[0]).toBe('101 102');
    // the old colour is stopped, never removed
    expect(host.callsOf('finish')[0].args.slice(2, 5)).toEqual(['shop-blue', '10', 'wait']);
    expect(host.count('discard')).toBe(0);
    // record writes the new state
    const state = JSON.parse(host.callsOf('record')[0].args[1]) as { live: string; standby: string };
    expect(state).toMatchObject({ live: 'green', standby: 'blue' });
    const history = JSON.parse(host.callsOf('record')[0].args[2]) as { result: string };
    expect(history.result).toBe('success');
  });

  test('success removes leftover containers during cleanup', async () => {
    const host = liveBlue().add('shop-crashed', { running: false });
    const { result } = await deploy(host);
    expect(result.result).toBe('success');
    // removed after the switch by the finishing script (with the drain and stop), not as a round trip of its own
    expect(host.callsOf('finish').map((c) => c.args[6])).toEqual(['shop-crashed']);
    expect(host.count('discard')).toBe(0);
    expect(host.containers()).toEqual([
      ['shop-blue', 'exited'],
      ['shop-green', 'running']
    ]);
  });

  test('keep-images: the images are listed while the candidate boots, and pruned by the finishing script', async () => {
    const host = liveBlue().on('images', () => ({
      stdout: `@@images\nsha256:${'1'.repeat(64)} registry.example.com/shop:v2\nsha256:${'2'.repeat(64)} registry.example.com/shop:v1\nsha256:${'3'.repeat(64)} registry.example.com/shop:v0\n@@in-use\nsha256:${'2'.repeat(64)}\n`
    }));
    const { result } = await deploy(host, makeConfig({ keepImages: 2 }));
    expect(result.result).toBe('success');
    expect(host.events.indexOf('images')).toBeLessThan(host.events.indexOf('upstream'));
    expect(host.callsOf('finish')[0].args[7]).toBe('registry.example.com/shop:v0');
  });

  test('wait-for-drain false: one round trip hands drain and stop to a job on the host; the run does not wait', async () => {
    const host = liveBlue();
    const { result } = await deploy(host, makeConfig({ waitForDrain: false }));
    expect(result.result).toBe('success');
    expect(host.callsOf('finish').map((c) => c.args.slice(2, 6))).toEqual([['shop-blue', '10', 'background', 'shop']]);
    expect(stepNames(result)).toEqual([
      'lock',
      'pull',
      'detect',
      'start',
      'health',
      'switch',
      'verify',
      'drain',
      'record'
    ]);
    expect(host.events.indexOf('finish')).toBeLessThan(host.events.indexOf('lock-end'));
    // the same exchange records the run (no record command of its own) and then removes this run's lease
    expect(host.count('record')).toBe(0);
    expect(JSON.parse(host.stateJson!)).toMatchObject({ live: 'green', standby: 'blue', deployId: 'dep-1' });
    const [finish] = host.callsOf('finish');
    expect(JSON.parse(finish.args[9])).toMatchObject({ result: 'success', color: 'green', previous: 'blue' });
    expect(finish.args[11]).toMatch(/^dep-1\./);
    expect(host.leaseHeld).toBe(false);
  });

  test('first deploy: no drain and no stop, previousColor undefined', async () => {
    const host = new FakeHost('h1', APP).setUpstream(renderUpstream(APP, PORTS.blue, 'placeholder'));
    const { result } = await deploy(host);
    expect(result.result).toBe('success');
    expect(result.activeColor).toBe('blue');
    expect(result.previousColor).toBeUndefined();
    expect(host.count('finish')).toBe(0);
    expect(host.serving()).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
    expect(host.callsOf('start')[0].args[0]).toBe('shop-blue');
  });

  test('health never 2xx: fails at health, candidate removed, upstream untouched, lock released', async () => {
    const host = liveBlue();
    host.httpStatus = () => 503;
    const { result } = await deploy(host, makeConfig({ healthTimeoutMs: 150, healthIntervalMs: 20 }));

    expect(result.result).toBe('failed');
    expect(result.error?.step).toBe('health');
    expect(result.error?.message).toMatch(/did not answer 2xx.*HTTP 503/);
    expect(result.activeColor).toBe('blue');
    expect(result.previousColor).toBeUndefined();
    expect(host.count('upstream')).toBe(0);
    expect(host.callsOf('discard').map((c) => c.args)).toEqual([['shop-green', 'dep-1']]);
    expect(host.serving()).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
    expect(host.count('status')).toBeGreaterThan(0);
    expect(result.candidateLogs).toBe('app log line');
    expect(host.lockEnded).toBe(true);
    expect(host.events[host.events.length - 1]).toBe('lock-end');
    // the failure is recorded in the host's history, without a new state
    const rec = host.callsOf('record')[0];
    expect(rec.args[1]).toBe('');
    expect(JSON.parse(rec.args[2])).toMatchObject({ result: 'failed' });
    expect(result.steps.find((s) => s.name === 'health')?.status).toBe('failed');
  });

  test('container exits during health: fails at once with its log lines', async () => {
    const host = liveBlue().on('status', () => ({
      stdout: 'exited 0 1\n@@logs\nError: cannot connect to db\n  at main.js:1\n'
    }));
    host.httpStatus = () => 502;
    const { result } = await deploy(host, makeConfig({ healthTimeoutMs: 60_000 }));

    expect(result.result).toBe('failed');
    expect(result.error?.step).toBe('health');
    expect(result.error?.message).toMatch(/shop-green is exited \(exit code 1\)/);
    expect(result.candidateLogs).toContain('Error: cannot connect to db');
    expect(result.candidateLogs).toContain('at main.js:1');
    expect(result.candidateLogs).not.toContain('@@logs');
    expect(host.count('status')).toBe(1);
    expect(host.count('upstream')).toBe(0);
    expect(host.callsOf('discard').map((c) => c.args)).toEqual([['shop-green', 'dep-1']]);
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
  });

  test('pull fails after login: step is pull, manifest unknown explained, nothing started', async () => {
    const host = liveBlue().on('pull', () => ({
      code: 1,
      stdout: '@@step login\nLogin Succeeded\n@@step pull\n',
      stderr: 'Error response from daemon: manifest unknown: manifest unknown\n'
    }));
    const login: LoginMode = {
      kind: 'password',
      registry: 'registry.example.com',
      username: 'u',
      password: 'pw-123456'
    };
    const { result } = await deploy(host, makeConfig(), login);

    expect(result.result).toBe('failed');
    expect(result.error?.step).toBe('pull');
    expect(result.error?.message).toMatch(/image registry\.example\.com\/shop:v2 was not found in the registry/);
    expect(stepNames(result).slice(0, 3)).toEqual(['lock', 'login', 'pull']);
    expect(result.steps.find((s) => s.name === 'login')?.status).toBe('ok');
    expect(result.steps.find((s) => s.name === 'pull')?.status).toBe('failed');
    // the host's state was read alongside the pull (read only), and no detect step followed
    expect(stepNames(result)).not.toContain('detect');
    expect(host.count('start')).toBe(0);
    expect(host.count('discard')).toBe(0);
    // the credentials go to the host as the throwaway DOCKER_CONFIG's config.json, on stdin only
    expect(JSON.parse(host.callsOf('pull')[0].stdin!)).toEqual({
      auths: { 'registry.example.com': { auth: Buffer.from('u:pw-123456').toString('base64') } }
    });
    expect(host.lockEnded).toBe(true);
  });

  test('login fails: the step is login', async () => {
    const host = liveBlue().on('pull', () => ({
      code: 1,
      stdout: '@@step login\n',
      stderr: 'Error response from daemon: unauthorized: authentication required\n'
    }));
    const login: LoginMode = {
      kind: 'password',
      registry: 'registry.example.com',
      username: 'u',
      password: 'pw-123456'
    };
    const { result } = await deploy(host, makeConfig(), login);
    expect(result.error?.step).toBe('login');
    expect(result.error?.message).toMatch(/refused access/);
  });

  test('reload fails: step switch, candidate removed, no second upstream write', async () => {
    const host = liveBlue().on('upstream', () => ({
      code: 4,
      stdout: '@@workers-before 101\nnginx: [emerg] unexpected "}"\n@@reload-failed 1\n'
    }));
    const { result } = await deploy(host);

    expect(result.result).toBe('failed');
    expect(result.error?.step).toBe('switch');
    expect(result.error?.message).toMatch(/nginx switch failed \(exit 4\)/);
    expect(result.error?.message).toMatch(/previous upstream file was restored/);
    expect(result.activeColor).toBe('blue');
    expect(host.count('upstream')).toBe(1);
    expect(host.callsOf('discard').map((c) => c.args)).toEqual([['shop-green', 'dep-1']]);
    expect(host.serving()).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
    expect(host.lockEnded).toBe(true);
  });

  test('verify fails after the switch: original upstream restored, candidate removed, old colour kept', async () => {
    const host = liveBlue();
    host.httpStatus = (_port, h) => (h.count('upstream') > 0 ? 500 : 200);
    const { result } = await deploy(host);

    expect(result.result).toBe('rolled-back');
    expect(result.error?.step).toBe('verify');
    expect(result.error?.message).toMatch(/HTTP 500 after the switch/);
    expect(result.activeColor).toBe('blue');
    expect(result.previousColor).toBeUndefined();
    const ups = host.callsOf('upstream');
    expect(ups).toHaveLength(2);
    expect(ups[0].args.slice(6, 7)).toEqual(['arg']);
    expect(ups[0].args[7]).toContain('127.0.0.1:8082');
    expect(ups[1].args[7]).toBe(`${ORIGINAL_UPSTREAM}\n`);
    expect(ups[1].args[2]).toBe('write');
    expect(host.callsOf('discard').map((c) => c.args)).toEqual([['shop-green', 'dep-1']]);
    // the workers from before the switch-back (they serve green) finish their requests before green is removed
    expect(host.callsOf('drain').map((c) => c.args)).toEqual([['201 202', '1000']]);
    expect(host.events.indexOf('drain')).toBeGreaterThan(host.events.lastIndexOf('upstream'));
    expect(host.events.indexOf('discard')).toBeGreaterThan(host.events.indexOf('drain'));
    // the decision was made from the host as it was after the failure
    expect(host.events.lastIndexOf('detect')).toBeLessThan(host.events.lastIndexOf('upstream'));
    expect(host.serving()).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
    expect(result.steps.find((s) => s.name === 'switch-back')?.status).toBe('ok');
    expect(host.lockEnded).toBe(true);
  });

  test('nginx keeps its old workers after the reload: verify fails, the upstream is restored, the old colour keeps serving', async () => {
    // the file is written, but nginx never starts new workers (its routing stays on blue)
    const host = liveBlue().on('upstream', (call, h) => {
      h.upstream = call.args[6] === 'arg' ? call.args[7] : call.stdin;
      return { stdout: '@@masters 100\n@@workers-before 101\n@@reloaded\n@@no-takeover\n' };
    });
    const { result } = await deploy(host);
    expect(result.result).toBe('rolled-back');
    expect(result.error?.step).toBe('verify');
    expect(result.error?.message).toMatch(
      /nginx did not reload within 10 s \(no nginx master on the host started new workers; masters 100 with workers 101 are unchanged\)/
    );
    expect(result.activeColor).toBe('blue');
    expect(host.callsOf('upstream')[1].args[7]).toBe(`${ORIGINAL_UPSTREAM}\n`);
    expect(host.upstream).toBe(`${ORIGINAL_UPSTREAM}\n`);
    expect(host.serving()).toBe('shop-blue');
  });

  test('verify fails on a host that had no upstream file: switch-back removes the file', async () => {
    const host = liveBlue().setUpstream(undefined);
    host.nginxPort = PORTS.blue; // nginx was set up by hand: traffic reaches blue without our file
    host.httpStatus = (_port, h) => (h.count('upstream') > 0 ? 500 : 200);
    const { result } = await deploy(host);
    expect(result.result).toBe('rolled-back');
    const ups = host.callsOf('upstream');
    expect(ups).toHaveLength(2);
    expect(ups[1].args[2]).toBe('remove');
  });

  test('switch-back that itself fails leaves result failed with a warning', async () => {
    const host = liveBlue().on('upstream', (c, h) =>
      h.count('upstream') > 1 ? { code: 4, stdout: '@@reload-failed 1\n' } : h.model(c)
    );
    host.httpStatus = (_port, h) => (h.count('upstream') > 0 ? 500 : 200);
    const { result } = await deploy(host);
    expect(result.result).toBe('failed');
    expect(result.error?.step).toBe('verify');
    // nginx still routes to green, so green must not be removed
    expect(host.serving()).toBe('shop-green');
    expect(result.warnings.some((w) => w.startsWith('switch-back:'))).toBe(true);
    expect(result.steps.find((s) => s.name === 'switch-back')?.status).toBe('warning');
  });

  // Regression test.
  test('when the switch-back fails the old colour is not reported as active', async () => {
    const host = liveBlue().on('upstream', (c, h) =>
      h.count('upstream') > 1 ? { code: 4, stdout: '@@reload-failed 1\n' } : h.model(c)
    );
    host.httpStatus = (_port, h) => (h.count('upstream') > 0 ? 500 : 200);
    const { result } = await deploy(host);
    expect(result.result).toBe('failed');
    expect(result.activeColor).not.toBe('blue');
  });

  // Regression test.
  test('no access to the docker socket is not reported as a registry auth problem', async () => {
    const host = liveBlue().on('pull', () => ({
      code: 1,
      stdout: '@@step pull\n',
      stderr:
        'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Post "http://%2Fvar%2Frun%2Fdocker.sock/v1.24/images/create": dial unix /var/run/docker.sock: connect: permission denied\n'
    }));
    const { result } = await deploy(host);
    expect(result.error?.step).toBe('pull');
    expect(result.error?.message).toMatch(/docker is not reachable/);
  });

  // Regression test.
  test('docker missing on the host is not reported as a missing image', async () => {
    const host = liveBlue().on('pull', () => ({
      code: 127,
      stdout: '@@step pull\n',
      stderr: 'sh: 1: docker: not found\n'
    }));
    const { result } = await deploy(host);
    expect(result.error?.step).toBe('pull');
    expect(result.error?.message).not.toMatch(/was not found in the registry/);
  });

  test('a foreign container fails at detect and nothing is started or removed', async () => {
    const host = liveBlue().add('green', { running: false, labels: null });
    const { result } = await deploy(host);
    expect(result.result).toBe('failed');
    expect(result.error?.step).toBe('detect');
    expect(host.count('start')).toBe(0);
    expect(host.count('discard')).toBe(0);
    expect(host.containers()).toEqual([
      ['shop-blue', 'running'],
      ['shop-green', 'exited']
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// HostDeployment — port-swap
// ---------------------------------------------------------------------------------------------

describe('HostDeployment (nginx-switch: njs)', () => {
  const njs = () => makeConfig({ nginxSwitch: 'njs' });

  test('success: the upstream file is rewritten without a reload; the finishing job drains the old colour by its connections, then stops it', async () => {
    const host = liveBlue();
    const { result, lines } = await deploy(host, njs());
    expect(result.result).toBe('success');
    expect(host.serving()).toBe('shop-green');
    expect(host.containers()).toEqual([
      ['shop-blue', 'exited'],
      ['shop-green', 'running']
    ]);
    const [up] = host.callsOf('upstream');
    expect(up.args[7]).toContain('server 127.0.0.1:8082;');
    // the reload command is never run, and nothing waits for new workers
    expect(up.args[1]).toBe(':');
    expect(up.args[3]).toBe('0');
    // nothing on the run's path waits for the old colour's connections: the job does (port 8081, at most drain-seconds)
    expect(host.count('conn-drain')).toBe(0);
    const fin = host.callsOf('finish')[0];
    // the router's drain: by nginx's connections to the old colour's port (8081), not by nginx workers
    expect(fin.args.slice(0, 3)).toEqual(['8081', '1000', 'shop-blue']);
    expect(fin.body).toContain('/proc/net/tcp');
    expect(fin.body).not.toContain('nginx: worker process is shutting down');
    expect(lines.join('\n')).toMatch(/drain shop-blue \(up to 1 s\)/);
  });

  test('wait-for-drain: connections to the old colour still open after drain-seconds are named in a warning, then it is stopped', async () => {
    const host = liveBlue();
    host.finishDrain = '@@drain-timeout 2';
    const { result, lines } = await deploy(host, njs());
    expect(result.result).toBe('success');
    expect(lines.join('\n')).toMatch(
      /shop-blue still had 2 connection\(s\) from nginx after drain-seconds \(1 s\); stopped it anyway/
    );
    expect(host.containers()).toEqual([
      ['shop-blue', 'exited'],
      ['shop-green', 'running']
    ]);
  });

  test('verify fails: the previous file is put back without a reload, the candidate drained by its connections, then removed', async () => {
    const host = liveBlue();
    host.httpStatus = (_port, h) => (h.count('upstream') > 0 ? 500 : 200);
    const { result } = await deploy(host, njs());
    expect(result.result).toBe('rolled-back');
    expect(result.error?.step).toBe('verify');
    const ups = host.callsOf('upstream');
    expect(ups.map((u) => [u.args[1], u.args[3]])).toEqual([
      [':', '0'],
      [':', '0']
    ]);
    expect(ups[1].args[7]).toBe(`${ORIGINAL_UPSTREAM}\n`);
    // the candidate is drained by its connections before it goes; the old colour was never drained
    expect(host.callsOf('conn-drain').map((c) => c.args)).toEqual([['8082', '1000']]);
    expect(host.events.indexOf('discard')).toBeGreaterThan(host.events.lastIndexOf('conn-drain'));
    expect(host.count('drain')).toBe(0);
    expect(host.serving()).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
  });
});

describe('HostDeployment (port-swap)', () => {
  const cfg = () => makeConfig({ traffic: 'port-swap', healthTimeoutMs: 150, healthIntervalMs: 20 });
  /** blue runs bound to the public port 8080; no proxy. */
  const liveBlueOnPort = () => new FakeHost('h1', APP).add('blue', { running: true, port: 8080 });

  test('success: candidate created, swap stops the old and starts the new, health on the public port', async () => {
    const host = liveBlueOnPort();
    const { result } = await deploy(host, cfg());

    expect(host.events).toEqual([
      'lock-open',
      'detect',
      'pull',
      'start',
      'swap',
      'watch',
      'probe:8080',
      'probe:8080',
      'record',
      'lock-end'
    ]);
    const [start] = host.callsOf('start');
    expect(start.args.slice(0, 3)).toEqual(['shop-green', '0', 'create']);
    expect(start.args).toContain('8080:8080');
    expect(host.callsOf('swap')[0].args).toEqual(['shop-blue', 'shop-green', '10']);
    expect(result.result).toBe('success');
    expect(result.activeColor).toBe('green');
    expect(result.previousColor).toBe('blue');
    // nothing left to do after the swap (the old colour was stopped by it; no leftovers, keep-images 0)
    expect(stepNames(result)).toEqual(['lock', 'pull', 'detect', 'start', 'switch', 'health', 'verify', 'record']);
    expect(typeof result.downtimeMs).toBe('number');
    expect(result.downtimeMs).toBe(result.cutoverMs);
    expect(host.serving(8080)).toBe('shop-green');
    expect(host.containers()).toEqual([
      ['shop-blue', 'exited'],
      ['shop-green', 'running']
    ]);
  });

  test('unhealthy after the swap: candidate removed, old container started again → rolled-back', async () => {
    const host = liveBlueOnPort();
    // the new container answers 503; once the old one is started again (2nd swap call) it answers 200
    host.httpStatus = (_port, h) => (h.count('swap') >= 2 ? 200 : 503);
    const { result } = await deploy(host, cfg());

    expect(result.result).toBe('rolled-back');
    expect(result.error?.step).toBe('health');
    expect(result.activeColor).toBe('blue');
    const swaps = host.callsOf('swap');
    expect(swaps).toHaveLength(2);
    expect(swaps[0].args).toEqual(['shop-blue', 'shop-green', '10']);
    expect(swaps[1].args).toEqual(['', 'shop-blue', '10']);
    expect(host.callsOf('discard').map((c) => c.args)).toEqual([['shop-green', 'dep-1']]);
    expect(host.events.indexOf('discard')).toBeLessThan(host.events.lastIndexOf('swap'));
    expect(result.steps.find((s) => s.name === 'switch-back')?.status).toBe('ok');
    expect(host.lockEnded).toBe(true);
    expect(host.serving(8080)).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
  });
});

// ---------------------------------------------------------------------------------------------
// runDeploy
// ---------------------------------------------------------------------------------------------

describe('runDeploy', () => {
  const twoHosts: HostTarget[] = [
    { label: 'good', host: 'good', port: 22, user: 'ec2-user' },
    { label: 'bad', host: 'bad', port: 22, user: 'ec2-user' }
  ];

  test('a connect failure on one host gives that host error.step connect; with on-host-failure continue the other deploys', async () => {
    const good = liveBlue('good');
    const connected: string[] = [];
    const deps: RunDeps = {
      connect: async (t) => {
        connected.push(t.label);
        if (t.label === 'bad') throw new Error('connection to bad was refused');
        return good;
      },
      fetchEcrToken: async () => {
        throw new Error('not used');
      }
    };
    const { log } = makeLog(new Secrets(), 2);
    const r = await runDeploy(
      makeConfig({ hosts: twoHosts, rollout: { strategy: 'parallel', batchWaitMs: 0, onHostFailure: 'continue' } }),
      ctx,
      log,
      new Secrets(),
      deps,
      'dep-2'
    );

    expect(connected.sort()).toEqual(['bad', 'good']);
    const bad = r.hosts.find((h) => h.host === 'bad')!;
    expect(bad.result).toBe('failed');
    expect(bad.error).toEqual({ step: 'connect', message: 'connection to bad was refused' });
    expect(bad.steps.map((s) => [s.name, s.status])).toEqual([['connect', 'failed']]);
    const ok = r.hosts.find((h) => h.host === 'good')!;
    expect(ok.result).toBe('success');
    expect(good.closed).toBe(true);
    expect(r.result).toBe('failed');
    expect(r.error).toEqual({ step: 'connect', host: 'bad', message: 'connection to bad was refused' });
    expect(r.deployId).toBe('dep-2');
  });

  test('a connect failure with rollback-all (default): no host is touched, and the others say why', async () => {
    const good = liveBlue('good');
    const deps: RunDeps = {
      connect: async (t) => {
        if (t.label === 'bad') throw new Error('connection to bad was refused');
        return good;
      },
      fetchEcrToken: async () => {
        throw new Error('not used');
      }
    };
    const { log } = makeLog(new Secrets(), 2);
    const r = await runDeploy(makeConfig({ hosts: twoHosts }), ctx, log, new Secrets(), deps, 'dep-3');
    const ok = r.hosts.find((h) => h.host === 'good')!;
    // every host is locked before any deploys: a host that cannot be reached stops the fleet before anything changes
    expect(ok.result).toBe('skipped');
    expect(ok.abortedBy).toBe('bad');
    expect(good.count('start')).toBe(0);
    expect(good.serving()).toBe('shop-blue');
    expect(good.events).not.toContain('lock-open');
    expect(good.closed).toBe(true);
    expect(r.result).toBe('failed');
    expect(r.error).toEqual({ step: 'connect', host: 'bad', message: 'connection to bad was refused' });
  });

  test('rollback-all, a free fleet: every host is locked at once, without waiting (one round trip, not one per host)', async () => {
    const hosts = { h1: liveBlue('h1'), h2: liveBlue('h2') };
    const deps: RunDeps = {
      connect: async (t) => hosts[t.label as 'h1' | 'h2'],
      fetchEcrToken: async () => {
        throw new Error('not used');
      }
    };
    const { log } = makeLog(new Secrets(), 2);
    const r = await runDeploy(
      makeConfig({
        hosts: [
          { label: 'h1', host: 'h1', port: 22, user: 'ec2-user' },
          { label: 'h2', host: 'h2', port: 22, user: 'ec2-user' }
        ]
      }),
      ctx,
      log,
      new Secrets(),
      deps,
      'dep-q'
    );
    expect(r.result).toBe('success');
    for (const h of Object.values(hosts)) expect(h.lockTimeouts).toEqual(['0']);
    for (const res of r.hosts)
      expect(res.steps.filter((st) => st.name === 'lock').map((st) => st.status)).toEqual(['ok']);
  });

  test('rollback-all, one host busy: the locks taken are let go, then every host is locked in order, waiting its turn', async () => {
    const hosts = { h1: liveBlue('h1'), h2: liveBlue('h2') };
    hosts.h2.lockBusyFor = 1; // busy when tried at once, free by its turn
    const deps: RunDeps = {
      connect: async (t) => hosts[t.label as 'h1' | 'h2'],
      fetchEcrToken: async () => {
        throw new Error('not used');
      }
    };
    const { log, lines } = makeLog(new Secrets(), 2);
    const cfg = makeConfig({
      hosts: [
        { label: 'h2', host: 'h2', port: 22, user: 'ec2-user' },
        { label: 'h1', host: 'h1', port: 22, user: 'ec2-user' }
      ]
    });
    const r = await runDeploy(cfg, ctx, log, new Secrets(), deps, 'dep-b');
    expect(r.result).toBe('success');
    const wait = String(cfg.lockTimeoutSeconds);
    expect(hosts.h1.lockTimeouts).toEqual(['0', wait]);
    expect(hosts.h2.lockTimeouts).toEqual(['0', wait]);
    // h1's quick lock was let go before anything waited
    expect(hosts.h1.events.slice(0, 3)).toEqual(['lock-open', 'lock-end', 'lock-open']);
    expect(lines.join('\n')).toMatch(/the deploy lock is busy on h2: letting go of the others/);
    for (const res of r.hosts)
      expect(res.steps.filter((st) => st.name === 'lock').map((st) => st.status)).toEqual(['ok']);
  });

  test('rollback-all, a host still busy at its turn: it fails at lock, the hosts after it are never tried, none is touched', async () => {
    const hosts = { h1: liveBlue('h1'), h2: liveBlue('h2'), h3: liveBlue('h3') };
    hosts.h2.lockBusyFor = 2;
    const deps: RunDeps = {
      connect: async (t) => hosts[t.label as 'h1' | 'h2' | 'h3'],
      fetchEcrToken: async () => {
        throw new Error('not used');
      }
    };
    const { log } = makeLog(new Secrets(), 3);
    const r = await runDeploy(
      makeConfig({ hosts: ['h3', 'h2', 'h1'].map((label) => ({ label, host: label, port: 22, user: 'ec2-user' })) }),
      ctx,
      log,
      new Secrets(),
      deps,
      'dep-f'
    );
    expect(r.result).toBe('failed');
    expect(r.error).toMatchObject({ step: 'lock', host: 'h2' });
    expect(r.error?.message).toMatch(/another deploy of shop still holds the lock on this host/);
    const by = Object.fromEntries(r.hosts.map((h) => [h.host, h]));
    expect([by.h1.result, by.h2.result, by.h3.result]).toEqual(['skipped', 'failed', 'skipped']);
    expect(hosts.h3.lockTimeouts).toEqual(['0']);
    expect(by.h3.steps.map((st) => st.name)).toEqual(['connect']);
    for (const h of Object.values(hosts)) {
      expect(h.count('start')).toBe(0);
      expect(h.leaseHeld).toBe(false);
    }
  });

  test('ECR token failure: failed at ecr-token, no host is connected', async () => {
    let connects = 0;
    const deps: RunDeps = {
      connect: async () => {
        connects++;
        return liveBlue();
      },
      fetchEcrToken: async () => {
        throw new Error('no AWS credentials on the runner');
      }
    };
    const { log } = makeLog();
    const r = await runDeploy(
      makeConfig({ registryAuth: 'ecr', awsRegion: 'us-east-1' }),
      ctx,
      log,
      new Secrets(),
      deps
    );
    expect(r.result).toBe('failed');
    expect(r.error).toEqual({ step: 'ecr-token', message: 'no AWS credentials on the runner' });
    expect(r.hosts).toEqual([]);
    expect(r.steps.map((s) => [s.name, s.status])).toEqual([['ecr-token', 'failed']]);
    expect(connects).toBe(0);
  });

  test('ECR token success: password becomes a secret and is passed to the host login on stdin', async () => {
    const host = liveBlue();
    const secrets = new Secrets();
    const password = 'ecr-password-XYZ-0123456789';
    const deps: RunDeps = { connect: async () => host, fetchEcrToken: async () => ({ username: 'AWS', password }) };
    const { log, file, lines } = makeLog(secrets);
    const r = await runDeploy(makeConfig({ registryAuth: 'ecr', awsRegion: 'us-east-1' }), ctx, log, secrets, deps);

    expect(r.result).toBe('success');
    expect(r.steps.map((s) => s.name)).toEqual(['ecr-token']);
    expect(secrets.redact(`token ${password} here`)).toBe('token *** here');
    const pull = host.callsOf('pull')[0];
    const auth = Buffer.from(`AWS:${password}`).toString('base64');
    expect(JSON.parse(pull.stdin!)).toEqual({ auths: { 'registry.example.com': { auth } } });
    expect(secrets.redact(`auth ${auth}`)).toBe('auth ***');
    expect(pull.args).toEqual(['registry.example.com/shop:v2']);
    expect(pull.args.join(' ')).not.toContain(password);
    expect(fs.readFileSync(file, 'utf8')).not.toContain(password);
    expect(lines.join('\n')).not.toContain(password);
  });
});

// ---------------------------------------------------------------------------------------------
// The undo of each phase, decided from the host's real state (Core issue cases 3, 4, 5)
// ---------------------------------------------------------------------------------------------

describe('undo by phase', () => {
  async function deployWith(
    host: FakeHost,
    opts: { cfg?: DeployConfig; signal?: AbortSignal; reconnect?: () => Promise<FakeHost> } = {}
  ) {
    const { log } = makeLog();
    const hostLog = log.forHost(host.target.label);
    const timer = new StepTimer(hostLog, opts.signal);
    return new HostDeployment({
      cfg: opts.cfg ?? makeConfig(),
      ctx,
      deployId: 'dep-1',
      remote: host,
      log: hostLog,
      timer,
      login: { kind: 'none' },
      reconnect: opts.reconnect
    }).run();
  }
  const reconnectTo = (host: FakeHost) => async () => {
    host.connected = true;
    return host;
  };

  test('traffic: the connection is lost right after the reload: recovery sees the switched upstream, switches back and removes the candidate', async () => {
    const host = liveBlue().on('upstream', (c, h) => {
      const r = h.model(c);
      if (h.count('upstream') === 1) {
        h.connected = false; // the reload happened; its answer never arrives
        throw new Error('the SSH connection was lost (ECONNRESET)');
      }
      return r;
    });
    const result = await deployWith(host, { reconnect: reconnectTo(host) });
    expect(result.result).toBe('rolled-back');
    expect(result.error?.step).toBe('switch');
    expect(result.activeColor).toBe('blue');
    expect(host.serving()).toBe('shop-blue');
    expect(host.upstream).toBe(`${ORIGINAL_UPSTREAM}\n`);
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
  });

  test('traffic: the connection is lost before the switch script ran: nothing to switch back, the candidate is removed', async () => {
    const host = liveBlue().on('upstream', (_c, h) => {
      h.connected = false;
      throw new Error('the SSH connection was lost (ECONNRESET)');
    });
    const result = await deployWith(host, { reconnect: reconnectTo(host) });
    expect(result.result).toBe('failed');
    expect(host.count('upstream')).toBe(1);
    expect(host.serving()).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
  });

  test('after a reconnect another deploy owns the host: its live container and upstream are left alone', async () => {
    // blue live, green kept; our candidate (green) starts; the connection drops during health; meanwhile another
    // run took the lock, repaired the host and deployed its own green, now live.
    const host = liveBlue().add('green', { running: false, deployId: 'older' });
    let dropped = false;
    host.on('status', (c, h) => {
      if (!dropped) {
        dropped = true;
        h.connected = false;
        throw new Error('the SSH connection was lost (ECONNRESET)');
      }
      return h.model(c);
    });
    host.httpStatus = (port, h) => (h.count('status') === 0 && port === PORTS.green ? 503 : h.serving(port) ? 200 : 0);
    const reconnect = async () => {
      // the other run: its green is live, the upstream is its own, our candidate and the replaced one are gone
      host.store.delete('shop-green');
      host.store.delete('shop-green-replaced');
      host.add('green', { running: true, port: PORTS.green, deployId: 'other-run' });
      host.setUpstream(renderUpstream(APP, PORTS.green, 'Live: green (x), deploy other-run.'));
      host.connected = true;
      return host;
    };
    const result = await deployWith(host, { reconnect });
    expect(result.result).toBe('failed');
    expect(host.serving()).toBe('shop-green');
    expect(host.store.get('shop-green')?.labels['bluegreen.deploy-id']).toBe('other-run');
    expect(host.upstream).toContain('other-run');
    expect(host.callsOf('discard').map((c) => c.args)).toEqual([['shop-green', 'dep-1']]);
  });

  test('started: a cancel right before start leaves the kept standby in place', async () => {
    const host = liveBlue().add('green', { running: false, deployId: 'older' });
    const cancel = new AbortController();
    host.on('detect', (c, h) => {
      cancel.abort(); // the workflow is cancelled while the host is read
      return h.model(c);
    });
    const result = await deployWith(host, { signal: cancel.signal });
    expect(result.result).toBe('failed');
    expect(host.count('start')).toBe(0);
    expect(host.count('discard')).toBe(0);
    expect(host.containers()).toEqual([
      ['shop-blue', 'running'],
      ['shop-green', 'exited']
    ]);
    expect(host.store.get('shop-green')?.labels['bluegreen.deploy-id']).toBe('older');
  });

  test("started: a failure after start removes only this run's candidate and puts the replaced standby back", async () => {
    const host = liveBlue().add('green', { running: false, deployId: 'older' });
    host.httpStatus = (port, h) => (port === PORTS.green ? 503 : h.serving(port) ? 200 : 0);
    const result = await deployWith(host, { cfg: makeConfig({ healthTimeoutMs: 100 }) });
    expect(result.result).toBe('failed');
    expect(host.containers()).toEqual([
      ['shop-blue', 'running'],
      ['shop-green', 'exited']
    ]);
    expect(host.store.get('shop-green')?.labels['bluegreen.deploy-id']).toBe('older');
  });

  test('rollback to the kept standby that fails health: the standby is stopped again, never removed', async () => {
    const host = liveBlue().add('green', { running: false, deployId: 'older', port: PORTS.green });
    host.httpStatus = (port, h) => (port === PORTS.green ? 503 : h.serving(port) ? 200 : 0);
    const result = await deployWith(host, { cfg: makeConfig({ command: 'rollback', healthTimeoutMs: 100 }) });
    expect(result.result).toBe('failed');
    expect(host.containers()).toEqual([
      ['shop-blue', 'running'],
      ['shop-green', 'exited']
    ]);
    expect(host.count('discard')).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// nginx: which master took the new config, and nginx-health-url
// ---------------------------------------------------------------------------------------------

describe('HostDeployment (nginx takeover and nginx-health-url)', () => {
  const NGINX_HEALTH = { url: 'http://127.0.0.1:80/health', host: '127.0.0.1', port: 80, path: '/health' };
  /** The file is written and nginx reloads, but no nginx process is visible to tell it. */
  const noWorkers = (c: Parameters<FakeHost['model']>[0], h: FakeHost) => {
    h.model(c);
    return { stdout: '@@masters\n@@workers-before\n@@reloaded\n@@no-workers\n' };
  };

  test('the master that reloaded is logged; the drain gets every previous worker (it waits only for those shutting down)', async () => {
    const host = liveBlue().on('upstream', (c, h) => {
      h.model(c);
      return {
        stdout:
          '@@masters 100 300\n@@workers-before 101 102 301\n@@reloaded\n@@old-workers 101 102\n@@taken-over 201 23 5 100\n'
      };
    });
    const { result, lines } = await deploy(host);
    expect(result.result).toBe('success');
    expect(result.cutoverMs).toBe(23);
    expect(result.switchMs).toBe(5);
    expect(host.callsOf('finish')[0].args[0]).toBe('101 102 301');
    expect(lines.join('\n')).toMatch(/nginx serves green: master 100 took the new config/);
  });

  test('no nginx master visible: a warning, and nginx-health-url decides; a 502 there switches back', async () => {
    const host = liveBlue().on('upstream', noWorkers);
    host.httpStatus = (port, h) => (port === 80 && h.count('upstream') === 1 ? 502 : 200);
    const { result } = await deploy(host, makeConfig({ nginxHealthUrl: NGINX_HEALTH }));
    expect(result.result).toBe('rolled-back');
    expect(result.error).toEqual({
      step: 'verify',
      message: 'nginx-health-url http://127.0.0.1:80/health answered HTTP 502 after the switch (twice)'
    });
    expect(result.activeColor).toBe('blue');
    expect(host.callsOf('upstream')).toHaveLength(2);
    expect(host.callsOf('upstream')[1].args[7]).toBe(`${ORIGINAL_UPSTREAM}\n`);
    // probed after the switch (twice) and after the switch-back (once, healthy again)
    expect(host.events.filter((e) => e === 'probe:80')).toHaveLength(3);
    expect(result.warnings.join('\n')).toMatch(
      /no nginx master process is visible on the host, so the reload cannot be confirmed; nginx-health-url is checked instead/
    );
  });

  test('no nginx master visible and nginx-health-url healthy: the deploy succeeds with the warning', async () => {
    const host = liveBlue().on('upstream', noWorkers);
    const { result } = await deploy(host, makeConfig({ nginxHealthUrl: NGINX_HEALTH }));
    expect(result.result).toBe('success');
    expect(host.events.filter((e) => e === 'probe:80')).toHaveLength(1);
    expect(result.warnings.join('\n')).toMatch(/reload cannot be confirmed; nginx-health-url is checked instead/);
  });

  test('without nginx-health-url the warning says to set it', async () => {
    const host = liveBlue().on('upstream', noWorkers);
    const { result } = await deploy(host);
    expect(result.result).toBe('success');
    expect(host.events).not.toContain('probe:80');
    expect(result.warnings.join('\n')).toMatch(/set nginx-health-url to check nginx itself/);
  });

  test('nginx-health-url failing after a confirmed takeover also switches back', async () => {
    const host = liveBlue();
    host.httpStatus = (port, h) => (port === 80 && h.count('upstream') === 1 ? 503 : 200);
    const { result } = await deploy(host, makeConfig({ nginxHealthUrl: NGINX_HEALTH }));
    expect(result.result).toBe('rolled-back');
    expect(result.error?.message).toMatch(/nginx-health-url .* answered HTTP 503 after the switch/);
  });
});

// ---------------------------------------------------------------------------------------------
// A transport with only run() (no channel held open, no port forwarding), as AWS Systems Manager Run Command will be
// ---------------------------------------------------------------------------------------------

describe('a transport without streams', () => {
  test('deploys: the lease is taken and released by commands, health is probed on the host', async () => {
    const host = liveBlue();
    Object.assign(host, { open: undefined, forward: undefined });
    const { result } = await deploy(host);
    expect(result.result).toBe('success');
    expect(host.events.filter((e) => e.startsWith('lock') || e === 'release')).toEqual([
      'lock',
      'lock-taken',
      'release'
    ]);
    expect(host.count('probe-shell')).toBeGreaterThan(0);
    expect(host.events.some((e) => e.startsWith('probe:'))).toBe(false);
    expect(host.serving()).toBe('shop-green');
    expect(host.containers()).toEqual([
      ['shop-blue', 'exited'],
      ['shop-green', 'running']
    ]);
  });

  test('a failing candidate is removed the same way', async () => {
    const host = liveBlue();
    Object.assign(host, { open: undefined, forward: undefined });
    host.httpStatus = (port, h) => (port === PORTS.green ? 503 : h.serving(port) ? 200 : 0);
    const { result } = await deploy(host, makeConfig({ healthTimeoutMs: 150 }));
    expect(result.result).toBe('failed');
    expect(host.serving()).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
    expect(host.lockEnded).toBe(true);
  });
});

describe('undo in an all-or-nothing fleet', () => {
  test('a host whose connection drops right after its reload still reconnects and switches back, though the fleet was aborted', async () => {
    const a = liveBlue('a');
    const b = liveBlue('b').on('upstream', (c, h) => {
      const r = h.model(c);
      if (h.count('upstream') === 1) {
        h.connected = false;
        throw new Error('the SSH connection to ec2-user@b:22 was lost (ECONNRESET)');
      }
      return r;
    });
    const deps: RunDeps = {
      connect: async (t) => {
        const h = t.label === 'a' ? a : b;
        h.connected = true;
        return h;
      },
      fetchEcrToken: async () => {
        throw new Error('not used');
      }
    };
    const { log } = makeLog(new Secrets(), 2);
    const hosts: HostTarget[] = [
      { label: 'a', host: 'a', port: 22, user: 'ec2-user' },
      { label: 'b', host: 'b', port: 22, user: 'ec2-user' }
    ];
    const r = await runDeploy(makeConfig({ hosts }), ctx, log, new Secrets(), deps, 'dep-f');
    const rb = r.hosts.find((h) => h.host === 'b')!;
    expect([rb.result, rb.error?.step]).toEqual(['rolled-back', 'switch']);
    expect(rb.warnings.join('\n')).not.toMatch(/could not reconnect/);
    expect(b.serving()).toBe('shop-blue');
    expect(b.containers()).toEqual([['shop-blue', 'running']]);
    expect(a.serving()).toBe('shop-blue');
    expect(r.result).toBe('rolled-back');
  });
});

// ---------------------------------------------------------------------------------------------
// Round trips: how many exchanges with the host follow one another (each costs the runner's distance to it)
// ---------------------------------------------------------------------------------------------

/**
 * The fake host at a distance: every exchange (run, the lock's open, a forward's open and its request, the lock's
 * release) waits for the next "round trip", and every exchange waiting by then completes in that same one: what
 * the deploy sends at once overlaps, what waits on an answer pays another round trip. `trips` is what a runner far
 * away pays in sequence (with the connection's pre-opened session channels: one round trip per command).
 */
class DistantHost extends FakeHost {
  trips = 0;
  private waiting: (() => void)[] = [];
  private trip(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (this.waiting.length > 1) return;
      // a few ms for everything sent "at once" (in the same turn of the runner's event loop) to join this round trip
      setTimeout(() => {
        this.trips++;
        for (const r of this.waiting.splice(0)) r();
      }, 5);
    });
  }
  override async run(body: string, args?: string[], opts?: Parameters<FakeHost['run']>[2]) {
    await this.trip();
    return super.run(body, args, opts);
  }
  override async open(body: string, args: string[] = []) {
    await this.trip();
    const ch = await super.open(body, args);
    const end = ch.end.bind(ch);
    ch.end = (() => void this.trip().then(() => end())) as unknown as typeof ch.end;
    return ch;
  }
  override async forward(port: number) {
    await this.trip();
    await this.trip();
    return super.forward(port);
  }
}

describe('round trips', () => {
  const distantLiveBlue = () => {
    const h = new DistantHost('h1', APP)
      .add('blue', { running: true, port: PORTS.blue, image: 'registry.example.com/shop:v1' })
      .setUpstream(ORIGINAL_UPSTREAM);
    h.stateJson = '{"live":"blue"}';
    h.watcher = true;
    return h;
  };

  test('a deploy (login, pull, nginx switch) pays at most 6 sequential exchanges after connecting, the health wait included', async () => {
    const host = distantLiveBlue();
    const login: LoginMode = { kind: 'password', registry: 'registry.example.com', username: 'u', password: 'pw' };
    const { result } = await deploy(host, makeConfig({ waitForDrain: false }), login);
    expect(result.result).toBe('success');
    expect(host.serving()).toBe('shop-green');
    // lock (with detect and login+pull waiting on the host for the lease) | start | health (the watcher on the host) |
    // switch (the verify probe's connection opened meanwhile) | verify GET | hand-over + record + lease removed
    expect(host.trips).toBeLessThanOrEqual(6);
  });

  test('a rollback to the kept standby pays at most 6 sequential exchanges after connecting, the health wait included', async () => {
    const host = distantLiveBlue().add('green', {
      running: false,
      port: PORTS.green,
      image: 'registry.example.com/shop:v0'
    });
    const { result } = await deploy(host, makeConfig({ command: 'rollback', waitForDrain: false }));
    expect(result.result).toBe('success');
    expect(host.serving()).toBe('shop-green');
    expect(host.trips).toBeLessThanOrEqual(6);
  });
});

describe('health watched on the host (curl or bash there)', () => {
  const watched = () => {
    const h = liveBlue();
    h.watcher = true;
    return h;
  };

  test('healthy: one exchange, no probe from the runner before the switch', async () => {
    const host = watched();
    const { result } = await deploy(host);
    expect(result.result).toBe('success');
    expect(host.count('watch')).toBe(1);
    expect(host.count('status')).toBe(0);
    expect(host.events.slice(host.events.indexOf('start'), host.events.indexOf('upstream'))).toEqual([
      'start',
      'watch',
      'watch:8082',
      'probe:8082'
    ]);
  });

  test('never 2xx: fails at health with the last answer and the logs, the candidate removed', async () => {
    const host = watched();
    host.httpStatus = () => 503;
    const { result } = await deploy(host, makeConfig({ healthTimeoutMs: 3000 }));
    expect(result.result).toBe('failed');
    expect(result.error?.step).toBe('health');
    expect(result.error?.message).toBe(
      'GET /health on port 8082 did not answer 2xx within 3 s (20 probes, last: HTTP 503)'
    );
    expect(result.candidateLogs).toBe('app log line');
    expect(host.serving()).toBe('shop-blue');
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
  });

  test('the container restarts: fails at once naming it', async () => {
    const host = watched().on('start', (call, h) => {
      h.add('green', { running: true, port: PORTS.green, restarts: 2, deployId: 'dep-1' });
      return {};
    });
    const { result } = await deploy(host);
    expect(result.error?.step).toBe('health');
    expect(result.error?.message).toBe(
      'container shop-green restarted 2 time(s) (state running, last exit code 1) before it became healthy'
    );
    expect(host.containers()).toEqual([['shop-blue', 'running']]);
  });
});

test('the probe after the switch: a connection opened ahead that the app closed meanwhile is replaced, not a failed verify', async () => {
  class ClosingHost extends FakeHost {
    forwards = 0;
    override async forward(port: number) {
      const stream = await super.forward(port);
      // the second connection is the one opened while the switch runs: the app drops it before the request
      if (++this.forwards === 2) stream.end = (() => (stream.destroy(), stream)) as unknown as typeof stream.end;
      if (this.forwards === 2) stream.write = (() => (stream.emit('close'), true)) as unknown as typeof stream.write;
      return stream;
    }
  }
  const host = new ClosingHost('h1', APP)
    .add('blue', { running: true, port: PORTS.blue, image: 'registry.example.com/shop:v1' })
    .setUpstream(ORIGINAL_UPSTREAM);
  const { result } = await deploy(host);
  expect(result.result).toBe('success');
  expect(host.serving()).toBe('shop-green');
  expect(host.events.filter((e) => e === 'probe:8082')).toHaveLength(3);
});
