import type { RunResult } from '../../../src/model/results.js';
import type { HostResult, StepName, StepRecord } from '../../../src/model/results.js';
import { escapeHtml, formatMs, renderSummary, SUMMARY_LIMIT, workflowFromRef } from '../../../src/report/summary.js';

const step = (name: StepName, durationMs: number, status: StepRecord['status'] = 'ok'): StepRecord => ({
  name,
  startedAt: '2024-01-01T00:00:00.000Z',
  endedAt: '2024-01-01T00:00:01.000Z',
  durationMs,
  status
});

function host(label: string, over: Partial<HostResult> = {}): HostResult {
  return {
    host: label,
    result: 'success',
    activeColor: 'green',
    previousColor: 'blue',
    candidateColor: 'green',
    image: 'reg/shop:v2',
    digest: `sha256:${'b'.repeat(64)}`,
    cutoverMs: 120,
    durationMs: 9000,
    switched: false,
    steps: [step('lock', 5), step('pull', 3000), step('health', 1500), step('switch', 80)],
    warnings: [],
    ...over
  };
}

function run(hosts: HostResult[], over: Partial<RunResult> = {}): RunResult {
  return {
    deployId: '20240101T000000Z-abc123',
    command: 'deploy',
    app: 'shop',
    image: 'reg/shop:v2',
    result: 'success',
    startedAt: '2024-01-01T00:00:00.000Z',
    endedAt: '2024-01-01T00:00:10.000Z',
    durationMs: 10_000,
    steps: [],
    hosts,
    ...over
  };
}

const extras = { traffic: 'nginx' };

describe('formatMs', () => {
  test.each([
    [undefined, '—'],
    [0, '0 ms'],
    [999, '999 ms'],
    [1000, '1.0 s'],
    [1540, '1.5 s'],
    [59_949, '59.9 s'],
    [60_000, '1 min 0 s'],
    [125_400, '2 min 5 s']
  ])('%p → %p', (ms, text) => {
    expect(formatMs(ms)).toBe(text);
  });
});

describe('renderSummary', () => {
  test('the first line states the result', () => {
    expect(renderSummary(run([host('h1')]), extras).split('\n')[0]).toBe('## ✅ shop deployed');
    const failed = renderSummary(
      run([host('h1', { result: 'failed', error: { step: 'health', message: 'x' } })], {
        result: 'failed',
        error: { step: 'health', host: 'h1', message: 'x' }
      }),
      extras
    );
    expect(failed.split('\n')[0]).toBe('## ❌ shop deploy failed');
    const rolled = renderSummary(
      run([host('h1', { result: 'rolled-back' })], {
        result: 'rolled-back',
        error: { step: 'verify', host: 'h1', message: 'x' }
      }),
      extras
    );
    expect(rolled.split('\n')[0]).toBe('## ↩️ shop deploy failed and was rolled back');
    expect(rolled).toContain('Traffic was switched back');
    expect(renderSummary(run([host('h1')]), extras)).toContain('**Result: `success`**');
  });

  test('the step table has one column per host and one row per step that ran', () => {
    const text = renderSummary(
      run(
        [
          host('web-1'),
          host('web-2', { steps: [step('lock', 7), step('pull', 61_000), step('verify', 20)] }),
          host('web-3')
        ],
        { steps: [step('ecr-token', 300)] }
      ),
      extras
    );
    const lines = text.split('\n');
    const header = lines.find((l) => l.startsWith('| Step |'))!;
    expect(header).toBe('| Step | web-1 | web-2 | web-3 |');
    const sep = lines[lines.indexOf(header) + 1];
    expect(sep).toBe('| --- | ---: | ---: | ---: |');
    const cols = (row: string) =>
      row
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim());
    const pull = lines.find((l) => l.startsWith('| pull |'))!;
    expect(cols(pull)).toEqual(['pull', '3.0 s', '1 min 1 s', '3.0 s']);
    const verify = lines.find((l) => l.startsWith('| verify |'))!;
    expect(cols(verify)).toEqual(['verify', '—', '20 ms', '—']);
    expect(lines.some((l) => l.startsWith('| ecr-token (runner) |'))).toBe(true);
    expect(lines.some((l) => l.startsWith('| drain |'))).toBe(false);
    // steps are listed in deploy order
    expect(lines.findIndex((l) => l.startsWith('| lock |'))).toBeLessThan(
      lines.findIndex((l) => l.startsWith('| pull |'))
    );
    expect(lines.findIndex((l) => l.startsWith('| health |'))).toBeLessThan(
      lines.findIndex((l) => l.startsWith('| switch |'))
    );
    // every row of the step table has as many cells as the header
    const start = lines.indexOf(header);
    for (let i = start; lines[i]?.startsWith('|'); i++) expect(cols(lines[i])).toHaveLength(4);
  });

  test('a failed step is marked in the table', () => {
    const h = host('h1', {
      result: 'failed',
      steps: [step('lock', 5), step('health', 60_000, 'failed'), step('cleanup', 40, 'warning')]
    });
    const text = renderSummary(
      run([h], { result: 'failed', error: { step: 'health', host: 'h1', message: 'bad' } }),
      extras
    );
    expect(text).toContain('| health | ❌ 1 min 0 s |');
    expect(text).toContain('| cleanup | ⚠️ 40 ms |');
  });

  test('on failure: the cause with step and host, the candidate logs HTML-escaped', () => {
    const logs = 'starting\n<script>alert(1)</script>\nError: "db" & cache down';
    const h = host('web-1', {
      result: 'failed',
      previousColor: undefined,
      activeColor: 'blue',
      error: { step: 'health', message: 'container shop-green is exited (exit code 1) before it became healthy' },
      candidateLogs: logs
    });
    const text = renderSummary(
      run([h], {
        result: 'failed',
        error: {
          step: 'health',
          host: 'web-1',
          message: 'container shop-green is exited (exit code 1) <before> it became healthy'
        }
      }),
      extras
    );

    expect(text).toContain(
      '> **Failed at `health` on `web-1`:** container shop-green is exited (exit code 1) &lt;before&gt; it became healthy'
    );
    expect(text).toContain('The live version was not touched.');
    expect(text).toContain('Last log lines of the candidate on web-1');
    expect(text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(text).toContain('Error: &quot;db&quot; &amp; cache down');
    expect(text).not.toContain('<script>');
    expect(text.indexOf('starting')).toBeLessThan(text.indexOf('&lt;script&gt;'));
  });

  // Regression test.
  test('a host whose switch-back failed is not described as untouched', () => {
    const h = host('h1', {
      result: 'failed',
      previousColor: undefined,
      activeColor: undefined,
      switched: true,
      switchBackFailed: true,
      error: { step: 'verify', message: 'HTTP 500 after the switch' },
      warnings: ['switch-back: restore /etc/nginx/bluegreen/shop.conf and reload nginx failed (exit 4)']
    });
    const text = renderSummary(
      run([h], { result: 'failed', error: { step: 'verify', host: 'h1', message: 'HTTP 500 after the switch' } }),
      extras
    );
    expect(text).toContain('switch-back');
    expect(text).not.toContain('The live version was not touched.');
  });

  test('host names and warnings are escaped too', () => {
    const h = host('<b>h|1</b>', { warnings: ['stop: <img src=x>'] });
    const text = renderSummary(run([h]), extras);
    expect(text).not.toContain('<b>');
    expect(text).not.toContain('<img');
    expect(text).toContain('| &lt;b&gt;h&#124;1&lt;/b&gt; |');
    expect(text).toContain('- stop: &lt;img src=x&gt;');
  });

  test('a huge candidate log is cut to its tail', () => {
    const logs = `FIRST-LINE\n${'x'.repeat(200_000)}\nLAST-LINE`;
    const text = renderSummary(
      run([host('h1', { result: 'failed', candidateLogs: logs })], { result: 'failed' }),
      extras
    );
    expect(text).toContain('LAST-LINE');
    expect(text).not.toContain('FIRST-LINE');
    expect(Buffer.byteLength(text)).toBeLessThan(40 * 1024);
  });

  test('a huge ASCII error message and warning on one host stay under SUMMARY_LIMIT bytes and say they were truncated', () => {
    const h = host('h1', { result: 'failed', warnings: [`cleanup: ${'w'.repeat(600_000)}`] });
    const text = renderSummary(
      run([h], { result: 'failed', error: { step: 'health', host: 'h1', message: `boom ${'e'.repeat(600_000)}` } }),
      extras
    );
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(SUMMARY_LIMIT);
    // the warning is shortened, the error (the result) kept whole
    expect(text).toContain(`boom ${'e'.repeat(600_000)}`);
    expect(text).not.toContain('w'.repeat(2001));
    expect(text.split('\n')[0]).toBe('## ❌ shop deploy failed');
    // an error message larger than the limit is cut, and says so
    const giant = renderSummary(
      run([h], { result: 'failed', error: { step: 'health', host: 'h1', message: `boom ${'e'.repeat(1_200_000)}` } }),
      extras
    );
    expect(Buffer.byteLength(giant)).toBeLessThanOrEqual(SUMMARY_LIMIT);
    expect(Buffer.byteLength(giant)).toBeGreaterThan(SUMMARY_LIMIT - 2048);
    expect(giant).toContain('summary truncated');
    expect(giant.split('\n')[0]).toBe('## ❌ shop deploy failed');
  });

  test('the truncation notice is absent when the summary fits', () => {
    const text = renderSummary(
      run([host('h1', { result: 'failed', candidateLogs: 'z'.repeat(100_000) })], { result: 'failed' }),
      extras
    );
    expect(text).not.toContain('summary truncated');
  });

  // Regression test.
  test('many hosts with huge logs stay under SUMMARY_LIMIT bytes', () => {
    const hosts = Array.from({ length: 120 }, (_, i) =>
      host(`host-${i}.example.com`, { result: 'failed', candidateLogs: `<tag>${'y'.repeat(100_000)}` })
    );
    const text = renderSummary(
      run(hosts, { result: 'failed', error: { step: 'health', host: 'host-0.example.com', message: 'boom' } }),
      extras
    );
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(SUMMARY_LIMIT);
    // detail is shortened (each host keeps the tail of its log), never the result: every host is in the table
    for (const h of hosts) expect(text).toContain(`| ${h.host} |`);
    expect((text.match(/Last log lines of the candidate on /g) ?? []).length).toBe(120);
  });

  // Same bug, worse: non-ASCII logs (2 bytes per character here) overflow by hundreds of KiB.
  test('many hosts with multi-byte (non-ASCII) logs stay under SUMMARY_LIMIT bytes', () => {
    const hosts = Array.from({ length: 120 }, (_, i) =>
      host(`host-${i}`, { result: 'failed', candidateLogs: 'ошибка '.repeat(20_000) })
    );
    const text = renderSummary(run(hosts, { result: 'failed' }), extras);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(SUMMARY_LIMIT);
    expect(text).not.toContain('\uFFFD');
  });

  test('artifact link or reason it was skipped', () => {
    expect(
      renderSummary(run([host('h1')]), { traffic: 'nginx', artifact: { name: 'logs', id: 7, url: 'https://x/a/7' } })
    ).toContain('artifact [`logs`](https://x/a/7) (id 7)');
    expect(
      renderSummary(run([host('h1')]), { traffic: 'nginx', artifact: { name: 'logs', skipped: 'no <token>' } })
    ).toContain('not uploaded: no &lt;token&gt;');
  });

  test('port-swap downtime is labelled', () => {
    const text = renderSummary(run([host('h1', { cutoverMs: 2500, downtimeMs: 2500 })]), { traffic: 'port-swap' });
    expect(text).toContain('2.5 s (downtime)');
  });

  test('escapeHtml', () => {
    expect(escapeHtml(`<a href="x">&</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;');
  });
});

describe('the outcome line (right under the heading)', () => {
  const line = (r: RunResult, x = extras as Parameters<typeof renderSummary>[1]) => renderSummary(r, x).split('\n')[2];

  test('success: what is live, where, since the switch, and how to undo it, with the exact gh command when known', () => {
    expect(line(run([host('h1')]))).toBe(
      '**Live now:** `reg/shop:v2@sha256:bbbbbbbbbbbb…` (green) on `h1` since 2024-01-01 00:00:01 UTC. **If it misbehaves:** run the action with `command: rollback` (the previous version is kept stopped).'
    );
    const withGh = line(run([host('h1')]), {
      traffic: 'nginx',
      workflow: workflowFromRef('org/app/.github/workflows/deploy.yml@refs/heads/main')
    });
    expect(withGh).toContain('`gh workflow run deploy.yml --ref main -f command=rollback`');
  });

  test('failed before the switch: the previous version still serves, nothing to roll back', () => {
    const r = run(
      [
        host('h1', {
          result: 'failed',
          activeColor: 'blue',
          previousColor: undefined,
          error: { step: 'smoke-test', message: 'x' }
        })
      ],
      { result: 'failed', error: { step: 'smoke-test', host: 'h1', message: 'x' } }
    );
    expect(line(r)).toBe(
      '**Live now:** the previous version (blue), unchanged, on `h1`. **Next:** fix the cause below and re-run; there is nothing to roll back.'
    );
  });

  test('on-host-failure continue, mixed: the new version where it went, the old one elsewhere, and the rollback of just those hosts', () => {
    const r = run(
      [host('h1'), host('h2', { result: 'failed', activeColor: 'blue', error: { step: 'health', message: 'x' } })],
      { result: 'failed' }
    );
    expect(line(r)).toBe(
      '**Live now:** `reg/shop:v2@sha256:bbbbbbbbbbbb…` (green) on `h1` since 2024-01-01 00:00:01 UTC; the previous version (blue), unchanged, on `h2`. **Next:** fix the cause below and re-run, or put `h1` back with `command: rollback`, `hosts: h1` (only those hosts: the others still run the previous version).'
    );
    // no gh line here: it would roll back every host, h2 (still on the previous version) included
    expect(line(r, { traffic: 'nginx', workflow: { file: 'deploy.yml', ref: 'main' } })).not.toContain(
      'gh workflow run'
    );
  });

  test('switched back, or unknown after a failed switch-back', () => {
    expect(
      line(run([host('h1', { result: 'rolled-back', activeColor: 'blue' })], { result: 'rolled-back' }))
    ).toContain('the previous version (blue) on `h1` again since 2024-01-01 00:00:10 UTC (switched back)');
    const u = line(
      run([host('h1', { result: 'failed', activeColor: undefined, switchBackFailed: true })], { result: 'failed' })
    );
    expect(u).toContain('**unknown** on `h1`');
    expect(u).toContain('**Next:** check what serves on `h1`');
  });

  test('no host reached (the ECR token failed)', () => {
    expect(line(run([], { result: 'failed', error: { step: 'ecr-token', message: 'x' } }))).toBe(
      '**Nothing changed:** no host was contacted (`ecr-token` failed); whatever served before still serves. **Next:** fix the cause below and re-run.'
    );
  });
});

describe('renderSummary with several hosts', () => {
  test('all-or-nothing failure: names the failed host, the hosts switched back and those left untouched, with batches', () => {
    const md = renderSummary(
      run(
        [
          host('h1', {
            result: 'rolled-back',
            batch: 0,
            switched: true,
            abortedBy: 'h2',
            error: { step: 'wait-fleet', message: 'h2 failed at verify' }
          }),
          host('h2', {
            result: 'rolled-back',
            batch: 1,
            switched: true,
            error: { step: 'verify', message: 'GET /health on port 8082 answered HTTP 500 after the switch' }
          }),
          host('h3', {
            result: 'skipped',
            batch: 2,
            steps: [],
            abortedBy: 'h2',
            error: { step: 'connect', message: 'not started: h2 failed at verify' }
          })
        ],
        {
          result: 'rolled-back',
          error: { step: 'verify', host: 'h2', message: 'GET /health on port 8082 answered HTTP 500 after the switch' }
        }
      ),
      { traffic: 'nginx', rollout: 'rolling, max-parallel 1, on-host-failure rollback-all' }
    );
    expect(md).toContain('rollout rolling, max-parallel 1, on-host-failure rollback-all');
    expect(md).toContain('**Failed at `verify` on `h2`:**');
    expect(md).toContain('All-or-nothing (on-host-failure: rollback-all): switched back `h1`; untouched `h3`.');
    expect(md).toContain('| Host | Batch | Result |');
    expect(md).toMatch(/\| h1 \| 1 \| ↩️ rolled-back \(h2 failed\) \|/);
    expect(md).toMatch(/\| h3 \| 3 \| ⏭️ skipped \(h2 failed\) \|/);
  });

  test('a wide fleet gets one step row per host instead of one column per host', () => {
    const hosts = Array.from({ length: 8 }, (_, i) => host(`10.0.0.${i + 1}`));
    const md = renderSummary(run(hosts), extras);
    expect(md).toContain('| Host | lock | pull | health | switch | total |');
    expect(md).toMatch(/\| 10\.0\.0\.8 \| 5 ms \| 3\.0 s \| 1\.5 s \| 80 ms \| \*\*9\.0 s\*\* \|/);
    expect(md).not.toContain('| Step |');
  });
});
