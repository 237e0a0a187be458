/**
 * `npm run bench` (fleet part): wall time of a parallel deploy (alternating v1/v2, nginx mode) to 1, 2, 4 and 8
 * independent sandbox hosts reached through the bastion (test/sandbox/fleet-up.sh 8), with the committed dist/ under
 * Node 24. Goal: 8 hosts take at most 1.5 x the time of 1. Rounds per size: BENCH_ROUNDS (default 6).
 * Prints a table and writes bench/results/fleet.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, runAction, SANDBOX } from '../test/e2e/harness.js';
import { cleanupFleetApp, fleetInputs, loadFleet, onHostOk, prepareFleetApp } from '../test/e2e/fleet-harness.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const SIZES = [1, 2, 4, 8];
const GOAL_RATIO = 1.5;
const app = 'bench-fleet';

interface Round {
  hosts: number;
  tag: string;
  wallMs: number;
  result: string;
  /** slowest host's step durations */
  steps: Record<string, number>;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : Math.round((s[s.length / 2 - 1] + s[s.length / 2]) / 2);
};

test(`fleet benchmark: parallel deploys to ${SIZES.join(', ')} hosts, ${ROUNDS} rounds each`, async () => {
  const fleet = await loadFleet({ hosts: Math.max(...SIZES) });
  const names = fleet.hosts.slice(0, Math.max(...SIZES)).map((h) => h.name);
  await prepareFleetApp(app, names);
  const rounds: Round[] = [];
  try {
    const deploy = async (n: number, tag: string): Promise<Round> => {
      const r = await runAction({
        ...fleetInputs(fleet, names.slice(0, n)),
        'ssh-private-key': SANDBOX.privateKey,
        'app-name': app,
        image: `${fleet.registry}/demo:${tag}`,
        'registry-auth': 'password',
        'registry-username': SANDBOX.registryUser,
        'registry-password': SANDBOX.registryPassword,
        'blue-port': '18401',
        'green-port': '18402',
        'verify-seconds': '0',
        'upload-artifacts': 'false'
      });
      if (r.outputs.result !== 'success')
        throw new Error(`deploy to ${n} hosts: ${r.outputs.result}\n${r.stdout.slice(-3000)}`);
      const m = JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8')) as {
        hosts: Array<{ durationMs: number; stepDurationsMs: Record<string, number> }>;
      };
      const slowest = m.hosts.reduce((a, b) => (b.durationMs > a.durationMs ? b : a));
      return { hosts: n, tag, wallMs: r.durationMs, result: r.outputs.result, steps: slowest.stepDurationsMs };
    };
    // Warm-up: both versions pulled and a live colour on every host.
    await deploy(names.length, 'v1');
    await deploy(names.length, 'v2');
    let tag = 'v1';
    for (let i = 0; i < ROUNDS; i++) {
      // Interleave the sizes so drift of the machine hits them alike.
      for (const n of SIZES) {
        rounds.push(await deploy(n, tag));
        // every host of the size must be on the same version for the next size: bring the others along
        if (n < names.length) await deploy(names.length, tag);
      }
      tag = tag === 'v1' ? 'v2' : 'v1';
    }
  } finally {
    await cleanupFleetApp(app);
  }

  // The sandbox's own floor: the same container start and removal done directly on n hosts at once, without the
  // action. All hosts share this machine's CPUs, unlike real EC2 instances, so this bounds what any tool can reach here.
  const floor: Record<number, number[]> = {};
  for (let i = 0; i < ROUNDS; i++) {
    for (const n of SIZES) {
      const t0 = Date.now();
      await Promise.all(
        names
          .slice(0, n)
          .map((h) =>
            onHostOk(
              h,
              `id=$(docker run -d -p 127.0.0.1:18499:8080 ${fleet.registry}/demo:v1) && docker rm -f "$id" >/dev/null`
            )
          )
      );
      (floor[n] ??= []).push(Date.now() - t0);
    }
  }

  const rows = SIZES.map((n) => {
    const walls = rounds.filter((r) => r.hosts === n).map((r) => r.wallMs);
    return { hosts: n, medianMs: median(walls), maxMs: Math.max(...walls), walls, floorMedianMs: median(floor[n]) };
  });
  const base = rows[0].medianMs;
  const lines = [
    `| hosts | rounds | wall ms median | wall ms max | x of 1 host (median) | sandbox floor: docker run + rm on the hosts at once, ms (x of 1) |`,
    `| ---: | ---: | ---: | ---: | ---: | ---: |`,
    ...rows.map(
      (r) =>
        `| ${r.hosts} | ${r.walls.length} | ${r.medianMs} | ${r.maxMs} | ${(r.medianMs / base).toFixed(2)} | ${r.floorMedianMs} (${(r.floorMedianMs / rows[0].floorMedianMs).toFixed(2)}) |`
    )
  ];
  const eight = rows.find((r) => r.hosts === 8)!;
  const ratio = eight.medianMs / base;
  lines.push(
    '',
    `goal: 8 hosts <= ${GOAL_RATIO} x 1 host (median): ${ratio.toFixed(2)} x — ${ratio <= GOAL_RATIO ? 'PASS' : 'MISS'}`
  );
  const stepNames = Object.keys(rounds[0].steps).filter((k) => k !== 'total');
  lines.push(
    '',
    `| slowest host, median ms | ${stepNames.join(' | ')} | total |`,
    `| --- | ${stepNames.map(() => '---:').join(' | ')} | ---: |`
  );
  for (const n of SIZES) {
    const rs = rounds.filter((r) => r.hosts === n);
    lines.push(
      `| ${n} host(s) | ${stepNames.map((s) => median(rs.map((r) => r.steps[s] ?? 0))).join(' | ')} | ${median(rs.map((r) => r.steps.total ?? 0))} |`
    );
  }
  console.log(
    `\nFleet: parallel deploy (nginx, through the bastion), ${ROUNDS} rounds per size\n\n${lines.join('\n')}\n`
  );
  const out = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(
    path.join(out, 'fleet.json'),
    JSON.stringify(
      { generatedAt: new Date().toISOString(), rounds: ROUNDS, goalRatio: GOAL_RATIO, ratio, rows, samples: rounds },
      null,
      2
    ) + '\n'
  );
  expect(rounds.every((r) => r.result === 'success')).toBe(true);
});
