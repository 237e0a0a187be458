/** Runs one remote script for a step: its output goes to the host's log, and a non-zero exit becomes a StepError. */
import type { HostLog } from '../log/log.js';
import { StepError, type StepName } from '../model/results.js';
import type { RemoteScript } from '../remote/scripts.js';
import type { RemoteHost } from './remote-host.js';

export async function runStep(
  remote: RemoteHost,
  log: HostLog,
  step: StepName,
  s: RemoteScript,
  what: string,
  onLine?: (line: string) => void,
  quiet = false
): Promise<string> {
  log.debug(`$ ${what}`);
  const res = await remote.run(s.body, s.args, {
    stdin: s.stdin,
    onLine: (line, stream) => {
      if (line.startsWith('@@')) log.debug(line);
      else if (line.trim()) (quiet ? log.debug : log.info).call(log, stream === 'stderr' ? `  ! ${line}` : `  ${line}`);
      onLine?.(line);
    }
  });
  if (res.code !== 0) {
    const out = (res.stderr.trim() || res.stdout.trim())
      .split('\n')
      .filter((l) => !l.startsWith('@@'))
      .slice(-8)
      .join('\n');
    throw new StepError(step, `${what} failed (exit ${res.code ?? res.signal ?? 'unknown'})${out ? `: ${out}` : ''}`);
  }
  return res.stdout;
}
