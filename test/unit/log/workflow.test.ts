/**
 * src/log/workflow.ts writes the workflow commands the action uses without loading @actions/core (its start-up
 * cost): what it writes must be what @actions/core writes, byte for byte, for the values that are hard to escape.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as core from '@actions/core';
import * as ours from '../../../src/log/workflow.js';

const HARD = ['plain', 'multi\nline\r\nvalue', '100% done: a, b', '::error::injected', '', '%0A literal', 'ünïcødé ✓'];

/** What `fn` writes to stdout, and the output file's content. */
function capture(fn: () => void): { stdout: string; output: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-wf-'));
  const file = path.join(dir, 'out');
  fs.writeFileSync(file, '');
  const prev = process.env.GITHUB_OUTPUT;
  const prevCode = process.exitCode;
  process.env.GITHUB_OUTPUT = file;
  let stdout = '';
  const write = process.stdout.write;
  process.stdout.write = ((s: string) => ((stdout += s), true)) as typeof process.stdout.write;
  try {
    fn();
  } finally {
    process.stdout.write = write;
    process.env.GITHUB_OUTPUT = prev;
    process.exitCode = prevCode;
  }
  const output = fs.readFileSync(file, 'utf8');
  fs.rmSync(dir, { recursive: true, force: true });
  return { stdout, output };
}
/** Output heredoc delimiters are random: compare with them normalized. */
const sameDelimiters = (s: string) => s.replace(/ghadelimiter_[0-9a-f-]+/g, 'ghadelimiter_X');

test.each(HARD)('annotations, masks, groups and logs are escaped as @actions/core escapes them: %j', (v) => {
  const both = (f: (c: typeof ours) => void) => [
    capture(() => f(core as unknown as typeof ours)).stdout,
    capture(() => f(ours)).stdout
  ];
  for (const f of [
    (c: typeof ours) => c.error(v, { title: `bluegreen: ${v}` }),
    (c: typeof ours) => c.warning(v),
    (c: typeof ours) => c.debug(v),
    (c: typeof ours) => c.info(v),
    (c: typeof ours) => c.setSecret(v),
    (c: typeof ours) => c.setFailed(v),
    (c: typeof ours) => (c.startGroup(v), c.endGroup())
  ]) {
    const [theirs, mine] = both(f);
    expect(mine).toBe(theirs);
  }
});

test.each(HARD)('outputs go to $GITHUB_OUTPUT as @actions/core writes them: %j', (v) => {
  const theirs = capture(() => core.setOutput('result', v)).output;
  const mine = capture(() => ours.setOutput('result', v)).output;
  expect(sameDelimiters(mine)).toBe(sameDelimiters(theirs));
  expect(mine).toContain(v);
});

test('setFailed sets the exit code to 1', () => {
  const prev = process.exitCode;
  let code: typeof process.exitCode;
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    ours.setFailed('x');
    code = process.exitCode;
  } finally {
    process.stdout.write = write;
    process.exitCode = prev;
  }
  expect(code).toBe(1);
});

test('the summary is appended to $GITHUB_STEP_SUMMARY', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bg-wf-'));
  const file = path.join(dir, 'summary.md');
  fs.writeFileSync(file, 'before\n');
  const prev = process.env.GITHUB_STEP_SUMMARY;
  process.env.GITHUB_STEP_SUMMARY = file;
  try {
    await ours.summary.addRaw('## ✅ deployed\n').write();
    expect(fs.readFileSync(file, 'utf8')).toBe('before\n## ✅ deployed\n');
    delete process.env.GITHUB_STEP_SUMMARY;
    await expect(ours.summary.addRaw('x').write()).rejects.toThrow(/GITHUB_STEP_SUMMARY/);
  } finally {
    process.env.GITHUB_STEP_SUMMARY = prev;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
