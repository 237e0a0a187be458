/**
 * transport: ssm end to end: the committed dist/ under Node 24 deploys to the three fleet hosts through the SSM Run
 * Command stand-in (test/e2e/fake-aws, the real @aws-sdk clients over AWS_ENDPOINT_URL_SSM / _EC2), which runs each
 * command as root on the fleet host of its instance id, as the agent does. No ssh input is given: no host is reached
 * over SSH during the runs (the tests only look at the hosts with fleet-exec.sh). Hosts are found by tag; the stopped
 * instance with the same tag is left out.
 */
import crypto from 'node:crypto';
import { runAction, SANDBOX, type LoadResult, type RunActionResult } from './harness.js';
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
import { fleetInstanceId, startFakeAws, STOPPED_INSTANCE_ID, type FakeAws } from './fake-aws/index.js';

const app = 'ssm-e2e';
const NAMES = ['bgf-h1', 'bgf-h2', 'bgf-h3'];
const LABELS = NAMES.map((n, i) => `${fleetInstanceId(i + 1)} (${n})`);
const ENV_SECRET = `env-secret-${crypto.randomBytes(12).toString('hex')}`;
let fleet: Fleet;
let aws: FakeAws;
let urls: Record<string, string>;

function run(inputs: Record<string, string>, signal?: AbortSignal): Promise<RunActionResult> {
  return runAction(
    {
      transport: 'ssm',
      hosts: 'tag:Role=backend',
      // SSM runs commands as root; the fleet hosts share the runner's /root, so the deploy runs as ec2-user (its own
      // home on every host), like the ssh transport's ssh-user.
      'ssm-run-as': 'ec2-user',
      'app-name': app,
      'registry-auth': 'password',
      'registry-username': SANDBOX.registryUser,
      'registry-password': SANDBOX.registryPassword,
      env: `SECRET_TOKEN=${ENV_SECRET}\nPLAIN=1`,
      'blue-port': '19451',
      'green-port': '19452',
      'verify-seconds': '2',
      'health-timeout-seconds': '30',
      'upload-artifacts': 'false',
      ...inputs
    },
    { env: aws.env, timeoutMs: 400_000, signal }
  );
}
const deploy = (tag: string, extra: Record<string, string> = {}, signal?: AbortSignal) =>
  run({ image: `${fleet.registry}/demo:${tag}`, ...extra }, signal);

const versions = () => fleetVersions(urls, NAMES);
const underLoad = <T>(fn: () => Promise<T>) => underFleetLoad(urls, NAMES, fn);

function expectNoFailedRequests(loads: Record<string, LoadResult>): void {
  for (const [n, l] of Object.entries(loads)) {
    expect({ host: n, failed: l.failed, errors: l.errors.slice(0, 3) }).toEqual({ host: n, failed: 0, errors: [] });
    expect(l.ok).toBeGreaterThan(0);
  }
}

/** The background drain jobs (wait-for-drain: false) have stopped the old colours. */
async function drained(): Promise<void> {
  await Promise.all(
    NAMES.map((n) =>
      onHostOk(n, `f=/home/ec2-user/.bluegreen/${app}/drain.lock; [ ! -e "$f" ] || flock -w 60 "$f" true`)
    )
  );
}

const explain = (r: RunActionResult) => ({
  result: r.outputs.result,
  errors: r.stdout
    .split('\n')
    .filter((l) => l.startsWith('::error'))
    .slice(0, 3)
});

beforeAll(async () => {
  fleet = await loadFleet({ hosts: 3 });
  aws = await startFakeAws();
  ({ urls } = await prepareFleetApp(app, NAMES, { bluePort: 19451 }));
}, 180_000);

afterAll(async () => {
  await aws?.close();
  await cleanupFleetApp(app);
  await Promise.all(NAMES.map((n) => onHostOk(n, 'rm -rf /run/bluegreen-ssm')));
});

test('hosts found by tag (the stopped one left out), deployed with no SSH: env and registry password reach the hosts sealed', async () => {
  const r = await deploy('v1');
  expect(explain(r)).toEqual({ result: 'success', errors: [] });
  expect(r.outputs['succeeded-hosts'].split(',')).toEqual(LABELS);
  expect(r.stdout).toContain(`hosts: ${LABELS.join(', ')} (found with EC2 DescribeInstances in us-east-1)`);
  expect(r.stdout).not.toContain(STOPPED_INSTANCE_ID);
  for (const l of LABELS) expect(r.summary).toContain(l);
  expect(await versions()).toEqual({ 'bgf-h1': 'v1', 'bgf-h2': 'v1', 'bgf-h3': 'v1' });
  for (const n of NAMES) {
    const env = await onHostOk(
      n,
      `docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' ${app}-blue ${app}-green 2>/dev/null || true`
    );
    expect(env).toContain(`SECRET_TOKEN=${ENV_SECRET}`);
  }
  // the per-host SSM sessions (one-time keys) are gone once the run closed them
  await aws.ssm.idle();
  for (const n of NAMES) expect(await onHostOk(n, 'ls -A /run/bluegreen-ssm 2>/dev/null || true')).toBe('');
}, 400_000);

test('deploy under load: every host switches to v2 with no failed request', async () => {
  const { value: r, loads } = await underLoad(() => deploy('v2'));
  expect(explain(r)).toEqual({ result: 'success', errors: [] });
  expectNoFailedRequests(loads);
  expect(await versions()).toEqual({ 'bgf-h1': 'v2', 'bgf-h2': 'v2', 'bgf-h3': 'v2' });
  await drained();
  for (const n of NAMES) {
    const cs = await dockerPsOn(n, app);
    expect(cs.find((c) => c.labels['bluegreen.image']?.endsWith(':v2'))?.state).toBe('running');
    expect(cs.some((c) => c.labels['bluegreen.image']?.endsWith(':v1'))).toBe(true);
  }
}, 400_000);

test('a failing deploy (unhealthy image) is rolled back: v2 keeps serving everywhere, with the candidate logs', async () => {
  const { value: r, loads } = await underLoad(() => deploy('unhealthy', { 'health-timeout-seconds': '5' }));
  expect(r.code).not.toBe(0);
  expect(r.outputs.result).toBe('failed');
  expect(r.stdout).toMatch(
    /::error title=bluegreen-ec2-action%3A failed::health failed on i-0f1ee70000000000[123] \(bgf-h[123]\): GET \/health on port 1945[12] did not answer 2xx within 5 s .*HTTP 404/
  );
  expect(r.summary).toContain('Last log lines of the candidate');
  expectNoFailedRequests(loads);
  expect(await versions()).toEqual({ 'bgf-h1': 'v2', 'bgf-h2': 'v2', 'bgf-h3': 'v2' });
  for (const n of NAMES)
    expect((await dockerPsOn(n, app)).some((c) => c.labels['bluegreen.image']?.endsWith(':unhealthy'))).toBe(false);
}, 400_000);

test('status reads every host through SSM', async () => {
  const s = await run({ command: 'status' });
  expect(explain(s)).toEqual({ result: 'success', errors: [] });
  const json = JSON.parse(s.outputs['status-json']) as {
    hosts: Array<{ host: string; reachable: boolean; live?: string; colors: Record<string, { image?: string }> }>;
  };
  expect(json.hosts.map((h) => [h.host, h.reachable])).toEqual(LABELS.map((l) => [l, true]));
  for (const h of json.hosts) expect(h.colors[h.live!].image).toMatch(/demo:v2$/);
}, 400_000);

test('rollback under load returns every host to v1', async () => {
  await drained();
  const { value: r, loads } = await underLoad(() => run({ command: 'rollback' }));
  expect(explain(r)).toEqual({ result: 'success', errors: [] });
  expectNoFailedRequests(loads);
  expect(await versions()).toEqual({ 'bgf-h1': 'v1', 'bgf-h2': 'v1', 'bgf-h3': 'v1' });
}, 400_000);

test('a cancelled run cancels its command in flight (CancelCommand) and changes nothing', async () => {
  // Another deploy holds bgf-h1's lease: the run waits for it inside one SSM command.
  const lease = `/home/ec2-user/.bluegreen/${app}/lease`;
  await onHostOk(
    'bgf-h1',
    `mkdir -p "$(dirname ${lease})" && printf '%s %s %s\\n' other-deploy.0001 $(( $(date +%s) + 600 )) '{"deployId":"other-deploy"}' > ${lease} && chown -R ec2-user: /home/ec2-user/.bluegreen`
  );
  try {
    const ac = new AbortController();
    const t0 = Date.now();
    const running = deploy('v2', { 'lock-timeout-seconds': '120' }, ac.signal);
    // the lock command has been running on bgf-h1 for a while: cancel the workflow run
    let waiting: string | undefined;
    while (!waiting && Date.now() - t0 < 60_000) {
      await new Promise((r) => setTimeout(r, 250));
      waiting = aws.ssm
        .invocations()
        .find(
          (i) =>
            i.instanceId === fleetInstanceId(1) &&
            i.status === 'InProgress' &&
            i.startedAt &&
            Date.now() - i.startedAt.getTime() > 1500 &&
            i.requestedAt.getTime() > t0
        )?.commandId;
    }
    expect(waiting).toBeDefined();
    ac.abort();
    const r = await running;
    expect(r.outputs.result).toBe('failed');
    expect(r.stdout).toMatch(/cancelled/);
    const cancels = aws.ssm
      .requests()
      .filter((q) => q.operation === 'CancelCommand')
      .map((q) => (q.body as { CommandId?: string }).CommandId);
    expect(cancels).toContain(waiting);
    expect(aws.ssm.invocations().find((i) => i.commandId === waiting)?.status).toBe('Cancelled');
    expect(await versions()).toEqual({ 'bgf-h1': 'v1', 'bgf-h2': 'v1', 'bgf-h3': 'v1' });
    expect((await onHostOk('bgf-h1', `cut -d' ' -f1 ${lease}`)).trim()).toBe('other-deploy.0001');
  } finally {
    await onHostOk('bgf-h1', `rm -f ${lease}`);
  }
}, 200_000);

test('a host whose SSM agent is offline is reported by status, with what to check; the others are read', async () => {
  aws.instances.setOnline(fleetInstanceId(2), false);
  try {
    const s = await run({ command: 'status' });
    expect(s.outputs.result).toBe('failed');
    expect(s.outputs['failed-hosts']).toBe(LABELS[1]);
    expect(s.outputs['succeeded-hosts'].split(',')).toEqual([LABELS[0], LABELS[2]]);
    // SSM refuses commands for a node whose agent is not connected (InvalidInstanceId)
    expect(s.stdout).toContain(
      `SSM SendCommand for ${LABELS[1]} failed: ${LABELS[1]} is not a managed node SSM can reach in us-east-1: is the instance running, in this region and account, with the SSM agent running`
    );
  } finally {
    aws.instances.setOnline(fleetInstanceId(2), true);
  }
}, 200_000);

test('a selector that matches nothing fails before anything is touched and says what it looked for', async () => {
  const before = aws.ssm.sentParameters().length;
  const r = await run({ hosts: 'tag:Role=nothing-here', image: `${fleet.registry}/demo:v2` });
  expect(r.code).not.toBe(0);
  expect(r.stdout).toContain(
    'no running instance matches tag:Role=nothing-here in us-east-1 (DescribeInstances filters: tag:Role=nothing-here, instance-state-name=running)'
  );
  expect(aws.ssm.sentParameters().length).toBe(before);
}, 120_000);

test('the record of every command sent holds no secret', () => {
  const sent = aws.ssm.sentParameters();
  expect(sent.length).toBeGreaterThan(20);
  const all = JSON.stringify(sent);
  for (const secret of [SANDBOX.registryPassword, ENV_SECRET]) {
    expect(all).not.toContain(secret);
    // nor as base64, at any alignment
    for (let i = 0; i < 3; i++)
      expect(all).not.toContain(
        Buffer.from(`${'x'.repeat(i)}${secret}`)
          .toString('base64')
          .slice(4, -4)
      );
  }
  for (const p of sent) expect(Object.keys(p).sort()).toEqual(['commands', 'executionTimeout']);
  const requests = aws.ssm.requests().filter((q) => q.operation === 'SendCommand');
  expect(new Set(requests.map((q) => (q.body as { DocumentName?: string }).DocumentName))).toEqual(
    new Set(['AWS-RunShellScript'])
  );
});

test('transport: ssh finds hosts by tag too: the private addresses, through the bastion', async () => {
  const ssh = fleetInputs(fleet, NAMES);
  const r = await runAction(
    {
      ...ssh,
      hosts: 'tag:Role=backend',
      'ssh-private-key': SANDBOX.privateKey,
      'app-name': app,
      command: 'status',
      'upload-artifacts': 'false'
    },
    { env: aws.env, timeoutMs: 120_000 }
  );
  expect(explain(r)).toEqual({ result: 'success', errors: [] });
  expect(r.stdout).toContain(
    `hosts: ${LABELS.map((l, i) => `${l} at ${fleet.hosts.find((h) => h.name === NAMES[i])!.host}`).join(', ')}`
  );
  expect(r.outputs['succeeded-hosts'].split(',')).toEqual(LABELS);
}, 120_000);
