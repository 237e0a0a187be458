/** A deploy across all hosts: the registry token once on the runner, then every host in parallel. */
import type { RunContext } from '../config/context.js';
import { imageReference } from '../config/image.js';
import type { DeployConfig, HostTarget, SshSettings } from '../config/types.js';
import type { RegistryCredentials } from '../registry/ecr.js';
import type { LoginMode } from '../remote/scripts.js';
import type { RunLog } from '../report/log.js';
import type { Secrets } from '../report/secrets.js';
import type { ConnectOptions, RemoteHost } from '../ssh/connection.js';
import { runRollout, type DeployOne } from './fleet.js';
import { HostDeployment } from './host-deploy.js';
import { StepTimer } from './steps.js';
import { StepError, type HostResult, type Result, type StepRecord } from './types.js';

export interface RunDeps {
  connect(target: HostTarget, ssh: SshSettings, opts?: ConnectOptions): Promise<RemoteHost>;
  fetchEcrToken(region: string): Promise<RegistryCredentials>;
  /** Aborted when the workflow run is cancelled. */
  signal?: AbortSignal;
}

export interface RunResult {
  deployId: string;
  command: string;
  app: string;
  image: string;
  result: Result;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  steps: StepRecord[];
  hosts: HostResult[];
  error?: { step: string; host?: string; message: string };
}

export function newDeployId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${Math.random().toString(16).slice(2, 8)}`;
}

export function overallResult(hosts: HostResult[]): Result {
  if (hosts.length && hosts.every((h) => h.result === 'success')) return 'success';
  if (hosts.some((h) => h.result === 'failed')) return 'failed';
  if (hosts.some((h) => h.result === 'rolled-back')) return 'rolled-back';
  return 'failed';
}

export async function runDeploy(cfg: DeployConfig, ctx: RunContext, log: RunLog, secrets: Secrets, deps: RunDeps, deployId = newDeployId()): Promise<RunResult> {
  const started = Date.now();
  const runSteps: StepRecord[] = [];
  const base = { deployId, command: cfg.command, app: cfg.app, image: cfg.command === 'deploy' ? imageReference(cfg.image) : '', startedAt: new Date(started).toISOString() };
  const finish = (hosts: HostResult[], error?: RunResult['error']): RunResult => ({ ...base, result: error && !hosts.length ? 'failed' : overallResult(hosts), endedAt: new Date().toISOString(), durationMs: Date.now() - started, steps: runSteps, hosts, error });

  let login: LoginMode = { kind: 'none' };
  // Only a deploy (or a rollback-to of a version that is not kept) pulls; a plain rollback needs no registry.
  const mayPull = cfg.command === 'deploy' || (cfg.command === 'rollback' && Boolean(cfg.rollbackTo) && Boolean(cfg.image.repository));
  if (!mayPull) {
    // no login
  } else if (cfg.registryAuth === 'ecr') {
    const t0 = Date.now();
    log.log('info', `fetching an ECR authorization token in ${cfg.awsRegion}`, { step: 'ecr-token' });
    try {
      const creds = await deps.fetchEcrToken(cfg.awsRegion!);
      secrets.add(creds.password);
      login = { kind: 'password', registry: cfg.image.registry, username: creds.username, password: creds.password };
      runSteps.push(stepRecord('ecr-token', t0, 'ok'));
    } catch (e) {
      const message = (e as Error).message;
      runSteps.push(stepRecord('ecr-token', t0, 'failed', message));
      log.log('error', message, { step: 'ecr-token' });
      return finish([], { step: 'ecr-token', message });
    }
  } else if (cfg.registryAuth === 'password' && cfg.registryCredentials) {
    login = { kind: 'password', registry: cfg.image.registry, ...cfg.registryCredentials };
  } else if (cfg.registryAuth === 'ecr-on-host') {
    login = { kind: 'ecr-on-host', registry: cfg.image.registry, region: cfg.awsRegion! };
  }

  const deployOne: DeployOne = async (target, batch, signal, fleet) => {
    const hostLog = log.forHost(target.label);
    const timer = new StepTimer(hostLog, signal);
    const hostStarted = Date.now();
    const meta = { batch, startedAt: new Date(hostStarted).toISOString() };
    const connectTo = () => deps.connect(target, cfg.ssh, { signal, onRetry: (n, e, waitMs) => hostLog.warn(`connect attempt ${n} failed (${e.message}); retrying in ${waitMs / 1000} s`) });
    let remote: RemoteHost;
    try {
      remote = await timer.run('connect', connectTo);
    } catch (e) {
      const err = e as StepError;
      hostLog.error(`connect failed: ${err.message}`);
      fleet?.failed(err);
      return { host: target.label, result: 'failed', image: base.image, durationMs: Date.now() - hostStarted, switched: false, steps: timer.steps, error: { step: 'connect', message: err.message }, warnings: [], ...meta };
    }
    const extra: RemoteHost[] = [];
    const reconnect = async () => {
      const r = await connectTo();
      extra.push(r);
      return r;
    };
    try {
      return { ...(await new HostDeployment({ cfg, ctx, deployId, remote, log: hostLog, timer, login, reconnect, fleet }).run()), ...meta };
    } finally {
      for (const r of [remote, ...extra]) r.close();
    }
  };
  const hosts = await runRollout(cfg.hosts, cfg.rollout, deployOne, (msg) => log.log('info', msg), deps.signal);
  // The run's error is the host that failed on its own, not one stopped because of it.
  const failed = hosts.find((h) => h.error && !h.abortedBy) ?? hosts.find((h) => h.error);
  return finish(hosts, failed?.error ? { ...failed.error, host: failed.host } : undefined);
}

function stepRecord(name: StepRecord['name'], start: number, status: StepRecord['status'], detail?: string): StepRecord {
  const end = Date.now();
  return { name, startedAt: new Date(start).toISOString(), endedAt: new Date(end).toISOString(), durationMs: end - start, status, detail };
}
