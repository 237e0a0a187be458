/**
 * `npm run bench`: repeated deploys of alternating versions onto the sandbox host under continuous HTTP
 * load, in nginx and port-swap mode. Prints a table and writes bench/results/deploy.json.
 * Rounds: BENCH_ROUNDS (default 6). Not part of `npm test`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { cleanupApp, LoadGenerator, prepareApp, REPO_ROOT, runAction, SANDBOX } from '../test/e2e/harness.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);

interface Round {
  mode: string;
  tag: string;
  result: string;
  totalMs: number;
  actionMs: number;
  cutoverMs: number;
  overheadMs: number;
  steps: Record<string, number>;
  failed: number;
  keepAliveRetries: number;
  requests: number;
  maxLatencyMs: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

async function rounds(mode: 'nginx' | 'port-swap' | 'rollback', app: string, url: string, extra: Record<string, string>): Promise<Round[]> {
  const out: Round[] = [];
  for (let i = 0; i < ROUNDS + (mode === 'rollback' ? 0 : 1); i++) {
    const tag = i % 2 === 0 ? 'v1' : 'v2';
    const load = new LoadGenerator(url, { concurrency: 6, keepAlive: 'mixed', requestTimeoutMs: 15000 }).start();
    await new Promise((r) => setTimeout(r, 200));
    const r = await runAction({
      hosts: SANDBOX.host,
      'ssh-private-key': SANDBOX.privateKey,
      'ssh-known-hosts': SANDBOX.knownHosts,
      'app-name': app,
      ...(mode === 'rollback' ? {} : { image: `${SANDBOX.image}:${tag}` }),
      'registry-auth': 'password',
      'registry-username': SANDBOX.registryUser,
      'registry-password': SANDBOX.registryPassword,
      'upload-artifacts': 'false',
      // The post-switch watch window is a deliberate wait (verify-seconds, default 10 s); measure the mechanism without it.
      'verify-seconds': '0',
      ...extra
    });
    await new Promise((r) => setTimeout(r, 200));
    const stats = await load.stop();
    if (i === 0 && mode !== 'rollback') continue; // the first deploy starts from nothing: warm-up, not a swap
    const m = JSON.parse(fs.readFileSync(r.outputs['metrics-file'], 'utf8'));
    const h = m.hosts[0];
    const steps = h.stepDurationsMs as Record<string, number>;
    // What the action adds on top of the image pull and the app's own boot until healthy.
    const overheadMs = h.durationMs - (steps.pull ?? 0) - (steps.health ?? 0);
    out.push({ mode, tag, result: r.outputs.result, totalMs: r.durationMs, actionMs: Number(r.outputs['duration-ms']), cutoverMs: Number(r.outputs['cutover-ms']), overheadMs, steps, failed: stats.failed, keepAliveRetries: stats.keepAliveRetries, requests: stats.ok + stats.failed, maxLatencyMs: stats.maxLatencyMs });
  }
  return out;
}

test(`benchmark: ${ROUNDS} swaps per mode under load`, async () => {
  const nginxApp = 'bench-nginx';
  const swapApp = 'bench-swap';
  const nginxUrl = await prepareApp(nginxApp, { listenPort: 18300, bluePort: 18301 });
  const nginx = await rounds('nginx', nginxApp, nginxUrl, { 'blue-port': '18301', 'green-port': '18302' });
  const rollbacks = await rounds('rollback', nginxApp, nginxUrl, { 'blue-port': '18301', 'green-port': '18302', command: 'rollback' });
  await cleanupApp(nginxApp);
  await cleanupApp(swapApp);
  const swap = await rounds('port-swap', swapApp, 'http://127.0.0.1:18310', { traffic: 'port-swap', 'public-port': '18310' });
  await cleanupApp(swapApp);

  const rows: string[] = [];
  const summary: Record<string, Record<string, number>> = {};
  for (const [mode, rs] of [['nginx', nginx], ['rollback (nginx)', rollbacks], ['port-swap', swap]] as const) {
    const pick = (f: (r: Round) => number) => ({ median: median(rs.map(f)), max: Math.max(...rs.map(f)) });
    const cols = {
      'failed requests': pick((r) => r.failed),
      'keep-alive retries': pick((r) => r.keepAliveRetries),
      'cut-over ms': pick((r) => r.cutoverMs),
      'action ms': pick((r) => r.actionMs),
      'process ms': pick((r) => r.totalMs),
      'overhead ms': pick((r) => r.overheadMs),
      'max latency ms': pick((r) => r.maxLatencyMs)
    };
    summary[mode] = Object.fromEntries(Object.entries(cols).flatMap(([k, v]) => [[`${k} median`, v.median], [`${k} max`, v.max]]));
    rows.push(`| ${mode} | ${rs.length} | ${Object.values(cols).map((v) => `${v.median} / ${v.max}`).join(' | ')} |`);
  }
  const stepNames = Object.keys(nginx[0]?.steps ?? {});
  const stepRow = (rs: Round[]) => stepNames.map((s) => median(rs.map((r) => r.steps[s] ?? 0))).join(' | ');
  const table = [
    '| mode | rounds | failed requests | keep-alive retries | cut-over ms | action ms | process ms | overhead ms | max latency ms |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    'median / max per round; overhead = action total − pull − health (app boot)',
    '',
    `| mode | ${stepNames.join(' | ')} |`,
    `| --- | ${stepNames.map(() => '---').join(' | ')} |`,
    `| nginx (median ms) | ${stepRow(nginx)} |`,
    `| rollback (median ms) | ${stepRow(rollbacks)} |`,
    `| port-swap (median ms) | ${stepRow(swap)} |`
  ].join('\n');
  fs.mkdirSync(path.join(REPO_ROOT, 'bench', 'results'), { recursive: true });
  fs.writeFileSync(path.join(REPO_ROOT, 'bench', 'results', 'deploy.json'), JSON.stringify({ at: new Date().toISOString(), rounds: ROUNDS, summary, nginx, rollbacks, swap }, null, 2));
  process.stdout.write(`\n${table}\n\nwritten: bench/results/deploy.json\n`);
  expect(nginx.every((r) => r.result === 'success')).toBe(true);
  expect(rollbacks.every((r) => r.result === 'success')).toBe(true);
  expect(swap.every((r) => r.result === 'success')).toBe(true);
});
