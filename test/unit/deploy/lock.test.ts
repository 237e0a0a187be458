/**
 * The deploy lease: the real host scripts (lockScript, renew/release, LEASE_GUARD) run by dash with the real flock
 * in a temporary home, and the runner side (src/deploy/lock.ts) driving them through a local stand-in for the SSH
 * channel (stdin/stdout of a local `sh` process). Only the SSH transport is replaced.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ClientChannel } from 'ssh2';
import { acquireLock, type LockLog } from '../../../src/deploy/lock.js';
import { StepError } from '../../../src/model/results.js';
import {
  finishScript,
  LEASE_GUARD,
  lockScript,
  releaseLeaseScript,
  renewLeaseScript
} from '../../../src/remote/scripts.js';
import type { ExecOptions, ExecResult, RemoteHost } from '../../../src/transport/remote-host.js';

const hasTools = ['dash', 'flock', 'timeout', 'setsid'].every(
  (t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0
);
const d = hasTools ? describe : describe.skip;

let home: string;
const APP = 'app1';
const leaseFile = () => path.join(home, '.bluegreen', APP, 'lease');
const readLease = () => {
  try {
    const [token, expires, ...owner] = fs.readFileSync(leaseFile(), 'utf8').trim().split(' ');
    return { token, expires: Number(expires), owner: JSON.parse(owner.join(' ')) as Record<string, unknown> };
  } catch {
    return undefined;
  }
};
const hostNow = () => Math.floor(Date.now() / 1000);
const writeLease = (token: string, expires: number, owner: object) => {
  fs.mkdirSync(path.dirname(leaseFile()), { recursive: true });
  fs.writeFileSync(leaseFile(), `${token} ${expires} ${JSON.stringify(owner)}\n`);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, fn: () => boolean, ms = 15000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Runs a script body with dash in the temp home, as the SSH transport would (`sh -c body sh args…`). */
function runScript(
  s: { body: string; args: string[] },
  stdin = ''
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('dash', ['-c', s.body, 'sh', ...s.args], { cwd: home, input: stdin, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A RemoteHost whose channels are local dash processes in the temp home. */
class LocalHost implements RemoteHost {
  readonly target = { label: 'local', host: 'local', port: 22, user: 'me' };
  connected = true;
  readonly children: ChildProcess[] = [];

  async run(body: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = runScript({ body, args }, opts.stdin ?? '');
    return { code: r.code, signal: null, stdout: r.stdout, stderr: r.stderr };
  }

  async open(body: string, args: string[] = []): Promise<ClientChannel> {
    const child = spawn('dash', ['-c', body, 'sh', ...args], { cwd: home, stdio: ['pipe', 'pipe', 'pipe'] });
    this.children.push(child);
    const ch = new EventEmitter() as EventEmitter & {
      stderr: EventEmitter;
      write(d: string): boolean;
      end(): void;
      close(): void;
    };
    ch.stderr = child.stderr!;
    child.stdout!.on('data', (b: Buffer) => ch.emit('data', b));
    child.stdin!.on('error', () => undefined);
    child.on('exit', (code) => ch.emit('exit', code));
    child.on('close', () => ch.emit('close'));
    ch.write = (data: string) => child.stdin!.write(data);
    ch.end = () => child.stdin!.end();
    ch.close = () => child.kill('SIGTERM');
    return ch as unknown as ClientChannel;
  }

  async forward(): Promise<never> {
    throw new Error('no forwarding here');
  }

  isConnected(): boolean {
    return this.connected;
  }

  close(): void {
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
  }

  /** The SSH connection dies: the channel's process is gone without a word (its lease stays until it expires). */
  drop(): void {
    this.connected = false;
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

const logged: string[] = [];
const log: LockLog = {
  info: (m) => logged.push(`info ${m}`),
  warn: (m) => logged.push(`warn ${m}`),
  debug: () => undefined
};
let host: LocalHost;

beforeEach(() => {
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-lock-'));
  logged.length = 0;
  host = new LocalHost();
});
afterEach(() => {
  host.close();
  fs.rmSync(home, { recursive: true, force: true });
});

const owner = (deployId: string) => ({ deployId, actor: 'tester', since: '2026-01-01T10:00:00.000Z' });

d('host scripts', () => {
  test('takes a free lease and writes token, expiry and owner', () => {
    const r = runScript(lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 0, { keeper: false }));
    expect([r.code, r.stdout]).toEqual([0, '@@locked d1.aa\n']);
    const l = readLease()!;
    expect([l.token, l.owner]).toEqual(['d1.aa', owner('d1')]);
    expect(l.expires).toBeGreaterThan(hostNow());
  });

  test("another deploy's live lease: waits, names the holder, then times out with exit 75", () => {
    writeLease('d2.bb', hostNow() + 600, owner('d2'));
    const r = runScript(lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 1, { keeper: false }));
    expect(r.code).toBe(75);
    expect(r.stdout).toBe(
      `@@lock-wait ${JSON.stringify(owner('d2'))}\n@@lock-timeout ${JSON.stringify(owner('d2'))}\n`
    );
    expect(readLease()!.token).toBe('d2.bb');
  });

  test('a run re-takes its own lease (same deployId, after a reconnect) without waiting, even with lock-timeout 0', () => {
    writeLease('d1.old', hostNow() + 600, owner('d1'));
    const r = runScript(lockScript(APP, 'd1.new', JSON.stringify(owner('d1')), 0, { keeper: false }));
    expect([r.code, r.stdout]).toEqual([0, '@@locked d1.new\n']);
    expect(readLease()!.token).toBe('d1.new');
  });

  test('an expired lease of another deploy is free', () => {
    writeLease('d2.bb', hostNow() - 1, owner('d2'));
    const r = runScript(lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 0, { keeper: false }));
    expect([r.code, r.stdout]).toEqual([0, '@@locked d1.aa\n']);
  });

  test('a deploy by an older version of the action (holding the lock file for its whole run) still excludes us', async () => {
    fs.mkdirSync(path.join(home, '.bluegreen', APP), { recursive: true });
    fs.writeFileSync(path.join(home, '.bluegreen', APP, 'lock.owner'), `${JSON.stringify(owner('old'))}\n`);
    const holder = spawn(
      'dash',
      ['-c', 'exec 9>>".bluegreen/$1/lock"; flock 9; echo held; cat >/dev/null', 'sh', APP],
      { cwd: home, stdio: ['pipe', 'pipe', 'inherit'] }
    );
    await new Promise<void>((resolve) => holder.stdout!.on('data', () => resolve()));
    try {
      const r = runScript(lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 1, { keeper: false }));
      expect(r.code).toBe(75);
      expect(r.stdout).toBe(
        `@@lock-wait ${JSON.stringify(owner('old'))}\n@@lock-timeout ${JSON.stringify(owner('old'))}\n`
      );
    } finally {
      holder.kill('SIGKILL');
    }
    await new Promise((r) => holder.once('close', r));
    expect(runScript(lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 0, { keeper: false })).code).toBe(0);
  });

  test("the previous deploy's drain job (drain.lock) is waited for", async () => {
    fs.mkdirSync(path.join(home, '.bluegreen', APP), { recursive: true });
    const job = spawn(
      'dash',
      ['-c', 'exec 8>>".bluegreen/$1/drain.lock"; flock 8; echo held; cat >/dev/null', 'sh', APP],
      { cwd: home, stdio: ['pipe', 'pipe', 'inherit'] }
    );
    await new Promise<void>((resolve) => job.stdout!.on('data', () => resolve()));
    try {
      const r = runScript(lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 1, { keeper: false }));
      expect(r.code).toBe(75);
      expect(r.stdout).toBe('@@drain-wait\n@@lock-timeout the previous deploy is still draining its old colour\n');
      expect(readLease()).toBeUndefined();
    } finally {
      job.kill('SIGKILL');
    }
  });

  test('keeper: each heartbeat renews the lease, EOF removes it', () => {
    const r = runScript(lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 0), '...');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^@@locked d1\.aa\n(@@renewed \d+\n){3}$/);
    expect(readLease()).toBeUndefined();
  });

  test('keeper: without heartbeats it releases the lease after the TTL', () => {
    const s = lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 0, { ttlSeconds: 1 });
    // stdin stays open and silent (a runner that vanished without its connection closing)
    const r = spawnSync('dash', ['-c', 'sleep 3 | dash -c "$0" sh "$@"', s.body, ...s.args], {
      cwd: home,
      encoding: 'utf8',
      timeout: 20000
    });
    expect(r.stdout).toBe('@@locked d1.aa\n@@lease-expired no heartbeat for 1 s\n');
    expect(readLease()).toBeUndefined();
  });

  test('keeper: does not hold the lock file while it waits, and never removes a lease that is not its own', async () => {
    const s = lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 0);
    const keeper = await host.open(s.body, s.args);
    await new Promise<void>((resolve) => keeper.on('data', () => resolve()));
    expect(spawnSync('flock', ['-n', path.join(home, '.bluegreen', APP, 'lock'), 'true']).status).toBe(0);
    writeLease('d2.bb', hostNow() + 600, owner('d2')); // taken over (as if ours had expired)
    const out: string[] = [];
    keeper.on('data', (b: Buffer) => out.push(b.toString()));
    const code = new Promise((r) => keeper.once('exit', r));
    keeper.write('.');
    expect(await code).toBe(76);
    expect(out.join('')).toBe(`@@lease-lost ${JSON.stringify(owner('d2'))}\n`);
    expect(readLease()!.token).toBe('d2.bb');
  });

  test("renew and release without a keeper; release leaves another deploy's lease alone", () => {
    runScript(lockScript(APP, 'd1.aa', JSON.stringify(owner('d1')), 0, { keeper: false, ttlSeconds: 5 }));
    const r = runScript(renewLeaseScript(APP, 'd1.aa', 600));
    expect(r.stdout).toMatch(/^@@renewed \d+\n$/);
    expect(readLease()!.expires).toBeGreaterThan(hostNow() + 500);
    expect(readLease()!.owner).toEqual(owner('d1'));
    expect(runScript(releaseLeaseScript(APP, 'd9.zz')).stdout).toBe('@@not-ours\n');
    expect(readLease()!.token).toBe('d1.aa');
    expect(runScript(renewLeaseScript(APP, 'd9.zz')).code).toBe(76);
    expect(runScript(releaseLeaseScript(APP, 'd1.aa')).stdout).toBe('@@released\n');
    expect(readLease()).toBeUndefined();
  });

  test('the finishing job waits for drain.lock held for an instant (a concurrent status probe) instead of failing', async () => {
    fs.mkdirSync(path.join(home, '.bluegreen', APP), { recursive: true });
    // holds drain.lock for ~1 s, as a slow `flock -n drain.lock true` of statusScript would for a moment
    const probe = spawn('dash', ['-c', 'exec 8>>".bluegreen/$1/drain.lock"; flock 8; echo held; sleep 1', 'sh', APP], {
      cwd: home,
      stdio: ['ignore', 'pipe', 'inherit']
    });
    await new Promise<void>((resolve) => probe.stdout!.on('data', () => resolve()));
    const s = finishScript(['false'], APP, {
      drainMs: 0,
      stopTimeoutSeconds: 1,
      removeNames: [],
      removeImages: [],
      background: true
    });
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const c = spawn('dash', ['-c', s.body, 'sh', ...s.args], { cwd: home, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      c.on('close', (code) => resolve({ code, stdout, stderr }));
    });
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/^@@background \d+\n$/);
    const log = path.join(home, '.bluegreen', APP, 'drain.log');
    await until('the job to finish', () => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes(' done'));
    expect(fs.readFileSync(log, 'utf8')).toContain('exit 0');
  });

  test('lease_ok: our deployId and not expired', () => {
    const ok = (id: string) => runScript({ body: `${LEASE_GUARD}\nlease_ok "$1" "$2"`, args: [APP, id] }).code;
    expect(ok('d1')).toBe(1);
    writeLease('d1.aa', hostNow() + 60, owner('d1'));
    expect([ok('d1'), ok('d2'), ok('d')]).toEqual([0, 1, 1]);
    writeLease('d1.aa', hostNow() - 1, owner('d1'));
    expect(ok('d1')).toBe(1);
  });
});

d('runner side (acquireLock)', () => {
  const acquire = (deployId: string, extra: Partial<Parameters<typeof acquireLock>[1]> = {}) =>
    acquireLock(host, {
      app: APP,
      deployId,
      owner: owner(deployId),
      timeoutSeconds: 0,
      log,
      heartbeatMs: 100,
      ...extra
    });

  test('heartbeats keep the lease alive past its TTL; release removes it at once', async () => {
    const lock = await acquire('d1', { ttlSeconds: 1 });
    expect(readLease()!.token).toBe(lock.token);
    const first = readLease()!.expires;
    await until('a renewal', () => (readLease()?.expires ?? 0) > first);
    await sleep(1500); // longer than the TTL: only the renewals keep it
    expect(readLease()!.token).toBe(lock.token);
    expect(lock.lost).toBeUndefined();
    await lock.release();
    expect(readLease()).toBeUndefined();
    expect(lock.signal.aborted).toBe(false);
  });

  test('a lost connection is known: the signal aborts with the reason', async () => {
    const lock = await acquire('d1');
    host.drop();
    await until('the loss to be noticed', () => lock.signal.aborted);
    expect(lock.lost).toMatch(/closed \(SSH connection lost\?\)/);
    // the killed keeper could not release it: the lease is left to expire, or to be re-taken by this run
    expect(readLease()!.token).toBe(lock.token);
    host.connected = true;
    const again = await acquire('d1');
    expect(readLease()!.token).toBe(again.token);
    await again.release();
    await lock.release();
    expect(readLease()).toBeUndefined();
  });

  test('a runner that stops its heartbeats loses the lease after the TTL, and is told so', async () => {
    const lock = await acquire('d1', { ttlSeconds: 1, heartbeatMs: 60_000 });
    await until('the keeper to give up', () => lock.signal.aborted);
    expect(lock.lost).toMatch(/heard no heartbeat|ended|may have expired/);
    expect(readLease()).toBeUndefined();
    await lock.release();
  });

  test('another deploy holds it: a lock StepError naming the holder', async () => {
    writeLease('d2.bb', hostNow() + 600, owner('d2'));
    const e = await acquire('d1', { timeoutSeconds: 1 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(StepError);
    expect((e as StepError).message).toBe(
      `another deploy of ${APP} still holds the lock on this host after 1 s (deploy d2 by tester since 2026-01-01T10:00:00.000Z); raise lock-timeout-seconds or use a workflow concurrency group`
    );
    expect(logged).toEqual([
      `info another deploy holds the lock (deploy d2 by tester since 2026-01-01T10:00:00.000Z); waiting up to 1 s`
    ]);
  });

  test('a cancel while waiting ends the wait', async () => {
    writeLease('d2.bb', hostNow() + 600, owner('d2'));
    const ac = new AbortController();
    const p = acquire('d1', { timeoutSeconds: 60, signal: ac.signal }).catch((x: unknown) => x);
    await until('the wait to start', () => logged.length > 0);
    ac.abort('the run was cancelled');
    const e = (await p) as StepError;
    expect([e.step, e.message]).toEqual(['lock', 'the run was cancelled while waiting for the deploy lock']);
    expect(readLease()!.token).toBe('d2.bb');
  });
});
