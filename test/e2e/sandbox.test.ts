/**
 * Smoke test of the e2e sandbox itself (independent of the action): sshd + docker for ec2-user, the registry,
 * the demo images, host nginx + prepareApp, the fake ECR and fake results services, and the LoadGenerator.
 * Needs `bash test/sandbox/up.sh` to have run (as root).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';
import { startFakeEcr } from './fake-ecr.js';
import { startFakeResults, runtimeToken } from './fake-results.js';
import {
  SANDBOX,
  LoadGenerator,
  cleanupApp,
  dockerPs,
  httpGet,
  parseCommandFile,
  prepareApp,
  q,
  runAction,
  sh,
  shOk,
  waitFor
} from './harness.js';

const APP = 'sandbox-smoke';
const LISTEN_PORT = 18180;
const BLUE_PORT = 18181;

function sshArgs(key = SANDBOX.privateKeyPath): string {
  return [
    '-i',
    q(key),
    '-o IdentitiesOnly=yes',
    `-o UserKnownHostsFile=${q(SANDBOX.knownHostsPath)}`,
    '-o StrictHostKeyChecking=yes',
    '-o ConnectTimeout=10',
    `-p ${SANDBOX.sshPort}`
  ].join(' ');
}

/** docker login into a throwaway config dir; returns `docker --config <dir>` prefix. */
async function dockerWithLogin(): Promise<{ docker: string; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-docker-cfg-'));
  await shOk(`docker --config ${q(dir)} login ${SANDBOX.registry} -u ${SANDBOX.registryUser} --password-stdin`, {
    input: SANDBOX.registryPassword
  });
  return { docker: `docker --config ${q(dir)}`, dir };
}

function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) delete process.env[k];
      else process.env[k] = val;
    }
  };
  set(vars);
  return fn().finally(() => set(saved));
}

/** Drops @actions/core workflow commands (::debug:: etc.) that the in-process artifact client prints. */
async function quietWorkflowCommands<T>(fn: () => Promise<T>): Promise<T> {
  const write = process.stdout.write;
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) =>
    typeof chunk === 'string' && chunk.startsWith('::')
      ? true
      : (write as Function).call(process.stdout, chunk, ...rest)) as typeof write;
  try {
    return await fn();
  } finally {
    process.stdout.write = write;
  }
}

describe('e2e sandbox', () => {
  test('ec2-user can ssh in with the key (host key pinned) and run docker and the allowed sudo nginx commands', async () => {
    const r = await sh(
      `ssh ${sshArgs()} -o BatchMode=yes ${SANDBOX.user}@${SANDBOX.sshHost} 'id -un; docker ps --format "{{.ID}}" >/dev/null && echo docker-ok; sudo -n /usr/sbin/nginx -t -q && echo nginx-t-ok; test -w /etc/nginx/bluegreen && echo dir-writable; sudo -n /usr/sbin/nginx -T >/dev/null 2>&1 || echo other-sudo-denied'`
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')).toEqual([
      'ec2-user',
      'docker-ok',
      'nginx-t-ok',
      'dir-writable',
      'other-sudo-denied',
      ''
    ]);
    expect(r.code).toBe(0);

    // the known_hosts entry and the fingerprint file describe the host key sshd really presents
    const scan = await shOk(
      `ssh-keyscan -p ${SANDBOX.sshPort} -t ed25519 ${SANDBOX.sshHost} 2>/dev/null | ssh-keygen -lf - | awk '{print $2}'`
    );
    expect(scan.trim()).toBe(SANDBOX.fingerprint);
    expect(SANDBOX.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(SANDBOX.knownHosts).toContain('[127.0.0.1]:2222 ssh-ed25519 ');
    expect(SANDBOX.privateKey).toContain('BEGIN OPENSSH PRIVATE KEY');

    // the passphrase-protected key works too (passphrase fed through SSH_ASKPASS)
    const askpass = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bg-askpass-')), 'askpass.sh');
    fs.writeFileSync(askpass, `#!/bin/sh\necho ${q(SANDBOX.passphrase)}\n`, { mode: 0o700 });
    const p = await sh(`ssh ${sshArgs(SANDBOX.passKeyPath)} ${SANDBOX.user}@${SANDBOX.sshHost} echo pass-ok`, {
      env: { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force', DISPLAY: ':0' }
    });
    expect(p.stdout.trim()).toBe('pass-ok');
  });

  test('registry requires auth and serves the demo images to ci', async () => {
    const anon = await shOk(`curl -s -o /dev/null -w '%{http_code}' http://${SANDBOX.registry}/v2/demo/manifests/v1`);
    expect(anon).toBe('401');
    const bad = await shOk(`curl -s -o /dev/null -w '%{http_code}' -u ci:wrong http://${SANDBOX.registry}/v2/`);
    expect(bad).toBe('401');
    for (const tag of ['v1', 'v2', 'v3', 'unhealthy', 'crash', 'degrade']) {
      const code = await shOk(
        `curl -s -o /dev/null -w '%{http_code}' -I -u ${SANDBOX.registryUser}:${SANDBOX.registryPassword} ` +
          `-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://${SANDBOX.registry}/v2/demo/manifests/${tag}`
      );
      expect([tag, code]).toEqual([tag, '200']);
    }
    // the AWS account (what a fake-ECR token decodes to) works for ec2-user on the host, as the action would use it
    const ecr = await startFakeEcr({ password: SANDBOX.ecrPassword });
    try {
      const res = await withEnv(
        { AWS_ACCESS_KEY_ID: 'AKIASANDBOX0000', AWS_SECRET_ACCESS_KEY: 's', AWS_ENDPOINT_URL_ECR: ecr.url },
        () => new ECRClient({ region: 'us-east-1' }).send(new GetAuthorizationTokenCommand({}))
      );
      const [user, password] = Buffer.from(res.authorizationData![0].authorizationToken!, 'base64')
        .toString()
        .split(':');
      expect(user).toBe(SANDBOX.ecrUser);
      const login = await sh(
        `ssh ${sshArgs()} -o BatchMode=yes ${SANDBOX.user}@${SANDBOX.sshHost} 'd=$(mktemp -d) && docker --config $d login ${SANDBOX.registry} -u ${user} --password-stdin >/dev/null 2>&1 && docker --config $d pull -q ${SANDBOX.image}:v3; rc=$?; rm -rf $d; exit $rc'`,
        { input: password }
      );
      expect(login).toMatchObject({ code: 0, stdout: `${SANDBOX.image}:v3\n` });
    } finally {
      await ecr.close();
      await sh(`docker rmi ${SANDBOX.image}:v3`);
    }

    const anonPull = await sh(
      `docker --config ${q(fs.mkdtempSync(path.join(os.tmpdir(), 'bg-anon-')))} pull -q ${SANDBOX.image}:v1`
    );
    expect(anonPull.code).not.toBe(0);
    expect(anonPull.stderr).toMatch(/no basic auth credentials|unauthorized|authentication required/i);
  });

  test('demo images: env GREETING, unhealthy /health, crash exits 1 with a message', async () => {
    const { docker, dir } = await dockerWithLogin();
    const name = `${APP}-img`;
    try {
      await sh(`docker rm -f ${name}-a ${name}-b ${name}-c`);
      await shOk(
        `${docker} run -d --name ${name}-a -e GREETING='hi there' -p 127.0.0.1:18191:8080 ${SANDBOX.image}:v2`
      );
      await shOk(`${docker} run -d --name ${name}-b -p 127.0.0.1:18192:8080 ${SANDBOX.image}:unhealthy`);
      const a = 'http://127.0.0.1:18191';
      await waitFor(async () => (await httpGet(`${a}/health`)).status === 200, { what: 'v2 to serve /health' });
      expect(await httpGet(`${a}/health`)).toMatchObject({ status: 200, body: 'ok' });
      expect(await httpGet(`${a}/`)).toMatchObject({ status: 200, body: 'v2' });
      expect(await httpGet(`${a}/greeting`)).toMatchObject({ status: 200, body: 'hi there' });
      expect(await httpGet(`${a}/cgi-bin/slow?0.2`)).toMatchObject({ status: 200, body: 'v2' });
      const b = 'http://127.0.0.1:18192';
      await waitFor(async () => (await httpGet(`${b}/`)).status === 200, { what: 'unhealthy to serve /' });
      expect(await httpGet(`${b}/`)).toMatchObject({ status: 200, body: 'unhealthy' });
      expect((await httpGet(`${b}/health`)).status).toBe(404);
      expect((await httpGet(`${b}/greeting`)).status).toBe(404);

      const c = await sh(`${docker} run --name ${name}-c ${SANDBOX.image}:crash`);
      expect(c.code).toBe(1);
      expect(c.stderr).toContain('boom: cannot connect to database');
      await shOk(`docker stop ${name}-a`);
      // the entry script handles SIGTERM: it exits 0 instead of being killed (137) after the stop timeout
      expect((await shOk(`docker inspect --format '{{.State.ExitCode}}' ${name}-a`)).trim()).toBe('0');
    } finally {
      await sh(
        `docker rm -f ${name}-a ${name}-b ${name}-c; docker rmi ${SANDBOX.image}:v2 ${SANDBOX.image}:unhealthy ${SANDBOX.image}:crash`
      );
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('demo image degrade: healthy at first, /health answers 500 from 3 s after start while / keeps working', async () => {
    const { docker, dir } = await dockerWithLogin();
    const name = `${APP}-img-degrade`;
    const d = 'http://127.0.0.1:18193';
    try {
      await sh(`docker rm -f ${name}`);
      await shOk(`${docker} pull -q ${SANDBOX.image}:degrade`); // so the 3 s below are not spent pulling
      await shOk(`${docker} run -d --name ${name} -e GREETING=hi -p 127.0.0.1:18193:8080 ${SANDBOX.image}:degrade`);
      await waitFor(async () => (await httpGet(`${d}/health`).catch(() => ({ status: 0 }))).status === 200, {
        what: 'degrade to be healthy'
      });
      expect((await sh(`docker logs ${name} 2>&1`)).stdout).not.toContain('degraded');
      expect(await httpGet(`${d}/health`)).toMatchObject({ status: 200, body: 'ok' });
      expect(await httpGet(`${d}/`)).toMatchObject({ status: 200, body: 'degrade' });
      expect(await httpGet(`${d}/greeting`)).toMatchObject({ status: 200, body: 'hi' });
      await waitFor(async () => (await httpGet(`${d}/health`)).status === 500, { what: 'degrade to turn unhealthy' });
      expect((await sh(`docker logs ${name} 2>&1`)).stdout).toContain('degraded, /health answers 500 from now on');
      expect(await httpGet(`${d}/health`)).toMatchObject({ status: 500, body: 'degraded' });
      expect(await httpGet(`${d}/`)).toMatchObject({ status: 200, body: 'degrade' });
      expect((await httpGet(`${d}/nope`)).status).toBe(404);
      await shOk(`docker stop ${name}`);
      expect((await shOk(`docker inspect --format '{{.State.ExitCode}}' ${name}`)).trim()).toBe('0'); // SIGTERM handled
    } finally {
      await sh(`docker rm -f ${name}; docker rmi ${SANDBOX.image}:degrade`);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('fake ECR serves a token to the real @aws-sdk/client-ecr, and AWS-style errors', async () => {
    const ecr = await startFakeEcr({ password: 'ecr-secret' });
    const bad = await startFakeEcr({ password: 'x', fail: true });
    try {
      const creds = {
        AWS_ACCESS_KEY_ID: 'AKIASANDBOX0000',
        AWS_SECRET_ACCESS_KEY: 'sandbox-secret',
        AWS_SESSION_TOKEN: undefined,
        AWS_PROFILE: undefined
      };
      const res = await withEnv({ ...creds, AWS_ENDPOINT_URL_ECR: ecr.url }, () =>
        new ECRClient({ region: 'us-east-1' }).send(new GetAuthorizationTokenCommand({}))
      );
      const data = res.authorizationData![0];
      expect(Buffer.from(data.authorizationToken!, 'base64').toString()).toBe('AWS:ecr-secret');
      expect(data.expiresAt).toBeInstanceOf(Date);
      expect(data.expiresAt!.getTime()).toBeGreaterThan(Date.now());
      expect(ecr.requests).toEqual([
        expect.objectContaining({
          target: 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken',
          region: 'us-east-1',
          accessKeyId: 'AKIASANDBOX0000'
        })
      ]);

      const err = await withEnv({ ...creds, AWS_ENDPOINT_URL_ECR: bad.url }, () =>
        new ECRClient({ region: 'eu-west-1' }).send(new GetAuthorizationTokenCommand({})).then(
          () => undefined,
          (e: Error) => e
        )
      );
      expect(err?.name).toBe('AccessDeniedException');
      expect(bad.requests[0]).toMatchObject({ region: 'eu-west-1' });
    } finally {
      await ecr.close();
      await bad.close();
    }
  });

  test('fake results service accepts a real @actions/artifact upload', async () => {
    const results = await startFakeResults();
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-artifact-'));
    fs.mkdirSync(path.join(root, 'logs'));
    fs.writeFileSync(path.join(root, 'logs', 'deploy.log'), 'line 1\nline 2\n');
    fs.writeFileSync(path.join(root, 'metrics.json'), '{"swapMs":12}');
    try {
      const res = await quietWorkflowCommands(() =>
        withEnv(
          {
            ACTIONS_RUNTIME_TOKEN: runtimeToken('run-1', 'job-2'),
            ACTIONS_RESULTS_URL: results.url,
            GITHUB_SERVER_URL: 'https://github.com',
            GITHUB_RETENTION_DAYS: undefined
          },
          async () => {
            const { DefaultArtifactClient } = await import('@actions/artifact');
            return new DefaultArtifactClient().uploadArtifact(
              'bluegreen-logs',
              [path.join(root, 'logs', 'deploy.log'), path.join(root, 'metrics.json')],
              root,
              { retentionDays: 30 }
            );
          }
        )
      );
      expect(res.id).toBe(1);
      expect(results.artifacts).toHaveLength(1);
      const a = results.artifacts[0];
      expect(a.name).toBe('bluegreen-logs');
      expect(a.workflowRunBackendId).toBe('run-1');
      expect(a.workflowJobRunBackendId).toBe('job-2');
      const days = (Date.parse(a.expiresAt!) - Date.now()) / 86400e3;
      expect(days).toBeGreaterThan(29);
      expect(days).toBeLessThan(31);
      expect(a.size).toBe(a.zip.length);
      expect(Object.keys(a.files).sort()).toEqual(['logs/deploy.log', 'metrics.json']);
      expect(a.files['logs/deploy.log'].toString()).toBe('line 1\nline 2\n');
      expect(a.files['metrics.json'].toString()).toBe('{"swapMs":12}');
      expect(results.requests.some((r) => r.includes('comp=blocklist'))).toBe(true);
    } finally {
      await results.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test('prepareApp + a container on the blue port serve v1 through nginx under load', async () => {
    const { docker, dir } = await dockerWithLogin();
    try {
      const url = await prepareApp(APP, { listenPort: LISTEN_PORT, bluePort: BLUE_PORT });
      expect(url).toBe(`http://127.0.0.1:${LISTEN_PORT}`);
      expect(fs.readFileSync(`/etc/nginx/bluegreen/${APP}.conf`, 'utf8')).toContain(`server 127.0.0.1:${BLUE_PORT};`);
      expect((await httpGet(url)).status).toBe(502); // nothing on the blue port yet

      await shOk(
        `${docker} run -d --name ${APP}-blue --label bluegreen.app=${APP} -p 127.0.0.1:${BLUE_PORT}:8080 ${SANDBOX.image}:v1`
      );
      await waitFor(async () => (await httpGet(url)).status === 200, { what: 'v1 through nginx' });
      expect(await httpGet(url)).toMatchObject({ status: 200, body: 'v1' });

      const ps = await dockerPs(APP);
      expect(ps).toHaveLength(1);
      expect(ps[0]).toMatchObject({ name: `${APP}-blue`, state: 'running', labels: { 'bluegreen.app': APP } });
      expect(ps[0].ports['8080/tcp']).toEqual([`127.0.0.1:${BLUE_PORT}`]);

      const load = new LoadGenerator(url, { concurrency: 4, keepAlive: 'mixed' }).start();
      await new Promise((r) => setTimeout(r, 1000));
      const r = await load.stop();
      expect(r.failed).toBe(0);
      expect(r.errors).toEqual([]);
      expect(r.ok).toBeGreaterThan(20);
      expect(r.bodies).toEqual({ v1: r.ok });
      expect(r.transitions).toEqual(['v1']);

      // failures are counted: stop the container -> 502s from nginx
      await shOk(`docker stop -t 1 ${APP}-blue`);
      const down = new LoadGenerator(url, { concurrency: 2, keepAlive: false }).start();
      await new Promise((r) => setTimeout(r, 200));
      const d = await down.stop();
      expect(d.ok).toBe(0);
      expect(d.failed).toBeGreaterThan(0);
      expect(d.errors[0]).toMatch(/^HTTP 502/);
    } finally {
      await cleanupApp(APP);
      await sh(`docker rmi ${SANDBOX.image}:v1`); // deploys must pull for real
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(await dockerPs(APP)).toEqual([]);
    expect(fs.existsSync(`/etc/nginx/bluegreen-sites/${APP}.conf`)).toBe(false);
  });

  test('runAction runs a script like a runner: inputs, outputs (both formats), summary, env', async () => {
    const script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bg-fake-action-')), 'action.mjs');
    fs.writeFileSync(
      script,
      `import fs from 'node:fs';
const e = process.env;
fs.appendFileSync(e.GITHUB_OUTPUT, 'simple=' + e['INPUT_SSH-PRIVATE-KEY'].length + '\\n');
fs.appendFileSync(e.GITHUB_OUTPUT, 'multi<<ghadelimiter_123\\nline a\\nline=b\\nghadelimiter_123\\n');
fs.appendFileSync(e.GITHUB_OUTPUT, 'version=' + process.version + '\\n');
fs.appendFileSync(e.GITHUB_STEP_SUMMARY, '## summary\\n');
fs.writeFileSync(e.RUNNER_TEMP + '/log.txt', 'x');
console.log(JSON.stringify({ env: Object.keys(e).filter((k) => k.startsWith('INPUT_')).sort(), app: e.INPUT_APP, sp: e['INPUT_WITH_SPACE'],
  repo: e.GITHUB_REPOSITORY, ci: e.CI, nodeOptions: e.NODE_OPTIONS ?? null, extra: e.EXTRA ?? null, cwd: process.cwd() }));
let stdin = ''; try { stdin = fs.readFileSync(0, 'utf8'); } catch (err) { stdin = 'ERR'; }
console.error('stdin=' + JSON.stringify(stdin));
process.exitCode = 3;
`
    );
    const r = await withEnv({ INPUT_LEAK: 'x' }, () =>
      runAction(
        { app: 'demo', 'ssh-private-key': SANDBOX.privateKey, 'with space': 'y' },
        { script, env: { EXTRA: 'e' } }
      )
    );
    expect(r.code).toBe(3);
    expect(r.outputs).toEqual({
      simple: String(SANDBOX.privateKey.length),
      multi: 'line a\nline=b',
      version: expect.stringMatching(/^v24\./)
    });
    expect(r.summary).toBe('## summary\n');
    expect(fs.readFileSync(path.join(r.runnerTemp, 'log.txt'), 'utf8')).toBe('x');
    const seen = JSON.parse(r.stdout);
    expect(seen).toMatchObject({
      env: ['INPUT_APP', 'INPUT_SSH-PRIVATE-KEY', 'INPUT_WITH_SPACE'],
      app: 'demo',
      sp: 'y',
      repo: 'org/app',
      ci: 'true',
      nodeOptions: null,
      extra: 'e'
    });
    expect(r.stderr).toContain('stdin=""');
    expect(parseCommandFile('a=1\nb<<EOF\nx\n\ny\nEOF\nc=d=e\n')).toEqual({ a: '1', b: 'x\n\ny', c: 'd=e' });
  });
});
