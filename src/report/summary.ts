/**
 * The job summary: the result and a one-line outcome first (what is live, where, since when, what to do), then
 * hosts, step timings and their timeline (Mermaid gantt), and on failure the cause and the candidate's logs.
 */
import type { Traffic } from '../model/config.js';
import type { RunResult } from '../model/results.js';
import type { HostResult, StepName } from '../model/results.js';
import { summarySection } from '../traffic/registry/index.js';
import { renderTimeline } from './timeline.js';

/** GitHub rejects summaries over 1 MiB per step; stay well below it. */
export const SUMMARY_LIMIT = 900 * 1024;
const LOGS_LIMIT = 16 * 1024;

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Escapes text for a markdown table cell. */
function cell(s: string): string {
  return escapeHtml(s).replace(/\|/g, '&#124;').replace(/\n/g, ' ');
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

const ICON: Record<string, string> = {
  success: '✅',
  'rolled-back': '↩️',
  failed: '❌',
  skipped: '⏭️',
  ok: '✓',
  warning: '⚠️'
};
const STEP_ORDER: StepName[] = [
  'connect',
  'lock',
  'login',
  'pull',
  'detect',
  'start',
  'health',
  'smoke-test',
  'switch',
  'verify',
  'wait-fleet',
  'drain',
  'stop',
  'cleanup',
  'switch-back',
  'record'
];
/** Above this many hosts the step table lists hosts as rows (it would be too wide otherwise). */
const WIDE_FLEET = 6;

export interface SummaryExtras {
  artifact?: { name: string; id?: number; url?: string; skipped?: string };
  traffic: string;
  /** With several hosts: e.g. "rolling, max-parallel 2, on-host-failure rollback-all". */
  rollout?: string;
  /** The running workflow (GITHUB_WORKFLOW_REF), for the exact `gh workflow run` rollback line. */
  workflow?: { file: string; ref?: string };
}

/** owner/repo/.github/workflows/deploy.yml@refs/heads/main → { file: deploy.yml, ref: main }. */
export function workflowFromRef(ref: string | undefined): SummaryExtras['workflow'] {
  const m = /\/\.github\/workflows\/([^/@]+)@(.+)$/.exec(ref ?? '');
  if (!m) return undefined;
  return { file: m[1], ref: m[2].replace(/^refs\/(heads|tags)\//, '') };
}

export function renderSummary(r: RunResult, extras: SummaryExtras): string {
  const out: Block[] = [];
  const push = (text: string, rank: Rank = KEEP) => out.push({ text, rank });
  const noun = r.command === 'rollback' ? 'rollback' : 'deploy';
  const what =
    r.result === 'success'
      ? r.command === 'rollback'
        ? 'rolled back'
        : 'deployed'
      : r.result === 'rolled-back'
        ? `${noun} failed and was rolled back`
        : `${noun} failed`;
  const image = r.image || [...new Set(r.hosts.map((h) => h.image))].join(', ');
  push(`## ${ICON[r.result]} ${escapeHtml(r.app)} ${what}`);
  push('');
  push(outcomeLine(r, extras));
  push('');
  push(
    `**Result: \`${r.result}\`** · image \`${escapeHtml(image)}\` · ${r.hosts.length || 0} host(s) · ${formatMs(r.durationMs)} · traffic \`${extras.traffic}\`${extras.rollout && r.hosts.length > 1 ? ` · rollout ${escapeHtml(extras.rollout)}` : ''} · deploy \`${r.deployId}\``
  );
  push('');
  if (r.error) {
    push(
      `> **Failed at \`${r.error.step}\`${r.error.host ? ` on \`${escapeHtml(r.error.host)}\`` : ''}:** ${escapeHtml(r.error.message).replace(/\n/g, '<br>')}`
    );
    if (r.hosts.some((h) => h.switchBackFailed))
      push(
        '>\n> **Switching back did not complete** on ' +
          r.hosts
            .filter((h) => h.switchBackFailed)
            .map((h) => `\`${escapeHtml(h.host)}\``)
            .join(', ') +
          ': check which version serves there.'
      );
    else if (r.result === 'rolled-back') push('>\n> Traffic was switched back: the previous version is serving.');
    else if (r.hosts.some((h) => h.error) && r.hosts.every((h) => !h.switched))
      push('>\n> The live version was not touched.');
    const aborted = r.hosts.filter((h) => h.abortedBy);
    if (aborted.length) {
      const back = aborted.filter((h) => h.result === 'rolled-back').map((h) => `\`${escapeHtml(h.host)}\``);
      const untouched = aborted.filter((h) => h.result !== 'rolled-back').map((h) => `\`${escapeHtml(h.host)}\``);
      push(
        `>\n> All-or-nothing (on-host-failure: rollback-all): ${back.length ? `switched back ${back.join(', ')}` : 'no other host had switched'}${untouched.length ? `; untouched ${untouched.join(', ')}` : ''}.`
      );
    }
    push('');
  }
  if (r.hosts.length) {
    const batched = new Set(r.hosts.map((h) => h.batch ?? 0)).size > 1;
    push(`| Host |${batched ? ' Batch |' : ''} Result | Live | Previous | Image digest | Cut-over | Total |`);
    push(`| --- |${batched ? ' ---: |' : ''} --- | --- | --- | --- | --- | --- |`);
    for (const h of r.hosts) {
      const cut = h.downtimeMs !== undefined ? `${formatMs(h.cutoverMs)} (downtime)` : formatMs(h.cutoverMs);
      const why = h.abortedBy ? ` (${cell(h.abortedBy)} failed)` : '';
      push(
        `| ${cell(h.host)} |${batched ? ` ${(h.batch ?? 0) + 1} |` : ''} ${ICON[h.result]} ${h.result}${why} | ${h.activeColor ?? '—'} | ${h.previousColor ?? '—'} | ${h.digest ? `\`${h.digest.slice(0, 19)}…\`` : '—'} | ${cut} | ${formatMs(h.durationMs)} |`
      );
    }
    push('');
    const names = STEP_ORDER.filter((n) => r.hosts.some((h) => h.steps.some((s) => s.name === n)));
    const table: string[] = ['### Steps', ''];
    if (r.hosts.length > WIDE_FLEET) {
      table.push(`| Host | ${[...r.steps.map((x) => `${x.name} (runner)`), ...names].join(' | ')} | total |`);
      table.push(`| --- | ${[...r.steps, ...names].map(() => '---:').join(' | ')} | ---: |`);
      for (const h of r.hosts) {
        table.push(
          `| ${cell(h.host)} | ${[...r.steps.map((x) => `${stepIcon(x.status)} ${formatMs(x.durationMs)}`.trim()), ...names.map((n) => stepCell(h, n))].join(' | ')} | **${formatMs(h.durationMs)}** |`
        );
      }
    } else {
      table.push(`| Step | ${r.hosts.map((h) => cell(h.host)).join(' | ')} |`);
      table.push(`| --- | ${r.hosts.map(() => '---:').join(' | ')} |`);
      for (const r0 of r.steps)
        table.push(
          `| ${r0.name} (runner) | ${r.hosts.map(() => `${stepIcon(r0.status)} ${formatMs(r0.durationMs)}`).join(' | ')} |`
        );
      for (const n of names) table.push(`| ${n} | ${r.hosts.map((h) => stepCell(h, n)).join(' | ')} |`);
      table.push(`| **total** | ${r.hosts.map((h) => `**${formatMs(h.durationMs)}**`).join(' | ')} |`);
    }
    push(table.join('\n') + '\n', STEPS);
    // The router's own section (alb: the listener's weights and each target's health over time).
    const routed = summarySection(extras.traffic as Traffic, r, cell);
    if (routed) push(routed, STEPS);
    const timeline = renderTimeline(r);
    // Next to the tables: the same steps on the wall clock, waits between batches and at the gate included.
    if (timeline) push(`### Timeline\n\n\`\`\`mermaid\n${timeline}\n\`\`\`\n`, TIMELINE);
  }
  // Detail per host, shortened so that many hosts with long logs still fit (the budget is shared).
  const logBlocks = r.hosts.filter((h) => h.candidateLogs).length + r.hosts.filter((h) => h.smokeTest).length;
  const logLimit = Math.max(1024, Math.min(LOGS_LIMIT, Math.floor(LOGS_BUDGET / Math.max(1, logBlocks))));
  const tailOf = (text: string) =>
    Buffer.byteLength(text) > logLimit
      ? `…${Buffer.from(text)
          .subarray(-logLimit)
          .toString('utf8')
          .replace(/^\uFFFD+/, '')}`
      : text;
  for (const h of r.hosts) {
    if (h.warnings.length) {
      const shown = h.warnings
        .slice(0, WARNINGS_PER_HOST)
        .map((w) => `- ${escapeHtml(w.length > WARNING_CHARS ? `${w.slice(0, WARNING_CHARS)}…` : w)}`);
      if (h.warnings.length > WARNINGS_PER_HOST)
        shown.push(`- … and ${h.warnings.length - WARNINGS_PER_HOST} more (see the log)`);
      push(`**Warnings on ${escapeHtml(h.host)}:**\n${shown.join('\n')}\n`, WARNINGS);
    }
    if (h.smokeTest) {
      const t = h.smokeTest;
      const status = t.failure ? `❌ ${escapeHtml(t.failure)}` : `✅ passed in ${formatMs(t.durationMs)}`;
      push(
        `<details${t.failure ? ' open' : ''}><summary>Smoke test on ${escapeHtml(h.host)}: ${status} — last lines of <code>${escapeHtml(t.command.split('\n')[0].slice(0, 120))}</code></summary>\n\n<pre>${escapeHtml(tailOf(t.tail)) || '(no output)'}</pre>\n</details>\n`,
        LOGS
      );
    }
    if (h.candidateLogs) {
      push(
        `<details open><summary>Last log lines of the candidate on ${escapeHtml(h.host)}</summary>\n\n<pre>${escapeHtml(tailOf(h.candidateLogs))}</pre>\n</details>\n`,
        LOGS
      );
    }
  }
  if (extras.artifact) {
    const a = extras.artifact;
    if (a.id !== undefined)
      push(
        `Logs and metrics: artifact ${a.url ? `[\`${escapeHtml(a.name)}\`](${a.url})` : `\`${escapeHtml(a.name)}\``} (id ${a.id}).`
      );
    else if (a.skipped) push(`Logs and metrics were not uploaded: ${escapeHtml(a.skipped)}`);
  }
  return fitToLimit(out);
}

/** What may be dropped to fit, first to last: logs, warnings, the step table, the timeline; never the result. */
type Rank = number;
const KEEP: Rank = 0;
const TIMELINE: Rank = 1;
const STEPS: Rank = 2;
const WARNINGS: Rank = 3;
const LOGS: Rank = 4;
interface Block {
  text: string;
  rank: Rank;
}
/** Shared by every host's logs and smoke-test output (each gets at most LOGS_LIMIT). */
const LOGS_BUDGET = 384 * 1024;
const WARNINGS_PER_HOST = 10;
const WARNING_CHARS = 2000;

/** The line a person reads first: what is live now, where, since when, and what to do (the exact rollback). */
export function outcomeLine(r: RunResult, extras: Pick<SummaryExtras, 'workflow'>): string {
  if (!r.hosts.length)
    return `**Nothing changed:** no host was contacted${r.error ? ` (\`${r.error.step}\` failed)` : ''}; whatever served before still serves. **Next:** fix the cause below and re-run.`;
  const list = (hs: HostResult[]) =>
    hs.length > 5 ? `${hs.length} hosts` : hs.map((h) => `\`${escapeHtml(h.host)}\``).join(', ');
  const colors = (hs: HostResult[]) => [...new Set(hs.map((h) => h.activeColor).filter(Boolean))].join('/');
  const fresh = r.hosts.filter((h) => h.result === 'success');
  const unknown = r.hosts.filter((h) => h.switchBackFailed);
  const old = r.hosts.filter((h) => h.result !== 'success' && !h.switchBackFailed);
  const parts: string[] = [];
  if (fresh.length) {
    const images = [
      ...new Set(
        fresh.map((h) =>
          h.digest ? `${h.image.replace(/@sha256:[a-f0-9]+$/, '')}@${h.digest.slice(0, 19)}…` : h.image
        )
      )
    ];
    const since =
      latest(fresh.flatMap((h) => h.steps.filter((s) => s.name === 'switch').map((s) => s.endedAt))) ?? r.endedAt;
    parts.push(`\`${escapeHtml(images.join(', '))}\` (${colors(fresh)}) on ${list(fresh)} since ${utc(since)}`);
  }
  if (old.length) {
    const back = old.filter((h) => h.result === 'rolled-back');
    const untouched = old.filter((h) => h.result !== 'rolled-back');
    if (untouched.length)
      parts.push(
        `the previous version${colors(untouched) ? ` (${colors(untouched)})` : ''}, unchanged, on ${list(untouched)}`
      );
    if (back.length)
      parts.push(
        `the previous version (${colors(back)}) on ${list(back)} again since ${utc(r.endedAt)} (switched back)`
      );
  }
  if (unknown.length) parts.push(`**unknown** on ${list(unknown)} (switching back did not complete)`);
  const live = `**Live now:** ${parts.join('; ')}.`;

  const hostsArg = (hs: HostResult[]) =>
    hs.length === r.hosts.length ? '' : `, \`hosts: ${escapeHtml(hs.map((h) => h.host).join(','))}\``;
  const gh = extras.workflow
    ? ` — e.g. \`gh workflow run ${escapeHtml(extras.workflow.file)}${extras.workflow.ref ? ` --ref ${escapeHtml(extras.workflow.ref)}` : ''} -f command=rollback\` if the workflow takes a \`command\` input like the example`
    : '';
  let next: string;
  // The gh line rolls back every host of the workflow: only offered when that is what is meant (a rollback on a
  // host that kept the previous version would take it back one version further).
  const ghFor = (hs: HostResult[]) => (hostsArg(hs) ? '' : gh);
  if (unknown.length)
    next = `**Next:** check what serves on ${list(unknown)}; to force the previous colour there run the action with \`command: rollback\`${hostsArg(unknown)}${ghFor(unknown)}.`;
  else if (r.result === 'success' && r.command === 'rollback')
    next = `**To go forward again:** run the action with \`command: rollback\` once more (the version rolled away from is the standby)${gh}.`;
  else if (r.result === 'success')
    next = `**If it misbehaves:** run the action with \`command: rollback\` (the previous version is kept stopped)${gh}.`;
  else if (fresh.length)
    next = `**Next:** fix the cause below and re-run, or put ${list(fresh)} back with \`command: rollback\`${hostsArg(fresh)} (only those hosts: the others still run the previous version)${ghFor(fresh)}.`;
  else next = `**Next:** fix the cause below and re-run; there is nothing to roll back.`;
  return `${live} ${next}`;
}

function latest(isos: string[]): string | undefined {
  return isos.length ? isos.reduce((a, b) => (Date.parse(a) >= Date.parse(b) ? a : b)) : undefined;
}

function utc(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

const TRUNCATED = "\n\n… (summary truncated to stay under GitHub's 1 MiB limit; see the log artifact)\n";
const DROPPED = (what: string) =>
  `_(${what} left out to stay under GitHub's 1 MiB summary limit; see the log artifact)_`;

/**
 * Fits the blocks in SUMMARY_LIMIT bytes: drops whole detail blocks, least important first (logs, warnings, the
 * step table, the timeline), and says so; only if the kept blocks still do not fit (a giant error message) it
 * cuts by bytes, on a character boundary, and never inside HTML.
 */
function fitToLimit(blocks: Block[]): string {
  const size = (bs: Block[]) => bs.reduce((n, b) => n + Buffer.byteLength(b.text) + 1, 0);
  let kept = blocks;
  const dropped: string[] = [];
  const budget = SUMMARY_LIMIT - Buffer.byteLength(TRUNCATED) - 512;
  for (const [rank, what] of [
    [LOGS, 'logs'],
    [WARNINGS, 'warnings'],
    [STEPS, 'the step table'],
    [TIMELINE, 'the timeline']
  ] as const) {
    if (size(kept) <= budget) break;
    kept = kept.filter((b) => b.rank !== rank);
    dropped.push(what);
  }
  if (dropped.length) kept = [...kept, { text: DROPPED(dropped.join(', ')), rank: KEEP }];
  if (size(kept) <= budget + 512) return kept.map((b) => b.text).join('\n') + '\n';
  let used = 0;
  const out: string[] = [];
  for (const { text } of kept) {
    const n = Buffer.byteLength(text) + 1;
    if (used + n > budget) {
      const room = budget - used - 1;
      if (room > 0 && !text.startsWith('<details'))
        out.push(
          Buffer.from(text)
            .subarray(0, room)
            .toString('utf8')
            .replace(/\uFFFD$/, '')
        );
      return out.join('\n') + TRUNCATED;
    }
    out.push(text);
    used += n;
  }
  return out.join('\n') + TRUNCATED;
}

function stepIcon(status: string): string {
  return status === 'failed' ? '❌' : status === 'warning' ? '⚠️' : '';
}

function stepCell(h: HostResult, n: StepName): string {
  const s = h.steps.filter((x) => x.name === n);
  if (!s.length) return '—';
  const ms = s.reduce((a, b) => a + b.durationMs, 0);
  const status = s.some((x) => x.status === 'failed')
    ? 'failed'
    : s.some((x) => x.status === 'warning')
      ? 'warning'
      : 'ok';
  return `${stepIcon(status)} ${formatMs(ms)}`.trim();
}
