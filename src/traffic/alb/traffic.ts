/**
 * traffic alb for one run: the load balancer's API client (loaded when first needed), the target groups (each
 * described once), and with alb-listener the fleet switch every host's router takes part in. run.ts makes one, asks
 * it for each host's router, tells it when a host's deploy ended, and puts its report into the run's result.
 */
import type { DeployConfig, HostTarget } from '../../model/config.js';
import type { Router } from '../router.js';
import { loadElb, type Elb, type TargetGroupInfo } from './elb.js';
import { AlbListenerRouter } from './listener-router.js';
import { ListenerSwitch } from './listener-switch.js';
import { type AlbListenerReport } from '../../model/load-balancer.js';
import { AlbTargetGroupRouter } from './target-group-router.js';

export interface AlbShared {
  elb(): Promise<Elb>;
  /** A target group by name or ARN, described once per run; `input` names it in messages. */
  group(nameOrArn: string, input: string): Promise<TargetGroupInfo>;
}

export type ElbLoader = (region: string) => Promise<Elb>;

export class AlbTraffic implements AlbShared {
  private elbP?: Promise<Elb>;
  private readonly groupsP = new Map<string, Promise<TargetGroupInfo>>();
  /** alb-listener: the one fleet switch of this run. */
  readonly listener?: ListenerSwitch;

  constructor(
    private readonly cfg: DeployConfig,
    private readonly load: ElbLoader = loadElb,
    note?: (message: string) => void
  ) {
    const alb = cfg.alb;
    if (alb?.mode === 'listener') this.listener = new ListenerSwitch(alb, this, cfg.hosts.length, note);
  }

  elb(): Promise<Elb> {
    this.elbP ??= this.load(this.cfg.awsRegion ?? 'us-east-1');
    this.elbP.catch(() => (this.elbP = undefined));
    return this.elbP;
  }

  group(nameOrArn: string, input: string): Promise<TargetGroupInfo> {
    const key = `${input} ${nameOrArn}`;
    let p = this.groupsP.get(key);
    if (!p) {
      p = this.elb().then((elb) => elb.targetGroup(nameOrArn, input));
      this.groupsP.set(key, p);
      p.catch(() => this.groupsP.delete(key));
    }
    return p;
  }

  routerFor(target: HostTarget): Router {
    if (this.listener) return new AlbListenerRouter(this.cfg, this, this.listener, target.label);
    return new AlbTargetGroupRouter(this.cfg, this);
  }

  /** A host's deploy ended: with the fleet switch, one that failed before it releases the others (no change). */
  hostDone(host: string, ok: boolean, step?: string): void {
    this.listener?.hostDone(host, ok, step);
  }

  report(): AlbListenerReport | undefined {
    return this.listener?.report();
  }

  async close(): Promise<void> {
    if (!this.elbP) return;
    await this.elbP.then(
      (e) => e.close(),
      () => undefined
    );
  }
}
