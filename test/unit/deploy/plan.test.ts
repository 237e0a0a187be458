import { routerFor } from '../../../src/traffic/registry/index.js';
import type { DeployConfig } from '../../../src/model/config.js';
import { planDeploy } from '../../../src/deploy/plan.js';
import { parseInspect } from '../../../src/remote/outputs.js';
import { containerName, type ContainerInfo } from '../../../src/model/host.js';
import { StepError } from '../../../src/model/results.js';
import { renderUpstream } from '../../../src/traffic/nginx/upstream.js';

const APP = 'shop';
const nginx = { app: APP, traffic: 'nginx' as const, ports: { blue: 8081, green: 8082 } };
const portSwap = { ...nginx, traffic: 'port-swap' as const };

function ctr(name: string, running: boolean, labels: Record<string, string> = { 'bluegreen.app': APP }): ContainerInfo {
  return { id: `id-${name}`, name, state: running ? 'running' : 'exited', running, restartCount: 0, labels };
}
const upstreamAt = (port: number) => renderUpstream(APP, port, 'note');

describe('parseInspect', () => {
  test('parses one JSON object per line, strips the leading slash, ignores other lines, defaults null labels', () => {
    const text = [
      'noise before',
      JSON.stringify({
        id: 'abc',
        name: '/shop-blue',
        state: 'running',
        running: true,
        restarts: 2,
        labels: { 'bluegreen.app': 'shop' }
      }),
      '',
      '  ' + JSON.stringify({ id: 'def', name: '/other', state: 'exited', running: false, restarts: 0, labels: null })
    ].join('\n');
    expect(parseInspect(text)).toEqual([
      {
        id: 'abc',
        name: 'shop-blue',
        state: 'running',
        running: true,
        restartCount: 2,
        labels: { 'bluegreen.app': 'shop' }
      },
      { id: 'def', name: 'other', state: 'exited', running: false, restartCount: 0, labels: {} }
    ]);
  });

  test('empty output gives no containers', () => {
    expect(parseInspect('')).toEqual([]);
  });
});

describe('planDeploy', () => {
  test('containerName joins app and colour', () => {
    expect(containerName('shop', 'green')).toBe('shop-green');
  });

  test('first deploy: no containers, placeholder upstream at blue → candidate blue, no live', () => {
    const plan = planDeploy(nginx, routerFor(nginx as DeployConfig), [], upstreamAt(8081), undefined);
    expect(plan.live).toBeUndefined();
    expect(plan.candidate).toBe('blue');
    expect(plan.upstreamColor).toBe('blue');
    expect(plan.replaceExisting).toBe(false);
    expect(plan.leftovers).toEqual([]);
  });

  test('first deploy with a placeholder at green takes green', () => {
    const plan = planDeploy(nginx, routerFor(nginx as DeployConfig), [], upstreamAt(8082), undefined);
    expect(plan.live).toBeUndefined();
    expect(plan.candidate).toBe('green');
  });

  test('live comes from the upstream port when that colour runs', () => {
    const plan = planDeploy(
      nginx,
      routerFor(nginx as DeployConfig),
      [ctr('shop-green', true)],
      upstreamAt(8082),
      'blue'
    );
    expect(plan.live).toBe('green');
    expect(plan.candidate).toBe('blue');
    expect(plan.upstreamContent).toBe(upstreamAt(8082));
    expect(plan.notes).toEqual([]);
  });

  test('upstream at a stopped colour while the other runs: the running one is live, with a note', () => {
    const plan = planDeploy(
      nginx,
      routerFor(nginx as DeployConfig),
      [ctr('shop-blue', false), ctr('shop-green', true)],
      upstreamAt(8081),
      undefined
    );
    expect(plan.live).toBe('green');
    expect(plan.candidate).toBe('blue');
    expect(plan.replaceExisting).toBe(true);
    expect(plan.notes).toHaveLength(1);
    expect(plan.notes[0]).toMatch(/points at blue, which is not running.*green/);
  });

  test('upstream on an unknown port: note about the port, running colour is live', () => {
    const plan = planDeploy(
      nginx,
      routerFor(nginx as DeployConfig),
      [ctr('shop-blue', true)],
      upstreamAt(9999),
      undefined
    );
    expect(plan.live).toBe('blue');
    expect(plan.upstreamColor).toBeUndefined();
    expect(plan.notes.some((n) => n.includes('9999'))).toBe(true);
  });

  test.each([
    ['green', 'green', 'blue'],
    ['blue', 'blue', 'green'],
    [undefined, 'blue', 'green']
  ] as const)('both running, no usable upstream, recorded %s → live %s, candidate %s', (recorded, live, candidate) => {
    const plan = planDeploy(
      nginx,
      routerFor(nginx as DeployConfig),
      [ctr('shop-blue', true), ctr('shop-green', true)],
      undefined,
      recorded
    );
    expect(plan.live).toBe(live);
    expect(plan.candidate).toBe(candidate);
    expect(plan.replaceExisting).toBe(true);
    expect(plan.notes.join('\n')).toMatch(recorded ? /recorded state/ : /default/);
  });

  test('both running with an upstream at a running colour: the upstream wins over the recorded state', () => {
    const plan = planDeploy(
      nginx,
      routerFor(nginx as DeployConfig),
      [ctr('shop-blue', true), ctr('shop-green', true)],
      upstreamAt(8082),
      'blue'
    );
    expect(plan.live).toBe('green');
    expect(plan.candidate).toBe('blue');
    expect(plan.notes).toEqual([]);
  });

  test('a foreign container named <app>-blue without our label fails at detect', () => {
    const foreign = ctr('shop-blue', true, { maintainer: 'someone' });
    let err: unknown;
    try {
      planDeploy(nginx, routerFor(nginx as DeployConfig), [foreign], undefined, undefined);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StepError);
    expect((err as StepError).step).toBe('detect');
    expect((err as StepError).message).toContain('shop-blue');
  });

  test('a container labelled for another app under our name is also foreign', () => {
    expect(() =>
      planDeploy(
        nginx,
        routerFor(nginx as DeployConfig),
        [ctr('shop-green', false, { 'bluegreen.app': 'other' })],
        undefined,
        undefined
      )
    ).toThrow(StepError);
  });

  test('leftovers are labelled containers with other names; unlabelled ones are not ours', () => {
    const containers = [
      ctr('shop-blue', true),
      ctr('shop-blue-old', false),
      ctr('random', false, {}),
      ctr('shop-tmp', false)
    ];
    const plan = planDeploy(nginx, routerFor(nginx as DeployConfig), containers, upstreamAt(8081), undefined);
    expect(plan.leftovers).toEqual(['shop-blue-old', 'shop-tmp']);
  });

  test('port-swap ignores the upstream file', () => {
    const plan = planDeploy(
      portSwap,
      routerFor(portSwap as DeployConfig),
      [ctr('shop-blue', true)],
      upstreamAt(8082),
      undefined
    );
    expect(plan.upstreamColor).toBeUndefined();
    expect(plan.live).toBe('blue');
    expect(plan.candidate).toBe('green');
    expect(plan.notes).toEqual([]);
  });

  test('port-swap first deploy ignores an upstream pointing at green', () => {
    const plan = planDeploy(portSwap, routerFor(portSwap as DeployConfig), [], upstreamAt(8082), undefined);
    expect(plan.candidate).toBe('blue');
  });

  test('replaceExisting is set when the candidate container exists (stopped standby), not otherwise', () => {
    const withStandby = planDeploy(
      nginx,
      routerFor(nginx as DeployConfig),
      [ctr('shop-blue', true), ctr('shop-green', false)],
      upstreamAt(8081),
      undefined
    );
    expect(withStandby.candidate).toBe('green');
    expect(withStandby.replaceExisting).toBe(true);
    const without = planDeploy(
      nginx,
      routerFor(nginx as DeployConfig),
      [ctr('shop-blue', true)],
      upstreamAt(8081),
      undefined
    );
    expect(without.candidate).toBe('green');
    expect(without.replaceExisting).toBe(false);
  });
});
