/**
 * smoke-test on the runner: the tunnel (a local port piped over RemoteHost.forward) and the command's outcome,
 * with a fake remote whose forward() connects to a local HTTP server standing in for the candidate.
 */
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTunnel, runSmokeCommand, smokeTestEnv, smokeTestHook } from '../../../src/deploy/smoke-test.js';
import type { DeployConfig } from '../../../src/model/config.js';
import { RunLog } from '../../../src/log/log.js';
import { Secrets } from '../../../src/log/secrets.js';
import type { RemoteHost } from '../../../src/transport/remote-host.js';

const dir = mkdtempSync(join(tmpdir(), 'bg-smoke-'));
const lines: string[] = [];
const runLog = new RunLog(
  join(dir, 'deploy.log'),
  new Secrets(),
  { write: (_l, t) => lines.push(t), startGroup: () => undefined, endGroup: () => undefined },
  1
);
const log = runLog.forHost('h1');
let candidate: http.Server;
let candidatePort: number;

beforeAll(async () => {
  candidate = http.createServer((req, res) => res.end(`candidate ${req.url}`));
  await new Promise<void>((r) => candidate.listen(0, '127.0.0.1', () => r()));
  candidatePort = (candidate.address() as net.AddressInfo).port;
});
afterAll(async () => {
  await new Promise((r) => candidate.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const fakeRemote = (forwarded: number[]): RemoteHost =>
  ({
    target: { label: 'h1', host: 'h1', port: 22, user: 'u' },
    forward: async (port: number) => {
      forwarded.push(port);
      // the "host": only the candidate's port exists there
      return net.connect({ host: '127.0.0.1', port: port === 8082 ? candidatePort : 1 });
    }
  }) as unknown as RemoteHost;

test('the tunnel URL reaches the port on the host through forward(), one stream per connection', async () => {
  const forwarded: number[] = [];
  const t = await openTunnel(fakeRemote(forwarded), 8082, log);
  try {
    expect(t.url).toBe(`http://127.0.0.1:${t.port}`);
    const get = () => fetch(`${t.url}/x`, { headers: { connection: 'close' } }).then((r) => r.text());
    expect(await get()).toBe('candidate /x');
    expect(await get()).toBe('candidate /x');
    expect(forwarded).toEqual([8082, 8082]);
  } finally {
    await t.close();
  }
});

test('the command sees BLUEGREEN_* and not the action inputs; exit code and last lines are reported', async () => {
  const o = await runSmokeCommand(
    {
      command: 'echo "url=$BLUEGREEN_CANDIDATE_URL inputs=${INPUT_SSH_PRIVATE_KEY:-none}"\necho oops >&2\nexit 4',
      on: 'all',
      timeoutMs: 20_000
    },
    { BLUEGREEN_CANDIDATE_URL: 'http://127.0.0.1:1' },
    log,
    undefined,
    { ...process.env, INPUT_SSH_PRIVATE_KEY: 'secret-key' }
  );
  expect(o.exitCode).toBe(4);
  expect(o.failure).toBe('exited with code 4');
  expect(o.tail).toBe('url=http://127.0.0.1:1 inputs=none\noops');
});

test('the command gets no stdin: one that reads it ends at once instead of at the timeout', async () => {
  const o = await runSmokeCommand({ command: 'cat; echo after-eof', on: 'all', timeoutMs: 20_000 }, {}, log);
  expect(o.exitCode).toBe(0);
  expect(o.tail).toBe('after-eof');
});

test('-eo pipefail: a failing command in the middle fails the test', async () => {
  const o = await runSmokeCommand({ command: 'false | cat\necho not reached', on: 'all', timeoutMs: 20_000 }, {}, log);
  expect(o.exitCode).toBe(1);
  expect(o.tail).not.toContain('not reached');
});

test('a cancel stops the command at once', async () => {
  const ac = new AbortController();
  const p = runSmokeCommand({ command: 'echo go; sleep 30', on: 'all', timeoutMs: 60_000 }, {}, log, ac.signal);
  setTimeout(() => ac.abort('another host failed'), 300);
  const o = await p;
  expect(o.exitCode).toBeUndefined();
  expect(o.failure).toBe('stopped: another host failed');
});

test('smokeTestEnv: the job environment without the inputs, runtime tokens and file commands, plus the variables', () => {
  const base = {
    PATH: '/bin',
    GITHUB_SHA: 'abc',
    'INPUT_SSH-PRIVATE-KEY': 'k',
    INPUT_ENV: 'A=b',
    ACTIONS_RUNTIME_TOKEN: 't',
    ACTIONS_RESULTS_URL: 'u',
    GITHUB_OUTPUT: '/o',
    GITHUB_STEP_SUMMARY: '/s',
    GITHUB_ENV: '/e',
    STATE_x: '1'
  };
  expect(smokeTestEnv(base, { BLUEGREEN_HOST: 'h' })).toEqual({ PATH: '/bin', GITHUB_SHA: 'abc', BLUEGREEN_HOST: 'h' });
});

test('a large answer through the tunnel arrives whole', async () => {
  const big = http.createServer((_req, res) => res.end('x'.repeat(5_000_000)));
  await new Promise<void>((r) => big.listen(0, '127.0.0.1', () => r()));
  const port = (big.address() as net.AddressInfo).port;
  const remote = {
    target: { label: 'h1' },
    forward: async () => net.connect({ host: '127.0.0.1', port })
  } as unknown as RemoteHost;
  const t = await openTunnel(remote, 8082, log);
  try {
    const body = await fetch(`${t.url}/`, { headers: { connection: 'close' } }).then((r) => r.text());
    expect(body.length).toBe(5_000_000);
  } finally {
    await t.close();
    await new Promise((r) => big.close(r));
  }
});

test('smoke-test-on first runs on the first host only; rollback never; no input, no hook', () => {
  const hosts = [
    { label: 'a', host: 'a', port: 22, user: 'u' },
    { label: 'b', host: 'b', port: 22, user: 'u' }
  ];
  const cfg = (over: Partial<DeployConfig>) =>
    ({ command: 'deploy', hosts, smokeTest: { command: 'true', on: 'all', timeoutMs: 1000 }, ...over }) as DeployConfig;
  const none = () => undefined;
  expect(smokeTestHook(cfg({}), hosts[1], 'd', none)).toBeDefined();
  expect(
    smokeTestHook(cfg({ smokeTest: { command: 'true', on: 'first', timeoutMs: 1000 } }), hosts[0], 'd', none)
  ).toBeDefined();
  expect(
    smokeTestHook(cfg({ smokeTest: { command: 'true', on: 'first', timeoutMs: 1000 } }), hosts[1], 'd', none)
  ).toBeUndefined();
  expect(smokeTestHook(cfg({ command: 'rollback' }), hosts[0], 'd', none)).toBeUndefined();
  expect(smokeTestHook(cfg({ smokeTest: undefined }), hosts[0], 'd', none)).toBeUndefined();
});
