/**
 * port-swap mode, for hosts without a proxy: the candidate is created bound to public-port; at the switch the old
 * container stops and the candidate starts. Real downtime (old stopped until new healthy), measured and reported.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import { containerName, type HostState } from '../../model/host.js';

import { portSwapScript } from '../../remote/scripts.js';
import { exec, type Cutover, type Router, type RouterContext, type SwitchBack } from '../router.js';

export class PortSwapRouter implements Router {
  readonly kind = 'port-swap' as const;
  readonly startVerb = 'create' as const;
  readonly discardBeforeSwitchBack = true;

  constructor(private readonly cfg: DeployConfig) {}

  publishArgs(): string[] {
    return ['--publish', `${this.cfg.publicPort}:${this.cfg.containerPort}`];
  }

  routingFile(): string {
    return '';
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

  /** Stops the live colour and starts the candidate on the public port; the deploy then waits for its health. */
  async switchTraffic(ctx: RouterContext): Promise<Cutover> {
    const { cfg, plan } = ctx;
    const stopName = plan.live ? containerName(cfg.app, plan.live) : undefined;
    const candidate = containerName(cfg.app, plan.candidate);
    await exec(
      ctx,
      'switch',
      portSwapScript(cfg.dockerCommand, stopName, candidate, cfg.stopTimeoutSeconds),
      `stop ${stopName ?? '(nothing live)'} and start ${candidate} on port ${cfg.publicPort}`
    );
    return {};
  }

  /** The candidate was removed first (it holds the port): the previous colour starts again if it is stopped. */
  async switchBack(ctx: RouterContext, state: HostState): Promise<SwitchBack> {
    const { cfg, plan } = ctx;
    const live = plan.live ? containerName(cfg.app, plan.live) : undefined;
    const old = live ? state.containers.find((c) => c.name === live) : undefined;
    if (!live || !old || old.running) return { moved: false };
    await exec(
      ctx,
      'switch-back',
      portSwapScript(cfg.dockerCommand, undefined, live, cfg.stopTimeoutSeconds),
      `start ${live} again`
    );
    return { moved: true, restarted: { port: cfg.publicPort, container: live } };
  }
}
