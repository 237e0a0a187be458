/**
 * Hostile inputs and secret hygiene, through the committed dist/ exactly as a runner runs it.
 */
import fs from 'node:fs';
import { startFakeResults, runtimeToken, type FakeResults } from './fake-results.js';
import { cleanupApp, prepareApp, outcome, runAction, SANDBOX, type RunActionResult } from './harness.js';

const CANARY = '/tmp/bluegreen-hostile-canary';
const app = 'e2e-hostile';
const ports = { blue: 18271, green: 18272 };

const PAYLOADS = [
  `x;touch ${CANARY}`,
  `$(touch ${CANARY})`,
  `\`touch ${CANARY}\``,
  `x\ntouch ${CANARY}`,
  `x' || touch ${CANARY} || '`,
  `x" && touch ${CANARY} && "`,
  '-oProxyCommand=touch', // option injection
  '--help',
  'a'.repeat(300), // overlong
  'аpp', // Cyrillic "а" look-alike
  'x；touch', // full-width semicolon
  '../../../../etc/passwd' // path traversal
];

/** Inputs that name things on the host: every payload must be refused before anything connects. */
const IDENTIFIER_INPUTS = [
  'hosts',
  'ssh-user',
  'app-name',
  'image',
  'tag',
  'docker-command',
  'health-path',
  'health-host',
  'nginx-upstream-file',
  'nginx-upstream-name',
  'container-port',
  'blue-port',
  'green-port',
  'public-port',
  'registry-username',
  'rollback-to'
];
/** A payload some inputs may legitimately hold (still passed as data, never as code). */
const ALLOWED: Record<string, string[]> = {
  // a registry user name may contain dots and slashes; it only ever travels as one argument
  'registry-username': ['../../../../etc/passwd']
};

function base(extra: Record<string, string> = {}): Record<string, string> {
  return {
    hosts: SANDBOX.host,
    'ssh-private-key': SANDBOX.privateKey,
    'ssh-known-hosts': SANDBOX.knownHosts,
    'app-name': app,
    image: `${SANDBOX.image}:v1`,
    'registry-auth': 'password',
    'registry-username': SANDBOX.registryUser,
    'registry-password': SANDBOX.registryPassword,
    'blue-port': String(ports.blue),
    'green-port': String(ports.green),
    'verify-seconds': '0',
    'upload-artifacts': 'false',
    ...extra
  };
}

beforeAll(async () => {
  fs.rmSync(CANARY, { force: true });
  await prepareApp(app, { listenPort: 18270, bluePort: ports.blue });
});
afterAll(() => cleanupApp(app));

describe('hostile values for every input that reaches the host', () => {
  test.each(IDENTIFIER_INPUTS)('%s', async (input) => {
    for (const payload of PAYLOADS) {
      const extra: Record<string, string> = { [input]: payload };
      if (input === 'rollback-to') extra.command = 'rollback';
      const r = await runAction(base(extra));
      const where = `${input} = ${JSON.stringify(payload)}`;
      expect([where, fs.existsSync(CANARY)]).toEqual([where, false]);
      if ((ALLOWED[input] ?? []).includes(payload)) continue;
      expect([where, r.code]).toEqual([where, 1]);
      // refused by validation, naming the input, before any connection
      expect([where, r.stdout.includes(`Input "${input}"`)]).toEqual([where, true]);
      expect([where, r.stdout.includes('✓ connect')]).toEqual([where, false]);
    }
  });

  test('env values and docker-run-args are data: delivered literally, never run', async () => {
    const value = PAYLOADS.slice(0, 6).join(' | ');
    const r = await runAction(
      base({
        env: `GREETING=${value.replace(/\n/g, ' ')}`,
        'docker-run-args': PAYLOADS.slice(0, 6)
          .map((p) => `--label 'x=${p.replace(/'/g, '')}'`)
          .join(' ')
          .replace(/\n/g, ' ')
      })
    );
    expect(outcome(r)).toBe('success');
    expect(fs.existsSync(CANARY)).toBe(false);
  });
});

describe('secret hygiene across deploy, rollback, status and failing runs', () => {
  let results: FakeResults;
  beforeAll(async () => {
    results = await startFakeResults();
  });
  afterAll(() => results.close());

  const SECRET_VALUE = 'hyg13ne-s3cret-VALUE-9911';
  test('no secret appears in stdout, stderr, the summary, outputs, log, metrics or the uploaded artifact', async () => {
    const env = { ACTIONS_RUNTIME_TOKEN: runtimeToken(), ACTIONS_RESULTS_URL: results.url };
    const secrets = {
      env: `API_TOKEN=${SECRET_VALUE}\nOTHER=${SECRET_VALUE}-2`,
      'ssh-private-key': SANDBOX.passKey,
      'ssh-passphrase': SANDBOX.passphrase,
      'upload-artifacts': 'true'
    };
    const runs: RunActionResult[] = [];
    const run = async (extra: Record<string, string>) => {
      const r = await runAction(base({ ...secrets, ...extra }), { env });
      runs.push(r);
      return r;
    };
    expect((await run({ image: `${SANDBOX.image}:v1`, 'artifact-name': 'hyg-1' })).outputs.result).toBe('success');
    expect((await run({ image: `${SANDBOX.image}:v2`, 'artifact-name': 'hyg-2' })).outputs.result).toBe('success');
    expect((await run({ image: `${SANDBOX.image}:crash`, 'artifact-name': 'hyg-3' })).outputs.result).toBe('failed');
    expect(
      (
        await run({
          image: `${SANDBOX.image}:v3`,
          'registry-password': `${SANDBOX.registryPassword}-wrong`,
          'artifact-name': 'hyg-4'
        })
      ).outputs.result
    ).toBe('failed');
    expect((await run({ command: 'rollback', image: '', 'artifact-name': 'hyg-5' })).outputs.result).toBe('success');
    expect(
      (await run({ command: 'status', image: '', 'status-log-lines': '50', 'artifact-name': 'hyg-6' })).outputs.result
    ).toBe('success');

    const secretsToFind = [
      SECRET_VALUE,
      SANDBOX.passphrase,
      SANDBOX.registryPassword,
      'OPENSSH PRIVATE KEY',
      ...SANDBOX.passKey.split('\n').filter((l) => l.length > 20)
    ];
    for (const r of runs) {
      const files = [r.outputs['log-file'], r.outputs['metrics-file']]
        .filter((f) => f && fs.existsSync(f))
        .map((f) => fs.readFileSync(f, 'utf8'));
      const visible = [
        r.stdout
          .split('\n')
          .filter((l) => !l.startsWith('::add-mask::'))
          .join('\n'),
        r.stderr,
        r.summary,
        JSON.stringify(r.outputs),
        ...files
      ].join('\n');
      for (const s of secretsToFind)
        expect([r.outputs['log-file'], visible.includes(s)]).toEqual([r.outputs['log-file'], false]);
    }
    expect(results.artifacts.map((a) => a.name).sort()).toEqual(['hyg-1', 'hyg-2', 'hyg-3', 'hyg-4', 'hyg-5', 'hyg-6']);
    for (const a of results.artifacts) {
      const all = Object.values(a.files)
        .map((b) => b.toString('utf8'))
        .join('\n');
      expect(all.length).toBeGreaterThan(100);
      for (const s of secretsToFind) expect([a.name, all.includes(s)]).toEqual([a.name, false]);
    }
  });
});
