/** `command: status`: what runs where on one host, read-only, plus findings a person should act on. */
import type { Color, DeployConfig } from '../model/config.js';
import { Prober } from '../probe/health.js';
import { containerName, liveColor } from '../model/host.js';
import { statusScript } from '../remote/scripts.js';
import type { HostLog } from '../log/log.js';
import type { RemoteHost } from '../transport/remote-host.js';
import type { Router } from '../traffic/router.js';
import type { ColorStatus, Finding, HostStatus } from '../model/status.js';

interface RawContainer {
  id: string;
  name: string;
  state: string;
  running: boolean;
  restarts: number;
  exitCode: number;
  startedAt: string;
  finishedAt: string;
  labels: Record<string, string> | null;
}

function sections(out: string): Record<string, string> {
  const res: Record<string, string> = {};
  const re = /^@@(containers|stats|upstream|history|state|lock|disk|logs)$/gm;
  const marks = [...out.matchAll(re)];
  marks.forEach((m, i) => {
    const start = m.index! + m[0].length + 1;
    const end = i + 1 < marks.length ? marks[i + 1].index! : out.length;
    res[m[1]] = out.slice(start, end).replace(/\n$/, '');
  });
  return res;
}

function jsonLines<T>(text: string | undefined): T[] {
  return (text ?? '')
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as T];
      } catch {
        return [];
      }
    });
}

export async function readHostStatus(
  cfg: DeployConfig,
  router: Pick<Router, 'routingFile' | 'routedColor' | 'routedPort' | 'probePort'>,
  remote: RemoteHost,
  log: HostLog,
  now = Date.now()
): Promise<HostStatus> {
  const s = statusScript(cfg.dockerCommand, cfg.app, router.routingFile(), cfg.statusHistory, cfg.statusLogLines);
  log.debug('$ read containers, stats, upstream, history, lock and disk');
  const res = await remote.run(s.body, s.args);
  if (res.code !== 0)
    throw new Error(
      `reading the host's state failed (exit ${res.code}): ${(res.stderr || res.stdout).trim().split('\n').slice(-5).join('\n')}`
    );
  const sec = sections(res.stdout);
  const containers = jsonLines<RawContainer>(sec.containers);
  const stats = jsonLines<{ ID: string; Name: string; CPUPerc: string; MemUsage: string; MemPerc: string }>(sec.stats);

  const upstreamText = sec.upstream?.trim() === '@@none' ? undefined : sec.upstream;
  const port = router.routedPort?.(upstreamText);
  const upstreamColor = router.routedColor({ upstreamContent: upstreamText });
  let recordedLive: Color | undefined;
  try {
    const st = sec.state?.trim() === '@@none' ? {} : (JSON.parse(sec.state ?? '{}') as { live?: Color });
    recordedLive = st.live;
  } catch {
    /* an unreadable state file is reported below via live detection */
  }

  const colors = {} as Record<Color, ColorStatus>;
  for (const color of ['blue', 'green'] as const) {
    const c = containers.find((x) => x.name.replace(/^\//, '') === containerName(cfg.app, color));
    if (!c) {
      colors[color] = { exists: false, role: 'none' };
      continue;
    }
    const st = stats.find((x) => c.id.startsWith(x.ID) || x.Name === containerName(cfg.app, color));
    const labels = c.labels ?? {};
    colors[color] = {
      exists: true,
      container: containerName(cfg.app, color),
      state: c.state,
      role: 'none',
      image: labels['bluegreen.image'],
      digest: labels['bluegreen.digest'],
      deployId: labels['bluegreen.deploy-id'],
      deployedAt: labels['bluegreen.deployed-at'],
      runUrl: labels['bluegreen.run-url'],
      actor: labels['bluegreen.actor'],
      startedAt: c.running ? c.startedAt : undefined,
      uptimeSeconds: c.running ? Math.max(0, Math.round((now - Date.parse(c.startedAt)) / 1000)) : undefined,
      restartCount: c.restarts,
      exitCode: c.running ? undefined : c.exitCode,
      cpuPercent: st?.CPUPerc,
      memUsage: st?.MemUsage,
      memPercent: st?.MemPerc
    };
  }
  const running = (['blue', 'green'] as const).filter((c) => colors[c].state === 'running');
  const live = liveColor(running, upstreamColor, recordedLive);
  for (const c of ['blue', 'green'] as const) if (colors[c].exists) colors[c].role = c === live ? 'live' : 'standby';

  // Live probes: the same HTTP GET the deploy uses, through the SSH connection.
  const prober = new Prober(remote, log, cfg.healthHost);
  for (const c of running) {
    const probePort = router.probePort(c);
    // Both colours answer on one port (port-swap): only the live one can be probed.
    if (probePort === router.probePort(c === 'blue' ? 'green' : 'blue') && c !== live) continue;
    const p = await prober.probe(probePort, cfg.healthPath, 5000);
    colors[c].health = {
      ok: p.status !== undefined && p.status >= 200 && p.status < 300,
      status: p.status,
      error: p.error
    };
  }

  if (cfg.statusLogLines > 0 && sec.logs) {
    for (const part of sec.logs.split(/^@@log /m).filter(Boolean)) {
      const [first, ...rest] = part.split('\n');
      const c = first.trim() as Color;
      if ((c === 'blue' || c === 'green') && colors[c].exists) colors[c].logs = rest.join('\n').trim();
    }
  }

  const lock = parseLockSection(sec.lock ?? '', now);
  const df = (sec.disk ?? '').trim().split(/\s+/);
  const disk =
    df.length >= 6 && /^\d+%$/.test(df[4])
      ? { path: df[5], usedPercent: Number(df[4].replace('%', '')), availableKb: Number(df[3]) }
      : undefined;

  const status: HostStatus = {
    host: remote.target.label,
    reachable: true,
    live,
    traffic: cfg.traffic,
    // A router whose routing file names a port (nginx's upstream file): that file as read. (Caddy's marker file is
    // absent whenever blue is live: its router reports its own view.)
    upstream: router.routedPort
      ? { file: router.routingFile(), port, color: upstreamColor, exists: upstreamText !== undefined }
      : undefined,
    colors,
    leftovers: containers
      .map((c) => c.name.replace(/^\//, ''))
      .filter((n) => n !== containerName(cfg.app, 'blue') && n !== containerName(cfg.app, 'green')),
    history: jsonLines<Record<string, unknown>>(sec.history).reverse(),
    lock,
    disk,
    findings: []
  };
  status.findings = findingsFor(status, now);
  return status;
}

export function findingsFor(s: HostStatus, _now = Date.now()): Finding[] {
  const f: Finding[] = [];
  const live = s.live ? s.colors[s.live] : undefined;
  if (!s.live)
    f.push({
      level: 'error',
      message:
        'no colour is live: nothing serves this app' +
        (s.upstream?.color
          ? ` (the upstream points at ${s.upstream.color}, which is ${s.colors[s.upstream.color].state ?? 'missing'})`
          : '')
    });
  if (live?.health && !live.health.ok)
    f.push({
      level: 'error',
      message: `the live ${s.live} container is unhealthy right now (${live.health.status !== undefined ? `HTTP ${live.health.status}` : live.health.error})`
    });
  if (live && (live.restartCount ?? 0) > 0)
    f.push({ level: 'warning', message: `the live ${s.live} container has restarted ${live.restartCount} time(s)` });
  if (s.upstream && s.upstream.exists && s.upstream.color && s.colors[s.upstream.color].state !== 'running')
    f.push({
      level: 'error',
      message: `the nginx upstream points at ${s.upstream.color}, which is ${s.colors[s.upstream.color].state ?? 'missing'}`
    });
  if (s.upstream && !s.upstream.exists)
    f.push({ level: 'warning', message: `the nginx upstream file ${s.upstream.file} does not exist` });
  if (s.upstream?.exists && s.upstream.port !== undefined && !s.upstream.color)
    f.push({
      level: 'warning',
      message: `the nginx upstream points at port ${s.upstream.port}, which is neither colour's port`
    });
  const standby = s.live ? s.colors[s.live === 'blue' ? 'green' : 'blue'] : undefined;
  if (s.live && !standby?.exists)
    f.push({
      level: 'warning',
      message:
        'no standby container is kept: a rollback is not possible (deploy once more, or use rollback-to with image)'
    });
  if (standby?.state === 'running' && s.lock.draining)
    f.push({
      level: 'info',
      message: `the standby ${standby.container} is finishing its in-flight requests; a job on the host stops it then (drain.log in the app's state directory)`
    });
  else if (standby?.state === 'running')
    f.push({ level: 'warning', message: `the standby ${standby.container} is running although it takes no traffic` });
  if (s.disk && s.disk.usedPercent >= 90)
    f.push({
      level: s.disk.usedPercent >= 95 ? 'error' : 'warning',
      message: `the docker disk (${s.disk.path}) is ${s.disk.usedPercent}% full`
    });
  const who = `${s.lock.owner?.deployId ?? 'unknown deploy'}${s.lock.owner?.runUrl ? ` (${s.lock.owner.runUrl})` : ''}`;
  if (s.lock.held)
    f.push({
      level: 'info',
      message: `a deploy is in progress: the lock is held by ${who}${s.lock.legacy ? ' (an older version of the action)' : s.lock.expiresAt ? `, lease renewed until ${s.lock.expiresAt}` : ''}`
    });
  else if (s.lock.stale)
    f.push({
      level: 'warning',
      message: `the deploy lock of ${who} expired at ${s.lock.expiresAt} without being released (its runner vanished or lost its connection); the next deploy takes it over`
    });
  if (s.leftovers.length)
    f.push({
      level: 'warning',
      message: `leftover containers of this app: ${s.leftovers.join(', ')} (the next successful deploy removes them)`
    });
  return f;
}

/** The `@@lock` section of statusScript: `now <epoch>`, `lease <token> <expires> <owner-json>`, `legacy <owner-json>`, `draining`. */
export function parseLockSection(text: string, nowMs = Date.now()): HostStatus['lock'] {
  const lines = text.split('\n').map((l) => l.trim());
  const value = (key: string) =>
    lines
      .find((l) => l === key || l.startsWith(`${key} `))
      ?.slice(key.length)
      .trim();
  const hostNow = Number(value('now'));
  const now = Number.isFinite(hostNow) && hostNow > 0 ? hostNow : Math.floor(nowMs / 1000);
  const draining = lines.includes('draining');
  const json = (t: string | undefined): Record<string, unknown> | undefined => {
    if (!t) return undefined;
    try {
      const o = JSON.parse(t) as unknown;
      return o && typeof o === 'object' ? (o as Record<string, unknown>) : { raw: t };
    } catch {
      return { raw: t };
    }
  };
  const legacy = value('legacy');
  if (legacy !== undefined) return { held: true, owner: json(legacy), draining, legacy: true };
  const lease = value('lease');
  const m = lease ? /^(\S+)\s+(\d+)\s*(.*)$/.exec(lease) : null;
  if (!m) return { held: false, draining };
  const expires = Number(m[2]);
  // host clock against host clock: the runner's clock does not matter
  const held = expires > now;
  return {
    held,
    owner: json(m[3]),
    draining,
    expiresAt: new Date(expires * 1000).toISOString(),
    stale: held ? undefined : true
  };
}
