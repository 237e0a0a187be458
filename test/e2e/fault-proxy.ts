/**
 * A TCP forwarder the tests control, put between the runner and a host's sshd (the kernel here has no netem):
 *   const proxy = await FaultProxy.start('127.0.0.1', 2222);   // the action connects to 127.0.0.1:<proxy.port>
 *   proxy.reset();      // a real RST to both sides of every open connection (socket.resetAndDestroy)
 *   proxy.blackhole();  // the runner "vanishes": open connections stay open but no byte passes either way, ever
 *   proxy.delayMs = 20; // latency added to every chunk, each way
 * New connections after reset() are forwarded as usual; after blackhole() they are accepted and then silent too
 * (until heal()).
 */
import net from 'node:net';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
}

export class FaultProxy {
  /** Added to every chunk in each direction (keeps order: chunks are queued per direction). */
  delayMs = 0;
  private readonly pairs = new Set<Pair>();
  private silent = false;
  /** Connections accepted so far (a reconnect shows as a second one). */
  accepted = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly target: { host: string; port: number }
  ) {}

  static async start(targetHost: string, targetPort: number, listenHost = '127.0.0.1'): Promise<FaultProxy> {
    const server = net.createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, listenHost, () => resolve());
    });
    const proxy = new FaultProxy(server, (server.address() as net.AddressInfo).port, {
      host: targetHost,
      port: targetPort
    });
    server.on('connection', (client: net.Socket) => proxy.accept(client));
    return proxy;
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    const upstream = net.connect({ host: this.target.host, port: this.target.port, noDelay: true });
    const pair = { client, upstream };
    this.pairs.add(pair);
    const pipe = (from: net.Socket, to: net.Socket) => {
      let queue = Promise.resolve();
      from.on('data', (chunk: Buffer) => {
        if (this.silent) return; // swallowed: the other side never hears of it
        const delay = this.delayMs;
        queue = queue.then(async () => {
          if (delay > 0) await new Promise((r) => setTimeout(r, delay));
          if (!this.silent && !to.destroyed) to.write(chunk);
        });
      });
      from.on('end', () => {
        if (!this.silent) void queue.then(() => to.end());
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
    // Forget the pair only once both sides are closed: after blackhole() the runner's side may close while sshd's
    // side stays open (that is the point), and close()/heal() must still end it.
    const drop = () => {
      if (client.destroyed && upstream.destroyed) this.pairs.delete(pair);
    };
    client.on('close', drop);
    upstream.on('close', drop);
    client.on('error', () => (this.silent || upstream.destroyed ? undefined : upstream.resetAndDestroy()));
    upstream.on('error', () => (this.silent || client.destroyed ? undefined : client.resetAndDestroy()));
    upstream.on('close', () => {
      if (!this.silent && !client.destroyed) client.end();
    });
  }

  /** Open connections right now. */
  get open(): number {
    return this.pairs.size;
  }

  /** RST to both sides of every open connection. */
  reset(): void {
    for (const { client, upstream } of this.pairs) {
      if (!client.destroyed) client.resetAndDestroy();
      if (!upstream.destroyed) upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /** Silence: no byte passes any more and nothing is closed (a runner VM that was switched off, a partition). */
  blackhole(): void {
    this.silent = true;
  }

  /** Ends the silence for new connections; the silenced ones are closed without a word to either side. */
  heal(): void {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
    this.silent = false;
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
