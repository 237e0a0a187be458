/**
 * `command: status` with traffic haproxy: HAProxy's own view of the backend's two servers (admin and operational
 * state, current sessions, check status), read through its runtime API, read-only. The live colour is the one HAProxy
 * routes to; findings say where HAProxy and the containers disagree.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import type { Finding, HostStatus } from '../../model/status.js';
import type { RouterStatus, StatusContext } from '../router.js';
import type { RemoteHost } from '../../transport/remote-host.js';
import { missingServers, readBackendView } from './router.js';
import { HaproxyRuntime } from './runtime.js';
import { describeServer, routedColor, type ServerView } from './view.js';

export interface HaproxyStatus {
  socket: string;
  backend: string;
  /** The colour HAProxy sends new requests to. */
  routed?: Color;
  servers: Partial<
    Record<
      Color,
      Pick<
        ServerView,
        'admin' | 'op' | 'sessions' | 'status' | 'checkStatus' | 'checkCode' | 'checkDesc' | 'address' | 'port'
      >
    >
  >;
  /** HAProxy could not be read (the rest of the status still is). */
  error?: string;
}

/** Reads HAProxy's view; never throws (an unreachable socket is a finding). */
export async function readHaproxyStatus(
  cfg: DeployConfig,
  remote: RemoteHost
): Promise<{ status: HaproxyStatus; lines: string[] }> {
  const base = { socket: cfg.haproxySocket, backend: cfg.haproxyBackend, servers: {} };
  try {
    const view = await readBackendView(new HaproxyRuntime(remote, cfg.haproxySocket), cfg.haproxyBackend);
    const missing = missingServers(view);
    const servers: HaproxyStatus['servers'] = {};
    for (const c of ['blue', 'green'] as const) {
      const s = view.servers[c];
      if (s)
        servers[c] = {
          admin: s.admin,
          op: s.op,
          sessions: s.sessions,
          status: s.status,
          checkStatus: s.checkStatus,
          checkCode: s.checkCode,
          checkDesc: s.checkDesc,
          address: s.address,
          port: s.port
        };
    }
    const lines = (['blue', 'green'] as const).map(
      (c) => `haproxy ${cfg.haproxyBackend}/${describeServer(view.servers[c]).replace(/^missing$/, `${c}: missing`)}`
    );
    return { status: { ...base, servers, routed: routedColor(view), error: missing }, lines };
  } catch (e) {
    return { status: { ...base, error: (e as Error).message }, lines: [] };
  }
}

/** HAProxy's findings for a host's status. */
export function haproxyFindings(s: HostStatus, hx: HaproxyStatus, cfg: Pick<DeployConfig, 'ports'>): Finding[] {
  const f: Finding[] = [];
  if (hx.error) return [{ level: 'error', message: `HAProxy: ${hx.error}` }];
  const routed = hx.routed;
  if (!routed)
    f.push({
      level: 'error',
      message: `HAProxy routes to no single colour in backend ${hx.backend} (${(['blue', 'green'] as const).map((c) => `${c} ${hx.servers[c]?.admin ?? 'missing'}`).join(', ')})`
    });
  else {
    const srv = hx.servers[routed]!;
    if (s.colors[routed].state !== 'running')
      f.push({
        level: 'error',
        message: `HAProxy routes to ${routed}, whose container is ${s.colors[routed].state ?? 'missing'}`
      });
    if (srv.op !== 'up')
      f.push({
        level: 'error',
        message: `HAProxy's check finds the live ${routed} server ${srv.op} (${srv.checkStatus ?? 'no check'}${srv.checkDesc ? `: ${srv.checkDesc}` : ''})`
      });
    const other: Color = routed === 'blue' ? 'green' : 'blue';
    const o = hx.servers[other];
    if (o && o.admin !== 'maint' && !s.lock.held)
      f.push({
        level: 'warning',
        message: `HAProxy's ${other} server is ${o.admin}, not maint: a restart of HAProxy without the server-state-file would send it requests`
      });
  }
  for (const c of ['blue', 'green'] as const) {
    const srv = hx.servers[c];
    if (srv?.port !== undefined && srv.port !== cfg.ports[c])
      f.push({
        level: 'warning',
        message: `HAProxy's ${c} server points at port ${srv.port}, not ${c}-port ${cfg.ports[c]}`
      });
  }
  return f;
}

/** `command: status` with traffic haproxy: HAProxy's view of the host's backend (HaproxyRouter.status). */
export async function haproxyStatus(ctx: StatusContext, st: HostStatus): Promise<RouterStatus> {
  const { status: hx, lines } = await readHaproxyStatus(ctx.cfg, ctx.remote);
  for (const l of lines) ctx.log.info(l);
  st.haproxy = hx;
  return { routed: hx.routed, findings: (s) => haproxyFindings(s, hx, ctx.cfg) };
}

declare module '../../model/status.js' {
  interface RouterStatusFields {
    /** traffic haproxy: HAProxy's view per colour (src/traffic/haproxy/status.ts). */
    haproxy?: HaproxyStatus;
  }
}

/** The status summary's line for HAProxy (`cell` escapes text for a markdown table cell). */
export function haproxyStatusLine(st: HostStatus, cell: (s: string | undefined) => string): string | undefined {
  const hx = st.haproxy;
  if (!hx) return undefined;
  return `HAProxy \`${cell(hx.backend)}\` (${cell(hx.socket)}): ${
    hx.error
      ? cell(hx.error)
      : (['blue', 'green'] as const)
          .map((c) => {
            const s = hx.servers[c];
            return s
              ? `${c} ${s.admin}/${s.op}, ${s.sessions ?? '?'} sessions, check ${cell(s.checkStatus ?? '—')}`
              : `${c} missing`;
          })
          .join(' · ')
  }`;
}
