/**
 * In-process stand-in for EC2 DescribeInstances on the real wire protocol (EC2 query: form-encoded POST, XML reply).
 * The real @aws-sdk/client-ec2 reaches it through AWS_ENDPOINT_URL_EC2. It answers from the InstanceStore shared
 * with the SSM stand-in. Filters: tag:KEY, tag-key, tag-value, instance-state-name, instance-state-code,
 * instance-id, private-ip-address, ip-address, instance-type, availability-zone (values may use EC2's * and ?
 * wildcards; values of one filter are ORed, filters ANDed), plus InstanceId.N. No pagination: all matches in one
 * page, never a nextToken.
 */
import crypto from 'node:crypto';
import {
  AwsError,
  Faults,
  STATE_CODES,
  startServer,
  type FakeAwsRequest,
  type FakeInstance,
  type FaultSpec,
  type InstanceStore,
  type ParsedRequest,
  type Reply
} from './common.js';

const NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';
const OWNER = '123456789012';

export interface FakeEc2 {
  url: string;
  /** every request received, oldest first */
  requests(): FakeAwsRequest[];
  /** the next n calls (of `spec.operation`, default any) fail with spec.code (default RequestLimitExceeded, HTTP 503) */
  failNext(n: number, spec?: FaultSpec): void;
  close(): Promise<void>;
}

function xml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function el(name: string, value: string | number | undefined): string {
  return value === undefined ? '' : `<${name}>${xml(String(value))}</${name}>`;
}

/** EC2 filter wildcards: * any run, ? one character; everything else literal (case-sensitive, as EC2). */
function globMatch(pattern: string, value: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(value);
}

interface Filter {
  name: string;
  values: string[];
}

/** Filter.1.Name=tag:Role&Filter.1.Value.1=backend&InstanceId.1=i-... -> filters + instance ids (in index order) */
function parseQuery(form: URLSearchParams): { filters: Filter[]; instanceIds: string[] } {
  const filters = new Map<number, Filter>();
  const ids: [number, string][] = [];
  for (const [k, v] of form) {
    let m = /^Filter\.(\d+)\.Name$/.exec(k);
    if (m) {
      const f = filters.get(+m[1]) ?? { name: '', values: [] };
      f.name = v;
      filters.set(+m[1], f);
      continue;
    }
    m = /^Filter\.(\d+)\.Value\.(\d+)$/.exec(k);
    if (m) {
      const f = filters.get(+m[1]) ?? { name: '', values: [] };
      f.values.push(v);
      filters.set(+m[1], f);
      continue;
    }
    m = /^InstanceId\.(\d+)$/.exec(k);
    if (m) ids.push([+m[1], v]);
  }
  return {
    filters: [...filters.entries()].sort((a, b) => a[0] - b[0]).map(([, f]) => f),
    instanceIds: ids.sort((a, b) => a[0] - b[0]).map(([, v]) => v)
  };
}

const FILTERS = [
  'tag-key',
  'tag-value',
  'instance-state-name',
  'instance-state-code',
  'instance-id',
  'private-ip-address',
  'ip-address',
  'instance-type',
  'availability-zone'
];

/** the instance's values for a filter name (tag:KEY or one of FILTERS) */
function filterValues(inst: FakeInstance, name: string, region: string): string[] {
  if (name.startsWith('tag:')) {
    const key = name.slice(4);
    return key in inst.tags ? [inst.tags[key]] : [];
  }
  switch (name) {
    case 'tag-key':
      return Object.keys(inst.tags);
    case 'tag-value':
      return Object.values(inst.tags);
    case 'instance-state-name':
      return [inst.state];
    case 'instance-state-code':
      return [String(STATE_CODES[inst.state])];
    case 'instance-id':
      return [inst.instanceId];
    case 'private-ip-address':
      return inst.privateIp ? [inst.privateIp] : [];
    case 'ip-address':
      return inst.publicIp ? [inst.publicIp] : [];
    case 'instance-type':
      return [inst.instanceType];
    case 'availability-zone':
      return [inst.availabilityZone ?? `${region}a`];
    default:
      return [];
  }
}

function instanceXml(inst: FakeInstance, region: string): string {
  const az = inst.availabilityZone ?? `${region}a`;
  const privateDns = inst.privateIp
    ? `ip-${inst.privateIp.replace(/\./g, '-')}.${region === 'us-east-1' ? 'ec2.internal' : `${region}.compute.internal`}`
    : '';
  const running = inst.state === 'running';
  const tags = Object.entries(inst.tags);
  return [
    '<item>',
    el('instanceId', inst.instanceId),
    el('imageId', 'ami-0f1ee7000000000aa'),
    `<instanceState>${el('code', STATE_CODES[inst.state])}${el('name', inst.state)}</instanceState>`,
    el('privateDnsName', privateDns),
    el('dnsName', ''),
    el('instanceType', inst.instanceType),
    el('launchTime', inst.launchTime.toISOString()),
    `<placement>${el('availabilityZone', az)}${el('tenancy', 'default')}</placement>`,
    `<monitoring>${el('state', 'disabled')}</monitoring>`,
    el('subnetId', 'subnet-0f1ee700000000001'),
    el('vpcId', 'vpc-0f1ee700000000001'),
    el('privateIpAddress', inst.privateIp),
    // a stopped instance has no public address (it is released on stop)
    running ? el('ipAddress', inst.publicIp) : '',
    el('architecture', 'x86_64'),
    el('rootDeviceType', 'ebs'),
    el('rootDeviceName', '/dev/xvda'),
    `<iamInstanceProfile>${el('arn', `arn:aws:iam::${OWNER}:instance-profile/bgf-ssm`)}${el('id', 'AIPA0F1EE7000000000001')}</iamInstanceProfile>`,
    tags.length
      ? `<tagSet>${tags.map(([k, v]) => `<item>${el('key', k)}${el('value', v)}</item>`).join('')}</tagSet>`
      : '',
    el('platformDetails', 'Linux/UNIX'),
    '</item>'
  ].join('');
}

export async function startFakeEc2(store: InstanceStore): Promise<FakeEc2> {
  const requests: FakeAwsRequest[] = [];
  const faults = new Faults();

  const errorReply = (e: AwsError): Reply => {
    const id = crypto.randomUUID();
    return {
      status: e.status,
      headers: { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': id },
      body: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>${el('Code', e.code)}${el('Message', e.message)}</Error></Errors>${el('RequestID', id)}</Response>`
    };
  };

  const describeInstances = (form: URLSearchParams, region: string): string => {
    const { filters, instanceIds } = parseQuery(form);
    for (const id of instanceIds) {
      if (!/^i-[0-9a-f]{8}([0-9a-f]{9})?$/.test(id))
        throw new AwsError('InvalidInstanceID.Malformed', `Invalid id: "${id}"`);
    }
    const missing = instanceIds.filter((id) => !store.get(id));
    if (missing.length === 1)
      throw new AwsError('InvalidInstanceID.NotFound', `The instance ID '${missing[0]}' does not exist`);
    if (missing.length > 1)
      throw new AwsError('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
    for (const f of filters) {
      if (!f.name) throw new AwsError('InvalidParameterValue', 'The filter name must not be empty');
      if (!f.name.startsWith('tag:') && !FILTERS.includes(f.name)) {
        throw new AwsError('InvalidParameterValue', `The filter '${f.name}' is invalid`);
      }
    }
    const matches = store.list().filter(
      (inst) =>
        (!instanceIds.length || instanceIds.includes(inst.instanceId)) &&
        filters.every((f) => {
          const have = filterValues(inst, f.name, region);
          return f.values.some((p) => have.some((v) => globMatch(p, v)));
        })
    );
    const reservations = matches
      .map(
        (inst) =>
          `<item>${el('reservationId', `r-${inst.instanceId.slice(2)}`)}${el('ownerId', OWNER)}<groupSet/><instancesSet>${instanceXml(inst, region)}</instancesSet></item>`
      )
      .join('');
    return `<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse xmlns="${NS}">${el('requestId', crypto.randomUUID())}<reservationSet>${reservations}</reservationSet></DescribeInstancesResponse>`;
  };

  const handle = (req: ParsedRequest): Reply => {
    try {
      if (req.method !== 'POST' || req.path !== '/')
        throw new AwsError('InvalidAction', `unexpected ${req.method} ${req.path}`);
      if (!req.sig || req.sig.service !== 'ec2')
        throw new AwsError(
          'AuthFailure',
          'AWS was not able to validate the provided access credentials (no SigV4 ec2 signature)',
          401
        );
      const form = new URLSearchParams(req.raw);
      const action = form.get('Action') ?? '';
      const body: Record<string, string> = {};
      for (const [k, v] of form) body[k] = v;
      requests.push({
        service: 'ec2',
        operation: action,
        target: action,
        at: Date.now(),
        region: req.sig.region,
        accessKeyId: req.sig.accessKeyId,
        body,
        raw: req.raw
      });

      const fault = faults.take(action);
      if (fault)
        throw new AwsError(
          fault.code ?? 'RequestLimitExceeded',
          fault.message ?? 'Request limit exceeded.',
          fault.status ?? (fault.code ? 400 : 503)
        );
      if (form.get('Version') !== '2016-11-15')
        throw new AwsError('InvalidParameterValue', `unexpected API version ${form.get('Version')}`);
      if (action !== 'DescribeInstances')
        throw new AwsError(
          'InvalidAction',
          `The action ${action} is not valid for this web service (the stand-in implements DescribeInstances only).`
        );
      return {
        status: 200,
        headers: { 'content-type': 'text/xml;charset=UTF-8' },
        body: describeInstances(form, req.sig.region)
      };
    } catch (e) {
      if (e instanceof AwsError) return errorReply(e);
      throw e;
    }
  };

  const server = await startServer(handle);
  return {
    url: server.url,
    requests: () => [...requests],
    failNext: (n, spec = {}) => faults.add(n, spec),
    close: () => server.close()
  };
}
