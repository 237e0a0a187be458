/**
 * smoke-test on the fleet: three hosts the runner cannot reach (no route to 10.204.0.0/24) behind the bastion. The
 * command on the runner still reaches each candidate through BLUEGREEN_CANDIDATE_URL, tunnelled over the host's
 * SSH connection (itself inside the bastion connection). smoke-test-on: first tests the canary only; a smoke test
 * failing on one host of an all-or-nothing rollout leaves every host on the old version.
 *
 * Uses the fleet as it is (test/sandbox/.state/fleet.json; never starts it) and touches only this file's app: no
 * nginx site (so no other app loses default_server), just the app's upstream file, checked on the hosts.
 */
import fs from 'node:fs';
import { outcome, runAction, SANDBOX, type RunActionResult } from './harness.js';
import { FLEET_JSON, fleetInputs, onHostOk, type Fleet } from './fleet-harness.js';

const app = 'e2e-us-smokefleet';
const NAMES = ['bgf-h1', 'bgf-h2', 'bgf-h3'];
const ports = { blue: 19531, green: 19532 };
const fleet: Fleet = JSON.parse(fs.readFileSync(FLEET_JSON, 'utf8'));
const label = (name: string) => `${fleet.hosts.find((h) => h.name === name)!.host}:22`;
const record = `/tmp/bg-us-fleet-smoke-${process.pid}.log`;

function deploy(tag: string, extra: Record<string, string>): Promise<RunActionResult> {
  return runAction({
    ...fleetInputs(fleet, NAMES),
    'ssh-private-key': SANDBOX.privateKey,
    'app-name': app,
    image: `${fleet.registry}/demo:${tag}`,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'blue-port': String(ports.blue),
    'green-port': String(ports.green),
    'verify-seconds': '0',
    'drain-seconds': '2',
    'wait-for-drain': 'true',
    'upload-artifacts': 'false',
    ...extra
  });
}

const removeApp = `ids="$(docker ps -aq --filter label=bluegreen.app=${app})"; [ -z "$ids" ] || docker rm -f $ids >/dev/null; rm -rf /home/ec2-user/.bluegreen/${app}; rm -f /etc/nginx/bluegreen/${app}.conf`;

/** What each host's live colour answers on the host itself, and its upstream file. */
async function live(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of NAMES) {
    out[n] = (
      await onHostOk(
        n,
        `p=$(sed -n 's/.*server 127\\.0\\.0\\.1:\\([0-9]*\\).*/\\1/p' /etc/nginx/bluegreen/${app}.conf); curl -fsS "http://127.0.0.1:$p/"`
      )
    ).trim();
  }
  return out;
}

beforeAll(async () => {
  await Promise.all(
    NAMES.map((n) =>
      onHostOk(
        n,
        `${removeApp}\nprintf 'upstream ${app} { server 127.0.0.1:${ports.blue}; }\\n' >/etc/nginx/bluegreen/${app}.conf && chown ec2-user:ec2-user /etc/nginx/bluegreen/${app}.conf`
      )
    )
  );
});
afterAll(async () => {
  fs.rmSync(record, { force: true });
  await Promise.all(NAMES.map((n) => onHostOk(n, `${removeApp}\nnginx -t -q && nginx -s reload 2>/dev/null || true`)));
});

test('canary + smoke-test-on first: only the canary is tested, through the tunnel, though the runner has no route to it', async () => {
  const r = await deploy('v1', {
    rollout: 'canary',
    'smoke-test': `echo "$BLUEGREEN_HOST $(curl -fsS "$BLUEGREEN_CANDIDATE_URL/")" >> ${record}`,
    'smoke-test-on': 'first'
  });
  expect(outcome(r)).toBe('success');
  expect(fs.readFileSync(record, 'utf8')).toBe(`${label('bgf-h1')} v1\n`);
  const m = JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
  const tested = m.hosts
    .filter((h: { steps: Array<{ name: string }> }) => h.steps.some((s) => s.name === 'smoke-test'))
    .map((h: { host: string }) => h.host);
  expect(tested).toEqual([label('bgf-h1')]);
  expect(await live()).toEqual({ 'bgf-h1': 'v1', 'bgf-h2': 'v1', 'bgf-h3': 'v1' });
}, 300_000);

test('smoke-test-on all, all-or-nothing: a smoke test failing on one host leaves every host on the old version', async () => {
  fs.rmSync(record, { force: true });
  const smoke = `v=$(curl -fsS "$BLUEGREEN_CANDIDATE_URL/"); echo "$BLUEGREEN_HOST $v" >> ${record}; echo "candidate on $BLUEGREEN_HOST says $v"\nif [ "$BLUEGREEN_HOST" = ${label('bgf-h2')} ]; then echo "h2 is not ready" >&2; exit 1; fi`;
  const r = await deploy('v2', { 'smoke-test': smoke });
  expect(r.outputs.result).not.toBe('success');
  expect(r.outputs['failed-hosts']).toBe(label('bgf-h2'));
  // every candidate answered v2 through its tunnel (h2's before it failed)
  expect(fs.readFileSync(record, 'utf8')).toContain(`${label('bgf-h2')} v2`);
  expect(await live()).toEqual({ 'bgf-h1': 'v1', 'bgf-h2': 'v1', 'bgf-h3': 'v1' });
  expect(r.summary).toContain(`Smoke test on ${label('bgf-h2')}: ❌ exited with code 1`);
  expect(r.summary).toContain('h2 is not ready');
}, 300_000);
