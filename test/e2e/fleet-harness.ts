/**
 * Helpers for the fleet e2e tests, which run against the multi-host sandbox of test/sandbox/fleet-up.sh:
 * hosts bgf-h1..bgf-hN (each its own netns + mount ns: sshd on 10.204.0.(10+i):22, dockerd, nginx on :80),
 * reachable from the runner (the root netns, where the tests run as root) only through the bastion
 * ec2-user@10.203.0.2:22 (ssh -J), and over HTTP through the forwarders http://10.203.0.2:(8000+i) -> host:80.
 * Hosts pull from the registry 10.204.0.1:5000 (same images and accounts as the main one on 127.0.0.1:5000).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {
  LoadGenerator,
  parseDockerInspect,
  REPO_ROOT,
  STATE_DIR,
  type ContainerInfo,
  type LoadResult,
  type ShResult,
  q,
  sh,
  waitFor
} from './harness.js';

export const FLEET_JSON = path.join(STATE_DIR, 'fleet.json');
const FLEET_UP = path.join(REPO_ROOT, 'test', 'sandbox', 'fleet-up.sh');
const FLEET_EXEC = path.join(REPO_ROOT, 'test', 'sandbox', 'fleet-exec.sh');

export interface FleetHost {
  /** "bgf-h1" */
  name: string;
  /** "10.204.0.11" (not reachable from the runner, only through the bastion) */
  host: string;
  port: number;
  user: string;
  /** known_hosts line(s) for the host: "10.204.0.11 ssh-ed25519 AAAA..." */
  knownHosts: string;
  /** the host's nginx port 80 through the bastion's forwarder: "http://10.203.0.2:8001" */
  httpUrl: string;
}

/** test/sandbox/.state/fleet.json as written by fleet-up.sh */
export interface Fleet {
  bastion: { host: string; port: number; user: string; knownHosts: string };
  /** "10.204.0.1:5000": the registry as the hosts reach it (images demo:{v1,v2,v3,unhealthy,crash,degrade}) */
  registry: string;
  privateKeyPath: string;
  /** known_hosts file with the bastion's and every host's line */
  knownHostsPath: string;
  /** ssh_config for the OpenSSH client: `ssh -F <it> 10.204.0.11` jumps through the bastion with strict host keys */
  sshConfigPath: string;
  hosts: FleetHost[];
}

let checked: Promise<Fleet> | undefined;
let checkedFor = 0;

function readFleet(): Fleet | undefined {
  try {
    return JSON.parse(fs.readFileSync(FLEET_JSON, 'utf8')) as Fleet;
  } catch {
    return undefined;
  }
}

/** fleet.json describes a live fleet: the bastion's sshd accepts connections and every forwarder reaches its host. */
async function fleetAlive(fleet: Fleet, minHosts: number): Promise<boolean> {
  if (fleet.hosts.length < minHosts) return false;
  const probes = await Promise.all(
    fleet.hosts.map((h) =>
      getWithHost(`${h.httpUrl}/__fleet_host`, 'bgf-fleet-host', 2000).then(
        (r) => r.status === 200 && r.body.trim() === h.name,
        () => false
      )
    )
  );
  if (!probes.every(Boolean)) return false;
  const ssh = await sh(
    `timeout 5 bash -c ${q(`exec 3<>/dev/tcp/${fleet.bastion.host}/${fleet.bastion.port} && head -c 4 <&3`)}`
  );
  return ssh.stdout === 'SSH-';
}

/**
 * The fleet (at least `hosts` hosts, default 3). Runs test/sandbox/fleet-up.sh (at most once per test process and
 * size) when fleet.json is missing or describes a fleet that is not up (or too small); a larger fleet is kept.
 */
export function loadFleet(opts: { hosts?: number } = {}): Promise<Fleet> {
  const want = opts.hosts ?? 3;
  if (checked && checkedFor >= want) return checked;
  checkedFor = want;
  checked = (async () => {
    const current = readFleet();
    if (current && (await fleetAlive(current, want))) return current;
    const size = Math.max(want, current?.hosts.length ?? 0);
    const r = await sh(`bash ${q(FLEET_UP)} ${size} </dev/null`, { timeoutMs: 600000 });
    if (r.code !== 0) throw new Error(`test/sandbox/fleet-up.sh ${size} failed (${r.code}):\n${r.stderr}${r.stdout}`);
    const fleet = readFleet();
    if (!fleet) throw new Error(`fleet-up.sh succeeded but ${FLEET_JSON} is unreadable`);
    return fleet;
  })();
  checked.catch(() => {
    checked = undefined;
    checkedFor = 0;
  });
  return checked;
}

function host(fleet: Fleet, name: string): FleetHost {
  const h = fleet.hosts.find((x) => x.name === name);
  if (!h) throw new Error(`no fleet host ${name} (fleet: ${fleet.hosts.map((x) => x.name).join(', ')})`);
  return h;
}

/** Runs `bash -c script` as root on a fleet host (its net + mount namespaces). Never rejects on a non-zero exit. */
export function onHost(
  name: string,
  script: string,
  opts: { input?: string; timeoutMs?: number } = {}
): Promise<ShResult> {
  return sh(`bash ${q(FLEET_EXEC)} ${q(name)} bash -c ${q(script)}`, opts);
}

/** Like onHost() but throws (with the output) unless the exit code is 0; returns stdout. */
export async function onHostOk(
  name: string,
  script: string,
  opts: { input?: string; timeoutMs?: number } = {}
): Promise<string> {
  const r = await onHost(name, script, opts);
  if (r.code !== 0) throw new Error(`on ${name} failed (${r.code}): ${script}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** GET with an explicit Host header on a fresh connection; resolves for any status. */
export function getWithHost(
  url: string,
  hostHeader: string,
  timeoutMs = 5000
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers: { host: hostHeader } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms: GET ${url}`)));
    req.on('error', reject);
  });
}

/** Containers on a fleet host, oldest first: all of them, or those labelled bluegreen.app=<app>. */
export async function dockerPsOn(name: string, app?: string): Promise<ContainerInfo[]> {
  const filter = app ? `--filter ${q(`label=bluegreen.app=${app}`)}` : '';
  const ids = (await onHostOk(name, `docker ps -aq --no-trunc ${filter}`)).split('\n').filter(Boolean);
  if (!ids.length) return [];
  // a container may vanish between ps and inspect: inspect then fails for it but still prints the others
  return parseDockerInspect((await onHost(name, `docker inspect ${ids.join(' ')}`)).stdout);
}

function checkAppName(app: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(app)) throw new Error(`bad app name ${app}`);
}

/** On one host: removes the app's containers and ~ec2-user/.bluegreen/<app>, with `configs` also its nginx files. */
function removeAppScript(app: string, configs: boolean): string {
  return [
    `ids="$(docker ps -aq --filter ${q(`label=bluegreen.app=${app}`)})"`,
    '[ -z "$ids" ] || docker rm -f $ids >/dev/null',
    `rm -rf /home/ec2-user/.bluegreen/${app}`,
    ...(configs ? [`rm -f /etc/nginx/bluegreen-sites/${app}.conf /etc/nginx/bluegreen/${app}.conf`] : [])
  ].join('\n');
}

export interface FleetApp {
  /** the app's public URL on each host (through the forwarders), by host name: { "bgf-h1": "http://10.203.0.2:8001" } */
  urls: Record<string, string>;
  /** server_name of the app's site (requests with another Host reach it too while it is the default server) */
  hostHeader: string;
}

/**
 * Sets up nginx for an app on each of the given hosts as an operator would before the first deploy, mirroring
 * harness.ts prepareApp on the main sandbox:
 *   /etc/nginx/bluegreen/<app>.conf        upstream <app> { server 127.0.0.1:<bluePort>; }   (owned by ec2-user)
 *   /etc/nginx/bluegreen-sites/<app>.conf  server on port 80 (server_name <app>, default_server) proxying to it
 * reloads nginx and waits until each host serves the new config through its forwarder (GET /__sandbox_probe);
 * removes the app's containers and ~ec2-user/.bluegreen/<app> first. Being the default server of port 80 (any
 * other app site on the host loses default_server), plain requests to the host's httpUrl reach the app, so the
 * LoadGenerator can be pointed at it. bluePort defaults to 18101.
 */
export async function prepareFleetApp(
  app: string,
  hostNames: string[],
  opts: { bluePort?: number } = {}
): Promise<FleetApp> {
  checkAppName(app);
  const fleet = await loadFleet();
  const bluePort = opts.bluePort ?? 18101;
  const nonce = `${app}-${Date.now()}-${crypto.randomBytes(4).toString('hex')}`;
  const site = `server {
  listen 80 default_server;
  server_name ${app};
  location = /__sandbox_probe { default_type text/plain; return 200 "${nonce}"; }
  location / {
    proxy_pass http://${app};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_next_upstream off;
  }
}
`;
  const script = [
    'set -e',
    removeAppScript(app, false),
    // only one default server per port: the other apps' sites give it up
    `for f in /etc/nginx/bluegreen-sites/*.conf; do [ -e "$f" ] && [ "$f" != /etc/nginx/bluegreen-sites/${app}.conf ] && sed -i 's/ default_server;/;/' "$f"; done; true`,
    `tmp=/etc/nginx/bluegreen/${app}.conf.tmp-$$`,
    `printf '%s\\n' ${q(`upstream ${app} { server 127.0.0.1:${bluePort}; }`)} >"$tmp"`,
    `chown ec2-user:ec2-user "$tmp" && mv -f "$tmp" /etc/nginx/bluegreen/${app}.conf`,
    `cat >/etc/nginx/bluegreen-sites/${app}.conf`,
    'nginx -t -q && nginx -s reload 2>/dev/null'
  ].join('\n');
  const urls: Record<string, string> = {};
  await Promise.all(
    hostNames.map(async (name) => {
      const h = host(fleet, name);
      await onHostOk(name, script, { input: site });
      await waitFor(async () => (await getWithHost(`${h.httpUrl}/__sandbox_probe`, app, 1000)).body === nonce, {
        timeoutMs: 15000,
        intervalMs: 50,
        what: `nginx on ${name} to serve the new config for ${app} on ${h.httpUrl}`
      });
      urls[name] = h.httpUrl;
    })
  );
  return { urls, hostHeader: app };
}

/** On every fleet host: removes the app's containers, state dir and nginx files, and reloads nginx. */
export async function cleanupFleetApp(app: string): Promise<void> {
  checkAppName(app);
  const fleet = await loadFleet();
  await Promise.all(
    fleet.hosts.map((h) =>
      onHostOk(h.name, `${removeAppScript(app, true)}\nnginx -t -q && nginx -s reload 2>/dev/null`)
    )
  );
}

/**
 * The action inputs that point a deploy at the given fleet hosts through the bastion (README: hosts, jump-host, ...):
 * hosts "10.204.0.11:22,10.204.0.12:22", ssh-known-hosts (the hosts' lines), jump-host "ec2-user@10.203.0.2:22",
 * jump-known-hosts (the bastion's line). The key is the sandbox key (SANDBOX.privateKey) for both.
 */
export function fleetInputs(fleet: Fleet, hostNames: string[]): Record<string, string> {
  const hosts = hostNames.map((n) => host(fleet, n));
  return {
    hosts: hosts.map((h) => `${h.host}:${h.port}`).join(','),
    'ssh-known-hosts': hosts.map((h) => h.knownHosts).join('\n'),
    'jump-host': `${fleet.bastion.user}@${fleet.bastion.host}:${fleet.bastion.port}`,
    'jump-known-hosts': fleet.bastion.knownHosts
  };
}

/** What each host serves now, through its forwarder (the app's body is its version). */
export async function fleetVersions(urls: Record<string, string>, names: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of names) out[n] = (await (await fetch(urls[n])).text()).trim();
  return out;
}

/** Load on every host (keep-alive and fresh connections) for the duration of fn. */
export async function underFleetLoad<T>(
  urls: Record<string, string>,
  names: string[],
  fn: () => Promise<T>
): Promise<{ value: T; loads: Record<string, LoadResult> }> {
  const gens = names.map(
    (n) => [n, new LoadGenerator(urls[n], { concurrency: 2, keepAlive: 'mixed' }).start()] as const
  );
  await new Promise((r) => setTimeout(r, 300));
  const value = await fn();
  await new Promise((r) => setTimeout(r, 300));
  const loads: Record<string, LoadResult> = {};
  for (const [n, g] of gens) loads[n] = await g.stop();
  return { value, loads };
}
