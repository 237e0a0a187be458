/**
 * The SSH transport against real sshd: which failures are retried (only connecting: refused, timeout,
 * network), which are not (auth, host key), and the bastion: one shared connection for every host.
 */
import { connect, ConnectError, ConnectionLostError, type RemoteHost } from '../../src/transport/ssh/connection.js';
import { FaultProxy } from './fault-proxy.js';
import type { HostTarget, SshSettings } from '../../src/model/config.js';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { q, REPO_ROOT, SANDBOX, sh, waitFor } from './harness.js';
import { loadFleet, type Fleet } from './fleet-harness.js';

const sandboxTarget: HostTarget = {
  label: SANDBOX.host,
  host: SANDBOX.sshHost,
  port: SANDBOX.sshPort,
  user: SANDBOX.user
};
const settings = (over: Partial<SshSettings> = {}): SshSettings => ({
  privateKey: SANDBOX.privateKey,
  hostKeys: { knownHosts: SANDBOX.knownHosts, fingerprints: [], insecureIgnore: false },
  connectTimeoutMs: 5000,
  connectRetries: 2,
  ...over
});

async function failure(target: HostTarget, s: SshSettings): Promise<{ err: ConnectError; retries: number[] }> {
  const retries: number[] = [];
  try {
    const r = await connect(target, s, { onRetry: (_n, _e, waitMs) => retries.push(waitMs) });
    r.close();
  } catch (e) {
    return { err: e as ConnectError, retries };
  }
  throw new Error('connected although it should not');
}

test('a refused connection is retried with backoff, then reported with the attempts', async () => {
  const { err, retries } = await failure(
    { ...sandboxTarget, port: 1, label: '127.0.0.1:1' },
    settings({ connectRetries: 2 })
  );
  expect(err.kind).toBe('refused');
  expect(retries).toEqual([1000, 2000]);
  expect(err.message).toMatch(
    /connection to ec2-user@127\.0\.0\.1:1 was refused: is sshd running .* \(gave up after 3 attempts\)/
  );
}, 20_000);

test('a rejected key is not retried and names the user and what to check', async () => {
  const key = (await sh('d=$(mktemp -d) && ssh-keygen -q -t ed25519 -N "" -f "$d/k" && cat "$d/k" && rm -rf "$d"'))
    .stdout;
  const { err, retries } = await failure(sandboxTarget, settings({ privateKey: key, connectRetries: 3 }));
  expect(err.kind).toBe('auth');
  expect(retries).toEqual([]);
  expect(err.message).toMatch(/refused the key for user "ec2-user"/);
});

test('a host key mismatch is not retried and prints the key the host presented', async () => {
  const wrong = SANDBOX.knownHosts.replace(
    /AAAA\S+/g,
    'AAAAC3NzaC1lZDI1NTE5AAAAICqzdPktL85becTIoxZNZYiLdHd20uc320Cl7GjZmET+'
  );
  const { err, retries } = await failure(
    sandboxTarget,
    settings({ hostKeys: { knownHosts: wrong, fingerprints: [], insecureIgnore: false } })
  );
  expect(err.kind).toBe('host-key');
  expect(retries).toEqual([]);
  expect(err.message).toMatch(/SHA256:/);
});

describe('through the bastion', () => {
  let fleet: Fleet;
  beforeAll(async () => {
    fleet = await loadFleet({ hosts: 3 });
  }, 300_000);

  const jumpSettings = (over: Partial<SshSettings> = {}): SshSettings => {
    const knownHosts = fleet.hosts.map((h) => h.knownHosts).join('\n');
    return settings({
      hostKeys: { knownHosts, fingerprints: [], insecureIgnore: false },
      jump: {
        target: { label: 'jump-host', host: fleet.bastion.host, port: fleet.bastion.port, user: fleet.bastion.user },
        privateKey: SANDBOX.privateKey,
        hostKeys: { knownHosts: fleet.bastion.knownHosts, fingerprints: [], insecureIgnore: false }
      },
      ...over
    });
  };
  const targets = () =>
    fleet.hosts.slice(0, 3).map((h): HostTarget => ({ label: h.name, host: h.host, port: h.port, user: h.user }));
  const bastionConnections = async () =>
    Number(
      (await sh(`ss -Htn state established dst ${fleet.bastion.host}:${fleet.bastion.port} | wc -l`)).stdout.trim()
    );

  test('every host through one shared connection to the bastion, closed with the last host', async () => {
    const before = await bastionConnections();
    const s = jumpSettings();
    const remotes: RemoteHost[] = await Promise.all(targets().map((t) => connect(t, s)));
    try {
      const names = await Promise.all(remotes.map(async (r) => (await r.run('hostname')).stdout.trim()));
      expect(names).toEqual(['bgf-h1', 'bgf-h2', 'bgf-h3']);
      expect((await bastionConnections()) - before).toBe(1);
    } finally {
      for (const r of remotes) r.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(await bastionConnections()).toBe(before);
  });

  test('a host the bastion cannot reach: a clear message naming the bastion and the host', async () => {
    const { err } = await failure(
      { label: 'x', host: fleet.hosts[0].host, port: 2, user: 'ec2-user' },
      jumpSettings({ connectRetries: 0 })
    );
    expect(err.kind).toBe('refused');
    expect(err.message).toMatch(/jump-host 10\.203\.0\.2 reached 10\.204\.0\.11:2 but the connection was refused/);
  });

  test("a host's key is still checked end to end through the tunnel", async () => {
    const s = jumpSettings();
    const swapped = {
      ...s,
      hostKeys: {
        ...s.hostKeys,
        knownHosts: fleet.hosts[1].knownHosts.replace(fleet.hosts[1].host, fleet.hosts[0].host)
      }
    };
    const { err } = await failure(targets()[0], swapped);
    expect(err.kind).toBe('host-key');
  });
});

/*
 * Real network faults between the runner and sshd, through a FaultProxy: a reset (RST both ways) or a silence
 * (blackhole) in the middle of a command must settle everything at once with ConnectionLostError, never crash
 * node (ssh2 emits 'error' on a connected client) and never hang; the last close must let node exit by itself.
 */
const viaProxy = (proxy: FaultProxy) => ({
  target: { label: 'sandbox-via-proxy', host: '127.0.0.1', port: proxy.port, user: SANDBOX.user } satisfies HostTarget,
  settings: settings({
    hostKeys: {
      knownHosts: SANDBOX.knownHosts.replaceAll(`[127.0.0.1]:${SANDBOX.sshPort}`, `[127.0.0.1]:${proxy.port}`),
      fingerprints: [],
      insecureIgnore: false
    },
    connectRetries: 0
  })
});

/** A command that says "started" and then runs for 60 s; `done` settles with its result or error. */
function longCommand(r: RemoteHost): { started: Promise<unknown>; done: Promise<{ ok?: unknown; err?: unknown }> } {
  let onStarted!: () => void;
  const started = new Promise<void>((res) => (onStarted = res));
  const done = r.run('echo started; exec sleep 60', [], { onLine: (l) => l === 'started' && onStarted() }).then(
    (ok) => ({ ok }),
    (err: unknown) => ({ err })
  );
  return { started: Promise.race([started, done]), done };
}

describe('a connection lost mid-command', () => {
  let proxy: FaultProxy;
  afterEach(async () => {
    await proxy?.close();
  });

  test('a silent connection (blackhole) is detected by keepalive: run() rejects with ConnectionLostError, channels close', async () => {
    proxy = await FaultProxy.start(SANDBOX.sshHost, SANDBOX.sshPort);
    const { target, settings: s } = viaProxy(proxy);
    const r = await connect(target, s);
    try {
      const lock = await r.open('cat'); // long-lived and never read, like a lock whose output was consumed
      const lockClosed = new Promise<boolean>((res) => lock.on('close', () => res(true)));
      const cmd = longCommand(r);
      await cmd.started;
      proxy.blackhole();
      const { ok, err } = await cmd.done;
      expect(ok).toBeUndefined();
      expect(err).toBeInstanceOf(ConnectionLostError);
      expect((err as Error).message).toBe(
        `the SSH connection to ec2-user@127.0.0.1:${proxy.port} was lost (no answer to SSH keepalives for 20 s)`
      );
      expect(r.isConnected()).toBe(false);
      expect(await lockClosed).toBe(true);
      await expect(r.run('true')).rejects.toBeInstanceOf(ConnectionLostError);
      await expect(r.forward(22)).rejects.toBeInstanceOf(ConnectionLostError);
    } finally {
      r.close();
    }
    proxy.heal();
    const again = await connect(target, s);
    try {
      expect((await again.run('echo ok')).stdout).toBe('ok\n');
    } finally {
      again.close();
    }
  }, 90_000);

  test('a reset: run() rejects at once, forwarded streams close, a new connect() works', async () => {
    proxy = await FaultProxy.start(SANDBOX.sshHost, SANDBOX.sshPort);
    const { target, settings: s } = viaProxy(proxy);
    const r = await connect(target, s);
    try {
      const stream = await r.forward(SANDBOX.sshPort); // sshd's banner over a forwarded channel
      const streamClosed = new Promise<boolean>((res) => stream.on('close', () => res(true)));
      const cmd = longCommand(r);
      await cmd.started;
      proxy.reset();
      const { err } = await cmd.done;
      expect(err).toBeInstanceOf(ConnectionLostError);
      expect((err as ConnectionLostError).message).toBe(
        `the SSH connection to ec2-user@127.0.0.1:${proxy.port} was lost (ECONNRESET)`
      );
      expect(r.isConnected()).toBe(false);
      expect(await streamClosed).toBe(true);
      await expect(r.open('true')).rejects.toBeInstanceOf(ConnectionLostError);
    } finally {
      r.close();
    }
    const again = await connect(target, s);
    try {
      expect((await again.run('echo ok')).stdout).toBe('ok\n');
    } finally {
      again.close();
    }
  }, 60_000);
});

describe('through the bastion, when the bastion connection is lost', () => {
  let fleet: Fleet;
  let proxy: FaultProxy;
  beforeAll(async () => {
    fleet = await loadFleet({ hosts: 2 });
  }, 300_000);
  afterEach(async () => {
    await proxy?.close();
  });

  /** The fleet's settings with the jump host reached through `proxy` (in front of the bastion's sshd). */
  const viaBastionProxy = (p: FaultProxy): SshSettings =>
    settings({
      hostKeys: {
        knownHosts: fleet.hosts.map((h) => h.knownHosts).join('\n'),
        fingerprints: [],
        insecureIgnore: false
      },
      connectRetries: 0,
      jump: {
        target: { label: 'jump-host', host: '127.0.0.1', port: p.port, user: fleet.bastion.user },
        privateKey: SANDBOX.privateKey,
        hostKeys: {
          knownHosts: fleet.bastion.knownHosts.replace(/^\S+/gm, `[127.0.0.1]:${p.port}`),
          fingerprints: [],
          insecureIgnore: false
        }
      }
    });
  const hosts = () =>
    fleet.hosts.slice(0, 2).map((h): HostTarget => ({ label: h.name, host: h.host, port: h.port, user: h.user }));

  for (const fault of ['reset', 'blackhole'] as const) {
    test(`${fault} of the bastion connection: every host's run() rejects with ConnectionLostError naming the bastion; one new bastion session serves the reconnects`, async () => {
      proxy = await FaultProxy.start(fleet.bastion.host, fleet.bastion.port);
      const s = viaBastionProxy(proxy);
      const remotes = await Promise.all(hosts().map((t) => connect(t, s)));
      try {
        expect(proxy.accepted).toBe(1);
        const cmds = remotes.map(longCommand);
        await Promise.all(cmds.map((c) => c.started));
        if (fault === 'reset') proxy.reset();
        else proxy.blackhole();
        const outcomes = await Promise.all(cmds.map((c) => c.done));
        for (const [i, { err }] of outcomes.entries()) {
          expect(err).toBeInstanceOf(ConnectionLostError);
          // A silent bastion: the host's own keepalive (through the tunnel) may notice first.
          const reason = fault === 'reset' ? 'ECONNRESET' : 'no answer to SSH keepalives for 20 s';
          const where = `ec2-user@${fleet.hosts[i].host}:22`;
          expect([
            `the SSH connection to ${where} was lost (the connection to jump-host ec2-user@127.0.0.1:${proxy.port} was lost: ${reason})`,
            `the SSH connection to ${where} was lost (${reason})`
          ]).toContain((err as Error).message);
          expect(remotes[i].isConnected()).toBe(false);
        }
      } finally {
        for (const r of remotes) r.close();
      }
      if (fault === 'blackhole') proxy.heal();
      // Both hosts re-open the bastion session at the same time: they share one new session.
      const again = await Promise.all(hosts().map((t) => connect(t, s)));
      try {
        expect(proxy.accepted).toBe(2);
        expect(await Promise.all(again.map(async (r) => (await r.run('hostname')).stdout.trim()))).toEqual([
          'bgf-h1',
          'bgf-h2'
        ]);
      } finally {
        for (const r of again) r.close();
      }
      await waitFor(async () => proxy.open === 0, { what: 'the bastion session to close with the last host' });
    }, 120_000);
  }
});

/*
 * The last close leaves nothing of ours behind (socket, keepalive timer, bastion session), so node exits by
 * itself: a child node process runs connect → fault → reconnect → close through the real code and must end on
 * its own with exit code 0 (an uncaught 'error' event would end it with 1 and a stack trace).
 */
describe('node exits by itself after the last close', () => {
  let dir: string;
  let fleet: Fleet;
  beforeAll(async () => {
    fleet = await loadFleet({ hosts: 2 });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-tr-child-'));
    fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    fs.writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}\n');
    const tsc = await sh(
      `cd ${q(REPO_ROOT)} && node_modules/.bin/tsc --outDir ${q(dir)} --rootDir . --strict --module nodenext --moduleResolution nodenext ` +
        '--target es2022 --esModuleInterop --skipLibCheck --types node src/types/ssh2-parts.d.ts src/transport/ssh/connection.ts test/e2e/fault-proxy.ts'
    );
    if (tsc.code !== 0) throw new Error(`tsc failed: ${tsc.stdout}${tsc.stderr}`);
    fs.writeFileSync(path.join(dir, 'child.mjs'), CHILD);
  }, 300_000);
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the child; resolves with its exit code, its output and what it reported, or fails if it does not exit. */
  function runChild(
    scenario: string,
    timeoutMs: number
  ): Promise<{ code: number | null; stderr: string; report: Record<string, unknown> }> {
    const cfg = {
      scenario,
      sshHost: SANDBOX.sshHost,
      sshPort: SANDBOX.sshPort,
      user: SANDBOX.user,
      privateKey: SANDBOX.privateKey,
      knownHosts: SANDBOX.knownHosts,
      fleet
    };
    return new Promise((resolve, reject) => {
      const child = spawn(SANDBOX.node24, [path.join(dir, 'child.mjs')], {
        env: { ...process.env, NODE_OPTIONS: '', CHILD_CFG: JSON.stringify(cfg) },
        stdio: ['ignore', 'pipe', 'pipe']
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(
          new Error(
            `the child did not exit by itself within ${timeoutMs / 1000} s (something of ours is still open)\nstdout: ${stdout}\nstderr: ${stderr}`
          )
        );
      }, timeoutMs);
      child.on('exit', (code) => {
        clearTimeout(timer);
        const last = stdout.trim().split('\n').pop() ?? '';
        let report: Record<string, unknown> = {};
        try {
          report = JSON.parse(last) as Record<string, unknown>;
        } catch {
          /* reported below through stderr */
        }
        resolve({ code, stderr, report });
      });
    });
  }

  test('direct: reset during a command → ConnectionLostError, no crash; reconnect; close; the process exits', async () => {
    const { code, stderr, report } = await runChild('direct', 90_000);
    expect(stderr).not.toMatch(/Unhandled|uncaught/i);
    expect(code).toBe(0);
    expect(report).toEqual({
      run: {
        name: 'ConnectionLostError',
        message: expect.stringMatching(/^the SSH connection to ec2-user@127\.0\.0\.1:\d+ was lost \(ECONNRESET\)$/)
      },
      connectedAfter: false,
      channelClosed: true,
      later: 'ConnectionLostError',
      again: 'ok',
      uncaught: []
    });
  }, 120_000);

  test('bastion: reset, concurrent reconnects share one session, a release while connecting and a failed session leave nothing open', async () => {
    const { code, stderr, report } = await runChild('bastion', 150_000);
    expect(stderr).not.toMatch(/Unhandled|uncaught/i);
    expect(code).toBe(0);
    expect(report).toEqual({
      sessions: 1,
      runs: ['ConnectionLostError', 'ConnectionLostError'],
      connectedAfter: [false, false],
      sessionsAfterReconnect: 2,
      names: ['bgf-h1', 'bgf-h2'],
      cancelled: 'cancelled',
      openAfterCancel: 0,
      failed: 'timeout',
      afterFailure: 'bgf-h1',
      uncaught: []
    });
  }, 180_000);
});

/** The child's script (plain ESM over the compiled sources); prints one JSON line, never calls process.exit. */
const CHILD = String.raw`
import { connect, ConnectionLostError } from './src/transport/ssh/connection.js';
import { FaultProxy } from './test/e2e/fault-proxy.js';

const cfg = JSON.parse(process.env.CHILD_CFG);
const out = { uncaught: [] };
process.on('uncaughtException', (e) => {
  out.uncaught.push(String(e && e.stack));
  process.exitCode = 1;
});
const until = async (what, fn) => {
  for (let i = 0; i < 1200; i++) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('timed out waiting for ' + what);
};
function long(r) {
  let onStarted;
  const started = new Promise((res) => (onStarted = res));
  const done = r.run('echo started; exec sleep 60', [], { onLine: (l) => l === 'started' && onStarted() }).then((ok) => ({ ok }), (err) => ({ err }));
  return { started: Promise.race([started, done]), done };
}
const base = (knownHosts) => ({ privateKey: cfg.privateKey, hostKeys: { knownHosts, fingerprints: [], insecureIgnore: false }, connectTimeoutMs: 5000, connectRetries: 0 });

async function direct() {
  const proxy = await FaultProxy.start(cfg.sshHost, cfg.sshPort);
  const target = { label: 'sandbox', host: '127.0.0.1', port: proxy.port, user: cfg.user };
  const s = base(cfg.knownHosts.replaceAll('[127.0.0.1]:' + cfg.sshPort, '[127.0.0.1]:' + proxy.port));
  const r = await connect(target, s);
  const ch = await r.open('cat'); // never read, like a lock channel
  const chClosed = new Promise((res) => ch.on('close', () => res(true)));
  const cmd = long(r);
  await cmd.started;
  proxy.reset();
  const { err } = await cmd.done;
  out.run = err ? { name: err.name, message: err.message } : 'resolved';
  out.connectedAfter = r.isConnected();
  out.channelClosed = await chClosed;
  out.later = await r.run('true').then(() => 'resolved', (e) => e.name);
  const r2 = await connect(target, s);
  out.again = (await r2.run('echo ok')).stdout.trim();
  r.close();
  r2.close();
  await until('every proxied connection to close', () => proxy.open === 0);
  await proxy.close();
}

async function bastion() {
  const f = cfg.fleet;
  const proxy = await FaultProxy.start(f.bastion.host, f.bastion.port);
  const s = {
    ...base(f.hosts.map((h) => h.knownHosts).join('\n')),
    jump: {
      target: { label: 'jump-host', host: '127.0.0.1', port: proxy.port, user: f.bastion.user },
      privateKey: cfg.privateKey,
      hostKeys: { knownHosts: f.bastion.knownHosts.replace(/^\S+/gm, '[127.0.0.1]:' + proxy.port), fingerprints: [], insecureIgnore: false }
    }
  };
  const hosts = f.hosts.slice(0, 2).map((h) => ({ label: h.name, host: h.host, port: h.port, user: h.user }));
  const first = await Promise.all(hosts.map((t) => connect(t, s)));
  out.sessions = proxy.accepted;
  const cmds = first.map(long);
  await Promise.all(cmds.map((c) => c.started));
  proxy.reset();
  const done = await Promise.all(cmds.map((c) => c.done));
  out.runs = done.map(({ err }) => (err instanceof ConnectionLostError ? err.name : String(err)));
  out.connectedAfter = first.map((r) => r.isConnected());
  // Both hosts re-open the bastion session at once.
  const again = await Promise.all(hosts.map((t) => connect(t, s)));
  out.sessionsAfterReconnect = proxy.accepted;
  out.names = await Promise.all(again.map(async (r) => (await r.run('hostname')).stdout.trim()));
  for (const r of [...first, ...again]) r.close();
  await until('the bastion session to close with the last host', () => proxy.open === 0);

  // Released while the bastion session is still connecting (a slow link, the run cancelled).
  proxy.delayMs = 300;
  const ac = new AbortController();
  const accepted = proxy.accepted;
  const pending = connect(hosts[0], s, { signal: ac.signal }).then((r) => (r.close(), 'connected'), (e) => e.kind);
  await until('the bastion connection to be accepted', () => proxy.accepted > accepted);
  ac.abort();
  out.cancelled = await pending;
  await until('the abandoned bastion session to close', () => proxy.open === 0);
  out.openAfterCancel = proxy.open;
  proxy.delayMs = 0;

  // A bastion session that failed (no handshake) is replaced by the next connect.
  proxy.blackhole();
  out.failed = await connect(hosts[0], { ...s, connectTimeoutMs: 1500 }).then((r) => (r.close(), 'connected'), (e) => e.kind);
  proxy.heal();
  const last = await connect(hosts[0], s);
  out.afterFailure = (await last.run('hostname')).stdout.trim();
  last.close();
  await until('the bastion session to close with the last host', () => proxy.open === 0);
  await proxy.close();
}

await (cfg.scenario === 'direct' ? direct() : bastion());
console.log(JSON.stringify(out));
// Diagnostics only if something of ours keeps the process alive (unref'd: never keeps it alive itself).
setTimeout(() => console.error('still alive, active resources:', process.getActiveResourcesInfo().join(', ')), 5000).unref();
`;
