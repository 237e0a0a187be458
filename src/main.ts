/**
 * The action's entry: mask secrets, read and check the inputs, then run the command. Everything else lives in
 * src/commands/ (what each command reports) and below.
 */
import * as core from './log/workflow.js';
import { deployCommand } from './commands/deploy.js';
import { statusCommand } from './commands/status.js';
import { readRunContext } from './model/context.js';
import { envInputReader, InputError, readConfig } from './config/inputs.js';
import type { DeployConfig } from './model/config.js';
import type { RunDeps } from './deploy/run.js';
import type { RunResult } from './model/results.js';
import { actionsConsole, type ConsoleSink } from './log/log.js';
import { sendNotification } from './report/notify.js';
import { writeSummary } from './report/publish.js';
import { Secrets } from './log/secrets.js';
import { HostResolveError, resolveHosts } from './hosts/resolve.js';
import { connect } from './transport/ssh/connection.js';

// The AWS SDK is most of the bundle: loaded when needed, it stays out of the cold start.
const fetchEcrToken: RunDeps['fetchEcrToken'] = async (region) =>
  (await import('./registry/ecr.js')).fetchEcrToken(region);
const defaultDeps: RunDeps = { connect, fetchEcrToken };

/** transport: ssm reaches hosts through AWS Systems Manager Run Command; its SDK is loaded only then. */
function depsFor(cfg: DeployConfig, deps: RunDeps): RunDeps {
  if (cfg.transport !== 'ssm' || deps !== defaultDeps) return deps;
  return {
    ...deps,
    connect: async (target, _ssh, opts) =>
      (await import('./transport/ssm/connect.js')).connectSsm(target, cfg, opts?.signal)
  };
}

/** Instance ids and tag selectors become hosts (DescribeInstances) before anything is touched; undefined when that failed (reported). */
async function withHosts(
  cfg: DeployConfig,
  deps: RunDeps,
  env: NodeJS.ProcessEnv,
  secrets: Secrets
): Promise<DeployConfig | undefined> {
  if (!cfg.hostQuery) return cfg;
  try {
    const resolved = await (deps.resolveHosts ?? resolveHosts)(cfg);
    core.info(
      `hosts: ${resolved.hosts.map((h) => `${h.label}${cfg.transport === 'ssh' && h.instanceId ? ` at ${h.host}` : ''}`).join(', ')} (found with EC2 DescribeInstances in ${cfg.awsRegion})`
    );
    return resolved;
  } catch (e) {
    if (!(e instanceof HostResolveError)) throw e;
    core.setOutput('result', 'failed');
    core.error(e.message, { title: 'bluegreen-ec2-action: no hosts' });
    if (cfg.summary)
      await writeSummary(`## ❌ ${cfg.command} not started: hosts not found\n\n${e.message.replace(/</g, '&lt;')}\n`);
    await notifyInvalidInput(env, e, secrets, 'hosts');
    core.setFailed(e.message);
    return undefined;
  }
}

/** Masks every secret input before anything else can print it. */
function maskSecretInputs(secrets: Secrets, env: NodeJS.ProcessEnv): void {
  const read = envInputReader(env);
  secrets.add(read('ssh-private-key'));
  secrets.add(read('ssh-passphrase'));
  secrets.add(read('jump-private-key'));
  secrets.add(read('jump-passphrase'));
  secrets.add(read('registry-password'));
  secrets.add(read('notify-webhook'));
  for (const line of read('env').split(/\r?\n/)) {
    const eq = line.indexOf('=');
    if (eq > 0) secrets.add(line.slice(eq + 1));
  }
}

/** notify-webhook after a run refused for its inputs (or hosts not found): the team hears of it like of any failed deploy. */
async function notifyInvalidInput(env: NodeJS.ProcessEnv, e: Error, secrets: Secrets, step = 'inputs'): Promise<void> {
  const read = envInputReader(env);
  const url = read('notify-webhook');
  if (!/^https?:\/\/\S+$/.test(url) || read('command') === 'status') return;
  const now = new Date().toISOString();
  const ctx = readRunContext(env);
  const result: RunResult = {
    deployId: '',
    command: read('command') || 'deploy',
    app: read('app-name'),
    image: '',
    result: 'failed',
    startedAt: now,
    endedAt: now,
    durationMs: 0,
    steps: [],
    hosts: [],
    error: { step, message: e.message }
  };
  const warning = await sendNotification(url, { result, ctx, image: '' }, secrets);
  if (warning) core.warning(secrets.redact(warning));
}

export async function run(
  env: NodeJS.ProcessEnv = process.env,
  deps: RunDeps = defaultDeps,
  sink: ConsoleSink = actionsConsole
): Promise<void> {
  const secrets = new Secrets();
  try {
    maskSecretInputs(secrets, env);
    const ctx = readRunContext(env);
    let cfg: DeployConfig;
    try {
      cfg = readConfig(envInputReader(env), ctx, env);
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      core.setOutput('result', 'failed');
      for (const p of e.problems) core.error(p, { title: 'bluegreen-ec2-action: invalid input' });
      if (envInputReader(env)('summary') !== 'false')
        await writeSummary(
          `## ❌ deploy not started: invalid input\n\n${e.problems.map((p) => `- ${p.replace(/</g, '&lt;')}`).join('\n')}\n`
        );
      await notifyInvalidInput(env, e, secrets);
      core.setFailed(e.message);
      return;
    }
    for (const w of cfg.inputWarnings) core.warning(w, { title: 'bluegreen-ec2-action: input ignored' });
    const resolved = await withHosts(cfg, deps, env, secrets);
    if (!resolved) return;
    const runDeps = depsFor(resolved, deps);
    if (resolved.command === 'status') await statusCommand(resolved, ctx, secrets, runDeps, sink, env);
    else await deployCommand(resolved, ctx, secrets, runDeps, sink, env);
  } catch (e) {
    const err = e as Error;
    core.debug(secrets.redact(err.stack ?? ''));
    core.setOutput('result', 'failed');
    core.setFailed(secrets.redact(`bluegreen-ec2-action crashed: ${err.message}`));
  }
}
