/**
 * HAProxy's own view of the two servers, parsed from its runtime API: `show servers state <backend>` (admin and
 * operational state, check health counter) and `show stat <backend> 4 -1` (current sessions, check status). The
 * router decides everything from this view, never from what the runner believed.
 */
import type { Color } from '../../model/config.js';

/** Admin state as the action sets it: `ready` takes traffic, `drain` only finishes what it has, `maint` takes none. */
export type AdminState = 'ready' | 'drain' | 'maint';
/** Operational state: HAProxy's checks (or, without `check`, always up). */
export type OpState = 'down' | 'starting' | 'up' | 'stopping';

export interface ServerView {
  name: Color;
  /** HAProxy's numeric srv_admin_state (bit field): 0x01 forced maint, 0x02 inherited, 0x04 config (`disabled`), 0x08 forced drain, 0x10 inherited drain, 0x20 DNS maint, 0x40 hostname maint. */
  adminBits: number;
  admin: AdminState;
  op: OpState;
  address: string;
  port?: number;
  /** The check's health counter: the server is up at `rise`, fully up (a check passed since it left maint) at rise+fall-1. */
  checkHealth: number;
  /** From `show stat` (undefined when it was not read). */
  sessions?: number;
  queued?: number;
  /** `show stat` status column: UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/2" (going down), "no check", … */
  status?: string;
  /** L4OK, L7OK, L4CON, L7STS, … (empty without `check`). */
  checkStatus?: string;
  checkCode?: string;
  checkDesc?: string;
  rise?: number;
  fall?: number;
}

export interface BackendView {
  backend: string;
  servers: Partial<Record<Color, ServerView>>;
}

const MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40;
const DRAIN_BITS = 0x08 | 0x10;
const OP: Record<string, OpState> = { '0': 'down', '1': 'starting', '2': 'up', '3': 'stopping' };
const OK_CHECKS = new Set(['L4OK', 'L6OK', 'L7OK', 'L7OKC', 'PROCOK']);

/** What HAProxy answers instead of data when a command fails (unknown backend, permission, syntax). */
export class HaproxyAnswerError extends Error {}

function cliError(text: string): string | undefined {
  const t = text.trim();
  if (
    /^(Can't find backend|No such (backend|server)|Unknown command|Permission denied|Require '|'set server' |'show stat' |Failed|Invalid)/im.test(
      t
    )
  )
    return t.split('\n')[0];
  return undefined;
}

/**
 * Parses `show servers state [<backend>]` (format version 1: a "1" line, a "# be_id be_name srv_id srv_name …" header,
 * then one line per server) and `show stat` CSV ("# pxname,svname,…" header) of the backend into one view of the blue
 * and green servers. Columns are looked up by their header names, so added columns in newer versions do not matter.
 */
export function parseBackendView(backend: string, serversState: string, stat?: string): BackendView {
  const err = cliError(serversState) ?? (stat !== undefined ? cliError(stat) : undefined);
  if (err) throw new HaproxyAnswerError(err);
  const lines = serversState
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const header = lines.find((l) => l.startsWith('#') && /\bbe_name\b/.test(l) && /\bsrv_name\b/.test(l));
  if (!header)
    throw new HaproxyAnswerError(
      `unexpected answer to "show servers state" (no header line): ${serversState.trim().slice(0, 200) || '(empty)'}`
    );
  const cols = header.replace(/^#\s*/, '').split(/\s+/);
  const at = (name: string) => cols.indexOf(name);
  const servers: Partial<Record<Color, ServerView>> = {};
  for (const line of lines) {
    if (line.startsWith('#') || /^\d+$/.test(line)) continue;
    const f = line.split(/\s+/);
    if (f[at('be_name')] !== backend) continue;
    const name = f[at('srv_name')];
    if (name !== 'blue' && name !== 'green') continue;
    const bits = Number(f[at('srv_admin_state')]);
    const port = at('srv_port') >= 0 ? Number(f[at('srv_port')]) : NaN;
    servers[name] = {
      name,
      adminBits: bits,
      admin: bits & MAINT_BITS ? 'maint' : bits & DRAIN_BITS ? 'drain' : 'ready',
      op: OP[f[at('srv_op_state')]] ?? 'down',
      address: f[at('srv_addr')] ?? '',
      port: Number.isFinite(port) && port > 0 ? port : undefined,
      checkHealth: Number(f[at('srv_check_health')] ?? 0)
    };
  }
  if (stat !== undefined) {
    const rows = stat.split('\n').filter((l) => l.trim());
    const h = rows.find((l) => l.startsWith('# pxname'));
    if (!h)
      throw new HaproxyAnswerError(
        `unexpected answer to "show stat" (no header line): ${stat.trim().slice(0, 200) || '(empty)'}`
      );
    const sc = h.replace(/^#\s*/, '').split(',');
    const col = (row: string[], name: string) => {
      const i = sc.indexOf(name);
      return i >= 0 ? row[i] : undefined;
    };
    const num = (v: string | undefined) => (v === undefined || v === '' ? undefined : Number(v));
    for (const r of rows) {
      if (r.startsWith('#')) continue;
      const row = r.split(',');
      if (col(row, 'pxname') !== backend) continue;
      const s = servers[col(row, 'svname') as Color];
      if (!s) continue;
      s.sessions = num(col(row, 'scur'));
      s.queued = num(col(row, 'qcur'));
      s.status = col(row, 'status');
      s.checkStatus = (col(row, 'check_status') ?? '').replace(/^\* ?/, '') || undefined;
      s.checkCode = col(row, 'check_code') || undefined;
      s.checkDesc = col(row, 'check_desc') || undefined;
      s.rise = num(col(row, 'check_rise'));
      s.fall = num(col(row, 'check_fall'));
    }
  }
  return { backend, servers };
}

/** The colour HAProxy sends new requests to: the one server that is ready (not drain/maint) and up; else the only ready one. */
export function routedColor(view: BackendView | undefined): Color | undefined {
  if (!view) return undefined;
  const ready = (['blue', 'green'] as const).filter((c) => view.servers[c]?.admin === 'ready');
  if (ready.length === 1) return ready[0];
  const up = ready.filter((c) => view.servers[c]?.op === 'up');
  return up.length === 1 ? up[0] : undefined;
}

/** The colour from the raw `show servers state <backend>` text the detect step stores as the host's routing. */
export function routedColorOf(backend: string, serversState: string | undefined): Color | undefined {
  if (!serversState) return undefined;
  try {
    return routedColor(parseBackendView(backend, serversState));
  } catch {
    return undefined;
  }
}

/** The server has no `check` in HAProxy's config: it counts as up whatever the app answers. */
export function unchecked(s: ServerView): boolean {
  return s.status === 'no check';
}

/**
 * HAProxy itself found the server healthy since it left maint: up, its last check passed, and the health counter at
 * its top (HAProxy puts a server that leaves maint straight to "up" at `rise` without checking it; only a passing
 * check raises the counter to rise+fall-1).
 */
export function checkedHealthy(s: ServerView): boolean {
  if (s.op !== 'up') return false;
  if (unchecked(s)) return true;
  if (!s.checkStatus || !OK_CHECKS.has(s.checkStatus)) return false;
  if (s.rise !== undefined && s.fall !== undefined) return s.checkHealth >= s.rise + s.fall - 1;
  return true;
}

/** One line for logs and errors: "green: ready, up, 0 sessions, check L7OK (200)". */
export function describeServer(s: ServerView | undefined): string {
  if (!s) return 'missing';
  const check = s.checkStatus
    ? `check ${s.checkStatus}${s.checkCode ? ` (${s.checkCode})` : ''}${s.checkDesc && !/^OK$/i.test(s.checkDesc) ? ` ${s.checkDesc}` : ''}`
    : unchecked(s)
      ? 'no health check'
      : 'not checked yet';
  return `${s.name}: ${s.admin}, ${s.op}${s.sessions !== undefined ? `, ${s.sessions} session(s)` : ''}, ${check}`;
}

/** `show activity`'s `date_now: <seconds>.<microseconds>`: HAProxy's clock, in ms. */
export function parseActivityDates(text: string): number[] {
  return [...text.matchAll(/^date_now:\s*(\d+)\.(\d{1,6})/gm)].map(
    (m) => Number(m[1]) * 1000 + Number(m[2].padEnd(6, '0')) / 1000
  );
}
