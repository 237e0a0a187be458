/**
 * traffic caddy without a host: the config check (against the JSON that Caddy 2.6 adapts the documented Caddyfile
 * to, and the JSON of the docs), the marker script run with the machine's sh (fencing included), the drain loop
 * against a stand-in admin API.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { configProblem, hasMarkerMatcher } from '../../../../src/traffic/caddy/config.js';
import { caddyDrainScript, markerScript } from '../../../../src/traffic/caddy/scripts.js';
import type { RemoteScript } from '../../../../src/remote/scripts.js';
import { CaddyRouter } from '../../../../src/traffic/caddy/router.js';
import type { RouterContext } from '../../../../src/traffic/router.js';
import type { DeployConfig } from '../../../../src/model/config.js';
import type { HostLog } from '../../../../src/log/log.js';
import type { Plan } from '../../../../src/model/host.js';
import type { RemoteHost } from '../../../../src/transport/remote-host.js';

const PORTS = { blue: 8081, green: 8082 };
const MARKER_DIR = '/var/lib/bluegreen/caddy/backend';

/** `caddy adapt` (2.6.2) of docs/traffic.md's Caddyfile for the app backend. */
const ADAPTED = JSON.parse(
  '{"apps":{"http":{"servers":{"srv0":{"listen":[":443"],"routes":[{"match":[{"host":["example.com"]}],"handle":[{"handler":"subroute","routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:8082"}]}],"match":[{"file":{"root":"/var/lib/bluegreen/caddy/backend","try_files":["/green"]}}]},{"handle":[{"handler":"reverse_proxy","upstreams":[{"dial":"127.0.0.1:8081"}]}]}]}],"terminal":true}]}}}}}'
);

function sh(s: RemoteScript, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', s.body, 'sh', ...s.args], { cwd }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })
    );
  });
}

describe('Caddy config check', () => {
  test('the documented Caddyfile, as Caddy adapts it, routes by the marker', () => {
    expect(hasMarkerMatcher(ADAPTED, MARKER_DIR)).toBe(true);
    expect(configProblem(ADAPTED, MARKER_DIR, PORTS)).toBeUndefined();
    // a trailing slash on the root, or the marker as an absolute try_files path, is the same matcher
    const abs = JSON.parse(
      JSON.stringify(ADAPTED).replace(
        '"root":"/var/lib/bluegreen/caddy/backend","try_files":["/green"]',
        '"try_files":["/var/lib/bluegreen/caddy/backend/green"]'
      )
    );
    expect(configProblem(abs, `${MARKER_DIR}/`, PORTS)).toBeUndefined();
  });

  test("what is missing is named: another app's marker, a wrong port, no config", () => {
    expect(configProblem(ADAPTED, '/var/lib/bluegreen/caddy/shop', PORTS)).toBe(
      "Caddy's config lacks a file matcher for /var/lib/bluegreen/caddy/shop/green"
    );
    expect(configProblem(ADAPTED, MARKER_DIR, { blue: 8081, green: 9092 })).toBe(
      "Caddy's config lacks a reverse_proxy to 127.0.0.1:9092 (green)"
    );
    expect(configProblem(null, MARKER_DIR, PORTS)).toBe('Caddy has no config loaded');
    // the drain looks the upstream up by the address the config dials: localhost would not be found there
    const byName = JSON.parse(JSON.stringify(ADAPTED).replace('"127.0.0.1:8081"', '"localhost:8081"'));
    expect(configProblem(byName, MARKER_DIR, PORTS)).toBe(
      "Caddy's config lacks a reverse_proxy to 127.0.0.1:8081 (blue)"
    );
  });
});

describe("marker script (the machine's sh)", () => {
  let home: string;
  let dir: string;
  beforeEach(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'caddy-marker-'));
    fs.chmodSync(home, 0o755); // Caddy, another user, must be able to enter every folder on the marker's way
    dir = path.join(home, 'switch');
    fs.mkdirSync(dir, { mode: 0o755 });
  });
  afterEach(() => fs.rmSync(home, { recursive: true, force: true }));

  const lease = (token: string, expires: number) => {
    fs.mkdirSync(path.join(home, '.bluegreen', 'shop'), { recursive: true });
    fs.writeFileSync(path.join(home, '.bluegreen', 'shop', 'lease'), `${token} ${expires} {}\n`);
  };

  test('green writes the marker with the note, blue removes it', async () => {
    lease('d1', Math.floor(Date.now() / 1000) + 30);
    const g = await sh(
      markerScript(dir, 'shop', 'green', 'Live: green, deploy d1.', { app: 'shop', deployId: 'd1' }),
      home
    );
    expect(g).toMatchObject({ code: 0, stdout: '@@switched green\n' });
    expect(fs.readFileSync(path.join(dir, 'shop', 'green'), 'utf8')).toBe('Live: green, deploy d1.\n');
    const b = await sh(markerScript(dir, 'shop', 'blue', '', { app: 'shop', deployId: 'd1' }), home);
    expect(b.code).toBe(0);
    expect(fs.existsSync(path.join(dir, 'shop', 'green'))).toBe(false);
  });

  test('a run whose lease is not (or no longer) its own changes nothing: exit 77', async () => {
    lease('other-run', Math.floor(Date.now() / 1000) + 30);
    const r = await sh(markerScript(dir, 'shop', 'green', 'x', { app: 'shop', deployId: 'd1' }), home);
    expect(r.code).toBe(77);
    expect(fs.existsSync(path.join(dir, 'shop', 'green'))).toBe(false);
    lease('d1', Math.floor(Date.now() / 1000) - 1);
    expect((await sh(markerScript(dir, 'shop', 'green', 'x', { app: 'shop', deployId: 'd1' }), home)).code).toBe(77);
  });

  test('the app folder is made enterable by Caddy whatever the umask; a folder Caddy cannot enter is refused before the switch', async () => {
    lease('d1', Math.floor(Date.now() / 1000) + 30);
    const s = markerScript(dir, 'shop', 'green', 'x', { app: 'shop', deployId: 'd1' });
    const r = await sh({ ...s, body: `umask 077\n${s.body}` }, home);
    expect(r.code).toBe(0);
    expect(fs.statSync(path.join(dir, 'shop')).mode & 0o777).toBe(0o755);
    fs.rmSync(path.join(dir, 'shop'), { recursive: true });
    fs.chmodSync(dir, 0o700);
    const refused = await sh(markerScript(dir, 'shop', 'green', 'x', { app: 'shop', deployId: 'd1' }), home);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/Caddy \(another user\) cannot enter .*switch: chmod o\+rx/);
    expect(fs.existsSync(path.join(dir, 'shop', 'green'))).toBe(false);
  });

  test('a switch dir the user cannot create says so', async () => {
    const r = await sh(markerScript('/proc/no-such-dir', 'shop', 'green', 'x'), home);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/caddy-switch-dir \(\/proc\/no-such-dir\) must exist and be writable/);
  });
});

describe("drain by Caddy's requests in flight (a stand-in admin API)", () => {
  test('waits while the old upstream has requests, then reports drained; an API that does not answer counts as busy', async () => {
    let busyFor = 3;
    const server = http.createServer((req, res) => {
      const n = busyFor-- > 0 ? 1 : 0;
      res.end(
        JSON.stringify([
          { address: '127.0.0.1:8082', num_requests: 0, fails: 0 },
          { address: '127.0.0.1:8081', num_requests: n, fails: 0 }
        ])
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const ok = await sh(caddyDrainScript(`http://127.0.0.1:${port}`, '127.0.0.1:8081', 5000), os.tmpdir());
      expect(ok.stdout).toMatch(/^@@drained \d+$/m);
      expect(busyFor).toBeLessThan(0);
      const down = await sh(caddyDrainScript('http://127.0.0.1:1', '127.0.0.1:8081', 300), os.tmpdir());
      expect(down.stdout).toMatch(/^@@drain-timeout \?$/m);
      // an upstream Caddy does not list (dialled under another name) is not taken for idle
      const unlisted = await sh(caddyDrainScript(`http://127.0.0.1:${port}`, '127.0.0.1:9999', 300), os.tmpdir());
      expect(unlisted.stdout).toMatch(/^@@drain-timeout \?$/m);
    } finally {
      server.close();
    }
  });
});

describe('switch-back, decided from the marker as read after the failure', () => {
  const cfg = {
    app: 'shop',
    command: 'deploy',
    ports: PORTS,
    drainMs: 1000,
    caddyAdminUrl: 'http://127.0.0.1:2019',
    caddySwitchDir: '/var/lib/bluegreen/caddy'
  } as DeployConfig;
  const log = { debug() {}, info() {}, warn() {}, error() {} } as unknown as HostLog;
  function context(plan: Partial<Plan>) {
    const sent: string[][] = [];
    const remote = {
      run: async (_body: string, args: string[]) => {
        sent.push(args);
        return { code: 0, signal: null, stdout: '@@switched\n@@drained 3\n', stderr: '' };
      }
    } as unknown as RemoteHost;
    const ctx: RouterContext = {
      cfg,
      deployId: 'd2',
      plan: {
        candidate: 'green',
        live: 'blue',
        replaceExisting: false,
        byColor: {},
        leftovers: [],
        notes: [],
        ...plan
      },
      log,
      imageLabel: 'r/shop:v2',
      remote,
      probe: async () => undefined,
      warn: () => undefined
    };
    return { ctx, sent };
  }
  const marker = (note: string | undefined) => ({ containers: [], upstreamContent: note, stateUnreadable: false });

  test('the marker routes to the candidate: put back as before (removed), then the candidate drains', async () => {
    const { ctx, sent } = context({ upstreamContent: undefined });
    expect(await new CaddyRouter(cfg).switchBack(ctx, marker('Live: green, deploy d2.'))).toEqual({ moved: true });
    expect(sent[0].slice(0, 3)).toEqual(['/var/lib/bluegreen/caddy', 'shop', 'blue']);
    expect(sent[1]).toEqual(['http://127.0.0.1:2019 127.0.0.1:8082', '1000']);
  });

  test('the marker never moved (switch not reached, or another state): nothing is changed', async () => {
    const { ctx, sent } = context({ upstreamContent: undefined });
    expect(await new CaddyRouter(cfg).switchBack(ctx, marker(undefined))).toEqual({ moved: false });
    expect(sent).toEqual([]);
  });

  test('a first deploy to blue (no marker before or after): there is nothing to go back to', async () => {
    const { ctx, sent } = context({ candidate: 'blue', live: undefined, upstreamContent: undefined });
    expect(await new CaddyRouter(cfg).switchBack(ctx, marker(undefined))).toEqual({ moved: false });
    expect(sent).toEqual([]);
  });
});
