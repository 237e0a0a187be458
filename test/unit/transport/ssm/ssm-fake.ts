/**
 * An in-process stand-in for the SSM client's `send`, for unit tests of src/transport/ssm/: SendCommand runs the
 * AWS-RunShellScript `commands` with the local sh (like the agent: lines joined with newlines, the output cut at
 * 24,000 / 8,000 characters), GetCommandInvocation answers InvocationDoesNotExist at first, then InProgress, then the
 * result; throttling and cancels can be injected. The e2e test uses the real SDK against the fleet's stand-in.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { SendCommandInput, SsmSdk } from '../../../../src/transport/ssm/host.js';

export class SendCommandCommand {
  constructor(readonly input: SendCommandInput) {}
}
export class GetCommandInvocationCommand {
  constructor(readonly input: { CommandId: string; InstanceId: string }) {}
}
export class CancelCommandCommand {
  constructor(readonly input: { CommandId: string; InstanceIds?: string[] }) {}
}

interface Cmd {
  id: string;
  input: SendCommandInput;
  polls: number;
  done?: { code: number; stdout: string; stderr: string; status: string };
  child?: ChildProcess;
}

export class FakeSsm {
  readonly sent: SendCommandInput[] = [];
  readonly calls: string[] = [];
  readonly commands = new Map<string, Cmd>();
  /** How many GetCommandInvocation calls per command answer InvocationDoesNotExist. */
  notYet = 1;
  /** Throw ThrottlingException on this many of the next calls. */
  throttle = 0;
  /** Extra environment for the commands (BLUEGREEN_SSM_DIR). */
  env: NodeJS.ProcessEnv = {};
  private n = 0;

  sdk(): SsmSdk {
    return {
      client: { send: (c) => this.send(c) },
      SendCommandCommand,
      GetCommandInvocationCommand,
      CancelCommandCommand
    };
  }

  async send(c: unknown): Promise<unknown> {
    const name = (c as object).constructor.name;
    this.calls.push(name);
    if (this.throttle > 0) {
      this.throttle--;
      throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    }
    if (c instanceof SendCommandCommand) return this.sendCommand(c.input);
    if (c instanceof GetCommandInvocationCommand) return this.get(c.input.CommandId);
    if (c instanceof CancelCommandCommand) {
      const cmd = this.commands.get(c.input.CommandId);
      if (cmd && !cmd.done) {
        cmd.child?.kill('SIGKILL');
        cmd.done = { code: -1, stdout: '', stderr: '', status: 'Cancelled' };
      }
      return {};
    }
    throw new Error(`unexpected ${name}`);
  }

  private sendCommand(input: SendCommandInput): unknown {
    this.sent.push(input);
    const id = `cmd-${++this.n}`;
    const cmd: Cmd = { id, input, polls: 0 };
    this.commands.set(id, cmd);
    const child = spawn('sh', ['-c', input.Parameters.commands.join('\n')], {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe']
    });
    cmd.child = child;
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => {
      if (cmd.done) return;
      cmd.done = {
        code: code ?? -1,
        stdout: out.slice(0, 24000),
        stderr: err.slice(0, 8000),
        status: code === 0 ? 'Success' : 'Failed'
      };
    });
    return { Command: { CommandId: id } };
  }

  private get(id: string): unknown {
    const cmd = this.commands.get(id);
    if (!cmd || cmd.polls++ < this.notYet)
      throw Object.assign(new Error('Invocation does not exist'), { name: 'InvocationDoesNotExist' });
    if (!cmd.done) return { Status: 'InProgress' };
    return {
      Status: cmd.done.status,
      ResponseCode: cmd.done.code,
      StandardOutputContent: cmd.done.stdout,
      StandardErrorContent: cmd.done.stderr
    };
  }

  /** Every parameter text ever sent (what SSM's history and CloudTrail keep). */
  history(): string {
    return JSON.stringify(this.sent);
  }
}
