/**
 * The connection to HAProxy's admin socket on the host. Preferred: an OpenSSH stream-local forward over the deploy's
 * SSH connection (the host needs nothing extra; sshd allows it unless AllowStreamLocalForwarding is off). If sshd
 * refuses it, the same command line goes through socat or `nc -U` on the host. One stream per command line: HAProxy
 * answers a non-interactive line and closes.
 */
import type { RemoteHost } from '../../ssh/connection.js';
import { parseSocketDiagnosis, socketClientScript, socketDiagnosisScript } from './commands.js';

export interface Answer {
  text: string;
  /** From writing the line to the end of the answer, on the runner. */
  roundTripMs: number;
}

const ANSWER_TIMEOUT_MS = 10_000;

export class HaproxyRuntime {
  /** Set once sshd refused the forward: the host-side client is used from then on. */
  private viaHost = false;

  constructor(
    private readonly remote: RemoteHost,
    readonly socketPath: string,
    private readonly onNote: (message: string) => void = () => undefined
  ) {}

  /** Sends one command line (see commandLine) and returns HAProxy's whole answer. */
  async send(line: string): Promise<Answer> {
    if (!this.viaHost && this.remote.forwardUnix) {
      let stream: NodeJS.ReadWriteStream & { destroy(): void };
      try {
        stream = await this.remote.forwardUnix(this.socketPath);
      } catch (e) {
        const msg = (e as Error).message;
        // OpenSSH answers "open failed" both ways; the reason code tells: 1 = administratively prohibited (sshd's
        // AllowStreamLocalForwarding no, or a restricted key), 2 = connect failed (no socket, no permission).
        if ((e as { reason?: number }).reason !== 1 && !/prohibited/i.test(msg)) throw new Error(await this.explain(msg));
        this.viaHost = true;
        this.onNote(`sshd does not allow stream-local forwarding (${msg.replace(/^\(SSH\) /, '')}): using socat or nc -U on the host for ${this.socketPath}`);
        return this.sendViaHost(line);
      }
      return readAnswer(stream, line, this.socketPath);
    }
    return this.sendViaHost(line);
  }

  private async sendViaHost(line: string): Promise<Answer> {
    const s = socketClientScript(this.socketPath);
    const t0 = Date.now();
    const res = await this.remote.run(s.body, s.args, { stdin: line });
    if (res.code === 127) {
      throw new Error(`cannot reach the HAProxy socket ${this.socketPath}: sshd does not allow stream-local forwarding (set AllowStreamLocalForwarding yes in sshd_config) and neither socat nor nc -U is installed on the host (install socat)`);
    }
    if (res.code !== 0) throw new Error(await this.explain(res.stderr.trim() || `exit ${res.code}`));
    return { text: res.stdout, roundTripMs: Date.now() - t0 };
  }

  /** Turns "open failed" into the reason, read on the host (missing socket, permissions, group). */
  private async explain(detail: string): Promise<string> {
    const d = socketDiagnosisScript(this.socketPath);
    const why = await this.remote.run(d.body, d.args).then((r) => parseSocketDiagnosis(r.stdout, this.socketPath)).catch(() => undefined);
    return why ?? `cannot open the HAProxy socket ${this.socketPath} on the host: ${detail.replace(/^\(SSH\) /, '')}`;
  }
}

function readAnswer(stream: NodeJS.ReadWriteStream & { destroy(): void }, line: string, socketPath: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let text = '';
    let done = false;
    const t0 = Date.now();
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        stream.destroy();
        reject(err);
      } else resolve({ text, roundTripMs: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish(new Error(`HAProxy did not answer on ${socketPath} within ${ANSWER_TIMEOUT_MS / 1000} s`)), ANSWER_TIMEOUT_MS);
    stream.on('data', (d: Buffer) => (text += d.toString('utf8')));
    // HAProxy closes after answering a non-interactive line.
    stream.on('end', () => finish());
    stream.on('close', () => finish());
    stream.on('error', (e: Error) => finish(new Error(`the HAProxy socket ${socketPath}: ${e.message}`)));
    // Our side ends after the line (like socat): HAProxy still answers it, then closes.
    stream.end(line);
  });
}
