/**
 * One host's deploy as a state machine: lock → login → pull → detect → start → health → switch →
 * verify → drain → stop → cleanup → record. Before the switch any failure removes the candidate and
 * leaves the live colour alone; after it, traffic is switched back.
 */
import type { ClientChannel } from 'ssh2';
import type { RunContext } from '../config/context.js';
import { imageReference, parseImage, type ImageRef } from '../config/image.js';
import type { Color, DeployConfig } from '../config/types.js';
import type { RemoteHost } from '../ssh/connection.js';
import {
  detectScript,
  listImagesScript,
  logsScript,
  lockScript,
  finishScript,
  nginxDrainScript,
  portSwapScript,
  pullScript,
  recordScript,
  restoreReplacedScript,
  startExistingScript,
  startScript,
  stopScript,
  writeUpstreamScript,
  type LoginMode,
  type RemoteScript
} from '../remote/scripts.js';
import type { HostLog } from '../report/log.js';
import { renderUpstream } from '../traffic/nginx-upstream.js';
import { parseSwitchOutput, type SwitchOutput } from '../traffic/nginx/switch-output.js';
import { Prober, waitHealthy } from './health.js';
import { containerName, parseInspect, planDeploy, type ContainerInfo, type Plan } from './plan.js';
import { imagesToPrune, parseImageList } from './images.js';
import { cancelReason, StepTimer } from './steps.js';
import { StepError, type HostResult, type StepName } from './types.js';

export interface HostDeployInput {
  cfg: DeployConfig;
  ctx: RunContext;
  deployId: string;
  remote: RemoteHost;
  log: HostLog;
  timer: StepTimer;
  login: LoginMode;
  /** Opens a new connection to the same host, to clean up after the first one was lost. */
  reconnect?: () => Promise<RemoteHost>;
  /** All-or-nothing across hosts; absent for a single host or on-host-failure: continue. */
  fleet?: FleetHooks;
}

export interface FleetHooks {
  /**
   * Called once the new colour is verified and the old one is still there to go back to. Resolves when
   * every host got this far; throws when another host failed (this host then switches back).
   */
  ready(): Promise<void>;
  /** This host failed on its own: stop the others. */
  failed(error: StepError): void;
  /** The host whose failure stopped this one, if any. */
  abortedBy(): string | undefined;
}

const TAKEOVER_MS = 10_000;

export class HostDeployment {
  private readonly cfg: DeployConfig;
  private remote: RemoteHost;
  private readonly log: HostLog;
  private readonly timer: StepTimer;
  private prober: Prober;
  private lock?: ClientChannel;
  private plan?: Plan;
  private switched = false;
  private switchBackFailed = false;
  /** The image being made live: the input image, or for a rollback the kept standby's. */
  private target: ImageRef;
  /** Rollback to the kept (stopped) standby container: started again, never removed. */
  private rollbackKept = false;
  private digest?: string;
  private cutoverMs?: number;
  /** nginx: from writing the upstream to the first new worker (traffic starts flowing to the new colour). */
  private switchMs?: number;
  private downtimeMs?: number;
  private candidateLogs?: string;
  private prunable?: Promise<string[]>;
  private readonly warnings: string[] = [];

  constructor(private readonly input: HostDeployInput) {
    this.cfg = input.cfg;
    this.remote = input.remote;
    this.log = input.log;
    this.timer = input.timer;
    this.prober = new Prober(this.remote, this.log, this.cfg.healthHost);
    this.target = input.cfg.command === 'deploy' ? input.cfg.image : { registry: input.cfg.image.registry, repository: '' };
  }

  /** Runs a remote script, logging the command's output; a non-zero exit becomes a StepError. */
  private async exec(step: StepName, s: RemoteScript, what: string, onLine?: (line: string) => void, quiet = false): Promise<string> {
    this.log.debug(`$ ${what}`);
    const res = await this.remote.run(s.body, s.args, {
      stdin: s.stdin,
      onLine: (line, stream) => {
        if (line.startsWith('@@')) this.log.debug(line);
        else if (line.trim()) (quiet ? this.log.debug : this.log.info).call(this.log, stream === 'stderr' ? `  ! ${line}` : `  ${line}`);
        onLine?.(line);
      }
    });
    if (res.code !== 0) {
      const out = (res.stderr.trim() || res.stdout.trim()).split('\n').filter((l) => !l.startsWith('@@')).slice(-8).join('\n');
      throw new StepError(step, `${what} failed (exit ${res.code ?? res.signal ?? 'unknown'})${out ? `: ${out}` : ''}`);
    }
    return res.stdout;
  }

  private get docker(): string[] {
    return this.cfg.dockerCommand;
  }

  private name(color: Color): string {
    return containerName(this.cfg.app, color);
  }

  async run(): Promise<HostResult> {
    const started = Date.now();
    let error: StepError | undefined;
    let result: HostResult['result'] = 'success';
    try {
      await this.timer.run('lock', () => this.acquireLock());
      if (this.cfg.command === 'deploy') await this.pull();
      this.plan = await this.timer.run('detect', () => this.detect());
      if (this.cfg.command === 'rollback' && !this.rollbackKept) await this.pull();
      if (this.cfg.traffic === 'nginx') await this.deployNginx();
      else await this.deployPortSwap();
    } catch (e) {
      error = e instanceof StepError ? e : new StepError(this.timer.current ?? 'detect', (e as Error).message);
      if (error.logs) this.candidateLogs = error.logs;
      if (!this.remote.isConnected()) error = new StepError(error.step, `the SSH connection was lost during ${error.step} (${error.message})`);
      this.log.error(`${error.step} failed: ${error.message}`);
      const abortedBy = this.input.fleet?.abortedBy();
      if (!abortedBy) this.input.fleet?.failed(error);
      result = (await this.reconnectIfLost()) ? await this.recover() : 'failed';
      if (abortedBy && result === 'failed' && !this.switched) result = 'skipped';
    }
    if (this.remote.isConnected()) {
      const rec = await this.timer.soft('record', () => this.record(result, Date.now() - started, error));
      if (rec) this.warnings.push(rec);
    }
    await this.releaseLock();
    const plan = this.plan;
    // After a failed switch-back nginx may still send traffic to the candidate: say "unknown", not the old colour.
    const active = result === 'success' ? plan?.candidate : this.switchBackFailed ? undefined : plan?.live;
    return {
      host: this.remote.target.label,
      result,
      activeColor: active,
      previousColor: result === 'success' ? plan?.live : undefined,
      candidateColor: plan?.candidate,
      image: this.target.repository ? imageReference(this.target) : '',
      digest: this.digest,
      cutoverMs: this.cutoverMs,
      switchMs: this.switchMs,
      downtimeMs: this.downtimeMs,
      durationMs: Date.now() - started,
      switched: this.switched,
      switchBackFailed: this.switchBackFailed || undefined,
      steps: this.timer.steps,
      error: error ? { step: error.step, message: error.message } : undefined,
      candidateLogs: this.candidateLogs,
      warnings: this.warnings,
      abortedBy: error ? this.input.fleet?.abortedBy() : undefined
    };
  }

  private async acquireLock(): Promise<void> {
    const owner = JSON.stringify({ deployId: this.input.deployId, runUrl: this.input.ctx.runUrl, actor: this.input.ctx.actor, since: new Date().toISOString() });
    const s = lockScript(this.cfg.app, this.cfg.lockTimeoutSeconds, owner);
    const ch = await this.remote.open(s.body, s.args);
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      let err = '';
      let locked = false;
      let lastOwner = '';
      ch.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line === '@@locked') {
            locked = true;
            resolve();
          } else if (line.startsWith('@@lock-wait')) {
            lastOwner = describeOwner(line.slice('@@lock-wait'.length).trim());
            this.log.info(`another deploy holds the lock (${lastOwner}); waiting up to ${this.cfg.lockTimeoutSeconds} s`);
          } else if (line === '@@drain-wait') {
            this.log.info(`the previous deploy's old colour is still finishing its requests (drain job on the host); waiting up to ${this.cfg.lockTimeoutSeconds} s`);
          } else if (line.startsWith('@@lock-timeout')) {
            lastOwner = describeOwner(line.slice('@@lock-timeout'.length).trim()) || lastOwner;
          }
        }
      });
      ch.stderr.on('data', (d: Buffer) => (err += d.toString()));
      this.timer.signal?.addEventListener('abort', () => {
        if (locked) return;
        reject(new StepError('lock', `${cancelReason(this.timer.signal!)} while waiting for the deploy lock`));
        ch.close();
      }, { once: true });
      ch.on('exit', (code: number | null) => {
        if (locked) return;
        if (code === 75) reject(new StepError('lock', `another deploy of ${this.cfg.app} still holds the lock on this host after ${this.cfg.lockTimeoutSeconds} s (${lastOwner || 'holder unknown'}); raise lock-timeout-seconds or use a workflow concurrency group`));
        else reject(new StepError('lock', `could not take the deploy lock (exit ${code}): ${err.trim() || 'no output'}`));
      });
      ch.on('close', () => {
        if (!locked) reject(new StepError('lock', `the lock command ended unexpectedly: ${err.trim() || 'no output'}`));
      });
    });
    this.lock = ch;
    this.log.info(`holding the deploy lock for ${this.cfg.app}`);
  }

  private async releaseLock(): Promise<void> {
    const ch = this.lock;
    if (!ch) return;
    this.lock = undefined;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 5000);
      ch.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      ch.end();
    });
  }

  private async pull(): Promise<void> {
    const ref = imageReference(this.target);
    const s = pullScript(this.docker, ref, this.input.login);
    const first: StepName = this.input.login.kind === 'none' ? 'pull' : 'login';
    let digests: string[] | undefined;
    await this.timer.run(first, async () => {
      const out = await this.exec(first, s, `login and pull ${ref}`, (line) => {
        if (line === '@@step pull' && this.timer.current === 'login') this.timer.begin('pull');
        if (line === '@@digests') digests = [];
        else if (digests && line.includes('@sha256:')) digests.push(line.trim());
      });
      void out;
      if (this.timer.current === 'login') throw new StepError('login', 'the registry login did not complete');
    }).catch((e: StepError) => {
      throw new StepError(e.step, explainPullError(e.message, ref));
    });
    const repo = this.target.repository;
    const match = (digests ?? []).find((d) => d.split('@')[0] === repo) ?? digests?.[0];
    this.digest = this.target.digest ?? match?.split('@')[1];
    this.log.info(this.digest ? `image ${ref} is ${this.digest}` : `image ${ref} has no registry digest (local image?)`);
  }

  private async detect(repaired = false): Promise<Plan> {
    const s = detectScript(this.docker, this.cfg.app, this.cfg.traffic === 'nginx' ? this.cfg.nginxUpstreamFile : '');
    const out = await this.exec('detect', s, 'read containers, upstream and state', undefined, true);
    const section = (name: string) => {
      const m = new RegExp(`@@${name}\\n([\\s\\S]*?)(?=\\n@@(?:containers|upstream|state)\\n|$)`).exec(out);
      const body = m?.[1]?.trim() ?? '';
      return body === '@@none' ? undefined : body;
    };
    let recordedLive: Color | undefined;
    try {
      const st = JSON.parse(section('state') ?? '{}') as { live?: Color };
      if (st.live === 'blue' || st.live === 'green') recordedLive = st.live;
    } catch {
      this.log.warn('the recorded state file on the host is not valid JSON; ignoring it');
    }
    const plan = planDeploy(this.cfg, parseInspect(section('containers') ?? ''), section('upstream'), recordedLive);
    const replaced = `${this.name(plan.candidate)}-replaced`;
    if (plan.leftovers.includes(replaced) && !repaired) {
      // A run was killed between replacing the standby and finishing; its candidate is not live. Put the
      // real standby back, then look again.
      this.log.warn(`an earlier run was interrupted (${replaced} exists): restoring the standby ${this.name(plan.candidate)}`);
      await this.exec('detect', restoreReplacedScript(this.docker, this.name(plan.candidate)), `repair: remove the interrupted candidate and restore ${replaced}`);
      return this.detect(true);
    }
    for (const n of plan.notes) this.log.warn(n);
    if (this.cfg.command === 'rollback') this.planRollback(plan);
    else this.log.info(plan.live ? `live colour: ${plan.live}; deploying to ${plan.candidate}` : `no live colour (first deploy); deploying to ${plan.candidate}`);
    return plan;
  }

  /** Rollback: the kept standby if it is what was asked for, else (rollback-to) a normal deploy of that version. */
  private planRollback(plan: Plan): void {
    const kept = plan.byColor[plan.candidate];
    const live = plan.live ? plan.byColor[plan.live] : undefined;
    const wanted = this.cfg.rollbackTo;
    if (wanted && !(kept && matchesVersion(kept, wanted))) {
      if (!this.cfg.image.repository) {
        throw new StepError('detect', `rollback-to ${wanted} is not the kept standby (${describeContainer(kept) ?? 'none is kept'}); deploying it needs the image input (the repository)`);
      }
      this.target = wanted.startsWith('sha256:') ? { ...this.cfg.image, digest: wanted } : { ...this.cfg.image, tag: wanted };
      this.log.info(`rollback-to ${wanted}: not the kept standby (${describeContainer(kept) ?? 'none'}); deploying ${imageReference(this.target)} to ${plan.candidate}`);
      return;
    }
    if (!kept) {
      throw new StepError(
        'detect',
        `nothing to roll back to on this host: no ${plan.candidate} container is kept${live ? `; only ${plan.live} is there (${describeContainer(live)})` : '; no container of this app exists'}. Use rollback-to with a tag from the history (and image), or deploy`
      );
    }
    if (kept.running && plan.live) this.log.warn(`the standby ${kept.name} is running although ${plan.live} is live`);
    this.rollbackKept = true;
    const parsed = parseImage(kept.labels['bluegreen.image'] ?? '');
    this.target = typeof parsed === 'string' ? { registry: '', repository: kept.labels['bluegreen.image'] ?? 'unknown' } : parsed;
    this.digest = kept.labels['bluegreen.digest'] || undefined;
    this.log.info(`rolling back ${plan.live ? `from ${plan.live} (${describeContainer(live)}) ` : ''}to the kept ${plan.candidate} (${describeContainer(kept)})`);
  }

  private runArgs(color: Color): string[] {
    const cfg = this.cfg;
    const ctx = this.input.ctx;
    const args: string[] = [];
    if (!cfg.dockerRunArgs.some((a) => a === '--restart' || a.startsWith('--restart='))) args.push('--restart', 'unless-stopped');
    const labels: Record<string, string> = {
      'bluegreen.app': cfg.app,
      'bluegreen.color': color,
      'bluegreen.image': imageReference(this.target),
      'bluegreen.digest': this.digest ?? '',
      'bluegreen.deploy-id': this.input.deployId,
      'bluegreen.run-url': ctx.runUrl,
      'bluegreen.actor': ctx.actor,
      'bluegreen.deployed-at': new Date().toISOString()
    };
    for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
    if (cfg.traffic === 'nginx') args.push('--publish', `127.0.0.1:${cfg.ports[color]}:${cfg.containerPort}`);
    else args.push('--publish', `${cfg.publicPort}:${cfg.containerPort}`);
    args.push(...cfg.dockerRunArgs);
    args.push(this.digest ? `${this.target.repository}@${this.digest}` : imageReference(this.target));
    return args;
  }

  private envFile(): string {
    return this.cfg.env.map((v) => `${v.key}=${v.value}\n`).join('');
  }

  private async startCandidate(verb: 'run' | 'create'): Promise<void> {
    const plan = this.plan!;
    const name = this.name(plan.candidate);
    if (this.rollbackKept) {
      if (verb === 'run') await this.exec('start', startExistingScript(this.docker, name), `docker start ${name} (the kept standby)`);
      return;
    }
    const s = startScript(this.docker, verb, name, plan.replaceExisting, this.envFile(), this.runArgs(plan.candidate));
    await this.exec('start', s, `docker ${verb} ${name}`);
  }

  private health(port: number): Promise<unknown> {
    const plan = this.plan!;
    return waitHealthy(this.remote, this.prober, { port, path: this.cfg.healthPath, intervalMs: this.cfg.healthIntervalMs, timeoutMs: this.cfg.healthTimeoutMs, container: this.name(plan.candidate), dockerCommand: this.docker }, this.log, this.timer.signal);
  }

  private async probeOnce(step: StepName, port: number): Promise<void> {
    const p = await this.prober.probe(port, this.cfg.healthPath, 5000);
    if (p.status === undefined || p.status < 200 || p.status >= 300) {
      throw new StepError(step, `GET ${this.cfg.healthPath} on port ${port} answered ${p.status !== undefined ? `HTTP ${p.status}` : p.error} after the switch`);
    }
  }

  /**
   * nginx-health-url: one GET through the user's nginx (a second try after 500 ms), on the host's loopback through
   * the SSH connection. A non-2xx fails the step.
   */
  private async probeNginxHealth(step: StepName): Promise<void> {
    const h = this.cfg.nginxHealthUrl;
    if (!h) return;
    const prober = new Prober(this.remote, this.log, this.cfg.healthHost ?? h.host);
    let p = await prober.probe(h.port, h.path, 5000);
    if (p.status === undefined || p.status < 200 || p.status >= 300) {
      await new Promise((r) => setTimeout(r, 500));
      p = await prober.probe(h.port, h.path, 5000);
    }
    if (p.status === undefined || p.status < 200 || p.status >= 300) {
      throw new StepError(step, `nginx-health-url ${h.url} answered ${p.status !== undefined ? `HTTP ${p.status}` : p.error} after the ${step === 'switch-back' ? 'switch-back' : 'switch'} (twice)`);
    }
    this.log.info(`nginx-health-url ${h.url} → HTTP ${p.status}`);
  }

  private async deployNginx(): Promise<void> {
    const plan = this.plan!;
    const cfg = this.cfg;
    const port = cfg.ports[plan.candidate];
    await this.timer.run('start', () => this.startCandidate('run'));
    this.listPrunableImages();
    await this.timer.run('health', () => this.health(port));
    let sw: SwitchOutput = parseSwitchOutput('');
    this.timer.checkCancelled();
    const switchStart = Date.now();
    await this.timer.run('switch', async () => {
      const note = `Live: ${plan.candidate} (${imageReference(this.target)}), ${cfg.command} ${this.input.deployId}.`;
      const s = writeUpstreamScript(cfg.nginxUpstreamFile, cfg.nginxReloadCommand, { takeoverMs: TAKEOVER_MS });
      s.stdin = renderUpstream(cfg.nginxUpstreamName, port, note);
      try {
        sw = parseSwitchOutput(await this.exec('switch', s, `point ${cfg.nginxUpstreamFile} at ${plan.candidate} (127.0.0.1:${port}), reload nginx and wait for its new workers`));
        // Timed on the host from the write: the runner's round trip to the host is not part of it.
        if (sw.outcome === 'taken-over') {
          this.cutoverMs = sw.cutoverMs ?? Date.now() - switchStart;
          this.switchMs = sw.switchMs;
        }
      } catch (e) {
        // Exit 3/4: the script could not write the file, or restored it itself after a failed reload.
        if (e instanceof StepError) throw new StepError('switch', `${e.message.replace(/^.*?failed/, 'nginx switch failed')}; the previous upstream file was restored`);
        // The connection failed mid-switch: nginx may have reloaded already, so switch back to be sure.
        this.switched = true;
        throw e;
      }
      this.switched = true;
    });
    await this.timer.run('verify', async () => {
      if (sw.outcome === 'no-takeover' || (sw.outcome === undefined && sw.workersBefore.length > 0)) {
        // No nginx master took the new config: the reload did not happen (wrong reload command, a bind-mounted
        // file in a containerized nginx, …). Stopping the old colour now would cause an outage.
        throw new StepError('verify', `nginx did not reload within ${TAKEOVER_MS / 1000} s (no nginx master on the host started new workers; masters ${sw.masters.join(', ') || '?'} with workers ${sw.workersBefore.join(', ')} are unchanged${sw.foreignMasters.length ? `; ${sw.foreignMasters.length} nginx master(s) in other PID namespaces (containers) are not watched` : ''}): check nginx-reload-command and that nginx reads ${cfg.nginxUpstreamFile}`);
      }
      if (sw.outcome !== 'taken-over') {
        this.warnings.push(`verify: no nginx master process is visible on the host, so the reload cannot be confirmed${cfg.nginxHealthUrl ? `; nginx-health-url is checked instead` : ' (set nginx-health-url to check nginx itself)'}`);
        this.log.warn(this.warnings[this.warnings.length - 1]);
      } else this.log.info(`nginx serves ${plan.candidate}: master ${sw.reloadedMasters.join(', ') || '?'} took the new config; first new worker ${this.switchMs ?? '?'} ms, old workers no longer accepting ${this.cutoverMs} ms after the upstream was written`);
      await this.probeNginxHealth('verify');
      await this.probeOnce('verify', port);
      await this.watchAfterSwitch(port);
    });
    await this.waitForFleet();
    await this.finish(sw.drainWorkers);
  }

  private async deployPortSwap(): Promise<void> {
    const plan = this.plan!;
    const cfg = this.cfg;
    await this.timer.run('start', () => this.startCandidate('create'));
    this.listPrunableImages();
    const swapStart = Date.now();
    await this.timer.run('switch', async () => {
      const stopName = plan.live ? this.name(plan.live) : undefined;
      this.switched = true;
      await this.exec('switch', portSwapScript(this.docker, stopName, this.name(plan.candidate), cfg.stopTimeoutSeconds), `stop ${stopName ?? '(nothing live)'} and start ${this.name(plan.candidate)} on port ${cfg.publicPort}`);
    });
    await this.timer.run('health', () => this.health(cfg.publicPort));
    this.cutoverMs = Date.now() - swapStart;
    if (plan.live) this.downtimeMs = this.cutoverMs;
    this.log.info(plan.live ? `port-swap downtime: ${this.cutoverMs} ms (old stopped until new healthy)` : `first start took ${this.cutoverMs} ms`);
    await this.timer.run('verify', async () => {
      await this.probeOnce('verify', cfg.publicPort);
      await this.watchAfterSwitch(cfg.publicPort);
    });
    await this.waitForFleet();
    await this.finish([]);
  }

  /** The point of no return: all-or-nothing waits here, the old colour still ready to take traffic back. */
  private async waitForFleet(): Promise<void> {
    const fleet = this.input.fleet;
    if (!fleet) return;
    await this.timer.run('wait-fleet', async () => {
      this.log.info('verified; waiting for the other hosts before stopping the old colour');
      await fleet.ready();
    });
  }

  /**
   * verify-seconds: keeps probing the new colour while the old one can still take over. Two failed
   * probes in a row (or a restart/exit) fail the step, which switches traffic back.
   */
  private async watchAfterSwitch(port: number): Promise<void> {
    // A rollback returns to a version that already ran: it must be fast, so it gets no watch window.
    if (this.rollbackKept) return;
    const until = Date.now() + this.cfg.verifyMs;
    const every = Math.max(200, Math.min(1000, this.cfg.healthIntervalMs));
    const name = this.name(this.plan!.candidate);
    let failures = 0;
    let probes = 0;
    while (Date.now() < until) {
      this.timer.checkCancelled();
      await new Promise((r) => setTimeout(r, Math.min(every, Math.max(0, until - Date.now()))));
      probes++;
      const p = await this.prober.probe(port, this.cfg.healthPath, 3000);
      if (p.status !== undefined && p.status >= 200 && p.status < 300) {
        failures = 0;
        continue;
      }
      failures++;
      this.log.warn(`verify probe ${probes}: ${p.status !== undefined ? `HTTP ${p.status}` : p.error}`);
      if (failures >= 2) {
        const ls = logsScript(this.docker, name, 40);
        const logs = (await this.remote.run(ls.body, ls.args)).stdout.trim();
        const secs = ((this.cfg.verifyMs - (until - Date.now())) / 1000).toFixed(1);
        throw new StepError('verify', `${name} turned unhealthy ${secs} s after the switch (GET ${this.cfg.healthPath}: ${p.status !== undefined ? `HTTP ${p.status}` : p.error}, twice in a row)`, logs);
      }
    }
    if (this.cfg.verifyMs > 0) this.log.info(`${name} stayed healthy for ${this.cfg.verifyMs / 1000} s after the switch (${probes} probes)`);
  }

  /**
   * After a dropped connection the host may hold a half-started candidate or a switched upstream.
   * Reconnect (a few tries with backoff), take the lock again, and let the normal recovery run.
   */
  private async reconnectIfLost(): Promise<boolean> {
    if (this.remote.isConnected()) return true;
    if (!this.input.reconnect || !this.plan) {
      this.warnings.push('the connection was lost before anything changed on the host');
      return Boolean(!this.plan);
    }
    this.lock = undefined; // it died with the connection
    for (const [i, wait] of [500, 1500, 4000].entries()) {
      await new Promise((r) => setTimeout(r, wait));
      try {
        this.remote = await this.input.reconnect();
        this.prober = new Prober(this.remote, this.log, this.cfg.healthHost);
        await this.acquireLock();
        this.log.warn(`reconnected (try ${i + 1}) to clean up after the lost connection`);
        return true;
      } catch (e) {
        this.log.warn(`reconnect try ${i + 1} failed: ${(e as Error).message}`);
      }
    }
    this.switchBackFailed = this.switched;
    this.warnings.push(`could not reconnect to clean up: ${this.switched ? 'traffic may be on the new colour' : `the candidate ${this.name(this.plan.candidate)} may be left on the host (the next deploy replaces it)`}`);
    return false;
  }

  /** Undo after a failure: before the switch remove the candidate; after it, switch back. */
  private async recover(): Promise<HostResult['result']> {
    const plan = this.plan;
    if (!plan) return 'failed';
    const candidate = this.name(plan.candidate);
    // The kept standby is the only way back later: stop it, never remove it.
    const discard = () =>
      this.rollbackKept
        ? this.exec('cleanup', stopScript(this.docker, candidate, this.cfg.stopTimeoutSeconds), `stop ${candidate} again (kept as standby)`)
        : this.exec('cleanup', restoreReplacedScript(this.docker, candidate), `remove the failed candidate ${candidate}${plan.replaceExisting ? ' and put back the standby it replaced' : ''}`);
    if (!this.switched) {
      if (this.timer.steps.some((s) => s.name === 'start')) await this.timer.soft('cleanup', () => discard().then(() => undefined));
      return 'failed';
    }
    const back = await this.timer.soft('switch-back', async () => {
      if (this.cfg.traffic === 'nginx') {
        const content = plan.upstreamContent;
        const s = writeUpstreamScript(this.cfg.nginxUpstreamFile, this.cfg.nginxReloadCommand, { remove: content === undefined, takeoverMs: TAKEOVER_MS });
        if (content !== undefined) s.stdin = content.endsWith('\n') ? content : `${content}\n`;
        const back = parseSwitchOutput(await this.exec('switch-back', s, `restore ${this.cfg.nginxUpstreamFile}, reload nginx and wait for its new workers`));
        // nginx reloads asynchronously, and its previous workers keep proxying their requests to the candidate:
        // remove it only once they are done, or those requests fail with 502.
        if (back.outcome === 'taken-over' && back.drainWorkers.length) {
          await this.exec('switch-back', nginxDrainScript(back.drainWorkers, this.cfg.drainMs), `let in-flight requests to ${candidate} finish (up to ${this.cfg.drainMs / 1000} s)`);
        }
        await this.probeNginxHealth('switch-back').catch((e: Error) => {
          this.warnings.push(`after switching back: ${e.message}`);
          this.log.warn(this.warnings[this.warnings.length - 1]);
        });
        await discard();
      } else {
        await discard();
        if (plan.live) {
          await this.exec('switch-back', portSwapScript(this.docker, undefined, this.name(plan.live), this.cfg.stopTimeoutSeconds), `start ${this.name(plan.live)} again`);
          await waitHealthy(this.remote, this.prober, { port: this.cfg.publicPort, path: this.cfg.healthPath, intervalMs: this.cfg.healthIntervalMs, timeoutMs: this.cfg.healthTimeoutMs, container: this.name(plan.live), dockerCommand: this.docker }, this.log);
        }
      }
    });
    if (back) {
      this.switchBackFailed = true;
      this.warnings.push(back, 'switching back did not complete: check which colour the host serves before the next deploy');
      return 'failed';
    }
    return plan.live ? 'rolled-back' : 'failed';
  }

  /**
   * keep-images: which image references to prune, read while the candidate boots (a concurrent channel on
   * the same connection), so pruning costs the deploy no round trip. Never fails the deploy.
   */
  private listPrunableImages(): void {
    const repo = this.target.repository;
    if (this.cfg.keepImages <= 0 || !repo || this.rollbackKept) return;
    const list = listImagesScript(this.docker, repo, [this.name('blue'), this.name('green')]);
    this.prunable = this.remote.run(list.body, list.args).then(
      (res) => {
        if (res.code !== 0) throw new Error(res.stderr.trim() || `exit ${res.code}`);
        const { images, inUse } = parseImageList(res.stdout);
        return imagesToPrune(images, inUse, this.cfg.keepImages);
      }
    ).catch((e: Error) => {
      this.log.warn(`could not list the images of ${repo} (keep-images is skipped this time): ${e.message}`);
      return [];
    });
  }

  /**
   * After the point of no return: drain and stop the old colour (nginx), remove the standby the new version
   * replaced and leftovers, prune images. By default a job on the host does it after the run (wait-for-drain).
   */
  private async finish(workersBefore: string[]): Promise<void> {
    const plan = this.plan!;
    const cfg = this.cfg;
    const names = [...plan.leftovers];
    const replaced = `${this.name(plan.candidate)}-replaced`;
    if (plan.replaceExisting && !this.rollbackKept && !names.includes(replaced)) names.push(replaced);
    const refs = (await this.prunable) ?? [];
    const stopName = cfg.traffic === 'nginx' && plan.live ? this.name(plan.live) : undefined;
    if (!stopName && !names.length && !refs.length) return;
    const s = finishScript(this.docker, cfg.app, { workersBefore, drainMs: cfg.drainMs, stopName, stopTimeoutSeconds: cfg.stopTimeoutSeconds, removeNames: names, removeImages: refs, background: !cfg.waitForDrain });
    const secs = cfg.drainMs / 1000;
    const what = [
      stopName ? `drain ${stopName} (up to ${secs} s), docker stop it (kept for rollback)` : '',
      names.length ? `remove ${names.join(', ')} (older than the kept standby, or leftovers)` : '',
      refs.length ? `prune ${refs.length} image reference(s) (keep-images ${cfg.keepImages})` : ''
    ].filter(Boolean).join('; ');
    const first: StepName = stopName ? 'drain' : 'cleanup';
    const w = await this.timer.soft(first, async () => {
      if (!cfg.waitForDrain) {
        const out = await this.exec(first, s, `hand over to a job on the host: ${what}`);
        if (out.includes('@@no-setsid')) {
          this.log.warn('setsid is not installed on the host (package util-linux): drained, stopped and cleaned up within the run instead');
          return;
        }
        this.log.info(`${stopName ? `${stopName} finishes its in-flight requests; ` : ''}a job on the host does the rest (log ~/.bluegreen/${cfg.app}/drain.log); the next deploy of ${cfg.app} on this host waits for it.`);
        return;
      }
      const out = await this.exec(first, s, what, (line) => {
        if (line === '@@stop') this.timer.begin('stop');
        if (line === '@@cleanup') this.timer.begin('cleanup');
      });
      if (out.includes('@@drain-timeout')) this.log.warn(`old nginx workers were still finishing requests after drain-seconds (${secs} s); stopped ${stopName} anyway`);
      if (out.includes('@@unobservable')) this.log.warn('no nginx worker processes are visible on the host; waited the full drain-seconds');
    });
    if (w) this.warnings.push(w);
  }

  private async record(result: HostResult['result'], durationMs: number, error?: StepError): Promise<void> {
    const plan = this.plan;
    const ctx = this.input.ctx;
    const at = new Date().toISOString();
    const image = this.target.repository ? imageReference(this.target) : '';
    const history = {
      deployId: this.input.deployId,
      at,
      command: this.cfg.command,
      result,
      image,
      digest: this.digest,
      color: plan?.candidate,
      previous: plan?.live,
      actor: ctx.actor,
      runUrl: ctx.runUrl,
      durationMs,
      cutoverMs: this.cutoverMs,
      steps: Object.fromEntries(this.timer.steps.map((s) => [s.name, s.durationMs])),
      error: error ? `${error.step}: ${error.message}`.slice(0, 500) : undefined
    };
    const state = result === 'success' && plan ? JSON.stringify({ app: this.cfg.app, live: plan.candidate, standby: plan.live, image, digest: this.digest, deployId: this.input.deployId, deployedAt: at, actor: ctx.actor, runUrl: ctx.runUrl }) : undefined;
    await this.exec('record', recordScript(this.cfg.app, state, JSON.stringify(history)), 'record state and history');
  }
}

/** Adds what to do about the usual pull failures. */
export function explainPullError(message: string, ref: string): string {
  if (/command not found|docker: not found|No such file or directory.*docker/i.test(message)) return `docker is not installed on the host or not on the SSH user's PATH (see docker-command): ${message}`;
  if (/Cannot connect to the Docker daemon|docker\.sock/i.test(message)) return `docker is not reachable on the host (is dockerd running, and may the SSH user use it? add it to the docker group or set docker-command: sudo -n docker): ${message}`;
  if (/manifest unknown|manifest for .* not found|not found: manifest|repository .* not found|pull access denied|no such image|does not exist/i.test(message)) return `image ${ref} was not found in the registry (was it pushed, and is the tag right?): ${message}`;
  if (/connection refused|no such host|i\/o timeout|dial tcp|server gave HTTP response to HTTPS|TLS handshake timeout/i.test(message)) return `the registry for ${ref} is not reachable from the host (is it up, and does the host's network allow it?): ${message}`;
  if (/unauthorized|authentication required|denied|no basic auth credentials|401|incorrect username or password/i.test(message)) return `the registry refused access to ${ref} (check registry-auth and the credentials or instance role): ${message}`;
  if (/no space left on device/i.test(message)) return `the host ran out of disk space while pulling ${ref}: ${message}`;
  return message;
}

/** Whether a container runs the given tag or digest (from its labels). */
export function matchesVersion(c: ContainerInfo, wanted: string): boolean {
  if (wanted.startsWith('sha256:')) return c.labels['bluegreen.digest'] === wanted;
  const image = c.labels['bluegreen.image'] ?? '';
  return image.slice(image.lastIndexOf(':') + 1) === wanted && image.lastIndexOf(':') > image.lastIndexOf('/');
}

function describeContainer(c: ContainerInfo | undefined): string | undefined {
  if (!c) return undefined;
  return `${c.name}: ${c.labels['bluegreen.image'] ?? 'unknown image'}, ${c.state}`;
}

function describeOwner(json: string): string {
  try {
    const o = JSON.parse(json) as { deployId?: string; runUrl?: string; actor?: string; since?: string };
    return `deploy ${o.deployId ?? '?'} by ${o.actor ?? '?'} since ${o.since ?? '?'}${o.runUrl ? `, ${o.runUrl}` : ''}`;
  } catch {
    return json;
  }
}
