/**
 * One SSH connection per host for the whole run (ssh2): remote commands, long-lived channels (the lock)
 * and TCP forwarding (health probes) all share it.
 *
 * A connection can be lost at any time (TCP reset, a peer that goes silent, the bastion dropping). Every
 * connection therefore keeps its own 'error'/'end'/'close' handlers for its whole life (ssh2 emits 'error' on
 * a connected client; with no listener node crashes with "Unhandled 'error' event"), and a lost connection
 * settles everything in flight at once: run() rejects with ConnectionLostError, channels emit 'close', later
 * calls fail fast.
 *
 * The parts: errors.ts (the errors, and how a failed connect is classified), socket.ts (the TCP connection),
 * link.ts (one ssh2 connection and its lifecycle), session-pool.ts and ssh2-internals.ts (spare session channels,
 * exec), bastion.ts (the jump host), host.ts (a connected host, SshHost); connect() with its retries is here.
 */
import type { HostTarget, SshSettings } from '../../model/config.js';
import { hasEarlySocket } from './preconnect.js';
import { bastionFor } from './bastion.js';
import { cancelledError, ConnectError } from './errors.js';
import { SshHost, type SshRemoteHost } from './host.js';
import { Link } from './link.js';
import { openSocket } from './socket.js';

export type { ConnectOptions, ExecOptions, ExecResult, RemoteHost } from '../remote-host.js';
import type { ConnectOptions } from '../remote-host.js';
export type { SshRemoteHost } from './host.js';
export { ConnectError, ConnectionLostError } from './errors.js';
export { KEEPALIVE_COUNT_MAX, KEEPALIVE_INTERVAL_MS } from './link.js';

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
