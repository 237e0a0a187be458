/**
 * smoke-test end to end: the committed dist/ run with Node 24 as a runner runs it, a real container over real SSH
 * behind the sandbox's host nginx. The command runs on the runner (this machine) and reaches the candidate only
 * through the runner-local port tunnelled over the SSH connection.
 */
import fs from 'node:fs';
import http from 'node:http';
import {
  cleanupApp,
  dockerPs,
  drainJobDone,
  httpGet,
  prepareApp,
  outcome,
  runAction,
  SANDBOX,
  sh,
  waitFor,
  type RunActionResult
} from './harness.js';

const app = 'e2e-us-smoke';
const ports = { listen: 19500, blue: 19501, green: 19502 };
let url: string;
/** notify-webhook's endpoint, in this file's port range. */
const WEBHOOK_PORT = 19510;
const WEBHOOK_TOKEN = 'e2e-us-webhook-token-7f3a';
const webhook: Array<{ path?: string; body: string }> = [];
let webhookServer: http.Server;

function deploy(tag: string, extra: Record<string, string> = {}, signal?: AbortSignal): Promise<RunActionResult> {
  return runAction(
    {
      hosts: SANDBOX.host,
      'ssh-private-key': SANDBOX.privateKey,
      'ssh-known-hosts': SANDBOX.knownHosts,
      'app-name': app,
      image: SANDBOX.image,
      tag,
      'registry-auth': 'password',
      'registry-username': SANDBOX.registryUser,
      'registry-password': SANDBOX.registryPassword,
      'blue-port': String(ports.blue),
      'green-port': String(ports.green),
      'drain-seconds': '5',
      'health-timeout-seconds': '20',
      'verify-seconds': '0',
      'upload-artifacts': 'false',
      ...extra
    },
    { signal }
  );
}

function metrics(r: RunActionResult) {
  return JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
}

/** [name, state, tag] of the app's containers, sorted by name. */
async function containers(): Promise<string[][]> {
  return (await dockerPs(app))
    .map((c) => [c.name, c.state, c.labels['bluegreen.image'].split(':').pop()!])
    .sort((a, b) => a[0].localeCompare(b[0]));
}

const upstream = () => fs.readFileSync(`${SANDBOX.nginxUpstreamDir}/${app}.conf`, 'utf8');

beforeAll(async () => {
  webhookServer = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      webhook.push({ path: req.url, body });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => webhookServer.listen(WEBHOOK_PORT, '127.0.0.1', () => r()));
  url = await prepareApp(app, { listenPort: ports.listen, bluePort: ports.blue });
  const r = await deploy('v1');
  expect(outcome(r)).toBe('success');
  await drainJobDone(app);
}, 300_000);
afterAll(async () => {
  await new Promise((r) => webhookServer.close(r));
  await sh('pkill -f "sleep 424[2]" || true');
  await cleanupApp(app);
});

test('a passing smoke test sees the candidate (not the live colour) through the tunnel before the switch, then traffic switches', async () => {
  // Run on the runner: the candidate answers v2 on the tunnelled URL while nginx (the live colour) still serves v1.
  const smoke = [
    'body=$(curl -fsS "$BLUEGREEN_CANDIDATE_URL/")',
    `live=$(curl -fsS ${url}/)`,
    'echo "candidate=$body live=$live color=$BLUEGREEN_COLOR host=$BLUEGREEN_HOST image=$BLUEGREEN_IMAGE url=$BLUEGREEN_CANDIDATE_URL"',
    'echo "inputs visible: $(env | grep -c "^INPUT_" || true)"',
    'test "$body" = v2 && test "$live" = v1'
  ].join('\n');
  webhook.length = 0;
  const r = await deploy('v2', {
    'smoke-test': smoke,
    'notify-webhook': `http://127.0.0.1:${WEBHOOK_PORT}/hook/${WEBHOOK_TOKEN}`
  });
  expect(r.code).toBe(0);
  expect(outcome(r)).toBe('success');
  expect(r.outputs['active-color']).toBe('green');
  expect((await httpGet(`${url}/`)).body).toBe('v2');

  const log = fs.readFileSync(r.outputs['log-file'], 'utf8');
  const line = /candidate=(\S*) live=(\S*) color=(\S*) host=(\S*) image=(\S*) url=(\S*)/.exec(log);
  expect(line?.slice(1, 6)).toEqual(['v2', 'v1', 'green', SANDBOX.host, `${SANDBOX.image}:v2`]);
  // a runner-local ephemeral port, not the candidate's port on the host
  expect(line![6]).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  expect(line![6]).not.toBe(`http://127.0.0.1:${ports.green}`);
  // the action's inputs (the SSH key among them) are not handed to the user's command
  expect(log).toContain('inputs visible: 0');
  // the command's output is in the host's smoke-test step of the log
  expect(log).toMatch(/\[127\.0\.0\.1:2222 smoke-test\]\s+candidate=v2/);

  const m = metrics(r);
  const names = m.hosts[0].steps.map((s: { name: string }) => s.name);
  expect(names.indexOf('smoke-test')).toBe(names.indexOf('health') + 1);
  expect(names.indexOf('switch')).toBe(names.indexOf('smoke-test') + 1);
  expect(m.hosts[0].stepDurationsMs['smoke-test']).toBeGreaterThan(0);
  expect(m.hosts[0].smokeTest).toMatchObject({ exitCode: 0, failure: null });
  expect(r.summary).toMatch(/\| smoke-test \|/);
  expect(r.summary).toContain('Smoke test on 127.0.0.1:2222: ✅ passed');
  // the summary opens with what is live now, and shows the timeline with the smoke test on it
  expect(r.summary.split('\n')[2]).toMatch(
    /^\*\*Live now:\*\* `127\.0\.0\.1:5000\/demo:v2@sha256:[a-f0-9]{12}…` \(green\) on `127\.0\.0\.1:2222` since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\. \*\*If it misbehaves:\*\* run the action with `command: rollback`/
  );
  expect(r.summary).toMatch(/```mermaid\ngantt\n[^`]*\n {2}smoke-test :done, \d+, \d+\n/);

  // notify-webhook: one message with the run's facts, and no secret in it
  expect(webhook).toHaveLength(1);
  expect(webhook[0].path).toBe(`/hook/${WEBHOOK_TOKEN}`);
  const msg = JSON.parse(webhook[0].body);
  expect(msg.text).toMatch(
    /^✅ e2e-us-smoke deployed: 127\.0\.0\.1:5000\/demo:v2@sha256:[a-f0-9]{64} on 127\.0\.0\.1:2222 in /
  );
  expect(msg.bluegreen).toMatchObject({
    result: 'success',
    app,
    image: r.outputs.image,
    digest: r.outputs.image.split('@')[1],
    hosts: [{ host: SANDBOX.host, result: 'success', activeColor: 'green' }],
    deployId: r.outputs['deploy-id'],
    cause: null
  });
  expect(msg.bluegreen.runUrl).toMatch(/^https:\/\/github\.com\/org\/app\/actions\/runs\/\d+/);
  for (const secret of [WEBHOOK_TOKEN, SANDBOX.registryPassword, SANDBOX.privateKey.split('\n')[1]])
    expect(webhook[0].body).not.toContain(secret);
  expect(
    r.stdout
      .split('\n')
      .filter((l) => !l.startsWith('::add-mask::'))
      .join('\n')
  ).not.toContain(WEBHOOK_TOKEN);
  await drainJobDone(app);
}, 300_000);

test('a failing smoke test fails the host before the switch: nothing changes for traffic, the summary shows its output', async () => {
  const before = { upstream: upstream(), containers: await containers() };
  const smoke =
    'echo "checking $BLUEGREEN_CANDIDATE_URL"\ncurl -fsS "$BLUEGREEN_CANDIDATE_URL/" && echo\necho "smoke: expected v9 on the candidate" >&2\nexit 3';
  const r = await deploy('v3', { 'smoke-test': smoke });
  expect(r.code).toBe(1);
  expect(r.outputs.result).toBe('failed');
  expect(r.outputs['failed-hosts']).toBe(SANDBOX.host);
  expect(r.stdout).toMatch(
    /::error title=bluegreen-ec2-action%3A failed::smoke-test failed on 127\.0\.0\.1:2222: the smoke test exited with code 3 \(last output: .*smoke: expected v9 on the candidate\); the candidate got no traffic/
  );
  // traffic never moved: same upstream file, v2 serves, the candidate is gone and the standby is the one from before
  expect(upstream()).toBe(before.upstream);
  expect((await httpGet(`${url}/`)).body).toBe('v2');
  expect(await containers()).toEqual(before.containers);
  // the summary shows the command's last lines (stdout and stderr), open
  expect(r.summary).toContain('Smoke test on 127.0.0.1:2222: ❌ exited with code 3');
  expect(r.summary).toContain('smoke: expected v9 on the candidate');
  expect(r.summary).toMatch(/<pre>checking http:\/\/127\.0\.0\.1:\d+\nv3\n/);
  expect(r.summary).toContain('The live version was not touched');
  const m = metrics(r);
  expect(m.hosts[0].steps.map((s: { name: string }) => s.name)).not.toContain('switch');
  expect(m.hosts[0].steps.find((s: { name: string }) => s.name === 'smoke-test')).toMatchObject({ status: 'failed' });
  expect(m.hosts[0].error).toMatchObject({ step: 'smoke-test' });
}, 300_000);

test('a smoke test that hangs past smoke-test-timeout-seconds is stopped with everything it started, and the host fails before the switch', async () => {
  const before = upstream();
  const r = await deploy('v3', {
    'smoke-test': 'echo waiting for ever\nsleep 4242 &\nsleep 4242',
    'smoke-test-timeout-seconds': '2'
  });
  expect(r.code).toBe(1);
  expect(r.outputs.result).toBe('failed');
  expect(r.summary).toContain('the smoke test timed out after 2 s (smoke-test-timeout-seconds)');
  expect(r.summary).toContain('waiting for ever');
  expect(upstream()).toBe(before);
  expect((await httpGet(`${url}/`)).body).toBe('v2');
  // its whole process group was killed, the background sleep too
  expect((await sh('pgrep -f "sleep 424[2]" || true')).stdout.trim()).toBe('');
  expect(metrics(r).hosts[0].smokeTest).toMatchObject({
    exitCode: null,
    failure: expect.stringContaining('timed out')
  });
}, 300_000);

test('cancelling the run while the smoke test runs stops it and fails the host before the switch', async () => {
  const before = upstream();
  const live = (await httpGet(`${url}/`)).body;
  const marker = `/tmp/bg-us-smoke-started-${process.pid}`;
  fs.rmSync(marker, { force: true });
  const cancel = new AbortController();
  const run = deploy(
    'v3',
    { 'smoke-test': `touch ${marker}\nsleep 4242`, 'smoke-test-timeout-seconds': '600' },
    cancel.signal
  );
  // The harness sends SIGTERM (as a runner does on cancel) once the command is running.
  await waitFor(async () => fs.existsSync(marker), { timeoutMs: 120_000, what: 'the smoke test to start' });
  cancel.abort();
  const r = await run;
  fs.rmSync(marker, { force: true });
  expect(r.outputs.result).toBe('failed');
  expect(r.summary).toContain('the smoke test stopped: the workflow run was cancelled');
  expect(upstream()).toBe(before);
  expect((await httpGet(`${url}/`)).body).toBe(live);
  expect((await sh('pgrep -f "sleep 424[2]" || true')).stdout.trim()).toBe('');
}, 300_000);
