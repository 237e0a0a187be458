/** The one file the action owns on an nginx host: a complete `upstream` block for the live colour. */

export function renderUpstream(name: string, port: number, note: string): string {
  return [
    `# Managed by bluegreen-ec2-action; it is rewritten on every deploy. ${note}`,
    `upstream ${name} {`,
    `    server 127.0.0.1:${port};`,
    '}',
    ''
  ].join('\n');
}

/** The port the upstream block currently sends traffic to, if the file names exactly one server. */
export function upstreamPort(content: string | undefined): number | undefined {
  if (!content) return undefined;
  const ports = [...content.replace(/#.*$/gm, '').matchAll(/\bserver\s+(?:127\.0\.0\.1|localhost|\[::1\]):(\d+)/g)].map(
    (m) => Number(m[1])
  );
  return ports.length === 1 ? ports[0] : undefined;
}
