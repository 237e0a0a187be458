/**
 * The per-app deploy lock, runner side: a lease on the host (see lockScript) that expires by itself unless it is
 * renewed. Over SSH one channel takes the lease and then stays open as its keeper: the runner writes a heartbeat byte
 * every LEASE_HEARTBEAT_MS, the keeper renews the lease for each one and removes it at EOF (released, or the runner's
 * connection was closed) or when the heartbeats stop (the runner vanished without its connection ever closing).
 */
import crypto from 'node:crypto';
import {
  LEASE_HEARTBEAT_MS,
  LEASE_TTL_SECONDS,
  lockScript,
  releaseLeaseScript,
  renewLeaseScript
} from '../remote/scripts.js';
import type { RemoteChannel, RemoteHost } from '../transport/remote-host.js';
import { cancelReason } from '../log/steps.js';
import { StepError } from '../model/results.js';

export interface LockLog {
  info(m: string): void;
  warn(m: string): void;
  debug(m: string): void;
}

export interface AcquireOptions {
  app: string;
  /** Our lease is free to us again after a reconnect: the lease file names the deployId. No whitespace. */
  deployId: string;
  /** Who holds it, shown to waiting deploys and by `command: status` (deployId, runUrl, actor, since…). */
  owner: Record<string, unknown>;
  timeoutSeconds: number;
  signal?: AbortSignal;
  log: LockLog;
  /** Tests only. */
  ttlSeconds?: number;
  heartbeatMs?: number;
}

export interface HeldLock {
  /** `<deployId>.<nonce>`, new for each acquisition. */
  readonly token: string;
  /**
   * Aborted (reason: a message) once the lease may be gone: the keeper's channel closed (the SSH connection dropped),
   * the keeper reported it expired or taken, or no renewal was confirmed for most of the TTL. Before changing the
   * host after that, acquire again (same deployId: at once, unless another deploy took over meanwhile).
   */
  readonly signal: AbortSignal;
  /** Why the lease may be gone, once `signal` is aborted. */
  readonly lost: string | undefined;
  /** Until when (runner clock, ms) the lease is surely valid: the send time of the last confirmed heartbeat + TTL. */
  readonly validUntil: number;
  /** Ends the keeper (EOF): it removes the lease. Resolves when the channel closed (at most ~5 s). */
  release(): Promise<void>;
  /**
   * A command of this run removed the lease on the host already (finishScript's releaseToken): no more heartbeats,
   * and release() only ends the keeper, without waiting for it.
   */
  releasedOnHost?(): void;
}

/** Confirmations may lag this much behind the host's clock and the channel's round trip before we call the lease lost. */
const SAFETY_MS = 5000;

export async function acquireLock(remote: RemoteHost, opts: AcquireOptions): Promise<HeldLock> {
  if (!opts.deployId || /\s/.test(opts.deployId))
    throw new Error(`deploy id ${JSON.stringify(opts.deployId)} must be a non-empty word`);
  const ttlMs = (opts.ttlSeconds ?? LEASE_TTL_SECONDS) * 1000;
  const token = `${opts.deployId}.${crypto.randomBytes(6).toString('hex')}`;
  if (!remote.open) return acquireByCommands(remote, opts, token, ttlMs);
  const s = lockScript(opts.app, token, JSON.stringify(opts.owner), opts.timeoutSeconds, {
    ttlSeconds: opts.ttlSeconds
  });
  const ch = await remote.open(s.body, s.args);
  const lock = new Lease(remote, ch, token, opts, ttlMs);
  await lock.acquired();
  return lock;
}

/** The lines the lock script prints while it waits: logged; returns the holder when a line names one. */
function waitingLine(line: string, opts: AcquireOptions): string | undefined {
  if (line.startsWith('@@')) opts.log.debug(line);
  if (line.startsWith('@@lock-wait')) {
    const holder = describeOwner(line.slice('@@lock-wait'.length).trim());
    opts.log.info(
      `another deploy holds the lock (${holder || 'holder unknown'}); waiting up to ${opts.timeoutSeconds} s`
    );
    return holder;
  }
  if (line === '@@drain-wait')
    opts.log.info(
      `the previous deploy's old colour is still finishing its requests (drain job on the host); waiting up to ${opts.timeoutSeconds} s`
    );
  if (line.startsWith('@@lock-timeout')) return describeOwner(line.slice('@@lock-timeout'.length).trim()) || undefined;
  return undefined;
}

function lockFailed(opts: AcquireOptions, code: number | null, holder: string, err: string): StepError {
  if (code === 75)
    return new StepError(
      'lock',
      `another deploy of ${opts.app} still holds the lock on this host after ${opts.timeoutSeconds} s (${holder || 'holder unknown'}); raise lock-timeout-seconds or use a workflow concurrency group`
    );
  if (code !== null)
    return new StepError('lock', `could not take the deploy lock (exit ${code}): ${err.trim() || 'no output'}`);
  return new StepError('lock', `the lock command ended unexpectedly: ${err.trim() || 'no output'}`);
}

/**
 * A transport that keeps no channel open (e.g. AWS Systems Manager Run Command): one command waits for and takes
 * the lease on the host, a command every heartbeat renews it, and it expires by itself if the run goes silent.
 */
async function acquireByCommands(
  remote: RemoteHost,
  opts: AcquireOptions,
  token: string,
  ttlMs: number
): Promise<HeldLock> {
  const s = lockScript(opts.app, token, JSON.stringify(opts.owner), opts.timeoutSeconds, {
    keeper: false,
    ttlSeconds: opts.ttlSeconds
  });
  let holder = '';
  const res = await remote.run(s.body, s.args, { onLine: (line) => (holder = waitingLine(line, opts) ?? holder) });
  if (res.code !== 0 || !res.stdout.split('\n').includes(`@@locked ${token}`))
    throw lockFailed(opts, res.code ?? null, holder, res.stderr);
  return new CommandLease(remote, token, opts, ttlMs);
}

/** What both kinds of lease share: the lost signal, and who says so. */
abstract class LeaseState {
  protected readonly abort = new AbortController();
  protected released = false;

  constructor(protected readonly opts: AcquireOptions) {}

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  get lost(): string | undefined {
    return this.abort.signal.aborted ? String(this.abort.signal.reason) : undefined;
  }

  protected markLost(reason: string): void {
    if (this.abort.signal.aborted || this.released) return;
    this.opts.log.warn(`deploy lock of ${this.opts.app}: ${reason}`);
    this.abort.abort(reason);
  }
}

class CommandLease extends LeaseState implements HeldLock {
  private readonly timer: NodeJS.Timeout;
  validUntil: number;

  constructor(
    private readonly remote: RemoteHost,
    readonly token: string,
    opts: AcquireOptions,
    private readonly ttlMs: number
  ) {
    super(opts);
    this.validUntil = Date.now() + ttlMs;
    this.timer = setInterval(() => void this.renew(), opts.heartbeatMs ?? LEASE_HEARTBEAT_MS);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.released || this.abort.signal.aborted) return;
    const sent = Date.now();
    const s = renewLeaseScript(this.opts.app, this.token, this.ttlMs / 1000);
    const res = await this.remote
      .run(s.body, s.args)
      .catch((e: Error) => ({ code: null, stdout: '', stderr: e.message }));
    if (res.code === 0 && res.stdout.includes('@@renewed'))
      this.validUntil = Math.max(this.validUntil, sent + this.ttlMs);
    else if (res.code === 76) this.markLost(`the deploy lock was taken over on the host after our lease expired`);
    if (Date.now() > this.validUntil - Math.min(SAFETY_MS, this.ttlMs / 4))
      this.markLost('no lease renewal succeeded in time: the lease may have expired on the host');
  }

  releasedOnHost(): void {
    this.released = true;
    clearInterval(this.timer);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    if (!this.remote.isConnected()) return;
    const s = releaseLeaseScript(this.opts.app, this.token);
    await this.remote
      .run(s.body, s.args)
      .catch((e: Error) =>
        this.opts.log.warn(
          `could not release the deploy lease (${e.message}); it expires by itself within ${this.ttlMs / 1000} s`
        )
      );
  }
}

class Lease extends LeaseState implements HeldLock {
  private timer?: NodeJS.Timeout;
  private closed = false;
  /** Send times of heartbeats not confirmed yet (the keeper answers each with `@@renewed`, in order). */
  private readonly pending: number[] = [];
  validUntil = 0;
  private onLine: (line: string) => void = () => undefined;
  private onEnd: (code: number | null) => void = () => undefined;

  constructor(
    private readonly remote: RemoteHost,
    private readonly ch: RemoteChannel,
    readonly token: string,
    opts: AcquireOptions,
    private readonly ttlMs: number
  ) {
    super(opts);
    let buf = '';
    ch.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.onLine(line);
      }
    });
    // ssh2 emits exit (with the code) before close; close alone when the connection went away
    let code: number | null = null;
    ch.on('exit', (c: number | null) => (code = c));
    ch.on('close', () => {
      this.closed = true;
      this.stopHeartbeat();
      this.onEnd(code);
    });
    ch.on('error', () => undefined);
  }

  /** Resolves at `@@locked`; fails with a StepError('lock') naming the holder on timeout, cancel or error. */
  acquired(): Promise<void> {
    const { signal, log } = this.opts;
    let err = '';
    this.ch.stderr.on('data', (d: Buffer) => (err += d.toString()));
    return new Promise<void>((resolve, reject) => {
      let holder = '';
      const onAbort = () => {
        reject(new StepError('lock', `${cancelReason(signal!)} while waiting for the deploy lock`));
        this.ch.close();
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.onLine = (line) => {
        if (line === `@@locked ${this.token}`) {
          signal?.removeEventListener('abort', onAbort);
          this.onLine = (l) => this.keeperLine(l);
          this.onEnd = (code) => this.keeperEnded(code);
          // The host wrote expires = its now + TTL just before this line left it; a first heartbeat right away
          // gives a bound that does not depend on the channel's latency.
          this.validUntil = Date.now() + this.ttlMs;
          this.startHeartbeat();
          this.beat();
          log.debug(line);
          resolve();
        } else holder = waitingLine(line, this.opts) ?? holder;
      };
      this.onEnd = (code) => {
        signal?.removeEventListener('abort', onAbort);
        reject(lockFailed(this.opts, code, holder, err));
      };
    });
  }

  private startHeartbeat(): void {
    const every = this.opts.heartbeatMs ?? LEASE_HEARTBEAT_MS;
    this.timer = setInterval(() => this.beat(), every);
    this.timer.unref();
  }

  private stopHeartbeat(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private beat(): void {
    if (this.closed || this.released) return;
    if (Date.now() > this.validUntil - Math.min(SAFETY_MS, this.ttlMs / 4))
      this.markLost(
        `no lease renewal was confirmed by the host for ${Math.round((Date.now() - this.validUntil + this.ttlMs) / 1000)} s: the lease may have expired there`
      );
    this.pending.push(Date.now());
    // never a newline: the keeper reads one byte per heartbeat with a command substitution, which drops newlines
    this.ch.write('.');
  }

  private keeperLine(line: string): void {
    if (line.startsWith('@@')) this.opts.log.debug(line);
    if (line.startsWith('@@renewed')) {
      const sent = this.pending.shift();
      if (sent !== undefined) this.validUntil = Math.max(this.validUntil, sent + this.ttlMs);
    } else if (line.startsWith('@@lease-lost')) {
      this.markLost(
        `the deploy lock was taken over on the host (${describeOwner(line.slice('@@lease-lost'.length).trim()) || 'holder unknown'}) after our lease expired`
      );
    } else if (line.startsWith('@@lease-expired')) {
      this.markLost('the host heard no heartbeat for the lease TTL and released our lease');
    }
  }

  private keeperEnded(code: number | null): void {
    if (this.released) return;
    this.markLost(
      code === null
        ? 'the channel holding the deploy lock closed (SSH connection lost?)'
        : `the lease keeper on the host ended (exit ${code})`
    );
  }

  private goneOnHost = false;

  releasedOnHost(): void {
    this.released = true;
    this.goneOnHost = true;
    this.stopHeartbeat();
  }

  async release(): Promise<void> {
    if (this.goneOnHost) {
      // EOF ends the keeper, which finds the lease gone; nothing to wait for
      this.goneOnHost = false;
      if (!this.closed) this.ch.end();
      return;
    }
    if (this.released) return;
    this.released = true;
    this.stopHeartbeat();
    if (!this.closed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5000);
        t.unref();
        this.ch.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        this.ch.end();
      });
      if (this.closed) return;
    }
    // The keeper is gone (or did not answer) but the connection may still work: remove our lease directly.
    if (!this.remote.isConnected()) return;
    const s = releaseLeaseScript(this.opts.app, this.token);
    await this.remote.run(s.body, s.args).then(
      (r) => {
        if (r.code !== 0)
          this.opts.log.warn(
            `could not release the deploy lease (exit ${r.code}): ${r.stderr.trim()}; it expires by itself within ${this.ttlMs / 1000} s`
          );
      },
      (e: Error) =>
        this.opts.log.warn(
          `could not release the deploy lease (${e.message}); it expires by itself within ${this.ttlMs / 1000} s`
        )
    );
  }
}

export function describeOwner(json: string): string {
  if (!json) return '';
  try {
    const o = JSON.parse(json) as { deployId?: string; runUrl?: string; actor?: string; since?: string };
    return `deploy ${o.deployId ?? '?'} by ${o.actor ?? '?'} since ${o.since ?? '?'}${o.runUrl ? `, ${o.runUrl}` : ''}`;
  } catch {
    return json;
  }
}
