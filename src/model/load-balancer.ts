/** What a load balancer router reports of a run (traffic alb): result values for the summary and metrics. */
import type { Color } from './config.js';

/** One health state the ALB reported for a target, from when it was first seen. */
export interface HealthSample {
  at: string;
  group: string;
  color: Color;
  target: string;
  state: string;
  reason?: string;
}

/** What the summary and metrics show of one host's time in the load balancer. */
export interface AlbHostReport {
  targetType?: string;
  instanceId?: string;
  privateIp?: string;
  /** Target health as the ALB saw it over time: a sample at each change of state. */
  health: HealthSample[];
}

export interface ListenerChange {
  at: string;
  /**
   * attach: the idle group added to the forward action with weight 0 (no traffic moves; the ALB health-checks only
   * groups a listener uses); canary: the first share; switch: all of it (or the rest after the canary); restore:
   * back to before the run.
   */
  kind: 'attach' | 'canary' | 'switch' | 'restore';
  weights: Record<Color, number>;
}

/** What the summary and metrics show of the listener: its weights before and after the run, and every change. */
export interface AlbListenerReport {
  listener: string;
  rule?: string;
  groups: Record<Color, string>;
  before?: Record<Color, number>;
  after?: Record<Color, number>;
  /** When the last host's candidate was healthy in the idle group: the moment the switch could happen. */
  allHealthyAt?: string;
  changes: ListenerChange[];
}
