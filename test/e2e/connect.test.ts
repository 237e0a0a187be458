/**
 * The SSH transport against real sshd: which failures are retried (only connecting: refused, timeout,
 * network), which are not (auth, host key), and the bastion: one shared connection for every host.
 */
import { connect, ConnectError, type RemoteHost } from '../../src/ssh/connection.js';
import type { HostTarget, SshSettings } from '../../src/config/types.js';
import { SANDBOX, sh } from './harness.js';
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
