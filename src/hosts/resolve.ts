/**
 * Hosts named by EC2 instance id or found by tag (`hosts: tag:Role=backend`, `i-0abc…`): resolved with
 * DescribeInstances once, in the run, after the inputs were checked and before any host is touched. Tag selectors are
 * ANDed and match running instances only (a stopped instance with the same tags is left out); an instance named by
 * id must be running. With transport: ssm a host is its instance id; with ssh, its private or public address
 * (ssh-address). Hosts are labelled `i-… (Name)` in logs, the summary and outputs (hosts accepts that form back).
 */
import type { DeployConfig, HostQuery, HostTarget } from '../model/config.js';

export interface Ec2Instance {
  InstanceId?: string;
  PrivateIpAddress?: string;
  PublicIpAddress?: string;
  State?: { Name?: string };
  Tags?: Array<{ Key?: string; Value?: string }>;
}

export interface DescribeInput {
  InstanceIds?: string[];
  Filters?: Array<{ Name: string; Values: string[] }>;
  NextToken?: string;
}

/** DescribeInstances, one page (tests supply fakes). */
export type DescribeInstances = (
  input: DescribeInput
) => Promise<{ Reservations?: Array<{ Instances?: Ec2Instance[] }>; NextToken?: string }>;

export class HostResolveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostResolveError';
  }
}

/** The EC2 filters of the tag selectors, as DescribeInstances gets them. */
export function tagFilters(query: HostQuery, states: string[] = ['running']): NonNullable<DescribeInput['Filters']> {
  return [
    ...query.tags.map((t) => ({ Name: `tag:${t.key}`, Values: [t.value] })),
    ...(states.length ? [{ Name: 'instance-state-name', Values: states }] : [])
  ];
}

const describeFilters = (f: NonNullable<DescribeInput['Filters']>) =>
  f.map((x) => `${x.Name}=${x.Values.join('|')}`).join(', ');

async function describeAll(describe: DescribeInstances, input: DescribeInput): Promise<Ec2Instance[]> {
  const out: Ec2Instance[] = [];
  let token: string | undefined;
  do {
    const page = await describe({ ...input, NextToken: token });
    for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []));
    token = page.NextToken;
  } while (token);
  return out;
}

const nameOf = (i: Ec2Instance) => i.Tags?.find((t) => t.Key === 'Name')?.Value || undefined;

/** The label of an instance: `i-… (Name)`. */
export function instanceLabel(id: string, name?: string): string {
  return name ? `${id} (${name.replace(/[(),\n]/g, ' ').trim()})` : id;
}

/** The instances of the query as targets; throws HostResolveError saying what was looked for when something is missing. */
export async function resolveQuery(
  query: HostQuery,
  cfg: Pick<DeployConfig, 'transport' | 'sshAddress' | 'awsRegion'>,
  describe: DescribeInstances
): Promise<HostTarget[]> {
  const region = cfg.awsRegion ?? '?';
  const found: Ec2Instance[] = [];
  if (query.instanceIds.length) {
    const byId = await describeAll(describe, { InstanceIds: query.instanceIds }).catch((e: Error) => {
      throw explainEc2Error(e, region, `InstanceIds ${query.instanceIds.join(', ')}`);
    });
    const problems: string[] = [];
    for (const id of query.instanceIds) {
      const i = byId.find((x) => x.InstanceId === id);
      if (!i) problems.push(`${id} was not found in ${region}`);
      else if (i.State?.Name !== 'running')
        problems.push(`${instanceLabel(id, nameOf(i))} is ${i.State?.Name ?? 'not running'}`);
      else found.push(i);
    }
    if (problems.length)
      throw new HostResolveError(`hosts: ${problems.join('; ')} (DescribeInstances in ${region}); nothing was touched`);
  }
  if (query.tags.length) {
    const filters = tagFilters(query);
    const matched = await describeAll(describe, { Filters: filters }).catch((e: Error) => {
      throw explainEc2Error(e, region, describeFilters(filters));
    });
    if (!matched.length) {
      // Say why: instances with these tags that are not running, if any.
      const any = await describeAll(describe, { Filters: tagFilters(query, []) }).catch(() => []);
      const others = any.length
        ? `; ${any.length} instance(s) with these tags are not running: ${any.map((i) => `${instanceLabel(i.InstanceId ?? '?', nameOf(i))} ${i.State?.Name ?? '?'}`).join(', ')}`
        : '';
      throw new HostResolveError(
        `hosts: no running instance matches ${query.tags.map((t) => `tag:${t.key}=${t.value}`).join(' AND ')} in ${region} (DescribeInstances filters: ${describeFilters(filters)})${others}; nothing was touched`
      );
    }
    matched.sort((a, b) => (a.InstanceId ?? '').localeCompare(b.InstanceId ?? ''));
    for (const i of matched) if (!found.some((f) => f.InstanceId === i.InstanceId)) found.push(i);
  }
  return found.map((i) => toTarget(i, query, cfg));
}

function toTarget(i: Ec2Instance, query: HostQuery, cfg: Pick<DeployConfig, 'transport' | 'sshAddress'>): HostTarget {
  const id = i.InstanceId!;
  const name = nameOf(i);
  const label = instanceLabel(id, name);
  if (cfg.transport === 'ssm') return { label, host: id, port: 0, user: query.user, instanceId: id, name };
  const address = cfg.sshAddress === 'public' ? i.PublicIpAddress : i.PrivateIpAddress;
  if (!address)
    throw new HostResolveError(
      `hosts: ${label} has no ${cfg.sshAddress} IPv4 address (ssh-address: ${cfg.sshAddress}${cfg.sshAddress === 'public' ? '; use ssh-address: private with a runner in the VPC' : ''}); nothing was touched`
    );
  return { label, host: address, port: query.port, user: query.user, instanceId: id, name };
}

export function explainEc2Error(e: Error & { name?: string }, region: string, what: string): HostResolveError {
  const raw = `${e.name ?? 'Error'}: ${e.message}`;
  let why = 'EC2 DescribeInstances failed';
  if (/CredentialsProviderError|Could not load credentials|AuthFailure|InvalidClientTokenId|ExpiredToken/i.test(raw))
    why =
      'no usable AWS credentials on the runner to look the hosts up: add aws-actions/configure-aws-credentials before this step';
  else if (/UnauthorizedOperation|AccessDenied/i.test(raw))
    why = "the job's role may not look the hosts up: it needs ec2:DescribeInstances";
  else if (/InvalidInstanceID/i.test(raw)) why = `an instance id is not known in ${region}`;
  return new HostResolveError(`hosts: ${why} (looked for ${what} in ${region}; ${raw}); nothing was touched`);
}

/** The EC2 client, loaded lazily (most of the bundle). */
export async function ec2Describe(region: string): Promise<{ describe: DescribeInstances; destroy(): void }> {
  const m = await import('@aws-sdk/client-ec2');
  const client = new m.EC2Client({ region, maxAttempts: 4 });
  return { describe: (input) => client.send(new m.DescribeInstancesCommand(input)), destroy: () => client.destroy() };
}

/** The run's hosts: those named by address, then the instances the query found (each once). */
export async function resolveHosts(cfg: DeployConfig, describe?: DescribeInstances): Promise<DeployConfig> {
  if (!cfg.hostQuery) return cfg;
  const own = describe ? undefined : await ec2Describe(cfg.awsRegion!);
  try {
    const found = await resolveQuery(cfg.hostQuery, cfg, describe ?? own!.describe);
    const hosts = [...cfg.hosts];
    for (const t of found) if (!hosts.some((h) => h.host === t.host && h.port === t.port)) hosts.push(t);
    return { ...cfg, hosts };
  } finally {
    own?.destroy();
  }
}
