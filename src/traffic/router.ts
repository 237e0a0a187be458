/**
 * How traffic reaches a colour: one interface, one folder per router (nginx/, haproxy/, alb/, port-swap/), found by
 * the registry (registry/index.ts). The deploy (src/deploy/host-deploy.ts) drives the same sequence for every router
 * and asks the router at each point; a router is given a narrow context (the host's transport, the config, the plan,
 * a logger) and returns results. It never calls back into the deploy: it imports nothing from deploy/, status/ or
 * report/.
 *
 *   start      docker run (startVerb 'run': beside the live colour) or docker create ('create': bound at the switch)
 *   health     beforeHealth → the deploy's health wait on probePort(candidate) → afterHealth     ('run' routers)
 *   smoke      the user's smoke test (deploy); a failure up to here: abandon
 *   switch     the deploy takes the lock again if needed and marks traffic as possibly moved, then switchTraffic
 *   health     ('create' routers: after the switch)
 *   verify     confirm → one probe → the verify-seconds watch, with watchCheck beside it → afterVerify
 *   committed  drainOld (load balancers), then the finishing job stops retire(plan) on the host
 *   undo       switchBack(state) decided from the host's state read again; the deploy then discards the candidate
 */
import type { HostLog } from '../log/log.js';
import type { Color, DeployConfig, HostTarget, Traffic } from '../model/config.js';
import type { HostState, Plan } from '../model/host.js';
import type { AlbHostReport, AlbListenerReport } from '../model/load-balancer.js';
import type { StepName } from '../model/results.js';
import type { Finding, HostStatus } from '../model/status.js';
import type { DrainFragment, RemoteScript } from '../remote/scripts.js';
import { runStep } from '../transport/exec.js';
import type { RemoteHost } from '../transport/remote-host.js';

/** The routing read on a host, with the colours that run there. */
export interface RoutingView {
  upstreamContent?: string;
  running: Color[];
}

/** What a router is given about the host deployment it serves: values and the host's transport. */
export interface RouterContext {
  readonly cfg: DeployConfig;
  readonly deployId: string;
  readonly plan: Plan;
  readonly log: HostLog;
  /** The image being made live, for the upstream note. */
  readonly imageLabel: string;
  /** The host's connection as it is now (a new one after a reconnect). */
  readonly remote: RemoteHost;
  /** Aborted when the run is cancelled or the fleet stops this host: waits end early (undo never gets one). */
  readonly signal?: AbortSignal;
  /** One GET of health-path on a port of the host, through the host's transport; non-2xx throws a StepError of `step`. */
  probe(step: StepName, port: number): Promise<void>;
  /** A warning for the host's result (and the log). */
  warn(message: string): void;
}

/** Runs a router's remote script within a step (see transport/exec.ts). */
export function exec(
  ctx: Pick<RouterContext, 'remote' | 'log'>,
  step: StepName,
  s: RemoteScript,
  what: string,
  onLine?: (line: string) => void
): Promise<string> {
  return runStep(ctx.remote, ctx.log, step, s, what, onLine);
}

export interface Cutover {
  /** nginx: upstream written until the old workers stop accepting; port-swap: old stopped until new healthy. */
  cutoverMs?: number;
  /** nginx: upstream written until the first new worker runs. */
  switchMs?: number;
  /** port-swap: the real downtime. */
  downtimeMs?: number;
  /** haproxy, alb: the old colour has no sessions / connections left (or drain-seconds passed) and takes no traffic: stop it without waiting. */
  drained?: boolean;
  /**
   * How the finishing job on the host drains the old colour before it stops it (nginx: until the workers from before
   * the reload exited; njs: until nginx has no connection to the old colour's port), at most drain-seconds; without
   * one it waits drain-seconds by the clock (or not at all when `drained`). `said` turns the job's output into a
   * warning when it ran within the run (wait-for-drain).
   */
  drain?: DrainFragment & { said?(out: string, stopName: string, secs: number): string | undefined };
  /** nginx: what the switch script saw of nginx's masters, for confirm(). */
  detail?: unknown;
}

/** What an undo did to the routing; the deploy then removes the candidate (only if this run made it). */
export interface SwitchBack {
  /** Traffic was moved back to the previous colour. */
  moved: boolean;
  /** port-swap: the previous colour was started again on this port and container; the deploy waits for its health. */
  restarted?: { port: number; container: string };
}

/** The check a router runs beside the verify-seconds watch, every `everyMs`; a throw fails verify. */
export interface WatchCheck {
  everyMs: number;
  check(): Promise<void>;
}

/** What `command: status` gives a router: read-only. */
export interface StatusContext {
  readonly cfg: DeployConfig;
  readonly remote: RemoteHost;
  readonly log: HostLog;
}

/** What a router adds to a host's status (it sets its own field of HostStatus, e.g. `haproxy`, itself). */
export interface RouterStatus {
  /** The colour the router sends traffic to, if it can tell: the live colour when it runs. */
  routed?: Color;
  /** Its findings, once the status knows the live colour. */
  findings?(st: HostStatus): Finding[];
}

export interface Router {
  readonly kind: Traffic;
  /** 'run': the candidate starts beside the live colour; 'create': it is only started at the switch. */
  readonly startVerb: 'run' | 'create';
  /** port-swap: the candidate holds the public port, so the undo removes it before the previous colour starts again. */
  readonly discardBeforeSwitchBack?: boolean;
  /** `docker run --publish …` of a colour. */
  publishArgs(color: Color): string[];
  /** The file detect reads as the host's routing (nginx: its upstream file); '' when the router reads it itself. */
  routingFile(): string;
  /**
   * Routing that only the proxy itself can tell (haproxy: `show servers state <backend>`), read with the host's
   * state (detect, switch-back) and kept as its upstreamContent: routedColor and the undo decide from it.
   */
  readRouting?(remote: RemoteHost): Promise<string>;
  /** The port the routing file names (status shows it even when it is neither colour's). */
  routedPort?(content: string | undefined): number | undefined;
  /** The colour that traffic is routed to according to the host's routing, if the router can tell. */
  routedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined;
  /** What detect should say about the routing it read (a port that is neither colour's, …); `running`: the colours running. */
  routingNotes?(state: RoutingView): string[];
  /**
   * When the routing decides the candidate for every host at once (alb listener), the colour it routes to; the
   * candidate is then the other colour whatever runs on this host.
   */
  fleetRoutedColor?(state: RoutingView): Color | undefined;
  /** Port on the host where a running colour answers its health checks (status, probes). */
  probePort(color: Color): number;
  /** Health step, before the deploy waits for the candidate: e.g. let the proxy start checking it. */
  beforeHealth?(ctx: RouterContext): Promise<void>;
  /** Health step, once the candidate answers: e.g. wait until the proxy or load balancer calls it healthy. */
  afterHealth?(ctx: RouterContext): Promise<void>;
  /**
   * A failure before the switch (health, smoke test, cancel): put back what before/afterHealth changed. Never throws.
   * `ownsHost` false: this run lost the deploy lock to another deploy, so nothing on the host may change any more.
   */
  abandon?(ctx: RouterContext, how: { ownsHost: boolean }): Promise<void>;
  /** Moves traffic to the candidate. It may have moved even when this throws: the undo reads the host again. */
  switchTraffic(ctx: RouterContext): Promise<Cutover>;
  /** Verify, first: the router's own proof that traffic moved (before the deploy's probe and watch). */
  confirm?(ctx: RouterContext, cutover: Cutover): Promise<void>;
  /** Verify: checked beside the deploy's verify-seconds watch. */
  watchCheck?(ctx: RouterContext): WatchCheck;
  /** Verify, last: e.g. drain the old colour into maint (haproxy), or wait for the fleet before the rest (canary). */
  afterVerify?(ctx: RouterContext): Promise<void>;
  /**
   * Undo once traffic may have moved, decided from the host's real state (read again after the failure): put the
   * previous colour back if this run moved traffic.
   */
  switchBack(ctx: RouterContext, state: HostState): Promise<SwitchBack>;
  /** The container the finishing job drains and stops once the new colour is committed (port-swap stopped it already). */
  retire(plan: Plan): string | undefined;
  /**
   * Once committed, before the old colour is stopped: take it out of the load balancer (alb: DeregisterTargets) and,
   * with `wait`, wait until it drained (the group's deregistration delay, at most drain-seconds). Returns how long the
   * job on the host is still to wait before it stops the old colour: 0 when the run waited; otherwise the draining
   * the load balancer may still do (the host cannot ask it). A failure only warns.
   */
  drainOld?(ctx: RouterContext, wait: boolean): Promise<number>;
  /** What the router saw of the load balancer (alb: the target health over time), for the summary and metrics. */
  report?(): AlbHostReport | undefined;
  /** `command: status`: the proxy's or load balancer's own view of this host (never throws: a problem is a finding). */
  status?(ctx: StatusContext, st: HostStatus): Promise<RouterStatus>;
}

/** Whether a config's content was written by this run (the upstream note names the deploy id). */
export function writtenBy(content: string | undefined, deployId: string): boolean {
  return Boolean(content?.includes(deployId));
}

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

/** One run's traffic: a router per host, and what the run's hosts share (alb: one API client, the listener switch). */
export interface RunTraffic {
  routerFor(target: HostTarget): Router;
  /** A host's deploy ended (a fleet switch waits for every host to say so, exactly once). */
  hostDone?(host: string, ok: boolean, step?: string): void;
  /** What the run as a whole did to the traffic (alb-listener: the weights before and after), for the summary. */
  report?(): AlbListenerReport | undefined;
  close?(): Promise<void>;
}
