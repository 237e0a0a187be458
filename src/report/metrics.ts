/** The metrics JSON kept as an artifact: per host and per step start, end and duration. */
import type { RunContext } from '../model/context.js';
import type { RunResult } from '../model/results.js';
import type { Rollout } from '../model/config.js';

export const METRICS_SCHEMA_VERSION = 1;

export function buildMetrics(
  result: RunResult,
  ctx: RunContext,
  cfg: { traffic: string; hosts: number; rollout?: Rollout }
) {
  return {
    schemaVersion: METRICS_SCHEMA_VERSION,
    deployId: result.deployId,
    command: result.command,
    app: result.app,
    image: result.image,
    traffic: cfg.traffic,
    rollout: cfg.rollout
      ? {
          strategy: cfg.rollout.strategy,
          maxParallel: cfg.rollout.maxParallel ?? null,
          batchWaitMs: cfg.rollout.batchWaitMs,
          onHostFailure: cfg.rollout.onHostFailure
        }
      : null,
    result: result.result,
    startedAt: result.startedAt,
    endedAt: result.endedAt,
    durationMs: result.durationMs,
    run: {
      repository: ctx.repository,
      runId: ctx.runId,
      attempt: ctx.runAttempt,
      job: ctx.job,
      actor: ctx.actor,
      sha: ctx.sha,
      url: ctx.runUrl,
      event: ctx.eventName
    },
    steps: result.steps,
    hosts: result.hosts.map((h) => ({
      host: h.host,
      result: h.result,
      batch: h.batch ?? 0,
      startedAt: h.startedAt ?? null,
      abortedBy: h.abortedBy ?? null,
      activeColor: h.activeColor ?? null,
      previousColor: h.previousColor ?? null,
      candidateColor: h.candidateColor ?? null,
      image: h.image,
      digest: h.digest ?? null,
      cutoverMs: h.cutoverMs ?? null,
      switchMs: h.switchMs ?? null,
      downtimeMs: h.downtimeMs ?? null,
      durationMs: h.durationMs,
      stepDurationsMs: Object.fromEntries([
        ...h.steps.map((s) => [s.name, s.durationMs] as const),
        ['total', h.durationMs] as const
      ]),
      steps: h.steps,
      smokeTest: h.smokeTest
        ? {
            exitCode: h.smokeTest.exitCode ?? null,
            durationMs: h.smokeTest.durationMs,
            failure: h.smokeTest.failure ?? null
          }
        : null,
      warnings: h.warnings,
      error: h.error ?? null,
      loadBalancer: h.loadBalancer ?? null
    })),
    loadBalancer: result.alb ?? null,
    error: result.error ?? null
  };
}
