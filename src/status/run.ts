import type { DeployConfig } from '../model/config.js';
import type { RunDeps } from '../deploy/run.js';
import type { RunLog } from '../log/log.js';
import type { StatusReport } from '../model/status.js';
import { liveColor } from '../model/host.js';
import { trafficFor } from '../traffic/registry/index.js';
import { findingsFor } from './host-status.js';
import { readHostStatus } from './host-status.js';
import { type HostStatus } from '../model/status.js';

export const STATUS_SCHEMA_VERSION = 1;

/** Reads every host in parallel; an unreachable host is reported, not fatal for the others. */
export async function runStatus(cfg: DeployConfig, log: RunLog, deps: RunDeps): Promise<StatusReport> {
  const started = Date.now();
  // One run's traffic for every host (alb: one load balancer client; the listener and groups are described once).
  const traffic = trafficFor(cfg, { elb: deps.elb });
  const hosts = await Promise.all(
    cfg.hosts.map(async (target): Promise<HostStatus> => {
      const hostLog = log.forHost(target.label);
      hostLog.begin('status');
      const t0 = Date.now();
      try {
        const remote = await deps.connect(target, cfg.ssh);
        try {
          const router = traffic.routerFor(target);
          const st = await readHostStatus(cfg, router, remote, hostLog);
          // The proxy's or load balancer's own view decides which colour is live, and adds its findings.
          const seen = await router.status?.({ cfg, remote, log: hostLog }, st);
          if (seen) {
            const running = (['blue', 'green'] as const).filter((c) => st.colors[c].state === 'running');
            st.live = liveColor(running, seen.routed, st.live);
            for (const c of ['blue', 'green'] as const)
              if (st.colors[c].exists) st.colors[c].role = c === st.live ? 'live' : 'standby';
            st.findings = [...findingsFor(st), ...(seen.findings?.(st) ?? [])];
          }
          for (const f of st.findings)
            (f.level === 'info' ? hostLog.info : hostLog.warn).call(hostLog, `${f.level}: ${f.message}`);
          hostLog.info(
            st.live ? `live: ${st.live} (${st.colors[st.live].image ?? 'unknown image'})` : 'no colour is live'
          );
          hostLog.end('status', 'ok', Date.now() - t0);
          return st;
        } finally {
          remote.close();
        }
      } catch (e) {
        const message = (e as Error).message;
        hostLog.error(message);
        hostLog.end('status', 'failed', Date.now() - t0);
        return {
          host: target.label,
          reachable: false,
          error: message,
          traffic: cfg.traffic,
          colors: { blue: { exists: false, role: 'none' }, green: { exists: false, role: 'none' } },
          leftovers: [],
          history: [],
          lock: { held: false },
          findings: [{ level: 'error', message }]
        };
      }
    })
  );
  await traffic.close?.();
  return {
    schemaVersion: STATUS_SCHEMA_VERSION,
    app: cfg.app,
    generatedAt: new Date().toISOString(),
    durationMs: Date.now() - started,
    hosts
  };
}
