/** Job summary of `command: status`. */
import { escapeHtml, formatMs, SUMMARY_LIMIT } from '../report/summary.js';
import { statusLine } from '../traffic/registry/index.js';
import type { HostStatus } from '../model/status.js';
import type { StatusReport } from '../model/status.js';

const cell = (s: string | undefined) => (s ? escapeHtml(s).replace(/\|/g, '&#124;').replace(/\n/g, ' ') : '—');
const ICON = { error: '❌', warning: '⚠️', info: 'ℹ️' } as const;

function uptime(sec: number | undefined): string {
  if (sec === undefined) return '—';
  if (sec < 120) return `${sec} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  if (sec < 172800) return `${Math.round(sec / 3600)} h`;
  return `${Math.round(sec / 86400)} d`;
}

function hostSection(h: HostStatus): string[] {
  const out = [`### ${escapeHtml(h.host)}${h.live ? ` — live: **${h.live}**` : ''}`, ''];
  if (!h.reachable) return [...out, `❌ ${escapeHtml(h.error ?? 'unreachable')}`, ''];
  out.push('| Colour | Role | State | Image | Digest | Deployed | Uptime | Health | Restarts | CPU | Memory |');
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const c of ['blue', 'green'] as const) {
    const s = h.colors[c];
    if (!s.exists) {
      out.push(`| ${c} | — | missing | — | — | — | — | — | — | — | — |`);
      continue;
    }
    const health = s.health
      ? s.health.ok
        ? `✅ ${s.health.status}`
        : `❌ ${s.health.status ?? cell(s.health.error)}`
      : '—';
    const deployed = s.deployedAt
      ? `${cell(s.deployedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))}${s.actor ? ` by ${cell(s.actor)}` : ''}${s.runUrl ? ` ([run](${s.runUrl}))` : ''}`
      : '—';
    out.push(
      `| ${c} | ${s.role} | ${cell(s.state)} | \`${cell(s.image)}\` | ${s.digest ? `\`${s.digest.slice(0, 19)}…\`` : '—'} | ${deployed} | ${uptime(s.uptimeSeconds)} | ${health} | ${s.restartCount ?? '—'} | ${cell(s.cpuPercent)} | ${cell(s.memUsage)} |`
    );
  }
  out.push('');
  // The router's own view (haproxy: its servers; alb: the load balancer's targets).
  const routerLine = statusLine(h, cell);
  if (routerLine) out.push(routerLine);
  if (h.upstream)
    out.push(
      `nginx upstream \`${cell(h.upstream.file)}\`: ${h.upstream.exists ? `127.0.0.1:${h.upstream.port ?? '?'} (${h.upstream.color ?? 'no colour'})` : 'missing'} · lock: ${h.lock.held ? 'held' : 'free'}${h.disk ? ` · disk ${h.disk.usedPercent}% used` : ''}`
    );
  else out.push(`lock: ${h.lock.held ? 'held' : 'free'}${h.disk ? ` · disk ${h.disk.usedPercent}% used` : ''}`);
  out.push('');
  if (h.findings.length) {
    out.push('**Findings**', '');
    for (const f of h.findings) out.push(`- ${ICON[f.level]} ${escapeHtml(f.message)}`);
    out.push('');
  }
  if (h.history.length) {
    out.push(
      '<details><summary>Recent deploys and rollbacks</summary>',
      '',
      '| When | Command | Result | Image | Colour | Took | By |',
      '| --- | --- | --- | --- | --- | --- | --- |'
    );
    for (const e of h.history) {
      const r = e as {
        at?: string;
        command?: string;
        result?: string;
        image?: string;
        color?: string;
        durationMs?: number;
        actor?: string;
        runUrl?: string;
      };
      out.push(
        `| ${cell(r.at)} | ${cell(r.command)} | ${cell(r.result)} | \`${cell(r.image)}\` | ${cell(r.color)} | ${formatMs(r.durationMs)} | ${cell(r.actor)}${r.runUrl ? ` ([run](${r.runUrl}))` : ''} |`
      );
    }
    out.push('', '</details>', '');
  }
  for (const c of ['blue', 'green'] as const) {
    const logs = h.colors[c].logs;
    if (logs)
      out.push(
        `<details><summary>Recent log lines of ${c}</summary>\n\n<pre>${escapeHtml(logs.slice(-16_000))}</pre>\n</details>\n`
      );
  }
  return out;
}

export function renderStatusSummary(r: StatusReport): string {
  const errors = r.hosts.flatMap((h) => h.findings.filter((f) => f.level === 'error'));
  const warnings = r.hosts.flatMap((h) => h.findings.filter((f) => f.level === 'warning'));
  const head = errors.length ? '❌' : warnings.length ? '⚠️' : '✅';
  const out = [
    `## ${head} ${escapeHtml(r.app)} status — ${r.hosts.length} host(s)`,
    '',
    `${errors.length} error(s), ${warnings.length} warning(s) · read in ${formatMs(r.durationMs)} · nothing was changed`,
    ''
  ];
  for (const h of r.hosts) out.push(...hostSection(h));
  let text = out.join('\n') + '\n';
  if (Buffer.byteLength(text) > SUMMARY_LIMIT)
    text =
      Buffer.from(text)
        .subarray(0, SUMMARY_LIMIT - 200)
        .toString('utf8')
        .replace(/\uFFFD$/, '') + '\n\n… (truncated; see the status-json output)\n';
  return text;
}
