/**
 * The hosts input, parsed without anything else of the inputs: the entry point reads it before the bundle's bulk
 * (ssh2) is loaded, to open the TCP connection early (src/ssh/preconnect.ts).
 */
import type { HostQuery, HostTarget } from '../../model/config.js';
import { HOSTNAME, IPV6, printable, USER } from './collector.js';

const INSTANCE_ID = /^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$/;
/** An instance id as the action writes it in outputs (`i-… (Name)`): accepted back as input. */
const INSTANCE_ENTRY = /^(i-[0-9a-f]+)(?:\s*\([^()]*\))?$/;

/**
 * The hosts input: addresses (`host`, `host:port`, `user@host:port`, `[ipv6]:port`), EC2 instance ids (`i-…`, also
 * as `i-… (Name)`, the way outputs name them) and tag selectors `tag:KEY=VALUE` (several are ANDed). Ids and tags
 * go to `query`, resolved in the run.
 */
export function parseHosts(
  value: string,
  defaultUser: string,
  defaultPort: number
): { hosts: HostTarget[]; problems: string[]; query?: HostQuery } {
  const hosts: HostTarget[] = [];
  const problems: string[] = [];
  const query: HostQuery = { instanceIds: [], tags: [], user: defaultUser, port: defaultPort };
  const entries = value
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== '' && !s.startsWith('#'));
  for (const entry of entries) {
    if (entry.startsWith('tag:')) {
      const eq = entry.indexOf('=');
      const key = eq > 0 ? entry.slice(4, eq).trim() : '';
      const val = eq > 0 ? entry.slice(eq + 1).trim() : '';
      // EC2 tag keys: up to 128 characters, values up to 256; no wildcards (DescribeInstances would expand them).
      if (
        !key ||
        !val ||
        key.length > 128 ||
        val.length > 256 ||
        /[*?]/.test(key + val) ||
        printable(key + val) !== key + val
      ) {
        problems.push(
          `"${printable(entry)}" is not a tag selector tag:KEY=VALUE (non-empty key and value, printable ASCII, no * or ?)`
        );
      } else if (query.tags.some((t) => t.key === key)) {
        problems.push(
          `"${printable(entry)}": tag ${printable(key)} is given twice (selectors are ANDed, so an instance would need both values)`
        );
      } else query.tags.push({ key, value: val });
      continue;
    }
    const id = INSTANCE_ENTRY.exec(entry);
    if (id) {
      if (!INSTANCE_ID.test(id[1]))
        problems.push(`"${printable(entry)}" is not an EC2 instance id (i- and 8 or 17 hex digits)`);
      else if (query.instanceIds.includes(id[1])) problems.push(`"${printable(entry)}" is listed twice`);
      else query.instanceIds.push(id[1]);
      continue;
    }
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
  return { hosts, problems, query: query.instanceIds.length || query.tags.length ? query : undefined };
}
