/**
 * The throwaway files that hold secrets on the host (registry login config, env file): what goes in the registry
 * config, and that the next script sweeps those of one killed hard (run with the machine's sh in a private TMPDIR).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dockerConfigJson, pullScript, secretTempLines, startScript } from '../../../src/remote/scripts.js';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'secret-temp-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A pid that surely runs no process now: a child that has exited. */
function deadPid(): number {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(r.stdout.toString().trim());
}
function sh(body: string): string {
  const r = spawnSync('sh', ['-c', body, 'sh'], { env: { ...process.env, TMPDIR: tmp } });
  expect(r.status).toBe(0);
  return r.stdout.toString().trim();
}

test.each([
  ['bluegreen-login', 'dir'],
  ['bluegreen-env', 'file']
] as const)(
  '%s (%s): a dead script’s leftovers go, a live one’s and foreign ones stay, the new one is private',
  (prefix, kind) => {
    const dead = path.join(tmp, `${prefix}.${deadPid()}.aaaaaa`);
    const live = path.join(tmp, `${prefix}.${process.pid}.bbbbbb`);
    const oldStyle = path.join(tmp, `${prefix}.cccccc`);
    const other = path.join(tmp, `${prefix}-other.${deadPid()}.dddddd`);
    for (const p of [dead, live, oldStyle, other]) fs.mkdirSync(p);
    fs.writeFileSync(path.join(dead, 'config.json'), '{"auths":{}}');
    const made = sh([...secretTempLines(prefix, kind), 'echo "$secret_tmp"'].join('\n'));
    expect(fs.existsSync(dead)).toBe(false);
    for (const p of [live, oldStyle, other]) expect(fs.existsSync(p)).toBe(true);
    expect(path.basename(made)).toMatch(new RegExp(`^${prefix}\\.\\d+\\.\\w{6}$`));
    const st = fs.statSync(made);
    expect(kind === 'dir' ? st.isDirectory() : st.isFile()).toBe(true);
    expect(st.mode & 0o077).toBe(0);
  }
);

const asRoot = process.getuid?.() === 0 ? test : test.skip;
asRoot("another user's leftovers are not touched", () => {
  const theirs = path.join(tmp, `bluegreen-login.${deadPid()}.eeeeee`);
  fs.mkdirSync(theirs);
  fs.chownSync(theirs, 65534, 65534);
  fs.chmodSync(tmp, 0o777); // not sticky: only -O keeps the sweep from removing it
  const r = spawnSync(
    'setpriv',
    [
      '--reuid=1000',
      '--regid=1000',
      '--clear-groups',
      'sh',
      '-c',
      [...secretTempLines('bluegreen-login', 'dir'), 'echo "$secret_tmp"'].join('\n')
    ],
    { env: { ...process.env, TMPDIR: tmp } }
  );
  expect(r.status).toBe(0);
  expect(fs.existsSync(theirs)).toBe(true);
});

test('the login and start scripts make their secret files through the sweep', () => {
  expect(
    pullScript(['docker'], 'r/a:1', { kind: 'password', registry: 'r', username: 'u', password: 'p' }).body
  ).toContain(secretTempLines('bluegreen-login', 'dir').join('\n'));
  expect(startScript(['docker'], 'run', 'a-blue', false, 'K=V', ['img']).body).toContain(
    secretTempLines('bluegreen-env', 'file').join('\n')
  );
});

describe('the registry config.json sent on stdin', () => {
  test.each([
    ['127.0.0.1:5000', '127.0.0.1:5000'],
    ['123456789012.dkr.ecr.eu-west-1.amazonaws.com', '123456789012.dkr.ecr.eu-west-1.amazonaws.com'],
    ['ghcr.io', 'ghcr.io'],
    // Docker Hub: docker looks its credentials up under the v1 index URL, whatever the image's spelling
    ['', 'https://index.docker.io/v1/'],
    ['docker.io', 'https://index.docker.io/v1/'],
    ['index.docker.io', 'https://index.docker.io/v1/'],
    ['registry-1.docker.io', 'https://index.docker.io/v1/']
  ])('registry %j is filed under %j, the auth being base64 of user:password', (registry, key) => {
    const cfg = JSON.parse(dockerConfigJson(registry, 'AWS', 'p:ss"wörd'));
    expect(Object.keys(cfg.auths)).toEqual([key]);
    expect(Buffer.from(cfg.auths[key].auth, 'base64').toString()).toBe('AWS:p:ss"wörd');
  });

  test('the password is on stdin, never in the arguments or the script', () => {
    const s = pullScript(['docker'], 'ghcr.io/o/a:1', {
      kind: 'password',
      registry: 'ghcr.io',
      username: 'me',
      password: 'hunter2-secret'
    });
    expect(s.stdin).toContain(Buffer.from('me:hunter2-secret').toString('base64'));
    expect(`${s.body} ${s.args.join(' ')}`).not.toMatch(/hunter2|bWU6aHVudGVy/);
  });
});
