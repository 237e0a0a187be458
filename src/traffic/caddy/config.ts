/**
 * What the action needs in Caddy's config (read with the admin API's `GET /config/`, whatever wrote it: a Caddyfile,
 * JSON, or the API): a `file` matcher that looks for `<caddy-switch-dir>/<app>/green`, a reverse_proxy to the green
 * port, and one to the blue port. The switch only writes or removes the marker file, so without these routes it
 * would move nothing: the deploy checks them before the switch.
 */
import type { Color } from '../../model/config.js';

type Json = unknown;

/** Every object in a JSON tree, depth first. */
function* objects(v: Json): Generator<Record<string, unknown>> {
  if (Array.isArray(v)) for (const x of v) yield* objects(x);
  else if (v && typeof v === 'object') {
    yield v as Record<string, unknown>;
    for (const x of Object.values(v)) yield* objects(x);
  }
}

const trimSlash = (p: string) => p.replace(/\/+$/, '');

/** The upstream dial addresses of every reverse_proxy handler in the config. */
export function proxiedAddresses(config: Json): string[] {
  const out: string[] = [];
  for (const o of objects(config)) {
    if (o.handler !== 'reverse_proxy' || !Array.isArray(o.upstreams)) continue;
    for (const u of o.upstreams as Array<{ dial?: unknown }>) if (typeof u?.dial === 'string') out.push(u.dial);
  }
  return out;
}

/** Whether a `file` matcher looks for the green marker of `markerDir` (`<caddy-switch-dir>/<app>`). */
export function hasMarkerMatcher(config: Json, markerDir: string): boolean {
  for (const o of objects(config)) {
    const f = o.file as { root?: unknown; try_files?: unknown } | undefined;
    if (!f || typeof f !== 'object') continue;
    const files = Array.isArray(f.try_files) ? f.try_files.filter((x): x is string => typeof x === 'string') : [];
    const root = typeof f.root === 'string' ? trimSlash(f.root) : '';
    const wanted = `${trimSlash(markerDir)}/green`;
    if (files.some((x) => (x.startsWith('/') && root ? `${root}${x}` : x) === wanted || `${root}/${x}` === wanted))
      return true;
  }
  return false;
}

/** What is missing from Caddy's config for this app; undefined when it has all the action needs. */
export function configProblem(config: Json, markerDir: string, ports: Record<Color, number>): string | undefined {
  if (config === null || config === undefined) return 'Caddy has no config loaded';
  const dials = proxiedAddresses(config);
  const missing: string[] = [];
  if (!hasMarkerMatcher(config, markerDir)) missing.push(`a file matcher for ${markerDir}/green`);
  for (const c of ['green', 'blue'] as const) {
    const addr = `127.0.0.1:${ports[c]}`;
    // exactly as the drain looks it up in /reverse_proxy/upstreams (Caddy lists each upstream as its config dials it)
    if (!dials.includes(addr)) missing.push(`a reverse_proxy to ${addr} (${c})`);
  }
  return missing.length ? `Caddy's config lacks ${missing.join(' and ')}` : undefined;
}
