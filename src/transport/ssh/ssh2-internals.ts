/** ssh2's private parts, for what its API does not offer: pooled session channels, exec on one, one-round-trip auth. */
import type { Client, ClientChannel } from 'ssh2';

/**
 * ssh2's private parts used here (pinned ssh2 ^1.17): its channel manager and protocol writer, to open a session
 * channel before the command for it is known, and to send the exec request on it.
 */
interface Ssh2Internals {
  _chanMgr: { add(cb: unknown): number };
  _protocol: {
    session(localChan: number, window: number, packetSize: number): void;
    exec(chan: number, command: string, wantReply: boolean): void;
    authPK?: (user: string, key: unknown, keyAlgo: string | undefined, sign?: unknown) => void;
  };
}
type RawChannel = ClientChannel & {
  outgoing: { id: number; state: string };
  _callbacks: ((failed: boolean) => void)[];
  subtype?: string;
  allowHalfOpen?: boolean;
};

/** Opens a session channel (one round trip): ssh2's openChannel(…, 'session'), which it does not export. */
export function openSession(client: Client): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    const c = client as unknown as Ssh2Internals;
    const wrapper = Object.assign((err: Error | undefined, ch: ClientChannel) => (err ? reject(err) : resolve(ch)), {
      type: 'session'
    });
    const local = c._chanMgr.add(wrapper);
    if (local === -1) return reject(new Error('No free channels available'));
    // ssh2's own window and packet size for channels it opens (MAX_WINDOW, PACKET_SIZE)
    c._protocol.session(local, 2 * 1024 * 1024, 32 * 1024);
  });
}

/** The exec request on an open session channel (ssh2's reqExec); done is called with its reply. */
export function sendExec(client: Client, ch: ClientChannel, command: string, done: (err?: Error) => void): void {
  const raw = ch as RawChannel;
  if (raw.outgoing.state !== 'open') return done(new Error('Channel is not open'));
  raw._callbacks.push((failed) => done(failed ? new Error('Unable to exec') : undefined));
  raw.subtype = 'exec';
  raw.allowHalfOpen = true;
  (client as unknown as Ssh2Internals)._protocol.exec(raw.outgoing.id, command, true);
}

/**
 * Public-key auth in one round trip: ssh2 first asks whether the key would be accepted (USERAUTH_PK_OK) and signs
 * only then; the signed request alone is just as valid (RFC 4252 §7) and saves the query. A refused key still
 * fails the same way (USERAUTH_FAILURE).
 */
export function signFirst(client: Client, onSent?: () => void): void {
  const proto = (client as unknown as Partial<Ssh2Internals>)._protocol;
  const authPK = proto?.authPK;
  if (!proto || typeof authPK !== 'function') return;
  proto.authPK = (user, key, keyAlgo, sign) => {
    const k = key as { sign?: (data: Buffer, hash?: string) => Buffer | Error; type?: string };
    if (sign || typeof k?.sign !== 'function') return authPK.call(proto, user, key, keyAlgo, sign);
    const hash =
      keyAlgo === 'rsa-sha2-256'
        ? 'sha256'
        : keyAlgo === 'rsa-sha2-512'
          ? 'sha512'
          : keyAlgo === 'ssh-rsa'
            ? 'sha1'
            : undefined;
    authPK.call(proto, user, key, keyAlgo, (data: Buffer, cb: (sig: Buffer) => void) => {
      const sig = k.sign!(data, hash);
      // cannot sign here: the query round trip it is then
      if (sig instanceof Error) return authPK.call(proto, user, key, keyAlgo);
      cb(sig);
    });
    // A key with one signature algorithm (ed25519, ecdsa) is accepted or refused with this request: channel opens
    // sent right behind it are handled once it succeeded (sshd reads a connection's messages in order), which saves
    // the first command a round trip. An RSA key may be retried with another algorithm: nothing is sent ahead then.
    if (onSent && k.type !== 'ssh-rsa') {
      const once = onSent;
      onSent = undefined;
      once();
    }
  };
}
