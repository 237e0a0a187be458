/**
 * End to end: the committed dist/ bundle, run with Node 24 exactly as a runner runs it, deploying real
 * containers over real SSH through real host nginx on the sandbox host (test/sandbox/up.sh).
 * ECR's GetAuthorizationToken and the artifact results service are local stand-ins on the real wire protocols.
 */
import fs from 'node:fs';
import path from 'node:path';
import { startFakeEcr, type FakeEcr } from './fake-ecr.js';
import { runtimeToken, startFakeResults, type FakeResults } from './fake-results.js';
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

const SECRET_ENV = 'DB_PASSWORD=s3cr3t-db-pa55word-xyz';
const GREETING = `hello "world" $(touch /tmp/bluegreen-pwned) \`id\` ; rm -rf / 'q'`;

let ecr: FakeEcr;
let results: FakeResults;

beforeAll(async () => {
  ecr = await startFakeEcr({ password: SANDBOX.ecrPassword });
  results = await startFakeResults();
  fs.rmSync('/tmp/bluegreen-pwned', { force: true });
});
afterAll(async () => {
  await ecr.close();
  await results.close();
});

/** Inputs for a deploy of `tag` with registry-auth ecr (the token comes from the fake ECR endpoint). */
function inputs(
  app: string,
  ports: { blue: number; green: number },
  tag: string,
  extra: Record<string, string> = {}
): Record<string, string> {
  return {
    hosts: SANDBOX.host,
    'ssh-private-key': SANDBOX.privateKey,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'app-name': app,
    image: SANDBOX.image,
    tag,
    'aws-region': 'us-east-1',
    'blue-port': String(ports.blue),
    'green-port': String(ports.green),
    'drain-seconds': '10',
    'health-timeout-seconds': '20',
    'verify-seconds': '1',
    env: `${SECRET_ENV}\nGREETING=${GREETING}`,
    ...extra
  };
}

function actionEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_ECR: ecr.url,
    AWS_ACCESS_KEY_ID: 'AKIAEXAMPLEEXAMPLE12',
    AWS_SECRET_ACCESS_KEY: 'fake-secret-access-key-for-tests',
    AWS_EC2_METADATA_DISABLED: 'true',
    ACTIONS_RUNTIME_TOKEN: runtimeToken(),
    ACTIONS_RESULTS_URL: results.url,
    ...extra
  };
}

function deploy(
  app: string,
  ports: { blue: number; green: number },
  tag: string,
  extra: Record<string, string> = {},
  env: Record<string, string | undefined> = {}
): Promise<RunActionResult> {
  return runAction(inputs(app, ports, tag, extra), { env: { ...actionEnv(), ...env } });
}

/** Everything a user or a log reader can see from a run. */
function everythingVisible(r: RunActionResult): string {
  const files = [r.outputs['log-file'], r.outputs['metrics-file']]
    .filter((f) => f && fs.existsSync(f))
    .map((f) => fs.readFileSync(f, 'utf8'));
  const stdoutWithoutMaskCommands = r.stdout
    .split('\n')
    .filter((l) => !l.startsWith('::add-mask::'))
    .join('\n');
  return [stdoutWithoutMaskCommands, r.stderr, r.summary, JSON.stringify(r.outputs), ...files].join('\n');
}

function expectNoSecrets(r: RunActionResult): void {
  const seen = everythingVisible(r);
  for (const secret of [
    's3cr3t-db-pa55word-xyz',
    SANDBOX.ecrPassword,
    'OPENSSH PRIVATE KEY',
    SANDBOX.privateKey.split('\n')[1]
  ]) {
    expect(seen).not.toContain(secret);
  }
}

async function hostTmpLeftovers(): Promise<string[]> {
  const r = await sh(`ls -d /tmp/bluegreen-login.* /tmp/bluegreen-env.* 2>/dev/null || true`);
  return r.stdout.split('\n').filter(Boolean);
}

/** [name, state, tag] of the app's containers, sorted by name. */
async function standbyAndLive(app: string): Promise<string[][]> {
  return (await dockerPs(app))
    .map((c) => [c.name, c.state, c.labels['bluegreen.image'].split(':').pop()!])
    .sort((a, b) => a[0].localeCompare(b[0]));
}

function metrics(r: RunActionResult) {
  return JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
}

describe('deploy (nginx mode)', () => {
  const app = 'e2e-nginx';
  const ports = { blue: 18201, green: 18202 };
  let url: string;

  beforeAll(async () => {
    url = await prepareApp(app, { listenPort: 18200, bluePort: ports.blue });
  });
  afterAll(() => cleanupApp(app));

  test('first deploy: v1 is live behind nginx, with labels, env, outputs, summary, metrics and a 30-day artifact', async () => {
    const r = await deploy(app, ports, 'v1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(outcome(r)).toBe('success');
    expect(r.outputs['active-color']).toBe('blue');
    expect(r.outputs['previous-color']).toBe('');
    expect(r.outputs.image).toMatch(/^127\.0\.0\.1:5000\/demo:v1@sha256:[a-f0-9]{64}$/);
    expect(Number(r.outputs['duration-ms'])).toBeGreaterThan(0);
    expect(Number(r.outputs['cutover-ms'])).toBeGreaterThan(0);

    expect((await httpGet(`${url}/`)).body).toBe('v1');
    // env reached the container literally: quotes, $( ), backticks and ; were data, not code
    expect((await httpGet(`${url}/greeting`)).body).toBe(GREETING);
    expect(fs.existsSync('/tmp/bluegreen-pwned')).toBe(false);

    const [c] = await dockerPs(app);
    expect(c.name).toBe(`${app}-blue`);
    expect(c.state).toBe('running');
    expect(c.ports['8080/tcp']).toEqual([`127.0.0.1:${ports.blue}`]);
    expect(c.labels).toMatchObject({
      'bluegreen.app': app,
      'bluegreen.color': 'blue',
      'bluegreen.image': `${SANDBOX.image}:v1`,
      'bluegreen.deploy-id': r.outputs['deploy-id']
    });
    expect(c.labels['bluegreen.digest']).toMatch(/^sha256:/);
    expect(c.labels['bluegreen.run-url']).toMatch(/^https:\/\/github\.com\/org\/app\/actions\/runs\/\d+/);

    // ECR token fetched once by the real SDK from the job's credentials
    expect(ecr.requests.at(-1)).toMatchObject({
      target: 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken',
      region: 'us-east-1',
      accessKeyId: 'AKIAEXAMPLEEXAMPLE12'
    });

    // job summary: result first, then the step table
    expect(r.summary.split('\n')[0]).toMatch(/^## ✅ e2e-nginx deployed/);
    for (const step of ['connect', 'lock', 'login', 'pull', 'detect', 'start', 'health', 'switch', 'verify', 'record'])
      expect(r.summary).toMatch(new RegExp(`\\| ${step} \\|`));

    const m = metrics(r);
    expect(m).toMatchObject({ schemaVersion: 1, result: 'success', app, traffic: 'nginx' });
    expect(m.hosts[0]).toMatchObject({
      host: SANDBOX.host,
      result: 'success',
      activeColor: 'blue',
      previousColor: null
    });
    for (const s of m.hosts[0].steps) expect(s.durationMs).toBe(Date.parse(s.endedAt) - Date.parse(s.startedAt));
    expect(m.hosts[0].stepDurationsMs.total).toBeGreaterThan(0);

    // the artifact holds both files and is kept 30 days
    const art = results.artifacts.find((a) => String(a.id) === r.outputs['artifact-id']);
    expect(art).toBeDefined();
    expect(art!.name).toBe(`bluegreen-${app}-deploy-1`);
    expect(Object.keys(art!.files).sort()).toEqual(['deploy.log', 'metrics.json']);
    const days = (Date.parse(art!.expiresAt!) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThan(30.1);
    expect(art!.files['deploy.log'].toString()).toContain('switch');
    expect(art!.files['deploy.log'].toString()).not.toContain('s3cr3t-db-pa55word-xyz');

    expectNoSecrets(r);
    expect(await hostTmpLeftovers()).toEqual([]);
    const history = fs
      .readFileSync(`/home/ec2-user/.bluegreen/${app}/history.jsonl`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(history.at(-1)).toMatchObject({
      deployId: r.outputs['deploy-id'],
      result: 'success',
      color: 'blue',
      actor: 'tester'
    });
  });

  test('second deploy under continuous load: zero failed requests (keep-alive requests on a connection nginx closed at the reload are retried once, counted apart), v1 then v2, old colour stopped and kept', async () => {
    const load = new LoadGenerator(url, { concurrency: 6, keepAlive: 'mixed' }).start();
    await new Promise((r) => setTimeout(r, 300));
    const r = await deploy(app, ports, 'v2');
    const atReturn = { ...load.current.bodies };
    await new Promise((r) => setTimeout(r, 300));
    const stats = await load.stop();
    // once the action has returned, nothing is served by the old colour any more
    expect(stats.bodies.v1).toBe(atReturn.v1);
    expect(stats.bodies.v2).toBeGreaterThan(atReturn.v2 ?? 0);
    expect(r.code).toBe(0);
    expect(outcome(r)).toBe('success');
    expect(r.outputs['active-color']).toBe('green');
    expect(r.outputs['previous-color']).toBe('blue');
    expect(stats.errors).toEqual([]);
    expect(stats.failed).toBe(0);
    expect(stats.ok).toBeGreaterThan(100);
    expect(stats.keepAliveRetries).toBeLessThanOrEqual(6);
    expect(Object.keys(stats.bodies).sort()).toEqual(['v1', 'v2']);
    expect(stats.transitions[0]).toBe('v1');

    // wait-for-drain false (default): a job on the host stops the old colour once its requests are done
    await drainJobDone(app);
    const cs = await dockerPs(app);
    expect(cs.map((c) => [c.name, c.state]).sort()).toEqual([
      [`${app}-blue`, 'exited'],
      [`${app}-green`, 'running']
    ]);
    expect(fs.readFileSync(`/home/ec2-user/.bluegreen/${app}/drain.log`, 'utf8')).toMatch(
      /drain and stop .*-blue, remove nothing\n@@drained\n@@stop\n@@stopped\n@@cleanup\n(removed .*\n)*exit 0\n.*done/
    );
    expect(fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8')).toMatch(
      new RegExp(`upstream ${app} \\{\\n\\s+server 127\\.0\\.0\\.1:${ports.green};`)
    );
    const m = metrics(r);
    expect(m.hosts[0].steps.map((s: { name: string }) => s.name)).toEqual([
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
      'record'
    ]);
    expectNoSecrets(r);
  });

  test('an unhealthy image fails at health, the candidate is removed, and v2 keeps serving without a failed request', async () => {
    const load = new LoadGenerator(url, { concurrency: 4 }).start();
    const r = await deploy(app, ports, 'unhealthy', { 'health-timeout-seconds': '3' });
    const stats = await load.stop();
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('failed');
    expect(r.outputs['active-color']).toBe('green');
    expect(r.stdout).toMatch(
      /::error title=bluegreen-ec2-action%3A failed::health failed on 127\.0\.0\.1:2222: GET \/health on port 18201 did not answer 2xx within 3 s .*HTTP 404/
    );
    expect(stats.failed).toBe(0);
    expect(Object.keys(stats.bodies)).toEqual(['v2']);
    // the failed candidate is gone and the kept standby (v1 on blue) is back for rollback
    expect(await standbyAndLive(app)).toEqual([
      [`${app}-blue`, 'exited', 'v1'],
      [`${app}-green`, 'running', 'v2']
    ]);
    expect(r.summary).toContain('Failed at `health`');
    expect(r.summary).toContain('Last log lines of the candidate');
    expect(metrics(r).hosts[0].error.step).toBe('health');
    expectNoSecrets(r);
  });

  test('a crashing image fails at once (not after the timeout) with its last log lines', async () => {
    const r = await deploy(app, ports, 'crash', { 'health-timeout-seconds': '120' });
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('failed');
    const health = metrics(r).hosts[0].steps.find((s: { name: string }) => s.name === 'health');
    expect(health.status).toBe('failed');
    expect(r.stdout).toMatch(/health failed on 127\.0\.0\.1:2222: container e2e-nginx-blue (restarted|is exited)/);
    expect(r.summary).toContain('boom: cannot connect to database');
    expect((await httpGet(`${url}/`)).body).toBe('v2');
    expect(await standbyAndLive(app)).toEqual([
      [`${app}-blue`, 'exited', 'v1'],
      [`${app}-green`, 'running', 'v2']
    ]);
  });

  test('a missing image fails at pull, naming the image, and touches nothing', async () => {
    const r = await deploy(app, ports, 'no-such-tag');
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('failed');
    expect(r.stdout).toMatch(
      /pull failed on 127\.0\.0\.1:2222: image 127\.0\.0\.1:5000\/demo:no-such-tag was not found in the registry/
    );
    expect((await httpGet(`${url}/`)).body).toBe('v2');
    expect(await hostTmpLeftovers()).toEqual([]);
  });

  test('a failing nginx reload restores the upstream file, removes the candidate and keeps v2 live', async () => {
    const before = fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8');
    const r = await deploy(app, ports, 'v3', {
      'nginx-reload-command': 'sudo -n nginx -t -q && echo "reload refused" >&2 && false'
    });
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('failed');
    expect(r.stdout).toMatch(
      /switch failed on 127\.0\.0\.1:2222: .*reload refused.*previous upstream file was restored/
    );
    expect(fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8')).toBe(before);
    expect((await httpGet(`${url}/`)).body).toBe('v2');
    expect(await standbyAndLive(app)).toEqual([
      [`${app}-blue`, 'exited', 'v1'],
      [`${app}-green`, 'running', 'v2']
    ]);
  });

  test('a reload command that does not reload nginx is caught by verify: traffic switched back, old colour kept serving', async () => {
    const before = fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8');
    const live = (await httpGet(`${url}/`)).body;
    const r = await deploy(app, ports, live === 'v3' ? 'v1' : 'v3', { 'nginx-reload-command': 'sudo -n nginx -t -q' });
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('rolled-back');
    expect(r.stdout).toMatch(/verify failed on 127\.0\.0\.1:2222: nginx did not reload within 10 s/);
    expect(fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8')).toBe(before);
    expect((await httpGet(`${url}/`)).body).toBe(live);
    expect((await dockerPs(app)).filter((c) => c.state === 'running')).toHaveLength(1);
  });

  test('two deploys at once: the second waits for the lock, both succeed, one colour ends live', async () => {
    const [a, b] = await Promise.all([
      deploy(app, ports, 'v1'),
      new Promise((r) => setTimeout(r, 150)).then(() => deploy(app, ports, 'v3'))
    ]);
    expect([a.outputs.result, b.outputs.result]).toEqual(['success', 'success']);
    expect(a.stdout + b.stdout).toMatch(/another deploy holds the lock \(deploy \S+ by tester/);
    const running = (await dockerPs(app)).filter((c) => c.state === 'running');
    expect(running).toHaveLength(1);
    expect((await httpGet(`${url}/`)).body).toBe(running[0].labels['bluegreen.image'].split(':').pop());
  });
});

describe('cancellation', () => {
  const app = 'e2e-cancel';
  const ports = { blue: 18231, green: 18232 };
  let url: string;
  beforeAll(async () => {
    url = await prepareApp(app, { listenPort: 18230, bluePort: ports.blue });
  });
  afterAll(() => cleanupApp(app));

  test('a cancelled run (SIGTERM) removes the candidate, releases the lock and leaves the old version serving', async () => {
    expect((await deploy(app, ports, 'v1')).outputs.result).toBe('success');
    const abort = new AbortController();
    const running = runAction(inputs(app, ports, 'unhealthy', { 'health-timeout-seconds': '120' }), {
      env: actionEnv(),
      signal: abort.signal
    });
    // cancel once the candidate exists (the run is then in its health step)
    for (let i = 0; i < 200 && (await dockerPs(app)).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    abort.abort();
    const r = await running;
    expect(r.signal).toBeNull();
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('failed');
    expect(r.stdout).toContain('received SIGTERM');
    expect(r.stdout).toMatch(
      /::error title=bluegreen-ec2-action%3A failed::health failed on 127\.0\.0\.1:2222: the workflow run was cancelled/
    );
    expect(r.summary).toContain('Failed at `health`');
    expect((await httpGet(`${url}/`)).body).toBe('v1');
    expect((await dockerPs(app)).map((c) => [c.name, c.state])).toEqual([[`${app}-blue`, 'running']]);
    // the lock was released: the next deploy goes straight through
    const next = await deploy(app, ports, 'v2', { 'lock-timeout-seconds': '0' });
    expect(outcome(next)).toBe('success');
    expect((await httpGet(`${url}/`)).body).toBe('v2');
  });
});

describe('deploy inputs and connection errors', () => {
  const app = 'e2e-inputs';
  const ports = { blue: 18211, green: 18212 };
  beforeAll(() => prepareApp(app, { listenPort: 18210, bluePort: ports.blue }));
  afterAll(() => cleanupApp(app));

  test('a wrong host key is refused, printing the presented fingerprint and the line to add', async () => {
    const otherKey =
      '[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl';
    const r = await deploy(app, ports, 'v1', { 'ssh-known-hosts': otherKey });
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('failed');
    expect(r.stdout).toContain(`HOST KEY MISMATCH: the host presented ssh-ed25519 ${SANDBOX.fingerprint}`);
    expect(r.stdout).toContain(SANDBOX.knownHosts.split('\n').find((l) => l.includes('ssh-ed25519')));
    expect(await dockerPs(app)).toEqual([]);
  });

  test('ssh-host-fingerprint and an encrypted key with its passphrase work', async () => {
    const r = await runAction(
      {
        ...inputs(app, ports, 'v1'),
        'ssh-known-hosts': '',
        'ssh-host-fingerprint': SANDBOX.fingerprint,
        'ssh-private-key': SANDBOX.passKey,
        'ssh-passphrase': SANDBOX.passphrase
      },
      { env: actionEnv() }
    );
    expect(outcome(r)).toBe('success');
    expect(
      r.stdout
        .split('\n')
        .filter((l) => !l.startsWith('::add-mask::'))
        .join('\n')
    ).not.toContain(SANDBOX.passphrase);
  });

  test('when sshd forbids TCP forwarding, health checks fall back to a bash probe on the host', async () => {
    const cfg = fs
      .readFileSync(path.join(path.dirname(SANDBOX.privateKeyPath), 'sshd_config'), 'utf8')
      .replace(/^ListenAddress .*$/m, 'ListenAddress 127.0.0.1:2223')
      .replace(/^AllowTcpForwarding .*$/m, 'AllowTcpForwarding no')
      .replace(/^PidFile .*$/m, 'PidFile /tmp/bluegreen-e2e-nofwd-sshd.pid');
    fs.writeFileSync('/tmp/bluegreen-e2e-nofwd-sshd_config', cfg);
    await sh(
      'kill "$(cat /tmp/bluegreen-e2e-nofwd-sshd.pid 2>/dev/null)" 2>/dev/null; /usr/sbin/sshd -f /tmp/bluegreen-e2e-nofwd-sshd_config'
    );
    try {
      const r = await deploy(app, ports, 'v2', {
        hosts: '127.0.0.1:2223',
        'ssh-known-hosts': '',
        'ssh-host-fingerprint': SANDBOX.fingerprint
      });
      expect(outcome(r)).toBe('success');
      expect(r.stdout).toMatch(/sshd does not allow TCP forwarding .*probing with bash \/dev\/tcp on the host instead/);
    } finally {
      await sh('kill "$(cat /tmp/bluegreen-e2e-nofwd-sshd.pid)"');
    }
  });

  test('no host-key input at all is refused before connecting', async () => {
    const r = await deploy(app, ports, 'v1', { 'ssh-known-hosts': '' });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('Input "ssh-known-hosts" is required to verify the host key');
  });

  test.each([
    ['tag', 'v1;touch /tmp/bluegreen-pwned'],
    ['tag', '$(touch /tmp/bluegreen-pwned)'],
    ['app-name', 'x;touch /tmp/bluegreen-pwned'],
    ['app-name', '../../etc'],
    ['image', '127.0.0.1:5000/demo`touch /tmp/bluegreen-pwned`'],
    ['health-path', '/health;touch /tmp/bluegreen-pwned'],
    ['nginx-upstream-file', '/etc/nginx/../../tmp/x.conf'],
    ['docker-run-args', '--name evil'],
    ['docker-command', 'docker;touch /tmp/bluegreen-pwned'],
    ['hosts', '127.0.0.1:2222;touch /tmp/bluegreen-pwned'],
    ['blue-port', '8081 -v /:/host'],
    ['env', 'BAD KEY=1']
  ])('hostile %s %j is rejected naming the input, before anything runs', async (name, value) => {
    const r = await deploy(app, ports, 'v1', { [name]: value });
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('failed');
    expect(r.stdout).toContain(`Input "${name}"`);
    expect(r.stdout).toMatch(/Example: /);
    expect(fs.existsSync('/tmp/bluegreen-pwned')).toBe(false);
  });

  test('hostile docker-run-args are passed to docker as data: nothing runs', async () => {
    const r = await deploy(app, ports, 'v1', {
      'docker-run-args': `--label "x=$(touch /tmp/bluegreen-pwned)" --label 'y=;touch /tmp/bluegreen-pwned'`
    });
    expect(outcome(r)).toBe('success');
    const live = (await dockerPs(app)).find((c) => c.state === 'running')!;
    expect(live.labels.x).toBe('$(touch /tmp/bluegreen-pwned)');
    expect(live.labels.y).toBe(';touch /tmp/bluegreen-pwned');
    expect(fs.existsSync('/tmp/bluegreen-pwned')).toBe(false);
  });

  test('a second deploy of the same app in the same job uploads under a suffixed artifact name', async () => {
    const runId = '424242';
    const first = await deploy(
      app,
      ports,
      'v1',
      {},
      { GITHUB_RUN_ID: runId, ACTIONS_RUNTIME_TOKEN: runtimeToken(runId, '99') }
    );
    const second = await deploy(
      app,
      ports,
      'v2',
      {},
      { GITHUB_RUN_ID: runId, ACTIONS_RUNTIME_TOKEN: runtimeToken(runId, '99') }
    );
    expect([first.outputs.result, second.outputs.result, first.stdout.match(/::error::.*/)?.[0]]).toEqual([
      'success',
      'success',
      undefined
    ]);
    const names = results.artifacts
      .filter((a) => [first.outputs['artifact-id'], second.outputs['artifact-id']].includes(String(a.id)))
      .map((a) => a.name);
    expect(names[0]).toBe(`bluegreen-${app}-deploy-1`);
    expect(names[1]).toBe(`bluegreen-${app}-deploy-1-${second.outputs['deploy-id'].split('-').pop()}`);
  });

  test('outside GitHub (no runtime token) it warns, keeps the files and still succeeds', async () => {
    const r = await deploy(app, ports, 'v2', {}, { ACTIONS_RUNTIME_TOKEN: undefined, ACTIONS_RESULTS_URL: undefined });
    expect(outcome(r)).toBe('success');
    expect(r.outputs['artifact-id']).toBe('');
    expect(r.stdout).toMatch(/::warning::.*not uploaded as an artifact/);
    expect(fs.existsSync(r.outputs['log-file'])).toBe(true);
    expect(fs.existsSync(r.outputs['metrics-file'])).toBe(true);
  });
});

describe('deploy (port-swap mode)', () => {
  const app = 'e2e-swap';
  const publicPort = 18220;
  afterAll(() => cleanupApp(app));

  test('port-swap deploys v1 then v2 on the public port and reports the measured downtime', async () => {
    await cleanupApp(app);
    const extra = { traffic: 'port-swap', 'public-port': String(publicPort) };
    const first = await deploy(app, { blue: 18221, green: 18222 }, 'v1', extra);
    expect(outcome(first)).toBe('success');
    expect((await httpGet(`http://127.0.0.1:${publicPort}/`)).body).toBe('v1');
    const second = await deploy(app, { blue: 18221, green: 18222 }, 'v2', extra);
    expect(outcome(second)).toBe('success');
    expect(second.outputs['active-color']).toBe('green');
    expect((await httpGet(`http://127.0.0.1:${publicPort}/`)).body).toBe('v2');
    const m = metrics(second);
    expect(m.hosts[0].downtimeMs).toBeGreaterThan(0);
    expect(Number(second.outputs['cutover-ms'])).toBe(m.hosts[0].cutoverMs);
    expect(second.summary).toMatch(/\(downtime\)/);
    const cs = await dockerPs(app);
    expect(cs.map((c) => [c.name, c.state]).sort()).toEqual([
      [`${app}-blue`, 'exited'],
      [`${app}-green`, 'running']
    ]);
  });

  test('port-swap with an unhealthy image starts the old container again (rolled-back)', async () => {
    const r = await deploy(app, { blue: 18221, green: 18222 }, 'unhealthy', {
      traffic: 'port-swap',
      'public-port': String(publicPort),
      'health-timeout-seconds': '3'
    });
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('rolled-back');
    expect(r.outputs['active-color']).toBe('green');
    expect((await httpGet(`http://127.0.0.1:${publicPort}/`)).body).toBe('v2');
    expect(r.summary).toContain('Traffic was switched back');
  });
});

test('the bundle starts under Node 24 and fails cleanly with no inputs', async () => {
  const r = await runAction({});
  expect(r.code).toBe(1);
  expect(r.stderr).toBe('');
  expect(r.outputs.result).toBe('failed');
  expect(r.stdout).toContain('Input "hosts" is empty');
  expect(path.basename(SANDBOX.node24)).toBe('node');
  expect((await sh(`${SANDBOX.node24} --version`)).stdout).toMatch(/^v24\./);
});
