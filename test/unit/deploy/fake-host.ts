/**
 * A strict fake host for unit tests: a small model of what a real host holds (containers with their labels and
 * state, the nginx upstream file, which port nginx routes to after a reload, state.json) that the deploy's remote
 * scripts (src/remote/scripts.ts) act on. A script it does not recognise fails the test. Tests assert what a user
 * would see (`serving()`, `containers()`), and may still override one script's answer with `on(kind, handler)`.
 */
import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import type { ClientChannel } from 'ssh2';
import type { HostTarget } from '../../../src/model/config.js';
import type { ExecOptions, ExecResult, RemoteHost } from '../../../src/transport/remote-host.js';
import { upstreamPort } from '../../../src/traffic/nginx/upstream.js';
import { AFTER_LEASE } from '../../../src/remote/scripts.js';

export type Kind =
  | 'watch'
  | 'lock'
  | 'renew'
  | 'release'
  | 'pull'
  | 'detect'
  | 'status'
  | 'logs'
  | 'start'
  | 'start-existing'
  | 'upstream'
  | 'images'
  | 'drain'
  | 'conn-drain'
  | 'finish'
  | 'swap'
  | 'stop'
  | 'discard'
  | 'repair'
  | 'record'
  | 'probe-shell'
  | 'imds';

export interface Call {
  kind: Kind;
  args: string[];
  stdin?: string;
  body?: string;
}

export type Reply = Partial<ExecResult>;
export type Handler = (call: Call, host: FakeHost) => Reply;

/** Recognises a remote script by distinctive text of its body (see src/remote/scripts.ts); anything else throws. */
export function classify(body: string): Kind {
  if (body.includes('@@healthy')) return 'watch';
  if (body.includes('try_take()')) return 'lock';
  if (body.includes('renew()')) return 'renew';
  if (body.includes('drain.lock') && body.includes('setsid')) return 'finish';
  if (body.includes('release()')) return 'release';
  if (body.includes('@@step pull')) return 'pull';
  if (body.includes('@@containers')) return 'detect';
  if (body.includes('{{.State.Status}} {{.RestartCount}}')) return 'status';
  if (body.includes('bluegreen-env.')) return 'start';
  if (body.includes('bluegreen-new')) return 'upstream';
  if (body.includes('@@images')) return 'images';
  if (body.includes('drain.lock')) return 'finish';
  if (body.includes('/proc/net/tcp')) return 'conn-drain';
  if (body.includes('@@drained')) return 'drain';
  if (body.includes('D start "$2"')) return 'swap';
  if (body.includes('@@foreign')) return 'discard';
  if (body.includes('-replaced" "$1"')) return 'repair';
  if (body.includes('D stop -t')) return 'stop';
  if (body.includes('D start "$1"')) return 'start-existing';
  if (body.includes('history.jsonl')) return 'record';
  if (body.includes('D logs --tail')) return 'logs';
  if (body.includes('169.254.169.254')) return 'imds';
  if (body.includes('/dev/tcp')) return 'probe-shell';
  throw new Error(`the fake host does not know this script:\n${body.slice(0, 300)}`);
}

export interface FakeContainer {
  id: string;
  name: string;
  running: boolean;
  restarts: number;
  labels: Record<string, string>;
  /** Host port it publishes (127.0.0.1:<port> or <port>). */
  port?: number;
}

export class FakeHost implements RemoteHost {
  readonly target: HostTarget;
  readonly calls: Call[] = [];
  /** Every event in order, including the lock ('lock-open', 'lock-end') and probes ('probe:<port>'). */
  readonly events: string[] = [];
  readonly handlers: Partial<Record<Kind, Handler>> = {};
  readonly store = new Map<string, FakeContainer>();
  upstream?: string;
  /** The port nginx sends traffic to: follows the upstream file at each successful reload. */
  nginxPort?: number;
  stateJson?: string;
  /** The port the host nginx listens on (its server block proxies to the upstream). */
  nginxListen = 80;
  /** nginx worker pids, changed by each reload. */
  workers = ['101', '102'];
  /** What the forwarded port answers; default 200 when a running container publishes it, else a refused connection. */
  httpStatus?: (port: number, host: FakeHost) => number;
  /** What the finishing job's drain says when it runs within the run (wait-for-drain). */
  finishDrain = '@@drained';
  lockEnded = false;
  /** The lock is held by another deploy for this many more attempts: the lock script times out (exit 75). */
  lockBusyFor = 0;
  /** The lock timeout (seconds, the script's 4th argument) of each lock attempt, in order. */
  readonly lockTimeouts: string[] = [];
  closed = false;
  /** What the instance metadata service answers (traffic alb): the fleet convention's id and address by the label's number. */
  instanceId: string;
  privateIp: string;
  /** Whether the host can run the health watcher (healthWatchScript: curl or bash there); else it answers exit 127. */
  watcher = false;
  /** Set to false to simulate a dropped SSH connection. */
  connected = true;
  private nextId = 1;

  constructor(
    label = 'h1',
    readonly app = 'shop'
  ) {
    this.target = { label, host: label, port: 22, user: 'ec2-user' };
    const n = Number(/(\d+)$/.exec(label)?.[1] ?? '1');
    this.instanceId = `i-0f1ee7${n.toString(16).padStart(11, '0')}`;
    this.privateIp = `10.204.0.${10 + n}`;
  }

  /** Adds a container as an earlier deploy left it. */
  add(
    color: 'blue' | 'green' | string,
    opts: {
      running: boolean;
      port?: number;
      deployId?: string;
      image?: string;
      labels?: Record<string, string> | null;
      restarts?: number;
    }
  ): this {
    const name = color === 'blue' || color === 'green' ? `${this.app}-${color}` : color;
    const labels =
      opts.labels === null
        ? {}
        : {
            'bluegreen.app': this.app,
            'bluegreen.color': color,
            'bluegreen.deploy-id': opts.deployId ?? `old-${name}`,
            'bluegreen.image': opts.image ?? 'registry.example.com/shop:v1',
            ...opts.labels
          };
    this.store.set(name, {
      id: `id-${this.nextId++}`,
      name,
      running: opts.running,
      restarts: opts.restarts ?? 0,
      labels,
      port: opts.port
    });
    return this;
  }

  setUpstream(content: string | undefined): this {
    this.upstream = content;
    this.nginxPort = upstreamPort(content);
    return this;
  }

  on(kind: Kind, h: Handler): this {
    this.handlers[kind] = h;
    return this;
  }

  count(kind: Kind): number {
    return this.calls.filter((c) => c.kind === kind).length;
  }

  callsOf(kind: Kind): Call[] {
    return this.calls.filter((c) => c.kind === kind);
  }

  /** [name, running|exited] of every container, sorted. */
  containers(): string[][] {
    return [...this.store.values()]
      .map((c) => [c.name, c.running ? 'running' : 'exited'])
      .sort((a, b) => a[0].localeCompare(b[0]));
  }

  /** The container a user's request reaches now (nginx: the routed port; port-swap: the running one on the port). */
  serving(port?: number): string | undefined {
    const p = port ?? this.nginxPort;
    return [...this.store.values()].find((c) => c.running && c.port === p)?.name;
  }

  /** Whether the deploy's lease is held on the host now (the lock's keeper said @@locked, or the lock command ran). */
  leaseHeld = false;
  private leaseWaiters: (() => void)[] = [];
  private takeLease(): void {
    this.leaseHeld = true;
    for (const w of this.leaseWaiters.splice(0)) w();
  }

  async run(body: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    if (!this.connected) throw new Error('not connected');
    if (body.startsWith(AFTER_LEASE)) {
      // afterLease(app, deployId, wait, script): the host runs the script once the lease is ours
      if (!this.leaseHeld) await new Promise<void>((r) => this.leaseWaiters.push(r));
      if (!this.connected) throw new Error('not connected');
      args = args.slice(3);
    }
    const call: Call = { kind: classify(body), args, stdin: opts.stdin, body };
    this.calls.push(call);
    this.events.push(call.kind);
    const r = (this.handlers[call.kind] ?? ((c: Call) => this.model(c)))(call, this);
    const res: ExecResult = {
      code: r.code ?? 0,
      signal: r.signal ?? null,
      stdout: r.stdout ?? '',
      stderr: r.stderr ?? ''
    };
    if (opts.onLine) {
      for (const line of res.stdout.split('\n').filter((l, i, a) => l !== '' || i < a.length - 1))
        opts.onLine(line, 'stdout');
      for (const line of res.stderr.split('\n').filter(Boolean)) opts.onLine(line, 'stderr');
    }
    await new Promise((r2) => setImmediate(r2));
    return res;
  }

  /** The default answers: what the real script would do to this model. */
  model(call: Call): Reply {
    const a = call.args;
    switch (call.kind) {
      case 'pull':
        return {
          stdout: `@@step pull\nv2: Pulling from shop\n@@digests\nregistry.example.com/shop@sha256:${'a'.repeat(64)}\n`
        };
      case 'detect': {
        const lines = [...this.store.values()].map((c) =>
          JSON.stringify({
            id: c.id,
            name: `/${c.name}`,
            state: c.running ? 'running' : 'exited',
            running: c.running,
            restarts: c.restarts,
            labels: c.labels
          })
        );
        return {
          stdout: [
            '@@containers',
            ...lines,
            '@@upstream',
            this.upstream ?? '@@none',
            '@@state',
            this.stateJson ?? '@@none',
            ''
          ].join('\n')
        };
      }
      case 'status': {
        const c = this.store.get(a[0]);
        return { stdout: c ? `${c.running ? 'running' : 'exited'} ${c.restarts} 0\n` : 'missing 0 0\n' };
      }
      case 'logs':
        return { stdout: 'app log line\n' };
      case 'start': {
        const [name, replace, verb, ...rest] = a;
        if (replace === '1') {
          const old = this.store.get(name)!;
          this.store.delete(name);
          this.store.set(`${name}-replaced`, { ...old, name: `${name}-replaced`, running: false });
        }
        if (this.store.has(name))
          return { code: 125, stderr: `Conflict. The container name "/${name}" is already in use` };
        const labels: Record<string, string> = {};
        let port: number | undefined;
        for (let i = 0; i < rest.length; i++) {
          if (rest[i] === '--label') {
            const [k, ...v] = rest[++i].split('=');
            labels[k] = v.join('=');
          } else if (rest[i] === '--publish') port = Number(rest[++i].split(':').slice(-2)[0]);
        }
        this.store.set(name, { id: `id-${this.nextId++}`, name, running: verb === 'run', restarts: 0, labels, port });
        return { stdout: 'container-id\n' };
      }
      case 'start-existing': {
        const c = this.store.get(a[0]);
        if (!c) return { code: 1, stderr: `No such container: ${a[0]}` };
        c.running = true;
        return {};
      }
      case 'upstream': {
        const before = this.workers.join(' ');
        const [, , mode, takeover] = a;
        // the content: argument 8, after "arg"
        this.upstream = mode === 'remove' ? undefined : a[7];
        this.nginxPort = upstreamPort(this.upstream);
        this.workers = this.workers.map((w) => String(Number(w) + 100));
        return {
          stdout: `@@workers-before ${before}\n@@reloaded\n${takeover === '0' ? '' : `@@taken-over ${this.workers[0]} 23 12\n`}`
        };
      }
      case 'drain':
        return { stdout: '@@drained\n' };
      case 'conn-drain':
        return { stdout: '@@drained 7\n' };
      case 'finish': {
        // finishScript(drain words, drainMs, stop, timeout, mode, app, remove, images, state, history, keep, token, 'record')
        const [, , stopName, , mode, , remove, , state, , , token, withRecord] = a;
        let out = '';
        if (withRecord === 'record') {
          if (state) this.stateJson = state;
          this.events.push('recorded');
          out += '@@recorded\n';
        }
        if (stopName) this.store.get(stopName)!.running = false;
        for (const n of (remove ?? '').split(' ').filter(Boolean)) this.store.delete(n);
        if (mode !== 'background') return { stdout: `${out}${this.finishDrain}\n@@stop\n@@stopped\n@@cleanup\n` };
        out += '@@background 4242\n';
        if (token && this.leaseHeld) {
          this.leaseHeld = false;
          out += '@@released\n';
        }
        return { stdout: out };
      }
      case 'swap': {
        const [stopName, startName] = a;
        if (stopName) this.store.get(stopName)!.running = false;
        const c = this.store.get(startName);
        if (!c) return { code: 1, stderr: `No such container: ${startName}` };
        c.running = true;
        return {};
      }
      case 'stop': {
        const c = this.store.get(a[0]);
        if (!c) return { code: 1, stderr: `No such container: ${a[0]}` };
        c.running = false;
        return {};
      }
      case 'discard': {
        const [name, deployId] = a;
        const out: string[] = [];
        const c = this.store.get(name);
        let free = !c;
        if (c) {
          if (c.labels['bluegreen.deploy-id'] === deployId) {
            this.store.delete(name);
            out.push('@@removed');
            free = true;
          } else out.push(`@@foreign ${c.labels['bluegreen.deploy-id'] ?? ''}`);
        }
        const replaced = this.store.get(`${name}-replaced`);
        if (free && replaced) {
          this.store.delete(`${name}-replaced`);
          this.store.set(name, { ...replaced, name });
          out.push('@@restored');
        }
        return { stdout: out.map((l) => `${l}\n`).join('') };
      }
      case 'repair': {
        const name = a[0];
        this.store.delete(name);
        const replaced = this.store.get(`${name}-replaced`);
        if (replaced) {
          this.store.delete(`${name}-replaced`);
          this.store.set(name, { ...replaced, name });
          return { stdout: '@@restored\n' };
        }
        return {};
      }
      case 'record':
        if (a[1]) this.stateJson = a[1];
        return {};
      case 'images':
        return { stdout: '@@images\n@@in-use\n' };
      case 'watch': {
        // healthWatchScript(name, port, path, host, every, timeout, tail): without `watcher` the host has neither
        // curl nor bash (the runner probes); with it, the watcher's verdict from the model
        if (!this.watcher) return { code: 127, stdout: '@@watch-unavailable\n' };
        const [name, port] = [a[0], Number(a[1])];
        for (let n = 1; n <= 20; n++) {
          const c = this.store.get(name);
          if (!c || !c.running || c.restarts > 0)
            return {
              code: 3,
              stdout: `@@container ${c ? `${c.running ? 'running' : 'exited'} ${c.restarts} 1` : 'missing 0 0'}\n@@logs\napp log line\n`
            };
          this.events.push(`watch:${port}`);
          const status = this.httpStatus ? this.httpStatus(port, this) : this.serving(port) ? 200 : 0;
          if (status >= 200 && status < 300) return { stdout: `@@healthy ${status} ${n} ${n * 150}\n` };
          if (n === 20)
            return {
              code: 4,
              stdout: `@@timeout 20 ${status ? `HTTP ${status}` : 'curl: (7) Failed to connect'}\n@@logs\napp log line\n`
            };
        }
        return {};
      }
      case 'probe-shell': {
        // httpProbeScript(port, path, timeout, host): the first line of the answer, as bash /dev/tcp reads it
        const port = Number(a[0]);
        const status = this.httpStatus ? this.httpStatus(port, this) : this.serving(port) ? 200 : 0;
        return status ? { stdout: `HTTP/1.0 ${status} X\n` } : { code: 7, stderr: 'connection refused' };
      }
      case 'imds':
        return { stdout: `instance-id=${this.instanceId}\nlocal-ipv4=${this.privateIp}\n` };
      case 'lock':
        this.events.push('lock-taken');
        this.takeLease();
        return { stdout: `@@locked ${a[1]}\n` };
      case 'renew':
        return { stdout: '@@renewed 1\n' };
      case 'release':
        this.lockEnded = true;
        return { stdout: '@@released\n' };
    }
  }

  /** Heartbeats the runner wrote to the lock keeper. */
  heartbeats = 0;

  async open(body: string, args: string[] = []): Promise<ClientChannel> {
    if (!this.connected) throw new Error('not connected');
    if (!body.includes('flock') || !body.includes('lease')) throw new Error(`unexpected open(): ${body.slice(0, 40)}`);
    this.events.push('lock-open');
    const ch = new EventEmitter() as EventEmitter & {
      stderr: EventEmitter;
      end(): void;
      close(): void;
      write(): boolean;
    };
    ch.stderr = new EventEmitter();
    ch.end = () => {
      this.lockEnded = true;
      this.leaseHeld = false;
      this.events.push('lock-end');
      setImmediate(() => ch.emit('close'));
    };
    ch.close = ch.end;
    ch.write = () => {
      this.heartbeats++;
      return true;
    };
    this.lockTimeouts.push(args[3]);
    if (this.lockBusyFor > 0) {
      this.lockBusyFor--;
      setImmediate(() => {
        ch.emit('data', Buffer.from('@@lock-wait {"deployId":"other-run"}\n@@lock-timeout {"deployId":"other-run"}\n'));
        ch.emit('exit', 75);
        ch.emit('close');
      });
      return ch as unknown as ClientChannel;
    }
    // lockScript(app, token, …): the keeper answers with the token it wrote
    setImmediate(() => {
      this.takeLease();
      ch.emit('data', Buffer.from(`@@locked ${args[1]}\n`));
    });
    return ch as unknown as ClientChannel;
  }

  async forward(port: number): Promise<NodeJS.ReadWriteStream & { destroy(): void }> {
    if (!this.connected) throw new Error('not connected');
    this.events.push(`probe:${port}`);
    // The user's nginx listens on nginxListen and answers from the colour it routes to (502 when that is down). The
    // answer is what the host holds when the request arrives (a connection may be opened ahead of it).
    const answer = () =>
      this.httpStatus
        ? this.httpStatus(port, this)
        : port === this.nginxListen
          ? this.serving()
            ? 200
            : 502
          : this.serving(port)
            ? 200
            : 0;
    const stream = new Duplex({
      read() {},
      write(_chunk, _enc, cb) {
        const status = answer();
        if (status === 0) this.destroy(new Error('connection refused'));
        else this.push(Buffer.from(`HTTP/1.1 ${status} X\r\nContent-Length: 0\r\n\r\n`));
        cb();
      }
    });
    return stream;
  }

  isConnected(): boolean {
    return this.connected;
  }

  close(): void {
    this.closed = true;
  }
}
