/** Registry credentials (docker's config.json) and the image pull on the host. */
import { dockerFn, secretTempLines, TRAPS, type RemoteScript } from './common.js';

export type LoginMode =
  | { kind: 'none' }
  | { kind: 'password'; registry: string; username: string; password: string }
  | { kind: 'ecr-on-host'; registry: string; region: string };

/** The key docker's config.json files a registry's credentials under (Docker Hub's is its v1 index URL, as `docker login` writes it). */
export function dockerAuthKey(registry: string): string {
  return ['', 'docker.io', 'index.docker.io', 'registry-1.docker.io'].includes(registry)
    ? 'https://index.docker.io/v1/'
    : registry;
}

/**
 * A DOCKER_CONFIG's config.json holding one registry's credentials: what `docker login` writes, without its process
 * start and its extra exchange with the registry on the pull's critical path (the pull itself presents them; the
 * registry refusing them fails the pull with "unauthorized"). A secret: sent on stdin only.
 */
export function dockerConfigJson(registry: string, username: string, password: string): string {
  return `${JSON.stringify({ auths: { [dockerAuthKey(registry)]: { auth: dockerAuthValue(username, password) } } })}\n`;
}

/** config.json's `auth`: base64 of `user:password`, as secret as the password (masked like it). */
export function dockerAuthValue(username: string, password: string): string {
  return Buffer.from(`${username}:${password}`).toString('base64');
}

/**
 * Registry login with a throwaway DOCKER_CONFIG (removed on any exit), pull, and the digests. With a password the
 * login is writing config.json from stdin (see dockerConfigJson); ecr-on-host runs `aws ecr get-login-password |
 * docker login` on the host. Prints `@@step login`, `@@step pull`, `@@digests` markers so the runner can time each part.
 */
export function pullScript(dockerCommand: string[], image: string, login: LoginMode): RemoteScript {
  const lines = ['set -e', dockerFn(dockerCommand), TRAPS, 'img=$1'];
  let cfg = '';
  if (login.kind !== 'none') {
    lines.push(
      ...secretTempLines('bluegreen-login', 'dir'),
      'cfg=$secret_tmp',
      `trap 'rm -rf "$cfg"' EXIT`,
      'echo "@@step login"'
    );
    if (login.kind === 'password') lines.push('cat > "$cfg/config.json"');
    else
      lines.push(
        'command -v aws >/dev/null 2>&1 || { echo "the AWS CLI (aws) is not installed on the host, which registry-auth ecr-on-host needs" >&2; exit 127; }',
        'aws ecr get-login-password --region "$3" | D --config "$cfg" login --username AWS --password-stdin "$2"'
      );
    cfg = '--config "$cfg" ';
  }
  lines.push(
    'echo "@@step pull"',
    `D ${cfg}pull "$img"`,
    'echo "@@digests"',
    `D image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$img"`
  );
  const args = [image];
  if (login.kind === 'ecr-on-host') args.push(login.registry, login.region);
  return {
    body: lines.join('\n'),
    args,
    stdin: login.kind === 'password' ? dockerConfigJson(login.registry, login.username, login.password) : undefined
  };
}
