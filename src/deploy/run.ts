/** A deploy across all hosts: the registry token once on the runner, then every host in parallel. */
import type { RunContext } from '../model/context.js';
import { imageReference } from '../model/image.js';
import type { DeployConfig, HostTarget, SshSettings } from '../model/config.js';
import type { RegistryCredentials } from '../registry/ecr.js';
import { dockerAuthValue, type LoginMode } from '../remote/scripts.js';
import type { HostLog, RunLog } from '../log/log.js';
import type { Secrets } from '../log/secrets.js';
import type { ConnectOptions, RemoteHost } from '../transport/remote-host.js';
import type { TrafficDeps } from '../traffic/registry/index.js';
import { trafficFor } from '../traffic/registry/index.js';
import { runRollout, type DeployOne } from './fleet.js';
import { HostDeployment, lockOwner } from './host-deploy.js';
import { acquireLock, type HeldLock, type LockLog } from './lock.js';
import { smokeTestHook } from './smoke-test.js';
import { StepTimer } from '../log/steps.js';
import {
  StepError,
  type HostResult,
  type Result,
  type RunResult,
  type SmokeTestReport,
  type StepRecord
} from '../model/results.js';

export interface RunDeps {
  connect(target: HostTarget, ssh: SshSettings, opts?: ConnectOptions): Promise<RemoteHost>;
  fetchEcrToken(region: string): Promise<RegistryCredentials>;
  /** Aborted when the workflow run is cancelled. */
  signal?: AbortSignal;
  /** Tests: instead of EC2 DescribeInstances for instance ids and tag selectors (src/hosts/resolve.ts). */
  resolveHosts?: (cfg: DeployConfig) => Promise<DeployConfig>;
  /** traffic alb: the load balancer's API client (default: the AWS SDK's, loaded when first needed). */
  elb?: TrafficDeps['elb'];
}

export function newDeployId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${Math.random().toString(16).slice(2, 8)}`;
}

export function overallResult(hosts: HostResult[]): Result {
  if (hosts.length && hosts.every((h) => h.result === 'success')) return 'success';
  if (hosts.some((h) => h.result === 'failed')) return 'failed';
  if (hosts.some((h) => h.result === 'rolled-back')) return 'rolled-back';
  return 'failed';
}

export async function runDeploy(
  cfg: DeployConfig,
  ctx: RunContext,
  log: RunLog,
  secrets: Secrets,
  deps: RunDeps,
  deployId = newDeployId()
): Promise<RunResult> {
  const started = Date.now();
  const runSteps: StepRecord[] = [];
  const base = {
    deployId,
    command: cfg.command,
    app: cfg.app,
    image: cfg.command === 'deploy' ? imageReference(cfg.image) : '',
    startedAt: new Date(started).toISOString()
  };
  // One run's traffic: a router per host and what they share (alb: one API client and, alb-listener, one fleet switch).
  const traffic = trafficFor(cfg, { elb: deps.elb, note: (m) => log.log('info', m) });
  const finish = (hosts: HostResult[], error?: RunResult['error']): RunResult => {
    const albReport = traffic.report?.();
    return {
      ...base,
      result: error && !hosts.length ? 'failed' : overallResult(hosts),
      endedAt: new Date().toISOString(),
      durationMs: Date.now() - started,
      steps: runSteps,
      hosts,
      error,
      ...(albReport ? { alb: albReport } : {})
    };
  };

  let login: LoginMode = { kind: 'none' };
  // Only a deploy (or a rollback-to of a version that is not kept) pulls; a plain rollback needs no registry.
  const mayPull =
    cfg.command === 'deploy' ||
    (cfg.command === 'rollback' && Boolean(cfg.rollbackTo) && Boolean(cfg.image.repository));
  if (!mayPull) {
    // no login
  } else if (cfg.registryAuth === 'ecr') {
    const t0 = Date.now();
    log.log('info', `fetching an ECR authorization token in ${cfg.awsRegion}`, { step: 'ecr-token' });
    try {
      const creds = await deps.fetchEcrToken(cfg.awsRegion!);
      secrets.add(creds.password);
      login = { kind: 'password', registry: cfg.image.registry, username: creds.username, password: creds.password };
      runSteps.push(stepRecord('ecr-token', t0, 'ok'));
    } catch (e) {
      const message = (e as Error).message;
      runSteps.push(stepRecord('ecr-token', t0, 'failed', message));
      log.log('error', message, { step: 'ecr-token' });
      return finish([], { step: 'ecr-token', message });
    }
  } else if (cfg.registryAuth === 'password' && cfg.registryCredentials) {
    login = { kind: 'password', registry: cfg.image.registry, ...cfg.registryCredentials };
  } else if (cfg.registryAuth === 'ecr-on-host') {
    login = { kind: 'ecr-on-host', registry: cfg.image.registry, region: cfg.awsRegion! };
  }
  if (login.kind === 'password') secrets.add(dockerAuthValue(login.username, login.password));

  const allOrNothing = cfg.rollout.onHostFailure === 'rollback-all' && cfg.hosts.length > 1;
  const sessions = new Map<string, HostSession>();
  const openSession = (target: HostTarget, signal?: AbortSignal): HostSession => {
    const log0 = log.forHost(target.label);
    const s: HostSession = {
      target,
      log: log0,
      timer: new StepTimer(log0, signal),
      startedAt: Date.now(),
      remotes: [],
      connect: () =>
        deps
          .connect(target, cfg.ssh, {
            signal: s.timer.signal,
            onRetry: (n, e, waitMs) =>
              log0.warn(`connect attempt ${n} failed (${e.message}); retrying in ${waitMs / 1000} s`)
          })
          .then((r) => {
            s.remotes.push(r);
            return r;
          })
    };
    sessions.set(target.label, s);
    return s;
  };
  const failedAt = (s: HostSession, step: 'connect' | 'lock', err: Error, batch?: number): HostResult => ({
    host: s.target.label,
    result: 'failed',
    image: base.image,
    durationMs: Date.now() - s.startedAt,
    switched: false,
    steps: s.timer.steps,
    error: { step, message: err.message },
    warnings: [],
    batch,
    startedAt: new Date(s.startedAt).toISOString()
  });

  let upFront: HostResult[] | undefined;
  if (allOrNothing)
    upFront = await lockFleet([...cfg.hosts], openSession, failedAt, cfg, deployId, ctx, log, deps.signal);

  const deployOne: DeployOne = async (target, batch, signal, fleet) => {
    const pre = sessions.get(target.label);
    const s = pre ?? openSession(target, signal);
    s.timer.signal = signal;
    // A host locked up front starts its deploy when its batch does.
    const meta = { batch, startedAt: new Date(pre ? Date.now() : s.startedAt).toISOString() };
    // alb-listener: the fleet's switch waits for every host to say how it ended, so this one says it exactly once,
    // even if its deploy threw.
    let said = false;
    const hostDone = (ok: boolean, step?: string) => {
      if (!said) traffic.hostDone?.(target.label, ok, step);
      said = true;
    };
    try {
      let remote = s.remotes[0];
      if (!remote) {
        try {
          remote = await s.timer.run('connect', s.connect);
        } catch (e) {
          s.log.error(`connect failed: ${(e as Error).message}`);
          fleet?.failed(e as StepError);
          hostDone(false, 'connect');
          return failedAt(s, 'connect', e as Error, batch);
        }
      }
      let smokeTest: SmokeTestReport | undefined;
      const beforeTraffic = smokeTestHook(cfg, target, deployId, (r) => (smokeTest = r));
      const router = traffic.routerFor(target);
      const result = await new HostDeployment({
        cfg,
        ctx,
        deployId,
        remote,
        log: s.log,
        timer: s.timer,
        login,
        lock: s.lock,
        reconnect: s.connect,
        fleet,
        beforeTraffic,
        router
      }).run();
      hostDone(result.result === 'success', result.error?.step);
      const loadBalancer = router?.report?.();
      return { ...result, ...meta, ...(smokeTest ? { smokeTest } : {}), ...(loadBalancer ? { loadBalancer } : {}) };
    } finally {
      hostDone(false, 'deploy');
      for (const r of s.remotes) r.close();
    }
  };
  let hosts: HostResult[];
  try {
    hosts =
      upFront ?? (await runRollout(cfg.hosts, cfg.rollout, deployOne, (msg) => log.log('info', msg), deps.signal));
  } finally {
    await traffic.close?.();
    // Hosts locked up front whose batch never started (the rollout stopped), or anything an error left open: let go.
    await Promise.all(
      [...sessions.values()].map(async (s) => {
        await s.lock?.release().catch(() => undefined);
        for (const r of s.remotes) r.close();
      })
    );
  }
  if (deps.signal?.aborted) {
    // A cancel is nobody's failure: say so instead of naming the first host that stopped.
    const first = hosts.find((h) => h.error && !h.abortedBy);
    const message =
      first?.error && /cancelled/.test(first.error.message)
        ? first.error.message
        : 'the workflow run was cancelled (SIGINT/SIGTERM)';
    return finish(hosts, {
      step: first?.error?.step ?? 'connect',
      host: hosts.length === 1 ? first?.host : undefined,
      message
    });
  }
  // The run's error is the host that failed on its own, not one stopped because of it.
  const failed = hosts.find((h) => h.error && !h.abortedBy) ?? hosts.find((h) => h.error);
  return finish(hosts, failed?.error ? { ...failed.error, host: failed.host } : undefined);
}

/** One host's connection(s), log and step timer for the run. */
interface HostSession {
  target: HostTarget;
  log: HostLog;
  timer: StepTimer;
  startedAt: number;
  /** Every connection opened to the host (a reconnect adds one); all closed when the host is done. */
  remotes: RemoteHost[];
  connect: () => Promise<RemoteHost>;
  /** Taken up front (all-or-nothing). */
  lock?: HeldLock;
}

/**
 * All-or-nothing: every host's lock is taken before any host deploys. First all at once without waiting (a free
 * fleet: one round trip); if any host is busy, every lock taken is let go and the hosts are locked one after the
 * other in one order (by address) that every run uses, each waiting its turn. Two overlapping fleet deploys can then
 * never each hold some hosts while waiting for the others (a deadlock until lock-timeout-seconds): nobody waits
 * while holding out of order, and in order the second simply waits for the first at its first host. Connecting is
 * done for all hosts at once. Returns the results when the fleet cannot
 * start (a host failed to connect or to lock: nothing was touched, every lock taken is released), else undefined.
 */
async function lockFleet(
  targets: HostTarget[],
  open: (t: HostTarget, signal?: AbortSignal) => HostSession,
  failedAt: (s: HostSession, step: 'connect' | 'lock', err: Error) => HostResult,
  cfg: DeployConfig,
  deployId: string,
  ctx: RunContext,
  log: RunLog,
  signal?: AbortSignal
): Promise<HostResult[] | undefined> {
  const all = targets.map((t) => open(t, signal));
  const failures = new Map<string, HostResult>();
  await Promise.all(
    all.map((s) =>
      s.timer.run('connect', s.connect).catch((e: Error) => {
        s.log.error(`connect failed: ${e.message}`);
        failures.set(s.target.label, failedAt(s, 'connect', e));
      })
    )
  );
  if (!failures.size) {
    const take = (s: HostSession, timeoutSeconds: number, lockLog: LockLog) =>
      acquireLock(s.remotes[0], {
        app: cfg.app,
        deployId,
        owner: lockOwner(deployId, ctx),
        timeoutSeconds,
        log: lockLog,
        signal
      });
    for (const s of all) s.timer.begin('lock');
    // First every host at once, none waiting (timeout 0): a free fleet is locked in one round trip. Waiting while
    // holding some is what deadlocks, so if any host is busy every lock taken is let go first, then the hosts are
    // locked in order, each waiting its turn.
    const quick = await Promise.all(
      all.map((s) =>
        take(s, 0, { info: (m) => s.log.debug(m), warn: (m) => s.log.warn(m), debug: (m) => s.log.debug(m) }).catch(
          () => undefined
        )
      )
    );
    if (quick.every((l) => l !== undefined)) {
      all.forEach((s, i) => {
        s.lock = quick[i];
        s.timer.end('ok');
      });
    } else {
      const busy = all.filter((_, i) => !quick[i]).map((s) => s.target.label);
      log.log(
        'info',
        `the deploy lock is busy on ${busy.join(', ')}: letting go of the others, then locking the hosts one after another in a fixed order`
      );
      await Promise.all(quick.map((l) => l?.release().catch(() => undefined)));
      const ordered = [...all].sort((a, b) => lockOrder(a.target).localeCompare(lockOrder(b.target)));
      for (const s of ordered) {
        try {
          s.timer.checkCancelled();
          s.lock = await take(s, cfg.lockTimeoutSeconds, s.log);
          s.timer.end('ok');
        } catch (e) {
          const err = e instanceof StepError ? e : new StepError('lock', (e as Error).message);
          s.timer.end('failed', err.message);
          s.log.error(`lock failed: ${err.message}`);
          failures.set(s.target.label, failedAt(s, 'lock', err));
          break;
        }
      }
      // the hosts after the one that failed were never tried: no lock step for them
      for (const s of ordered) if (!s.lock && !failures.has(s.target.label)) s.timer.abandon();
    }
  }
  if (!failures.size) return undefined;
  const [first] = failures.values();
  log.log('error', `${first.host} failed at ${first.error!.step}: no host was touched (on-host-failure: rollback-all)`);
  return Promise.all(
    all.map(async (s) => {
      await s.lock?.release().catch(() => undefined);
      for (const r of s.remotes) r.close();
      const own = failures.get(s.target.label);
      if (own) return own;
      return {
        host: s.target.label,
        result: 'skipped',
        image: '',
        durationMs: Date.now() - s.startedAt,
        switched: false,
        steps: s.timer.steps,
        warnings: [],
        batch: 0,
        abortedBy: first.host,
        error: { step: first.error!.step, message: `not started: ${first.host} failed at ${first.error!.step}` }
      } satisfies HostResult;
    })
  );
}

/** The order hosts are locked in: the same for every run, whatever order the hosts input lists them in. */
function lockOrder(t: HostTarget): string {
  return `${t.host}:${String(t.port).padStart(5, '0')}`;
}

function stepRecord(
  name: StepRecord['name'],
  start: number,
  status: StepRecord['status'],
  detail?: string
): StepRecord {
  const end = Date.now();
  return {
    name,
    startedAt: new Date(start).toISOString(),
    endedAt: new Date(end).toISOString(),
    durationMs: end - start,
    status,
    detail
  };
}
