/**
 * The GitHub Actions workflow commands this action uses, written as @actions/core writes them (same escaping, same
 * file commands), without loading @actions/core: its OIDC client pulls @actions/http-client, undici, tunnel and
 * @actions/exec into the bundle's start, about 1 MB that every run compiled before its first SSH byte. The artifact
 * client, loaded only to upload, still brings its own copy.
 */
import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, promises as fsp } from 'node:fs';
import { EOL } from 'node:os';

export interface AnnotationProperties {
  title?: string;
}

/** @actions/core's toCommandValue: strings as they are, nothing as '', anything else as JSON. */
function commandValue(v: unknown): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'string' || v instanceof String ? String(v) : JSON.stringify(v);
}
const escapeData = (s: unknown) => commandValue(s).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
const escapeProperty = (s: unknown) => escapeData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');

/** `::name key=value,...::message` on stdout, which the runner reads as a command. */
export function issueCommand(name: string, properties: Record<string, string | undefined>, message: unknown): void {
  const props = Object.entries(properties)
    .filter(([, v]) => v)
    .map(([k, v]) => `${k}=${escapeProperty(v)}`)
    .join(',');
  process.stdout.write(`::${name}${props ? ` ${props}` : ''}::${escapeData(message)}${EOL}`);
}

const annotation = (p: AnnotationProperties) => ({ title: p.title });
const text = (m: string | Error) => (m instanceof Error ? m.toString() : m);

export function info(message: string): void {
  process.stdout.write(message + EOL);
}
export function debug(message: string): void {
  issueCommand('debug', {}, message);
}
export function warning(message: string | Error, properties: AnnotationProperties = {}): void {
  issueCommand('warning', annotation(properties), text(message));
}
export function error(message: string | Error, properties: AnnotationProperties = {}): void {
  issueCommand('error', annotation(properties), text(message));
}
/** Fails the step (exit code 1 once the process ends) with an error annotation. */
export function setFailed(message: string | Error): void {
  process.exitCode = 1;
  error(message);
}
export function setSecret(secret: string): void {
  issueCommand('add-mask', {}, secret);
}
export function startGroup(name: string): void {
  issueCommand('group', {}, name);
}
export function endGroup(): void {
  issueCommand('endgroup', {}, '');
}

/** A step output: appended to $GITHUB_OUTPUT as a heredoc with a random delimiter (or the old ::set-output). */
export function setOutput(name: string, value: unknown): void {
  const file = process.env.GITHUB_OUTPUT;
  const v = commandValue(value);
  if (!file) {
    process.stdout.write(EOL);
    issueCommand('set-output', { name }, v);
    return;
  }
  if (!existsSync(file)) throw new Error(`Missing file at path: ${file}`);
  const delimiter = `ghadelimiter_${randomUUID()}`;
  if (name.includes(delimiter) || v.includes(delimiter))
    throw new Error(`Unexpected input: the output ${name} holds its delimiter`);
  appendFileSync(file, `${name}<<${delimiter}${EOL}${v}${EOL}${delimiter}${EOL}`, { encoding: 'utf8' });
}

/** The job summary ($GITHUB_STEP_SUMMARY), appended to as `core.summary.addRaw(markdown).write()` does. */
export const summary = {
  addRaw(markdown: string) {
    return {
      async write(): Promise<void> {
        const file = process.env.GITHUB_STEP_SUMMARY;
        if (!file)
          throw new Error(
            'Unable to find environment variable for $GITHUB_STEP_SUMMARY. Check if your runtime environment supports job summaries.'
          );
        await fsp.appendFile(file, markdown, { encoding: 'utf8' });
      }
    };
  }
};
