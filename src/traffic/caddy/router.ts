/**
 * caddy mode: the user's Caddy stays theirs. Its config (Caddyfile or JSON) routes the app to green when the marker
 * file `<caddy-switch-dir>/<app>/green` exists (a `file` matcher, which Caddy checks at every request) and to blue
 * otherwise. The switch writes or removes that file: no config change, so Caddy restarts nothing and closes no
 * connection (Caddy 2.6 replaces its servers on every config change through the admin API — PATCH or /load — and
 * then closes idle keep-alive connections and resets connections waiting to be accepted: measured in docs/traffic.md).
 * The admin API (caddy-admin-url, on the host's loopback) is read before the switch to check that the config routes
 * as above (else the switch would move nothing), by the finishing job to let Caddy's requests to the old colour
 * finish (`/reverse_proxy/upstreams`), and by `command: status`.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import { containerName, type HostState, type Plan } from '../../model/host.js';
import { StepError, type StepName } from '../../model/results.js';
import type { Finding, HostStatus } from '../../model/status.js';
import type { RemoteHost } from '../../transport/remote-host.js';
import {
  exec,
  type Cutover,
  type Router,
  type RouterContext,
  type RouterStatus,
  type RoutingView,
  type StatusContext,
  type SwitchBack
} from '../router.js';
import { configProblem } from './config.js';
import { adminGetScript, CADDY_DRAIN, caddyDrainScript, markerScript } from './scripts.js';
import { CLOCK } from '../../remote/scripts.js';

export interface CaddyStatus {
  adminUrl: string;
  /** The marker directory of the app (`<caddy-switch-dir>/<app>`). */
  markerDir: string;
  /** The colour the marker routes to now (what Caddy sends the next request to). */
  routed?: Color;
  /** What is missing from Caddy's config, or why it could not be read. */
  error?: string;
}

declare module '../../model/status.js' {
  interface RouterStatusFields {
    /** traffic caddy: whether Caddy's config routes this app by the marker file (src/traffic/caddy/router.ts). */
    caddy?: CaddyStatus;
  }
}

export class CaddyRouter implements Router {
  readonly kind = 'caddy' as const;
  readonly startVerb = 'run' as const;

  constructor(private readonly cfg: DeployConfig) {}

  private get markerDir(): string {
    return `${this.cfg.caddySwitchDir}/${this.cfg.app}`;
  }

  publishArgs(color: Color): string[] {
    return ['--publish', `127.0.0.1:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
  }

  /** The green marker: detect reads it (its content names the deploy that wrote it). */
  routingFile(): string {
    return `${this.markerDir}/green`;
  }

  routedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined {
    return state.upstreamContent !== undefined ? 'green' : 'blue';
  }

  /** Only one colour runs and the marker routes to the other: that one is live (liveColor), but Caddy sends to the other. */
  routingNotes(state: RoutingView): string[] {
    const routed = this.routedColor(state);
    return state.running.length === 1 && state.running[0] !== routed
      ? [
          `Caddy routes ${this.cfg.app} to ${routed} (${this.markerDir}/green ${routed === 'green' ? 'exists' : 'does not exist'}), which is not running; taking the running ${state.running[0]} container as live`
        ]
      : [];
  }

  probePort(color: Color): number {
    return this.cfg.ports[color];
  }

  retire(plan: Plan): string | undefined {
    return plan.live ? containerName(this.cfg.app, plan.live) : undefined;
  }

  /** Caddy's config as its admin API has it (GET /config/), read on the host. */
  private async readConfig(ctx: { remote: RemoteHost }, step: StepName): Promise<unknown> {
    const url = `${this.cfg.caddyAdminUrl}/config/`;
    const s = adminGetScript(url);
    const res = await ctx.remote.run(s.body, s.args);
    const out = res.stdout;
    const at = out.lastIndexOf('\n@@http ');
    const code = at >= 0 ? Number(out.slice(at + 8).trim()) : NaN;
    if (res.code !== 0 || code !== 200) {
      const why = (res.stderr.trim() || out.slice(0, Math.max(0, at)).trim()).split('\n').slice(-2).join(' ');
      throw new StepError(
        step,
        `Caddy's admin API did not answer GET ${url} on the host (${res.code !== 0 ? `exit ${res.code}` : `HTTP ${code}`}${why ? `: ${why}` : ''}): is Caddy running with its admin API on caddy-admin-url?`
      );
    }
    try {
      return JSON.parse(out.slice(0, at));
    } catch (e) {
      throw new StepError(step, `Caddy's admin API answered GET ${url} with no JSON (${(e as Error).message})`);
    }
  }

  /** Before anything takes traffic: Caddy's config must route this app by the marker, or the switch moves nothing. */
  async beforeHealth(ctx: RouterContext): Promise<void> {
    const problem = configProblem(await this.readConfig(ctx, 'health'), this.markerDir, this.cfg.ports);
    if (problem)
      throw new StepError(
        'health',
        `${problem}: traffic caddy switches by the marker file, so Caddy must route the app to green when ${this.markerDir}/green exists and to blue otherwise (see docs/traffic.md, Caddy); nothing was changed`
      );
    ctx.log.info(
      `Caddy's config routes ${this.cfg.app} by ${this.markerDir}/green (admin API ${this.cfg.caddyAdminUrl})`
    );
  }

  async switchTraffic(ctx: RouterContext): Promise<Cutover> {
    const { cfg, plan } = ctx;
    const to = plan.candidate;
    const t0 = Date.now();
    const note = `Live: ${to} (${ctx.imageLabel}), ${cfg.command} ${ctx.deployId}.`;
    try {
      await exec(
        ctx,
        'switch',
        markerScript(cfg.caddySwitchDir, cfg.app, to, note, { app: cfg.app, deployId: ctx.deployId }),
        to === 'green'
          ? `write ${this.markerDir}/green: Caddy sends the next request to green (127.0.0.1:${cfg.ports.green})`
          : `remove ${this.markerDir}/green: Caddy sends the next request to blue (127.0.0.1:${cfg.ports.blue})`
      );
    } catch (e) {
      if (e instanceof StepError && /\(exit 77\)/.test(e.message))
        throw new StepError(
          'switch',
          'the deploy lock (lease) of this run expired on the host before the switch, so another deploy may own the host now: traffic was not changed'
        );
      throw e;
    }
    return {
      cutoverMs: Date.now() - t0,
      // The finishing job stops the old colour once Caddy has no request to it in flight (at most drain-seconds).
      drain: plan.live
        ? {
            lines: [CLOCK, ...CADDY_DRAIN],
            words: `${cfg.caddyAdminUrl} 127.0.0.1:${cfg.ports[plan.live]}`,
            said: (o, stopName, secs) => {
              const left = /@@drain-timeout (\S+)/.exec(o);
              return left
                ? `Caddy still had ${left[1]} request(s) to ${stopName} after drain-seconds (${secs} s); stopped it anyway`
                : undefined;
            }
          }
        : undefined
    };
  }

  async confirm(ctx: RouterContext): Promise<void> {
    ctx.log.info(`Caddy sends new requests to ${ctx.plan.candidate} from the next one on (marker file, no reload)`);
  }

  /**
   * Decided from the marker as read after the failure: when it routes to the candidate and not as the host had it
   * before this run (plan.upstreamColor), it is put back as it was.
   */
  async switchBack(ctx: RouterContext, state: HostState): Promise<SwitchBack> {
    const { cfg, plan } = ctx;
    const now = this.routedColor(state);
    const before = this.routedColor(plan);
    if (now !== plan.candidate || now === before) {
      ctx.log.info(
        `Caddy routes ${cfg.app} to ${now} (${this.markerDir}/green), as before this deploy: traffic was not moved, nothing to switch back`
      );
      return { moved: false };
    }
    const back = before ?? 'blue';
    await exec(
      ctx,
      'switch-back',
      markerScript(
        cfg.caddySwitchDir,
        cfg.app,
        back,
        `Live: ${back}, switched back by ${cfg.command} ${ctx.deployId}.`
      ),
      `point Caddy back at ${back} (${back === 'green' ? 'write' : 'remove'} ${this.markerDir}/green)`
    );
    // Requests Caddy already sent to the candidate finish before it is removed.
    const out = await exec(
      ctx,
      'switch-back',
      caddyDrainScript(cfg.caddyAdminUrl, `127.0.0.1:${cfg.ports[plan.candidate]}`, cfg.drainMs),
      `let Caddy's requests to ${containerName(cfg.app, plan.candidate)} finish (up to ${cfg.drainMs / 1000} s)`
    );
    const left = /@@drain-timeout (\S+)/.exec(out);
    if (left)
      ctx.warn(
        `Caddy still had ${left[1]} request(s) to ${containerName(cfg.app, plan.candidate)} after drain-seconds: they end when it is removed`
      );
    return { moved: true };
  }

  /** `command: status`: whether Caddy's config routes the app by the marker (a finding if not). */
  async status(ctx: StatusContext, st: HostStatus): Promise<RouterStatus> {
    const caddy: CaddyStatus = { adminUrl: this.cfg.caddyAdminUrl, markerDir: this.markerDir };
    try {
      caddy.error = configProblem(await this.readConfig(ctx, 'detect'), this.markerDir, this.cfg.ports);
    } catch (e) {
      caddy.error = (e as Error).message;
    }
    // The colour the marker routes to, as Caddy sees it now (the one Caddy sends the next request to).
    const m = await ctx.remote.run('if [ -e "$1" ]; then echo green; else echo blue; fi', [this.routingFile()]);
    const routed: Color | undefined = m.code === 0 ? (m.stdout.trim() === 'green' ? 'green' : 'blue') : undefined;
    caddy.routed = routed;
    st.caddy = caddy;
    ctx.log.info(
      `caddy: routes ${this.cfg.app} to ${routed ?? '?'} (${this.markerDir}/green); ${caddy.error ?? 'the config routes by the marker'}`
    );
    return {
      routed,
      findings: (s) => {
        const f: Finding[] = caddy.error ? [{ level: 'error', message: `Caddy: ${caddy.error}` }] : [];
        if (routed && s.colors[routed].state !== 'running')
          f.push({
            level: 'error',
            message: `Caddy routes ${this.cfg.app} to ${routed} (${this.markerDir}/green ${routed === 'green' ? 'exists' : 'does not exist'}), which is ${s.colors[routed].state ?? 'missing'}: every request fails; deploy again or roll back`
          });
        return f;
      }
    };
  }
}

/** The status summary's line for Caddy. */
export function caddyStatusLine(st: HostStatus, cell: (s: string | undefined) => string): string | undefined {
  const c = st.caddy;
  if (!c) return undefined;
  return `Caddy (admin API \`${cell(c.adminUrl)}\`, marker \`${cell(c.markerDir)}/green\`): routes to ${c.routed ?? '?'}; ${c.error ? cell(c.error) : 'the config routes by the marker'}`;
}
