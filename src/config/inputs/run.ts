/** How the run behaves and reports: drain, stop, lock, verify, images, status, artifact, summary, smoke test, notify. */
import type { RunContext } from '../../model/context.js';
import type { DeployConfig, Traffic } from '../../model/config.js';
import { APP, ARTIFACT_FORBIDDEN, Collector, printable } from './collector.js';

export function readRunSettings(
  c: Collector,
  ctx: RunContext,
  app: string,
  traffic: Traffic
): Pick<
  DeployConfig,
  | 'drainMs'
  | 'waitForDrain'
  | 'stopTimeoutSeconds'
  | 'lockTimeoutSeconds'
  | 'uploadArtifacts'
  | 'artifactName'
  | 'artifactRetentionDays'
  | 'summary'
  | 'verifyMs'
  | 'keepImages'
  | 'statusHistory'
  | 'statusLogLines'
  | 'smokeTest'
  | 'notifyWebhook'
> {
  const drainMs = c.number('drain-seconds', 0, 3600) * 1000;
  const waitForDrain = c.bool('wait-for-drain');
  const stopTimeoutSeconds = c.number('stop-timeout-seconds', 0, 3600, { integer: true });
  const lockTimeoutSeconds = c.number('lock-timeout-seconds', 0, 21600, { integer: true });
  const uploadArtifacts = c.bool('upload-artifacts');
  const artifactRetentionDays = c.number('artifact-retention-days', 1, 90, { integer: true });
  const artifactName =
    c.raw('artifact-name') || `bluegreen-${APP.test(app) ? app : 'app'}-${ctx.job}-${ctx.runAttempt}`;
  if (ARTIFACT_FORBIDDEN.test(artifactName) || artifactName.length > 200)
    c.fail(
      'artifact-name',
      `must not contain " : < > | * ? \\ / or newlines (got "${printable(artifactName)}")`,
      'deploy-logs-production'
    );
  const summary = c.bool('summary');
  const verifyMs = c.number('verify-seconds', 0, 3600) * 1000;
  const keepImages = c.number('keep-images', 0, 1000, { integer: true });
  const statusHistory = c.number('status-history', 0, 200, { integer: true });
  const statusLogLines = c.number('status-log-lines', 0, 1000, { integer: true });

  const smokeTest = readSmokeTest(c, traffic);
  const notifyWebhook = c.raw('notify-webhook') || undefined;
  // A secret (Slack's URL carries its token): the error never repeats the value.
  if (notifyWebhook && !isHttpUrl(notifyWebhook))
    c.fail(
      'notify-webhook',
      'must be an http:// or https:// URL (the value is not shown: it is a secret)',
      '${{ secrets.SLACK_WEBHOOK_URL }}'
    );

  return {
    drainMs,
    waitForDrain,
    stopTimeoutSeconds,
    lockTimeoutSeconds,
    uploadArtifacts,
    artifactName,
    artifactRetentionDays,
    summary,
    verifyMs,
    keepImages,
    statusHistory,
    statusLogLines,
    smokeTest,
    notifyWebhook
  };
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'https:' || u.protocol === 'http:') && Boolean(u.hostname) && !/\s/.test(v);
  } catch {
    return false;
  }
}

/** smoke-test, smoke-test-on, smoke-test-timeout-seconds. */
function readSmokeTest(c: Collector, traffic: Traffic): DeployConfig['smokeTest'] {
  const command = c.raw('smoke-test');
  const on = c.oneOf<'all' | 'first'>('smoke-test-on', ['all', 'first']);
  const timeoutMs = c.number('smoke-test-timeout-seconds', 1, 3600) * 1000;
  if (!command) return undefined;
  if (command.includes('\0'))
    c.fail('smoke-test', 'must not contain NUL bytes', 'curl -fsS "$BLUEGREEN_CANDIDATE_URL/health"');
  // port-swap starts the candidate only at the switch, on the public port: there is no moment before traffic.
  if (traffic === 'port-swap')
    c.fail(
      'smoke-test',
      'needs traffic: nginx or haproxy (with port-swap the candidate only starts when it takes the public port, so it cannot be tested before it gets traffic)',
      'curl -fsS "$BLUEGREEN_CANDIDATE_URL/health" with traffic: nginx'
    );
  return { command, on, timeoutMs };
}
