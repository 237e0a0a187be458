/** The job summary: result first, then hosts, step timings, and on failure the cause and the candidate's logs. */
import type { RunResult } from '../deploy/run.js';
import type { HostResult, StepName } from '../deploy/types.js';

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

const ICON: Record<string, string> = { success: '✅', 'rolled-back': '↩️', failed: '❌', skipped: '⏭️', ok: '✓', warning: '⚠️' };
const STEP_ORDER: StepName[] = ['connect', 'lock', 'login', 'pull', 'detect', 'start', 'health', 'smoke-test', 'switch', 'verify', 'wait-fleet', 'drain', 'stop', 'cleanup', 'switch-back', 'record'];
/** Above this many hosts the step table lists hosts as rows (it would be too wide otherwise). */
const WIDE_FLEET = 6;

export interface SummaryExtras {
  artifact?: { name: string; id?: number; url?: string; skipped?: string };
  traffic: string;
  /** With several hosts: e.g. "rolling, max-parallel 2, on-host-failure rollback-all". */
  rollout?: string;
}

export function renderSummary(r: RunResult, extras: SummaryExtras): string {
  const out: string[] = [];
  const noun = r.command === 'rollback' ? 'rollback' : 'deploy';
  const what = r.result === 'success' ? (r.command === 'rollback' ? 'rolled back' : 'deployed') : r.result === 'rolled-back' ? `${noun} failed and was rolled back` : `${noun} failed`;
  const image = r.image || [...new Set(r.hosts.map((h) => h.image))].join(', ');
  out.push(`## ${ICON[r.result]} ${escapeHtml(r.app)} ${what}`);
  out.push('');
  out.push(`**Result: \`${r.result}\`** · image \`${escapeHtml(image)}\` · ${r.hosts.length || 0} host(s) · ${formatMs(r.durationMs)} · traffic \`${extras.traffic}\`${extras.rollout && r.hosts.length > 1 ? ` · rollout ${escapeHtml(extras.rollout)}` : ''} · deploy \`${r.deployId}\``);
  out.push('');
  if (r.error) {
    out.push(`> **Failed at \`${r.error.step}\`${r.error.host ? ` on \`${escapeHtml(r.error.host)}\`` : ''}:** ${escapeHtml(r.error.message).replace(/\n/g, '<br>')}`);
    if (r.hosts.some((h) => h.switchBackFailed)) out.push('>\n> **Switching back did not complete** on ' + r.hosts.filter((h) => h.switchBackFailed).map((h) => `\`${escapeHtml(h.host)}\``).join(', ') + ': check which version serves there.');
    else if (r.result === 'rolled-back') out.push('>\n> Traffic was switched back: the previous version is serving.');
    else if (r.hosts.some((h) => h.error) && r.hosts.every((h) => !h.switched)) out.push('>\n> The live version was not touched.');
    const aborted = r.hosts.filter((h) => h.abortedBy);
    if (aborted.length) {
      const back = aborted.filter((h) => h.result === 'rolled-back').map((h) => `\`${escapeHtml(h.host)}\``);
      const untouched = aborted.filter((h) => h.result !== 'rolled-back').map((h) => `\`${escapeHtml(h.host)}\``);
      out.push(`>\n> All-or-nothing (on-host-failure: rollback-all): ${back.length ? `switched back ${back.join(', ')}` : 'no other host had switched'}${untouched.length ? `; untouched ${untouched.join(', ')}` : ''}.`);
    }
    out.push('');
  }
  if (r.hosts.length) {
    const batched = new Set(r.hosts.map((h) => h.batch ?? 0)).size > 1;
    out.push(`| Host |${batched ? ' Batch |' : ''} Result | Live | Previous | Image digest | Cut-over | Total |`);
    out.push(`| --- |${batched ? ' ---: |' : ''} --- | --- | --- | --- | --- | --- |`);
    for (const h of r.hosts) {
      const cut = h.downtimeMs !== undefined ? `${formatMs(h.cutoverMs)} (downtime)` : formatMs(h.cutoverMs);
      const why = h.abortedBy ? ` (${cell(h.abortedBy)} failed)` : '';
      out.push(`| ${cell(h.host)} |${batched ? ` ${(h.batch ?? 0) + 1} |` : ''} ${ICON[h.result]} ${h.result}${why} | ${h.activeColor ?? '—'} | ${h.previousColor ?? '—'} | ${h.digest ? `\`${h.digest.slice(0, 19)}…\`` : '—'} | ${cut} | ${formatMs(h.durationMs)} |`);
    }
    out.push('');
    out.push('### Steps');
    out.push('');
    const names = STEP_ORDER.filter((n) => r.hosts.some((h) => h.steps.some((s) => s.name === n)));
    if (r.hosts.length > WIDE_FLEET) {
      out.push(`| Host | ${[...r.steps.map((x) => `${x.name} (runner)`), ...names].join(' | ')} | total |`);
      out.push(`| --- | ${[...r.steps, ...names].map(() => '---:').join(' | ')} | ---: |`);
      for (const h of r.hosts) {
        out.push(`| ${cell(h.host)} | ${[...r.steps.map((x) => `${stepIcon(x.status)} ${formatMs(x.durationMs)}`.trim()), ...names.map((n) => stepCell(h, n))].join(' | ')} | **${formatMs(h.durationMs)}** |`);
      }
      out.push('');
    }
  }
  if (r.hosts.length && r.hosts.length <= WIDE_FLEET) {
    const names = STEP_ORDER.filter((n) => r.hosts.some((h) => h.steps.some((s) => s.name === n)));
    out.push(`| Step | ${r.hosts.map((h) => cell(h.host)).join(' | ')} |`);
    out.push(`| --- | ${r.hosts.map(() => '---:').join(' | ')} |`);
    for (const r0 of r.steps) out.push(`| ${r0.name} (runner) | ${r.hosts.map(() => `${stepIcon(r0.status)} ${formatMs(r0.durationMs)}`).join(' | ')} |`);
    for (const n of names) {
      out.push(`| ${n} | ${r.hosts.map((h) => stepCell(h, n)).join(' | ')} |`);
    }
    out.push(`| **total** | ${r.hosts.map((h) => `**${formatMs(h.durationMs)}**`).join(' | ')} |`);
    out.push('');
  }
  for (const h of r.hosts) {
    if (h.warnings.length) {
      out.push(`**Warnings on ${escapeHtml(h.host)}:**`);
      for (const w of h.warnings) out.push(`- ${escapeHtml(w)}`);
      out.push('');
    }
    if (h.smokeTest) {
      const t = h.smokeTest;
      const status = t.failure ? `❌ ${escapeHtml(t.failure)}` : `✅ passed in ${formatMs(t.durationMs)}`;
      const tail = t.tail.length > LOGS_LIMIT ? `…${t.tail.slice(-LOGS_LIMIT)}` : t.tail;
      out.push(`<details${t.failure ? ' open' : ''}><summary>Smoke test on ${escapeHtml(h.host)}: ${status} — last lines of <code>${escapeHtml(t.command.split('\n')[0].slice(0, 120))}</code></summary>\n\n<pre>${escapeHtml(tail) || '(no output)'}</pre>\n</details>\n`);
    }
    if (h.candidateLogs) {
      const logs = h.candidateLogs.length > LOGS_LIMIT ? `…${h.candidateLogs.slice(-LOGS_LIMIT)}` : h.candidateLogs;
      out.push(`<details open><summary>Last log lines of the candidate on ${escapeHtml(h.host)}</summary>\n\n<pre>${escapeHtml(logs)}</pre>\n</details>\n`);
    }
  }
  if (extras.artifact) {
    const a = extras.artifact;
    if (a.id !== undefined) out.push(`Logs and metrics: artifact ${a.url ? `[\`${escapeHtml(a.name)}\`](${a.url})` : `\`${escapeHtml(a.name)}\``} (id ${a.id}).`);
    else if (a.skipped) out.push(`Logs and metrics were not uploaded: ${escapeHtml(a.skipped)}`);
  }
  return fitToLimit(out);
}

const TRUNCATED = "\n\n… (summary truncated to stay under GitHub's 1 MiB limit; see the log artifact)\n";

/** Keeps whole blocks while they fit in SUMMARY_LIMIT bytes (no half-open HTML), then cuts by bytes. */
function fitToLimit(blocks: string[]): string {
  const budget = SUMMARY_LIMIT - Buffer.byteLength(TRUNCATED);
  let used = 0;
  const kept: string[] = [];
  for (const block of blocks) {
    const size = Buffer.byteLength(block) + 1;
    if (used + size > budget) {
      if (kept.length === 0 || !block.startsWith('<details')) {
        // A plain block (e.g. a giant error message): keep the part that fits, cut on a character boundary.
        const room = budget - used - 1;
        if (room > 0 && !block.startsWith('<details')) kept.push(Buffer.from(block).subarray(0, room).toString('utf8').replace(/\uFFFD$/, ''));
      }
      return kept.join('\n') + TRUNCATED;
    }
    kept.push(block);
    used += size;
  }
  return kept.join('\n') + '\n';
}

function stepIcon(status: string): string {
  return status === 'failed' ? '❌' : status === 'warning' ? '⚠️' : '';
}

function stepCell(h: HostResult, n: StepName): string {
  const s = h.steps.filter((x) => x.name === n);
  if (!s.length) return '—';
  const ms = s.reduce((a, b) => a + b.durationMs, 0);
  const status = s.some((x) => x.status === 'failed') ? 'failed' : s.some((x) => x.status === 'warning') ? 'warning' : 'ok';
  return `${stepIcon(status)} ${formatMs(ms)}`.trim();
}
