/**
 * One SSH connection per host for the whole run (ssh2): remote commands, long-lived channels (the lock)
 * and TCP forwarding (health probes) all share it.
 *
 * A connection can be lost at any time (TCP reset, a peer that goes silent, the bastion dropping). Every
 * connection therefore keeps its own 'error'/'end'/'close' handlers for its whole life (ssh2 emits 'error' on
 * a connected client; with no listener node crashes with "Unhandled 'error' event"), and a lost connection
 * settles everything in flight at once: run() rejects with ConnectionLostError, channels emit 'close', later
 * calls fail fast.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Client, ClientChannel, ConnectConfig } from 'ssh2';
// the client's own file: ssh2's index loads much that is never used (src/types/ssh2-parts.d.ts)
import SshClient from 'ssh2/lib/client.js';
import type { HostKeyPolicy, HostTarget, JumpHost, SshSettings } from '../../model/config.js';
import { parseKnownHosts, preferredHostKeyAlgorithms, verifyHostKey } from './known-hosts.js';
import { shInvocation } from '../../remote/shell.js';
import { hasEarlySocket, takeEarlySocket } from './preconnect.js';

export type { ConnectOptions, ExecOptions, ExecResult, RemoteHost } from '../remote-host.js';
import type { ConnectOptions, ExecOptions, ExecResult, RemoteHost, RemoteStream } from '../remote-host.js';

/** An SSH connection has every capability of the transport interface. */
export interface SshRemoteHost extends RemoteHost {
  open(body: string, args?: string[]): Promise<ClientChannel>;
  forward(port: number): Promise<RemoteStream>;
  forwardUnix(socketPath: string): Promise<RemoteStream>;
}

export class ConnectError extends Error {
  constructor(
    message: string,
    readonly kind: 'host-key' | 'auth' | 'refused' | 'timeout' | 'dns' | 'network' | 'cancelled'
  ) {
    super(message);
    this.name = 'ConnectError';
  }
}

/** A connected host's SSH connection is gone: every call in flight or later rejects with this. */
export class ConnectionLostError extends Error {
  constructor(
    /** "ec2-user@10.0.1.5:22" */
    readonly where: string,
    /** What happened: "ECONNRESET", "no answer to SSH keepalives for 20 s", … */
    readonly reason: string,
    options?: { cause?: unknown }
  ) {
    super(`the SSH connection to ${where} was lost (${reason})`, options);
    this.name = 'ConnectionLostError';
  }
}

/**
 * Keepalive: a peer that goes silent (a partition, a VM switched off: nothing is ever closed, TCP retransmits for
 * many minutes) is declared lost after KEEPALIVE_INTERVAL_MS × (KEEPALIVE_COUNT_MAX + 1) = 20 s without an answer.
 * ssh2 pings every interval whatever the traffic, so busy connections are checked too.
 */
export const KEEPALIVE_INTERVAL_MS = 5000;
export const KEEPALIVE_COUNT_MAX = 3;
const SILENT_AFTER_S = (KEEPALIVE_INTERVAL_MS * (KEEPALIVE_COUNT_MAX + 1)) / 1000;
/** How long close() waits for the server to answer the disconnect before dropping the socket. */
const CLOSE_GRACE_MS = 1000;

const whereOf = (t: HostTarget) => `${t.user}@${t.host}:${t.port}`;

type SshError = Error & { code?: string; level?: string };

function classify(err: SshError, target: HostTarget, timeoutMs: number): ConnectError {
  const where = whereOf(target);
  if (err instanceof ConnectError) return err;
  if (err.code === 'ECONNREFUSED')
    return new ConnectError(
      `connection to ${where} was refused: is sshd running and the port (${target.port}) right, and does the security group allow it?`,
      'refused'
    );
  if (err.code === 'ENETUNREACH' || err.code === 'EHOSTUNREACH')
    return new ConnectError(
      `${where} is unreachable from the runner (${err.code}): check the address, the VPC routing, or use a bastion`,
      'network'
    );
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN')
    return new ConnectError(`host name ${target.host} could not be resolved (${err.code})`, 'dns');
  if (err.code === 'ETIMEDOUT' || /Timed out while waiting for handshake/i.test(err.message)) {
    return new ConnectError(
      `no SSH handshake with ${where} within ${timeoutMs / 1000} s: the host is down or a firewall/security group drops the traffic`,
      'timeout'
    );
  }
  if (err.level === 'client-authentication' || /authentication methods failed/i.test(err.message)) {
    return new ConnectError(
      `${where} refused the key for user "${target.user}": check ssh-user and that the public key of ssh-private-key is in ~${target.user}/.ssh/authorized_keys`,
      'auth'
    );
  }
  // Thrown by ssh2 before any byte is sent: retrying cannot help.
  if (/Cannot parse privateKey/i.test(err.message))
    return new ConnectError(
      `the private key for ${where} cannot be used: ${err.message} (check the key text and its passphrase)`,
      'auth'
    );
  return new ConnectError(`SSH connection to ${where} failed: ${err.message}`, 'network');
}

/** Why a connected connection ended, in a few words for ConnectionLostError. */
function reasonOf(err?: SshError | string): string {
  if (typeof err === 'string') return err;
  if (!err) return 'closed by the remote side';
  if (err.level === 'client-timeout' && /keepalive/i.test(err.message))
    return `no answer to SSH keepalives for ${SILENT_AFTER_S} s`;
  return err.code ?? err.message;
}

function cancelledError(target: HostTarget, signal?: AbortSignal): ConnectError {
  const reason = typeof signal?.reason === 'string' ? `: ${signal.reason}` : '';
  return new ConnectError(`cancelled while connecting to ${whereOf(target)}${reason}`, 'cancelled');
}

const RETRYABLE: ReadonlySet<ConnectError['kind']> = new Set(['refused', 'timeout', 'network', 'dns']);

/**
 * Opens the host's SSH connection (through the jump host when one is set). Only connecting is retried,
 * with backoff: a host that is still booting or a flaky network recovers; a wrong key or host key does not.
 */
export async function connect(
  target: HostTarget,
  settings: SshSettings,
  opts: ConnectOptions = {}
): Promise<SshRemoteHost> {
  const { signal } = opts;
  // The entry point's early socket (preconnect.ts) may be one sshd has closed meanwhile: its failure is no attempt.
  let early = !settings.jump && hasEarlySocket(target.host, target.port);
  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw cancelledError(target, signal);
    try {
      return await connectOnce(target, settings, signal);
    } catch (e) {
      // Whatever the attempt died of (its socket was destroyed by the abort), the cause is the cancellation.
      if (signal?.aborted) throw cancelledError(target, signal);
      const err = e instanceof ConnectError ? e : new ConnectError((e as Error).message, 'network');
      // closed before the handshake (not a timeout: a silent host is not waited for twice; not an error that repeats)
      if (early && err.kind === 'network' && /closed the connection before|ECONNRESET|EPIPE/.test(err.message)) {
        early = false;
        attempt--;
        continue;
      }
      early = false;
      if (!RETRYABLE.has(err.kind) || attempt >= settings.connectRetries) {
        if (attempt > 0) err.message += ` (gave up after ${attempt + 1} attempts)`;
        throw err;
      }
      const waitMs = 1000 * 2 ** attempt;
      opts.onRetry?.(attempt + 1, err, waitMs);
      await sleep(waitMs, signal);
    }
  }
}

/** Resolves after ms, or at once when the signal aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

async function connectOnce(target: HostTarget, settings: SshSettings, signal?: AbortSignal): Promise<SshRemoteHost> {
  const timeoutMs = settings.connectTimeoutMs;
  const link = new Link(target);
  if (!settings.jump) {
    await link.connect((stop) => openSocket(target, timeoutMs, stop), settings, timeoutMs, signal);
    return new SshHost(link);
  }
  const bastion = bastionFor(settings.jump, timeoutMs);
  bastion.acquire();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    bastion.release();
  };
  try {
    let via: Link | undefined;
    await link.connect(
      async (stop) => {
        const t = await bastion.tunnel(target, stop);
        via = t.via;
        return t.stream;
      },
      settings,
      timeoutMs,
      signal
    );
    const bastionLink = via!;
    // The host's connection runs inside a channel of the bastion's: when that one goes, so does the host's.
    const off = bastionLink.onEnded((e) =>
      link.lose(`the connection to jump-host ${e.where} was lost: ${e.reason}`, e)
    );
    // Released as soon as the host's connection is gone (lost or closed), so the last one closes the bastion.
    link.onEnded(() => {
      off();
      release();
    });
    return new SshHost(link);
  } catch (e) {
    release();
    throw e;
  }
}

interface AuthSettings {
  privateKey: string;
  passphrase?: string;
  hostKeys: HostKeyPolicy;
}

type LinkState = 'connecting' | 'ready' | 'lost' | 'closed';

/**
 * One ssh2 client over one stream (a TCP socket, or a direct-tcpip channel of the bastion's connection), with
 * its whole lifecycle: connecting (abortable), ready, then lost or closed, each exactly once.
 */
class Link {
  readonly where: string;
  private readonly client = new SshClient();
  private sock?: Duplex;
  private state: LinkState = 'connecting';
  private ended?: ConnectionLostError;
  private readonly endedListeners = new Set<(e: ConnectionLostError) => void>();
  /** Channels to settle if the connection ends while they are open. */
  private readonly channels = new Set<ClientChannel>();
  /** Aborts the connect phase: the caller's signal, or close() while connecting. */
  private readonly stop = new AbortController();
  private connectFailed?: (e: SshError) => void;
  private closeTimer?: NodeJS.Timeout;

  constructor(
    readonly target: HostTarget,
    /** Keep spare session channels (a host that runs commands; not a bastion, which only forwards). */
    pool = true
  ) {
    this.where = whereOf(target);
    if (!pool) this.poolSize = 0;
    // Persistent, for the client's whole life (see the file comment).
    this.client.on('error', (e: SshError) => {
      if (this.state === 'connecting') this.connectFailed?.(e);
      else this.lose(e);
    });
    const onEnd = () => {
      if (this.state === 'connecting')
        this.connectFailed?.(new Error('the server closed the connection before the SSH handshake completed'));
      else this.lose();
    };
    this.client.on('end', onEnd);
    this.client.on('close', () => {
      clearTimeout(this.closeTimer);
      onEnd();
    });
  }

  isConnected(): boolean {
    return this.state === 'ready';
  }

  /** Ended, or will never connect: a new Link is needed. */
  isGone(): boolean {
    return this.state === 'lost' || this.state === 'closed';
  }

  /** Calls fn once when the connection (once ready) is lost or closed; returns an unsubscribe function. */
  onEnded(fn: (e: ConnectionLostError) => void): () => void {
    const ended = this.ended;
    if (ended) {
      queueMicrotask(() => fn(ended));
      return () => undefined;
    }
    this.endedListeners.add(fn);
    return () => this.endedListeners.delete(fn);
  }

  async connect(
    openStream: (stop: AbortSignal) => Promise<Duplex>,
    auth: AuthSettings,
    timeoutMs: number,
    signal?: AbortSignal
  ): Promise<void> {
    const abort = () => this.stop.abort();
    if (signal?.aborted) abort();
    else signal?.addEventListener('abort', abort, { once: true });
    try {
      if (this.stop.signal.aborted) throw cancelledError(this.target, signal);
      this.sock = await openStream(this.stop.signal);
      if (this.stop.signal.aborted) throw cancelledError(this.target, signal);
      await this.handshake(this.sock, auth, timeoutMs);
    } catch (e) {
      this.state = 'closed';
      this.endedListeners.clear();
      this.teardown();
      if (this.stop.signal.aborted) throw cancelledError(this.target, signal);
      throw classify(e as SshError, this.target, timeoutMs);
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }

  /** The SSH handshake over an open stream: strict host-key check, then public-key auth. */
  private handshake(sock: Duplex, auth: AuthSettings, timeoutMs: number): Promise<void> {
    const target = this.target;
    let hostKeyProblem: string | undefined;
    const { entries } = parseKnownHosts(auth.hostKeys.knownHosts);
    const serverHostKey = auth.hostKeys.insecureIgnore
      ? undefined
      : preferredHostKeyAlgorithms(entries, target.host, target.port);
    const config: ConnectConfig = {
      sock: sock as never,
      host: target.host,
      port: target.port,
      username: target.user,
      // publickey only: skips the "none" probe round trip
      authHandler: ['publickey'],
      privateKey: auth.privateKey,
      passphrase: auth.passphrase,
      readyTimeout: timeoutMs,
      keepaliveInterval: KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      algorithms: serverHostKey ? { serverHostKey: serverHostKey as never } : undefined,
      hostVerifier: (key: Buffer) => {
        const verdict = verifyHostKey(auth.hostKeys, target.host, target.port, key);
        if (!verdict.ok) hostKeyProblem = verdict.reason;
        return verdict.ok;
      }
    };
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => this.connectFailed?.(cancelledError(target));
      const settle = () => {
        this.connectFailed = undefined;
        this.stop.signal.removeEventListener('abort', onAbort);
      };
      this.connectFailed = (e) => {
        settle();
        reject(hostKeyProblem ? new ConnectError(hostKeyProblem, 'host-key') : e);
      };
      this.stop.signal.addEventListener('abort', onAbort, { once: true });
      this.client.once('ready', () => {
        if (this.state !== 'connecting' || !this.connectFailed) return;
        settle();
        this.state = 'ready';
        this.fillPool();
        resolve();
      });
      try {
        this.client.connect(config);
        // the signed auth request is sent: the first session channels go right behind it (see signFirst)
        signFirst(this.client, () => this.fillPool(true));
      } catch (e) {
        this.connectFailed?.(e as SshError);
      }
    });
  }

  /** The connection is gone (reset, silent, closed by the peer, its bastion gone): settle everything now. */
  lose(cause?: SshError | string, parent?: unknown): void {
    if (this.state !== 'ready') return;
    this.state = 'lost';
    this.finish(new ConnectionLostError(this.where, reasonOf(cause), { cause: parent ?? cause }));
    this.teardown();
  }

  /** Ends the connection from our side; abandons it if it is still connecting. */
  close(): void {
    if (this.state === 'connecting') {
      this.stop.abort();
      return;
    }
    if (this.state !== 'ready') return;
    this.state = 'closed';
    this.finish(new ConnectionLostError(this.where, 'closed by this run'));
    this.client.end();
    // A silent peer never answers the disconnect: don't let its socket (and ssh2's keepalive timer) keep node alive.
    this.closeTimer = setTimeout(() => this.teardown(), CLOSE_GRACE_MS);
  }

  private finish(e: ConnectionLostError): void {
    this.ended = e;
    const listeners = [...this.endedListeners];
    this.endedListeners.clear();
    for (const fn of listeners) fn(e);
    // ssh2 closes its channels when the socket closes, but only emits 'close' on a channel that was read to its
    // end, and never if the socket under it does not close (a tunnel whose bastion is silent): close the rest.
    setImmediate(() => {
      for (const ch of this.channels) ch.emit('close');
      this.channels.clear();
    });
  }

  private teardown(): void {
    clearTimeout(this.closeTimer);
    this.client.destroy();
    this.sock?.destroy();
  }

  /** An error for an operation that the connection's end interrupted (or that started after it). */
  lostBecause(reason: string): ConnectionLostError {
    if (!this.ended) this.lose(reason);
    return this.ended ?? new ConnectionLostError(this.where, reason);
  }

  /**
   * Runs start(ok, fail) and settles with what it reports, unless the connection ends first: then rejects with
   * the ConnectionLostError at once, and a value that still arrives is handed to discard.
   */
  guard<T>(start: (ok: (v: T) => void, fail: (e: Error) => void) => void, discard?: (v: T) => void): Promise<T> {
    if (this.ended) return Promise.reject(this.ended);
    if (this.state !== 'ready') return Promise.reject(new ConnectionLostError(this.where, 'not connected'));
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const off = this.onEnded((e) => {
        if (done) return;
        done = true;
        reject(e);
      });
      const ok = (v: T) => {
        if (done) return discard?.(v);
        done = true;
        off();
        resolve(v);
      };
      const fail = (e: Error) => {
        if (done) return;
        done = true;
        off();
        reject(this.ended ?? e);
      };
      try {
        start(ok, fail);
      } catch (e) {
        fail(e as Error);
      }
    });
  }

  private track(ch: ClientChannel): ClientChannel {
    // 'close' at most once, whether ssh2 or finish() emits it first.
    const emit = ch.emit.bind(ch);
    let closed = false;
    ch.emit = ((event: string | symbol, ...args: unknown[]) => {
      if (event === 'close') {
        if (closed) return false;
        closed = true;
        this.channels.delete(ch);
      }
      return emit(event, ...args);
    }) as typeof ch.emit;
    this.channels.add(ch);
    return ch;
  }

  /**
   * Starts a command. setup runs synchronously right after the exec request is sent (before its reply): the exit
   * status (a plain event, not buffered like stream data) can arrive in the same TCP read as the exec reply, and
   * stdin written there follows the request at once instead of a round trip later (sshd handles a channel's
   * messages in order, so the data reaches the command). The session channel comes from the pool (opened ahead), so
   * a command costs one round trip instead of two (channel open, then exec).
   */
  exec(
    command: string,
    setup?: (ch: ClientChannel) => void,
    onReply?: (ch: ClientChannel) => void
  ): Promise<ClientChannel> {
    return this.guard<ClientChannel>(
      (ok, fail) => {
        this.takeSession().then((ch) => {
          if (this.ended) {
            ch.close();
            return fail(this.ended);
          }
          this.track(ch);
          sendExec(this.client, ch, command, (err) => {
            if (err) {
              ch.close();
              return fail(err);
            }
            onReply?.(ch);
            ok(ch);
          });
          setup?.(ch);
        }, fail);
      },
      (ch) => ch.close()
    );
  }

  /**
   * Session channels opened ahead of need (POOL_SIZE, from the moment the connection is ready): a command takes one
   * and another is opened in the background. A host that allows fewer sessions (sshd MaxSessions) refuses the
   * spare's open: then an idle spare is given up for the command that needs it, and the pool stops refilling.
   */
  private readonly spares: Promise<ClientChannel>[] = [];
  private poolSize = POOL_SIZE;

  fillPool(authenticating = false): void {
    while (
      (this.state === 'ready' || (authenticating && this.state === 'connecting')) &&
      this.spares.length < this.poolSize
    ) {
      const p = openSession(this.client);
      p.catch(() => {
        const i = this.spares.indexOf(p);
        if (i >= 0) this.spares.splice(i, 1);
        this.poolSize = 0;
      });
      this.spares.push(p);
    }
  }

  private async takeSession(): Promise<ClientChannel> {
    const spare = this.spares.shift();
    this.fillPool();
    if (spare) {
      const ch = await spare.catch(() => undefined);
      if (ch) return ch;
    }
    try {
      return await openSession(this.client);
    } catch (e) {
      // Over the host's session limit: an idle spare makes room.
      const idle = this.spares.shift();
      if (!idle) throw e;
      this.poolSize = 0;
      (await idle.catch(() => undefined))?.close();
      return openSession(this.client);
    }
  }

  forwardOut(host: string, port: number): Promise<ClientChannel> {
    return this.guard<ClientChannel>(
      (ok, fail) =>
        this.client.forwardOut('127.0.0.1', 0, host, port, (err, ch) => (err ? fail(err) : ok(this.track(ch)))),
      (ch) => ch.close()
    );
  }

  forwardStreamLocal(socketPath: string): Promise<ClientChannel> {
    return this.guard<ClientChannel>(
      (ok, fail) =>
        this.client.openssh_forwardOutStreamLocal(socketPath, (err, ch) => (err ? fail(err) : ok(this.track(ch)))),
      (ch) => ch.close()
    );
  }
}

/**
 * One SSH connection to the bastion, shared by every host of the run (reference counted: closed with the last
 * host connection, opened again if it dropped). Hosts are reached with direct-tcpip channels, so neither the key
 * nor an agent ever reaches the bastion.
 *
 * Everything that decides which session to use runs synchronously, so concurrent callers after a drop share one
 * new session, and a session released while connecting is aborted rather than left open.
 */
class Bastion {
  private current?: { link: Link; ready: Promise<Link> };
  private refs = 0;

  constructor(
    private readonly jump: JumpHost,
    private readonly timeoutMs: number
  ) {}

  acquire(): void {
    this.refs++;
  }

  release(): void {
    if (this.refs === 0) return;
    if (--this.refs > 0) return;
    const cur = this.current;
    this.current = undefined;
    cur?.link.close();
  }

  private session(): Promise<Link> {
    const cur = this.current;
    if (cur && !cur.link.isGone()) return cur.ready; // connected, or connecting: share it
    const t = this.jump.target;
    const link = new Link(t, false);
    const ready = link
      .connect((stop) => openSocket(t, this.timeoutMs, stop), this.jump, this.timeoutMs)
      .then(
        () => link,
        (e: ConnectError) => {
          if (this.current?.link === link) this.current = undefined;
          throw new ConnectError(
            `jump-host ${link.where}: ${e.message}${e.kind === 'host-key' ? " (set jump-known-hosts to the bastion's key)" : ''}`,
            e.kind
          );
        }
      );
    ready.catch(() => undefined); // nobody may be waiting any more (released while connecting)
    link.onEnded(() => {
      if (this.current?.link === link) this.current = undefined;
    });
    this.current = { link, ready };
    return ready;
  }

  /** A direct-tcpip stream to the host through the bastion; stop abandons the wait (the shared session goes on). */
  async tunnel(target: HostTarget, stop: AbortSignal): Promise<{ stream: Duplex; via: Link }> {
    const via = await untilAborted(this.session(), stop, target);
    const where = `${target.host}:${target.port}`;
    const name = `jump-host ${this.jump.target.host}`;
    const stream = await new Promise<ClientChannel>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error, ch?: ClientChannel) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        stop.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(ch!);
      };
      const onAbort = () => finish(cancelledError(target));
      stop.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => {
        finish(
          new ConnectError(
            `${name} could not reach ${where} within ${this.timeoutMs / 1000} s: the host is down or a security group between the bastion and the host drops the traffic`,
            'timeout'
          )
        );
      }, this.timeoutMs);
      via.forwardOut(target.host, target.port).then(
        (ch) => {
          if (done) ch.close();
          else finish(undefined, ch);
        },
        (err: Error) => {
          if (err instanceof ConnectionLostError) return finish(new ConnectError(`${name}: ${err.message}`, 'network'));
          const reason = err.message.replace(/^\(SSH\) Channel open failure: ?/i, '');
          if (/refused/i.test(reason))
            finish(
              new ConnectError(
                `${name} reached ${where} but the connection was refused: is sshd running there, and is the port (${target.port}) right?`,
                'refused'
              )
            );
          else if (/prohibited/i.test(reason))
            finish(
              new ConnectError(
                `${name} does not allow TCP forwarding to ${where} (AllowTcpForwarding/PermitOpen in its sshd_config): ${reason}`,
                'auth'
              )
            );
          else if (/timed out/i.test(reason))
            finish(
              new ConnectError(
                `${name} could not reach ${where} (timed out): the host is down or a security group drops the traffic`,
                'timeout'
              )
            );
          else if (/resolve|not known|name/i.test(reason))
            finish(new ConnectError(`${name} could not resolve ${target.host}: ${reason}`, 'dns'));
          else
            finish(new ConnectError(`${name} could not reach ${where}: ${reason || 'channel open failed'}`, 'network'));
        }
      );
    });
    return { stream, via };
  }
}

/** p, or a cancellation error as soon as signal aborts (p goes on; its outcome is then ignored). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal, target: HostTarget): Promise<T> {
  if (signal.aborted) return Promise.reject(cancelledError(target));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelledError(target));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Spare session channels kept open per connection (see Link.fillPool): the lock, detect and login+pull go out at once
 * on a fresh connection. sshd allows 10 sessions per connection by default.
 */
const POOL_SIZE = 3;

/**
 * ssh2's private parts used here (pinned ssh2 ^1.17): its channel manager and protocol writer, to open a session
 * channel before the command for it is known, and to send the exec request on it.
 */
interface Ssh2Internals {
  _chanMgr: { add(cb: unknown): number };
  _protocol: {
    session(localChan: number, window: number, packetSize: number): void;
    exec(chan: number, command: string, wantReply: boolean): void;
    authPK?: (user: string, key: unknown, keyAlgo: string | undefined, sign?: unknown) => void;
  };
}
type RawChannel = ClientChannel & {
  outgoing: { id: number; state: string };
  _callbacks: ((failed: boolean) => void)[];
  subtype?: string;
  allowHalfOpen?: boolean;
};

/** Opens a session channel (one round trip): ssh2's openChannel(…, 'session'), which it does not export. */
function openSession(client: Client): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    const c = client as unknown as Ssh2Internals;
    const wrapper = Object.assign((err: Error | undefined, ch: ClientChannel) => (err ? reject(err) : resolve(ch)), {
      type: 'session'
    });
    const local = c._chanMgr.add(wrapper);
    if (local === -1) return reject(new Error('No free channels available'));
    // ssh2's own window and packet size for channels it opens (MAX_WINDOW, PACKET_SIZE)
    c._protocol.session(local, 2 * 1024 * 1024, 32 * 1024);
  });
}

/** The exec request on an open session channel (ssh2's reqExec); done is called with its reply. */
function sendExec(client: Client, ch: ClientChannel, command: string, done: (err?: Error) => void): void {
  const raw = ch as RawChannel;
  if (raw.outgoing.state !== 'open') return done(new Error('Channel is not open'));
  raw._callbacks.push((failed) => done(failed ? new Error('Unable to exec') : undefined));
  raw.subtype = 'exec';
  raw.allowHalfOpen = true;
  (client as unknown as Ssh2Internals)._protocol.exec(raw.outgoing.id, command, true);
}

/**
 * Public-key auth in one round trip: ssh2 first asks whether the key would be accepted (USERAUTH_PK_OK) and signs
 * only then; the signed request alone is just as valid (RFC 4252 §7) and saves the query. A refused key still
 * fails the same way (USERAUTH_FAILURE).
 */
function signFirst(client: Client, onSent?: () => void): void {
  const proto = (client as unknown as Partial<Ssh2Internals>)._protocol;
  const authPK = proto?.authPK;
  if (!proto || typeof authPK !== 'function') return;
  proto.authPK = (user, key, keyAlgo, sign) => {
    const k = key as { sign?: (data: Buffer, hash?: string) => Buffer | Error; type?: string };
    if (sign || typeof k?.sign !== 'function') return authPK.call(proto, user, key, keyAlgo, sign);
    const hash =
      keyAlgo === 'rsa-sha2-256'
        ? 'sha256'
        : keyAlgo === 'rsa-sha2-512'
          ? 'sha512'
          : keyAlgo === 'ssh-rsa'
            ? 'sha1'
            : undefined;
    authPK.call(proto, user, key, keyAlgo, (data: Buffer, cb: (sig: Buffer) => void) => {
      const sig = k.sign!(data, hash);
      // cannot sign here: the query round trip it is then
      if (sig instanceof Error) return authPK.call(proto, user, key, keyAlgo);
      cb(sig);
    });
    // A key with one signature algorithm (ed25519, ecdsa) is accepted or refused with this request: channel opens
    // sent right behind it are handled once it succeeded (sshd reads a connection's messages in order), which saves
    // the first command a round trip. An RSA key may be retried with another algorithm: nothing is sent ahead then.
    if (onSent && k.type !== 'ssh-rsa') {
      const once = onSent;
      onSent = undefined;
      once();
    }
  };
}

const bastions = new WeakMap<JumpHost, Bastion>();

function bastionFor(jump: JumpHost, timeoutMs: number): Bastion {
  let b = bastions.get(jump);
  if (!b) bastions.set(jump, (b = new Bastion(jump, timeoutMs)));
  return b;
}

/**
 * The TCP connection, with Nagle's algorithm off: SSH exchanges many small packets, and Nagle plus
 * delayed ACKs otherwise adds ~40 ms to every round trip (measured: 5 commands 409 ms → 22 ms on loopback).
 */
function openSocket(target: HostTarget, timeoutMs: number, stop: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (stop.aborted) return reject(cancelledError(target));
    // The entry point may have opened it already (preconnect.ts): connected by now, or still connecting.
    const early = takeEarlySocket(target.host, target.port);
    const sock = early ?? net.connect({ host: target.host, port: target.port, noDelay: true });
    const done = () => {
      clearTimeout(timer);
      stop.removeEventListener('abort', onAbort);
      sock.removeListener('error', onError);
    };
    const onError = (e: Error) => {
      done();
      reject(e);
    };
    const onAbort = () => {
      done();
      sock.destroy();
      reject(cancelledError(target));
    };
    const timer = setTimeout(() => {
      done();
      sock.destroy();
      reject(Object.assign(new Error('Timed out while waiting for handshake'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    stop.addEventListener('abort', onAbort, { once: true });
    const connected = () => {
      done();
      sock.setKeepAlive(true, 10_000);
      resolve(sock);
    };
    sock.once('error', onError);
    if (early && !early.connecting) connected();
    else sock.once('connect', connected);
  });
}

class SshHost implements SshRemoteHost {
  readonly target: HostTarget;

  constructor(private readonly link: Link) {
    this.target = link.target;
  }

  async run(body: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    const out = { stdout: [] as string[], stderr: [] as string[] };
    const partial = { stdout: '', stderr: '' };
    const feed = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      out[stream].push(text);
      if (!opts.onLine) return;
      partial[stream] += text;
      let nl: number;
      while ((nl = partial[stream].indexOf('\n')) >= 0) {
        opts.onLine(partial[stream].slice(0, nl), stream);
        partial[stream] = partial[stream].slice(nl + 1);
      }
    };
    let exit: { code: number | null; signal: string | null } | undefined;
    const exited = () => exit !== undefined && (exit.code !== null || exit.signal !== null);
    let closed = false;
    let onClosed: (() => void) | undefined;
    await this.link.exec(shInvocation(body, args), (ch) => {
      ch.on('data', feed('stdout'));
      ch.stderr.on('data', feed('stderr'));
      ch.on('exit', (code: number | null, signal?: string) => {
        exit = { code: code ?? null, signal: signal ?? null };
      });
      ch.on('close', () => {
        closed = true;
        onClosed?.();
      });
      // Data waits for sshd's window (opened only once it started the command: a round trip); EOF alone does not.
      if (opts.stdin) ch.write(opts.stdin);
      ch.end();
    });
    const result = (): ExecResult => {
      if (opts.onLine) {
        if (partial.stdout) opts.onLine(partial.stdout, 'stdout');
        if (partial.stderr) opts.onLine(partial.stderr, 'stderr');
      }
      return { code: exit!.code, signal: exit!.signal, stdout: out.stdout.join(''), stderr: out.stderr.join('') };
    };
    return this.link
      .guard<ExecResult>((ok, fail) => {
        onClosed = () => {
          if (exited()) ok(result());
          // sshd always reports how a command ended; a channel closed without it means the session is broken.
          else fail(this.link.lostBecause('the remote command ended without an exit status'));
        };
        if (closed) onClosed();
      })
      .catch((e: unknown) => {
        // The command had finished when the connection went: its result stands.
        if (e instanceof ConnectionLostError && exited()) return result();
        throw e;
      });
  }

  open(body: string, args: string[] = []): Promise<ClientChannel> {
    return this.link.exec(shInvocation(body, args), undefined, holdEarlyEnd);
  }

  forward(port: number): Promise<NodeJS.ReadWriteStream & { destroy(): void }> {
    return this.link.forwardOut('127.0.0.1', port) as Promise<never>;
  }

  // traffic: haproxy — the admin socket through the connection (sshd's AllowStreamLocalForwarding, on by default).
  forwardUnix(socketPath: string): Promise<NodeJS.ReadWriteStream & { destroy(): void }> {
    return this.link.forwardStreamLocal(socketPath) as Promise<never>;
  }

  isConnected(): boolean {
    return this.link.isConnected();
  }

  close(): void {
    this.link.close();
  }
}

/**
 * A command that ends at once (the lock script failing) can deliver its exit status and close with the exec reply
 * (this runs in the reply's callback),
 * before the caller of open() has attached listeners after its await: keep those two events until then.
 */
function holdEarlyEnd(ch: ClientChannel): void {
  const emit = ch.emit.bind(ch);
  let held: [string | symbol, unknown[]][] | undefined = [];
  ch.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (held && (event === 'exit' || event === 'close')) {
      held.push([event, args]);
      return true;
    }
    return emit(event, ...args);
  }) as typeof ch.emit;
  // Runs after the microtasks that resume the caller.
  setImmediate(() => {
    const early = held ?? [];
    held = undefined;
    for (const [event, args] of early) emit(event, ...args);
  });
}
