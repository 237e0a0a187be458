/**
 * traffic: haproxy — the runtime-API command builders, the parser of `show servers state` / `show stat` (answers
 * captured from Debian's HAProxy 2.6), the inputs, and the router against a model of HAProxy's server states
 * (HAProxy's rule that a server leaving maint counts as up before any check included).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { readConfig } from '../../../../src/config/inputs.js';
import { readRunContext } from '../../../../src/model/context.js';
import type { Color, DeployConfig } from '../../../../src/model/config.js';
import type { Plan } from '../../../../src/model/host.js';
import { StepTimer } from '../../../../src/log/steps.js';
import { StepError } from '../../../../src/model/results.js';
import type { HostLog } from '../../../../src/log/log.js';
import type { ExecResult, RemoteHost } from '../../../../src/transport/remote-host.js';
import {
  commandLine,
  parseSocketDiagnosis,
  setStateCommand,
  showServersStateCommand,
  showStatCommand,
  socketClientScript,
  switchCommands,
  writeStateFileScript
} from '../../../../src/traffic/haproxy/commands.js';
import { HaproxyRouter } from '../../../../src/traffic/haproxy/router.js';
import { HaproxyRuntime } from '../../../../src/traffic/haproxy/runtime.js';
import {
  checkedHealthy,
  HaproxyAnswerError,
  parseActivityDates,
  parseBackendView,
  routedColor,
  routedColorOf
} from '../../../../src/traffic/haproxy/view.js';
import { routerFor } from '../../../../src/traffic/registry/index.js';
import type { RouterContext } from '../../../../src/traffic/router.js';
import { cutOver } from '../../../../src/deploy/cutover.js';

const B = 'e2e-hx-web';
const SS_HEADER =
  '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port';
const STAT_HEADER =
  '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo';

/** Captured from HAProxy 2.6.12: blue draining (admin 8), down; green in maint (admin 1). */
const SERVERS_STATE = [
  '1',
  SS_HEADER,
  `3 ${B} 1 blue 127.0.0.1 0 8 1 1 2 8 2 0 6 0 0 0 - 19611 - 0 0 - - 0`,
  `3 ${B} 2 green 127.0.0.1 0 1 1 1 637 8 2 0 14 0 0 0 - 19612 - 0 0 - - 0`,
  '',
  ''
].join('\n');
const STAT = [
  STAT_HEADER,
  `${B},blue,0,0,3,0,,0,0,0,,0,,0,0,0,0,DRAIN,1,1,0,1,1,3,3,,1,3,1,,0,,2,0,,0,L7OK,200,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,OK,,2,2,3,,,,127.0.0.1:19611,,http,`,
  `${B},green,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,1,1,638,638,,1,3,2,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,2,2,0,,,,127.0.0.1:19612,,http,`,
  '',
  ''
].join('\n');

describe('runtime API commands', () => {
  test('set server state: backend/server and one of ready, drain, maint', () => {
    expect(setStateCommand(B, 'green', 'ready')).toBe(`set server ${B}/green state ready`);
    expect(setStateCommand(B, 'blue', 'drain')).toBe(`set server ${B}/blue state drain`);
    expect(() => setStateCommand('a b', 'blue', 'ready')).toThrow(/backend/);
    expect(() => setStateCommand('x;shutdown', 'blue', 'ready')).toThrow(/backend/);
    expect(() => setStateCommand(B, 'red' as Color, 'ready')).toThrow(/server/);
    expect(() => setStateCommand(B, 'blue', 'down' as never)).toThrow(/state/);
  });

  test('show commands', () => {
    expect(showServersStateCommand()).toBe('show servers state');
    expect(showServersStateCommand(B)).toBe(`show servers state ${B}`);
    expect(showStatCommand(B)).toBe(`show stat ${B} 4 -1`);
  });

  test('one command line: commands joined by "; ", nothing that could start another command', () => {
    expect(commandLine(['show info', 'show stat'])).toBe('show info; show stat\n');
    expect(() => commandLine(['show info; shutdown sessions'])).toThrow();
    expect(() => commandLine(['show info\nshutdown frontend x'])).toThrow();
    expect(() => commandLine([''])).toThrow();
  });

  test('the switch: HAProxy clock, candidate ready before the old one drains, clock — one line', () => {
    expect(switchCommands(B, 'green', 'blue')).toEqual([
      'show activity',
      `set server ${B}/green state ready`,
      `set server ${B}/blue state drain`,
      'show activity'
    ]);
    expect(switchCommands(B, 'blue', undefined)).toEqual([
      'show activity',
      `set server ${B}/blue state ready`,
      'show activity'
    ]);
  });

  test('host-side scripts take their values as arguments, never in the shell text', () => {
    const w = writeStateFileScript('/var/lib/haproxy/server-state');
    expect(w.args).toEqual(['/var/lib/haproxy/server-state']);
    expect(w.body).not.toContain('/var/lib');
    const c = socketClientScript('/run/haproxy/admin.sock');
    expect(c.args).toEqual(['/run/haproxy/admin.sock']);
    expect(c.body).not.toContain('/run/haproxy');
  });

  test('socket diagnosis in words', () => {
    expect(parseSocketDiagnosis('@@socket missing\n', '/run/haproxy/admin.sock')).toMatch(
      /does not exist.*stats socket \/run\/haproxy\/admin.sock mode 660 level admin group/
    );
    expect(parseSocketDiagnosis('@@socket no-permission ec2-user ec2-user,docker root:haproxy 660\n', '/s')).toMatch(
      /ec2-user \(groups ec2-user,docker\) may not use the HAProxy socket \/s \(root:haproxy 660\)/
    );
    expect(parseSocketDiagnosis('@@socket ok\n', '/s')).toBeUndefined();
  });
});

describe('show servers state / show stat parser', () => {
  test('admin and operational state, check health, sessions and check status per colour', () => {
    const v = parseBackendView(B, SERVERS_STATE, STAT);
    expect(v.servers.blue).toMatchObject({
      admin: 'drain',
      adminBits: 8,
      op: 'down',
      port: 19611,
      checkHealth: 0,
      sessions: 3,
      queued: 0,
      status: 'DRAIN',
      checkStatus: 'L7OK',
      checkCode: '200',
      rise: 2,
      fall: 2
    });
    expect(v.servers.green).toMatchObject({
      admin: 'maint',
      adminBits: 1,
      op: 'down',
      port: 19612,
      sessions: 0,
      status: 'MAINT',
      checkStatus: undefined
    });
  });

  test('other backends and servers are ignored; columns are found by name', () => {
    const other = SERVERS_STATE.replace(`3 ${B} 1 blue`, `4 other 1 blue`);
    expect(parseBackendView(B, other).servers.blue).toBeUndefined();
    const reordered = [
      '1',
      '# be_name srv_name srv_op_state srv_admin_state srv_addr srv_check_health',
      `${B} green 2 0 127.0.0.1 3`,
      `${B} extra 2 0 127.0.0.1 3`
    ].join('\n');
    expect(parseBackendView(B, reordered).servers).toEqual({
      green: {
        name: 'green',
        adminBits: 0,
        admin: 'ready',
        op: 'up',
        address: '127.0.0.1',
        port: undefined,
        checkHealth: 3
      }
    });
  });

  test("HAProxy's error answers become errors, not empty views", () => {
    expect(() => parseBackendView('nope', "Can't find backend.\n\n")).toThrow(HaproxyAnswerError);
    expect(() => parseBackendView(B, 'Permission denied\n\n')).toThrow(/Permission denied/);
    expect(() => parseBackendView(B, '')).toThrow(/no header/);
  });

  test('routed colour: the one ready server (up if both are ready)', () => {
    const view = (blue: string, green: string) =>
      parseBackendView(
        B,
        [
          '1',
          SS_HEADER,
          `3 ${B} 1 blue 127.0.0.1 ${blue} 1 1 1 8 2 0 6 0 0 0 - 19611 - 0 0 - - 0`,
          `3 ${B} 2 green 127.0.0.1 ${green} 1 1 1 8 2 0 6 0 0 0 - 19612 - 0 0 - - 0`
        ].join('\n')
      );
    expect(routedColor(view('2 0', '0 1'))).toBe('blue');
    expect(routedColor(view('2 8', '2 0'))).toBe('green');
    expect(routedColor(view('2 0', '0 0'))).toBe('blue'); // both ready (fresh config), only blue up
    expect(routedColor(view('2 0', '2 0'))).toBeUndefined();
    expect(routedColor(view('2 1', '2 1'))).toBeUndefined();
    expect(routedColor(view('0 4', '2 0'))).toBe('green'); // blue "disabled" in the config
    expect(routedColorOf(B, undefined)).toBeUndefined();
    expect(routedColorOf(B, 'garbage')).toBeUndefined();
  });

  test('healthy as HAProxy sees it: up, last check passed, and a check passed since it left maint', () => {
    const s = {
      name: 'green' as const,
      adminBits: 8,
      admin: 'drain' as const,
      op: 'up' as const,
      address: '',
      checkHealth: 2,
      checkStatus: 'L7OK',
      rise: 2,
      fall: 2,
      status: 'DRAIN'
    };
    expect(checkedHealthy(s)).toBe(false); // just out of maint: HAProxy counts it up at `rise` without a check
    expect(checkedHealthy({ ...s, checkHealth: 3 })).toBe(true);
    expect(checkedHealthy({ ...s, checkHealth: 3, checkStatus: 'L7STS' })).toBe(false);
    expect(checkedHealthy({ ...s, checkHealth: 3, op: 'down' })).toBe(false);
    expect(
      checkedHealthy({
        ...s,
        checkHealth: 0,
        checkStatus: undefined,
        rise: undefined,
        fall: undefined,
        status: 'no check'
      })
    ).toBe(true);
  });

  test("show activity's date_now: HAProxy's clock in ms", () => {
    expect(
      parseActivityDates('thread_id: 1 (1..2)\ndate_now: 1796133442.945458\nctxsw: 1\n\ndate_now: 1796133442.947\n')
    ).toEqual([1796133442945.458, 1796133442947]);
  });
});

describe('inputs', () => {
  const ctx = readRunContext({
    GITHUB_SHA: 'a'.repeat(40),
    GITHUB_RUN_ID: '7',
    GITHUB_REPOSITORY: 'o/r',
    GITHUB_JOB: 'deploy'
  });
  const dir = mkdtempSync(join(tmpdir(), 'bg-unit-hx-'));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')]);
  const key = readFileSync(join(dir, 'k'), 'utf8');
  rmSync(dir, { recursive: true });
  const base: Record<string, string> = {
    hosts: '10.0.0.5',
    'ssh-private-key': key,
    'ssh-insecure-ignore-host-key': 'true',
    'app-name': 'shop',
    image: 'registry.example.com/shop',
    'registry-auth': 'none',
    traffic: 'haproxy'
  };
  const read = (o: Record<string, string>) => {
    try {
      return readConfig((n) => ({ ...base, ...o })[n]?.trim() ?? '', ctx, {});
    } catch (e) {
      return e as Error;
    }
  };

  test('traffic haproxy with its defaults (the backend is the app name)', () => {
    const c = read({});
    if (c instanceof Error) throw c;
    expect(c).toMatchObject({
      traffic: 'haproxy',
      haproxySocket: '/run/haproxy/admin.sock',
      haproxyBackend: 'shop',
      haproxyStateFile: '/var/lib/haproxy/server-state'
    });
    expect(read({ 'haproxy-backend': 'be_web:1' })).toMatchObject({ haproxyBackend: 'be_web:1' });
  });

  test('bad haproxy inputs are named', () => {
    const e = read({
      'haproxy-socket': 'run/admin.sock',
      'haproxy-backend': 'a b',
      'haproxy-state-file': '/var/lib/../x'
    }) as Error & { problems: string[] };
    expect(e.problems.some((p) => p.includes('"haproxy-socket"'))).toBe(true);
    expect(e.problems.some((p) => p.includes('"haproxy-backend"'))).toBe(true);
    expect(e.problems.some((p) => p.includes('"haproxy-state-file"'))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The router against a model of HAProxy
// ---------------------------------------------------------------------------------------------------------------

interface ModelServer {
  admin: 'ready' | 'drain' | 'maint';
  op: 0 | 2;
  health: number;
  /** what the app on the server's port answers HAProxy's check */
  appHealthy: boolean;
  sessions: number;
}

/** HAProxy's server states as the runtime API shows and changes them (rise 2, fall 2; a check runs on every read). */
class ModelHaproxy {
  servers: Record<Color, ModelServer> = {
    blue: { admin: 'ready', op: 2, health: 3, appHealthy: true, sessions: 0 },
    green: { admin: 'maint', op: 0, health: 0, appHealthy: false, sessions: 0 }
  };
  lines: string[] = [];
  /** sessions the draining server still has on the next reads */
  drainReads = 0;

  private check(): void {
    for (const s of Object.values(this.servers)) {
      if (s.admin === 'maint') continue;
      s.health = s.appHealthy ? 3 : 0;
      s.op = s.appHealthy ? 2 : 0;
    }
    if (this.drainReads > 0) this.drainReads--;
  }

  answer(line: string): string {
    this.lines.push(line.trim());
    const out: string[] = [];
    for (const cmd of line.trim().split('; ')) {
      const set = /^set server ([^/]+)\/(blue|green) state (ready|drain|maint)$/.exec(cmd);
      if (set) {
        const s = this.servers[set[2] as Color];
        if (s.admin === 'maint' && set[3] !== 'maint') {
          // HAProxy: a server leaving maint counts as up at `rise`, before any check
          s.op = 2;
          s.health = 2;
        }
        s.admin = set[3] as ModelServer['admin'];
        out.push('');
      } else if (cmd.startsWith('show servers state')) {
        this.check();
        const bits = (s: ModelServer) => (s.admin === 'maint' ? 1 : s.admin === 'drain' ? 8 : 0);
        out.push(
          [
            '1',
            SS_HEADER,
            ...(['blue', 'green'] as const).map(
              (c, i) =>
                `3 ${B} ${i + 1} ${c} 127.0.0.1 ${this.servers[c].op} ${bits(this.servers[c])} 1 1 0 15 3 ${this.servers[c].health} 6 0 0 0 - ${19611 + i} - 0 0 - - 0`
            ),
            ''
          ].join('\n')
        );
      } else if (cmd.startsWith('show stat')) {
        out.push(
          [
            STAT_HEADER,
            ...(['blue', 'green'] as const).map((c) => {
              const s = this.servers[c];
              const sessions = s.admin === 'drain' && this.drainReads > 0 ? 1 : 0;
              return `${B},${c},0,0,${sessions},0,,0,0,0,,0,,0,0,0,0,${s.admin === 'maint' ? 'MAINT' : s.op ? 'UP' : 'DOWN'},1,1,0,1,1,3,3,,1,3,1,,0,,2,0,,0,${s.admin === 'maint' ? '' : s.appHealthy ? 'L7OK' : 'L7STS'},200,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,OK,,2,2,${s.health},,,,127.0.0.1,,http,`;
            }),
            ''
          ].join('\n')
        );
      } else if (cmd === 'show activity') out.push('thread_id: 1 (1..1)\ndate_now: 1796133442.945458\n');
      else out.push('Unknown command.\n');
    }
    return out.join('\n');
  }
}

class ModelHost implements Partial<RemoteHost> {
  stateFileWrites: string[] = [];
  constructor(readonly hx: ModelHaproxy) {}
  forwardUnix(): Promise<NodeJS.ReadWriteStream & { destroy(): void }> {
    let line = '';
    const hx = this.hx;
    const d = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        line += chunk.toString();
        cb();
      },
      final(cb) {
        this.push(hx.answer(line));
        this.push(null);
        cb();
      }
    });
    return Promise.resolve(d as unknown as NodeJS.ReadWriteStream & { destroy(): void });
  }
  /** Only the state file's write runs a script here: its content (stdin) is kept. */
  async run(_body: string, _args: string[], o?: { stdin?: string }): Promise<ExecResult> {
    this.stateFileWrites.push(o?.stdin ?? '');
    return { code: 0, signal: null, stdout: '', stderr: '' };
  }
}

const log = { debug() {}, info() {}, warn() {}, error() {}, begin() {}, end() {} } as unknown as HostLog;

function routerHost(
  hx: ModelHaproxy,
  plan: Partial<Plan>,
  cfg: DeployConfig,
  ensureLock: () => Promise<void> = async () => undefined
) {
  const host = new ModelHost(hx);
  const calls: string[] = [];
  const h: RouterContext = {
    cfg,
    deployId: 'd1',
    plan: {
      candidate: 'green',
      live: 'blue',
      replaceExisting: false,
      byColor: {},
      leftovers: [],
      notes: [],
      ...plan
    } as Plan,
    log,
    imageLabel: 'r/app:v2',
    remote: host as unknown as RemoteHost,
    probe: async () => {
      calls.push('probeOnce');
    },
    warn: (m) => {
      calls.push(`warn ${m}`);
    }
  };
  /** The deploy's sequence (deploy/cutover.ts) around the router, its own steps recorded in `calls`. */
  const drive = (router: HaproxyRouter) =>
    cutOver({
      router,
      ctx: h,
      timer: new StepTimer(log),
      ensureLock,
      waitHealthy: async () => {
        calls.push('waitHealthy');
      },
      watch: async () => {
        calls.push('watch');
      },
      beforeTraffic: async () => {
        calls.push('beforeTraffic');
      },
      trafficMayMove: () => {
        calls.push('trafficMayHaveMoved');
      }
    });
  return { h, host, calls, drive };
}

describe('HaproxyRouter', () => {
  const cfg = {
    app: B,
    haproxyBackend: B,
    haproxySocket: '/run/haproxy/admin.sock',
    haproxyStateFile: '/var/lib/haproxy/server-state',
    ports: { blue: 19611, green: 19612 },
    containerPort: 8080,
    drainMs: 2000,
    healthTimeoutMs: 2000,
    traffic: 'haproxy'
  } as DeployConfig;
  const state = (hx: ModelHaproxy) => hx.answer(showServersStateCommand(B));

  test('is the router of traffic haproxy', () => {
    expect(routerFor(cfg)).toBeInstanceOf(HaproxyRouter);
  });

  test('switch: candidate checked by HAProxy in drain, then ready and old drain in one line, old drained into maint; state file after every change', async () => {
    const hx = new ModelHaproxy();
    hx.servers.green.appHealthy = true;
    hx.drainReads = 3;
    const { host, calls, drive } = routerHost(hx, {}, cfg);
    const r = await drive(new HaproxyRouter(cfg));
    expect(r).toMatchObject({ drained: true, cutoverMs: 0 });
    expect(hx.servers.green.admin).toBe('ready');
    expect(hx.servers.blue.admin).toBe('maint');
    const sets = hx.lines.filter((l) => l.includes('set server'));
    expect(sets).toEqual([
      `set server ${B}/green state maint; set server ${B}/green state drain`,
      `show activity; set server ${B}/green state ready; set server ${B}/blue state drain; show activity`,
      `set server ${B}/blue state maint`
    ]);
    expect(host.stateFileWrites).toHaveLength(3);
    expect(host.stateFileWrites[2]).toMatch(new RegExp(`^1\\n# be_id[^\\n]*\\n3 ${B} 1 blue 127.0.0.1 \\d 1 `));
    expect(calls.indexOf('trafficMayHaveMoved')).toBeGreaterThan(calls.indexOf('beforeTraffic'));
    expect(calls).toEqual(expect.arrayContaining(['waitHealthy', 'beforeTraffic', 'probeOnce', 'watch']));
  });

  test("HAProxy's check failing before the switch: nothing changes for traffic, the candidate is back in maint", async () => {
    const hx = new ModelHaproxy();
    hx.servers.green.appHealthy = false; // our probe passes (fake), HAProxy's check does not: e.g. a wrong port in haproxy.cfg
    const { calls, drive } = routerHost(hx, {}, { ...cfg, healthTimeoutMs: 300 });
    const e = await drive(new HaproxyRouter(cfg)).catch((x: Error) => x);
    expect(e).toBeInstanceOf(StepError);
    expect((e as StepError).step).toBe('health');
    expect((e as StepError).message).toMatch(/HAProxy's check of e2e-hx-web\/green did not pass/);
    expect(hx.servers.blue.admin).toBe('ready');
    expect(hx.servers.green.admin).toBe('maint');
    expect(calls).not.toContain('trafficMayHaveMoved');
  });

  test('the deploy lock lost to another deploy before the switch: HAProxy is left as that deploy has it (no maint, no state file)', async () => {
    const hx = new ModelHaproxy();
    hx.servers.green.appHealthy = true;
    const lost = async () => {
      throw new StepError('health', 'the deploy lock was taken over by deploy d9');
    };
    const { host, drive } = routerHost(hx, {}, cfg, lost);
    const e = await drive(new HaproxyRouter(cfg)).catch((x: Error) => x);
    expect((e as Error).message).toMatch(/taken over by deploy d9/);
    // only this run's own move into drain before the lock was found lost; nothing after it
    expect(hx.lines.filter((l) => l.includes('set server'))).toEqual([
      `set server ${B}/green state maint; set server ${B}/green state drain`
    ]);
    expect(host.stateFileWrites).toHaveLength(1);
  });

  test('switch back after the switch (old still in drain): old ready at once, candidate drained into maint', async () => {
    const hx = new ModelHaproxy();
    hx.servers.green = { admin: 'ready', op: 2, health: 3, appHealthy: true, sessions: 0 };
    hx.servers.blue.admin = 'drain';
    const { h } = routerHost(hx, {}, cfg);
    const { moved } = await new HaproxyRouter(cfg).switchBack(h, {
      containers: [],
      upstreamContent: state(hx),
      stateUnreadable: false
    });
    expect(moved).toBe(true);
    expect(hx.servers.blue.admin).toBe('ready');
    expect(hx.servers.green.admin).toBe('maint');
    expect(hx.lines.filter((l) => l.includes('set server'))).toEqual([
      `show activity; set server ${B}/blue state ready; set server ${B}/green state drain; show activity`,
      `set server ${B}/green state maint`
    ]);
  });

  test('switch back once the old colour is in maint: HAProxy checks it again before it takes traffic back', async () => {
    const hx = new ModelHaproxy();
    hx.servers.green = { admin: 'ready', op: 2, health: 3, appHealthy: true, sessions: 0 };
    hx.servers.blue = { admin: 'maint', op: 0, health: 0, appHealthy: true, sessions: 0 };
    const { h } = routerHost(hx, {}, cfg);
    expect(
      (
        await new HaproxyRouter(cfg).switchBack(h, {
          containers: [],
          upstreamContent: state(hx),
          stateUnreadable: false
        })
      ).moved
    ).toBe(true);
    const sets = hx.lines.filter((l) => l.includes('set server'));
    expect(sets[0]).toBe(`set server ${B}/blue state maint; set server ${B}/blue state drain`);
    expect(sets[1]).toContain(`set server ${B}/blue state ready; set server ${B}/green state drain`);
    expect(hx.servers.blue.admin).toBe('ready');
    expect(hx.servers.green.admin).toBe('maint');
  });

  test('switch back when HAProxy never took the switch: nothing to move back, only the candidate is discarded', async () => {
    const hx = new ModelHaproxy();
    const { h } = routerHost(hx, {}, cfg);
    expect(
      (
        await new HaproxyRouter(cfg).switchBack(h, {
          containers: [],
          upstreamContent: state(hx),
          stateUnreadable: false
        })
      ).moved
    ).toBe(false);
    expect(hx.lines.filter((l) => l.includes('set server'))).toEqual([]);
  });

  test('routedColor reads the server states the detect step stored', () => {
    const hx = new ModelHaproxy();
    expect(new HaproxyRouter(cfg).routedColor({ upstreamContent: state(hx) })).toBe('blue');
    hx.servers.green.admin = 'ready';
    hx.servers.green.appHealthy = true;
    hx.servers.blue.admin = 'maint';
    expect(new HaproxyRouter(cfg).routedColor({ upstreamContent: state(hx) })).toBe('green');
  });

  test('readRouting names a backend without blue and green servers', async () => {
    const hx = new ModelHaproxy();
    const host = new ModelHost(hx);
    hx.answer = () =>
      ['1', SS_HEADER, `3 ${B} 1 web1 127.0.0.1 2 0 1 1 0 15 3 3 6 0 0 0 - 80 - 0 0 - - 0`, ''].join('\n');
    await expect(new HaproxyRouter(cfg).readRouting(host as unknown as RemoteHost)).rejects.toThrow(
      /has no server named blue or green: its servers must be named blue and green/
    );
  });

  test('the host-side client is used when sshd refuses the stream-local forward (the socket itself is usable)', async () => {
    const runs: string[] = [];
    // OpenSSH answers "open failed" (reason 2) both when it refuses the forward and when the socket cannot be opened
    const remote = {
      forwardUnix: () =>
        Promise.reject(Object.assign(new Error('(SSH) Channel open failure: open failed'), { reason: 2 })),
      run: async (body: string, _args: string[], opts: { stdin?: string } = {}) => {
        if (body.includes('@@socket')) return { code: 0, signal: null, stdout: '@@socket ok\n', stderr: '' };
        runs.push(opts.stdin ?? '');
        return { code: 0, signal: null, stdout: 'answer\n', stderr: '' };
      }
    } as unknown as RemoteHost;
    const notes: string[] = [];
    const rt = new HaproxyRuntime(remote, '/run/haproxy/admin.sock', (m) => notes.push(m));
    expect((await rt.send('show info\n')).text).toBe('answer\n');
    expect((await rt.send('show stat\n')).text).toBe('answer\n');
    expect(runs).toEqual(['show info\n', 'show stat\n']);
    expect(notes).toEqual([expect.stringMatching(/sshd does not allow stream-local forwarding/)]);
    // a socket the SSH user cannot use: explained from the host, no fallback
    const missing = {
      ...remote,
      run: async () => ({ code: 0, signal: null, stdout: '@@socket missing\n', stderr: '' })
    } as unknown as RemoteHost;
    await expect(new HaproxyRuntime(missing, '/run/haproxy/admin.sock').send('show info\n')).rejects.toThrow(
      /admin socket \/run\/haproxy\/admin.sock does not exist on the host/
    );
    const none = {
      ...remote,
      run: async (body: string) =>
        body.includes('@@socket')
          ? { code: 0, signal: null, stdout: '@@socket ok\n', stderr: '' }
          : { code: 127, signal: null, stdout: '', stderr: '' }
    } as unknown as RemoteHost;
    await expect(new HaproxyRuntime(none, '/s').send('show info\n')).rejects.toThrow(
      /AllowStreamLocalForwarding.*socat/
    );
  });
});
