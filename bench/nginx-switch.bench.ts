/**
 * nginx: switch by reload vs reload-free switch with njs, under the four client kinds of test/e2e/clients.ts.
 *
 * Two nginx instances of this bench only (own config, pid file and ports; the sandbox's nginx is not touched), in
 * front of two in-process backends (blue, green) that answer like the demo images: GET / their colour,
 * /cgi-bin/slow?<s> after s seconds, /cgi-bin/stream?<n> n events 0.2 s apart then the end marker.
 *   reload  upstream file rewritten, then `nginx -s reload` (what traffic: nginx does)
 *   njs     `js_set $bluegreen_port` reads a file at request time (njs module, Debian libnginx-mod-http-js);
 *           the switch writes that file (write + rename) and nginx is NOT reloaded
 * Each variant: the mix runs, SWITCHES switches 1.5 s apart alternate blue/green, then the mix stops.
 * Prints failures per client kind per variant and writes bench/results/nginx-switch.json.
 *   npm run bench -- bench/nginx-switch.bench.ts      (NGINX_SWITCHES, default 20; NGINX_SWITCH_PORT_BASE, default 19150)
 * Needs the njs module (/usr/lib/nginx/modules/ngx_http_js_module.so): apt-get install -y libnginx-mod-http-js.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { CLIENT_KINDS, ClientMix, formatKinds, type MixResult } from '../test/e2e/clients.js';
import { REPO_ROOT, shOk, waitFor } from '../test/e2e/harness.js';

const SWITCHES = Number(process.env.NGINX_SWITCHES ?? 20);
const BASE = Number(process.env.NGINX_SWITCH_PORT_BASE ?? 19150);
const PORTS = { reload: BASE, njs: BASE + 1, blue: BASE + 10, green: BASE + 11 };
const MODULE = '/usr/lib/nginx/modules/ngx_http_js_module.so';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A backend like the demo image (busybox httpd: no keep-alive towards nginx either way, nginx closes). */
function backend(name: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/cgi-bin/slow') {
      setTimeout(() => res.end(name), Number(u.search.slice(1) || 1) * 1000);
    } else if (u.pathname === '/cgi-bin/stream') {
      const n = Number(u.search.slice(1) || 10);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let i = 0;
      const t = setInterval(() => {
        if (i < n) res.write(`data: ${name} ${i++}\n\n`);
        else {
          clearInterval(t);
          res.end(`data: end ${name}\n\n`);
        }
      }, 200);
      res.on('close', () => clearInterval(t));
    } else res.end(name);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

function config(dir: string, variant: 'reload' | 'njs'): string {
  const common = `pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
worker_processes 2;
events { worker_connections 1024; }
`;
  const proxy = `proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream off;
      proxy_buffering off;`;
  if (variant === 'reload') {
    return `${common}http {
  access_log off;
  include ${dir}/upstream.conf;
  server {
    listen 127.0.0.1:${PORTS.reload};
    location / {
      proxy_pass http://bg;
      ${proxy}
    }
  }
}
`;
  }
  return `load_module ${MODULE};
${common}http {
  access_log off;
  js_path ${dir};
  js_import bluegreen from bluegreen.js;
  js_set $bluegreen_port bluegreen.port;
  server {
    listen 127.0.0.1:${PORTS.njs};
    location / {
      proxy_pass http://127.0.0.1:$bluegreen_port;
      ${proxy}
    }
  }
}
`;
}

/** The njs handler: the live port from a file, read at every request (njs 0.7 keeps no state between requests). */
export const NJS_PORT_JS = `import fs from 'fs';
function port(r) {
  try {
    var p = fs.readFileSync('__FILE__', 'utf8').trim();
    if (/^[0-9]{1,5}$/.test(p)) return p;
  } catch (e) {}
  r.error('bluegreen: no valid port in __FILE__');
  return '9';
}
export default { port };
`;

interface VariantResult {
  variant: string;
  switches: number;
  mix: MixResult;
  workersSeen: number;
}

async function runVariant(variant: 'reload' | 'njs', root: string): Promise<VariantResult> {
  const dir = path.join(root, variant);
  fs.mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  const live = path.join(dir, 'live-port');
  const write = (file: string, text: string) => {
    fs.writeFileSync(`${file}.tmp`, text);
    fs.renameSync(`${file}.tmp`, file);
  };
  write(path.join(dir, 'upstream.conf'), `upstream bg { server 127.0.0.1:${PORTS.blue}; }\n`);
  write(live, `${PORTS.blue}\n`);
  fs.writeFileSync(path.join(dir, 'bluegreen.js'), NJS_PORT_JS.replaceAll('__FILE__', live));
  fs.writeFileSync(conf, config(dir, variant));
  const nginx = `nginx -p ${dir} -c ${conf}`;
  await shOk(`${nginx} -t -q && ${nginx}`);
  const url = `http://127.0.0.1:${PORTS[variant]}`;
  await waitFor(async () => (await shOk(`curl -fsS ${url}/`)).trim() === 'blue', {
    timeoutMs: 10_000,
    what: `${variant} nginx to serve`
  });
  const masterPid = fs.readFileSync(path.join(dir, 'nginx.pid'), 'utf8').trim();
  const workers = new Set<string>();
  let result: MixResult;
  const mix = new ClientMix(url, {
    fresh: 3,
    pooled: 3,
    slow: 3,
    stream: 2,
    slowSeconds: [2, 3, 4, 5],
    streamEvents: 25,
    record: false
  }).start();
  try {
    await sleep(2000);
    for (let i = 0; i < SWITCHES; i++) {
      const port = i % 2 === 0 ? PORTS.green : PORTS.blue;
      if (variant === 'reload') {
        write(path.join(dir, 'upstream.conf'), `upstream bg { server 127.0.0.1:${port}; }\n`);
        await shOk(`${nginx} -s reload`);
      } else {
        write(live, `${port}\n`);
      }
      for (const w of (await shOk(`pgrep -P ${masterPid} || true`)).split('\n').filter(Boolean)) workers.add(w);
      await sleep(1500);
    }
    await sleep(6000);
  } finally {
    result = await mix.stop();
    await shOk(`${nginx} -s quit`).catch(() => undefined);
  }
  process.stdout.write(`[nginx-switch] ${variant}: ${formatKinds(result)} (${workers.size} worker pids seen)\n`);
  return { variant, switches: SWITCHES, mix: result, workersSeen: workers.size };
}

test(`nginx switch: reload vs njs, ${SWITCHES} switches each under the four client kinds`, async () => {
  if (!fs.existsSync(MODULE)) throw new Error(`${MODULE} is missing: apt-get install -y libnginx-mod-http-js`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'h9-nginx-switch-'));
  fs.chmodSync(root, 0o755);
  const servers = await Promise.all([backend('blue', PORTS.blue), backend('green', PORTS.green)]);
  try {
    const results = [await runVariant('reload', root), await runVariant('njs', root)];
    const rows = [
      `| variant (${SWITCHES} switches) | ${CLIENT_KINDS.join(' | ')} | error codes |`,
      `| --- | ${CLIENT_KINDS.map(() => '---').join(' | ')} | --- |`,
      ...results.map(
        (r) =>
          `| ${r.variant} | ${CLIENT_KINDS.map((k) => `${r.mix[k].failed} / ${r.mix[k].ok + r.mix[k].failed}`).join(' | ')} | ${CLIENT_KINDS.flatMap((k) => Object.entries(r.mix[k].codes).map(([c, n]) => `${k}: ${c} ×${n}`)).join('; ') || '—'} |`
      )
    ];
    const text = rows.join('\n');
    fs.mkdirSync(path.join(REPO_ROOT, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(
      path.join(REPO_ROOT, 'bench', 'results', 'nginx-switch.json'),
      JSON.stringify(
        {
          at: new Date().toISOString(),
          switches: SWITCHES,
          results: results.map((r) => ({
            variant: r.variant,
            workersSeen: r.workersSeen,
            kinds: Object.fromEntries(CLIENT_KINDS.map((k) => [k, r.mix[k]]))
          })),
          table: text
        },
        null,
        2
      )
    );
    process.stdout.write(`\n${text}\n\nwritten: bench/results/nginx-switch.json\n`);
    expect(results.every((r) => r.mix.fresh.ok > 0)).toBe(true);
  } finally {
    servers.forEach((s) => s.closeAllConnections());
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    fs.rmSync(root, { recursive: true, force: true });
  }
});
