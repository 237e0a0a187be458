/**
 * The sandbox's Caddy for `traffic: caddy` (test/sandbox/caddy-up.sh: Debian's caddy 2.6.2 run as user caddy,
 * `caddy run --resume`, admin API on http://127.0.0.1:2019, reachable by ec2-user on the host too).
 *
 * An app is one Caddy *server* of its own (apps.http.servers.<app>), added through the admin API as an operator would
 * before the first deploy, routed as `traffic: caddy` expects (docs/traffic.md): it listens on 127.0.0.1:<listenPort>,
 *   1. GET /__sandbox_probe answered by Caddy itself with a nonce (to see that the config serves),
 *   2. to green (127.0.0.1:<green>) while the marker <switch-dir>/<app>/green exists (a `file` matcher),
 *   3. else to blue (127.0.0.1:<blue>).
 * The router switches by writing or removing the marker: no admin API change, so Caddy restarts nothing.
 *
 * Every admin API change reloads Caddy's whole http app (all servers, not only this app's): add and remove apps
 * outside the load windows of other tests. Caddy autosaves the config after each change (`--resume` brings it back
 * after a restart), so removeCaddyApp() in afterAll keeps the autosave small.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { httpGet, q, REPO_ROOT, sh, shOk, waitFor } from './harness.js';

export const CADDY = {
  /** admin API (loopback TCP; Caddy accepts only Host 127.0.0.1:2019, localhost:2019 or [::1]:2019 there) */
  admin: 'http://127.0.0.1:2019',
  /** the app of caddy-up.sh's base config */
  app: 'e2e-cd-web',
  front: 'http://127.0.0.1:19620',
  ports: { blue: 19621, green: 19622 },
  pidfile: '/run/bluegreen-caddy/caddy.pid',
  autosave: '/var/lib/bluegreen-caddy/config/caddy/autosave.json',
  up: `bash ${path.join(REPO_ROOT, 'test/sandbox/caddy-up.sh')}`
} as const;

/** caddy-switch-dir's default: the sandbox makes it (caddy-up.sh), owned by ec2-user. */
export const SWITCH_DIR = '/var/lib/bluegreen/caddy';

export interface AdminResult {
  status: number;
  /** raw body (JSON text, or "" for a successful change) */
  body: string;
  /** wall-clock ms until the answer was complete */
  ms: number;
}

/** One admin API call (fresh connection). Rejects only on network errors (ECONNREFUSED when Caddy is down). */
export function caddyAdmin(
  method: string,
  apiPath: string,
  body?: unknown,
  headers: http.OutgoingHttpHeaders = {}
): Promise<AdminResult> {
  const t0 = performance.now();
  const data = body === undefined ? undefined : JSON.stringify(body);
  const url = new URL(apiPath, CADDY.admin);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent: false,
        timeout: 30_000,
        headers: {
          ...(data === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }),
          ...headers
        }
      },
      (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (b += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b, ms: performance.now() - t0 }));
        res.on('error', reject);
      }
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** Like caddyAdmin() but throws unless the status is 200; returns the parsed JSON body (undefined for ""). */
export async function caddyAdminOk<T = unknown>(method: string, apiPath: string, body?: unknown): Promise<T> {
  const r = await caddyAdmin(method, apiPath, body);
  if (r.status !== 200) throw new Error(`caddy admin ${method} ${apiPath}: HTTP ${r.status} ${r.body.trim()}`);
  return (r.body.trim() ? JSON.parse(r.body) : undefined) as T;
}

/** Starts the sandbox's Caddy if it is not running (idempotent; keeps the config the tests gave it). */
export async function ensureCaddy(): Promise<void> {
  await shOk(CADDY.up, { timeoutMs: 120_000 });
}

/** Caddy's pid (to check that a deploy did not restart it). */
export function caddyPid(): string {
  const pid = fs.readFileSync(CADDY.pidfile, 'utf8').trim();
  if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'caddy')
    throw new Error(`pid ${pid} of ${CADDY.pidfile} is not caddy`);
  return pid;
}

export interface CaddyAppOptions {
  listenPort: number;
  ports: { blue: number; green: number };
  /** routes without the marker matcher: a config the router must refuse before it changes anything */
  withoutMarker?: boolean;
}

/** The server object of an app (apps.http.servers.<app>), see the file comment. */
export function caddyServerConfig(app: string, opts: CaddyAppOptions & { nonce: string }): Record<string, unknown> {
  const proxy = (port: number) => [{ handler: 'reverse_proxy', upstreams: [{ dial: `127.0.0.1:${port}` }] }];
  return {
    listen: [`127.0.0.1:${opts.listenPort}`],
    automatic_https: { disable: true },
    routes: [
      {
        match: [{ path: ['/__sandbox_probe'] }],
        handle: [{ handler: 'static_response', status_code: 200, body: opts.nonce }],
        terminal: true
      },
      ...(opts.withoutMarker
        ? []
        : [
            {
              match: [{ file: { root: `${SWITCH_DIR}/${app}`, try_files: ['/green'] } }],
              handle: proxy(opts.ports.green),
              terminal: true
            }
          ]),
      { handle: proxy(opts.ports.blue) }
    ]
  };
}

function checkName(app: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(app)) throw new Error(`bad app name ${app}`);
}

/** Removes the app's containers and its state dir on the host (/home/ec2-user/.bluegreen/<app>). */
async function removeContainers(app: string): Promise<void> {
  const ids = (await shOk(`docker ps -aq --filter ${q(`label=bluegreen.app=${app}`)}`)).split('\n').filter(Boolean);
  if (ids.length) await sh(`docker rm -f ${ids.join(' ')}`);
  fs.rmSync(`/home/ec2-user/.bluegreen/${app}`, { recursive: true, force: true });
  fs.rmSync(`${SWITCH_DIR}/${app}`, { recursive: true, force: true });
}

/**
 * Sets up Caddy for an app as an operator would before the first deploy: removes the app's containers and host state
 * dir, puts its server (see caddyServerConfig) through the admin API (POST /config/apps/http/servers/<app>: creates or
 * replaces) and waits until the listener answers the probe. Returns the app's URL http://127.0.0.1:<listenPort>.
 */
export async function prepareCaddyApp(app: string, opts: CaddyAppOptions): Promise<string> {
  checkName(app);
  await removeContainers(app);
  const nonce = `${app}-${Date.now()}-${crypto.randomBytes(4).toString('hex')}`;
  await caddyAdminOk('POST', `/config/apps/http/servers/${app}`, caddyServerConfig(app, { ...opts, nonce }));
  const url = `http://127.0.0.1:${opts.listenPort}`;
  await waitFor(async () => (await httpGet(`${url}/__sandbox_probe`, { timeoutMs: 1000 })).body === nonce, {
    timeoutMs: 15_000,
    intervalMs: 50,
    what: `caddy to serve ${app} on ${url}`
  });
  return url;
}

/** Removes the app's containers, state dir and Caddy server (no reload when it has none). */
export async function removeCaddyApp(app: string): Promise<void> {
  checkName(app);
  await removeContainers(app);
  // GET of a missing path answers 200 "null"; DELETE of one would too (and leave the config unchanged)
  const cur = await caddyAdminOk(`GET`, `/config/apps/http/servers/${app}`);
  if (cur !== null && cur !== undefined) await caddyAdminOk('DELETE', `/config/apps/http/servers/${app}`);
}

/** The colour the marker routes the app to (what Caddy sends the next request to). */
export function caddyMarkerColour(app: string): 'blue' | 'green' {
  return fs.existsSync(`${SWITCH_DIR}/${app}/green`) ? 'green' : 'blue';
}
