/** The fleet section: rollout order, batches and what one host's failure does to the others. */
import type { OnHostFailure, Rollout, RolloutStrategy } from '../../model/config.js';
import { Collector, printable } from './collector.js';

export function readRollout(c: Collector): Rollout {
  const strategy = c.oneOf<RolloutStrategy>('rollout', ['parallel', 'rolling', 'canary']);
  const raw = c.raw('max-parallel');
  let maxParallel: Rollout['maxParallel'];
  const m = /^(\d{1,4})(%?)$/.exec(raw);
  if (!raw) maxParallel = undefined;
  else if (!m || Number(m[1]) < 1 || (m[2] && Number(m[1]) > 100))
    c.fail(
      'max-parallel',
      `must be a number of hosts (1 or more) or a percentage from 1% to 100% (got "${printable(raw)}")`,
      '2 (or 25%)'
    );
  else maxParallel = m[2] ? { percent: Number(m[1]) } : { count: Number(m[1]) };
  const batchWaitMs = c.number('batch-wait-seconds', 0, 3600) * 1000;
  const onHostFailure = c.oneOf<OnHostFailure>('on-host-failure', ['rollback-all', 'continue']);
  return { strategy, maxParallel, batchWaitMs, onHostFailure };
}
