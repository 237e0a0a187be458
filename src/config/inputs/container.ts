/** The container section: port, env, docker run arguments, the docker command and the health checks. */
import type { DeployConfig, EnvVar } from '../../model/config.js';
import { splitWords } from '../../remote/shell.js';
import { Collector, COMMAND_WORD, ENV_KEY, MANAGED_RUN_OPTIONS, printable, type InputReader } from './collector.js';

export function readContainer(
  c: Collector,
  read: InputReader
): Pick<
  DeployConfig,
  | 'containerPort'
  | 'env'
  | 'dockerRunArgs'
  | 'dockerCommand'
  | 'healthPath'
  | 'healthHost'
  | 'healthIntervalMs'
  | 'healthTimeoutMs'
> {
  const containerPort = c.port('container-port');
  const env0 = parseEnv(read('env'));
  for (const p of env0.problems) c.fail('env', p, 'DATABASE_URL=postgres://… (one KEY=VALUE per line)');

  let dockerRunArgs: string[] = [];
  try {
    dockerRunArgs = splitWords(c.raw('docker-run-args'));
    for (const a of dockerRunArgs) {
      const opt = a.split('=')[0];
      if (MANAGED_RUN_OPTIONS.includes(opt) || /^-[dPit]{2,4}$/.test(a) || /^-p\d/.test(a)) {
        c.fail(
          'docker-run-args',
          `must not set ${opt}: the action sets the name, ports, detach mode and labels itself`,
          '--memory 512m --log-opt max-size=10m'
        );
        break;
      }
      if (a.includes('\n') || a.includes('\0')) {
        c.fail('docker-run-args', 'must not contain newlines or NUL bytes', '--memory 512m');
        break;
      }
    }
  } catch (e) {
    c.fail(
      'docker-run-args',
      `cannot be split into arguments (${(e as Error).message})`,
      `--memory 512m --log-opt "max-size=10m"`
    );
  }

  const dockerCommand = c.get('docker-command').split(/ +/).filter(Boolean);
  if (
    dockerCommand.length === 0 ||
    /[^\x20-\x7e]/.test(c.get('docker-command')) ||
    c.get('docker-command').length > 200 ||
    dockerCommand.some((w) => w.includes('..')) ||
    dockerCommand.some((w) => !COMMAND_WORD.test(w)) ||
    dockerCommand[0].startsWith('-')
  ) {
    c.fail(
      'docker-command',
      `must be plain words such as "docker" or "sudo -n docker" (got "${printable(c.get('docker-command'))}")`,
      'sudo -n docker'
    );
  }

  const healthPath = c.get('health-path');
  if (!/^\/[\x21-\x7e]{0,2047}$/.test(healthPath))
    c.fail(
      'health-path',
      `must start with "/" and hold only printable characters without spaces (got "${printable(healthPath)}")`,
      '/health'
    );
  const healthHost = c.raw('health-host') || undefined;
  if (healthHost && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:\d{1,5})?$/.test(healthHost))
    c.fail(
      'health-host',
      `must be a host name, optionally with :port (got "${printable(healthHost)}")`,
      'api.example.com'
    );
  const healthIntervalMs = c.number('health-interval-seconds', 0.1, 300) * 1000;
  const healthTimeoutMs = c.number('health-timeout-seconds', 1, 3600) * 1000;

  return {
    containerPort,
    env: env0.vars,
    dockerRunArgs,
    dockerCommand,
    healthPath,
    healthHost,
    healthIntervalMs,
    healthTimeoutMs
  };
}

export function parseEnv(value: string): { vars: EnvVar[]; problems: string[] } {
  const vars: EnvVar[] = [];
  const problems: string[] = [];
  value.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim();
    // Never echo the value: it is a secret. The key alone is safe to name.
    if (eq < 0) problems.push(`line ${i + 1} has no "=" (each line must be KEY=VALUE)`);
    else if (!ENV_KEY.test(key))
      problems.push(`line ${i + 1} has an invalid variable name "${printable(key.slice(0, 40))}"`);
    else if (vars.some((v) => v.key === key)) problems.push(`line ${i + 1} sets ${key} a second time`);
    else if (line.slice(eq + 1).includes('\0')) problems.push(`line ${i + 1} (${key}) contains a NUL byte`);
    else vars.push({ key, value: line.slice(eq + 1) });
  });
  return { vars, problems };
}
