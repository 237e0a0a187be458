/** Docker image references: `[registry/]repository[:tag][@sha256:digest]`. */

export interface ImageRef {
  /** Registry host (with port), or '' for Docker Hub. */
  registry: string;
  /** Full repository including the registry, e.g. `123.dkr.ecr.us-east-1.amazonaws.com/backend`. */
  repository: string;
  tag?: string;
  digest?: string;
}

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN =
  '(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:]+\\])(?::[0-9]{1,5})?';
const NAME_RE = new RegExp(`^(?:(${DOMAIN})/)?(${COMPONENT}(?:/${COMPONENT})*)$`);
export const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
export const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/** Parse an image reference; returns an error text instead of throwing. */
export function parseImage(value: string): ImageRef | string {
  if (value.length > 512) return 'is longer than 512 characters';
  let rest = value;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) return `has an invalid digest "${digest}" (expected sha256: and 64 hex digits)`;
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) return `has an invalid tag "${tag}"`;
  }
  const m = NAME_RE.exec(rest);
  if (!m)
    return 'is not a valid repository name (lowercase letters, digits, and . _ - separators, optionally behind a registry host)';
  let registry = m[1] ?? '';
  // A first component without '.' or ':' that is not localhost is a Docker Hub namespace, not a host.
  if (registry && !/[.:]/.test(registry) && registry !== 'localhost' && !registry.startsWith('[')) {
    if (!new RegExp(`^${COMPONENT}$`).test(registry)) return 'is not a valid repository name';
    registry = '';
  }
  return { registry, repository: rest, tag, digest };
}

/** The reference to pull: digest wins over tag. */
export function imageReference(ref: ImageRef): string {
  if (ref.digest) return `${ref.repository}@${ref.digest}`;
  return `${ref.repository}:${ref.tag ?? 'latest'}`;
}

/** `us-east-1` from `123456789012.dkr.ecr.us-east-1.amazonaws.com`. */
export function ecrRegion(registry: string): string | undefined {
  return /^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(registry)?.[1];
}
