/**
 * The TCP connection to the host, opened by the entry point before the bulk of the bundle (ssh2 and the rest,
 * ~70 ms to compile and load) is: the TCP handshake and sshd's own start-up (its banner, ~8 ms on a near host)
 * happen meanwhile. At a distance that hides most of a round trip (up to Node's start-up time); near, sshd's start.
 *
 * Only in the plain case (src/config/inputs/preconnect-target.ts): transport ssh, one address in `hosts`, a numeric ssh-port, no jump host. Nothing is sent
 * on the socket until the connect step hands it to ssh2, which checks the host key as always; a socket that failed,
 * or that the run did not take within UNUSED_MS, is dropped, and the connect step opens its own (with its retries and
 * errors). A socket sshd closed meanwhile (LoginGraceTime) looks alive until read: an attempt on it that fails is
 * tried again at once on a fresh socket, not counted against ssh-connect-retries (connection.ts).
 */
import net from 'node:net';

/** sshd drops a connection that has not authenticated within LoginGraceTime (120 s by default): far less. */
const UNUSED_MS = 15_000;

interface EarlySocket {
  host: string;
  port: number;
  sock: net.Socket;
  failed: boolean;
  timer: NodeJS.Timeout;
}

let early: EarlySocket | undefined;

/**
 * Starts the early connection (at most one; it does not keep the process alive). Resolves once the connect is on its
 * way: net.connect sends the SYN only on the next tick, and loading the rest of the bundle would hold that up.
 */
export async function preconnect(t: { host: string; port: number } | undefined): Promise<void> {
  if (!t || early) return;
  const sock = net.connect({ host: t.host, port: t.port, noDelay: true });
  sock.unref();
  const e: EarlySocket = { ...t, sock, failed: false, timer: setTimeout(() => drop(e), UNUSED_MS) };
  e.timer.unref();
  // Kept for the connect step to see: it then opens a socket of its own and reports that one's error.
  sock.on('error', () => (e.failed = true));
  sock.on('close', () => (e.failed = true));
  early = e;
  await new Promise((resolve) => process.nextTick(resolve));
}

function drop(e: EarlySocket): void {
  clearTimeout(e.timer);
  if (early === e) early = undefined;
  e.sock.destroy();
}

/**
 * The early socket to host:port, connected or still connecting, for the connect step's first attempt; undefined when
 * there is none for that address or it failed. Each socket is taken once.
 */
export function takeEarlySocket(host: string, port: number): net.Socket | undefined {
  const e = early;
  if (!e || e.host !== host || e.port !== port) return undefined;
  clearTimeout(e.timer);
  early = undefined;
  if (e.failed || e.sock.destroyed) {
    e.sock.destroy();
    return undefined;
  }
  e.sock.ref();
  return e.sock;
}

/** Whether a live early socket to host:port (not failed so far) is waiting to be taken. */
export function hasEarlySocket(host: string, port: number): boolean {
  return early !== undefined && early.host === host && early.port === port && !early.failed && !early.sock.destroyed;
}

/** Closes the early socket if nothing took it (the run ended before its connect step). */
export function dropEarlySocket(): void {
  if (early) drop(early);
}
