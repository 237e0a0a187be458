/**
 * The ELBv2 API actions of the ALB stand-in on an AlbModel: DescribeLoadBalancers, DescribeTargetGroups,
 * DescribeTargetGroupAttributes, RegisterTargets, DeregisterTargets, DescribeTargetHealth, DescribeListeners,
 * ModifyListener, DescribeRules, ModifyRule. Replies and errors are shaped as AWS sends them (member names from the
 * SDK's schemas), with AWS's error codes: TargetGroupNotFound, ListenerNotFound, RuleNotFound, LoadBalancerNotFound,
 * InvalidTarget, ValidationError, OperationNotPermitted, AccessDenied (injected per action).
 */
import http from 'node:http';
import crypto from 'node:crypto';
import { AlbApiError, errorXml, listPrefixes, parseForm, resultXml, stringList, ELB_VERSION } from './alb-query.js';
import type { QueryParams, XmlValue } from './alb-query.js';
import type { AlbCall, AlbModel, ForwardAction, Listener, Rule, Target, TargetGroup } from './alb-model.js';
import type { HealthChecker } from './alb-health.js';

const TG_ARN = /^arn:aws:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup\/[A-Za-z0-9-]{1,32}\/[0-9a-f]{16}$/;
const LISTENER_ARN =
  /^arn:aws:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener\/app\/[^/]+\/[0-9a-f]{16}\/[0-9a-f]{16}$/;
const RULE_ARN =
  /^arn:aws:elasticloadbalancing:[a-z0-9-]+:\d{12}:listener-rule\/app\/[^/]+\/[0-9a-f]{16}\/[0-9a-f]{16}\/[0-9a-f]{16}$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
// Authorization: AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/elasticloadbalancing/aws4_request, ...
const SIGV4 = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request,/;

type Handler = (p: QueryParams) => Record<string, XmlValue>;

export class AlbApi {
  private readonly model: AlbModel;
  private readonly health: HealthChecker;
  /** resolves once the parent has the record: the reply goes out only then, so a test that got it sees the call */
  private readonly record: (c: AlbCall) => Promise<void>;
  private readonly handlers: Record<string, Handler>;

  constructor(model: AlbModel, health: HealthChecker, record: (c: AlbCall) => Promise<void>) {
    this.model = model;
    this.health = health;
    this.record = record;
    this.handlers = {
      DescribeLoadBalancers: (p) => this.describeLoadBalancers(p),
      DescribeTargetGroups: (p) => this.describeTargetGroups(p),
      DescribeTargetGroupAttributes: (p) => this.describeTargetGroupAttributes(p),
      RegisterTargets: (p) => this.registerTargets(p),
      DeregisterTargets: (p) => this.deregisterTargets(p),
      DescribeTargetHealth: (p) => this.describeTargetHealth(p),
      DescribeListeners: (p) => this.describeListeners(p),
      ModifyListener: (p) => this.modifyListener(p),
      DescribeRules: (p) => this.describeRules(p),
      ModifyRule: (p) => this.modifyRule(p)
    };
  }

  /** The HTTP request handler of the API endpoint (POST / with a form body, as the SDK sends it). */
  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const requestId = crypto.randomUUID();
      const params = parseForm(Buffer.concat(chunks).toString('utf8'));
      const action = params.Action ?? '';
      const auth = SIGV4.exec(String(req.headers.authorization ?? ''));
      const call: AlbCall = { time: Date.now(), action, params, region: auth?.[2] ?? '', accessKeyId: auth?.[1] ?? '' };
      const send = (status: number, xml: string) => {
        res.writeHead(status, {
          'content-type': 'text/xml',
          'content-length': Buffer.byteLength(xml),
          'x-amzn-requestid': requestId
        });
        res.end(xml);
      };
      try {
        if (req.method !== 'POST')
          throw new AlbApiError('InvalidAction', `${req.method} is not supported, POST a form`, 400);
        if (!auth || auth[3] !== 'elasticloadbalancing') {
          throw new AlbApiError('MissingAuthenticationToken', 'Request is missing Authentication Token', 403);
        }
        if (params.Version !== ELB_VERSION)
          throw new AlbApiError('InvalidParameterValue', `unsupported Version ${params.Version}`);
        const handler = this.handlers[action];
        if (!handler)
          throw new AlbApiError(
            'InvalidAction',
            `The action ${action} is not valid for this web service (or not in the stand-in).`
          );
        const fault = this.model.faults.find((f) => f.action === action && (f.times === undefined || f.times > 0));
        if (fault) {
          if (fault.times !== undefined) fault.times--;
          throw new AlbApiError(
            fault.code,
            fault.message ?? `injected ${fault.code} for ${action}`,
            fault.status ?? 400
          );
        }
        if (this.model.deny.has(action)) {
          throw new AlbApiError(
            'AccessDenied',
            `User: arn:aws:iam::${this.model.config.accountId}:user/ci is not authorized to perform: elasticloadbalancing:${action} ` +
              `because no identity-based policy allows the elasticloadbalancing:${action} action`,
            403
          );
        }
        const xml = resultXml(action, handler(params), requestId);
        void this.record(call).then(() => send(200, xml));
      } catch (e) {
        const err =
          e instanceof AlbApiError ? e : new AlbApiError('InternalFailure', String((e as Error)?.stack ?? e), 500);
        call.error = err.code;
        void this.record(call).then(() =>
          send(err.status, errorXml(err.status >= 500 ? 'Receiver' : 'Sender', err.code, err.message, requestId))
        );
      }
    });
  }

  // ------------------------------------------------------------------ lookups

  private group(arn: string | undefined): TargetGroup {
    if (!arn)
      throw new AlbApiError(
        'ValidationError',
        "1 validation error detected: Value null at 'targetGroupArn' failed to satisfy constraint: Member must not be null"
      );
    if (!TG_ARN.test(arn)) throw new AlbApiError('ValidationError', `'${arn}' is not a valid target group ARN`);
    const tg = this.model.groups.get(arn);
    if (!tg) throw new AlbApiError('TargetGroupNotFound', `Target groups '${arn}' not found`);
    return tg;
  }

  private listener(arn: string | undefined): Listener {
    if (!arn)
      throw new AlbApiError(
        'ValidationError',
        "1 validation error detected: Value null at 'listenerArn' failed to satisfy constraint: Member must not be null"
      );
    if (!LISTENER_ARN.test(arn)) throw new AlbApiError('ValidationError', `'${arn}' is not a valid listener ARN`);
    const l = this.model.listeners.get(arn);
    if (!l) throw new AlbApiError('ListenerNotFound', `One or more listeners not found`);
    return l;
  }

  private rule(arn: string | undefined): { listener: Listener; rule: Rule | undefined } {
    if (!arn)
      throw new AlbApiError(
        'ValidationError',
        "1 validation error detected: Value null at 'ruleArn' failed to satisfy constraint: Member must not be null"
      );
    if (!RULE_ARN.test(arn)) throw new AlbApiError('ValidationError', `'${arn}' is not a valid rule ARN`);
    for (const l of this.model.listeners.values()) {
      const r = l.rules.find((x) => x.arn === arn);
      if (r) return { listener: l, rule: r };
      if (this.defaultRuleArn(l) === arn) return { listener: l, rule: undefined };
    }
    throw new AlbApiError('RuleNotFound', `One or more rules not found`);
  }

  private defaultRuleArn(l: Listener): string {
    const id = crypto.createHash('sha256').update(`default/${l.arn}`).digest('hex').slice(0, 16);
    return l.arn.replace(':listener/', ':listener-rule/') + `/${id}`;
  }

  /** Targets.member.N.Id / .Port of a request, with the instance's or IP's address resolved for the group. */
  private targets(p: QueryParams, tg: TargetGroup, mustExist: boolean): { id: string; port: number; ip: string }[] {
    const prefixes = listPrefixes(p, 'Targets');
    if (prefixes.length === 0)
      throw new AlbApiError(
        'ValidationError',
        "1 validation error detected: Value null at 'targets' failed to satisfy constraint: Member must not be null"
      );
    const notRunning: string[] = [];
    const out = prefixes.map((pre) => {
      const id = p[`${pre}.Id`];
      if (!id) throw new AlbApiError('ValidationError', `Target ID must be specified (${pre}.Id)`);
      const portText = p[`${pre}.Port`];
      const port = portText === undefined ? tg.port : Number(portText);
      if (!Number.isInteger(port) || port < 1 || port > 65535)
        throw new AlbApiError('ValidationError', `Port '${portText}' is not a valid port (1-65535)`);
      let ip = id;
      if (tg.targetType === 'ip') {
        const m = IPV4.exec(id);
        if (!m || m.slice(1).some((x) => Number(x) > 255)) {
          throw new AlbApiError('ValidationError', `The IP address '${id}' is not a valid IPv4 address`);
        }
      } else {
        if (!/^i-[0-9a-f]{8,17}$/.test(id))
          throw new AlbApiError('ValidationError', `The instance ID '${id}' is not valid`);
        const inst = this.model.instance(id);
        if (!inst) throw new AlbApiError('InvalidTarget', `The following targets are not valid instances: '${id}'`);
        if (mustExist && inst.state !== 'running') notRunning.push(id);
        ip = inst.privateIp;
      }
      return { id, port, ip };
    });
    if (notRunning.length) {
      throw new AlbApiError(
        'InvalidTarget',
        `The following targets are not in a running state and cannot be registered: '${notRunning.join("', '")}'`
      );
    }
    return out;
  }

  // ------------------------------------------------------------------ shapes

  private groupXml(tg: TargetGroup): Record<string, XmlValue> {
    const lbs = this.model.inUse(tg) ? [this.model.lbArn] : [];
    return {
      TargetGroupArn: tg.arn,
      TargetGroupName: tg.name,
      Protocol: tg.protocol,
      Port: tg.port,
      VpcId: 'vpc-0a1b2c3d4e5f60718',
      HealthCheckProtocol: 'HTTP',
      HealthCheckPort: 'traffic-port',
      HealthCheckEnabled: true,
      HealthCheckIntervalSeconds: tg.hc.intervalSeconds,
      HealthCheckTimeoutSeconds: tg.hc.timeoutSeconds,
      HealthyThresholdCount: tg.hc.healthyThreshold,
      UnhealthyThresholdCount: tg.hc.unhealthyThreshold,
      HealthCheckPath: tg.hc.path,
      Matcher: { HttpCode: tg.hc.matcher },
      LoadBalancerArns: lbs,
      TargetType: tg.targetType,
      ProtocolVersion: 'HTTP1',
      IpAddressType: 'ipv4'
    };
  }

  private actionsXml(actions: ForwardAction[]): XmlValue[] {
    return actions.map((a, i) => ({
      Type: 'forward',
      // AWS echoes a single group as TargetGroupArn as well as in ForwardConfig
      TargetGroupArn: a.groups.length === 1 ? a.groups[0].arn : undefined,
      Order: i + 1,
      ForwardConfig: {
        TargetGroups: a.groups.map((g) => ({ TargetGroupArn: g.arn, Weight: g.weight })),
        TargetGroupStickinessConfig: { Enabled: false }
      }
    }));
  }

  private listenerXml(l: Listener): Record<string, XmlValue> {
    return {
      ListenerArn: l.arn,
      LoadBalancerArn: this.model.lbArn,
      Port: l.port,
      Protocol: 'HTTP',
      DefaultActions: this.actionsXml(l.defaultActions)
    };
  }

  private ruleXml(r: Rule): Record<string, XmlValue> {
    const conditions: XmlValue[] = [];
    if (r.pathPatterns.length)
      conditions.push({ Field: 'path-pattern', Values: r.pathPatterns, PathPatternConfig: { Values: r.pathPatterns } });
    if (r.hostHeaders.length)
      conditions.push({ Field: 'host-header', Values: r.hostHeaders, HostHeaderConfig: { Values: r.hostHeaders } });
    return {
      RuleArn: r.arn,
      Priority: String(r.priority),
      Conditions: conditions,
      Actions: this.actionsXml(r.actions),
      IsDefault: false
    };
  }

  private defaultRuleXml(l: Listener): Record<string, XmlValue> {
    return {
      RuleArn: this.defaultRuleArn(l),
      Priority: 'default',
      Conditions: [],
      Actions: this.actionsXml(l.defaultActions),
      IsDefault: true
    };
  }

  /** `Actions.member.N...` of ModifyListener / ModifyRule -> forward actions (the only type the stand-in serves). */
  private parseActions(p: QueryParams, name: string): ForwardAction[] {
    const prefixes = listPrefixes(p, name);
    if (prefixes.length === 0)
      throw new AlbApiError('ValidationError', `At least one action must be specified (${name})`);
    return prefixes.map((pre) => {
      const type = p[`${pre}.Type`];
      if (type !== 'forward')
        throw new AlbApiError(
          'ValidationError',
          `Action type '${type}' is not supported by the stand-in (only forward)`
        );
      const single = p[`${pre}.TargetGroupArn`];
      const tuples = listPrefixes(p, `${pre}.ForwardConfig.TargetGroups`).map((tp) => {
        const w = p[`${tp}.Weight`];
        const weight = w === undefined ? 1 : Number(w);
        if (!Number.isInteger(weight) || weight < 0 || weight > 999)
          throw new AlbApiError('ValidationError', `Target group weight '${w}' must be between 0 and 999`);
        return { arn: this.group(p[`${tp}.TargetGroupArn`]).arn, weight };
      });
      if (single && tuples.length > 1) {
        throw new AlbApiError(
          'ValidationError',
          'You cannot specify both a target group ARN and a forward config with multiple target groups'
        );
      }
      if (single && tuples.length === 1 && tuples[0].arn !== single) {
        throw new AlbApiError(
          'ValidationError',
          'The target group ARN and the target group in the forward config must be the same'
        );
      }
      if (!single && tuples.length === 0)
        throw new AlbApiError('ValidationError', 'A forward action must have a target group ARN or a forward config');
      const groups = tuples.length ? tuples : [{ arn: this.group(single).arn, weight: 1 }];
      if (new Set(groups.map((g) => g.arn)).size !== groups.length)
        throw new AlbApiError('ValidationError', 'Target groups in a forward config must be unique');
      return { type: 'forward', groups, single: !!single && tuples.length === 0, wrr: new Map() };
    });
  }

  // ------------------------------------------------------------------ actions

  private describeLoadBalancers(p: QueryParams): Record<string, XmlValue> {
    const arns = stringList(p, 'LoadBalancerArns');
    const names = stringList(p, 'Names');
    if (
      (arns.length && !arns.every((a) => a === this.model.lbArn)) ||
      (names.length && !names.every((n) => n === this.model.config.loadBalancerName))
    ) {
      throw new AlbApiError('LoadBalancerNotFound', 'One or more load balancers not found');
    }
    const name = this.model.config.loadBalancerName;
    return {
      LoadBalancers: [
        {
          LoadBalancerArn: this.model.lbArn,
          DNSName: `${name}-1234567890.${this.model.config.region}.elb.amazonaws.com`,
          CanonicalHostedZoneId: 'Z35SXDOTRQ7X7K',
          LoadBalancerName: name,
          Scheme: 'internet-facing',
          VpcId: 'vpc-0a1b2c3d4e5f60718',
          State: { Code: 'active' },
          Type: 'application',
          IpAddressType: 'ipv4'
        }
      ]
    };
  }

  private describeTargetGroups(p: QueryParams): Record<string, XmlValue> {
    const arns = stringList(p, 'TargetGroupArns');
    const names = stringList(p, 'Names');
    const lb = p.LoadBalancerArn;
    let groups: TargetGroup[];
    if (arns.length) groups = arns.map((a) => this.group(a));
    else if (names.length) {
      groups = names.map((n) => {
        const g = this.model.groupByName(n);
        if (!g) throw new AlbApiError('TargetGroupNotFound', `One or more target groups not found`);
        return g;
      });
    } else {
      groups = [...this.model.groups.values()];
      if (lb) {
        if (lb !== this.model.lbArn) throw new AlbApiError('LoadBalancerNotFound', `Load balancer '${lb}' not found`);
        groups = groups.filter((g) => this.model.inUse(g));
      }
    }
    return { TargetGroups: groups.map((g) => this.groupXml(g)) };
  }

  private describeTargetGroupAttributes(p: QueryParams): Record<string, XmlValue> {
    const tg = this.group(p.TargetGroupArn);
    const attrs: [string, string][] = [
      ['deregistration_delay.timeout_seconds', String(tg.deregistrationDelaySeconds)],
      ['stickiness.enabled', 'false'],
      ['stickiness.type', 'lb_cookie'],
      ['load_balancing.algorithm.type', 'round_robin'],
      ['slow_start.duration_seconds', '0']
    ];
    return { Attributes: attrs.map(([Key, Value]) => ({ Key, Value })) };
  }

  private registerTargets(p: QueryParams): Record<string, XmlValue> {
    const tg = this.group(p.TargetGroupArn);
    for (const t of this.targets(p, tg, true)) this.health.register(tg, t.id, t.port, t.ip);
    return {};
  }

  private deregisterTargets(p: QueryParams): Record<string, XmlValue> {
    const tg = this.group(p.TargetGroupArn);
    const wanted = this.targets(p, tg, false);
    const missing = wanted.filter((t) => !tg.targets.has(`${t.id}:${t.port}`));
    if (missing.length) {
      throw new AlbApiError(
        'InvalidTarget',
        `The following targets are not registered in target group '${tg.arn}': ${missing.map((t) => `'${t.id}:${t.port}'`).join(', ')}`
      );
    }
    for (const t of wanted) this.health.deregister(tg, tg.targets.get(`${t.id}:${t.port}`)!);
    return {};
  }

  private describeTargetHealth(p: QueryParams): Record<string, XmlValue> {
    const tg = this.group(p.TargetGroupArn);
    const healthXml = (t: Pick<Target, 'id' | 'port' | 'state' | 'reason' | 'description'>) => ({
      Target: { Id: t.id, Port: t.port, AvailabilityZone: 'us-east-1a' },
      HealthCheckPort: String(t.port),
      TargetHealth: { State: t.state, Reason: t.reason, Description: t.description }
    });
    // the health a target has right now (instance state changes count before the next check)
    for (const t of tg.targets.values()) this.health.refresh(tg, t);
    if (listPrefixes(p, 'Targets').length === 0)
      return { TargetHealthDescriptions: [...tg.targets.values()].map(healthXml) };
    const asked = this.targets(p, tg, false);
    return {
      TargetHealthDescriptions: asked.map((a) => {
        const t = tg.targets.get(`${a.id}:${a.port}`);
        return healthXml(
          t ?? {
            id: a.id,
            port: a.port,
            state: 'unused',
            reason: 'Target.NotRegistered',
            description: 'Target is not registered to the target group'
          }
        );
      })
    };
  }

  private describeListeners(p: QueryParams): Record<string, XmlValue> {
    const arns = stringList(p, 'ListenerArns');
    let ls: Listener[];
    if (arns.length) ls = arns.map((a) => this.listener(a));
    else if (p.LoadBalancerArn) {
      if (p.LoadBalancerArn !== this.model.lbArn)
        throw new AlbApiError('LoadBalancerNotFound', 'One or more load balancers not found');
      ls = [...this.model.listeners.values()];
    } else throw new AlbApiError('ValidationError', 'You must specify either listener ARNs or a load balancer ARN');
    return { Listeners: ls.map((l) => this.listenerXml(l)) };
  }

  private modifyListener(p: QueryParams): Record<string, XmlValue> {
    const l = this.listener(p.ListenerArn);
    if (p.Port !== undefined || p.Protocol !== undefined) {
      throw new AlbApiError('ValidationError', 'the stand-in changes only DefaultActions (Port/Protocol are fixed)');
    }
    if (listPrefixes(p, 'DefaultActions').length) {
      l.defaultActions = this.parseActions(p, 'DefaultActions');
      this.model.onUsageChange();
    }
    return { Listeners: [this.listenerXml(l)] };
  }

  private describeRules(p: QueryParams): Record<string, XmlValue> {
    const arns = stringList(p, 'RuleArns');
    if (arns.length) {
      return {
        Rules: arns.map((a) => {
          const { listener, rule } = this.rule(a);
          return rule ? this.ruleXml(rule) : this.defaultRuleXml(listener);
        })
      };
    }
    if (!p.ListenerArn) throw new AlbApiError('ValidationError', 'You must specify either listener ARN or rule ARNs');
    const l = this.listener(p.ListenerArn);
    return {
      Rules: [
        ...[...l.rules].sort((a, b) => a.priority - b.priority).map((r) => this.ruleXml(r)),
        this.defaultRuleXml(l)
      ]
    };
  }

  private modifyRule(p: QueryParams): Record<string, XmlValue> {
    const { rule } = this.rule(p.RuleArn);
    if (!rule)
      throw new AlbApiError(
        'OperationNotPermitted',
        'Default rule cannot be modified: use ModifyListener to change the default actions'
      );
    if (listPrefixes(p, 'Conditions').length) {
      throw new AlbApiError('ValidationError', 'the stand-in changes only the Actions of a rule');
    }
    if (listPrefixes(p, 'Actions').length) {
      rule.actions = this.parseActions(p, 'Actions');
      this.model.onUsageChange();
    }
    return { Rules: [this.ruleXml(rule)] };
  }
}
