import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS, InputError, parseEnv, parseHosts, readConfig } from '../../../src/config/inputs.js';
import { parseImage } from '../../../src/model/image.js';
import { readRunContext } from '../../../src/model/context.js';

const dir = mkdtempSync(join(tmpdir(), 'bg-unit-'));
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')]);
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'pw', '-f', join(dir, 'kp')]);
const KEY = readFileSync(join(dir, 'k'), 'utf8');
const ENC_KEY = readFileSync(join(dir, 'kp'), 'utf8');
rmSync(dir, { recursive: true });
const KNOWN = '10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICqzdPktL85becTIoxZNZYiLdHd20uc320Cl7GjZmET+';
const ctx = readRunContext({
  GITHUB_SHA: 'a'.repeat(40),
  GITHUB_RUN_ID: '7',
  GITHUB_REPOSITORY: 'o/r',
  GITHUB_JOB: 'deploy'
});

const base: Record<string, string> = {
  hosts: '10.0.0.5',
  'ssh-private-key': KEY,
  'ssh-known-hosts': KNOWN,
  'app-name': 'backend',
  image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend'
};
const reader = (inputs: Record<string, string>) => (name: string) => (inputs[name] ?? '').trim();
const config = (overrides: Record<string, string> = {}) => readConfig(reader({ ...base, ...overrides }), ctx, {});
function problems(overrides: Record<string, string>): string[] {
  try {
    config(overrides);
  } catch (e) {
    if (e instanceof InputError) return e.problems;
    throw e;
  }
  return [];
}

describe('readConfig', () => {
  test('the minimal documented inputs give the documented defaults', () => {
    const c = config();
    expect(c.hosts).toEqual([{ label: '10.0.0.5', host: '10.0.0.5', port: 22, user: 'ec2-user' }]);
    expect(c.image).toEqual({
      registry: '123456789012.dkr.ecr.us-east-1.amazonaws.com',
      repository: '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend',
      tag: 'a'.repeat(40),
      digest: undefined
    });
    expect(c.awsRegion).toBe('us-east-1');
    expect(c.registryAuth).toBe('ecr');
    expect(c.traffic).toBe('nginx');
    expect(c.ports).toEqual({ blue: 8081, green: 8082 });
    expect(c.nginxUpstreamFile).toBe('/etc/nginx/bluegreen/backend.conf');
    expect(c.nginxUpstreamName).toBe('backend');
    expect(c.artifactName).toBe('bluegreen-backend-deploy-1');
    expect(c.artifactRetentionDays).toBe(30);
    expect(c.healthTimeoutMs).toBe(60_000);
    expect(c.dockerCommand).toEqual(['docker']);
  });

  test('action.yml declares the same defaults the code applies', () => {
    const yml = readFileSync(new URL('../../../action.yml', import.meta.url), 'utf8');
    const declared: Record<string, string> = {};
    let current = '';
    for (const line of yml.split('\n')) {
      const name = /^ {2}([a-z0-9-]+):\s*$/.exec(line);
      if (name) current = name[1];
      const def = /^ {4}default:\s*(.*)$/.exec(line);
      if (def && current) declared[current] = def[1].replace(/^"(.*)"$/, '$1');
    }
    for (const [name, value] of Object.entries(DEFAULTS)) expect([name, declared[name]]).toEqual([name, value]);
  });

  test('several hosts, with users and ports, comma or newline separated', () => {
    const c = config({ hosts: 'a.example.com, deploy@10.0.0.6:2222\n[fd00::1]:2200\n', 'ssh-port': '22' });
    expect(c.hosts.map((h) => [h.label, h.user, h.port])).toEqual([
      ['a.example.com', 'ec2-user', 22],
      ['10.0.0.6:2222', 'deploy', 2222],
      ['[fd00::1]:2200', 'ec2-user', 2200]
    ]);
  });

  test('all problems are reported together, each naming the input and giving an example', () => {
    const p = problems({
      hosts: '',
      'app-name': 'a b',
      traffic: 'traefik',
      'health-timeout-seconds': '-1',
      'blue-port': '8082',
      'green-port': '8082'
    });
    expect(p).toEqual([
      expect.stringMatching(/^Input "hosts" is empty\. Example: hosts: /),
      expect.stringMatching(/^Input "app-name" "a b" may only hold .* Example: app-name: backend$/),
      expect.stringMatching(
        /^Input "health-timeout-seconds" must be a number from 1 to 3600 \(got "-1"\)\. Example: health-timeout-seconds: 60$/
      ),
      expect.stringMatching(
        /^Input "traffic" must be one of nginx, port-swap, haproxy, alb, caddy \(got "traefik"\)\. Example: traffic: nginx$/
      ),
      expect.stringMatching(/^Input "green-port" must differ from blue-port\./)
    ]);
  });

  test.each([
    ['hosts', 'a;b'],
    ['hosts', 'h:99999'],
    ['hosts', '-oProxyCommand=x'],
    ['ssh-user', 'root;id'],
    ['app-name', '../x'],
    ['app-name', '-x'],
    ['image', 'Repo/UPPER'],
    ['image', 'repo@sha256:xyz'],
    ['tag', '-v'],
    ['tag', 'a b'],
    ['tag', 'x'.repeat(129)],
    ['health-path', 'health'],
    ['health-path', '/a b'],
    ['nginx-upstream-file', 'relative.conf'],
    ['nginx-upstream-file', '/etc/nginx/$(id).conf'],
    ['nginx-upstream-name', 'a;b'],
    ['docker-command', '-H tcp://evil docker'],
    ['docker-command', 'docker $(id)'],
    ['docker-run-args', '-p 80:80'],
    ['docker-run-args', '--rm'],
    ['docker-run-args', '--publish=80:80'],
    ['docker-run-args', '-dit'],
    ['docker-run-args', '"unterminated'],
    ['ssh-host-fingerprint', 'MD5:aa:bb'],
    ['ssh-known-hosts', 'garbage'],
    ['registry-auth', 'basic'],
    ['aws-region', 'mars-1'],
    ['artifact-name', 'a/b'],
    ['artifact-retention-days', '91'],
    ['upload-artifacts', 'yes'],
    ['container-port', '0'],
    ['stop-timeout-seconds', '1.5'],
    ['command', 'destroy'],
    ['verify-seconds', '-1'],
    ['keep-images', 'all'],
    ['status-history', '1000'],
    ['health-host', 'a b'],
    ['nginx-health-url', 'https://127.0.0.1/health'],
    ['nginx-health-url', '127.0.0.1:80/health'],
    ['nginx-health-url', 'http://10.0.1.5/health'],
    ['nginx-health-url', 'http://user:pw@127.0.0.1/health'],
    ['nginx-health-url', 'not a url']
  ])('%s = %j is rejected with its name and an example', (name, value) => {
    const p = problems({ [name]: value });
    expect(p.length).toBeGreaterThan(0);
    expect(p[0]).toMatch(new RegExp(`^Input "${name.replace(/-/g, '\\-')}" .*Example: ${name}: `, 's'));
  });

  test("nginx-health-url: port on the host's loopback, path with query, Host header from the URL; only with traffic nginx", () => {
    expect(config({ 'nginx-health-url': 'http://127.0.0.1:8080/healthz?full=1' }).nginxHealthUrl).toEqual({
      url: 'http://127.0.0.1:8080/healthz?full=1',
      host: '127.0.0.1:8080',
      port: 8080,
      path: '/healthz?full=1'
    });
    expect(config({ 'nginx-health-url': 'http://api.example.com/health' }).nginxHealthUrl).toEqual({
      url: 'http://api.example.com/health',
      host: 'api.example.com',
      port: 80,
      path: '/health'
    });
    expect(config({ 'nginx-health-url': 'http://[::1]:81/' }).nginxHealthUrl).toMatchObject({ port: 81, path: '/' });
    expect(config().nginxHealthUrl).toBeUndefined();
    expect(problems({ 'nginx-health-url': 'http://10.0.1.5/health' })[0]).toBe(
      'Input "nginx-health-url" is probed on the host\'s loopback through the SSH connection, so its address must be 127.0.0.1 (or a name, sent as the Host header; got "10.0.1.5"). Example: nginx-health-url: http://127.0.0.1:80/health'
    );
    expect(problems({ 'nginx-health-url': 'http://127.0.0.1/health', traffic: 'port-swap' })[0]).toMatch(
      /^Input "nginx-health-url" only applies to traffic: nginx \(traffic is port-swap\)/
    );
  });

  test('rollback and status need no image; tag and rollback-to are checked against the command', () => {
    expect(problems({ command: 'rollback', image: '' })).toEqual([]);
    expect(config({ command: 'status', image: '' }).image.repository).toBe('');
    expect(config({ command: 'rollback', 'rollback-to': 'v1.2.3' }).rollbackTo).toBe('v1.2.3');
    expect(problems({ command: 'rollback', tag: 'v1' })[0]).toMatch(
      /^Input "tag" only applies to command: deploy; to roll back to a version use rollback-to\. Example: tag: rollback-to: v1\.4\.2$/
    );
    expect(problems({ 'rollback-to': 'v1' })[0]).toMatch(/^Input "rollback-to" only applies to command: rollback/);
    expect(problems({ command: 'rollback', 'rollback-to': 'v1;id' })[0]).toMatch(
      /^Input "rollback-to" "v1;id" is neither an image tag nor a sha256: digest/
    );
    // a plain rollback pulls nothing, so it needs no region even with registry-auth ecr
    expect(problems({ command: 'rollback', image: 'ghcr.io/org/app' })).toEqual([]);
  });

  test('a tag in the image and a tag input together are refused; a digest pins the image', () => {
    expect(problems({ image: 'r.example.com/app:v1', tag: 'v2' })[0]).toMatch(
      /^Input "tag" cannot be combined with an image that already names a tag/
    );
    const d = 'sha256:' + 'b'.repeat(64);
    expect(config({ image: `r.example.com/app@${d}`, 'registry-auth': 'none' }).image).toEqual({
      registry: 'r.example.com',
      repository: 'r.example.com/app',
      tag: undefined,
      digest: d
    });
  });

  test('ssh keys: garbage, a public key and a missing or wrong passphrase are named precisely', () => {
    expect(problems({ 'ssh-private-key': 'not a key' })[0]).toMatch(/^Input "ssh-private-key" is not a private key/);
    expect(problems({ 'ssh-private-key': ENC_KEY })[0]).toMatch(
      /^Input "ssh-passphrase" is required because ssh-private-key is encrypted/
    );
    expect(problems({ 'ssh-private-key': ENC_KEY, 'ssh-passphrase': 'wrong' })[0]).toMatch(
      /^Input "ssh-passphrase" does not decrypt ssh-private-key/
    );
    expect(problems({ 'ssh-private-key': ENC_KEY, 'ssh-passphrase': 'pw' })).toEqual([]);
    expect(config({ 'ssh-private-key': KEY.replace(/\n/g, '\\n') }).ssh.privateKey).toBe(KEY);
  });

  test('host-key verification is required unless explicitly disabled', () => {
    expect(problems({ 'ssh-known-hosts': '' })[0]).toMatch(
      /^Input "ssh-known-hosts" is required to verify the host key/
    );
    expect(
      problems({ 'ssh-known-hosts': '', 'ssh-host-fingerprint': 'SHA256:KrN0+S0vzlt5xMijFk1liIt3drrnN9tArexqNmZhNPw' })
    ).toEqual([]);
    expect(problems({ 'ssh-known-hosts': '', 'ssh-insecure-ignore-host-key': 'true' })).toEqual([]);
  });

  test('registry-auth password needs a user and a password; ecr needs a region', () => {
    expect(problems({ 'registry-auth': 'password' }).map((p) => p.split(' ')[1])).toEqual([
      '"registry-username"',
      '"registry-password"'
    ]);
    expect(problems({ image: 'ghcr.io/org/app' })[0]).toMatch(/^Input "aws-region" is required for registry-auth ecr/);
    expect(problems({ image: 'ghcr.io/org/app', 'registry-auth': 'none' })).toEqual([]);
  });

  test('nginx-switch: reload by default, njs on request, only with traffic: nginx', () => {
    expect(config().nginxSwitch).toBe('reload');
    expect(config({ 'nginx-switch': 'njs' }).nginxSwitch).toBe('njs');
    expect(problems({ 'nginx-switch': 'lua' })).toEqual([
      'Input "nginx-switch" must be one of reload, njs (got "lua"). Example: nginx-switch: reload'
    ]);
    expect(problems({ 'nginx-switch': 'njs', traffic: 'haproxy' })).toEqual([
      expect.stringMatching(
        /^Input "nginx-switch" only applies to traffic: nginx \(traffic is haproxy\)\. Example: nginx-switch: reload/
      )
    ]);
  });
});

describe('parseEnv', () => {
  test('KEY=VALUE lines; values are literal, may hold = and quotes; comments and blanks skipped', () => {
    expect(parseEnv('# c\nA=1\n\nB=x=y "z" $(id)\nC=').vars).toEqual([
      { key: 'A', value: '1' },
      { key: 'B', value: 'x=y "z" $(id)' },
      { key: 'C', value: '' }
    ]);
  });
  test('errors name the line and the key, never the value', () => {
    const { problems: p } = parseEnv('GOOD=1\nnovalue\n1BAD=secretvalue\nGOOD=2');
    expect(p).toEqual([
      'line 2 has no "=" (each line must be KEY=VALUE)',
      'line 3 has an invalid variable name "1BAD"',
      'line 4 sets GOOD a second time'
    ]);
    expect(p.join()).not.toContain('secretvalue');
  });
});

describe('parseHosts / parseImage', () => {
  test('duplicates are refused', () => {
    expect(parseHosts('a, a:22', 'u', 22).problems).toEqual(['"a:22" is listed twice']);
  });
  test.each([
    ['nginx', { registry: '', repository: 'nginx', tag: undefined, digest: undefined }],
    [
      'localhost:5000/a/b:1.0',
      { registry: 'localhost:5000', repository: 'localhost:5000/a/b', tag: '1.0', digest: undefined }
    ],
    ['org/app:v1', { registry: '', repository: 'org/app', tag: 'v1', digest: undefined }]
  ])('%s', (ref, parsed) => {
    expect(parseImage(ref)).toEqual(parsed);
  });
});

describe('fleet inputs', () => {
  test('defaults: parallel, all-or-nothing, two connect retries, no bastion', () => {
    const c = config({ hosts: '10.0.0.5, 10.0.0.6' });
    expect(c.rollout).toEqual({
      strategy: 'parallel',
      maxParallel: undefined,
      batchWaitMs: 0,
      onHostFailure: 'rollback-all'
    });
    expect(c.ssh.connectRetries).toBe(2);
    expect(c.ssh.jump).toBeUndefined();
  });

  test('rolling with a count or a percentage, canary, continue', () => {
    expect(config({ rollout: 'rolling', 'max-parallel': '2', 'batch-wait-seconds': '1.5' }).rollout).toEqual({
      strategy: 'rolling',
      maxParallel: { count: 2 },
      batchWaitMs: 1500,
      onHostFailure: 'rollback-all'
    });
    expect(config({ rollout: 'canary', 'max-parallel': '25%', 'on-host-failure': 'continue' }).rollout).toMatchObject({
      strategy: 'canary',
      maxParallel: { percent: 25 },
      onHostFailure: 'continue'
    });
  });

  test.each([
    [{ rollout: 'blue-green' }, 'rollout', 'parallel'],
    [{ 'max-parallel': '0' }, 'max-parallel', '25%'],
    [{ 'max-parallel': '150%' }, 'max-parallel', '25%'],
    [{ 'max-parallel': '2;reboot' }, 'max-parallel', '25%'],
    [{ 'batch-wait-seconds': '-1' }, 'batch-wait-seconds', 'batch-wait-seconds: 0'],
    [{ 'on-host-failure': 'ignore' }, 'on-host-failure', 'rollback-all'],
    [{ 'ssh-connect-retries': '99' }, 'ssh-connect-retries', 'ssh-connect-retries: 2'],
    [{ 'jump-host': 'bastion;id' }, 'jump-host', 'ec2-user@bastion.example.com'],
    [{ 'jump-host': 'a.example.com, b.example.com' }, 'jump-host', 'exactly one host'],
    [{ 'jump-private-key': KEY }, 'jump-private-key', 'only applies together with jump-host'],
    [
      { 'jump-host': 'bastion.example.com', 'jump-private-key': 'not a key' },
      'jump-private-key',
      'BEGIN OPENSSH PRIVATE KEY'
    ],
    [{ 'jump-host': 'bastion.example.com', 'jump-known-hosts': 'garbage' }, 'jump-known-hosts', 'ssh-keyscan'],
    [
      { 'smoke-test': 'curl -fsS "$BLUEGREEN_CANDIDATE_URL/"', traffic: 'port-swap' },
      'smoke-test',
      'needs traffic: nginx'
    ],
    [{ 'smoke-test-on': 'canary' }, 'smoke-test-on', 'all'],
    [{ 'smoke-test-timeout-seconds': '0' }, 'smoke-test-timeout-seconds', 'smoke-test-timeout-seconds: 120']
  ])('%j is refused naming the input with an example', (over, input, hint) => {
    const p = problems(over as Record<string, string>).join('\n');
    expect(p).toContain(`Input "${input}"`);
    expect(p).toContain(hint);
    expect(p).toContain('Example:');
  });

  test("jump-host: user and port, key and known hosts default to the hosts' ones", () => {
    const c = config({ 'jump-host': 'admin@bastion.example.com:2200' });
    expect(c.ssh.jump?.target).toMatchObject({ host: 'bastion.example.com', port: 2200, user: 'admin' });
    expect(c.ssh.jump?.privateKey).toBe(c.ssh.privateKey);
    expect(c.ssh.jump?.hostKeys.knownHosts).toBe(KNOWN);
    const own = config({
      'jump-host': 'bastion.example.com',
      'jump-private-key': ENC_KEY,
      'jump-passphrase': 'pw',
      'jump-known-hosts': KNOWN.replace('10.0.0.5', 'bastion.example.com')
    });
    expect(own.ssh.jump?.target).toMatchObject({ user: 'ec2-user', port: 22 });
    expect(own.ssh.jump?.passphrase).toBe('pw');
    expect(own.ssh.jump?.hostKeys.knownHosts).toContain('bastion.example.com');
    expect(problems({ 'jump-host': 'bastion.example.com', 'jump-private-key': ENC_KEY })).toEqual([
      expect.stringContaining('Input "jump-passphrase" is required because jump-private-key is encrypted')
    ]);
  });

  test('smoke-test: unset by default; the command, where and how long when set', () => {
    expect(config().smokeTest).toBeUndefined();
    expect(config({ 'smoke-test': 'npm run smoke' }).smokeTest).toEqual({
      command: 'npm run smoke',
      on: 'all',
      timeoutMs: 120_000
    });
    expect(
      config({ 'smoke-test': 'npm run smoke', 'smoke-test-on': 'first', 'smoke-test-timeout-seconds': '30' }).smokeTest
    ).toEqual({ command: 'npm run smoke', on: 'first', timeoutMs: 30_000 });
  });
});

describe('traffic caddy inputs', () => {
  test('defaults: the admin API on the loopback, the marker files under /var/lib/bluegreen/caddy', () => {
    const c = config({ traffic: 'caddy' });
    expect(c.traffic).toBe('caddy');
    expect(c.caddyAdminUrl).toBe('http://127.0.0.1:2019');
    expect(c.caddySwitchDir).toBe('/var/lib/bluegreen/caddy');
    expect(config({ traffic: 'caddy', 'caddy-admin-url': 'http://localhost:2020/' }).caddyAdminUrl).toBe(
      'http://localhost:2020'
    );
  });

  test.each([
    [
      'caddy-admin-url',
      'https://127.0.0.1:2019',
      /^Input "caddy-admin-url" must be an http:\/\/ URL .*loopback.* Example: caddy-admin-url: http:\/\/127\.0\.0\.1:2019$/
    ],
    ['caddy-admin-url', 'http://10.0.0.5:2019', /^Input "caddy-admin-url" .*loopback/],
    ['caddy-admin-url', 'http://127.0.0.1:2019/config', /^Input "caddy-admin-url" .*without a path/],
    [
      'caddy-switch-dir',
      'relative/dir',
      /^Input "caddy-switch-dir" must be an absolute directory path.* Example: caddy-switch-dir: \/var\/lib\/bluegreen\/caddy$/
    ],
    [
      'caddy-switch-dir',
      '/var/lib/../etc',
      /^Input "caddy-switch-dir" must be an absolute directory path.* Example: caddy-switch-dir: \/var\/lib\/bluegreen\/caddy$/
    ]
  ])('%s "%s" is refused, naming the input, with an example', (name, value, re) => {
    expect(problems({ traffic: 'caddy', [name]: value })).toEqual([expect.stringMatching(re)]);
  });
});
