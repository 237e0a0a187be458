/**
 * The SSH layer against an in-process ssh2 server that misbehaves on purpose (no real sshd needed): exit status in
 * the same read as the exec reply, a channel closed without exit status, a dropped connection, and cancellation
 * of connect() during the handshake and during the backoff wait.
 */
import { afterEach, describe, expect, jest, test } from '@jest/globals';
import net from 'node:net';
import ssh2, { type ServerChannel } from 'ssh2';
import {
  connect,
  ConnectError,
  ConnectionLostError,
  type SshRemoteHost as RemoteHost
} from '../../../../src/transport/ssh/connection.js';
import { preconnect } from '../../../../src/transport/ssh/preconnect.js';
import { preconnectTarget } from '../../../../src/config/inputs/preconnect-target.js';
import type { HostTarget, SshSettings } from '../../../../src/model/config.js';

const clientKey = ssh2.utils.generateKeyPairSync('ed25519');
const hostKey = ssh2.utils.generateKeyPairSync('ed25519');

type ExecHandler = (stream: ServerChannel, command: string, conn: ssh2.Connection) => void;

const servers: { close(): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
  jest.useRealTimers();
});

/** An ssh2 server on 127.0.0.1 that accepts any public key and answers every exec with onExec. */
async function server(onExec: ExecHandler): Promise<{ target: HostTarget; connections: ssh2.Connection[] }> {
  const connections: ssh2.Connection[] = [];
  const srv = new ssh2.Server({ hostKeys: [hostKey.private] }, (conn) => {
    connections.push(conn);
    conn.on('error', () => undefined);
    conn.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
    conn.on('session', (accept) => {
      accept().on('exec', (acceptExec, _reject, info) => onExec(acceptExec(), info.command, conn));
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', () => resolve()));
  servers.push({ close: () => (srv.close(), connections.forEach((c) => c.end())) });
  const port = (srv.address() as net.AddressInfo).port;
  return { target: { label: `127.0.0.1:${port}`, host: '127.0.0.1', port, user: 'ec2-user' }, connections };
}

const settings = (over: Partial<SshSettings> = {}): SshSettings => ({
  privateKey: clientKey.private,
  hostKeys: { knownHosts: '', fingerprints: [], insecureIgnore: true },
  connectTimeoutMs: 5000,
  connectRetries: 0,
  ...over
});

async function withHost<T>(
  onExec: ExecHandler,
  fn: (r: RemoteHost, connections: ssh2.Connection[]) => Promise<T>
): Promise<T> {
  const { target, connections } = await server(onExec);
  const r = await connect(target, settings());
  try {
    return await fn(r, connections);
  } finally {
    r.close();
  }
}

describe('run()', () => {
  test('a command whose output, exit status and close all arrive with the exec reply resolves with its exit code', async () => {
    // Everything written in one tick reaches the client in one read: ssh2 emits 'exit' right after the exec callback.
    const res = await withHost(
      (stream) => {
        stream.write('out\n');
        stream.stderr.write('err\n');
        stream.exit(3);
        stream.end();
      },
      (r) => r.run('anything')
    );
    expect(res).toEqual({ code: 3, signal: null, stdout: 'out\n', stderr: 'err\n' });
  });

  test('a command killed by a signal resolves with the signal', async () => {
    const res = await withHost(
      (stream) => {
        stream.exit('KILL', false, '');
        stream.end();
      },
      (r) => r.run('anything')
    );
    expect(res).toMatchObject({ code: null, signal: 'SIGKILL' });
  });

  test('a channel closed without an exit status rejects with ConnectionLostError, never a fake exit code', async () => {
    await withHost(
      (stream) => {
        stream.write('partial');
        stream.close();
      },
      async (r) => {
        const err = await r.run('anything').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConnectionLostError);
        expect((err as Error).message).toMatch(
          /^the SSH connection to ec2-user@127\.0\.0\.1:\d+ was lost \(the remote command ended without an exit status\)$/
        );
        expect(r.isConnected()).toBe(false);
        await expect(r.run('again')).rejects.toBeInstanceOf(ConnectionLostError);
      }
    );
  });

  test('the server dropping the connection: the run rejects, channels from open() close, later calls fail fast', async () => {
    await withHost(
      (stream, command) => {
        if (command.includes('drop-me')) return; // never answers: the connection is dropped under it
        stream.write('ready\n');
      },
      async (r, connections) => {
        const ch = await r.open('long-lived');
        const chClosed = new Promise<boolean>((res) => ch.on('close', () => res(true)));
        const run = r.run('drop-me').catch((e: unknown) => e);
        await new Promise((res) => setImmediate(res));
        // The server's socket goes away without a word (like sshd killed).
        (connections[0] as unknown as { _sock: net.Socket })._sock.destroy();
        const err = await run;
        expect(err).toBeInstanceOf(ConnectionLostError);
        expect(r.isConnected()).toBe(false);
        expect(await chClosed).toBe(true);
        await expect(r.open('x')).rejects.toBeInstanceOf(ConnectionLostError);
        await expect(r.forward(80)).rejects.toBeInstanceOf(ConnectionLostError);
      }
    );
  });

  test('open(): a command that ends with the exec reply still reports its exit status, then closes', async () => {
    const events = await withHost(
      (stream) => {
        stream.stderr.write('no lock for you\n');
        stream.exit(75);
        stream.end();
      },
      async (r) => {
        const ch = await r.open('lock');
        const seen: string[] = [];
        await new Promise<void>((resolve) => {
          ch.on('data', () => undefined);
          ch.stderr.on('data', (d: Buffer) => seen.push(`stderr ${d.toString().trim()}`));
          ch.on('exit', (code: number) => seen.push(`exit ${code}`));
          ch.on('close', () => resolve());
        });
        return seen;
      }
    );
    expect(events).toEqual(['stderr no lock for you', 'exit 75']);
  });

  test('close() settles a run in flight instead of leaving it pending', async () => {
    await withHost(
      () => undefined,
      async (r) => {
        const run = r.run('forever').catch((e: unknown) => e);
        await new Promise((res) => setImmediate(res));
        r.close();
        expect(await run).toBeInstanceOf(ConnectionLostError);
        expect(r.isConnected()).toBe(false);
      }
    );
  });
});

describe('connect() and cancellation', () => {
  test('an abort during the handshake (a listener that never speaks) rejects at once and drops the socket', async () => {
    const peers: net.Socket[] = [];
    const ac = new AbortController();
    const closed: Promise<void>[] = [];
    const mute = net.createServer((s) => {
      peers.push(s);
      s.resume(); // reads (and ignores) the client's greeting, so its FIN is seen
      closed.push(new Promise((res) => s.on('close', () => res())));
      setTimeout(() => ac.abort(), 200);
    });
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', () => resolve()));
    servers.push({ close: () => (mute.close(), peers.forEach((p) => p.destroy())) });
    const port = (mute.address() as net.AddressInfo).port;
    // Without the abort, this attempt alone would wait 10 minutes for a handshake, then retry: the test would time out.
    const err = await connect(
      { label: 'mute', host: '127.0.0.1', port, user: 'ec2-user' },
      settings({ connectTimeoutMs: 600_000, connectRetries: 3 }),
      { signal: ac.signal }
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect(err).toMatchObject({
      kind: 'cancelled',
      message: `cancelled while connecting to ec2-user@127.0.0.1:${port}`
    });
    expect(peers).toHaveLength(1);
    await closed[0];
  }, 30_000);

  test('an early socket (preconnect) that sshd closed before the connect step: a fresh one at once, not counted as a retry', async () => {
    const { target: sshd } = await server((ch) => {
      ch.exit(0);
      ch.end();
    });
    // In front of the SSH server: the first connection gets a banner and is closed (sshd's LoginGraceTime), the
    // next ones reach the server.
    let accepted = 0;
    const closedFirst: Promise<void>[] = [];
    const front = net.createServer((s) => {
      if (accepted++ === 0) {
        // its FIN is sent ('finish'); the client, which reads nothing yet, cannot tell
        closedFirst.push(new Promise((res) => s.on('finish', () => res())));
        s.end('SSH-2.0-OpenSSH_9.2\r\n');
        return;
      }
      const up = net.connect(sshd.port, '127.0.0.1');
      s.pipe(up).pipe(s);
      s.on('error', () => up.destroy());
      up.on('error', () => s.destroy());
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', () => resolve()));
    servers.push({ close: () => front.close() });
    const port = (front.address() as net.AddressInfo).port;
    await preconnect(preconnectTarget({ INPUT_HOSTS: `127.0.0.1:${port}` }));
    while (!closedFirst.length) await new Promise((res) => setTimeout(res, 5));
    await closedFirst[0];
    const r = await connect(
      { label: 'front', host: '127.0.0.1', port, user: 'ec2-user' },
      settings({ connectRetries: 0 })
    );
    try {
      expect(await r.run('true')).toMatchObject({ code: 0 });
      expect(accepted).toBe(2);
    } finally {
      r.close();
    }
  }, 30_000);

  test('an abort during the backoff wait ends connect() at once, with the reason', async () => {
    // Fake timers: the backoff wait never ends by itself, so only the abort can settle connect().
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    const refused = net.createServer();
    await new Promise<void>((resolve) => refused.listen(0, '127.0.0.1', () => resolve()));
    const port = (refused.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => refused.close(() => resolve()));
    const ac = new AbortController();
    const retries: number[] = [];
    const err = await connect(
      { label: 'x', host: '127.0.0.1', port, user: 'ec2-user' },
      settings({ connectRetries: 5 }),
      {
        signal: ac.signal,
        onRetry: (n, _e, waitMs) => {
          retries.push(waitMs);
          setImmediate(() => ac.abort('another host failed'));
        }
      }
    ).catch((e: unknown) => e);
    expect(retries).toEqual([1000]);
    expect(err).toMatchObject({
      kind: 'cancelled',
      message: `cancelled while connecting to ec2-user@127.0.0.1:${port}: another host failed`
    });
  }, 30_000);

  test('an already aborted signal makes no attempt', async () => {
    const { target, connections } = await server(() => undefined);
    const ac = new AbortController();
    ac.abort();
    await expect(connect(target, settings(), { signal: ac.signal })).rejects.toMatchObject({ kind: 'cancelled' });
    expect(connections).toHaveLength(0);
  });
});
