/**
 * Shared parts of the AWS stand-ins (fake-aws/ssm.ts, fake-aws/ec2.ts): the instance inventory both services
 * answer from (one configuration: DescribeInstances lists it, SendCommand runs on its fleet hosts), the fleet's
 * AWS identity convention, and a tiny HTTP server that parses the SigV4 Authorization header (not verified).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type InstanceState = 'pending' | 'running' | 'shutting-down' | 'terminated' | 'stopping' | 'stopped';

/** EC2's instanceState.code for each state name */
export const STATE_CODES: Record<InstanceState, number> = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80
};

export interface FakeInstanceSpec {
  instanceId: string;
  /** default "running" */
  state?: InstanceState;
  privateIp?: string;
  /** EC2 ipAddress (public IPv4); absent by default for non-fleet instances */
  publicIp?: string;
  tags?: Record<string, string>;
  /**
   * Fleet host whose namespaces run this instance's SSM commands ("bgf-h2"). Without one the instance is not a
   * managed node: SendCommand to it fails with InvalidInstanceId.
   */
  host?: string;
  /** SSM agent connected (default true). Offline: SendCommand fails with InvalidInstanceId, pending commands wait. */
  ssmOnline?: boolean;
  /** default "t3.micro" */
  instanceType?: string;
  /** default "<region>a" */
  availabilityZone?: string;
}

export interface FakeInstance {
  instanceId: string;
  state: InstanceState;
  privateIp?: string;
  publicIp?: string;
  tags: Record<string, string>;
  host?: string;
  ssmOnline: boolean;
  instanceType: string;
  availabilityZone?: string;
  launchTime: Date;
}

/** COMMON.md convention: bgf-hN is i-0f1ee7 + N as 11 hex digits (bgf-h1 -> i-0f1ee700000000001). */
export function fleetInstanceId(n: number): string {
  return `i-0f1ee7${n.toString(16).padStart(11, '0')}`;
}

/** COMMON.md convention: bgf-hN has private IPv4 10.204.0.(10+N). */
export function fleetPrivateIp(n: number): string {
  return `10.204.0.${10 + n}`;
}

/** The stopped look-alike of fleetInstances(): same tags, never a command target. */
export const STOPPED_INSTANCE_ID = 'i-0f1ee7000000000ff';

/**
 * Default inventory: fleet hosts bgf-h1..bgf-h<hosts> (running, SSM online, Name=bgf-hN plus `tags`), and unless
 * `stopped: false` one stopped instance carrying the same tags (Name=bgf-stopped), which tag selectors must leave out.
 * Public IPs are documentation addresses (198.51.100.(10+N)): reported by DescribeInstances, reachable nowhere.
 */
export function fleetInstances(
  opts: { hosts?: number; tags?: Record<string, string>; stopped?: boolean } = {}
): FakeInstanceSpec[] {
  const tags = opts.tags ?? { Role: 'backend' };
  const specs: FakeInstanceSpec[] = [];
  for (let n = 1; n <= (opts.hosts ?? 3); n++) {
    specs.push({
      instanceId: fleetInstanceId(n),
      privateIp: fleetPrivateIp(n),
      publicIp: `198.51.100.${10 + n}`,
      tags: { ...tags, Name: `bgf-h${n}` },
      host: `bgf-h${n}`
    });
  }
  if (opts.stopped ?? true) {
    specs.push({
      instanceId: STOPPED_INSTANCE_ID,
      state: 'stopped',
      privateIp: '10.204.0.250',
      tags: { ...tags, Name: 'bgf-stopped' }
    });
  }
  return specs;
}

export type InstanceChange = { instance: FakeInstance; what: 'state' | 'online' | 'added' };

/** The inventory both stand-ins read; tests change it while a run is going on (stop an instance, cut its agent). */
export class InstanceStore {
  private readonly byId = new Map<string, FakeInstance>();
  private readonly listeners: ((c: InstanceChange) => void)[] = [];

  constructor(specs: FakeInstanceSpec[]) {
    for (const s of specs) this.add(s);
  }

  add(spec: FakeInstanceSpec): FakeInstance {
    if (!/^i-[0-9a-f]{8}([0-9a-f]{9})?$/.test(spec.instanceId))
      throw new Error(`fake-aws: malformed instance id ${spec.instanceId}`);
    if (this.byId.has(spec.instanceId)) throw new Error(`fake-aws: duplicate instance id ${spec.instanceId}`);
    const inst: FakeInstance = {
      instanceId: spec.instanceId,
      state: spec.state ?? 'running',
      privateIp: spec.privateIp,
      publicIp: spec.publicIp,
      tags: { ...(spec.tags ?? {}) },
      host: spec.host,
      ssmOnline: spec.ssmOnline ?? true,
      instanceType: spec.instanceType ?? 't3.micro',
      availabilityZone: spec.availabilityZone,
      launchTime: new Date(Date.now() - 3600_000)
    };
    this.byId.set(inst.instanceId, inst);
    this.emit({ instance: inst, what: 'added' });
    return inst;
  }

  list(): FakeInstance[] {
    return [...this.byId.values()];
  }

  get(id: string): FakeInstance | undefined {
    return this.byId.get(id);
  }

  private must(id: string): FakeInstance {
    const inst = this.byId.get(id);
    if (!inst) throw new Error(`fake-aws: no instance ${id} (have ${[...this.byId.keys()].join(', ')})`);
    return inst;
  }

  /** EC2 state; leaving "running" also kills the instance's running SSM commands (see ssm.ts). */
  setState(id: string, state: InstanceState): void {
    const inst = this.must(id);
    inst.state = state;
    this.emit({ instance: inst, what: 'state' });
  }

  /** SSM agent connection (ping status Online / ConnectionLost). */
  setOnline(id: string, online: boolean): void {
    const inst = this.must(id);
    inst.ssmOnline = online;
    this.emit({ instance: inst, what: 'online' });
  }

  setTags(id: string, tags: Record<string, string>): void {
    this.must(id).tags = { ...tags };
  }

  /** Running, with a fleet host, agent online: SendCommand may target it. */
  managed(inst: FakeInstance | undefined): boolean {
    return !!inst && !!inst.host && inst.state === 'running' && inst.ssmOnline;
  }

  onChange(fn: (c: InstanceChange) => void): void {
    this.listeners.push(fn);
  }

  private emit(c: InstanceChange): void {
    for (const fn of this.listeners) fn(c);
  }
}

/** One request as a stand-in received it (after SigV4 parsing); what tests assert on, e.g. "no secret anywhere". */
export interface FakeAwsRequest {
  service: 'ssm' | 'ec2';
  /** "SendCommand", "DescribeInstances", ... */
  operation: string;
  /** SSM: the X-Amz-Target header ("AmazonSSM.SendCommand"); EC2: the Action */
  target: string;
  /** ms since epoch */
  at: number;
  region: string;
  accessKeyId: string;
  /** the parsed body: JSON for SSM, form fields (name -> value) for EC2 */
  body: unknown;
  /** the body exactly as received */
  raw: string;
}

export interface ParsedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  raw: string;
  /** from the SigV4 credential scope, undefined without a well-formed Authorization header */
  sig?: { accessKeyId: string; region: string; service: string };
}

export interface Reply {
  status: number;
  headers: http.OutgoingHttpHeaders;
  body: string;
}

// Authorization: AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ssm/aws4_request, SignedHeaders=..., Signature=...
const SIGV4 =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]+)$/;

export interface FakeServer {
  url: string;
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 (port 0 unless given) answering each fully read request with `handle`. */
export async function startServer(
  handle: (req: ParsedRequest) => Reply | Promise<Reply>,
  port = 0
): Promise<FakeServer> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const auth = String(req.headers['authorization'] ?? '');
      const m = SIGV4.exec(auth);
      const parsed: ParsedRequest = {
        method: req.method ?? 'GET',
        path: (req.url ?? '/').split('?')[0],
        headers: req.headers,
        raw: Buffer.concat(chunks).toString('utf8'),
        sig: m ? { accessKeyId: m[1], region: m[3], service: m[4] } : undefined
      };
      Promise.resolve()
        .then(() => handle(parsed))
        .then(
          (r) => {
            res.writeHead(r.status, { ...r.headers, 'content-length': Buffer.byteLength(r.body) });
            res.end(r.body);
          },
          (e: Error) => {
            // a bug in the stand-in: a 500 makes the SDK retry and then fail loudly with this text
            const text = `fake-aws internal error: ${e.stack ?? e.message}`;
            res.writeHead(500, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
            res.end(text);
          }
        );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      })
  };
}

/** An error answer of a stand-in: the service's error code, message and HTTP status. */
export class AwsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400
  ) {
    super(message);
  }
}

export interface FaultSpec {
  /** only calls of this operation fail (default: any operation of the service) */
  operation?: string;
  /** error code (default: the service's throttling error) */
  code?: string;
  message?: string;
  /** HTTP status (default 400) */
  status?: number;
}

/** Queue of injected failures: failNext(n, spec) makes the next n matching calls fail. */
export class Faults {
  private readonly queue: { left: number; spec: FaultSpec }[] = [];

  add(n: number, spec: FaultSpec): void {
    if (n > 0) this.queue.push({ left: n, spec });
  }

  /** the fault for this call, consuming one; undefined when the call goes through */
  take(operation: string): FaultSpec | undefined {
    const f = this.queue.find((x) => x.left > 0 && (!x.spec.operation || x.spec.operation === operation));
    if (!f) return undefined;
    f.left--;
    return f.spec;
  }

  clear(): void {
    this.queue.length = 0;
  }
}
