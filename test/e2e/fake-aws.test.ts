/**
 * The AWS stand-ins of test/e2e/fake-aws/ checked with the real SDK clients (@aws-sdk/client-ssm, client-ec2),
 * reached only through the AWS_ENDPOINT_URL_* environment the stand-ins hand out, and the SSM commands run on the
 * real fleet hosts (bgf-h1..3 of test/sandbox/fleet-up.sh).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CancelCommandCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  SSMClient,
  SendCommandCommand,
  type GetCommandInvocationCommandOutput
} from '@aws-sdk/client-ssm';
import { DescribeInstancesCommand, EC2Client, type Filter } from '@aws-sdk/client-ec2';
import { loadFleet, onHost, onHostOk } from './fleet-harness.js';
import { SANDBOX, q, sh, waitFor } from './harness.js';
import {
  STDERR_LIMIT,
  STDOUT_LIMIT,
  STOPPED_INSTANCE_ID,
  fleetInstanceId,
  startFakeAws,
  type FakeAws
} from './fake-aws/index.js';

const H1 = fleetInstanceId(1);
const H2 = fleetInstanceId(2);
const H3 = fleetInstanceId(3);
/** files the scripts below leave on the hosts (each host's /run is its own) */
const FLAG = '/run/fake-aws-test-go';
const PIDFILE = '/run/fake-aws-test-sleep.pid';

let aws: FakeAws;
let ssm: SSMClient;
let ec2: EC2Client;
const savedEnv: Record<string, string | undefined> = {};

beforeAll(async () => {
  await loadFleet();
  aws = await startFakeAws();
  for (const [k, v] of Object.entries(aws.env)) {
    savedEnv[k] = process.env[k];
    process.env[k] = v;
  }
  // no endpoint, region or credentials in the code: only the environment, as for the action under test
  ssm = new SSMClient({});
  ec2 = new EC2Client({});
}, 600000);

afterAll(async () => {
  ssm?.destroy();
  ec2?.destroy();
  await aws?.close();
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await Promise.all(['bgf-h1', 'bgf-h2', 'bgf-h3'].map((h) => onHost(h, `rm -f ${FLAG} ${PIDFILE}`)));
});

async function errorOf(
  p: Promise<unknown>
): Promise<Error & { name: string; $metadata?: { httpStatusCode?: number } }> {
  return p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: Error) => e
  );
}

async function send(instanceIds: string[], commands: string[], extra: Record<string, unknown> = {}): Promise<string> {
  const out = await ssm.send(
    new SendCommandCommand({
      DocumentName: 'AWS-RunShellScript',
      InstanceIds: instanceIds,
      Parameters: { commands },
      ...extra
    })
  );
  return out.Command!.CommandId!;
}

/** GetCommandInvocation until `done` holds for it (InvocationDoesNotExist counts as "not yet") */
async function until(
  commandId: string,
  instanceId: string,
  done: (r: GetCommandInvocationCommandOutput) => boolean,
  what: string
): Promise<GetCommandInvocationCommandOutput> {
  return waitFor(
    async () => {
      try {
        const r = await ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }));
        return done(r) ? r : undefined;
      } catch (e) {
        if ((e as Error).name === 'InvocationDoesNotExist') return undefined;
        throw e;
      }
    },
    { timeoutMs: 60000, intervalMs: 100, what }
  );
}

/** the process does not exist or is a zombie (killed, its reaper not yet run) */
async function gone(host: string, pid: string): Promise<boolean> {
  return (await onHost(host, `! kill -0 ${pid} 2>/dev/null || grep -q '^[0-9]* (.*) Z' /proc/${pid}/stat`)).code === 0;
}

const ended = (r: GetCommandInvocationCommandOutput) =>
  ['Success', 'Failed', 'Cancelled', 'TimedOut'].includes(r.Status ?? '');

describe('fake EC2 DescribeInstances', () => {
  const describe_ = async (Filters?: Filter[], InstanceIds?: string[]) => {
    const out = await ec2.send(new DescribeInstancesCommand({ Filters, InstanceIds }));
    expect(out.NextToken).toBeUndefined();
    return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
  };

  test('tag and state filters select the running fleet hosts, not the stopped look-alike', async () => {
    const running = await describe_([
      { Name: 'tag:Role', Values: ['backend'] },
      { Name: 'instance-state-name', Values: ['running'] }
    ]);
    expect(
      running.map((i) => [
        i.InstanceId,
        i.PrivateIpAddress,
        i.State?.Name,
        i.State?.Code,
        i.Tags?.find((t) => t.Key === 'Name')?.Value
      ])
    ).toEqual([
      [H1, '10.204.0.11', 'running', 16, 'bgf-h1'],
      [H2, '10.204.0.12', 'running', 16, 'bgf-h2'],
      [H3, '10.204.0.13', 'running', 16, 'bgf-h3']
    ]);
    expect(running[0].PublicIpAddress).toBe('198.51.100.11');

    const all = await describe_([{ Name: 'tag:Role', Values: ['backend'] }]);
    expect(all.map((i) => i.InstanceId)).toEqual([H1, H2, H3, STOPPED_INSTANCE_ID]);
    const stopped = all.find((i) => i.InstanceId === STOPPED_INSTANCE_ID)!;
    expect(stopped.State).toEqual({ Code: 80, Name: 'stopped' });
    expect(stopped.PublicIpAddress).toBeUndefined();
  });

  test('values of one filter are ORed, filters ANDed; wildcards, tag-key and instance ids', async () => {
    const ids = async (f?: Filter[], i?: string[]) => (await describe_(f, i)).map((x) => x.InstanceId);
    expect(await ids([{ Name: 'tag:Name', Values: ['bgf-h1', 'bgf-h3'] }])).toEqual([H1, H3]);
    expect(
      await ids([
        { Name: 'tag:Name', Values: ['bgf-h*'] },
        { Name: 'tag:Name', Values: ['*2', '*3'] }
      ])
    ).toEqual([H2, H3]);
    expect(await ids([{ Name: 'tag:Role', Values: ['frontend'] }])).toEqual([]);
    expect(await ids([{ Name: 'tag:Nope', Values: ['*'] }])).toEqual([]);
    expect(
      await ids([
        { Name: 'tag-key', Values: ['Role'] },
        { Name: 'instance-state-name', Values: ['stopped'] }
      ])
    ).toEqual([STOPPED_INSTANCE_ID]);
    expect(await ids(undefined, [H3, H1])).toEqual([H1, H3]);
    expect(await ids([{ Name: 'instance-id', Values: [H2] }])).toEqual([H2]);
  });

  test('real EC2 errors: unknown and malformed ids, bad filters; throttling is retried by the SDK', async () => {
    const notFound = await errorOf(describe_(undefined, ['i-0123456789abcdef0']));
    expect(notFound.name).toBe('InvalidInstanceID.NotFound');
    expect(notFound.message).toContain('i-0123456789abcdef0');
    expect((await errorOf(describe_(undefined, ['bgf-h1']))).name).toBe('InvalidInstanceID.Malformed');
    expect((await errorOf(describe_([{ Name: 'colour', Values: ['blue'] }]))).name).toBe('InvalidParameterValue');

    const before = aws.ec2.requests().length;
    aws.ec2.failNext(1);
    expect(await describe_([{ Name: 'tag:Name', Values: ['bgf-h2'] }])).toHaveLength(1);
    expect(
      aws.ec2
        .requests()
        .slice(before)
        .map((r) => r.operation)
    ).toEqual(['DescribeInstances', 'DescribeInstances']);

    const once = new EC2Client({ maxAttempts: 1 });
    try {
      aws.ec2.failNext(1);
      expect((await errorOf(once.send(new DescribeInstancesCommand({})))).name).toBe('RequestLimitExceeded');
    } finally {
      once.destroy();
    }
    const last = aws.ec2.requests().at(-1)!;
    expect(last).toMatchObject({
      service: 'ec2',
      operation: 'DescribeInstances',
      region: 'us-east-1',
      accessKeyId: 'AKIAFAKEAWS000000000'
    });
    expect(last.body).toMatchObject({ Action: 'DescribeInstances', Version: '2016-11-15' });
  });

  test('env alone is enough for a fresh Node 24 process (the action under test): no credentials or config looked up elsewhere', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-aws-home-'));
    try {
      const script = `import { EC2Client, DescribeInstancesCommand } from '@aws-sdk/client-ec2';
const out = await new EC2Client({}).send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:Name', Values: ['bgf-h3'] }] }));
console.log(out.Reservations[0].Instances[0].InstanceId);`;
      const r = await sh(`${q(SANDBOX.node24)} --input-type=module -e ${q(script)}`, {
        env: { PATH: process.env.PATH, HOME: home, ...aws.env }
      });
      expect(r).toMatchObject({ code: 0, stdout: `${H3}\n` });
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('fake SSM Run Command on the fleet hosts', () => {
  afterEach(async () => {
    aws.ssm.setInvisibleWindow(300);
    aws.ssm.setPickupDelay(300);
    await aws.ssm.idle();
  });

  test('invisible first, then InProgress, then Success with the output of a root sh script run on that host', async () => {
    await onHostOk('bgf-h2', `rm -f ${FLAG}`);
    // a wide window, so that the first GetCommandInvocation surely falls into it even on a slow machine
    aws.ssm.setInvisibleWindow(2000);
    const id = await send(
      [H2],
      [
        `while [ ! -e ${FLAG} ]; do sleep 0.05; done`,
        'hostname',
        'cat /proc/sys/kernel/hostname',
        'id -u',
        'echo "home=${HOME-unset} cwd=$(pwd) instance=$AWS_SSM_INSTANCE_ID region=$AWS_SSM_REGION_NAME"',
        'ip -4 -o addr show | grep -o "10\\.204\\.0\\.[0-9]*" | head -n1',
        'read line || echo "stdin is empty"',
        'echo to-stderr >&2'
      ]
    );
    const first = await errorOf(ssm.send(new GetCommandInvocationCommand({ CommandId: id, InstanceId: H2 })));
    expect(first.name).toBe('InvocationDoesNotExist');
    expect(first.$metadata?.httpStatusCode).toBe(400);

    const running = await until(id, H2, (r) => r.Status === 'InProgress', 'the command to be InProgress');
    expect(running).toMatchObject({
      StatusDetails: 'InProgress',
      ResponseCode: -1,
      StandardOutputContent: '',
      StandardErrorContent: '',
      ExecutionEndDateTime: ''
    });
    expect(running.ExecutionStartDateTime).toMatch(/^\d{4}-\d\d-\d\dT/);

    await onHostOk('bgf-h2', `touch ${FLAG}`);
    const done = await until(id, H2, ended, 'the command to end');
    expect(done).toMatchObject({
      Status: 'Success',
      StatusDetails: 'Success',
      ResponseCode: 0,
      PluginName: 'aws:runShellScript',
      DocumentName: 'AWS-RunShellScript'
    });
    const lines = done.StandardOutputContent!.split('\n');
    expect(lines[0]).toBe('bgf-h2');
    expect(lines[1]).toBe('bgf-h2');
    expect(lines[2]).toBe('0');
    expect(lines[3]).toMatch(
      new RegExp(
        `^home=unset cwd=/run/fake-ssm-agent/${H2}/document/orchestration/${id}/awsrunShellScript/0\\.awsrunShellScript instance=${H2} region=us-east-1$`
      )
    );
    expect(lines[4]).toBe('10.204.0.12');
    expect(lines[5]).toBe('stdin is empty');
    expect(done.StandardErrorContent).toBe('to-stderr\n');
    expect(done.ExecutionElapsedTime).toMatch(/^PT\d+\.\d+S$/);

    const inv = aws.ssm.invocations().find((i) => i.commandId === id)!;
    expect(inv).toMatchObject({ instanceId: H2, host: 'bgf-h2', status: 'Success', responseCode: 0 });
    expect(inv.script.split('\n')).toHaveLength(8);
    const sent = aws.ssm
      .requests()
      .find((r) => r.operation === 'SendCommand' && JSON.stringify(r.body).includes(FLAG))!;
    expect(sent).toMatchObject({
      service: 'ssm',
      target: 'AmazonSSM.SendCommand',
      region: 'us-east-1',
      accessKeyId: 'AKIAFAKEAWS000000000'
    });
    expect(sent.body).toMatchObject({ DocumentName: 'AWS-RunShellScript', InstanceIds: [H2] });
    expect(aws.ssm.sentParameters().some((p) => p.commands?.includes('id -u'))).toBe(true);

    const listed = await ssm.send(new ListCommandInvocationsCommand({ CommandId: id, Details: true }));
    expect(listed.CommandInvocations).toHaveLength(1);
    expect(listed.CommandInvocations![0]).toMatchObject({ InstanceId: H2, Status: 'Success' });
    expect(listed.CommandInvocations![0].CommandPlugins![0]).toMatchObject({
      Name: 'aws:runShellScript',
      ResponseCode: 0
    });
    expect(listed.CommandInvocations![0].CommandPlugins![0].Output).toContain('----------ERROR-------\nto-stderr');
  });

  test('one command on several hosts runs on each; output is cut at 24,000 / 8,000 characters', async () => {
    const id = await send(
      [H1, H3],
      ['hostname', "head -c 30000 /dev/zero | tr '\\0' a", "head -c 9000 /dev/zero | tr '\\0' b >&2"]
    );
    for (const [inst, host] of [
      [H1, 'bgf-h1'],
      [H3, 'bgf-h3']
    ]) {
      const r = await until(id, inst, ended, `the command on ${host} to end`);
      expect(r.Status).toBe('Success');
      expect(r.StandardOutputContent).toHaveLength(STDOUT_LIMIT);
      expect(r.StandardOutputContent!.startsWith(`${host}\naaaa`)).toBe(true);
      expect(r.StandardErrorContent).toBe('b'.repeat(STDERR_LIMIT));
    }
    const full = aws.ssm.invocations().find((i) => i.commandId === id && i.instanceId === H1)!;
    expect(full.stdout).toHaveLength('bgf-h1\n'.length + 30000);
    expect(full.stderr).toHaveLength(9000);
  });

  test('a non-zero exit is Failed with its ResponseCode; a #! line is honoured like the agent does', async () => {
    const failed = await send([H2], ['echo before', 'exit 3']);
    expect(await until(failed, H2, ended, 'the failing command to end')).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 3,
      StandardOutputContent: 'before\n'
    });

    const bash = await send([H2], ['#!/bin/bash', 'echo "${BASH_VERSION:+bash}"']);
    expect((await until(bash, H2, ended, 'the bash script to end')).StandardOutputContent).toBe('bash\n');
  });

  test('CancelCommand kills the script and its children on the host', async () => {
    await onHostOk('bgf-h3', `rm -f ${PIDFILE}`);
    const id = await send([H3], [`sleep 600 & echo $! >${PIDFILE}`, 'wait']);
    await until(id, H3, (r) => r.Status === 'InProgress', 'the sleep to run');
    const pid = (
      await waitFor(async () => (await onHost('bgf-h3', `cat ${PIDFILE}`)).stdout.trim(), {
        what: 'the pid file on bgf-h3'
      })
    ).trim();
    expect((await onHost('bgf-h3', `kill -0 ${pid} && tr '\\0' ' ' </proc/${pid}/cmdline`)).stdout).toContain(
      'sleep 600'
    );

    await ssm.send(new CancelCommandCommand({ CommandId: id }));
    const r = await until(id, H3, ended, 'the cancelled command to end');
    expect(r).toMatchObject({ Status: 'Cancelled', StatusDetails: 'Cancelled', ResponseCode: 137 });
    const script = aws.ssm.invocations().find((i) => i.commandId === id)!.pid!;
    for (const p of [pid, String(script)])
      await waitFor(() => gone('bgf-h3', p), { timeoutMs: 10000, what: `process ${p} on bgf-h3 to be gone` });

    // a command cancelled before the (slow) agent of bgf-h3 picked it up never runs there; bgf-h2's runs
    aws.ssm.setPickupDelay(60000, H3);
    const pending = await send([H2, H3], [`touch ${FLAG}-never`]);
    expect(await until(pending, H2, ended, 'the command on bgf-h2 to end')).toMatchObject({ Status: 'Success' });
    await ssm.send(new CancelCommandCommand({ CommandId: pending, InstanceIds: [H3] }));
    expect(await until(pending, H3, ended, 'the pending command to be cancelled')).toMatchObject({
      Status: 'Cancelled',
      ResponseCode: -1,
      ExecutionStartDateTime: ''
    });
    expect((await onHost('bgf-h3', `test -e ${FLAG}-never`)).code).not.toBe(0);
    await onHostOk('bgf-h2', `rm -f ${FLAG}-never`);
    expect(
      (await errorOf(ssm.send(new CancelCommandCommand({ CommandId: '00000000-0000-4000-8000-000000000000' })))).name
    ).toBe('InvalidCommandId');
  });

  test('an instance that stops under a running script kills it (Failed) and leaves DescribeInstances and SendCommand', async () => {
    await onHostOk('bgf-h1', `rm -f ${PIDFILE}`);
    const id = await send([H1], [`sleep 600 & echo $! >${PIDFILE}`, 'wait']);
    await aws.ssm.waitForInvocation((i) => i.commandId === id && i.status === 'InProgress');
    const pid = (
      await waitFor(async () => (await onHost('bgf-h1', `cat ${PIDFILE}`)).stdout.trim(), {
        what: 'the pid file on bgf-h1'
      })
    ).trim();
    aws.instances.setState(H1, 'stopped');
    try {
      expect(await until(id, H1, ended, 'the command to end with its instance')).toMatchObject({
        Status: 'Failed',
        ResponseCode: -1
      });
      await waitFor(() => gone('bgf-h1', pid), { timeoutMs: 10000, what: `process ${pid} on bgf-h1 to be gone` });
      const out = await ec2.send(
        new DescribeInstancesCommand({ Filters: [{ Name: 'instance-state-name', Values: ['running'] }] })
      );
      expect(out.Reservations!.flatMap((r) => r.Instances!).map((i) => i.InstanceId)).toEqual([H2, H3]);
      expect((await errorOf(send([H1], ['true']))).name).toBe('InvalidInstanceId');
    } finally {
      aws.instances.setState(H1, 'running');
    }
  });

  test('the agent runs 5 scripts at once: a 6th waits Pending for a free worker', async () => {
    await onHostOk('bgf-h1', `rm -f ${FLAG}`);
    const wait = [`while [ ! -e ${FLAG} ]; do sleep 0.05; done`];
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await send([H1], wait));
    await aws.ssm.waitForInvocation(
      () => aws.ssm.invocations().filter((i) => ids.includes(i.commandId) && i.status === 'InProgress').length === 5
    );
    expect((await until(ids[5], H1, () => true, 'the 6th invocation to show')).Status).toBe('Pending');
    await onHostOk('bgf-h1', `touch ${FLAG}`);
    for (const id of ids) expect((await until(id, H1, ended, 'each to end')).Status).toBe('Success');
    await onHostOk('bgf-h1', `rm -f ${FLAG}`);
  });

  test('executionTimeout kills the script: TimedOut / ExecutionTimedOut, 137', async () => {
    const id = await send([H1], ['sleep 120'], { Parameters: { commands: ['sleep 120'], executionTimeout: ['1'] } });
    expect(await until(id, H1, ended, 'the command to time out')).toMatchObject({
      Status: 'TimedOut',
      StatusDetails: 'ExecutionTimedOut',
      ResponseCode: 137
    });
  });

  test('real SSM errors: InvalidInstanceId for unknown, stopped and offline instances; bad documents and parameters', async () => {
    for (const bad of [['i-0123456789abcdef0'], [STOPPED_INSTANCE_ID], [H1, 'i-0123456789abcdef0']]) {
      const e = await errorOf(send(bad, ['true']));
      expect(e.name).toBe('InvalidInstanceId');
      expect(e.message).toContain(bad.at(-1));
    }
    aws.instances.setOnline(H3, false);
    try {
      expect((await errorOf(send([H3], ['true']))).name).toBe('InvalidInstanceId');
      const info = await ssm.send(
        new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [H2, H3] }] })
      );
      expect(info.InstanceInformationList!.map((i) => [i.InstanceId, i.PingStatus])).toEqual([
        [H2, 'Online'],
        [H3, 'ConnectionLost']
      ]);
    } finally {
      aws.instances.setOnline(H3, true);
    }
    expect(
      (
        await errorOf(
          ssm.send(
            new SendCommandCommand({
              DocumentName: 'AWS-RunPowerShellScript',
              InstanceIds: [H1],
              Parameters: { commands: ['x'] }
            })
          )
        )
      ).name
    ).toBe('InvalidDocument');
    expect((await errorOf(send([H1], []))).name).toBe('InvalidParameters');
    expect(
      (
        await errorOf(
          ssm.send(
            new SendCommandCommand({
              DocumentName: 'AWS-RunShellScript',
              InstanceIds: [H1],
              Parameters: { commands: ['x'], password: ['p'] }
            })
          )
        )
      ).name
    ).toBe('InvalidParameters');
    const unknown = await errorOf(
      ssm.send(new GetCommandInvocationCommand({ CommandId: '00000000-0000-4000-8000-000000000000', InstanceId: H1 }))
    );
    expect(unknown.name).toBe('InvocationDoesNotExist');
  });

  test('a command sent before the agent went offline waits for it; throttling is retried by the SDK or surfaces', async () => {
    aws.ssm.setPickupDelay(1000);
    const id = await send([H1], ['echo picked-up']);
    aws.instances.setOnline(H1, false);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      expect((await until(id, H1, () => true, 'the invocation to show')).Status).toBe('Pending');
    } finally {
      aws.instances.setOnline(H1, true);
    }
    expect(await until(id, H1, ended, 'the command to run once the agent is back')).toMatchObject({
      Status: 'Success',
      StandardOutputContent: 'picked-up\n'
    });

    const before = aws.ssm.requests().length;
    aws.ssm.failNext(2, { operation: 'GetCommandInvocation' });
    expect((await ssm.send(new GetCommandInvocationCommand({ CommandId: id, InstanceId: H1 }))).Status).toBe('Success');
    expect(
      aws.ssm
        .requests()
        .slice(before)
        .map((r) => r.operation)
    ).toEqual(['GetCommandInvocation', 'GetCommandInvocation', 'GetCommandInvocation']);
    const once = new SSMClient({ maxAttempts: 1 });
    try {
      aws.ssm.failNext(1);
      expect((await errorOf(once.send(new GetCommandInvocationCommand({ CommandId: id, InstanceId: H1 })))).name).toBe(
        'ThrottlingException'
      );
    } finally {
      once.destroy();
    }
  });
});
