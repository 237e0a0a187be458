/**
 * alb mode with a listener and a target group per colour: the fleet-level part, one per run, shared by every host's
 * router (listener-router.ts). The live colour is the group the listener's forward action (or alb-rule's) sends
 * requests to, read from the ALB once before any host changes anything.
 *
 *   arrive     each host, once its candidate is healthy in the idle colour's group (the ALB's view and ours): the
 *              barrier. When every host of the run has arrived (and none failed), ONE ModifyListener (ModifyRule)
 *              moves the traffic: all of it, or alb-canary-percent of it.
 *   verified   canary only: each host after its verify window; when all are verified, one more call sends the rest.
 *   restore    any failure after a change: one call puts the actions back as they were before the run (once for
 *              the whole fleet, whichever host asks first).
 *
 * A host that fails before the barrier only marks the switch aborted (no change will be made); the hosts waiting
 * at the barrier are released by the fleet's abort (their step timer's signal) or, at the latest, when the failed
 * host's deploy has ended (hostDone), so the host that failed first is the one named as the cause.
 */
import type { AlbSettings, Color } from '../../model/config.js';
import { cancelReason } from '../../log/steps.js';
import { other } from '../../model/results.js';
import type { HostLog } from '../../log/log.js';
import { forwardWeights, withWeights, type Action, type Elb, type TargetGroupInfo } from './elb.js';
import type { AlbListenerReport, ListenerChange } from '../../model/load-balancer.js';
import type { AlbShared } from './traffic.js';

type ListenerMode = Extract<AlbSettings, { mode: 'listener' }>;

export interface ListenerState {
  actions: Action[];
  weights: Record<Color, number>;
  live: Color;
}

interface Gate {
  promise: Promise<void>;
  resolve(): void;
  reject(e: Error): void;
  started: boolean;
}

function gate(): Gate {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject, started: false };
}

export function describeWeights(w: Record<Color, number>): string {
  return `blue ${w.blue}, green ${w.green}`;
}

/**
 * The listener's weights per colour and the live colour; a forward action that is not blue/green's is refused. Strict
 * (before a deploy): one that sends requests to both colours is refused too; otherwise (the undo, status: the listener
 * as it is, e.g. mid-canary) the colour with the larger weight counts as live.
 */
export function readListenerState(
  actions: Action[],
  groups: Record<Color, TargetGroupInfo>,
  what: string,
  strict = true
): ListenerState {
  const fw = forwardWeights(actions);
  if (!fw)
    throw new Error(
      `${what} has no forward action: it must forward to alb-blue-target-group (${groups.blue.name}) and alb-green-target-group (${groups.green.name})`
    );
  const foreign = Object.keys(fw).filter((arn) => arn !== groups.blue.arn && arn !== groups.green.arn && fw[arn] > 0);
  if (foreign.length)
    throw new Error(
      `${what} forwards to ${foreign.join(', ')}, which is neither alb-blue-target-group (${groups.blue.name}) nor alb-green-target-group (${groups.green.name}): point it at those two groups (the action never changes other groups' traffic)`
    );
  const weights = { blue: fw[groups.blue.arn] ?? 0, green: fw[groups.green.arn] ?? 0 };
  const on = (['blue', 'green'] as const).filter((c) => weights[c] > 0);
  if (on.length === 0)
    throw new Error(
      `${what} sends no requests to alb-blue-target-group (${groups.blue.name}) or alb-green-target-group (${groups.green.name}) (weights ${describeWeights(weights)}): make its forward action send everything to the group that serves now`
    );
  if (on.length === 2 && !strict) return { actions, weights, live: weights.green > weights.blue ? 'green' : 'blue' };
  if (on.length === 2) {
    throw new Error(
      `${what} sends requests to both colours (weights ${describeWeights(weights)}), e.g. after an interrupted canary: the action cannot tell which one is live. Send everything to the one that should serve (aws elbv2 modify-listener/modify-rule with weight 100 on it and 0 on the other), then deploy again`
    );
  }
  return { actions, weights, live: on[0] };
}

export class ListenerSwitch {
  private initial?: Promise<ListenerState>;
  private groupsP?: Promise<Record<Color, TargetGroupInfo>>;
  private readonly arrived = new Set<string>();
  private readonly verifiedHosts = new Set<string>();
  private readonly first = gate();
  private readonly rest = gate();
  private abortReason?: string;
  private restoring?: Promise<boolean>;
  /** Whether a change of this run may have reached the ALB (a call was made). */
  private changed = false;
  private readonly report0: AlbListenerReport;

  constructor(
    private readonly alb: ListenerMode,
    private readonly shared: AlbShared,
    private readonly hostCount: number,
    /** The run's log, for what is done once for the fleet. */
    private readonly note: (message: string) => void = () => undefined
  ) {
    this.report0 = { listener: alb.listenerArn, rule: alb.ruleArn, groups: { ...alb.groups }, changes: [] };
  }

  get canaryPercent(): number | undefined {
    return this.alb.canaryPercent;
  }

  private get what(): string {
    return this.alb.ruleArn
      ? `alb-rule ${this.alb.ruleArn}`
      : `the default action of alb-listener ${this.alb.listenerArn}`;
  }

  groups(): Promise<Record<Color, TargetGroupInfo>> {
    this.groupsP ??= Promise.all([
      this.shared.group(this.alb.groups.blue, 'alb-blue-target-group'),
      this.shared.group(this.alb.groups.green, 'alb-green-target-group')
    ]).then(([blue, green]) => {
      if (blue.arn === green.arn)
        throw new Error(
          `alb-blue-target-group and alb-green-target-group are the same group (${blue.name}): each colour needs its own`
        );
      return { blue, green };
    });
    this.groupsP.catch(() => (this.groupsP = undefined));
    return this.groupsP;
  }

  private async read(strict: boolean): Promise<ListenerState> {
    const elb = await this.shared.elb();
    const groups = await this.groups();
    return readListenerState(await elb.readActions(this.alb.listenerArn, this.alb.ruleArn), groups, this.what, strict);
  }

  /**
   * The listener as it was before this run changed traffic (read once, shared by every host's detect). A forward
   * action that names only the live group gets the idle one added with weight 0 first: the ALB health-checks the
   * targets of a group only while a listener uses it (else they stay `unused`, Target.NotInUse).
   */
  before(): Promise<ListenerState> {
    this.initial ??= this.read(true).then(async (s) => {
      const groups = await this.groups();
      const idle = groups[other(s.live)];
      if (!(idle.arn in (forwardWeights(s.actions) ?? {}))) {
        const elb = await this.shared.elb();
        const actions = withWeights(s.actions, { [groups[s.live].arn]: s.weights[s.live], [idle.arn]: 0 });
        await elb.writeActions(this.alb.listenerArn, this.alb.ruleArn, actions);
        this.report0.changes.push({ at: new Date().toISOString(), kind: 'attach', weights: s.weights });
        this.note(
          `${this.what} forwarded only to ${groups[s.live].name}: added ${idle.name} with weight 0 (no traffic moves), so that the load balancer health-checks its targets`
        );
        s = { ...s, actions };
      }
      this.report0.before = s.weights;
      this.report0.after ??= s.weights;
      return s;
    });
    this.initial.catch(() => (this.initial = undefined));
    return this.initial;
  }

  /** The listener now, whatever it sends where (for the undo, decided from the ALB's real state, and status). */
  now(): Promise<ListenerState> {
    return this.read(false);
  }

  /** No change will be made any more (a host failed before the switch, the run was cancelled, or a restore began). */
  abort(reason: string): void {
    this.abortReason ??= reason;
    if (!this.first.started) this.first.reject(new Error(`${reason}: the listener was not changed`));
    if (!this.rest.started) this.rest.reject(new Error(`${reason}: the rest of the traffic was not moved`));
  }

  /** A host's deploy ended (run.ts): one that ended without success before the switch releases the others. */
  hostDone(host: string, ok: boolean, step?: string): void {
    if (!ok && !this.first.started) this.abort(`${host} failed${step ? ` at ${step}` : ''}`);
    else if (!ok && this.canaryPercent && !this.rest.started) this.abort(`${host} failed${step ? ` at ${step}` : ''}`);
  }

  /** Marks the switch aborted without releasing the others at once (see the header). */
  markFailed(reason: string): void {
    this.abortReason ??= reason;
  }

  private async write(
    elb: Elb,
    weights: Record<Color, number>,
    kind: ListenerChange['kind'],
    log: HostLog
  ): Promise<void> {
    const s = await this.before();
    const groups = await this.groups();
    this.changed = true;
    await elb.writeActions(
      this.alb.listenerArn,
      this.alb.ruleArn,
      withWeights(s.actions, { [groups.blue.arn]: weights.blue, [groups.green.arn]: weights.green })
    );
    this.report0.changes.push({ at: new Date().toISOString(), kind, weights });
    this.report0.after = weights;
    log.info(
      `${this.alb.ruleArn ? 'ModifyRule' : 'ModifyListener'}: ${this.what} now sends ${describeWeights(weights)}${kind === 'canary' ? ` (canary: ${this.canaryPercent}% to the new colour)` : ''}`
    );
  }

  private wait(g: Gate, signal: AbortSignal | undefined, what: string): Promise<void> {
    if (!signal) return g.promise;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.abort(cancelReason(signal));
        reject(new Error(`${cancelReason(signal)} while ${what}`));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      g.promise.then(
        () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        (e: Error) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        }
      );
    });
  }

  /**
   * A host's candidate is healthy in the idle group. Resolves once the one listener change is made (by the last host
   * to arrive); rejects if a host failed before, or the change failed.
   */
  arrive(host: string, signal: AbortSignal | undefined, log: HostLog): Promise<void> {
    this.arrived.add(host);
    log.info(
      `candidate healthy in the idle group; ${this.arrived.size} of ${this.hostCount} host(s) ready for the listener switch`
    );
    if (this.arrived.size >= this.hostCount && !this.first.started && !this.abortReason) {
      this.first.started = true;
      this.report0.allHealthyAt = new Date().toISOString();
      void (async () => {
        const elb = await this.shared.elb();
        const s = await this.before();
        const to = other(s.live);
        const p = this.canaryPercent;
        const w = { [to]: p ?? 100, [s.live]: p ? 100 - p : 0 } as Record<Color, number>;
        await this.write(elb, w, p ? 'canary' : 'switch', log);
      })().then(this.first.resolve, this.first.reject);
    }
    return this.wait(this.first, signal, 'waiting for the other hosts before the listener switch');
  }

  /** Canary: a host's verify window passed. Resolves once the rest of the traffic is on the new colour. */
  verified(host: string, signal: AbortSignal | undefined, log: HostLog): Promise<void> {
    this.verifiedHosts.add(host);
    if (this.verifiedHosts.size >= this.hostCount && !this.rest.started && !this.abortReason) {
      this.rest.started = true;
      void (async () => {
        const elb = await this.shared.elb();
        const s = await this.before();
        const to = other(s.live);
        await this.write(elb, { [to]: 100, [s.live]: 0 } as Record<Color, number>, 'switch', log);
      })().then(this.rest.resolve, this.rest.reject);
    }
    return this.wait(this.rest, signal, 'waiting for the other hosts to verify the canary share');
  }

  /**
   * After a failure: the actions as they were before the run, in one call, once for the whole fleet. Resolves whether
   * the listener had been changed by this run (so traffic was moved back).
   */
  restore(log: HostLog): Promise<boolean> {
    this.abort(this.abortReason ?? 'a host is switching back');
    this.restoring ??= (async () => {
      // A change in flight finishes (or fails) first: its outcome is read from the ALB below.
      if (this.first.started) await this.first.promise.catch(() => undefined);
      if (this.rest.started) await this.rest.promise.catch(() => undefined);
      if (!this.changed || !this.initial) return false;
      const before = await this.initial;
      const now = await this.now();
      if (now.weights.blue === before.weights.blue && now.weights.green === before.weights.green) {
        log.info(`${this.what} sends ${describeWeights(now.weights)} as before the run: nothing to put back`);
        return true;
      }
      const elb = await this.shared.elb();
      await elb.writeActions(this.alb.listenerArn, this.alb.ruleArn, before.actions);
      this.report0.changes.push({ at: new Date().toISOString(), kind: 'restore', weights: before.weights });
      this.report0.after = before.weights;
      log.info(
        `${this.alb.ruleArn ? 'ModifyRule' : 'ModifyListener'}: ${this.what} is back to ${describeWeights(before.weights)}`
      );
      return true;
    })();
    // A failed restore may be tried again by the next host that switches back.
    this.restoring.catch(() => (this.restoring = undefined));
    return this.restoring;
  }

  report(): AlbListenerReport {
    return { ...this.report0, changes: [...this.report0.changes] };
  }
}
