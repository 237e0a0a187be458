/**
 * Fault suite on the sandbox host: each case checks that the old version keeps serving (or the new one,
 * once switched), nothing is leaked (containers, lock, credentials), the cause is actionable, and a
 * rerun succeeds.
 */
import fs from 'node:fs';
import net from 'node:net';
import { spawn } from 'node:child_process';
import {
  cleanupApp,
  dockerPs,
  httpGet,
  prepareApp,
  outcome,
  runAction,
  SANDBOX,
  sh,
  type RunActionResult
} from './harness.js';

const app = 'e2e-faults';
const twin = 'e2e-faults-twin';
const ports = { blue: 18251, green: 18252 };
let url: string;

function inputs(extra: Record<string, string> = {}): Record<string, string> {
  return {
    hosts: SANDBOX.host,
    'ssh-private-key': SANDBOX.privateKey,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'app-name': app,
    image: `${SANDBOX.image}:v1`,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'blue-port': String(ports.blue),
    'green-port': String(ports.green),
    'verify-seconds': '1',
    'health-timeout-seconds': '20',
    'upload-artifacts': 'false',
    ...extra
  };
}
const deploy = (tag: string, extra: Record<string, string> = {}) =>
  runAction(inputs({ image: `${SANDBOX.image}:${tag}`, ...extra }));

/** [name, state, version] of the app's containers. */
async function containers(): Promise<string[][]> {
  return (await dockerPs(app))
    .map((c) => [c.name, c.state, c.labels['bluegreen.image'].split(':').pop()!])
    .sort((a, b) => a[0].localeCompare(b[0]));
}
const serving = async () => (await httpGet(`${url}/`)).body;

/** The healthy steady state: `live` running and served, the other version kept stopped, nothing else. */
async function expectSteady(live: string, standby: string): Promise<void> {
  expect(await serving()).toBe(live);
  const cs = await containers();
  expect(cs.map((c) => [c[1], c[2]]).sort()).toEqual([
    ['exited', standby],
    ['running', live]
  ]);
  expect(await hostLeftovers()).toEqual([]);
}
async function hostLeftovers(): Promise<string[]> {
  return (await sh('ls -d /tmp/bluegreen-login.* /tmp/bluegreen-env.* 2>/dev/null || true')).stdout
    .split('\n')
    .filter(Boolean);
}
/** A rerun takes the lock at once (none leaked) and succeeds. */
async function expectRerunSucceeds(tag: string): Promise<void> {
  const r = await deploy(tag, { 'lock-timeout-seconds': '0' });
  expect([r.outputs.result, r.stdout.match(/::error::.*/)?.[0]]).toEqual(['success', undefined]);
}
function errorLine(r: RunActionResult): string {
  return r.stdout.match(/::error title=[^:]*::(.*)/)?.[1] ?? '';
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitUntil(what: string, fn: () => Promise<boolean>, ms = 30000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
/** Kills the SSH server processes of ec2-user's sessions: the action's connection drops. */
const dropSshSessions = () => sh(`pkill -KILL -f '^sshd: ec2-user' || true`);

beforeAll(async () => {
  await prepareApp(twin, { listenPort: 18260, bluePort: 18261 });
  url = await prepareApp(app, { listenPort: 18250, bluePort: ports.blue });
  expect((await deploy('v1')).outputs.result).toBe('success');
  expect((await deploy('v2')).outputs.result).toBe('success');
  await expectSteady('v2', 'v1');
});
afterAll(async () => {
  await cleanupApp(app);
  await cleanupApp(twin);
});

describe('SSH and host faults', () => {
  test('connection dropped before the switch: reconnects, removes the candidate, restores the standby', async () => {
    const running = deploy('unhealthy', { 'health-timeout-seconds': '60' });
    await waitUntil('the candidate to start', async () =>
      (await containers()).some((c) => c[2] === 'unhealthy' && c[1] === 'running')
    );
    await dropSshSessions();
    const r = await running;
    expect(r.outputs.result).toBe('failed');
    expect(errorLine(r)).toMatch(/^health failed on 127\.0\.0\.1:2222: the SSH connection was lost during health/);
    expect(r.stdout).toMatch(/reconnected \(try \d\) to clean up after the lost connection/);
    await expectSteady('v2', 'v1');
    await expectRerunSucceeds('v3');
    await expectSteady('v3', 'v2');
  });

  test('connection dropped after the switch: reconnects and switches traffic back', async () => {
    // Serving v1 is not enough: the switch step goes on until the old workers stop accepting. Strike once the
    // action says its verify step began.
    let out = '';
    const running = runAction(inputs({ image: `${SANDBOX.image}:v1`, 'verify-seconds': '30' }), {
      onSpawn: (c) => c.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    });
    await waitUntil('the verify step', async () => out.includes('::group::verify') && (await serving()) === 'v1');
    await dropSshSessions();
    const r = await running;
    expect(r.outputs.result).toBe('rolled-back');
    expect(errorLine(r)).toMatch(/^verify failed on 127\.0\.0\.1:2222: the SSH connection was lost during verify/);
    await expectSteady('v3', 'v2');
    await expectRerunSucceeds('v1');
    await expectSteady('v1', 'v3');
  });

  test('sshd restarted mid-deploy: the open connection survives and the deploy completes', async () => {
    const pidFile = `${SANDBOX.privateKeyPath.replace(/id_ed25519$/, '')}sshd.pid`;
    const cfg = pidFile.replace(/sshd\.pid$/, 'sshd_config');
    const running = deploy('v2', { 'verify-seconds': '3' });
    await waitUntil('the candidate to start', async () =>
      (await containers()).some((c) => c[2] === 'v2' && c[1] === 'running')
    );
    await sh(
      `kill "$(cat ${pidFile})"; for i in $(seq 1 50); do /usr/sbin/sshd -f ${cfg} 2>/dev/null && break; sleep 0.1; done`
    );
    const r = await running;
    expect(outcome(r)).toBe('success');
    await expectSteady('v2', 'v1');
  });

  test('host unreachable: refused and timed-out connections name the host and what to check', async () => {
    const refused = await runAction(
      inputs({ hosts: '127.0.0.1:2299', 'ssh-known-hosts': '', 'ssh-host-fingerprint': SANDBOX.fingerprint })
    );
    expect(refused.outputs.result).toBe('failed');
    expect(errorLine(refused)).toMatch(
      /^connect failed on 127\.0\.0\.1:2299: connection to ec2-user@127\.0\.0\.1:2299 was refused: is sshd running/
    );
    // a listener that never speaks SSH: the handshake times out
    const server = net.createServer(() => undefined).listen(18298, '127.0.0.1');
    try {
      const silent = await runAction(
        inputs({
          hosts: '127.0.0.1:18298',
          'ssh-known-hosts': '',
          'ssh-host-fingerprint': SANDBOX.fingerprint,
          'ssh-connect-timeout-seconds': '2'
        })
      );
      expect(errorLine(silent)).toMatch(
        /^connect failed on 127\.0\.0\.1:18298: no SSH handshake with ec2-user@127\.0\.0\.1:18298 within 2 s/
      );
    } finally {
      server.close();
    }
    await expectSteady('v2', 'v1');
  });

  test('dockerd unreachable for the SSH user fails at login with what to check, touching nothing', async () => {
    const r = await deploy('v3', { 'docker-command': 'docker -H unix:///run/no-such-docker.sock' });
    expect(r.outputs.result).toBe('failed');
    // docker login talks to the registry from the client; the pull is the first call that needs the daemon
    expect(errorLine(r)).toMatch(/^(login|pull) failed on 127\.0\.0\.1:2222: docker is not reachable on the host/);
    expect(errorLine(r)).toContain('Cannot connect to the Docker daemon');
    await expectSteady('v2', 'v1');
  });
});

describe('disk full', () => {
  // A second, real dockerd in its own network namespace (so it cannot touch the main dockerd's bridge)
  // whose data root is a 1.2 MB tmpfs: the pull runs out of space for real. It reaches the registry
  // through a small TCP forwarder on the veth address.
  const sock = '/run/bg-e2e-docker-small.sock';
  const registry = '10.201.0.1:5001';
  let forwarder: net.Server;
  beforeAll(async () => {
    forwarder = net.createServer((c) => {
      const up = net.connect(5000, '127.0.0.1');
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    const setup = [
      '{ ip netns del bg-e2e-small 2>/dev/null; ip link del bg-e2e-small-h 2>/dev/null; true; }',
      'ip netns add bg-e2e-small',
      'ip link add bg-e2e-small-h type veth peer name bg-e2e-small-n',
      'ip link set bg-e2e-small-n netns bg-e2e-small',
      'ip addr add 10.201.0.1/30 dev bg-e2e-small-h && ip link set bg-e2e-small-h up',
      'ip netns exec bg-e2e-small sh -c "ip addr add 10.201.0.2/30 dev bg-e2e-small-n && ip link set bg-e2e-small-n up && ip link set lo up"',
      'mkdir -p /tmp/bg-e2e-small-disk && (mountpoint -q /tmp/bg-e2e-small-disk || mount -t tmpfs -o size=1200k tmpfs /tmp/bg-e2e-small-disk) && mkdir -p /tmp/bg-e2e-small-disk/data'
    ].join(' && ');
    const r = await sh(setup);
    if (r.code !== 0) throw new Error(`netns setup failed: ${r.stderr}`);
    await new Promise<void>((resolve) => forwarder.listen(5001, '10.201.0.1', resolve));
    await sh(
      `setsid nsenter --net=/run/netns/bg-e2e-small dockerd --data-root /tmp/bg-e2e-small-disk/data --exec-root /run/bg-e2e-docker-small --pidfile /run/bg-e2e-docker-small.pid -H unix://${sock} --bridge none --iptables=false --ip-masq=false --insecure-registry ${registry} --group docker >/tmp/bg-e2e-docker-small.log 2>&1 < /dev/null &`
    );
    await waitUntil('the small dockerd', async () => (await sh(`docker -H unix://${sock} info`)).code === 0, 30000);
  }, 60000);
  afterAll(async () => {
    await sh(
      `kill "$(cat /run/bg-e2e-docker-small.pid)"; for i in $(seq 1 100); do [ -e /run/bg-e2e-docker-small.pid ] || break; sleep 0.1; done; umount /tmp/bg-e2e-small-disk; ip netns del bg-e2e-small`
    );
    forwarder.close();
  });

  test('the disk fills up while pulling: the cause is named and nothing else is touched', async () => {
    const r = await runAction(inputs({ image: `${registry}/demo:v3`, 'docker-command': `docker -H unix://${sock}` }));
    expect(r.outputs.result).toBe('failed');
    expect(errorLine(r)).toMatch(
      /^pull failed on 127\.0\.0\.1:2222: the host ran out of disk space while pulling 10\.201\.0\.1:5001\/demo:v3/
    );
    await expectSteady('v2', 'v1');
    expect(await hostLeftovers()).toEqual([]);
  });
});

describe('registry faults', () => {
  test('registry down', async () => {
    const r = await runAction(inputs({ image: '127.0.0.1:5999/demo:v3' }));
    expect(r.outputs.result).toBe('failed');
    expect(errorLine(r)).toMatch(
      /^pull failed on 127\.0\.0\.1:2222: the registry for 127\.0\.0\.1:5999\/demo:v3 is not reachable from the host/
    );
    await expectSteady('v2', 'v1');
  });

  test('wrong registry credentials', async () => {
    const r = await deploy('v3', { 'registry-password': 'wrong-password-123' });
    expect(r.outputs.result).toBe('failed');
    expect(errorLine(r)).toMatch(
      /^pull failed on 127\.0\.0\.1:2222: the registry refused access to 127\.0\.0\.1:5000\/demo:v3/
    );
    expect(
      r.stdout
        .split('\n')
        .filter((l) => !l.startsWith('::add-mask::'))
        .join('\n')
    ).not.toContain('wrong-password-123');
    await expectSteady('v2', 'v1');
    expect(await hostLeftovers()).toEqual([]);
  });
});

describe('a host-side script killed hard (SIGKILL, the OOM killer)', () => {
  test('the registry credentials and env file it left in /tmp are removed by the next run', async () => {
    // What such a script leaves: its throwaway DOCKER_CONFIG and env file, named with its pid, which no longer runs.
    const dead = (await sh('sh -c "echo \\$\\$"')).stdout.trim();
    const login = `/tmp/bluegreen-login.${dead}.Zq1w2e`;
    const env = `/tmp/bluegreen-env.${dead}.Zq1w2e`;
    await sh(
      `install -d -m 700 -o ec2-user ${login} && echo '{"auths":{"127.0.0.1:5000":{"auth":"c2VjcmV0"}}}' > ${login}/config.json && install -m 600 -o ec2-user /dev/null ${env}`
    );
    expect(await hostLeftovers()).toEqual([login, env].sort());
    const r = await deploy('unhealthy', { 'health-timeout-seconds': '2' });
    expect(r.outputs.result).toBe('failed');
    expect(errorLine(r)).toMatch(/^health failed on 127\.0\.0\.1:2222/);
    await expectSteady('v2', 'v1'); // no leftovers either
  });
});

describe('nginx faults', () => {
  test.each([
    [
      'the config test fails after the upstream is written',
      { 'nginx-upstream-name': twin },
      /nginx switch failed .*(duplicate upstream|host not found in upstream).*previous upstream file was restored/
    ],
    [
      'the reload command is not permitted',
      { 'nginx-reload-command': 'sudo -n /usr/sbin/nginx -s stop' },
      /nginx switch failed .*sudo.*previous upstream file was restored/
    ],
    [
      'the reload command is missing',
      { 'nginx-reload-command': 'nginx-reload-not-installed' },
      /nginx switch failed .*not found.*previous upstream file was restored/
    ]
  ])('%s: upstream restored, candidate removed, standby kept', async (_name, extra, message) => {
    const before = fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8');
    const r = await deploy('v3', extra as Record<string, string>);
    expect(r.outputs.result).toBe('failed');
    expect(errorLine(r)).toMatch(/^switch failed on 127\.0\.0\.1:2222: /);
    expect(errorLine(r)).toMatch(message);
    expect(fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8')).toBe(before);
    expect((await sh('nginx -t 2>&1')).code).toBe(0);
    await expectSteady('v2', 'v1');
  });
});

describe('docker faults', () => {
  test('the candidate port is taken by another process', async () => {
    // the candidate takes the standby's colour
    const standby = (await containers()).find((c) => c[1] === 'exited')![0].replace(`${app}-`, '') as 'blue' | 'green';
    const blocker = net.createServer().listen(ports[standby], '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    try {
      const r = await deploy('v3');
      expect(r.outputs.result).toBe('failed');
      expect(errorLine(r)).toMatch(
        new RegExp(
          `^start failed on 127\\.0\\.0\\.1:2222: docker run e2e-faults-${standby} failed .*(address already in use|port is already allocated)`
        )
      );
      await expectSteady('v2', 'v1');
    } finally {
      blocker.close();
    }
    await expectRerunSucceeds('v3');
    await expectSteady('v3', 'v2');
  });
});

describe('the action process killed', () => {
  test('SIGKILL mid-deploy: the lock dies with the connection and the next run repairs the half-done state', async () => {
    const abort = new AbortController();
    const running = runAction(inputs({ image: `${SANDBOX.image}:unhealthy`, 'health-timeout-seconds': '60' }), {
      signal: abort.signal
    });
    await waitUntil('the candidate to start', async () =>
      (await containers()).some((c) => c[2] === 'unhealthy' && c[1] === 'running')
    );
    // harness: abort sends SIGTERM; SIGKILL directly instead
    const pid = (await sh(`pgrep -f '${SANDBOX.node24} .*dist/index.js' | head -1`)).stdout.trim();
    expect(pid).not.toBe('');
    await sh(`kill -KILL ${pid}`);
    const killed = await running;
    abort.abort();
    expect(killed.signal).toBe('SIGKILL');
    // half-done: the standby was set aside and the candidate is still there
    expect((await containers()).map((c) => c[0])).toContain(`${app}-blue-replaced`);
    expect(await serving()).toBe('v3');
    const r = await deploy('v1', { 'lock-timeout-seconds': '5' });
    expect(outcome(r)).toBe('success');
    expect(r.stdout).toMatch(
      /an earlier run was interrupted \(e2e-faults-blue-replaced exists\): restoring the standby/
    );
    await expectSteady('v1', 'v3');
  });

  test('a lock held by a live deploy makes the next one wait, then fail naming the holder', async () => {
    const owner = JSON.stringify({ deployId: 'manual-holder', actor: 'someone', since: new Date().toISOString() });
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
        `exec 9>>.bluegreen/${app}/lock; flock 9; printf '%s\\n' '${owner}' > .bluegreen/${app}/lock.owner; echo held; cat >/dev/null`
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] }
    );
    await new Promise<void>((resolve) =>
      holder.stdout!.on('data', (d: Buffer) => d.toString().includes('held') && resolve())
    );
    try {
      const r = await deploy('v2', { 'lock-timeout-seconds': '2' });
      expect(r.outputs.result).toBe('failed');
      expect(errorLine(r)).toMatch(
        /^lock failed on 127\.0\.0\.1:2222: another deploy of e2e-faults still holds the lock on this host after 2 s \(deploy manual-holder by someone since /
      );
      await expectSteady('v1', 'v3');
    } finally {
      holder.kill('SIGKILL'); // the holder "crashes": its connection closes and the lock is released
    }
    await expectRerunSucceeds('v2');
    await expectSteady('v2', 'v1');
  });
});
