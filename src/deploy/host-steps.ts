/**
 * The steps of one host's deploy that the sequence (host-deploy.ts) runs: the lock, login and pull, detect, start,
 * the health wait, the probes and the verify watch, and what the router is given. The sequence and its undo rules
 * are in host-deploy.ts; the finishing steps in host-finish.ts.
 */
import type { RunContext } from '../model/context.js';
import { imageReference, parseImage, type ImageRef } from '../model/image.js';
import type { Color, DeployConfig } from '../model/config.js';
import { parseDetectOutput, parsePullDigests } from '../remote/outputs.js';
import { type HostState } from '../model/host.js';
import {
  afterLease,
  detectScript,
  logsScript,
  pullScript,
  restoreReplacedScript,
  startExistingScript,
  startScript,
  type LoginMode,
  type RemoteScript
} from '../remote/scripts.js';
import type { HostLog } from '../log/log.js';
import type { RemoteHost } from '../transport/remote-host.js';
import { routerFor } from '../traffic/registry/index.js';
import type { Cutover, Router, RouterContext } from '../traffic/router.js';
import { runStep } from '../transport/exec.js';
import { cutOver } from './cutover.js';
import { Prober, waitHealthy } from '../probe/health.js';
import { acquireLock, type HeldLock } from './lock.js';
import { planDeploy } from './plan.js';
import { containerName, type Plan } from '../model/host.js';
import { StepTimer } from '../log/steps.js';
import { StepError, type StepName } from '../model/results.js';

import { describeContainer, explainPullError, matchesVersion } from './versions.js';

export interface HostDeployInput {
  cfg: DeployConfig;
  ctx: RunContext;
  deployId: string;
  remote: RemoteHost;
  log: HostLog;
  timer: StepTimer;
  login: LoginMode;
  /** The deploy lock, when the fleet took it already (all-or-nothing takes every host's lock in one order first). */
  lock?: HeldLock;
  /** Opens a new connection to the same host, to clean up after the first one was lost. */
  reconnect?: () => Promise<RemoteHost>;
  /** All-or-nothing across hosts; absent for a single host or on-host-failure: continue. */
  fleet?: FleetHooks;
  /** The host's traffic router when the run shares state between hosts' routers (alb); else routerFor(cfg). */
  router?: Router;
  /**
   * Runs once the candidate is healthy and before it takes any traffic (e.g. the user's smoke test, as its own
   * timed step); a throw fails the host before the switch (the candidate is removed, the live colour untouched).
   */
  beforeTraffic?: (c: {
    remote: RemoteHost;
    port: number;
    color: Color;
    image: string;
    log: HostLog;
    timer: StepTimer;
  }) => Promise<void>;
}

export interface FleetHooks {
  /**
   * Called once the new colour is verified and the old one is still there to go back to. Resolves when
   * every host got this far; throws when another host failed (this host then switches back).
   */
  ready(): Promise<void>;
  /** This host failed on its own: stop the others. */
  failed(error: StepError): void;
  /** The host whose failure stopped this one, if any. */
  abortedBy(): string | undefined;
}

/** How far the deploy got: what the undo has to do (see the table above). */
export type Phase = 'prepare' | 'started' | 'traffic' | 'committed';

/** Who holds the lock, as shown to whoever waits and by `command: status`. */
export function lockOwner(deployId: string, ctx: RunContext): Record<string, unknown> {
  return { deployId, runUrl: ctx.runUrl, actor: ctx.actor, since: new Date().toISOString() };
}

export class HostSteps {
  protected readonly cfg: DeployConfig;
  protected readonly router: Router;
  protected remote: RemoteHost;
  protected readonly log: HostLog;
  protected readonly timer: StepTimer;
  protected prober: Prober;
  protected lock?: HeldLock;
  protected plan?: Plan;
  protected phase: Phase = 'prepare';
  protected switchBackFailed = false;
  /** The image being made live: the input image, or for a rollback the kept standby's. */
  protected target: ImageRef;
  /** Rollback to the kept (stopped) standby container: started again, never removed. */
  protected rollbackKept = false;
  protected digest?: string;
  protected cutover?: Cutover;
  protected candidateLogs?: string;
  protected prunable?: Promise<string[]>;
  protected readonly warnings: string[] = [];
  /** The finishing exchange wrote state and history already (finishScript's record). */
  protected recordedInFinish = false;

  constructor(protected readonly input: HostDeployInput) {
    this.cfg = input.cfg;
    this.router = input.router ?? routerFor(input.cfg);
    this.remote = input.remote;
    this.log = input.log;
    this.timer = input.timer;
    this.lock = input.lock;
    this.prober = new Prober(this.remote, this.log, this.cfg.healthHost);
    this.target =
      input.cfg.command === 'deploy' ? input.cfg.image : { registry: input.cfg.image.registry, repository: '' };
  }

  /** Runs a remote script, logging the command's output; a non-zero exit becomes a StepError. */
  protected exec(
    step: StepName,
    s: RemoteScript,
    what: string,
    onLine?: (line: string) => void,
    quiet = false
  ): Promise<string> {
    return runStep(this.remote, this.log, step, s, what, onLine, quiet);
  }

  protected get docker(): string[] {
    return this.cfg.dockerCommand;
  }

  protected name(color: Color): string {
    return containerName(this.cfg.app, color);
  }

  /** What the traffic router is given of this deployment. */
  protected get routerContext(): RouterContext {
    const timer = this.timer;
    return {
      cfg: this.cfg,
      deployId: this.input.deployId,
      plan: this.plan!,
      log: this.log,
      imageLabel: imageReference(this.target),
      remote: this.remote,
      // read when used: the step timer's signal is replaced when a host joins its rollout batch, and cleared for the undo
      get signal() {
        return timer.signal;
      },
      probe: (step, port) => this.probeOnce(step, port),
      warn: (message) => {
        this.warnings.push(message);
        this.log.warn(message);
      }
    };
  }

  /** The health, switch and verify steps, driven by the deploy, answered by the router (deploy/cutover.ts). */
  protected cutOver(): Promise<Cutover> {
    const plan = this.plan!;
    return cutOver({
      router: this.router,
      ctx: this.routerContext,
      timer: this.timer,
      waitHealthy: (port, container) => this.waitHealthy(port, container),
      beforeTraffic: (port) => this.beforeTraffic(port),
      ensureLock: () => this.ensureLock(),
      trafficMayMove: () => {
        this.phase = 'traffic';
        // The probe after the switch: its connection to the candidate's own port is opened while the switch runs.
        // Not where the candidate takes over the live colour's port (port-swap): that would reach the old one.
        if (this.router.startVerb === 'run') this.prober.prepare(this.router.probePort(plan.candidate));
      },
      watch: (port) => this.watchAfterSwitch(port)
    });
  }

  protected async takeLock(timeoutSeconds = this.cfg.lockTimeoutSeconds): Promise<void> {
    this.lock = await acquireLock(this.remote, {
      app: this.cfg.app,
      deployId: this.input.deployId,
      owner: lockOwner(this.input.deployId, this.input.ctx),
      timeoutSeconds,
      log: this.log,
      signal: this.timer.signal
    });
  }

  /**
   * Sends login + pull now; on the host it waits for this run's lease (afterLease), so it can go out with the lock
   * command. The login/pull steps are timed from when the lock is held (pull()).
   */
  protected startPull(): { out: Promise<string>; pullSeen: boolean } {
    const ref = imageReference(this.target);
    const s = afterLease(
      this.cfg.app,
      this.input.deployId,
      this.leaseWaitSeconds,
      pullScript(this.docker, ref, this.input.login)
    );
    const first: StepName = this.input.login.kind === 'none' ? 'pull' : 'login';
    const st = { out: Promise.resolve(''), pullSeen: false };
    st.out = this.exec(first, s, `login and pull ${ref}`, (line) => {
      if (line !== '@@step pull') return;
      st.pullSeen = true;
      if (this.timer.current === 'login') this.timer.begin('pull');
    });
    st.out.catch(() => undefined);
    return st;
  }

  protected async pull(started = this.startPull()): Promise<void> {
    const ref = imageReference(this.target);
    const first: StepName = this.input.login.kind === 'none' ? 'pull' : 'login';
    let out = '';
    await this.timer
      .run(first, async () => {
        // the login may have finished before the lock step ended
        if (started.pullSeen && this.timer.current === 'login') this.timer.begin('pull');
        out = await started.out;
        if (this.timer.current === 'login') throw new StepError('login', 'the registry login did not complete');
      })
      .catch((e: StepError) => {
        throw new StepError(e.step, explainPullError(e.message, ref));
      });
    const digests = parsePullDigests(out);
    const repo = this.target.repository;
    const match = digests.find((d) => d.split('@')[0] === repo) ?? digests[0];
    this.digest = this.target.digest ?? match?.split('@')[1];
    this.log.info(
      this.digest ? `image ${ref} is ${this.digest}` : `image ${ref} has no registry digest (local image?)`
    );
  }

  /** The host as it is now: containers (with their labels), the upstream file, the recorded state. */
  protected async readState(step: StepName, whenLocked = false): Promise<HostState> {
    const d = detectScript(this.docker, this.cfg.app, this.router.routingFile());
    const s = whenLocked ? afterLease(this.cfg.app, this.input.deployId, this.leaseWaitSeconds, d) : d;
    const state = parseDetectOutput(await this.exec(step, s, 'read containers, upstream and state', undefined, true));
    // haproxy: the routing is HAProxy's server states, read from its runtime API. Only detect needs it to go on;
    // the undo reads HAProxy again itself, and removing a candidate must not depend on reaching HAProxy.
    if (this.router.readRouting) {
      state.upstreamContent = await this.router.readRouting(this.remote).catch((e: Error) => {
        if (step === 'detect') throw e;
        this.log.warn(`${step}: ${e.message}`);
        return undefined;
      });
    }
    return state;
  }

  /** How long a command sent with the lock waits on the host for the lease (the lock's own wait, and then some). */
  protected get leaseWaitSeconds(): number {
    return this.cfg.lockTimeoutSeconds + 30;
  }

  /** readState('detect') sent now, run on the host once the lease is ours, awaited later (a failure surfaces in detect). */
  protected readStateEarly(): Promise<HostState> {
    const p = this.readState('detect', true);
    p.catch(() => undefined);
    return p;
  }

  protected async detect(repaired = false, early?: Promise<HostState>): Promise<Plan> {
    const state = await (early ?? this.readState('detect'));
    if (state.stateUnreadable) this.log.warn('the recorded state file on the host is not valid JSON; ignoring it');
    const plan = planDeploy(this.cfg, this.router, state.containers, state.upstreamContent, state.recordedLive);
    const replaced = `${this.name(plan.candidate)}-replaced`;
    if (plan.leftovers.includes(replaced) && !repaired) {
      // A run was killed between replacing the standby and finishing, before its candidate took traffic (the
      // candidate's colour is not live, so it is not): put the real standby back, then look again.
      this.log.warn(
        `an earlier run was interrupted (${replaced} exists): restoring the standby ${this.name(plan.candidate)}`
      );
      await this.exec(
        'detect',
        restoreReplacedScript(this.docker, this.name(plan.candidate)),
        `repair: remove the interrupted candidate and restore ${replaced}`
      );
      return this.detect(true);
    }
    for (const n of plan.notes) this.log.warn(n);
    if (this.cfg.command === 'rollback') this.planRollback(plan);
    else
      this.log.info(
        plan.live
          ? `live colour: ${plan.live}; deploying to ${plan.candidate}`
          : `no live colour (first deploy); deploying to ${plan.candidate}`
      );
    return plan;
  }

  /** Rollback: the kept standby if it is what was asked for, else (rollback-to) a normal deploy of that version. */
  protected planRollback(plan: Plan): void {
    const kept = plan.byColor[plan.candidate];
    const live = plan.live ? plan.byColor[plan.live] : undefined;
    const wanted = this.cfg.rollbackTo;
    if (wanted && !(kept && matchesVersion(kept, wanted))) {
      if (!this.cfg.image.repository) {
        throw new StepError(
          'detect',
          `rollback-to ${wanted} is not the kept standby (${describeContainer(kept) ?? 'none is kept'}); deploying it needs the image input (the repository)`
        );
      }
      this.target = wanted.startsWith('sha256:')
        ? { ...this.cfg.image, digest: wanted }
        : { ...this.cfg.image, tag: wanted };
      this.log.info(
        `rollback-to ${wanted}: not the kept standby (${describeContainer(kept) ?? 'none'}); deploying ${imageReference(this.target)} to ${plan.candidate}`
      );
      return;
    }
    if (!kept) {
      throw new StepError(
        'detect',
        `nothing to roll back to on this host: no ${plan.candidate} container is kept${live ? `; only ${plan.live} is there (${describeContainer(live)})` : '; no container of this app exists'}. Use rollback-to with a tag from the history (and image), or deploy`
      );
    }
    if (kept.running && plan.live) this.log.warn(`the standby ${kept.name} is running although ${plan.live} is live`);
    this.rollbackKept = true;
    const parsed = parseImage(kept.labels['bluegreen.image'] ?? '');
    this.target =
      typeof parsed === 'string' ? { registry: '', repository: kept.labels['bluegreen.image'] ?? 'unknown' } : parsed;
    this.digest = kept.labels['bluegreen.digest'] || undefined;
    this.log.info(
      `rolling back ${plan.live ? `from ${plan.live} (${describeContainer(live)}) ` : ''}to the kept ${plan.candidate} (${describeContainer(kept)})`
    );
  }

  protected runArgs(color: Color): string[] {
    const cfg = this.cfg;
    const ctx = this.input.ctx;
    const args: string[] = [];
    if (!cfg.dockerRunArgs.some((a) => a === '--restart' || a.startsWith('--restart=')))
      args.push('--restart', 'unless-stopped');
    const labels: Record<string, string> = {
      'bluegreen.app': cfg.app,
      'bluegreen.color': color,
      'bluegreen.image': imageReference(this.target),
      'bluegreen.digest': this.digest ?? '',
      'bluegreen.deploy-id': this.input.deployId,
      'bluegreen.run-url': ctx.runUrl,
      'bluegreen.actor': ctx.actor,
      'bluegreen.deployed-at': new Date().toISOString()
    };
    for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
    args.push(...this.router.publishArgs(color));
    args.push(...cfg.dockerRunArgs);
    args.push(this.digest ? `${this.target.repository}@${this.digest}` : imageReference(this.target));
    return args;
  }

  protected envFile(): string {
    return this.cfg.env.map((v) => `${v.key}=${v.value}\n`).join('');
  }

  /**
   * Before a step that changes the host: if the lease may be gone (the keeper's channel closed, renewals stopped),
   * take it again first — at once if it is still ours; if another deploy took it meanwhile, this fails the step.
   */
  protected async ensureLock(): Promise<void> {
    if (this.lock && !this.lock.signal.aborted) return;
    if (this.lock)
      this.log.warn(`the deploy lock may have been lost (${this.lock.lost}); taking it again before changing the host`);
    void this.lock?.release().catch(() => undefined);
    this.lock = undefined;
    // Our own lease is free to us at once; if another deploy holds it now, waiting would only delay the report.
    await this.takeLock(0);
  }

  /** The start step: from here the host holds a candidate (or the kept standby, started again). */
  protected async startCandidate(): Promise<void> {
    await this.ensureLock();
    const plan = this.plan!;
    const name = this.name(plan.candidate);
    const verb = this.router.startVerb;
    // Only now, after the step's cancel check: a cancel or fleet abort before this point changed nothing.
    this.phase = 'started';
    if (this.rollbackKept) {
      if (verb === 'run')
        await this.exec('start', startExistingScript(this.docker, name), `docker start ${name} (the kept standby)`);
      return;
    }
    const s = startScript(this.docker, verb, name, plan.replaceExisting, this.envFile(), this.runArgs(plan.candidate));
    await this.exec('start', s, `docker ${verb} ${name}`);
  }

  protected async waitHealthy(port: number, container: string): Promise<void> {
    await waitHealthy(
      this.remote,
      this.prober,
      {
        port,
        path: this.cfg.healthPath,
        intervalMs: this.cfg.healthIntervalMs,
        timeoutMs: this.cfg.healthTimeoutMs,
        container,
        dockerCommand: this.docker,
        host: this.cfg.healthHost
      },
      this.log,
      this.timer.signal
    );
  }

  protected async probeOnce(step: StepName, port: number): Promise<void> {
    const p = await this.prober.probe(port, this.cfg.healthPath, 5000);
    if (p.status === undefined || p.status < 200 || p.status >= 300) {
      throw new StepError(
        step,
        `GET ${this.cfg.healthPath} on port ${port} answered ${p.status !== undefined ? `HTTP ${p.status}` : p.error} after the switch`
      );
    }
  }

  /** Hook before the candidate takes traffic (see HostDeployInput.beforeTraffic). */
  protected async beforeTraffic(port: number): Promise<void> {
    const hook = this.input.beforeTraffic;
    if (!hook) return;
    await hook({
      remote: this.remote,
      port,
      color: this.plan!.candidate,
      image: imageReference(this.target),
      log: this.log,
      timer: this.timer
    });
  }

  /** The point of no return: all-or-nothing waits here, the old colour still ready to take traffic back. */
  protected async waitForFleet(): Promise<void> {
    const fleet = this.input.fleet;
    if (!fleet) return;
    await this.timer.run('wait-fleet', async () => {
      this.log.info('verified; waiting for the other hosts before stopping the old colour');
      await fleet.ready();
    });
  }

  /**
   * verify-seconds: keeps probing the new colour while the old one can still take over. Two failed
   * probes in a row (or a restart/exit) fail the step, which switches traffic back.
   */
  protected async watchAfterSwitch(port: number): Promise<void> {
    // A rollback returns to a version that already ran: it must be fast, so it gets no watch window.
    if (this.rollbackKept) return;
    const until = Date.now() + this.cfg.verifyMs;
    const every = Math.max(200, Math.min(1000, this.cfg.healthIntervalMs));
    const name = this.name(this.plan!.candidate);
    let failures = 0;
    let probes = 0;
    while (Date.now() < until) {
      this.timer.checkCancelled();
      await new Promise((r) => setTimeout(r, Math.min(every, Math.max(0, until - Date.now()))));
      probes++;
      const p = await this.prober.probe(port, this.cfg.healthPath, 3000);
      if (p.status !== undefined && p.status >= 200 && p.status < 300) {
        failures = 0;
        continue;
      }
      failures++;
      this.log.warn(`verify probe ${probes}: ${p.status !== undefined ? `HTTP ${p.status}` : p.error}`);
      if (failures >= 2) {
        const ls = logsScript(this.docker, name, 40);
        const logs = (await this.remote.run(ls.body, ls.args)).stdout.trim();
        const secs = ((this.cfg.verifyMs - (until - Date.now())) / 1000).toFixed(1);
        throw new StepError(
          'verify',
          `${name} turned unhealthy ${secs} s after the switch (GET ${this.cfg.healthPath}: ${p.status !== undefined ? `HTTP ${p.status}` : p.error}, twice in a row)`,
          logs
        );
      }
    }
    if (this.cfg.verifyMs > 0)
      this.log.info(`${name} stayed healthy for ${this.cfg.verifyMs / 1000} s after the switch (${probes} probes)`);
  }
}
