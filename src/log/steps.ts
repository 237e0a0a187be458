import type { HostLog } from './log.js';
import { StepError, type StepName, type StepRecord, type StepStatus } from '../model/results.js';

/** Times steps of one host, logs them, and turns any error into a StepError naming the step. */
export class StepTimer {
  readonly steps: StepRecord[] = [];
  private open?: { name: StepName; start: number };

  constructor(
    private readonly log: HostLog,
    /**
     * Aborted when the workflow run is cancelled (or the fleet stops this host): no new step starts; recovery
     * (soft steps) still runs. Replaced when a host that took its lock up front joins its rollout batch.
     */
    public signal?: AbortSignal
  ) {}

  /** Throws inside a step when the run was cancelled, so the usual recovery runs. */
  checkCancelled(): void {
    if (this.signal?.aborted)
      throw new StepError(this.open?.name ?? 'connect', `${cancelReason(this.signal)}; stopping here and cleaning up`);
  }

  begin(name: StepName): void {
    if (this.open) this.end('ok');
    this.open = { name, start: Date.now() };
    this.log.begin(name);
  }

  end(status: StepStatus, detail?: string): StepRecord | undefined {
    if (!this.open) return undefined;
    const { name, start } = this.open;
    const endMs = Date.now();
    const rec: StepRecord = {
      name,
      startedAt: new Date(start).toISOString(),
      endedAt: new Date(endMs).toISOString(),
      durationMs: endMs - start,
      status,
      detail
    };
    this.steps.push(rec);
    this.open = undefined;
    this.log.end(name, status, rec.durationMs);
    return rec;
  }

  get current(): StepName | undefined {
    return this.open?.name;
  }

  async run<T>(name: StepName, fn: () => Promise<T>): Promise<T> {
    this.begin(name);
    try {
      this.checkCancelled();
      const value = await fn();
      if (this.open?.name === name) this.end('ok');
      else if (this.open) this.end('ok');
      return value;
    } catch (e) {
      const failedStep = this.open?.name ?? name;
      // The failing step is the one open now (a script can move through several steps).
      const err = new StepError(failedStep, (e as Error).message, e instanceof StepError ? e.logs : undefined);
      this.end('failed', err.message);
      throw err;
    }
  }

  /** A step whose failure is only a warning (after the new version is live). */
  async soft(name: StepName, fn: () => Promise<void>): Promise<string | undefined> {
    this.begin(name);
    try {
      await fn();
      this.end('ok');
      return undefined;
    } catch (e) {
      const msg = (e as Error).message;
      this.log.warn(`${name}: ${msg}`);
      this.end('warning', msg);
      return `${name}: ${msg}`;
    }
  }

  /** Drops the open step unrecorded (it never really started: e.g. a host of the fleet whose lock was never tried). */
  abandon(): void {
    this.open = undefined;
  }

  /** Records a step measured elsewhere (e.g. connect before the timer existed). */
  record(rec: StepRecord): void {
    this.steps.push(rec);
  }
}

/** Why a run stopped early: the workflow was cancelled, or (a string reason) another host of the fleet failed. */
export function cancelReason(signal: AbortSignal): string {
  return typeof signal.reason === 'string' ? signal.reason : 'the workflow run was cancelled (SIGINT/SIGTERM)';
}
