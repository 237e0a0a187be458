/**
 * The connection to HAProxy's admin socket on the host. Preferred: an OpenSSH stream-local forward over the deploy's
 * SSH connection (the host needs nothing extra; sshd allows it unless AllowStreamLocalForwarding is off). If sshd
 * refuses it, the same command line goes through socat or `nc -U` on the host. One stream per command line: HAProxy
 * answers a non-interactive line and closes.
 */
import type { RemoteHost } from '../../transport/remote-host.js';
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
        // OpenSSH refuses a forward it does not allow (AllowStreamLocalForwarding no, a restricted key) with the same
        // "open failed" as a connect failure: the host tells which. A socket the SSH user can use means sshd refused.
        const msg = (e as Error).message.replace(/^\(SSH\) /, '');
        const d = await this.diagnose();
        if (!d.usable)
          throw new Error(d.reason ?? `cannot open the HAProxy socket ${this.socketPath} on the host: ${msg}`);
        this.viaHost = true;
        this.onNote(
          `sshd does not allow stream-local forwarding to ${this.socketPath} (${msg}): using socat or nc -U on the host`
        );
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
      throw new Error(
        `cannot reach the HAProxy socket ${this.socketPath}: sshd does not allow stream-local forwarding (set AllowStreamLocalForwarding yes in sshd_config) and neither socat nor nc -U is installed on the host (install socat)`
      );
    }
    if (res.code !== 0) throw new Error(await this.explain(res.stderr.trim() || `exit ${res.code}`));
    return { text: res.stdout, roundTripMs: Date.now() - t0 };
  }

  /** Whether the SSH user can use the socket, read on the host; if not, why (missing socket, permissions, group). */
  private async diagnose(): Promise<{ usable: boolean; reason?: string }> {
    const d = socketDiagnosisScript(this.socketPath);
    const out = await this.remote
      .run(d.body, d.args)
      .then((r) => r.stdout)
      .catch(() => '');
    return { usable: /^@@socket ok$/m.test(out), reason: parseSocketDiagnosis(out, this.socketPath) };
  }

  private async explain(detail: string): Promise<string> {
    return (
      (await this.diagnose()).reason ??
      `cannot open the HAProxy socket ${this.socketPath} on the host: ${detail.replace(/^\(SSH\) /, '')}`
    );
  }
}

function readAnswer(
  stream: NodeJS.ReadWriteStream & { destroy(): void },
  line: string,
  socketPath: string
): Promise<Answer> {
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
    const timer = setTimeout(
      () => finish(new Error(`HAProxy did not answer on ${socketPath} within ${ANSWER_TIMEOUT_MS / 1000} s`)),
      ANSWER_TIMEOUT_MS
    );
    stream.on('data', (d: Buffer) => (text += d.toString('utf8')));
    // HAProxy closes after answering a non-interactive line.
    stream.on('end', () => finish());
    stream.on('close', () => finish());
    stream.on('error', (e: Error) => finish(new Error(`the HAProxy socket ${socketPath}: ${e.message}`)));
    // Our side ends after the line (like socat): HAProxy still answers it, then closes.
    stream.end(line);
  });
}
