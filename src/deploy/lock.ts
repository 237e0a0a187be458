/**
 * The per-app deploy lock on a host (see lockScript): taken before anything is read or changed, held for the
 * whole deploy, released when the run ends or its connection goes away.
 */
import type { ClientChannel } from 'ssh2';
import { lockScript } from '../remote/scripts.js';
import type { HostLog } from '../report/log.js';
import type { RemoteHost } from '../ssh/connection.js';
import { cancelReason } from './steps.js';
import { StepError } from './types.js';

export interface LockOptions {
  app: string;
  deployId: string;
  /** JSON naming the holder (deploy id, run URL, actor, since), shown to whoever waits. */
  owner: string;
  timeoutSeconds: number;
  log: HostLog;
  signal?: AbortSignal;
}

export interface HeldLock {
  release(): Promise<void>;
}

export async function acquireLock(remote: RemoteHost, o: LockOptions): Promise<HeldLock> {
  const s = lockScript(o.app, o.timeoutSeconds, o.owner);
  const ch = await remote.open(s.body, s.args);
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    let err = '';
    let locked = false;
    let lastOwner = '';
    ch.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === '@@locked' || line.startsWith('@@locked ')) {
          locked = true;
          resolve();
        } else if (line.startsWith('@@lock-wait')) {
          lastOwner = describeOwner(line.slice('@@lock-wait'.length).trim());
          o.log.info(`another deploy holds the lock (${lastOwner}); waiting up to ${o.timeoutSeconds} s`);
        } else if (line === '@@drain-wait') {
          o.log.info(`the previous deploy's old colour is still finishing its requests (drain job on the host); waiting up to ${o.timeoutSeconds} s`);
        } else if (line.startsWith('@@lock-timeout')) {
          lastOwner = describeOwner(line.slice('@@lock-timeout'.length).trim()) || lastOwner;
        }
      }
    });
    ch.stderr.on('data', (d: Buffer) => (err += d.toString()));
    o.signal?.addEventListener(
      'abort',
      () => {
        if (locked) return;
        reject(new StepError('lock', `${cancelReason(o.signal!)} while waiting for the deploy lock`));
        ch.close();
      },
      { once: true }
    );
    ch.on('exit', (code: number | null) => {
      if (locked) return;
      if (code === 75) reject(new StepError('lock', `another deploy of ${o.app} still holds the lock on this host after ${o.timeoutSeconds} s (${lastOwner || 'holder unknown'}); raise lock-timeout-seconds or use a workflow concurrency group`));
      else reject(new StepError('lock', `could not take the deploy lock (exit ${code}): ${err.trim() || 'no output'}`));
    });
    ch.on('close', () => {
      if (!locked) reject(new StepError('lock', `the lock command ended unexpectedly: ${err.trim() || 'no output'}`));
    });
  });
  o.log.info(`holding the deploy lock for ${o.app}`);
  return new ChannelLock(ch);
}

class ChannelLock implements HeldLock {
  private released = false;
  constructor(private readonly ch: ClientChannel) {}

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const ch = this.ch;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 5000);
      ch.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      ch.end();
    });
  }
}

export function describeOwner(json: string): string {
  try {
    const o = JSON.parse(json) as { deployId?: string; runUrl?: string; actor?: string; since?: string };
    return `deploy ${o.deployId ?? '?'} by ${o.actor ?? '?'} since ${o.since ?? '?'}${o.runUrl ? `, ${o.runUrl}` : ''}`;
  } catch {
    return json;
  }
}
