/**
 * The SSH transport against real sshd: which failures are retried (only connecting: refused, timeout,
 * network), which are not (auth, host key), and the bastion: one shared connection for every host.
 */
import { connect, ConnectError, ConnectionLostError, type RemoteHost } from '../../src/ssh/connection.js';
import { FaultProxy } from './fault-proxy.js';
import type { HostTarget, SshSettings } from '../../src/config/types.js';
import { SANDBOX, sh, waitFor } from './harness.js';
import { loadFleet, type Fleet } from './fleet-harness.js';

const sandboxTarget: HostTarget = { label: SANDBOX.host, host: SANDBOX.sshHost, port: SANDBOX.sshPort, user: SANDBOX.user };
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
  const { err, retries } = await failure({ ...sandboxTarget, port: 1, label: '127.0.0.1:1' }, settings({ connectRetries: 2 }));
  expect(err.kind).toBe('refused');
  expect(retries).toEqual([1000, 2000]);
  expect(err.message).toMatch(/connection to ec2-user@127\.0\.0\.1:1 was refused: is sshd running .* \(gave up after 3 attempts\)/);
}, 20_000);

test('a rejected key is not retried and names the user and what to check', async () => {
  const key = (await sh('d=$(mktemp -d) && ssh-keygen -q -t ed25519 -N "" -f "$d/k" && cat "$d/k" && rm -rf "$d"')).stdout;
  const { err, retries } = await failure(sandboxTarget, settings({ privateKey: key, connectRetries: 3 }));
  expect(err.kind).toBe('auth');
  expect(retries).toEqual([]);
  expect(err.message).toMatch(/refused the key for user "ec2-user"/);
});

test('a host key mismatch is not retried and prints the key the host presented', async () => {
  const wrong = SANDBOX.knownHosts.replace(/AAAA\S+/g, 'AAAAC3NzaC1lZDI1NTE5AAAAICqzdPktL85becTIoxZNZYiLdHd20uc320Cl7GjZmET+');
  const { err, retries } = await failure(sandboxTarget, settings({ hostKeys: { knownHosts: wrong, fingerprints: [], insecureIgnore: false } }));
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
      jump: { target: { label: 'jump-host', host: fleet.bastion.host, port: fleet.bastion.port, user: fleet.bastion.user }, privateKey: SANDBOX.privateKey, hostKeys: { knownHosts: fleet.bastion.knownHosts, fingerprints: [], insecureIgnore: false } },
      ...over
    });
  };
  const targets = () => fleet.hosts.slice(0, 3).map((h): HostTarget => ({ label: h.name, host: h.host, port: h.port, user: h.user }));
  const bastionConnections = async () => Number((await sh(`ss -Htn state established dst ${fleet.bastion.host}:${fleet.bastion.port} | wc -l`)).stdout.trim());

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
    const { err } = await failure({ label: 'x', host: fleet.hosts[0].host, port: 2, user: 'ec2-user' }, jumpSettings({ connectRetries: 0 }));
    expect(err.kind).toBe('refused');
    expect(err.message).toMatch(/jump-host 10\.203\.0\.2 reached 10\.204\.0\.11:2 but the connection was refused/);
  });

  test("a host's key is still checked end to end through the tunnel", async () => {
    const s = jumpSettings();
    const swapped = { ...s, hostKeys: { ...s.hostKeys, knownHosts: fleet.hosts[1].knownHosts.replace(fleet.hosts[1].host, fleet.hosts[0].host) } };
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
    hostKeys: { knownHosts: SANDBOX.knownHosts.replaceAll(`[127.0.0.1]:${SANDBOX.sshPort}`, `[127.0.0.1]:${proxy.port}`), fingerprints: [], insecureIgnore: false },
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
      expect((err as Error).message).toBe(`the SSH connection to ec2-user@127.0.0.1:${proxy.port} was lost (no answer to SSH keepalives for 20 s)`);
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
      expect((err as ConnectionLostError).message).toBe(`the SSH connection to ec2-user@127.0.0.1:${proxy.port} was lost (ECONNRESET)`);
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
      hostKeys: { knownHosts: fleet.hosts.map((h) => h.knownHosts).join('\n'), fingerprints: [], insecureIgnore: false },
      connectRetries: 0,
      jump: {
        target: { label: 'jump-host', host: '127.0.0.1', port: p.port, user: fleet.bastion.user },
        privateKey: SANDBOX.privateKey,
        hostKeys: { knownHosts: fleet.bastion.knownHosts.replace(/^\S+/gm, `[127.0.0.1]:${p.port}`), fingerprints: [], insecureIgnore: false }
      }
    });
  const hosts = () => fleet.hosts.slice(0, 2).map((h): HostTarget => ({ label: h.name, host: h.host, port: h.port, user: h.user }));

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
        expect(await Promise.all(again.map(async (r) => (await r.run('hostname')).stdout.trim()))).toEqual(['bgf-h1', 'bgf-h2']);
      } finally {
        for (const r of again) r.close();
      }
      await waitFor(async () => proxy.open === 0, { what: 'the bastion session to close with the last host' });
    }, 120_000);
  }
});
