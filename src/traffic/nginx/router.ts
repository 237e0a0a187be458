/**
 * nginx mode: the candidate runs beside the live colour on its own 127.0.0.1 port; the switch rewrites the one
 * upstream file the action owns and reloads the host nginx (new workers take new connections, old workers finish
 * their requests), so no request is dropped.
 * nginx-switch njs: the same file, but no reload: the user's nginx reads the live port from it at every request
 * (js_set, README "Reload-free switch with njs"), so no worker closes a client's keep-alive connection; the old
 * colour is drained by its open connections on the host instead of by waiting for old workers.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import { StepError } from '../../model/results.js';
import type { HostState } from '../../model/host.js';
import { connectionDrainScript, nginxDrainScript, writeUpstreamScript } from '../../remote/scripts.js';
import { Prober } from '../../probe/health.js';
import { writtenBy, type Cutover, type RouterHost, type TrafficRouter } from '../router.js';
import { parseSwitchOutput, type SwitchOutput } from './switch-output.js';
import { renderUpstream, upstreamPort } from './upstream.js';

/** How long the switch waits (on the host, same round trip) for nginx's new workers. */
export const TAKEOVER_MS = 10_000;

export class NginxRouter implements TrafficRouter {
  readonly kind = 'nginx' as const;
  readonly startVerb = 'run' as const;

  constructor(private readonly cfg: DeployConfig) {}

  publishArgs(color: Color): string[] {
    return ['--publish', `127.0.0.1:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
  }

  routedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined {
    const port = upstreamPort(state.upstreamContent);
    return port === this.cfg.ports.blue ? 'blue' : port === this.cfg.ports.green ? 'green' : undefined;
  }

  probePort(color: Color): number {
    return this.cfg.ports[color];
  }

  retire(plan: RouterHost['plan']): string | undefined {
    return plan.live ? `${this.cfg.app}-${plan.live}` : undefined;
  }

  async cutOver(h: RouterHost): Promise<Cutover> {
    const { cfg, plan, timer } = h;
    const port = cfg.ports[plan.candidate];
    await timer.run('health', () => h.waitHealthy(port, `${cfg.app}-${plan.candidate}`));
    await h.beforeTraffic(port);
    timer.checkCancelled();
    if (cfg.nginxSwitch === 'njs') return this.cutOverNjs(h, port);
    let sw: SwitchOutput = parseSwitchOutput('');
    const switchStart = Date.now();
    await timer.run('switch', async () => {
      const note = `Live: ${plan.candidate} (${h.imageLabel}), ${cfg.command} ${h.deployId}.`;
      const s = writeUpstreamScript(cfg.nginxUpstreamFile, cfg.nginxReloadCommand, {
        takeoverMs: TAKEOVER_MS,
        lease: { app: cfg.app, deployId: h.deployId },
        content: renderUpstream(cfg.nginxUpstreamName, port, note)
      });
      await h.ensureLock();
      // The script may write and reload even if its answer never arrives: from here the undo reads the host.
      h.trafficMayHaveMoved();
      try {
        sw = parseSwitchOutput(
          await h.exec(
            'switch',
            s,
            `point ${cfg.nginxUpstreamFile} at ${plan.candidate} (127.0.0.1:${port}), reload nginx and wait for its new workers`
          )
        );
      } catch (e) {
        const expired = leaseExpired(e);
        if (expired) throw expired;
        // A non-zero exit: the script could not write the file, or put the previous one back after a failed reload.
        if (e instanceof StepError)
          throw new StepError(
            'switch',
            `${e.message.replace(/^.*?failed/, 'nginx switch failed')}; the previous upstream file was restored`
          );
        throw e;
      }
    });
    // Timed on the host from the write: the runner's round trip to the host is not part of it.
    const cutoverMs = sw.outcome === 'taken-over' ? (sw.cutoverMs ?? Date.now() - switchStart) : undefined;
    await timer.run('verify', async () => {
      if (sw.outcome === 'no-takeover' || (sw.outcome === undefined && sw.workersBefore.length > 0)) {
        // No nginx master took the new config: the reload did not happen (wrong reload command, a bind-mounted
        // file in a containerized nginx, …). Stopping the old colour now would cause an outage.
        throw new StepError(
          'verify',
          `nginx did not reload within ${TAKEOVER_MS / 1000} s (no nginx master on the host started new workers; masters ${sw.masters.join(', ') || '?'} with workers ${sw.workersBefore.join(', ')} are unchanged${sw.foreignMasters.length ? `; ${sw.foreignMasters.length} nginx master(s) in other PID namespaces (containers) are not watched` : ''}): check nginx-reload-command and that nginx reads ${cfg.nginxUpstreamFile}`
        );
      }
      if (sw.outcome !== 'taken-over')
        h.warn(
          `verify: no nginx master process is visible on the host, so the reload cannot be confirmed${cfg.nginxHealthUrl ? '; nginx-health-url is checked instead' : ' (set nginx-health-url to check nginx itself)'}`
        );
      else
        h.log.info(
          `nginx serves ${plan.candidate}: master ${sw.reloadedMasters.join(', ') || '?'} took the new config; first new worker ${sw.switchMs ?? '?'} ms, old workers no longer accepting ${cutoverMs} ms after the upstream was written`
        );
      await this.probeNginxHealth(h, 'verify');
      await h.probeOnce('verify', port);
      await h.watch(port);
    });
    return {
      cutoverMs,
      switchMs: sw.outcome === 'taken-over' ? sw.switchMs : undefined,
      workersBefore: sw.drainWorkers
    };
  }

  /**
   * nginx-switch njs: write the upstream file (atomically, no reload: the next request nginx handles reads the new
   * port) and verify; the finishing job waits until the old colour has no connection from nginx left.
   */
  private async cutOverNjs(h: RouterHost, port: number): Promise<Cutover> {
    const { cfg, plan, timer } = h;
    const switchStart = Date.now();
    await timer.run('switch', async () => {
      const note = `Live: ${plan.candidate} (${h.imageLabel}), ${cfg.command} ${h.deployId}.`;
      const s = writeUpstreamScript(cfg.nginxUpstreamFile, ':', {
        takeoverMs: 0,
        lease: { app: cfg.app, deployId: h.deployId },
        content: renderUpstream(cfg.nginxUpstreamName, port, note)
      });
      await h.ensureLock();
      h.trafficMayHaveMoved();
      try {
        await h.exec(
          'switch',
          s,
          `point ${cfg.nginxUpstreamFile} at ${plan.candidate} (127.0.0.1:${port}); no reload: nginx reads the file at every request (njs)`
        );
      } catch (e) {
        const expired = leaseExpired(e);
        if (expired) throw expired;
        throw e;
      }
    });
    const cutoverMs = Date.now() - switchStart;
    await timer.run('verify', async () => {
      h.log.info(
        `nginx sends new requests to ${plan.candidate} from the next one on (nginx-switch: njs, not reloaded)`
      );
      await this.probeNginxHealth(h, 'verify');
      await h.probeOnce('verify', port);
      await h.watch(port);
    });
    // The old colour's open connections (in-flight requests, streams) are waited for by the finishing job, before it
    // stops the old colour: it keeps running until then, so a failed verify above could switch back to it.
    return { cutoverMs, workersBefore: [], drainPort: plan.live ? cfg.ports[plan.live] : undefined };
  }

  /** Waits until nginx has no connection to `color`'s port left (in-flight requests, streams), at most drain-seconds. */
  private async drainConnections(h: RouterHost, step: 'switch-back', color: Color): Promise<void> {
    const port = this.cfg.ports[color];
    const out = await h.exec(
      step,
      connectionDrainScript(port, this.cfg.drainMs),
      `let the connections to ${this.cfg.app}-${color} (127.0.0.1:${port}) finish (up to ${this.cfg.drainMs / 1000} s)`
    );
    const done = /@@drained (\d+)/.exec(out);
    const left = /@@drain-timeout (\d+)/.exec(out);
    if (done) h.log.info(`${this.cfg.app}-${color} has no connections left (${done[1]} ms)`);
    else if (left)
      h.warn(
        `${this.cfg.app}-${color} still had ${left[1]} connection(s) after drain-seconds (${this.cfg.drainMs / 1000} s): they end when its container stops`
      );
  }

  /**
   * nginx-health-url: one GET through the user's nginx (a second try after 500 ms), on the host's loopback through
   * the SSH connection. A non-2xx fails the step.
   */
  private async probeNginxHealth(h: RouterHost, step: 'verify' | 'switch-back'): Promise<void> {
    const u = this.cfg.nginxHealthUrl;
    if (!u) return;
    const prober = new Prober(h.remote, h.log, this.cfg.healthHost ?? u.host);
    let p = await prober.probe(u.port, u.path, 5000);
    if (p.status === undefined || p.status < 200 || p.status >= 300) {
      await new Promise((r) => setTimeout(r, 500));
      p = await prober.probe(u.port, u.path, 5000);
    }
    if (p.status === undefined || p.status < 200 || p.status >= 300) {
      throw new StepError(
        step,
        `nginx-health-url ${u.url} answered ${p.status !== undefined ? `HTTP ${p.status}` : p.error} after the ${step === 'switch-back' ? 'switch-back' : 'switch'} (twice)`
      );
    }
    h.log.info(`nginx-health-url ${u.url} → HTTP ${p.status}`);
  }

  async switchBack(h: RouterHost, state: HostState): Promise<boolean> {
    const { cfg, plan } = h;
    if (!writtenBy(state.upstreamContent, h.deployId)) {
      // The file is not this run's: the switch never wrote it, put it back itself, or another deploy owns it now.
      h.log.info(
        `${cfg.nginxUpstreamFile} does not carry this deploy's id: traffic was not moved by this run, nothing to switch back`
      );
      await h.discardCandidate(state);
      return false;
    }
    const content = plan.upstreamContent;
    const njs = cfg.nginxSwitch === 'njs';
    const s = writeUpstreamScript(cfg.nginxUpstreamFile, njs ? ':' : cfg.nginxReloadCommand, {
      remove: content === undefined,
      takeoverMs: njs ? 0 : TAKEOVER_MS,
      content: content === undefined ? undefined : content.endsWith('\n') ? content : `${content}\n`
    });
    if (njs) {
      await h.exec('switch-back', s, `restore ${cfg.nginxUpstreamFile} (no reload: nginx reads it at every request)`);
      // requests already proxied to the candidate finish before it is removed
      await this.drainConnections(h, 'switch-back', plan.candidate);
      await this.probeNginxHealth(h, 'switch-back').catch((e: Error) => h.warn(`after switching back: ${e.message}`));
      await h.discardCandidate();
      return true;
    }
    const back = parseSwitchOutput(
      await h.exec('switch-back', s, `restore ${cfg.nginxUpstreamFile}, reload nginx and wait for its new workers`)
    );
    // nginx reloads asynchronously, and its previous workers keep proxying their requests to the candidate:
    // remove it only once they are done, or those requests fail with 502.
    if (back.outcome === 'taken-over' && back.drainWorkers.length) {
      await h.exec(
        'switch-back',
        nginxDrainScript(back.drainWorkers, cfg.drainMs),
        `let in-flight requests to ${cfg.app}-${plan.candidate} finish (up to ${cfg.drainMs / 1000} s)`
      );
    }
    await this.probeNginxHealth(h, 'switch-back').catch((e: Error) => h.warn(`after switching back: ${e.message}`));
    await h.discardCandidate();
    return true;
  }
}

/** The switch script's exit 77: the lease had expired on the host, so it changed nothing (both switch modes). */
function leaseExpired(e: unknown): StepError | undefined {
  if (!(e instanceof StepError) || !/\(exit 77\)/.test(e.message)) return undefined;
  return new StepError(
    'switch',
    'the deploy lock (lease) of this run expired on the host before the switch, so another deploy may own the host now: traffic was not changed'
  );
}
