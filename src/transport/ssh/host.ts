/** A connected host (SshHost): the transport interface on top of its Link. */
import type { ClientChannel } from 'ssh2';
import type { HostTarget } from '../../model/config.js';
import { shInvocation } from '../../remote/shell.js';
import type { ExecOptions, ExecResult, RemoteHost, RemoteStream } from '../remote-host.js';
import { ConnectionLostError } from './errors.js';
import type { Link } from './link.js';

/** An SSH connection has every capability of the transport interface. */
export interface SshRemoteHost extends RemoteHost {
  open(body: string, args?: string[]): Promise<ClientChannel>;
  forward(port: number): Promise<RemoteStream>;
  forwardUnix(socketPath: string): Promise<RemoteStream>;
}

export class SshHost implements SshRemoteHost {
  readonly target: HostTarget;

  constructor(private readonly link: Link) {
    this.target = link.target;
  }

  async run(body: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    const out = { stdout: [] as string[], stderr: [] as string[] };
    const partial = { stdout: '', stderr: '' };
    const feed = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      out[stream].push(text);
      if (!opts.onLine) return;
      partial[stream] += text;
      let nl: number;
      while ((nl = partial[stream].indexOf('\n')) >= 0) {
        opts.onLine(partial[stream].slice(0, nl), stream);
        partial[stream] = partial[stream].slice(nl + 1);
      }
    };
    let exit: { code: number | null; signal: string | null } | undefined;
    const exited = () => exit !== undefined && (exit.code !== null || exit.signal !== null);
    let closed = false;
    let onClosed: (() => void) | undefined;
    await this.link.exec(shInvocation(body, args), (ch) => {
      ch.on('data', feed('stdout'));
      ch.stderr.on('data', feed('stderr'));
      ch.on('exit', (code: number | null, signal?: string) => {
        exit = { code: code ?? null, signal: signal ?? null };
      });
      ch.on('close', () => {
        closed = true;
        onClosed?.();
      });
      // Data waits for sshd's window (opened only once it started the command: a round trip); EOF alone does not.
      if (opts.stdin) ch.write(opts.stdin);
      ch.end();
    });
    const result = (): ExecResult => {
      if (opts.onLine) {
        if (partial.stdout) opts.onLine(partial.stdout, 'stdout');
        if (partial.stderr) opts.onLine(partial.stderr, 'stderr');
      }
      return { code: exit!.code, signal: exit!.signal, stdout: out.stdout.join(''), stderr: out.stderr.join('') };
    };
    return this.link
      .guard<ExecResult>((ok, fail) => {
        onClosed = () => {
          if (exited()) ok(result());
          // sshd always reports how a command ended; a channel closed without it means the session is broken.
          else fail(this.link.lostBecause('the remote command ended without an exit status'));
        };
        if (closed) onClosed();
      })
      .catch((e: unknown) => {
        // The command had finished when the connection went: its result stands.
        if (e instanceof ConnectionLostError && exited()) return result();
        throw e;
      });
  }

  open(body: string, args: string[] = []): Promise<ClientChannel> {
    return this.link.exec(shInvocation(body, args), undefined, holdEarlyEnd);
  }

  forward(port: number): Promise<NodeJS.ReadWriteStream & { destroy(): void }> {
    return this.link.forwardOut('127.0.0.1', port) as Promise<never>;
  }

  // traffic: haproxy — the admin socket through the connection (sshd's AllowStreamLocalForwarding, on by default).
  forwardUnix(socketPath: string): Promise<NodeJS.ReadWriteStream & { destroy(): void }> {
    return this.link.forwardStreamLocal(socketPath) as Promise<never>;
  }

  isConnected(): boolean {
    return this.link.isConnected();
  }

  close(): void {
    this.link.close();
  }
}

/**
 * A command that ends at once (the lock script failing) can deliver its exit status and close with the exec reply
 * (this runs in the reply's callback),
 * before the caller of open() has attached listeners after its await: keep those two events until then.
 */
function holdEarlyEnd(ch: ClientChannel): void {
  const emit = ch.emit.bind(ch);
  let held: [string | symbol, unknown[]][] | undefined = [];
  ch.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (held && (event === 'exit' || event === 'close')) {
      held.push([event, args]);
      return true;
    }
    return emit(event, ...args);
  }) as typeof ch.emit;
  // Runs after the microtasks that resume the caller.
  setImmediate(() => {
    const early = held ?? [];
    held = undefined;
    for (const [event, args] of early) emit(event, ...args);
  });
}
