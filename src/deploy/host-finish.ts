/** The committed steps of one host's deploy: drain and stop the old colour, clean up, record (host-deploy.ts). */
import { imageReference } from '../model/image.js';
import { finishScript, listImagesScript, recordScript } from '../remote/scripts.js';
import { imagesToPrune, parseImageList } from './images.js';
import { StepError, type HostResult, type StepName } from '../model/results.js';

import { HostSteps } from './host-steps.js';

export abstract class HostFinish extends HostSteps {
  /**
   * keep-images: which image references to prune, read while the candidate boots (a concurrent channel on
   * the same connection), so pruning costs the deploy no round trip. Never fails the deploy.
   */
  protected listPrunableImages(): void {
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
  protected async finish(record?: { stateJson?: string; historyLine: string }): Promise<void> {
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

  protected async record(result: HostResult['result'], durationMs: number, error?: StepError): Promise<void> {
    const { stateJson, historyLine } = this.recordContent(result, durationMs, error);
    await this.exec('record', recordScript(this.cfg.app, stateJson, historyLine), 'record state and history');
  }

  /** What record writes: state.json (on success) and the history line. */
  protected recordContent(
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
