/**
 * The entry (src/main.ts) with its workflow commands mocked (src/log/workflow.ts, the action's stand-in for
 * @actions/core), as actions/typescript-action tests its main: what the runner sees (outputs, annotations, the
 * failure message) for each way a run can end before or around the hosts.
 */
import { jest } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { utils } from 'ssh2';
import type { RunDeps } from '../../src/deploy/run.js';
import type { ConsoleSink } from '../../src/log/log.js';

const outputs: Record<string, string> = {};
const failed: string[] = [];
const errors: Array<{ message: string; title?: string }> = [];
const core = {
  setOutput: jest.fn((name: string, value: string) => {
    outputs[name] = value;
  }),
  setFailed: jest.fn((m: string) => failed.push(m)),
  error: jest.fn((m: string, p?: { title?: string }) => errors.push({ message: m, title: p?.title })),
  warning: jest.fn(),
  info: jest.fn(),
  debug: jest.fn(),
  setSecret: jest.fn(),
  startGroup: jest.fn(),
  endGroup: jest.fn(),
  summary: { addRaw: jest.fn(() => ({ write: jest.fn(async () => undefined) })) }
};
jest.unstable_mockModule('../../src/log/workflow.js', () => core);
const { run } = await import('../../src/main.js');

const key = utils.generateKeyPairSync('ed25519').private;
const quiet: ConsoleSink = { write: () => undefined, startGroup: () => undefined, endGroup: () => undefined };
let tmp: string;

function env(inputs: Record<string, string>): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { RUNNER_TEMP: tmp, GITHUB_SHA: 'abc123' };
  for (const [k, v] of Object.entries({
    hosts: '10.0.1.5',
    'ssh-private-key': key,
    'ssh-insecure-ignore-host-key': 'true',
    'app-name': 'shop',
    image: 'registry.example.com/shop:v2',
    'registry-auth': 'none',
    'upload-artifacts': 'false',
    ...inputs
  })) {
    e[`INPUT_${k.toUpperCase()}`] = v;
  }
  return e;
}

const refused: RunDeps = {
  connect: async (t) => {
    throw new Error(`connection to ${t.host} was refused`);
  },
  fetchEcrToken: async () => {
    throw new Error('not used');
  }
};

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-main-'));
  for (const k of Object.keys(outputs)) delete outputs[k];
  failed.length = 0;
  errors.length = 0;
  jest.clearAllMocks();
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('invalid inputs: every problem is an annotation, the step fails, nothing is connected', async () => {
  const connect = jest.fn(refused.connect);
  await run(env({ 'app-name': 'bad name', 'blue-port': '99999' }), { ...refused, connect }, quiet);
  expect(outputs.result).toBe('failed');
  expect(errors.map((e) => e.title)).toEqual([
    'bluegreen-ec2-action: invalid input',
    'bluegreen-ec2-action: invalid input'
  ]);
  expect(errors.map((e) => e.message).join('\n')).toMatch(/Input "app-name" .*Example: app-name: backend/);
  expect(errors.map((e) => e.message).join('\n')).toMatch(/Input "blue-port" .*Example: blue-port: 8081/);
  expect(failed).toHaveLength(1);
  expect(connect).not.toHaveBeenCalled();
});

test('the secret inputs are masked before anything else', async () => {
  await run(env({ env: 'DB_PASSWORD=hunter2-secret', 'app-name': 'bad name' }), refused, quiet);
  expect(core.setSecret).toHaveBeenCalledWith('hunter2-secret');
  expect(core.setSecret.mock.invocationCallOrder[0]).toBeLessThan(core.error.mock.invocationCallOrder[0]);
});

test('deploy: a host that cannot be reached fails the step naming the step, the host and why', async () => {
  await run(env({}), refused, quiet);
  expect(outputs.result).toBe('failed');
  expect(outputs['failed-hosts']).toBe('10.0.1.5');
  expect(failed).toEqual(['connect failed on 10.0.1.5: connection to 10.0.1.5 was refused']);
  expect(errors).toEqual([
    { message: 'connect failed on 10.0.1.5: connection to 10.0.1.5 was refused', title: 'bluegreen-ec2-action: failed' }
  ]);
  expect(fs.existsSync(outputs['metrics-file'])).toBe(true);
});

test('status: dispatched to the status command; an unreachable host fails it', async () => {
  await run(env({ command: 'status', image: '' }), refused, quiet);
  expect(outputs.result).toBe('failed');
  expect(JSON.parse(outputs['status-json']).hosts[0]).toMatchObject({ host: '10.0.1.5', reachable: false });
  expect(failed[0]).toMatch(/^status could not be read on 10\.0\.1\.5/);
});

test('an unexpected error is reported as a crash, with secrets redacted', async () => {
  const broken: ConsoleSink = {
    write: () => {
      throw new Error('the log sink broke while printing hunter2-secret');
    },
    startGroup: () => undefined,
    endGroup: () => undefined
  };
  await run(env({ env: 'DB_PASSWORD=hunter2-secret' }), refused, broken);
  expect(outputs.result).toBe('failed');
  expect(failed).toEqual(['bluegreen-ec2-action crashed: the log sink broke while printing ***']);
});

test('hosts by tag that match nothing: the run fails before any host is connected, saying what was looked for', async () => {
  const connect = jest.fn(refused.connect);
  const { HostResolveError } = await import('../../src/hosts/resolve.js');
  const deps: RunDeps = {
    ...refused,
    connect,
    resolveHosts: async () => {
      throw new HostResolveError(
        'hosts: no running instance matches tag:Role=web in us-east-1 (DescribeInstances filters: tag:Role=web, instance-state-name=running); nothing was touched'
      );
    }
  };
  await run(
    env({
      transport: 'ssm',
      hosts: 'tag:Role=web',
      'aws-region': 'us-east-1',
      'ssh-private-key': '',
      'ssh-insecure-ignore-host-key': ''
    }),
    deps,
    quiet
  );
  expect(outputs.result).toBe('failed');
  expect(failed).toEqual([expect.stringContaining('no running instance matches tag:Role=web in us-east-1')]);
  expect(errors.map((e) => e.title)).toEqual(['bluegreen-ec2-action: no hosts']);
  expect(connect).not.toHaveBeenCalled();
});
