/** What a host runs, as the deploy reads it: which version a container is, and what a failed pull means. */
import type { ContainerInfo } from '../model/host.js';

/** Adds what to do about the usual pull failures. */
export function explainPullError(message: string, ref: string): string {
  if (/command not found|docker: not found|No such file or directory.*docker/i.test(message))
    return `docker is not installed on the host or not on the SSH user's PATH (see docker-command): ${message}`;
  if (/Cannot connect to the Docker daemon|docker\.sock/i.test(message))
    return `docker is not reachable on the host (is dockerd running, and may the SSH user use it? add it to the docker group or set docker-command: sudo -n docker): ${message}`;
  if (
    /manifest unknown|manifest for .* not found|not found: manifest|repository .* not found|pull access denied|no such image|does not exist/i.test(
      message
    )
  )
    return `image ${ref} was not found in the registry (was it pushed, and is the tag right?): ${message}`;
  if (
    /connection refused|no such host|i\/o timeout|dial tcp|server gave HTTP response to HTTPS|TLS handshake timeout/i.test(
      message
    )
  )
    return `the registry for ${ref} is not reachable from the host (is it up, and does the host's network allow it?): ${message}`;
  if (
    /unauthorized|authentication required|denied|no basic auth credentials|401|incorrect username or password/i.test(
      message
    )
  )
    return `the registry refused access to ${ref} (check registry-auth and the credentials or instance role): ${message}`;
  if (/no space left on device/i.test(message))
    return `the host ran out of disk space while pulling ${ref}: ${message}`;
  return message;
}

/** Whether a container runs the given tag or digest (from its labels). */
export function matchesVersion(c: ContainerInfo, wanted: string): boolean {
  if (wanted.startsWith('sha256:')) return c.labels['bluegreen.digest'] === wanted;
  const image = c.labels['bluegreen.image'] ?? '';
  return image.slice(image.lastIndexOf(':') + 1) === wanted && image.lastIndexOf(':') > image.lastIndexOf('/');
}

export function describeContainer(c: ContainerInfo | undefined): string | undefined {
  if (!c) return undefined;
  return `${c.name}: ${c.labels['bluegreen.image'] ?? 'unknown image'}, ${c.state}`;
}
