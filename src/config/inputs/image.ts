/** The image section: app name, image and tag, rollback-to, and how the host logs in to the registry. */
import type { RunContext } from '../../model/context.js';
import { DIGEST_RE, ecrRegion, parseImage, TAG_RE, type ImageRef } from '../../model/image.js';
import type { Command, DeployConfig, RegistryAuth } from '../../model/config.js';
import { APP, Collector, printable } from './collector.js';

export function readApp(c: Collector): string {
  const app = c.raw('app-name');
  if (!APP.test(app))
    c.fail(
      'app-name',
      app
        ? `"${printable(app)}" may only hold letters, digits, "_", "." and "-", start with a letter or digit, and be at most 63 characters`
        : 'is required',
      'backend'
    );

  return app;
}

export function readImage(
  c: Collector,
  command: Command,
  ctx: RunContext,
  env: NodeJS.ProcessEnv
): Pick<DeployConfig, 'image' | 'rollbackTo' | 'registryAuth' | 'registryCredentials' | 'awsRegion'> {
  const imageRaw = c.raw('image');
  const tagRaw = c.raw('tag');
  let image: ImageRef = { registry: '', repository: '' };
  // rollback and status work from what is on the hosts; image (the repository) is only needed to deploy.
  if (!imageRaw) {
    if (command === 'deploy') c.fail('image', 'is required', '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
  }
  // status ignores tag (a shared step may pass one); rollback refuses it, as rollback-to is probably meant.
  if (command === 'rollback' && tagRaw)
    c.fail(
      'tag',
      `only applies to command: deploy${command === 'rollback' ? '; to roll back to a version use rollback-to' : ''}`,
      command === 'rollback' ? 'rollback-to: v1.4.2' : '(leave empty)'
    );
  if (!imageRaw) {
    // nothing more to read
  } else if (command !== 'deploy') {
    const parsed = parseImage(imageRaw);
    if (typeof parsed === 'string')
      c.fail('image', `"${printable(imageRaw)}" ${parsed}`, '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
    else image = { registry: parsed.registry, repository: parsed.repository };
  } else {
    const parsed = parseImage(imageRaw);
    if (typeof parsed === 'string')
      c.fail('image', `"${printable(imageRaw)}" ${parsed}`, '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend');
    else {
      image = parsed;
      if (tagRaw && (parsed.tag || parsed.digest)) {
        c.fail(
          'tag',
          `cannot be combined with an image that already names a ${parsed.digest ? 'digest' : 'tag'} ("${printable(imageRaw)}")`,
          `${parsed.repository} with tag: v1.2.3, or image: ${parsed.repository}:v1.2.3 without tag`
        );
      } else if (!parsed.tag && !parsed.digest) {
        const tag = tagRaw || ctx.sha;
        if (!tag) c.fail('tag', 'is required when image has no tag and GITHUB_SHA is not set', 'v1.2.3');
        else if (!TAG_RE.test(tag))
          c.fail(
            'tag',
            `"${printable(tag)}" is not a valid docker tag (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`,
            'v1.2.3'
          );
        else image = { ...parsed, tag };
      }
    }
  }

  const rollbackTo = c.raw('rollback-to') || undefined;
  if (rollbackTo && command !== 'rollback')
    c.fail('rollback-to', `only applies to command: rollback (command is ${command})`, 'v1.4.2');
  else if (rollbackTo && !TAG_RE.test(rollbackTo) && !DIGEST_RE.test(rollbackTo))
    c.fail('rollback-to', `"${printable(rollbackTo)}" is neither an image tag nor a sha256: digest`, 'v1.4.2');

  const registryAuth = c.oneOf<RegistryAuth>('registry-auth', ['ecr', 'ecr-on-host', 'password', 'none']);
  let registryCredentials: DeployConfig['registryCredentials'];
  if (registryAuth === 'password') {
    const username = c.raw('registry-username');
    const password = c.raw('registry-password');
    if (!username) c.fail('registry-username', 'is required for registry-auth password', '${{ github.actor }}');
    else if (!/^[\x21-\x7e]{1,255}$/.test(username) || username.includes(':') || username.startsWith('-'))
      c.fail('registry-username', 'must be printable ASCII without spaces or ":", not starting with "-"', 'deploy-bot');
    if (!password)
      c.fail('registry-password', 'is required for registry-auth password', '${{ secrets.REGISTRY_TOKEN }}');
    registryCredentials = { username, password };
  }
  let awsRegion: string | undefined =
    c.raw('aws-region') || env.AWS_REGION || env.AWS_DEFAULT_REGION || ecrRegion(image.registry);
  if (awsRegion && !/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/.test(awsRegion)) {
    c.fail('aws-region', `"${printable(awsRegion)}" is not an AWS region`, 'us-east-1');
    awsRegion = undefined;
  }
  const mayPull = command === 'deploy' || (command === 'rollback' && Boolean(rollbackTo) && Boolean(image.repository));
  if ((registryAuth === 'ecr' || registryAuth === 'ecr-on-host') && mayPull) {
    if (!awsRegion)
      c.fail(
        'aws-region',
        `is required for registry-auth ${registryAuth} (it could not be read from the image host or AWS_REGION)`,
        'us-east-1'
      );
  }
  if (registryAuth !== 'none' && image.repository && !image.registry)
    c.fail(
      'image',
      `names no registry host, so registry-auth ${registryAuth} has nothing to log in to`,
      '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend'
    );

  return { image, rollbackTo, registryAuth, registryCredentials, awsRegion };
}
