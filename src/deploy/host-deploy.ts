/**
 * One host's deploy (or rollback) as explicit phases, each with one undo rule — whatever stops it there (an
 * error, a cancel, a fleet abort, a lost connection):
 *
 *   phase      steps                                undo
 *   prepare    lock, login, pull, detect            nothing changed on the host
 *   started    start, health, smoke test            remove this run's candidate, put back the standby it replaced
 *   traffic    switch, verify, wait-fleet           put the previous colour back if this run moved traffic, then as above
 *   committed  drain, stop, cleanup, record         none: the verified new colour stays live (problems are warnings)
 *
 * The undo never trusts what the runner believed before the failure: it reads the host again (after
 * reconnecting and re-taking the lock if the connection was lost) and touches only containers and upstream
 * content that carry this run's deploy id.
 *
 * This file is the sequence and its undo; the steps it runs are in host-steps.ts (lock, pull, detect, start, health,
 * probes), the router's part of health, switch and verify in cutover.ts, and the committed steps in host-finish.ts.
 */
import { imageReference } from '../model/image.js';
import { parseDiscardOutput } from '../remote/outputs.js';
import { type HostState } from '../model/host.js';
import { discardCandidateScript, recordScript, stopScript } from '../remote/scripts.js';
import { Prober } from '../probe/health.js';
import { StepError, type HostResult } from '../model/results.js';

import { HostFinish } from './host-finish.js';
export { lockOwner, type FleetHooks, type HostDeployInput, type Phase } from './host-steps.js';
export { explainPullError, matchesVersion } from './versions.js';

export class HostDeployment extends HostFinish {
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

  /**
   * After a dropped connection: reconnect (a few tries with backoff) and take the lock again — the same run's
   * lock, so it never waits on itself — before anything is read or changed.
   */
  protected async reconnectIfLost(): Promise<boolean> {
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
  protected async undo(): Promise<HostResult['result']> {
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
  protected async discardCandidate(state?: HostState): Promise<void> {
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
}
