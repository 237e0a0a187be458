import { describe, expect, it } from '@jest/globals';
import type { HostTarget, Rollout } from '../../../src/model/config.js';
import { planBatches, runRollout, type DeployOne } from '../../../src/deploy/fleet.js';
import { StepError, type HostResult } from '../../../src/model/results.js';

const hosts = (n: number): HostTarget[] =>
  Array.from({ length: n }, (_, i) => ({ label: `h${i + 1}`, host: `10.0.0.${i + 1}`, port: 22, user: 'ec2-user' }));
const rollout = (over: Partial<Rollout> = {}): Rollout => ({
  strategy: 'parallel',
  batchWaitMs: 0,
  onHostFailure: 'rollback-all',
  ...over
});
const labels = (b: HostTarget[][]) => b.map((x) => x.map((h) => h.label));

describe('planBatches', () => {
  it('parallel: one batch of every host unless max-parallel limits it', () => {
    expect(labels(planBatches(hosts(4), rollout()))).toEqual([['h1', 'h2', 'h3', 'h4']]);
    expect(labels(planBatches(hosts(5), rollout({ maxParallel: { count: 2 } })))).toEqual([
      ['h1', 'h2'],
      ['h3', 'h4'],
      ['h5']
    ]);
  });
  it('rolling: one host at a time by default, a count or a percentage rounded up', () => {
    expect(labels(planBatches(hosts(3), rollout({ strategy: 'rolling' })))).toEqual([['h1'], ['h2'], ['h3']]);
    expect(labels(planBatches(hosts(5), rollout({ strategy: 'rolling', maxParallel: { percent: 50 } })))).toEqual([
      ['h1', 'h2', 'h3'],
      ['h4', 'h5']
    ]);
    expect(labels(planBatches(hosts(3), rollout({ strategy: 'rolling', maxParallel: { percent: 1 } })))).toEqual([
      ['h1'],
      ['h2'],
      ['h3']
    ]);
    expect(labels(planBatches(hosts(2), rollout({ strategy: 'rolling', maxParallel: { count: 10 } })))).toEqual([
      ['h1', 'h2']
    ]);
  });
  it('canary: the first host alone, then the rest (in max-parallel batches)', () => {
    expect(labels(planBatches(hosts(4), rollout({ strategy: 'canary' })))).toEqual([['h1'], ['h2', 'h3', 'h4']]);
    expect(labels(planBatches(hosts(4), rollout({ strategy: 'canary', maxParallel: { count: 2 } })))).toEqual([
      ['h1'],
      ['h2', 'h3'],
      ['h4']
    ]);
    expect(labels(planBatches(hosts(1), rollout({ strategy: 'canary' })))).toEqual([['h1']]);
  });
});

/**
 * A fake host deploy: "switches" (unless it fails before), calls ready() like HostDeployment, and
 * switches back when ready() throws. Records the order of events.
 */
function fakeDeploy(
  events: string[],
  behaviour: Record<string, 'fail-before-switch' | 'fail-after-switch' | { delayMs: number }> = {}
): DeployOne {
  return async (target, batch, signal, fleet) => {
    const h = target.label;
    events.push(`start ${h}`);
    const b = behaviour[h];
    await new Promise((r) => setTimeout(r, typeof b === 'object' ? b.delayMs : 5));
    const base: HostResult = {
      host: h,
      result: 'success',
      image: 'img',
      durationMs: 1,
      switched: false,
      steps: [],
      warnings: [],
      batch
    };
    const fail = (step: 'health' | 'verify', switched: boolean): HostResult => {
      const err = new StepError(step, `${h} broke`);
      if (!fleet?.abortedBy()) fleet?.failed(err);
      events.push(`fail ${h}`);
      return {
        ...base,
        result: switched ? 'rolled-back' : 'failed',
        switched,
        error: { step, message: err.message },
        abortedBy: fleet?.abortedBy()
      };
    };
    if (signal?.aborted) {
      events.push(`stopped ${h}`);
      return {
        ...base,
        result: 'skipped',
        error: { step: 'health', message: String(signal.reason) },
        abortedBy: fleet?.abortedBy()
      };
    }
    if (b === 'fail-before-switch') return fail('health', false);
    events.push(`switch ${h}`);
    if (b === 'fail-after-switch') return fail('verify', true);
    try {
      await fleet?.ready();
    } catch {
      events.push(`back ${h}`);
      return {
        ...base,
        result: 'rolled-back',
        switched: true,
        error: { step: 'wait-fleet', message: 'aborted' },
        abortedBy: fleet?.abortedBy()
      };
    }
    events.push(`commit ${h}`);
    return { ...base, switched: true };
  };
}

describe('runRollout', () => {
  it('parallel, all good: every host commits only after all of them switched', async () => {
    const events: string[] = [];
    const r = await runRollout(hosts(3), rollout(), fakeDeploy(events, { h3: { delayMs: 40 } }), () => undefined);
    expect(r.map((x) => x.result)).toEqual(['success', 'success', 'success']);
    expect(events.indexOf('commit h1')).toBeGreaterThan(events.indexOf('switch h3'));
  });

  it('rolling: batch 2 starts only after batch 1 is verified', async () => {
    const events: string[] = [];
    const r = await runRollout(hosts(3), rollout({ strategy: 'rolling' }), fakeDeploy(events), () => undefined);
    expect(r.map((x) => x.batch)).toEqual([0, 1, 2]);
    expect(events.indexOf('start h2')).toBeGreaterThan(events.indexOf('switch h1'));
    expect(events.indexOf('start h3')).toBeGreaterThan(events.indexOf('switch h2'));
    expect(events.filter((e) => e.startsWith('commit'))).toHaveLength(3);
  });

  it('rollback-all: a failure after others switched sends them back and leaves later batches untouched', async () => {
    const events: string[] = [];
    const r = await runRollout(
      hosts(4),
      rollout({ strategy: 'rolling', maxParallel: { count: 2 } }),
      fakeDeploy(events, { h2: 'fail-after-switch' }),
      () => undefined
    );
    expect(r.map((x) => [x.host, x.result, x.abortedBy])).toEqual([
      ['h1', 'rolled-back', 'h2'],
      ['h2', 'rolled-back', undefined],
      ['h3', 'skipped', 'h2'],
      ['h4', 'skipped', 'h2']
    ]);
    expect(events).toContain('back h1');
    expect(events).not.toContain('start h3');
    expect(events.some((e) => e.startsWith('commit'))).toBe(false);
  });

  it('canary failing: no other host is touched, in either failure mode', async () => {
    for (const onHostFailure of ['rollback-all', 'continue'] as const) {
      const events: string[] = [];
      const r = await runRollout(
        hosts(3),
        rollout({ strategy: 'canary', onHostFailure }),
        fakeDeploy(events, { h1: 'fail-before-switch' }),
        () => undefined
      );
      expect(r.map((x) => x.result)).toEqual(['failed', 'skipped', 'skipped']);
      expect(events.filter((e) => e.startsWith('start'))).toEqual(['start h1']);
    }
  });

  it('continue: the other hosts finish and only the failed one is reported failed', async () => {
    const events: string[] = [];
    const r = await runRollout(
      hosts(3),
      rollout({ onHostFailure: 'continue' }),
      fakeDeploy(events, { h2: 'fail-before-switch' }),
      () => undefined
    );
    expect(r.map((x) => x.result)).toEqual(['success', 'failed', 'success']);
    expect(r.every((x) => !x.abortedBy)).toBe(true);
  });

  it('a cancelled workflow releases hosts waiting at the gate so they switch back', async () => {
    const events: string[] = [];
    const cancel = new AbortController();
    const p = runRollout(
      hosts(2),
      rollout(),
      fakeDeploy(events, { h2: { delayMs: 200 } }),
      () => undefined,
      cancel.signal
    );
    setTimeout(() => cancel.abort(), 50);
    const r = await p;
    expect(r[0].result).toBe('rolled-back');
    expect(events).toContain('back h1');
  });
});
