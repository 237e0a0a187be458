/**
 * Container scripts run with the machine's sh against a stand-in docker: which containers detect (and status) reads
 * (the app's, by label or by the names the action uses, from one `docker ps`), and what the undo of `start` does
 * when the candidate is gone or docker does not answer.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { detectScript, discardCandidateScript } from '../../src/remote/scripts.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'detect-script-'));
  // `docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.Label "bluegreen.app"}}'`, then `docker inspect ID...`
  fs.writeFileSync(
    path.join(dir, 'docker'),
    [
      '#!/bin/sh',
      'case "$1" in',
      '  ps) [ -n "$FAIL" ] && { echo "Cannot connect to the Docker daemon" >&2; exit 1; }',
      "      printf '%s\\n' 'id1 shop-blue shop' 'id2 shop-green-replaced shop' 'id3 shop-green' 'id4 shopx-blue shopx' 'id5 web-1 ' 'id6 old-shop-blue shop' 'id7 shop-blue-x' ;;",
      '  inspect) [ -n "$INSPECT_ERR" ] && { echo "$INSPECT_ERR" >&2; exit 1; }',
      '           shift 3; for i in "$@"; do echo "{\\"id\\":\\"$i\\"}"; done ;;',
      '  rm) echo "rm $*" >> "$LOG" ;;',
      'esac'
    ].join('\n'),
    { mode: 0o755 }
  );
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(env: Record<string, string> = {}) {
  const s = detectScript([path.join(dir, 'docker')], 'shop', '');
  return spawnSync('sh', ['-c', s.body, 'sh', ...s.args], { cwd: dir, env: { ...process.env, ...env } });
}

test('by the app label or by the name <app>-blue / <app>-green, nothing else', () => {
  const r = run();
  expect(r.status).toBe(0);
  const out = r.stdout.toString();
  const ids = out.split('@@containers\n')[1].split('@@upstream')[0].trim().split('\n').map((l) => JSON.parse(l).id);
  // id3 has no label (made by hand or by an old version) but the name; id6's label says shop; id4/id5/id7 are others'
  expect(ids).toEqual(['id1', 'id2', 'id3', 'id6']);
});

test('docker not answering fails the script (exit 3), it does not look like a host without containers', () => {
  const r = run({ FAIL: '1' });
  expect(r.status).toBe(3);
  expect(r.stdout.toString()).not.toContain('@@containers');
});

describe('discarding a failed candidate', () => {
  const discard = (env: Record<string, string>) => {
    const s = discardCandidateScript([path.join(dir, 'docker')], 'shop-green', 'deploy-1');
    const log = path.join(dir, `rm-${Math.random()}.log`);
    const r = spawnSync('sh', ['-c', s.body, 'sh', ...s.args], { env: { ...process.env, LOG: log, ...env } });
    return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString(), removed: fs.existsSync(log) };
  };

  test('a candidate that is not there (any docker spelling of it) is nothing to do', () => {
    for (const err of ['Error: No such object: shop-green', 'Error response from daemon: No such container: shop-green', 'Error: no such object: "shop-green"']) {
      expect(discard({ INSPECT_ERR: err })).toMatchObject({ code: 0, stdout: '', removed: false });
    }
  });

  test('docker not answering fails the undo with its words instead of passing for a clean host', () => {
    const r = discard({ INSPECT_ERR: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' });
    expect(r).toMatchObject({ code: 3, removed: false });
    expect(r.stderr).toContain('Cannot connect to the Docker daemon');
  });
});
