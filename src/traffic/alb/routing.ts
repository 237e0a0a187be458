/**
 * The ALB's routing as kept in a host's state (each ALB router's readRouting), read by planDeploy, the routers'
 * routedColor and status: this host's two targets in the one group, or the listener's live colour and weights.
 */
import type { Color } from '../../model/config.js';
import type { TargetHealthView } from './elb.js';

/** One target group: the ALB's view of this host's two targets. */
export interface TargetGroupRouting {
  group: string;
  targets: Partial<Record<Color, Pick<TargetHealthView, 'id' | 'port' | 'state' | 'reason'>>>;
}

/** A listener and a group per colour: the live colour and the weights. */
export interface ListenerRouting {
  listener: true;
  live: Color;
  weights: Record<Color, number>;
}

/** A target taking part in the group: registered and not on its way out. */
export function registered(v: Pick<TargetHealthView, 'state'> | undefined): boolean {
  return Boolean(v) && v!.state !== 'unregistered' && v!.state !== 'draining' && v!.state !== 'unused';
}

function parseAs<T>(content: string | undefined, start: string): T | undefined {
  if (!content?.startsWith(start)) return undefined;
  try {
    return JSON.parse(content) as T;
  } catch {
    return undefined;
  }
}

export const parseListenerRouting = (content: string | undefined) => parseAs<ListenerRouting>(content, '{"listener"');
export const parseGroupRouting = (content: string | undefined) => parseAs<TargetGroupRouting>(content, '{"group"');

/** The colour the group sends this host's requests to: the only one of its two targets registered in it. */
export function routedColorOfGroup(r: TargetGroupRouting | undefined): Color | undefined {
  if (!r) return undefined;
  const live = (['blue', 'green'] as const).filter((c) => registered(r.targets[c]));
  if (live.length === 1) return live[0];
  // Both registered (an interrupted swap): the healthy one, if only one is.
  const healthy = live.filter((c) => r.targets[c]?.state === 'healthy');
  return healthy.length === 1 ? healthy[0] : undefined;
}

/** routed: the colour the ALB sends this host's requests to; fleet: decided by the listener for every host. */
export function albRouting(content: string | undefined): { routed?: Color; fleet: boolean } | undefined {
  const l = parseListenerRouting(content);
  if (l) return { routed: l.live, fleet: true };
  const g = parseGroupRouting(content);
  if (g) return { routed: routedColorOfGroup(g), fleet: false };
  return undefined;
}
