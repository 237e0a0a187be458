/**
 * The deploy lock as a lease, end to end on the sandbox host (real sshd, dash, flock, docker, nginx; dist/ as a runner
 * runs it): a runner that vanishes (its connection goes silent through FaultProxy and is never closed) loses the lock
 * once its lease expires, without waiting for sshd or TCP to notice; a SIGKILLed runner loses it at once; a live
 * holder makes the next deploy wait and then fail naming it; a run re-takes its own lease without waiting; status
 * reports the lease.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { lockScript, releaseLeaseScript } from '../../src/remote/scripts.js';
import { shInvocation } from '../../src/remote/shell.js';
import { FaultProxy } from './fault-proxy.js';
import {
  cleanupApp,
  dockerPs,
  httpGet,
  prepareApp,
  outcome,
  REPO_ROOT,
  runAction,
  SANDBOX,
  sh,
  type RunActionResult
} from './harness.js';

const APPS = {
  vanish: { app: 'f11-lk-vanish', listen: 19260, blue: 19261, green: 19262 },
  kill: { app: 'f11-lk-kill', listen: 19263, blue: 19264, green: 19265 },
  wait: { app: 'f11-lk-wait', listen: 19266, blue: 19267, green: 19268 },
  script: { app: 'f11-lk-script', listen: 19269, blue: 19270, green: 19271 }
};
type AppDef = (typeof APPS)[keyof typeof APPS];

function inputs(a: AppDef, tag: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    hosts: SANDBOX.host,
    'ssh-private-key': SANDBOX.privateKey,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'app-name': a.app,
    image: `${SANDBOX.image}:${tag}`,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'blue-port': String(a.blue),
    'green-port': String(a.green),
    'verify-seconds': '1',
    'health-timeout-seconds': '30',
    'upload-artifacts': 'false',
    ...extra
  };
}
const deploy = (
  a: AppDef,
  tag: string,
  extra: Record<string, string> = {},
  opts: Parameters<typeof runAction>[1] = {}
) => runAction(inputs(a, tag, extra), opts);

const errorLine = (r: RunActionResult) => r.stdout.match(/::error title=[^:]*::(.*)/)?.[1] ?? '';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const leasePath = (a: AppDef) => `/home/${SANDBOX.user}/.bluegreen/${a.app}/lease`;
function lease(
  a: AppDef
): { token: string; deployId: string; expires: number; owner: Record<string, unknown> } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(leasePath(a), 'utf8').trim();
  } catch {
    return undefined;
  }
  const [token, expires, ...owner] = text.split(' ');
  if (!token) return undefined;
  return {
    token,
    deployId: token.slice(0, token.lastIndexOf('.')),
    expires: Number(expires),
    owner: JSON.parse(owner.join(' ')) as Record<string, unknown>
  };
}

/** [state, version] of the app's containers plus the names that are neither colour. */
async function hostState(a: AppDef): Promise<{ containers: string[][]; others: string[] }> {
  const cs = await dockerPs(a.app);
  return {
    containers: cs
      .map((c) => [c.state, c.labels['bluegreen.image'].split(':').pop()!])
      .sort((x, y) => x.join().localeCompare(y.join())),
    others: cs.map((c) => c.name).filter((n) => n !== `${a.app}-blue` && n !== `${a.app}-green`)
  };
}
const serving = async (a: AppDef) => (await httpGet(`http://127.0.0.1:${a.listen}/`)).body;

interface StatusLock {
  held: boolean;
  owner?: { deployId?: string; actor?: string; since?: string };
  draining?: boolean;
  expiresAt?: string;
  stale?: boolean;
}
async function statusLock(a: AppDef): Promise<StatusLock> {
  const r = await runAction({ ...inputs(a, 'v1'), command: 'status' });
  const json = JSON.parse(r.outputs['status-json'] ?? '{}') as { hosts?: Array<{ lock: StatusLock }> };
  if (!json.hosts?.[0]) throw new Error(`status gave no host: ${r.stdout.slice(-2000)}`);
  return json.hosts[0].lock;
}

/** PIDs of this worktree's action processes for one app (other engineers run their own dist/ on this machine). */
async function actionPids(a: AppDef): Promise<string[]> {
  const script = `${REPO_ROOT}/dist/index.js`;
  const out = await sh(
    `for p in $(pgrep -f -- ${JSON.stringify(script)}); do tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -qx 'INPUT_APP-NAME=${a.app}' && echo $p; done; true`
  );
  return out.stdout.split('\n').filter(Boolean);
}

/** Runs a lock script on the sandbox host over OpenSSH (the same `sh -c body sh args…` the action sends). */
function sshScript(s: { body: string; args: string[] }): ChildProcess {
  return spawn(
    'ssh',
    [
      '-i',
      SANDBOX.privateKeyPath,
      '-o',
      `UserKnownHostsFile=${SANDBOX.knownHostsPath}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      '-p',
      String(SANDBOX.sshPort),
      `${SANDBOX.user}@${SANDBOX.sshHost}`,
      shInvocation(s.body, s.args)
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] }
  );
}
async function sshRun(s: { body: string; args: string[] }): Promise<{ code: number | null; stdout: string }> {
  const p = sshScript(s);
  p.stdin!.end();
  let stdout = '';
  p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  const code = await new Promise<number | null>((r) => p.on('close', r));
  return { code, stdout };
}

beforeAll(async () => {
  for (const a of Object.values(APPS)) await prepareApp(a.app, { listenPort: a.listen, bluePort: a.blue });
}, 120_000);

afterAll(async () => {
  for (const a of Object.values(APPS)) await cleanupApp(a.app);
}, 120_000);

test('a runner that vanishes mid-deploy loses the lock when its lease expires; the next deploy takes over and ends consistent', async () => {
  const a = APPS.vanish;
  for (const tag of ['v1', 'v2']) expect(outcome(await deploy(a, tag))).toBe('success');
  expect(await serving(a)).toBe('v2');

  const proxy = await FaultProxy.start(SANDBOX.sshHost, SANDBOX.sshPort);
  const abort = new AbortController();
  let vanished: Promise<RunActionResult> | undefined;
  try {
    vanished = deploy(
      a,
      'unhealthy',
      {
        hosts: `127.0.0.1:${proxy.port}`,
        'ssh-known-hosts': '',
        'ssh-host-fingerprint': SANDBOX.fingerprint,
        'health-timeout-seconds': '600'
      },
      { signal: abort.signal, timeoutMs: 900_000 }
    );
    await until(
      'the vanishing run to hold the lease and start its candidate',
      async () =>
        Boolean(lease(a)) && (await hostState(a)).containers.some((c) => c[0] === 'running' && c[1] === 'unhealthy')
    );
    const holder = lease(a)!;

    // status while it holds the lock: held, by that deploy
    const held = await statusLock(a);
    expect([held.held, held.owner?.deployId, held.stale]).toEqual([true, holder.deployId, undefined]);
    await until('a heartbeat renewal', () => (lease(a)?.expires ?? 0) > holder.expires, 30_000);

    proxy.blackhole();
    const silentAt = Date.now();
    const next = await deploy(a, 'v3', { 'lock-timeout-seconds': '120' });
    console.log(
      `[lock.test] the vanished run's lease was taken over ${((Date.now() - silentAt) / 1000).toFixed(1)} s after its connection went silent (deploy took ${(next.durationMs / 1000).toFixed(1)} s; lease TTL 30 s)`
    );
    console.log(
      `[lock.test] what the next deploy did with the vanished run's candidate:\n${next.stdout
        .split('\n')
        .filter((l) => /lock|interrupted|restor|live colour|leftover|deploying/i.test(l))
        .join('\n')}`
    );
    expect([next.outputs.result, errorLine(next)]).toEqual(['success', '']);
    // it waited for the vanished holder, named it, and did not wait out its whole lock-timeout
    expect(next.stdout).toContain(`another deploy holds the lock (deploy ${holder.deployId} by tester`);
    expect(next.stdout).not.toMatch(/still holds the lock/);

    // consistent: v3 serves, v2 is the one kept standby, the vanished run's candidate and set-aside standby are gone
    expect(await serving(a)).toBe('v3');
    expect(await hostState(a)).toEqual({
      containers: [
        ['exited', 'v2'],
        ['running', 'v3']
      ],
      others: []
    });
    expect(lease(a)).toBeUndefined();
    expect((await statusLock(a)).held).toBe(false);
  } finally {
    abort.abort(); // the blackholed action may still be running until its own SSH keepalive gives up
    const r = await vanished;
    await proxy.close();
    if (r)
      console.log(
        `[lock.test] the vanished run ended: exit ${r.code ?? r.signal}, result ${r.outputs.result ?? '(none)'}`
      );
  }
  expect(await actionPids(a)).toEqual([]);
  // it touched nothing after it went silent
  expect(await serving(a)).toBe('v3');
  expect(await hostState(a)).toEqual({
    containers: [
      ['exited', 'v2'],
      ['running', 'v3']
    ],
    others: []
  });
}, 900_000);

test('SIGKILL of the action while it holds the lock: the next deploy gets the lock at once', async () => {
  const a = APPS.kill;
  expect(outcome(await deploy(a, 'v1'))).toBe('success');
  const abort = new AbortController();
  const running = deploy(a, 'unhealthy', { 'health-timeout-seconds': '300' }, { signal: abort.signal });
  try {
    await until(
      'the run to hold the lease and start its candidate',
      async () =>
        Boolean(lease(a)) && (await hostState(a)).containers.some((c) => c[0] === 'running' && c[1] === 'unhealthy')
    );
    const pids = await actionPids(a);
    expect(pids).toHaveLength(1);
    await sh(`kill -KILL ${pids[0]}`);
    expect((await running).signal).toBe('SIGKILL');
  } finally {
    abort.abort();
    await running;
  }
  const next = await deploy(a, 'v2', { 'lock-timeout-seconds': '5' });
  expect([next.outputs.result, errorLine(next)]).toEqual(['success', '']);
  expect(next.stdout).not.toContain('another deploy holds the lock');
  expect(await serving(a)).toBe('v2');
  expect(await hostState(a)).toEqual({
    containers: [
      ['exited', 'v1'],
      ['running', 'v2']
    ],
    others: []
  });
  expect(lease(a)).toBeUndefined();
}, 600_000);

test('a lease held by another deploy makes a deploy wait, then fail naming the holder; status shows it; released, the next one goes through', async () => {
  const a = APPS.wait;
  expect(outcome(await deploy(a, 'v1'))).toBe('success');
  const owner = { deployId: 'lk-holder', actor: 'someone', since: new Date().toISOString() };
  // a real holder: the action's own lock script and keeper, renewed by heartbeats
  const holder = sshScript(lockScript(a.app, 'lk-holder.0001', JSON.stringify(owner), 0));
  let out = '';
  holder.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const beat = setInterval(() => holder.stdin!.write('.'), 5000);
  try {
    await until('the holder to lock', () => out.includes('@@locked lk-holder.0001'), 30_000);
    const r = await deploy(a, 'v2', { 'lock-timeout-seconds': '3' });
    expect(r.outputs.result).toBe('failed');
    expect(errorLine(r)).toMatch(
      /^lock failed on 127\.0\.0\.1:2222: another deploy of f11-lk-wait still holds the lock on this host after 3 s \(deploy lk-holder by someone since /
    );
    expect(r.stdout).toContain('another deploy holds the lock (deploy lk-holder by someone since');
    expect(await serving(a)).toBe('v1');
    const s = await statusLock(a);
    expect([s.held, s.owner, s.stale]).toEqual([true, owner, undefined]);
    expect(Date.parse(s.expiresAt!)).toBeGreaterThan(Date.now());
  } finally {
    clearInterval(beat);
    holder.stdin!.end(); // EOF: the keeper removes its lease
  }
  await new Promise((r) => holder.once('close', r));
  expect(lease(a)).toBeUndefined();
  expect((await statusLock(a)).held).toBe(false);
  const again = await deploy(a, 'v2', { 'lock-timeout-seconds': '0' });
  expect([again.outputs.result, errorLine(again)]).toEqual(['success', '']);
  expect(await serving(a)).toBe('v2');
}, 600_000);

test('a deploy by an older version of the action (holding the lock file for its whole run) still makes a deploy wait and fail naming it', async () => {
  // what test/e2e/faults.test.ts does with a manual holder
  const a = APPS.wait;
  const owner = JSON.stringify({ deployId: 'old-version-holder', actor: 'someone', since: new Date().toISOString() });
  const holder = spawn(
    'ssh',
    [
      '-i',
      SANDBOX.privateKeyPath,
      '-o',
      `UserKnownHostsFile=${SANDBOX.knownHostsPath}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-p',
      String(SANDBOX.sshPort),
      `${SANDBOX.user}@${SANDBOX.sshHost}`,
      `mkdir -p .bluegreen/${a.app}; exec 9>>.bluegreen/${a.app}/lock; flock 9; printf '%s\\n' '${owner}' > .bluegreen/${a.app}/lock.owner; echo held; cat >/dev/null; : > .bluegreen/${a.app}/lock.owner`
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] }
  );
  await new Promise<void>((resolve) =>
    holder.stdout!.on('data', (d: Buffer) => d.toString().includes('held') && resolve())
  );
  try {
    const r = await deploy(a, 'v3', { 'lock-timeout-seconds': '2' });
    expect(r.outputs.result).toBe('failed');
    expect(errorLine(r)).toMatch(
      /^lock failed on 127\.0\.0\.1:2222: another deploy of f11-lk-wait still holds the lock on this host after 2 s \(deploy old-version-holder by someone since /
    );
    const s = await statusLock(a);
    expect([s.held, s.owner?.deployId]).toEqual([true, 'old-version-holder']);
  } finally {
    holder.kill('SIGKILL');
  }
  await new Promise((r) => holder.once('close', r));
  const again = await deploy(a, 'v3', { 'lock-timeout-seconds': '5' });
  expect([again.outputs.result, errorLine(again)]).toEqual(['success', '']);
  expect(await serving(a)).toBe('v3');
}, 600_000);

test('over ssh: a run re-takes its own lease (same deployId) at once, another deploy id cannot, release frees it', async () => {
  const a = APPS.script;
  const own = (id: string) => JSON.stringify({ deployId: id, actor: 'tester' });
  // lock-timeout 0: any wait at all would fail with exit 75
  expect(await sshRun(lockScript(a.app, 'run1.aaaa', own('run1'), 0, { keeper: false }))).toEqual({
    code: 0,
    stdout: '@@locked run1.aaaa\n'
  });
  expect(await sshRun(lockScript(a.app, 'run1.bbbb', own('run1'), 0, { keeper: false }))).toEqual({
    code: 0,
    stdout: '@@locked run1.bbbb\n'
  });
  expect(lease(a)?.token).toBe('run1.bbbb');
  expect(await sshRun(lockScript(a.app, 'run2.cccc', own('run2'), 0, { keeper: false }))).toEqual({
    code: 75,
    stdout: `@@lock-wait ${own('run1')}\n@@lock-timeout ${own('run1')}\n`
  });
  expect(await sshRun(releaseLeaseScript(a.app, 'run1.aaaa'))).toEqual({ code: 0, stdout: '@@not-ours\n' });
  expect(await sshRun(releaseLeaseScript(a.app, 'run1.bbbb'))).toEqual({ code: 0, stdout: '@@released\n' });
  expect(await sshRun(lockScript(a.app, 'run2.cccc', own('run2'), 0, { keeper: false }))).toEqual({
    code: 0,
    stdout: '@@locked run2.cccc\n'
  });
  expect(await sshRun(releaseLeaseScript(a.app, 'run2.cccc'))).toEqual({ code: 0, stdout: '@@released\n' });
}, 120_000);
