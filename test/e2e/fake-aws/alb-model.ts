/**
 * The state of the ALB stand-in: its load balancer, target groups (with their registered targets and health),
 * listeners and rules, plus the configuration a test gives (AlbConfig). The API (alb-api.ts), the health checker
 * (alb-health.ts) and the data plane (alb-dataplane.ts) all work on one AlbModel inside the child process.
 *
 * node: imports only (runs in the child process under Node's type stripping).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';

export type TargetType = 'instance' | 'ip';
export type TargetStateName = 'initial' | 'healthy' | 'unhealthy' | 'draining' | 'unused' | 'unavailable';

export interface AlbHealthCheckConfig {
  /** GET path of the health check (default "/") */
  path?: string;
  /** as DescribeTargetGroups reports it (default 5) */
  intervalSeconds?: number;
  /** the real interval between checks in ms, so tests need not wait 5 s per check (default intervalSeconds * 1000) */
  intervalMs?: number;
  timeoutSeconds?: number;
  /** real timeout of one check in ms (default timeoutSeconds * 1000) */
  timeoutMs?: number;
  healthyThreshold?: number;
  unhealthyThreshold?: number;
  /** HttpCode matcher: "200", "200,302" or "200-399" (default "200") */
  matcher?: string;
}

export interface AlbTargetGroupConfig {
  name: string;
  targetType?: TargetType;
  /** traffic port of targets registered without a Port */
  port: number;
  protocol?: 'HTTP';
  healthCheck?: AlbHealthCheckConfig;
  /** deregistration_delay.timeout_seconds as DescribeTargetGroupAttributes reports it (default 300, as AWS) */
  deregistrationDelaySeconds?: number;
  /** the real draining time in ms (default deregistrationDelaySeconds * 1000) */
  deregistrationDelayMs?: number;
  /** targets registered from the start (they start `initial` and go through the health checks) */
  targets?: { id: string; port?: number }[];
}

/** `forward` to target groups by name; one group without weight is the plain TargetGroupArn form. */
export interface AlbForwardConfig {
  forward: { targetGroup: string; weight?: number }[];
}

export interface AlbRuleConfig {
  /** key for AlbFake.arns.rules */
  name: string;
  priority: number;
  pathPatterns?: string[];
  hostHeaders?: string[];
  action: AlbForwardConfig;
}

export interface AlbListenerConfig {
  /** key for AlbFake.arns.listeners */
  name: string;
  /** local port of the data plane on 127.0.0.1 (0: any free one) */
  port: number;
  defaultAction: AlbForwardConfig;
  rules?: AlbRuleConfig[];
}

export interface AlbInstanceConfig {
  privateIp: string;
  state?: 'running' | 'stopped' | 'pending' | 'terminated';
}

/** An injected API error: the next `times` calls of `action` (every one if unset) fail with it. */
export interface AlbFault {
  action: string;
  /** awsQuery error code, e.g. Throttling, TargetGroupNotFound, InternalFailure */
  code: string;
  message?: string;
  /** HTTP status (default 400; 5xx makes the SDK retry it) */
  status?: number;
  times?: number;
}

export interface AlbConfig {
  region: string;
  accountId: string;
  loadBalancerName: string;
  targetGroups: AlbTargetGroupConfig[];
  listeners: AlbListenerConfig[];
  /** instances beyond the fleet convention (bgf-hN = i-0f1ee7<N as 11 hex digits>, 10.204.0.(10+N), running while
   *  its netns exists); an entry here overrides the convention for that id */
  instances?: Record<string, AlbInstanceConfig>;
  /** API actions answered with AccessDenied (403) */
  deny?: string[];
  faults?: AlbFault[];
}

export interface Target {
  id: string;
  port: number;
  /** where the data plane and the health checks connect */
  ip: string;
  state: TargetStateName;
  reason?: string;
  description?: string;
  okStreak: number;
  failStreak: number;
  /** requests being served right now */
  inflight: number;
  registeredAt: number;
  drainTimer?: NodeJS.Timeout;
  checkTimer?: NodeJS.Timeout;
  /** bumped on every (re-)registration so an old health check loop stops */
  generation: number;
}

export interface TargetGroup {
  arn: string;
  name: string;
  targetType: TargetType;
  protocol: 'HTTP';
  port: number;
  hc: Required<AlbHealthCheckConfig>;
  deregistrationDelaySeconds: number;
  deregistrationDelayMs: number;
  /** key `${id}:${port}` */
  targets: Map<string, Target>;
  /** round-robin position inside the group */
  rr: number;
}

export interface ForwardAction {
  type: 'forward';
  groups: { arn: string; weight: number }[];
  /** given as a plain TargetGroupArn (DescribeListeners then shows TargetGroupArn too) */
  single: boolean;
  /** smooth weighted round-robin state per group arn (deterministic shares: 9:1 is exactly 9 of 10) */
  wrr: Map<string, number>;
}

export interface Rule {
  arn: string;
  name: string;
  priority: number;
  pathPatterns: string[];
  hostHeaders: string[];
  actions: ForwardAction[];
}

export interface Listener {
  arn: string;
  name: string;
  port: number;
  defaultActions: ForwardAction[];
  rules: Rule[];
}

/** One API call as the stand-in received it. */
export interface AlbCall {
  /** epoch ms */
  time: number;
  action: string;
  params: Record<string, string>;
  region: string;
  accessKeyId: string;
  /** error code when the call failed */
  error?: string;
}

/** A target's state changed (a registration starts as `initial`; `removed`: it left the group). */
export interface AlbHealthEvent {
  /** epoch ms */
  time: number;
  targetGroup: string;
  targetGroupArn: string;
  id: string;
  port: number;
  state: TargetStateName | 'removed';
  reason?: string;
}

/** One request through a listener. */
export interface AlbServed {
  /** epoch ms when the request arrived and when its response ended */
  start: number;
  end: number;
  listener: string;
  method: string;
  path: string;
  status: number;
  targetGroup?: string;
  targetId?: string;
  targetIp?: string;
  targetPort?: number;
  /** why the ALB answered itself (no target, target failed) */
  error?: string;
}

export interface AlbArns {
  loadBalancer: string;
  targetGroups: Record<string, string>;
  listeners: Record<string, string>;
  rules: Record<string, string>;
}

const hex16 = (s: string) => crypto.createHash('sha256').update(s).digest('hex').slice(0, 16);

export const FLEET_INSTANCE = /^i-0f1ee7([0-9a-f]{11})$/;

/** bgf-hN's instance id by the fleet convention (COMMON.md): bgf-h1 -> i-0f1ee700000000001 */
export function fleetInstanceId(n: number): string {
  return `i-0f1ee7${n.toString(16).padStart(11, '0')}`;
}

export class AlbModel {
  readonly config: AlbConfig;
  readonly lbArn: string;
  readonly groups = new Map<string, TargetGroup>();
  readonly listeners = new Map<string, Listener>();
  readonly deny: Set<string>;
  faults: AlbFault[];
  readonly instances: Record<string, AlbInstanceConfig>;
  /** called when a group's in-use status may have changed (the health checker starts or parks its targets) */
  onUsageChange: () => void = () => {};

  constructor(config: AlbConfig) {
    this.config = config;
    this.deny = new Set(config.deny ?? []);
    this.faults = (config.faults ?? []).map((f) => ({ ...f }));
    this.instances = { ...(config.instances ?? {}) };
    const lbId = hex16(`lb/${config.loadBalancerName}`);
    const prefix = `arn:aws:elasticloadbalancing:${config.region}:${config.accountId}`;
    this.lbArn = `${prefix}:loadbalancer/app/${config.loadBalancerName}/${lbId}`;
    for (const g of config.targetGroups) {
      const hc = g.healthCheck ?? {};
      const intervalSeconds = hc.intervalSeconds ?? 5;
      const timeoutSeconds = hc.timeoutSeconds ?? Math.min(5, intervalSeconds);
      const delay = g.deregistrationDelaySeconds ?? 300;
      const tg: TargetGroup = {
        arn: `${prefix}:targetgroup/${g.name}/${hex16(`tg/${g.name}`)}`,
        name: g.name,
        targetType: g.targetType ?? 'instance',
        protocol: 'HTTP',
        port: g.port,
        hc: {
          path: hc.path ?? '/',
          intervalSeconds,
          intervalMs: hc.intervalMs ?? intervalSeconds * 1000,
          timeoutSeconds,
          timeoutMs: hc.timeoutMs ?? timeoutSeconds * 1000,
          healthyThreshold: hc.healthyThreshold ?? 5,
          unhealthyThreshold: hc.unhealthyThreshold ?? 2,
          matcher: hc.matcher ?? '200'
        },
        deregistrationDelaySeconds: delay,
        deregistrationDelayMs: g.deregistrationDelayMs ?? delay * 1000,
        targets: new Map(),
        rr: 0
      };
      this.groups.set(tg.arn, tg);
    }
    for (const l of config.listeners) {
      const id = hex16(`listener/${l.name}`);
      const arn = `${prefix}:listener/app/${config.loadBalancerName}/${lbId}/${id}`;
      const rules = (l.rules ?? []).map((r) => ({
        arn: `${prefix}:listener-rule/app/${config.loadBalancerName}/${lbId}/${id}/${hex16(`rule/${l.name}/${r.name}`)}`,
        name: r.name,
        priority: r.priority,
        pathPatterns: r.pathPatterns ?? [],
        hostHeaders: r.hostHeaders ?? [],
        actions: [this.forwardFromConfig(r.action)]
      }));
      this.listeners.set(arn, {
        arn,
        name: l.name,
        port: l.port,
        defaultActions: [this.forwardFromConfig(l.defaultAction)],
        rules
      });
    }
  }

  private forwardFromConfig(c: AlbForwardConfig): ForwardAction {
    const groups = c.forward.map((f) => {
      const tg = this.groupByName(f.targetGroup);
      if (!tg) throw new Error(`fake ALB config: listener/rule forwards to unknown target group "${f.targetGroup}"`);
      return { arn: tg.arn, weight: f.weight ?? 1 };
    });
    return {
      type: 'forward',
      groups,
      single: c.forward.length === 1 && c.forward[0].weight === undefined,
      wrr: new Map()
    };
  }

  groupByName(name: string): TargetGroup | undefined {
    return [...this.groups.values()].find((g) => g.name === name);
  }

  arns(): AlbArns {
    const listeners: Record<string, string> = {};
    const rules: Record<string, string> = {};
    for (const l of this.listeners.values()) {
      listeners[l.name] = l.arn;
      for (const r of l.rules) rules[r.name] = r.arn;
    }
    const targetGroups: Record<string, string> = {};
    for (const g of this.groups.values()) targetGroups[g.name] = g.arn;
    return { loadBalancer: this.lbArn, targetGroups, listeners, rules };
  }

  allRules(): { listener: Listener; rule: Rule }[] {
    return [...this.listeners.values()].flatMap((listener) => listener.rules.map((rule) => ({ listener, rule })));
  }

  /** A group is in use while a listener's default action or a rule forwards to it (any weight, 0 included), as
   *  in AWS: the targets of a group no listener uses are `unused` (Target.NotInUse) and get no health checks. */
  inUse(tg: TargetGroup): boolean {
    for (const l of this.listeners.values()) {
      const actions = [...l.defaultActions, ...l.rules.flatMap((r) => r.actions)];
      if (actions.some((a) => a.groups.some((g) => g.arn === tg.arn))) return true;
    }
    return false;
  }

  /** The instance behind an id, by the config or the fleet convention; undefined if there is no such instance. */
  instance(id: string): AlbInstanceConfig | undefined {
    if (this.instances[id]) return this.instances[id];
    const m = FLEET_INSTANCE.exec(id);
    if (!m) return undefined;
    const n = parseInt(m[1], 16);
    if (n < 1 || n > 40) return undefined;
    // a fleet host is "running" while its network namespace exists (test/sandbox/fleet-up.sh creates it)
    return { privateIp: `10.204.0.${10 + n}`, state: fs.existsSync(`/run/netns/bgf-h${n}`) ? 'running' : 'stopped' };
  }
}
