/** The errors of the SSH transport, and how a failed connect is classified into one of them. */
import type { HostTarget } from '../../model/config.js';

export class ConnectError extends Error {
  constructor(
    message: string,
    readonly kind: 'host-key' | 'auth' | 'refused' | 'timeout' | 'dns' | 'network' | 'cancelled'
  ) {
    super(message);
    this.name = 'ConnectError';
  }
}

/** A connected host's SSH connection is gone: every call in flight or later rejects with this. */
export class ConnectionLostError extends Error {
  constructor(
    /** "ec2-user@10.0.1.5:22" */
    readonly where: string,
    /** What happened: "ECONNRESET", "no answer to SSH keepalives for 20 s", … */
    readonly reason: string,
    options?: { cause?: unknown }
  ) {
    super(`the SSH connection to ${where} was lost (${reason})`, options);
    this.name = 'ConnectionLostError';
  }
}

export const whereOf = (t: HostTarget) => `${t.user}@${t.host}:${t.port}`;

export type SshError = Error & { code?: string; level?: string };

export function classify(err: SshError, target: HostTarget, timeoutMs: number): ConnectError {
  const where = whereOf(target);
  if (err instanceof ConnectError) return err;
  if (err.code === 'ECONNREFUSED')
    return new ConnectError(
      `connection to ${where} was refused: is sshd running and the port (${target.port}) right, and does the security group allow it?`,
      'refused'
    );
  if (err.code === 'ENETUNREACH' || err.code === 'EHOSTUNREACH')
    return new ConnectError(
      `${where} is unreachable from the runner (${err.code}): check the address, the VPC routing, or use a bastion`,
      'network'
    );
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN')
    return new ConnectError(`host name ${target.host} could not be resolved (${err.code})`, 'dns');
  if (err.code === 'ETIMEDOUT' || /Timed out while waiting for handshake/i.test(err.message)) {
    return new ConnectError(
      `no SSH handshake with ${where} within ${timeoutMs / 1000} s: the host is down or a firewall/security group drops the traffic`,
      'timeout'
    );
  }
  if (err.level === 'client-authentication' || /authentication methods failed/i.test(err.message)) {
    return new ConnectError(
      `${where} refused the key for user "${target.user}": check ssh-user and that the public key of ssh-private-key is in ~${target.user}/.ssh/authorized_keys`,
      'auth'
    );
  }
  // Thrown by ssh2 before any byte is sent: retrying cannot help.
  if (/Cannot parse privateKey/i.test(err.message))
    return new ConnectError(
      `the private key for ${where} cannot be used: ${err.message} (check the key text and its passphrase)`,
      'auth'
    );
  return new ConnectError(`SSH connection to ${where} failed: ${err.message}`, 'network');
}

export function cancelledError(target: HostTarget, signal?: AbortSignal): ConnectError {
  const reason = typeof signal?.reason === 'string' ? `: ${signal.reason}` : '';
  return new ConnectError(`cancelled while connecting to ${whereOf(target)}${reason}`, 'cancelled');
}
