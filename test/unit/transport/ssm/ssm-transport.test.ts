import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { seal } from '../../../../src/transport/ssm/seal.js';
import { SsmHost } from '../../../../src/transport/ssm/host.js';
import { explainSsmError, explainStatus } from '../../../../src/transport/ssm/errors.js';
import { commandLines, parseFrame, runPayload } from '../../../../src/transport/ssm/wrapper.js';
import { FakeSsm } from './ssm-fake.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bgssm-unit-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const target = {
  label: 'i-0f1ee700000000001 (unit)',
  host: 'i-0f1ee700000000001',
  port: 0,
  user: 'root',
  instanceId: 'i-0f1ee700000000001'
};

function host(fake: FakeSsm, opts: Partial<ConstructorParameters<typeof SsmHost>[2]> = {}): SsmHost {
  fake.env = { BLUEGREEN_SSM_DIR: path.join(dir, 'run') };
  return new SsmHost(target, fake.sdk(), {
    region: 'us-east-1',
    executionTimeoutSeconds: 3600,
    pollMs: { first: 5, max: 20 },
    ...opts
  });
}

/** The wrapper run by the local sh, as the agent would: the positional arguments as the script saw them. */
function argsThroughWrapper(args: string[]): string[] {
  const lines = commandLines(
    runPayload(
      '0123456789abcdef',
      `for a in "$@"; do printf '%s' "$a" | od -An -tx1 | tr -d ' \\n'; echo; done`,
      args,
      { wantKey: 'no' }
    )
  );
  const out = execFileSync('sh', ['-c', lines.join('\n')], {
    encoding: 'utf8',
    env: { ...process.env, BLUEGREEN_SSM_DIR: path.join(dir, 'prop') }
  });
  const frame = parseFrame(out)!;
  expect(frame.code).toBe(0);
  return frame.out
    .toString('utf8')
    .split('\n')
    .slice(0, args.length)
    .map((hex) => Buffer.from(hex, 'hex').toString('utf8'));
}

describe('ssm wrapper: values are data', () => {
  test('any arguments (no NUL) reach the script unchanged, the command text stays the fixed wrapper', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ unit: 'grapheme' }).filter((s) => !s.includes('\0')),
          { maxLength: 5 }
        ),
        (args) => {
          expect(argsThroughWrapper(args)).toEqual(args);
        }
      ),
      { numRuns: 40 }
    );
  });

  test.each([
    ['$(touch /tmp/bgssm-pwned)'],
    ['`id`', "a'b"],
    ['BLUEGREEN_SSM_PAYLOAD_END'],
    ['\n\n', ''],
    ['-rf', '*']
  ])('hostile %j', (...args) => {
    expect(argsThroughWrapper(args)).toEqual(args);
    expect(fs.existsSync('/tmp/bgssm-pwned')).toBe(false);
  });

  test('the text sent differs between two commands only in the payload lines (base64)', () => {
    const a = commandLines(runPayload('0123456789abcdef', 'echo one', ['x'], { wantKey: 'no' }));
    const b = commandLines(runPayload('0123456789abcdef', 'echo two; rm -rf /', ['$(y)'], { wantKey: 'no' }));
    const diff = a.map((l, i) => (l === b[i] ? undefined : [l, b[i]])).filter(Boolean) as string[][];
    for (const [x, y] of diff) {
      expect(x).toMatch(/^[A-Za-z0-9+/=]*$/);
      expect(y).toMatch(/^[A-Za-z0-9+/=]*$/);
    }
  });
});

describe('sealing', () => {
  test('sealed in node, opened by the same openssl commands the host runs', () => {
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:3072', '-out', key], {
      stdio: 'ignore'
    });
    const pub = execFileSync('openssl', ['pkey', '-in', key, '-pubout'], { encoding: 'utf8' });
    const secret = 'DB_PASSWORD=s3cr3t-ü\nTOKEN=a b $c `d`\n';
    const s = seal(pub, secret);
    expect(s.key + s.data).not.toContain('s3cr3t');
    fs.writeFileSync(path.join(dir, 'k.bin'), Buffer.from(s.key, 'base64'));
    execFileSync('openssl', [
      'pkeyutl',
      '-decrypt',
      '-inkey',
      key,
      '-pkeyopt',
      'rsa_padding_mode:oaep',
      '-pkeyopt',
      'rsa_oaep_md:sha256',
      '-in',
      path.join(dir, 'k.bin'),
      '-out',
      path.join(dir, 'pass')
    ]);
    const plain = execFileSync(
      'openssl',
      ['enc', '-d', '-aes-256-cbc', '-md', 'sha256', '-pass', `file:${path.join(dir, 'pass')}`],
      { input: Buffer.from(s.data, 'base64'), stdio: ['pipe', 'pipe', 'ignore'] }
    );
    expect(plain.toString('utf8')).toBe(secret);
  });
});

describe('SsmHost', () => {
  test('runs a script with args and sealed stdin; no stdin value in any parameter; the session is removed on close', async () => {
    const fake = new FakeSsm();
    const h = host(fake);
    const r1 = await h.run('echo "first $1"', ['a b']);
    expect(r1).toMatchObject({ code: 0, stdout: 'first a b\n' });
    const lines: string[] = [];
    const r2 = await h.run('cat; echo "args: $#" >&2; exit 3', ['x'], {
      stdin: 'PASSWORD=hunter2-top-secret\n',
      onLine: (l, s) => lines.push(`${s}:${l}`)
    });
    expect(r2.code).toBe(3);
    expect(r2.stdout).toBe('PASSWORD=hunter2-top-secret\n');
    expect(r2.stderr).toBe('args: 1\n');
    expect(lines).toEqual(['stdout:PASSWORD=hunter2-top-secret', 'stderr:args: 1']);
    expect(fake.history()).not.toContain('hunter2');
    expect(fake.history()).not.toContain(Buffer.from('hunter2-top-secret').toString('base64').slice(0, 12));
    const sessions = fs.readdirSync(path.join(dir, 'run'));
    expect(sessions).toHaveLength(1);
    expect(fs.statSync(path.join(dir, 'run', sessions[0])).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, 'run', sessions[0], 'key.pem')).mode & 0o777).toBe(0o600);
    h.close();
    await h.closing;
    await waitFor(() => !fs.existsSync(path.join(dir, 'run', sessions[0])));
    expect(h.isConnected()).toBe(false);
    await expect(h.run('true')).rejects.toThrow(/closed/);
  });

  test('ssm-run-as: the script runs as that user in its home, with its stdin still sealed', async () => {
    const fake = new FakeSsm();
    const h = new SsmHost({ ...target, user: 'ec2-user' }, fake.sdk(), {
      region: 'us-east-1',
      executionTimeoutSeconds: 3600,
      pollMs: { first: 5, max: 20 }
    });
    fake.env = { BLUEGREEN_SSM_DIR: path.join(dir, 'run') };
    const r = await h.run('echo "$(id -un) $HOME $(pwd)"; cat', [], { stdin: 'top-secret-for-ec2-user\n' });
    expect(r).toMatchObject({ code: 0, stdout: 'ec2-user /home/ec2-user /home/ec2-user\ntop-secret-for-ec2-user\n' });
    expect(fake.history()).not.toContain('top-secret');
    h.close();
    await h.closing;
  });

  test('long output arrives complete in pieces under the 24,000-character cut', async () => {
    const fake = new FakeSsm();
    const h = host(fake);
    const r = await h.run(
      'i=0; while [ $i -lt 3000 ]; do echo "line $i of the long output ---------------"; i=$((i+1)); done'
    );
    expect(r.stdout.split('\n')).toHaveLength(3001);
    expect(r.stdout).toContain('line 2999 of');
    expect(fake.sent.length).toBeGreaterThan(2);
    h.close();
    await h.closing;
  });

  test('InvocationDoesNotExist at first and ThrottlingException are waited out', async () => {
    const fake = new FakeSsm();
    fake.notYet = 3;
    const h = host(fake);
    fake.throttle = 2;
    const r = await h.run('echo ok');
    expect(r.stdout).toBe('ok\n');
    expect(fake.calls.filter((c) => c === 'GetCommandInvocationCommand').length).toBeGreaterThanOrEqual(4);
    h.close();
  });

  test('InvocationDoesNotExist for longer than the grace fails with the call named', async () => {
    const fake = new FakeSsm();
    fake.notYet = 1e9;
    const h = host(fake, { invocationGraceMs: 50 });
    await expect(h.run('echo ok')).rejects.toThrow(
      /GetCommandInvocation for i-0f1ee700000000001 .*InvocationDoesNotExist/
    );
  });

  test('a cancel (the run is cancelled) cancels the command in flight; a command after it runs', async () => {
    const fake = new FakeSsm();
    const ac = new AbortController();
    const h = host(fake, { signal: ac.signal });
    const slow = h.run('sleep 30; echo late');
    await waitFor(() => fake.sent.length === 1);
    ac.abort();
    await expect(slow).rejects.toThrow(/cancelled/);
    expect(fake.calls).toContain('CancelCommandCommand');
    expect((await h.run('echo undo')).stdout).toBe('undo\n');
    h.close();
  });

  test('the execution timeout is set on every command', async () => {
    const fake = new FakeSsm();
    const h = host(fake, { executionTimeoutSeconds: 4321 });
    await h.run('true');
    expect(fake.sent[0].Parameters.executionTimeout).toEqual(['4321']);
    expect(fake.sent[0].DocumentName).toBe('AWS-RunShellScript');
    h.close();
  });
});

describe('SSM errors name the call, the instance and what to check', () => {
  test.each([
    [
      { name: 'AccessDeniedException', message: 'User is not authorized to perform ssm:SendCommand' },
      /ssm:SendCommand on arn:aws:ssm:us-east-1::document\/AWS-RunShellScript/
    ],
    [{ name: 'InvalidInstanceId', message: '' }, /SSM agent running .*AmazonSSMManagedInstanceCore/],
    [
      { name: 'CredentialsProviderError', message: 'Could not load credentials from any providers' },
      /configure-aws-credentials/
    ]
  ])('%j', (err, re) => {
    const e = explainSsmError('SendCommand', 'i-0f1ee700000000001', 'us-east-1', err);
    expect(e.message).toMatch(/^SSM SendCommand for i-0f1ee700000000001 failed/);
    expect(e.message).toMatch(re);
  });
});

test('a command the agent never picked up says so (TimedOut / DeliveryTimedOut is not an execution timeout)', () => {
  expect(explainStatus('TimedOut', 'DeliveryTimedOut', 'i-0f1ee700000000002 (bgf-h2)')).toMatch(
    /never reached i-0f1ee700000000002 \(bgf-h2\) .*agent is offline/
  );
  expect(explainStatus('TimedOut', 'ExecutionTimedOut', 'i-1')).toMatch(/ran past its executionTimeout/);
});

async function waitFor(cond: () => boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
