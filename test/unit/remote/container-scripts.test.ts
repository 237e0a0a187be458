/**
 * Container scripts run with the machine's sh against a stand-in docker: which containers detect (and status) reads
 * (the app's, by label or by the names the action uses, from one `docker ps`), what the undo of `start` does
 * when the candidate is gone or docker does not answer, and how the finishing job (nginx-switch njs) drains the old
 * colour by its connections before it stops it, and trims the history.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  CLOCK,
  connectionDrainLoop,
  detectScript,
  discardCandidateScript,
  finishScript
} from '../../../src/remote/scripts.js';

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
      '  stop) echo "$*" >> "$LOG" ;;',
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
  const ids = out
    .split('@@containers\n')[1]
    .split('@@upstream')[0]
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).id);
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
    for (const err of [
      'Error: No such object: shop-green',
      'Error response from daemon: No such container: shop-green',
      'Error: no such object: "shop-green"'
    ]) {
      expect(discard({ INSPECT_ERR: err })).toMatchObject({ code: 0, stdout: '', removed: false });
    }
  });

  test('docker not answering fails the undo with its words instead of passing for a clean host', () => {
    const r = discard({
      INSPECT_ERR: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?'
    });
    expect(r).toMatchObject({ code: 3, removed: false });
    expect(r.stderr).toContain('Cannot connect to the Docker daemon');
  });
});

describe('the finishing job, run in the run (wait-for-drain), nginx-switch njs', () => {
  const finish = async (port: number, drainMs: number) => {
    const home = fs.mkdtempSync(path.join(dir, 'home-'));
    fs.mkdirSync(path.join(home, '.bluegreen', 'shop'), { recursive: true });
    fs.writeFileSync(
      path.join(home, '.bluegreen', 'shop', 'history.jsonl'),
      ['{"n":1}', '{"n":2}', '{"n":3}'].join('\n') + '\n'
    );
    const log = path.join(home, 'docker.log');
    const s = finishScript([path.join(dir, 'docker')], 'shop', {
      drain: { lines: [CLOCK, ...connectionDrainLoop('$1', '$2')], words: String(port) },
      drainMs,
      stopName: 'shop-blue',
      stopTimeoutSeconds: 5,
      removeNames: [],
      removeImages: [],
      background: false,
      record: { historyLine: '{"n":4}', keep: 2 }
    });
    const child = spawn('sh', ['-c', s.body, 'sh', ...s.args], { cwd: home, env: { ...process.env, LOG: log } });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    return {
      code,
      stdout,
      docker: fs.readFileSync(log, 'utf8'),
      history: fs.readFileSync(path.join(home, '.bluegreen', 'shop', 'history.jsonl'), 'utf8')
    };
  };

  test('no connection to the old colour left: it is stopped at once; the history gets the line and keeps the last `keep`', async () => {
    const r = await finish(1, 60_000);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^@@recorded\n@@drained \d+\n@@stop\n@@stopped\n@@cleanup\n$/);
    expect(r.docker).toBe('stop -t 5 shop-blue\n');
    expect(r.history).toBe('{"n":3}\n{"n":4}\n');
  });

  test('a connection to the old colour still open: the job waits for it up to drain-seconds, says how many are left, then stops it', async () => {
    const server = net.createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect(port, '127.0.0.1');
    await new Promise((r) => client.once('connect', r));
    try {
      const t0 = Date.now();
      const r = await finish(port, 400);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
      expect(r.stdout).toContain('@@drain-timeout 1\n@@stop\n@@stopped\n');
      expect(r.docker).toBe('stop -t 5 shop-blue\n');
    } finally {
      client.destroy();
      server.close();
    }
  });
});
