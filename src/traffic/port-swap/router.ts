/**
 * port-swap mode, for hosts without a proxy: the candidate is created bound to public-port; at the switch the old
 * container stops and the candidate starts. Real downtime (old stopped until new healthy), measured and reported.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import { containerName } from '../../model/host.js';
import type { HostState } from '../../model/host.js';
import { portSwapScript } from '../../remote/scripts.js';
import type { Cutover, RouterHost, TrafficRouter } from '../router.js';

export class PortSwapRouter implements TrafficRouter {
  readonly kind = 'port-swap' as const;
  readonly startVerb = 'create' as const;

  constructor(private readonly cfg: DeployConfig) {}

  publishArgs(): string[] {
    return ['--publish', `${this.cfg.publicPort}:${this.cfg.containerPort}`];
  }

  /** Nothing routes: the running colour is the one bound to the public port. */
  routedColor(): Color | undefined {
    return undefined;
  }

  probePort(): number {
    return this.cfg.publicPort;
  }

  retire(): string | undefined {
    return undefined;
  }

  async cutOver(h: RouterHost): Promise<Cutover> {
    const { cfg, plan, timer } = h;
    const stopName = plan.live ? containerName(cfg.app, plan.live) : undefined;
    const candidate = containerName(cfg.app, plan.candidate);
    timer.checkCancelled();
    const swapStart = Date.now();
    await timer.run('switch', async () => {
      await h.ensureLock();
      h.trafficMayHaveMoved();
      await h.exec(
        'switch',
        portSwapScript(cfg.dockerCommand, stopName, candidate, cfg.stopTimeoutSeconds),
        `stop ${stopName ?? '(nothing live)'} and start ${candidate} on port ${cfg.publicPort}`
      );
    });
    await timer.run('health', () => h.waitHealthy(cfg.publicPort, candidate));
    const cutoverMs = Date.now() - swapStart;
    h.log.info(
      plan.live
        ? `port-swap downtime: ${cutoverMs} ms (old stopped until new healthy)`
        : `first start took ${cutoverMs} ms`
    );
    await timer.run('verify', async () => {
      await h.probeOnce('verify', cfg.publicPort);
      await h.watch(cfg.publicPort);
    });
    return { cutoverMs, downtimeMs: plan.live ? cutoverMs : undefined, workersBefore: [] };
  }

  async switchBack(h: RouterHost, state: HostState): Promise<boolean> {
    const { cfg, plan } = h;
    const live = plan.live ? containerName(cfg.app, plan.live) : undefined;
    const old = live ? state.containers.find((c) => c.name === live) : undefined;
    // The candidate holds the public port: it goes first, then the old colour binds it again.
    await h.discardCandidate(state);
    if (!live || !old) return false;
    if (old.running) return false;
    await h.exec(
      'switch-back',
      portSwapScript(cfg.dockerCommand, undefined, live, cfg.stopTimeoutSeconds),
      `start ${live} again`
    );
    await h.waitHealthy(cfg.publicPort, live);
    return true;
  }
}
