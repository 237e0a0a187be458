/** `command: status`: read every host, report (outputs, summary, artifact); fails only when a host cannot be read. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as core from '../log/workflow.js';
import type { RunContext } from '../model/context.js';
import type { DeployConfig } from '../model/config.js';
import { newDeployId, type RunDeps } from '../deploy/run.js';
import type { ArtifactOutcome } from '../report/artifact.js';
import { RunLog, type ConsoleSink } from '../log/log.js';
import { uploadReports, writeSummary } from '../report/publish.js';
import type { Secrets } from '../log/secrets.js';
import { runStatus } from '../status/run.js';
import { renderStatusSummary } from '../status/summary.js';

export async function statusCommand(
  cfg: DeployConfig,
  ctx: RunContext,
  secrets: Secrets,
  deps: RunDeps,
  sink: ConsoleSink,
  env: NodeJS.ProcessEnv
): Promise<void> {
  const runId = newDeployId();
  const dir = join(ctx.runnerTemp, `bluegreen-${cfg.app}-status-${runId}`);
  const logFile = join(dir, 'status.log');
  const jsonFile = join(dir, 'status.json');
  const log = new RunLog(logFile, secrets, sink, cfg.hosts.length);
  log.log(
    'info',
    `bluegreen-ec2-action: status of ${cfg.app} on ${cfg.hosts.map((h) => h.label).join(', ')} (read-only)`
  );
  const report = secrets.redactDeep(await runStatus(cfg, log, deps));
  const json = JSON.stringify(report);
  writeFileSync(jsonFile, JSON.stringify(report, null, 2) + '\n');
  let artifact: ArtifactOutcome | undefined;
  if (cfg.uploadArtifacts) {
    artifact = await uploadReports(
      cfg.artifactName,
      [logFile, jsonFile],
      cfg.artifactRetentionDays,
      runId.split('-').pop(),
      env
    );
    if (artifact.skipped)
      core.warning(`bluegreen-ec2-action: the status log was not uploaded as an artifact: ${artifact.skipped}`);
  }
  const unreachable = report.hosts.filter((h) => !h.reachable);
  core.setOutput('result', unreachable.length ? 'failed' : 'success');
  core.setOutput('failed-hosts', unreachable.map((h) => h.host).join(','));
  core.setOutput(
    'succeeded-hosts',
    report.hosts
      .filter((h) => h.reachable)
      .map((h) => h.host)
      .join(',')
  );
  core.setOutput('status-json', json);
  core.setOutput('active-color', unique(report.hosts.map((h) => h.live)));
  core.setOutput('deploy-id', '');
  core.setOutput('duration-ms', String(report.durationMs));
  core.setOutput('log-file', logFile);
  core.setOutput('metrics-file', jsonFile);
  core.setOutput('artifact-id', artifact?.id !== undefined ? String(artifact.id) : '');
  if (cfg.summary) await writeSummary(secrets.redact(renderStatusSummary(report)));
  if (unreachable.length) {
    const msg = `status could not be read on ${unreachable.map((h) => `${h.host} (${h.error})`).join('; ')}`;
    core.error(secrets.redact(msg), { title: 'bluegreen-ec2-action: status failed' });
    core.setFailed(secrets.redact(msg));
  }
}

export function unique(values: Array<string | undefined>): string {
  return [...new Set(values.filter((v): v is string => Boolean(v)))].join(',');
}
