/**
 * Health checks from the runner: HTTP GET through the SSH connection's TCP forwarding, so neither
 * the host nor the image needs curl or wget. Between failed probes the container's state is read,
 * so a container that exits or restarts fails at once with its last log lines.
 */
import type { RemoteHost } from '../ssh/connection.js';
import { containerStatusScript, httpProbeScript, logsScript } from '../remote/scripts.js';
import type { HostLog } from '../report/log.js';
import { StepError } from './types.js';
import { cancelReason } from './steps.js';

export interface ProbeResult {
  status?: number;
  error?: string;
}

const LOG_TAIL = 40;

/** One HTTP GET over a forwarded channel; resolves with the status code or an error text. */
export async function probeViaForward(remote: RemoteHost, port: number, path: string, timeoutMs: number, host?: string): Promise<ProbeResult> {
  if (!remote.forward) throw Object.assign(new Error('this transport does not forward ports'), { reason: 1 });
  const stream = await remote.forward(port);
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
    stream.on('close', () => finish({ error: data ? 'the connection closed before an HTTP status line' : 'connection closed without an answer (app not listening yet?)' }));
    stream.write(`GET ${path} HTTP/1.1\r\nHost: ${host ?? `127.0.0.1:${port}`}\r\nUser-Agent: bluegreen-ec2-action\r\nConnection: close\r\n\r\n`);
  });
}

export async function probeViaShell(remote: RemoteHost, port: number, path: string, timeoutMs: number, host?: string): Promise<ProbeResult> {
  const s = httpProbeScript(port, path, Math.max(1, Math.ceil(timeoutMs / 1000)), host);
  const res = await remote.run(s.body, s.args);
  const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(res.stdout);
  if (m) return { status: Number(m[1]) };
  return { error: (res.stderr || res.stdout).trim() || `probe exited with ${res.code}` };
}

/** Probes with forwarding, falling back to the host-side probe when sshd forbids forwarding. */
export class Prober {
  private useShell = false;
  constructor(
    private readonly remote: RemoteHost,
    private readonly log: HostLog,
    /** Host header for health probes (health-host); default 127.0.0.1:<port>. */
    private readonly host?: string
  ) {}

  async probe(port: number, path: string, timeoutMs: number): Promise<ProbeResult> {
    if (!this.useShell) {
      try {
        return await probeViaForward(this.remote, port, path, timeoutMs, this.host);
      } catch (e) {
        const msg = (e as Error).message;
        // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (1): sshd forbids forwarding (OpenSSH says just "open failed"); or a
        // transport without forwarding at all.
        if ((e as { reason?: unknown }).reason !== 1 && !/prohibited/i.test(msg)) return { error: msg };
        if (this.remote.forward) this.log.warn(`sshd does not allow TCP forwarding (${msg}); probing with bash /dev/tcp on the host instead`);
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
}

const describe = (p: ProbeResult) => (p.status !== undefined ? `HTTP ${p.status}` : (p.error ?? 'no answer'));

/**
 * Waits for a 2xx. The first probes come quickly (50 ms doubling up to the interval) so a fast
 * app is not held back by a fixed sleep.
 */
export async function waitHealthy(remote: RemoteHost, prober: Prober, opts: HealthOptions, log: HostLog, signal?: AbortSignal): Promise<{ attempts: number }> {
  const start = Date.now();
  let delay = 50;
  let attempts = 0;
  let last: ProbeResult = {};
  for (;;) {
    if (signal?.aborted) throw new StepError('health', `${cancelReason(signal)} while waiting for ${opts.container} to become healthy`);
    attempts++;
    const remaining = opts.timeoutMs - (Date.now() - start);
    // Short timeouts first: right after start, docker-proxy can accept and then hang while the
    // container's network comes up; a slow health endpoint still gets up to 5 s on later probes.
    const probeTimeout = Math.max(200, Math.min(5000, 100 * 2 ** attempts, remaining));
    last = await prober.probe(opts.port, opts.path, probeTimeout);
    if (last.status !== undefined && last.status >= 200 && last.status < 300) {
      log.info(`GET ${opts.path} on 127.0.0.1:${opts.port} → HTTP ${last.status} after ${attempts} probe(s), ${Date.now() - start} ms`);
      return { attempts };
    }
    log.debug(`probe ${attempts}: ${describe(last)}`);
    const st = containerStatusScript(opts.dockerCommand, opts.container, LOG_TAIL);
    const res = await remote.run(st.body, st.args);
    const [statusLine, ...rest] = res.stdout.split('\n');
    const [state, restarts, exitCode] = statusLine.trim().split(' ');
    const logs = rest.join('\n').replace(/^@@logs\n?/, '').trim();
    if (state !== 'running' || Number(restarts) > 0) {
      const what = state === 'missing' ? 'disappeared' : Number(restarts) > 0 ? `restarted ${restarts} time(s) (state ${state}, last exit code ${exitCode})` : `is ${state} (exit code ${exitCode})`;
      throw new StepError('health', `container ${opts.container} ${what} before it became healthy`, logs);
    }
    if (Date.now() - start >= opts.timeoutMs) {
      const ls = logsScript(opts.dockerCommand, opts.container, LOG_TAIL);
      const tail = await remote.run(ls.body, ls.args);
      throw new StepError('health', `GET ${opts.path} on port ${opts.port} did not answer 2xx within ${opts.timeoutMs / 1000} s (${attempts} probes, last: ${describe(last)})`, tail.stdout.trim());
    }
    const wait = Math.min(delay, opts.intervalMs, Math.max(0, opts.timeoutMs - (Date.now() - start)));
    delay *= 2;
    await new Promise((r) => setTimeout(r, wait));
  }
}
