import type { DeployConfig } from '../model/config.js';
import type { RunDeps } from '../deploy/run.js';
import type { RunLog } from '../log/log.js';
import { AlbTraffic } from '../traffic/alb/traffic.js';
import { addAlbStatus } from './alb-status.js';
import { addHaproxyStatus } from './haproxy-status.js';
import { readHostStatus, type HostStatus } from './host-status.js';

export const STATUS_SCHEMA_VERSION = 1;

export interface StatusReport {
  schemaVersion: number;
  app: string;
  generatedAt: string;
  durationMs: number;
  hosts: HostStatus[];
}

/** Reads every host in parallel; an unreachable host is reported, not fatal for the others. */
export async function runStatus(cfg: DeployConfig, log: RunLog, deps: RunDeps): Promise<StatusReport> {
  const started = Date.now();
  // traffic alb: one load balancer client for every host (the listener and groups are described once).
  const alb = cfg.traffic === 'alb' ? new AlbTraffic(cfg, deps.elb) : undefined;
  const hosts = await Promise.all(
    cfg.hosts.map(async (target): Promise<HostStatus> => {
      const hostLog = log.forHost(target.label);
      hostLog.begin('status');
      const t0 = Date.now();
      try {
        const remote = await deps.connect(target, cfg.ssh);
        try {
          const st = await readHostStatus(cfg, remote, hostLog);
          if (cfg.traffic === 'haproxy') await addHaproxyStatus(cfg, remote, st, hostLog);
          if (alb) await addAlbStatus(cfg, remote, st, hostLog, alb);
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
  await alb?.close();
  return {
    schemaVersion: STATUS_SCHEMA_VERSION,
    app: cfg.app,
    generatedAt: new Date().toISOString(),
    durationMs: Date.now() - started,
    hosts
  };
}
