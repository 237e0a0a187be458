/** The jump host: one shared SSH connection to the bastion, and direct-tcpip tunnels through it to the hosts. */
import type { Duplex } from 'node:stream';
import type { ClientChannel } from 'ssh2';
import type { HostTarget, JumpHost } from '../../model/config.js';
import { cancelledError, ConnectError, ConnectionLostError } from './errors.js';
import { Link } from './link.js';
import { openSocket } from './socket.js';

/**
 * One SSH connection to the bastion, shared by every host of the run (reference counted: closed with the last
 * host connection, opened again if it dropped). Hosts are reached with direct-tcpip channels, so neither the key
 * nor an agent ever reaches the bastion.
 *
 * Everything that decides which session to use runs synchronously, so concurrent callers after a drop share one
 * new session, and a session released while connecting is aborted rather than left open.
 */
export class Bastion {
  private current?: { link: Link; ready: Promise<Link> };
  private refs = 0;

  constructor(
    private readonly jump: JumpHost,
    private readonly timeoutMs: number
  ) {}

  acquire(): void {
    this.refs++;
  }

  release(): void {
    if (this.refs === 0) return;
    if (--this.refs > 0) return;
    const cur = this.current;
    this.current = undefined;
    cur?.link.close();
  }

  private session(): Promise<Link> {
    const cur = this.current;
    if (cur && !cur.link.isGone()) return cur.ready; // connected, or connecting: share it
    const t = this.jump.target;
    const link = new Link(t, false);
    const ready = link
      .connect((stop) => openSocket(t, this.timeoutMs, stop), this.jump, this.timeoutMs)
      .then(
        () => link,
        (e: ConnectError) => {
          if (this.current?.link === link) this.current = undefined;
          throw new ConnectError(
            `jump-host ${link.where}: ${e.message}${e.kind === 'host-key' ? " (set jump-known-hosts to the bastion's key)" : ''}`,
            e.kind
          );
        }
      );
    ready.catch(() => undefined); // nobody may be waiting any more (released while connecting)
    link.onEnded(() => {
      if (this.current?.link === link) this.current = undefined;
    });
    this.current = { link, ready };
    return ready;
  }

  /** A direct-tcpip stream to the host through the bastion; stop abandons the wait (the shared session goes on). */
  async tunnel(target: HostTarget, stop: AbortSignal): Promise<{ stream: Duplex; via: Link }> {
    const via = await untilAborted(this.session(), stop, target);
    const where = `${target.host}:${target.port}`;
    const name = `jump-host ${this.jump.target.host}`;
    const stream = await new Promise<ClientChannel>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error, ch?: ClientChannel) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        stop.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(ch!);
      };
      const onAbort = () => finish(cancelledError(target));
      stop.addEventListener('abort', onAbort, { once: true });
      const timer = setTimeout(() => {
        finish(
          new ConnectError(
            `${name} could not reach ${where} within ${this.timeoutMs / 1000} s: the host is down or a security group between the bastion and the host drops the traffic`,
            'timeout'
          )
        );
      }, this.timeoutMs);
      via.forwardOut(target.host, target.port).then(
        (ch) => {
          if (done) ch.close();
          else finish(undefined, ch);
        },
        (err: Error) => {
          if (err instanceof ConnectionLostError) return finish(new ConnectError(`${name}: ${err.message}`, 'network'));
          const reason = err.message.replace(/^\(SSH\) Channel open failure: ?/i, '');
          if (/refused/i.test(reason))
            finish(
              new ConnectError(
                `${name} reached ${where} but the connection was refused: is sshd running there, and is the port (${target.port}) right?`,
                'refused'
              )
            );
          else if (/prohibited/i.test(reason))
            finish(
              new ConnectError(
                `${name} does not allow TCP forwarding to ${where} (AllowTcpForwarding/PermitOpen in its sshd_config): ${reason}`,
                'auth'
              )
            );
          else if (/timed out/i.test(reason))
            finish(
              new ConnectError(
                `${name} could not reach ${where} (timed out): the host is down or a security group drops the traffic`,
                'timeout'
              )
            );
          else if (/resolve|not known|name/i.test(reason))
            finish(new ConnectError(`${name} could not resolve ${target.host}: ${reason}`, 'dns'));
          else
            finish(new ConnectError(`${name} could not reach ${where}: ${reason || 'channel open failed'}`, 'network'));
        }
      );
    });
    return { stream, via };
  }
}

/** p, or a cancellation error as soon as signal aborts (p goes on; its outcome is then ignored). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal, target: HostTarget): Promise<T> {
  if (signal.aborted) return Promise.reject(cancelledError(target));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(cancelledError(target));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

const bastions = new WeakMap<JumpHost, Bastion>();

export function bastionFor(jump: JumpHost, timeoutMs: number): Bastion {
  let b = bastions.get(jump);
  if (!b) bastions.set(jump, (b = new Bastion(jump, timeoutMs)));
  return b;
}
