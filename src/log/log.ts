/**
 * The run log: every step and remote command, timestamped with a level, written to a file
 * (for the artifact) and to the Actions log (grouped per step when one host, prefixed per host otherwise).
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import * as core from './workflow.js';
import type { Secrets } from './secrets.js';

export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface ConsoleSink {
  write(level: Level, text: string): void;
  startGroup(title: string): void;
  endGroup(): void;
}

export const actionsConsole: ConsoleSink = {
  write(level, text) {
    if (level === 'debug') core.debug(text);
    else if (level === 'warn') core.warning(text);
    else if (level === 'error') core.info(`Error: ${text}`);
    else core.info(text);
  },
  startGroup: (t) => core.startGroup(t),
  endGroup: () => core.endGroup()
};

export class RunLog {
  /** Whether console lines are prefixed with the host (several hosts log at once). */
  private readonly prefixHosts: boolean;
  private groupOpen = false;

  constructor(
    readonly file: string,
    private readonly secrets: Secrets,
    private readonly sink: ConsoleSink,
    hostCount: number
  ) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, '', { mode: 0o600 });
    this.prefixHosts = hostCount > 1;
  }

  log(level: Level, message: string, where: { host?: string; step?: string } = {}): void {
    const text = this.secrets.redact(message);
    const ts = new Date().toISOString();
    const tag = [where.host, where.step].filter(Boolean).join(' ');
    for (const line of text.split('\n')) {
      appendFileSync(this.file, `${ts} ${level.toUpperCase().padEnd(5)} ${tag ? `[${tag}] ` : ''}${line}\n`);
    }
    const consoleText =
      this.prefixHosts && where.host
        ? text
            .split('\n')
            .map((l) => `[${where.host}] ${l}`)
            .join('\n')
        : text;
    // Inside a group the Actions UI shows each line; annotations (warnings) are still raised.
    this.sink.write(level, consoleText);
  }

  /** Opens an Actions log group for a step (only when a single host is deployed; groups cannot interleave). */
  beginStep(host: string, step: string): void {
    if (this.prefixHosts) {
      this.log('info', `▶ ${step}`, { host, step });
      return;
    }
    if (this.groupOpen) this.sink.endGroup();
    this.sink.startGroup(`${step} — ${host}`);
    this.groupOpen = true;
    appendFileSync(this.file, `${new Date().toISOString()} INFO  [${host} ${step}] ▶ ${step}\n`);
  }

  endStep(host: string, step: string, status: string, durationMs: number): void {
    this.log(
      status === 'failed' ? 'error' : 'info',
      `${status === 'failed' ? '✗' : '✓'} ${step} ${status} in ${durationMs} ms`,
      { host, step }
    );
    if (!this.prefixHosts && this.groupOpen) {
      this.sink.endGroup();
      this.groupOpen = false;
    }
  }

  forHost(host: string): HostLog {
    return new HostLog(this, host);
  }
}

export class HostLog {
  step = '';
  constructor(
    private readonly run: RunLog,
    readonly host: string
  ) {}
  debug(m: string): void {
    this.run.log('debug', m, { host: this.host, step: this.step });
  }
  info(m: string): void {
    this.run.log('info', m, { host: this.host, step: this.step });
  }
  warn(m: string): void {
    this.run.log('warn', m, { host: this.host, step: this.step });
  }
  error(m: string): void {
    this.run.log('error', m, { host: this.host, step: this.step });
  }
  begin(step: string): void {
    this.step = step;
    this.run.beginStep(this.host, step);
  }
  end(step: string, status: string, durationMs: number): void {
    this.run.endStep(this.host, step, status, durationMs);
    this.step = '';
  }
}
