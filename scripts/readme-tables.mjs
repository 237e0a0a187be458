#!/usr/bin/env node
/**
 * The Inputs and Outputs tables, generated from action.yml (the one source: the Marketplace, editors and the docs all
 * show the same text):
 *   - docs/inputs.md: every input and every output (between the `inputs` and `outputs` markers);
 *   - README.md: the ten inputs most people set (COMMON_INPUTS, between the `common inputs` markers) and every output.
 *
 *   node scripts/readme-tables.mjs            rewrite the tables in docs/inputs.md and README.md
 *   node scripts/readme-tables.mjs --check    exit 1 (and say what differs) when either is not what action.yml gives
 *   [--action FILE] [--docs FILE] [--readme FILE] [--no-readme]
 *                                             other files (the unit test uses copies); --no-readme: docs only
 *
 * Default column: `default` in code, "(required)" for required inputs; an input whose default is derived (empty in
 * action.yml) ends its description with "Default: <text>." and that text moves to the column.
 *
 * A description may link to a section by its anchor, `[Many hosts](#many-hosts)`: LINKS says which docs page holds
 * it, and the link is written relative to the file the table is in. An anchor LINKS does not know is an error.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const note = 'generated from action.yml by scripts/readme-tables.mjs (npm run readme); do not edit by hand';
export const MARKERS = {
  inputs: [`<!-- inputs: ${note} -->`, '<!-- end of inputs -->'],
  outputs: [`<!-- outputs: ${note} -->`, '<!-- end of outputs -->'],
  'common inputs': [`<!-- common inputs: ${note} -->`, '<!-- end of common inputs -->']
};

/** The ten inputs most people set, in this order: the README's short table. */
export const COMMON_INPUTS = [
  'command',
  'hosts',
  'app-name',
  'image',
  'tag',
  'ssh-private-key',
  'ssh-known-hosts',
  'env',
  'container-port',
  'health-path'
];

/** Section anchors that action.yml descriptions link to → the docs page (relative to docs/) that holds them. */
export const LINKS = {
  'many-hosts': 'fleets.md#many-hosts',
  'haproxy-mode-switch-without-reloading-the-proxy': 'traffic.md#haproxy-traffic-haproxy',
  'caddy-traffic-caddy': 'traffic.md#caddy-traffic-caddy',
  'alb-mode-blue-green-at-an-application-load-balancer': 'traffic.md#alb-traffic-alb',
  'smoke-test-before-traffic': 'smoke-test.md#smoke-test-before-traffic',
  notify: 'reports.md#notify'
};

/** Where each generated file is (relative to the repository) and which tables it holds. */
export const FILES = {
  docs: { path: 'docs/inputs.md', base: '', tables: ['inputs', 'outputs'] },
  readme: { path: 'README.md', base: 'docs/', tables: ['common inputs', 'outputs'] }
};

const cell = (s) =>
  String(s)
    .replace(/\s*\n\s*/g, ' ')
    .replace(/\|/g, '\\|')
    .trim();

/** Splits a trailing "Default: X." off a description. */
function derivedDefault(description) {
  const m = /^(.*?)\s*Default: (.+)\.$/s.exec(description);
  return m ? { text: m[1], def: m[2] } : { text: description, def: '' };
}

/** `](#anchor)` → `](<base><page>#anchor)`. */
function relink(text, base) {
  return text.replace(/\]\(#([^)\s]+)\)/g, (_, anchor) => {
    if (!LINKS[anchor])
      throw new Error(
        `action.yml links to "#${anchor}": add the page that holds it to LINKS in scripts/readme-tables.mjs`
      );
    return `](${base}${LINKS[anchor]})`;
  });
}

/** The tables action.yml gives; `base` prefixes the docs pages in links ('' inside docs/, 'docs/' in README.md). */
export function renderTables(actionYml, base = '') {
  const action = yaml.safeLoad(actionYml);
  const rows = {};
  for (const [name, spec] of Object.entries(action.inputs ?? {})) {
    const description = relink(String(spec.description ?? ''), base);
    let def;
    let text = description;
    if (spec.required === true || spec.required === 'true') def = '(required)';
    else if (spec.default !== undefined && String(spec.default) !== '') def = `\`${cell(spec.default)}\``;
    else ({ text, def } = derivedDefault(description));
    rows[name] = `| \`${name}\` |${def ? ` ${cell(def)} ` : ' '}| ${cell(text)} |`;
  }
  const head = ['| Input | Default | Description |', '| --- | --- | --- |'];
  const missing = COMMON_INPUTS.filter((name) => !rows[name]);
  const outputs = ['| Output | Description |', '| --- | --- |'];
  for (const [name, spec] of Object.entries(action.outputs ?? {}))
    outputs.push(`| \`${name}\` | ${cell(relink(String(spec.description ?? ''), base))} |`);
  return {
    inputs: [...head, ...Object.values(rows)].join('\n'),
    'common inputs': missing.length
      ? new Error(`COMMON_INPUTS names ${missing.join(', ')}, not in action.yml`)
      : [...head, ...COMMON_INPUTS.map((n) => rows[n])].join('\n'),
    outputs: outputs.join('\n')
  };
}

/** `text` with the tables named by `keys` replaced by what action.yml gives. */
export function updateTables(text, actionYml, keys, base, file = 'the file') {
  const tables = renderTables(actionYml, base);
  let out = text;
  for (const key of keys) {
    const [begin, end] = MARKERS[key];
    const i = out.indexOf(begin);
    const j = out.indexOf(end);
    if (i < 0 || j < i) throw new Error(`${file} has no ${key} table markers:\n${begin}\n…\n${end}`);
    if (tables[key] instanceof Error) throw tables[key];
    out = `${out.slice(0, i + begin.length)}\n${tables[key]}\n${out.slice(j)}`;
  }
  return out;
}

/** docs/inputs.md: every input and output. */
export const updateInputsDoc = (text, actionYml) =>
  updateTables(text, actionYml, FILES.docs.tables, FILES.docs.base, FILES.docs.path);
/** README.md: the common inputs and every output. */
export const updateReadme = (text, actionYml) =>
  updateTables(text, actionYml, FILES.readme.tables, FILES.readme.base, FILES.readme.path);

function diffLines(name, was, next) {
  const a = was.split('\n');
  const b = next.split('\n');
  const diff = [];
  for (let k = 0; k < Math.max(a.length, b.length) && diff.length < 20; k++)
    if (a[k] !== b[k]) diff.push(`${name} line ${k + 1}:\n  ${name}: ${a[k] ?? ''}\n  action.yml: ${b[k] ?? ''}`);
  return diff;
}

function main(argv) {
  const arg = (name, fallback) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  const actionYml = readFileSync(arg('--action', join(ROOT, 'action.yml')), 'utf8');
  const targets = [{ key: 'docs', file: arg('--docs', join(ROOT, FILES.docs.path)), update: updateInputsDoc }];
  if (!argv.includes('--no-readme'))
    targets.push({ key: 'readme', file: arg('--readme', join(ROOT, FILES.readme.path)), update: updateReadme });
  const diffs = [];
  for (const { key, file, update } of targets) {
    const text = readFileSync(file, 'utf8');
    let next;
    try {
      next = update(text, actionYml);
    } catch (e) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    if (next === text) continue;
    if (argv.includes('--check')) diffs.push(...diffLines(FILES[key].path, text, next));
    else writeFileSync(file, next);
  }
  if (!diffs.length) return 0;
  process.stderr.write(
    `The input/output tables of docs/inputs.md or README.md differ from action.yml; run: npm run readme\n${diffs.join('\n')}\n`
  );
  return 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1])
  process.exitCode = main(process.argv.slice(2));
