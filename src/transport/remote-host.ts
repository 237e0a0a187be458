/**
 * What the deploy needs from a connection to one host: the transport interface. SSH (src/transport/ssh/)
 * implements all of it; a transport without streams (AWS Systems Manager Run Command: no stdin stream, no port
 * forwarding, no channel held open, output cut at 24,000 characters) implements only `run`, and the deploy falls
 * back where a capability is missing: health probes run on the host, the deploy lock is a lease renewed by
 * commands, and what needs a runner-local tunnel (the smoke test) says it needs a transport that forwards.
 * Tests supply fakes.
 */
import type { HostTarget } from '../model/config.js';

/** How a transport's connect is watched: every transport's connect takes these. */
export interface ConnectOptions {
  /** Called before each retry of a failed connect attempt. */
  onRetry?: (attempt: number, error: Error, waitMs: number) => void;
  /** Aborts the attempt in progress (socket connect, tunnel, handshake) and the backoff wait at once. */
  signal?: AbortSignal;
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  stdin?: string;
  /** Called for each complete stdout line as it arrives (step markers, progress). */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** A long-lived remote command (the lock keeper): its output, its exit, and its stdin. */
export interface RemoteChannel {
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'exit', listener: (code: number | null) => void): this;
  on(event: 'close' | 'error', listener: (...args: unknown[]) => void): this;
  once(event: 'close', listener: () => void): this;
  readonly stderr: { on(event: 'data', listener: (chunk: Buffer) => void): unknown };
  write(data: string): boolean;
  end(): void;
  close(): void;
}

export type RemoteStream = NodeJS.ReadWriteStream & { destroy(): void };

export interface RemoteHost {
  readonly target: HostTarget;
  /**
   * Runs a POSIX sh script with optional positional arguments. Resolves once the command exited (or was killed
   * by a signal); rejects with a lost-connection error when the connection is lost before that.
   */
  run(body: string, args?: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Optional: starts a command and returns its channel (stdin stays open); it emits 'close' when the connection is lost. */
  open?(body: string, args?: string[]): Promise<RemoteChannel>;
  /** Optional: a TCP stream to 127.0.0.1:port on the host, through the connection. */
  forward?(port: number): Promise<RemoteStream>;
  /** Optional: a stream to a unix socket on the host (e.g. HAProxy's admin socket). */
  forwardUnix?(socketPath: string): Promise<RemoteStream>;
  /** False once the connection is gone (dropped, host down, silent, closed). */
  isConnected(): boolean;
  close(): void;
}
