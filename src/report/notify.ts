/**
 * notify-webhook: after every deploy or rollback, one JSON POST that Slack's incoming webhooks (and Mattermost,
 * Rocket.Chat, Teams workflows, a plain HTTP endpoint) understand: `text` plus `attachments[].fields` for people,
 * and the same facts machine-readable under `bluegreen`. A failing webhook only warns: the deploy's result
 * never depends on a chat service.
 */
import type { RunContext } from '../model/context.js';
import type { RunResult } from '../model/results.js';
import { formatMs } from './summary.js';
import type { Secrets } from '../log/secrets.js';

export const NOTIFY_TIMEOUT_MS = 10_000;
export const NOTIFY_SCHEMA_VERSION = 1;

const EMOJI: Record<string, string> = { success: '✅', 'rolled-back': '↩️', failed: '❌', skipped: '⏭️' };
const COLOR: Record<string, string> = {
  success: '#2eb67d',
  'rolled-back': '#ecb22e',
  failed: '#e01e5a',
  skipped: '#999999'
};

export interface NotifyFacts {
  result: RunResult;
  ctx: RunContext;
  /** The deployed image with its digest (the `image` output). */
  image: string;
}

export function notificationPayload({ result: r, ctx, image }: NotifyFacts) {
  const digest = /@(sha256:[a-f0-9]{64})$/.exec(image)?.[1] ?? null;
  const failedHosts = r.hosts.filter((h) => h.error && !h.abortedBy).map((h) => h.host);
  const succeeded = r.hosts.filter((h) => h.result === 'success').map((h) => h.host);
  const verb =
    r.result === 'success'
      ? r.command === 'rollback'
        ? 'rolled back'
        : 'deployed'
      : r.result === 'rolled-back'
        ? `${r.command} failed and was rolled back`
        : `${r.command} failed`;
  const cause = r.error ? { step: r.error.step, host: r.error.host ?? null, message: r.error.message } : null;
  const where = r.hosts.length === 1 ? r.hosts[0].host : `${r.hosts.length} hosts`;
  const link = ctx.runUrl ? ` (<${ctx.runUrl}|run ${ctx.runId}>)` : '';
  const text = `${EMOJI[r.result] ?? ''} ${r.app} ${verb}${image ? `: ${image}` : ''} on ${where} in ${formatMs(r.durationMs)}${link}${cause ? `\n${cause.step} failed${cause.host ? ` on ${cause.host}` : ''}: ${cause.message.slice(0, 500)}` : ''}`;
  const field = (title: string, value: string, short = true) => ({ title, value: value || '—', short });
  return {
    text,
    attachments: [
      {
        color: COLOR[r.result] ?? '#999999',
        fallback: text,
        fields: [
          field('Result', r.result),
          field('App', r.app),
          field('Image', image, false),
          field('Hosts', r.hosts.map((h) => `${h.host}: ${h.result}`).join(', '), false),
          field('Duration', formatMs(r.durationMs)),
          field('Run', ctx.runUrl, false),
          ...(cause
            ? [
                field(
                  'Cause',
                  `${cause.step}${cause.host ? ` on ${cause.host}` : ''}: ${cause.message.slice(0, 1000)}`,
                  false
                )
              ]
            : [])
        ]
      }
    ],
    bluegreen: {
      schemaVersion: NOTIFY_SCHEMA_VERSION,
      result: r.result,
      command: r.command,
      app: r.app,
      image: image || null,
      digest,
      hosts: r.hosts.map((h) => ({ host: h.host, result: h.result, activeColor: h.activeColor ?? null })),
      failedHosts,
      succeededHosts: succeeded,
      durationMs: r.durationMs,
      deployId: r.deployId,
      runUrl: ctx.runUrl || null,
      repository: ctx.repository,
      sha: ctx.sha || null,
      actor: ctx.actor,
      cause
    }
  };
}

/**
 * POSTs the payload (secrets redacted). Never throws: returns a warning to print, or undefined when delivered.
 * The URL itself is a secret (Slack's carries its token): no message names it.
 */
export async function sendNotification(
  url: string,
  facts: NotifyFacts,
  secrets: Secrets,
  timeoutMs = NOTIFY_TIMEOUT_MS
): Promise<string | undefined> {
  const body = JSON.stringify(secrets.redactDeep(notificationPayload(facts)));
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'bluegreen-ec2-action' },
      body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error'
    });
    // Read the answer so the connection is released; it is not shown (it may echo the URL).
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok)
      return `notify-webhook answered HTTP ${res.status}; the message was not delivered (the deploy result is unchanged)`;
    return undefined;
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (err.cause?.code ?? err.name);
    return `notify-webhook could not be reached (${why}); the message was not delivered (the deploy result is unchanged)`;
  }
}
