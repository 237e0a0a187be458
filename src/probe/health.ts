/**
 * Health checks from the runner: HTTP GET through the SSH connection's TCP forwarding, so neither
 * the host nor the image needs curl or wget. Between failed probes the container's state is read,
 * so a container that exits or restarts fails at once with its last log lines.
 */
import type { RemoteHost } from '../transport/remote-host.js';
import type { RemoteStream } from '../transport/remote-host.js';
import { containerStatusScript, healthWatchScript, httpProbeScript, logsScript } from '../remote/scripts.js';
import type { HostLog } from '../log/log.js';
import { StepError } from '../model/results.js';
import { cancelReason } from '../log/steps.js';

export interface ProbeResult {
  status?: number;
  error?: string;
}

const LOG_TAIL = 40;

/** One HTTP GET over a forwarded channel; resolves with the status code or an error text. */
export async function probeViaForward(
  remote: RemoteHost,
  port: number,
  path: string,
  timeoutMs: number,
  host?: string,
  opened?: RemoteStream
): Promise<ProbeResult> {
  if (!remote.forward) throw Object.assign(new Error('this transport does not forward ports'), { reason: 1 });
  const stream = opened ?? (await remote.forward(port));
  return new Promise((resolve) => {
    let data = '';
    let done = false;
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      stream.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    stream.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
      const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(data);
      if (m) finish({ status: Number(m[1]) });
      else if (data.length > 64 && !data.startsWith('HTTP/')) finish({ error: 'the answer is not HTTP' });
    });
    stream.on('error', (e: Error) => finish({ error: e.message }));
    stream.on('close', () =>
      finish({
        error: data
          ? 'the connection closed before an HTTP status line'
          : 'connection closed without an answer (app not listening yet?)'
      })
    );
    stream.write(
      `GET ${path} HTTP/1.1\r\nHost: ${host ?? `127.0.0.1:${port}`}\r\nUser-Agent: bluegreen-ec2-action\r\nConnection: close\r\n\r\n`
    );
  });
}

export async function probeViaShell(
  remote: RemoteHost,
  port: number,
  path: string,
  timeoutMs: number,
  host?: string
): Promise<ProbeResult> {
  const s = httpProbeScript(port, path, Math.max(1, Math.ceil(timeoutMs / 1000)), host);
  const res = await remote.run(s.body, s.args);
  const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(res.stdout);
  if (m) return { status: Number(m[1]) };
  return { error: (res.stderr || res.stdout).trim() || `probe exited with ${res.code}` };
}

/** Probes with forwarding, falling back to the host-side probe when sshd forbids forwarding. */
export class Prober {
  private useShell = false;
  /** The host has neither curl nor bash for the host-side health watcher: the runner probes itself. */
  noWatcher = false;
  constructor(
    private readonly remote: RemoteHost,
    private readonly log: HostLog,
    /** Host header for health probes (health-host); default 127.0.0.1:<port>. */
    private readonly host?: string
  ) {}

  private prepared?: { port: number; stream: Promise<RemoteStream | undefined>; closed: boolean };

  /**
   * Opens the forwarded connection for the next probe of `port` now (e.g. while the switch runs), so that probe
   * costs one round trip (the request) instead of two. A connection that closes before it is used is replaced.
   */
  prepare(port: number): void {
    this.discardPrepared();
    if (this.useShell || !this.remote.forward) return;
    const p = { port, closed: false, stream: Promise.resolve<RemoteStream | undefined>(undefined) };
    p.stream = this.remote.forward(port).then(
      (st) => {
        st.on('close', () => (p.closed = true));
        st.on('error', () => (p.closed = true));
        return st;
      },
      () => undefined
    );
    this.prepared = p;
  }

  private discardPrepared(): void {
    const p = this.prepared;
    this.prepared = undefined;
    void p?.stream.then((st) => st?.destroy());
  }

  async probe(port: number, path: string, timeoutMs: number): Promise<ProbeResult> {
    if (!this.useShell) {
      let opened: RemoteStream | undefined;
      if (this.prepared?.port === port) {
        const p = this.prepared;
        this.prepared = undefined;
        opened = await p.stream;
        if (p.closed) {
          opened?.destroy();
          opened = undefined;
        }
      } else this.discardPrepared();
      try {
        const r = await probeViaForward(this.remote, port, path, timeoutMs, this.host, opened);
        // A connection opened ahead may have been closed by the app meanwhile (an idle timeout): ask once more on a new one.
        if (opened && r.status === undefined)
          return await probeViaForward(this.remote, port, path, timeoutMs, this.host);
        return r;
      } catch (e) {
        const msg = (e as Error).message;
        // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (1): sshd forbids forwarding (OpenSSH says just "open failed"); or a
        // transport without forwarding at all.
        if ((e as { reason?: unknown }).reason !== 1 && !/prohibited/i.test(msg)) return { error: msg };
        if (this.remote.forward)
          this.log.warn(`sshd does not allow TCP forwarding (${msg}); probing with bash /dev/tcp on the host instead`);
        this.useShell = true;
      }
    }
    return probeViaShell(this.remote, port, path, timeoutMs, this.host);
  }
}

export interface HealthOptions {
  port: number;
  path: string;
  intervalMs: number;
  timeoutMs: number;
  container: string;
  dockerCommand: string[];
  /** Host header (health-host); default 127.0.0.1:<port>. */
  host?: string;
}

const describe = (p: ProbeResult) => (p.status !== undefined ? `HTTP ${p.status}` : (p.error ?? 'no answer'));

/** Time between two probes of the host-side watcher (one request at a time; never more often than health-interval). */
export const WATCH_EVERY_MS = 150;

/**
 * Waits for a 2xx: on the host itself when it can (healthWatchScript: probes every 150 ms there and reports the first
 * 2xx at once, so the runner learns of it half a round trip later), else from the runner through the connection.
 */
export async function waitHealthy(
  remote: RemoteHost,
  prober: Prober,
  opts: HealthOptions,
  log: HostLog,
  signal?: AbortSignal
): Promise<{ attempts: number }> {
  if (!prober.noWatcher) {
    const watched = await watchOnHost(remote, opts, log, signal);
    if (watched) return watched;
    prober.noWatcher = true;
  }
  return probeFromRunner(remote, prober, opts, log, signal);
}

/** The host-side watcher; undefined when the host cannot run it (then the runner probes). */
async function watchOnHost(
  remote: RemoteHost,
  opts: HealthOptions,
  log: HostLog,
  signal?: AbortSignal
): Promise<{ attempts: number } | undefined> {
  const cancelled = () =>
    new StepError('health', `${cancelReason(signal!)} while waiting for ${opts.container} to become healthy`);
  if (signal?.aborted) throw cancelled();
  const every = Math.min(WATCH_EVERY_MS, opts.intervalMs) / 1000;
  const s = healthWatchScript(
    opts.dockerCommand,
    opts.container,
    opts.port,
    opts.path,
    opts.host ?? `127.0.0.1:${opts.port}`,
    every,
    opts.timeoutMs,
    LOG_TAIL
  );
  let healthy: { status: number; attempts: number; ms: number } | undefined;
  let onAbort: (() => void) | undefined;
  // A cancel does not wait for the watcher: it ends by itself once the undo removed the container (or at the timeout).
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(cancelled());
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  let res;
  try {
    res = await Promise.race([
      remote.run(s.body, s.args, {
        onLine: (line) => {
          if (line.startsWith('@@probe ')) log.debug(`probe ${line.slice(8)}`);
          const m = /^@@healthy (\d{3}) (\d+) (\d+)$/.exec(line);
          if (m) healthy = { status: Number(m[1]), attempts: Number(m[2]), ms: Number(m[3]) };
        }
      }),
      aborted
    ]);
  } finally {
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
  // a transport that does not stream lines (onLine) still returns the whole output
  const done = /^@@healthy (\d{3}) (\d+) (\d+)$/m.exec(res.stdout);
  if (!healthy && done) healthy = { status: Number(done[1]), attempts: Number(done[2]), ms: Number(done[3]) };
  if (healthy) {
    log.info(
      `GET ${opts.path} on 127.0.0.1:${opts.port} → HTTP ${healthy.status} after ${healthy.attempts} probe(s), ${healthy.ms} ms (probed on the host every ${every * 1000} ms)`
    );
    return { attempts: healthy.attempts };
  }
  const out = res.stdout;
  const logs = out.includes('@@logs\n') ? out.slice(out.indexOf('@@logs\n') + 7).trim() : '';
  const container = /^@@container (\S+) (\S+) (\S+)$/m.exec(out);
  if (container) {
    const [, state, restarts, exitCode] = container;
    const what =
      state === 'missing'
        ? 'disappeared'
        : Number(restarts) > 0
          ? `restarted ${restarts} time(s) (state ${state}, last exit code ${exitCode})`
          : `is ${state} (exit code ${exitCode})`;
    throw new StepError('health', `container ${opts.container} ${what} before it became healthy`, logs);
  }
  const timeout = /^@@timeout (\d+) ?(.*)$/m.exec(out);
  if (timeout) {
    throw new StepError(
      'health',
      `GET ${opts.path} on port ${opts.port} did not answer 2xx within ${opts.timeoutMs / 1000} s (${timeout[1]} probes, last: ${timeout[2].trim() || 'no answer'})`,
      logs
    );
  }
  log.debug(
    out.includes('@@watch-unavailable')
      ? 'neither curl nor bash on the host: health is probed from the runner'
      : `the health watcher on the host ended without a verdict (exit ${res.code}): ${(res.stderr || out).trim().slice(-300)}; probing from the runner`
  );
  return undefined;
}

/**
 * From the runner. The first probes come quickly (50 ms doubling up to the interval) so a fast
 * app is not held back by a fixed sleep.
 */
async function probeFromRunner(
  remote: RemoteHost,
  prober: Prober,
  opts: HealthOptions,
  log: HostLog,
  signal?: AbortSignal
): Promise<{ attempts: number }> {
  const start = Date.now();
  let delay = 50;
  let attempts = 0;
  let last: ProbeResult = {};
  for (;;) {
    if (signal?.aborted)
      throw new StepError('health', `${cancelReason(signal)} while waiting for ${opts.container} to become healthy`);
    attempts++;
    const remaining = opts.timeoutMs - (Date.now() - start);
    // Short timeouts first: right after start, docker-proxy can accept and then hang while the
    // container's network comes up; a slow health endpoint still gets up to 5 s on later probes.
    const probeTimeout = Math.max(200, Math.min(5000, 100 * 2 ** attempts, remaining));
    last = await prober.probe(opts.port, opts.path, probeTimeout);
    if (last.status !== undefined && last.status >= 200 && last.status < 300) {
      log.info(
        `GET ${opts.path} on 127.0.0.1:${opts.port} → HTTP ${last.status} after ${attempts} probe(s), ${Date.now() - start} ms`
      );
      return { attempts };
    }
    log.debug(`probe ${attempts}: ${describe(last)}`);
    const st = containerStatusScript(opts.dockerCommand, opts.container, LOG_TAIL);
    const res = await remote.run(st.body, st.args);
    const [statusLine, ...rest] = res.stdout.split('\n');
    const [state, restarts, exitCode] = statusLine.trim().split(' ');
    const logs = rest
      .join('\n')
      .replace(/^@@logs\n?/, '')
      .trim();
    if (state !== 'running' || Number(restarts) > 0) {
      const what =
        state === 'missing'
          ? 'disappeared'
          : Number(restarts) > 0
            ? `restarted ${restarts} time(s) (state ${state}, last exit code ${exitCode})`
            : `is ${state} (exit code ${exitCode})`;
      throw new StepError('health', `container ${opts.container} ${what} before it became healthy`, logs);
    }
    if (Date.now() - start >= opts.timeoutMs) {
      const ls = logsScript(opts.dockerCommand, opts.container, LOG_TAIL);
      const tail = await remote.run(ls.body, ls.args);
      throw new StepError(
        'health',
        `GET ${opts.path} on port ${opts.port} did not answer 2xx within ${opts.timeoutMs / 1000} s (${attempts} probes, last: ${describe(last)})`,
        tail.stdout.trim()
      );
    }
    const wait = Math.min(delay, opts.intervalMs, Math.max(0, opts.timeoutMs - (Date.now() - start)));
    delay *= 2;
    await new Promise((r) => setTimeout(r, wait));
  }
}
