/** The release workflow and Dependabot config do what CONTRIBUTING.md says (their schemas are checked in workflows.test.ts). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// js-yaml (also used by scripts/readme-tables.mjs) ships no types: loaded by name.
const jsYaml = 'js-yaml';
const yaml = ((await import(jsYaml)) as { default: { safeLoad(text: string): unknown } }).default;
const load = (rel: string) => yaml.safeLoad(readFileSync(join(ROOT, rel), 'utf8')) as any;

test('release.yml: on a vX.Y.Z tag, checks dist/, creates the release, moves the major tag', () => {
  const wf = load('.github/workflows/release.yml');
  expect(wf.on.push.tags).toEqual(['v[0-9]+.[0-9]+.[0-9]+']);
  expect(wf.permissions).toEqual({ contents: 'write' });
  const steps: Array<{ name?: string; run?: string }> = wf.jobs.release.steps;
  const at = (text: string) => steps.findIndex((s) => s.run?.includes(text));
  expect(at('npm run check-dist')).toBeGreaterThan(-1);
  expect(at('gh release create')).toBeGreaterThan(at('npm run check-dist'));
  expect(at('git push --force origin "refs/tags/$major"')).toBeGreaterThan(at('gh release create'));
  expect(steps[at('git push --force')].run).toContain('major="${GITHUB_REF_NAME%%.*}"');
});

test('dependabot.yml: npm and github-actions', () => {
  const d = load('.github/dependabot.yml');
  expect(d.version).toBe(2);
  expect(
    d.updates.map((u: { 'package-ecosystem': string; directory: string }) => [u['package-ecosystem'], u.directory])
  ).toEqual([
    ['npm', '/'],
    ['github-actions', '/']
  ]);
});

test('CONTRIBUTING.md is the guide, linked from the README; DEVELOPERS.md points to it', () => {
  expect(readFileSync(join(ROOT, 'CONTRIBUTING.md'), 'utf8')).toContain('## How work is checked');
  expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toContain('[CONTRIBUTING.md](CONTRIBUTING.md)');
  expect(readFileSync(join(ROOT, 'DEVELOPERS.md'), 'utf8')).toContain('(CONTRIBUTING.md)');
});
