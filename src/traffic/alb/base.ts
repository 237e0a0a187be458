/** What both ALB routers share: the colours published for the load balancer, and this host's targets. */
import type { Color, DeployConfig } from '../../model/config.js';
import { containerName } from '../../model/host.js';
import type { Plan } from '../../model/host.js';
import type { HostStatus } from '../../model/status.js';
import type { RouterStatus, StatusContext } from '../router.js';
import type { ListenerSwitch } from './listener-switch.js';
import { albStatus } from './status.js';
import { HostTargets } from './targets.js';
import { type AlbHostReport } from '../../model/load-balancer.js';
import type { AlbShared } from './traffic.js';

export abstract class AlbRouterBase {
  readonly kind = 'alb' as const;
  readonly startVerb = 'run' as const;
  protected targets?: HostTargets;

  constructor(
    protected readonly cfg: DeployConfig,
    protected readonly shared: AlbShared
  ) {}

  routingFile(): string {
    return '';
  }

  /** On publish-address (default all interfaces): the load balancer reaches the colour's port from outside. */
  publishArgs(color: Color): string[] {
    return ['--publish', `${this.cfg.publishAddress ?? '0.0.0.0'}:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
  }

  probePort(color: Color): number {
    return this.cfg.ports[color];
  }

  retire(plan: Plan): string | undefined {
    return plan.live ? containerName(this.cfg.app, plan.live) : undefined;
  }

  status(ctx: StatusContext, st: HostStatus): Promise<RouterStatus> {
    return albStatus(ctx, st, this.shared, this.listenerSwitch());
  }

  /** alb-listener: the run's fleet switch (status reads the listener through it). */
  protected listenerSwitch(): ListenerSwitch | undefined {
    return undefined;
  }

  report(): AlbHostReport | undefined {
    return this.targets?.report();
  }

  protected async hostTargets(): Promise<HostTargets> {
    this.targets ??= new HostTargets(this.cfg, await this.shared.elb());
    return this.targets;
  }
}
