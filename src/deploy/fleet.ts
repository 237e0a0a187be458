/**
 * Many hosts: the rollout order (batches) and the all-or-nothing gate. With rollback-all every host
 * stops at "verified, old colour still there" until all hosts got that far; one failure anywhere
 * switches every switched host back and leaves hosts not started yet untouched.
 */
import type { HostTarget, Rollout } from '../model/config.js';
import type { FleetHooks } from './host-deploy.js';
import type { HostResult, StepError } from '../model/results.js';

/** Splits the hosts into the batches of the rollout, in the order given. */
export function planBatches<T>(hosts: T[], rollout: Rollout): T[][] {
  const n = hosts.length;
  if (n === 0) return [];
  const mp = rollout.maxParallel;
  const canary = rollout.strategy === 'canary' && n > 1;
  const rest = canary ? hosts.slice(1) : hosts;
  const limit = mp
    ? 'count' in mp
      ? mp.count
      : Math.ceil((rest.length * mp.percent) / 100)
    : rollout.strategy === 'rolling'
      ? 1
      : rest.length;
  const size = Math.max(1, Math.min(limit, rest.length));
  const batches: T[][] = canary ? [[hosts[0]]] : [];
  for (let i = 0; i < rest.length; i += size) batches.push(rest.slice(i, i + size));
  return batches;
}

export interface FleetFailure {
  host: string;
  step: string;
  message: string;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

export type DeployOne = (
  target: HostTarget,
  batch: number,
  signal: AbortSignal | undefined,
  fleet: FleetHooks | undefined
) => Promise<HostResult>;

/**
 * Runs the batches. A batch is done when each of its hosts is verified (all-or-nothing: waiting at the
 * gate) or finished. With continue, a failure only stops the rollout when it is the canary's.
 */
export async function runRollout(
  hosts: HostTarget[],
  rollout: Rollout,
  deployOne: DeployOne,
  log: (msg: string) => void,
  parentSignal?: AbortSignal
): Promise<HostResult[]> {
  const batches = planBatches(hosts, rollout);
  const allOrNothing = rollout.onHostFailure === 'rollback-all' && hosts.length > 1;
  const decision = deferred<'commit' | 'abort'>();
  const controllers = new Map<string, AbortController>();
  let failure: FleetFailure | undefined;
  let stopped = false;

  const abortAll = (reason: string) => {
    decision.resolve('abort');
    for (const c of controllers.values()) if (!c.signal.aborted) c.abort(reason);
  };
  const onCancel = () =>
    abortAll(
      typeof parentSignal?.reason === 'string' ? parentSignal.reason : 'the workflow run was cancelled (SIGINT/SIGTERM)'
    );
  parentSignal?.addEventListener('abort', onCancel, { once: true });

  const tasks: Array<Promise<HostResult>> = [];
  const results: HostResult[] = [];
  const skipped = (target: HostTarget, batch: number): HostResult => ({
    host: target.label,
    result: 'skipped',
    image: '',
    durationMs: 0,
    switched: false,
    steps: [],
    warnings: [],
    batch,
    abortedBy: failure?.host,
    error: failure
      ? {
          step: 'connect',
          message: parentSignal?.aborted
            ? 'not started: the workflow run was cancelled'
            : `not started: ${failure.host} failed at ${failure.step}`
        }
      : undefined
  });

  try {
    for (const [index, batch] of batches.entries()) {
      if (stopped || parentSignal?.aborted) {
        for (const t of batch) tasks.push(Promise.resolve(skipped(t, index)));
        continue;
      }
      if (index > 0 && rollout.batchWaitMs > 0) {
        log(
          `batch ${index} verified; waiting batch-wait-seconds (${rollout.batchWaitMs / 1000} s) before batch ${index + 1}`
        );
        await sleep(rollout.batchWaitMs, parentSignal);
        if (parentSignal?.aborted) {
          for (const t of batch) tasks.push(Promise.resolve(skipped(t, index)));
          continue;
        }
      }
      if (batches.length > 1)
        log(
          `batch ${index + 1}/${batches.length}${rollout.strategy === 'canary' && index === 0 ? ' (canary)' : ''}: ${batch.map((t) => t.label).join(', ')}`
        );
      const arrivals = batch.map((target) => {
        const arrived = deferred<void>();
        const controller = new AbortController();
        controllers.set(target.label, controller);
        if (parentSignal?.aborted) controller.abort(parentSignal.reason);
        const hooks: FleetHooks = {
          ready: async () => {
            arrived.resolve();
            if ((await decision.promise) === 'abort') {
              throw new Error(
                failure
                  ? `${failure.host} failed at ${failure.step}, so every host goes back (on-host-failure: rollback-all)`
                  : 'the workflow run was cancelled (SIGINT/SIGTERM)'
              );
            }
          },
          failed: (error: StepError) => {
            arrived.resolve();
            // A cancel stops every host; it is no host's failure (the others would name it as the cause).
            if (failure || parentSignal?.aborted) return;
            failure = { host: target.label, step: error.step, message: error.message };
            if (allOrNothing) {
              stopped = true;
              abortAll(`${target.label} failed at ${error.step}`);
            }
          },
          abortedBy: () => (failure && failure.host !== target.label ? failure.host : undefined)
        };
        const task = deployOne(target, index, controller.signal, allOrNothing ? hooks : undefined).then((r) => {
          // continue mode has no gate: learn of failures from the result.
          if (!allOrNothing && r.result !== 'success' && !failure)
            failure = { host: r.host, step: r.error?.step ?? 'deploy', message: r.error?.message ?? r.result };
          return r;
        });
        task.finally(() => arrived.resolve()).catch(() => undefined);
        tasks.push(task);
        return arrived.promise;
      });
      await Promise.all(arrivals);
      if (!allOrNothing && rollout.strategy === 'canary' && index === 0 && failure) {
        stopped = true;
        log(`the canary ${failure.host} failed: the other hosts are not touched`);
      }
    }
    if (!stopped) decision.resolve('commit');
    results.push(...(await Promise.all(tasks)));
  } finally {
    parentSignal?.removeEventListener('abort', onCancel);
  }
  return results;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
