/**
 * The job summary's timeline: a Mermaid gantt chart (GitHub renders ```mermaid blocks in job summaries) of the
 * steps per host on the wall clock, so waits are visible: later rollout batches, the all-or-nothing gate
 * (wait-fleet), batch-wait-seconds. Many hosts get one bar per phase instead of one per step.
 */
import type { RunResult } from '../model/results.js';
import type { HostResult, StepName, StepRecord } from '../model/results.js';

/** Above this many hosts a host's steps are merged into phases (the chart stays readable and small). */
export const TIMELINE_DETAIL_HOSTS = 12;

const PHASES: Array<{ name: string; steps: StepName[] }> = [
  { name: 'prepare', steps: ['connect', 'lock', 'login', 'pull', 'detect', 'start'] },
  { name: 'check', steps: ['health', 'smoke-test'] },
  { name: 'switch', steps: ['switch', 'verify'] },
  { name: 'wait-fleet', steps: ['wait-fleet'] },
  { name: 'finish', steps: ['drain', 'stop', 'cleanup', 'record'] },
  { name: 'undo', steps: ['switch-back'] }
];

interface Bar {
  name: string;
  status: StepRecord['status'] | 'queued';
  start: number;
  end: number;
}

/**
 * Text safe in a gantt section or task name: the grammar ends a name at ":", "#" or ";" and a line at a line
 * break, and the labels become SVG text: only plain characters are kept, anything else becomes a space.
 */
export function ganttText(s: string): string {
  return (
    s
      .replace(/[^A-Za-z0-9 ._()[\]/@+-]/g, ' ')
      .replace(/\s+/g, ' ')
      .trim() || '-'
  );
}

function tag(status: Bar['status']): string {
  // crit: red, active: highlighted, done: grey (the normal case)
  return status === 'failed' ? 'crit, ' : status === 'warning' ? 'active, ' : status === 'queued' ? '' : 'done, ';
}

function bars(h: HostResult, runStart: number, detail: boolean): Bar[] {
  const steps = h.steps
    .map((s) => ({
      name: s.name as string,
      status: s.status as Bar['status'],
      start: Date.parse(s.startedAt),
      end: Date.parse(s.endedAt)
    }))
    .filter((s) => Number.isFinite(s.start) && Number.isFinite(s.end));
  const out: Bar[] = [];
  // A host of a later batch waits for the batches before it (after its lock, when all-or-nothing took it up front).
  const began = h.startedAt ? Date.parse(h.startedAt) : NaN;
  if ((h.batch ?? 0) > 0 && Number.isFinite(began)) {
    const from = Math.max(runStart, ...steps.filter((s) => s.end <= began).map((s) => s.end));
    if (began - from > 0) out.push({ name: `waits for batch ${h.batch}`, status: 'queued', start: from, end: began });
  }
  if (detail) return [...out, ...steps];
  for (const p of PHASES) {
    const of = h.steps.filter((s) => (p.steps as string[]).includes(s.name));
    if (!of.length) continue;
    const status: Bar['status'] = of.some((s) => s.status === 'failed')
      ? 'failed'
      : of.some((s) => s.status === 'warning')
        ? 'warning'
        : 'ok';
    out.push({
      name: p.name,
      status,
      start: Math.min(...of.map((s) => Date.parse(s.startedAt))),
      end: Math.max(...of.map((s) => Date.parse(s.endedAt)))
    });
  }
  // cleanup also undoes a failed start: show it where it happened
  return out.filter((b) => Number.isFinite(b.start) && Number.isFinite(b.end));
}

/** The Mermaid gantt source (without the ``` fence), or undefined when there is nothing timed. */
export function renderTimeline(r: RunResult): string | undefined {
  const runStart = Date.parse(r.startedAt);
  const detail = r.hosts.length <= TIMELINE_DETAIL_HOSTS;
  const sections: Array<{ title: string; bars: Bar[] }> = [];
  const runner = r.steps.map((s) => ({
    name: s.name as string,
    status: s.status as Bar['status'],
    start: Date.parse(s.startedAt),
    end: Date.parse(s.endedAt)
  }));
  if (runner.length) sections.push({ title: 'runner', bars: runner });
  const batched = new Set(r.hosts.map((h) => h.batch ?? 0)).size > 1;
  for (const h of r.hosts) {
    const b = bars(h, runStart, detail);
    if (b.length)
      sections.push({ title: `${h.host}${batched ? ` (batch ${(h.batch ?? 0) + 1})` : ''} ${h.result}`, bars: b });
  }
  if (!sections.length) return undefined;
  const lines = [
    'gantt',
    `  title ${ganttText(`${r.app} ${r.command} ${r.deployId}${detail ? '' : ' (phases per host)'}`)}`,
    '  dateFormat x',
    '  axisFormat %H:%M:%S',
    '  todayMarker off'
  ];
  for (const s of sections) {
    lines.push(`  section ${ganttText(s.title)}`);
    // A step under a millisecond still gets a visible sliver.
    for (const b of s.bars)
      lines.push(`  ${ganttText(b.name)} :${tag(b.status)}${b.start}, ${Math.max(b.end, b.start + 1)}`);
  }
  return lines.join('\n');
}
