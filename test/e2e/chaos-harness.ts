/**
 * Helpers for the chaos suites (chaos.test.ts on the single sandbox host through a FaultProxy, fleet-chaos.test.ts on
 * the fleet): start the action and act on it while it runs, watch the host for the moment to strike, and check what
 * a user would see afterwards (the report, the host's state, the lock, credentials left in /tmp).
 */
import fs from 'node:fs';
import net from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { q, runAction, sh, type RunActionOptions, type RunActionResult } from './harness.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it is true; throws naming `what` after ms. */
export async function waitUntil(
  what: string,
  fn: () => Promise<boolean> | boolean,
  ms = 60_000,
  intervalMs = 50
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export interface RunningAction {
  /** resolves with the result once the process has exited (however it ended) */
  done: Promise<RunActionResult>;
  /** the action's process (available once spawned, i.e. right after start) */
  child: () => ChildProcess;
  /** true while the process has not exited */
  alive: () => boolean;
  /** SIGKILL: the runner's process dies with no chance to report or clean up */
  kill: () => void;
}

/** Starts the action (harness runAction) and hands back its process so a test can strike at a chosen moment. */
export function startAction(inputs: Record<string, string>, opts: RunActionOptions = {}): RunningAction {
  let proc: ChildProcess | undefined;
  let exited = false;
  const done = runAction(inputs, {
    ...opts,
    onSpawn: (c) => {
      proc = c;
      c.once('exit', () => (exited = true));
      opts.onSpawn?.(c);
    }
  });
  done.finally(() => (exited = true)).catch(() => undefined);
  return {
    done,
    child: () => {
      if (!proc) throw new Error('the action was not spawned');
      return proc;
    },
    alive: () => !exited,
    kill: () => {
      if (!proc) throw new Error('the action was not spawned');
      proc.kill('SIGKILL');
    }
  };
}

/** A container of the app as `docker ps -a` shows it, cheaply (for polling while a deploy runs). */
export interface LiteContainer {
  name: string;
  state: string;
  /** tag of the image label: "v2", "unhealthy" */
  version: string;
  deployId: string;
}

/** Parses lines of `docker ps -a --format '{{.Names}}\t{{.State}}\t{{.Label "bluegreen.image"}}\t{{.Label "bluegreen.deploy-id"}}'`. */
export function parseLitePs(out: string): LiteContainer[] {
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [name, state, image, deployId] = l.split('\t');
      return { name, state, version: (image ?? '').split('@')[0].split(':').pop() ?? '', deployId: deployId ?? '' };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}
export const LITE_PS_FORMAT = '{{.Names}}\t{{.State}}\t{{.Label "bluegreen.image"}}\t{{.Label "bluegreen.deploy-id"}}';

/** The app's containers on the sandbox host (any state), without waiting for the drain job. */
export async function psLite(app: string): Promise<LiteContainer[]> {
  const r = await sh(`docker ps -a --filter ${q(`label=bluegreen.app=${app}`)} --format ${q(LITE_PS_FORMAT)}`);
  return parseLitePs(r.stdout);
}

/** The port the app's upstream file (sandbox host) sends traffic to, ignoring comments. */
export function upstreamPortOf(content: string): number | undefined {
  const ports = [...content.replace(/#.*$/gm, '').matchAll(/\bserver\s+127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  return ports.length === 1 ? ports[0] : undefined;
}
export function upstreamPort(app: string): number | undefined {
  try {
    return upstreamPortOf(fs.readFileSync(`/etc/nginx/bluegreen/${app}.conf`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** What a crash looks like in the action's output (as opposed to a failure it reports). */
export function crashSigns(r: RunActionResult): string[] {
  const out = `${r.stdout}\n${r.stderr}`;
  const signs: string[] = [];
  if (/Unhandled 'error' event/.test(out)) signs.push("Unhandled 'error' event");
  if (/UnhandledPromiseRejection|unhandled rejection/i.test(out)) signs.push('unhandled rejection');
  const stack = out.split('\n').find((l) => /^\s+at .+(\(.*:\d+:\d+\)|:\d+:\d+)$/.test(l));
  if (stack) signs.push(`stack trace: ${stack.trim()}`);
  if (r.signal) signs.push(`ended by ${r.signal}`);
  if (/\[harness\] timeout/.test(r.stderr)) signs.push('hung: killed by the harness timeout');
  return signs;
}

/** `step failed on host: cause` of the first ::error annotation, or ''. */
export function errorLine(r: RunActionResult): string {
  return r.stdout.match(/::error title=[^:]*::(.*)/)?.[1] ?? r.stdout.match(/::error::(.*)/)?.[1] ?? '';
}

/**
 * What a user sees of a failed run, in one object so a test failure shows all of it at once:
 * a non-zero exit that is not a crash, an ::error naming the step and the host, a `result` output and a summary.
 */
export function reportOf(r: RunActionResult) {
  return {
    exitedNonZero: r.code !== null && r.code !== 0,
    crash: crashSigns(r),
    error: errorLine(r),
    result: r.outputs.result,
    summaryWritten: r.summary.trim().length > 0
  };
}
/** True when an ::error line names a step and the host: "health failed on 127.0.0.1:40123: …". */
export function namesStepAndHost(error: string, hostLabel: string): boolean {
  const esc = hostLabel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^[a-z][a-z-]* failed on ${esc}: .+`).test(error);
}

/**
 * The report of a run that must fail cleanly, as [seen, wanted] for a toEqual (so a failing test shows all of it):
 * non-zero exit, no crash, an ::error naming the step and host, result failed/rolled-back, a summary; plus the
 * output's tail for context.
 */
export function failureReport(
  r: RunActionResult,
  hostLabel: string
): [Record<string, unknown>, Record<string, unknown>] {
  const rep = reportOf(r);
  const seen = {
    ...rep,
    errorNamesStepAndHost: namesStepAndHost(rep.error, hostLabel),
    resultIsFailure: ['failed', 'rolled-back'].includes(rep.result)
  };
  const want = {
    ...seen,
    exitedNonZero: true,
    crash: [],
    errorNamesStepAndHost: true,
    resultIsFailure: true,
    summaryWritten: true
  };
  return [seen, want];
}

/** The last lines of the run's output (stdout, then stderr), to show with a failed expectation. */
export function outputTail(r: RunActionResult, lines = 30): string {
  return `${r.stdout.split('\n').slice(-lines).join('\n')}\n--- stderr ---\n${r.stderr.split('\n').slice(-lines).join('\n')}`;
}

/** /tmp entries the action creates for credentials on the sandbox host (shared by everyone's tests). */
export async function credentialFiles(): Promise<string[]> {
  return (await sh('ls -d /tmp/bluegreen-login.* /tmp/bluegreen-env.* 2>/dev/null || true')).stdout
    .split('\n')
    .filter(Boolean)
    .sort();
}

/**
 * Credential files left by this case: env files that carry `marker` (the case passes it in `env`), and login dirs that
 * appeared since `before` and are still there after a while (other engineers' deploys create and remove their own
 * meanwhile; a leaked one stays).
 */
export async function credentialLeftovers(before: string[], marker: string): Promise<string[]> {
  const mine = async () => {
    const out: string[] = [];
    for (const f of await credentialFiles()) {
      if (f.includes('bluegreen-env.')) {
        const text = (await sh(`cat ${q(f)} 2>/dev/null`)).stdout;
        if (text.includes(marker)) out.push(f);
      } else if (!before.includes(f)) out.push(f);
    }
    return out;
  };
  let left = await mine();
  const end = Date.now() + 15_000;
  while (left.length && Date.now() < end) {
    await sleep(500);
    const now = await mine();
    left = left.filter((f) => now.includes(f));
  }
  return left;
}

/**
 * A TCP forwarder that holds every connection it accepts until open() is called, then connects them all upstream at
 * once: two runs put behind it start their SSH handshakes at the same instant (to race them for real, e.g. two fleet
 * runs for the hosts' locks, instead of whichever node process happened to start first). Open, it forwards as usual.
 */
export class GateProxy {
  accepted = 0;
  private opened = false;
  private held: Array<() => void> = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number
  ) {}

  static async start(targetHost: string, targetPort: number): Promise<GateProxy> {
    const server = net.createServer({ noDelay: true, pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const gate = new GateProxy(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (client: net.Socket) => gate.accept(client, targetHost, targetPort));
    return gate;
  }

  private accept(client: net.Socket, host: string, port: number): void {
    this.accepted++;
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    const go = () => {
      const up = net.connect({ host, port, noDelay: true });
      this.sockets.add(up);
      up.on('close', () => this.sockets.delete(up));
      up.on('error', () => client.destroy());
      client.on('error', () => up.destroy());
      client.on('close', () => up.destroy());
      up.on('close', () => client.destroy());
      client.pipe(up);
      up.pipe(client);
    };
    if (this.opened) go();
    else this.held.push(go);
  }

  /** Lets every held connection through (all at once) and every later one at once. */
  open(): void {
    this.opened = true;
    const held = this.held;
    this.held = [];
    for (const go of held) go();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
