import { imagesToPrune, parseImageList } from '../../../src/deploy/images.js';
import { findingsFor, parseLockSection } from '../../../src/status/host-status.js';
import { type HostStatus } from '../../../src/model/status.js';

const id = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

describe('keep-images', () => {
  const out = [
    '@@images',
    `${id(1)} r/app:v5`,
    `${id(2)} r/app:v4`,
    `${id(2)} r/app:latest`,
    `${id(3)} r/app:v3`,
    `${id(4)} r/app:<none>`,
    '@@in-use',
    id(3),
    ''
  ].join('\n');

  test('parses the listing', () => {
    const { images, inUse } = parseImageList(out);
    expect(images).toHaveLength(5);
    expect([...inUse]).toEqual([id(3)]);
  });

  test('keeps what the colours use first, then the newest, removing the rest by tag (or id when untagged)', () => {
    const { images, inUse } = parseImageList(out);
    expect(imagesToPrune(images, inUse, 2)).toEqual(['r/app:v4', 'r/app:latest', id(4)]);
    expect(imagesToPrune(images, inUse, 1)).toEqual(['r/app:v5', 'r/app:v4', 'r/app:latest', id(4)]);
    expect(imagesToPrune(images, new Set([id(1), id(3)]), 1)).toEqual(['r/app:v4', 'r/app:latest', id(4)]);
    expect(imagesToPrune(images, inUse, 10)).toEqual([]);
  });
});

describe('status findings', () => {
  const base = (): HostStatus => ({
    host: 'h1',
    reachable: true,
    live: 'green',
    traffic: 'nginx',
    upstream: { file: '/etc/nginx/bluegreen/app.conf', port: 8082, color: 'green', exists: true },
    colors: {
      blue: { exists: true, state: 'exited', role: 'standby' },
      green: { exists: true, state: 'running', role: 'live', health: { ok: true, status: 200 }, restartCount: 0 }
    },
    leftovers: [],
    history: [],
    lock: { held: false },
    disk: { path: '/', usedPercent: 40, availableKb: 1 },
    findings: []
  });

  test('a healthy pair has no findings', () => {
    expect(findingsFor(base())).toEqual([]);
  });

  test('each problem a person should act on is reported', () => {
    const s = base();
    s.colors.green.health = { ok: false, status: 503 };
    s.colors.green.restartCount = 2;
    s.colors.blue = { exists: false, role: 'none' };
    s.disk!.usedPercent = 96;
    // a lease left by a runner that vanished: expired, never released
    s.lock = {
      held: false,
      stale: true,
      expiresAt: '2026-01-01T10:00:30.000Z',
      owner: { deployId: 'd1', since: '2026-01-01T10:00:00.000Z' }
    };
    s.leftovers = ['app-old'];
    const msgs = findingsFor(s).map((f) => `${f.level}: ${f.message}`);
    expect(msgs).toEqual([
      'error: the live green container is unhealthy right now (HTTP 503)',
      'warning: the live green container has restarted 2 time(s)',
      expect.stringMatching(/^warning: no standby container is kept: a rollback is not possible/),
      'error: the docker disk (/) is 96% full',
      'warning: the deploy lock of d1 expired at 2026-01-01T10:00:30.000Z without being released (its runner vanished or lost its connection); the next deploy takes it over',
      'warning: leftover containers of this app: app-old (the next successful deploy removes them)'
    ]);
  });

  test('a held lock is reported with its holder, however long it has been held (it is a renewed lease)', () => {
    const s = base();
    s.lock = {
      held: true,
      expiresAt: '2026-01-01T12:00:30.000Z',
      owner: { deployId: 'd2', runUrl: 'https://github.com/o/r/actions/runs/1', since: '2026-01-01T10:00:00.000Z' }
    };
    expect(findingsFor(s).map((f) => `${f.level}: ${f.message}`)).toEqual([
      'info: a deploy is in progress: the lock is held by d2 (https://github.com/o/r/actions/runs/1), lease renewed until 2026-01-01T12:00:30.000Z'
    ]);
  });

  test('the lock section: a live lease is held, an expired one is stale, an older version holding the lock file is held', () => {
    const owner = '{"deployId":"d1","actor":"a b","since":"2026-01-01T10:00:00.000Z"}';
    expect(parseLockSection('now 1000')).toEqual({ held: false, draining: false });
    expect(parseLockSection(`now 1000\nlease d1.ab12 1030 ${owner}`)).toEqual({
      held: true,
      owner: JSON.parse(owner),
      draining: false,
      expiresAt: new Date(1_030_000).toISOString(),
      stale: undefined
    });
    expect(parseLockSection(`now 1030\nlease d1.ab12 1030 ${owner}\ndraining`)).toEqual({
      held: false,
      owner: JSON.parse(owner),
      draining: true,
      expiresAt: new Date(1_030_000).toISOString(),
      stale: true
    });
    expect(parseLockSection(`now 1000\nlegacy ${owner}`)).toEqual({
      held: true,
      owner: JSON.parse(owner),
      draining: false,
      legacy: true
    });
    expect(parseLockSection('now 1000\nlease garbage')).toEqual({ held: false, draining: false });
  });

  test('an upstream pointing at a stopped colour means nothing is live', () => {
    const s = base();
    s.live = undefined;
    s.colors.green.state = 'exited';
    const levels = findingsFor(s).map((f) => f.message);
    expect(levels).toContain(
      'no colour is live: nothing serves this app (the upstream points at green, which is exited)'
    );
    expect(levels).toContain('the nginx upstream points at green, which is exited');
  });
});
