/**
 * README.md's Inputs and Outputs tables are generated from action.yml (scripts/readme-tables.mjs): this fails when
 * they drift, e.g. an input added to action.yml without `npm run readme`, or a table edited by hand.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = join(ROOT, 'scripts', 'readme-tables.mjs');
const tool = (...args: string[]) => spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bg-readme-'));
  copyFileSync(join(ROOT, 'README.md'), join(dir, 'README.md'));
  copyFileSync(join(ROOT, 'action.yml'), join(dir, 'action.yml'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));
const check = () => tool('--check', '--action', join(dir, 'action.yml'), '--readme', join(dir, 'README.md'));

test("the README's tables are what action.yml gives (run `npm run readme` after changing action.yml)", () => {
  const r = tool('--check');
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
});

test('a new input in action.yml, or a hand-edited row, is drift; regenerating fixes it', () => {
  const yml = readFileSync(join(dir, 'action.yml'), 'utf8');
  writeFileSync(
    join(dir, 'action.yml'),
    yml.replace(
      '\noutputs:\n',
      '\n  brand-new:\n    description: "Something new. Default: the `hosts` count."\n    default: ""\noutputs:\n'
    )
  );
  const r = check();
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('run: npm run readme');
  expect(r.stderr).toContain('| `brand-new` | the `hosts` count | Something new. |');
  expect(tool('--action', join(dir, 'action.yml'), '--readme', join(dir, 'README.md')).status).toBe(0);
  expect(check().status).toBe(0);

  const readme = readFileSync(join(dir, 'README.md'), 'utf8');
  writeFileSync(join(dir, 'README.md'), readme.replace('| `ssh-port` | `22` |', '| `ssh-port` | `2222` |'));
  expect(check().status).toBe(1);
});

test('required inputs, literal defaults, and "|" in a description are rendered for a table', () => {
  writeFileSync(
    join(dir, 'action.yml'),
    'name: x\ndescription: y\ninputs:\n  a:\n    description: "must | be"\n    required: true\n  b:\n    description: B\n    default: "8080"\noutputs:\n  o:\n    description: "multi\n\n      line"\nruns:\n  using: node24\n  main: i.js\n'
  );
  tool('--action', join(dir, 'action.yml'), '--readme', join(dir, 'README.md'));
  const readme = readFileSync(join(dir, 'README.md'), 'utf8');
  expect(readme).toContain(
    '| Input | Default | Description |\n| --- | --- | --- |\n| `a` | (required) | must \\| be |\n| `b` | `8080` | B |\n<!-- end of inputs -->'
  );
  expect(readme).toContain('| `o` | multi line |');
});
