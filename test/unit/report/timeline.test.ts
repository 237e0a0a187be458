/**
 * The summary's Mermaid gantt timeline, checked with mermaid's own parser (the npm package GitHub's renderer is
 * built on) in jsdom, for 1 and 8 hosts; and the whole summary for 50 hosts stays under GitHub's 1 MiB.
 */
import type { RunResult } from '../../../src/model/results.js';
import type { HostResult, StepName, StepRecord } from '../../../src/model/results.js';
import { renderSummary } from '../../../src/report/summary.js';
import { ganttText, renderTimeline, TIMELINE_DETAIL_HOSTS } from '../../../src/report/timeline.js';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');

function steps(startMs: number, spec: Array<[StepName, number, StepRecord['status']?]>): StepRecord[] {
  let t = startMs;
  return spec.map(([name, ms, status = 'ok']) => {
    const rec: StepRecord = {
      name,
      startedAt: new Date(t).toISOString(),
      endedAt: new Date(t + ms).toISOString(),
      durationMs: ms,
      status
    };
    t += ms;
    return rec;
  });
}

const NORMAL: Array<[StepName, number]> = [
  ['connect', 40],
  ['lock', 10],
  ['login', 200],
  ['pull', 900],
  ['detect', 50],
  ['start', 300],
  ['health', 700],
  ['smoke-test', 1200],
  ['switch', 150],
  ['verify', 1000],
  ['wait-fleet', 2500],
  ['drain', 30],
  ['record', 20]
];

function host(i: number, batch: number, over: Partial<HostResult> = {}): HostResult {
  const start = T0 + 300 + batch * 6000;
  return {
    host: `10.0.1.${10 + i}:22`,
    result: 'success',
    activeColor: 'green',
    previousColor: 'blue',
    candidateColor: 'green',
    image: 'reg/shop:v2',
    digest: `sha256:${'b'.repeat(64)}`,
    cutoverMs: 120,
    durationMs: 7000,
    switched: true,
    steps: steps(start, NORMAL),
    warnings: [],
    batch,
    startedAt: new Date(start).toISOString(),
    ...over
  };
}

function run(hosts: HostResult[], over: Partial<RunResult> = {}): RunResult {
  return {
    deployId: '20261201T100000Z-abc123',
    command: 'deploy',
    app: 'shop',
    image: 'reg/shop:v2',
    result: 'success',
    startedAt: new Date(T0).toISOString(),
    endedAt: new Date(T0 + 60_000).toISOString(),
    durationMs: 60_000,
    steps: steps(T0, [['ecr-token', 250]]),
    hosts,
    ...over
  };
}

interface GanttTask {
  task: string;
  section: string;
  startTime: Date;
  endTime: Date;
  done?: boolean;
  crit?: boolean;
  active?: boolean;
}
type Mermaid = {
  parse(text: string): Promise<{ diagramType: string }>;
  mermaidAPI: { getDiagramFromText(text: string): Promise<{ db: { getTasks(): GanttTask[] } }> };
};
let mermaid: Mermaid;
let dom: { window: Window & typeof globalThis };

beforeAll(async () => {
  // mermaid needs a DOM (DOMPurify) even to parse; jsdom stands in for the browser.
  const jsdom = 'jsdom'; // untyped; a devDependency of the tests only
  const { JSDOM } = (await import(jsdom)) as { JSDOM: new (html: string) => { window: Window & typeof globalThis } };
  dom = new JSDOM('<!doctype html><html><body></body></html>');
  Object.assign(globalThis, { window: dom.window, document: dom.window.document });
  mermaid = ((await import('mermaid')) as unknown as { default: Mermaid }).default;
});
// jest's clean-up of the test's globals would walk jsdom's self-referencing window (and overflow the stack).
afterAll(() => {
  const g = globalThis as { window?: unknown; document?: unknown };
  delete g.window;
  delete g.document;
  dom.window.close();
});

/** Parses like the renderer does and returns the tasks as mermaid understood them (name, section, times, state). */
async function expectValidGantt(
  text: string
): Promise<Array<{ section: string; task: string; start: number; end: number; state: string }>> {
  await expect(mermaid.parse(text)).resolves.toMatchObject({ diagramType: 'gantt' });
  const { db } = await mermaid.mermaidAPI.getDiagramFromText(text);
  return db.getTasks().map((t) => ({
    section: t.section,
    task: t.task.trim(),
    start: +t.startTime,
    end: +t.endTime,
    state: t.crit ? 'crit' : t.active ? 'active' : t.done ? 'done' : ''
  }));
}

test('the parser rejects a broken gantt (so the checks below can fail)', async () => {
  // a task line without its ":" data, as an unescaped name would produce
  await expect(mermaid.parse('gantt\n  dateFormat x\n  section h1\n  connect done 1 2\n')).rejects.toThrow(
    /Expecting 'taskData'/
  );
  await expect(mermaid.parse('gantt\n  dateFormat x\n  section h1\n  connect :done, 1, 2\n')).resolves.toBeTruthy();
});

test('one host: a valid gantt with every step of the host on the wall clock', async () => {
  const r = run([host(0, 0)]);
  const text = renderTimeline(r)!;
  const tasks = await expectValidGantt(text);
  // what the chart shows is exactly the steps, on their wall-clock times
  expect(tasks).toEqual([
    { section: 'runner', task: 'ecr-token', start: T0, end: T0 + 250, state: 'done' },
    ...r.hosts[0].steps.map((st) => ({
      section: '10.0.1.10 22 success',
      task: st.name,
      start: Date.parse(st.startedAt),
      end: Date.parse(st.endedAt),
      state: 'done'
    }))
  ]);
  const lines = text.split('\n');
  expect(lines.slice(0, 5)).toEqual([
    'gantt',
    '  title shop deploy 20261201T100000Z-abc123',
    '  dateFormat x',
    '  axisFormat %H:%M:%S',
    '  todayMarker off'
  ]);
  expect(lines).toContain('  section runner');
  expect(lines).toContain(`  ecr-token :done, ${T0}, ${T0 + 250}`);
  expect(lines).toContain('  section 10.0.1.10 22 success');
  for (const [name] of NORMAL) expect(text).toMatch(new RegExp(`^  ${name} :done, \\d+, \\d+$`, 'm'));
});

test('eight hosts in a canary + rolling rollout, with a failure: valid, batches wait, wait-fleet and the failed step shown', async () => {
  const hosts = Array.from({ length: 8 }, (_, i) => host(i, i === 0 ? 0 : Math.ceil(i / 3)));
  hosts[5] = host(5, 2, {
    result: 'failed',
    steps: steps(T0 + 300 + 12_000, [
      ['connect', 40],
      ['lock', 10],
      ['pull', 900],
      ['detect', 50],
      ['start', 300],
      ['health', 700],
      ['smoke-test', 3000, 'failed'],
      ['cleanup', 200, 'warning']
    ]),
    error: { step: 'smoke-test', message: 'exit 1' }
  });
  const text = renderTimeline(run(hosts, { result: 'failed' }))!;
  const tasks = await expectValidGantt(text);
  expect(tasks.filter((t) => t.section === '10.0.1.15 22 (batch 3) failed').map((t) => [t.task, t.state])).toEqual([
    ['waits for batch 2', ''],
    ['connect', 'done'],
    ['lock', 'done'],
    ['pull', 'done'],
    ['detect', 'done'],
    ['start', 'done'],
    ['health', 'done'],
    ['smoke-test', 'crit'],
    ['cleanup', 'active']
  ]);
  expect(tasks).toHaveLength(1 + 7 * NORMAL.length + 9 + 6);
  expect(text).toContain('  section 10.0.1.15 22 (batch 3) failed');
  expect(text).toMatch(/^ {2}smoke-test :crit, \d+, \d+$/m);
  expect(text).toMatch(/^ {2}cleanup :active, \d+, \d+$/m);
  // a later batch first waits for the one before it, from the run's start
  expect(text).toContain(`  waits for batch 1 :${T0}, ${T0 + 300 + 6000}`);
  expect((text.match(/^ {2}wait-fleet :/gm) ?? []).length).toBe(7);
});

test('above the detail limit a host gets one bar per phase; still valid', async () => {
  const hosts = Array.from({ length: TIMELINE_DETAIL_HOSTS + 1 }, (_, i) => host(i, 0));
  const text = renderTimeline(run(hosts))!;
  await expectValidGantt(text);
  expect(text).toMatch(/phases per host/);
  expect(text).not.toMatch(/^ {2}pull :/m);
  expect((text.match(/^ {2}prepare :done/gm) ?? []).length).toBe(hosts.length);
});

test('names are made safe for the grammar', async () => {
  expect(ganttText('[fe80::1]:22; #x\ny')).toBe('[fe80 1] 22 x y');
  const text = renderTimeline(run([host(0, 0, { host: '[fe80::1]:2222' })]))!;
  await expectValidGantt(text);
});

test('50 hosts with long logs, warnings and failures: the summary stays under 1 MiB, keeps the result and every host, and the timeline', () => {
  const hosts = Array.from({ length: 50 }, (_, i) =>
    host(i, Math.floor(i / 10), {
      result: i % 7 === 0 ? 'failed' : 'success',
      error: i % 7 === 0 ? { step: 'smoke-test', message: 'x'.repeat(2000) } : undefined,
      candidateLogs: 'log line '.repeat(5000),
      smokeTest: {
        command: 'npm run smoke',
        exitCode: 1,
        durationMs: 1000,
        tail: 'smoke line\n'.repeat(4000),
        failure: 'exited with code 1'
      },
      warnings: Array.from({ length: 20 }, (_, j) => `warning ${j} ${'w'.repeat(300)}`)
    })
  );
  const text = renderSummary(
    run(hosts, { result: 'failed', error: { step: 'smoke-test', host: hosts[0].host, message: 'exited with code 1' } }),
    { traffic: 'nginx' }
  );
  expect(Buffer.byteLength(text)).toBeLessThan(1024 * 1024);
  expect(text.split('\n')[0]).toBe('## ❌ shop deploy failed');
  expect(text).toContain('```mermaid\ngantt');
  for (const h of hosts) expect(text).toContain(`| ${h.host} |`);
});

test('a fleet too large for every detail: logs go first, then warnings and the step table; the result and every host stay', () => {
  const hosts = Array.from({ length: 2000 }, (_, i) =>
    host(i, 0, {
      host: `ip-10-0-${Math.floor(i / 250)}-${i % 250}.ec2.internal`,
      candidateLogs: 'log '.repeat(1000),
      warnings: ['w'.repeat(100)]
    })
  );
  const text = renderSummary(run(hosts), { traffic: 'nginx' });
  expect(Buffer.byteLength(text)).toBeLessThan(1024 * 1024);
  expect(text.split('\n')[0]).toBe('## ✅ shop deployed');
  expect(text.split('\n')[2]).toMatch(/^\*\*Live now:\*\* `reg\/shop:v2@sha256:b{12}…` \(green\) on 2000 hosts since /);
  for (const h of hosts) expect(text).toContain(`| ${h.host} |`);
  expect(text).not.toContain('Last log lines of the candidate');
  expect(text).toMatch(
    /_\(logs, warnings(, the step table)?(, the timeline)? left out to stay under GitHub's 1 MiB summary limit; see the log artifact\)_/
  );
  expect(text).not.toContain('summary truncated');
});
