/** The traffic section: the router (nginx, haproxy, port-swap), the colours' ports and each router's settings. */
import type { Color, DeployConfig, NginxHealthUrl, Traffic } from '../../model/config.js';
import { APP, Collector, DEFAULTS, PATH_SAFE, printable } from './collector.js';

export function readTraffic(
  c: Collector,
  app: string
): Pick<
  DeployConfig,
  | 'traffic'
  | 'ports'
  | 'publicPort'
  | 'nginxUpstreamFile'
  | 'nginxUpstreamName'
  | 'nginxReloadCommand'
  | 'nginxSwitch'
  | 'nginxHealthUrl'
  | 'haproxySocket'
  | 'haproxyBackend'
  | 'haproxyStateFile'
  | 'caddyAdminUrl'
  | 'caddySwitchDir'
> {
  const traffic = c.oneOf<Traffic>('traffic', ['nginx', 'port-swap', 'haproxy', 'alb', 'caddy']);
  const ports: Record<Color, number> = { blue: c.port('blue-port'), green: c.port('green-port') };
  if (ports.blue === ports.green) c.fail('green-port', 'must differ from blue-port', '8082');
  const publicPort = c.port('public-port');

  const nginxUpstreamName = c.raw('nginx-upstream-name') || app;
  // Derived from app-name: only checked when given explicitly or when app-name itself is valid (no echo of its error).
  const appOk = APP.test(app);
  if ((appOk || c.raw('nginx-upstream-name')) && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(nginxUpstreamName))
    c.fail(
      'nginx-upstream-name',
      `"${printable(nginxUpstreamName)}" may only hold letters, digits, "_", "." and "-"`,
      'backend'
    );
  const nginxUpstreamFile = c.raw('nginx-upstream-file') || `/etc/nginx/bluegreen/${app}.conf`;
  if (
    (appOk || c.raw('nginx-upstream-file')) &&
    (!PATH_SAFE.test(nginxUpstreamFile) ||
      nginxUpstreamFile.split('/').some((s) => s === '..' || s === '.') ||
      nginxUpstreamFile.endsWith('/'))
  ) {
    c.fail(
      'nginx-upstream-file',
      `must be an absolute file path without "..", spaces or special characters (got "${printable(nginxUpstreamFile)}")`,
      '/etc/nginx/bluegreen/backend.conf'
    );
  }
  const nginxReloadCommand = c.get('nginx-reload-command');
  if (nginxReloadCommand.includes('\0') || nginxReloadCommand.length > 1000)
    c.fail(
      'nginx-reload-command',
      'must be one shell command line under 1000 characters',
      DEFAULTS['nginx-reload-command']
    );

  const nginxSwitch = c.oneOf<'reload' | 'njs'>('nginx-switch', ['reload', 'njs']);
  if (nginxSwitch === 'njs' && traffic !== 'nginx')
    c.fail('nginx-switch', `only applies to traffic: nginx (traffic is ${traffic})`, 'reload');
  const nginxHealthUrl = readNginxHealthUrl(c, traffic);
  const haproxySocket = c.get('haproxy-socket');
  if (!PATH_SAFE.test(haproxySocket) || haproxySocket.split('/').some((p) => p === '..') || haproxySocket.endsWith('/'))
    c.fail(
      'haproxy-socket',
      `must be the absolute path of HAProxy's admin socket without "..", spaces or special characters (got "${printable(haproxySocket)}")`,
      DEFAULTS['haproxy-socket']
    );
  const haproxyStateFile = c.get('haproxy-state-file');
  if (
    !PATH_SAFE.test(haproxyStateFile) ||
    haproxyStateFile.split('/').some((p) => p === '..' || p === '.') ||
    haproxyStateFile.endsWith('/')
  )
    c.fail(
      'haproxy-state-file',
      `must be an absolute file path without "..", spaces or special characters (got "${printable(haproxyStateFile)}")`,
      DEFAULTS['haproxy-state-file']
    );
  const haproxyBackend = c.raw('haproxy-backend') || app;
  if ((appOk || c.raw('haproxy-backend')) && !/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/.test(haproxyBackend))
    c.fail(
      'haproxy-backend',
      `"${printable(haproxyBackend)}" may only hold letters, digits, "_", ".", ":" and "-" (the name of the backend in haproxy.cfg)`,
      'web'
    );

  const { caddyAdminUrl, caddySwitchDir } = readCaddy(c);

  return {
    traffic,
    ports,
    publicPort,
    nginxUpstreamFile,
    nginxUpstreamName,
    nginxReloadCommand,
    nginxSwitch,
    nginxHealthUrl,
    haproxySocket,
    haproxyBackend,
    haproxyStateFile,
    caddyAdminUrl,
    caddySwitchDir
  };
}

/**
 * traffic caddy: the admin API is read on the host (curl to its loopback), so its URL must be http:// on a loopback
 * address; the marker directory is an absolute path the SSH user can write (Caddy reads it).
 */
function readCaddy(c: Collector): { caddyAdminUrl: string; caddySwitchDir: string } {
  const raw = c.get('caddy-admin-url');
  let caddyAdminUrl = raw.replace(/\/+$/, '');
  let u: URL | undefined;
  try {
    u = new URL(raw);
  } catch {
    u = undefined;
  }
  const host = u?.hostname.replace(/^\[|\]$/g, '') ?? '';
  if (
    !u ||
    u.protocol !== 'http:' ||
    u.username ||
    u.password ||
    u.search ||
    u.hash ||
    (u.pathname !== '/' && u.pathname !== '') ||
    !(host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host))
  ) {
    c.fail(
      'caddy-admin-url',
      `must be an http:// URL of Caddy's admin API on the host's loopback, without a path (got "${printable(raw)}")`,
      DEFAULTS['caddy-admin-url']
    );
    caddyAdminUrl = DEFAULTS['caddy-admin-url'];
  }
  const caddySwitchDir = c.get('caddy-switch-dir').replace(/\/+$/, '');
  if (!PATH_SAFE.test(caddySwitchDir) || caddySwitchDir.split('/').some((p) => p === '..' || p === '.'))
    c.fail(
      'caddy-switch-dir',
      `must be an absolute directory path without "..", spaces or special characters (got "${printable(caddySwitchDir)}")`,
      DEFAULTS['caddy-switch-dir']
    );
  return { caddyAdminUrl, caddySwitchDir };
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
  if (u.protocol !== 'http:')
    return c.fail(
      name,
      `must be an http:// URL: the probe speaks plain HTTP to nginx on the host (got "${printable(raw)}")`,
      example
    );
  if (u.username || u.password || u.hash)
    return c.fail(name, `must not hold a user, password or #fragment (got "${printable(raw)}")`, example);
  if (!/^[\x21-\x7e]+$/.test(raw))
    return c.fail(name, `must hold only printable characters without spaces (got "${printable(raw)}")`, example);
  const hostname = u.hostname.replace(/^\[|\]$/g, '');
  const ip = /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) || hostname.includes(':');
  if (ip && !/^127\./.test(hostname) && hostname !== '::1') {
    return c.fail(
      name,
      `is probed on the host's loopback through the SSH connection, so its address must be 127.0.0.1 (or a name, sent as the Host header; got "${printable(u.hostname)}")`,
      example
    );
  }
  return { url: raw, host: u.host, port: u.port ? Number(u.port) : 80, path: `${u.pathname}${u.search}` };
}
