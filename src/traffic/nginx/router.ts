/**
 * nginx mode: the candidate runs beside the live colour on its own 127.0.0.1 port; the switch rewrites the one
 * upstream file the action owns and reloads the host nginx (new workers take new connections, old workers finish
 * their requests), so no request is dropped.
 * nginx-switch njs: the same file, but no reload: the user's nginx reads the live port from it at every request
 * (js_set, README "Reload-free switch with njs"), so no worker closes a client's keep-alive connection; the old
 * colour is drained by its open connections on the host instead of by waiting for old workers.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import type { HostState, Plan } from '../../model/host.js';
import { StepError } from '../../model/results.js';
import { CLOCK, connectionDrainLoop, connectionDrainScript } from '../../remote/scripts.js';
import { DRAIN_LOOP, nginxDrainScript, writeUpstreamScript } from './scripts.js';
import { Prober } from '../../probe/health.js';
import {
  exec,
  writtenBy,
  type Cutover,
  type RouterContext,
  type Router,
  type RoutingView,
  type SwitchBack
} from '../router.js';
import { parseSwitchOutput, type SwitchOutput } from './switch-output.js';
import { renderUpstream, upstreamPort } from './upstream.js';

/** How long the switch waits (on the host, same round trip) for nginx's new workers. */
export const TAKEOVER_MS = 10_000;

export class NginxRouter implements Router {
  readonly kind = 'nginx' as const;
  readonly startVerb = 'run' as const;

  constructor(private readonly cfg: DeployConfig) {}

  publishArgs(color: Color): string[] {
    return ['--publish', `127.0.0.1:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
  }

  routingFile(): string {
    return this.cfg.nginxUpstreamFile;
  }

  routedPort(content: string | undefined): number | undefined {
    return upstreamPort(content);
  }

  routedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined {
    const port = upstreamPort(state.upstreamContent);
    return port === this.cfg.ports.blue ? 'blue' : port === this.cfg.ports.green ? 'green' : undefined;
  }

  routingNotes(state: RoutingView): string[] {
    const port = upstreamPort(state.upstreamContent);
    const routed = this.routedColor(state);
    const notes: string[] = [];
    if (state.upstreamContent && port !== undefined && !routed)
      notes.push(
        `the upstream file points at port ${port}, which is neither blue-port (${this.cfg.ports.blue}) nor green-port (${this.cfg.ports.green})`
      );
    // Only one colour runs and it is not the one the file names: that one is live (liveColor).
    if (state.running.length === 1 && state.running[0] !== routed)
      notes.push(
        `the upstream ${routed ? `points at ${routed}, which is not running` : 'names no colour'}; taking the running ${state.running[0]} container as live`
      );
    return notes;
  }

  probePort(color: Color): number {
    return this.cfg.ports[color];
  }

  retire(plan: Plan): string | undefined {
    return plan.live ? `${this.cfg.app}-${plan.live}` : undefined;
  }

  /**
   * Writes the upstream file and (reload) reloads nginx and waits, on the host in the same round trip, until its new
   * workers took over; njs: writes it atomically, no reload (the next request nginx handles reads the new port).
   */
  async switchTraffic(ctx: RouterContext): Promise<Cutover> {
    const { cfg, plan } = ctx;
    const port = cfg.ports[plan.candidate];
    const njs = cfg.nginxSwitch === 'njs';
    const note = `Live: ${plan.candidate} (${ctx.imageLabel}), ${cfg.command} ${ctx.deployId}.`;
    const s = writeUpstreamScript(cfg.nginxUpstreamFile, njs ? ':' : cfg.nginxReloadCommand, {
      takeoverMs: njs ? 0 : TAKEOVER_MS,
      lease: { app: cfg.app, deployId: ctx.deployId },
      content: renderUpstream(cfg.nginxUpstreamName, port, note)
    });
    const what = njs
      ? `point ${cfg.nginxUpstreamFile} at ${plan.candidate} (127.0.0.1:${port}); no reload: nginx reads the file at every request (njs)`
      : `point ${cfg.nginxUpstreamFile} at ${plan.candidate} (127.0.0.1:${port}), reload nginx and wait for its new workers`;
    const switchStart = Date.now();
    let out: string;
    try {
      out = await exec(ctx, 'switch', s, what);
    } catch (e) {
      const expired = leaseExpired(e);
      if (expired) throw expired;
      // A non-zero exit: the script could not write the file, or put the previous one back after a failed reload.
      if (!njs && e instanceof StepError)
        throw new StepError(
          'switch',
          `${e.message.replace(/^.*?failed/, 'nginx switch failed')}; the previous upstream file was restored`
        );
      throw e;
    }
    if (njs) {
      // The old colour's open connections (in-flight requests, streams) are waited for by the finishing job, before
      // it stops the old colour: it keeps running until then, so a failed verify could switch back to it.
      return {
        cutoverMs: Date.now() - switchStart,
        drain: plan.live ? this.connectionDrain(cfg.ports[plan.live]) : undefined
      };
    }
    const sw = parseSwitchOutput(out);
    // Timed on the host from the write: the runner's round trip to the host is not part of it.
    const taken = sw.outcome === 'taken-over';
    return {
      cutoverMs: taken ? (sw.cutoverMs ?? Date.now() - switchStart) : undefined,
      switchMs: taken ? sw.switchMs : undefined,
      drain: {
        lines: DRAIN_LOOP,
        words: sw.drainWorkers.join(' '),
        said: (o, stopName, secs) =>
          o.includes('@@drain-timeout')
            ? `old nginx workers were still finishing requests after drain-seconds (${secs} s); stopped ${stopName} anyway`
            : o.includes('@@unobservable')
              ? 'no nginx worker processes are visible on the host; waited the full drain-seconds'
              : undefined
      },
      detail: sw
    };
  }

  /** njs: the finishing job waits until nginx has no connection to the old colour's port left. */
  private connectionDrain(port: number): NonNullable<Cutover['drain']> {
    return {
      lines: [CLOCK, ...connectionDrainLoop('$1', '$2')],
      words: String(port),
      said: (o, stopName, secs) => {
        const left = /@@drain-timeout (\d+)/.exec(o);
        return left
          ? `${stopName} still had ${left[1]} connection(s) from nginx after drain-seconds (${secs} s); stopped it anyway`
          : undefined;
      }
    };
  }

  /** Verify, first: nginx took the new config (reload), and nginx-health-url answers through nginx. */
  async confirm(ctx: RouterContext, cutover: Cutover): Promise<void> {
    const { cfg, plan } = ctx;
    if (cfg.nginxSwitch === 'njs') {
      ctx.log.info(
        `nginx sends new requests to ${plan.candidate} from the next one on (nginx-switch: njs, not reloaded)`
      );
      await this.probeNginxHealth(ctx, 'verify');
      return;
    }
    const sw = (cutover.detail as SwitchOutput | undefined) ?? parseSwitchOutput('');
    if (sw.outcome === 'no-takeover' || (sw.outcome === undefined && sw.workersBefore.length > 0)) {
      // No nginx master took the new config: the reload did not happen (wrong reload command, a bind-mounted
      // file in a containerized nginx, …). Stopping the old colour now would cause an outage.
      throw new StepError(
        'verify',
        `nginx did not reload within ${TAKEOVER_MS / 1000} s (no nginx master on the host started new workers; masters ${sw.masters.join(', ') || '?'} with workers ${sw.workersBefore.join(', ')} are unchanged${sw.foreignMasters.length ? `; ${sw.foreignMasters.length} nginx master(s) in other PID namespaces (containers) are not watched` : ''}): check nginx-reload-command and that nginx reads ${cfg.nginxUpstreamFile}`
      );
    }
    if (sw.outcome !== 'taken-over')
      ctx.warn(
        `verify: no nginx master process is visible on the host, so the reload cannot be confirmed${cfg.nginxHealthUrl ? '; nginx-health-url is checked instead' : ' (set nginx-health-url to check nginx itself)'}`
      );
    else
      ctx.log.info(
        `nginx serves ${plan.candidate}: master ${sw.reloadedMasters.join(', ') || '?'} took the new config; first new worker ${sw.switchMs ?? '?'} ms, old workers no longer accepting ${cutover.cutoverMs} ms after the upstream was written`
      );
    await this.probeNginxHealth(ctx, 'verify');
  }

  /** Waits until nginx has no connection to `color`'s port left (in-flight requests, streams), at most drain-seconds. */
  private async drainConnections(h: RouterContext, step: 'switch-back', color: Color): Promise<void> {
    const port = this.cfg.ports[color];
    const out = await exec(
      h,
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
  private async probeNginxHealth(h: RouterContext, step: 'verify' | 'switch-back'): Promise<void> {
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

  async switchBack(h: RouterContext, state: HostState): Promise<SwitchBack> {
    const { cfg, plan } = h;
    if (!writtenBy(state.upstreamContent, h.deployId)) {
      // The file is not this run's: the switch never wrote it, put it back itself, or another deploy owns it now.
      h.log.info(
        `${cfg.nginxUpstreamFile} does not carry this deploy's id: traffic was not moved by this run, nothing to switch back`
      );
      return { moved: false };
    }
    const content = plan.upstreamContent;
    const njs = cfg.nginxSwitch === 'njs';
    const s = writeUpstreamScript(cfg.nginxUpstreamFile, njs ? ':' : cfg.nginxReloadCommand, {
      remove: content === undefined,
      takeoverMs: njs ? 0 : TAKEOVER_MS,
      content: content === undefined ? undefined : content.endsWith('\n') ? content : `${content}\n`
    });
    if (njs) {
      await exec(h, 'switch-back', s, `restore ${cfg.nginxUpstreamFile} (no reload: nginx reads it at every request)`);
      // requests already proxied to the candidate finish before it is removed
      await this.drainConnections(h, 'switch-back', plan.candidate);
      await this.probeNginxHealth(h, 'switch-back').catch((e: Error) => h.warn(`after switching back: ${e.message}`));
      return { moved: true };
    }
    const back = parseSwitchOutput(
      await exec(h, 'switch-back', s, `restore ${cfg.nginxUpstreamFile}, reload nginx and wait for its new workers`)
    );
    // nginx reloads asynchronously, and its previous workers keep proxying their requests to the candidate:
    // remove it only once they are done, or those requests fail with 502.
    if (back.outcome === 'taken-over' && back.drainWorkers.length) {
      await exec(
        h,
        'switch-back',
        nginxDrainScript(back.drainWorkers, cfg.drainMs),
        `let in-flight requests to ${cfg.app}-${plan.candidate} finish (up to ${cfg.drainMs / 1000} s)`
      );
    }
    await this.probeNginxHealth(h, 'switch-back').catch((e: Error) => h.warn(`after switching back: ${e.message}`));
    return { moved: true };
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
