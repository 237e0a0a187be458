/**
 * The data plane of the ALB stand-in: one HTTP server per listener that forwards each request to a target the way
 * an ALB does, on the listener's rules (priority order; path-pattern and host-header conditions) or default action:
 * - the target group by weight (smooth weighted round-robin: exact shares, so tests can count), then round-robin
 *   over the group's healthy targets; with none healthy it fails open to the unhealthy ones; initial, draining and
 *   unused targets get no new requests; no target at all -> 503, a target that fails -> 502;
 * - client connections belong to the listener: they are never closed by a listener, rule or target change (keep-alive
 *   clients survive ModifyListener); the stand-in keeps its own keep-alive connections to each target;
 * - a draining target's in-flight requests finish; when its deregistration delay is over, whatever is still open to
 *   it is cut (as AWS does).
 */
import http from 'node:http';
import type { Server } from 'node:net';
import type { AlbModel, AlbServed, ForwardAction, Listener, Target, TargetGroup } from './alb-model.js';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-authorization',
  'proxy-authenticate'
]);

function globToRegExp(glob: string): RegExp {
  return new RegExp(
    `^${glob
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i'
  );
}

/** Picks a group by smooth weighted round-robin (nginx's algorithm): deterministic, exact shares per cycle. */
function pickGroup(action: ForwardAction): string | undefined {
  const live = action.groups.filter((g) => g.weight > 0);
  if (live.length === 0) return undefined;
  const total = live.reduce((s, g) => s + g.weight, 0);
  let best: { arn: string; cur: number } | undefined;
  for (const g of live) {
    const cur = (action.wrr.get(g.arn) ?? 0) + g.weight;
    action.wrr.set(g.arn, cur);
    if (!best || cur > best.cur) best = { arn: g.arn, cur };
  }
  action.wrr.set(best!.arn, best!.cur - total);
  return best!.arn;
}

function pickTarget(tg: TargetGroup): Target | undefined {
  const all = [...tg.targets.values()];
  let pool = all.filter((t) => t.state === 'healthy');
  // fail open: with no healthy target the ALB routes to all the unhealthy ones
  if (pool.length === 0) pool = all.filter((t) => t.state === 'unhealthy');
  if (pool.length === 0) return undefined;
  tg.rr = (tg.rr + 1) % pool.length;
  return pool[tg.rr];
}

function albPage(res: http.ServerResponse, status: number, text: string): void {
  const body = `<html>\r\n<head><title>${status} ${text}</title></head>\r\n<body>\r\n<center><h1>${status} ${text}</h1></center>\r\n</body>\r\n</html>\r\n`;
  res.writeHead(status, {
    server: 'awselb/2.0',
    'content-type': 'text/html',
    'content-length': Buffer.byteLength(body)
  });
  res.end(body);
}

/** targets whose deregistration delay ran out (their cut requests are not retried) */
const expiredTargets = new WeakSet<Target>();

export class DataPlane {
  private readonly model: AlbModel;
  /** resolves once the parent has the entry: a response ends only then, so a client that got it finds it logged */
  private readonly record: (e: AlbServed) => Promise<void>;
  private readonly servers: http.Server[] = [];
  /** one keep-alive agent per target `${ip}:${port}` (the stand-in's own connections to it) */
  private readonly agents = new Map<string, http.Agent>();
  /** in-flight upstream requests per target object, cut when its draining is over */
  private readonly inflight = new Map<Target, Set<http.ClientRequest>>();

  constructor(model: AlbModel, record: (e: AlbServed) => Promise<void>) {
    this.model = model;
    this.record = record;
  }

  /** Serves listener `arn` on a listening socket the parent process bound in the root network namespace. */
  serve(listener: Listener, handle: Server): void {
    const server = http.createServer((req, res) => this.handle(listener, req, res));
    // an ALB's idle timeout is 60 s; keep clients' connections open at least that long
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 0;
    server.listen(handle);
    this.servers.push(server);
  }

  private route(listener: Listener, req: http.IncomingMessage): ForwardAction {
    const path = (req.url ?? '/').split('?')[0];
    const host = String(req.headers.host ?? '').replace(/:\d+$/, '');
    const rules = [...listener.rules].sort((a, b) => a.priority - b.priority);
    for (const r of rules) {
      const pathOk = r.pathPatterns.length === 0 || r.pathPatterns.some((p) => globToRegExp(p).test(path));
      const hostOk = r.hostHeaders.length === 0 || r.hostHeaders.some((h) => globToRegExp(h).test(host));
      if ((r.pathPatterns.length > 0 || r.hostHeaders.length > 0) && pathOk && hostOk) return r.actions[0];
    }
    return listener.defaultActions[0];
  }

  private handle(listener: Listener, req: http.IncomingMessage, res: http.ServerResponse): void {
    const start = Date.now();
    const entry: AlbServed = {
      start,
      end: start,
      listener: listener.arn,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      status: 0
    };
    const done = (status: number, error?: string): Promise<void> => {
      entry.end = Date.now();
      entry.status = status;
      if (error) entry.error = error;
      return this.record(entry);
    };
    const groupArn = pickGroup(this.route(listener, req));
    const tg = groupArn ? this.model.groups.get(groupArn) : undefined;
    const t = tg ? pickTarget(tg) : undefined;
    if (!tg || !t) {
      req.resume();
      void done(503, tg ? `no routable target in ${tg.name}` : 'no target group with weight > 0').then(() =>
        albPage(res, 503, 'Service Temporarily Unavailable')
      );
      return;
    }
    Object.assign(entry, { targetGroup: tg.arn, targetId: t.id, targetIp: t.ip, targetPort: t.port });

    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    const peer = req.socket.remoteAddress ?? '127.0.0.1';
    headers['x-forwarded-for'] = req.headers['x-forwarded-for'] ? `${req.headers['x-forwarded-for']}, ${peer}` : peer;
    headers['x-forwarded-proto'] = 'http';
    headers['x-forwarded-port'] = String(listener.port);
    headers['x-amzn-trace-id'] =
      `Root=1-${Math.floor(start / 1000).toString(16)}-${Math.random().toString(16).slice(2, 14).padEnd(24, '0')}`;

    t.inflight++;
    let set = this.inflight.get(t);
    if (!set) this.inflight.set(t, (set = new Set()));
    const inflight = set;
    let finished = false;
    let current: http.ClientRequest | undefined;
    const release = () => {
      if (finished) return;
      finished = true;
      t.inflight--;
      if (current) inflight.delete(current);
    };
    const bodiless = req.method === 'GET' || req.method === 'HEAD';

    const send = (fresh: boolean) => {
      // a fresh connection (agent: false) only for the one retry below
      const up = http.request({
        host: t.ip,
        port: t.port,
        method: req.method,
        path: req.url,
        headers,
        agent: fresh ? false : this.agent(t)
      });
      current = up;
      inflight.add(up);
      up.on('response', (ures) => {
        const out: http.OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(ures.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
        // which target served it, for tests that follow a single connection (AWS adds no such header)
        out['x-albs-target'] = `${t.id}:${t.port}`;
        res.writeHead(ures.statusCode ?? 502, out);
        ures.pipe(res, { end: false });
        ures.on('end', () => {
          release();
          void done(ures.statusCode ?? 502).then(() => res.end());
        });
        ures.on('error', () => {
          release();
          res.destroy();
          void done(ures.statusCode ?? 502, 'target closed the response');
        });
      });
      up.on('error', (e) => {
        if (finished) return;
        // The target closed an idle pooled connection just as this request went out on it (its keep-alive timeout
        // is shorter than ours). An ALB would answer 502 here; the stand-in retries a body-less request once on a
        // new connection instead, so that a test's zero-failure count measures the product, not this race.
        if (!fresh && bodiless && up.reusedSocket && !res.headersSent && !expiredTargets.has(t)) {
          inflight.delete(up);
          send(true);
          return;
        }
        release();
        const logged = done(502, `target ${t.id}:${t.port}: ${e.message}`);
        if (!res.headersSent) void logged.then(() => albPage(res, 502, 'Bad Gateway'));
        else res.destroy();
      });
      if (bodiless) up.end();
      else req.pipe(up);
    };
    // the client went away: stop the upstream request too
    res.on('close', () => {
      if (!finished) {
        const up = current;
        release();
        up?.destroy();
        void done(entry.status || 499, 'client closed the connection');
      }
    });
    if (bodiless) req.resume();
    send(false);
  }

  private agent(t: Target): http.Agent {
    const key = `${t.ip}:${t.port}`;
    let a = this.agents.get(key);
    // idle pooled connections are dropped after 4 s, before the usual 5 s keep-alive timeout of app servers (Node's),
    // so the pool rarely holds a connection the target is about to close
    if (!a) this.agents.set(key, (a = new http.Agent({ keepAlive: true, timeout: 4000 })));
    return a;
  }

  /** `t` left its group: its idle pooled connections go (a later target on the same address gets new ones); if its
   *  deregistration delay is over, what is still in flight to it is cut, as AWS does. */
  forget(_tg: TargetGroup, t: Target, expired: boolean): void {
    const a = this.agents.get(`${t.ip}:${t.port}`);
    for (const list of Object.values(a?.freeSockets ?? {})) for (const sock of list ?? []) sock.destroy();
    if (!expired) return;
    expiredTargets.add(t);
    for (const up of this.inflight.get(t) ?? []) up.destroy(new Error('deregistration delay expired'));
    this.inflight.delete(t);
  }

  close(): void {
    for (const s of this.servers) {
      s.close();
      s.closeAllConnections();
    }
    for (const a of this.agents.values()) a.destroy();
  }
}
