/** `command: deploy` and `command: rollback`: every host, then the reports (metrics, artifact, outputs, summary, annotations). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as core from '../log/workflow.js';
import type { RunContext } from '../model/context.js';
import type { DeployConfig } from '../model/config.js';
import { newDeployId, runDeploy, type RunDeps } from '../deploy/run.js';
import { type RunResult } from '../model/results.js';
import type { ArtifactOutcome } from '../report/artifact.js';
import { RunLog, type ConsoleSink } from '../log/log.js';
import { buildMetrics } from '../report/metrics.js';
import { uploadReports, writeSummary } from '../report/publish.js';
import type { Secrets } from '../log/secrets.js';
import { sendNotification } from '../report/notify.js';
import { renderSummary, workflowFromRef } from '../report/summary.js';
import { unique } from './status.js';

export async function deployCommand(
  cfg: DeployConfig,
  ctx: RunContext,
  secrets: Secrets,
  deps: RunDeps,
  sink: ConsoleSink,
  env: NodeJS.ProcessEnv
): Promise<void> {
  const deployId = newDeployId();
  const dir = join(ctx.runnerTemp, `bluegreen-${cfg.app}-${deployId}`);
  const logFile = join(dir, 'deploy.log');
  const metricsFile = join(dir, 'metrics.json');
  const log = new RunLog(logFile, secrets, sink, cfg.hosts.length);
  const what =
    cfg.command === 'rollback'
      ? `rollback${cfg.rollbackTo ? ` to ${cfg.rollbackTo}` : ''}`
      : `${cfg.image.repository}${cfg.image.digest ? `@${cfg.image.digest}` : `:${cfg.image.tag}`}`;
  const fleet =
    cfg.hosts.length > 1 ? `, rollout: ${cfg.rollout.strategy}, on-host-failure: ${cfg.rollout.onHostFailure}` : '';
  const via =
    cfg.transport === 'ssm'
      ? ', transport: ssm (AWS Systems Manager Run Command)'
      : cfg.ssh.jump
        ? `, via ${cfg.ssh.jump.target.label}`
        : '';
  log.log(
    'info',
    `bluegreen-ec2-action: ${cfg.command} ${cfg.app} ← ${what} on ${cfg.hosts.map((h) => h.label).join(', ')} (traffic: ${cfg.traffic}${fleet}${via}, deploy ${deployId})`
  );
  if (cfg.ssh.hostKeys.insecureIgnore)
    log.log(
      'warn',
      'ssh-insecure-ignore-host-key is true: host keys are NOT verified, so a man-in-the-middle could impersonate the host'
    );

  // A cancelled workflow sends SIGINT, then SIGTERM a few seconds later: stop starting new steps,
  // undo what was done (remove the candidate, or switch back) and report, instead of dying mid-step.
  const cancel = new AbortController();
  const onSignal = (sig: string) => {
    if (!cancel.signal.aborted)
      log.log('warn', `received ${sig}: the run was cancelled; finishing the current remote command, then cleaning up`);
    cancel.abort();
  };
  const handlers = { SIGINT: () => onSignal('SIGINT'), SIGTERM: () => onSignal('SIGTERM') };
  process.on('SIGINT', handlers.SIGINT).on('SIGTERM', handlers.SIGTERM);
  const result = await runDeploy(cfg, ctx, log, secrets, { ...deps, signal: cancel.signal }, deployId).finally(() => {
    process.off('SIGINT', handlers.SIGINT).off('SIGTERM', handlers.SIGTERM);
  });
  log.log(result.result === 'success' ? 'info' : 'error', `result: ${result.result} in ${result.durationMs} ms`);
  writeFileSync(
    metricsFile,
    JSON.stringify(
      secrets.redactDeep(
        buildMetrics(result, ctx, { traffic: cfg.traffic, hosts: cfg.hosts.length, rollout: cfg.rollout })
      ),
      null,
      2
    ) + '\n',
    { mode: 0o644 }
  );

  let artifact: ArtifactOutcome | undefined;
  if (cfg.uploadArtifacts) {
    artifact = await uploadReports(
      cfg.artifactName,
      [logFile, metricsFile],
      cfg.artifactRetentionDays,
      deployId.split('-').pop(),
      env
    );
    if (artifact.skipped)
      core.warning(`bluegreen-ec2-action: logs and metrics were not uploaded as an artifact: ${artifact.skipped}`);
    else core.info(`uploaded logs and metrics as artifact ${artifact.name} (id ${artifact.id})`);
  }

  setOutputs(result, logFile, metricsFile, artifact);
  if (cfg.summary)
    await writeSummary(
      secrets.redact(
        renderSummary(result, {
          artifact,
          traffic: cfg.traffic,
          rollout: describeRollout(cfg),
          workflow: workflowFromRef(env.GITHUB_WORKFLOW_REF)
        })
      )
    );

  if (cfg.notifyWebhook) {
    const warning = await sendNotification(cfg.notifyWebhook, { result, ctx, image: outputImage(result) }, secrets);
    if (warning) core.warning(secrets.redact(warning), { title: 'bluegreen-ec2-action: notify-webhook' });
    else log.log('info', 'notify-webhook: message delivered');
  }

  if (result.result !== 'success') {
    const e = result.error;
    const message = e ? `${e.step} failed${e.host ? ` on ${e.host}` : ''}: ${e.message}` : `deploy ${result.result}`;
    const others = result.hosts.filter((h) => h.abortedBy);
    const back = others.filter((h) => h.result === 'rolled-back').map((h) => h.host);
    const fleetNote = others.length
      ? ` — on-host-failure rollback-all: ${back.length ? `switched back ${back.join(', ')}` : 'no other host had switched'}${
          others.length > back.length
            ? `; left untouched ${others
                .filter((h) => h.result !== 'rolled-back')
                .map((h) => h.host)
                .join(', ')}`
            : ''
        }`
      : '';
    const suffix =
      (result.result === 'rolled-back' ? ' — traffic was switched back to the previous version' : '') + fleetNote;
    core.error(secrets.redact(message + suffix), { title: `bluegreen-ec2-action: ${result.result}` });
    core.setFailed(secrets.redact(`${message}${suffix}`));
  }
}

function describeRollout(cfg: DeployConfig): string {
  const r = cfg.rollout;
  const mp = r.maxParallel
    ? `, max-parallel ${'count' in r.maxParallel ? r.maxParallel.count : `${r.maxParallel.percent}%`}`
    : '';
  return `${r.strategy}${mp}, on-host-failure ${r.onHostFailure}`;
}

/** The `image` output: the deployed image with its digest when every host pulled the same one. */
function outputImage(r: RunResult): string {
  const digest = unique(r.hosts.map((h) => h.digest));
  const image = r.image || unique(r.hosts.filter((h) => h.result === 'success').map((h) => h.image));
  return digest && !digest.includes(',') && !image.includes(',') && image
    ? `${image.replace(/@sha256:[a-f0-9]+$/, '')}@${digest}`
    : image;
}

function setOutputs(r: RunResult, logFile: string, metricsFile: string, artifact?: ArtifactOutcome): void {
  core.setOutput('result', r.result);
  core.setOutput(
    'failed-hosts',
    r.hosts
      .filter((h) => h.error && !h.abortedBy)
      .map((h) => h.host)
      .join(',')
  );
  core.setOutput(
    'succeeded-hosts',
    r.hosts
      .filter((h) => h.result === 'success')
      .map((h) => h.host)
      .join(',')
  );
  core.setOutput('active-color', unique(r.hosts.map((h) => h.activeColor)));
  core.setOutput('previous-color', unique(r.hosts.map((h) => h.previousColor)));
  core.setOutput('image', outputImage(r));
  core.setOutput('deploy-id', r.deployId);
  core.setOutput('duration-ms', String(r.durationMs));
  const cut = r.hosts.map((h) => h.cutoverMs).filter((v): v is number => v !== undefined);
  core.setOutput('cutover-ms', cut.length ? String(Math.max(...cut)) : '');
  core.setOutput('log-file', logFile);
  core.setOutput('metrics-file', metricsFile);
  core.setOutput('artifact-id', artifact?.id !== undefined ? String(artifact.id) : '');
}
