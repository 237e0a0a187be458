/**
 * From a started candidate to traffic on it, verified: the same sequence for every router, which the deploy drives
 * and the router answers at each point (see src/traffic/router.ts for the table).
 */
import type { StepTimer } from '../log/steps.js';
import { containerName } from '../model/host.js';
import { watchBeside, type Cutover, type Router, type RouterContext } from '../traffic/router.js';

/** What the sequence needs of the host deployment it runs in. */
export interface CutoverSteps {
  router: Router;
  ctx: RouterContext;
  timer: StepTimer;
  /** The health wait: the container answers 2xx on the port (fails at once if it exits or restarts). */
  waitHealthy(port: number, container: string): Promise<void>;
  /** The user's smoke test, on the candidate before it takes traffic. */
  beforeTraffic(port: number): Promise<void>;
  /** Makes sure this run still holds the host's deploy lock before changing the host. */
  ensureLock(): Promise<void>;
  /** From now on traffic may be on the candidate: a failure switches back. */
  trafficMayMove(): void;
  /** The verify-seconds watch of our probes. */
  watch(port: number): Promise<void>;
}

export async function cutOver(d: CutoverSteps): Promise<Cutover> {
  const { router: r, ctx, timer } = d;
  const { cfg, plan } = ctx;
  const port = r.probePort(plan.candidate);
  const name = containerName(cfg.app, plan.candidate);
  if (r.startVerb === 'run') {
    let lockLost = false;
    try {
      await timer.run('health', async () => {
        await r.beforeHealth?.(ctx);
        await d.waitHealthy(port, name);
        if (r.afterHealth) {
          await d.ensureLock().catch((e: unknown) => {
            lockLost = true;
            throw e;
          });
          await r.afterHealth(ctx);
        }
      });
      await d.beforeTraffic(port);
      timer.checkCancelled();
    } catch (e) {
      // Nothing took traffic yet: the router puts back what it changed for the candidate (never throws) — on the
      // host only while this run still owns it (another deploy that took the lock decides what its proxy does).
      await r.abandon?.(ctx, { ownsHost: !lockLost });
      throw e;
    }
  } else timer.checkCancelled();
  const switchStart = Date.now();
  let cutover: Cutover = {};
  await timer.run('switch', async () => {
    await d.ensureLock();
    // The router's change may reach the host even if its answer never arrives: from here the undo reads the host.
    d.trafficMayMove();
    cutover = await r.switchTraffic(ctx);
  });
  if (r.startVerb === 'create') {
    // The candidate starts only at the switch (it takes the live colour's port): the time until it is healthy is
    // the real downtime.
    await timer.run('health', () => d.waitHealthy(port, name));
    const ms = Date.now() - switchStart;
    ctx.log.info(
      plan.live ? `${r.kind} downtime: ${ms} ms (old stopped until new healthy)` : `first start took ${ms} ms`
    );
    cutover = { ...cutover, cutoverMs: ms, downtimeMs: plan.live ? ms : undefined };
  }
  await timer.run('verify', async () => {
    await r.confirm?.(ctx, cutover);
    await ctx.probe('verify', port);
    const check = r.watchCheck?.(ctx);
    await (check ? watchBeside(d.watch(port), check.check, check.everyMs) : d.watch(port));
    await r.afterVerify?.(ctx);
  });
  return cutover;
}
