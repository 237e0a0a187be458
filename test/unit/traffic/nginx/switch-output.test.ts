import { parseSwitchOutput } from '../../../../src/traffic/nginx/switch-output.js';

describe('parseSwitchOutput (the nginx switch script)', () => {
  test('taken over: the masters that reloaded, their old workers for the drain, host timings', () => {
    const out = [
      '@@masters 3234 10031',
      '@@workers-before 3235 3236 10032 10033',
      '2026/12/01 13:15:33 [notice] 10043#10043: signal process started',
      '@@reloaded',
      '@@old-workers 10032 10033',
      '@@taken-over 10045 131 27 10031',
      ''
    ].join('\n');
    expect(parseSwitchOutput(out)).toEqual({
      masters: ['3234', '10031'],
      foreignMasters: [],
      workersBefore: ['3235', '3236', '10032', '10033'],
      reloaded: true,
      outcome: 'taken-over',
      reloadedMasters: ['10031'],
      oldWorkers: ['10032', '10033'],
      // the drain watches every previous worker and waits for those shutting down
      drainWorkers: ['3235', '3236', '10032', '10033'],
      cutoverMs: 131,
      switchMs: 27
    });
  });

  test('taken over on a host whose date has no %N: timings unknown, not zero', () => {
    const r = parseSwitchOutput('@@masters 7\n@@workers-before 8\n@@reloaded\n@@old-workers 8\n@@taken-over 9 - - 7\n');
    expect(r).toMatchObject({ outcome: 'taken-over', reloadedMasters: ['7'], oldWorkers: ['8'], drainWorkers: ['8'] });
    expect(r.cutoverMs).toBeUndefined();
    expect(r.switchMs).toBeUndefined();
  });

  test('an older script (no @@masters, no @@old-workers): the drain watches every previous worker', () => {
    const r = parseSwitchOutput('@@workers-before 101 102\n@@reloaded\n@@taken-over 201 23\n');
    expect(r).toMatchObject({
      masters: [],
      workersBefore: ['101', '102'],
      outcome: 'taken-over',
      cutoverMs: 23,
      drainWorkers: ['101', '102'],
      oldWorkers: [],
      reloadedMasters: []
    });
    expect(r.switchMs).toBeUndefined();
  });

  test('no takeover: masters are visible but none took the new config', () => {
    expect(
      parseSwitchOutput(
        '@@masters 3234\n@@workers-before 3235 3236\n@@reloaded\n@@foreign-masters 4001\n@@no-takeover\n'
      )
    ).toMatchObject({
      reloaded: true,
      outcome: 'no-takeover',
      masters: ['3234'],
      foreignMasters: ['4001'],
      workersBefore: ['3235', '3236'],
      reloadedMasters: []
    });
  });

  test('no master visible at all', () => {
    expect(parseSwitchOutput('@@masters\n@@workers-before\n@@reloaded\n@@no-workers\n')).toMatchObject({
      reloaded: true,
      outcome: 'no-workers',
      masters: [],
      workersBefore: [],
      drainWorkers: []
    });
  });

  test('reload failed: its exit code, no outcome', () => {
    expect(
      parseSwitchOutput('@@masters 1\n@@workers-before 2\nnginx: [emerg] unexpected "}"\n@@reload-failed 1\n')
    ).toMatchObject({ reloaded: false, reloadExitCode: 1, outcome: undefined });
  });

  test('without takeover wait (takeoverMs 0) or with nothing printed: no outcome', () => {
    expect(parseSwitchOutput('@@masters 1\n@@workers-before 2\n@@reloaded\n')).toMatchObject({
      reloaded: true,
      outcome: undefined,
      drainWorkers: ['2']
    });
    expect(parseSwitchOutput('')).toEqual({
      masters: [],
      foreignMasters: [],
      workersBefore: [],
      reloaded: false,
      outcome: undefined,
      reloadedMasters: [],
      oldWorkers: [],
      drainWorkers: []
    });
  });

  test('the reload command printing marker-like text mid-line is ignored', () => {
    expect(parseSwitchOutput('echo @@taken-over 1 2 3\n@@reloaded\n@@no-takeover\n').outcome).toBe('no-takeover');
  });
});
