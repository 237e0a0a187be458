/**
 * How traffic reaches a colour, as one interface with one folder per router (nginx/, haproxy/, alb/, port-swap/): publish the
 * candidate, tell which colour takes traffic, move traffic to the candidate and verify it, and put the previous
 * colour back. The deploy's phases (src/deploy/host-deploy.ts) are the same for every router.
 */
import type { Color, DeployConfig, Traffic } from '../model/config.js';
import type { Plan } from '../model/host.js';
import type { StepTimer } from '../log/steps.js';
import type { StepName } from '../model/results.js';
import type { HostState } from '../model/host.js';
import type { RemoteScript } from '../remote/scripts.js';
import type { HostLog } from '../log/log.js';
import type { RemoteHost } from '../transport/remote-host.js';
import type { AlbHostReport } from '../model/load-balancer.js';

/** What a router may use of the host deployment it serves. */
export interface RouterHost {
  readonly cfg: DeployConfig;
  readonly deployId: string;
  readonly plan: Plan;
  readonly log: HostLog;
  readonly timer: StepTimer;
  /** The image being made live, for the upstream note. */
  readonly imageLabel: string;
  /** The host's connection as it is now (a new one after a reconnect): haproxy reaches its admin socket through it. */
  readonly remote: RemoteHost;
  /** Runs a remote script within a step; a non-zero exit becomes a StepError of that step. */
  exec(step: StepName, s: RemoteScript, what: string, onLine?: (line: string) => void): Promise<string>;
  /** Health step: waits until the container answers 2xx on the port (fails at once if it exits or restarts). */
  waitHealthy(port: number, container: string): Promise<void>;
  /** One probe that must answer 2xx. */
  probeOnce(step: StepName, port: number): Promise<void>;
  /** The verify-seconds watch window on the port. */
  watch(port: number): Promise<void>;
  /** Undo of `start`: removes this run's candidate (only if it made it) and puts back the standby it replaced. */
  discardCandidate(state?: HostState): Promise<void>;
  /**
   * The candidate is healthy and takes no traffic yet: the last moment to check it (the user's smoke test).
   * A router whose candidate cannot run before the switch (port-swap) never calls it.
   */
  beforeTraffic(port: number): Promise<void>;
  /** Before changing traffic: makes sure this run still holds the host's deploy lock (takes it again if it may be lost). */
  ensureLock(): Promise<void>;
  /** From now on traffic may be on the candidate: a failure switches back (decided from the host's real state). */
  trafficMayHaveMoved(): void;
  warn(message: string): void;
}

export interface Cutover {
  /** nginx: upstream written until the old workers stop accepting; port-swap: old stopped until new healthy. */
  cutoverMs?: number;
  /** nginx: upstream written until the first new worker runs. */
  switchMs?: number;
  /** port-swap: the real downtime. */
  downtimeMs?: number;
  /** nginx: the workers from before the reload; the finishing job waits for them before stopping the old colour. */
  workersBefore: string[];
  /** haproxy, alb: the old colour has no sessions / connections left (or drain-seconds passed) and takes no traffic: stop it without waiting. */
  drained?: boolean;
  /**
   * nginx-switch njs: the old colour's port. It takes no new request, and the finishing job waits until nginx has no
   * connection to it left (at most drain-seconds) before stopping it: nothing on the run's path waits for that.
   */
  drainPort?: number;
}

export interface TrafficRouter {
  readonly kind: Traffic;
  /** 'run': the candidate starts beside the live colour; 'create': it is only started at the switch. */
  readonly startVerb: 'run' | 'create';
  /** `docker run --publish …` of a colour. */
  publishArgs(color: Color): string[];
  /**
   * Routing that only the proxy itself can tell (haproxy: `show servers state <backend>`), read with the host's
   * state (detect, switch-back) and kept as its upstreamContent: routedColor and the undo decide from it.
   */
  readRouting?(remote: RemoteHost): Promise<string>;
  /** The colour that traffic is routed to according to the host's configuration, if the router can tell. */
  routedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined;
  /** Port on the host where a running colour answers its health checks (status, probes). */
  probePort(color: Color): number;
  /** From a started candidate to traffic on it, verified: the health, switch and verify steps in this router's order. */
  cutOver(h: RouterHost): Promise<Cutover>;
  /**
   * Undo once traffic may have moved, decided from the host's real state (read again after the failure): put the
   * previous colour back if this run moved traffic, and discard the candidate. Returns whether traffic was moved back.
   */
  switchBack(h: RouterHost, state: HostState): Promise<boolean>;
  /** The container the finishing job drains and stops once the new colour is committed (port-swap stopped it already). */
  retire(plan: Plan): string | undefined;
  /**
   * Once committed, before the old colour is stopped: take it out of the load balancer (alb: DeregisterTargets) and,
   * with `wait`, wait until it drained (the group's deregistration delay, at most drain-seconds). Returns how long the
   * job on the host is still to wait before it stops the old colour: 0 when the run waited; otherwise the draining
   * the load balancer may still do (the host cannot ask it). A failure only warns.
   */
  drainOld?(h: RouterHost, wait: boolean): Promise<number>;
  /** What the router saw of the load balancer (alb: the target health over time), for the summary and metrics. */
  report?(): AlbHostReport | undefined;
}

/** Whether a config's content was written by this run (the upstream note names the deploy id). */
export function writtenBy(content: string | undefined, deployId: string): boolean {
  return Boolean(content?.includes(deployId));
}

export type RouterFactory = (cfg: DeployConfig) => TrafficRouter;

/**
 * The verify-seconds watch (`ours`: our probes) and beside it the proxy's or load balancer's own view: `check` runs
 * every `everyMs` until the watch ends, and whichever fails first fails verify. The other one then ends by itself
 * (ours at the end of verify-seconds); its outcome no longer matters.
 */
export async function watchBeside(ours: Promise<void>, check: () => Promise<void>, everyMs: number): Promise<void> {
  let done = false;
  const watched = ours.finally(() => {
    done = true;
  });
  const theirs = (async () => {
    while (!done) {
      try {
        await check();
      } catch (e) {
        if (!done) throw e;
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  try {
    await Promise.race([watched, theirs]);
    await Promise.all([watched, theirs]);
  } catch (e) {
    done = true;
    watched.catch(() => undefined);
    theirs.catch(() => undefined);
    throw e;
  }
}
