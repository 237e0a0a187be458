/**
 * notify-webhook through the entry (src/main.ts, its workflow commands mocked) against a real local HTTP endpoint: the
 * message's fields, no secret in it, and a failing webhook that only warns.
 */
import { jest } from '@jest/globals';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { utils } from 'ssh2';
import type { RunDeps } from '../../../src/deploy/run.js';
import type { ConsoleSink } from '../../../src/log/log.js';

const outputs: Record<string, string> = {};
const failed: string[] = [];
const warnings: string[] = [];
const core = {
  setOutput: jest.fn((name: string, value: string) => {
    outputs[name] = value;
  }),
  setFailed: jest.fn((m: string) => failed.push(m)),
  error: jest.fn(),
  warning: jest.fn((m: string) => warnings.push(m)),
  info: jest.fn(),
  debug: jest.fn(),
  setSecret: jest.fn(),
  startGroup: jest.fn(),
  endGroup: jest.fn(),
  summary: { addRaw: jest.fn(() => ({ write: jest.fn(async () => undefined) })) }
};
jest.unstable_mockModule('../../../src/log/workflow.js', () => core);
const { run } = await import('../../../src/main.js');
const { notificationPayload } = await import('../../../src/report/notify.js');

const key = utils.generateKeyPairSync('ed25519').private;
const quiet: ConsoleSink = { write: () => undefined, startGroup: () => undefined, endGroup: () => undefined };
const TOKEN = 'T000-B000-XXXXsecretwebhooktoken';
let tmp: string;
let server: http.Server;
let base: string;
let status = 200;
const received: Array<{ method?: string; url?: string; type?: string; body: string }> = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      received.push({ method: req.method, url: req.url, type: req.headers['content-type'], body });
      res.writeHead(status).end(status === 200 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise((r) => server.close(r)));

function env(inputs: Record<string, string>): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {
    RUNNER_TEMP: tmp,
    GITHUB_SHA: 'abc123',
    GITHUB_RUN_ID: '42',
    GITHUB_REPOSITORY: 'org/app',
    GITHUB_SERVER_URL: 'https://github.com',
    GITHUB_ACTOR: 'octo'
  };
  const all = {
    hosts: '10.0.1.5',
    'ssh-private-key': key,
    'ssh-insecure-ignore-host-key': 'true',
    'app-name': 'shop',
    image: 'registry.example.com/shop:v2',
    'registry-auth': 'none',
    'upload-artifacts': 'false',
    env: 'DB_PASSWORD=hunter2-secret',
    ...inputs
  };
  for (const [k, v] of Object.entries(all)) e[`INPUT_${k.toUpperCase()}`] = v;
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
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-notify-'));
  for (const k of Object.keys(outputs)) delete outputs[k];
  failed.length = 0;
  warnings.length = 0;
  received.length = 0;
  status = 200;
  jest.clearAllMocks();
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('a failed deploy POSTs one Slack-compatible JSON message with the fields and the cause, and no secret', async () => {
  await run(env({ 'notify-webhook': `${base}/services/${TOKEN}` }), refused, quiet);
  expect(outputs.result).toBe('failed');
  expect(received).toHaveLength(1);
  const [req] = received;
  expect(req).toMatchObject({ method: 'POST', url: `/services/${TOKEN}`, type: 'application/json' });
  const msg = JSON.parse(req.body);
  expect(msg.text).toMatch(
    /^❌ shop deploy failed: registry\.example\.com\/shop:v2 on 10\.0\.1\.5 in \d+ ms \(<https:\/\/github\.com\/org\/app\/actions\/runs\/42\/attempts\/1\|run 42>\)\nconnect failed on 10\.0\.1\.5: connection to 10\.0\.1\.5 was refused$/
  );
  expect(msg.attachments[0].fields.map((f: { title: string }) => f.title)).toEqual([
    'Result',
    'App',
    'Image',
    'Hosts',
    'Duration',
    'Run',
    'Cause'
  ]);
  expect(msg.attachments[0].fields[0]).toEqual({ title: 'Result', value: 'failed', short: true });
  expect(msg.bluegreen).toMatchObject({
    schemaVersion: 1,
    result: 'failed',
    command: 'deploy',
    app: 'shop',
    image: 'registry.example.com/shop:v2',
    digest: null,
    hosts: [{ host: '10.0.1.5', result: 'failed', activeColor: null }],
    failedHosts: ['10.0.1.5'],
    runUrl: 'https://github.com/org/app/actions/runs/42/attempts/1',
    repository: 'org/app',
    actor: 'octo',
    cause: { step: 'connect', host: '10.0.1.5', message: 'connection to 10.0.1.5 was refused' }
  });
  expect(msg.bluegreen.durationMs).toBeGreaterThanOrEqual(0);
  // the webhook URL is a secret (masked), and nothing secret is in the message
  expect(core.setSecret).toHaveBeenCalledWith(`${base}/services/${TOKEN}`);
  for (const secret of [TOKEN, 'hunter2-secret', key.split('\n')[1]]) expect(req.body).not.toContain(secret);
  expect(warnings).toEqual([]);
});

test('a webhook answering 500, or not reachable, only warns: the result and failure message are unchanged', async () => {
  status = 500;
  await run(env({ 'notify-webhook': `${base}/hook` }), refused, quiet);
  expect(received).toHaveLength(1);
  expect(outputs.result).toBe('failed');
  expect(failed).toEqual(['connect failed on 10.0.1.5: connection to 10.0.1.5 was refused']);
  expect(warnings).toEqual([
    'notify-webhook answered HTTP 500; the message was not delivered (the deploy result is unchanged)'
  ]);

  warnings.length = 0;
  failed.length = 0;
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  await run(env({ 'notify-webhook': `http://127.0.0.1:${port}/${TOKEN}` }), refused, quiet);
  expect(failed).toEqual(['connect failed on 10.0.1.5: connection to 10.0.1.5 was refused']);
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatch(/^notify-webhook could not be reached \(ECONNREFUSED\)/);
  expect(warnings[0]).not.toContain(TOKEN);
});

test('a run refused for its inputs is notified too; an invalid webhook URL is an input error that does not show it', async () => {
  await run(env({ 'notify-webhook': `${base}/hook`, 'blue-port': '99999' }), refused, quiet);
  expect(received).toHaveLength(1);
  expect(JSON.parse(received[0].body).bluegreen.cause).toMatchObject({
    step: 'inputs',
    message: expect.stringContaining('Input "blue-port"')
  });

  received.length = 0;
  await run(env({ 'notify-webhook': `ftp://example.com/${TOKEN}` }), refused, quiet);
  expect(received).toHaveLength(0);
  expect(failed.at(-1)).toContain('Input "notify-webhook" must be an http:// or https:// URL');
  expect(failed.at(-1)).not.toContain(TOKEN);
});

test('status sends nothing', async () => {
  await run(env({ command: 'status', image: '', 'notify-webhook': `${base}/hook` }), refused, quiet);
  expect(received).toHaveLength(0);
});

test('the payload of a success names the image with its digest and every host', () => {
  const digest = `sha256:${'a'.repeat(64)}`;
  const p = notificationPayload({
    image: `reg/shop:v2@${digest}`,
    ctx: {
      repository: 'org/app',
      runId: '7',
      runAttempt: '1',
      job: 'deploy',
      actor: 'octo',
      sha: 'abc',
      serverUrl: 'https://github.com',
      runUrl: 'https://github.com/org/app/actions/runs/7/attempts/1',
      eventName: 'push',
      runnerTemp: '/tmp'
    },
    result: {
      deployId: 'd1',
      command: 'deploy',
      app: 'shop',
      image: 'reg/shop:v2',
      result: 'success',
      startedAt: '',
      endedAt: '',
      durationMs: 4200,
      steps: [],
      hosts: [
        {
          host: 'h1',
          result: 'success',
          activeColor: 'green',
          image: 'reg/shop:v2',
          durationMs: 1,
          switched: true,
          steps: [],
          warnings: []
        },
        {
          host: 'h2',
          result: 'success',
          activeColor: 'blue',
          image: 'reg/shop:v2',
          durationMs: 1,
          switched: true,
          steps: [],
          warnings: []
        }
      ]
    }
  });
  expect(p.text).toBe(
    `✅ shop deployed: reg/shop:v2@${digest} on 2 hosts in 4.2 s (<https://github.com/org/app/actions/runs/7/attempts/1|run 7>)`
  );
  expect(p.bluegreen).toMatchObject({
    result: 'success',
    digest,
    succeededHosts: ['h1', 'h2'],
    failedHosts: [],
    cause: null
  });
  expect(p.attachments[0].fields.map((f) => f.title)).not.toContain('Cause');
});
