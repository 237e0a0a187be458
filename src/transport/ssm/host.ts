/**
 * transport: ssm — one host reached through AWS Systems Manager Run Command (SendCommand with the document
 * AWS-RunShellScript, GetCommandInvocation, CancelCommand). It implements only `run` of the transport interface: no
 * stdin stream, no port forwarding, no channel held open; the deploy falls back (health probes on the host, a lease
 * renewed by commands). The command text is fixed and every value is data (wrapper.ts); stdin is sealed to a key the
 * host made for this session (seal.ts), because SSM keeps every parameter in its command history and CloudTrail.
 *
 * Output arrives when a command has finished: `onLine` is called for all its lines at once then (SSM's partial output
 * of a running command is not reliable enough to stream).
 */
import type { HostTarget } from '../../model/config.js';
import type { ExecOptions, ExecResult, RemoteHost } from '../remote-host.js';
import { explainSsmError, explainStatus } from './errors.js';
import { seal } from './seal.js';
import {
  closePayload,
  commandLines,
  fetchPayload,
  MAX_OUT_BYTES,
  newSessionId,
  parseFrame,
  PIECE_BYTES,
  runPayload,
  type Frame,
  type KeyWish
} from './wrapper.js';

/** The few SSM calls used, as the SDK's client.send sees them (tests supply fakes). */
export interface SsmSdk {
  client: { send(command: unknown): Promise<unknown> };
  SendCommandCommand: new (input: SendCommandInput) => unknown;
  GetCommandInvocationCommand: new (input: { CommandId: string; InstanceId: string }) => unknown;
  CancelCommandCommand: new (input: { CommandId: string; InstanceIds?: string[] }) => unknown;
}

export interface SendCommandInput {
  InstanceIds: string[];
  DocumentName: string;
  Parameters: Record<string, string[]>;
  TimeoutSeconds?: number;
  Comment?: string;
}

interface Invocation {
  Status?: string;
  StatusDetails?: string;
  ResponseCode?: number;
  StandardOutputContent?: string;
  StandardErrorContent?: string;
}

export interface SsmHostOptions {
  region: string;
  /** executionTimeout of every command: the longest a command may run (lock waits, drains) plus a margin. */
  executionTimeoutSeconds: number;
  /** How long to wait for the agent to pick a command up (SendCommand TimeoutSeconds, at least 30). */
  deliveryTimeoutSeconds?: number;
  /** The first GetCommandInvocation calls may answer InvocationDoesNotExist: tolerated this long. */
  invocationGraceMs?: number;
  /** Cancels the commands in flight (CancelCommand) once aborted; commands started after that (the undo) run. */
  signal?: AbortSignal;
  /** Shown in the SSM console next to each command. */
  comment?: string;
  /** Polling backoff: first and longest wait between GetCommandInvocation calls. */
  pollMs?: { first: number; max: number };
  sleep?: (ms: number) => Promise<void>;
}

const TERMINAL = new Set([
  'Success',
  'Failed',
  'Cancelled',
  'TimedOut',
  'Cancelling',
  'Undeliverable',
  'Terminated',
  'DeliveryTimedOut',
  'ExecutionTimedOut',
  'InvalidPlatform',
  'AccessDenied'
]);

export class CommandCancelledError extends Error {}

export class SsmHost implements RemoteHost {
  private closed = false;
  private readonly sessionId = newSessionId();
  private pub?: string;
  private commands = 0;
  private readonly inFlight = new Set<string>();
  /** Every command not finished yet (close waits for them). */
  private readonly running = new Set<Promise<Frame>>();
  private readonly sleep: (ms: number) => Promise<void>;
  /** The close command, once sent (tests wait for it). */
  closing?: Promise<void>;

  constructor(
    readonly target: HostTarget,
    private readonly sdk: SsmSdk,
    private readonly opts: SsmHostOptions
  ) {
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    opts.signal?.addEventListener('abort', () => void this.cancelInFlight(), { once: true });
  }

  get instanceId(): string {
    return this.target.host;
  }

  isConnected(): boolean {
    return !this.closed;
  }

  /**
   * Ends the session: removes the host's session directory (the private key, kept outputs) once the commands still
   * running have ended (a lease renewal or image listing in flight would otherwise make it again). Not waited for:
   * only SendCommand is needed, and the reaper removes the directory anyway once idle.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.commands === 0) return;
    this.closing = Promise.allSettled([...this.running])
      .then(() => this.send(commandLines(closePayload(this.sessionId))))
      .then(
        () => undefined,
        () => undefined
      );
  }

  async run(body: string, args: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    if (this.closed) throw new Error(`the SSM session to ${this.target.label} was closed`);
    const stdin = opts.stdin ?? '';
    let frame: Frame | undefined;
    for (let attempt = 0; attempt < 2 && !frame; attempt++) {
      let wish: KeyWish = this.commands === 0 ? 'key-if-missing' : 'no';
      if (stdin && !this.pub) {
        // Sealed stdin needs the session key first (the first command makes it; it expires when idle).
        await this.invoke(runPayload(this.sessionId, ':', [], { wantKey: 'key' }));
        wish = 'no';
      }
      const sealed = stdin ? seal(this.pub!, stdin) : undefined;
      const f = await this.invoke(
        runPayload(this.sessionId, body, args, { wantKey: wish, sealed, runAs: this.target.user })
      );
      if (f.noKey) {
        this.pub = undefined;
        continue;
      }
      frame = f;
    }
    if (!frame)
      throw new Error(
        `SSM: ${this.target.label} could not open the sealed stdin with a fresh session key twice in a row (is openssl on the host OpenSSL 1.0.2 or newer, with RSA-OAEP SHA-256?)`
      );
    const stdout = (await this.fullStdout(frame)).toString('utf8');
    const stderr = (frame.stderrBytes > frame.err.length ? '…' : '') + frame.err.toString('utf8');
    if (opts.onLine) {
      for (const l of splitLines(stdout)) opts.onLine(l, 'stdout');
      for (const l of splitLines(stderr)) opts.onLine(l, 'stderr');
    }
    return { code: frame.code, signal: null, stdout, stderr };
  }

  /** The first piece came with the answer; a longer stdout is read in pieces (each well under SSM's output cut). */
  private async fullStdout(frame: Frame): Promise<Buffer> {
    const parts = [frame.out];
    let have = frame.out.length;
    const total = Math.min(frame.stdoutBytes, MAX_OUT_BYTES);
    while (have < total && frame.n) {
      const len = Math.min(PIECE_BYTES, total - have);
      const last = have + len >= total;
      const f = await this.invoke(fetchPayload(this.sessionId, frame.n, have, len, last));
      if (!f.out.length) break;
      parts.push(f.out);
      have += f.out.length;
    }
    if (frame.stdoutBytes > MAX_OUT_BYTES)
      parts.push(Buffer.from(`\n… (output cut at ${MAX_OUT_BYTES} bytes of ${frame.stdoutBytes})\n`));
    return Buffer.concat(parts);
  }

  /** One command: send, wait, parse the wrapper's frame. */
  private invoke(payload: string[]): Promise<Frame> {
    const p = this.invokeOnce(payload);
    this.running.add(p);
    void p.finally(() => this.running.delete(p)).catch(() => undefined);
    return p;
  }

  private async invokeOnce(payload: string[]): Promise<Frame> {
    const before = this.opts.signal?.aborted ?? false;
    const commandId = await this.send(commandLines(payload));
    this.commands++;
    this.inFlight.add(commandId);
    // The cancel came while SendCommand was on its way: this command belongs to what was cancelled.
    if (!before && this.opts.signal?.aborted) void this.cancel(commandId);
    try {
      const inv = await this.wait(commandId);
      const frame = parseFrame(inv.StandardOutputContent ?? '');
      if (frame?.pub) this.pub = frame.pub;
      if (frame) return frame;
      if (inv.Status === 'Success' || inv.Status === 'Failed') {
        const err = (inv.StandardErrorContent ?? '').trim().split('\n').slice(-5).join('\n');
        throw new Error(
          `SSM: the command wrapper failed on ${this.target.label} (exit ${inv.ResponseCode ?? '?'})${err ? `: ${err}` : ''}`
        );
      }
      const msg = explainStatus(inv.Status ?? 'unknown', inv.StatusDetails, this.target.label);
      if (inv.Status === 'Cancelled' || inv.Status === 'Cancelling')
        throw new CommandCancelledError(`${msg}: the run was cancelled`);
      throw new Error(msg);
    } finally {
      this.inFlight.delete(commandId);
    }
  }

  private async send(commands: string[]): Promise<string> {
    const input: SendCommandInput = {
      InstanceIds: [this.instanceId],
      DocumentName: 'AWS-RunShellScript',
      Parameters: { commands, executionTimeout: [String(this.opts.executionTimeoutSeconds)] },
      TimeoutSeconds: Math.max(30, this.opts.deliveryTimeoutSeconds ?? 60),
      Comment: (this.opts.comment ?? 'bluegreen-ec2-action').slice(0, 100)
    };
    const out = (await this.retryThrottled(() => this.sdk.client.send(new this.sdk.SendCommandCommand(input))).catch(
      (e) => {
        throw explainSsmError('SendCommand', this.target.label, this.opts.region, e);
      }
    )) as { Command?: { CommandId?: string } };
    const id = out.Command?.CommandId;
    if (!id) throw new Error(`SSM SendCommand for ${this.target.label} returned no command id`);
    return id;
  }

  /** Polls GetCommandInvocation with a short backoff until the command ended. */
  private async wait(commandId: string): Promise<Invocation> {
    const poll = this.opts.pollMs ?? { first: 100, max: 1000 };
    const graceUntil = Date.now() + (this.opts.invocationGraceMs ?? 30_000);
    let delay = poll.first;
    for (;;) {
      await this.sleep(delay);
      delay = Math.min(poll.max, Math.round(delay * 1.5));
      let inv: Invocation;
      try {
        inv = (await this.retryThrottled(() =>
          this.sdk.client.send(
            new this.sdk.GetCommandInvocationCommand({ CommandId: commandId, InstanceId: this.instanceId })
          )
        )) as Invocation;
      } catch (e) {
        // Right after SendCommand the invocation may not exist yet.
        if ((e as { name?: string }).name === 'InvocationDoesNotExist' && Date.now() < graceUntil) continue;
        throw explainSsmError('GetCommandInvocation', this.target.label, this.opts.region, e);
      }
      if (inv.Status && TERMINAL.has(inv.Status)) return inv;
    }
  }

  /** ThrottlingException (on top of the SDK's own retries): wait and try again, up to about half a minute. */
  private async retryThrottled<T>(call: () => Promise<T>): Promise<T> {
    let wait = 200;
    for (let i = 0; ; i++) {
      try {
        return await call();
      } catch (e) {
        const name = (e as { name?: string }).name;
        if ((name !== 'ThrottlingException' && name !== 'TooManyRequestsException') || i >= 8) throw e;
        await this.sleep(wait + Math.floor(Math.random() * wait));
        wait = Math.min(5000, wait * 2);
      }
    }
  }

  /** The run was cancelled: stop what runs now; the undo's commands come after and run. */
  private async cancelInFlight(): Promise<void> {
    await Promise.all([...this.inFlight].map((id) => this.cancel(id)));
  }

  private async cancel(commandId: string): Promise<void> {
    await this.retryThrottled(() =>
      this.sdk.client.send(new this.sdk.CancelCommandCommand({ CommandId: commandId, InstanceIds: [this.instanceId] }))
    ).catch(() => undefined);
  }
}

function splitLines(s: string): string[] {
  if (!s) return [];
  const lines = s.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}
