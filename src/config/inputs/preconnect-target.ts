/** Which host the entry point connects to early (src/transport/ssh/preconnect.ts), from the raw inputs alone. */
import { envInputReader } from './collector.js';
import { parseHosts } from './hosts.js';

/** The one host to connect to early, from the raw inputs; undefined unless the inputs name exactly one address. */
export function preconnectTarget(env: NodeJS.ProcessEnv): { host: string; port: number } | undefined {
  const read = envInputReader(env);
  if (!['', 'ssh'].includes(read('transport')) || read('jump-host') !== '') return undefined;
  const port = read('ssh-port') || '22';
  if (!/^\d{1,5}$/.test(port)) return undefined;
  const { hosts, problems, query } = parseHosts(read('hosts'), 'ec2-user', Number(port));
  if (problems.length || query || hosts.length !== 1) return undefined;
  return { host: hosts[0].host, port: hosts[0].port };
}
