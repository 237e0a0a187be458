/**
 * docs/inputs.md's Inputs and Outputs tables (every input and output) and README.md's short tables (the ten inputs
 * most people set, and the outputs) are generated from action.yml (scripts/readme-tables.mjs): this fails when they
 * drift, e.g. an input added or a description changed in action.yml without `npm run readme`, or a table edited by hand.
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
  copyFileSync(join(ROOT, 'docs', 'inputs.md'), join(dir, 'inputs.md'));
  copyFileSync(join(ROOT, 'action.yml'), join(dir, 'action.yml'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));
const files = () => [
  '--action',
  join(dir, 'action.yml'),
  '--docs',
  join(dir, 'inputs.md'),
  '--readme',
  join(dir, 'README.md')
];
const check = () => tool('--check', ...files());
const regenerate = () => tool(...files());
const edit = (file: string, from: string, to: string) => {
  const text = readFileSync(join(dir, file), 'utf8');
  expect(text).toContain(from);
  writeFileSync(join(dir, file), text.replace(from, to));
};
const declared = (section: 'inputs' | 'outputs'): string[] => {
  const yml = readFileSync(join(ROOT, 'action.yml'), 'utf8');
  const body = yml.split(new RegExp(`^${section}:\\s*$`, 'm'))[1].split(/^\S/m)[0];
  return [...body.matchAll(/^ {2}([A-Za-z0-9_-]+):/gm)].map((m) => m[1]);
};
const rows = (text: string, begin: string, end: string): string[] =>
  [...text.slice(text.indexOf(begin), text.indexOf(end)).matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]);

test("docs/inputs.md's and the README's tables are what action.yml gives (run `npm run readme` after changing action.yml)", () => {
  const r = tool('--check');
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
});

test('docs/inputs.md lists every input and output of action.yml, in order; the README the ten common inputs and every output', () => {
  const docs = readFileSync(join(ROOT, 'docs', 'inputs.md'), 'utf8');
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  expect(rows(docs, '<!-- inputs:', '<!-- end of inputs -->')).toEqual(declared('inputs'));
  expect(rows(docs, '<!-- outputs:', '<!-- end of outputs -->')).toEqual(declared('outputs'));
  const common = rows(readme, '<!-- common inputs:', '<!-- end of common inputs -->');
  expect(common).toHaveLength(10);
  expect(declared('inputs')).toEqual(expect.arrayContaining(common));
  expect(rows(readme, '<!-- outputs:', '<!-- end of outputs -->')).toEqual(declared('outputs'));
});

test('a new input in action.yml, or a hand-edited row, is drift; regenerating fixes it', () => {
  edit(
    'action.yml',
    '\noutputs:\n',
    '\n  brand-new:\n    description: "Something new. Default: the `hosts` count."\n    default: ""\noutputs:\n'
  );
  const r = check();
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('run: npm run readme');
  expect(r.stderr).toContain('| `brand-new` | the `hosts` count | Something new. |');
  expect(regenerate().status).toBe(0);
  expect(check().status).toBe(0);
  expect(readFileSync(join(dir, 'inputs.md'), 'utf8')).toContain(
    '| `brand-new` | the `hosts` count | Something new. |'
  );
  expect(readFileSync(join(dir, 'README.md'), 'utf8')).not.toContain('brand-new');

  edit('inputs.md', '| `ssh-port` | `22` |', '| `ssh-port` | `2222` |');
  expect(check().status).toBe(1);
  expect(regenerate().status).toBe(0);
  edit('README.md', '| `container-port` | `8080` |', '| `container-port` | `9090` |');
  const readme = check();
  expect(readme.status).toBe(1);
  expect(readme.stderr).toContain('README.md line');
});

test('a description changed in action.yml is drift in docs/inputs.md (and in the README when it is one of its ten)', () => {
  edit(
    'action.yml',
    'description: "Port for hosts that do not name one."',
    'description: "The port for hosts that name none."'
  );
  let r = check();
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('docs/inputs.md line');
  expect(r.stderr).toContain('| `ssh-port` | `22` | The port for hosts that name none. |');
  expect(r.stderr).not.toContain('README.md line');
  expect(regenerate().status).toBe(0);
  expect(check().status).toBe(0);

  edit(
    'action.yml',
    'description: "Path that answers 2xx when ready."',
    'description: "Path that answers 200 when ready."'
  );
  r = check();
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('docs/inputs.md line');
  expect(r.stderr).toContain('README.md line');
});

test('missing markers, a common input gone from action.yml, and a link to an unknown section are errors', () => {
  edit('inputs.md', '<!-- end of inputs -->', '');
  expect(check().status).toBe(1);
  expect(check().stderr).toContain('has no inputs table markers');
  copyFileSync(join(ROOT, 'docs', 'inputs.md'), join(dir, 'inputs.md'));

  edit('action.yml', '\n  health-path:\n', '\n  health-route:\n');
  expect(check().stderr).toContain('COMMON_INPUTS names health-path, not in action.yml');
  copyFileSync(join(ROOT, 'action.yml'), join(dir, 'action.yml'));

  edit(
    'action.yml',
    'description: "Port for hosts that do not name one."',
    'description: "See [nowhere](#no-such-section)."'
  );
  const r = check();
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('"#no-such-section"');
});

test('links to a section are written relative to each file', () => {
  const docs = readFileSync(join(ROOT, 'docs', 'inputs.md'), 'utf8');
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  expect(docs).toContain('See [Many hosts](fleets.md#many-hosts).');
  expect(docs).not.toMatch(/\]\(#/);
  expect(readme).not.toMatch(/\| `[^`]+` \|.*\]\(#/);
});

test('required inputs, literal defaults, and "|" in a description are rendered for a table', () => {
  writeFileSync(
    join(dir, 'action.yml'),
    'name: x\ndescription: y\ninputs:\n  a:\n    description: "must | be"\n    required: true\n  b:\n    description: B\n    default: "8080"\noutputs:\n  o:\n    description: "multi\n\n      line"\nruns:\n  using: node24\n  main: i.js\n'
  );
  expect(tool('--no-readme', '--action', join(dir, 'action.yml'), '--docs', join(dir, 'inputs.md')).status).toBe(0);
  const docs = readFileSync(join(dir, 'inputs.md'), 'utf8');
  expect(docs).toContain(
    '| Input | Default | Description |\n| --- | --- | --- |\n| `a` | (required) | must \\| be |\n| `b` | `8080` | B |\n<!-- end of inputs -->'
  );
  expect(docs).toContain('| `o` | multi line |');
});
