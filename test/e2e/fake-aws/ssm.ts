/**
 * In-process stand-in for SSM Run Command on the real wire protocol (AWS JSON 1.1: POST /, X-Amz-Target
 * AmazonSSM.<Operation>, JSON body; errors {"__type": ..., "message": ...}). The real @aws-sdk/client-ssm reaches
 * it through AWS_ENDPOINT_URL_SSM. Operations: SendCommand (AWS-RunShellScript only), GetCommandInvocation,
 * CancelCommand, ListCommandInvocations, DescribeInstanceInformation.
 *
 * It behaves like the service plus the SSM agent, as far as a deploy tool can tell:
 * - an invocation does not exist (InvocationDoesNotExist) for `invisibleMs` after SendCommand;
 * - the agent picks a command up `pickupDelayMs` after it was sent (Pending until then), and only while online;
 *   it runs at most `workersPerInstance` (5) scripts at once, the others stay Pending until a worker is free;
 * - the script (the commands joined with newlines) is written to _script.sh in an orchestration directory on the
 *   host and run as root with `sh -c <script path>`, stdin /dev/null, cwd that directory (or workingDirectory), a
 *   clean environment (PATH, AWS_SSM_INSTANCE_ID, AWS_SSM_REGION_NAME: no HOME, as under systemd), inside the
 *   fleet host's namespaces (test/sandbox/fleet-exec.sh), in its own process group;
 * - cancel and executionTimeout kill that process group with SIGKILL; the response code is then 137, and like
 *   the agent, a script that itself exits 137 is reported TimedOut;
 * - StandardOutputContent / StandardErrorContent are empty until the invocation ends, then its first 24,000 /
 *   8,000 characters.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import { REPO_ROOT, q, sh } from '../harness.js';
import {
  AwsError,
  Faults,
  startServer,
  type FakeAwsRequest,
  type FaultSpec,
  type InstanceStore,
  type ParsedRequest,
  type Reply
} from './common.js';

const FLEET_EXEC = path.join(REPO_ROOT, 'test', 'sandbox', 'fleet-exec.sh');
const JSON11 = 'application/x-amz-json-1.1';
const TARGET_PREFIX = 'AmazonSSM.';
const ACCOUNT = '123456789012';
const DOCUMENT = 'AWS-RunShellScript';
const PLUGIN = 'aws:runShellScript';
/** the service's limits on GetCommandInvocation output */
export const STDOUT_LIMIT = 24000;
export const STDERR_LIMIT = 8000;
/** ListCommandInvocations (Details) plugin Output: stdout and stderr together, cut to this */
const PLUGIN_OUTPUT_LIMIT = 2500;
/** what the stand-in keeps of each stream for invocations() (the service keeps no more than the limits anyway) */
const KEEP_BYTES = 1 << 20;
/** Linux agent: exit code of a command it killed (timeout or cancel): 128 + SIGKILL */
const STOPPED_EXIT = 137;
/** the agent's environment under systemd (no HOME, no USER) */
const AGENT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** per-host /run is private to each fleet host: the scripts live there, like the agent's /var/lib/amazon/ssm */
const AGENT_DIR = '/run/fake-ssm-agent';
// Writes stdin to $1/_script.sh and runs it as the agent does. Fixed text: the paths come in as $1/$2, the script as stdin.
const WRAPPER =
  'mkdir -p "$1" && cat >"$1/_script.sh" && chmod 700 "$1/_script.sh" && cd "${2:-$1}" && exec sh -c "$1/_script.sh" </dev/null';

export type InvocationStatus =
  | 'Pending'
  | 'InProgress'
  | 'Delayed'
  | 'Success'
  | 'Cancelled'
  | 'TimedOut'
  | 'Failed'
  | 'Cancelling';

/** One command on one instance, as the stand-in sees it (full output, not cut). */
export interface FakeInvocation {
  commandId: string;
  instanceId: string;
  /** fleet host that ran (or will run) it */
  host?: string;
  comment: string;
  /** the commands joined with newlines: exactly what _script.sh holds */
  script: string;
  /** SendCommand's Parameters as received */
  parameters: Record<string, string[]>;
  status: InvocationStatus;
  statusDetails: string;
  /** exit code; -1 until it ends (and when it never ran) */
  responseCode: number;
  stdout: string;
  stderr: string;
  requestedAt: Date;
  startedAt?: Date;
  endedAt?: Date;
  /** pid (= process group) of the script on the runner; the fleet hosts share the runner's pid namespace */
  pid?: number;
  /** region of the SendCommand request (the script's AWS_SSM_REGION_NAME) */
  region: string;
  executionTimeoutSeconds: number;
  deliveryTimeoutSeconds: number;
}

export interface FakeSsmOptions {
  /** GetCommandInvocation/ListCommandInvocations do not see an invocation for this long after SendCommand (default 300) */
  invisibleMs?: number;
  /** delay between SendCommand (or the agent coming back online) and the script starting (default 300) */
  pickupDelayMs?: number;
  /** extra environment variables for every script (on top of PATH, AWS_SSM_INSTANCE_ID, AWS_SSM_REGION_NAME) */
  env?: Record<string, string>;
  /**
   * Reject SendCommand (InvalidParameters) when JSON.stringify(Parameters) is larger than this. Off by default: the
   * service's exact limit is not documented where we looked; a test can set one to prove commands stay small.
   */
  maxParametersBytes?: number;
  /** scripts one agent runs at once (the agent's CommandWorkersLimit, default 5); more wait Pending for a free worker */
  workersPerInstance?: number;
}

export interface FakeSsm {
  url: string;
  /** every request received (also the failed ones), oldest first */
  requests(): FakeAwsRequest[];
  /** the SendCommand requests' Parameters, oldest first: where no secret may appear */
  sentParameters(): Record<string, string[]>[];
  /** snapshots of every invocation, oldest first */
  invocations(): FakeInvocation[];
  /** for commands sent from now on; with an instance id, for that instance only (a slow agent) */
  setPickupDelay(ms: number, instanceId?: string): void;
  setInvisibleWindow(ms: number): void;
  /** the next n calls (of `spec.operation`, default any) fail with spec.code (default ThrottlingException) */
  failNext(n: number, spec?: FaultSpec): void;
  /** the first invocation (snapshot) for which `pred` holds, polling every 20 ms (rejects after timeoutMs, default 60 s) */
  waitForInvocation(pred: (inv: FakeInvocation) => boolean, timeoutMs?: number): Promise<FakeInvocation>;
  /** resolves once no invocation is Pending, InProgress or Cancelling (rejects after timeoutMs, default 60 s) */
  idle(timeoutMs?: number): Promise<void>;
  /** kills every running script, removes the scripts from the hosts, stops the server */
  close(): Promise<void>;
}

interface Invocation extends FakeInvocation {
  /** orchestration directory on the host */
  dir?: string;
  workingDirectory?: string;
  child?: ChildProcess;
  cancelRequested?: boolean;
  timedOut?: boolean;
  /** the instance stopped under it */
  lost?: boolean;
  /** its pick-up delay has passed: it starts as soon as the agent has a free worker */
  ready?: boolean;
  out: Buffer[];
  outBytes: number;
  err: Buffer[];
  errBytes: number;
  /** an end that happened while the agent was offline, reported when it is back */
  unreported?: Pick<FakeInvocation, 'status' | 'statusDetails' | 'responseCode' | 'endedAt'>;
  timers: NodeJS.Timeout[];
}

const TERMINAL: InvocationStatus[] = ['Success', 'Cancelled', 'TimedOut', 'Failed'];

/** first n characters (code points, not UTF-16 units) */
function cut(s: string, n: number): string {
  if (s.length <= n) return s;
  return Array.from(s).slice(0, n).join('');
}

/** "PT1.234S", the service's ExecutionElapsedTime */
function elapsed(a: Date, b: Date): string {
  return `PT${((b.getTime() - a.getTime()) / 1000).toFixed(3)}S`;
}

/** stdout and stderr merged the way the agent fills a plugin's Output (ListCommandInvocations with Details) */
function pluginOutput(stdout: string, stderr: string): string {
  const title = stderr ? '\n----------ERROR-------\n' : '';
  const room = PLUGIN_OUTPUT_LIMIT - title.length;
  if (stdout.length + stderr.length < room) return stdout + title + stderr;
  const outMark = '\n---Output truncated---';
  const errMark = '\n---Error truncated----';
  if (stdout.length > room / 2 && stderr.length > room / 2) {
    const half = Math.floor((room - outMark.length - errMark.length) / 2);
    return stdout.slice(0, half) + outMark + title + stderr.slice(0, half) + errMark;
  }
  if (stdout.length < room / 2)
    return stdout + title + stderr.slice(0, room - errMark.length - stdout.length) + errMark;
  return stdout.slice(0, room - outMark.length - stderr.length) + outMark + title + stderr;
}

function snapshot(inv: Invocation): FakeInvocation {
  const {
    dir: _d,
    workingDirectory: _w,
    child: _c,
    cancelRequested: _cr,
    timedOut: _t,
    lost: _l,
    out: _o,
    outBytes: _ob,
    err: _e,
    errBytes: _eb,
    unreported: _u,
    timers: _ti,
    ...pub
  } = inv;
  return {
    ...pub,
    parameters: { ...pub.parameters },
    stdout: Buffer.concat(inv.out).toString('utf8'),
    stderr: Buffer.concat(inv.err).toString('utf8')
  };
}

function stringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function intParam(params: Record<string, string[]>, name: string, dflt: number, min: number, max: number): number {
  const v = params[name];
  if (v === undefined) return dflt;
  if (v.length !== 1 || !/^\d+$/.test(v[0]) || +v[0] < min || +v[0] > max) {
    throw new AwsError(
      'InvalidParameters',
      `Parameter "${name}" "${v.join(',')}" is invalid: an integer from ${min} to ${max} is expected.`
    );
  }
  return +v[0];
}

export async function startFakeSsm(store: InstanceStore, opts: FakeSsmOptions = {}): Promise<FakeSsm> {
  const requests: FakeAwsRequest[] = [];
  const faults = new Faults();
  const invocations: Invocation[] = [];
  const byKey = new Map<string, Invocation>();
  let invisibleMs = opts.invisibleMs ?? 300;
  let pickupDelayMs = opts.pickupDelayMs ?? 300;
  const pickupDelayOf = new Map<string, number>();
  const pickupDelay = (instanceId: string) => pickupDelayOf.get(instanceId) ?? pickupDelayMs;
  let closed = false;
  const key = (commandId: string, instanceId: string) => `${commandId}/${instanceId}`;
  const visible = (inv: Invocation) => Date.now() - inv.requestedAt.getTime() >= invisibleMs;
  const running = (inv: Invocation) => !!inv.child && inv.child.exitCode === null && inv.child.signalCode === null;
  const exits: Promise<void>[] = [];

  const schedule = (inv: Invocation, ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      inv.timers = inv.timers.filter((x) => x !== t);
      if (!closed) fn();
    }, ms);
    inv.timers.push(t);
  };

  const finish = (inv: Invocation, end: NonNullable<Invocation['unreported']>) => {
    if (TERMINAL.includes(inv.status) || inv.unreported) return; // ended already (a spawn 'error' is followed by 'close')
    for (const t of inv.timers) clearTimeout(t);
    inv.timers = [];
    // the agent reports the end when it can: until then the service still says InProgress/Cancelling
    if (inv.startedAt && !inv.lost && !store.managed(store.get(inv.instanceId))) {
      inv.unreported = end;
      return;
    }
    Object.assign(inv, end);
  };

  const killGroup = (inv: Invocation) => {
    if (!inv.child?.pid || !running(inv)) return;
    try {
      process.kill(-inv.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };

  const workers = opts.workersPerInstance ?? 5;
  const start = (inv: Invocation) => {
    if (inv.status !== 'Pending') return;
    const inst = store.get(inv.instanceId);
    if (!store.managed(inst) || !inst?.host) return; // picked up when the agent is back (or delivery times out)
    inv.ready = true;
    if (invocations.filter((i) => i.instanceId === inv.instanceId && running(i)).length >= workers) return; // startNext() takes it
    const host = inst.host;
    inv.dir = `${AGENT_DIR}/${inv.instanceId}/document/orchestration/${inv.commandId}/awsrunShellScript/0.awsrunShellScript`;
    const env = {
      PATH: AGENT_PATH,
      AWS_SSM_INSTANCE_ID: inv.instanceId,
      AWS_SSM_REGION_NAME: inv.region,
      ...(opts.env ?? {})
    };
    const child = spawn(
      'bash',
      [
        FLEET_EXEC,
        host,
        'env',
        '-i',
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        'sh',
        '-c',
        WRAPPER,
        'sh',
        inv.dir,
        inv.workingDirectory ?? ''
      ],
      { detached: true, stdio: ['pipe', 'pipe', 'pipe'] }
    );
    inv.child = child;
    inv.pid = child.pid;
    inv.status = 'InProgress';
    inv.statusDetails = 'InProgress';
    inv.startedAt = new Date();
    const keep = (which: 'out' | 'err') => (c: Buffer) => {
      const bytes = which === 'out' ? inv.outBytes : inv.errBytes;
      if (bytes >= KEEP_BYTES) return;
      const piece = c.subarray(0, KEEP_BYTES - bytes);
      if (which === 'out') {
        inv.out.push(piece);
        inv.outBytes += piece.length;
      } else {
        inv.err.push(piece);
        inv.errBytes += piece.length;
      }
    };
    child.stdout!.on('data', keep('out'));
    child.stderr!.on('data', keep('err'));
    child.stdin!.on('error', () => undefined); // the script may be gone before it read everything (cancel)
    child.stdin!.end(inv.script);
    schedule(inv, inv.executionTimeoutSeconds * 1000, () => {
      inv.timedOut = true;
      killGroup(inv);
    });
    exits.push(
      new Promise<void>((resolve) => {
        child.on('error', (e) => {
          inv.err.push(Buffer.from(`fake-ssm: could not start the script: ${e.message}\n`));
          finish(inv, { status: 'Failed', statusDetails: 'Failed', responseCode: -1, endedAt: new Date() });
          resolve();
        });
        child.on('close', (code, signal) => {
          const endedAt = new Date();
          if (inv.lost) finish(inv, { status: 'Failed', statusDetails: 'Failed', responseCode: -1, endedAt });
          else if (inv.cancelRequested)
            finish(inv, { status: 'Cancelled', statusDetails: 'Cancelled', responseCode: STOPPED_EXIT, endedAt });
          else if (inv.timedOut || code === STOPPED_EXIT)
            finish(inv, {
              status: 'TimedOut',
              statusDetails: 'ExecutionTimedOut',
              responseCode: STOPPED_EXIT,
              endedAt
            });
          else if (code === 0) finish(inv, { status: 'Success', statusDetails: 'Success', responseCode: 0, endedAt });
          // killed by a signal we did not send: Go's exit code -1
          else
            finish(inv, {
              status: 'Failed',
              statusDetails: 'Failed',
              responseCode: signal ? -1 : (code ?? -1),
              endedAt
            });
          resolve();
          // a worker is free: the oldest command waiting for one starts
          const next = invocations.find((i) => i.instanceId === inv.instanceId && i.status === 'Pending' && i.ready);
          if (next && !closed) start(next);
        });
      })
    );
  };

  store.onChange(({ instance, what }) => {
    const mine = invocations.filter((i) => i.instanceId === instance.instanceId);
    if (what === 'state' && instance.state !== 'running') {
      // the machine went down under its scripts
      for (const inv of mine.filter(running)) {
        inv.lost = true;
        killGroup(inv);
      }
    }
    if (store.managed(instance)) {
      for (const inv of mine) {
        if (inv.unreported) {
          Object.assign(inv, inv.unreported);
          inv.unreported = undefined;
        }
        if (inv.status === 'Pending') schedule(inv, pickupDelay(inv.instanceId), () => start(inv));
      }
    }
  });

  const sendCommand = (body: Record<string, unknown>, region: string) => {
    if (typeof body.DocumentName !== 'string') {
      throw new AwsError(
        'ValidationException',
        "1 validation error detected: Value null at 'documentName' failed to satisfy constraint: Member must not be null"
      );
    }
    if (body.DocumentName !== DOCUMENT) {
      throw new AwsError(
        'InvalidDocument',
        `Document with name ${body.DocumentName} does not exist (the stand-in runs ${DOCUMENT} only).`
      );
    }
    if (body.Targets !== undefined)
      throw new AwsError('InvalidParameters', 'the stand-in supports InstanceIds only, not Targets');
    const ids = body.InstanceIds;
    if (!stringList(ids) || ids.length === 0)
      throw new AwsError('ValidationException', 'InstanceIds or Targets is required');
    if (ids.length > 50)
      throw new AwsError(
        'ValidationException',
        `1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50`
      );
    const params = (body.Parameters ?? {}) as Record<string, unknown>;
    for (const [k, v] of Object.entries(params)) {
      if (!['commands', 'workingDirectory', 'executionTimeout'].includes(k))
        throw new AwsError('InvalidParameters', `Parameter "${k}" is not defined in document ${DOCUMENT}.`);
      if (!stringList(v)) throw new AwsError('SerializationException', `Parameters.${k} must be a list of strings`);
    }
    const parameters = params as Record<string, string[]>;
    if (!parameters.commands?.length)
      throw new AwsError('InvalidParameters', 'Parameters required: "commands" (a non-empty list).');
    const executionTimeoutSeconds = intParam(parameters, 'executionTimeout', 3600, 1, 172800);
    let deliveryTimeoutSeconds = 3600;
    if (body.TimeoutSeconds !== undefined) {
      if (typeof body.TimeoutSeconds !== 'number' || body.TimeoutSeconds < 30 || body.TimeoutSeconds > 2592000) {
        throw new AwsError(
          'ValidationException',
          `1 validation error detected: Value '${body.TimeoutSeconds}' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000`
        );
      }
      deliveryTimeoutSeconds = body.TimeoutSeconds;
    }
    if (typeof body.Comment === 'string' && body.Comment.length > 100) {
      throw new AwsError(
        'ValidationException',
        `1 validation error detected: Value '${body.Comment}' at 'comment' failed to satisfy constraint: Member must have length less than or equal to 100`
      );
    }
    if (
      opts.maxParametersBytes !== undefined &&
      Buffer.byteLength(JSON.stringify(parameters)) > opts.maxParametersBytes
    ) {
      throw new AwsError(
        'InvalidParameters',
        `the parameters are larger than the stand-in's maxParametersBytes (${opts.maxParametersBytes})`
      );
    }
    const bad = ids.filter((id) => !store.managed(store.get(id)));
    if (bad.length)
      throw new AwsError(
        'InvalidInstanceId',
        `Instances [[${bad.join(', ')}]] not in a valid state for account ${ACCOUNT}`
      );
    const workingDirectory = parameters.workingDirectory?.[0] || undefined;

    const commandId = crypto.randomUUID();
    const requestedAt = new Date();
    const comment = typeof body.Comment === 'string' ? body.Comment : '';
    for (const instanceId of [...new Set(ids)]) {
      const inv: Invocation = {
        commandId,
        instanceId,
        host: store.get(instanceId)!.host,
        comment,
        script: parameters.commands.join('\n'),
        parameters,
        status: 'Pending',
        statusDetails: 'Pending',
        responseCode: -1,
        stdout: '',
        stderr: '',
        requestedAt,
        region,
        executionTimeoutSeconds,
        deliveryTimeoutSeconds,
        workingDirectory,
        out: [],
        outBytes: 0,
        err: [],
        errBytes: 0,
        timers: []
      };
      invocations.push(inv);
      byKey.set(key(commandId, instanceId), inv);
      schedule(inv, pickupDelay(instanceId), () => start(inv));
      schedule(inv, deliveryTimeoutSeconds * 1000, () => {
        if (inv.status === 'Pending')
          finish(inv, { status: 'TimedOut', statusDetails: 'DeliveryTimedOut', responseCode: -1, endedAt: new Date() });
      });
    }
    const epoch = requestedAt.getTime() / 1000;
    return {
      Command: {
        CommandId: commandId,
        DocumentName: DOCUMENT,
        DocumentVersion: '$DEFAULT',
        Comment: comment,
        ExpiresAfter: epoch + deliveryTimeoutSeconds + executionTimeoutSeconds,
        Parameters: parameters,
        InstanceIds: ids,
        Targets: [],
        RequestedDateTime: epoch,
        Status: 'Pending',
        StatusDetails: 'Pending',
        OutputS3Region: region,
        OutputS3BucketName: '',
        OutputS3KeyPrefix: '',
        MaxConcurrency: '50',
        MaxErrors: '0',
        TargetCount: ids.length,
        CompletedCount: 0,
        ErrorCount: 0,
        DeliveryTimedOutCount: 0,
        ServiceRole: '',
        NotificationConfig: { NotificationArn: '', NotificationEvents: [], NotificationType: '' },
        CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false },
        TimeoutSeconds: deliveryTimeoutSeconds
      }
    };
  };

  const ended = (inv: Invocation) => TERMINAL.includes(inv.status);
  const outputs = (inv: Invocation) => {
    if (!ended(inv)) return { stdout: '', stderr: '' };
    const s = snapshot(inv);
    return { stdout: s.stdout, stderr: s.stderr };
  };

  const getCommandInvocation = (body: Record<string, unknown>) => {
    const { CommandId, InstanceId, PluginName } = body;
    if (typeof CommandId !== 'string' || CommandId.length !== 36) {
      throw new AwsError(
        'ValidationException',
        `1 validation error detected: Value '${String(CommandId)}' at 'commandId' failed to satisfy constraint: Member must have length equal to 36`
      );
    }
    if (typeof InstanceId !== 'string')
      throw new AwsError(
        'ValidationException',
        "1 validation error detected: Value null at 'instanceId' failed to satisfy constraint: Member must not be null"
      );
    const inv = byKey.get(key(CommandId, InstanceId));
    if (!inv || !visible(inv)) throw new AwsError('InvocationDoesNotExist', '');
    if (PluginName !== undefined && PluginName !== PLUGIN) throw new AwsError('InvalidPluginName', '');
    const { stdout, stderr } = outputs(inv);
    return {
      CommandId,
      InstanceId,
      Comment: inv.comment,
      DocumentName: DOCUMENT,
      DocumentVersion: '$DEFAULT',
      PluginName: PLUGIN,
      ResponseCode: inv.responseCode,
      ExecutionStartDateTime: inv.startedAt?.toISOString() ?? '',
      ExecutionElapsedTime: inv.startedAt && inv.endedAt && ended(inv) ? elapsed(inv.startedAt, inv.endedAt) : '',
      ExecutionEndDateTime: inv.endedAt && ended(inv) ? inv.endedAt.toISOString() : '',
      Status: inv.status,
      StatusDetails: inv.statusDetails,
      StandardOutputContent: cut(stdout, STDOUT_LIMIT),
      StandardOutputUrl: '',
      StandardErrorContent: cut(stderr, STDERR_LIMIT),
      StandardErrorUrl: '',
      CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false }
    };
  };

  const cancelCommand = (body: Record<string, unknown>) => {
    const { CommandId, InstanceIds } = body;
    const all = invocations.filter((i) => i.commandId === CommandId);
    if (typeof CommandId !== 'string' || !all.length) throw new AwsError('InvalidCommandId', '');
    const only = stringList(InstanceIds) && InstanceIds.length ? InstanceIds : undefined;
    for (const inv of all.filter((i) => !only || only.includes(i.instanceId))) {
      if (inv.status === 'Pending') {
        finish(inv, { status: 'Cancelled', statusDetails: 'Cancelled', responseCode: -1, endedAt: new Date() });
      } else if (inv.status === 'InProgress') {
        inv.cancelRequested = true;
        inv.status = 'Cancelling';
        inv.statusDetails = 'Cancelling';
        killGroup(inv);
      }
    }
    return {};
  };

  const listCommandInvocations = (body: Record<string, unknown>) => {
    const list = invocations
      .filter(
        (i) =>
          visible(i) &&
          (body.CommandId === undefined || i.commandId === body.CommandId) &&
          (body.InstanceId === undefined || i.instanceId === body.InstanceId)
      )
      .reverse();
    return {
      CommandInvocations: list.map((inv) => {
        const { stdout, stderr } = outputs(inv);
        const base = {
          CommandId: inv.commandId,
          InstanceId: inv.instanceId,
          InstanceName: '',
          Comment: inv.comment,
          DocumentName: DOCUMENT,
          DocumentVersion: '$DEFAULT',
          RequestedDateTime: inv.requestedAt.getTime() / 1000,
          Status: inv.status,
          StatusDetails: inv.statusDetails,
          StandardOutputUrl: '',
          StandardErrorUrl: '',
          ServiceRole: '',
          NotificationConfig: { NotificationArn: '', NotificationEvents: [], NotificationType: '' },
          CloudWatchOutputConfig: { CloudWatchLogGroupName: '', CloudWatchOutputEnabled: false },
          CommandPlugins: [] as unknown[]
        };
        if (body.Details === true) {
          base.CommandPlugins = [
            {
              Name: PLUGIN,
              Status: inv.status,
              StatusDetails: inv.statusDetails,
              ResponseCode: inv.responseCode,
              ...(inv.startedAt ? { ResponseStartDateTime: inv.startedAt.getTime() / 1000 } : {}),
              ...(inv.endedAt && ended(inv) ? { ResponseFinishDateTime: inv.endedAt.getTime() / 1000 } : {}),
              Output: pluginOutput(stdout, stderr),
              StandardOutputUrl: '',
              StandardErrorUrl: '',
              OutputS3Region: inv.region,
              OutputS3BucketName: '',
              OutputS3KeyPrefix: ''
            }
          ];
        }
        return base;
      })
    };
  };

  const describeInstanceInformation = (body: Record<string, unknown>) => {
    // InstanceInformationFilterList [{key: 'InstanceIds', valueSet}] or Filters [{Key: 'InstanceIds' | 'PingStatus', Values}]
    const wanted: Record<string, string[]> = {};
    for (const f of (body.InstanceInformationFilterList ?? []) as { key?: string; valueSet?: string[] }[])
      if (f.key) wanted[f.key] = f.valueSet ?? [];
    for (const f of (body.Filters ?? []) as { Key?: string; Values?: string[] }[])
      if (f.Key) wanted[f.Key] = f.Values ?? [];
    const list = store
      .list()
      .filter((i) => i.host && i.state !== 'terminated')
      .map((i) => ({
        InstanceId: i.instanceId,
        PingStatus: i.state === 'running' && i.ssmOnline ? 'Online' : 'ConnectionLost',
        LastPingDateTime: Date.now() / 1000,
        AgentVersion: '3.3.0.0',
        IsLatestVersion: true,
        PlatformType: 'Linux',
        PlatformName: 'Amazon Linux',
        PlatformVersion: '2023',
        ResourceType: 'EC2Instance',
        IPAddress: i.privateIp,
        ComputerName: i.privateIp ? `ip-${i.privateIp.replace(/\./g, '-')}.ec2.internal` : i.instanceId,
        AssociationStatus: 'Success'
      }))
      .filter(
        (x) =>
          (!wanted.InstanceIds || wanted.InstanceIds.includes(x.InstanceId)) &&
          (!wanted.PingStatus || wanted.PingStatus.includes(x.PingStatus))
      );
    return { InstanceInformationList: list };
  };

  const operations: Record<string, (body: Record<string, unknown>, region: string) => unknown> = {
    SendCommand: sendCommand,
    GetCommandInvocation: getCommandInvocation,
    CancelCommand: cancelCommand,
    ListCommandInvocations: listCommandInvocations,
    DescribeInstanceInformation: describeInstanceInformation
  };

  const reply = (status: number, body: unknown, errorType?: string): Reply => {
    const headers: Record<string, string> = { 'content-type': JSON11, 'x-amzn-requestid': crypto.randomUUID() };
    if (errorType) headers['x-amzn-errortype'] = errorType;
    return { status, headers, body: JSON.stringify(body) };
  };

  const handle = (req: ParsedRequest): Reply => {
    const target = String(req.headers['x-amz-target'] ?? '');
    try {
      if (req.method !== 'POST' || req.path !== '/')
        throw new AwsError('UnknownOperationException', `unexpected ${req.method} ${req.path}`, 404);
      if (!req.sig || req.sig.service !== 'ssm')
        throw new AwsError(
          'MissingAuthenticationTokenException',
          'missing or malformed SigV4 Authorization header for service ssm',
          403
        );
      let body: Record<string, unknown>;
      try {
        body = req.raw ? (JSON.parse(req.raw) as Record<string, unknown>) : {};
      } catch {
        throw new AwsError('SerializationException', 'request body is not JSON');
      }
      const operation = target.startsWith(TARGET_PREFIX) ? target.slice(TARGET_PREFIX.length) : target;
      requests.push({
        service: 'ssm',
        operation,
        target,
        at: Date.now(),
        region: req.sig.region,
        accessKeyId: req.sig.accessKeyId,
        body,
        raw: req.raw
      });
      if (!String(req.headers['content-type'] ?? '').startsWith(JSON11))
        throw new AwsError('SerializationException', `unexpected content-type ${req.headers['content-type']}`);
      const fault = faults.take(operation);
      if (fault)
        throw new AwsError(fault.code ?? 'ThrottlingException', fault.message ?? 'Rate exceeded', fault.status ?? 400);
      const op = operations[operation];
      if (!op) throw new AwsError('UnknownOperationException', `the stand-in does not implement ${target}`);
      return reply(200, op(body, req.sig.region));
    } catch (e) {
      if (e instanceof AwsError)
        return reply(e.status, e.message ? { __type: e.code, message: e.message } : { __type: e.code }, e.code);
      throw e;
    }
  };

  const server = await startServer(handle);

  const idle = async (timeoutMs = 60000) => {
    const deadline = Date.now() + timeoutMs;
    while (invocations.some((i) => ['Pending', 'InProgress', 'Cancelling'].includes(i.status))) {
      if (Date.now() > deadline) throw new Error(`fake-ssm: invocations still running after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  return {
    url: server.url,
    requests: () => [...requests],
    sentParameters: () =>
      requests
        .filter((r) => r.operation === 'SendCommand')
        .map((r) => (r.body as { Parameters?: Record<string, string[]> }).Parameters ?? {}),
    invocations: () => invocations.map(snapshot),
    setPickupDelay: (ms, instanceId) => {
      if (instanceId) pickupDelayOf.set(instanceId, ms);
      else {
        pickupDelayMs = ms;
        pickupDelayOf.clear();
      }
    },
    waitForInvocation: async (pred, timeoutMs = 60000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = invocations.map(snapshot).find(pred);
        if (hit) return hit;
        if (Date.now() > deadline)
          throw new Error(`fake-ssm: no invocation matched within ${timeoutMs} ms (have ${invocations.length})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    setInvisibleWindow: (ms) => void (invisibleMs = ms),
    failNext: (n, spec = {}) => faults.add(n, spec),
    idle,
    close: async () => {
      closed = true;
      for (const inv of invocations) {
        for (const t of inv.timers) clearTimeout(t);
        inv.timers = [];
        killGroup(inv);
      }
      // a process that left the group (setsid) may hold the pipes open: the agent would wait, close() does not
      const settled = Promise.all(exits);
      const timeout = new Promise<void>((r) => setTimeout(r, 5000).unref());
      await Promise.race([settled, timeout]);
      for (const inv of invocations) {
        inv.child?.stdout?.destroy();
        inv.child?.stderr?.destroy();
      }
      const dirsByHost = new Map<string, string[]>();
      for (const inv of invocations) {
        if (inv.dir && inv.host)
          dirsByHost.set(inv.host, [
            ...(dirsByHost.get(inv.host) ?? []),
            path.posix.dirname(path.posix.dirname(inv.dir))
          ]);
      }
      await Promise.all(
        [...dirsByHost].map(([host, dirs]) => sh(`bash ${q(FLEET_EXEC)} ${q(host)} rm -rf -- ${dirs.map(q).join(' ')}`))
      );
      await server.close();
    }
  };
}
