#!/usr/bin/env node
/**
 * The README's Inputs and Outputs tables, generated from action.yml (the one source: the Marketplace, editors and
 * the README all show the same text).
 *
 *   node scripts/readme-tables.mjs            rewrite the tables in README.md
 *   node scripts/readme-tables.mjs --check    exit 1 (and say what differs) when README.md is not what action.yml gives
 *   [--action FILE] [--readme FILE]           other files (the unit test uses copies)
 *
 * Default column: `default` in code, "(required)" for required inputs; an input whose default is derived (empty in
 * action.yml) ends its description with "Default: <text>." and that text moves to the column.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const MARKERS = {
  inputs: ['<!-- inputs: generated from action.yml by scripts/readme-tables.mjs (npm run readme); do not edit by hand -->', '<!-- end of inputs -->'],
  outputs: ['<!-- outputs: generated from action.yml by scripts/readme-tables.mjs (npm run readme); do not edit by hand -->', '<!-- end of outputs -->']
};

const cell = (s) => String(s).replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|').trim();

/** Splits a trailing "Default: X." off a description. */
function derivedDefault(description) {
  const m = /^(.*?)\s*Default: (.+)\.$/s.exec(description);
  return m ? { text: m[1], def: m[2] } : { text: description, def: '' };
}

export function renderTables(actionYml) {
  const action = yaml.safeLoad(actionYml);
  const inputs = ['| Input | Default | Description |', '| --- | --- | --- |'];
  for (const [name, spec] of Object.entries(action.inputs ?? {})) {
    const description = String(spec.description ?? '');
    let def;
    let text = description;
    if (spec.required === true || spec.required === 'true') def = '(required)';
    else if (spec.default !== undefined && String(spec.default) !== '') def = `\`${cell(spec.default)}\``;
    else ({ text, def } = derivedDefault(description));
    inputs.push(`| \`${name}\` |${def ? ` ${cell(def)} ` : ' '}| ${cell(text)} |`);
  }
  const outputs = ['| Output | Description |', '| --- | --- |'];
  for (const [name, spec] of Object.entries(action.outputs ?? {})) outputs.push(`| \`${name}\` | ${cell(spec.description ?? '')} |`);
  return { inputs: inputs.join('\n'), outputs: outputs.join('\n') };
}

/** The README with both tables replaced by what action.yml gives. */
export function updateReadme(readme, actionYml) {
  const tables = renderTables(actionYml);
  let out = readme;
  for (const key of ['inputs', 'outputs']) {
    const [begin, end] = MARKERS[key];
    const i = out.indexOf(begin);
    const j = out.indexOf(end);
    if (i < 0 || j < i) throw new Error(`README.md has no ${key} table markers:\n${begin}\n…\n${end}`);
    out = `${out.slice(0, i + begin.length)}\n${tables[key]}\n${out.slice(j)}`;
  }
  return out;
}

function main(argv) {
  const arg = (name, fallback) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : fallback;
  };
  const actionFile = arg('--action', join(ROOT, 'action.yml'));
  const readmeFile = arg('--readme', join(ROOT, 'README.md'));
  const readme = readFileSync(readmeFile, 'utf8');
  const next = updateReadme(readme, readFileSync(actionFile, 'utf8'));
  if (!argv.includes('--check')) {
    if (next !== readme) writeFileSync(readmeFile, next);
    return 0;
  }
  if (next === readme) return 0;
  const a = readme.split('\n');
  const b = next.split('\n');
  const diff = [];
  for (let k = 0; k < Math.max(a.length, b.length) && diff.length < 20; k++) if (a[k] !== b[k]) diff.push(`line ${k + 1}:\n  README:    ${a[k] ?? ''}\n  action.yml: ${b[k] ?? ''}`);
  process.stderr.write(`README.md's input/output tables differ from action.yml; run: npm run readme\n${diff.join('\n')}\n`);
  return 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
