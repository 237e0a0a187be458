/**
 * smoke-test: the user's command, run on the runner with @actions/exec once the candidate is healthy and before
 * it takes traffic (CodeDeploy's BeforeAllowTraffic). The candidate is reached through a runner-local port
 * (127.0.0.1, ephemeral) whose every connection is tunnelled over the host's SSH connection to the candidate's
 * 127.0.0.1 port on the host, so the runner needs no network path to the host and the candidate needs no
 * public port. Nothing of the command reaches the host: it runs here, with the runner's tools.
 */
import { accessSync, constants } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { Color, DeployConfig, HostTarget, SmokeTest } from '../model/config.js';
import type { HostLog } from '../log/log.js';
import type { RemoteHost } from '../transport/remote-host.js';
import { cancelReason } from '../log/steps.js';
import type { HostDeployInput } from './host-deploy.js';
import { StepError, type SmokeTestReport } from '../model/results.js';

/** Lines of the command's output kept for the summary (the whole output is in the host's log). */
export const SMOKE_TAIL_LINES = 40;
/** After SIGTERM, how long the command's process group gets before SIGKILL. */
const KILL_GRACE_MS = 3000;
/** Printed by the wrapper before the user's command starts: the pid (= process group) to signal. */
const PID_MARKER = '@@bluegreen-smoke-pid ';

export interface SmokeTestContext {
  remote: RemoteHost;
  port: number;
  color: Color;
  image: string;
  log: HostLog;
  signal?: AbortSignal;
  app: string;
  deployId: string;
}

export interface SmokeTestOutcome {
  /** Exit code (undefined when killed: timeout or cancel). */
  exitCode?: number;
  durationMs: number;
  /** The last lines of its output, stdout and stderr interleaved as they arrived. */
  tail: string;
  /** Why it failed, if it did: "exited with code 3", "timed out after …", "stopped: …". */
  failure?: string;
}

/** A runner-local TCP port whose connections are each piped through remote.forward(port) to the candidate. */
export async function openTunnel(
  remote: RemoteHost,
  port: number,
  log: HostLog
): Promise<{ url: string; port: number; close(): Promise<void> }> {
  if (!remote.forward)
    throw new StepError('smoke-test', 'smoke-test needs a transport that forwards ports to the candidate (SSH does)');
  const sockets = new Set<net.Socket>();
  const streams = new Set<{ destroy(): void }>();
  let errors = 0;
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.setNoDelay(true);
    sock.pause();
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    remote.forward!(port).then(
      (ch) => {
        streams.add(ch);
        if (sock.destroyed) {
          ch.destroy();
          return;
        }
        // End follows end both ways (pipe), so a half-closed request still gets its answer and the answer is
        // flushed before the socket closes; an error or the client going away tears both down.
        const abort = () => {
          streams.delete(ch);
          ch.destroy();
          sock.destroy();
        };
        ch.on('error', abort);
        ch.on('close', () => streams.delete(ch));
        sock.on('close', abort);
        sock.pipe(ch as unknown as NodeJS.WritableStream);
        (ch as unknown as NodeJS.ReadableStream).pipe(sock);
        sock.resume();
      },
      (e: Error) => {
        // Said once: a test hammering a dead port would fill the log.
        if (errors++ === 0)
          log.warn(`smoke-test tunnel: could not open a stream to 127.0.0.1:${port} on the host: ${e.message}`);
        sock.destroy();
      }
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const local = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${local}`,
    port: local,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        for (const ch of streams) ch.destroy();
        server.close(() => resolve());
      })
  };
}

/**
 * What the command does not get from the action's environment: the action's inputs (INPUT_*, the SSH key among
 * them), the runtime tokens the runner gives actions but not `run:` steps, and this step's file commands (the
 * command must not set the action's outputs, environment or job summary by writing to them).
 */
const WITHHELD =
  /^(INPUT_|STATE_|ACTIONS_RUNTIME_|ACTIONS_RESULTS_URL$|ACTIONS_CACHE_URL$|GITHUB_(OUTPUT|STATE|ENV|PATH|STEP_SUMMARY)$)/;

/** The environment of the command: the job's, less WITHHELD, plus BLUEGREEN_*. */
export function smokeTestEnv(base: NodeJS.ProcessEnv, vars: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) {
    if (v === undefined || WITHHELD.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...vars };
}

/**
 * Runs the command with `bash --noprofile --norc -eo pipefail -c` (what a workflow's `run:` uses), in its own
 * process group (setsid) so a timeout or cancel stops everything it started. Never throws: the outcome says.
 */
export async function runSmokeCommand(
  test: SmokeTest,
  vars: Record<string, string>,
  log: HostLog,
  signal?: AbortSignal,
  baseEnv: NodeJS.ProcessEnv = process.env
): Promise<SmokeTestOutcome> {
  const started = Date.now();
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > SMOKE_TAIL_LINES) tail.shift();
  };
  let pid: number | undefined;
  let killedFor: string | undefined;
  const kill = (why: string) => {
    if (killedFor) return;
    killedFor = why;
    if (pid === undefined) return;
    signalGroup(pid, 'SIGTERM');
    setTimeout(() => signalGroup(pid!, 'SIGKILL'), KILL_GRACE_MS).unref();
  };
  const timer = setTimeout(
    () => kill(`timed out after ${test.timeoutMs / 1000} s (smoke-test-timeout-seconds)`),
    test.timeoutMs
  );
  const onAbort = () => kill(`stopped: ${cancelReason(signal!)}`);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });

  const setsid = whichOrEmpty('setsid');
  // The wrapper prints its pid, then becomes the user's command (exec keeps the pid, so it leads the group).
  // Its stdin is /dev/null (a command that waits for input ends at once instead of at the timeout): redirected here,
  // not by writing an empty input to a pipe, which failed with EPIPE when the command had already exited.
  const wrapper = `printf '${PID_MARKER}%s\\n' "$$"; exec bash --noprofile --norc -eo pipefail -c "$1" </dev/null`;
  const argv = [
    ...(setsid ? [setsid] : []),
    'bash',
    '--noprofile',
    '--norc',
    '-c',
    wrapper,
    'bluegreen-smoke-test',
    test.command
  ];
  let exitCode: number | undefined;
  let spawnError: string | undefined;
  try {
    // loaded only for a smoke test: @actions/exec (and @actions/io) are not part of every run's start
    const exec = await import('@actions/exec');
    const code = await exec.exec(argv[0], argv.slice(1), {
      env: smokeTestEnv(baseEnv, vars),
      silent: true,
      ignoreReturnCode: true,
      // A background process that keeps stdout open must not hold the deploy long after the command exits.
      delay: 2000,
      listeners: {
        stdline: (line) => {
          if (pid === undefined && line.startsWith(PID_MARKER)) {
            pid = Number(line.slice(PID_MARKER.length));
            if (killedFor) {
              signalGroup(pid, 'SIGTERM');
              setTimeout(() => signalGroup(pid!, 'SIGKILL'), KILL_GRACE_MS).unref();
            }
            return;
          }
          log.info(`  ${line}`);
          keep(line);
        },
        errline: (line) => {
          log.info(`  ! ${line}`);
          keep(line);
        }
      }
    });
    exitCode = typeof code === 'number' && !Number.isNaN(code) ? code : undefined;
  } catch (e) {
    spawnError = (e as Error).message;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    // Whatever it left running in its group goes with it (a group's id is not reused while it has members; a
    // lone pid that exited might be, so without setsid nothing is signalled now).
    if (pid !== undefined && setsid) signalGroup(pid, 'SIGKILL', true);
  }
  const durationMs = Date.now() - started;
  let failure: string | undefined;
  if (killedFor) failure = killedFor;
  else if (spawnError) failure = `could not run: ${spawnError}`;
  else if (exitCode !== 0) failure = `exited with code ${exitCode ?? 'unknown'}`;
  return { exitCode, durationMs, tail: tail.join('\n'), failure };
}

function signalGroup(pid: number, sig: NodeJS.Signals, groupOnly = false): void {
  for (const target of groupOnly ? [-pid] : [-pid, pid]) {
    try {
      process.kill(target, sig);
      return;
    } catch {
      // not a group leader (no setsid) or already gone: try the process itself
    }
  }
}

/** The tool's path on PATH, or '' (setsid comes with util-linux, on every GitHub-hosted Linux runner). */
function whichOrEmpty(tool: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, tool), constants.X_OK);
      return join(dir, tool);
    } catch {
      // not here
    }
  }
  return '';
}

/** The hook HostDeployment calls before the switch: tunnel, command, and a StepError that fails the host. */
export async function smokeTestCandidate(
  test: SmokeTest,
  c: SmokeTestContext,
  record: (o: SmokeTestReport) => void
): Promise<void> {
  const tunnel = await openTunnel(c.remote, c.port, c.log);
  c.log.info(
    `running the smoke test on the runner against ${c.color} (${c.image}) at ${tunnel.url} → 127.0.0.1:${c.port} on ${c.remote.target.label} (timeout ${test.timeoutMs / 1000} s)`
  );
  let outcome: SmokeTestOutcome;
  try {
    outcome = await runSmokeCommand(
      test,
      {
        BLUEGREEN_CANDIDATE_URL: tunnel.url,
        BLUEGREEN_HOST: c.remote.target.label,
        BLUEGREEN_COLOR: c.color,
        BLUEGREEN_IMAGE: c.image,
        BLUEGREEN_APP: c.app,
        BLUEGREEN_DEPLOY_ID: c.deployId
      },
      c.log,
      c.signal
    );
  } finally {
    await tunnel.close();
  }
  record({ ...outcome, command: test.command });
  if (outcome.failure) {
    const last = outcome.tail
      .split('\n')
      .filter((l) => l.trim())
      .slice(-3)
      .join('\n');
    throw new StepError(
      'smoke-test',
      `the smoke test ${outcome.failure}${last ? ` (last output: ${last.replace(/\n/g, ' | ')})` : ''}; the candidate got no traffic`
    );
  }
  c.log.info(`smoke test passed in ${outcome.durationMs} ms`);
}

/**
 * The beforeTraffic hook of one host, or undefined when no smoke test runs there: smoke-test is empty, the
 * command is not a deploy (a rollback returns to a version that already ran and must be fast), or
 * smoke-test-on: first and this is not the first host of the hosts input.
 */
export function smokeTestHook(
  cfg: DeployConfig,
  target: HostTarget,
  deployId: string,
  onReport: (r: SmokeTestReport) => void
): HostDeployInput['beforeTraffic'] {
  const test = cfg.smokeTest;
  if (!test || cfg.command !== 'deploy') return undefined;
  if (test.on === 'first' && cfg.hosts[0]?.label !== target.label) return undefined;
  return ({ remote, port, color, image, log, timer }) =>
    timer.run('smoke-test', () =>
      smokeTestCandidate(
        test,
        { remote, port, color, image, log, signal: timer.signal, app: cfg.app, deployId },
        onReport
      )
    );
}
