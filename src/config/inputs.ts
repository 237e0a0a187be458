/**
 * Reads and validates every input before anything connects anywhere, one section at a time (inputs/). All problems
 * are collected and reported together; each names the input, what is wrong and a right example.
 */
import type { RunContext } from '../model/context.js';
import type { Command, DeployConfig, Transport } from '../model/config.js';
import { checkAlbFits, readAlb } from './inputs/alb.js';
import { Collector, InputError, type InputReader } from './inputs/collector.js';
import { readContainer } from './inputs/container.js';
import { readApp, readImage } from './inputs/image.js';
import { readRollout } from './inputs/rollout.js';
import { readRunSettings } from './inputs/run.js';
import { readSsh } from './inputs/ssh.js';
import { readTraffic } from './inputs/traffic.js';

export { DEFAULTS, envInputReader, InputError, type InputReader } from './inputs/collector.js';
export { parseEnv } from './inputs/container.js';
export { normalizePrivateKey, parseHosts } from './inputs/ssh.js';

export function readConfig(read: InputReader, ctx: RunContext, env: NodeJS.ProcessEnv = process.env): DeployConfig {
  const c = new Collector(read);
  const command = c.oneOf<Command>('command', ['deploy', 'rollback', 'status']);
  const transport = c.oneOf<Transport>('transport', ['ssh', 'ssm']);
  const hostsSection = readSsh(c, transport);
  const rollout = readRollout(c);
  const app = readApp(c);
  const image = readImage(c, command, ctx, env);
  const container = readContainer(c, read);
  const traffic = readTraffic(c, app);
  const alb = readAlb(c, traffic.traffic);
  // Hosts found by instance id or tag are counted in the run: the listener-mode rules apply to any count then.
  checkAlbFits(c, alb.alb, image.awsRegion, rollout, hostsSection.hosts.length + (hostsSection.hostQuery ? 2 : 0));
  const run = readRunSettings(c, ctx, app, traffic.traffic);
  // Instance ids and tags are looked up with EC2, and SSM is regional: both need the region.
  if (!image.awsRegion && (transport === 'ssm' || hostsSection.hostQuery)) {
    c.fail(
      'aws-region',
      `is required ${transport === 'ssm' ? 'for transport: ssm' : 'to find hosts by instance id or tag'} (it could not be read from the image host or AWS_REGION)`,
      'us-east-1'
    );
  }
  if (transport === 'ssm' && run.smokeTest)
    c.fail(
      'smoke-test',
      'needs transport: ssh (it reaches the candidate through a forwarded port, which SSM Run Command cannot give)',
      '(leave empty with transport: ssm)'
    );
  if (c.problems.length) throw new InputError(c.problems);
  return { command, transport, ...hostsSection, rollout, app, ...image, ...container, ...traffic, ...alb, ...run };
}
