/**
 * Entry of the ALB stand-in's child process. The harness (alb.ts) starts it inside the fleet bastion's network
 * namespace, the only one that reaches the fleet hosts' 10.204.0.x addresses (the root namespace has an
 * `unreachable` route to them on purpose, see test/sandbox/fleet-up.sh), and hands it, over the IPC channel, the
 * listening sockets it bound on 127.0.0.1 in the root namespace: a socket keeps the namespace it was created in, so
 * tests and the action reach the API and the listeners on 127.0.0.1 while the health checks and the forwarded
 * requests leave from the bastion. Every API call and every served request goes back to the parent as it happens.
 *
 * Messages from the parent: {type:'init', config}; {type:'api'} + server handle; {type:'listener', name} + server
 * handle; {type:'start'} (-> {type:'ready'}); {type:'ack', seq} for each
 * {type:'call'|'served', seq}; {type:'control', id, op, args} (-> {type:'reply', id, result|error}).
 */
import http from 'node:http';
import type { Server } from 'node:net';
import { AlbModel } from './alb-model.js';
import type {
  AlbArns,
  AlbCall,
  AlbConfig,
  AlbFault,
  AlbHealthEvent,
  AlbInstanceConfig,
  AlbServed
} from './alb-model.js';
import { HealthChecker } from './alb-health.js';
import { DataPlane } from './alb-dataplane.js';
import { AlbApi } from './alb-api.js';

export type AlbControl =
  | { op: 'deny'; actions: string[] }
  | { op: 'faults'; faults: AlbFault[] }
  | { op: 'setInstance'; id: string; instance: AlbInstanceConfig }
  | { op: 'targets' };

/** A target as `targets` control reports it (for assertions that need no SDK call). */
export interface AlbTargetSnapshot {
  targetGroup: string;
  id: string;
  port: number;
  ip: string;
  state: string;
  reason?: string;
  inflight: number;
}

export type ParentMessage =
  | { type: 'init'; config: AlbConfig }
  | { type: 'api' }
  | { type: 'listener'; name: string }
  | { type: 'start' }
  | { type: 'ack'; seq: number }
  | ({ type: 'control'; id: number } & { control: AlbControl });

export type ChildMessage =
  | { type: 'ready'; arns: AlbArns }
  | { type: 'call'; seq: number; call: AlbCall }
  | { type: 'served'; seq: number; entry: AlbServed }
  | { type: 'health'; event: AlbHealthEvent }
  | { type: 'reply'; id: number; result?: unknown; error?: string };

const send = (m: ChildMessage) => {
  if (process.connected) process.send!(m);
};

// records wait for the parent's ack (see AlbApi / DataPlane: replies go out only once the parent has the record)
let nextSeq = 1;
const acks = new Map<number, () => void>();
function report(m: { type: 'call'; call: AlbCall } | { type: 'served'; entry: AlbServed }): Promise<void> {
  if (!process.connected) return Promise.resolve();
  const seq = nextSeq++;
  return new Promise((resolve) => {
    acks.set(seq, resolve);
    send({ ...m, seq });
  });
}

let model: AlbModel | undefined;
let health: HealthChecker | undefined;
let plane: DataPlane | undefined;
let api: AlbApi | undefined;
const apiServers: http.Server[] = [];

function control(c: AlbControl): unknown {
  if (!model || !health) throw new Error('not initialised');
  switch (c.op) {
    case 'deny':
      model.deny.clear();
      for (const a of c.actions) model.deny.add(a);
      return null;
    case 'faults':
      model.faults = c.faults.map((f) => ({ ...f }));
      return null;
    case 'setInstance':
      model.instances[c.id] = c.instance;
      for (const tg of model.groups.values()) for (const t of tg.targets.values()) health.refresh(tg, t);
      return null;
    case 'targets': {
      const out: AlbTargetSnapshot[] = [];
      for (const tg of model.groups.values()) {
        for (const t of tg.targets.values()) {
          out.push({
            targetGroup: tg.name,
            id: t.id,
            port: t.port,
            ip: t.ip,
            state: t.state,
            reason: t.reason,
            inflight: t.inflight
          });
        }
      }
      return out;
    }
  }
}

process.on('message', (m: ParentMessage, handle?: Server) => {
  try {
    switch (m.type) {
      case 'init': {
        model = new AlbModel(m.config);
        health = new HealthChecker(model);
        plane = new DataPlane(model, (entry) => report({ type: 'served', entry }));
        api = new AlbApi(model, health, (call) => report({ type: 'call', call }));
        const h = health;
        const p = plane;
        h.onForget = (tg, t, expired) => p.forget(tg, t, expired);
        // no ack needed: the channel keeps the order, so a call recorded later arrives after the transitions before it
        h.onTransition = (event) => send({ type: 'health', event });
        // targets configured from the start
        for (const g of m.config.targetGroups) {
          const tg = model.groupByName(g.name)!;
          for (const t of g.targets ?? []) {
            const ip = tg.targetType === 'ip' ? t.id : model.instance(t.id)?.privateIp;
            if (!ip) throw new Error(`fake ALB config: unknown instance ${t.id} in target group ${g.name}`);
            h.register(tg, t.id, t.port ?? tg.port, ip);
          }
        }
        break;
      }
      case 'api': {
        const a = api!;
        const s = http.createServer((req, res) => a.handle(req, res));
        s.listen(handle!);
        apiServers.push(s);
        break;
      }
      case 'listener': {
        const l = [...model!.listeners.values()].find((x) => x.name === m.name);
        if (!l) throw new Error(`unknown listener ${m.name}`);
        plane!.serve(l, handle!);
        break;
      }
      case 'ack':
        acks.get(m.seq)?.();
        acks.delete(m.seq);
        break;
      case 'start':
        send({ type: 'ready', arns: model!.arns() });
        break;
      case 'control':
        try {
          send({ type: 'reply', id: m.id, result: control(m.control) });
        } catch (e) {
          send({ type: 'reply', id: m.id, error: String(e) });
        }
        break;
    }
  } catch (e) {
    console.error(`[fake-alb] ${(e as Error).stack ?? e}`);
    process.exit(1);
  }
});

// the parent closed the channel (close() or it died): stop everything, leave nothing running
process.on('disconnect', () => {
  health?.close();
  plane?.close();
  for (const s of apiServers) {
    s.close();
    s.closeAllConnections();
  }
  process.exit(0);
});
