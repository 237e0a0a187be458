/**
 * Long-lived connections on the old colour (issue #9): an event stream opened before the switch, in each traffic mode,
 * with drain-seconds shorter than the stream. What the README says ("Long-lived connections"):
 *   nginx      the stream stays on its old nginx worker and keeps flowing from the old colour through verify and the
 *              drain; when drain-seconds end the old container is stopped and the stream ends without its end marker
 *              (after the switch, new streams go to the new colour)
 *   haproxy    the same: the old server drains (no new requests) while the stream keeps flowing; after drain-seconds
 *              it goes into maint and its container is stopped, which ends the stream
 *   port-swap  the old container stops at the switch: the stream ends then, before the new colour serves
 * Every stream gets only the old version's events (a stream never moves between colours).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStream, writeStreamCgi, type StreamOutcome } from './clients.js';
import {
  cleanupApp,
  httpGet,
  prepareApp,
  REPO_ROOT,
  runAction,
  SANDBOX,
  sandboxInputs,
  sh,
  shOk,
  type RunActionResult
} from './harness.js';

/** 150 events 0.2 s apart: ~30 s, far longer than drain-seconds. */
const EVENTS = 150;
const DRAIN_SECONDS = '4';
let dir: string;
let streamArgs: string;

interface Step {
  name: string;
  startedAt: string;
  durationMs: number;
}

function base(app: string, tag: string, extra: Record<string, string>): Record<string, string> {
  return {
    ...sandboxInputs(app),
    image: `${SANDBOX.image}:${tag}`,
    'docker-run-args': streamArgs,
    'drain-seconds': DRAIN_SECONDS,
    'verify-seconds': '1',
    'health-interval-seconds': '0.2',
    'wait-for-drain': 'true',
    ...extra
  };
}

function steps(r: RunActionResult): Step[] {
  const m = JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
  return m.hosts[0].steps as Step[];
}

function at(ss: Step[], name: string): { start: number; end: number } {
  const s = ss.find((x) => x.name === name);
  if (!s) throw new Error(`no step ${name} in ${ss.map((x) => x.name).join(', ')}`);
  return { start: Date.parse(s.startedAt), end: Date.parse(s.startedAt) + s.durationMs };
}

function expectOk(r: RunActionResult): void {
  if (r.code !== 0) throw new Error(`action failed (${r.code}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
}

/** Opens a stream on `url`, waits until it delivers, deploys v2 (the live one is v1), reads the stream to its end. */
async function streamAcrossDeploy(
  url: string,
  deploy: () => Promise<RunActionResult>
): Promise<{ r: RunActionResult; s: StreamOutcome; after: StreamOutcome }> {
  let first!: () => void;
  const flowing = new Promise<void>((res) => (first = res));
  const stream = openStream(url, EVENTS, { onEvent: () => first() });
  await flowing;
  const r = await deploy();
  const s = await stream;
  // a stream opened after the deploy is served by the new colour
  const after = await openStream(url, 3);
  return { r, s, after };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'h9-ll-'));
  streamArgs = writeStreamCgi(dir);
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('nginx', () => {
  const APP = 'h9-ll-nginx';
  const ports = { 'blue-port': '19131', 'green-port': '19132' };
  let url: string;

  beforeAll(async () => {
    url = await prepareApp(APP, { listenPort: 19130, bluePort: 19131 });
    expectOk(await runAction(base(APP, 'v1', ports)));
  }, 180_000);
  afterAll(() => cleanupApp(APP));

  test('a stream on the old colour flows through the switch and the drain, then ends when drain-seconds end and the old container stops', async () => {
    const { r, s, after } = await streamAcrossDeploy(url, () => runAction(base(APP, 'v2', ports)));
    expectOk(r);
    const ss = steps(r);
    expect({ versions: [...new Set(s.versions)], ended: s.ended, status: s.status }).toEqual({
      versions: ['v1'],
      ended: false,
      status: 200
    });
    // it kept flowing from the old colour after the switch and until the drain ended (its nginx worker is an old one)
    expect(s.lastAt).toBeGreaterThan(at(ss, 'switch').end);
    expect(s.closedAt).toBeGreaterThanOrEqual(at(ss, 'drain').end);
    expect(r.stdout).toMatch(/drain/);
    process.stdout.write(`[long-lived nginx] stream ended "${s.how}" after ${s.events} events\n`);
    // a clean end of the response (nginx ends it when the stopped container closes its side), without the last event
    expect(s.how).toBe('closed before the end marker');
    expect(r.stdout).toMatch(
      /old nginx workers were still finishing requests after drain-seconds \(4 s\); stopped h9-ll-nginx-\w+ anyway/
    );
    expect(after).toMatchObject({ ended: true, versions: ['v2', 'v2', 'v2', 'v2'] });
  }, 240_000);
});

describe('port-swap', () => {
  const APP = 'h9-ll-swap';
  const PORT = 19140;
  const url = `http://127.0.0.1:${PORT}`;
  const extra = { traffic: 'port-swap', 'public-port': String(PORT) };

  beforeAll(async () => {
    await cleanupApp(APP);
    expectOk(await runAction(base(APP, 'v1', extra)));
  }, 180_000);
  afterAll(() => cleanupApp(APP));

  test('a stream on the old colour ends at the switch, when the old container stops', async () => {
    const { r, s, after } = await streamAcrossDeploy(url, () => runAction(base(APP, 'v2', extra)));
    expectOk(r);
    const ss = steps(r);
    expect({ versions: [...new Set(s.versions)], ended: s.ended }).toEqual({ versions: ['v1'], ended: false });
    // cut during the switch step (the old container is stopped), not later
    expect(s.closedAt).toBeLessThanOrEqual(at(ss, 'switch').end + 1000);
    expect(s.closedAt).toBeGreaterThanOrEqual(at(ss, 'switch').start);
    process.stdout.write(`[long-lived port-swap] stream ended "${s.how}" after ${s.events} events\n`);
    expect(s.how).toBe('closed before the end marker');
    expect(after).toMatchObject({ ended: true, versions: ['v2', 'v2', 'v2', 'v2'] });
  }, 240_000);
});

describe('haproxy', () => {
  // The sandbox HAProxy (test/sandbox/haproxy-up.sh): backend e2e-hx-web, front 19610, servers 19611/19612.
  const APP = 'h9-ll-hx';
  const url = 'http://127.0.0.1:19610';
  const extra = {
    traffic: 'haproxy',
    'haproxy-backend': 'e2e-hx-web',
    'haproxy-socket': '/run/bluegreen-haproxy/admin.sock',
    'haproxy-state-file': '/var/lib/bluegreen-haproxy/server-state',
    'blue-port': '19611',
    'green-port': '19612'
  };
  const removeApp = async () => {
    await sh(`ids=$(docker ps -aq --filter label=bluegreen.app=${APP}); [ -z "$ids" ] || docker rm -f $ids >/dev/null`);
    fs.rmSync(`/home/ec2-user/.bluegreen/${APP}`, { recursive: true, force: true });
  };

  beforeAll(async () => {
    await shOk(`bash ${path.join(REPO_ROOT, 'test/sandbox/haproxy-up.sh')}`, { timeoutMs: 120_000 });
    await removeApp();
    expectOk(await runAction(base(APP, 'v1', extra)));
    expect((await httpGet(url)).body.trim()).toBe('v1');
  }, 180_000);
  afterAll(removeApp);

  test('a stream on the old server flows while it drains, then ends when drain-seconds end and its container stops', async () => {
    const { r, s, after } = await streamAcrossDeploy(url, () => runAction(base(APP, 'v2', extra)));
    expectOk(r);
    const ss = steps(r);
    expect({ versions: [...new Set(s.versions)], ended: s.ended, status: s.status }).toEqual({
      versions: ['v1'],
      ended: false,
      status: 200
    });
    expect(s.lastAt).toBeGreaterThan(at(ss, 'switch').end);
    // HAProxy waited drain-seconds for the stream's session, then put the server into maint
    expect(r.stdout).toMatch(/still had 1 session\(s\) after drain-seconds \(4 s\): put into maint anyway/);
    expect(s.closedAt).toBeGreaterThanOrEqual(at(ss, 'verify').end);
    process.stdout.write(`[long-lived haproxy] stream ended "${s.how}" after ${s.events} events\n`);
    expect(s.how).toBe('closed before the end marker');
    expect(after).toMatchObject({ ended: true, versions: ['v2', 'v2', 'v2', 'v2'] });
  }, 240_000);
});
