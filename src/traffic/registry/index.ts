/**
 * The routers, by the `traffic` input: each router's folder is plugged in here once, and nothing outside src/traffic
 * asks which router it has. The deploy, status and report ask through the Router interface (../router.ts) and these
 * few run-level functions.
 */
import type { DeployConfig, Traffic } from '../../model/config.js';
import type { RunResult } from '../../model/results.js';
import type { HostStatus } from '../../model/status.js';
import { renderAlbSection } from '../alb/report.js';
import { albStatusLine } from '../alb/status.js';
import { AlbTraffic, type ElbLoader } from '../alb/traffic.js';
import { CaddyRouter, caddyStatusLine } from '../caddy/router.js';
import { haproxyStatusLine } from '../haproxy/status.js';
import { HaproxyRouter } from '../haproxy/router.js';
import { NginxRouter } from '../nginx/router.js';
import { PortSwapRouter } from '../port-swap/router.js';
import type { Router, RunTraffic } from '../router.js';

/** What a run gives the routers beyond the config. */
export interface TrafficDeps {
  /** traffic alb: the load balancer's API client (default: the AWS SDK's, loaded when first needed). */
  elb?: ElbLoader;
  /** The run's log, for what a router does once for the fleet. */
  note?: (message: string) => void;
}

type Cell = (s: string) => string;

/** One router as the rest of the action knows it. */
interface RouterKind {
  /** One run's traffic: a router per host, and what the hosts share. */
  run(cfg: DeployConfig, deps: TrafficDeps): RunTraffic;
  /** The job summary's section of the run, if the router has one (alb: the listener and each target's health). */
  summarySection?(r: RunResult, cell: Cell): string | undefined;
  /** The status summary's line for a host, if the router has one. */
  statusLine?(st: HostStatus, cell: (s: string | undefined) => string): string | undefined;
}

/** Routers that share nothing between hosts: a new one per host. */
const perHost = (make: (cfg: DeployConfig) => Router) => (cfg: DeployConfig) => ({ routerFor: () => make(cfg) });

const ROUTERS: Record<Traffic, RouterKind> = {
  nginx: { run: perHost((cfg) => new NginxRouter(cfg)) },
  'port-swap': { run: perHost((cfg) => new PortSwapRouter(cfg)) },
  haproxy: { run: perHost((cfg) => new HaproxyRouter(cfg)), statusLine: haproxyStatusLine },
  caddy: { run: perHost((cfg) => new CaddyRouter(cfg)), statusLine: caddyStatusLine },
  alb: {
    run: (cfg, deps) => new AlbTraffic(cfg, deps.elb, deps.note),
    summarySection: renderAlbSection,
    statusLine: (st, cell) => (st.alb ? albStatusLine(st.alb, cell) : undefined)
  }
};

/** The traffic of one run (deploy, rollback or status). */
export function trafficFor(cfg: DeployConfig, deps: TrafficDeps = {}): RunTraffic {
  return ROUTERS[cfg.traffic].run(cfg, deps);
}

/** The router of the config's first host, for a single-host caller (tests, tools). */
export function routerFor(cfg: DeployConfig): Router {
  return trafficFor(cfg).routerFor(cfg.hosts?.[0]);
}

/** The job summary's traffic section of a run, if its router has one. */
export function summarySection(traffic: Traffic, r: RunResult, cell: Cell): string | undefined {
  return ROUTERS[traffic].summarySection?.(r, cell);
}

/** The status summary's router line for a host, if its router has one. */
export function statusLine(st: HostStatus, cell: (s: string | undefined) => string): string | undefined {
  return ROUTERS[st.traffic as Traffic]?.statusLine?.(st, cell);
}
