/**
 * traffic alb: which of the two ways (one target group, or a listener with a group per colour), the load balancer's
 * resources by name or ARN, the canary share and publish-address. Checked against the rest of the config
 * (aws-region, rollout) in checkAlbFits.
 */
import type { AlbSettings, Color, DeployConfig, Rollout, Traffic } from '../../model/config.js';
import { Collector, printable } from './collector.js';

const PARTITION = 'arn:aws(?:-[a-z]+)*:elasticloadbalancing:([a-z]{2}(?:-[a-z]+)+-\\d{1,2}):(\\d{12})';
export const TARGET_GROUP_ARN = new RegExp(`^${PARTITION}:targetgroup/([A-Za-z0-9-]{1,32})/([0-9a-f]{1,32})$`);
export const LISTENER_ARN = new RegExp(
  `^${PARTITION}:listener/app/([A-Za-z0-9-]{1,32})/([0-9a-f]{1,32})/([0-9a-f]{1,32})$`
);
export const RULE_ARN = new RegExp(
  `^${PARTITION}:listener-rule/app/([A-Za-z0-9-]{1,32})/([0-9a-f]{1,32})/([0-9a-f]{1,32})/([0-9a-f]{1,32})$`
);
/** A target group's name: 1-32 letters, digits and hyphens, not beginning or ending with a hyphen. */
export const TARGET_GROUP_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/;

export const EXAMPLES = {
  targetGroup:
    'backend-tg (or arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/backend-tg/50dc6c495c0c9188)',
  listener:
    'arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/backend-alb/50dc6c495c0c9188/f2f7dc8efc522ab2',
  rule: 'arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/backend-alb/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee',
  blue: 'backend-blue',
  green: 'backend-green'
};

const ALB_INPUTS = [
  'alb-target-group',
  'alb-listener',
  'alb-rule',
  'alb-blue-target-group',
  'alb-green-target-group',
  'alb-canary-percent',
  'publish-address'
] as const;

/** The region an ALB ARN names (for the check against aws-region). */
export function arnRegion(arn: string): string | undefined {
  return /^arn:[^:]+:elasticloadbalancing:([^:]+):/.exec(arn)?.[1];
}

function targetGroupInput(c: Collector, name: string, example: string): string | undefined {
  const v = c.raw(name);
  if (!v) return undefined;
  if (v.startsWith('arn:')) {
    if (!TARGET_GROUP_ARN.test(v))
      return c.fail(
        name,
        `is not a target group ARN (arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>; got "${printable(v)}")`,
        example
      );
  } else if (!TARGET_GROUP_NAME.test(v)) {
    return c.fail(
      name,
      `must be a target group's name (1-32 letters, digits and hyphens, not beginning or ending with "-") or its ARN (got "${printable(v)}")`,
      example
    );
  }
  return v;
}

export function readAlb(c: Collector, traffic: Traffic): Pick<DeployConfig, 'alb' | 'publishAddress'> {
  if (traffic !== 'alb') {
    for (const name of ALB_INPUTS)
      if (c.raw(name))
        c.fail(
          name,
          `only applies to traffic: alb (traffic is ${traffic})`,
          name === 'publish-address'
            ? '0.0.0.0 with traffic: alb'
            : `${EXAMPLES.targetGroup.split(' ')[0]} with traffic: alb`
        );
    return { alb: undefined, publishAddress: '127.0.0.1' };
  }
  const publishAddress = c.raw('publish-address') || '0.0.0.0';
  if (!/^(\d{1,3})(\.\d{1,3}){3}$/.test(publishAddress) || publishAddress.split('.').some((o) => Number(o) > 255)) {
    c.fail(
      'publish-address',
      `must be an IPv4 address of the host that the load balancer reaches, or 0.0.0.0 for all (got "${printable(publishAddress)}")`,
      '0.0.0.0'
    );
  }
  const single = targetGroupInput(c, 'alb-target-group', EXAMPLES.targetGroup);
  const listener = c.raw('alb-listener');
  const rule = c.raw('alb-rule');
  const blue = targetGroupInput(c, 'alb-blue-target-group', EXAMPLES.blue);
  const green = targetGroupInput(c, 'alb-green-target-group', EXAMPLES.green);
  const canaryRaw = c.raw('alb-canary-percent');
  const listenerWay = Boolean(listener || rule || c.raw('alb-blue-target-group') || c.raw('alb-green-target-group'));

  if (c.raw('alb-target-group') && listenerWay) {
    const others = ['alb-listener', 'alb-rule', 'alb-blue-target-group', 'alb-green-target-group'].filter((n) =>
      c.raw(n)
    );
    c.fail(
      'alb-target-group',
      `and ${others.join(', ')} are two different ways and cannot be combined: one target group (each host swaps its own targets) or a listener with a group per colour (the whole fleet switched at once)`,
      `${EXAMPLES.blue}-tg alone, or alb-listener + alb-blue-target-group + alb-green-target-group`
    );
    return { alb: undefined, publishAddress };
  }
  if (!c.raw('alb-target-group') && !listenerWay) {
    c.fail(
      'traffic',
      'alb needs alb-target-group (one target group: each host swaps its own targets) or alb-listener with alb-blue-target-group and alb-green-target-group (the whole fleet switched at once)',
      `alb with alb-target-group: ${EXAMPLES.targetGroup.split(' ')[0]}`
    );
    return { alb: undefined, publishAddress };
  }
  if (c.raw('alb-target-group')) {
    if (canaryRaw)
      c.fail(
        'alb-canary-percent',
        'only applies with alb-listener (a weighted listener switch); with one target group use rollout: canary',
        '10 with alb-listener'
      );
    return { alb: single ? { mode: 'target-group', targetGroup: single } : undefined, publishAddress };
  }

  let ok = true;
  if (!listener)
    ok = Boolean(
      c.fail(
        'alb-listener',
        'is required with alb-blue-target-group and alb-green-target-group (the listener whose forward action is switched)',
        EXAMPLES.listener
      )
    );
  else if (!LISTENER_ARN.test(listener))
    ok = Boolean(
      c.fail(
        'alb-listener',
        `must be a listener ARN of an Application Load Balancer (arn:aws:elasticloadbalancing:<region>:<account>:listener/app/<alb>/<id>/<id>; got "${printable(listener)}")`,
        EXAMPLES.listener
      )
    );
  if (rule) {
    const r = RULE_ARN.exec(rule);
    const l = LISTENER_ARN.exec(listener);
    if (!r)
      ok = Boolean(
        c.fail(
          'alb-rule',
          `must be a listener rule ARN (arn:aws:elasticloadbalancing:<region>:<account>:listener-rule/app/<alb>/<id>/<id>/<id>; got "${printable(rule)}")`,
          EXAMPLES.rule
        )
      );
    else if (l && rule.replace(':listener-rule/', ':listener/').replace(/\/[0-9a-f]+$/, '') !== listener)
      ok = Boolean(
        c.fail('alb-rule', `belongs to another listener than alb-listener (${printable(listener)})`, EXAMPLES.rule)
      );
  }
  for (const [name, v] of [
    ['alb-blue-target-group', blue],
    ['alb-green-target-group', green]
  ] as const) {
    if (!c.raw(name))
      ok = Boolean(
        c.fail(
          name,
          'is required with alb-listener (one target group per colour)',
          name.includes('blue') ? EXAMPLES.blue : EXAMPLES.green
        )
      );
    else if (!v) ok = false;
  }
  if (blue && green && blue === green)
    ok = Boolean(
      c.fail(
        'alb-green-target-group',
        'must differ from alb-blue-target-group (each colour needs its own group)',
        EXAMPLES.green
      )
    );
  let canaryPercent: number | undefined;
  if (canaryRaw) {
    if (!/^\d{1,2}$/.test(canaryRaw) || Number(canaryRaw) < 1 || Number(canaryRaw) > 99)
      ok = Boolean(
        c.fail(
          'alb-canary-percent',
          `must be a whole number from 1 to 99: the share of requests the new colour gets first (got "${printable(canaryRaw)}")`,
          '10'
        )
      );
    else canaryPercent = Number(canaryRaw);
  }
  if (!ok) return { alb: undefined, publishAddress };
  const groups: Record<Color, string> = { blue: blue!, green: green! };
  return {
    alb: { mode: 'listener', listenerArn: listener, ruleArn: rule || undefined, groups, canaryPercent },
    publishAddress
  };
}

/** Cross-section checks: the ALB's region, and a fleet switch needs every host in the run at once. */
export function checkAlbFits(
  c: Collector,
  alb: AlbSettings | undefined,
  awsRegion: string | undefined,
  rollout: Rollout,
  hostCount: number
): void {
  if (!alb) return;
  if (!awsRegion)
    c.fail(
      'aws-region',
      'is required for traffic: alb (the region of the load balancer; it could not be read from AWS_REGION or the image host)',
      'us-east-1'
    );
  const arns =
    alb.mode === 'target-group'
      ? [['alb-target-group', alb.targetGroup]]
      : [
          ['alb-listener', alb.listenerArn],
          ['alb-rule', alb.ruleArn ?? ''],
          ['alb-blue-target-group', alb.groups.blue],
          ['alb-green-target-group', alb.groups.green]
        ];
  for (const [name, v] of arns) {
    const r = arnRegion(v);
    if (r && awsRegion && r !== awsRegion)
      c.fail(name, `is in ${r} but aws-region is ${awsRegion} (the load balancer's API is called in aws-region)`, r);
  }
  if (alb.mode !== 'listener' || hostCount < 2) return;
  // The listener moves every host's traffic in one call: no host can wait for another batch, and no host may go on alone.
  if (rollout.strategy !== 'parallel')
    c.fail(
      'rollout',
      `must be parallel with alb-listener: the listener switches every host at once, after every candidate is healthy (got ${rollout.strategy}; for a gradual shift use alb-canary-percent)`,
      'parallel'
    );
  if (rollout.maxParallel)
    c.fail(
      'max-parallel',
      'does not apply with alb-listener: every host is prepared at once and switched by one listener change',
      '(leave empty)'
    );
  if (rollout.onHostFailure !== 'rollback-all')
    c.fail(
      'on-host-failure',
      'must be rollback-all with alb-listener: one listener change moves every host, so one host cannot stay behind',
      'rollback-all'
    );
}
