/**
 * Chaos suite, single host (issue "Core", Proof): the action deploys onto the sandbox host through a FaultProxy
 * (a TCP forwarder in front of 127.0.0.1:2222 the test controls) under continuous load on fresh connections, and the
 * test strikes at a chosen moment: a TCP reset of the SSH connection (both sides), a SIGKILL of the action, or the
 * runner vanishing (its connection goes silent and is never closed).
 *
 * Each case starts from its own app with v2 live and v1 kept as standby, and checks what a user sees:
 * - no failed request on fresh connections during the whole case (the old version, or once switched the new, serves);
 * - the run ends by itself with a reported failure: non-zero exit but no crash (no "Unhandled 'error' event", no
 *   stack trace), an ::error naming the step and host, a `result` output, a job summary (SIGKILL: nothing to report);
 * - the host ends consistent: one running colour which nginx serves, at most one other (stopped) container kept as
 *   standby, nothing else, the lock free and no findings (`command: status`), no credentials left in /tmp;
 * - a rerun (straight to sshd, not through the proxy) succeeds.
 * Every case collects what it saw into one object compared at the end, so a failing case shows all of it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { FaultProxy } from './fault-proxy.js';
import {
  cleanupApp,
  drainJobDone,
  httpGet,
  LoadGenerator,
  prepareApp,
  runAction,
  SANDBOX,
  type LoadResult,
  type RunActionResult
} from './harness.js';
import {
  credentialFiles,
  credentialLeftovers,
  failureReport,
  outputTail,
  psLite,
  reportOf,
  sleep,
  startAction,
  upstreamPort,
  waitUntil,
  type RunningAction
} from './chaos-harness.js';

const PORT_BASE = 19230;
/** One test case = one app with its own ports (listen, blue, green), so a case that leaves a mess breaks no other. */
interface Case {
  app: string;
  url: string;
  ports: { listen: number; blue: number; green: number };
  marker: string;
  credsBefore: string[];
  load: LoadGenerator;
  proxy: FaultProxy;
  /** "127.0.0.1:<proxy port>": the host as the proxied run names it */
  proxied: string;
  seen: Record<string, unknown>;
  want: Record<string, unknown>;
}
let caseIndex = 0;
/** Full output of every run of a case: <LOG_DIR>/<app>/<n>-<what>.log (kept after the suite, for the report). */
const LOG_DIR = '/tmp/f11-e2e-chaos';
function saveRun(c: Case, what: string, r: RunActionResult): void {
  const dir = path.join(LOG_DIR, c.app);
  fs.mkdirSync(dir, { recursive: true });
  const n = fs.readdirSync(dir).length + 1;
  fs.writeFileSync(
    path.join(dir, `${n}-${what}.log`),
    `code=${r.code} signal=${r.signal} result=${r.outputs.result}\n${r.stdout.replace(/^::add-mask::.*\n/gm, '')}\n--- stderr ---\n${r.stderr}\n--- summary ---\n${r.summary}`
  );
}
const cases: Case[] = [];

function inputs(c: Case, via: 'proxy' | 'direct', extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...(via === 'proxy'
      ? { hosts: c.proxied, 'ssh-host-fingerprint': SANDBOX.fingerprint, 'ssh-known-hosts': '' }
      : { hosts: SANDBOX.host, 'ssh-known-hosts': SANDBOX.knownHosts }),
    'ssh-private-key': SANDBOX.privateKey,
    'app-name': c.app,
    image: `${SANDBOX.image}:v3`,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'blue-port': String(c.ports.blue),
    'green-port': String(c.ports.green),
    'verify-seconds': '2',
    'health-timeout-seconds': '30',
    'upload-artifacts': 'false',
    // lets the test tell its env files (credentials) from those of other engineers' deploys on the shared /tmp
    env: `CHAOS_MARKER=${c.marker}`,
    ...extra
  };
}
const image = (tag: string) => ({ image: `${SANDBOX.image}:${tag}` });

/** A fresh app with v2 live and v1 kept, a proxy in front of sshd, and load running on fresh connections. */
async function setupCase(name: string): Promise<Case> {
  const i = caseIndex++;
  const ports = { listen: PORT_BASE + 3 * i, blue: PORT_BASE + 3 * i + 1, green: PORT_BASE + 3 * i + 2 };
  const app = `f11-ch-${name}`;
  const url = await prepareApp(app, { listenPort: ports.listen, bluePort: ports.blue });
  const proxy = await FaultProxy.start(SANDBOX.sshHost, SANDBOX.sshPort);
  const c: Case = {
    app,
    url,
    ports,
    marker: `${app}-${process.pid}-${Date.now()}`,
    credsBefore: [],
    load: new LoadGenerator(`${url}/`, { concurrency: 2, keepAlive: false }),
    proxy,
    proxied: `127.0.0.1:${proxy.port}`,
    seen: {},
    want: {}
  };
  cases.push(c);
  for (const tag of ['v1', 'v2']) {
    const r = await runAction(inputs(c, 'direct', image(tag)));
    saveRun(c, `setup-${tag}`, r);
    if (r.outputs.result !== 'success') throw new Error(`setup deploy of ${tag} for ${app} failed:\n${outputTail(r)}`);
  }
  await drainJobDone(app);
  expect((await httpGet(`${url}/`)).body.trim()).toBe('v2');
  c.credsBefore = await credentialFiles();
  c.load.start();
  return c;
}

function note(c: Case, key: string, seen: unknown, want: unknown): void {
  c.seen[key] = seen;
  c.want[key] = want;
}

/** The report of a run that had to fail cleanly. */
function noteFailure(c: Case, key: string, r: RunActionResult, hostLabel: string): void {
  saveRun(c, 'chaos-run', r);
  const [seen, want] = failureReport(r, hostLabel);
  note(c, key, seen, want);
  // the output's end is shown in full only when the report is wrong (the whole output is in the case's log dir)
  if (JSON.stringify(seen) !== JSON.stringify(want))
    note(c, `${key} (output tail)`, outputTail(r), '(shown when the report is wrong)');
}

/** The host as a user would check it: what is served, which containers exist, where nginx points, lock, findings. */
async function observeHost(c: Case): Promise<Record<string, unknown>> {
  await drainJobDone(c.app);
  const cs = await psLite(c.app);
  const port = upstreamPort(c.app);
  const colour = port === c.ports.blue ? 'blue' : port === c.ports.green ? 'green' : `port ${port}`;
  let serving: string;
  try {
    const r = await httpGet(`${c.url}/`);
    serving = r.status === 200 ? r.body.trim() : `HTTP ${r.status}`;
  } catch (e) {
    serving = `${(e as NodeJS.ErrnoException).code ?? 'error'} ${(e as Error).message}`;
  }
  const status = await runAction({
    command: 'status',
    hosts: SANDBOX.host,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'ssh-private-key': SANDBOX.privateKey,
    'app-name': c.app,
    'blue-port': String(c.ports.blue),
    'green-port': String(c.ports.green),
    'upload-artifacts': 'false'
  });
  let lockHeld: unknown = `status failed: ${status.stdout.match(/::error.*/)?.[0] ?? status.code}`;
  let findings: unknown = lockHeld;
  try {
    const host = (
      JSON.parse(status.outputs['status-json']) as {
        hosts: Array<{ lock: { held: boolean }; findings: Array<{ level: string; message: string }> }>;
      }
    ).hosts[0];
    lockHeld = host.lock.held;
    findings = host.findings.map((f) => `${f.level}: ${f.message}`);
  } catch {
    /* reported as the status failure above */
  }
  return {
    serving,
    running: cs.filter((x) => x.state === 'running').map((x) => x.version),
    upstreamTo: cs.find((x) => x.name === `${c.app}-${colour}`)?.version ?? `${colour} (no such container)`,
    stoppedKept: cs.filter((x) => x.state !== 'running').length <= 1,
    otherContainers: cs.map((x) => x.name).filter((n) => n !== `${c.app}-blue` && n !== `${c.app}-green`),
    lockHeld,
    findings,
    credentialsLeft: await credentialLeftovers(c.credsBefore, c.marker)
  };
}
/** The steady state with `live` running and served. */
const steady = (live: string) => ({
  serving: live,
  running: [live],
  upstreamTo: live,
  stoppedKept: true,
  otherContainers: [],
  lockHeld: false,
  findings: [],
  credentialsLeft: []
});

async function noteHost(c: Case, key: string, live: string): Promise<void> {
  note(c, key, await observeHost(c), steady(live));
}

/** A rerun straight to sshd (not through the proxy) succeeds, and the host is then steady on that version. */
async function noteRerun(c: Case, tag: string): Promise<void> {
  const r = await runAction(inputs(c, 'direct', { ...image(tag), 'lock-timeout-seconds': '120' }));
  saveRun(c, 'rerun', r);
  const rep = reportOf(r);
  note(c, 'rerun', { result: rep.result, error: rep.error, code: r.code }, { result: 'success', error: '', code: 0 });
  await noteHost(c, 'host after the rerun', tag);
}

/** Stops the load: no failed request, only the versions expected to serve. */
async function noteLoad(c: Case, versions: string[]): Promise<LoadResult> {
  const l = await c.load.stop();
  note(
    c,
    'load',
    {
      failed: l.failed,
      firstErrors: l.errors.slice(0, 5),
      servedOnly: Object.keys(l.bodies).filter((b) => !versions.includes(b)),
      anyOk: l.ok > 0
    },
    { failed: 0, firstErrors: [], servedOnly: [], anyOk: true }
  );
  return l;
}

async function finish(c: Case): Promise<void> {
  await c.load.stop();
  await c.proxy.close();
  expect(c.seen).toEqual(c.want);
}

const colourOf = (c: Case, port: number | undefined) =>
  port === c.ports.blue ? 'blue' : port === c.ports.green ? 'green' : undefined;
const candidateRunning = (c: Case, tag: string) => async () =>
  (await psLite(c.app)).some((x) => x.version === tag && x.state === 'running');
/** The upstream file now points at the colour that is not live before the deploy. */
function switched(c: Case): () => boolean {
  const before = upstreamPort(c.app);
  return () => {
    const now = upstreamPort(c.app);
    return now !== undefined && now !== before;
  };
}

/** Starts the deploy through the proxy; the test then strikes. Generous timeout: a hang shows as the harness's SIGKILL. */
function deployThroughProxy(c: Case, extra: Record<string, string>): RunningAction {
  return startAction(inputs(c, 'proxy', extra), { timeoutMs: 400_000 });
}
const CASE_TIMEOUT = 1_200_000;

afterAll(async () => {
  for (const c of cases) {
    await c.load.stop().catch(() => undefined);
    await c.proxy.close().catch(() => undefined);
    await cleanupApp(c.app).catch(() => undefined);
  }
});

describe('TCP reset of the SSH connection (RST to both sides)', () => {
  test(
    'during health of an image that never becomes healthy: failed, candidate removed, the old version kept serving',
    async () => {
      const c = await setupCase('rst-health');
      const run = deployThroughProxy(c, { ...image('unhealthy'), 'health-timeout-seconds': '90' });
      await waitUntil('the candidate to run', candidateRunning(c, 'unhealthy'));
      await sleep(1500); // well inside health (it runs for up to 90 s)
      c.proxy.reset();
      const r = await run.done;
      noteFailure(c, 'report', r, c.proxied);
      await noteHost(c, 'host after the run', 'v2');
      await noteRerun(c, 'v3');
      await noteLoad(c, ['v2', 'v3']);
      await finish(c);
    },
    CASE_TIMEOUT
  );

  test(
    'during health of a healthy image, as soon as the candidate runs: failed, candidate removed, the old version kept serving',
    async () => {
      const c = await setupCase('rst-start');
      // A health path that answers 200 after 2 s (the demo's /cgi-bin/slow) keeps health going for a few seconds, so
      // the reset lands in health rather than in the switch (the demo's /health answers at once).
      const run = deployThroughProxy(c, { ...image('v3'), 'health-path': '/cgi-bin/slow?2' });
      await waitUntil('the candidate to run', candidateRunning(c, 'v3'), 60_000, 20);
      c.proxy.reset();
      const r = await run.done;
      noteFailure(c, 'report', r, c.proxied);
      await noteHost(c, 'host after the run', 'v2');
      await noteRerun(c, 'v1');
      await noteLoad(c, ['v2', 'v1']);
      await finish(c);
    },
    CASE_TIMEOUT
  );

  test(
    'right after the switch (upstream rewritten): the report says what the host does, and it serves',
    async () => {
      const c = await setupCase('rst-switch');
      const isSwitched = switched(c);
      const run = deployThroughProxy(c, { ...image('v3'), 'verify-seconds': '5' });
      await waitUntil('the upstream file to point at the candidate', isSwitched, 120_000, 5);
      c.proxy.reset();
      const r = await run.done;
      const host = await observeHost(c);
      const live = colourOf(c, upstreamPort(c.app));
      // "A connection lost after the nginx reload is taken for 'not switched'": whichever way recovery went, the
      // outputs must say what the host does. Serving v3 means the run succeeded; otherwise it failed and v2 serves.
      if (host.serving === 'v3') {
        saveRun(c, 'chaos-run', r);
        const rep = reportOf(r);
        note(
          c,
          'report (host serves v3)',
          { result: rep.result, code: r.code, activeColor: r.outputs['active-color'], crash: rep.crash },
          { result: 'success', code: 0, activeColor: live, crash: [] }
        );
        note(c, 'host after the run', host, steady('v3'));
      } else {
        noteFailure(c, 'report (host does not serve v3)', r, c.proxied);
        note(c, 'host after the run', host, steady('v2'));
      }
      await noteRerun(c, 'v1');
      await noteLoad(c, ['v2', 'v3', 'v1']);
      await finish(c);
    },
    CASE_TIMEOUT
  );

  test(
    'during verify: rolled back, the old version serving, the candidate gone',
    async () => {
      const c = await setupCase('rst-verify');
      const isSwitched = switched(c);
      const run = deployThroughProxy(c, { ...image('v3'), 'verify-seconds': '20' });
      await waitUntil('the switch', isSwitched, 120_000, 20);
      await sleep(2500); // verify runs 20 s
      c.proxy.reset();
      const r = await run.done;
      noteFailure(c, 'report', r, c.proxied);
      note(c, 'result', r.outputs.result, 'rolled-back');
      await noteHost(c, 'host after the run', 'v2');
      await noteRerun(c, 'v1');
      await noteLoad(c, ['v2', 'v3', 'v1']);
      await finish(c);
    },
    CASE_TIMEOUT
  );
});

describe('the runner vanishes (its connection goes silent, never closed)', () => {
  test(
    'during health: the run ends by itself with a reported failure, the lock is released, a rerun succeeds',
    async () => {
      const c = await setupCase('vanish-health');
      const run = deployThroughProxy(c, { ...image('unhealthy'), 'health-timeout-seconds': '120' });
      await waitUntil('the candidate to run', candidateRunning(c, 'unhealthy'));
      await sleep(1500);
      c.proxy.blackhole();
      const r = await run.done;
      noteFailure(c, 'report', r, c.proxied);
      // The proxy stays silent (sshd still sees the connection open): only a lease can free the lock now.
      // A rerun waiting up to 120 s must get it (the lease: within about a minute of the holder going silent).
      await noteRerun(c, 'v3');
      await noteLoad(c, ['v2', 'v3']);
      await finish(c);
    },
    CASE_TIMEOUT
  );
});

describe('SIGKILL of the action (nothing to report; the next run repairs)', () => {
  async function killCase(
    name: string,
    tag: string,
    extra: Record<string, string>,
    strike: (c: Case) => Promise<void>
  ): Promise<void> {
    const c = await setupCase(name);
    const run = startAction(inputs(c, 'direct', { ...image(tag), ...extra }), { timeoutMs: 400_000 });
    await strike(c);
    const killedAlive = run.alive();
    run.kill();
    const r = await run.done;
    saveRun(c, 'killed-run', r);
    note(c, 'killed while running', { alive: killedAlive, signal: r.signal }, { alive: true, signal: 'SIGKILL' });
    await noteRerun(c, 'v1');
    await noteLoad(c, ['v2', tag, 'v1']);
    await finish(c);
  }

  test(
    'during start: the next run takes the lock, repairs and succeeds; the old version served throughout',
    () =>
      killCase('kill-start', 'v3', {}, async (c) => {
        // the start step: the kept standby steps aside (…-replaced) and the candidate is created
        await waitUntil(
          'the start step',
          async () => (await psLite(c.app)).some((x) => x.name.endsWith('-replaced') || x.version === 'v3'),
          120_000,
          10
        );
      }),
    CASE_TIMEOUT
  );

  test(
    'during health: the next run takes the lock, repairs and succeeds; the old version served throughout',
    () =>
      killCase('kill-health', 'unhealthy', { 'health-timeout-seconds': '90' }, async (c) => {
        await waitUntil('the candidate to run', candidateRunning(c, 'unhealthy'));
        await sleep(1500);
      }),
    CASE_TIMEOUT
  );

  test(
    'right after the switch: the next run takes the lock, repairs and succeeds; no request failed',
    () =>
      killCase('kill-switch', 'v3', { 'verify-seconds': '5' }, async (c) => {
        const isSwitched = switched(c);
        await waitUntil('the upstream file to point at the candidate', isSwitched, 120_000, 5);
      }),
    CASE_TIMEOUT
  );
});
