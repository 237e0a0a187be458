/**
 * Reads and validates every input before anything connects anywhere. All problems are
 * collected and reported together; each names the input, what is wrong and a right example.
 */
import { utils as ssh2Utils } from 'ssh2';
import type { RunContext } from './context.js';
import { DIGEST_RE, ecrRegion, parseImage, TAG_RE, type ImageRef } from './image.js';
import type { Color, Command, DeployConfig, EnvVar, HostTarget, JumpHost, NginxHealthUrl, OnHostFailure, RegistryAuth, Rollout, RolloutStrategy, Traffic } from './types.js';
import { parseKnownHosts } from '../ssh/known-hosts.js';
import { splitWords } from '../remote/shell.js';

/** Defaults applied when an input is empty; action.yml declares the same values (a unit test checks). */
export const DEFAULTS = {
  command: 'deploy',
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
  'haproxy-socket': '/run/haproxy/admin.sock',
  'haproxy-state-file': '/var/lib/haproxy/server-state',
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

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
const APP = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}=?$/;
const PATH_SAFE = /^\/[A-Za-z0-9_./@+-]+$/;
const COMMAND_WORD = /^[A-Za-z0-9_./:=@+%-]+$/;
const ARTIFACT_FORBIDDEN = /["':<>|*?\r\n\\/]/;
/** Options docker-run-args may not carry: the action manages them itself. */
const MANAGED_RUN_OPTIONS = ['--name', '-p', '--publish', '-P', '--publish-all', '--rm', '-d', '--detach', '-i', '--interactive', '-t', '--tty', '--label-file', '--cidfile'];

class Collector {
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
    this.fail(name, `must be ${opts.integer ? 'a whole number' : 'a number'} from ${min} to ${max} (got "${printable(v)}")`, String(Number((DEFAULTS as Record<string, string>)[name] ?? min)));
    return Number((DEFAULTS as Record<string, string>)[name] ?? min);
  }

  port(name: string): number {
    return this.number(name, 1, 65535, { integer: true });
  }
}

/** Shows a rejected value safely inside an error message (never used for secrets). */
function printable(v: string): string {
  const s = v.length > 80 ? `${v.slice(0, 80)}…` : v;
  return s.replace(/[^\x20-\x7e]/g, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

export function parseHosts(value: string, defaultUser: string, defaultPort: number): { hosts: HostTarget[]; problems: string[] } {
  const hosts: HostTarget[] = [];
  const problems: string[] = [];
  const entries = value.split(/[,\n]/).map((s) => s.trim()).filter((s) => s !== '' && !s.startsWith('#'));
  for (const entry of entries) {
    let rest = entry;
    let user = defaultUser;
    const at = rest.lastIndexOf('@');
    if (at >= 0) {
      user = rest.slice(0, at);
      rest = rest.slice(at + 1);
      if (!USER.test(user)) {
        problems.push(`"${printable(entry)}" has an invalid user name`);
        continue;
      }
    }
    let host = rest;
    let port = defaultPort;
    const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest);
    if (bracket) {
      host = bracket[1];
      if (bracket[2]) port = Number(bracket[2]);
      if (!IPV6.test(host)) {
        problems.push(`"${printable(entry)}" is not a valid [IPv6]:port address`);
        continue;
      }
    } else {
      const m = /^([^:]+):(\d+)$/.exec(rest);
      if (m) {
        host = m[1];
        port = Number(m[2]);
      }
      if (!HOSTNAME.test(host)) {
        problems.push(`"${printable(entry)}" is not a valid host name or address`);
        continue;
      }
    }
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      problems.push(`"${printable(entry)}" has a port outside 1-65535`);
      continue;
    }
    const label = port === 22 && !entry.includes(':') ? host : `${host.includes(':') ? `[${host}]` : host}:${port}`;
    if (hosts.some((h) => h.host === host && h.port === port)) {
      problems.push(`"${printable(entry)}" is listed twice`);
      continue;
    }
    hosts.push({ label, host, port, user });
  }
  if (entries.length === 0) problems.push('is empty');
  return { hosts, problems };
}

/** Reads and checks a private key input (and its passphrase input); undefined when missing or unusable. */
function readPrivateKey(c: Collector, keyInput: string, passInput: string, required: boolean): string | undefined {
  const privateKey = c.raw(keyInput);
  const passphrase = c.raw(passInput) || undefined;
  const example = '${{ secrets.EC2_SSH_KEY }} (the whole "-----BEGIN OPENSSH PRIVATE KEY-----" block)';
  if (!privateKey) {
    if (required) c.fail(keyInput, 'is required', example);
    return undefined;
  }
  const normalized = normalizePrivateKey(privateKey);
  const parsed = ssh2Utils.parseKey(normalized, passphrase);
  if (parsed instanceof Error) {
    if (/encrypted|passphrase/i.test(parsed.message)) {
      if (passphrase) c.fail(passInput, `does not decrypt ${keyInput}`, '${{ secrets.EC2_SSH_KEY_PASSPHRASE }}');
      else c.fail(passInput, `is required because ${keyInput} is encrypted`, '${{ secrets.EC2_SSH_KEY_PASSPHRASE }}');
    } else {
      c.fail(keyInput, `is not a private key ssh can use (${parsed.message})`, example);
    }
    return undefined;
  }
  if (Array.isArray(parsed) ? !parsed[0]?.isPrivateKey() : !parsed.isPrivateKey()) {
    c.fail(keyInput, 'holds a public key, not a private key', '${{ secrets.EC2_SSH_KEY }}');
    return undefined;
  }
  return normalized;
}

function readKnownHosts(c: Collector, name: string): string {
  const knownHosts = c.raw(name);
  if (knownHosts) {
    const { problems } = parseKnownHosts(knownHosts);
    for (const p of problems) c.fail(name, p, '10.0.1.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… (the output of ssh-keyscan -t ed25519 10.0.1.5)');
  }
  return knownHosts;
}

/** jump-host: a bastion every host connection is tunnelled through; its key and known hosts default to the hosts'. */
function readJumpHost(c: Collector, sshUser: string, fallback: Omit<JumpHost, 'target'>): JumpHost | undefined {
  const raw = c.raw('jump-host');
  const example = 'ec2-user@bastion.example.com:22';
  for (const name of ['jump-private-key', 'jump-passphrase', 'jump-known-hosts']) {
    if (!raw && c.raw(name)) c.fail(name, 'only applies together with jump-host', `jump-host: ${example}`);
  }
  if (!raw) return undefined;
  const { hosts, problems } = parseHosts(raw, sshUser, 22);
  if (problems.length || hosts.length !== 1) {
    c.fail('jump-host', hosts.length > 1 ? 'must name exactly one host' : `${problems[0] ?? 'is invalid'}`, example);
    return undefined;
  }
  const ownKey = readPrivateKey(c, 'jump-private-key', 'jump-passphrase', false);
  const knownHosts = readKnownHosts(c, 'jump-known-hosts');
  return {
    target: { ...hosts[0], label: `jump-host ${hosts[0].label}` },
    privateKey: ownKey ?? fallback.privateKey,
    passphrase: c.raw('jump-private-key') ? c.raw('jump-passphrase') || undefined : fallback.passphrase,
    // Its own known hosts when given; otherwise the hosts' policy (ssh-known-hosts may list the bastion too).
    hostKeys: knownHosts ? { knownHosts, fingerprints: [], insecureIgnore: false } : fallback.hostKeys
  };
}

function readRollout(c: Collector): Rollout {
  const strategy = c.oneOf<RolloutStrategy>('rollout', ['parallel', 'rolling', 'canary']);
  const raw = c.raw('max-parallel');
  let maxParallel: Rollout['maxParallel'];
  const m = /^(\d{1,4})(%?)$/.exec(raw);
  if (!raw) maxParallel = undefined;
  else if (!m || Number(m[1]) < 1 || (m[2] && Number(m[1]) > 100)) c.fail('max-parallel', `must be a number of hosts (1 or more) or a percentage from 1% to 100% (got "${printable(raw)}")`, '2 (or 25%)');
  else maxParallel = m[2] ? { percent: Number(m[1]) } : { count: Number(m[1]) };
  const batchWaitMs = c.number('batch-wait-seconds', 0, 3600) * 1000;
  const onHostFailure = c.oneOf<OnHostFailure>('on-host-failure', ['rollback-all', 'continue']);
  return { strategy, maxParallel, batchWaitMs, onHostFailure };
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
    else if (!ENV_KEY.test(key)) problems.push(`line ${i + 1} has an invalid variable name "${printable(key.slice(0, 40))}"`);
    else if (vars.some((v) => v.key === key)) problems.push(`line ${i + 1} sets ${key} a second time`);
    else if (line.slice(eq + 1).includes('\0')) problems.push(`line ${i + 1} (${key}) contains a NUL byte`);
    else vars.push({ key, value: line.slice(eq + 1) });
  });
  return { vars, problems };
}

export function normalizePrivateKey(value: string): string {
  let key = value.replace(/\r\n/g, '\n');
  if (!key.includes('\n') && key.includes('\\n')) key = key.replace(/\\n/g, '\n');
  return key.trim() + '\n';
}

/**
 * nginx-health-url: an http:// URL probed through the user's nginx. The request goes to the URL's port on the host's
 * loopback through the SSH connection, so an IP address in it must be a loopback one; a name becomes the Host header.
 */
function readNginxHealthUrl(c: Collector, traffic: Traffic): NginxHealthUrl | undefined {
  const raw = c.raw('nginx-health-url');
  if (!raw) return undefined;
  const name = 'nginx-health-url';
  const example = 'http://127.0.0.1:80/health';
  if (traffic !== 'nginx') return c.fail(name, `only applies to traffic: nginx (traffic is ${traffic})`, example);
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return c.fail(name, `is not a URL (got "${printable(raw)}")`, example);
  }
  if (u.protocol !== 'http:') return c.fail(name, `must be an http:// URL: the probe speaks plain HTTP to nginx on the host (got "${printable(raw)}")`, example);
  if (u.username || u.password || u.hash) return c.fail(name, `must not hold a user, password or #fragment (got "${printable(raw)}")`, example);
  if (!/^[\x21-\x7e]+$/.test(raw)) return c.fail(name, `must hold only printable characters without spaces (got "${printable(raw)}")`, example);
  const hostname = u.hostname.replace(/^\[|\]$/g, '');
  const ip = /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) || hostname.includes(':');
  if (ip && !/^127\./.test(hostname) && hostname !== '::1') {
    return c.fail(name, `is probed on the host's loopback through the SSH connection, so its address must be 127.0.0.1 (or a name, sent as the Host header; got "${printable(u.hostname)}")`, example);
  }
  return { url: raw, host: u.host, port: u.port ? Number(u.port) : 80, path: `${u.pathname}${u.search}` };
}

export function readConfig(read: InputReader, ctx: RunContext, env: NodeJS.ProcessEnv = process.env): DeployConfig {
  const c = new Collector(read);
  const command = c.oneOf<Command>('command', ['deploy', 'rollback', 'status']);

  const sshUser = c.get('ssh-user');
  if (!USER.test(sshUser)) c.fail('ssh-user', `is not a valid user name (got "${printable(sshUser)}")`, 'ec2-user');
  const sshPort = c.port('ssh-port');
  const hostsRaw = c.raw('hosts');
  const { hosts, problems: hostProblems } = parseHosts(hostsRaw, sshUser, sshPort);
  for (const p of hostProblems) c.fail('hosts', p, '10.0.1.5, ec2-user@10.0.1.6:2222');

  const normalizedKey = readPrivateKey(c, 'ssh-private-key', 'ssh-passphrase', true) ?? '';
  const passphrase = c.raw('ssh-passphrase') || undefined;
  const knownHosts = readKnownHosts(c, 'ssh-known-hosts');
  const fingerprints = c
    .raw('ssh-host-fingerprint')
    .split(/[,\s]+/)
    .filter(Boolean);
  for (const fp of fingerprints) {
    if (!FINGERPRINT.test(fp)) c.fail('ssh-host-fingerprint', `"${printable(fp)}" is not a SHA256 fingerprint`, 'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s');
  }
  const insecureIgnore = c.bool('ssh-insecure-ignore-host-key');
  if (!knownHosts && fingerprints.length === 0 && !insecureIgnore) {
    c.fail('ssh-known-hosts', 'is required to verify the host key (or set ssh-host-fingerprint); run `ssh-keyscan -p 22 <host>` from a trusted machine and store its output in a variable', '${{ vars.EC2_KNOWN_HOSTS }}');
  }
  const connectTimeoutMs = c.number('ssh-connect-timeout-seconds', 1, 600) * 1000;
  const connectRetries = c.number('ssh-connect-retries', 0, 10, { integer: true });
  const jump = readJumpHost(c, sshUser, { privateKey: normalizedKey, passphrase, hostKeys: { knownHosts, fingerprints, insecureIgnore } });
  const rollout = readRollout(c);

  const app = c.raw('app-name');
  if (!APP.test(app)) c.fail('app-name', app ? `"${printable(app)}" may only hold letters, digits, "_", "." and "-", start with a letter or digit, and be at most 63 characters` : 'is required', 'backend');

  const imageRaw = c.raw('image');
  const tagRaw = c.raw('tag');
  let image: ImageRef = { registry: '', repository: '' };
  // rollback and status work from what is on the hosts; image (the repository) is only needed to deploy.
  if (!imageRaw) {
    if (command === 'deploy') c.fail('image', 'is required', '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
  }
  // status ignores tag (a shared step may pass one); rollback refuses it, as rollback-to is probably meant.
  if (command === 'rollback' && tagRaw) c.fail('tag', `only applies to command: deploy${command === 'rollback' ? '; to roll back to a version use rollback-to' : ''}`, command === 'rollback' ? 'rollback-to: v1.4.2' : '(leave empty)');
  if (!imageRaw) {
    // nothing more to read
  } else if (command !== 'deploy') {
    const parsed = parseImage(imageRaw);
    if (typeof parsed === 'string') c.fail('image', `"${printable(imageRaw)}" ${parsed}`, '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
    else image = { registry: parsed.registry, repository: parsed.repository };
  } else {
    const parsed = parseImage(imageRaw);
    if (typeof parsed === 'string') c.fail('image', `"${printable(imageRaw)}" ${parsed}`, '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
    else {
      image = parsed;
      if (tagRaw && (parsed.tag || parsed.digest)) {
        c.fail('tag', `cannot be combined with an image that already names a ${parsed.digest ? 'digest' : 'tag'} ("${printable(imageRaw)}")`, `${parsed.repository} with tag: v1.2.3, or image: ${parsed.repository}:v1.2.3 without tag`);
      } else if (!parsed.tag && !parsed.digest) {
        const tag = tagRaw || ctx.sha;
        if (!tag) c.fail('tag', 'is required when image has no tag and GITHUB_SHA is not set', 'v1.2.3');
        else if (!TAG_RE.test(tag)) c.fail('tag', `"${printable(tag)}" is not a valid docker tag (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`, 'v1.2.3');
        else image = { ...parsed, tag };
      }
    }
  }

  const rollbackTo = c.raw('rollback-to') || undefined;
  if (rollbackTo && command !== 'rollback') c.fail('rollback-to', `only applies to command: rollback (command is ${command})`, 'v1.4.2');
  else if (rollbackTo && !TAG_RE.test(rollbackTo) && !DIGEST_RE.test(rollbackTo)) c.fail('rollback-to', `"${printable(rollbackTo)}" is neither an image tag nor a sha256: digest`, 'v1.4.2');

  const registryAuth = c.oneOf<RegistryAuth>('registry-auth', ['ecr', 'ecr-on-host', 'password', 'none']);
  let registryCredentials: DeployConfig['registryCredentials'];
  if (registryAuth === 'password') {
    const username = c.raw('registry-username');
    const password = c.raw('registry-password');
    if (!username) c.fail('registry-username', 'is required for registry-auth password', '${{ github.actor }}');
    else if (!/^[\x21-\x7e]{1,255}$/.test(username) || username.includes(':') || username.startsWith('-')) c.fail('registry-username', 'must be printable ASCII without spaces or ":", not starting with "-"', 'deploy-bot');
    if (!password) c.fail('registry-password', 'is required for registry-auth password', '${{ secrets.REGISTRY_TOKEN }}');
    registryCredentials = { username, password };
  }
  let awsRegion: string | undefined = c.raw('aws-region') || env.AWS_REGION || env.AWS_DEFAULT_REGION || ecrRegion(image.registry);
  if (awsRegion && !/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/.test(awsRegion)) {
    c.fail('aws-region', `"${printable(awsRegion)}" is not an AWS region`, 'us-east-1');
    awsRegion = undefined;
  }
  const mayPull = command === 'deploy' || (command === 'rollback' && Boolean(rollbackTo) && Boolean(image.repository));
  if ((registryAuth === 'ecr' || registryAuth === 'ecr-on-host') && mayPull) {
    if (!awsRegion) c.fail('aws-region', `is required for registry-auth ${registryAuth} (it could not be read from the image host or AWS_REGION)`, 'us-east-1');
  }
  if (registryAuth !== 'none' && image.repository && !image.registry) c.fail('image', `names no registry host, so registry-auth ${registryAuth} has nothing to log in to`, '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');

  const containerPort = c.port('container-port');
  const env0 = parseEnv(read('env'));
  for (const p of env0.problems) c.fail('env', p, 'DATABASE_URL=postgres://… (one KEY=VALUE per line)');

  let dockerRunArgs: string[] = [];
  try {
    dockerRunArgs = splitWords(c.raw('docker-run-args'));
    for (const a of dockerRunArgs) {
      const opt = a.split('=')[0];
      if (MANAGED_RUN_OPTIONS.includes(opt) || /^-[dPit]{2,4}$/.test(a) || /^-p\d/.test(a)) {
        c.fail('docker-run-args', `must not set ${opt}: the action sets the name, ports, detach mode and labels itself`, '--memory 512m --log-opt max-size=10m');
        break;
      }
      if (a.includes('\n') || a.includes('\0')) {
        c.fail('docker-run-args', 'must not contain newlines or NUL bytes', '--memory 512m');
        break;
      }
    }
  } catch (e) {
    c.fail('docker-run-args', `cannot be split into arguments (${(e as Error).message})`, `--memory 512m --log-opt "max-size=10m"`);
  }

  const dockerCommand = c.get('docker-command').split(/ +/).filter(Boolean);
  if (dockerCommand.length === 0 || /[^\x20-\x7e]/.test(c.get('docker-command')) || c.get('docker-command').length > 200 || dockerCommand.some((w) => w.includes('..')) || dockerCommand.some((w) => !COMMAND_WORD.test(w)) || dockerCommand[0].startsWith('-')) {
    c.fail('docker-command', `must be plain words such as "docker" or "sudo -n docker" (got "${printable(c.get('docker-command'))}")`, 'sudo -n docker');
  }

  const healthPath = c.get('health-path');
  if (!/^\/[\x21-\x7e]{0,2047}$/.test(healthPath)) c.fail('health-path', `must start with "/" and hold only printable characters without spaces (got "${printable(healthPath)}")`, '/health');
  const healthHost = c.raw('health-host') || undefined;
  if (healthHost && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:\d{1,5})?$/.test(healthHost)) c.fail('health-host', `must be a host name, optionally with :port (got "${printable(healthHost)}")`, 'api.example.com');
  const healthIntervalMs = c.number('health-interval-seconds', 0.1, 300) * 1000;
  const healthTimeoutMs = c.number('health-timeout-seconds', 1, 3600) * 1000;

  const traffic = c.oneOf<Traffic>('traffic', ['nginx', 'port-swap', 'haproxy']);
  const ports: Record<Color, number> = { blue: c.port('blue-port'), green: c.port('green-port') };
  if (ports.blue === ports.green) c.fail('green-port', 'must differ from blue-port', '8082');
  const publicPort = c.port('public-port');

  const nginxUpstreamName = c.raw('nginx-upstream-name') || app;
  // Derived from app-name: only checked when given explicitly or when app-name itself is valid (no echo of its error).
  const appOk = APP.test(app);
  if ((appOk || c.raw('nginx-upstream-name')) && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(nginxUpstreamName)) c.fail('nginx-upstream-name', `"${printable(nginxUpstreamName)}" may only hold letters, digits, "_", "." and "-"`, 'backend');
  const nginxUpstreamFile = c.raw('nginx-upstream-file') || `/etc/nginx/bluegreen/${app}.conf`;
  if ((appOk || c.raw('nginx-upstream-file')) && (!PATH_SAFE.test(nginxUpstreamFile) || nginxUpstreamFile.split('/').some((s) => s === '..' || s === '.') || nginxUpstreamFile.endsWith('/'))) {
    c.fail('nginx-upstream-file', `must be an absolute file path without "..", spaces or special characters (got "${printable(nginxUpstreamFile)}")`, '/etc/nginx/bluegreen/backend.conf');
  }
  const nginxReloadCommand = c.get('nginx-reload-command');
  if (nginxReloadCommand.includes('\0') || nginxReloadCommand.length > 1000) c.fail('nginx-reload-command', 'must be one shell command line under 1000 characters', DEFAULTS['nginx-reload-command']);

  const nginxHealthUrl = readNginxHealthUrl(c, traffic);
  const haproxySocket = c.get('haproxy-socket');
  if (!PATH_SAFE.test(haproxySocket) || haproxySocket.split('/').some((p) => p === '..') || haproxySocket.endsWith('/')) c.fail('haproxy-socket', `must be the absolute path of HAProxy's admin socket without "..", spaces or special characters (got "${printable(haproxySocket)}")`, DEFAULTS['haproxy-socket']);
  const haproxyStateFile = c.get('haproxy-state-file');
  if (!PATH_SAFE.test(haproxyStateFile) || haproxyStateFile.split('/').some((p) => p === '..' || p === '.') || haproxyStateFile.endsWith('/')) c.fail('haproxy-state-file', `must be an absolute file path without "..", spaces or special characters (got "${printable(haproxyStateFile)}")`, DEFAULTS['haproxy-state-file']);
  const haproxyBackend = c.raw('haproxy-backend') || app;
  if ((appOk || c.raw('haproxy-backend')) && !/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/.test(haproxyBackend)) c.fail('haproxy-backend', `"${printable(haproxyBackend)}" may only hold letters, digits, "_", ".", ":" and "-" (the name of the backend in haproxy.cfg)`, 'web');

  const drainMs = c.number('drain-seconds', 0, 3600) * 1000;
  const waitForDrain = c.bool('wait-for-drain');
  const stopTimeoutSeconds = c.number('stop-timeout-seconds', 0, 3600, { integer: true });
  const lockTimeoutSeconds = c.number('lock-timeout-seconds', 0, 21600, { integer: true });
  const uploadArtifacts = c.bool('upload-artifacts');
  const artifactRetentionDays = c.number('artifact-retention-days', 1, 90, { integer: true });
  const artifactName = c.raw('artifact-name') || `bluegreen-${APP.test(app) ? app : 'app'}-${ctx.job}-${ctx.runAttempt}`;
  if (ARTIFACT_FORBIDDEN.test(artifactName) || artifactName.length > 200) c.fail('artifact-name', `must not contain " : < > | * ? \\ / or newlines (got "${printable(artifactName)}")`, 'deploy-logs-production');
  const summary = c.bool('summary');
  const verifyMs = c.number('verify-seconds', 0, 3600) * 1000;
  const keepImages = c.number('keep-images', 0, 1000, { integer: true });
  const statusHistory = c.number('status-history', 0, 200, { integer: true });
  const statusLogLines = c.number('status-log-lines', 0, 1000, { integer: true });

  const smokeTest = readSmokeTest(c, traffic);
  const notifyWebhook = c.raw('notify-webhook') || undefined;
  // A secret (Slack's URL carries its token): the error never repeats the value.
  if (notifyWebhook && !isHttpUrl(notifyWebhook)) c.fail('notify-webhook', 'must be an http:// or https:// URL (the value is not shown: it is a secret)', '${{ secrets.SLACK_WEBHOOK_URL }}');

  if (c.problems.length) throw new InputError(c.problems);
  return {
    command,
    hosts,
    ssh: { privateKey: normalizedKey, passphrase, hostKeys: { knownHosts, fingerprints, insecureIgnore }, connectTimeoutMs, connectRetries, jump },
    rollout,
    app,
    image,
    registryAuth,
    registryCredentials,
    awsRegion,
    containerPort,
    env: env0.vars,
    dockerRunArgs,
    dockerCommand,
    healthPath,
    healthHost,
    healthIntervalMs,
    healthTimeoutMs,
    traffic,
    ports,
    publicPort,
    nginxUpstreamFile,
    nginxUpstreamName,
    nginxReloadCommand,
    nginxHealthUrl,
    haproxySocket,
    haproxyBackend,
    haproxyStateFile,
    drainMs,
    waitForDrain,
    stopTimeoutSeconds,
    lockTimeoutSeconds,
    uploadArtifacts,
    artifactName,
    artifactRetentionDays,
    summary,
    rollbackTo,
    verifyMs,
    keepImages,
    statusHistory,
    statusLogLines,
    smokeTest,
    notifyWebhook
  };
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'https:' || u.protocol === 'http:') && Boolean(u.hostname) && !/\s/.test(v);
  } catch {
    return false;
  }
}

/** smoke-test, smoke-test-on, smoke-test-timeout-seconds. */
function readSmokeTest(c: Collector, traffic: Traffic): DeployConfig['smokeTest'] {
  const command = c.raw('smoke-test');
  const on = c.oneOf<'all' | 'first'>('smoke-test-on', ['all', 'first']);
  const timeoutMs = c.number('smoke-test-timeout-seconds', 1, 3600) * 1000;
  if (!command) return undefined;
  if (command.includes('\0')) c.fail('smoke-test', 'must not contain NUL bytes', 'curl -fsS "$BLUEGREEN_CANDIDATE_URL/health"');
  // port-swap starts the candidate only at the switch, on the public port: there is no moment before traffic.
  if (traffic === 'port-swap') c.fail('smoke-test', 'needs traffic: nginx or haproxy (with port-swap the candidate only starts when it takes the public port, so it cannot be tested before it gets traffic)', 'curl -fsS "$BLUEGREEN_CANDIDATE_URL/health" with traffic: nginx');
  return { command, on, timeoutMs };
}
