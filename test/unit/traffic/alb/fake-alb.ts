/**
 * An in-process fake of the ELBv2 client's `send` for unit tests (the e2e tests use the sandbox's stand-in, which
 * speaks the real wire protocol): target groups with targets whose health follows `healthy(target)` after a
 * number of health polls, draining for a number of polls after a deregistration, a listener (and rules) with
 * weighted forward actions, and a record of every call. Commands are the SDK's own classes.
 */
import * as sdk from '@aws-sdk/client-elastic-load-balancing-v2';
import { Elb } from '../../../../src/traffic/alb/elb.js';

export interface FakeTarget {
  id: string;
  port: number;
  state: 'initial' | 'healthy' | 'unhealthy' | 'draining';
  polls: number;
}

export interface FakeGroup {
  arn: string;
  name: string;
  type: 'instance' | 'ip';
  delaySeconds: number;
  targets: Map<string, FakeTarget>;
}

export interface FakeCall {
  name: string;
  input: Record<string, unknown>;
  /** The order of the call among all calls. */
  seq: number;
}

export const REGION = 'us-east-1';
export const arnOf = (name: string) =>
  `arn:aws:elasticloadbalancing:${REGION}:123456789012:targetgroup/${name}/${'0123456789abcdef'}`;
export const LISTENER = `arn:aws:elasticloadbalancing:${REGION}:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2`;
export const RULE = `arn:aws:elasticloadbalancing:${REGION}:123456789012:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee`;

class FakeAwsError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

export class FakeAlb {
  readonly groups = new Map<string, FakeGroup>();
  readonly calls: FakeCall[] = [];
  /** "group id:port" → the seq of the first DescribeTargetHealth call that answered healthy for it. */
  readonly healthySince = new Map<string, number>();
  listenerActions: sdk.Action[] = [];
  /** The actions of the one rule RULE (alb-rule), if a test gives it some. */
  ruleActions?: sdk.Action[];
  /** Polls of DescribeTargetHealth until a new target's first check result. */
  pollsToHealthy = 2;
  /** Polls a deregistered target stays draining. */
  drainPolls = 2;
  /** Whether the ALB's health check of a target passes (default: every target). */
  healthy: (t: { id: string; port: number; group: string }) => boolean = () => true;
  /** Makes a call fail: return an error to throw. */
  failOn?: (name: string, input: Record<string, unknown>) => Error | undefined;

  addGroup(name: string, type: 'instance' | 'ip' = 'instance', delaySeconds = 5): FakeGroup {
    const g: FakeGroup = { arn: arnOf(name), name, type, delaySeconds, targets: new Map() };
    this.groups.set(g.arn, g);
    return g;
  }

  /** A target already registered and healthy (as an earlier deploy left it). */
  seed(group: string, id: string, port: number): this {
    const g = this.group(group);
    g.targets.set(`${id}:${port}`, { id, port, state: 'healthy', polls: 99 });
    return this;
  }

  forwardTo(weights: Record<string, number>): this {
    this.listenerActions = [
      {
        Type: 'forward',
        Order: 1,
        ForwardConfig: {
          TargetGroups: Object.entries(weights).map(([name, w]) => ({ TargetGroupArn: arnOf(name), Weight: w })),
          TargetGroupStickinessConfig: { Enabled: false }
        }
      }
    ];
    return this;
  }

  /** name → weight of the listener's forward action now. */
  weights(): Record<string, number> {
    const fwd = this.listenerActions.find((a) => a.Type === 'forward');
    return Object.fromEntries(
      (fwd?.ForwardConfig?.TargetGroups ?? []).map((g) => [
        [...this.groups.values()].find((x) => x.arn === g.TargetGroupArn)?.name ?? g.TargetGroupArn,
        g.Weight ?? 1
      ])
    );
  }

  group(name: string): FakeGroup {
    const g = [...this.groups.values()].find((x) => x.name === name);
    if (!g) throw new Error(`no fake group ${name}`);
    return g;
  }

  /** "id:port state" of a group's targets, sorted. */
  targetsOf(name: string): string[] {
    return [...this.group(name).targets.values()].map((t) => `${t.id}:${t.port} ${t.state}`).sort();
  }

  callsNamed(name: string): FakeCall[] {
    return this.calls.filter((c) => c.name === name);
  }

  elb(): Elb {
    return new Elb({ send: (cmd) => this.send(cmd) }, sdk, REGION);
  }

  private findGroup(input: { TargetGroupArn?: string }): FakeGroup {
    const g = this.groups.get(input.TargetGroupArn ?? '');
    if (!g) throw new FakeAwsError('TargetGroupNotFoundException', `One or more target groups not found`);
    return g;
  }

  async send(cmd: unknown): Promise<unknown> {
    await new Promise((r) => setImmediate(r));
    const name = (cmd as object).constructor.name.replace(/Command$/, '');
    const input = (cmd as { input: Record<string, unknown> }).input;
    this.calls.push({
      name,
      input: JSON.parse(JSON.stringify(input)) as Record<string, unknown>,
      seq: this.calls.length
    });
    const err = this.failOn?.(name, input);
    if (err) throw err;
    switch (name) {
      case 'DescribeTargetGroups': {
        const names = (input.Names as string[] | undefined) ?? [];
        const arns = (input.TargetGroupArns as string[] | undefined) ?? [];
        const found = [...this.groups.values()].filter((g) => names.includes(g.name) || arns.includes(g.arn));
        if (!found.length)
          throw new FakeAwsError('TargetGroupNotFoundException', `One or more target groups not found`);
        return {
          TargetGroups: found.map((g) => ({
            TargetGroupArn: g.arn,
            TargetGroupName: g.name,
            TargetType: g.type,
            Protocol: 'HTTP',
            HealthCheckPath: '/health',
            LoadBalancerArns: []
          }))
        };
      }
      case 'DescribeTargetGroupAttributes': {
        const g = this.findGroup(input);
        return { Attributes: [{ Key: 'deregistration_delay.timeout_seconds', Value: String(g.delaySeconds) }] };
      }
      case 'RegisterTargets': {
        const g = this.findGroup(input);
        for (const t of input.Targets as Array<{ Id: string; Port: number }>) {
          const key = `${t.Id}:${t.Port}`;
          const cur = g.targets.get(key);
          if (!cur || cur.state === 'draining')
            g.targets.set(key, { id: t.Id, port: t.Port, state: 'initial', polls: 0 });
        }
        return {};
      }
      case 'DeregisterTargets': {
        const g = this.findGroup(input);
        for (const t of input.Targets as Array<{ Id: string; Port: number }>) {
          const cur = g.targets.get(`${t.Id}:${t.Port}`);
          if (cur) {
            cur.state = 'draining';
            cur.polls = 0;
          }
        }
        return {};
      }
      case 'DescribeTargetHealth': {
        const g = this.findGroup(input);
        const asked =
          (input.Targets as Array<{ Id: string; Port: number }> | undefined) ??
          [...g.targets.values()].map((t) => ({ Id: t.id, Port: t.port }));
        const out = asked.map((a) => {
          const t = g.targets.get(`${a.Id}:${a.Port}`);
          if (!t)
            return {
              Target: { Id: a.Id, Port: a.Port },
              TargetHealth: {
                State: 'unused',
                Reason: 'Target.NotRegistered',
                Description: 'Target is not registered to the target group'
              }
            };
          t.polls++;
          if (t.state === 'draining' && t.polls > this.drainPolls) {
            g.targets.delete(`${a.Id}:${a.Port}`);
            return {
              Target: { Id: a.Id, Port: a.Port },
              TargetHealth: { State: 'unused', Reason: 'Target.NotRegistered' }
            };
          }
          if (t.state !== 'draining' && t.polls >= this.pollsToHealthy)
            t.state = this.healthy({ id: t.id, port: t.port, group: g.name }) ? 'healthy' : 'unhealthy';
          const key = `${g.name} ${t.id}:${t.port}`;
          if (t.state === 'healthy' && !this.healthySince.has(key)) this.healthySince.set(key, this.calls.length - 1);
          return {
            Target: { Id: t.id, Port: t.port },
            TargetHealth: {
              State: t.state,
              ...(t.state === 'unhealthy'
                ? { Reason: 'Target.ResponseCodeMismatch', Description: 'Health checks failed with these codes: [500]' }
                : {})
            }
          };
        });
        return { TargetHealthDescriptions: out };
      }
      case 'DescribeListeners':
        if ((input.ListenerArns as string[])[0] !== LISTENER)
          throw new FakeAwsError('ListenerNotFoundException', 'One or more listeners not found');
        return {
          Listeners: [
            { ListenerArn: LISTENER, DefaultActions: JSON.parse(JSON.stringify(this.listenerActions)) as sdk.Action[] }
          ]
        };
      case 'ModifyListener':
        this.listenerActions = JSON.parse(JSON.stringify(input.DefaultActions)) as sdk.Action[];
        return {};
      case 'DescribeRules':
        if (!this.ruleActions || (input.RuleArns as string[])[0] !== RULE)
          throw new FakeAwsError('RuleNotFoundException', 'One or more rules not found');
        return {
          Rules: [
            { RuleArn: RULE, Priority: '10', Actions: JSON.parse(JSON.stringify(this.ruleActions)) as sdk.Action[] }
          ]
        };
      case 'ModifyRule':
        this.ruleActions = JSON.parse(JSON.stringify(input.Actions)) as sdk.Action[];
        return {};
      default:
        throw new Error(`the fake ALB does not know ${name}`);
    }
  }
}
