/** Decides which colour is live and which one the candidate takes, from the host's real state. */
import type { Color, DeployConfig } from '../model/config.js';
import type { Router } from '../traffic/router.js';
import { containerName, liveColor, type ContainerInfo, type Plan } from '../model/host.js';
import { other, StepError } from '../model/results.js';

export function planDeploy(
  cfg: Pick<DeployConfig, 'app'>,
  router: Pick<Router, 'routedColor' | 'routingNotes' | 'fleetRoutedColor'>,
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
  // The routing as the router reads it (nginx: the upstream file; haproxy: its server states; alb: the ALB's view).
  const state = { upstreamContent, running };
  const upstreamColor = router.routedColor(state);
  notes.push(...(router.routingNotes?.(state) ?? []));

  let live = liveColor(running, upstreamColor, recordedLive);
  if (running.length === 2 && live !== upstreamColor)
    notes.push(`both colours are running; taking ${live} as live (${recordedLive ? 'recorded state' : 'default'})`);

  let candidate: Color = live ? other(live) : (upstreamColor ?? recordedLive ?? 'blue');
  const fleetColor = router.fleetRoutedColor?.(state);
  if (fleetColor) {
    // The listener decides for every host at once: the candidate goes to the idle colour's group, whatever runs here.
    if (live !== fleetColor && running.length)
      notes.push(
        `the listener sends traffic to ${fleetColor}, but this host runs ${running.join(' and ')}${byColor[fleetColor] ? '' : ` and no ${fleetColor} container`}; deploying to ${other(fleetColor)}, the idle colour`
      );
    live = running.includes(fleetColor) ? fleetColor : undefined;
    candidate = other(fleetColor);
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
