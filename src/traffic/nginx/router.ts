/**
 * nginx mode: the candidate runs beside the live colour on its own 127.0.0.1 port; the switch rewrites the one
 * upstream file the action owns and reloads the host nginx (new workers take new connections, old workers finish
 * their requests), so no request is dropped.
 */
import type { Color, DeployConfig } from '../../config/types.js';
import { StepError } from '../../deploy/types.js';
import type { HostState } from '../../remote/outputs.js';
import { nginxDrainScript, writeUpstreamScript } from '../../remote/scripts.js';
import { writtenBy, type Cutover, type RouterHost, type TrafficRouter } from '../router.js';
import { renderUpstream, upstreamPort } from './upstream.js';

/** How long the switch waits (on the host, same round trip) for nginx's new workers. */
export const TAKEOVER_MS = 10_000;

type Takeover = 'taken-over' | 'no-takeover' | 'no-workers';

/** The switch script's markers, read as they arrive. */
interface SwitchWatch {
  workersBefore: string[];
  takeover?: Takeover;
  cutoverMs?: number;
  switchMs?: number;
}

function watchSwitch(w: SwitchWatch, switchStart: number) {
  return (line: string) => {
    if (line.startsWith('@@workers-before')) w.workersBefore = line.slice('@@workers-before'.length).trim().split(/\s+/).filter(Boolean);
    const m = /^@@(taken-over|no-takeover|no-workers)(?: \d+)?(?: (\d+))?(?: (\d+))?/.exec(line);
    if (!m) return;
    w.takeover = m[1] as Takeover;
    // Timed on the host from the write: the runner's round trip to the host is not part of it.
    if (w.takeover === 'taken-over') {
      w.cutoverMs = m[2] !== undefined ? Number(m[2]) : Date.now() - switchStart;
      w.switchMs = m[3] !== undefined ? Number(m[3]) : undefined;
    }
  };
}

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
    const w: SwitchWatch = { workersBefore: [] };
    const switchStart = Date.now();
    await timer.run('switch', async () => {
      const note = `Live: ${plan.candidate} (${h.imageLabel}), ${cfg.command} ${h.deployId}.`;
      const s = writeUpstreamScript(cfg.nginxUpstreamFile, cfg.nginxReloadCommand, { takeoverMs: TAKEOVER_MS });
      s.stdin = renderUpstream(cfg.nginxUpstreamName, port, note);
      await h.ensureLock();
      // The script may write and reload even if its answer never arrives: from here the undo reads the host.
      h.trafficMayHaveMoved();
      try {
        await h.exec('switch', s, `point ${cfg.nginxUpstreamFile} at ${plan.candidate} (127.0.0.1:${port}), reload nginx and wait for its new workers`, watchSwitch(w, switchStart));
      } catch (e) {
        // A non-zero exit: the script could not write the file, or put the previous one back after a failed reload.
        if (e instanceof StepError) throw new StepError('switch', `${e.message.replace(/^.*?failed/, 'nginx switch failed')}; the previous upstream file was restored`);
        throw e;
      }
    });
    await timer.run('verify', async () => {
      if (w.takeover === 'no-takeover' || (w.takeover === undefined && w.workersBefore.length > 0)) {
        // nginx kept its old workers: the reload did not happen (wrong reload command, a bind-mounted file in a
        // containerized nginx, …). Stopping the old colour now would cause an outage.
        throw new StepError('verify', `nginx did not reload within ${TAKEOVER_MS / 1000} s (its workers ${w.workersBefore.join(', ')} are still the only ones): check nginx-reload-command and that nginx reads ${cfg.nginxUpstreamFile}`);
      }
      if (w.takeover !== 'taken-over') h.warn('verify: no nginx worker processes are visible on the host, so the reload cannot be confirmed');
      else h.log.info(`nginx serves ${plan.candidate}: first new worker ${w.switchMs ?? '?'} ms, old workers no longer accepting ${w.cutoverMs} ms after the upstream was written`);
      await h.probeOnce('verify', port);
      await h.watch(port);
    });
    return { cutoverMs: w.cutoverMs, switchMs: w.switchMs, workersBefore: w.workersBefore };
  }

  async switchBack(h: RouterHost, state: HostState): Promise<boolean> {
    const { cfg, plan } = h;
    if (!writtenBy(state.upstreamContent, h.deployId)) {
      // The file is not this run's: the switch never wrote it, put it back itself, or another deploy owns it now.
      h.log.info(`${cfg.nginxUpstreamFile} does not carry this deploy's id: traffic was not moved by this run, nothing to switch back`);
      await h.discardCandidate(state);
      return false;
    }
    const content = plan.upstreamContent;
    const s = writeUpstreamScript(cfg.nginxUpstreamFile, cfg.nginxReloadCommand, { remove: content === undefined, takeoverMs: TAKEOVER_MS });
    if (content !== undefined) s.stdin = content.endsWith('\n') ? content : `${content}\n`;
    const w: SwitchWatch = { workersBefore: [] };
    await h.exec('switch-back', s, `restore ${cfg.nginxUpstreamFile}, reload nginx and wait for its new workers`, watchSwitch(w, Date.now()));
    // nginx reloads asynchronously, and its previous workers keep proxying their requests to the candidate:
    // remove it only once they are done, or those requests fail with 502.
    if (w.takeover === 'taken-over' && w.workersBefore.length) {
      await h.exec('switch-back', nginxDrainScript(w.workersBefore, cfg.drainMs), `let in-flight requests to ${cfg.app}-${plan.candidate} finish (up to ${cfg.drainMs / 1000} s)`);
    }
    await h.discardCandidate();
    return true;
  }
}
