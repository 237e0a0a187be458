/**
 * alb mode with a listener and a group per colour: one host's part of the fleet switch (listener-switch.ts).
 *
 *   health   our probe on the candidate, then RegisterTargets in the idle colour's group (which the listener sends
 *            nothing) and DescribeTargetHealth until healthy; a failure deregisters it again
 *   switch   the barrier: when every host got here, one ModifyListener/ModifyRule moves the traffic (or the canary share)
 *   verify   verify-seconds of our probes and the ALB's view; with a canary, then the barrier for the rest
 *   drain    (committed) the old colour's target leaves its group (DeregisterTargets, draining at most
 *            drain-seconds), then its container is stopped, kept for rollback
 *
 * Switching back: the listener is put back (once for the fleet), then the candidate leaves the idle group.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import type { HostState } from '../../model/host.js';
import type { Cutover, Router, RouterContext, SwitchBack, WatchCheck } from '../router.js';
import { describeTarget, type TargetGroupInfo } from './elb.js';
import { describeWeights, type ListenerSwitch } from './listener-switch.js';
import { parseListenerRouting, registered, type ListenerRouting } from './routing.js';
import { AlbRouterBase } from './base.js';
import { describeHealth, execOf, lazyWatch } from './targets.js';
import type { AlbShared } from './traffic.js';

export class AlbListenerRouter extends AlbRouterBase implements Router {
  private readOnce = false;
  private registeredHere = false;

  constructor(
    cfg: DeployConfig,
    shared: AlbShared,
    private readonly sw: ListenerSwitch,
    private readonly host: string
  ) {
    super(cfg, shared);
  }

  routedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined {
    return parseListenerRouting(state.upstreamContent)?.live;
  }

  protected listenerSwitch(): ListenerSwitch {
    return this.sw;
  }

  fleetRoutedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined {
    return this.routedColor(state);
  }

  /** detect: the listener as before the run (read once for the fleet); later (the undo): as it is now. */
  async readRouting(): Promise<string> {
    const s = this.readOnce ? await this.sw.now() : await this.sw.before();
    this.readOnce = true;
    const r: ListenerRouting = { listener: true, live: s.live, weights: s.weights };
    return JSON.stringify(r);
  }

  /**
   * Health, once the candidate answers: RegisterTargets in the idle colour's group (which the listener sends
   * nothing: no traffic moves yet) and DescribeTargetHealth until healthy.
   */
  async afterHealth(h: RouterContext): Promise<void> {
    const to = h.plan.candidate;
    const tg: TargetGroupInfo = (await this.sw.groups())[to];
    const t = await this.hostTargets();
    const cand = await t.target(execOf(h), 'health', tg, to);
    await t.register(tg, to, cand, 'health');
    this.registeredHere = true;
    h.log.info(
      `registered ${describeTarget(cand)} (${to}) in ${tg.name}, the idle colour's group; waiting until the load balancer calls it healthy`
    );
    await t.waitHealthy(h, tg, to, cand, 'health');
  }

  /** Before the switch: no listener change for anyone, and this candidate leaves the idle group again. */
  async abandon(h: RouterContext, how: { ownsHost: boolean }): Promise<void> {
    // The fleet switch is told in any case (no listener change for anyone); the group is the run's, not the host's.
    this.sw.markFailed(`${this.host} failed before the listener switch`);
    if (!this.registeredHere || !how.ownsHost) return;
    const to = h.plan.candidate;
    try {
      const tg = (await this.sw.groups())[to];
      const t = await this.hostTargets();
      const cand = await t.target(execOf(h), 'health', tg, to);
      await t.deregister(tg, to, cand, 'health').then(
        () => h.log.info(`deregistered ${describeTarget(cand)} (${to}) from ${tg.name} again`),
        (err: Error) =>
          h.warn(`could not deregister ${describeTarget(cand)} from ${tg.name} after the failure: ${err.message}`)
      );
    } catch (e) {
      h.warn(`could not deregister the candidate after the failure: ${(e as Error).message}`);
    }
  }

  /** The barrier: when every host got here, one ModifyListener/ModifyRule moves the traffic (or the canary share). */
  async switchTraffic(h: RouterContext): Promise<Cutover> {
    // The last host to arrive makes the listener change, which may reach the ALB even if its answer never arrives.
    await this.sw.arrive(this.host, h.signal, h.log);
    return { drained: true };
  }

  watchCheck(h: RouterContext): WatchCheck {
    return lazyWatch(async () =>
      (await this.hostTargets()).watchCheck(execOf(h), (await this.sw.groups())[h.plan.candidate], h.plan.candidate)
    );
  }

  /** With a canary: the share was served without a failure; the rest follows once every host got here. */
  async afterVerify(h: RouterContext): Promise<void> {
    if (!this.sw.canaryPercent) return;
    h.log.info(
      `the canary share (${this.sw.canaryPercent}%) was served without a failure; waiting for the other hosts before the rest follows`
    );
    await this.sw.verified(this.host, h.signal, h.log);
    await h.probe('verify', this.cfg.ports[h.plan.candidate]);
  }

  /** Committed: the old colour's target leaves its group (no requests come to it any more) and drains. */
  async drainOld(h: RouterContext, wait: boolean): Promise<number> {
    const from = h.plan.live;
    if (!from) return 0;
    const tg = (await this.sw.groups())[from];
    const t = await this.hostTargets();
    const old = await t.target(execOf(h), 'drain', tg, from);
    const v = await t.health(tg, from, old, 'drain');
    if (!registered(v) && v.state !== 'draining') {
      h.log.info(`${describeTarget(old)} (${from}) is ${describeHealth(v)} in ${tg.name}: nothing to deregister`);
      return 0;
    }
    if (registered(v)) await t.deregister(tg, from, old, 'drain');
    if (!wait) return t.drainLeftMs(h, tg, from, old, 'drain');
    await t.waitDrained(h, tg, from, old, 'drain', this.cfg.drainMs);
    return 0;
  }

  async switchBack(h: RouterContext): Promise<SwitchBack> {
    const to = h.plan.candidate;
    const tg = (await this.sw.groups())[to];
    const t = await this.hostTargets();
    const moved = await this.sw.restore(h.log);
    const cand = await t.target(execOf(h), 'switch-back', tg, to);
    const v = await t.health(tg, to, cand, 'switch-back');
    if (registered(v)) await t.deregister(tg, to, cand, 'switch-back');
    // Requests the listener sent the candidate before the restore finish before its container goes.
    if (moved && (registered(v) || v.state === 'draining'))
      await t.waitDrained(h, tg, to, cand, 'switch-back', this.cfg.drainMs);
    if (!moved)
      h.log.info(
        `the listener was not changed (${describeWeights((await this.sw.before()).weights)}): ${describeTarget(cand)} left ${tg.name}`
      );
    return { moved };
  }
}
