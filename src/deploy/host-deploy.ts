/**
 * One host's deploy (or rollback) as explicit phases, each with one undo rule — whatever stops it there (an
 * error, a cancel, a fleet abort, a lost connection):
 *
 *   phase      steps                                undo
 *   prepare    lock, login, pull, detect            nothing changed on the host
 *   started    start (and health, for nginx)        remove this run's candidate, put back the standby it replaced
 *   traffic    switch, verify, wait-fleet           put the previous colour back if this run moved traffic, then as above
 *   committed  drain, stop, cleanup, record         none: the verified new colour stays live (problems are warnings)
 *
 * The undo never trusts what the runner believed before the failure: it reads the host again (after
 * reconnecting and re-taking the lock if the connection was lost) and touches only containers and upstream
 * content that carry this run's deploy id.
 */
import type { RunContext } from '../model/context.js';
import { imageReference, parseImage, type ImageRef } from '../model/image.js';
import type { Color, DeployConfig } from '../model/config.js';
import { parseDetectOutput, parseDiscardOutput, parsePullDigests } from '../remote/outputs.js';
import { type HostState } from '../model/host.js';
import {
  afterLease,
  detectScript,
  discardCandidateScript,
  finishScript,
  listImagesScript,
  logsScript,
  pullScript,
  recordScript,
  restoreReplacedScript,
  startExistingScript,
  startScript,
  stopScript,
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
import { imagesToPrune, parseImageList } from './images.js';
import { acquireLock, type HeldLock } from './lock.js';
import { planDeploy } from './plan.js';
import { containerName, type ContainerInfo, type Plan } from '../model/host.js';
import { StepTimer } from '../log/steps.js';
import { StepError, type HostResult, type StepName } from '../model/results.js';

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

export class HostDeployment {
  private readonly cfg: DeployConfig;
  private readonly router: Router;
  private remote: RemoteHost;
  private readonly log: HostLog;
  private readonly timer: StepTimer;
  private prober: Prober;
  private lock?: HeldLock;
  private plan?: Plan;
  private phase: Phase = 'prepare';
  private switchBackFailed = false;
  /** The image being made live: the input image, or for a rollback the kept standby's. */
  private target: ImageRef;
  /** Rollback to the kept (stopped) standby container: started again, never removed. */
  private rollbackKept = false;
  private digest?: string;
  private cutover?: Cutover;
  private candidateLogs?: string;
  private prunable?: Promise<string[]>;
  private readonly warnings: string[] = [];
  /** The finishing exchange wrote state and history already (finishScript's record). */
  private recordedInFinish = false;

  constructor(private readonly input: HostDeployInput) {
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
  private exec(
    step: StepName,
    s: RemoteScript,
    what: string,
    onLine?: (line: string) => void,
    quiet = false
  ): Promise<string> {
    return runStep(this.remote, this.log, step, s, what, onLine, quiet);
  }

  private get docker(): string[] {
    return this.cfg.dockerCommand;
  }

  private name(color: Color): string {
    return containerName(this.cfg.app, color);
  }

  /** What the traffic router is given of this deployment. */
  private get routerContext(): RouterContext {
    return {
      cfg: this.cfg,
      deployId: this.input.deployId,
      plan: this.plan!,
      log: this.log,
      imageLabel: imageReference(this.target),
      remote: this.remote,
      signal: this.timer.signal,
      probe: (step, port) => this.probeOnce(step, port),
      warn: (message) => {
        this.warnings.push(message);
        this.log.warn(message);
      }
    };
  }

  /** The health, switch and verify steps, driven by the deploy, answered by the router (deploy/cutover.ts). */
  private cutOver(): Promise<Cutover> {
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

  async run(): Promise<HostResult> {
    const started = Date.now();
    let error: StepError | undefined;
    let result: HostResult['result'] = 'success';
    let recorded: Promise<void> | undefined;
    try {
      // Sent with the lock command (the lock first: it gets the first spare channel), each on its own channel: the
      // host runs them only once the lease is ours (afterLease), so the prepare phase costs the round trip of the lock.
      const locking = this.lock ? undefined : this.timer.run('lock', () => this.takeLock());
      locking?.catch(() => undefined);
      const early = this.readStateEarly();
      const pulling = this.cfg.command === 'deploy' ? this.startPull() : undefined;
      await locking;
      if (pulling) await this.pull(pulling);
      this.plan = await this.timer.run('detect', () => this.detect(false, early));
      if (this.cfg.command === 'rollback' && !this.rollbackKept) await this.pull();
      await this.timer.run('start', () => this.startCandidate());
      this.listPrunableImages();
      this.cutover = await this.cutOver();
      await this.waitForFleet();
      this.phase = 'committed';
      // The finishing job stops the old colour: only while this run still owns the host.
      const owned = await this.ensureLock().then(
        () => true,
        (e: Error) => {
          this.warnings.push(`the old colour was not stopped and nothing was cleaned up: ${e.message}`);
          return false;
        }
      );
      if (owned) {
        // The verified new colour stays whatever the finishing job does (its problems are warnings): the success is
        // recorded in the same exchange that hands the job over (or, when the run drains itself, on a second channel
        // meanwhile); the finishing steps' times are not in the history.
        const rec = this.recordContent('success', Date.now() - started);
        if (this.cfg.waitForDrain) {
          recorded = this.exec(
            'record',
            recordScript(this.cfg.app, rec.stateJson, rec.historyLine),
            'record state and history'
          ).then(() => undefined);
          recorded.catch(() => undefined);
        }
        await this.finish(rec);
        if (this.recordedInFinish) recorded = Promise.resolve();
      }
    } catch (e) {
      error = e instanceof StepError ? e : new StepError(this.timer.current ?? 'detect', (e as Error).message);
      if (error.logs) this.candidateLogs = error.logs;
      if (!this.remote.isConnected()) {
        // "the SSH connection to … was lost (ECONNRESET)" from the transport: keep only the cause.
        const cause = /^the SSH connection to .* was lost \((.*)\)$/.exec(error.message)?.[1] ?? error.message;
        error = new StepError(error.step, `the SSH connection was lost during ${error.step} (${cause})`);
      }
      this.log.error(`${error.step} failed: ${error.message}`);
      const abortedBy = this.input.fleet?.abortedBy();
      if (!abortedBy) this.input.fleet?.failed(error);
      result = await this.undo();
      if (abortedBy && result === 'failed' && this.phase === 'prepare') result = 'skipped';
    }
    if (this.remote.isConnected()) {
      const rec = await this.timer.soft('record', () =>
        result === 'success' && recorded ? recorded : this.record(result, Date.now() - started, error)
      );
      if (rec) this.warnings.push(rec);
    }
    await this.lock?.release().catch(() => undefined);
    this.lock = undefined;
    const plan = this.plan;
    // After a failed switch-back nginx may still send traffic to the candidate: say "unknown", not the old colour.
    const active = result === 'success' ? plan?.candidate : this.switchBackFailed ? undefined : plan?.live;
    return {
      host: this.remote.target.label,
      result,
      activeColor: active,
      previousColor: result === 'success' ? plan?.live : undefined,
      candidateColor: plan?.candidate,
      image: this.target.repository ? imageReference(this.target) : '',
      digest: this.digest,
      cutoverMs: this.cutover?.cutoverMs,
      switchMs: this.cutover?.switchMs,
      downtimeMs: this.cutover?.downtimeMs,
      durationMs: Date.now() - started,
      switched: this.phase === 'traffic' || this.phase === 'committed',
      switchBackFailed: this.switchBackFailed || undefined,
      steps: this.timer.steps,
      error: error ? { step: error.step, message: error.message } : undefined,
      candidateLogs: this.candidateLogs,
      warnings: this.warnings,
      abortedBy: error ? this.input.fleet?.abortedBy() : undefined
    };
  }

  private async takeLock(timeoutSeconds = this.cfg.lockTimeoutSeconds): Promise<void> {
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
  private startPull(): { out: Promise<string>; pullSeen: boolean } {
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

  private async pull(started = this.startPull()): Promise<void> {
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
  private async readState(step: StepName, whenLocked = false): Promise<HostState> {
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
  private get leaseWaitSeconds(): number {
    return this.cfg.lockTimeoutSeconds + 30;
  }

  /** readState('detect') sent now, run on the host once the lease is ours, awaited later (a failure surfaces in detect). */
  private readStateEarly(): Promise<HostState> {
    const p = this.readState('detect', true);
    p.catch(() => undefined);
    return p;
  }

  private async detect(repaired = false, early?: Promise<HostState>): Promise<Plan> {
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
  private planRollback(plan: Plan): void {
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

  private runArgs(color: Color): string[] {
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

  private envFile(): string {
    return this.cfg.env.map((v) => `${v.key}=${v.value}\n`).join('');
  }

  /**
   * Before a step that changes the host: if the lease may be gone (the keeper's channel closed, renewals stopped),
   * take it again first — at once if it is still ours; if another deploy took it meanwhile, this fails the step.
   */
  private async ensureLock(): Promise<void> {
    if (this.lock && !this.lock.signal.aborted) return;
    if (this.lock)
      this.log.warn(`the deploy lock may have been lost (${this.lock.lost}); taking it again before changing the host`);
    void this.lock?.release().catch(() => undefined);
    this.lock = undefined;
    // Our own lease is free to us at once; if another deploy holds it now, waiting would only delay the report.
    await this.takeLock(0);
  }

  /** The start step: from here the host holds a candidate (or the kept standby, started again). */
  private async startCandidate(): Promise<void> {
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

  private async waitHealthy(port: number, container: string): Promise<void> {
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

  private async probeOnce(step: StepName, port: number): Promise<void> {
    const p = await this.prober.probe(port, this.cfg.healthPath, 5000);
    if (p.status === undefined || p.status < 200 || p.status >= 300) {
      throw new StepError(
        step,
        `GET ${this.cfg.healthPath} on port ${port} answered ${p.status !== undefined ? `HTTP ${p.status}` : p.error} after the switch`
      );
    }
  }

  /** Hook before the candidate takes traffic (see HostDeployInput.beforeTraffic). */
  private async beforeTraffic(port: number): Promise<void> {
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
  private async waitForFleet(): Promise<void> {
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
  private async watchAfterSwitch(port: number): Promise<void> {
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

  /**
   * After a dropped connection: reconnect (a few tries with backoff) and take the lock again — the same run's
   * lock, so it never waits on itself — before anything is read or changed.
   */
  private async reconnectIfLost(): Promise<boolean> {
    if (this.remote.isConnected()) return true;
    if (!this.input.reconnect) return false;
    const old = this.lock;
    this.lock = undefined;
    void old?.release().catch(() => undefined); // it died with the connection
    // Each try is a full connect (with its own ssh-connect-retries); a host that stays silent is given up on
    // after about a minute, so the run still ends and reports instead of being killed by the runner.
    const giveUpAt = Date.now() + 45_000;
    for (const [i, wait] of [500, 1500, 4000].entries()) {
      if (i > 0 && Date.now() + wait > giveUpAt) break;
      await new Promise((r) => setTimeout(r, wait));
      try {
        this.remote = await this.input.reconnect();
        this.prober = new Prober(this.remote, this.log, this.cfg.healthHost);
      } catch (e) {
        this.log.warn(`reconnect try ${i + 1} failed: ${(e as Error).message}`);
        continue;
      }
      this.log.warn(`reconnected (try ${i + 1}) to clean up after the lost connection`);
      // The lock is taken again by undo (ensureLock): our own lease is free to us at once.
      return true;
    }
    return false;
  }

  /** The one rescue: the undo rule of the phase reached, decided from the host's state as it is now. */
  private async undo(): Promise<HostResult['result']> {
    const plan = this.plan;
    if (this.phase === 'prepare' || !plan) return 'failed';
    if (this.phase === 'committed') return 'success';
    // The cancel (or the fleet's abort) that may have brought us here must not stop the undo itself: it is
    // bounded on its own (reconnect tries, no lock wait).
    this.timer.signal = undefined;
    if (!(await this.reconnectIfLost())) {
      this.switchBackFailed = this.phase === 'traffic';
      this.warnings.push(
        `could not reconnect to clean up: ${this.phase === 'traffic' ? 'traffic may be on the new colour' : `the candidate ${this.name(plan.candidate)} may be left on the host (the next deploy replaces it)`}`
      );
      return 'failed';
    }
    // Only while this run owns the host: if another deploy took it over meanwhile, it decides what serves.
    const lockProblem = await this.ensureLock().then(
      () => undefined,
      (e: Error) => e.message
    );
    if (lockProblem) {
      this.switchBackFailed = this.phase === 'traffic';
      this.warnings.push(
        `nothing was undone: this run no longer holds the deploy lock (${lockProblem}); another deploy owns the host now`
      );
      return 'failed';
    }
    if (this.phase === 'started') {
      const w = await this.timer.soft('cleanup', async () => this.discardCandidate(await this.readState('cleanup')));
      if (w) this.warnings.push(w);
      return 'failed';
    }
    let movedBack = false;
    const back = await this.timer.soft('switch-back', async () => {
      const state = await this.readState('switch-back');
      // port-swap: the candidate holds the public port, so it goes first.
      if (this.router.discardBeforeSwitchBack) await this.discardCandidate(state);
      const sb = await this.router.switchBack(this.routerContext, state);
      movedBack = sb.moved;
      if (sb.restarted) await this.waitHealthy(sb.restarted.port, sb.restarted.container);
      // Once moved back, the state read before is stale (it still routes to the candidate): remove it unconditionally.
      if (!this.router.discardBeforeSwitchBack) await this.discardCandidate(sb.moved ? undefined : state);
    });
    if (back) {
      this.switchBackFailed = true;
      this.warnings.push(
        back,
        'switching back did not complete: check which colour the host serves before the next deploy'
      );
      return 'failed';
    }
    return movedBack && plan.live ? 'rolled-back' : 'failed';
  }

  /**
   * Undo of `start`. A new candidate is removed only if it carries this run's deploy id (never the kept standby
   * or another run's container), and the standby it replaced is put back. The kept standby of a rollback is
   * stopped again, never removed — unless traffic is routed to it now (another run made it live meanwhile).
   */
  private async discardCandidate(state?: HostState): Promise<void> {
    const plan = this.plan!;
    const name = this.name(plan.candidate);
    const step = this.timer.current ?? 'cleanup';
    if (this.rollbackKept) {
      if (state && this.router.routedColor(state) === plan.candidate) {
        this.log.warn(`${name} takes traffic now: left running`);
        return;
      }
      await this.exec(
        step,
        stopScript(this.docker, name, this.cfg.stopTimeoutSeconds),
        `stop ${name} again (kept as standby)`
      );
      return;
    }
    const out = await this.exec(
      step,
      discardCandidateScript(this.docker, name, this.input.deployId),
      `remove the failed candidate ${name}${plan.replaceExisting ? ' and put back the standby it replaced' : ''}`
    );
    const d = parseDiscardOutput(out);
    if (d.foreign) this.log.info(`${name} was not made by this deploy (it belongs to deploy ${d.foreign}): left alone`);
    if (d.restored) this.log.info(`put back the standby ${name}`);
  }

  /**
   * keep-images: which image references to prune, read while the candidate boots (a concurrent channel on
   * the same connection), so pruning costs the deploy no round trip. Never fails the deploy.
   */
  private listPrunableImages(): void {
    const repo = this.target.repository;
    if (this.cfg.keepImages <= 0 || !repo || this.rollbackKept) return;
    const list = listImagesScript(this.docker, repo, [this.name('blue'), this.name('green')]);
    this.prunable = this.remote
      .run(list.body, list.args)
      .then((res) => {
        if (res.code !== 0) throw new Error(res.stderr.trim() || `exit ${res.code}`);
        const { images, inUse } = parseImageList(res.stdout);
        return imagesToPrune(images, inUse, this.cfg.keepImages);
      })
      .catch((e: Error) => {
        this.log.warn(`could not list the images of ${repo} (keep-images is skipped this time): ${e.message}`);
        return [];
      });
  }

  /**
   * After the point of no return: drain and stop the old colour (nginx), remove the standby the new version
   * replaced and leftovers, prune images. By default a job on the host does it after the run (wait-for-drain).
   */
  private async finish(record?: { stateJson?: string; historyLine: string }): Promise<void> {
    const plan = this.plan!;
    const cfg = this.cfg;
    const names = [...plan.leftovers];
    const replaced = `${this.name(plan.candidate)}-replaced`;
    if (plan.replaceExisting && !this.rollbackKept && !names.includes(replaced)) names.push(replaced);
    // haproxy drained the old colour within the switch already: stop it at once. nginx: the job waits as the router
    // says (old workers, or nginx's connections to the old colour's port).
    const drained = this.cutover?.drained === true;
    const drain = this.cutover?.drain;
    // alb: the load balancer drains the old colour (deregistered) before it is stopped: the run waits for that only
    // with wait-for-drain; otherwise the job on the host waits by the clock (it cannot ask the ALB), as long as the
    // ALB may still drain it. After a failure there the old colour is stopped only after the whole drain-seconds.
    let drainMs = drained && !this.router.drainOld ? 0 : cfg.drainMs;
    if (this.router.drainOld) {
      const albDrain = await this.timer.soft('drain', async () => {
        drainMs = await this.router.drainOld!(this.routerContext, cfg.waitForDrain);
      });
      if (albDrain) this.warnings.push(albDrain);
    }
    const refs = (await this.prunable) ?? [];
    const stopName = this.router.retire(plan);
    if (!stopName && !names.length && !refs.length) return;
    // Handed over to a job: that exchange also records the run and then, once the job holds drain.lock, removes the
    // lease (this run's last round trip on the host).
    const handOver = !cfg.waitForDrain;
    const s = finishScript(this.docker, cfg.app, {
      drain,
      drainMs,
      stopName,
      stopTimeoutSeconds: cfg.stopTimeoutSeconds,
      removeNames: names,
      removeImages: refs,
      background: handOver,
      record: handOver ? record : undefined,
      releaseToken: handOver ? this.lock?.token : undefined
    });
    const secs = drainMs / 1000;
    const what = [
      stopName ? `drain ${stopName} (up to ${secs} s), docker stop it (kept for rollback)` : '',
      names.length ? `remove ${names.join(', ')} (older than the kept standby, or leftovers)` : '',
      refs.length ? `prune ${refs.length} image reference(s) (keep-images ${cfg.keepImages})` : ''
    ]
      .filter(Boolean)
      .join('; ');
    const first: StepName = stopName ? (this.router.drainOld ? 'stop' : 'drain') : 'cleanup';
    const w = await this.timer.soft(first, async () => {
      if (!cfg.waitForDrain) {
        // as the lines come (so a failure after the record is known), and from the whole output (transports that do not stream)
        const said = (line: string) => {
          if (line === '@@recorded') this.recordedInFinish = true;
          if (line === '@@released') this.lock?.releasedOnHost?.();
        };
        const out = await this.exec(first, s, `hand over to a job on the host: ${what}`, said);
        out.split('\n').forEach(said);
        if (out.includes('@@no-setsid')) {
          this.log.warn(
            'setsid is not installed on the host (package util-linux): drained, stopped and cleaned up within the run instead'
          );
          return;
        }
        this.log.info(
          `${stopName ? `${stopName} finishes its in-flight requests; ` : ''}a job on the host does the rest (log ~/.bluegreen/${cfg.app}/drain.log); the next deploy of ${cfg.app} on this host waits for it.`
        );
        return;
      }
      const out = await this.exec(first, s, what, (line) => {
        if (line === '@@stop' && this.timer.current !== 'stop') this.timer.begin('stop');
        if (line === '@@cleanup') this.timer.begin('cleanup');
      });
      const said = stopName ? drain?.said?.(out, stopName, secs) : undefined;
      if (said) this.log.warn(said);
    });
    if (w) this.warnings.push(w);
  }

  private async record(result: HostResult['result'], durationMs: number, error?: StepError): Promise<void> {
    const { stateJson, historyLine } = this.recordContent(result, durationMs, error);
    await this.exec('record', recordScript(this.cfg.app, stateJson, historyLine), 'record state and history');
  }

  /** What record writes: state.json (on success) and the history line. */
  private recordContent(
    result: HostResult['result'],
    durationMs: number,
    error?: StepError
  ): { stateJson?: string; historyLine: string } {
    const plan = this.plan;
    const ctx = this.input.ctx;
    const at = new Date().toISOString();
    const image = this.target.repository ? imageReference(this.target) : '';
    const history = {
      deployId: this.input.deployId,
      at,
      command: this.cfg.command,
      result,
      image,
      digest: this.digest,
      color: plan?.candidate,
      previous: plan?.live,
      actor: ctx.actor,
      runUrl: ctx.runUrl,
      durationMs,
      cutoverMs: this.cutover?.cutoverMs,
      steps: Object.fromEntries(this.timer.steps.map((s) => [s.name, s.durationMs])),
      error: error ? `${error.step}: ${error.message}`.slice(0, 500) : undefined
    };
    const state =
      result === 'success' && plan
        ? JSON.stringify({
            app: this.cfg.app,
            live: plan.candidate,
            standby: plan.live,
            image,
            digest: this.digest,
            deployId: this.input.deployId,
            deployedAt: at,
            actor: ctx.actor,
            runUrl: ctx.runUrl
          })
        : undefined;
    return { stateJson: state, historyLine: JSON.stringify(history) };
  }
}

/** Adds what to do about the usual pull failures. */
export function explainPullError(message: string, ref: string): string {
  if (/command not found|docker: not found|No such file or directory.*docker/i.test(message))
    return `docker is not installed on the host or not on the SSH user's PATH (see docker-command): ${message}`;
  if (/Cannot connect to the Docker daemon|docker\.sock/i.test(message))
    return `docker is not reachable on the host (is dockerd running, and may the SSH user use it? add it to the docker group or set docker-command: sudo -n docker): ${message}`;
  if (
    /manifest unknown|manifest for .* not found|not found: manifest|repository .* not found|pull access denied|no such image|does not exist/i.test(
      message
    )
  )
    return `image ${ref} was not found in the registry (was it pushed, and is the tag right?): ${message}`;
  if (
    /connection refused|no such host|i\/o timeout|dial tcp|server gave HTTP response to HTTPS|TLS handshake timeout/i.test(
      message
    )
  )
    return `the registry for ${ref} is not reachable from the host (is it up, and does the host's network allow it?): ${message}`;
  if (
    /unauthorized|authentication required|denied|no basic auth credentials|401|incorrect username or password/i.test(
      message
    )
  )
    return `the registry refused access to ${ref} (check registry-auth and the credentials or instance role): ${message}`;
  if (/no space left on device/i.test(message))
    return `the host ran out of disk space while pulling ${ref}: ${message}`;
  return message;
}

/** Whether a container runs the given tag or digest (from its labels). */
export function matchesVersion(c: ContainerInfo, wanted: string): boolean {
  if (wanted.startsWith('sha256:')) return c.labels['bluegreen.digest'] === wanted;
  const image = c.labels['bluegreen.image'] ?? '';
  return image.slice(image.lastIndexOf(':') + 1) === wanted && image.lastIndexOf(':') > image.lastIndexOf('/');
}

function describeContainer(c: ContainerInfo | undefined): string | undefined {
  if (!c) return undefined;
  return `${c.name}: ${c.labels['bluegreen.image'] ?? 'unknown image'}, ${c.state}`;
}
