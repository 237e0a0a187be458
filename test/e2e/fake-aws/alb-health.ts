/**
 * Target lifecycle of the ALB stand-in, as AWS shows it in DescribeTargetHealth:
 *   register -> initial (Elb.RegistrationInProgress, then Elb.InitialHealthChecking)
 *            -> healthy after HealthyThresholdCount passing checks in a row
 *            -> unhealthy after UnhealthyThresholdCount failing ones (Target.ResponseCodeMismatch / Timeout /
 *               FailedHealthChecks), and back;
 *   deregister -> draining (Target.DeregistrationInProgress) for the deregistration delay, then gone;
 *   group not used by any listener -> unused (Target.NotInUse), no checks; instance not running -> unused
 *   (Target.InvalidState).
 * Checks are real HTTP GETs from the child process's network namespace (the bastion, which reaches the fleet).
 */
import http from 'node:http';
import type { AlbHealthEvent, AlbModel, Target, TargetGroup } from './alb-model.js';

/** `200`, `200,302`, `200-399` */
export function codeMatches(matcher: string, code: number): boolean {
  return matcher.split(',').some((part) => {
    const [lo, hi] = part.trim().split('-').map(Number);
    return hi === undefined ? code === lo : code >= lo && code <= hi;
  });
}

type CheckResult = { ok: true } | { ok: false; reason: string; description: string };

function check(tg: TargetGroup, t: Target): Promise<CheckResult> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: CheckResult) => {
      if (!done) {
        done = true;
        resolve(r);
      }
    };
    // agent: false -> a fresh connection per check, as the ALB's health checker does
    const req = http.get(
      {
        host: t.ip,
        port: t.port,
        path: tg.hc.path,
        agent: false,
        headers: { 'user-agent': 'ELB-HealthChecker/2.0', host: `${t.ip}:${t.port}` }
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        if (codeMatches(tg.hc.matcher, code)) finish({ ok: true });
        else
          finish({
            ok: false,
            reason: 'Target.ResponseCodeMismatch',
            description: `Health checks failed with these codes: [${code}]`
          });
      }
    );
    req.setTimeout(tg.hc.timeoutMs, () => {
      finish({ ok: false, reason: 'Target.Timeout', description: 'Request timed out' });
      req.destroy();
    });
    req.on('error', () =>
      finish({ ok: false, reason: 'Target.FailedHealthChecks', description: 'Health checks failed' })
    );
  });
}

export class HealthChecker {
  private readonly model: AlbModel;
  private closed = false;

  /** told of every change of a target's state or reason (the harness keeps them as the health timeline) */
  onTransition: (e: AlbHealthEvent) => void = () => {};

  constructor(model: AlbModel) {
    this.model = model;
    model.onUsageChange = () => {
      for (const tg of model.groups.values()) for (const t of tg.targets.values()) this.refresh(tg, t);
    };
  }

  /** (Re-)registers a target: a draining one comes back as a new registration, a live one is left alone. */
  register(tg: TargetGroup, id: string, port: number, ip: string): void {
    const key = `${id}:${port}`;
    const old = tg.targets.get(key);
    if (old && old.state !== 'draining') return;
    if (old) this.forget(tg, old, false);
    const t: Target = {
      id,
      port,
      ip,
      state: 'initial',
      reason: 'Elb.RegistrationInProgress',
      description: 'Target registration is in progress',
      okStreak: 0,
      failStreak: 0,
      inflight: 0,
      registeredAt: Date.now(),
      generation: (old?.generation ?? 0) + 1
    };
    tg.targets.set(key, t);
    this.emit(tg, t, 'initial', t.reason);
    this.refresh(tg, t);
    this.loop(tg, t, t.generation);
  }

  deregister(tg: TargetGroup, t: Target): void {
    if (t.state === 'draining') return;
    t.generation++;
    clearTimeout(t.checkTimer);
    // a group no listener uses has no connections to drain: AWS removes its targets at once
    // (requests still in flight to it finish all the same: only an expired delay cuts them)
    if (!this.model.inUse(tg) || tg.deregistrationDelayMs <= 0) {
      this.forget(tg, t, false);
      return;
    }
    this.set(tg, t, 'draining', 'Target.DeregistrationInProgress', 'Target deregistration is in progress');
    t.drainTimer = setTimeout(() => this.forget(tg, t, true), tg.deregistrationDelayMs);
  }

  /** Told when a target left its group; `expired`: its deregistration delay is over (the data plane then cuts what
   *  is still in flight to it). */
  onForget: (tg: TargetGroup, t: Target, expired: boolean) => void = () => {};

  private forget(tg: TargetGroup, t: Target, expired: boolean): void {
    clearTimeout(t.drainTimer);
    clearTimeout(t.checkTimer);
    t.generation++;
    if (tg.targets.get(`${t.id}:${t.port}`) === t) {
      tg.targets.delete(`${t.id}:${t.port}`);
      this.emit(tg, t, 'removed', undefined);
    }
    this.onForget(tg, t, expired);
  }

  /** Parks or revives a target when its group's use or its instance's state changed. */
  refresh(tg: TargetGroup, t: Target): void {
    if (t.state === 'draining') return;
    const inst = tg.targetType === 'instance' ? this.model.instance(t.id) : undefined;
    if (inst && inst.state !== 'running') {
      this.set(tg, t, 'unused', 'Target.InvalidState', `Target is in the ${inst.state ?? 'stopped'} state`);
      t.okStreak = t.failStreak = 0;
      return;
    }
    if (!this.model.inUse(tg)) {
      this.set(
        tg,
        t,
        'unused',
        'Target.NotInUse',
        'Target group is not configured to receive traffic from the load balancer'
      );
      t.okStreak = t.failStreak = 0;
      return;
    }
    if (t.state === 'unused')
      this.set(tg, t, 'initial', 'Elb.RegistrationInProgress', 'Target registration is in progress');
  }

  private set(tg: TargetGroup, t: Target, state: Target['state'], reason?: string, description?: string): void {
    const changed = t.state !== state || t.reason !== reason;
    t.state = state;
    t.reason = reason;
    t.description = description;
    if (changed) this.emit(tg, t, state, reason);
  }

  private emit(tg: TargetGroup, t: Target, state: AlbHealthEvent['state'], reason: string | undefined): void {
    this.onTransition({
      time: Date.now(),
      targetGroup: tg.name,
      targetGroupArn: tg.arn,
      id: t.id,
      port: t.port,
      state,
      reason
    });
  }

  private loop(tg: TargetGroup, t: Target, gen: number): void {
    if (this.closed || t.generation !== gen) return;
    t.checkTimer = setTimeout(
      async () => {
        if (this.closed || t.generation !== gen) return;
        // (a function, not a narrowed field: refresh() changes the state in between)
        const parked = () => t.state === 'unused' || t.state === 'draining';
        this.refresh(tg, t);
        if (!parked()) {
          const r = await check(tg, t);
          if (this.closed || t.generation !== gen) return;
          this.refresh(tg, t);
          if (!parked()) this.apply(tg, t, r);
        }
        this.loop(tg, t, gen);
      },
      t.state === 'initial' && t.okStreak + t.failStreak === 0 ? Math.min(100, tg.hc.intervalMs) : tg.hc.intervalMs
    );
  }

  private apply(tg: TargetGroup, t: Target, r: CheckResult): void {
    if (r.ok) {
      t.okStreak++;
      t.failStreak = 0;
      if (t.state !== 'healthy' && t.okStreak >= tg.hc.healthyThreshold) this.set(tg, t, 'healthy');
      else if (t.state === 'initial')
        this.set(tg, t, 'initial', 'Elb.InitialHealthChecking', 'Initial health checks in progress');
    } else {
      t.failStreak++;
      t.okStreak = 0;
      if (t.failStreak >= tg.hc.unhealthyThreshold) this.set(tg, t, 'unhealthy', r.reason, r.description);
      else if (t.state === 'initial')
        this.set(tg, t, 'initial', 'Elb.InitialHealthChecking', 'Initial health checks in progress');
    }
  }

  close(): void {
    this.closed = true;
    for (const tg of this.model.groups.values()) {
      for (const t of tg.targets.values()) {
        clearTimeout(t.checkTimer);
        clearTimeout(t.drainTimer);
      }
    }
  }
}
