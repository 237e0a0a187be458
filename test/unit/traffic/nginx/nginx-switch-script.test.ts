/**
 * The nginx switch script (writeUpstreamScript) run with the machine's sh against stand-in processes titled as nginx
 * titles them, read from the real /proc: a master that replaces its workers on SIGHUP (a reload), another master
 * whose workers never change (another site's nginx) and, as root, a master in another PID namespace (a container)
 * that replaces its workers all the time. busybox picks its applet from argv[0]'s basename, so
 * "nginx: worker process/sleep" runs sleep under an nginx-like title.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { connectionDrainScript, type RemoteScript } from '../../../../src/remote/scripts.js';
import { nginxDrainScript, writeUpstreamScript } from '../../../../src/traffic/nginx/scripts.js';
import { parseSwitchOutput } from '../../../../src/traffic/nginx/switch-output.js';

const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));
const isRoot = process.getuid?.() === 0;
const hasUnshare = ['/usr/bin/unshare', '/bin/unshare'].some((p) => fs.existsSync(p));
const maybe = BUSYBOX && process.platform === 'linux' ? describe : describe.skip;

const WORKER = 'exec -a "nginx: worker process/sleep" sleep 600 &';
/** On HUP: two new workers, then the old ones go (a reload). */
const RELOADING = `w=""; spawn() { ${WORKER} w="$w $!"; }; spawn; spawn; trap 'old=$w; w=""; spawn; spawn; kill $old' HUP; trap 'kill $w; exit 0' TERM; while :; do wait; done`;
/** Never changes its workers. */
const STEADY = `${WORKER} a=$!; ${WORKER} b=$!; trap 'kill $a $b; exit 0' TERM; while :; do wait; done`;
/** Replaces its worker every 50 ms, whatever happens. */
const CHURNING = `old=""; trap 'kill $old; exit 0' TERM; while :; do ${WORKER} n=$!; [ -n "$old" ] && kill $old; old=$n; sleep 0.05; done`;

const procs: ChildProcess[] = [];
let dir: string;

function master(script: string, ns = false): ChildProcess {
  const inner = [
    BUSYBOX!,
    'sh',
    '-c',
    `exec -a "nginx: master process/sh" ${BUSYBOX} -c '${script.replace(/'/g, `'\\''`)}'`
  ];
  const argv = ns ? ['unshare', '--pid', '--fork', ...inner] : inner;
  const p = spawn(argv[0], argv.slice(1), { stdio: 'ignore', detached: true });
  procs.push(p);
  return p;
}

/** The pid of the process titled "nginx: master process" in the tree started as `p`. */
async function masterPid(p: ChildProcess): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const ids = [
      p.pid!,
      ...(fs.existsSync(`/proc/${p.pid}/task/${p.pid}/children`)
        ? fs
            .readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, 'utf8')
            .trim()
            .split(/\s+/)
            .filter(Boolean)
            .map(Number)
        : [])
    ];
    for (const id of ids) {
      const title = fs.readFileSync(`/proc/${id}/cmdline`, 'utf8').split('\0')[0];
      const kids = fs.existsSync(`/proc/${id}/task/${id}/children`)
        ? fs.readFileSync(`/proc/${id}/task/${id}/children`, 'utf8').trim()
        : '';
      if (title.startsWith('nginx: master process') && kids) return id;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('the stand-in nginx master did not start');
}

function run(s: RemoteScript): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('sh', ['-c', s.body, 'sh', ...s.args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.stdin.end(s.stdin ?? '');
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const kidsOf = (pid: number) =>
  fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);

maybe('nginx switch script against stand-in nginx processes', () => {
  let reloading: number;
  let steady: number;
  let foreign: number | undefined;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-switch-'));
    reloading = await masterPid(master(RELOADING));
    steady = await masterPid(master(STEADY));
    if (isRoot && hasUnshare) foreign = await masterPid(master(CHURNING, true));
  });
  afterAll(() => {
    for (const p of procs) {
      try {
        process.kill(-p.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the master that reloaded is reported with its old workers; the other masters do not matter', async () => {
    const file = path.join(dir, 'up.conf');
    const old = kidsOf(reloading);
    const content = 'upstream x { server 127.0.0.1:1; }\n';
    const s = writeUpstreamScript(file, `kill -HUP ${reloading}`, { takeoverMs: 10_000, content });
    const r = await run(s);
    expect(r.code).toBe(0);
    const out = parseSwitchOutput(r.stdout);
    expect(out.outcome).toBe('taken-over');
    expect(out.reloadedMasters).toEqual([String(reloading)]);
    expect(out.oldWorkers.sort()).toEqual(old.sort());
    expect(out.masters).toEqual(expect.arrayContaining([String(reloading), String(steady)]));
    if (foreign) expect(out.masters).not.toContain(String(foreign));
    expect(out.workersBefore).toEqual(expect.arrayContaining([...old, ...kidsOf(steady)]));
    expect(fs.readFileSync(file, 'utf8')).toBe(content);
  });

  test('another nginx caught halfway through its own reload when the script looks (one new worker listed as before, still accepting) does not hold up the one that reloads', async () => {
    // Seen on hosts sharing a PID namespace, two reloading at once: the other master's first new worker is in
    // `before`, keeps accepting for good, and its reload would never look finished.
    const halfway = await masterPid(
      master(
        `${WORKER} a=$!; ${WORKER} b=$!; ${WORKER} sleep 0.4; ${WORKER} kill $a $b; trap 'exit 0' TERM; while :; do wait; done`
      )
    );
    const old = kidsOf(reloading);
    const s = writeUpstreamScript(path.join(dir, 'up-halfway.conf'), `sleep 0.8; kill -HUP ${reloading}`, {
      takeoverMs: 5000,
      content: 'x\n'
    });
    const r = await run(s);
    const out = parseSwitchOutput(r.stdout);
    expect(out.outcome).toBe('taken-over');
    expect(out.reloadedMasters).toEqual([String(reloading)]);
    expect(out.oldWorkers.sort()).toEqual(old.sort());
    expect(out.masters).toContain(String(halfway));
  });

  test('a reload command that reloads nothing: no takeover, even while a container nginx replaces its workers', async () => {
    // the content as an argument (how the switch passes it: no stdin round trip)
    const content = "upstream x { server 127.0.0.1:2; }\n# Live: green (it's v2 $HOME `x`)\n";
    const s = writeUpstreamScript(path.join(dir, 'up2.conf'), 'true', { takeoverMs: 1500, content });
    const r = await run(s);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'up2.conf'), 'utf8')).toBe(content);
    const out = parseSwitchOutput(r.stdout);
    expect(out).toMatchObject({ reloaded: true, outcome: 'no-takeover' });
    if (foreign) expect(out.foreignMasters).toContain(String(foreign));
  });

  test('a master that starts a new worker while its old one keeps accepting is no takeover: the switch gives up at takeoverMs', async () => {
    // (a round counter of the wait loop once shared its name with the new worker's pid: the deadline was then checked
    // only when that pid happened to end in 0, and the switch never gave up)
    const stuck = await masterPid(
      master(`${WORKER} a=$!; sleep 0.3; ${WORKER} b=$!; trap 'exit 0' TERM; while :; do wait; done`)
    );
    const t0 = Date.now();
    const r = await run(
      writeUpstreamScript(path.join(dir, 'up-stuck.conf'), 'true', { takeoverMs: 1500, content: 'x\n' })
    );
    const out = parseSwitchOutput(r.stdout);
    expect(out).toMatchObject({ reloaded: true, outcome: 'no-takeover' });
    expect(out.masters).toContain(String(stuck));
    expect(kidsOf(stuck)).toHaveLength(2);
    expect(Date.now() - t0).toBeLessThan(5000);
  }, 10_000);

  test('a failed reload restores the previous file and says so', async () => {
    const file = path.join(dir, 'up3.conf');
    fs.writeFileSync(file, 'previous\n');
    const s = writeUpstreamScript(file, 'echo "nginx: [emerg] bad" >&2; exit 1', {
      takeoverMs: 1000,
      content: 'next\n'
    });
    const r = await run(s);
    expect(r.code).toBe(4);
    expect(parseSwitchOutput(r.stdout)).toMatchObject({ reloaded: false, reloadExitCode: 1, outcome: undefined });
    expect(r.stdout).toContain('nginx: [emerg] bad');
    expect(fs.readFileSync(file, 'utf8')).toBe('previous\n');
  });

  test('the drain waits for listed workers shutting down, not for ones that still accept, and gives up at its deadline', async () => {
    const r1 = await run(nginxDrainScript(['999999999', ...kidsOf(steady)], 5000));
    expect(r1.stdout.trim()).toBe('@@drained');
    const quitting = spawn(BUSYBOX!, ['sh', '-c', 'exec -a "nginx: worker process is shutting down/sleep" sleep 600'], {
      stdio: 'ignore',
      detached: true
    });
    procs.push(quitting);
    await new Promise((r) => setTimeout(r, 200));
    const r2 = await run(nginxDrainScript([...kidsOf(steady), String(quitting.pid)], 300));
    expect(r2.stdout.trim()).toBe(`@@drain-timeout ${quitting.pid}`);
  });
});

(process.platform === 'linux' ? describe : describe.skip)('connection drain (nginx-switch: njs)', () => {
  test('waits while a connection to the port is open, and ends once it is closed', async () => {
    const server = net.createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const c = net.connect(port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    try {
      const open = await run(connectionDrainScript(port, 300));
      expect(open.stdout.trim()).toBe('@@drain-timeout 1');
      const closing = run(connectionDrainScript(port, 10_000));
      setTimeout(() => c.destroy(), 300);
      expect((await closing).stdout.trim()).toMatch(/^@@drained \d+$/);
    } finally {
      c.destroy();
      server.close();
    }
  });
});
