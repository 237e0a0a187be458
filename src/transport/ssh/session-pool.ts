/** The spare session channels of one connection (a Link), so that a command costs one round trip instead of two. */
import type { Client, ClientChannel } from 'ssh2';
import { openSession } from './ssh2-internals.js';

/**
 * Spare session channels kept open per connection (see SessionPool): the lock, detect and login+pull go out at once
 * on a fresh connection. sshd allows 10 sessions per connection by default.
 */
export const POOL_SIZE = 3;

/**
 * Session channels opened ahead of need (POOL_SIZE, from the moment the connection is ready): a command takes one
 * and another is opened in the background. A host that allows fewer sessions (sshd MaxSessions) refuses the
 * spare's open: then an idle spare is given up for the command that needs it, and the pool stops refilling.
 */
export class SessionPool {
  private readonly spares: Promise<ClientChannel>[] = [];

  constructor(
    private readonly client: Client,
    private poolSize: number,
    /** Whether spares may be opened now: the connection is ready (or authenticating, when fill is told so). */
    private readonly mayOpen: (authenticating: boolean) => boolean
  ) {}

  fill(authenticating = false): void {
    while (this.mayOpen(authenticating) && this.spares.length < this.poolSize) {
      const p = openSession(this.client);
      p.catch(() => {
        const i = this.spares.indexOf(p);
        if (i >= 0) this.spares.splice(i, 1);
        this.poolSize = 0;
      });
      this.spares.push(p);
    }
  }

  async take(): Promise<ClientChannel> {
    const spare = this.spares.shift();
    this.fill();
    if (spare) {
      const ch = await spare.catch(() => undefined);
      if (ch) return ch;
    }
    try {
      return await openSession(this.client);
    } catch (e) {
      // Over the host's session limit: an idle spare makes room.
      const idle = this.spares.shift();
      if (!idle) throw e;
      this.poolSize = 0;
      (await idle.catch(() => undefined))?.close();
      return openSession(this.client);
    }
  }
}
