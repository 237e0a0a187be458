import type { Color } from './config.js';
import type { AlbHostReport, AlbListenerReport } from './load-balancer.js';

export type StepName =
  | 'ecr-token'
  | 'connect'
  | 'lock'
  | 'login'
  | 'pull'
  | 'detect'
  | 'start'
  | 'health'
  | 'switch'
  | 'verify'
  | 'smoke-test'
  | 'wait-fleet'
  | 'drain'
  | 'stop'
  | 'cleanup'
  | 'record'
  | 'switch-back';
export type StepStatus = 'ok' | 'failed' | 'warning';
/** skipped: not deployed because another host failed; the host kept serving what it served before. */
export type Result = 'success' | 'rolled-back' | 'failed' | 'skipped';

export interface StepRecord {
  name: StepName;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  status: StepStatus;
  detail?: string;
}

export interface HostResult {
  host: string;
  result: Result;
  activeColor?: Color;
  previousColor?: Color;
  candidateColor?: Color;
  image: string;
  digest?: string;
  /** nginx: upstream written until the old workers stop accepting (all new requests on the new colour); port-swap: old stopped until new healthy (real downtime). */
  cutoverMs?: number;
  /** nginx: upstream written until the first new worker serves (traffic starts on the new colour). */
  switchMs?: number;
  downtimeMs?: number;
  durationMs: number;
  /** Whether traffic was moved to the candidate at some point (so "untouched" is no longer true). */
  switched: boolean;
  /** Switching back after a failure did not complete: which colour serves is unknown. */
  switchBackFailed?: boolean;
  steps: StepRecord[];
  error?: { step: StepName; message: string };
  /** The smoke test run against this host's candidate (smoke-test), if one ran. */
  smokeTest?: SmokeTestReport;
  /** Last log lines of a failed candidate (already redacted). */
  candidateLogs?: string;
  warnings: string[];
  /** Set when this host was stopped or switched back because another host failed (rollback-all). */
  abortedBy?: string;
  /** Rollout batch (0-based; the canary is batch 0). */
  batch?: number;
  startedAt?: string;
  /** traffic alb: this host's targets as the load balancer saw them over time. */
  loadBalancer?: AlbHostReport;
}

export interface SmokeTestReport {
  command: string;
  /** Undefined when it was killed (timeout, cancel). */
  exitCode?: number;
  durationMs: number;
  /** The last lines of its output. */
  tail: string;
  /** Why it failed; undefined when it passed. */
  failure?: string;
}

/** A failure attributed to a step; `logs` carries the candidate's last log lines when relevant. */
export class StepError extends Error {
  constructor(
    readonly step: StepName,
    message: string,
    readonly logs?: string
  ) {
    super(message);
    this.name = 'StepError';
  }
}

export const other = (c: Color): Color => (c === 'blue' ? 'green' : 'blue');

/** A whole run: every host's result, the run's own steps, and the overall result. */
export interface RunResult {
  deployId: string;
  command: string;
  app: string;
  image: string;
  result: Result;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  steps: StepRecord[];
  hosts: HostResult[];
  error?: { step: string; host?: string; message: string };
  /** traffic alb with alb-listener: the listener's weights before and after, and every change. */
  alb?: AlbListenerReport;
}
