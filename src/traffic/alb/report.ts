/** The job summary's "Load balancer" section: the listener's weights before and after, and each host's targets over time. */
import type { RunResult } from '../../model/results.js';
import { describeWeights } from './listener-switch.js';
import type { HealthSample } from '../../model/load-balancer.js';

const clock = (iso: string) => iso.slice(11, 23);

/** One target's states in order: "16:30:01.120 initial → 16:30:03.410 healthy". */
function timeline(samples: HealthSample[]): string {
  return samples
    .map((s) => `${clock(s.at)} ${s.state}${s.reason && s.state !== 'healthy' ? ` (${s.reason})` : ''}`)
    .join(' → ');
}

/** `cell` escapes text for a markdown table cell (the summary's own). */
export function renderAlbSection(r: RunResult, cell: (s: string) => string): string | undefined {
  const hosts = r.hosts.filter((h) => h.loadBalancer?.health.length);
  // The listener's line only once it was read (a run refused before, e.g. at the lock, has nothing to say of it).
  const listener = r.alb?.before || r.alb?.changes.length ? r.alb : undefined;
  if (!listener && !hosts.length) return undefined;
  const out = ['### Load balancer', ''];
  if (listener) {
    const a = listener;
    const what = a.rule ? `Rule \`${cell(a.rule)}\`` : `Listener \`${cell(a.listener)}\``;
    const before = a.before ? describeWeights(a.before) : 'not read';
    const after = a.after ? describeWeights(a.after) : before;
    out.push(
      `${what} (blue: \`${cell(a.groups.blue)}\`, green: \`${cell(a.groups.green)}\`): weights before **${before}** → after **${after}**.`
    );
    if (a.allHealthyAt) out.push(`Every candidate was healthy in its group at ${clock(a.allHealthyAt)}.`);
    out.push(
      a.changes.length
        ? `Changes: ${a.changes.map((c) => `${clock(c.at)} ${c.kind} (${describeWeights(c.weights)})`).join(' · ')}.`
        : 'The listener was not changed.'
    );
    out.push('');
  }
  if (hosts.length) {
    out.push('| Host | Target | Health as the load balancer reported it |', '| --- | --- | --- |');
    for (const h of hosts) {
      const byTarget = new Map<string, HealthSample[]>();
      for (const s of h.loadBalancer!.health) {
        const key = `${s.target} (${s.color}, ${s.group})`;
        byTarget.set(key, [...(byTarget.get(key) ?? []), s]);
      }
      for (const [target, samples] of byTarget)
        out.push(`| ${cell(h.host)} | ${cell(target)} | ${cell(timeline(samples))} |`);
    }
    out.push('');
  }
  return out.join('\n') + '\n';
}
