/**
 * alb mode with one target group (alb-target-group): each host swaps its own two targets in the group.
 *
 *   health   our probe on the candidate's port (published on publish-address, so the ALB reaches it)
 *   switch   RegisterTargets(candidate), until DescribeTargetHealth says healthy (and our probe), then
 *            DeregisterTargets(old colour): the ALB stops sending it new requests and drains it
 *   verify   verify-seconds of our probes, and the ALB's view of the candidate
 *   drain    (committed) until the old target is out of draining (at most drain-seconds), then it is stopped, kept
 *
 * Switching back registers the old colour again (waiting until the ALB calls it healthy), then deregisters the
 * candidate and lets it drain: decided from what the ALB reports for both targets after the failure.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import type { StepName } from '../../model/results.js';
import type { HostState } from '../../model/host.js';
import type { RemoteHost } from '../../transport/remote-host.js';
import type { Cutover, Router, RouterContext, SwitchBack, WatchCheck } from '../router.js';
import { describeTarget, type TargetGroupInfo } from './elb.js';
import { parseGroupRouting, registered, routedColorOfGroup, type TargetGroupRouting } from './routing.js';
import { AlbRouterBase } from './base.js';
import { describeHealth, execOf, lazyWatch } from './targets.js';
import type { AlbShared } from './traffic.js';

export class AlbTargetGroupRouter extends AlbRouterBase implements Router {
  private readonly groupName: string;

  constructor(cfg: DeployConfig, shared: AlbShared) {
    super(cfg, shared);
    this.groupName = cfg.alb?.mode === 'target-group' ? cfg.alb.targetGroup : '';
  }

  routedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined {
    return routedColorOfGroup(parseGroupRouting(state.upstreamContent));
  }

  private async group(): Promise<TargetGroupInfo> {
    return this.shared.group(this.groupName, 'alb-target-group');
  }

  /** The ALB's view of this host's two targets (read at detect and again for the undo). */
  async readRouting(remote: RemoteHost): Promise<string> {
    const tg = await this.group();
    const t = await this.hostTargets();
    const exec = async (_step: StepName, s: { body: string; args: string[] }, what: string) => {
      const res = await remote.run(s.body, s.args);
      if (res.code !== 0)
        throw new Error(
          `${what} failed (exit ${res.code ?? res.signal ?? 'unknown'}): ${(res.stderr || res.stdout).trim().split('\n').slice(-3).join(' ')}`
        );
      return res.stdout;
    };
    const routing: TargetGroupRouting = { group: tg.name, targets: {} };
    for (const c of ['blue', 'green'] as const) {
      const target = await t.target({ exec }, 'detect', tg, c);
      const v = await t.health(tg, c, target, 'detect');
      routing.targets[c] = { id: v.id, port: v.port, state: v.state, reason: v.reason };
    }
    return JSON.stringify(routing);
  }

  /**
   * RegisterTargets(candidate), until DescribeTargetHealth says healthy (and our probe), then DeregisterTargets(old
   * colour): the ALB stops sending it new requests and drains it.
   */
  async switchTraffic(h: RouterContext): Promise<Cutover> {
    const { cfg, plan } = h;
    const to = plan.candidate;
    const from = plan.live;
    const tg = await this.group();
    const t = await this.hostTargets();
    const x = execOf(h);
    const cand = await t.target(x, 'switch', tg, to);
    await t.register(tg, to, cand, 'switch');
    h.log.info(
      `registered ${describeTarget(cand)} (${to}) in ${tg.name}; waiting until the load balancer calls it healthy`
    );
    await t.waitHealthy(h, tg, to, cand, 'switch');
    await h.probe('switch', cfg.ports[to]);
    if (!from) return { drained: true };
    const old = await t.target(x, 'switch', tg, from);
    const v = await t.health(tg, from, old, 'switch');
    if (registered(v)) {
      await t.deregister(tg, from, old, 'switch');
      h.log.info(
        `deregistered ${describeTarget(old)} (${from}) from ${tg.name}: the load balancer sends it no new requests and drains it (deregistration delay ${tg.deregistrationDelaySeconds ?? '?'} s, waited for at most drain-seconds)`
      );
    } else {
      h.log.info(`${describeTarget(old)} (${from}) is ${describeHealth(v)} in ${tg.name}: nothing to deregister`);
    }
    return { drained: true };
  }

  watchCheck(h: RouterContext): WatchCheck {
    return lazyWatch(async () =>
      (await this.hostTargets()).watchCheck(execOf(h), await this.group(), h.plan.candidate)
    );
  }

  /** Committed: the old colour's target (deregistered by the switch) finishes draining before its container stops. */
  async drainOld(h: RouterContext, wait: boolean): Promise<number> {
    const from = h.plan.live;
    if (!from) return 0;
    const tg = await this.group();
    const t = await this.hostTargets();
    const old = await t.target(execOf(h), 'drain', tg, from);
    if (!wait) return t.drainLeftMs(h, tg, from, old, 'drain');
    await t.waitDrained(h, tg, from, old, 'drain', this.cfg.drainMs);
    return 0;
  }

  async switchBack(h: RouterContext, _state: HostState): Promise<SwitchBack> {
    const { plan } = h;
    const to = plan.candidate;
    const back = plan.live;
    const tg = await this.group();
    const t = await this.hostTargets();
    const step: StepName = 'switch-back';
    const cand = await t.target(execOf(h), step, tg, to);
    const cv = await t.health(tg, to, cand, step);
    const prev = back ? await t.target(execOf(h), step, tg, back) : undefined;
    const pv = back && prev ? await t.health(tg, back, prev, step) : undefined;
    if (!registered(cv) && cv.state !== 'draining' && (!back || registered(pv))) {
      h.log.info(
        `${describeTarget(cand)} (${to}) is ${describeHealth(cv)} in ${tg.name}${back ? ` and ${back} is still registered` : ''}: traffic was not moved, nothing to switch back`
      );
      return { moved: false };
    }
    if (back && prev && !registered(pv)) {
      // The old colour was deregistered by the switch: it takes requests again once the ALB calls it healthy.
      await t.register(tg, back, prev, step);
      h.log.info(
        `registered ${describeTarget(prev)} (${back}) in ${tg.name} again; waiting until the load balancer calls it healthy`
      );
      await t.waitHealthy(h, tg, back, prev, step, true);
    }
    if (registered(cv)) await t.deregister(tg, to, cand, step);
    if (registered(cv) || cv.state === 'draining') {
      // In-flight requests to the candidate finish before its container goes.
      await t.waitDrained(h, tg, to, cand, step, this.cfg.drainMs);
    }
    // Traffic was moved if the old colour had left the group, or the ALB sent the candidate requests (it was healthy).
    return {
      moved:
        Boolean(back && !registered(pv)) ||
        t.recorder.samples.some((x) => x.color === to && x.group === tg.name && x.state === 'healthy')
    };
  }
}
