/** A host as the deploy sees it: the app's containers, the routing read there, and the plan made from them. */
import type { Color } from './config.js';

export interface ContainerInfo {
  id: string;
  name: string;
  state: string;
  running: boolean;
  restartCount: number;
  labels: Record<string, string>;
}

/** What detectScript reads: the app's containers, the upstream file and the recorded state. */
export interface HostState {
  containers: ContainerInfo[];
  /** The upstream file's content; undefined when there is none (or not nginx mode). */
  upstreamContent?: string;
  /** state.json's live colour, if it names one. */
  recordedLive?: Color;
  /** state.json exists but is not valid JSON. */
  stateUnreadable: boolean;
}

export interface Plan {
  live?: Color;
  candidate: Color;
  /** A container already named like the candidate (the old standby): replaced by the new one. */
  replaceExisting: boolean;
  upstreamContent?: string;
  upstreamColor?: Color;
  /** The app's containers named <app>-blue / <app>-green. */
  byColor: Partial<Record<Color, ContainerInfo>>;
  /** Our containers that are neither app-blue nor app-green (left by crashed runs). */
  leftovers: string[];
  notes: string[];
}

export const containerName = (app: string, color: Color) => `${app}-${color}`;

/**
 * The live colour, the one rule for deploy and status: the colour traffic is routed to if it runs; else the only
 * running colour; with both running and no routing to tell, the recorded one (blue without a record).
 */
export function liveColor(
  running: Color[],
  routedColor: Color | undefined,
  recordedLive: Color | undefined
): Color | undefined {
  if (routedColor && running.includes(routedColor)) return routedColor;
  if (running.length === 1) return running[0];
  if (running.length === 2) return recordedLive ?? 'blue';
  return undefined;
}
