/**
 * One host's targets in the load balancer, shared by both ALB routers: the host's identity (IMDSv2, read once per
 * host session), its target per colour (instance ID or private IPv4, by the group's target type, on the colour's
 * port), registering and deregistering them, waiting until the ALB reports them healthy or drained, and the record
 * of every health state the ALB reported (the summary's and metrics' timeline).
 */
import type { Color, DeployConfig } from '../../model/config.js';
import { StepError, type StepName } from '../../model/results.js';
import { cancelReason } from '../../log/steps.js';
import type { RemoteScript } from '../../remote/scripts.js';
import { exec, type RouterContext, type WatchCheck } from '../router.js';
import { describeTarget, ElbError, type Elb, type Target, type TargetGroupInfo, type TargetHealthView } from './elb.js';
import type { AlbHostReport, HealthSample } from '../../model/load-balancer.js';
import { identityScript, parseIdentity, type HostIdentity } from './identity.js';

/** How a router runs the identity script (the router's context, or a plain runner where a step has none). */
export interface TargetExec {
  exec(step: StepName, s: RemoteScript, what: string): Promise<string>;
}

/** A router context as a TargetExec. */
export function execOf(ctx: Pick<RouterContext, 'remote' | 'log'>): TargetExec {
  return { exec: (step, s, what) => exec(ctx, step, s, what) };
}

/** A WatchCheck whose group and targets are looked up at its first check. */
export function lazyWatch(make: () => Promise<WatchCheck>): WatchCheck {
  let c: Promise<WatchCheck> | undefined;
  return {
    everyMs: albTiming.pollMs * 2,
    check: async () => {
      c ??= make();
      await (await c).check();
    }
  };
}

/** How often DescribeTargetHealth is polled (tests make it shorter). */
export const albTiming = { pollMs: 500 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class HealthRecorder {
  readonly samples: HealthSample[] = [];
  private readonly last = new Map<string, string>();

  note(group: TargetGroupInfo, color: Color, v: TargetHealthView): void {
    const key = `${group.arn} ${v.id}:${v.port}`;
    const state = `${v.state}${v.reason ? ` ${v.reason}` : ''}`;
    if (this.last.get(key) === state) return;
    this.last.set(key, state);
    this.samples.push({
      at: new Date().toISOString(),
      group: group.name,
      color,
      target: describeTarget(v),
      state: v.state,
      reason: v.reason
    });
  }
}

/** How long the ALB may take to call a new target healthy: its checks' interval × threshold, plus a margin. */
export function healthyWithinMs(
  cfg: Pick<DeployConfig, 'healthTimeoutMs'>,
  tg: Pick<TargetGroupInfo, 'healthCheckIntervalSeconds' | 'healthyThresholdCount'>
): number {
  const alb =
    tg.healthCheckIntervalSeconds && tg.healthyThresholdCount
      ? (tg.healthCheckIntervalSeconds * (tg.healthyThresholdCount + 1) + 10) * 1000
      : 0;
  return Math.max(cfg.healthTimeoutMs, alb);
}

export function describeHealth(v: TargetHealthView | undefined): string {
  if (!v) return 'not listed';
  return `${v.state}${v.reason ? ` (${v.reason}${v.description ? `: ${v.description}` : ''})` : ''}`;
}

export class HostTargets {
  private identity?: Promise<HostIdentity>;
  private known?: HostIdentity;
  readonly recorder = new HealthRecorder();
  targetType?: string;

  /** When this run deregistered a target (`<group> <id>:<port>`): its draining started then. */
  private readonly deregisteredAt = new Map<string, number>();

  constructor(
    private readonly cfg: DeployConfig,
    readonly elb: Elb
  ) {}

  /** The host's instance ID and private IPv4, read once per host session (reused after a reconnect: it is the same host). */
  async readIdentity(h: TargetExec, step: StepName): Promise<HostIdentity> {
    this.identity ??= h
      .exec(step, identityScript(), 'read the instance ID and private IPv4 from the instance metadata service (IMDSv2)')
      .then((out) => (this.known = parseIdentity(out)));
    this.identity.catch(() => (this.identity = undefined));
    try {
      return await this.identity;
    } catch (e) {
      throw new StepError(
        step,
        `${(e as Error).message}: traffic: alb names the host to the load balancer by its instance ID or private IPv4 (is this an EC2 instance with the metadata service enabled, and is its hop limit at least 1?)`
      );
    }
  }

  report(): AlbHostReport {
    return {
      targetType: this.targetType,
      instanceId: this.known?.instanceId,
      privateIp: this.known?.privateIp,
      health: this.recorder.samples
    };
  }

  async target(h: TargetExec, step: StepName, tg: TargetGroupInfo, color: Color): Promise<Target> {
    const id = await this.readIdentity(h, step);
    this.targetType = tg.targetType;
    return { id: tg.targetType === 'ip' ? id.privateIp : id.instanceId, port: this.cfg.ports[color] };
  }

  async health(tg: TargetGroupInfo, color: Color, t: Target, step: StepName): Promise<TargetHealthView> {
    let views: TargetHealthView[];
    try {
      views = await this.elb.targetHealth(tg, [t]);
    } catch (e) {
      throw new StepError(step, (e as Error).message);
    }
    const v = views.find((x) => x.id === t.id && x.port === t.port) ?? { ...t, state: 'unregistered' };
    this.recorder.note(tg, color, v);
    return v;
  }

  async register(tg: TargetGroupInfo, color: Color, t: Target, step: StepName): Promise<void> {
    await this.elb.register(tg, [t]).catch((e: ElbError) => {
      throw new StepError(step, e.message);
    });
  }

  async deregister(tg: TargetGroupInfo, color: Color, t: Target, step: StepName): Promise<void> {
    const at = Date.now();
    await this.elb.deregister(tg, [t]).catch((e: ElbError) => {
      throw new StepError(step, e.message);
    });
    this.deregisteredAt.set(`${tg.name} ${t.id}:${t.port}`, at);
  }

  /** Polls DescribeTargetHealth until the target is healthy; unhealthy past the limit, or gone, fails the step. */
  async waitHealthy(
    h: Pick<RouterContext, 'log' | 'signal'>,
    tg: TargetGroupInfo,
    color: Color,
    t: Target,
    step: StepName,
    undoing = false
  ): Promise<void> {
    const t0 = Date.now();
    const limit = healthyWithinMs(this.cfg, tg);
    let v: TargetHealthView;
    for (;;) {
      const signal = h.signal;
      if (!undoing && signal?.aborted)
        throw new StepError(
          step,
          `${cancelReason(signal)} while waiting for the load balancer to call ${describeTarget(t)} healthy`
        );
      v = await this.health(tg, color, t, step);
      if (v.state === 'healthy') {
        h.log.info(
          `the load balancer reports ${describeTarget(t)} (${color}) healthy in ${tg.name} after ${Date.now() - t0} ms`
        );
        return;
      }
      if (v.reason === 'Target.NotInUse') {
        throw new StepError(
          step,
          `the load balancer does not health-check ${tg.label}: no listener or rule forwards to it (Target.NotInUse). Make a listener rule of the load balancer forward to it${tg.loadBalancerArns.length ? '' : ' (it is attached to no load balancer)'}`
        );
      }
      if (v.state === 'unregistered' || v.state === 'draining' || v.state === 'unused') {
        throw new StepError(
          step,
          `${describeTarget(t)} (${color}) is ${describeHealth(v)} in ${tg.label}, not registered any more: did something else deregister it?`
        );
      }
      if (Date.now() - t0 >= limit) {
        throw new StepError(
          step,
          `the load balancer did not report ${describeTarget(t)} (${color}) healthy in ${tg.label} within ${Math.round(limit / 1000)} s (last: ${describeHealth(v)}): does the security group of the host allow the load balancer on port ${t.port}, is publish-address reachable, and does the group's health check path answer 2xx${tg.healthCheckPath ? ` (${tg.healthCheckPath})` : ''}?`
        );
      }
      await sleep(albTiming.pollMs);
    }
  }

  /**
   * wait-for-drain false: how long the ALB may still drain the old target, for the job on the host to wait by the
   * clock before the container stops (the host cannot ask the ALB): the group's deregistration delay, at most
   * drain-seconds, less the time since this run deregistered it; 0 when one look says it is out of the group already.
   */
  async drainLeftMs(
    h: Pick<RouterContext, 'log' | 'warn'>,
    tg: TargetGroupInfo,
    color: Color,
    t: Target,
    step: StepName
  ): Promise<number> {
    if (this.drained(h, tg, color, t, step, await this.health(tg, color, t, step), Date.now())) return 0;
    const delayMs = tg.deregistrationDelaySeconds !== undefined ? tg.deregistrationDelaySeconds * 1000 : Infinity;
    const since = this.deregisteredAt.get(`${tg.name} ${t.id}:${t.port}`);
    const ms = Math.max(0, Math.min(this.cfg.drainMs, delayMs) - (since === undefined ? 0 : Date.now() - since));
    const why = `the group's deregistration delay ${tg.deregistrationDelaySeconds ?? '?'} s, at most drain-seconds, from the deregistration`;
    if (delayMs > this.cfg.drainMs)
      h.warn(
        `${describeTarget(t)} (${color}) may drain in ${tg.name} for up to ${tg.deregistrationDelaySeconds ?? '?'} s (its deregistration delay), longer than drain-seconds (${this.cfg.drainMs / 1000} s): the job on the host stops it after ${Math.round(ms / 100) / 10} s anyway`
      );
    else
      h.log.info(
        `${describeTarget(t)} (${color}) is draining in ${tg.name}; the job on the host stops it after ${Math.round(ms / 100) / 10} s (${why}): the run does not wait for it`
      );
    return ms;
  }

  /** Polls DescribeTargetHealth until the target is out of draining, at most maxMs; false when it still drains then. */
  async waitDrained(
    h: Pick<RouterContext, 'log' | 'warn'>,
    tg: TargetGroupInfo,
    color: Color,
    t: Target,
    step: StepName,
    maxMs: number
  ): Promise<boolean> {
    const t0 = Date.now();
    for (;;) {
      if (this.drained(h, tg, color, t, step, await this.health(tg, color, t, step), t0)) return true;
      if (Date.now() - t0 >= maxMs) {
        h.warn(
          `${describeTarget(t)} (${color}) was still draining in ${tg.name} after drain-seconds (${maxMs / 1000} s; the group's deregistration delay is ${tg.deregistrationDelaySeconds ?? '?'} s): stopping it anyway`
        );
        return false;
      }
      await sleep(albTiming.pollMs);
    }
  }

  /** True once a deregistered target has left the group; it must be draining otherwise. */
  private drained(
    h: Pick<RouterContext, 'log'>,
    tg: TargetGroupInfo,
    color: Color,
    t: Target,
    step: StepName,
    v: TargetHealthView,
    since: number
  ): boolean {
    if (v.state === 'unregistered' || v.state === 'unused') {
      h.log.info(`${describeTarget(t)} (${color}) left ${tg.name}: draining took ${Date.now() - since} ms`);
      return true;
    }
    if (v.state !== 'draining')
      throw new StepError(
        step,
        `${describeTarget(t)} (${color}) is ${describeHealth(v)} in ${tg.label} instead of draining: was it registered again by someone else?`
      );
    return false;
  }

  /** Beside the verify-seconds watch: the ALB's view of the candidate; unhealthy there fails verify. */
  watchCheck(h: TargetExec, tg: TargetGroupInfo, color: Color): WatchCheck {
    let t: Target | undefined;
    return {
      everyMs: albTiming.pollMs * 2,
      check: async () => {
        t ??= await this.target(h, 'verify', tg, color);
        const v = await this.health(tg, color, t, 'verify');
        if (v.state !== 'healthy')
          throw new StepError(
            'verify',
            `the load balancer reports ${describeTarget(t)} (${color}) ${describeHealth(v)} in ${tg.name} after the switch`
          );
      }
    };
  }
}
