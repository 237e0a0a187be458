/**
 * End to end: nginx mode on a host shaped differently from the sandbox default. The user's nginx is an
 * OpenResty-like nginx started by ec2-user with its own config (`nginx -c`) and a pid file at a path no
 * distribution uses; the sandbox's main nginx (pid in /run/nginx.pid) plays "another site's nginx on the same
 * host", and a container whose processes are titled like nginx (a "master" that replaces its "worker" every
 * second) plays an nginx container, whose processes also show in the host's /proc. Deploys, rollback and a
 * failing deploy must behave as on a normal host, and a reload command that does not reload must still be caught.
 * Runs the bundled dist/ with Node 24, as a runner does.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
  dockerPs,
  drainJobDone,
  httpGet,
  LoadGenerator,
  q,
  runAction,
  SANDBOX,
  sh,
  shOk,
  waitFor,
  type LoadResult,
  type RunActionResult
} from './harness.js';

const APP = 'e2e-ng-site';
const LISTEN = 19200;
const PORTS = { blue: 19201, green: 19202 };
const DIR = '/home/ec2-user/e2e-ng-openresty';
const CONF = `${DIR}/conf/nginx.conf`;
const PID_FILE = `${DIR}/run/openresty.pid`;
const UPSTREAM = `${DIR}/upstreams/${APP}.conf`;
// The SSH user runs it (ec2-user owns that nginx, so no sudo); /usr/sbin is not on its PATH over SSH.
const RELOAD = `/usr/sbin/nginx -c ${CONF} -t -q && /usr/sbin/nginx -c ${CONF} -s reload`;
const FAKE = 'e2e-ng-fake';
const URL = `http://127.0.0.1:${LISTEN}`;

function inputs(extra: Record<string, string> = {}): Record<string, string> {
  return {
    hosts: SANDBOX.host,
    'ssh-private-key': SANDBOX.privateKey,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'app-name': APP,
    image: SANDBOX.image,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'blue-port': String(PORTS.blue),
    'green-port': String(PORTS.green),
    'nginx-upstream-file': UPSTREAM,
    'nginx-reload-command': RELOAD,
    'drain-seconds': '10',
    'health-timeout-seconds': '20',
    'verify-seconds': '1',
    'upload-artifacts': 'false',
    ...extra
  };
}

const deploy = (tag: string, extra: Record<string, string> = {}) => runAction(inputs({ tag, ...extra }));

/**
 * Runs the action under continuous load on fresh connections (keep-alive off: no retried requests to excuse).
 * `after`: what was served once the action had returned (while nginx reloads, old and new workers both accept
 * for a moment, so the versions may alternate during the switch, but not after it).
 */
async function underLoad(
  run: () => Promise<RunActionResult>,
  slow?: { concurrency: number; seconds: number[] }
): Promise<{ r: RunActionResult; stats: LoadResult; after: Record<string, number> }> {
  const load = new LoadGenerator(URL, { concurrency: 4, keepAlive: false, slow }).start();
  await new Promise((res) => setTimeout(res, 300));
  const r = await run();
  const atReturn = { ...load.current.bodies };
  await new Promise((res) => setTimeout(res, 500));
  const stats = await load.stop();
  const after = Object.fromEntries(
    Object.entries(stats.bodies)
      .map(([k, n]) => [k, n - (atReturn[k] ?? 0)])
      .filter(([, n]) => Number(n) > 0)
  );
  return { r, stats, after };
}

/** The deploy log names the nginx master that took the new config: it must be the user's nginx, not another one. */
function reloadedMasters(r: RunActionResult): string[] {
  return (/nginx serves \w+: master ([\d, ]+) took the new config/.exec(r.stdout)?.[1] ?? '')
    .split(/[, ]+/)
    .filter(Boolean);
}
const userMaster = () => fs.readFileSync(PID_FILE, 'utf8').trim();

const served = async () => (await httpGet(`${URL}/`)).body.trim();

/** Why a run failed, from its ::error lines (for assertion messages). */
const errors = (r: RunActionResult) =>
  r.stdout
    .split('\n')
    .filter((l) => l.startsWith('::error') || l.startsWith('::warning'))
    .join('\n');

/** The worker pids of every nginx master on the host except the test's own (to tell whether another nginx reloaded meanwhile). */
async function otherNginxWorkers(): Promise<string> {
  const own = fs.existsSync(PID_FILE) ? fs.readFileSync(PID_FILE, 'utf8').trim() : '';
  const out = await shOk(
    `ps -eo pid=,ppid=,args= | awk '$3" "$4" "$5 == "nginx: worker process" && $2 != ${q(own || '0')} { print $1 }' | sort -n | tr '\\n' ' '`
  );
  return out.trim();
}

async function stopUserNginx(): Promise<void> {
  if (!fs.existsSync(PID_FILE)) return;
  const pid = fs.readFileSync(PID_FILE, 'utf8').trim();
  if (!/^\d+$/.test(pid)) return;
  await sh(`kill -QUIT ${pid} 2>/dev/null`);
  await waitFor(async () => (await sh(`kill -0 ${pid} 2>/dev/null`)).code !== 0, {
    timeoutMs: 15000,
    what: `the test's nginx (${pid}) to exit`
  }).catch(() => sh(`kill -KILL ${pid}`));
}

async function removeAppContainers(): Promise<void> {
  const ids = (await shOk(`docker ps -aq --filter ${q(`label=bluegreen.app=${APP}`)}`)).split('\n').filter(Boolean);
  if (ids.length) await sh(`docker rm -f ${ids.join(' ')}`);
}

async function cleanup(): Promise<void> {
  await drainJobDone(APP).catch(() => undefined);
  await stopUserNginx();
  await sh(`docker rm -f ${FAKE} >/dev/null 2>&1`);
  await removeAppContainers();
  fs.rmSync(DIR, { recursive: true, force: true });
  fs.rmSync(`/home/ec2-user/.bluegreen/${APP}`, { recursive: true, force: true });
}

beforeAll(async () => {
  await cleanup();
  // The user's nginx: its own config, a pid file nobody's default list holds, everything under a directory ec2-user owns.
  for (const d of ['conf', 'run', 'logs', 'tmp', 'upstreams']) fs.mkdirSync(`${DIR}/${d}`, { recursive: true });
  const nonce = `${APP}-${crypto.randomBytes(6).toString('hex')}`;
  fs.writeFileSync(
    CONF,
    `worker_processes 2;
pid ${PID_FILE};
error_log ${DIR}/logs/error.log;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path ${DIR}/tmp/body;
  proxy_temp_path ${DIR}/tmp/proxy;
  fastcgi_temp_path ${DIR}/tmp/fastcgi;
  uwsgi_temp_path ${DIR}/tmp/uwsgi;
  scgi_temp_path ${DIR}/tmp/scgi;
  include ${DIR}/upstreams/*.conf;
  server {
    listen 127.0.0.1:${LISTEN};
    location = /__probe { default_type text/plain; return 200 "${nonce}"; }
    location = /nginx-health { default_type text/plain; return 200 "ok"; }
    location / {
      proxy_pass http://${APP};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream off;
    }
  }
}
`
  );
  fs.writeFileSync(UPSTREAM, `upstream ${APP} { server 127.0.0.1:${PORTS.blue}; }\n`);
  await shOk(`chown -R ec2-user:ec2-user ${q(DIR)}`);
  await shOk(`runuser -u ec2-user -- nginx -c ${q(CONF)}`);
  await waitFor(async () => (await httpGet(`${URL}/__probe`, { timeoutMs: 1000 })).body === nonce, {
    timeoutMs: 15000,
    intervalMs: 50,
    what: "the test's nginx to serve"
  });

  // An nginx container: its processes show in the host's /proc. busybox picks the applet from argv[0]'s basename, so
  // "nginx: worker process/sleep" runs sleep under an nginx-like title. Its "master" replaces its "worker" every second.
  const cfg = fs.mkdtempSync('/tmp/e2e-ng-docker-');
  try {
    await shOk(`docker --config ${q(cfg)} login -u ${SANDBOX.registryUser} --password-stdin ${SANDBOX.registry}`, {
      input: SANDBOX.registryPassword
    });
    await shOk(`docker --config ${q(cfg)} pull -q ${SANDBOX.image}:v1`);
  } finally {
    fs.rmSync(cfg, { recursive: true, force: true });
  }
  const worker = `exec -a "nginx: worker process/sleep" sleep 600`;
  const loop = `old=""; while :; do ${worker} & new=$!; [ -n "$old" ] && kill $old; old=$new; sleep 1; done`;
  await shOk(
    `docker run -d --name ${FAKE} --entrypoint sh ${SANDBOX.image}:v1 -c ${q(`exec -a "nginx: master process/sh" sh -c ${q(loop)}`)}`
  );
  await waitFor(
    async () =>
      (await sh(`grep -ls '^nginx: worker process' /proc/[0-9]*/cmdline | xargs -r grep -l 'sleep'`)).stdout.trim() !==
      '',
    { what: 'the fake container nginx worker to show in /proc' }
  );
}, 120_000);

afterAll(cleanup, 60_000);

describe('nginx with its own config and pid file, beside another nginx and an nginx container', () => {
  test('the host is shaped as intended: three kinds of nginx processes, the default pid file names the other nginx', async () => {
    const main = fs.readFileSync('/run/nginx.pid', 'utf8').trim();
    const own = fs.readFileSync(PID_FILE, 'utf8').trim();
    expect(own).not.toBe(main);
    expect(await shOk(`ps -o user=,args= -p ${own}`)).toMatch(/^ec2-user\s+nginx: master process/);
    expect(await shOk(`ps -o args= -p ${main}`)).toMatch(/^nginx: master process/);
    expect(await shOk(`docker top ${FAKE}`)).toMatch(/nginx: worker process/);
  });

  test("first deploy: v1 is served by the user's nginx", async () => {
    const r = await deploy('v1');
    expect({ code: r.code, result: r.outputs.result, errors: errors(r) }).toEqual({
      code: 0,
      result: 'success',
      errors: ''
    });
    expect(r.outputs['active-color']).toBe('blue');
    expect(reloadedMasters(r)).toContain(userMaster());
    expect(await served()).toBe('v1');
    expect(fs.readFileSync(UPSTREAM, 'utf8')).toMatch(new RegExp(`server 127\\.0\\.0\\.1:${PORTS.blue};`));
  });

  test('second deploy under load: zero failed requests (slow ones too), v1 then v2, the old colour stopped and kept', async () => {
    // Slow requests on the old colour outlive the run: the drain on the host must wait for the user's nginx's old workers.
    const { r, stats, after } = await underLoad(
      () => deploy('v2', { 'nginx-health-url': `http://127.0.0.1:${LISTEN}/nginx-health` }),
      { concurrency: 2, seconds: [3, 4] }
    );
    expect({ code: r.code, result: r.outputs.result, errors: errors(r) }).toEqual({
      code: 0,
      result: 'success',
      errors: ''
    });
    expect(r.outputs['active-color']).toBe('green');
    expect(reloadedMasters(r)).toContain(userMaster());
    expect(stats.errors).toEqual([]);
    expect(stats.failed).toBe(0);
    expect(stats.keepAliveRetries).toBe(0);
    expect(stats.slow.errors).toEqual([]);
    expect(stats.slow.bodies.v1).toBeGreaterThan(0);
    expect(stats.transitions[0]).toBe('v1');
    expect(Object.keys(after)).toEqual(['v2']);
    expect(r.stdout).toContain(`nginx-health-url http://127.0.0.1:${LISTEN}/nginx-health → HTTP 200`);
    expect(await served()).toBe('v2');
    await drainJobDone(APP);
    expect((await dockerPs(APP)).map((c) => [c.name, c.state]).sort()).toEqual([
      [`${APP}-blue`, 'exited'],
      [`${APP}-green`, 'running']
    ]);
  });

  test('rollback under load: back to v1 with zero failed requests', async () => {
    const { r, stats, after } = await underLoad(() => runAction(inputs({ command: 'rollback' })));
    expect({ code: r.code, result: r.outputs.result, errors: errors(r) }).toEqual({
      code: 0,
      result: 'success',
      errors: ''
    });
    expect(r.outputs['active-color']).toBe('blue');
    expect(reloadedMasters(r)).toContain(userMaster());
    expect(stats.errors).toEqual([]);
    expect(stats.failed).toBe(0);
    expect(stats.transitions[0]).toBe('v2');
    expect(Object.keys(after)).toEqual(['v1']);
    expect(await served()).toBe('v1');
  });

  test('a deploy that turns unhealthy after the switch is switched back under load: rolled-back, v1 keeps serving, zero failed requests', async () => {
    const { r, stats, after } = await underLoad(() => deploy('degrade', { 'verify-seconds': '8' }));
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('rolled-back');
    expect(r.stdout).toMatch(
      /verify failed on 127\.0\.0\.1:2222: (e2e-ng-site-green turned unhealthy|GET \/health on port 19202 answered HTTP 500)/
    );
    expect(reloadedMasters(r)).toContain(userMaster());
    expect(stats.errors).toEqual([]);
    expect(stats.failed).toBe(0);
    expect(stats.transitions[0]).toBe('v1');
    expect(Object.keys(after)).toEqual(['v1']);
    expect(await served()).toBe('v1');
    expect(fs.readFileSync(UPSTREAM, 'utf8')).toMatch(new RegExp(`server 127\\.0\\.0\\.1:${PORTS.blue};`));
    await drainJobDone(APP);
    expect((await dockerPs(APP)).filter((c) => c.state === 'running').map((c) => c.name)).toEqual([`${APP}-blue`]);
  });

  test('nginx-health-url answering 404 through nginx after the switch fails verify and switches back, without a failed request', async () => {
    const { r, stats } = await underLoad(() =>
      deploy('v3', { 'nginx-health-url': `http://127.0.0.1:${LISTEN}/no-such-location` })
    );
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('rolled-back');
    expect(r.stdout).toMatch(
      new RegExp(
        `verify failed on 127\\.0\\.0\\.1:2222: nginx-health-url http://127\\.0\\.0\\.1:${LISTEN}/no-such-location answered HTTP (404|502) after the switch`
      )
    );
    expect(stats.errors).toEqual([]);
    expect(stats.failed).toBe(0);
    expect(await served()).toBe('v1');
    await drainJobDone(APP);
    expect((await dockerPs(APP)).filter((c) => c.state === 'running').map((c) => c.name)).toEqual([`${APP}-blue`]);
  });

  test('a reload command that does not reload nginx is still caught: verify fails, traffic switched back, the live version keeps serving', async () => {
    // Another nginx reloading in the same seconds (the shared sandbox's nginx, other engineers' tests) looks like a
    // reload, and that deploy then succeeds: such a run proves nothing, so it is repeated from the state it left.
    let run: { r: RunActionResult; stats: LoadResult; before: string; live: string } | undefined;
    for (let attempt = 0; attempt < 4; attempt++) {
      const others = await otherNginxWorkers();
      await drainJobDone(APP);
      const before = fs.readFileSync(UPSTREAM, 'utf8');
      const live = await served();
      const { r, stats } = await underLoad(() =>
        deploy(live === 'v3' ? 'v2' : 'v3', { 'nginx-reload-command': 'true' })
      );
      run = { r, stats, before, live };
      if ((await otherNginxWorkers()) === others) break;
    }
    const { r, stats, before, live } = run!;
    expect(r.code).toBe(1);
    expect(r.outputs.result).toBe('rolled-back');
    expect(r.stdout).toMatch(
      /verify failed on 127\.0\.0\.1:2222: nginx did not reload within 10 s \(no nginx master on the host started new workers; masters .* are unchanged; \d+ nginx master\(s\) in other PID namespaces \(containers\) are not watched\)/
    );
    expect(fs.readFileSync(UPSTREAM, 'utf8')).toBe(before);
    expect(stats.errors).toEqual([]);
    expect(stats.failed).toBe(0);
    expect(Object.keys(stats.bodies)).toEqual([live]);
    expect(await served()).toBe(live);
    await drainJobDone(APP);
    expect((await dockerPs(APP)).filter((c) => c.state === 'running')).toHaveLength(1);
  });
});
