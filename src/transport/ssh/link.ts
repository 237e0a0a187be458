/** One ssh2 connection and its lifecycle (Link): connect and handshake, lost or closed, guarded calls, channels. */
import type { Duplex } from 'node:stream';
import type { ClientChannel, ConnectConfig } from 'ssh2';
// the client's own file: ssh2's index loads much that is never used (src/types/ssh2-parts.d.ts)
import SshClient from 'ssh2/lib/client.js';
import type { HostKeyPolicy, HostTarget } from '../../model/config.js';
import { parseKnownHosts, preferredHostKeyAlgorithms, verifyHostKey } from './known-hosts.js';
import { cancelledError, classify, ConnectError, ConnectionLostError, whereOf, type SshError } from './errors.js';
import { POOL_SIZE, SessionPool } from './session-pool.js';
import { sendExec, signFirst } from './ssh2-internals.js';

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

/** Why a connected connection ended, in a few words for ConnectionLostError. */
function reasonOf(err?: SshError | string): string {
  if (typeof err === 'string') return err;
  if (!err) return 'closed by the remote side';
  if (err.level === 'client-timeout' && /keepalive/i.test(err.message))
    return `no answer to SSH keepalives for ${SILENT_AFTER_S} s`;
  return err.code ?? err.message;
}

export interface AuthSettings {
  privateKey: string;
  passphrase?: string;
  hostKeys: HostKeyPolicy;
}

type LinkState = 'connecting' | 'ready' | 'lost' | 'closed';

/**
 * One ssh2 client over one stream (a TCP socket, or a direct-tcpip channel of the bastion's connection), with
 * its whole lifecycle: connecting (abortable), ready, then lost or closed, each exactly once.
 */
export class Link {
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
  /** Spare session channels (see SessionPool). */
  private readonly sessions: SessionPool;

  constructor(
    readonly target: HostTarget,
    /** Keep spare session channels (a host that runs commands; not a bastion, which only forwards). */
    pool = true
  ) {
    this.where = whereOf(target);
    this.sessions = new SessionPool(
      this.client,
      pool ? POOL_SIZE : 0,
      (authenticating) => this.state === 'ready' || (authenticating && this.state === 'connecting')
    );
    // Persistent, for the client's whole life (see connection.ts's file comment).
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
        this.sessions.fill();
        resolve();
      });
      try {
        this.client.connect(config);
        // the signed auth request is sent: the first session channels go right behind it (see signFirst)
        signFirst(this.client, () => this.sessions.fill(true));
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
        this.sessions.take().then((ch) => {
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
