/** known_hosts parsing and host-key matching, as OpenSSH does it (plain, hashed and [host]:port entries). */
import { createHash, createHmac } from 'node:crypto';

export interface KnownHostEntry {
  patterns: string[];
  hashed?: { salt: Buffer; hash: Buffer };
  keyType: string;
  key: Buffer;
  marker?: '@revoked' | '@cert-authority';
  line: number;
}

const KEY_TYPES =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com|ssh-dss)$/;

export function parseKnownHosts(text: string): { entries: KnownHostEntry[]; problems: string[] } {
  const entries: KnownHostEntry[] = [];
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((rawLine, i) => {
    const line = rawLine.trim();
    if (!line || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority')
      marker = fields.shift() as KnownHostEntry['marker'];
    const [hosts, keyType, keyB64] = fields;
    if (!hosts || !keyType || !keyB64 || !KEY_TYPES.test(keyType)) {
      problems.push(`line ${i + 1} is not "<host> <key-type> <base64-key>"`);
      return;
    }
    const key = Buffer.from(keyB64, 'base64');
    if (key.length < 20 || key.toString('base64').replace(/=+$/, '') !== keyB64.replace(/=+$/, '')) {
      problems.push(`line ${i + 1} has a key that is not valid base64`);
      return;
    }
    const entry: KnownHostEntry = { patterns: [], keyType, key, marker, line: i + 1 };
    const hashed = /^\|1\|([^|]+)\|([^|]+)$/.exec(hosts);
    if (hashed) entry.hashed = { salt: Buffer.from(hashed[1], 'base64'), hash: Buffer.from(hashed[2], 'base64') };
    else entry.patterns = hosts.split(',');
    entries.push(entry);
  });
  return { entries, problems };
}

/** The name OpenSSH uses for a host in known_hosts: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i'
  );
  return re.test(name);
}

export function entryMatchesHost(entry: KnownHostEntry, host: string, port: number): boolean {
  const name = knownHostsName(host, port);
  if (entry.hashed) {
    const digest = createHmac('sha1', entry.hashed.salt).update(name).digest();
    return digest.equals(entry.hashed.hash);
  }
  let matched = false;
  for (const p of entry.patterns) {
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) matched = true;
  }
  return matched;
}

export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** The key type is the first length-prefixed string of the key blob. */
export function keyTypeOf(key: Buffer): string {
  if (key.length < 4) return 'unknown';
  const len = key.readUInt32BE(0);
  return key.subarray(4, 4 + len).toString('latin1');
}

export function knownHostsLine(host: string, port: number, key: Buffer): string {
  return `${knownHostsName(host, port)} ${keyTypeOf(key)} ${key.toString('base64')}`;
}

/**
 * Host-key algorithms to offer, so the server presents a key type we have a known_hosts entry for
 * (OpenSSH does the same); undefined means "no preference".
 */
export function preferredHostKeyAlgorithms(
  entries: KnownHostEntry[],
  host: string,
  port: number
): string[] | undefined {
  const types = entries.filter((e) => !e.marker && entryMatchesHost(e, host, port)).map((e) => e.keyType);
  if (types.length === 0) return undefined;
  const algos: string[] = [];
  for (const t of types) {
    const list = t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t];
    for (const a of list) if (!algos.includes(a)) algos.push(a);
  }
  return algos;
}

export type HostKeyVerdict = { ok: true } | { ok: false; reason: string };

/** Decides whether the key a host presented is trusted. */
export function verifyHostKey(
  policy: { knownHosts: string; fingerprints: string[]; insecureIgnore: boolean },
  host: string,
  port: number,
  key: Buffer
): HostKeyVerdict {
  if (policy.insecureIgnore) return { ok: true };
  const presented = fingerprint(key);
  const { entries } = parseKnownHosts(policy.knownHosts);
  const forHost = entries.filter((e) => entryMatchesHost(e, host, port));
  if (forHost.some((e) => e.marker === '@revoked' && e.key.equals(key))) {
    return { ok: false, reason: `the host key ${keyTypeOf(key)} ${presented} is marked @revoked in ssh-known-hosts` };
  }
  if (forHost.some((e) => !e.marker && e.key.equals(key))) return { ok: true };
  if (policy.fingerprints.includes(presented)) return { ok: true };
  const line = knownHostsLine(host, port, key);
  const plain = forHost.filter((e) => !e.marker);
  if (plain.length > 0 || policy.fingerprints.length > 0) {
    return {
      ok: false,
      reason:
        `HOST KEY MISMATCH: the host presented ${keyTypeOf(key)} ${presented}, which matches neither ssh-known-hosts nor ssh-host-fingerprint. ` +
        `This can mean the instance was replaced, or that someone is intercepting the connection. If you trust this key, put this line in ssh-known-hosts: ${line}`
    };
  }
  return {
    ok: false,
    reason: `ssh-known-hosts has no entry for ${knownHostsName(host, port)}; the host presented ${keyTypeOf(key)} ${presented}. If you trust it, add this line to ssh-known-hosts: ${line}`
  };
}
