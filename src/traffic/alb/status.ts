/**
 * `command: status` with traffic alb: the load balancer's own view, read-only: the listener's weights (alb-listener),
 * and each group's targets with their health, this host's marked. The live colour is the one the ALB routes to;
 * findings say where the ALB and the containers disagree.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import type { Finding, HostStatus } from '../../model/status.js';
import type { RouterStatus, StatusContext } from '../router.js';
import type { RemoteHost } from '../../transport/remote-host.js';
import { describeTarget, type TargetGroupInfo } from './elb.js';
import { identityScript, parseIdentity } from './identity.js';
import { describeWeights, type ListenerSwitch } from './listener-switch.js';
import { registered, routedColorOfGroup } from './routing.js';
import type { AlbShared } from './traffic.js';

export interface AlbTargetStatus {
  target: string;
  state: string;
  reason?: string;
  /** The colour of this host that the target is (undefined: another host's target). */
  color?: Color;
}

export interface AlbGroupStatus {
  name: string;
  arn: string;
  targets: AlbTargetStatus[];
}

export interface AlbStatus {
  mode: 'target-group' | 'listener';
  instanceId?: string;
  privateIp?: string;
  listener?: { arn: string; rule?: string; weights: Record<Color, number>; live: Color };
  /** target-group: the one group under `group`; listener: one per colour. */
  groups: Partial<Record<Color | 'group', AlbGroupStatus>>;
  /** The colour the ALB sends this host's requests to. */
  routed?: Color;
  error?: string;
}

async function groupStatus(alb: AlbShared, tg: TargetGroupInfo, mine: Record<Color, string>): Promise<AlbGroupStatus> {
  const views = await (await alb.elb()).targetHealth(tg);
  return {
    name: tg.name,
    arn: tg.arn,
    targets: views.map((v) => {
      const t = describeTarget(v);
      const color = (['blue', 'green'] as const).find((c) => mine[c] === t);
      return { target: t, state: v.state, reason: v.reason, color };
    })
  };
}

/** Reads the ALB's view for one host; never throws (an unreadable ALB is a finding). */
export async function readAlbStatus(
  cfg: DeployConfig,
  remote: RemoteHost,
  alb: AlbShared,
  listener?: ListenerSwitch
): Promise<AlbStatus> {
  const mode = cfg.alb?.mode ?? 'target-group';
  const st: AlbStatus = { mode, groups: {} };
  try {
    const s = identityScript();
    const res = await remote.run(s.body, s.args);
    if (res.code !== 0)
      throw new Error(
        `reading the instance identity (IMDSv2) failed (exit ${res.code}): ${res.stderr.trim().split('\n').slice(-2).join(' ')}`
      );
    const id = parseIdentity(res.stdout);
    st.instanceId = id.instanceId;
    st.privateIp = id.privateIp;
    const mineFor = (tg: TargetGroupInfo): Record<Color, string> => {
      const ident = tg.targetType === 'ip' ? id.privateIp : id.instanceId;
      return { blue: `${ident}:${cfg.ports.blue}`, green: `${ident}:${cfg.ports.green}` };
    };
    if (cfg.alb?.mode === 'listener' && listener) {
      const groups = await listener.groups();
      const l = await listener.now();
      st.listener = { arn: cfg.alb.listenerArn, rule: cfg.alb.ruleArn, weights: l.weights, live: l.live };
      for (const c of ['blue', 'green'] as const) st.groups[c] = await groupStatus(alb, groups[c], mineFor(groups[c]));
      st.routed = l.live;
    } else if (cfg.alb?.mode === 'target-group') {
      const tg = await alb.group(cfg.alb.targetGroup, 'alb-target-group');
      const g = await groupStatus(alb, tg, mineFor(tg));
      st.groups.group = g;
      const targets: Partial<Record<Color, { state: string }>> = {};
      for (const t of g.targets) if (t.color) targets[t.color] = { state: t.state };
      st.routed = routedColorOfGroup({ group: tg.name, targets: targets as never });
    }
  } catch (e) {
    st.error = (e as Error).message;
  }
  return st;
}

/** The ALB's findings for a host's status. */
export function albFindings(s: HostStatus, a: AlbStatus): Finding[] {
  if (a.error) return [{ level: 'error', message: `load balancer: ${a.error}` }];
  const f: Finding[] = [];
  const mine = (g: AlbGroupStatus | undefined, c: Color) => g?.targets.find((t) => t.color === c);
  const live = a.routed;
  if (!live) {
    f.push({
      level: 'error',
      message:
        a.mode === 'target-group'
          ? `neither of this host's targets (blue-port, green-port) is registered in ${a.groups.group?.name ?? 'the target group'} alone`
          : 'the listener routes to no single colour'
    });
    return f;
  }
  if (s.colors[live].state !== 'running')
    f.push({
      level: 'error',
      message: `the load balancer routes to ${live}, whose container on this host is ${s.colors[live].state ?? 'missing'}`
    });
  const g = a.mode === 'target-group' ? a.groups.group : a.groups[live];
  const t = mine(g, live);
  if (!t || !registered(t))
    f.push({
      level: 'error',
      message: `this host's ${live} target is not registered in ${g?.name ?? 'its group'}${t ? ` (${t.state})` : ''}: the load balancer sends it nothing`
    });
  else if (t.state !== 'healthy')
    f.push({
      level: 'error',
      message: `the load balancer reports this host's live ${live} target ${t.target} ${t.state}${t.reason ? ` (${t.reason})` : ''}`
    });
  const idle: Color = live === 'blue' ? 'green' : 'blue';
  const o = mine(a.mode === 'target-group' ? a.groups.group : a.groups[idle], idle);
  if (o && registered(o) && !s.lock.held)
    f.push({
      level: 'warning',
      message: `this host's ${idle} target ${o.target} is still registered (${o.state})${a.mode === 'target-group' ? ': the load balancer may send it requests' : ''}`
    });
  return f;
}

/** `command: status` with traffic alb: the load balancer's view of this host (the ALB routers' status). */
export async function albStatus(
  ctx: StatusContext,
  st: HostStatus,
  shared: AlbShared,
  listener?: ListenerSwitch
): Promise<RouterStatus> {
  const a = await readAlbStatus(ctx.cfg, ctx.remote, shared, listener);
  if (a.listener) ctx.log.info(`alb listener: ${describeWeights(a.listener.weights)} (live: ${a.listener.live})`);
  for (const [k, g] of Object.entries(a.groups))
    ctx.log.info(
      `alb ${k === 'group' ? 'target group' : `${k} group`} ${g.name}: ${g.targets.map((t) => `${t.target} ${t.state}${t.color ? ` (this host's ${t.color})` : ''}`).join(', ') || 'no targets'}`
    );
  st.alb = a;
  return { routed: a.routed, findings: (s) => albFindings(s, a) };
}

declare module '../../model/status.js' {
  interface RouterStatusFields {
    /** traffic alb: the load balancer's view (src/traffic/alb/status.ts). */
    alb?: AlbStatus;
  }
}

/** The status summary's line for the ALB. */
export function albStatusLine(a: AlbStatus, cell: (s: string | undefined) => string): string {
  if (a.error) return `Load balancer: ${cell(a.error)}`;
  const parts: string[] = [];
  if (a.listener) parts.push(`listener weights ${describeWeights(a.listener.weights)}`);
  for (const [k, g] of Object.entries(a.groups)) {
    parts.push(
      `${k === 'group' ? '' : `${k} `}group \`${cell(g.name)}\`: ${g.targets.map((t) => `${cell(t.target)} ${t.state}${t.color ? ` (this host's ${t.color})` : ''}`).join(', ') || 'no targets'}`
    );
  }
  return `Load balancer (${a.instanceId ?? '?'}, ${a.privateIp ?? '?'}): ${parts.join(' · ')}`;
}
