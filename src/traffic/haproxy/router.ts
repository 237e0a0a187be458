/**
 * haproxy mode: the user's HAProxy stays theirs. Its backend (haproxy-backend) has two servers named blue and green on
 * blue-port and green-port; the action only changes their states through the runtime API (the admin socket, reached
 * through the SSH connection) — never HAProxy's configuration, never a reload or restart, so no connection is closed:
 *
 *   health   candidate maint → drain (HAProxy checks it, sends it nothing), our probe and HAProxy's check both pass
 *   switch   one command line: candidate ready, old drain (same pass of HAProxy's event loop)
 *   verify   HAProxy sees the candidate healthy, our probe, the verify-seconds watch; then wait until the old server
 *            has no sessions left (at most drain-seconds) and put it into maint. The old server stays in drain (and
 *            checked) until then, so switching back within verify needs no new check: it is immediate.
 *
 * After every change the server states are written to haproxy-state-file, so a reload or restart of HAProxy
 * (load-server-state-from-file) keeps the live colour live and the other in maint. Switching back is the same move in
 * the other direction, decided from HAProxy's real state as read after the failure.
 */
import type { Color, DeployConfig } from '../../model/config.js';
import { containerName, type HostState, type Plan } from '../../model/host.js';
import { StepError, type StepName } from '../../model/results.js';
import type { RemoteHost } from '../../transport/remote-host.js';
import { haproxyStatus } from './status.js';
import type { HostStatus } from '../../model/status.js';
import {
  exec,
  type RouterStatus,
  type StatusContext,
  type Cutover,
  type Router,
  type RouterContext,
  type SwitchBack,
  type WatchCheck
} from '../router.js';
import {
  commandLine,
  setStateCommand,
  showServersStateCommand,
  showStatCommand,
  switchCommands,
  writeStateFileScript
} from './commands.js';
import { HaproxyRuntime } from './runtime.js';
import {
  checkedHealthy,
  describeServer,
  parseActivityDates,
  parseBackendView,
  routedColorOf,
  unchecked,
  type BackendView,
  type ServerView
} from './view.js';

const POLL_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads HAProxy's view of the backend's two servers in one command line. */
export async function readBackendView(rt: HaproxyRuntime, backend: string): Promise<BackendView> {
  const { text } = await rt.send(commandLine([showServersStateCommand(backend), showStatCommand(backend)]));
  const at = text.indexOf('# pxname');
  return parseBackendView(backend, at >= 0 ? text.slice(0, at) : text, at >= 0 ? text.slice(at) : '');
}

/** A backend without servers named blue and green cannot be switched: say what the config must hold. */
export function missingServers(view: BackendView): string | undefined {
  const missing = (['blue', 'green'] as const).filter((c) => !view.servers[c]);
  if (!missing.length) return undefined;
  return `HAProxy's backend ${view.backend} has no server named ${missing.join(' or ')}: its servers must be named blue and green ("server blue 127.0.0.1:<blue-port> check" and "server green 127.0.0.1:<green-port> check")`;
}

export class HaproxyRouter implements Router {
  readonly kind = 'haproxy' as const;
  readonly startVerb = 'run' as const;

  constructor(private readonly cfg: DeployConfig) {}

  publishArgs(color: Color): string[] {
    return ['--publish', `127.0.0.1:${this.cfg.ports[color]}:${this.cfg.containerPort}`];
  }

  routedColor(state: Pick<HostState, 'upstreamContent'>): Color | undefined {
    return routedColorOf(this.cfg.haproxyBackend, state.upstreamContent);
  }

  probePort(color: Color): number {
    return this.cfg.ports[color];
  }

  retire(plan: Plan): string | undefined {
    return plan.live ? containerName(this.cfg.app, plan.live) : undefined;
  }

  routingFile(): string {
    return '';
  }

  async readRouting(remote: RemoteHost): Promise<string> {
    const rt = new HaproxyRuntime(remote, this.cfg.haproxySocket);
    const { text } = await rt.send(commandLine([showServersStateCommand(this.cfg.haproxyBackend)]));
    const view = parseBackendView(this.cfg.haproxyBackend, text);
    const missing = missingServers(view);
    if (missing) throw new Error(missing);
    return text;
  }

  status(ctx: StatusContext, st: HostStatus): Promise<RouterStatus> {
    return haproxyStatus(ctx, st);
  }

  private rt?: HaproxyRuntime;
  private rtRemote?: RemoteHost;

  /** The admin socket's client for the host's connection as it is now (a new one after a reconnect). */
  private runtime(h: RouterContext): HaproxyRuntime {
    if (!this.rt || this.rtRemote !== h.remote) {
      this.rt = new HaproxyRuntime(h.remote, this.cfg.haproxySocket, (m) => h.log.warn(m));
      this.rtRemote = h.remote;
    }
    return this.rt;
  }

  /** Runs state changes (one line) and fails the step with HAProxy's answer if it refused any. */
  private async change(h: RouterContext, rt: HaproxyRuntime, step: StepName, commands: string[]): Promise<string> {
    h.log.debug(`$ haproxy: ${commands.join('; ')}`);
    const { text } = await rt.send(commandLine(commands)).catch((e: Error) => {
      throw new StepError(step, e.message);
    });
    // `set server` answers nothing when it worked; show activity answers its counters.
    const refused = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !/^[A-Za-z0-9_]+: /.test(l));
    if (refused.length)
      throw new StepError(
        step,
        `HAProxy refused "${commands.filter((c) => c.startsWith('set ')).join('; ')}": ${refused.slice(0, 3).join(' ')}`
      );
    return text;
  }

  private async view(rt: HaproxyRuntime, step: StepName): Promise<BackendView> {
    try {
      const v = await readBackendView(rt, this.cfg.haproxyBackend);
      const missing = missingServers(v);
      if (missing) throw new Error(missing);
      return v;
    } catch (e) {
      throw new StepError(step, (e as Error).message);
    }
  }

  /** After every change: the server states into haproxy-state-file, for HAProxy's next start or reload. */
  private async saveState(h: RouterContext, rt: HaproxyRuntime, step: StepName): Promise<void> {
    const { text } = await rt.send(commandLine([showServersStateCommand()])).catch((e: Error) => {
      throw new StepError(step, e.message);
    });
    if (!/^1\s*\n#/.test(text.trimStart()))
      throw new StepError(step, `unexpected answer to "show servers state": ${text.trim().slice(0, 200)}`);
    const s = writeStateFileScript(this.cfg.haproxyStateFile);
    s.stdin = text.replace(/\n+$/, '\n');
    await exec(h, step, s, `write HAProxy's server states to ${this.cfg.haproxyStateFile}`);
  }

  /**
   * Takes `color` out of maint into drain: HAProxy checks it again and sends it no new requests. maint first:
   * HAProxy counts a server that leaves maint as up before checking it; this resets that, so only a check that
   * passes from now on counts (see checkedHealthy).
   */
  private async enterDrain(h: RouterContext, rt: HaproxyRuntime, step: StepName, color: Color): Promise<void> {
    const b = this.cfg.haproxyBackend;
    await this.change(h, rt, step, [setStateCommand(b, color, 'maint'), setStateCommand(b, color, 'drain')]);
    await this.saveState(h, rt, step);
  }

  /** Waits until HAProxy's own check of `color` passed since it left maint, at most `timeoutMs`. */
  private async waitChecked(
    h: RouterContext,
    rt: HaproxyRuntime,
    step: StepName,
    color: Color,
    timeoutMs: number
  ): Promise<ServerView> {
    const b = this.cfg.haproxyBackend;
    const until = Date.now() + timeoutMs;
    for (;;) {
      const s = (await this.view(rt, step)).servers[color]!;
      if (checkedHealthy(s)) {
        if (unchecked(s))
          h.warn(
            `HAProxy has no health check for ${b}/${color} (add "check" to its server line): it would send requests to it whatever the app answers`
          );
        return s;
      }
      if (Date.now() >= until) {
        throw new StepError(
          step,
          `HAProxy's check of ${b}/${color} did not pass within ${timeoutMs / 1000} s (${describeServer(s)}), although the container answers on 127.0.0.1:${this.cfg.ports[color]}: does the server line of ${color} in backend ${b} point at 127.0.0.1:${this.cfg.ports[color]}, and does its check match health-path?`
        );
      }
      await sleep(POLL_MS);
    }
  }

  /** Waits until `color` has no sessions left (at most drain-seconds), then puts it into maint. */
  private async drainThenMaint(h: RouterContext, rt: HaproxyRuntime, step: StepName, color: Color): Promise<void> {
    const b = this.cfg.haproxyBackend;
    const t0 = Date.now();
    const until = t0 + this.cfg.drainMs;
    let s: ServerView;
    for (;;) {
      s = (await this.view(rt, step)).servers[color]!;
      const left = (s.sessions ?? 0) + (s.queued ?? 0);
      if (left === 0) {
        h.log.info(`${b}/${color} has no sessions left (${Date.now() - t0} ms after it started draining)`);
        break;
      }
      if (Date.now() >= until) {
        h.warn(
          `${b}/${color} still had ${left} session(s) after drain-seconds (${this.cfg.drainMs / 1000} s): put into maint anyway (they go on until its container stops)`
        );
        break;
      }
      await sleep(POLL_MS);
    }
    await this.change(h, rt, step, [setStateCommand(b, color, 'maint')]);
    await this.saveState(h, rt, step);
  }

  /**
   * Makes `to` the only server HAProxy sends new requests to: `to` ready and `from` drain in one command line (HAProxy's
   * clock read around it). Returns the cut-over on HAProxy's clock.
   */
  private async move(
    h: RouterContext,
    rt: HaproxyRuntime,
    step: StepName,
    to: Color,
    from: Color
  ): Promise<number | undefined> {
    const b = this.cfg.haproxyBackend;
    const text = await this.change(h, rt, step, switchCommands(b, to, from));
    const dates = parseActivityDates(text);
    const cutoverMs = dates.length >= 2 ? Math.round(dates[dates.length - 1] - dates[0]) : undefined;
    await this.saveState(h, rt, step);
    const v = await this.view(rt, step);
    if (v.servers[to]!.admin !== 'ready' || v.servers[from]!.admin === 'ready') {
      throw new StepError(
        step,
        `HAProxy did not take the new states (${describeServer(v.servers[to])}; ${describeServer(v.servers[from])})`
      );
    }
    h.log.info(
      `HAProxy sends new requests to ${b}/${to} only: ready and drain applied in one pass (${cutoverMs ?? '?'} ms on HAProxy's clock); ${describeServer(v.servers[from])}`
    );
    return cutoverMs;
  }

  /** Health: HAProxy starts checking the candidate (in drain: no requests) while the deploy's probe waits for it. */
  async beforeHealth(h: RouterContext): Promise<void> {
    await this.enterDrain(h, this.runtime(h), 'health', h.plan.candidate);
  }

  /** Health: HAProxy's own check of the candidate passed since it left maint. */
  async afterHealth(h: RouterContext): Promise<void> {
    const s = await this.waitChecked(h, this.runtime(h), 'health', h.plan.candidate, this.cfg.healthTimeoutMs);
    h.log.info(`HAProxy's check passes: ${describeServer(s)}`);
  }

  /**
   * Until the switch nothing took traffic: whatever fails (health, the smoke test, a cancel), the candidate's server
   * goes back into maint, as it was before, not left in drain with HAProxy checking a container that is removed.
   */
  async abandon(h: RouterContext, how: { ownsHost: boolean }): Promise<void> {
    if (!how.ownsHost) return;
    const rt = this.runtime(h);
    await this.change(h, rt, 'health', [setStateCommand(this.cfg.haproxyBackend, h.plan.candidate, 'maint')])
      .then(() => this.saveState(h, rt, 'health'))
      .catch(() => undefined);
  }

  async switchTraffic(h: RouterContext): Promise<Cutover> {
    const b = this.cfg.haproxyBackend;
    const to = h.plan.candidate;
    const from = h.plan.live;
    const rt = this.runtime(h);
    if (from) return { cutoverMs: await this.move(h, rt, 'switch', to, from), drained: true };
    // First deploy: the candidate ready; the other server (no container) in maint.
    const other: Color = to === 'blue' ? 'green' : 'blue';
    await this.change(h, rt, 'switch', [setStateCommand(b, to, 'ready'), setStateCommand(b, other, 'maint')]);
    await this.saveState(h, rt, 'switch');
    return { drained: true };
  }

  async confirm(h: RouterContext): Promise<void> {
    const to = h.plan.candidate;
    const s = (await this.view(this.runtime(h), 'verify')).servers[to]!;
    if (!checkedHealthy(s) || s.admin !== 'ready')
      throw new StepError(
        'verify',
        `HAProxy does not see ${this.cfg.haproxyBackend}/${to} healthy after the switch (${describeServer(s)})`
      );
  }

  /**
   * Beside the verify-seconds watch, HAProxy's view of the candidate: its first failed check fails verify. HAProxy
   * marks a server down only after `fall` failed checks, and the old colour is still in drain and checked, so
   * switching back then happens before HAProxy has no server left to send requests to.
   */
  watchCheck(h: RouterContext): WatchCheck {
    const b = this.cfg.haproxyBackend;
    const color = h.plan.candidate;
    return {
      everyMs: POLL_MS,
      check: async () => {
        const s = (await this.view(this.runtime(h), 'verify')).servers[color]!;
        if (s.admin !== 'ready' || !checkedHealthy(s))
          throw new StepError(
            'verify',
            `HAProxy's check of ${b}/${color} failed after the switch (${describeServer(s)})`
          );
      }
    };
  }

  /**
   * The old colour stayed in drain (checked by HAProxy) through verify, so a switch back needed no new check; now
   * it finishes its sessions (at most drain-seconds) and goes into maint.
   */
  async afterVerify(h: RouterContext): Promise<void> {
    const b = this.cfg.haproxyBackend;
    const to = h.plan.candidate;
    const rt = this.runtime(h);
    const after = (await this.view(rt, 'verify')).servers[to]!;
    if (after.op !== 'up' || after.admin !== 'ready')
      throw new StepError(
        'verify',
        `HAProxy stopped sending requests to ${b}/${to} during verify (${describeServer(after)})`
      );
    if (h.plan.live) await this.drainThenMaint(h, rt, 'verify', h.plan.live);
  }

  async switchBack(h: RouterContext, _state: HostState): Promise<SwitchBack> {
    const { cfg, plan } = h;
    const b = cfg.haproxyBackend;
    const to = plan.candidate;
    const back = plan.live;
    const rt = this.runtime(h);
    // HAProxy's states as they are now (state.upstreamContent was read just before; this adds sessions and checks).
    const v = await this.view(rt, 'switch-back');
    const cand = v.servers[to];
    const prev = back ? v.servers[back] : undefined;
    const candTakes = cand?.admin === 'ready';
    if ((!cand || cand.admin === 'maint') && (!back || prev?.admin === 'ready')) {
      h.log.info(
        `HAProxy sends nothing to ${b}/${to}${back ? ` and ${back} is ready` : ''}: traffic was not moved, nothing to switch back`
      );
      return { moved: false };
    }
    if (back) {
      // The previous colour first gets HAProxy's passing check (it may be in maint already), then takes the traffic back.
      if (!prev) throw new StepError('switch-back', `HAProxy's backend ${b} has no server ${back}`);
      if (prev.admin === 'maint' || !checkedHealthy(prev)) {
        await this.enterDrain(h, rt, 'switch-back', back);
        await this.waitChecked(h, rt, 'switch-back', back, cfg.healthTimeoutMs);
      }
      await this.move(h, rt, 'switch-back', back, to);
      await this.drainThenMaint(h, rt, 'switch-back', to);
    } else {
      // No previous colour: nothing served before this run, and nothing does after it.
      if (cand!.admin === 'ready') await this.change(h, rt, 'switch-back', [setStateCommand(b, to, 'drain')]);
      await this.drainThenMaint(h, rt, 'switch-back', to);
    }
    return { moved: candTakes || prev?.admin !== 'ready' };
  }
}
