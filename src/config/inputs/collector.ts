/**
 * The machinery every section of the inputs shares: defaults (the same as action.yml's), the reader of INPUT_*,
 * and the collector of problems, each naming the input, what is wrong and a right example.
 */
/** Defaults applied when an input is empty; action.yml declares the same values (a unit test checks). */
export const DEFAULTS = {
  command: 'deploy',
  transport: 'ssh',
  'ssh-address': 'private',
  'ssm-run-as': 'root',
  'ssh-user': 'ec2-user',
  'ssh-port': '22',
  'ssh-insecure-ignore-host-key': 'false',
  'ssh-connect-timeout-seconds': '20',
  'ssh-connect-retries': '2',
  rollout: 'parallel',
  'batch-wait-seconds': '0',
  'on-host-failure': 'rollback-all',
  'registry-auth': 'ecr',
  'container-port': '8080',
  'docker-command': 'docker',
  'health-path': '/health',
  'health-interval-seconds': '2',
  'health-timeout-seconds': '60',
  traffic: 'nginx',
  'blue-port': '8081',
  'green-port': '8082',
  'public-port': '8080',
  'nginx-reload-command': 'sudo -n nginx -t -q && sudo -n nginx -s reload',
  'nginx-switch': 'reload',
  'haproxy-socket': '/run/haproxy/admin.sock',
  'caddy-admin-url': 'http://127.0.0.1:2019',
  'caddy-switch-dir': '/var/lib/bluegreen/caddy',
  'haproxy-state-file': '/var/lib/haproxy/server-state',
  'alb-target-group': '',
  'alb-listener': '',
  'alb-rule': '',
  'alb-blue-target-group': '',
  'alb-green-target-group': '',
  'alb-canary-percent': '',
  'drain-seconds': '30',
  'wait-for-drain': 'false',
  'stop-timeout-seconds': '10',
  'lock-timeout-seconds': '300',
  'verify-seconds': '10',
  'keep-images': '3',
  'status-history': '10',
  'status-log-lines': '0',
  'upload-artifacts': 'true',
  'artifact-retention-days': '30',
  summary: 'true',
  'smoke-test': '',
  'smoke-test-on': 'all',
  'smoke-test-timeout-seconds': '120'
} as const;

export class InputError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? problems[0] : `${problems.length} inputs are invalid:\n- ${problems.join('\n- ')}`);
    this.name = 'InputError';
  }
}

export type InputReader = (name: string) => string;

/** Reads `INPUT_<NAME>` like @actions/core does (spaces to underscores, upper case, trimmed). */
export const envInputReader =
  (env: NodeJS.ProcessEnv = process.env): InputReader =>
  (name) =>
    (env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] ?? '').trim();

export const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
export const IPV6 = /^[0-9A-Fa-f:.]+$/;
export const USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
export const APP = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}=?$/;
export const PATH_SAFE = /^\/[A-Za-z0-9_./@+-]+$/;
export const COMMAND_WORD = /^[A-Za-z0-9_./:=@+%-]+$/;
export const ARTIFACT_FORBIDDEN = /["':<>|*?\r\n\\/]/;
/** Options docker-run-args may not carry: the action manages them itself. */
export const MANAGED_RUN_OPTIONS = [
  '--name',
  '-p',
  '--publish',
  '-P',
  '--publish-all',
  '--rm',
  '-d',
  '--detach',
  '-i',
  '--interactive',
  '-t',
  '--tty',
  '--label-file',
  '--cidfile'
];

export class Collector {
  problems: string[] = [];
  constructor(private readonly read: InputReader) {}

  raw(name: string): string {
    return this.read(name);
  }

  get(name: keyof typeof DEFAULTS | string): string {
    const v = this.read(name);
    if (v !== '') return v;
    return (DEFAULTS as Record<string, string>)[name] ?? '';
  }

  fail(name: string, problem: string, example: string): undefined {
    this.problems.push(`Input "${name}" ${problem}. Example: ${name}: ${example}`);
    return undefined;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T {
    const v = this.get(name);
    if ((allowed as readonly string[]).includes(v)) return v as T;
    this.fail(name, `must be one of ${allowed.join(', ')} (got "${printable(v)}")`, allowed[0]);
    return allowed[0];
  }

  bool(name: string): boolean {
    const v = this.get(name);
    if (/^(true|True|TRUE)$/.test(v)) return true;
    if (/^(false|False|FALSE)$/.test(v)) return false;
    this.fail(name, `must be true or false (got "${printable(v)}")`, 'true');
    return false;
  }

  number(name: string, min: number, max: number, opts: { integer?: boolean } = {}): number {
    const v = this.get(name);
    const n = Number(v);
    const ok = v !== '' && /^\d+(\.\d+)?$/.test(v) && n >= min && n <= max && (!opts.integer || Number.isInteger(n));
    if (ok) return n;
    this.fail(
      name,
      `must be ${opts.integer ? 'a whole number' : 'a number'} from ${min} to ${max} (got "${printable(v)}")`,
      String(Number((DEFAULTS as Record<string, string>)[name] ?? min))
    );
    return Number((DEFAULTS as Record<string, string>)[name] ?? min);
  }

  port(name: string): number {
    return this.number(name, 1, 65535, { integer: true });
  }
}

/** Shows a rejected value safely inside an error message (never used for secrets). */
export function printable(v: string): string {
  const s = v.length > 80 ? `${v.slice(0, 80)}…` : v;
  return s.replace(/[^\x20-\x7e]/g, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
