/** The SSH section: hosts, key, host keys, connect behaviour and the bastion (and which of it transport: ssm ignores). */
import { parseKey } from 'ssh2/lib/protocol/keyParser.js';
import type { HostQuery, HostTarget, JumpHost, SshSettings, Transport } from '../../model/config.js';
import { parseKnownHosts } from '../../transport/ssh/known-hosts.js';
import { Collector, DEFAULTS, FINGERPRINT, printable, USER } from './collector.js';
import { parseHosts } from './hosts.js';

export { parseHosts };

/** Inputs only the ssh transport reads: with transport: ssm a value other than the default is warned about. */
export const SSH_ONLY_INPUTS = [
  'ssh-user',
  'ssh-port',
  'ssh-private-key',
  'ssh-passphrase',
  'ssh-known-hosts',
  'ssh-host-fingerprint',
  'ssh-insecure-ignore-host-key',
  'ssh-connect-timeout-seconds',
  'ssh-connect-retries',
  'ssh-address',
  'jump-host',
  'jump-private-key',
  'jump-passphrase',
  'jump-known-hosts'
] as const;

/** transport: ssm has no SSH: these settings are never used. */
const NO_SSH: SshSettings = {
  privateKey: '',
  hostKeys: { knownHosts: '', fingerprints: [], insecureIgnore: false },
  connectTimeoutMs: 20000,
  connectRetries: 0
};

export interface HostsSection {
  hosts: HostTarget[];
  hostQuery?: HostQuery;
  sshAddress: 'private' | 'public';
  ssh: SshSettings;
  inputWarnings: string[];
}

export function readSsh(c: Collector, transport: Transport = 'ssh'): HostsSection {
  const inputWarnings: string[] = [];
  const example =
    transport === 'ssm'
      ? 'tag:Role=backend (or i-0abc12345def67890, i-0def…)'
      : '10.0.1.5, ec2-user@10.0.1.6:2222 (or tag:Role=backend, i-0abc12345def67890)';
  if (transport === 'ssm') {
    // SSM runs commands as root; ssm-run-as runs them as that user (in its home: the ssh transport's state and permissions).
    const runAs = c.get('ssm-run-as');
    if (!USER.test(runAs)) c.fail('ssm-run-as', `is not a valid user name (got "${printable(runAs)}")`, 'ec2-user');
    const { hosts, query, problems } = parseHosts(c.raw('hosts'), runAs, 22);
    for (const p of problems) c.fail('hosts', p, example);
    for (const h of hosts)
      c.fail(
        'hosts',
        `"${printable(h.label)}" is an address: with transport: ssm name hosts by instance id or tag:KEY=VALUE`,
        example
      );
    const inputWarnings = SSH_ONLY_INPUTS.filter((n) => {
      const v = c.raw(n);
      return v !== '' && v !== (DEFAULTS as Record<string, string>)[n];
    }).map(
      (n) => `input ${n} does not apply with transport: ssm (commands go through AWS Systems Manager, not SSH): ignored`
    );
    return { hosts: [], hostQuery: query, sshAddress: 'private', ssh: NO_SSH, inputWarnings };
  }
  if (c.get('ssm-run-as') !== DEFAULTS['ssm-run-as'])
    inputWarnings.push('input ssm-run-as only applies with transport: ssm: ignored');
  const sshUser = c.get('ssh-user');
  if (!USER.test(sshUser)) c.fail('ssh-user', `is not a valid user name (got "${printable(sshUser)}")`, 'ec2-user');
  const sshPort = c.port('ssh-port');
  const hostsRaw = c.raw('hosts');
  const { hosts, query, problems: hostProblems } = parseHosts(hostsRaw, sshUser, sshPort);
  for (const p of hostProblems) c.fail('hosts', p, example);
  const sshAddress = c.oneOf<'private' | 'public'>('ssh-address', ['private', 'public']);

  const normalizedKey = readPrivateKey(c, 'ssh-private-key', 'ssh-passphrase', true) ?? '';
  const passphrase = c.raw('ssh-passphrase') || undefined;
  const knownHosts = readKnownHosts(c, 'ssh-known-hosts');
  const fingerprints = c
    .raw('ssh-host-fingerprint')
    .split(/[,\s]+/)
    .filter(Boolean);
  for (const fp of fingerprints) {
    if (!FINGERPRINT.test(fp))
      c.fail(
        'ssh-host-fingerprint',
        `"${printable(fp)}" is not a SHA256 fingerprint`,
        'SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s'
      );
  }
  const insecureIgnore = c.bool('ssh-insecure-ignore-host-key');
  if (!knownHosts && fingerprints.length === 0 && !insecureIgnore) {
    c.fail(
      'ssh-known-hosts',
      'is required to verify the host key (or set ssh-host-fingerprint); run `ssh-keyscan -p 22 <host>` from a trusted machine and store its output in a variable',
      '${{ vars.EC2_KNOWN_HOSTS }}'
    );
  }
  const connectTimeoutMs = c.number('ssh-connect-timeout-seconds', 1, 600) * 1000;
  const connectRetries = c.number('ssh-connect-retries', 0, 10, { integer: true });
  const jump = readJumpHost(c, sshUser, {
    privateKey: normalizedKey,
    passphrase,
    hostKeys: { knownHosts, fingerprints, insecureIgnore }
  });
  return {
    hosts,
    hostQuery: query,
    sshAddress,
    ssh: {
      privateKey: normalizedKey,
      passphrase,
      hostKeys: { knownHosts, fingerprints, insecureIgnore },
      connectTimeoutMs,
      connectRetries,
      jump
    },
    inputWarnings
  };
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
  const parsed = parseKey(normalized, passphrase);
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
    for (const p of problems)
      c.fail(name, p, '10.0.1.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… (the output of ssh-keyscan -t ed25519 10.0.1.5)');
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
  const { hosts, problems, query } = parseHosts(raw, sshUser, 22);
  if (query) problems.push('must be an address (a bastion is not found by instance id or tag)');
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

export function normalizePrivateKey(value: string): string {
  let key = value.replace(/\r\n/g, '\n');
  if (!key.includes('\n') && key.includes('\\n')) key = key.replace(/\\n/g, '\n');
  return key.trim() + '\n';
}
