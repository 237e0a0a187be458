/**
 * The load balancer's API as the ALB routers use it: a few ELBv2 calls through @aws-sdk/client-elastic-load-balancing-v2
 * (loaded lazily, with the job's AWS credentials, in aws-region; AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 is the
 * SDK's own way to point it elsewhere). Every failure names the call, the resource and what to check.
 */
import type * as Sdk from '@aws-sdk/client-elastic-load-balancing-v2';

export type ElbModule = Pick<
  typeof Sdk,
  | 'DescribeTargetGroupsCommand'
  | 'DescribeTargetGroupAttributesCommand'
  | 'DescribeTargetHealthCommand'
  | 'RegisterTargetsCommand'
  | 'DeregisterTargetsCommand'
  | 'DescribeListenersCommand'
  | 'ModifyListenerCommand'
  | 'DescribeRulesCommand'
  | 'ModifyRuleCommand'
>;

/** What the routers need of the SDK client: `send` (tests give an in-process fake of it). */
export interface ElbClientLike {
  send(command: unknown): Promise<unknown>;
  destroy?(): void;
}

export type TargetType = 'instance' | 'ip';

export interface TargetGroupInfo {
  arn: string;
  name: string;
  targetType: TargetType;
  /** The input it was named by, for messages: alb-target-group "web-tg". */
  label: string;
  /** deregistration_delay.timeout_seconds */
  deregistrationDelaySeconds?: number;
  healthCheckPath?: string;
  healthCheckIntervalSeconds?: number;
  healthyThresholdCount?: number;
  loadBalancerArns: string[];
}

export interface Target {
  id: string;
  port: number;
}

export interface TargetHealthView extends Target {
  /** initial, healthy, unhealthy, unused, draining, unavailable; "unregistered" when the ALB does not list it. */
  state: string;
  reason?: string;
  description?: string;
}

/** A forward action's weighted target groups, as the listener (or rule) holds them. */
export interface ForwardWeights {
  /** arn → weight */
  weights: Record<string, number>;
}

export type Action = Sdk.Action;

const IAM_ACTION: Record<string, string> = {
  DescribeTargetGroups: 'elasticloadbalancing:DescribeTargetGroups',
  DescribeTargetGroupAttributes: 'elasticloadbalancing:DescribeTargetGroupAttributes',
  DescribeTargetHealth: 'elasticloadbalancing:DescribeTargetHealth',
  RegisterTargets: 'elasticloadbalancing:RegisterTargets',
  DeregisterTargets: 'elasticloadbalancing:DeregisterTargets',
  DescribeListeners: 'elasticloadbalancing:DescribeListeners',
  ModifyListener: 'elasticloadbalancing:ModifyListener',
  DescribeRules: 'elasticloadbalancing:DescribeRules',
  ModifyRule: 'elasticloadbalancing:ModifyRule'
};

/** An ALB call that failed, with the SDK's error name (for callers that decide on it). */
export class ElbError extends Error {
  constructor(
    message: string,
    readonly code: string
  ) {
    super(message);
    this.name = 'ElbError';
  }
}

/** The message for a failed call: the call, the resource, what the ALB said and what to check. */
export function explainElbError(call: string, resource: string, region: string, e: unknown): ElbError {
  const err = e as Error & { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
  const code = (err.name && err.name !== 'Error' ? err.name : err.Code) ?? 'Error';
  const said = `${code.replace(/Exception$/, '')}: ${err.message}`;
  const short = code.replace(/Exception$/, '');
  let hint: string;
  if (/CredentialsProviderError|Could not load credentials/i.test(`${code} ${err.message}`)) {
    hint = `there are no AWS credentials on the runner for traffic: alb: add aws-actions/configure-aws-credentials before this step (${err.message})`;
    return new ElbError(`${call} ${resource}: ${hint}`, code);
  }
  if (/AccessDenied|UnauthorizedOperation|NotAuthorized|not authorized/i.test(`${code} ${err.message}`)) {
    hint = `the job's AWS identity may not call ${IAM_ACTION[call] ?? call}: allow it in the role's policy (README, ALB mode, lists every permission)`;
  } else if (short === 'TargetGroupNotFound') {
    hint = `${resource} does not exist in ${region}: check the name or ARN and aws-region`;
  } else if (short === 'ListenerNotFound') {
    hint = `${resource} does not exist in ${region}: check the ARN (aws elbv2 describe-listeners --load-balancer-arn …) and aws-region`;
  } else if (short === 'RuleNotFound') {
    hint = `${resource} does not exist in ${region}: check the ARN (aws elbv2 describe-rules --listener-arn …)`;
  } else if (short === 'InvalidTarget') {
    hint = `the ALB refused the target for ${resource}: an instance target must be a running instance in the group's VPC, an ip target an address in the VPC's ranges, and the port must be 1-65535`;
  } else if (short === 'TooManyTargets' || short === 'TooManyRegistrationsForTargetId') {
    hint = `a limit of the load balancer was reached registering in ${resource}`;
  } else if (short === 'OperationNotPermitted' || short === 'InvalidConfigurationRequest') {
    hint = `the ALB refused to change ${resource}`;
  } else if (/Throttl|TooManyRequests|RequestLimitExceeded/i.test(code)) {
    hint = `the ALB API throttled the call on ${resource} (retried ${3} times): try again, or deploy fewer hosts at once`;
  } else if (/ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|socket hang up|TimeoutError/i.test(`${code} ${err.message}`)) {
    hint = `the ELBv2 API in ${region} was not reachable from the runner for ${resource}`;
  } else {
    hint = `on ${resource} in ${region}`;
  }
  return new ElbError(`${call} failed: ${hint} (${said})`, code);
}

/** Loads the SDK only when traffic: alb is used: it stays out of every other run's cold start. */
export async function loadElb(region: string): Promise<Elb> {
  const sdk = await import('@aws-sdk/client-elastic-load-balancing-v2');
  return new Elb(new sdk.ElasticLoadBalancingV2Client({ region, maxAttempts: 3 }), sdk, region);
}

export class Elb {
  constructor(
    private readonly client: ElbClientLike,
    private readonly sdk: ElbModule,
    readonly region: string
  ) {}

  close(): void {
    this.client.destroy?.();
  }

  private async call<T>(name: string, resource: string, command: unknown): Promise<T> {
    try {
      return (await this.client.send(command)) as T;
    } catch (e) {
      throw explainElbError(name, resource, this.region, e);
    }
  }

  /** A target group by name or ARN, with its target type and deregistration delay. */
  async targetGroup(nameOrArn: string, input: string): Promise<TargetGroupInfo> {
    const label = `${input} "${nameOrArn}"`;
    const byArn = nameOrArn.startsWith('arn:');
    const out = await this.call<Sdk.DescribeTargetGroupsCommandOutput>(
      'DescribeTargetGroups',
      label,
      new this.sdk.DescribeTargetGroupsCommand(byArn ? { TargetGroupArns: [nameOrArn] } : { Names: [nameOrArn] })
    );
    const tg = out.TargetGroups?.[0];
    if (!tg?.TargetGroupArn)
      throw new ElbError(
        `DescribeTargetGroups failed: ${label} does not exist in ${this.region}: check the name or ARN and aws-region`,
        'TargetGroupNotFound'
      );
    const type = tg.TargetType ?? 'instance';
    if (type !== 'instance' && type !== 'ip')
      throw new ElbError(
        `${label} has target type ${type}: traffic: alb registers EC2 hosts, so the group's target type must be instance or ip`,
        'UnsupportedTargetType'
      );
    if (tg.Protocol && !/^HTTPS?$/.test(tg.Protocol))
      throw new ElbError(
        `${label} uses protocol ${tg.Protocol}: traffic: alb needs a target group of an Application Load Balancer (HTTP or HTTPS)`,
        'UnsupportedProtocol'
      );
    const attrs = await this.call<Sdk.DescribeTargetGroupAttributesCommandOutput>(
      'DescribeTargetGroupAttributes',
      label,
      new this.sdk.DescribeTargetGroupAttributesCommand({ TargetGroupArn: tg.TargetGroupArn })
    );
    const delay = attrs.Attributes?.find((a) => a.Key === 'deregistration_delay.timeout_seconds')?.Value;
    return {
      arn: tg.TargetGroupArn,
      name: tg.TargetGroupName ?? nameOrArn,
      targetType: type,
      label,
      deregistrationDelaySeconds: delay !== undefined && /^\d+$/.test(delay) ? Number(delay) : undefined,
      healthCheckPath: tg.HealthCheckPath,
      healthCheckIntervalSeconds: tg.HealthCheckIntervalSeconds,
      healthyThresholdCount: tg.HealthyThresholdCount,
      loadBalancerArns: tg.LoadBalancerArns ?? []
    };
  }

  /** The health of the given targets (or of every target in the group). A target the ALB does not know is "unregistered". */
  async targetHealth(tg: TargetGroupInfo, targets?: Target[]): Promise<TargetHealthView[]> {
    const out = await this.call<Sdk.DescribeTargetHealthCommandOutput>(
      'DescribeTargetHealth',
      tg.label,
      new this.sdk.DescribeTargetHealthCommand({
        TargetGroupArn: tg.arn,
        ...(targets ? { Targets: targets.map((t) => ({ Id: t.id, Port: t.port })) } : {})
      })
    );
    const views: TargetHealthView[] = (out.TargetHealthDescriptions ?? []).map((d) => ({
      id: d.Target?.Id ?? '',
      port: d.Target?.Port ?? 0,
      state: d.TargetHealth?.State ?? 'unavailable',
      reason: d.TargetHealth?.Reason,
      description: d.TargetHealth?.Description
    }));
    // Asked for by id, the ALB answers "unused" (Target.NotRegistered) for one it does not have.
    return views.map((v) =>
      v.state === 'unused' && v.reason === 'Target.NotRegistered' ? { ...v, state: 'unregistered' } : v
    );
  }

  async register(tg: TargetGroupInfo, targets: Target[]): Promise<void> {
    await this.call(
      'RegisterTargets',
      `${tg.label} (${targets.map(describeTarget).join(', ')})`,
      new this.sdk.RegisterTargetsCommand({
        TargetGroupArn: tg.arn,
        Targets: targets.map((t) => ({ Id: t.id, Port: t.port }))
      })
    );
  }

  async deregister(tg: TargetGroupInfo, targets: Target[]): Promise<void> {
    await this.call(
      'DeregisterTargets',
      `${tg.label} (${targets.map(describeTarget).join(', ')})`,
      new this.sdk.DeregisterTargetsCommand({
        TargetGroupArn: tg.arn,
        Targets: targets.map((t) => ({ Id: t.id, Port: t.port }))
      })
    );
  }

  /** The actions that forward: the listener's default actions, or a rule's actions. */
  async readActions(listenerArn: string, ruleArn?: string): Promise<Action[]> {
    if (ruleArn) {
      const out = await this.call<Sdk.DescribeRulesCommandOutput>(
        'DescribeRules',
        `alb-rule "${ruleArn}"`,
        new this.sdk.DescribeRulesCommand({ RuleArns: [ruleArn] })
      );
      const rule = out.Rules?.[0];
      if (!rule)
        throw new ElbError(
          `DescribeRules failed: alb-rule "${ruleArn}" does not exist in ${this.region}`,
          'RuleNotFound'
        );
      return rule.Actions ?? [];
    }
    const out = await this.call<Sdk.DescribeListenersCommandOutput>(
      'DescribeListeners',
      `alb-listener "${listenerArn}"`,
      new this.sdk.DescribeListenersCommand({ ListenerArns: [listenerArn] })
    );
    const l = out.Listeners?.[0];
    if (!l)
      throw new ElbError(
        `DescribeListeners failed: alb-listener "${listenerArn}" does not exist in ${this.region}`,
        'ListenerNotFound'
      );
    return l.DefaultActions ?? [];
  }

  /** One call that replaces the forward action (ModifyListener, or ModifyRule with alb-rule). */
  async writeActions(listenerArn: string, ruleArn: string | undefined, actions: Action[]): Promise<void> {
    if (ruleArn)
      await this.call(
        'ModifyRule',
        `alb-rule "${ruleArn}"`,
        new this.sdk.ModifyRuleCommand({ RuleArn: ruleArn, Actions: actions })
      );
    else
      await this.call(
        'ModifyListener',
        `alb-listener "${listenerArn}"`,
        new this.sdk.ModifyListenerCommand({ ListenerArn: listenerArn, DefaultActions: actions })
      );
  }
}

export function describeTarget(t: Target): string {
  return `${t.id}:${t.port}`;
}

/** The forward action's weights by target group ARN (a plain TargetGroupArn forward is weight 1 on that group). */
export function forwardWeights(actions: Action[]): Record<string, number> | undefined {
  const fwd = actions.find((a) => a.Type === 'forward');
  if (!fwd) return undefined;
  const groups = fwd.ForwardConfig?.TargetGroups;
  if (groups?.length)
    return Object.fromEntries(groups.filter((g) => g.TargetGroupArn).map((g) => [g.TargetGroupArn!, g.Weight ?? 1]));
  if (fwd.TargetGroupArn) return { [fwd.TargetGroupArn]: 1 };
  return {};
}

/**
 * The same actions with the forward action sending `weights` (arn → weight): its order, stickiness and every other
 * action (authenticate-*, …) kept as they are.
 */
export function withWeights(actions: Action[], weights: Record<string, number>): Action[] {
  return actions.map((a) => {
    if (a.Type !== 'forward') return a;
    const { TargetGroupArn: _single, ...rest } = a;
    void _single;
    return {
      ...rest,
      ForwardConfig: {
        ...(a.ForwardConfig ?? {}),
        TargetGroups: Object.entries(weights).map(([arn, w]) => ({ TargetGroupArn: arn, Weight: w }))
      }
    };
  });
}
