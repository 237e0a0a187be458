/**
 * End to end, traffic: caddy — the bundled dist/ run with Node 24 over real SSH against the sandbox's real Caddy
 * (Debian's caddy 2.6, test/sandbox/caddy-up.sh), whose config routes the app by the marker file as docs/traffic.md
 * says (test/e2e/caddy-harness.ts puts it through the admin API, as an operator would). Under continuous load from
 * the four client kinds at once (fresh connections, pooled keep-alive never retrying, slow 2–5 s requests, event
 * streams): deploy, second deploy, rollback and a failing deploy fail no request of any kind, and Caddy is never
 * restarted nor reconfigured by a deploy (same pid, same config). A config without the marker route is refused
 * before anything changes; `command: status` reports Caddy's view.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  expectCleanSwitch,
  expectCleanSwitchBack,
  expectNoFailures,
  expectOneSwitch,
  underMix,
  writeStreamCgi
} from './clients.js';
import {
  caddyAdminOk,
  caddyMarkerColour,
  caddyPid,
  ensureCaddy,
  prepareCaddyApp,
  removeCaddyApp,
  SWITCH_DIR
} from './caddy-harness.js';
import { drainJobDone, httpGet, runAction, SANDBOX, sandboxInputs, type RunActionResult } from './harness.js';

const APP = 'e2e-cd-app';
const LISTEN = 19625;
const PORTS = { blue: 19626, green: 19627 };
const BAD_APP = 'e2e-cd-bad';
const BAD = { listen: 19628, ports: { blue: 19629, green: 19623 } };
const STREAM_EVENTS = 25;

let dir: string;
let streamArgs: string;
let url: string;
let pid: string;
let config: string;

function inputs(tag: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...sandboxInputs(APP),
    image: SANDBOX.image,
    tag,
    traffic: 'caddy',
    'blue-port': String(PORTS.blue),
    'green-port': String(PORTS.green),
    'docker-run-args': streamArgs,
    'drain-seconds': '10',
    'health-interval-seconds': '0.2',
    'health-timeout-seconds': '20',
    'verify-seconds': '2',
    ...extra
  };
}

const run = (tag: string, extra: Record<string, string> = {}) => runAction(inputs(tag, extra), { timeoutMs: 240_000 });

async function serving(): Promise<string> {
  return (await httpGet(url, { timeoutMs: 3000 })).body.trim();
}

function expectOk(r: RunActionResult): void {
  if (r.code !== 0) throw new Error(`action failed (${r.code}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
}

/** Caddy was neither restarted nor reconfigured: the switch only wrote or removed the marker file. */
async function expectCaddyUntouched(): Promise<void> {
  expect(caddyPid()).toBe(pid);
  expect(JSON.stringify(await caddyAdminOk('GET', '/config/'))).toBe(config);
}

/** The finishing job's log on the host, once it is done (it drains and stops the old colour after the run). */
async function drainLog(): Promise<string> {
  await drainJobDone(APP);
  return fs.readFileSync(`/home/ec2-user/.bluegreen/${APP}/drain.log`, 'utf8');
}

const underLoad = (fn: () => Promise<RunActionResult>) =>
  underMix(
    url,
    { fresh: 2, pooled: 2, slow: 2, stream: 2, slowSeconds: [2, 3, 4, 5], streamEvents: STREAM_EVENTS },
    'caddy e2e',
    fn
  );

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-cd-'));
  streamArgs = writeStreamCgi(dir);
  await ensureCaddy();
  url = await prepareCaddyApp(APP, { listenPort: LISTEN, ports: PORTS });
  await prepareCaddyApp(BAD_APP, { listenPort: BAD.listen, ports: BAD.ports, withoutMarker: true });
  pid = caddyPid();
  config = JSON.stringify(await caddyAdminOk('GET', '/config/'));
}, 180_000);

afterAll(async () => {
  await removeCaddyApp(APP);
  await removeCaddyApp(BAD_APP);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('traffic: caddy', () => {
  test('first deploy: Caddy serves v1 (blue: no marker), nothing reconfigured', async () => {
    const r = await run('v1');
    expectOk(r);
    expect(r.outputs['active-color']).toBe('blue');
    expect(caddyMarkerColour(APP)).toBe('blue');
    expect(r.stdout).toMatch(/Caddy's config routes e2e-cd-app by \/var\/lib\/bluegreen\/caddy\/e2e-cd-app\/green/);
    expect(await serving()).toBe('v1');
    await expectCaddyUntouched();
  }, 300_000);

  test('deploy v2 under load: no failed request of any kind; the old colour is stopped once Caddy has no request to it', async () => {
    const { res, load } = await underLoad(() => run('v2'));
    expectOk(res);
    expectCleanSwitch(load, 'v1', 'v2');
    // slow requests and streams opened before the switch finished on v1 (the job's drain waited for them)
    expect(load.slow.versions.v1).toBeGreaterThan(0);
    expect(load.stream.versions.v1).toBeGreaterThan(0);
    expect(caddyMarkerColour(APP)).toBe('green');
    expect(fs.readFileSync(`${SWITCH_DIR}/${APP}/green`, 'utf8')).toContain(res.outputs['deploy-id']);
    expect(await drainLog()).toMatch(/@@drained \d+\n@@stop\n@@stopped/);
    expect(await serving()).toBe('v2');
    await expectCaddyUntouched();
  }, 300_000);

  test('second deploy v3 under load: no failed request of any kind', async () => {
    const { res, load } = await underLoad(() => run('v3'));
    expectOk(res);
    expectNoFailures(load);
    expectOneSwitch(load.pooled_, 'v2', 'v3');
    expect(caddyMarkerColour(APP)).toBe('blue');
    expect(await serving()).toBe('v3');
    await expectCaddyUntouched();
  }, 300_000);

  test('rollback under load: back to v2, no failed request of any kind', async () => {
    await drainJobDone(APP);
    const { res, load } = await underLoad(() => run('', { command: 'rollback' }));
    expectOk(res);
    expectNoFailures(load);
    expectOneSwitch(load.pooled_, 'v3', 'v2');
    expect(await serving()).toBe('v2');
    await expectCaddyUntouched();
  }, 300_000);

  test('failing deploy under load: the candidate never takes traffic, v2 keeps serving', async () => {
    const { res, load } = await underLoad(() => run('unhealthy', { 'health-timeout-seconds': '3' }));
    expect(res.code).not.toBe(0);
    expect(res.stdout).toMatch(/health failed/);
    expectNoFailures(load);
    expect(load.fresh_.transitions).toEqual(['v2']);
    expect(await serving()).toBe('v2');
    await expectCaddyUntouched();
  }, 300_000);

  test('a deploy that turns unhealthy after the switch is switched back: fresh and pooled clients see no failure', async () => {
    await expectCleanSwitchBack(url, () => run('degrade', { 'verify-seconds': '8' }));
    expect(await serving()).toBe('v2');
    await expectCaddyUntouched();
  }, 300_000);

  test('status: the live colour by the marker, Caddy config checked', async () => {
    const r = await run('', { command: 'status' });
    expectOk(r);
    const st = JSON.parse(r.outputs['status-json']) as {
      hosts: Array<{
        live?: string;
        upstream?: unknown;
        caddy?: { error?: string; markerDir: string; routed?: string };
        findings: Array<{ level: string }>;
      }>;
    };
    expect(st.hosts[0].live).toBe(caddyMarkerColour(APP));
    expect(st.hosts[0].upstream).toBeUndefined();
    expect(st.hosts[0].caddy).toEqual({
      adminUrl: 'http://127.0.0.1:2019',
      markerDir: `${SWITCH_DIR}/${APP}`,
      routed: caddyMarkerColour(APP)
    });
    // blue live means no marker file: that is no finding (nginx's "upstream file does not exist" is not Caddy's)
    expect(st.hosts[0].findings.filter((f) => f.level !== 'info')).toEqual([]);
  }, 300_000);

  test('a Caddy config without the marker route is refused before anything changes', async () => {
    const first = await runAction(
      {
        ...inputs('v1'),
        'app-name': BAD_APP,
        'blue-port': String(BAD.ports.blue),
        'green-port': String(BAD.ports.green)
      },
      { timeoutMs: 240_000 }
    );
    expect(first.code).not.toBe(0);
    expect(first.stdout).toMatch(
      /Caddy's config lacks a file matcher for \/var\/lib\/bluegreen\/caddy\/e2e-cd-bad\/green/
    );
    expect(fs.existsSync(`${SWITCH_DIR}/${BAD_APP}/green`)).toBe(false);
    // the candidate was removed again: nothing of the app runs
    expect((await httpGet(`http://127.0.0.1:${BAD.listen}/`, { timeoutMs: 3000 })).status).toBe(502);
  }, 300_000);
});
