/** Decides which colour is live and which one the candidate takes, from the host's real state. */
import type { Color, DeployConfig } from '../model/config.js';
import { albRouting } from '../traffic/alb/routing.js';
import { routedColorOf } from '../traffic/haproxy/view.js';
import { upstreamPort } from '../traffic/nginx/upstream.js';
import { containerName, liveColor, type ContainerInfo, type Plan } from '../model/host.js';
import { other, StepError } from '../model/results.js';

export function planDeploy(
  cfg: Pick<DeployConfig, 'app' | 'traffic' | 'ports'> & Partial<Pick<DeployConfig, 'haproxyBackend'>>,
  containers: ContainerInfo[],
  upstreamContent: string | undefined,
  recordedLive: Color | undefined
): Plan {
  const notes: string[] = [];
  const byColor: Partial<Record<Color, ContainerInfo>> = {};
  for (const color of ['blue', 'green'] as const) {
    const c = containers.find((x) => x.name === containerName(cfg.app, color));
    if (!c) continue;
    if (c.labels['bluegreen.app'] !== cfg.app) {
      throw new StepError(
        'detect',
        `a container named ${c.name} exists on the host but was not created by this action (no bluegreen.app=${cfg.app} label); remove or rename it, or choose another app-name`
      );
    }
    byColor[color] = c;
  }
  const running = (['blue', 'green'] as const).filter((c) => byColor[c]?.running);
  let upstreamColor: Color | undefined;
  if (cfg.traffic === 'nginx') {
    const port = upstreamPort(upstreamContent);
    upstreamColor = port === cfg.ports.blue ? 'blue' : port === cfg.ports.green ? 'green' : undefined;
    if (upstreamContent && port !== undefined && !upstreamColor)
      notes.push(
        `the upstream file points at port ${port}, which is neither blue-port (${cfg.ports.blue}) nor green-port (${cfg.ports.green})`
      );
  }
  // haproxy: upstreamContent is HAProxy's `show servers state <backend>`; the routed colour is the ready server.
  if (cfg.traffic === 'haproxy') upstreamColor = routedColorOf(cfg.haproxyBackend ?? cfg.app, upstreamContent);

  // alb: upstreamContent is the ALB's view (this host's targets in the group, or the listener's live colour).
  const alb = cfg.traffic === 'alb' ? albRouting(upstreamContent) : undefined;
  if (alb) upstreamColor = alb.routed;

  let live = liveColor(running, upstreamColor, recordedLive);
  if (live && live !== upstreamColor && running.length === 1 && cfg.traffic === 'nginx')
    notes.push(
      `the upstream ${upstreamColor ? `points at ${upstreamColor}, which is not running` : 'names no colour'}; taking the running ${live} container as live`
    );
  if (running.length === 2 && live !== upstreamColor)
    notes.push(`both colours are running; taking ${live} as live (${recordedLive ? 'recorded state' : 'default'})`);

  let candidate: Color = live ? other(live) : (upstreamColor ?? recordedLive ?? 'blue');
  if (alb?.fleet && upstreamColor) {
    // The listener decides for every host at once: the candidate goes to the idle colour's group, whatever runs here.
    if (live !== upstreamColor && running.length)
      notes.push(
        `the listener sends traffic to ${upstreamColor}, but this host runs ${running.join(' and ')}${byColor[upstreamColor] ? '' : ` and no ${upstreamColor} container`}; deploying to ${other(upstreamColor)}, the idle colour`
      );
    live = running.includes(upstreamColor) ? upstreamColor : undefined;
    candidate = other(upstreamColor);
  }
  const leftovers = containers
    .filter(
      (c) =>
        c.labels['bluegreen.app'] === cfg.app &&
        c.name !== containerName(cfg.app, 'blue') &&
        c.name !== containerName(cfg.app, 'green')
    )
    .map((c) => c.name);
  return {
    live,
    candidate,
    replaceExisting: Boolean(byColor[candidate]),
    upstreamContent,
    upstreamColor,
    byColor,
    leftovers,
    notes
  };
}
