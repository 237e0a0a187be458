/**
 * An nginx of one test (or bench) only, for `nginx-switch: njs`: its own prefix, config, pid file and port, with the
 * official njs module (Debian's libnginx-mod-http-js) reading the live port from the action's upstream file at every
 * request, as README "Reload-free switch with njs" tells users to set it up. The sandbox's shared nginx is not
 * touched: another test's reload of it would close this test's keep-alive connections and blur what is measured.
 * The upstream file is the one the action writes (/etc/nginx/bluegreen/<app>.conf, owned by ec2-user).
 */
import fs from 'node:fs';
import path from 'node:path';
import { q, sh, shOk, waitFor } from './harness.js';

export const NJS_MODULE = '/usr/lib/nginx/modules/ngx_http_js_module.so';

/** The njs handler of the README, verbatim: the port of the `server 127.0.0.1:<port>;` line of the upstream file. */
export const BLUEGREEN_JS = `// bluegreen-ec2-action, nginx-switch: njs. The live port, read from the action's upstream file at every request.
import fs from 'fs';
function port(r) {
  var f = r.variables.bluegreen_upstream_file;
  try {
    var m = /^\\s*server\\s+127\\.0\\.0\\.1:(\\d+)\\s*;/m.exec(fs.readFileSync(f, 'utf8'));
    if (m) return m[1];
    r.error('bluegreen: no "server 127.0.0.1:<port>;" line in ' + f);
  } catch (e) {
    r.error('bluegreen: ' + e.message);
  }
  return '';
}
export default { port };
`;

export interface NjsNginx {
  url: string;
  dir: string;
  /** master pid, read from its pid file */
  master(): string;
  /** the master's worker pids, sorted */
  workers(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Starts it on 127.0.0.1:<listenPort>; the upstream file must exist (the caller writes the first one, pointing at the
 * blue port, as an operator would before the first deploy).
 */
export async function startNjsNginx(
  dir: string,
  opts: { listenPort: number; upstreamFile: string }
): Promise<NjsNginx> {
  if (!fs.existsSync(NJS_MODULE))
    throw new Error(
      `${NJS_MODULE} is missing: apt-get install -y libnginx-mod-http-js (test/sandbox/up.sh installs it)`
    );
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  const js = path.join(dir, 'bluegreen.js');
  fs.writeFileSync(js, BLUEGREEN_JS, { mode: 0o644 });
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `load_module ${NJS_MODULE};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log notice;
worker_processes 2;
events { worker_connections 1024; }
http {
  access_log off;
  js_import bluegreen from ${js};
  js_set $bluegreen_port bluegreen.port;
  server {
    listen 127.0.0.1:${opts.listenPort};
    location / {
      set $bluegreen_upstream_file ${opts.upstreamFile};
      proxy_pass http://127.0.0.1:$bluegreen_port;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream off;
      proxy_buffering off;
    }
  }
}
`
  );
  const nginx = `nginx -p ${q(dir)} -c ${q(conf)}`;
  await shOk(`${nginx} -t -q && ${nginx}`);
  const pidFile = path.join(dir, 'nginx.pid');
  await waitFor(async () => fs.existsSync(pidFile), { timeoutMs: 10_000, what: 'the njs nginx to write its pid file' });
  const master = () => fs.readFileSync(pidFile, 'utf8').trim();
  return {
    url: `http://127.0.0.1:${opts.listenPort}`,
    dir,
    master,
    workers: async () => (await sh(`pgrep -P ${master()}`)).stdout.split('\n').filter(Boolean).sort(),
    stop: async () => {
      const pid = master();
      await sh(`${nginx} -s quit`);
      await waitFor(async () => !fs.existsSync(`/proc/${pid}`), {
        timeoutMs: 15_000,
        what: `nginx ${pid} to quit`
      }).catch(async () => {
        await sh(`kill ${pid}`);
      });
    }
  };
}
